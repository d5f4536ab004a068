"""The operations API (``/api/v1/ops/…``): everything the console does, as JSON, with the same roles.

* viewer: search, a message's whole case, dashboard, audit list, dry runs (rules at hand);
* operator: and retry, requeue from a stage, reject, edit-before-resubmit, bulk requeue/reject, payload download;
* admin: and the users.

Every query stays inside the caller's tenants; a message of another tenant is 404. Every action and every
payload download is an audit entry (:mod:`hub.audit`).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from hub import actions, audit, store, users
from hub.access import Caller
from hub.explain import explain_route
from hub.jsonsafe import JsonRejected
from hub.jsonsafe import loads as json_loads
from hub.problems import Problem, no_unknown_query, single_header
from hub.search import BadCursor, Filter, count, search
from hub.statemachine import Status
from hub.users import Role
from hub.xmlsafe import XmlRejected, parse
from xhub.api.access import CallerDep, Ops, OpsState, require
from xhub.api.deps import State
from xhub.api.ops_views import case_of, dashboard, summary, visible_to

__all__ = ["JSON_BODY_LIMIT", "FilterBody", "read_capped", "router"]

router = APIRouter(tags=["Operations console"])

JSON_BODY_LIMIT = 16 * 1024
Text = Annotated[str | None, Query(max_length=255)]
SEARCH_PARAMS = ("q", "status", "tenant", "channel", "route", "target", "standard", "message_type", "since",
                 "until", "limit", "cursor")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FilterBody(_Body):
    q: str | None = Field(None, max_length=255)
    status: Status | None = None
    tenant: str | None = Field(None, max_length=100)
    channel: str | None = Field(None, max_length=40)
    route: str | None = Field(None, max_length=100)
    target: str | None = Field(None, max_length=100)
    standard: str | None = Field(None, max_length=100)
    message_type: str | None = Field(None, max_length=200)
    since: datetime | None = None
    until: datetime | None = None

    def to_filter(self) -> Filter:
        return make_filter(**self.model_dump())


class RequeueBody(_Body):
    stage: Literal["validate", "route", "deliver"] | None = None
    reason: str | None = Field(None, max_length=500)


class RejectBody(_Body):
    reason: str = Field(min_length=1, max_length=500)


class BulkBody(_Body):
    filter: FilterBody
    action: Literal["requeue", "reject"]
    reason: str | None = Field(None, max_length=500)
    stage: Literal["validate", "route", "deliver"] | None = None
    bound: int | None = Field(None, ge=1, le=10000, description="at most this many; the hub's bulk_bound caps it")


def make_filter(**values: Any) -> Filter:
    for key in ("since", "until"):
        moment = values.get(key)
        if isinstance(moment, datetime) and moment.tzinfo is None:
            raise Problem(400, "invalid-request", "Invalid request",
                          f"{key}: give a time zone (e.g. 2026-01-05T08:00Z)")
    if isinstance(values.get("status"), Status):
        values["status"] = values["status"].value
    return Filter(**{k: (v if v != "" else None) for k, v in values.items()})


async def json_body(request: Request, model: type[BaseModel]) -> Any:
    """The request's JSON body, checked for size before it is read and for shape before it is used."""
    raw = await read_capped(request, JSON_BODY_LIMIT)
    ctype = (single_header(request, "content-type") or "").split(";")[0].strip().lower()
    if raw and ctype != "application/json":  # no body at all: the defaults
        raise Problem(415, "unsupported-media-type", "Unsupported media type", "send application/json")
    try:
        data = json_loads(raw or b"{}")
    except JsonRejected as exc:
        raise Problem(400, "invalid-json", "Invalid JSON", str(exc)) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[:5]
        raise Problem(422, "invalid-request", "Invalid request",
                      "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in first)) from None


async def read_capped(request: Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes (413 beyond, before reading it when Content-Length says so)."""
    declared = single_header(request, "content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise Problem(413, "payload-too-large", "Payload too large", f"the body may have at most {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(413, "payload-too-large", "Payload too large", f"the body may have at most {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    request._body = body  # starlette reads a cached body for form() and json()
    return body


def check_payload(ops: OpsState, body: bytes, content_type: str) -> None:
    """A corrected or pasted payload: well-formed XML or JSON within the door's limits."""
    if not body:
        raise Problem(400, "empty-payload", "Empty payload", "the payload is empty")
    limits = ops.config.limits
    try:
        if "json" in content_type:
            json_loads(body, limits.json_limits(ops.config.api.max_body_bytes))
        else:
            parse(body, limits.xml_limits(ops.config.api.max_body_bytes))
    except (XmlRejected, JsonRejected) as exc:
        raise Problem(422, "payload-malformed", "Payload not well-formed", str(exc)) from None


def payload_type(request: Request) -> str:
    ctype = (single_header(request, "content-type") or "").split(";")[0].strip().lower()
    if ctype not in ("application/xml", "text/xml", "application/json"):
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      "send the payload as application/xml or application/json")
    return ctype


# --------------------------------------------------------------------------------------------------
# Reading


@router.get("/api/v1/ops/me")
async def me(who: CallerDep) -> dict[str, Any]:
    """Who you are to the hub: name, role, tenants (null: all)."""
    return {"name": who.name, "kind": who.kind, "role": who.role.value,
            "tenants": sorted(who.tenants) if who.tenants is not None else None}


@router.get("/api/v1/ops/messages")
async def search_messages(
    request: Request, who: CallerDep, ops: Ops,
    q: Text = None, status: Annotated[Status | None, Query()] = None, tenant: Text = None, channel: Text = None,
    route: Text = None, target: Text = None, standard: Text = None, message_type: Text = None,
    since: Annotated[datetime | None, Query()] = None, until: Annotated[datetime | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50, cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, Any]:
    """Search by any id (``q``: hub id, sender reference, FIT-Connect submission or case id, XÖV message UUID)
    and by facts; newest first; ``next_cursor`` gives the next page."""
    no_unknown_query(request, *SEARCH_PARAMS)
    f = make_filter(q=q, status=status, tenant=tenant, channel=channel, route=route, target=target,
                    standard=standard, message_type=message_type, since=since, until=until)
    try:
        page = await run_in_threadpool(search, ops.engine, who, f, limit=limit, cursor=cursor)
    except BadCursor as exc:
        raise Problem(400, "invalid-cursor", "Invalid cursor", str(exc)) from None
    return {"items": [summary(m) for m in page.items], "next_cursor": page.next_cursor, "filter": f.as_json()}


@router.get("/api/v1/ops/messages/{message_id}")
async def case(message_id: uuid.UUID, request: Request, who: CallerDep, ops: Ops, hub: State) -> dict[str, Any]:
    """One case from intake to receipt: facts, trail, validation report, route explanation, delivery attempts
    with the targets' answers, answers to the sender, versions, audit entries, the actions you may take."""
    no_unknown_query(request)

    def load() -> dict[str, Any]:
        return case_of(ops.engine, who, visible_to(ops.engine, who, message_id), hub.base)

    return await run_in_threadpool(load)


@router.get("/api/v1/ops/messages/{message_id}/payload", response_class=Response)
async def download(message_id: uuid.UUID, request: Request, who: CallerDep, ops: Ops) -> Response:
    """The payload as received (operators); every download is an audit entry."""
    no_unknown_query(request)
    require(who, Role.OPERATOR, "reading a payload")
    return await run_in_threadpool(payload_response, ops, who, message_id, "api")


def payload_response(ops: OpsState, who: Caller, message_id: uuid.UUID, via: str) -> Response:
    message = visible_to(ops.engine, who, message_id)
    parts = store.payload(ops.engine, message_id)
    body = parts[0].body if parts and parts[0].body is not None else b""
    audit.record(ops.engine, who, "payload-view", message_id=message_id, tenant=message.tenant,
                 detail={"via": via, "sha256": message.payload_sha256, "size": len(body)})
    ext = "json" if "json" in message.content_type else "xml"
    return Response(body, media_type="application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="{message_id}.{ext}"', "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store", "Content-Security-Policy": "sandbox"})


@router.get("/api/v1/ops/dashboard")
async def dashboard_figures(request: Request, who: CallerDep, ops: Ops, hub: State) -> dict[str, Any]:
    """Per tenant and target: messages per minute, error rate, p95 latency, oldest waiting, dead count, circuit
    state; and the workers' and pollers' health."""
    no_unknown_query(request)
    loops = getattr(request.app.state, "loops", [])
    return await run_in_threadpool(dashboard_data, ops, hub, who, loops)


def dashboard_data(ops: OpsState, hub: Any, who: Caller, loops: Any) -> dict[str, Any]:
    try:
        components = {name: c.as_json() for name, c in hub.health.ready(loops).items()
                      if name != "database" and name != "blob_store"}
    except Exception:  # health is a nice-to-have on the dashboard; the figures stand without it
        components = {}
    return dashboard(ops.engine, who, ops.config.targets, components)


@router.get("/api/v1/ops/audit")
async def audit_list(
    request: Request, who: CallerDep, ops: Ops,
    before: Annotated[int | None, Query(ge=1)] = None, limit: Annotated[int, Query(ge=1, le=500)] = 100,
    message: Annotated[uuid.UUID | None, Query()] = None,
) -> dict[str, Any]:
    """Audit entries, newest first, within your tenants (admins: all, including logins and user changes)."""
    no_unknown_query(request, "before", "limit", "message")
    rows = await run_in_threadpool(lambda: audit.entries(ops.engine, who, message_id=message, before=before,
                                                         limit=limit))
    return {"items": [audit.entry_json(e) for e in rows], "next_before": rows[-1].id if len(rows) == limit else None}


@router.get("/api/v1/ops/users")
async def user_list(request: Request, who: CallerDep, ops: Ops) -> dict[str, Any]:
    """The console's users (admins)."""
    no_unknown_query(request)
    require(who, Role.ADMIN, "the user list")
    rows = await run_in_threadpool(users.list_users, ops.engine)
    return {"items": [{"name": u.name, "role": u.role.value, "tenants": list(u.tenants), "disabled": u.disabled,
                       "password": u.has_password, "oidc": u.oidc_subject is not None,
                       "created_at": u.created_at.isoformat()} for u in rows]}


@router.post("/api/v1/ops/explain")
async def explain(
    request: Request, who: CallerDep, ops: Ops, hub: State,
    tenant: Annotated[str, Query(min_length=1, max_length=100)], channel: Text = "rest", sender: Text = "console",
) -> dict[str, Any]:
    """Rules at hand: the payload's validation, the route it would take (and why the others do not) and what
    each target would get. Nothing is stored or delivered."""
    no_unknown_query(request, "tenant", "channel", "sender")
    if not who.sees(tenant):
        raise Problem(404, "tenant-not-found", "Tenant not found", "no such tenant is visible to you")
    ctype = payload_type(request)
    body = await read_capped(request, ops.config.api.max_body_bytes)
    check_payload(ops, body, ctype)
    return await run_in_threadpool(explanation, hub, body, {"tenant": tenant, "channel": channel, "sender": sender})


def explanation(hub: Any, body: bytes, facts: dict[str, Any]) -> dict[str, Any]:
    result = explain_route(hub.config, hub.rules.current, body, facts)
    report = result.report
    return {
        "facts": {"tenant": result.facts.tenant, "channel": result.facts.channel, "sender": result.facts.sender,
                  "standard": result.facts.standard, "version": result.facts.version,
                  "message_type": result.facts.message_type},
        "validation": None if report is None else {
            "summary": report.summary(),
            "findings": [{"severity": str(getattr(f.severity, "value", f.severity)), "rule": f.rule,
                          "line": f.line, "path": f.path, "message": f.message} for f in report.findings]},
        "route": result.decision.route.name if result.decision.route else None,
        "not_matched": result.decision.explanation,
        "outputs": result.outputs,
        "text": result.text(),
    }


# --------------------------------------------------------------------------------------------------
# Acting


def _act(ops: OpsState, who: Caller, message_id: uuid.UUID, what: str) -> Any:
    require(who, Role.OPERATOR, what)
    return visible_to(ops.engine, who, message_id)


def _conflict(exc: Exception) -> Problem:
    return Problem(409, "action-not-possible", "Action not possible", str(exc))


@router.post("/api/v1/ops/messages/{message_id}/retry")
async def retry(message_id: uuid.UUID, request: Request, who: CallerDep, ops: Ops, hub: State) -> dict[str, Any]:
    """A waiting message is due at once; a dead one gets a fresh retry budget. It resumes where it stopped."""
    no_unknown_query(request)

    def run() -> None:
        actions.retry_now(ops.engine, who, _act(ops, who, message_id, "retrying"))

    try:
        await run_in_threadpool(run)
    except actions.NotAllowed as exc:
        raise _conflict(exc) from None
    hub.wake()
    return {"id": str(message_id), "status": Status.RETRY_WAIT.value}


@router.post("/api/v1/ops/messages/{message_id}/requeue")
async def requeue(message_id: uuid.UUID, request: Request, who: CallerDep, ops: Ops, hub: State) -> dict[str, Any]:
    """Resume at a chosen stage (validate, route, deliver) with a fresh retry budget."""
    no_unknown_query(request)
    message = await run_in_threadpool(_act, ops, who, message_id, "requeueing")
    body: RequeueBody = await json_body(request, RequeueBody)

    def run() -> None:
        actions.requeue(ops.engine, who, message, body.stage, body.reason)

    try:
        await run_in_threadpool(run)
    except actions.NotAllowed as exc:
        raise _conflict(exc) from None
    hub.wake()
    return {"id": str(message_id), "status": Status.RETRY_WAIT.value, "stage": body.stage}


@router.post("/api/v1/ops/messages/{message_id}/reject")
async def reject(message_id: uuid.UUID, request: Request, who: CallerDep, ops: Ops) -> dict[str, Any]:
    """Reject with a reason; a FIT-Connect message's sender gets a reject-submission first."""
    no_unknown_query(request)
    message = await run_in_threadpool(_act, ops, who, message_id, "rejecting")
    body: RejectBody = await json_body(request, RejectBody)

    def run() -> str:
        return actions.reject(ops.engine, who, message, body.reason, ops.channels)

    try:
        told = await run_in_threadpool(run)
    except actions.NotAllowed as exc:
        raise _conflict(exc) from None
    except actions.ActionFailed as exc:
        raise Problem(502, "answer-not-sent", "Answer not sent", f"{exc}; the message is unchanged") from None
    except ValueError as exc:
        raise Problem(422, "invalid-request", "Invalid request", str(exc)) from None
    return {"id": str(message_id), "status": Status.REJECTED.value, "answer": told or None}


@router.post("/api/v1/ops/messages/{message_id}/resubmit", status_code=201)
async def resubmit(message_id: uuid.UUID, request: Request, who: CallerDep, ops: Ops, hub: State) -> dict[str, Any]:
    """Edit before resubmit: the body (application/xml or application/json) becomes a new version of the message,
    linked to it; the original stays (closed as superseded when it was dead or waiting)."""
    no_unknown_query(request)
    message = await run_in_threadpool(_act, ops, who, message_id, "resubmitting")
    ctype = payload_type(request)
    body = await read_capped(request, ops.config.api.max_body_bytes)
    check_payload(ops, body, ctype)
    comment = (single_header(request, "x-comment") or "")[:500]

    def run() -> uuid.UUID:
        return actions.resubmit(ops.engine, who, message, body, ctype, ops.channels, ops.blobs, comment)

    try:
        new_id = await run_in_threadpool(run)
    except actions.NotAllowed as exc:
        raise _conflict(exc) from None
    hub.wake()
    return {"id": str(new_id), "previous_version_id": str(message_id), "status": Status.RECEIVED.value}


@router.post("/api/v1/ops/bulk/preview")
async def bulk_preview(request: Request, who: CallerDep, ops: Ops) -> dict[str, Any]:
    """How many messages a bulk action would touch (counted up to the bound) and a sample of them."""
    no_unknown_query(request)
    require(who, Role.OPERATOR, "bulk actions")
    body: BulkBody = await json_body(request, BulkBody)
    return await run_in_threadpool(preview, ops, who, body.filter.to_filter(), bound_of(ops, body.bound))


def bound_of(ops: OpsState, asked: int | None) -> int:
    return min(asked or ops.config.console.bulk_bound, ops.config.console.bulk_bound)


def preview(ops: OpsState, who: Caller, f: Filter, bound: int) -> dict[str, Any]:
    if f.empty:
        raise Problem(422, "filter-empty", "Filter empty", "a bulk action needs a filter (at least one condition)")
    matched = count(ops.engine, who, f, cap=bound)
    sample = search(ops.engine, who, f, limit=10).items
    return {"count": min(matched, bound), "more_than_bound": matched > bound, "bound": bound,
            "sample": [summary(m) for m in sample], "filter": f.as_json()}


@router.post("/api/v1/ops/bulk")
async def bulk(request: Request, who: CallerDep, ops: Ops, hub: State) -> dict[str, Any]:
    """Requeue or reject every message of the filter that is dead or waiting; refused (409, nothing done) when
    more than the bound match. Answers the tally."""
    no_unknown_query(request)
    require(who, Role.OPERATOR, "bulk actions")
    body: BulkBody = await json_body(request, BulkBody)
    return await run_in_threadpool(run_bulk, ops, hub, who, body.filter.to_filter(), body.action,
                                   bound_of(ops, body.bound), body.reason, body.stage)


def run_bulk(ops: OpsState, hub: Any, who: Caller, f: Filter, action: str, bound: int, reason: str | None,
             stage: str | None) -> dict[str, Any]:
    if f.empty:
        raise Problem(422, "filter-empty", "Filter empty", "a bulk action needs a filter (at least one condition)")
    try:
        result = actions.bulk(ops.engine, who, f, action, bound, ops.channels, reason=reason, stage=stage)
    except actions.TooMany as exc:
        raise Problem(409, "bulk-too-many", "Too many messages", str(exc), matched=exc.matched,
                      bound=exc.bound) from None
    except ValueError as exc:
        raise Problem(422, "invalid-request", "Invalid request", str(exc)) from None
    if result.done:
        hub.wake()
    return result.as_json()
