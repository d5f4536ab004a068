"""The HTTP API: REST intake for portals, message status and trail, operator actions, health.

Handlers are async; database work runs in the thread pool and parsing on the intake's parse gate, never on
the event loop. ``POST /api/v1/messages`` answers ``202`` only after the message and its first event are
committed, and always once they are (from what was written, without reading it back). The door's checks,
limits and memory budget are in :mod:`hub.api.intake` and docs/security/intake.md.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from adapters.fitconnect import ReplayGuard
from hub import operations, store
from hub.api import callbacks, problems
from hub.api.budget import MemoryBudget, ParseGate
from hub.api.guard import ErrorGuard, safe_description
from hub.api.health import health_router
from hub.api.intake import check_payload, intake_headers, read_body, single_header
from hub.api.problems import Problem, database_unavailable, is_database_unavailable, shorten
from hub.api.views import message_detail, message_summary, sender_detail, sender_summary
from hub.auth import Principal, authenticate
from hub.config import HubConfig
from hub.models import Message
from hub.rules import RuleHolder, RulesError
from hub.statemachine import IllegalTransition, Status
from hub.targets import target_overview

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def create_app(
    config: HubConfig,
    engine: Engine,
    *,
    rules: RuleHolder | None = None,
    on_accept: Callable[[], None] | None = None,
    on_callback: Callable[[], None] | None = None,
    lifespan_hooks: tuple[Callable[[], None], Callable[[], None]] | None = None,
) -> FastAPI:
    """Build the app. ``on_accept`` is called after each new message (wakes an embedded worker);
    ``lifespan_hooks`` = (start, stop) run with the server (start/stop the embedded worker)."""
    api = config.api
    budget = MemoryBudget(api.intake_memory_bytes)
    gate = ParseGate(api.intake_parse_threads)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if lifespan_hooks:
            await run_in_threadpool(lifespan_hooks[0])
        try:
            yield
        finally:
            if lifespan_hooks:
                await run_in_threadpool(lifespan_hooks[1])
            await run_in_threadpool(gate.close)

    app = FastAPI(title="xoev-hub", version="0.1.0", lifespan=lifespan)
    app.state.config = config
    app.state.intake_budget = budget
    holder = rules or RuleHolder(config)
    replay_guard = ReplayGuard()  # FIT-Connect callbacks seen lately: a replayed one is refused
    problems.install(app)
    app.add_middleware(ErrorGuard, retry_after=api.retry_after_seconds, max_header_bytes=api.max_header_bytes)
    xml_limits = config.limits.xml_limits(api.max_body_bytes)
    json_limits = config.limits.json_limits(api.max_body_bytes)
    # Links are built from configuration only: a Host header is the client's word, not the hub's address.
    base = api.public_url or ""

    def visible(message: Message | None, who: Principal, message_id: uuid.UUID) -> Message:
        if message is None or (who.kind == "sender" and (message.tenant, message.sender) != (who.tenant, who.name)):
            raise Problem(404, "message-not-found", "Message not found", f"no message {message_id} is visible to you")
        return message

    @app.post("/api/v1/messages", status_code=202, responses={200: {}, 202: {}})
    async def submit(request: Request, who: Auth) -> JSONResponse:
        """Accept one message (XML or JSON). 202 when stored, 200 when an Idempotency-Key replays one."""
        if who.kind != "sender":
            raise Problem(403, "not-a-sender", "Not a sender", "only sender tokens can submit messages")
        _query_parameters(request)
        headers = intake_headers(request, api.max_body_bytes)
        body, reservation = await read_body(request, headers, api.max_body_bytes, budget, api.retry_after_seconds)
        with reservation:
            await gate.run(len(body), check_payload, body, headers.is_xml, xml_limits, json_limits)
            new = store.NewMessage(
                tenant=who.tenant or "",
                channel="rest",
                sender=who.name,
                parts=[store.Part("payload", headers.media_type, body)],
                idempotency_key=headers.idempotency_key,
                sender_reference=headers.sender_reference,
                attributes=headers.attributes,
            )
            del body
            message, created = await _accept(engine, new, who, api.retry_after_seconds)
            del new
        if created:
            _wake(on_accept)
        location = f"{base}/api/v1/messages/{message.id}"
        answer = {"id": str(message.id), "status": message.status, "links": {"self": location}}
        replay = {} if created else {"Idempotent-Replayed": "true"}
        return JSONResponse(answer, status_code=202 if created else 200, headers={"Location": location, **replay})

    @app.get("/api/v1/messages/{message_id}")
    async def show(message_id: uuid.UUID, request: Request, who: Auth) -> dict[str, Any]:
        """A message with its trail: everything for operators, the allow-listed sender view for senders."""
        _query_parameters(request)
        message = visible(await run_in_threadpool(store.get, engine, message_id), who, message_id)
        if who.kind == "sender":
            return sender_detail(message, await run_in_threadpool(store.events, engine, message_id), base)

        def load() -> tuple[Any, Any]:
            return store.events(engine, message_id), store.deliveries(engine, message_id)

        events, deliveries = await run_in_threadpool(load)
        return message_detail(message, events, deliveries, base)

    @app.get("/api/v1/messages")
    async def list_(
        request: Request,
        who: Auth,
        status: Annotated[Status | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        """Newest first; senders see their own messages only."""
        _query_parameters(request, "status", "limit")
        sender = who.name if who.kind == "sender" else None
        rows = await run_in_threadpool(
            lambda: store.list_messages(engine, status=status, tenant=who.tenant, sender=sender, limit=limit)
        )
        view = sender_summary if who.kind == "sender" else message_summary
        return {"items": [view(m, base) for m in rows]}

    @app.post("/api/v1/messages/{message_id}/requeue")
    async def requeue(message_id: uuid.UUID, request: Request, who: Auth) -> dict[str, Any]:
        _operator(who, "requeueing")
        _query_parameters(request)
        visible(await run_in_threadpool(store.get, engine, message_id), who, message_id)
        try:
            await run_in_threadpool(lambda: operations.requeue(engine, message_id, operator=who.name))
        except IllegalTransition:
            raise Problem(409, "not-requeueable", "Message cannot be requeued",
                          f"message {message_id} is not dead; only dead messages can be requeued") from None
        _wake(on_accept)
        return {"id": str(message_id), "status": Status.RETRY_WAIT.value}

    @app.get("/api/v1/targets")
    async def targets(request: Request, who: Auth) -> dict[str, Any]:
        """Every target with its circuit state (closed | open | half-open) and calls in flight."""
        _operator(who, "target state")
        _query_parameters(request)
        return {"items": await run_in_threadpool(target_overview, engine, config.targets)}

    @app.get("/api/v1/rules")
    async def rules_in_force(request: Request, who: Auth) -> dict[str, Any]:
        """The routes and mappings in force, and why the last reload failed (if it did)."""
        _operator(who, "reading the rules")
        _query_parameters(request)
        return {**holder.current.summary(), "last_reload_error": holder.last_error}

    @app.post("/api/v1/rules/reload")
    async def reload_rules(request: Request, who: Auth) -> dict[str, Any]:
        """Load the rules again; messages in flight finish with the rules they started with."""
        _operator(who, "reloading the rules")
        _query_parameters(request)
        try:
            fresh = await run_in_threadpool(holder.reload)
        except RulesError as exc:
            raise Problem(422, "invalid-rules", "Rules not reloaded",
                          "the new rules have problems; the previous ones stay in force",
                          problems=exc.problems) from None
        return fresh.summary()

    @app.post("/api/v1/fitconnect/callback")
    async def fitconnect_callback(request: Request) -> dict[str, Any]:
        """FIT-Connect's new-submission callback: checked (size, shape, HMAC, timestamp, replay), then it
        triggers a poll (:mod:`hub.api.callbacks`)."""
        return await callbacks.receive(request, config, replay_guard, on_callback)

    app.include_router(health_router(config, engine))  # /health, /health/live, /health/ready

    return app


async def _accept(engine: Engine, new: store.NewMessage, who: Principal, retry_after: int) -> tuple[Message, bool]:
    try:
        return await run_in_threadpool(store.accept, engine, new, actor=f"sender:{who.name}")
    except store.IdempotencyConflict as exc:
        raise Problem(422, "idempotency-key-reused", "Idempotency-Key reused",
                      f"this Idempotency-Key was already used for message {exc.existing_id} with a different "
                      "payload; use a new key for a new message", existing_message=str(exc.existing_id)) from None
    except SQLAlchemyError as exc:
        if not is_database_unavailable(exc):
            raise
        log.warning("database unavailable while accepting a message of sender %s: %s", who.name,
                    safe_description(exc))
        raise database_unavailable(
            retry_after,
            "the hub's database did not answer, so the message may not have been stored. Send it again after "
            "the Retry-After interval with the same Idempotency-Key: if it was stored after all, the hub answers "
            "with that message instead of storing it twice",
        ) from None


def _wake(on_accept: Callable[[], None] | None) -> None:
    """Tell the embedded worker; the message is committed, so nothing here may turn the answer into an error."""
    if on_accept is None:
        return
    try:
        on_accept()
    except Exception as exc:  # the worker polls anyway; the sender must still hear "accepted"
        log.error("could not wake the worker after an accept: %s", safe_description(exc))


def _query_parameters(request: Request, *known: str) -> None:
    """Refuse query parameters a route does not take, and any given twice: they would be silently ignored."""
    seen: set[str] = set()
    for name, _value in request.query_params.multi_items():
        if name not in known:
            takes = f"it takes {', '.join(known)}" if known else "it takes none"
            raise Problem(400, "invalid-request", "Invalid request",
                          f"query.{shorten(name, 60)}: unknown query parameter ({takes})")
        if name in seen:
            raise Problem(400, "invalid-request", "Invalid request",
                          f"query.{name}: given more than once")
        seen.add(name)


def _operator(who: Principal, what: str) -> None:
    if who.kind != "operator":
        raise Problem(403, "not-an-operator", "Operators only", f"{what} needs an operator token")


def principal(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``; 401 problem otherwise (the token is never echoed)."""
    challenge = {"WWW-Authenticate": 'Bearer realm="xoev-hub"'}
    authorization = single_header(request, "authorization")
    if not authorization:
        raise Problem(401, "unauthorized", "Authentication required",
                      "send an 'Authorization: Bearer <token>' header", headers=challenge)
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "unauthorized", "Authentication required",
                      "the Authorization header must use the Bearer scheme", headers=challenge)
    found = authenticate(request.app.state.config, token.strip())
    if found is None:
        raise Problem(401, "invalid-token", "Invalid token",
                      "the bearer token is not known to this hub", headers=challenge)
    return found


Auth = Annotated[Principal, Depends(principal)]
