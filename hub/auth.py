"""Bearer tokens for senders and operators, stored as SHA-256 hashes in the configuration.

Tokens are random (``xhub token new`` makes 32 bytes, URL-safe), so a plain SHA-256 is the right hash:
there is nothing to brute-force. The lookup compares hashes in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Literal

from hub.config import HubConfig

__all__ = ["Principal", "authenticate", "hash_token", "new_token"]


@dataclass(frozen=True)
class Principal:
    kind: Literal["sender", "operator"]
    name: str
    tenant: str | None  # None for operators: they see every tenant


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return "xhub_" + secrets.token_urlsafe(32)


def authenticate(config: HubConfig, token: str) -> Principal | None:
    digest = hash_token(token)
    found: Principal | None = None
    for sender in config.senders:
        if hmac.compare_digest(sender.token_sha256.get_secret_value(), digest):
            found = Principal("sender", sender.name, sender.tenant)
    for operator in config.operators:
        if hmac.compare_digest(operator.token_sha256.get_secret_value(), digest):
            found = Principal("operator", operator.name, None)
    return found
