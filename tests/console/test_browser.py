"""The console in a real headless Chromium (Debian's, driven by Playwright): log in with the keyboard, search,
open a timeline, act, watch the dashboard refresh itself; no request ever leaves loopback.

Screenshots of the dashboard and of a message page are written to the test's folder, and into
``docs/console/`` when ``HUB_WRITE_SCREENSHOTS=1`` (how the pictures in docs/console.md are made).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.console.world import PASSWORD, World, served_world, status_of

pytestmark = [pytest.mark.browser, pytest.mark.slow]

DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, str]]:
    with served_world(tmp_path_factory.mktemp("browser")) as found:
        yield found


class Page:
    """A browser tab that records every request and refuses any that would leave loopback."""

    def __init__(self, chromium: Any, base: str) -> None:
        self.context = chromium.new_context(base_url=base, viewport={"width": 1366, "height": 768},
                                            locale="de-DE")
        self.requests: list[str] = []
        self.refused: list[str] = []
        self.context.route("**/*", self._guard)
        self.page = self.context.new_page()

    def _guard(self, route: Any) -> None:
        url = route.request.url
        self.requests.append(url)
        host = urlsplit(url).hostname or ""
        if url.startswith("data:") or host in LOOPBACK:
            route.continue_()
        else:
            self.refused.append(url)
            route.abort()

    def login(self, name: str) -> None:
        p = self.page
        p.goto("/console/login")
        p.keyboard.type(name)  # the name field has the focus
        p.keyboard.press("Tab")
        p.keyboard.type(PASSWORD)
        p.keyboard.press("Enter")
        p.wait_for_url("**/console/")

    def close(self) -> None:
        assert not self.refused, f"requests left loopback: {self.refused}"
        assert self.requests and all((urlsplit(u).hostname or "") in LOOPBACK for u in self.requests)
        self.context.close()


@pytest.fixture
def tab(chromium: Any, served: tuple[World, str]) -> Iterator[Page]:
    page = Page(chromium, served[1])
    yield page
    page.close()


def _shot(page: Any, name: str, tmp_path: Path) -> None:
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=False)
    if os.environ.get("HUB_WRITE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        shutil.copyfile(path, DOCS / name)


def test_operator_finds_a_message_reads_its_timeline_and_retries_it(tab: Page, served: tuple[World, str],
                                                                    tmp_path: Path) -> None:
    world, _ = served
    p = tab.page
    tab.login("op-mm")
    p.fill("input[name=q]", "antrag-mm-3")
    p.keyboard.press("Enter")
    p.wait_for_url("**q=antrag-mm-3**")
    links = p.locator("[data-testid=message-link]")
    assert links.count() == 1
    links.first.click()
    article = p.locator("[data-status]").first
    assert article.get_attribute("data-status") == "dead"
    assert p.locator("[data-testid=event]").count() >= 4
    assert "gestoppt" in p.locator("h1").inner_text()  # German labels, machine status in data-status
    _shot(p, "message.png", tmp_path)
    p.locator('button[data-action="retry"]').click()
    p.wait_for_url("**done=retry")
    assert p.locator("article[data-status]").get_attribute("data-status") == "retry_wait"
    assert status_of(world.engine, world.ids["mm-dead"]) == "retry_wait"
    assert p.locator("[data-testid=audit-entry]").count() >= 1
    assert p.locator('button[data-action="retry"]').count() == 1  # a waiting message can be retried again


def test_reject_with_a_reason(tab: Page, served: tuple[World, str]) -> None:
    world, _ = served
    p = tab.page
    tab.login("op-mm")
    p.goto(f"/console/messages/{world.ids['mm-dead2']}")
    p.fill("form:has(button[data-action=reject]) input[name=reason]", "Doppelt eingereicht")
    p.locator('button[data-action="reject"]').click()
    p.wait_for_url("**done=reject")
    assert p.locator("article[data-status]").get_attribute("data-status") == "rejected"
    assert "Doppelt eingereicht" in p.locator("ol.timeline").inner_text()


def test_viewer_has_no_buttons_and_other_towns_do_not_exist(tab: Page, served: tuple[World, str]) -> None:
    world, _ = served
    p = tab.page
    tab.login("view-mm")
    p.goto(f"/console/messages/{world.ids['mm-ok']}")
    assert p.locator("article[data-status]").get_attribute("data-status") == "acknowledged"
    assert p.locator("button[data-action]").count() == 0
    response = p.goto(f"/console/messages/{world.ids['ab-dead']}")
    assert response is not None and response.status == 404
    p.goto("/console/?status=dead")
    assert "aschaffenburg" not in p.content()


def test_dashboard_refreshes_itself(tab: Page, tmp_path: Path) -> None:
    p = tab.page
    tab.login("admin")
    p.goto("/console/dashboard")
    assert p.locator("[data-testid=tenant-row]").count() == 2
    assert p.locator("svg.spark").count() == 2
    _shot(p, "dashboard.png", tmp_path)
    with p.expect_request("**/console/dashboard/panel", timeout=20_000):
        pass  # htmx asks for a fresh panel every 10 seconds
    p.wait_for_load_state("networkidle")
    assert p.locator("[data-testid=tenant-row]").count() == 2


def test_keyboard_only_search(tab: Page) -> None:
    p = tab.page
    tab.login("op-mm")
    p.keyboard.type("antrag-mm-1")  # the search field has the focus
    p.keyboard.press("Enter")
    p.wait_for_url("**q=antrag-mm-1**")
    link = p.locator("[data-testid=message-link]")
    link.focus()
    p.keyboard.press("Enter")
    p.wait_for_url("**/console/messages/**")
    assert p.locator("article[data-status]").get_attribute("data-status") == "acknowledged"
