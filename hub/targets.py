"""Protecting targets: a circuit breaker and a concurrency limit per target, shared by every worker.

Both live in the database, so they hold across worker processes and machines:

* **Circuit breaker** (``target_states``): after ``circuit.failure_threshold`` consecutive transient
  failures the circuit opens and nobody calls the target for ``circuit.cooldown_seconds``. Then exactly
  one worker wins the right to a trial call (half-open); its success closes the circuit, its failure opens
  it for another cool-down. Any answer from the target (success, or a permanent refusal such as a 4xx)
  proves it is up and resets the count.
* **Concurrency limit** (``target_slots``): a worker holds one of the target's ``max_concurrency`` slots
  while it calls it. A slot is a lease, renewed by the worker's lease heartbeat (:meth:`TargetGate.renew`)
  for as long as the call takes, so a call longer than the lease keeps its slot; a crashed worker's slot
  is no longer renewed and frees itself.

When the gate says no, the message is :class:`~hub.errors.Deferred`: it waits in ``retry_wait`` without
spending its retry budget, because nothing was sent.

**Per batch.** A worker processing a batch (:meth:`TargetGate.begin` … :meth:`TargetGate.flush`,
:meth:`TargetGate.end`) reads every breaker once, in its claim transaction, and then decides in memory:
successes and failures are counted there and written once, with the batch's results
(``consecutive_failures = consecutive_failures + n``, so that concurrent workers add up); a limited target's
slot is taken at the batch's first call to it and given back with the results. Only the rare races go to the
database at once: winning a half-open circuit's trial, and taking a slot.

**Waiting is cheap.** A message that meets an open circuit is *parked*: ``retry_wait`` with
``waiting_on = <target>`` and no due time (:data:`PARKED`), so it is not claimed again at every cool-down.
When the cool-down ends, :meth:`TargetGate.begin` of one worker wins the trial and releases one waiting
message as the probe (the one waiting longest since it was last touched, so the probe rotates); when a
call gets an answer, the circuit closes and every message waiting on it is released in one update.
"""

from __future__ import annotations

import logging
import random
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, exists, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from hub.db import is_postgres
from hub.errors import Deferred, HubError, Retriable
from hub.models import Message, TargetSlot, TargetState, utcnow
from hub.ports import DeliveryRequest, DeliveryResult, OutboundAdapter
from hub.settings import CircuitConfig, TargetConfig
from hub.wakeup import notify

__all__ = ["PARKED", "GuardedAdapter", "Permit", "TargetGate", "release_waiting", "target_overview"]

log = logging.getLogger(__name__)

#: ``next_attempt_at`` of a message parked on an open circuit: never due by itself; released when it closes.
PARKED = datetime(9999, 1, 1, tzinfo=UTC)


def release_waiting(conn: Connection, target: str | None = None) -> int:
    """Make the messages waiting on ``target``'s circuit due now (all targets whose circuit is closed, when
    ``target`` is ``None``: the safety net for a circuit closed by other means). One update."""
    if target is not None:
        which = Message.waiting_on == target
    else:
        which = Message.waiting_on.is_not(None) & ~Message.waiting_on.in_(
            select(TargetState.target).where(TargetState.open_until.is_not(None)))
    return conn.execute(update(Message).where(which, Message.status == "retry_wait")
                        .values(waiting_on=None, next_attempt_at=utcnow())).rowcount


@dataclass
class _Circuit:
    """One target's breaker as a batch sees it: what was read, and what the batch added."""

    failures: int = 0
    open_until: datetime | None = None
    clean: bool = True  # as read: closed, no failures (or no row yet)
    added: int = 0  # failures since the batch's last answer from the target
    answered: bool = False
    opened: bool = False  # the batch opened it (or opened it again)
    last_error: str | None = None
    probe: bool = False  # this worker won the trial call


@dataclass(frozen=True)
class Permit:
    target: str
    circuit: CircuitConfig
    slot: int | None
    probe: bool  # this call is the half-open trial


def _insert(engine: Engine | Connection) -> Any:
    return (postgresql if engine.dialect.name == "postgresql" else sqlite).insert


class TargetGate:
    """One worker's way to its targets. ``owner`` is the worker's id: it holds the slots it takes."""

    def __init__(self, engine: Engine, owner: str, slot_lease: timedelta) -> None:
        self.engine = engine
        self.owner = owner
        self.slot_lease = slot_lease
        # The slots of the calls in flight, which the heartbeat (another thread) renews.
        self._held: set[tuple[str, int]] = set()
        self._held_lock = threading.Lock()
        self._batch: dict[str, _Circuit] | None = None  # per-batch mode: the breakers as read, plus outcomes
        self._batch_slots: dict[str, int] = {}

    # -- per batch
    def begin(self, conn: Connection, targets: Mapping[str, TargetConfig]) -> list[uuid.UUID]:
        """Start a batch, in the claim transaction: read every breaker; for each circuit whose cool-down is
        over and which has messages waiting, win its trial and release one of them as the probe. Returns the
        probes' ids (made due now; the caller claims them in the same transaction)."""
        now = utcnow()
        self._batch = {}
        self._batch_slots = {}
        probes = []
        for row in conn.execute(select(TargetState.target, TargetState.consecutive_failures,
                                       TargetState.open_until, TargetState.last_error)):
            circuit = _Circuit(row.consecutive_failures, row.open_until,
                               clean=row.consecutive_failures == 0 and row.open_until is None,
                               last_error=row.last_error)
            self._batch[row.target] = circuit
            config = targets.get(row.target)
            if row.open_until is None or row.open_until > now or config is None:
                continue
            until = now + timedelta(seconds=config.circuit.cooldown_seconds)
            won = conn.execute(
                update(TargetState)
                .where(TargetState.target == row.target, TargetState.open_until == row.open_until,
                       exists().where(Message.waiting_on == row.target))
                .values(open_until=until, updated_at=now)).rowcount == 1
            if not won:
                continue
            pick = (select(Message.id).where(Message.waiting_on == row.target, Message.status == "retry_wait")
                    .order_by(Message.updated_at).limit(1))
            if conn.dialect.name == "postgresql":
                pick = pick.with_for_update(skip_locked=True)
            probe = conn.execute(pick).scalar()
            if probe is None:
                continue
            conn.execute(update(Message).where(Message.id == probe)
                         .values(waiting_on=None, next_attempt_at=now, updated_at=now))
            circuit.open_until, circuit.probe = until, True
            log.info("circuit for %s half-open: %s makes a trial call with message %s", row.target, self.owner,
                     probe)
            probes.append(probe)
        return probes

    def flush(self, conn: Connection) -> None:
        """Write the batch's outcomes per target, give its slots back, and release the messages waiting on a
        circuit the batch closed. In the transaction of the batch's results."""
        now = utcnow()
        for target, c in (self._batch or {}).items():
            if c.added == 0 and not c.opened and (c.clean or not c.answered):
                continue  # nothing learnt that the database does not know
            if c.answered and c.added == 0:  # the last word of the target was an answer: closed
                closed = conn.execute(
                    update(TargetState)
                    .where(TargetState.target == target,
                           or_(TargetState.consecutive_failures > 0, TargetState.open_until.is_not(None)))
                    .values(consecutive_failures=0, open_until=None, opened_at=None, updated_at=now,
                            last_success_at=now)).rowcount
                if closed:
                    released = release_waiting(conn, target)
                    if released:
                        notify(conn)
                    log.warning("circuit for %s closed: the target answered; %d waiting messages released",
                                target, released)
                continue
            conn.execute(_insert(conn)(TargetState).values(target=target, consecutive_failures=0, updated_at=now)
                         .on_conflict_do_nothing(index_elements=["target"]))
            values: dict[str, Any] = {
                "consecutive_failures": (0 if c.answered else TargetState.consecutive_failures) + c.added,
                "last_error": (c.last_error or "")[:1000], "updated_at": now}
            if c.opened:
                values["open_until"] = c.open_until
                values["opened_at"] = func.coalesce(TargetState.opened_at, now)
            conn.execute(update(TargetState).where(TargetState.target == target).values(**values))
        if self._batch_slots:
            conn.execute(update(TargetSlot)
                         .where(tuple_(TargetSlot.target, TargetSlot.slot).in_(list(self._batch_slots.items())),
                                TargetSlot.holder == self.owner)
                         .values(holder=None, expires_at=None))

    def end(self) -> None:
        """The batch is over (written or not): back to the per-call mode; its slots are no longer renewed."""
        with self._held_lock:
            for item in self._batch_slots.items():
                self._held.discard(item)
        self._batch = None
        self._batch_slots = {}

    def is_open(self, target: str) -> bool:
        """Whether the batch knows ``target``'s circuit as open (so a message failing on it should wait), and
        this worker does not hold its trial call."""
        circuit = (self._batch or {}).get(target)
        return (circuit is not None and not circuit.probe and circuit.open_until is not None
                and circuit.open_until > utcnow())

    def _admit_batch(self, batch: dict[str, _Circuit], target: str, config: TargetConfig) -> Permit:
        now = utcnow()
        c = batch.setdefault(target, _Circuit())
        probe = False
        if c.probe:
            c.probe, probe = False, True  # the trial call this worker won
        elif c.open_until is not None and c.open_until > now:
            raise Deferred(
                f"circuit for {target} is open until {c.open_until:%H:%M:%S} UTC (last error: {c.last_error})",
                retry_after=(c.open_until - now).total_seconds() + random.uniform(0, 1),
                detail={"target": target, "circuit": "open"})
        elif c.open_until is not None:  # half-open and nobody waiting when the batch began: race for the trial
            with self.engine.begin() as conn:
                probe = self._check_circuit(conn, target, config, now)
            c.open_until = now + timedelta(seconds=config.circuit.cooldown_seconds)
        slot = None
        if config.max_concurrency is not None:
            slot = self._batch_slots.get(target)
            if slot is None:  # the first call of the batch to this target takes a slot, kept for the batch
                with self.engine.begin() as conn:
                    slot = self._take_slot(conn, target, config.max_concurrency, now)
                self._batch_slots[target] = slot
                with self._held_lock:
                    self._held.add((target, slot))
        return Permit(target, config.circuit, slot, probe)

    def _record_batch(self, batch: dict[str, _Circuit], permit: Permit, error: HubError | None) -> None:
        c = batch.setdefault(permit.target, _Circuit())
        if error is None or not isinstance(error, Retriable):
            if c.open_until is not None:
                log.warning("circuit for %s closes: the %scall got an answer", permit.target,
                            "trial " if permit.probe else "")
            c.answered, c.added, c.failures, c.open_until, c.opened = True, 0, 0, None, False
        elif not isinstance(error, Deferred):
            c.added += 1
            c.failures += 1
            c.last_error = str(error)
            if c.open_until is None and (permit.probe or c.failures >= permit.circuit.failure_threshold):
                log.warning("circuit for %s opened after %d consecutive failures: %s", permit.target, c.failures,
                            error)
            if permit.probe or c.failures >= permit.circuit.failure_threshold:
                c.open_until = utcnow() + timedelta(seconds=permit.circuit.cooldown_seconds)
                c.opened = True

    def admit(self, target: str, config: TargetConfig) -> Permit:
        """A permit to call ``target`` now, or :class:`Deferred` with the time to come back."""
        if self._batch is not None:
            return self._admit_batch(self._batch, target, config)
        with self.engine.begin() as conn:
            now = utcnow()
            probe = self._check_circuit(conn, target, config, now)
            slot = None
            if config.max_concurrency is not None:
                slot = self._take_slot(conn, target, config.max_concurrency, now)
        if slot is not None:
            with self._held_lock:
                self._held.add((target, slot))
        return Permit(target, config.circuit, slot, probe)

    def renew(self, conn: Connection) -> list[str]:
        """Extend the slots of the calls in flight by another lease, in the caller's transaction (the worker's
        heartbeat, with the message lease). Returns the targets whose slot was lost meanwhile: it expired and
        another worker took it, which only happens when renewals failed for a whole lease."""
        with self._held_lock:
            held = sorted(self._held)
        lost = []
        for target, slot in held:
            renewed = conn.execute(
                update(TargetSlot)
                .where(TargetSlot.target == target, TargetSlot.slot == slot, TargetSlot.holder == self.owner)
                .values(expires_at=utcnow() + self.slot_lease)
            ).rowcount == 1
            with self._held_lock:
                if not renewed and (target, slot) in self._held:  # not merely given back since the copy above
                    self._held.discard((target, slot))  # someone else's now: never renew it again
                    lost.append(target)
        return lost

    def record(self, permit: Permit, error: HubError | None) -> None:
        """Give the slot back and feed the outcome to the circuit breaker."""
        if self._batch is not None:  # in memory; written by flush
            self._record_batch(self._batch, permit, error)
            return
        self._call_ended(permit)
        with self.engine.begin() as conn:
            now = utcnow()
            self._free_slot(conn, permit)
            if error is None or not isinstance(error, Retriable):
                self._target_answered(conn, permit, now)
            elif not isinstance(error, Deferred):
                self._target_failed(conn, permit, str(error), now)

    def release(self, permit: Permit) -> None:
        """Give the slot back without judging the target (the call was interrupted on our side)."""
        if self._batch is not None:
            return  # the batch's slot is given back by flush, or expires
        self._call_ended(permit)
        with self.engine.begin() as conn:
            self._free_slot(conn, permit)

    def _call_ended(self, permit: Permit) -> None:
        # No longer renewed from here on, even should the database refuse to free it: then it expires.
        if permit.slot is not None:
            with self._held_lock:
                self._held.discard((permit.target, permit.slot))

    # -- circuit breaker
    def _check_circuit(self, conn: Connection, target: str, config: TargetConfig, now: datetime) -> bool:
        conn.execute(_insert(conn)(TargetState).values(
            target=target, consecutive_failures=0, updated_at=now).on_conflict_do_nothing(index_elements=["target"]))
        state = conn.execute(select(TargetState.open_until, TargetState.last_error)
                             .where(TargetState.target == target)).one()
        if state.open_until is None:
            return False
        if state.open_until > now:
            raise Deferred(
                f"circuit for {target} is open until {state.open_until:%H:%M:%S} UTC (last error: {state.last_error})",
                retry_after=(state.open_until - now).total_seconds() + random.uniform(0, 1),
                detail={"target": target, "circuit": "open"},
            )
        # Half-open: the first worker to move open_until forward makes the one trial call.
        cooldown = timedelta(seconds=config.circuit.cooldown_seconds)
        won = conn.execute(update(TargetState)
                           .where(TargetState.target == target, TargetState.open_until == state.open_until)
                           .values(open_until=now + cooldown, updated_at=now)).rowcount == 1
        if not won:
            raise Deferred(f"circuit for {target} is half-open; another worker is making the trial call",
                           retry_after=config.circuit.cooldown_seconds,
                           detail={"target": target, "circuit": "half-open"})
        log.info("circuit for %s half-open: %s makes a trial call", target, self.owner)
        return True

    def _target_answered(self, conn: Connection, permit: Permit, now: datetime) -> None:
        closed = conn.execute(
            update(TargetState)
            .where(TargetState.target == permit.target,
                   or_(TargetState.consecutive_failures > 0, TargetState.open_until.is_not(None)))
            .values(consecutive_failures=0, open_until=None, opened_at=None, updated_at=now, last_success_at=now)
        ).rowcount
        if closed:
            released = release_waiting(conn, permit.target)
            if released:
                notify(conn)
            log.warning("circuit for %s closed: the %scall got an answer; %d waiting messages released",
                        permit.target, "trial " if permit.probe else "", released)

    def _target_failed(self, conn: Connection, permit: Permit, error: str, now: datetime) -> None:
        config = permit.circuit
        state = conn.execute(select(TargetState.consecutive_failures, TargetState.open_until)
                             .where(TargetState.target == permit.target).with_for_update()).one()
        failures = state.consecutive_failures + 1
        values: dict[str, Any] = {"consecutive_failures": failures, "last_error": error[:1000], "updated_at": now}
        if permit.probe or failures >= config.failure_threshold:
            values["open_until"] = now + timedelta(seconds=config.cooldown_seconds)
            if state.open_until is None:
                values["opened_at"] = now
                # not the error's text: a target's answer can quote the message (`xhub targets` shows it)
                log.warning("circuit for %s opened after %d consecutive failures", permit.target, failures)
        conn.execute(update(TargetState).where(TargetState.target == permit.target).values(**values))

    # -- concurrency slots
    def _take_slot(self, conn: Connection, target: str, limit: int, now: datetime) -> int:
        conn.execute(_insert(conn)(TargetSlot).values([{"target": target, "slot": i} for i in range(limit)])
                     .on_conflict_do_nothing(index_elements=["target", "slot"]))
        free = or_(TargetSlot.holder.is_(None), TargetSlot.expires_at < now)
        pick = (select(TargetSlot.slot).where(TargetSlot.target == target, TargetSlot.slot < limit, free)
                .order_by(TargetSlot.slot).limit(1))
        if is_postgres(self.engine):
            pick = pick.with_for_update(skip_locked=True)
        slot = conn.execute(pick).scalar()
        taken = slot is not None and conn.execute(
            update(TargetSlot).where(TargetSlot.target == target, TargetSlot.slot == slot, free)
            .values(holder=self.owner, expires_at=now + self.slot_lease)).rowcount == 1
        if not taken:
            raise Deferred(f"target {target} is at its concurrency limit ({limit})",
                           retry_after=random.uniform(0.2, 1.0), detail={"target": target, "max_concurrency": limit})
        assert slot is not None
        return int(slot)

    def _free_slot(self, conn: Connection, permit: Permit) -> None:
        if permit.slot is not None:
            conn.execute(update(TargetSlot)
                         .where(TargetSlot.target == permit.target, TargetSlot.slot == permit.slot,
                                TargetSlot.holder == self.owner)
                         .values(holder=None, expires_at=None))


class GuardedAdapter:
    """An adapter behind the target's gate: same interface, so the deliver stage does not know."""

    def __init__(self, gate: TargetGate, target: str, config: TargetConfig, adapter: OutboundAdapter) -> None:
        self.gate, self.target, self.config, self.adapter = gate, target, config, adapter
        self.name = adapter.name

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        permit = self.gate.admit(self.target, self.config)
        try:
            result = self.adapter.deliver(request)
        except HubError as exc:
            self.gate.record(permit, exc)
            exc.detail.setdefault("target", self.target)  # the runner parks the message on this circuit
            if permit.probe:
                exc.detail.setdefault("probe", True)
            raise
        except BaseException:
            self.gate.release(permit)
            raise
        self.gate.record(permit, None)
        return result

    def close(self) -> None:
        close = getattr(self.adapter, "close", None)
        if close is not None:
            close()


def target_overview(engine: Engine, configured: Mapping[str, TargetConfig]) -> list[dict[str, Any]]:
    """Every configured target with its circuit state and slots in use (API and CLI)."""
    now = utcnow()
    with engine.connect() as conn:
        states = {r.target: r for r in conn.execute(select(TargetState)).all()}
        busy: dict[str, int] = {}
        for r in conn.execute(select(TargetSlot.target).where(TargetSlot.holder.is_not(None),
                                                               TargetSlot.expires_at >= now)).all():
            busy[r.target] = busy.get(r.target, 0) + 1
    out = []
    for name, cfg in sorted(configured.items()):
        s = states.get(name)
        circuit = "closed"
        if s is not None and s.open_until is not None:
            circuit = "open" if s.open_until > now else "half-open"
        out.append({
            "target": name, "adapter": cfg.adapter, "circuit": circuit,
            "open_until": s.open_until.isoformat() if s is not None and s.open_until else None,
            "consecutive_failures": s.consecutive_failures if s is not None else 0,
            "last_error": s.last_error if s is not None else None,
            "last_success_at": s.last_success_at.isoformat() if s is not None and s.last_success_at else None,
            "in_flight": busy.get(name, 0), "max_concurrency": cfg.max_concurrency,
        })
    return out
