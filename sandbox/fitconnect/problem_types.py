"""The problem types of the emulated Submission API, and the exception that carries one.

The OpenAPI file (1.1.3) fixes only the status codes and the ``Error`` shape (``type``, ``title``,
``status``, optional ``detail`` and ``instance``). The ``type`` URIs live under :data:`PREFIX`; of the
names below, ``destination-not-found``, ``destination-state-invalid`` and ``submission-not-found`` are the
ones the public ``fitconnect`` SDK tests for. The others follow the same pattern and are chosen here.

The documents themselves are built by the product's one problem+json module, :mod:`hub.problems`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from fastapi import FastAPI

from hub import problems

__all__ = ["PREFIX", "Problem", "ProblemType", "install_problem_handlers"]

PREFIX = "https://schema.fitko.de/fit-connect/submission-api/problems/"


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
    def slug(self) -> str:
        return str(self.value[1])

    @property
    def uri(self) -> str:
        return PREFIX + self.slug

    @property
    def title(self) -> str:
        return str(self.value[2])


class Problem(problems.Problem):
    """Raised anywhere in the emulator; answered as an ``application/problem+json`` of type ``kind``."""

    def __init__(self, kind: ProblemType, detail: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(kind.status, kind.slug, kind.title, detail, headers=headers, base=PREFIX)
        self.kind = kind


_BY_STATUS = {kind.status: (kind.slug, kind.title) for kind in (
    ProblemType.NOT_FOUND, ProblemType.METHOD_NOT_ALLOWED, ProblemType.PAYLOAD_TOO_LARGE,
    ProblemType.UNSUPPORTED_MEDIA_TYPE, ProblemType.UNAUTHORIZED, ProblemType.FORBIDDEN)}


def install_problem_handlers(app: FastAPI) -> None:
    """Every error leaves as a problem: ours, FastAPI's validation errors (400, as the spec has it), routing errors."""
    invalid = (ProblemType.INVALID_REQUEST.slug, ProblemType.INVALID_REQUEST.title)
    problems.install(app, base=PREFIX, statuses=_BY_STATUS, other=invalid, invalid=invalid)
