"""What an operator does to messages from the console or the operations API, each a guarded transition with its
event and an audit entry in one transaction.

Operators act on messages at rest: ``dead`` (stopped, waiting for a person) and ``retry_wait`` (waiting for
its next attempt). A message a worker is processing is not touched: the guard of every transition names the
statuses it starts from, so a message that moved on meanwhile answers :class:`NotAllowed`, never a half-done
change.

* **retry now**: a ``retry_wait`` message becomes due at once; a ``dead`` one gets a fresh retry budget. It
  resumes where it stopped.
* **requeue from a stage**: like retry, but it resumes at the chosen stage (validate, route, deliver again).
  Delivered targets are never delivered twice (:mod:`hub.pipeline.deliver`).
* **reject** with a reason: ``rejected``; a channel whose senders expect an answer (FIT-Connect) sends its
  reject first, inside the transaction: when that fails, nothing changes and the operator is told why.
* **edit before resubmit**: a corrected payload becomes a new message (``previous_version_id`` links it to the
  original) in ``received``; the original, when dead or waiting, is closed as ``rejected`` with the reason
  "superseded" and without an answer to the sender (the new version gives the answer).
* **bulk** requeue or reject by a filter: at most ``bound`` messages, each in its own transaction, with a
  tally of what happened.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from hub import audit, store
from hub.access import Caller
from hub.blobs import BlobStore
from hub.errors import HubError, Invalid
from hub.models import Message, utcnow
from hub.ports import Channels
from hub.search import Filter, count, matching_ids
from hub.statemachine import IllegalTransition, Status, Transition, note, transition

__all__ = ["AT_REST", "STAGES", "ActionFailed", "BulkResult", "NotAllowed", "bulk", "reject", "requeue",
           "resubmit", "retry_now"]

#: Statuses an operator may act on.
AT_REST = frozenset({Status.DEAD, Status.RETRY_WAIT})
#: Where a requeued message may resume: the status the stage consumes.
STAGES: dict[str, Status] = {"validate": Status.RECEIVED, "route": Status.VALIDATED, "deliver": Status.ROUTED}
MAX_REASON = 500


class NotAllowed(Exception):
    """The message is not in a status this action applies to (any more)."""


class ActionFailed(Exception):
    """The action could not be completed (the channel could not send the answer); nothing changed."""


def _reason(text: str | None, required: bool = False) -> str:
    cleaned = " ".join((text or "").split())[:MAX_REASON]
    if required and not cleaned:
        raise ValueError("a reason is required")
    return cleaned


def retry_now(engine: Engine, caller: Caller, message: Message, *, bulk_id: str | None = None) -> Status:
    return _resume(engine, caller, message, None, "", "retry", bulk_id)


def requeue(engine: Engine, caller: Caller, message: Message, stage: str | None, reason: str | None = None,
            *, bulk_id: str | None = None) -> Status:
    """Resume at ``stage`` (validate | route | deliver) or, without one, where it stopped."""
    if stage is not None and stage not in STAGES:
        raise ValueError(f"stage must be one of {', '.join(STAGES)}")
    return _resume(engine, caller, message, stage, _reason(reason), "requeue", bulk_id)


def _resume(engine: Engine, caller: Caller, message: Message, stage: str | None, reason: str, action: str,
            bulk_id: str | None) -> Status:
    now = utcnow()
    status = Status(message.status)
    fresh = status is Status.DEAD or stage is not None  # a fresh retry budget
    text = f"{action} by {caller.actor}" + (f" from stage {stage}" if stage else "") + (f": {reason}" if reason else "")
    change = Transition(reason=text, next_attempt_at=now, release_lease=True, attempts=0 if fresh else None,
                        resume_status=STAGES[stage] if stage else None,
                        detail={"action": action, "stage": stage, **({"bulk": bulk_id} if bulk_id else {})})
    try:
        with engine.begin() as conn:
            transition(conn, message.id, Status.RETRY_WAIT, change, actor=caller.actor, from_statuses=AT_REST)
            audit.record(conn, caller, action, message_id=message.id, tenant=message.tenant,
                         detail={"from": message.status, "stage": stage, "reason": reason or None,
                                 **({"bulk": bulk_id} if bulk_id else {})})
    except IllegalTransition:
        raise NotAllowed(f"message {message.id} is {_current(engine, message)}; only dead or waiting messages "
                         f"can be {'retried' if action == 'retry' else 'requeued'}") from None
    return Status.RETRY_WAIT


def reject(engine: Engine, caller: Caller, message: Message, reason: str, channels: Channels,
           *, bulk_id: str | None = None) -> str:
    """Reject with ``reason``; returns what was told to the sender ('' when its channel has no answer)."""
    text = _reason(reason, required=True)
    channel = channels[message.channel]
    told = ""
    try:
        with engine.begin() as conn:
            transition(conn, message.id, Status.REJECTED,
                       Transition(reason=f"rejected by {caller.actor}: {text}",
                                  last_error=f"rejected by operator: {text}",
                                  detail={"stage": "operator", "action": "reject",
                                          **({"bulk": bulk_id} if bulk_id else {})}),
                       actor=caller.actor, from_statuses=AT_REST)
            if channel.answers:  # the sender hears it before the message is closed; when that fails, it stays
                try:
                    told = channel.reject(message, Invalid(text), "operator")
                except HubError as exc:
                    raise ActionFailed(f"the {message.channel} reject could not be sent: {exc}") from None
                note(conn, message.id, told, actor=caller.actor, kind="note", status=Status.REJECTED,
                     detail={"answer": "reject", "channel": message.channel})
            audit.record(conn, caller, "reject", message_id=message.id, tenant=message.tenant,
                         detail={"from": message.status, "reason": text, "answer": told or None,
                                 **({"bulk": bulk_id} if bulk_id else {})})
    except IllegalTransition:
        raise NotAllowed(f"message {message.id} is {_current(engine, message)}; only dead or waiting messages "
                         "can be rejected") from None
    return told


def resubmit(engine: Engine, caller: Caller, message: Message, body: bytes, content_type: str,
             channels: Channels, blobs: BlobStore | None, comment: str | None = None) -> uuid.UUID:
    """Store ``body`` as a new version of ``message``; returns the new message's id."""
    status = Status(message.status)
    comment = _reason(comment)
    if status is Status.REJECTED and channels[message.channel].answers:
        raise NotAllowed(f"message {message.id} was rejected and its sender told so through {message.channel}; "
                         "a corrected version cannot answer that submission any more")
    if status not in AT_REST and status is not Status.REJECTED:
        raise NotAllowed(f"message {message.id} is {status}; only dead, waiting or rejected messages can be "
                         "corrected and resubmitted")
    with engine.begin() as conn:
        new_id = store.insert_version(conn, message, body, content_type, actor=caller.actor, blobs=blobs)
        why = f"superseded by corrected version {new_id} ({caller.actor})" + (f": {comment}" if comment else "")
        detail = {"action": "resubmit", "superseded_by": str(new_id)}
        if status is Status.REJECTED:
            note(conn, message.id, why, actor=caller.actor, status=status, detail=detail)
        else:
            try:
                transition(conn, message.id, Status.REJECTED, Transition(reason=why, detail=detail),
                           actor=caller.actor, from_statuses={status})
            except IllegalTransition:
                raise NotAllowed(f"message {message.id} changed meanwhile; open it again") from None
        audit.record(conn, caller, "resubmit", message_id=message.id, tenant=message.tenant,
                     detail={"new_version": str(new_id), "sha256_before": message.payload_sha256,
                             "size": len(body), "comment": comment or None})
    return new_id


@dataclass
class BulkResult:
    action: str
    matched: int
    bound: int
    done: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    bulk_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])

    def as_json(self) -> dict[str, Any]:
        return {"bulk_id": self.bulk_id, "action": self.action, "matched": self.matched, "bound": self.bound,
                "done": self.done, "skipped": dict(self.skipped), "failed": dict(self.failed)}


class TooMany(Exception):
    def __init__(self, matched: int, bound: int) -> None:
        super().__init__(f"more than {bound} messages match ({matched} counted); narrow the filter or raise the bound")
        self.matched = matched
        self.bound = bound


def bulk(engine: Engine, caller: Caller, f: Filter, action: str, bound: int, channels: Channels, *,
         reason: str | None = None, stage: str | None = None) -> BulkResult:
    """Requeue or reject every message the filter finds, at most ``bound``; raises :class:`TooMany` (nothing
    done) when more match. Messages not at rest are skipped and counted."""
    if action not in ("requeue", "reject"):
        raise ValueError("a bulk action is requeue or reject")
    if action == "reject":
        _reason(reason, required=True)
    matched = count(engine, caller, f, cap=bound)
    if matched > bound:
        raise TooMany(matched, bound)
    result = BulkResult(action, matched, bound)
    for message_id in matching_ids(engine, caller, f, limit=bound):
        message = store.get(engine, message_id)
        if message is None:
            result.skipped["gone"] += 1
            continue
        if Status(message.status) not in AT_REST:
            result.skipped[message.status] += 1
            continue
        try:
            if action == "requeue":
                requeue(engine, caller, message, stage, reason, bulk_id=result.bulk_id)
            else:
                reject(engine, caller, message, reason or "", channels, bulk_id=result.bulk_id)
            result.done += 1
        except NotAllowed:
            result.skipped["changed meanwhile"] += 1
        except ActionFailed:
            result.failed["answer not sent"] += 1
    own = sorted(caller.tenants) if caller.tenants is not None else []
    tenant = f.tenant or (own[0] if len(own) == 1 else None)  # so that the tenant's people see it in the audit
    audit.record(engine, caller, f"bulk-{action}", tenant=tenant,
                 detail={"filter": f.as_json(), "stage": stage, "reason": _reason(reason) or None, **result.as_json()})
    return result


def _current(engine: Engine, message: Message) -> str:
    now = store.get(engine, message.id)
    return now.status if now is not None else "gone"
