"""People who use the console and the operations API: users, roles, tenants, login sessions.

* **Roles** (:class:`Role`): ``viewer`` reads, ``operator`` reads and repairs, ``admin`` does everything and
  sees the users and the configuration. A viewer or an operator belongs to one or more tenants and sees
  nothing of any other; an admin belongs to none and sees all (:mod:`hub.access`).
* **Passwords** are argon2id hashes (argon2-cffi, its default parameters, RFC 9106's second recommendation).
  :func:`check_password` answers an unknown user, a disabled one and a wrong password alike, and hashes a
  dummy password for an unknown user, so that neither the answer nor its time tells which it was.
* **Login sessions**: a random token in the cookie, its SHA-256 in ``login_sessions`` (a stolen database holds
  no usable cookie), a CSRF token per session, an absolute lifetime. Disabling a user or changing the password
  ends every session of that user.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.sql import Select

from hub.models import LoginSession, User, UserTenant, utcnow

__all__ = [
    "NAME_PATTERN",
    "Role",
    "SessionInfo",
    "UserError",
    "UserInfo",
    "add_user",
    "check_password",
    "disable_user",
    "end_session",
    "find_by_subject",
    "list_users",
    "open_session",
    "session_user",
    "set_password",
]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9._@-]{1,100}$")
TENANT_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,100}$")
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 takes any length; a megabyte "password" is a way to burn CPU, not a password

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class Role(enum.StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"


class UserError(ValueError):
    """A user cannot be added or changed as asked; the message is one line for the operator."""


@dataclass(frozen=True)
class UserInfo:
    id: int
    name: str
    role: Role
    tenants: tuple[str, ...]  # empty for an admin: all
    disabled: bool
    has_password: bool
    oidc_subject: str | None
    created_at: datetime


@dataclass(frozen=True)
class SessionInfo:
    user: UserInfo
    csrf_token: str
    expires_at: datetime


def _one(conn: Connection, stmt: Select[Any]) -> Any:
    """The first entity ``stmt`` selects, detached (a plain snapshot)."""
    with Session(bind=conn, expire_on_commit=False) as session:
        found = session.scalars(stmt.limit(1)).first()
        session.expunge_all()
    return found


def _check_name(name: str) -> None:
    if not NAME_PATTERN.match(name):
        raise UserError("a user name is 1 to 100 letters, digits or . _ @ -")


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"a password has at most {MAX_PASSWORD} characters")


def _check_tenants(role: Role, tenants: list[str]) -> None:
    if role is Role.ADMIN and tenants:
        raise UserError("an admin sees every tenant; give no --tenant")
    if role is not Role.ADMIN and not tenants:
        raise UserError(f"a {role.value} needs at least one --tenant")
    for t in tenants:
        if not TENANT_PATTERN.match(t):
            raise UserError("a tenant is 1 to 100 letters, digits or . _ -")


def add_user(engine: Engine, name: str, role: Role, tenants: list[str], password: str | None,
             oidc_subject: str | None = None) -> UserInfo:
    """Create a user. ``password`` None: the user can only log in through the identity provider."""
    _check_name(name)
    _check_tenants(role, tenants)
    if password is None and oidc_subject is None:
        raise UserError("a user needs a password or an identity provider subject")
    if password is not None:
        _check_password(password)
    now = utcnow()
    try:
        with engine.begin() as conn:
            user_id = conn.execute(insert(User).values(
                name=name, role=role.value, password_hash=_hasher.hash(password) if password is not None else None,
                oidc_subject=oidc_subject, disabled=False, created_at=now, updated_at=now,
            ).returning(User.id)).scalar_one()
            if tenants:
                conn.execute(insert(UserTenant), [{"user_id": user_id, "tenant": t} for t in sorted(set(tenants))])
    except IntegrityError:
        raise UserError(f"a user named {name!r} (or with that identity provider subject) exists already") from None
    return _info(engine, name)  # type: ignore[return-value]


def _info(bind: Engine | Connection, name: str | None = None, user_id: int | None = None) -> UserInfo | None:
    def read(conn: Connection) -> UserInfo | None:
        cond = User.name == name if name is not None else User.id == user_id
        row = _one(conn, select(User).where(cond))
        if row is None:
            return None
        tenants = tuple(conn.execute(select(UserTenant.tenant).where(UserTenant.user_id == row.id)
                                     .order_by(UserTenant.tenant)).scalars())
        return UserInfo(row.id, row.name, Role(row.role), tenants, row.disabled, row.password_hash is not None,
                        row.oidc_subject, row.created_at)

    if isinstance(bind, Connection):
        return read(bind)
    with bind.connect() as conn:
        return read(conn)


def list_users(engine: Engine) -> list[UserInfo]:
    with engine.connect() as conn:
        names = list(conn.execute(select(User.name).order_by(User.name)).scalars())
        return [u for u in (_info(conn, n) for n in names) if u is not None]


def _change(engine: Engine, name: str, **values: object) -> None:
    with engine.begin() as conn:
        user_id = conn.execute(update(User).where(User.name == name).values(updated_at=utcnow(), **values)
                               .returning(User.id)).scalar()
        if user_id is None:
            raise UserError(f"no user named {name!r}")
        conn.execute(delete(LoginSession).where(LoginSession.user_id == user_id))  # every login ends


def disable_user(engine: Engine, name: str, disabled: bool = True) -> None:
    """Disable (or enable again) a user; a disabled user's sessions end at once."""
    _change(engine, name, disabled=disabled)


def set_password(engine: Engine, name: str, password: str) -> None:
    _check_password(password)
    _change(engine, name, password_hash=_hasher.hash(password))


def check_password(engine: Engine, name: str, password: str) -> UserInfo | None:
    """The user, when ``name`` is an enabled user with this password; None for anything else, in about the
    same time (an unknown name is checked against a dummy hash)."""
    if len(password) > MAX_PASSWORD or not NAME_PATTERN.match(name):
        _verify(_DUMMY_HASH, "x")
        return None
    with engine.connect() as conn:
        row = _one(conn, select(User).where(User.name == name))
    stored = row.password_hash if row is not None and row.password_hash else _DUMMY_HASH
    ok = _verify(stored, password)
    if row is None or not row.password_hash or not ok or row.disabled:
        return None
    if _hasher.check_needs_rehash(stored):
        with engine.begin() as conn:
            conn.execute(update(User).where(User.id == row.id).values(password_hash=_hasher.hash(password)))
    return _info(engine, user_id=row.id)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def find_by_subject(engine: Engine, subject: str) -> UserInfo | None:
    """The enabled user an identity provider's subject (``issuer|sub``) was given to."""
    with engine.connect() as conn:
        user_id = conn.execute(select(User.id).where(User.oidc_subject == subject, User.disabled.is_(False))).scalar()
        return _info(conn, user_id=user_id) if user_id is not None else None


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def open_session(engine: Engine, user: UserInfo, lifetime: timedelta, remote_addr: str | None) -> tuple[str, str]:
    """A new login session; returns (cookie token, CSRF token). Expired sessions are swept on the way."""
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(delete(LoginSession).where(LoginSession.expires_at < now))
        conn.execute(insert(LoginSession).values(token_sha256=_digest(token), user_id=user.id, csrf_token=csrf,
                                                 created_at=now, expires_at=now + lifetime,
                                                 remote_addr=(remote_addr or "")[:64] or None))
    return token, csrf


def session_user(engine: Engine, token: str) -> SessionInfo | None:
    """The session of a cookie token, while it lasts and its user is enabled."""
    if not token or len(token) > 100:
        return None
    with engine.connect() as conn:
        row = _one(conn, select(LoginSession).where(LoginSession.token_sha256 == _digest(token)))
        if row is None or row.expires_at <= utcnow():
            return None
        user = _info(conn, user_id=row.user_id)
    if user is None or user.disabled:
        return None
    return SessionInfo(user, row.csrf_token, row.expires_at)


def end_session(engine: Engine, token: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(LoginSession).where(LoginSession.token_sha256 == _digest(token)))
