"""Bearer tokens for senders and operators, stored as SHA-256 hashes in the configuration.

Tokens are random (``xhub token new`` makes 32 bytes, URL-safe), so a plain SHA-256 is the right hash:
there is nothing to brute-force. The lookup compares hashes in constant time.

:data:`Auth` is the FastAPI dependency every authenticated route of the API (the REST intake's and the
operator's) declares; it reads the senders and operators from the app's settings (``app.state.config``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, Literal

from fastapi import Depends, Request

from hub.problems import Problem, single_header
from hub.settings import Settings

__all__ = ["Auth", "Principal", "authenticate", "hash_token", "new_token", "principal"]


@dataclass(frozen=True)
class Principal:
    kind: Literal["sender", "operator"]
    name: str
    tenant: str | None  # None for operators: they see every tenant


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return "xhub_" + secrets.token_urlsafe(32)


def authenticate(config: Settings, token: str) -> Principal | None:
    digest = hash_token(token)
    found: Principal | None = None
    for sender in config.senders:
        if hmac.compare_digest(sender.token_sha256.get_secret_value(), digest):
            found = Principal("sender", sender.name, sender.tenant)
    for operator in config.operators:
        if hmac.compare_digest(operator.token_sha256.get_secret_value(), digest):
            found = Principal("operator", operator.name, None)
    return found


def principal(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``; 401 problem otherwise (the token is never echoed)."""
    challenge = {"WWW-Authenticate": 'Bearer realm="xoev-hub"'}
    authorization = single_header(request, "authorization")
    if not authorization:
        raise Problem(401, "unauthorized", "Authentication required",
                      "send an 'Authorization: Bearer <token>' header", headers=challenge)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "unauthorized", "Authentication required",
                      "the Authorization header must use the Bearer scheme", headers=challenge)
    settings: Settings = request.app.state.config
    found = authenticate(settings, token.strip())
    if found is None:
        raise Problem(401, "invalid-token", "Invalid token",
                      "the bearer token is not known to this hub", headers=challenge)
    return found


Auth = Annotated[Principal, Depends(principal)]
