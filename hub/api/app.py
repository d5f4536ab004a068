"""The HTTP API: REST intake for portals, message status and trail, operator actions, health.

Handlers are async; database work and XML parsing run in the thread pool, never on the event loop.
``POST /api/v1/messages`` answers ``202`` only after the message and its first event are committed.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from adapters.fitconnect import ReplayGuard
from hub import operations, store
from hub.api import callbacks, problems
from hub.api.health import health_router
from hub.api.problems import Problem
from hub.api.views import message_detail, message_summary
from hub.auth import Principal, authenticate
from hub.config import HubConfig
from hub.models import Message
from hub.pipeline.verify import is_json, is_xml
from hub.rules import RuleHolder, RulesError
from hub.statemachine import IllegalTransition, Status
from hub.targets import target_overview
from hub.xmlsafe import XmlLimits, XmlRejected, parse

__all__ = ["create_app"]

log = logging.getLogger(__name__)

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
#: FIT-Connect service identifier: the LeiKa key, with or without its URN prefix.
_LEIKA = r"^(urn:de:fim:leika:leistung:)?\d{14}$"


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

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if lifespan_hooks:
            await run_in_threadpool(lifespan_hooks[0])
        try:
            yield
        finally:
            if lifespan_hooks:
                await run_in_threadpool(lifespan_hooks[1])

    app = FastAPI(title="xoev-hub", version="0.1.0", lifespan=lifespan)
    app.state.config = config
    holder = rules or RuleHolder(config)
    replay_guard = ReplayGuard()  # FIT-Connect callbacks seen lately: a replayed one is refused
    problems.install(app)
    limits = XmlLimits(max_bytes=config.api.max_body_bytes)

    def base_url(request: Request) -> str:
        return (config.api.public_url or str(request.base_url)).rstrip("/")

    def visible(message: Message | None, who: Principal, message_id: uuid.UUID) -> Message:
        if message is None or (who.kind == "sender" and (message.tenant, message.sender) != (who.tenant, who.name)):
            raise Problem(404, "message-not-found", "Message not found", f"no message {message_id} is visible to you")
        return message

    @app.post("/api/v1/messages", status_code=202, responses={200: {}, 202: {}})
    async def submit(
        request: Request,
        who: Auth,
        idempotency_key: Annotated[str | None, Header()] = None,
        x_sender_reference: Annotated[str | None, Header(max_length=255)] = None,
        x_service_identifier: Annotated[str | None, Header(pattern=_LEIKA)] = None,
        x_region_key: Annotated[str | None, Header(pattern=r"^\d{8}(\d{4})?$")] = None,
    ) -> JSONResponse:
        if who.kind != "sender":
            raise Problem(403, "not-a-sender", "Not a sender", "only sender tokens can submit messages")
        content_type = request.headers.get("content-type", "")
        if not (is_xml(content_type) or is_json(content_type)):
            raise Problem(415, "unsupported-media-type", "Unsupported media type",
                          "send the message as application/xml (an XÖV message) or application/json "
                          f"(got {content_type or 'no Content-Type'})")
        if idempotency_key is not None and not _IDEMPOTENCY_KEY.match(idempotency_key):
            raise Problem(400, "invalid-idempotency-key", "Invalid Idempotency-Key",
                          "the Idempotency-Key must be 1 to 255 printable ASCII characters without spaces")
        body = await _read_capped(request, config.api.max_body_bytes)
        if is_xml(content_type):
            try:
                await run_in_threadpool(parse, body, limits)
            except XmlRejected as exc:
                slug = "empty-body" if exc.title == "Empty document" else "malformed-xml"
                raise Problem(400, slug, exc.title, exc.detail, line=exc.line) from None
        else:
            _check_json(body)
        attributes = {"service": x_service_identifier, "region": x_region_key}
        new = store.NewMessage(
            tenant=who.tenant or "",
            channel="rest",
            sender=who.name,
            parts=[store.Part("payload", content_type.split(";")[0].strip().lower(), body)],
            idempotency_key=idempotency_key,
            sender_reference=x_sender_reference,
            attributes={k: v for k, v in attributes.items() if v},
        )
        try:
            message, created = await run_in_threadpool(store.accept, engine, new, actor=f"sender:{who.name}")
        except store.IdempotencyConflict as exc:
            raise Problem(422, "idempotency-key-reused", "Idempotency-Key reused",
                          f"this Idempotency-Key was already used for message {exc.existing_id} with a different "
                          "payload; use a new key for a new message", existing_message=str(exc.existing_id)) from None
        if created and on_accept is not None:
            on_accept()
        base = base_url(request)
        location = f"{base}/api/v1/messages/{message.id}"
        body_json = {"id": str(message.id), "status": message.status, "links": {"self": location}}
        headers = {"Location": location}
        if not created:
            headers["Idempotent-Replayed"] = "true"
        return JSONResponse(body_json, status_code=202 if created else 200, headers=headers)

    @app.get("/api/v1/messages/{message_id}")
    async def show(message_id: uuid.UUID, request: Request, who: Auth) -> dict[str, Any]:
        message = visible(await run_in_threadpool(store.get, engine, message_id), who, message_id)

        def load() -> tuple[Any, Any]:
            return store.events(engine, message_id), store.deliveries(engine, message_id)

        events, deliveries = await run_in_threadpool(load)
        return message_detail(message, events, deliveries, base_url(request))

    @app.get("/api/v1/messages")
    async def list_(
        request: Request,
        who: Auth,
        status: Annotated[Status | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> dict[str, Any]:
        sender = who.name if who.kind == "sender" else None
        rows = await run_in_threadpool(
            lambda: store.list_messages(engine, status=status, tenant=who.tenant, sender=sender, limit=limit)
        )
        base = base_url(request)
        return {"items": [message_summary(m, base) for m in rows]}

    @app.post("/api/v1/messages/{message_id}/requeue")
    async def requeue(message_id: uuid.UUID, request: Request, who: Auth) -> dict[str, Any]:
        _operator(who, "requeueing")
        visible(await run_in_threadpool(store.get, engine, message_id), who, message_id)
        try:
            await run_in_threadpool(lambda: operations.requeue(engine, message_id, operator=who.name))
        except IllegalTransition:
            raise Problem(409, "not-requeueable", "Message cannot be requeued",
                          f"message {message_id} is not dead; only dead messages can be requeued") from None
        if on_accept is not None:
            on_accept()
        return {"id": str(message_id), "status": Status.RETRY_WAIT.value}

    @app.get("/api/v1/targets")
    async def targets(who: Auth) -> dict[str, Any]:
        """Every target with its circuit state (closed | open | half-open) and calls in flight."""
        _operator(who, "target state")
        return {"items": await run_in_threadpool(target_overview, engine, config.targets)}

    @app.get("/api/v1/rules")
    async def rules_in_force(who: Auth) -> dict[str, Any]:
        """The routes and mappings in force, and why the last reload failed (if it did)."""
        _operator(who, "reading the rules")
        return {**holder.current.summary(), "last_reload_error": holder.last_error}

    @app.post("/api/v1/rules/reload")
    async def reload_rules(who: Auth) -> dict[str, Any]:
        """Load the rules again; messages in flight finish with the rules they started with."""
        _operator(who, "reloading the rules")
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


def _check_json(body: bytes) -> None:
    if not body.strip():
        raise Problem(400, "empty-body", "Empty document", "the message body is empty")
    try:
        data = json.loads(body.decode("utf-8"))  # RFC 8259: JSON exchanged between systems is UTF-8
    except UnicodeDecodeError:
        raise Problem(400, "malformed-json", "Not valid JSON", "the body is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise Problem(400, "malformed-json", "Not valid JSON", f"line {exc.lineno} column {exc.colno}: {exc.msg}",
                      line=exc.lineno) from None
    if not isinstance(data, dict):
        raise Problem(400, "malformed-json", "Not valid JSON", "the message must be a JSON object")


def _operator(who: Principal, what: str) -> None:
    if who.kind != "operator":
        raise Problem(403, "not-an-operator", "Operators only", f"{what} needs an operator token")


def principal(request: Request, authorization: Annotated[str | None, Header()] = None) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``; 401 problem otherwise."""
    challenge = {"WWW-Authenticate": 'Bearer realm="xoev-hub"'}
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


async def _read_capped(request: Request, limit: int) -> bytes:
    """Read the body, refusing anything over ``limit`` bytes without reading it all into memory."""
    declared = request.headers.get("content-length")
    too_large = Problem(413, "payload-too-large", "Payload too large",
                        f"the message must not exceed {limit} bytes")
    if declared is not None:
        if not declared.isdigit():
            raise Problem(400, "bad-content-length", "Invalid Content-Length", "Content-Length must be a number")
        if int(declared) > limit:
            raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)
