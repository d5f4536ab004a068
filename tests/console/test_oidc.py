"""Login through an identity provider (OpenID Connect, code flow with PKCE) against a small local provider."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine

from hub import audit, users
from hub.access import Caller
from hub.users import Role
from tests.console.oidc_provider import Provider, create_provider
from tests.console.world import console_config
from tests.support import running
from xhub.api.app import create_app
from xhub.runtime import free_port, serve_in_thread


@pytest.fixture
def provider() -> Iterator[Provider]:
    p = Provider()
    port = free_port()
    p.issuer = f"http://127.0.0.1:{port}"
    with serve_in_thread(create_provider(p), port=port):
        yield p


@pytest.fixture
def hub(engine: Engine, db_url: str, tmp_path: Path, provider: Provider) -> Iterator[str]:
    config = console_config(db_url, tmp_path, console={"oidc": {
        "issuer": provider.issuer, "client_id": provider.client_id, "client_secret": provider.client_secret}})
    users.add_user(engine, "erika", Role.OPERATOR, ["memmingen"], None,
                   oidc_subject=f"{provider.issuer}|erika.mustermann")
    with running(create_app(config, engine)) as url:
        yield url


def _login(hub: str, tamper: Any = None) -> tuple[httpx.Client, httpx.Response]:
    c = httpx.Client(base_url=hub, timeout=30)
    assert "/console/oidc/start" in c.get("/console/login").text
    start = c.get("/console/oidc/start")
    assert start.status_code == 303 and "code_challenge_method=S256" in start.headers["location"]
    back = httpx.get(start.headers["location"], timeout=30)  # the provider logs the user in at once
    assert back.status_code == 303
    target = back.headers["location"]
    if tamper:
        target = tamper(target)
    return c, c.get(target)


def test_login_through_the_identity_provider(hub: str, engine: Engine) -> None:
    c, done = _login(hub)
    assert done.status_code == 303 and done.headers["location"] == "/console/"
    me = c.get("/api/v1/ops/me").json()
    assert me == {"name": "erika", "kind": "user", "role": "operator", "tenants": ["memmingen"]}
    admin = Caller("a", Role.ADMIN, None)
    assert [e.detail for e in audit.entries(engine, admin) if e.action == "login"] == [{"how": "oidc"}]
    c.close()


def test_an_unknown_subject_is_not_let_in(hub: str, provider: Provider) -> None:
    provider.user = "somebody.else"
    c, done = _login(hub)
    assert done.status_code == 401 and "xhub_session" not in c.cookies
    c.close()


def test_a_wrong_state_or_audience_is_refused(hub: str, provider: Provider) -> None:
    c, done = _login(hub, tamper=lambda url: url.replace("state=", "state=x"))
    assert done.status_code == 401
    c.close()
    provider.audience = "another-client"
    c, done = _login(hub)
    assert done.status_code == 401 and c.get("/console/").status_code == 303
    c.close()


def test_a_callback_without_a_started_login_is_refused(hub: str) -> None:
    with httpx.Client(base_url=hub) as c:
        assert c.get("/console/oidc/callback", params={"code": "x", "state": "y"}).status_code == 401
