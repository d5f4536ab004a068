"""RFC 7807 problems of the emulated Submission API, and the one exception that carries them.

The OpenAPI file (1.1.3) fixes only the status codes and the ``Error`` shape (``type``, ``title``,
``status``, optional ``detail`` and ``instance``). The ``type`` URIs live under :data:`PREFIX`; of the
names below, ``destination-not-found``, ``destination-state-invalid`` and ``submission-not-found`` are the
ones the public ``fitconnect`` SDK tests for. The others follow the same pattern and are chosen here.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["PREFIX", "PROBLEM_JSON", "Problem", "ProblemType", "install_problem_handlers", "problem_response"]

PREFIX = "https://schema.fitko.de/fit-connect/submission-api/problems/"
PROBLEM_JSON = "application/problem+json"


class ProblemType(Enum):
    """``(status, slug, title)`` of every problem the emulator answers with."""

    INVALID_REQUEST = (400, "invalid-request", "Bad Request")
    UNAUTHORIZED = (401, "unauthorized", "Missing or invalid access token")
    FORBIDDEN = (403, "forbidden", "Not allowed for this client")
    DESTINATION_NOT_FOUND = (404, "destination-not-found", "Destination not found")
    KEY_NOT_FOUND = (404, "key-not-found", "Key not found")
    SUBMISSION_NOT_FOUND = (404, "submission-not-found", "Submission not found")
    ATTACHMENT_NOT_FOUND = (404, "attachment-not-found", "Attachment not found")
    CASE_NOT_FOUND = (404, "case-not-found", "Case not found")
    NOT_FOUND = (404, "not-found", "Not Found")
    METHOD_NOT_ALLOWED = (405, "method-not-allowed", "Method Not Allowed")
    INVALID_STATE_TRANSITION = (409, "invalid-state-transition", "Invalid state transition")
    PAYLOAD_TOO_LARGE = (413, "payload-too-large", "Request Entity Too Large")
    UNSUPPORTED_MEDIA_TYPE = (415, "unsupported-media-type", "Unsupported Media Type")
    DESTINATION_STATE_INVALID = (422, "destination-state-invalid", "Destination is not active")
    SERVICE_TYPE_NOT_SUPPORTED = (422, "service-type-not-supported", "Service type not offered by the destination")
    SUBMISSION_STATE_INVALID = (422, "submission-state-invalid", "Submission is not in a state that allows this")
    ATTACHMENT_NOT_ANNOUNCED = (422, "attachment-not-announced", "Attachment not announced")
    MISSING_ATTACHMENTS = (422, "missing-attachments", "Announced attachments not uploaded")
    SET_INVALID = (422, "security-event-token-invalid", "Security event token invalid")
    SET_SIGNATURE_INVALID = (422, "security-event-token-signature-invalid",
                             "Security event token signature invalid")

    @property
    def status(self) -> int:
        return int(self.value[0])

    @property
    def uri(self) -> str:
        return PREFIX + str(self.value[1])

    @property
    def title(self) -> str:
        return str(self.value[2])


class Problem(Exception):
    """Raised anywhere in the emulator; the app turns it into an ``application/problem+json`` answer."""

    def __init__(self, kind: ProblemType, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{kind.uri}: {detail}")
        self.kind = kind
        self.detail = detail
        self.headers = headers


def problem_response(kind: ProblemType, detail: str, instance: str | None = None,
                     headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": kind.uri, "title": kind.title, "status": kind.status, "detail": detail}
    if instance:
        body["instance"] = instance
    return JSONResponse(body, status_code=kind.status, media_type=PROBLEM_JSON, headers=headers)


_BY_STATUS = {404: ProblemType.NOT_FOUND, 405: ProblemType.METHOD_NOT_ALLOWED, 413: ProblemType.PAYLOAD_TOO_LARGE,
              415: ProblemType.UNSUPPORTED_MEDIA_TYPE, 401: ProblemType.UNAUTHORIZED, 403: ProblemType.FORBIDDEN}


def install_problem_handlers(app: FastAPI) -> None:
    """Every error leaves as a problem: ours, FastAPI's validation errors (400, as the spec has it), routing errors."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc.kind, exc.detail, request.url.path, exc.headers)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        where = "; ".join(f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg')}" for err in exc.errors())
        return problem_response(ProblemType.INVALID_REQUEST, where or "invalid request", request.url.path)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        kind = _BY_STATUS.get(exc.status_code, ProblemType.INVALID_REQUEST)
        return problem_response(kind, str(exc.detail), request.url.path, dict(exc.headers or {}))

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
