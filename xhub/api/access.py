"""Who calls the operations API and the console: a FastAPI dependency that makes a :class:`~hub.access.Caller`.

* ``Authorization: Bearer <token>``: an operator token of the configuration (as before: every tenant, the
  ``operator`` role); a sender token is refused (403): senders have their own API.
* the console's session cookie: the user's role and tenants. A request that changes something (any method but
  GET/HEAD) must also carry the session's CSRF token, in the ``X-CSRF-Token`` header (API) or the form's
  ``csrf`` field (console, checked by the page). A cookie alone never changes anything.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from hub import users
from hub.access import Caller, LoginThrottle
from hub.auth import principal
from hub.blobs import BlobStore
from hub.ports import Channels
from hub.problems import Problem
from hub.users import Role, SessionInfo
from xhub.config import HubConfig

__all__ = ["COOKIE", "CallerDep", "Ops", "OpsState", "caller_of", "client_addr", "require", "session_of"]

COOKIE = "xhub_session"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class OpsState:
    """What the operations API and the console share (kept on ``app.state.ops``)."""

    config: HubConfig
    engine: Engine
    channels: Channels  # for the answers of an operator's reject
    blobs: BlobStore
    throttle: LoginThrottle

    @property
    def session_lifetime(self) -> timedelta:
        return timedelta(hours=self.config.console.session_hours)


def _ops(request: Request) -> OpsState:
    found: OpsState = request.app.state.ops
    return found


Ops = Annotated[OpsState, Depends(_ops)]


def client_addr(request: Request) -> str | None:
    return request.client.host if request.client else None


async def session_of(request: Request, ops: OpsState) -> SessionInfo | None:
    """The console session of the request's cookie (cached on the request)."""
    if hasattr(request.state, "session"):
        cached: SessionInfo | None = request.state.session
        return cached
    token = request.cookies.get(COOKIE)
    found = await run_in_threadpool(users.session_user, ops.engine, token) if token else None
    request.state.session = found
    return found


def _from_session(found: SessionInfo, request: Request) -> Caller:
    user = found.user
    tenants = None if user.role is Role.ADMIN else frozenset(user.tenants)
    return Caller(user.name, user.role, tenants, "user", client_addr(request))


async def caller_of(request: Request, ops: Ops) -> Caller:
    if request.headers.get("authorization"):
        who = principal(request)
        if who.kind != "operator":
            raise Problem(403, "not-an-operator", "Operators only",
                          "the operations API is for operators; senders read their messages at /api/v1/messages")
        return Caller(who.name, Role.OPERATOR, None, "token", client_addr(request))
    found = await session_of(request, ops)
    if found is None:
        raise Problem(401, "unauthorized", "Authentication required",
                      "send an operator's 'Authorization: Bearer <token>' header or log in to the console",
                      headers={"WWW-Authenticate": 'Bearer realm="xoev-hub"'})
    if request.method not in SAFE_METHODS:
        sent = request.headers.get("x-csrf-token", "")
        if not hmac.compare_digest(sent.encode(), found.csrf_token.encode()):
            raise Problem(403, "csrf-token-missing", "CSRF token missing or wrong",
                          "a change made with the console's session needs its CSRF token in X-CSRF-Token")
    return _from_session(found, request)


CallerDep = Annotated[Caller, Depends(caller_of)]


def require(caller: Caller, role: Role, what: str) -> None:
    if not caller.at_least(role):
        raise Problem(403, "role-insufficient", "Not allowed for your role",
                      f"{what} needs the role {role.value} (you are {caller.role.value})")
