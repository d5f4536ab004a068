"""RFC 7807 problem details: every error the API returns is ``application/problem+json``.

Problem types are URNs under ``urn:xoev-hub:problem:``; ``title`` is short and stable per type, ``detail``
says precisely what was wrong with this request. Nothing here ever includes a traceback, a secret or a
token, and what a request sent is echoed only shortened (paths, header names, never header values).

Errors nobody handled are answered by :class:`hub.api.guard.ErrorGuard` (500, or 503 when the database
is unreachable), which keeps the connection usable.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException

__all__ = ["PROBLEM_JSON", "TYPE_PREFIX", "Problem", "database_unavailable", "install", "is_database_unavailable",
           "shorten"]

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:xoev-hub:problem:"


class Problem(Exception):
    """Raise anywhere in a request handler to answer with a problem document."""

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    def response(self, instance: str | None = None) -> JSONResponse:
        body: dict[str, Any] = {
            "type": TYPE_PREFIX + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            **self.extra,
        }
        if instance:
            body["instance"] = shorten(instance)
        return JSONResponse(body, status_code=self.status, media_type=PROBLEM_JSON, headers=self.headers)


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


_STATUS_SLUGS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Authentication required"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
}


def install(app: FastAPI) -> None:
    """Answer the framework's own errors (no route, wrong method, invalid parameters) as problems."""
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return exc.response(request.url.path)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        slug, title = _STATUS_SLUGS.get(exc.status_code, ("http-error", "HTTP error"))
        detail = exc.detail if isinstance(exc.detail, str) else title
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"there is no resource at {shorten(request.url.path)}"
        if exc.status_code == 405:
            detail = f"{shorten(request.method, 20)} is not allowed on {shorten(request.url.path)}"
        return Problem(exc.status_code, slug, title, detail, headers=dict(exc.headers or {})).response(
            request.url.path
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Only where and what, never the input itself (it may be a token or a stranger's long string).
        errors = [
            {"location": ".".join(str(p) for p in e.get("loc", ())), "message": shorten(str(e.get("msg", "")))}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['location']}: {e['message']}" for e in errors)
        return Problem(400, "invalid-request", "Invalid request", detail, errors=errors).response(request.url.path)
