"""The worker loop: claim a due message, run it through the pipeline, repeat.

Any number of workers (threads in ``xhub serve``, processes from ``xhub worker``, on any number of
machines sharing one PostgreSQL) can run at once; :mod:`hub.queue` guarantees one owner per message.
The loop sleeps only when nothing is due, never inside an attempt.

Shutdown: the first SIGTERM/SIGINT lets the current message finish, then the worker exits; a second one
interrupts it, and the lease is handed back so another worker continues at once.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from types import FrameType

from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from hub import queue
from hub.config import HubConfig
from hub.pipeline.base import Answerer
from hub.pipeline.runner import LeaseLost, Runner
from hub.rules import RuleHolder

__all__ = ["Worker", "install_signal_handlers", "worker_id"]

log = logging.getLogger(__name__)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Worker:
    config: HubConfig
    engine: Engine
    rules: RuleHolder | None = None  # loaded from the configuration when not given
    answer: Answerer | None = None  # answers FIT-Connect senders (hub.runtime.answerer)
    owner: str = field(default_factory=worker_id)
    stop: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)  # set by the intake: new work
    processed: int = 0

    def __post_init__(self) -> None:
        if self.rules is None:
            self.rules = RuleHolder(self.config)
        self.runner = Runner(self.config, self.engine, self.owner, self.rules, answer=self.answer)
        self.lease = timedelta(seconds=self.config.worker.lease_seconds)

    def run_once(self) -> bool:
        """Claim and process one message. ``False`` when nothing was due."""
        claim = queue.claim_next(self.engine, self.owner, self.lease)
        if claim is None:
            return False
        try:
            with _Heartbeat(self.engine, claim.message_id, self.owner, self.lease):
                status = self.runner.process(claim.message_id)
            log.info("message %s → %s", claim.message_id, status)
        except LeaseLost as exc:
            log.warning("%s", exc)
        finally:
            # A no-op when the pipeline already released the lease (terminal status or retry_wait).
            with self.engine.begin() as conn:
                queue.release(conn, claim.message_id, self.owner)
        self.processed += 1
        return True

    def shutdown(self) -> None:
        self.stop.set()
        self.wake.set()

    def run(self, *, exit_when_idle: bool = False, max_messages: int | None = None) -> int:
        """Loop until :attr:`stop` is set (or, with ``exit_when_idle``, until nothing is due)."""
        log.info("worker %s started", self.owner)
        try:
            self._loop(exit_when_idle, max_messages)
        finally:
            self.runner.close()
        log.info("worker %s stopped after %d messages", self.owner, self.processed)
        return self.processed

    def _loop(self, exit_when_idle: bool, max_messages: int | None) -> None:
        failures = 0
        while not self.stop.is_set():
            if max_messages is not None and self.processed >= max_messages:
                break
            try:
                busy = self.run_once()
                failures = 0
            except OperationalError as exc:  # database unreachable or locked out: wait, then try again
                failures += 1
                log.error("worker %s: database error (%s); retrying", self.owner, exc.orig or exc)
                busy = False
            except Exception:  # a bug: keep the worker alive, the message keeps its lease until it expires
                failures += 1
                log.exception("worker %s: unexpected error", self.owner)
                busy = False
            if not busy:
                if exit_when_idle and failures == 0:
                    break
                delay = self.config.worker.poll_interval_seconds * min(2**failures, 30)
                self.wake.wait(delay)
                self.wake.clear()


class _Heartbeat:
    """Renews the lease every third of its duration while a message is being processed.

    A delivery may legitimately take longer than a lease (a slow SOAP service); without this, another
    worker would take the message over while the first is still talking to the target. If this process
    dies, the renewals stop and the lease expires as designed.
    """

    def __init__(self, engine: Engine, message_id: uuid.UUID, owner: str, lease: timedelta) -> None:
        self.engine, self.message_id, self.owner, self.lease = engine, message_id, owner, lease
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{message_id}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        interval = self.lease.total_seconds() / 3
        while not self._done.wait(interval):
            try:
                with self.engine.begin() as conn:
                    if not queue.renew(conn, self.message_id, self.owner, self.lease):
                        return  # lost or released: the runner notices at its next fenced step
            except OperationalError as exc:
                log.warning("lease renewal for %s failed: %s", self.message_id, exc.orig or exc)


def install_signal_handlers(stop: threading.Event) -> None:
    """First SIGTERM/SIGINT: finish the current message and stop. Second: interrupt now."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("received %s; finishing the current message, signal again to interrupt", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
