"""What the hub stores in clear about a document never quotes the document: values in validation messages are
replaced by ``'…'`` before they go into an event, a message's ``last_error`` or a sender's answer.

libxml2's schema messages quote the offending value (``The value 'Musterfrau' is not accepted by the pattern
…``, ``'12.10.1965' is not a valid value of the atomic type 'xs:date'``, ``key-sequence ['4711']``); the
element, the attribute, the facet and what the schema expected stay, and with the finding's line and path they
say exactly where the problem is. The full text is what ``xhub validate`` prints for the document itself.
Code-list findings quote a code (from a published list, not personal) and stay as they are.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["HIDDEN", "redact", "redact_report"]

HIDDEN = "'…'"

_PATTERNS = (
    # [facet 'x'] The value 'VALUE' …  /  attribute 'a': The value 'VALUE' does not match the fixed value …
    (re.compile(r"\bThe value '(?:[^']|'(?! ))*'"), f"The value {HIDDEN}"),
    # Element 'e': 'VALUE' is not a valid value of …  /  … attribute 'a': 'VALUE' is not a valid value …
    (re.compile(r": '(?:[^']|'(?! is not))*'(?= is not a valid value)"), f": {HIDDEN}"),
    # … key-sequence ['VALUE', 'VALUE'] …
    (re.compile(r"key-sequence \[[^\]]*\]"), "key-sequence […]"),
)


def redact(text: str) -> str:
    """``text`` with every quoted document value replaced by :data:`HIDDEN`."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact_report(report: dict[str, Any]) -> dict[str, Any]:
    """A copy of :meth:`hub.validation.Report.to_dict` output with :func:`redact` applied to its texts."""
    out = dict(report)
    if isinstance(out.get("reason"), str):
        out["reason"] = redact(out["reason"])
    out["findings"] = [{**f, "message": redact(f["message"])} if isinstance(f.get("message"), str) else f
                       for f in report.get("findings") or []]
    return out
