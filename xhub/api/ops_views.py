"""What the operations API and the console show of a message: one case from intake to receipt.

:func:`case_of` gathers, for a message the caller may see: its facts and ids, the whole trail (every event
with actor and reason), the latest validation report (rule, line, XPath), the route decision and why every
other route did not match, each delivery with every attempt and the target's answer, the answers sent to the
sender through its channel (FIT-Connect accept/reject), the versions (edit-before-resubmit) and the audit
entries. :func:`dashboard` computes the figures of the dashboard per tenant and per target.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from hub import audit, store
from hub.access import Caller
from hub.models import Event, Message, utcnow
from hub.problems import Problem
from hub.statemachine import ACTIVE, Status
from hub.targets import target_overview
from xhub.api.views import event_json, message_detail

__all__ = ["case_of", "dashboard", "summary", "visible_to"]


def visible_to(engine: Engine, caller: Caller, message_id: uuid.UUID) -> Message:
    """The message when the caller may see it; 404 otherwise (a foreign tenant's message does not exist)."""
    message = store.get(engine, message_id)
    if message is None or not caller.sees(message.tenant):
        raise Problem(404, "message-not-found", "Message not found", f"no message {message_id} is visible to you")
    return message


def summary(m: Message) -> dict[str, Any]:
    return {
        "id": str(m.id), "status": m.status, "tenant": m.tenant, "channel": m.channel, "sender": m.sender,
        "sender_reference": m.sender_reference, "external_id": m.external_id, "case_id": m.case_id,
        "xoev_message_uuid": m.xoev_message_uuid, "standard": m.standard, "standard_version": m.standard_version,
        "message_type": m.message_type, "route": m.route, "attempts": m.attempts,
        "created_at": m.created_at.isoformat(), "updated_at": m.updated_at.isoformat(),
        "previous_version_id": str(m.previous_version_id) if m.previous_version_id else None,
    }


def _validation(events: list[Event]) -> dict[str, Any] | None:
    for e in reversed(events):
        report = (e.detail or {}).get("report")
        if isinstance(report, dict):
            findings = [f for f in report.get("findings") or [] if isinstance(f, dict)]
            return {"verdict": report.get("verdict"), "reason": report.get("reason"),
                    "standard": report.get("standard"), "version": report.get("version"),
                    "message_type": report.get("message_type"),
                    "findings": [{k: f.get(k) for k in ("severity", "rule", "line", "path", "message")}
                                 for f in findings]}
    return None


def _route(events: list[Event]) -> dict[str, Any] | None:
    for e in reversed(events):
        detail = e.detail or {}
        if "not_matched" in detail:
            return {"route": detail.get("route"), "not_matched": detail.get("not_matched") or {},
                    "targets": detail.get("targets") or [], "at": e.at.isoformat()}
    return None


def _attempts(events: list[Event]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e.kind == "delivery":
            detail = dict(e.detail or {})
            target = str(detail.pop("target", "?"))
            out.setdefault(target, []).append({"at": e.at.isoformat(), "attempt": detail.pop("attempt", None),
                                               "outcome": e.to_status, "reason": e.reason, "answer": detail})
    return out


def _answers(message: Message, events: list[Event]) -> list[dict[str, Any]]:
    """What the channel told the sender (a FIT-Connect accept-submission or reject-submission)."""
    return [{"at": e.at.isoformat(), "actor": e.actor, "what": e.reason,
             "kind": "reject" if "reject-submission" in e.reason else "accept"}
            for e in events if "-submission sent" in e.reason]


def case_of(engine: Engine, caller: Caller, message: Message, base: str) -> dict[str, Any]:
    events = store.events(engine, message.id)
    deliveries = store.deliveries(engine, message.id)
    attempts = _attempts(events)
    detail = message_detail(message, events, deliveries, base)
    with Session(bind=engine) as session:
        newer = [str(i) for i in session.scalars(select(Message.id).where(Message.previous_version_id == message.id))]
    return {
        **detail,
        "summary": summary(message),
        "attributes": message.attributes,
        "events": [{**event_json(e), "id": e.id} for e in events],
        "validation": _validation(events),
        "route_explanation": _route(events),
        "deliveries": [{**d, "attempt_log": attempts.get(d["target"], [])} for d in detail["deliveries"]],
        "answers": _answers(message, events),
        "versions": {"previous": str(message.previous_version_id) if message.previous_version_id else None,
                     "next": newer},
        "audit": [audit.entry_json(a) for a in audit.entries(engine, caller, message_id=message.id, limit=200)],
        "actions": _actions(caller, message),
    }


def _actions(caller: Caller, message: Message) -> list[str]:
    if not caller.can_act:
        return []
    status = Status(message.status)
    if status in (Status.DEAD, Status.RETRY_WAIT):
        return ["retry", "requeue", "reject", "resubmit"]
    if status is Status.REJECTED:
        return ["resubmit"]
    return []


# --------------------------------------------------------------------------------------------------
# Dashboard

WINDOW = timedelta(minutes=15)
SPARK_MINUTES = 60


def _p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(0.95 * (len(ordered) - 1) + 0.5))], 3)


def dashboard(engine: Engine, caller: Caller, configured_targets: Any, loops: dict[str, Any]) -> dict[str, Any]:
    """Per tenant: messages per minute (last 15 min), error rate, oldest waiting, dead count, a per-minute series
    of the last hour; per target: deliveries per minute, error rate of attempts, p95 latency (accepted → delivered),
    circuit state. Only the caller's tenants count."""
    now = utcnow()
    since, spark_since = now - WINDOW, now - timedelta(minutes=SPARK_MINUTES)
    scope = caller.scope()
    tenants: dict[str, dict[str, Any]] = {}
    with engine.connect() as conn:
        for tenant, status, n in conn.execute(select(Message.tenant, Message.status, func.count())
                                              .where(scope).group_by(Message.tenant, Message.status)):
            t = tenants.setdefault(tenant, _tenant_row(tenant))
            t["by_status"][status] = n
            if status == Status.DEAD.value:
                t["dead"] = n
        for tenant, oldest in conn.execute(select(Message.tenant, func.min(Message.created_at))
                                           .where(scope, Message.status.in_([s.value for s in ACTIVE]))
                                           .group_by(Message.tenant)):
            if tenant in tenants:
                oldest_at = _aware(oldest)
                tenants[tenant]["oldest_waiting_at"] = oldest_at.isoformat()
                tenants[tenant]["oldest_waiting_seconds"] = round((now - oldest_at).total_seconds())
        recent = conn.execute(select(Message.tenant, Message.status, Message.created_at)
                              .where(scope, Message.created_at >= spark_since)).all()
        attempts = conn.execute(
            select(Message.tenant, Event.detail, Event.to_status, Event.at, Message.created_at)
            .join(Message, Message.id == Event.message_id)
            .where(scope, Event.kind == "delivery", Event.at >= since)
        ).all()
    for tenant, status, created in recent:
        t = tenants.setdefault(tenant, _tenant_row(tenant))
        minute = int((now - _aware(created)).total_seconds() // 60)
        if 0 <= minute < SPARK_MINUTES:
            t["series"][SPARK_MINUTES - 1 - minute] += 1
        if _aware(created) >= since:
            t["received_15m"] += 1
            if status in (Status.DEAD.value, Status.REJECTED.value, Status.RETRY_WAIT.value):
                t["failing_15m"] += 1
    for t in tenants.values():
        t["per_minute"] = round(t["received_15m"] / WINDOW.total_seconds() * 60, 2)
        t["error_rate"] = round(t["failing_15m"] / t["received_15m"], 3) if t["received_15m"] else 0.0
    targets = _targets(attempts, configured_targets, engine, caller)
    return {"at": now.isoformat(), "window_minutes": int(WINDOW.total_seconds() // 60),
            "tenants": sorted(tenants.values(), key=lambda t: t["tenant"]), "targets": targets, "loops": loops}


def _tenant_row(tenant: str) -> dict[str, Any]:
    return {"tenant": tenant, "by_status": {}, "dead": 0, "received_15m": 0, "failing_15m": 0,
            "oldest_waiting_at": None, "oldest_waiting_seconds": None, "series": [0] * SPARK_MINUTES}


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _targets(rows: Any, configured: Any, engine: Engine, caller: Caller) -> list[dict[str, Any]]:
    per: dict[tuple[str, str], dict[str, Any]] = {}
    latencies: dict[tuple[str, str], list[float]] = {}
    for tenant, detail, outcome, at, created in rows:
        target = str((detail or {}).get("target", "?"))
        key = (tenant, target)
        row = per.setdefault(key, {"tenant": tenant, "target": target, "attempts": 0, "failed": 0, "delivered": 0})
        row["attempts"] += 1
        if outcome == "failed":
            row["failed"] += 1
        else:
            row["delivered"] += 1
            latencies.setdefault(key, []).append((_aware(at) - _aware(created)).total_seconds())
    circuits = {t["target"]: t for t in target_overview(engine, configured)}
    out = []
    for key, row in sorted(per.items()):
        row["per_minute"] = round(row["delivered"] / WINDOW.total_seconds() * 60, 2)
        row["error_rate"] = round(row["failed"] / row["attempts"], 3) if row["attempts"] else 0.0
        row["p95_latency_seconds"] = _p95(latencies.get(key, []))
        circuit = circuits.get(row["target"], {})
        row["circuit"] = circuit.get("circuit", "closed")
        out.append(row)
    if caller.tenants is None:  # an admin also sees the targets that had no traffic in the window
        seen = {r["target"] for r in out}
        out += [{"tenant": None, "target": name, "attempts": 0, "failed": 0, "delivered": 0, "per_minute": 0.0,
                 "error_rate": 0.0, "p95_latency_seconds": None, "circuit": c["circuit"]}
                for name, c in circuits.items() if name not in seen]
    return out
