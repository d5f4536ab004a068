"""The console over HTTP: login (same answer for unknown user and wrong password, throttling, cookie flags,
CSRF), the pages in German and English, actions through forms, bulk with preview, rules at hand."""

from __future__ import annotations

import re

import httpx

from hub import users
from tests.console.world import PASSWORD, Browser, World, status_of
from tests.support import XBAU_VALID


def _login_answer(hub_url: str, name: str, password: str) -> httpx.Response:
    b = Browser(hub_url)
    try:
        return b.login(name, password)
    finally:
        b.close()


def test_unknown_user_and_wrong_password_get_the_same_answer(world: World, hub_url: str) -> None:
    unknown = _login_answer(hub_url, "nobody", "whatever-password")
    wrong = _login_answer(hub_url, "op-mm", "wrong-password!")
    assert unknown.status_code == wrong.status_code == 401

    def body(r: httpx.Response) -> str:
        return re.sub(r'value="[^"]+"', "", r.text)

    assert body(unknown) == body(wrong)
    assert "Unbekannter Benutzer oder falsches Passwort" in unknown.text  # German unless asked otherwise


def test_login_sets_a_strict_cookie_and_logout_ends_the_session(world: World, hub_url: str) -> None:
    b = Browser(hub_url)
    r = b.login("view-mm")
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
    assert "secure" not in cookie  # plain http on loopback; Secure when served over https
    page = b.client.get("/console/")
    assert page.status_code == 200 and page.headers["content-security-policy"].startswith("default-src 'none'")
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
    assert b.client.post("/console/logout", data={"csrf": "wrong"}).status_code == 403
    assert b.client.post("/console/logout", data={"csrf": b.csrf}).status_code == 303
    assert b.client.get("/console/").status_code == 303  # the session is gone on the server
    b.close()


def test_login_needs_the_forms_own_token(world: World, hub_url: str) -> None:
    with httpx.Client(base_url=hub_url) as c:
        r = c.post("/console/login", data={"username": "admin", "password": PASSWORD, "login_token": "forged"})
        assert r.status_code == 400 and "xhub_session" not in r.headers.get("set-cookie", "")


def test_failed_logins_are_throttled_for_known_and_unknown_names(world: World, hub_url: str) -> None:
    for name in ("admin", "ghost"):  # five failures block the name, whether it exists or not
        answers = [_login_answer(hub_url, name, "not-the-password").status_code for _ in range(6)]
        assert answers == [401] * 5 + [429]
    assert _login_answer(hub_url, "admin", PASSWORD).status_code == 429  # even with the right password
    assert _login_answer(hub_url, "op-mm", PASSWORD).status_code == 303  # another name from the same address
    for i in range(10):  # twenty failures block the address
        _login_answer(hub_url, f"guess-{i}", "x" * 12)
    assert _login_answer(hub_url, "view-mm", PASSWORD).status_code == 429


def test_a_disabled_user_is_logged_out_at_once(world: World, hub_url: str) -> None:
    b = Browser(hub_url)
    assert b.login("op-mm").status_code == 303
    users.disable_user(world.engine, "op-mm")
    assert b.client.get("/console/").status_code == 303
    assert _login_answer(hub_url, "op-mm", PASSWORD).status_code == 401
    b.close()


def test_search_message_page_and_actions_through_forms(world: World, hub_url: str) -> None:
    b = Browser(hub_url)
    b.login("op-mm")
    b.client.cookies.set("xhub_lang", "en")
    found = b.client.get("/console/", params={"q": "antrag-mm-3"})
    assert found.text.count('data-testid="message-link"') == 1
    dead = world.ids["mm-dead"]
    page = b.client.get(f"/console/messages/{dead}")
    assert 'data-status="dead"' in page.text and page.text.count('data-testid="event"') >= 4
    for action in ("retry", "requeue", "reject"):
        assert f'data-action="{action}"' in page.text
    assert "Validation report" in page.text and "Route explanation" in page.text
    forged = b.client.post(f"/console/messages/{dead}/act", data={"action": "retry"})
    assert forged.status_code == 403 and status_of(world.engine, dead) == "dead"
    r = b.client.post(f"/console/messages/{dead}/act", data={"action": "retry", "csrf": b.csrf})
    assert r.status_code == 303 and status_of(world.engine, dead) == "retry_wait"
    assert b.client.post(f"/console/messages/{dead}/act", data={"action": "reject", "csrf": b.csrf}).status_code == 422
    r = b.client.post(f"/console/messages/{dead}/act",
                      data={"action": "reject", "reason": "sent twice", "csrf": b.csrf})
    assert r.status_code == 303 and status_of(world.engine, dead) == "rejected"
    page = b.client.get(f"/console/messages/{dead}")
    assert 'data-action="retry"' not in page.text and 'data-testid="audit-entry"' in page.text
    b.close()


def test_a_viewer_sees_no_action_buttons(world: World, hub_url: str) -> None:
    b = Browser(hub_url)
    b.login("view-mm")
    page = b.client.get(f"/console/messages/{world.ids['mm-dead']}")
    assert 'data-status="dead"' in page.text and "data-action=" not in page.text
    b.close()


def test_edit_and_resubmit_through_the_form(world: World, hub_url: str) -> None:
    b = Browser(hub_url)
    b.login("op-mm")
    dead = world.ids["mm-dead2"]
    form = b.client.get(f"/console/messages/{dead}/edit")
    assert form.status_code == 200 and "<textarea" in form.text
    r = b.client.post(f"/console/messages/{dead}/edit", data={
        "csrf": b.csrf, "content_type": "application/xml", "payload": XBAU_VALID.read_text(encoding="utf-8"),
        "comment": "corrected"})
    assert r.status_code == 303, r.text
    new_page = b.client.get(r.headers["location"])
    assert str(dead) in new_page.text  # the previous version is linked
    assert status_of(world.engine, dead) == "rejected"
    b.close()


def test_bulk_preview_then_run(world: World, hub_url: str) -> None:
    b = Browser(hub_url)
    b.login("op-mm")
    b.client.cookies.set("xhub_lang", "en")
    form = {"csrf": b.csrf, "status": "dead", "action": "requeue", "step": "preview"}
    preview = b.client.post("/console/bulk", data=form)
    assert re.search(r'data-testid="bulk-count">2 ', preview.text), preview.text[-2000:]
    assert "aschaffenburg" not in preview.text
    result = b.client.post("/console/bulk", data={**form, "step": "run"})
    assert re.search(r'data-testid="bulk-tally">2 done', result.text)
    assert status_of(world.engine, world.ids["ab-dead"]) == "dead"  # the other town's stays
    b.close()


def test_rules_at_hand_paste_and_upload(world: World, hub_url: str) -> None:
    b = Browser(hub_url)
    b.login("view-mm")
    pasted = b.client.post("/console/rules", data={"csrf": b.csrf, "tenant": "memmingen",
                                                   "payload": XBAU_VALID.read_text(encoding="utf-8")})
    assert '<b data-testid="chosen-route">all</b>' in pasted.text
    uploaded = b.client.post("/console/rules", data={"csrf": b.csrf, "tenant": "memmingen"},
                             files={"file": ("x.xml", XBAU_VALID.read_bytes(), "application/xml")})
    assert '<b data-testid="chosen-route">all</b>' in uploaded.text
    assert b.client.post("/console/rules", data={"csrf": b.csrf, "tenant": "aschaffenburg",
                                                 "payload": "<a/>"}).status_code == 404
    b.close()


def test_english_and_german(world: World, hub_url: str) -> None:
    b = Browser(hub_url)
    b.login("admin")
    de = b.client.get("/console/dashboard", headers={"Accept-Language": "de-DE,de;q=0.9"})
    en = b.client.get("/console/dashboard", headers={"Accept-Language": "en-US,en;q=0.8,de;q=0.5"})
    assert "Übersicht" in de.text and "Dashboard" in en.text and 'lang="en"' in en.text
    switched = b.client.get("/console/lang", params={"to": "en", "back": "/console/audit"})
    assert switched.status_code == 303 and switched.headers["location"] == "/console/audit"
    evil = b.client.get("/console/lang", params={"to": "en", "back": "//evil.example/x"})
    assert evil.headers["location"] == "/console/"
    b.close()


def test_docs_are_served_from_vendored_assets(hub_url: str) -> None:
    with httpx.Client(base_url=hub_url) as c:
        page = c.get("/docs").text
        assert "/docs/assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower()
        assert c.get("/docs/assets/swagger-ui-bundle.js").status_code == 200
        assert c.get("/console/static/vendor/htmx.min.js").status_code == 200
        paths = c.get("/openapi.json").json()["paths"]
        assert {"/api/v1/ops/messages", "/api/v1/ops/bulk", "/api/v1/ops/dashboard"} <= set(paths)
        assert not any(p.startswith("/console") for p in paths)
