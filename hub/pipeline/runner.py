"""Runs the stages for a batch of claimed messages and applies each outcome through the state machine.

The runner is the only pipeline code that talks to the database. For every message of the batch, and every
stage, it:

1. calls ``stage.run(ctx)`` (the worker's heartbeat keeps the batch's leases alive meanwhile; a stage about
   to do something visible, like a delivery, first checks it still holds the lease: ``ctx.keep_lease()``,
   against the last renewal the heartbeat made);
2. on success, records the move to ``stage.produces`` in the batch's :class:`~hub.journal.Journal`,
   checked against the state machine at once, with the delivery rows the stage asked for;
3. on :class:`~hub.errors.Invalid` → ``rejected``; :class:`~hub.errors.Permanent` → ``dead``;
   :class:`~hub.errors.Retriable` → ``retry_wait`` with ``next_attempt_at`` from the retry policy, or
   ``dead`` once the route's budget is spent; :class:`~hub.errors.Deferred` → ``retry_wait`` without
   spending it. The message remembers where to resume. A message whose target's circuit is open waits
   for it to close (``waiting_on``, see :mod:`hub.targets`) instead of coming back at every cool-down.

Each attempt at a target is recorded on its delivery row (one ``delivery`` event per attempt). When the
batch is done, everything is written in one transaction, fenced by the leases (:meth:`Journal.flush`); a
message whose lease was lost meanwhile is dropped from it (:class:`LeaseLost`) and the rest is kept.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from hub import metrics, queue, sealing, store, tracing
from hub.errors import Deferred, HubError, Invalid, Permanent, Retriable
from hub.journal import GuardFailed, Journal
from hub.logcontext import bound
from hub.models import Delivery, DeliveryStatus, Message, MessagePart, utcnow
from hub.pipeline import STAGES
from hub.pipeline.base import Stage, StageContext
from hub.ports import AdapterConfigError, AdapterFactory, Channels, DeliveryResult, OutboundAdapter
from hub.retry import decide
from hub.routing import RuleHolder, RuleSet
from hub.settings import Settings
from hub.statemachine import (
    TERMINAL,
    DeliveryChange,
    IllegalDeliveryTransition,
    IllegalTransition,
    Status,
    Transition,
)
from hub.targets import PARKED, GuardedAdapter, TargetGate

__all__ = ["LeaseLost", "Runner"]

log = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    """Another worker took the message over (our lease expired); stop touching it."""


@dataclass
class _Run:
    """One message of a batch: its row, what was loaded with it, and until when its lease is known to hold."""

    message: Message
    parts: list[MessagePart] | None = None  # None: loaded when a stage asks
    deliveries: list[Delivery] | None = None
    lease_until: datetime | None = None  # None: unknown, ask the database before a visible step


class Runner:
    def __init__(self, config: Settings, engine: Engine, owner: str, rules: RuleHolder, *,
                 build_adapter: AdapterFactory, channels: Channels, stages: tuple[Stage, ...] = STAGES,
                 stop: threading.Event | None = None) -> None:
        self.config = config
        self.stop = stop or threading.Event()  # set: finish the message in hand, leave the rest of the batch
        self.build_adapter = build_adapter  # the composition root's registry (xhub.registry)
        self.channels = channels
        self.engine = engine
        self.owner = owner
        self.rules = rules
        self.stages = stages
        self.lease = timedelta(seconds=config.worker.lease_seconds)
        self._adapters: dict[str, GuardedAdapter] = {}
        self._facts: dict[str, Any] = {}
        self._rules: RuleSet = rules.current
        self.gate = TargetGate(engine, owner, self.lease)
        self.leases: dict[uuid.UUID, datetime] = {}  # the batch's leases as last renewed (the heartbeat's)

    # -- adapters are built once per process and target, and reused across messages
    def adapter(self, target: str) -> GuardedAdapter:
        if target not in self._adapters:
            cfg = self.config.targets.get(target)
            if cfg is None:
                raise Permanent(f"target {target!r} is not configured")
            try:
                adapter = self.build_adapter(target, cfg)
            except AdapterConfigError as exc:
                raise Permanent(str(exc)) from None
            timed = cast(OutboundAdapter, metrics.TimedAdapter(target, adapter))
            self._adapters[target] = GuardedAdapter(self.gate, target, cfg, timed)
        return self._adapters[target]

    def close(self) -> None:
        """Release what the adapters hold (HTTP connection pools, SOAP clients)."""
        for adapter in self._adapters.values():
            adapter.close()
        self._adapters.clear()

    def process(self, message_id: uuid.UUID) -> Status:
        """Run one message (which the caller has claimed) as far as it goes. Returns its final status.

        Raises :class:`LeaseLost` when the caller does not (or no longer) hold its lease."""
        message = self._load(message_id)
        with self.engine.begin() as conn:
            self.gate.begin(conn, self.config.targets)
        outcome = self.process_batch([_Run(message)])[message_id]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    def process_batch(self, runs: Sequence[_Run | queue.Claimed]) -> dict[uuid.UUID, Status | Exception]:
        """Run a claimed batch (the gate already begun in the claim transaction) and write all outcomes in one
        transaction (:class:`~hub.journal.Journal`). Per message: its final status, :class:`LeaseLost`, or the
        exception that escaped the pipeline (nothing of that message is written; the worker records it).

        A database error stops the batch: what was finished is written if the database still answers, and
        the error is raised (the rest keeps its lease until the worker gives it back)."""
        journal = Journal(self.owner)
        journal.after.append(self.gate.flush)
        self._rules = self.rules.current  # one rule set for the whole batch, even if a reload happens meanwhile
        out: dict[uuid.UUID, Status | Exception] = {}
        try:
            try:
                for item in runs:
                    if self.stop.is_set():  # shutting down: the rest of the batch is handed back unprocessed
                        break
                    run = item if isinstance(item, _Run) else _Run(
                        item.message, item.parts, item.deliveries,
                        self.leases.get(item.message.id, item.lease_expires_at))
                    self._process_one(run, journal, out)
            except SQLAlchemyError:
                with contextlib.suppress(SQLAlchemyError):
                    self._write(journal, out)
                raise
            self._write(journal, out)
        finally:
            self.gate.end()
        return out

    def _process_one(self, run: _Run, journal: Journal, out: dict[uuid.UUID, Status | Exception]) -> None:
        message_id = run.message.id
        journal.begin(run.message, run.deliveries)
        message = run.message
        try:
            with (bound(message_id=str(message_id), tenant=message.tenant, channel=message.channel),
                  tracing.span("process", parent=tracing.parent_of(message.attributes), message_id=message_id,
                               tenant=message.tenant, channel=message.channel)):
                out[message_id] = self._process(run, journal)
        except SQLAlchemyError:
            journal.discard(message_id)
            raise
        except (LeaseLost, IllegalTransition) as exc:
            journal.discard(message_id)
            out[message_id] = exc if isinstance(exc, LeaseLost) else LeaseLost(str(exc))
        except Exception as exc:  # outside the stages' own handling: the worker records it on the message
            journal.discard(message_id)
            out[message_id] = exc

    def _write(self, journal: Journal, out: dict[uuid.UUID, Status | Exception]) -> None:
        """The batch in one transaction; should a guard not match, message by message (the others stay)."""
        if not len(journal) and not journal.after:
            return
        try:
            with self.engine.begin() as conn:
                journal.flush(conn)
            _count(journal)
            return
        except (GuardFailed, IntegrityError) as exc:
            log.warning("worker %s: the batch's results did not apply as a whole (%s); writing them one by one",
                        self.owner, exc)
        for single in journal.split():
            try:
                with self.engine.begin() as conn:
                    single.flush(conn)
                _count(single)
            except (GuardFailed, IntegrityError) as exc:
                for message_id in single.entries:
                    out[message_id] = LeaseLost(f"message {message_id}: not written, the lease is no longer held "
                                                f"by this worker ({self.owner}): {exc}")

    def _process(self, run: _Run, journal: Journal) -> Status:
        message = run.message
        status = Status(message.status)
        ctx = self._context(run, journal)
        if status is Status.RETRY_WAIT:
            waiting = self._circuit_open_for(ctx) if message.resume_status == Status.ROUTED else None
            if waiting is not None:  # back too early: wait for the circuit instead of coming back again and again
                journal.park(message.id, waiting, PARKED, f"waits until the circuit of {waiting} closes",
                             detail={"target": waiting, "circuit": "open"})
                return Status.RETRY_WAIT
            status = self._resume(message, journal)
        while status not in TERMINAL and status is not Status.RETRY_WAIT:
            for stage in (s for s in self.stages if s.consumes is status):
                moved = self._run_stage(stage, ctx, status, journal)
                if moved is not status:  # advanced, or failed into rejected / dead / retry_wait
                    status = moved
                    break
            else:
                raise RuntimeError(f"no stage moves a message out of status {status}")
        return status

    def _run_stage(self, stage: Stage, ctx: StageContext, status: Status, journal: Journal) -> Status:
        message_id = ctx.message.id
        began = time.perf_counter()
        try:
            with bound(stage=stage.name), tracing.span(f"stage {stage.name}", stage=stage.name):
                result = stage.run(ctx)
        except HubError as exc:
            return self._fail(ctx.message, status, stage.name, exc, journal)
        except (LeaseLost, KeyboardInterrupt, SQLAlchemyError):
            raise
        except Exception as exc:  # a bug in a stage or adapter: keep the message, retry, show the cause
            log.exception("stage %s failed unexpectedly on message %s", stage.name, message_id)
            wrapped = Retriable(
                f"internal error in stage {stage.name}: {type(exc).__name__}: {exc}",
                detail={"exception": type(exc).__name__},
            )
            return self._fail(ctx.message, status, stage.name, wrapped, journal)
        finally:
            metrics.observe_stage(stage.name, time.perf_counter() - began)
        if stage.produces is None:  # a check: a note, written with the next transition
            journal.note(message_id, f"{stage.name}: {result.reason}", detail=result.detail, status=status)
            return status
        self._move(journal, ctx.message, stage.produces,
                   Transition(reason=f"{stage.name}: {result.reason}", detail=result.detail, fields=result.fields),
                   status)
        if result.deliveries:
            journal.create_deliveries(message_id, result.deliveries)
        return stage.produces

    def _move(self, journal: Journal, message: Message, to: Status, change: Transition, origin: Status) -> None:
        """A transition of the batch, checked now (the in-memory ``message`` follows it) and written, fenced by
        the lease, with the batch's results."""
        if self._facts:  # what the stages learnt (detected standard, header ids) is kept even on rejection
            change = replace(change, fields={**self._facts, **(change.fields or {})})
            self._facts.clear()
        journal.transition(message.id, to, change, from_statuses={origin})

    def _fail(self, message: Message, status: Status, stage: str, exc: HubError, journal: Journal) -> Status:
        detail: dict[str, Any] = {"stage": stage, "error": type(exc).__name__, **exc.detail}
        reason = f"{stage}: {exc}"
        channel = self.channels[message.channel]
        if isinstance(exc, Invalid) and channel.answers and stage != "answer":
            # The sender must hear it before the message is closed; a failure to tell it is retried.
            try:
                reason = f"{reason}; {channel.reject(message, exc, stage)}"
            except HubError as answer_failed:
                return self._fail(message, status, "answer", answer_failed, journal)
        target = exc.detail.get("target")
        # The target's circuit is open (now): wait for it to close instead of coming back at every cool-down.
        waiting = target if isinstance(target, str) and self.gate.is_open(target) else None
        if isinstance(exc, Invalid):
            to, change = Status.REJECTED, Transition(reason=reason, detail=detail, last_error=str(exc))
        elif isinstance(exc, Permanent):
            to = Status.DEAD
            change = Transition(reason=reason, detail=detail, last_error=str(exc), resume_status=status)
        elif isinstance(exc, Deferred) or (waiting and exc.detail.get("probe")):
            # Nothing was sent, or it was the circuit's trial call: wait, without spending the retry budget.
            later = exc.retry_after if isinstance(exc, Retriable) else None
            retry_at = PARKED if waiting else utcnow() + timedelta(seconds=later or 1.0)
            detail["retry_at"] = None if waiting else retry_at.isoformat()
            if waiting:
                detail["waiting_on"] = waiting
            to = Status.RETRY_WAIT
            change = Transition(reason=f"deferred: {reason}" + (f" (waits until the circuit of {waiting} closes)"
                                                                   if waiting else ""),
                                detail=detail, next_attempt_at=retry_at, resume_status=status, release_lease=True,
                                waiting_on=waiting)
        else:
            assert isinstance(exc, Retriable)
            policy = self._rules.retry_for(message.route, self.config.retry)
            decision = decide(policy, message.attempts, utcnow(), exc.retry_after)
            detail["attempt"] = decision.attempts
            detail["max_attempts"] = policy.max_attempts
            if decision.give_up:
                to = Status.DEAD
                change = Transition(
                    reason=f"retry budget spent after {decision.attempts} attempts; last error: {reason}",
                    detail=detail,
                    attempts=decision.attempts,
                    last_error=str(exc),
                    resume_status=status,
                )
            else:
                assert decision.retry_at is not None
                detail["retry_at"] = None if waiting else decision.retry_at.isoformat()
                if waiting:
                    detail["waiting_on"] = waiting
                to = Status.RETRY_WAIT
                change = Transition(
                    reason=reason + (f" (waits until the circuit of {waiting} closes)" if waiting else ""),
                    detail=detail,
                    attempts=decision.attempts,
                    next_attempt_at=PARKED if waiting else decision.retry_at,
                    resume_status=status,
                    release_lease=True,
                    last_error=str(exc),
                    waiting_on=waiting,
                )
        self._move(journal, message, to, change, status)
        return to

    def _circuit_open_for(self, ctx: StageContext) -> str | None:
        """A target this routed message still has to reach whose circuit is open, if any."""
        for row in ctx.load_deliveries():
            if row.status is not DeliveryStatus.DELIVERED and self.gate.is_open(row.target):
                return row.target
        return None

    def _resume(self, message: Message, journal: Journal) -> Status:
        resume = Status(message.resume_status or Status.RECEIVED)
        policy = self._rules.retry_for(message.route, self.config.retry)
        change = Transition(reason=f"retrying from {resume} (attempt {message.attempts + 1} of {policy.max_attempts})")
        self._move(journal, message, resume, change, Status.RETRY_WAIT)
        return resume

    def _keep_lease(self, run: _Run) -> None:
        """Before a visible step (a delivery): still ours, for long enough? The heartbeat does the renewing and
        notes its renewals here; only when the lease known here is short (the heartbeat thread was held up, a
        long CPU-bound step) or unknown is the database asked: the lease is renewed now if it is still ours."""
        message_id = run.message.id
        until = self.leases.get(message_id, run.lease_until)
        if until is not None and until - utcnow() > self.lease / 3:
            return
        with self.engine.begin() as conn:
            renewed = queue.renew_batch(conn, [message_id], self.owner, self.lease)
        if message_id not in renewed:
            raise LeaseLost(f"lease on {message_id} lost by {self.owner}")
        self.leases.update(renewed)

    def _load(self, message_id: uuid.UUID) -> Message:
        message = store.get(self.engine, message_id)
        if message is None:
            raise LookupError(f"message {message_id} does not exist")
        return message

    def _context(self, run: _Run, journal: Journal) -> StageContext:
        message = run.message
        entry = journal.entries[message.id]

        def load_parts() -> list[Any]:
            if run.parts is None:
                run.parts = store.payload(self.engine, message.id)
            else:  # opened here, not in the claim: a part that does not authenticate fails its message only
                run.parts = [sealing.open_part(self.engine, part) for part in run.parts]  # no-op once opened
            return run.parts

        def load_deliveries() -> list[Delivery]:
            if entry.deliveries is None:
                entry.deliveries = [] if message.status in _NOT_ROUTED else store.deliveries(self.engine, message.id)
            return entry.deliveries

        def record(row: Delivery, result: DeliveryResult | None, error: HubError | None) -> None:
            if isinstance(error, Deferred):
                return  # not an attempt: nothing was sent, the row stays as it was; the transition says why
            if error is None:
                assert result is not None
                to, change = DeliveryStatus.DELIVERED, DeliveryChange(
                    reason=f"delivered to {row.target}", response=result.as_event(), detail=result.as_event())
            else:
                to, change = DeliveryStatus.FAILED, DeliveryChange(
                    reason=f"delivery to {row.target} failed: {error}", response=error.detail, error=str(error),
                    detail={"error": type(error).__name__, **error.detail})
            try:
                journal.move_delivery(row, to, change)
            except IllegalDeliveryTransition as exc:  # only a worker that took the message over moves its rows
                raise LeaseLost(f"{exc} (this worker, {self.owner}, no longer owns message {message.id})") from None
            metrics.record_delivery(row.target, "delivered" if error is None else type(error).__name__.lower())

        self._facts = {}
        return StageContext(
            channel=self.channels[message.channel],
            rules=self._rules,
            facts=self._facts,
            message=message,
            config=self.config,
            load_parts=load_parts,
            load_deliveries=load_deliveries,
            record_delivery=record,
            adapter=self.adapter,
            keep_lease=lambda: self._keep_lease(run),
        )


#: statuses in which a message has no delivery rows yet
_NOT_ROUTED = {Status.RECEIVED.value, Status.VALIDATED.value}


def _count(journal: Journal) -> None:
    """``xhub_messages_total``: every move of the batch to a status, once it is committed."""
    for entry in journal.entries.values():
        message = entry.message
        for event in entry.events:
            if event["kind"] == "transition":
                metrics.record_status(event["to_status"], tenant=message.tenant, channel=message.channel,
                                      route=message.route)
