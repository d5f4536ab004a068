"""The worker loop: claim a batch of due messages, run it through the pipeline, write the results, repeat.

Any number of workers (threads in ``xhub serve``, processes from ``xhub worker``, on any number of
machines sharing one PostgreSQL) can run at once; :mod:`hub.queue` guarantees one owner per message.
The loop sleeps only when nothing is due, never inside an attempt; it wakes early when told there is
new work (the intake in the same process, or a PostgreSQL ``NOTIFY``, see :mod:`hub.wakeup`).

One batch is two transactions: the claim (``worker.batch_size`` messages with their parts and deliveries,
and the target breakers, :func:`hub.queue.claim_batch`) and the results (:mod:`hub.journal`); see
docs/throughput.md.

Shutdown: the first SIGTERM/SIGINT lets the current message finish and its batch's results be written (the
rest of the batch is handed back unprocessed), then the worker exits; a second one interrupts it, and the
leases are handed back so another worker continues at once.

Isolation: an exception that escapes the pipeline for one message (a bug, ``RecursionError``,
``MemoryError``, an encoder refusing a character, …) is recorded on that message as a failed attempt with
its type and code location (``retry_wait``, then ``dead`` when the route's retry budget is spent), and the
loop goes on with the next message. A lost database connection is not held against the message: the loop
waits and tries again. The loop itself runs under a :class:`~hub.supervisor.Supervisor` (restarted with
backoff if it dies anyway) and writes its heartbeat to ``loop_heartbeats`` for ``/health/ready``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import FrameType

from sqlalchemy import Connection, Engine, update
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from hub import queue, store
from hub.db import is_postgres, transaction
from hub.models import Message, utcnow
from hub.pipeline.runner import LeaseLost, Runner
from hub.ports import AdapterFactory, Channels
from hub.retry import decide
from hub.routing import RuleHolder
from hub.settings import Settings
from hub.statemachine import TERMINAL, IllegalTransition, Status, Transition, note, transition
from hub.supervisor import HEARTBEAT_SECONDS, Heartbeats, Supervisor, describe
from hub.targets import TargetGate, release_waiting
from hub.wakeup import Listener

__all__ = ["Worker", "install_signal_handlers", "worker_id"]

log = logging.getLogger(__name__)

#: the database is unreachable or overloaded: nobody's fault but the infrastructure's
DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeout)
#: how often an idle worker looks for messages parked on a circuit that closed without releasing them
TIDY_SECONDS = 30.0


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Worker:
    config: Settings
    engine: Engine
    rules: RuleHolder | None = None  # loaded from the configuration when not given
    build_adapter: AdapterFactory = field(kw_only=True)  # the composition root wires these two
    channels: Channels = field(kw_only=True)
    owner: str = field(default_factory=worker_id)
    stop: threading.Event = field(default_factory=threading.Event)
    wake: threading.Event = field(default_factory=threading.Event)  # set by the intake: new work
    processed: int = 0

    def __post_init__(self) -> None:
        if self.rules is None:
            self.rules = RuleHolder(self.config)
        self.runner = Runner(self.config, self.engine, self.owner, self.rules, build_adapter=self.build_adapter,
                             channels=self.channels, stop=self.stop)
        self.lease = timedelta(seconds=self.config.worker.lease_seconds)
        self.supervisor = Supervisor("worker", stop=self.stop, heartbeats=Heartbeats(self.engine),
                                     loop_id=f"worker@{self.owner}")
        self._unreleased: set[uuid.UUID] = set()  # leases to hand back once the database answers again
        self._max_messages: int | None = None
        self._tidy_due = 0.0

    def run_once(self) -> bool:
        """Claim a batch of due messages and process it. ``False`` when nothing was due."""
        self._release_left_over()
        gate = self.runner.gate
        limit = self.config.worker.batch_size
        if self._max_messages is not None:
            limit = max(1, min(limit, self._max_messages - self.processed))

        def claim(conn: Connection) -> list[queue.Claimed]:
            probes = gate.begin(conn, self.config.targets)
            return queue.claim_batch(conn, self.owner, self.lease, limit, probes)

        try:
            claimed = transaction(self.engine, claim)
        except BaseException:
            gate.end()
            raise
        if not claimed:
            gate.end()
            return False
        ids = [c.message.id for c in claimed]
        self.runner.leases = {c.message.id: c.lease_expires_at for c in claimed}
        outcomes: dict[uuid.UUID, Status | Exception] = {}
        try:
            with _Heartbeat(self.engine, ids, self.owner, self.lease, self.supervisor.beat, gate, self.runner.leases):
                outcomes = self.runner.process_batch(claimed)
        except DATABASE_DOWN:
            raise  # not these messages' fault: the loop waits, the messages keep their place
        except Exception as exc:  # a bug outside the stages: recorded on each message of the batch, the loop goes on
            outcomes = {mid: exc for mid in ids if mid not in outcomes}
        finally:
            for message_id, outcome in outcomes.items():
                if isinstance(outcome, LeaseLost):
                    log.warning("%s", outcome)
                elif isinstance(outcome, Exception):
                    self._contain(message_id, outcome)
                else:
                    log.info("message %s → %s", message_id, outcome, extra={"message_id": str(message_id)})
            # Finished messages gave their lease back with their results; the rest (interrupted, failed, lost)
            # is handed back now, or once the database answers again, so nobody waits for the leases to expire.
            self._unreleased.update(mid for mid in ids if not isinstance(outcomes.get(mid), Status))
            self._release_left_over()
        self.processed += len(claimed)
        return True

    def _release_left_over(self) -> None:
        if not self._unreleased:
            return
        try:
            with self.engine.begin() as conn:
                queue.release_batch(conn, sorted(self._unreleased), self.owner)
        except DATABASE_DOWN:
            return
        self._unreleased.clear()

    def _tidy(self) -> None:
        """Now and then, when idle: release messages still parked on a circuit that closed by other means."""
        if time.monotonic() < self._tidy_due:
            return
        self._tidy_due = time.monotonic() + TIDY_SECONDS
        with self.engine.begin() as conn:
            released = release_waiting(conn)
        if released:
            log.info("released %d messages waiting on circuits that are closed", released)

    def _contain(self, message_id: uuid.UUID, exc: Exception) -> None:
        """Record an exception that escaped the pipeline as a failed attempt of this message: ``retry_wait``
        with the route's backoff, ``dead`` once its budget is spent. Never raises for the message's sake."""
        what = self.supervisor.failed(exc)
        log.error("worker %s: message %s failed unexpectedly (%s)", self.owner, message_id, what)
        log.debug("worker %s: message %s failed", self.owner, message_id, exc_info=exc)
        try:
            with self.engine.begin() as conn:
                message = store.get(conn, message_id)
                if message is None or message.lease_owner != self.owner:
                    return  # gone, or taken over meanwhile: the new owner decides
                status = Status(message.status)
                actor, reason = f"worker:{self.owner}", f"internal error: {what}"
                if status in TERMINAL:
                    note(conn, message_id, f"{reason} (after the message reached {status})", actor=actor,
                         status=status)
                    return
                assert self.rules is not None
                policy = self.rules.current.retry_for(message.route, self.config.retry)
                decision = decide(policy, message.attempts, utcnow())
                detail = {"error": type(exc).__name__, "where": what, "attempt": decision.attempts,
                          "max_attempts": policy.max_attempts}
                resume = Status(message.resume_status or Status.RECEIVED) if status is Status.RETRY_WAIT else status
                if decision.give_up:
                    change = Transition(reason=f"retry budget spent after {decision.attempts} attempts; last error: "
                                        f"{reason}", detail=detail, attempts=decision.attempts, last_error=reason,
                                        resume_status=resume)
                    transition(conn, message_id, Status.DEAD, change, actor=actor, from_statuses={status},
                               lease_owner=self.owner)
                elif status is Status.RETRY_WAIT:  # failed while resuming: no status to leave, count the attempt
                    note(conn, message_id, reason, actor=actor, kind="attempt", detail=detail, status=status)
                    conn.execute(update(Message).where(Message.id == message_id, Message.lease_owner == self.owner)
                                 .values(attempts=decision.attempts, next_attempt_at=decision.retry_at,
                                         last_error=reason, updated_at=utcnow()))
                else:
                    change = Transition(reason=reason, detail=detail, attempts=decision.attempts,
                                        next_attempt_at=decision.retry_at, resume_status=status, release_lease=True,
                                        last_error=reason)
                    transition(conn, message_id, Status.RETRY_WAIT, change, actor=actor, from_statuses={status},
                               lease_owner=self.owner)
        except (SQLAlchemyError, IllegalTransition) as not_recorded:  # released below; the next claim retries
            log.warning("worker %s: the failure of message %s was not recorded: %s", self.owner, message_id,
                        describe(not_recorded))

    def shutdown(self) -> None:
        self.stop.set()
        self.wake.set()

    def run(self, *, exit_when_idle: bool = False, max_messages: int | None = None) -> int:
        """Loop until :attr:`stop` is set (or, with ``exit_when_idle``, until nothing is due), under
        :attr:`supervisor`: restarted with backoff should the loop itself die."""
        log.info("worker %s started", self.owner)
        self._max_messages = max_messages
        listener = Listener(self.engine, self.wake).start() if self.config.worker.listen and is_postgres(
            self.engine) else None
        try:
            self.supervisor.run(lambda: self._loop(exit_when_idle, max_messages))
        finally:
            if listener is not None:
                listener.close()
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
            except DATABASE_DOWN as exc:  # database unreachable or locked out: wait, then try again
                failures += 1
                log.error("worker %s: database error (%s); retrying", self.owner, describe(exc))
                self.supervisor.failed(exc)
                busy = False
            self.supervisor.beat(success=failures == 0, items=int(busy))
            if not busy:
                if exit_when_idle and failures == 0:
                    break
                if failures == 0:
                    try:
                        self._tidy()
                    except DATABASE_DOWN as exc:
                        log.warning("worker %s: could not release parked messages: %s", self.owner, describe(exc))
                delay = self.config.worker.poll_interval_seconds * min(2**failures, 30)
                self.wake.wait(delay)
                self.wake.clear()


class _Heartbeat:
    """Renews the leases of a batch every third of their duration while it is being processed (one update for
    the whole batch), together with the target concurrency slots of the calls in flight (``slots``), and keeps
    the loop's heartbeat going meanwhile (``beat``). Each renewal is noted in ``leases``, which the runner
    consults before a visible step instead of asking the database.

    A delivery may legitimately take longer than a lease (a slow SOAP service); without this, another
    worker would take the message over, or call the target in its slot, while the first is still talking to
    the target. If this process dies, the renewals stop and the leases and the slots expire as designed.
    Should a message lease be lost, the slot is still renewed: the call in flight still occupies the target.
    """

    def __init__(self, engine: Engine, message_ids: list[uuid.UUID], owner: str, lease: timedelta,
                 beat: Callable[[], None], slots: TargetGate, leases: dict[uuid.UUID, datetime]) -> None:
        self.engine, self.message_ids, self.owner, self.lease, self.beat = engine, message_ids, owner, lease, beat
        self.slots, self.leases = slots, leases
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{message_ids[0]}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        # the leases are renewed every third of their duration; the loop's heartbeat at least as often as it is due
        renew_every = self.lease.total_seconds() / 3
        due = time.monotonic() + renew_every
        while not self._done.wait(min(renew_every, HEARTBEAT_SECONDS)):
            self.beat()  # the loop is alive, busy with a (long) batch
            if time.monotonic() < due:  # a tick early at worst: renewed one tick later, well within the lease
                continue
            due = time.monotonic() + renew_every
            try:
                self._renew()
            except SQLAlchemyError as exc:  # this thread must not die: the runner's fenced steps stay safe
                log.warning("lease renewal for a batch of %d failed: %s", len(self.message_ids), describe(exc))

    def _renew(self) -> None:
        """One renewal, in one transaction. Leases lost or given back are not renewed again."""
        with self.engine.begin() as conn:
            renewed = queue.renew_batch(conn, self.message_ids, self.owner, self.lease)
            for target in self.slots.renew(conn):
                log.warning("worker %s lost its concurrency slot for %s during a call (renewals failed for a "
                            "whole lease); the target may see one call more than its limit", self.owner, target)
        self.message_ids = [m for m in self.message_ids if m in renewed]
        self.leases.update(renewed)


def install_signal_handlers(stop: threading.Event) -> None:
    """First SIGTERM/SIGINT: finish the current message and stop. Second: interrupt now."""

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        log.info("received %s; finishing the current message, signal again to interrupt", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
