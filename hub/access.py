"""Who may see and do what: the caller of the console and the operations API, and its tenant scope.

A :class:`Caller` is a console user (:mod:`hub.users`) or an operator bearer token from the configuration
(which, as before, sees every tenant and acts as an ``operator``). Every query of the operations API narrows
to the caller's tenants (:meth:`Caller.scope`), and a message of another tenant is answered as if it did not
exist (404, never 403: even its existence is not told).

:class:`LoginThrottle` slows down password guessing: after ``limit`` failed logins for one user name or one
address within ``window`` every further attempt for it is refused until the window has passed, with the
same answer whether the name exists or not (an address gets four times the attempts of a name).
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
    """Failed logins per user name and per address in a sliding window; in memory, per process.

    A name is blocked after ``limit`` failures, an address after ``address_limit`` (four times as many by
    default: the operators of one town may share one address, and one person's typos must not lock out all).
    """

    def __init__(self, limit: int = 5, window_seconds: float = 300.0, address_limit: int | None = None,
                 max_keys: int = 100_000) -> None:
        self.limits = {"name": limit, "addr": address_limit or 4 * limit}
        self.window = window_seconds
        self.max_keys = max_keys
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _keys(name: str, addr: str) -> dict[str, str]:
        return {"name": f"name:{name.lower()}", "addr": f"addr:{addr}"}

    def blocked(self, name: str, addr: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(key, now)) >= self.limits[kind]
                       for kind, key in self._keys(name, addr).items())

    def failed(self, name: str, addr: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) >= self.max_keys:  # a flood of names: forget the oldest rather than grow
                for stale in list(self._failures)[: self.max_keys // 10]:
                    del self._failures[stale]
            for key in self._keys(name, addr).values():
                self._recent(key, now).append(now)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(f"name:{name.lower()}", None)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and times[0] < now - self.window:
            times.popleft()
        return times
