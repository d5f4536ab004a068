"""The console's pages (``/console/…``): Jinja2, server-rendered, htmx for the dashboard's refresh, no CDN.

Each page calls the same functions as the operations API (:mod:`xhub.api.ops`), with the same roles and the
same tenant scope. Every form carries the session's CSRF token; the login form a token of its own (a cookie
and a hidden field that must agree). Answers carry a strict Content-Security-Policy (only the hub's own
scripts and styles), ``X-Frame-Options: DENY`` and ``Cache-Control: no-store``.
"""

from __future__ import annotations

import hmac
import inspect
import secrets
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile

from hub import actions, audit, store, users
from hub.access import Caller
from hub.problems import Problem
from hub.search import BadCursor, search
from hub.statemachine import Status
from hub.users import Role
from xhub.api.access import COOKIE, OpsState, client_addr, session_of
from xhub.api.ops import (
    bound_of,
    check_payload,
    dashboard_data,
    explanation,
    make_filter,
    payload_response,
    preview,
    read_capped,
    run_bulk,
)
from xhub.api.ops_views import case_of, visible_to
from xhub.console import i18n
from xhub.console.charts import sparkline

__all__ = ["mount"]

HERE = Path(__file__).parent
LOGIN_COOKIE = "xhub_login"
FORM_LIMIT = 64 * 1024
FILTER_FIELDS = ("q", "status", "tenant", "channel", "route", "target", "standard", "message_type", "since", "until")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

templates = Jinja2Templates(directory=str(HERE / "templates"))
templates.env.globals["STATUSES"] = [s.value for s in Status]
templates.env.filters["sparkline"] = sparkline


class _Redirect(Exception):
    def __init__(self, to: str) -> None:
        self.to = to


def mount(app: FastAPI) -> None:
    app.mount("/console/static", StaticFiles(directory=str(HERE / "static")), name="console-static")
    app.include_router(router)


router = APIRouter(prefix="/console", include_in_schema=False)


def _secure(request: Request) -> bool:
    ops: OpsState = request.app.state.ops
    public = ops.config.api.public_url or ""
    return request.url.scheme == "https" or public.startswith("https://")


def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    lang = i18n.language(request)
    session = getattr(request.state, "session", None)
    context.setdefault("caller", getattr(request.state, "caller", None))
    response = templates.TemplateResponse(request, name, {
        "t": i18n.translator(lang), "lang": lang, "csrf": session.csrf_token if session else "",
        "path": request.url.path, **context}, status_code=status_code)
    return _headers(response)


async def _caller(request: Request) -> Caller:
    ops: OpsState = request.app.state.ops
    found = await session_of(request, ops)
    if found is None:
        raise _Redirect("/console/login")
    user = found.user
    who = Caller(user.name, user.role, None if user.role is Role.ADMIN else frozenset(user.tenants), "user",
                 client_addr(request))
    request.state.caller = who
    return who


async def _form(request: Request, limit: int = FORM_LIMIT) -> FormData:
    """The posted form, size-checked before it is parsed, with the session's CSRF token checked."""
    await read_capped(request, limit)
    form = await request.form(max_files=1, max_fields=40)
    session = getattr(request.state, "session", None)
    sent = form.get("csrf")
    if session is None or not isinstance(sent, str) or not hmac.compare_digest(sent.encode(),
                                                                              session.csrf_token.encode()):
        raise Problem(403, "csrf-token-missing", "CSRF token missing or wrong", "reload the page and try again")
    return form


def _text(form: FormData, name: str, limit: int = 500) -> str:
    value = form.get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


Page = Callable[..., Awaitable[Response]]


def page(min_role: Role = Role.VIEWER) -> Callable[[Page], Page]:
    """A console page: the caller from the session (else the login page), the role, problems as HTML."""

    def wrap(handler: Page) -> Page:
        async def run(request: Request, **kwargs: Any) -> Response:
            try:
                who = await _caller(request)
                if not who.at_least(min_role):
                    raise Problem(403, "role-insufficient", "Not allowed", f"this needs the role {min_role.value}")
                return await handler(request, who, **kwargs)
            except _Redirect as r:
                return RedirectResponse(r.to, status_code=303)
            except Problem as p:
                return render(request, "problem.html", status_code=p.status, problem=p)

        run.__name__ = handler.__name__
        run.__doc__ = handler.__doc__
        params = [inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)]
        params += [p for name, p in inspect.signature(handler).parameters.items() if name not in ("request", "who")]
        run.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        return run

    return wrap


# --------------------------------------------------------------------------------------------------
# Login


@router.get("/login")
async def login_form(request: Request) -> Response:
    ops: OpsState = request.app.state.ops
    if await session_of(request, ops) is not None:
        return RedirectResponse("/console/", status_code=303)
    return login_page(request, None, 200)


def login_page(request: Request, error: str | None, status: int) -> Response:
    token = secrets.token_urlsafe(24)
    ops: OpsState = request.app.state.ops
    response = render(request, "login.html", status_code=status, error=error, login_token=token,
                      oidc=ops.config.console.oidc)
    response.set_cookie(LOGIN_COOKIE, token, max_age=1800, httponly=True, samesite="strict",
                        secure=_secure(request), path="/console")
    return response


@router.post("/login")
async def login(request: Request) -> Response:
    ops: OpsState = request.app.state.ops
    t = i18n.translator(i18n.language(request))
    await read_capped(request, 8 * 1024)
    form = await request.form(max_files=0, max_fields=10)
    name, password = _text(form, "username", 200), form.get("password")
    sent, expected = _text(form, "login_token", 100), request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        return login_page(request, t("The form has expired; try again."), 400)
    addr = client_addr(request) or "-"
    if ops.throttle.blocked(name, addr):
        await run_in_threadpool(audit.record, ops.engine, None, "login-throttled", remote_addr=addr)
        return login_page(request, t("Too many failed logins; wait a few minutes."), 429)
    user = None
    if isinstance(password, str):
        user = await run_in_threadpool(users.check_password, ops.engine, name, password)
    if user is None:
        ops.throttle.failed(name, addr)
        await run_in_threadpool(audit.record, ops.engine, None, "login-failed", remote_addr=addr)
        return login_page(request, t("Unknown user or wrong password."), 401)
    ops.throttle.succeeded(name)
    return await start_session(request, ops, user, "password")


async def start_session(request: Request, ops: OpsState, user: users.UserInfo, how: str) -> Response:
    addr = client_addr(request)
    token, _csrf = await run_in_threadpool(users.open_session, ops.engine, user, ops.session_lifetime, addr)
    who = Caller(user.name, user.role, None, "user", addr)
    await run_in_threadpool(lambda: audit.record(ops.engine, who, "login", detail={"how": how}))
    response = RedirectResponse("/console/", status_code=303)
    response.set_cookie(COOKIE, token, max_age=int(ops.session_lifetime.total_seconds()), httponly=True,
                        samesite="lax", secure=_secure(request), path="/")
    response.delete_cookie(LOGIN_COOKIE, path="/console")
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    ops: OpsState = request.app.state.ops
    found = await session_of(request, ops)
    if found is not None:
        await _form(request)
        await run_in_threadpool(users.end_session, ops.engine, request.cookies.get(COOKIE, ""))
    response = RedirectResponse("/console/login", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


@router.get("/lang")
async def switch_language(request: Request, to: str = "de", back: str = "/console/") -> Response:
    target = back if back.startswith("/console") and "//" not in back and "\\" not in back else "/console/"
    response = RedirectResponse(target, status_code=303)
    if to in i18n.LANGUAGES:
        response.set_cookie(i18n.COOKIE, to, max_age=365 * 86400, samesite="lax", secure=_secure(request),
                            path="/")
    return response


# --------------------------------------------------------------------------------------------------
# Search and the message page


def _filter_from(values: Any) -> Any:
    raw: dict[str, Any] = {k: (str(values.get(k) or "").strip()[:255] or None) for k in FILTER_FIELDS}
    if raw["status"] and raw["status"] not in {s.value for s in Status}:
        raise Problem(400, "invalid-request", "Invalid request", "status: unknown status")
    for key in ("since", "until"):
        if raw[key]:
            try:
                moment = datetime.fromisoformat(raw[key])
            except ValueError:
                raise Problem(400, "invalid-request", "Invalid request", f"{key}: not a date and time") from None
            if moment.tzinfo is None:  # the form's datetime-local has none: taken as UTC
                moment = moment.replace(tzinfo=UTC)
            raw[key] = moment
    return make_filter(**raw)


@router.get("/")
@page()
async def search_page(request: Request, who: Caller) -> Response:
    ops: OpsState = request.app.state.ops
    f = _filter_from(request.query_params)
    cursor = request.query_params.get("cursor") or None
    try:
        result = await run_in_threadpool(search, ops.engine, who, f, limit=50, cursor=cursor)
    except BadCursor as exc:
        raise Problem(400, "invalid-cursor", "Invalid cursor", str(exc)) from None
    params = {k: v for k, v in request.query_params.items() if k in FILTER_FIELDS and v}
    next_url = f"/console/?{urlencode({**params, 'cursor': result.next_cursor})}" if result.next_cursor else None
    return render(request, "search.html", items=result.items, filter=params, next_url=next_url,
                  tenants=sorted(who.tenants) if who.tenants is not None else None)


@router.get("/messages/{message_id}")
@page()
async def message_page(request: Request, who: Caller, message_id: uuid.UUID) -> Response:
    ops: OpsState = request.app.state.ops
    base = ops.config.api.public_url or ""
    data = await run_in_threadpool(lambda: case_of(ops.engine, who, visible_to(ops.engine, who, message_id), base))
    return render(request, "message.html", m=data, done=request.query_params.get("done"),
                  stages=list(actions.STAGES))


@router.get("/messages/{message_id}/payload")
@page(Role.OPERATOR)
async def payload_download(request: Request, who: Caller, message_id: uuid.UUID) -> Response:
    ops: OpsState = request.app.state.ops
    return await run_in_threadpool(payload_response, ops, who, message_id, "console")


@router.post("/messages/{message_id}/act")
@page(Role.OPERATOR)
async def act(request: Request, who: Caller, message_id: uuid.UUID) -> Response:
    ops: OpsState = request.app.state.ops
    form = await _form(request)
    action = _text(form, "action", 20)
    stage = _text(form, "stage", 20) or None
    reason = _text(form, "reason")

    def run() -> None:
        message = visible_to(ops.engine, who, message_id)
        if action == "retry":
            actions.retry_now(ops.engine, who, message)
        elif action == "requeue":
            if stage is not None and stage not in actions.STAGES:
                raise Problem(400, "invalid-request", "Invalid request", "unknown stage")
            actions.requeue(ops.engine, who, message, stage, reason)
        elif action == "reject":
            if not reason:
                raise Problem(422, "reason-required", "Reason required", "a reject needs a reason")
            actions.reject(ops.engine, who, message, reason, ops.channels)
        else:
            raise Problem(400, "invalid-request", "Invalid request", "unknown action")

    try:
        await run_in_threadpool(run)
    except actions.NotAllowed as exc:
        raise Problem(409, "action-not-possible", "Action not possible", str(exc)) from None
    except actions.ActionFailed as exc:
        raise Problem(502, "answer-not-sent", "Answer not sent", f"{exc}; the message is unchanged") from None
    request.app.state.api.wake()
    return RedirectResponse(f"/console/messages/{message_id}?done={action}", status_code=303)


@router.get("/messages/{message_id}/edit")
@page(Role.OPERATOR)
async def edit_form(request: Request, who: Caller, message_id: uuid.UUID) -> Response:
    ops: OpsState = request.app.state.ops

    def load() -> tuple[Any, str]:
        message = visible_to(ops.engine, who, message_id)
        parts = store.payload(ops.engine, message_id)
        body = parts[0].body if parts and parts[0].body is not None else b""
        audit.record(ops.engine, who, "payload-view", message_id=message_id, tenant=message.tenant,
                     detail={"via": "console-edit", "sha256": message.payload_sha256})
        return message, body.decode("utf-8", errors="replace")

    message, text = await run_in_threadpool(load)
    return render(request, "edit.html", m=message, text=text)


@router.post("/messages/{message_id}/edit")
@page(Role.OPERATOR)
async def edit(request: Request, who: Caller, message_id: uuid.UUID) -> Response:
    ops: OpsState = request.app.state.ops
    form = await _form(request, ops.config.api.max_body_bytes + FORM_LIMIT)
    ctype = _text(form, "content_type", 40)
    if ctype not in ("application/xml", "application/json"):
        raise Problem(415, "unsupported-media-type", "Unsupported media type", "XML or JSON")
    raw = form.get("payload")
    body = raw.encode("utf-8") if isinstance(raw, str) else b""
    check_payload(ops, body, ctype)

    def run() -> uuid.UUID:
        message = visible_to(ops.engine, who, message_id)
        return actions.resubmit(ops.engine, who, message, body, ctype, ops.channels, ops.blobs,
                                _text(form, "comment"))

    try:
        new_id = await run_in_threadpool(run)
    except actions.NotAllowed as exc:
        raise Problem(409, "action-not-possible", "Action not possible", str(exc)) from None
    request.app.state.api.wake()
    return RedirectResponse(f"/console/messages/{new_id}?done=resubmit", status_code=303)


# --------------------------------------------------------------------------------------------------
# Bulk, audit, dashboard, rules, users


@router.get("/bulk")
@page(Role.OPERATOR)
async def bulk_form(request: Request, who: Caller) -> Response:
    return render(request, "bulk.html", filter={}, preview=None, result=None, action="requeue", reason="",
                  stage="", tenants=sorted(who.tenants) if who.tenants is not None else None,
                  stages=list(actions.STAGES))


@router.post("/bulk")
@page(Role.OPERATOR)
async def bulk_post(request: Request, who: Caller) -> Response:
    ops: OpsState = request.app.state.ops
    form = await _form(request)
    f = _filter_from(form)
    action = _text(form, "action", 20)
    if action not in ("requeue", "reject"):
        raise Problem(400, "invalid-request", "Invalid request", "a bulk action is requeue or reject")
    reason, stage = _text(form, "reason"), _text(form, "stage", 20) or None
    if stage is not None and stage not in actions.STAGES:
        raise Problem(400, "invalid-request", "Invalid request", "unknown stage")
    bound = bound_of(ops, None)
    shown = {k: v for k, v in form.items() if k in FILTER_FIELDS and isinstance(v, str) and v}
    context: dict[str, Any] = {"filter": shown, "action": action, "reason": reason, "stage": stage or "",
               "tenants": sorted(who.tenants) if who.tenants is not None else None, "stages": list(actions.STAGES)}
    if _text(form, "step", 10) != "run":
        found = await run_in_threadpool(preview, ops, who, f, bound)
        return render(request, "bulk.html", preview=found, result=None, **context)
    result = await run_in_threadpool(run_bulk, ops, request.app.state.api, who, f, action, bound, reason or None,
                                     stage)
    return render(request, "bulk.html", preview=None, result=result, **context)


@router.get("/audit")
@page()
async def audit_page(request: Request, who: Caller) -> Response:
    ops: OpsState = request.app.state.ops
    before_raw = request.query_params.get("before", "")
    before = int(before_raw) if before_raw.isdigit() and len(before_raw) < 19 else None
    rows = await run_in_threadpool(lambda: audit.entries(ops.engine, who, before=before, limit=100))
    return render(request, "audit.html", rows=[audit.entry_json(e) for e in rows],
                  next_before=rows[-1].id if len(rows) == 100 else None)


@router.get("/dashboard")
@page()
async def dashboard_page(request: Request, who: Caller) -> Response:
    data = await _dashboard(request, who)
    return render(request, "dashboard.html", d=data)


@router.get("/dashboard/panel")
@page()
async def dashboard_panel(request: Request, who: Caller) -> Response:
    data = await _dashboard(request, who)
    return render(request, "dashboard_panel.html", d=data)


async def _dashboard(request: Request, who: Caller) -> dict[str, Any]:
    ops: OpsState = request.app.state.ops
    loops = getattr(request.app.state, "loops", [])
    return await run_in_threadpool(dashboard_data, ops, request.app.state.api, who, loops)


@router.get("/rules")
@page()
async def rules_form(request: Request, who: Caller) -> Response:
    return render(request, "rules.html", result=None, text="", tenant="",
                  tenants=sorted(who.tenants) if who.tenants is not None else None)


@router.post("/rules")
@page()
async def rules_check(request: Request, who: Caller) -> Response:
    ops: OpsState = request.app.state.ops
    form = await _form(request, 2 * ops.config.api.max_body_bytes + FORM_LIMIT)
    tenant = _text(form, "tenant", 100)
    if not tenant or not who.sees(tenant):
        raise Problem(404, "tenant-not-found", "Tenant not found", "no such tenant is visible to you")
    upload = form.get("file")
    body = b""
    try:
        if isinstance(upload, UploadFile) and upload.filename:
            body = await upload.read(ops.config.api.max_body_bytes + 1)
    finally:
        await form.close()
    if not body:
        pasted = form.get("payload")
        body = pasted.encode("utf-8") if isinstance(pasted, str) else b""
    if len(body) > ops.config.api.max_body_bytes:
        raise Problem(413, "payload-too-large", "Payload too large", "the message is larger than the intake takes")
    ctype = "application/json" if body.lstrip()[:1] in (b"{", b"[") else "application/xml"
    check_payload(ops, body, ctype)
    result = await run_in_threadpool(explanation, request.app.state.api, body,
                                     {"tenant": tenant, "channel": _text(form, "channel", 40) or "rest",
                                      "sender": "console"})
    return render(request, "rules.html", result=result, text=body.decode("utf-8", errors="replace")[:200_000],
                  tenant=tenant, tenants=sorted(who.tenants) if who.tenants is not None else None)


@router.get("/users")
@page(Role.ADMIN)
async def users_page(request: Request, who: Caller) -> Response:
    ops: OpsState = request.app.state.ops
    rows = await run_in_threadpool(users.list_users, ops.engine)
    return render(request, "users.html", rows=rows)
