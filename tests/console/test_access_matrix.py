"""Every route of the operations API and the console by every role by own and foreign tenant → the expected status.

The callers: nobody, a sender token, the operator token of the configuration (every tenant), and the console
users ``view-mm`` (viewer of memmingen), ``op-mm`` (operator of memmingen), ``admin``. "own" is a dead
memmingen message, "foreign" a dead aschaffenburg one. A foreign message is 404 (never 403: its existence is
not told); a role that may not do something gets 403 for it on any message. Requests that would change
something are sent so that, when allowed, they stop at a check after the access checks (an empty reason, a
malformed payload), or do something repeatable (retry a waiting message): the world stays the same for all.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.console.world import Browser, World, bearer, served_world
from tests.support import SENDER_TOKEN

CALLERS = ("anonymous", "sender", "token", "view-mm", "op-mm", "admin")
XML = {"Content-Type": "application/xml"}

# (name, method, path, kwargs, {caller: status for own}, {caller: status for foreign}); "-" = same as own.
A = {"anonymous": 401, "sender": 403}  # the API's answer to those without an operator's access
C = {"anonymous": 303, "sender": 303, "token": 303}  # the console: no session → the login page


def api_row(name: str, method: str, path: str, own: dict[str, int], foreign: dict[str, int] | None = None,
            **kwargs: Any) -> tuple[Any, ...]:
    return (name, method, path, kwargs, {**A, **own}, {**A, **(foreign if foreign is not None else own)})


def console_row(name: str, method: str, path: str, own: dict[str, int], foreign: dict[str, int] | None = None,
                **kwargs: Any) -> tuple[Any, ...]:
    return (name, method, path, kwargs, {**own, **C}, {**(foreign if foreign is not None else own), **C})


ALL_200 = {"token": 200, "view-mm": 200, "op-mm": 200, "admin": 200}
SEE = ALL_200, {"token": 200, "view-mm": 404, "op-mm": 404, "admin": 200}


def act(ok: int) -> tuple[dict[str, int], dict[str, int]]:
    return ({"token": ok, "view-mm": 403, "op-mm": ok, "admin": ok},
            {"token": ok, "view-mm": 403, "op-mm": 404, "admin": ok})


ROUTES = [
    api_row("me", "GET", "/api/v1/ops/me", ALL_200),
    api_row("search", "GET", "/api/v1/ops/messages", ALL_200),
    api_row("case", "GET", "/api/v1/ops/messages/{id}", *SEE),
    api_row("payload", "GET", "/api/v1/ops/messages/{id}/payload", *act(200)),
    api_row("retry", "POST", "/api/v1/ops/messages/{id}/retry", *act(200)),
    api_row("requeue", "POST", "/api/v1/ops/messages/{id}/requeue", *act(422), json={"stage": "nowhere"}),
    api_row("reject", "POST", "/api/v1/ops/messages/{id}/reject", *act(422), json={"reason": ""}),
    api_row("resubmit", "POST", "/api/v1/ops/messages/{id}/resubmit", *act(422), content=b"<a>", headers=XML),
    api_row("bulk-preview", "POST", "/api/v1/ops/bulk/preview",
            {"token": 200, "view-mm": 403, "op-mm": 200, "admin": 200},
            json={"filter": {"tenant": "{tenant}"}, "action": "requeue"}),
    api_row("bulk", "POST", "/api/v1/ops/bulk", {"token": 422, "view-mm": 403, "op-mm": 422, "admin": 422},
            json={"filter": {"tenant": "{tenant}"}, "action": "reject", "reason": ""}),
    api_row("dashboard", "GET", "/api/v1/ops/dashboard", ALL_200),
    api_row("audit", "GET", "/api/v1/ops/audit", ALL_200),
    api_row("users", "GET", "/api/v1/ops/users", {"token": 403, "view-mm": 403, "op-mm": 403, "admin": 200}),
    api_row("explain", "POST", "/api/v1/ops/explain?tenant={tenant}", ALL_200,
            {"token": 200, "view-mm": 404, "op-mm": 404, "admin": 200}, content=b"<a/>", headers=XML),
    console_row("c-search", "GET", "/console/", ALL_200),
    console_row("c-message", "GET", "/console/messages/{id}", *SEE),
    console_row("c-payload", "GET", "/console/messages/{id}/payload", *act(200)),
    console_row("c-retry", "POST", "/console/messages/{id}/act", *act(303), form={"action": "retry"}),
    console_row("c-edit", "GET", "/console/messages/{id}/edit", *act(200)),
    console_row("c-bulk", "GET", "/console/bulk", {"view-mm": 403, "op-mm": 200, "admin": 200}),
    console_row("c-audit", "GET", "/console/audit", ALL_200),
    console_row("c-dashboard", "GET", "/console/dashboard", ALL_200),
    console_row("c-panel", "GET", "/console/dashboard/panel", ALL_200),
    console_row("c-rules", "GET", "/console/rules", ALL_200),
    console_row("c-users", "GET", "/console/users", {"view-mm": 403, "op-mm": 403, "admin": 200}),
]


@pytest.fixture(scope="module")
def matrix_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, dict[str, httpx.Client],
                                                                              dict[str, str]]]:
    with served_world(tmp_path_factory.mktemp("matrix")) as (world, hub_url):
        clients: dict[str, httpx.Client] = {
            "anonymous": httpx.Client(base_url=hub_url, timeout=30),
            "sender": httpx.Client(base_url=hub_url, timeout=30, headers={"Authorization": f"Bearer {SENDER_TOKEN}"}),
            "token": httpx.Client(base_url=hub_url, timeout=30, headers=bearer()),
        }
        csrf: dict[str, str] = {}
        for name in ("view-mm", "op-mm", "admin"):
            b = Browser(hub_url)
            assert b.login(name).status_code == 303
            clients[name], csrf[name] = b.client, b.csrf
        yield world, clients, csrf
        for c in clients.values():
            c.close()


@pytest.mark.parametrize("tenant", ["own", "foreign"])
@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("name", "method", "path", "kwargs", "own", "foreign"), ROUTES, ids=[r[0] for r in ROUTES])
def test_access(matrix_world: Any, caller: str, tenant: str, name: str, method: str, path: str,
                kwargs: dict[str, Any], own: dict[str, int], foreign: dict[str, int]) -> None:
    world, clients, csrf = matrix_world
    message = world.ids["mm-dead" if tenant == "own" else "ab-dead"]
    tenant_name = "memmingen" if tenant == "own" else "aschaffenburg"
    target = path.format(id=message, tenant=tenant_name)
    options = {k: v for k, v in kwargs.items() if k != "form"}
    if "json" in options:
        options["json"] = _fill(options["json"], tenant_name)
    headers = dict(options.pop("headers", {}))
    if method == "POST" and caller in csrf:
        headers["X-CSRF-Token"] = csrf[caller]
    if "form" in kwargs:
        options["data"] = {**kwargs["form"], "csrf": csrf.get(caller, "")}
    r = clients[caller].request(method, target, headers=headers, **options)
    expected = (own if tenant == "own" else foreign)[caller]
    assert r.status_code == expected, f"{caller} {method} {target}: {r.status_code} {r.text[:300]}"
    if expected == 303 and caller in ("anonymous", "sender", "token"):
        assert r.headers["location"] == "/console/login"
    if expected == 404 and r.headers.get("content-type", "").startswith("text/html"):
        assert "aschaffenburg" not in r.text and "antrag-ab" not in r.text  # nothing of the foreign message


def _fill(value: Any, tenant: str) -> Any:
    if isinstance(value, dict):
        return {k: _fill(v, tenant) for k, v in value.items()}
    return value.replace("{tenant}", tenant) if isinstance(value, str) else value


def test_foreign_tenants_never_show_up_in_lists(matrix_world: Any) -> None:
    _world, clients, _ = matrix_world
    for name in ("view-mm", "op-mm"):
        c = clients[name]
        items = c.get("/api/v1/ops/messages").json()["items"]
        assert items and {m["tenant"] for m in items} == {"memmingen"}
        assert c.get("/api/v1/ops/messages", params={"q": "antrag-ab-2"}).json()["items"] == []
        assert c.get("/api/v1/ops/messages", params={"tenant": "aschaffenburg"}).json()["items"] == []
        dashboard = c.get("/api/v1/ops/dashboard").json()
        assert [t["tenant"] for t in dashboard["tenants"]] == ["memmingen"]
        assert {t["tenant"] for t in dashboard["targets"]} == {"memmingen"}
        assert all(a["tenant"] == "memmingen" for a in c.get("/api/v1/ops/audit").json()["items"])
        for page in ("/console/", "/console/dashboard", "/console/audit", "/console/?status=dead"):
            assert "aschaffenburg" not in c.get(page).text, page
    assert re.search("aschaffenburg", clients["admin"].get("/console/dashboard").text)
