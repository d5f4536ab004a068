"""What the subscriber hands over: references to pending submissions, verified submissions, case events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["Attachment", "AuthTags", "CaseEvent", "Submission", "SubmissionRef"]


@dataclass(frozen=True)
class SubmissionRef:
    """One entry of ``GET /v1/submissions``: a submission waiting for pickup."""

    submission_id: str
    case_id: str
    destination_id: str


@dataclass(frozen=True)
class AuthTags:
    """The authentication tags (last segment of each compact JWE) that ``accept-submission`` confirms."""

    metadata: str
    data: str
    attachments: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"metadata": self.metadata, "data": self.data, "attachments": dict(self.attachments)}


@dataclass(frozen=True)
class Attachment:
    """A decrypted, hash-checked attachment, stored at ``path`` (in the ``workdir`` given to ``fetch``).

    ``filename`` comes from the sender and is never used as a file name on our side."""

    attachment_id: str
    path: Path
    mime_type: str
    filename: str | None
    purpose: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Submission:
    """A fetched submission whose metadata, data and attachments were decrypted and verified."""

    submission_id: str
    case_id: str
    destination_id: str
    service_identifier: str
    service_name: str
    metadata: dict[str, Any]
    data: bytes
    data_mime_type: str  # "application/xml" | "application/json"
    attachments: list[Attachment]
    auth_tags: AuthTags

    @property
    def ref(self) -> SubmissionRef:
        return SubmissionRef(self.submission_id, self.case_id, self.destination_id)


@dataclass(frozen=True)
class CaseEvent:
    """One SET of a case's event log. ``verified`` is true only if its signature checked out against the
    key of its issuer (the delivery service's JWKS, or our own signing key)."""

    event: str  # the event URI, e.g. https://schema.fitko.de/fit-connect/events/accept-submission
    issuer: str
    issued_at: datetime
    payload: dict[str, Any]
    verified: bool

    @property
    def submission_id(self) -> str | None:
        sub = self.payload.get("sub")
        return sub.removeprefix("submission:") if isinstance(sub, str) and sub.startswith("submission:") else None

    @property
    def name(self) -> str:
        """The last path segment of the event URI: ``accept-submission``, ``reject-submission``, ..."""
        return self.event.rstrip("/").rsplit("/", 1)[-1]
