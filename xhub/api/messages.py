"""The messages as senders and operators see them: one with its trail, the newest ones, and a requeue."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from hub import operations, store
from hub.auth import Auth
from hub.problems import Problem, no_unknown_query
from hub.statemachine import IllegalTransition, Status
from xhub.api.deps import State, operator_only, visible
from xhub.api.views import message_detail, message_summary, sender_detail, sender_summary

__all__ = ["router"]

router = APIRouter(tags=["Messages"])


@router.get("/api/v1/messages/{message_id}")
async def show(message_id: uuid.UUID, request: Request, who: Auth, hub: State) -> dict[str, Any]:
    """A message with its trail: everything for operators, the allow-listed sender view for senders."""
    no_unknown_query(request)
    message = visible(await run_in_threadpool(store.get, hub.engine, message_id), who, message_id)
    if who.kind == "sender":
        return sender_detail(message, await run_in_threadpool(store.events, hub.engine, message_id), hub.base)

    def load() -> tuple[Any, Any]:
        return store.events(hub.engine, message_id), store.deliveries(hub.engine, message_id)

    events, deliveries = await run_in_threadpool(load)
    return message_detail(message, events, deliveries, hub.base)


@router.get("/api/v1/messages")
async def list_(
    request: Request,
    who: Auth,
    hub: State,
    status: Annotated[Status | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    """Newest first; senders see their own messages only."""
    no_unknown_query(request, "status", "limit")
    sender = who.name if who.kind == "sender" else None
    rows = await run_in_threadpool(
        lambda: store.list_messages(hub.engine, status=status, tenant=who.tenant, sender=sender, limit=limit)
    )
    view = sender_summary if who.kind == "sender" else message_summary
    return {"items": [view(m, hub.base) for m in rows]}


@router.post("/api/v1/messages/{message_id}/requeue")
async def requeue(message_id: uuid.UUID, request: Request, who: Auth, hub: State) -> dict[str, Any]:
    """A dead message gets a fresh retry budget and resumes where it stopped; 409 for any other."""
    operator_only(who, "requeueing")
    no_unknown_query(request)
    visible(await run_in_threadpool(store.get, hub.engine, message_id), who, message_id)
    try:
        await run_in_threadpool(lambda: operations.requeue(hub.engine, message_id, operator=who.name))
    except IllegalTransition:
        raise Problem(409, "not-requeueable", "Message cannot be requeued",
                      f"message {message_id} is not dead; only dead messages can be requeued") from None
    hub.wake()
    return {"id": str(message_id), "status": Status.RETRY_WAIT.value}
