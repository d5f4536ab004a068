"""Users, passwords, sessions (hub.users) and the login throttle (hub.access)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import Engine

from hub import access, users
from hub.db import make_engine
from hub.users import Role, UserError

PASSWORD = "a long enough password"


@pytest.fixture
def db(sqlite_url: str) -> Iterator[Engine]:
    engine = make_engine(sqlite_url)
    yield engine
    engine.dispose()


@pytest.mark.parametrize(("name", "role", "tenants", "password", "says"), [
    ("anna", Role.OPERATOR, ["memmingen"], "short", "at least 12"),
    ("anna", Role.ADMIN, ["memmingen"], PASSWORD, "every tenant"),
    ("anna", Role.VIEWER, [], PASSWORD, "at least one --tenant"),
    ("an na", Role.VIEWER, ["memmingen"], PASSWORD, "user name"),
    ("anna", Role.VIEWER, ["../etc"], PASSWORD, "a tenant is"),
    ("anna", Role.VIEWER, ["memmingen"], None, "a password or"),
])
def test_users_are_checked_before_they_are_stored(db: Engine, name: str, role: Role, tenants: list[str],
                                                  password: str | None, says: str) -> None:
    with pytest.raises(UserError, match=says):
        users.add_user(db, name, role, tenants, password)
    assert users.list_users(db) == []


def test_passwords_are_argon2_and_checked_alike_for_every_failure(db: Engine) -> None:
    users.add_user(db, "anna", Role.OPERATOR, ["memmingen", "kempten"], PASSWORD)
    with pytest.raises(UserError, match="exists already"):
        users.add_user(db, "anna", Role.VIEWER, ["memmingen"], PASSWORD)
    with db.connect() as conn:
        stored = conn.exec_driver_sql("SELECT password_hash FROM users").scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    found = users.check_password(db, "anna", PASSWORD)
    assert found is not None and found.tenants == ("kempten", "memmingen") and found.role is Role.OPERATOR
    assert users.check_password(db, "anna", "wrong password!") is None
    assert users.check_password(db, "nobody", PASSWORD) is None
    assert users.check_password(db, "anna", "x" * 5000) is None
    users.disable_user(db, "anna")
    assert users.check_password(db, "anna", PASSWORD) is None


def test_sessions_end_with_a_new_password_and_when_they_expire(db: Engine) -> None:
    anna = users.add_user(db, "anna", Role.VIEWER, ["memmingen"], PASSWORD)
    token, csrf = users.open_session(db, anna, timedelta(hours=1), "127.0.0.1")
    found = users.session_user(db, token)
    assert found is not None and found.user.name == "anna" and found.csrf_token == csrf
    with db.connect() as conn:
        assert conn.exec_driver_sql("SELECT token_sha256 FROM login_sessions").scalar_one() != token
    users.set_password(db, "anna", "another long password")
    assert users.session_user(db, token) is None
    expired, _ = users.open_session(db, anna, timedelta(seconds=-1), None)
    assert users.session_user(db, expired) is None
    assert users.session_user(db, "") is None and users.session_user(db, "x" * 500) is None


def test_the_throttle_blocks_names_and_addresses_for_a_window(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(access.time, "monotonic", lambda: now[0])
    throttle = access.LoginThrottle(limit=2, window_seconds=60)
    throttle.failed("Anna", "10.0.0.1")
    assert not throttle.blocked("anna", "10.0.0.2")
    throttle.failed("anna", "10.0.0.2")
    assert throttle.blocked("ANNA", "10.0.0.3") and not throttle.blocked("bob", "10.0.0.1")
    now[0] += 61
    assert not throttle.blocked("anna", "10.0.0.1")
    for i in range(8):  # an address: four times the limit of a name
        throttle.failed(f"guess{i}", "10.0.0.9")
    assert throttle.blocked("carl", "10.0.0.9")
    throttle.failed("dora", "10.0.0.5")
    throttle.succeeded("Dora")
    throttle.failed("dora", "10.0.0.5")
    assert not throttle.blocked("dora", "10.0.0.6")
