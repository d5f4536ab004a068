"""validate: detect what the message is and check it against its schema bundle. ``received → validated``.

``invalid`` → the message is rejected with the report (never retried). ``not_checked`` (no schema
installed, unknown document, a Schematron rule that fails on the message itself) moves on with the
verdict recorded; the matching route's ``not_checked`` policy decides in the route stage whether it is
rejected or passed on.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from hub.errors import Invalid
from hub.pipeline.base import StageContext, StageResult
from hub.redact import redact, redact_report
from hub.statemachine import Status
from hub.validation import Report, ValidationEngine
from hub.validation.bundles import default_schema_dirs

_REGION = re.compile(r"^\d{8}(\d{4})?$")


def _facts(report: Report) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "verdict": report.verdict,
        "standard": report.standard,
        "standard_version": report.version,
        "message_type": report.message_type,
    }
    uuid = report.header.get("message_uuid")
    if isinstance(uuid, str) and uuid:
        facts["xoev_message_uuid"] = uuid[:100]
    attributes = {key: report.header.get(f"{key}_id") for key in ("reader", "author")}
    # The region key (AGS: 8 digits, ARS: 12) is the reader's id when it is one, else the author's.
    ids = [v for key in ("reader", "author") for v in _as_list(attributes[key])]
    attributes["region"] = next((v for v in ids if _REGION.match(v)), None)
    facts["attributes"] = {k: v for k, v in attributes.items() if v}
    return facts


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


class Validate:
    name: ClassVar[str] = "validate"
    consumes: ClassVar[Status] = Status.RECEIVED
    produces: ClassVar[Status | None] = Status.VALIDATED

    def run(self, ctx: StageContext) -> StageResult:
        root = ctx.cache.get("xml_root")
        if root is None:
            ctx.facts["verdict"] = "not_checked"
            return StageResult(reason="not XML; no schema check", detail={"verdict": "not_checked"})
        report = ValidationEngine.shared(default_schema_dirs(ctx.config.schema_dir)).validate_root(root)
        facts = _facts(report)
        # What the intake channel already knew (from its own metadata or headers) wins over the XÖV header.
        facts["attributes"] = {**facts["attributes"], **(ctx.message.attributes or {})}
        ctx.facts.update(facts)
        detail = {"report": redact_report(report.to_dict())}  # stored in clear: no document values in it
        if report.verdict == "invalid":
            more = len(report.errors) - 1
            suffix = f" (and {more} more error{'s' if more > 1 else ''})" if more > 0 else ""
            raise Invalid(redact(f"{report.reason}{suffix}"), detail=detail)
        return StageResult(reason=report.summary(), detail=detail)
