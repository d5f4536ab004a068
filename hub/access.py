"""Who may see and do what: the caller of the console and the operations API, and its tenant scope.

A :class:`Caller` is a console user (:mod:`hub.users`) or an operator bearer token from the configuration
(which, as before, sees every tenant and acts as an ``operator``). Every query of the operations API narrows
to the caller's tenants (:meth:`Caller.scope`), and a message of another tenant is answered as if it did not
exist (404, never 403: even its existence is not told).

:class:`LoginThrottle` slows down password guessing: after ``limit`` failed logins for one user name or one
address within ``window`` every further attempt for it is refused until the window has passed, with the
same answer whether the name exists or not.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, true

from hub.models import Message
from hub.users import Role

__all__ = ["Caller", "LoginThrottle"]

_RANK = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}


@dataclass(frozen=True)
class Caller:
    name: str
    role: Role
    tenants: frozenset[str] | None  # None: every tenant
    kind: str = "user"  # user | token
    remote_addr: str | None = None

    @property
    def actor(self) -> str:
        """How the trail names the caller: ``user:<name>`` or ``operator:<token name>``."""
        return f"user:{self.name}" if self.kind == "user" else f"operator:{self.name}"

    def at_least(self, role: Role) -> bool:
        return _RANK[self.role] >= _RANK[role]

    @property
    def can_act(self) -> bool:
        return self.at_least(Role.OPERATOR)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def sees(self, tenant: str | None) -> bool:
        return self.tenants is None or (tenant is not None and tenant in self.tenants)

    def scope(self, column: Any = Message.tenant) -> ColumnElement[bool]:
        """The WHERE clause that keeps a query inside the caller's tenants."""
        if self.tenants is None:
            return true()
        return column.in_(sorted(self.tenants))  # type: ignore[no-any-return]


class LoginThrottle:
    """Failed logins per key (user name, address) in a sliding window; in memory, per process."""

    def __init__(self, limit: int = 5, window_seconds: float = 300.0, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window = window_seconds
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(k, now)) >= self.limit for k in keys)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) >= self.max_keys:  # a flood of names: forget the oldest rather than grow
                for stale in list(self._failures)[: self.max_keys // 10]:
                    del self._failures[stale]
            for k in keys:
                self._recent(k, now).append(now)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._failures.pop(key, None)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] < now - self.window:
            times.popleft()
        return times
