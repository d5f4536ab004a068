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
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from hub.db import is_postgres
from hub.errors import Deferred, HubError, Retriable
from hub.models import TargetSlot, TargetState, utcnow
from hub.ports import DeliveryRequest, DeliveryResult, OutboundAdapter
from hub.settings import CircuitConfig, TargetConfig

__all__ = ["GuardedAdapter", "Permit", "TargetGate", "target_overview"]

log = logging.getLogger(__name__)


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

    def admit(self, target: str, config: TargetConfig) -> Permit:
        """A permit to call ``target`` now, or :class:`Deferred` with the time to come back."""
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
        if closed and permit.probe:
            log.warning("circuit for %s closed: the trial call got an answer", permit.target)

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
