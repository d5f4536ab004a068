"""JSON shapes of the API's resources: the operator's full view and the sender's allow-listed one.

Operators see everything the hub knows (targets, errors, responses, the whole trail). A sender sees its own
message through :func:`sender_detail`, which is built field by field from an allow-list: status, what the
hub found out about the document, a problem type and category when it did not go through, and the
validation report (its findings are about the sender's own document). Never target names or URLs, fault
texts of specialist procedures, exception texts, worker or operator names: adding a field to the model
or to an event cannot make it visible to senders by accident.
"""

from __future__ import annotations

from typing import Any

from hub.models import Delivery, Event, Message
from hub.problems import TYPE_PREFIX

__all__ = ["event_json", "links", "message_detail", "message_summary", "sender_detail", "sender_summary"]


def links(message: Message, base: str) -> dict[str, str]:
    """``base`` is ``api.public_url`` or empty (then the link is relative to the API's root)."""
    return {"self": f"{base}/api/v1/messages/{message.id}"}


# --------------------------------------------------------------------------------------------------
# Operators


def message_summary(message: Message, base: str) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "status": message.status,
        "tenant": message.tenant,
        "channel": message.channel,
        "sender": message.sender,
        "standard": message.standard,
        "standard_version": message.standard_version,
        "message_type": message.message_type,
        "route": message.route,
        "attempts": message.attempts,
        "created_at": message.created_at.isoformat(),
        "updated_at": message.updated_at.isoformat(),
        "links": links(message, base),
    }


def message_detail(message: Message, events: list[Event], deliveries: list[Delivery], base: str) -> dict[str, Any]:
    return {
        **message_summary(message, base),
        "idempotency_key": message.idempotency_key,
        "sender_reference": message.sender_reference,
        "external_ids": {
            "external_id": message.external_id,  # the channel's id, e.g. the FIT-Connect submission id
            "case_id": message.case_id,
            "xoev_message_uuid": message.xoev_message_uuid,
        },
        "content_type": message.content_type,
        "payload_size": message.payload_size,
        "payload_sha256": message.payload_sha256,
        "next_attempt_at": message.next_attempt_at.isoformat(),
        "last_error": message.last_error,
        "deliveries": [
            {
                "target": d.target,
                "status": d.status,
                "attempts": d.attempts,
                "idempotency_key": d.idempotency_key,
                "last_error": d.last_error,
                "response": d.response,
                "delivered_at": d.delivered_at.isoformat() if d.delivered_at else None,
            }
            for d in deliveries
        ],
        "events": [event_json(e) for e in events],
    }


def event_json(e: Event) -> dict[str, Any]:
    return {
        "at": e.at.isoformat(),
        "kind": e.kind,
        "actor": e.actor,
        "from": e.from_status,
        "to": e.to_status,
        "reason": e.reason,
        "detail": e.detail,
    }


# --------------------------------------------------------------------------------------------------
# Senders


def sender_summary(message: Message, base: str) -> dict[str, Any]:
    return {
        "id": str(message.id),
        "status": message.status,
        "sender_reference": message.sender_reference,
        "standard": message.standard,
        "standard_version": message.standard_version,
        "message_type": message.message_type,
        "created_at": message.created_at.isoformat(),
        "updated_at": message.updated_at.isoformat(),
        "links": links(message, base),
    }


def sender_detail(message: Message, events: list[Event], base: str) -> dict[str, Any]:
    return {
        **sender_summary(message, base),
        "idempotency_key": message.idempotency_key,
        "content_type": message.content_type,
        "payload_size": message.payload_size,
        "payload_sha256": message.payload_sha256,
        "problem": _sender_problem(message, events),
        "validation": _sender_validation(message, events),
        "events": [
            {"at": e.at.isoformat(), "from": e.from_status, "to": e.to_status,
             "actor": _public_actor(e.actor, message)}
            for e in events
            if e.kind == "transition"
        ],
    }


def _public_actor(actor: str, message: Message) -> str:
    """The sender itself by name; anyone else only by role (worker hosts and operators' names stay inside)."""
    if actor == f"sender:{message.sender}":
        return actor
    return "operator" if actor.startswith(("operator:", "user:")) else "hub"  # a token's or a console user's


#: Why a message was rejected, by the stage that rejected it: (problem slug, title, what it means).
_REJECTED_AT = {
    "verify": ("document-malformed", "Document not readable",
               "the document is not well-formed or exceeds a limit; see the validation findings"),
    "validate": ("document-invalid", "Document invalid",
                 "the document failed its schema, code list or Schematron checks; see the validation findings"),
    "route": ("document-not-checkable", "Document could not be checked",
              "this kind of document is accepted only when every check could run, and not every check could; "
              "see the validation report"),
}


def _sender_problem(message: Message, events: list[Event]) -> dict[str, Any] | None:
    if message.status == "rejected":
        stage = _stage_of_last(events, "rejected")
        slug, title, meaning = _REJECTED_AT.get(
            stage or "", ("message-rejected", "Message rejected", "the message cannot be processed"))
        return {"type": TYPE_PREFIX + slug, "title": title, "category": "document", "stage": stage,
                "detail": meaning}
    if message.status == "dead":
        return {"type": TYPE_PREFIX + "processing-stopped", "title": "Processing stopped", "category": "hub",
                "stage": None, "detail": "the hub could not finish this message; its operators have been told "
                "and will resume it. Do not send it again."}
    if message.status == "retry_wait":
        return {"type": TYPE_PREFIX + "processing-delayed", "title": "Processing delayed", "category": "transient",
                "stage": None, "detail": "a step failed for a passing reason and is retried automatically"}
    return None


def _stage_of_last(events: list[Event], to_status: str) -> str | None:
    for e in reversed(events):
        if e.kind == "transition" and e.to_status == to_status:
            stage = (e.detail or {}).get("stage")
            return stage if isinstance(stage, str) and stage in _REJECTED_AT else None
    return None


_FINDING_FIELDS = ("severity", "rule", "line", "path", "message")
_INTERNAL_REASON = "validation could not run"


def _sender_validation(message: Message, events: list[Event]) -> dict[str, Any] | None:
    """The latest validation report, field by field; for a document the parser refused, that refusal."""
    for e in reversed(events):
        report = (e.detail or {}).get("report")
        if isinstance(report, dict):
            reason = report.get("reason")
            if isinstance(reason, str) and reason.startswith(_INTERNAL_REASON):
                reason = "not every check could run on this document (a fault inside the hub; its operators see why)"
            findings = report.get("findings") or []
            return {
                "verdict": report.get("verdict"),
                "reason": reason,
                "standard": report.get("standard"),
                "version": report.get("version"),
                "message_type": report.get("message_type"),
                "findings": [{k: f.get(k) for k in _FINDING_FIELDS} for f in findings if isinstance(f, dict)],
            }
    if message.channel == "rest" and message.status == "rejected" and _stage_of_last(events, "rejected") == "verify":
        # The verify stage's refusal is the safe parser's own description of the sender's document.
        line = next((e.detail or {} for e in reversed(events) if e.to_status == "rejected"), {}).get("line")
        rule = "json" if "json" in message.content_type else "xml"
        return {"verdict": "invalid", "reason": message.last_error, "standard": None, "version": None,
                "message_type": None,
                "findings": [{"severity": "error", "rule": rule, "line": line, "path": None,
                              "message": message.last_error}]}
    return None
