"""The validation report: a verdict plus a flat list of findings.

A :class:`Report` is what the engine returns for every document, whatever happened: the pipeline stores
it as an event, the API returns :meth:`Report.to_dict`, the CLI prints it. Verdicts:

``valid``
    every installed check ran and none produced an ``error`` finding.
``invalid``
    the document is not acceptable: not parseable, refused by the safe parser, or at least one
    ``error`` finding from XSD, code lists or Schematron.
``not_checked``
    the document was parsed but no schema is installed for it (known standard without bundle, or an
    unknown document); ``reason`` says which. The route policy decides what that means.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["MAX_FINDINGS_PER_CHECK", "Finding", "HeaderValue", "Report", "Severity", "Verdict"]

Severity = Literal["error", "warning", "info"]
Verdict = Literal["valid", "invalid", "not_checked"]
HeaderValue = str | list[str] | None

# Per check (XSD, Schematron): at most this many findings, then one summary finding for the rest.
MAX_FINDINGS_PER_CHECK = 200

HEADER_FIELDS: tuple[str, ...] = ("message_uuid", "type_code", "created_at", "author_id", "reader_id")


@dataclass(frozen=True)
class Finding:
    """One observation about the document.

    ``rule`` names what produced it: ``"xsd"``, ``"xml"`` (parser), a Schematron assertion id, or a code
    list as ``"<listURI>_<listVersionID>"``. ``path`` is an XPath to the node, ``line`` its source line.
    """

    severity: Severity
    message: str
    line: int | None = None
    path: str | None = None
    rule: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "message": self.message,
            "line": self.line,
            "path": self.path,
            "rule": self.rule,
        }


@dataclass
class Report:
    """Outcome of validating one document. Build it with the classmethods or fill it step by step."""

    verdict: Verdict
    reason: str | None = None
    standard: str | None = None
    version: str | None = None
    message_type: str | None = None
    header: dict[str, HeaderValue] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict (strings, ints, lists, None only)."""
        return {
            "verdict": self.verdict,
            "reason": self.reason,
            "standard": self.standard,
            "version": self.version,
            "message_type": self.message_type,
            "header": {k: (list(v) if isinstance(v, list) else v) for k, v in self.header.items()},
            "findings": [f.to_dict() for f in self.findings],
        }

    def summary(self) -> str:
        """One line for logs and the CLI: verdict, what the document is, and the first reason."""
        what = (
            " ".join(p for p in (self.standard, self.version, self.message_type) if p) or "unknown document"
        )
        parts = [self.verdict, what]
        if self.reason:
            parts.append(self.reason)
        elif self.errors:
            parts.append(f"{len(self.errors)} error(s)")
        return " | ".join(parts)
