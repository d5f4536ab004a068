"""Faults injected where the real ones came from, for the hostile tests of the loops: the inputs that caused
them are refused earlier now, so the tests raise the same exception types at the same places."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from jwcrypto.common import JWException

from channels.fitconnect import SubmissionRef, SubscriberClient
from channels.fitconnect.intake import Intake
from hub.errors import HubError
from hub.models import Message
from tests.hostile.fitconnect_world import World


def _unicode() -> Exception:
    return UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed")


#: what escaped before: each is raised where the real one came from
UNEXPECTED: dict[str, Callable[[], BaseException]] = {
    "RecursionError": lambda: RecursionError("maximum recursion depth exceeded"),
    "MemoryError": MemoryError,
    "UnicodeEncodeError": _unicode,
    "KeyError": lambda: KeyError("contentStructure"),
    "JWException": lambda: JWException("invalid JWE"),
}


class Faulty(SubscriberClient):
    """The real subscriber, except that fetching a submission in ``poison`` raises ``fault()`` (and, when
    ``listing`` is set, listing raises it once)."""

    def __init__(self, config: Any, fault: Callable[[], BaseException], **kw: Any) -> None:
        super().__init__(config, **kw)
        self.fault, self.poison, self.listing = fault, set[str](), False

    def pending(self, destination_id: str) -> Iterator[SubmissionRef]:
        if self.listing:
            self.listing = False
            raise self.fault()
        return super().pending(destination_id)

    def fetch(self, ref: SubmissionRef, workdir: Path) -> Any:
        if ref.submission_id in self.poison:
            raise self.fault()
        return super().fetch(ref, workdir)


def faulty_channel(w: World, fault: Callable[[], BaseException]) -> tuple[Intake, Faulty]:
    fc = w.config.fitconnect
    assert fc is not None
    client = Faulty(fc, fault, json_limits=w.config.limits.json_limits(fc.max_data_bytes))
    return Intake(fc, w.config, w.engine, client), client


class FaultyAnswer:
    """A channel (:class:`hub.ports.Channel`) that answers like a delivery service that is fine, except that
    rejecting raises what nobody expected."""

    name = "fitconnect"
    answers = True

    def __init__(self, fault: Callable[[], BaseException]) -> None:
        self.fault = fault

    def verify(self, message: Message) -> None:
        return None

    def close(self) -> None:
        return None

    def accept(self, message: Message) -> str:
        return "accepted"

    def reject(self, message: Message, error: HubError, stage: str) -> str:
        raise self.fault()


class Stall:
    """ASGI wrapper: while ``closed`` is set, every request waits (a delivery service that hangs)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.closed = threading.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        while scope["type"] == "http" and self.closed.is_set():
            await asyncio.sleep(0.01)
        await self.app(scope, receive, send)
