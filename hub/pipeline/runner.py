"""Runs the stages for one claimed message and applies each outcome through the state machine.

The runner is the only pipeline code that talks to the database. For every stage it:

1. calls ``stage.run(ctx)`` (the worker's heartbeat keeps the lease alive meanwhile; a stage about to do
   something visible, like a delivery, first checks it still holds the lease: ``ctx.keep_lease()``);
2. on success, moves the message to ``stage.produces`` with a fenced transition (``lease_owner = me``),
   creating delivery rows in the same transaction when the stage asked for them;
3. on :class:`~hub.errors.Invalid` → ``rejected``; :class:`~hub.errors.Permanent` → ``dead``;
   :class:`~hub.errors.Retriable` → ``retry_wait`` with ``next_attempt_at`` from the retry policy, or
   ``dead`` once the route's budget is spent. The message remembers where to resume.

Each attempt at a target is recorded on its delivery row as it happens, through
:func:`~hub.statemachine.move_delivery` (guarded; one ``delivery`` event per attempt).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import Connection, Engine

from hub import metrics, queue, store, tracing
from hub.errors import Deferred, HubError, Invalid, Permanent, Retriable
from hub.logcontext import bound
from hub.models import Delivery, DeliveryStatus, Message, utcnow
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
    move_delivery,
    note,
    transition,
)
from hub.targets import GuardedAdapter, TargetGate

__all__ = ["LeaseLost", "Runner"]

log = logging.getLogger(__name__)


class LeaseLost(RuntimeError):
    """Another worker took the message over (our lease expired); stop touching it."""


class Runner:
    def __init__(self, config: Settings, engine: Engine, owner: str, rules: RuleHolder, *,
                 build_adapter: AdapterFactory, channels: Channels, stages: tuple[Stage, ...] = STAGES) -> None:
        self.config = config
        self.build_adapter = build_adapter  # the composition root's registry (xhub.registry)
        self.channels = channels
        self.engine = engine
        self.owner = owner
        self.rules = rules
        self.stages = stages
        self.lease = timedelta(seconds=config.worker.lease_seconds)
        self._adapters: dict[str, GuardedAdapter] = {}
        self._facts: dict[str, Any] = {}
        self._notes: list[tuple[str, dict[str, Any] | None, Status]] = []  # checks that moved nothing yet
        self._rules: RuleSet = rules.current
        self.gate = TargetGate(engine, owner, self.lease)

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
        """Run the message (which the caller has claimed) as far as it goes. Returns its final status."""
        message = self._load(message_id)
        with (bound(message_id=str(message.id), tenant=message.tenant, channel=message.channel),
              tracing.span("process", parent=tracing.parent_of(message.attributes), message_id=message.id,
                           tenant=message.tenant, channel=message.channel)):
            return self._process(message)

    def _process(self, message: Message) -> Status:
        self._rules = self.rules.current  # one rule set for the whole run, even if a reload happens meanwhile
        status = Status(message.status)
        if status is Status.RETRY_WAIT:
            status = self._resume(message)
        ctx = self._context(message)
        while status not in TERMINAL and status is not Status.RETRY_WAIT:
            for stage in (s for s in self.stages if s.consumes is status):
                moved = self._run_stage(stage, ctx, status)
                if moved is not status:  # advanced, or failed into rejected / dead / retry_wait
                    status = moved
                    break
            else:
                raise RuntimeError(f"no stage moves a message out of status {status}")
        return status

    def _run_stage(self, stage: Stage, ctx: StageContext, status: Status) -> Status:
        message_id = ctx.message.id
        began = time.perf_counter()
        try:
            with bound(stage=stage.name), tracing.span(f"stage {stage.name}", stage=stage.name):
                result = stage.run(ctx)
        except HubError as exc:
            return self._fail(ctx.message, status, stage.name, exc)
        except (LeaseLost, KeyboardInterrupt):
            raise
        except Exception as exc:  # a bug in a stage or adapter: keep the message, retry, show the cause
            log.exception("stage %s failed unexpectedly on message %s", stage.name, message_id)
            wrapped = Retriable(
                f"internal error in stage {stage.name}: {type(exc).__name__}: {exc}",
                detail={"exception": type(exc).__name__},
            )
            return self._fail(ctx.message, status, stage.name, wrapped)
        finally:
            metrics.observe_stage(stage.name, time.perf_counter() - began)
        if stage.produces is None:
            # Written with the next transition, in its transaction: fenced by its lease guard, one commit less.
            self._notes.append((f"{stage.name}: {result.reason}", result.detail, status))
            return status
        with self.engine.begin() as conn:
            self._move(
                conn,
                ctx.message,
                stage.produces,
                Transition(reason=f"{stage.name}: {result.reason}", detail=result.detail, fields=result.fields),
                status,
            )
            if result.deliveries:
                store.create_deliveries(conn, message_id, result.deliveries)
        self._count(ctx.message)
        return stage.produces

    def _move(self, conn: Connection, message: Message, to: Status, change: Transition, origin: Status) -> None:
        """A fenced transition; failing the guard here means another worker owns the message now.

        On success the in-memory ``message`` is brought up to date, so the next stage needs no reload.
        """
        message_id = message.id
        for reason, detail, status in self._notes:
            note(conn, message_id, reason, actor=f"worker:{self.owner}", detail=detail, status=status)
        self._notes.clear()
        if self._facts:  # what the stages learnt (detected standard, header ids) is kept even on rejection
            change = replace(change, fields={**self._facts, **(change.fields or {})})
            self._facts.clear()
        try:
            transition(conn, message_id, to, change, actor=f"worker:{self.owner}", from_statuses={origin},
                       lease_owner=self.owner)
        except IllegalTransition as exc:
            raise LeaseLost(f"{exc} (this worker, {self.owner}, no longer owns it)") from None
        message.status = to.value
        for key, value in (change.fields or {}).items():
            setattr(message, key, value)

        if change.resume_status is not None:
            message.resume_status = change.resume_status.value
        if change.attempts is not None:
            message.attempts = change.attempts

    def _fail(self, message: Message, status: Status, stage: str, exc: HubError) -> Status:
        detail: dict[str, Any] = {"stage": stage, "error": type(exc).__name__, **exc.detail}
        reason = f"{stage}: {exc}"
        channel = self.channels[message.channel]
        if isinstance(exc, Invalid) and channel.answers and stage != "answer":
            # The sender must hear it before the message is closed; a failure to tell it is retried.
            try:
                reason = f"{reason}; {channel.reject(message, exc, stage)}"
            except HubError as answer_failed:
                return self._fail(message, status, "answer", answer_failed)
        if isinstance(exc, Invalid):
            to, change = Status.REJECTED, Transition(reason=reason, detail=detail, last_error=str(exc))
        elif isinstance(exc, Permanent):
            to = Status.DEAD
            change = Transition(reason=reason, detail=detail, last_error=str(exc), resume_status=status)
        elif isinstance(exc, Deferred):  # nothing was sent: wait, without spending the retry budget
            retry_at = utcnow() + timedelta(seconds=exc.retry_after or 1.0)
            detail["retry_at"] = retry_at.isoformat()
            to = Status.RETRY_WAIT
            change = Transition(reason=f"deferred: {reason}", detail=detail, next_attempt_at=retry_at,
                                resume_status=status, release_lease=True)
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
                detail["retry_at"] = decision.retry_at.isoformat()
                to = Status.RETRY_WAIT
                change = Transition(
                    reason=reason,
                    detail=detail,
                    attempts=decision.attempts,
                    next_attempt_at=decision.retry_at,
                    resume_status=status,
                    release_lease=True,
                    last_error=str(exc),
                )
        with self.engine.begin() as conn:
            self._move(conn, message, to, change, status)
        self._count(message)
        return to

    def _resume(self, message: Message) -> Status:
        resume = Status(message.resume_status or Status.RECEIVED)
        policy = self._rules.retry_for(message.route, self.config.retry)
        change = Transition(reason=f"retrying from {resume} (attempt {message.attempts + 1} of {policy.max_attempts})")
        with self.engine.begin() as conn:
            self._move(conn, message, resume, change, Status.RETRY_WAIT)
        self._count(message)
        return resume

    @staticmethod
    def _count(message: Message) -> None:
        """``xhub_messages_total``: the committed move of ``message`` to its (in-memory, current) status."""
        metrics.record_status(message.status, tenant=message.tenant, channel=message.channel, route=message.route)

    def _keep_lease(self, message_id: uuid.UUID) -> None:
        """Before a visible step (a delivery): still ours, for long enough? The heartbeat does the renewing."""
        with self.engine.connect() as conn:
            if not queue.owns(conn, message_id, self.owner, self.lease / 3):
                raise LeaseLost(f"lease on {message_id} lost by {self.owner}")

    def _load(self, message_id: uuid.UUID) -> Message:
        message = store.get(self.engine, message_id)
        if message is None:
            raise LookupError(f"message {message_id} does not exist")
        return message

    def _context(self, message: Message) -> StageContext:
        def load_parts() -> list[Any]:
            return store.payload(self.engine, message.id)

        def load_deliveries() -> list[Delivery]:
            return store.deliveries(self.engine, message.id)

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
                with self.engine.begin() as conn:
                    move_delivery(conn, row.id, to, change, actor=f"worker:{self.owner}", from_statuses={row.status})
            except IllegalDeliveryTransition as exc:  # only a worker that took the message over moves its rows
                raise LeaseLost(f"{exc} (this worker, {self.owner}, no longer owns message {message.id})") from None
            metrics.record_delivery(row.target, "delivered" if error is None else type(error).__name__.lower())

        self._facts = {}
        self._notes = []
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
            keep_lease=lambda: self._keep_lease(message.id),
        )
