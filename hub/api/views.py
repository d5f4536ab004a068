"""JSON shapes of the API's resources."""

from __future__ import annotations

from typing import Any

from hub.models import Delivery, Event, Message


def links(message: Message, base: str) -> dict[str, str]:
    return {"self": f"{base}/api/v1/messages/{message.id}"}


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
            "fitconnect_submission_id": message.fitconnect_submission_id,
            "fitconnect_case_id": message.fitconnect_case_id,
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
