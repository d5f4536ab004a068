"""RFC 7807 problem details: the one module that builds ``application/problem+json`` answers.

Every HTTP door of the product (the REST intake, the FIT-Connect callback, the operator API, health) and
the sandbox's emulators answer errors with :class:`Problem`. A problem's ``type`` is its ``base`` plus a
slug: ``urn:xoev-hub:problem:<slug>`` for the hub's own (:data:`TYPE_PREFIX`); an emulated service passes
its protocol's base. ``title`` is short and stable per type, ``detail`` says precisely what was wrong with
this request. Nothing here ever includes a traceback, a secret or a token, and what a request sent is
echoed only shortened (paths, header names, never header values).

:func:`install` answers the framework's own errors (no route, wrong method, invalid parameters) as
problems too. Errors nobody handled are answered by the app's outermost middleware
(:class:`xhub.api.guard.ErrorGuard`: 500, or 503 when the database is unreachable).

Shared request checks that answer with a problem live here as well: :func:`single_header` and
:func:`no_unknown_query`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

__all__ = ["PROBLEM_JSON", "STATUS_SLUGS", "TYPE_PREFIX", "Problem", "database_unavailable", "install",
           "is_database_unavailable", "no_unknown_query", "safe_description", "shorten", "single_header"]

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:xoev-hub:problem:"


class Problem(Exception):
    """Raise anywhere in a request handler to answer with a problem document (``extra`` members added)."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        base: str = TYPE_PREFIX,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = dict(headers or {})
        self.base = base
        self.extra = extra

    @property
    def type(self) -> str:
        return self.base + self.slug

    def body(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status,
                                "detail": self.detail, **self.extra}
        if instance:
            body["instance"] = shorten(instance)
        return body

    def response(self, instance: str | None = None) -> JSONResponse:
        return JSONResponse(self.body(instance), status_code=self.status, media_type=PROBLEM_JSON,
                            headers=self.headers)


def shorten(text: str, limit: int = 200) -> str:
    """What a client sent, cut to ``limit`` characters before it is echoed in a problem."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_database_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means "the database cannot be reached or is busy now" (not: this statement is wrong)."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout | DisconnectionError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def database_unavailable(retry_after: int, detail: str | None = None) -> Problem:
    return Problem(
        503, "database-unavailable", "Database unavailable",
        detail or "the hub's database does not answer at the moment; try again after the Retry-After interval",
        headers={"Retry-After": str(retry_after)},
    )


def safe_description(exc: BaseException) -> str:
    """``Type: message`` for the log; for database errors the driver's first line only (SQLAlchemy's text
    carries the statement's parameters, which are message contents)."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        first = (str(exc.orig).strip().splitlines() or [""])[0]
        return f"{type(exc).__name__} ({type(exc.orig).__name__}): {first[:300]}"
    if isinstance(exc, StatementError):
        return f"{type(exc).__name__} in a database statement"
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def single_header(request: Request, name: str) -> str | None:
    """The value of header ``name``; 400 ``duplicate-header`` when it was sent more than once."""
    values = request.headers.getlist(name)
    if len(values) > 1:
        raise Problem(400, "duplicate-header", "Duplicate header",
                      f"the {name} header was sent {len(values)} times; send it once")
    return values[0] if values else None


def no_unknown_query(request: Request, *known: str) -> None:
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


#: The hub's problem types for the framework's own HTTP errors, by status.
STATUS_SLUGS: Mapping[int, tuple[str, str]] = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


def install(app: FastAPI, *, base: str = TYPE_PREFIX, statuses: Mapping[int, tuple[str, str]] = STATUS_SLUGS,
            other: tuple[str, str] = ("http-error", "HTTP error"),
            invalid: tuple[str, str] = ("invalid-request", "Invalid request")) -> None:
    """Answer :class:`Problem` and the framework's own errors (no route, wrong method, invalid parameters) as
    problems under ``base``: HTTP errors with the (slug, title) of their status in ``statuses`` (``other`` for
    the rest), invalid requests with ``invalid`` (400)."""

    async def _problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return exc.response(request.url.path)

    async def _http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        slug, title = statuses.get(exc.status_code, other)
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"there is no resource at {shorten(request.url.path)}"
        if exc.status_code == 405:
            detail = f"{shorten(request.method, 20)} is not allowed on {shorten(request.url.path)}"
        return Problem(exc.status_code, slug, title, detail, headers=dict(exc.headers or {}),
                       base=base).response(request.url.path)

    async def _invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # Only where and what, never the input itself (it may be a token or a stranger's long string).
        errors = [
            {"location": ".".join(str(p) for p in e.get("loc", ())), "message": shorten(str(e.get("msg", "")))}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors)
        return Problem(400, *invalid, detail, errors=errors, base=base).response(request.url.path)

    app.add_exception_handler(Problem, _problem)
    app.add_exception_handler(HTTPException, _http)
    app.add_exception_handler(RequestValidationError, _invalid)
