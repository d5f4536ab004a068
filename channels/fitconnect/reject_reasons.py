"""Why a submission is rejected: FIT-Connect event problems and the exception that carries them.

A ``reject-submission`` SET lists problems shaped like RFC 7807 (``type``, ``title``, ``detail``,
``instance``). FIT-Connect fixes the types under :data:`PROBLEM_BASE`; a subscriber must copy ``type``
and ``instance`` exactly and should copy ``title``. ``instance`` names the part that failed:
``metadata``, ``data``, ``attachment:<attachmentId>`` or ``submission``.

One constructor per check the subscriber makes, so the type URI is written in exactly one place.
:class:`SubmissionRejected` is an :class:`~hub.errors.Invalid`: the engine records the message as
rejected and the channel answers with :meth:`SubscriberClient.reject` using ``.problems``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from hub.errors import Invalid

__all__ = [
    "PROBLEM_BASE",
    "EventProblem",
    "SubmissionRejected",
    "attachments_mismatch",
    "encryption_issue",
    "hash_mismatch",
    "missing_data",
    "missing_schema",
    "no_route",
    "schema_violation",
    "service_mismatch",
    "syntax_violation",
    "technical_error",
    "unsupported_schema",
]

PROBLEM_BASE = "https://schema.fitko.de/fit-connect/events/problems/"
_DETAIL_MAX = 500  # details go back to the sender; keep them short and free of payload dumps
_INSTANCE_MAX = 200
# C0/C1 controls (but tab and newline) and lone surrogates: they cannot travel in a SET (UTF-8 JSON)
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def _clean(text: str, limit: int) -> str:
    """Sender-controlled text can end up in a detail: make it printable, encodable and short."""
    text = _UNPRINTABLE.sub("\ufffd", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass(frozen=True)
class EventProblem:
    type: str
    title: str
    detail: str
    instance: str

    def as_json(self) -> dict[str, str]:
        return {"type": self.type, "title": self.title, "detail": self.detail, "instance": self.instance}

    @classmethod
    def from_json(cls, value: Any) -> EventProblem:
        if not isinstance(value, dict):
            raise ValueError("a problem is a JSON object")
        return cls(str(value.get("type", "")), str(value.get("title", "")), str(value.get("detail", "")),
                   str(value.get("instance", "")))


class SubmissionRejected(Invalid):
    """The submission can never be processed; ``problems`` go into the ``reject-submission`` SET."""

    def __init__(self, problems: list[EventProblem]) -> None:
        if not problems:
            raise ValueError("a rejection needs at least one problem")
        self.problems = list(problems)
        summary = "; ".join(f"{p.instance}: {p.type.removeprefix(PROBLEM_BASE)}" for p in self.problems)
        super().__init__(f"submission rejected ({summary})", detail={"problems": [p.as_json() for p in problems]})


def _problem(name: str, title: str, detail: str, instance: str) -> EventProblem:
    return EventProblem(PROBLEM_BASE + name, title, _clean(detail, _DETAIL_MAX), _clean(instance, _INSTANCE_MAX))


def attachment_instance(attachment_id: str) -> str:
    return f"attachment:{attachment_id}"


def encryption_issue(instance: str, detail: str | None = None) -> EventProblem:
    """Undecryptable: wrong key, unknown ``kid``, unsupported algorithm, bad tag (tampered ciphertext)."""
    what = {"metadata": "Die Metadaten", "data": "Der Fachdatensatz"}.get(instance, "Die Anlage")
    return _problem("encryption-issue", "Entschlüsselungs-Fehler",
                    detail or f"{what} konnte(n) nicht entschlüsselt werden.", instance)


def syntax_violation(instance: str, detail: str) -> EventProblem:
    """Decrypted, but not well-formed JSON (metadata, JSON data) or XML (XML data)."""
    return _problem("syntax-violation", "Syntax-Fehler", detail, instance)


def missing_schema(detail: str = "Die Metadaten enthalten keine Schema-Referenz ($schema).") -> EventProblem:
    return _problem("missing-schema", "Schema-Referenz fehlt", detail, "metadata")


def unsupported_schema(instance: str, detail: str) -> EventProblem:
    return _problem("unsupported-schema", "Schema-Referenz nicht unterstützt", detail, instance)


def schema_violation(instance: str, detail: str) -> EventProblem:
    return _problem("schema-violation", "Schema-Fehler", detail, instance)


def hash_mismatch(instance: str, detail: str | None = None) -> EventProblem:
    what = "des Fachdatensatzes" if instance == "data" else f"der Anlage {instance.removeprefix('attachment:')}"
    return _problem("hash-mismatch", "Prüfsumme stimmt nicht", detail or f"Die Prüfsumme {what} stimmt nicht.",
                    instance)


def missing_data(detail: str = "Der Fachdatensatz fehlt.") -> EventProblem:
    return _problem("missing-data", "Fachdatensatz fehlt", detail, "submission")


def attachments_mismatch(detail: str) -> EventProblem:
    """The attachments named in the metadata are not the ones the submission carries (missing or extra)."""
    return _problem("attachments-mismatch", "Fehlerhafte Anlagen-Liste", detail, "metadata")


def service_mismatch(detail: str) -> EventProblem:
    """``publicServiceType`` in the metadata differs from the submission's ``serviceType``."""
    return _problem("service-mismatch", "Verwaltungsleistung stimmt nicht überein", detail, "metadata")


def technical_error(detail: str = "Die Einreichung konnte technisch nicht verarbeitet werden.",
                    instance: str = "submission") -> EventProblem:
    """The receiver can never process it for a reason of its own (size limit, ...)."""
    return _problem("technical-error", "Technischer Fehler", detail, instance)


def no_route(service_identifier: str) -> EventProblem:
    """The hub has no route for this service at this destination. FIT-Connect has no dedicated type for
    this; ``technical-error`` says honestly that the receiver, not the sender, cannot process it
    (``service-mismatch`` would wrongly blame a metadata/submission disagreement)."""
    return technical_error(f"Für die Verwaltungsleistung {service_identifier} ist beim Empfänger keine "
                           "Weiterverarbeitung eingerichtet.")
