"""Dry runs for operators: which route a message takes, why the others did not, what each target gets.

Used by ``xhub route --explain``. Nothing is stored or delivered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from hub.mapping import MappingFailed
from hub.routing import ATTRIBUTE_KEYS, Decision, Facts, RuleSet
from hub.settings import Settings
from hub.validation import Report, ValidationEngine
from hub.validation.bundles import default_schema_dirs
from hub.xmlsafe import XmlRejected, parse

__all__ = ["Explanation", "explain_route"]

_FACT_KEYS = ("tenant", "channel", "sender", "standard", "version", "message_type")


@dataclass
class Explanation:
    facts: Facts
    report: Report | None
    decision: Decision
    outputs: dict[str, str] = field(default_factory=dict)  # target → rendered body, or the reason it failed

    def text(self, explain: bool = True) -> str:
        f = self.facts
        lines = [f"message: {f.standard or '-'} {f.version or ''} {f.message_type or '-'}".replace("  ", " ")]
        if self.report is not None:
            lines.append(f"validation: {self.report.summary()}")
        known = {k: v for k, v in f.attributes.items() if v}
        lines.append(f"facts: tenant={f.tenant} channel={f.channel} sender={f.sender} {known or ''}".rstrip())
        if explain:
            for name, misses in self.decision.explanation.items():
                lines.append(f"  route {name}: no ({'; '.join(misses)})")
        route = self.decision.route
        if route is None:
            lines.append("no route matches: the message would wait in dead with the reason 'no route'")
            return "\n".join(lines)
        lines.append(f"  route {route.name}: MATCHES")
        for target, output in self.outputs.items():
            lines.append(f"→ {target}:")
            lines.extend(f"    {line}" for line in output.splitlines())
        return "\n".join(lines)


def _facts(config: Settings, data: bytes, extra: dict[str, Any]) -> tuple[Facts, Report | None]:
    report: Report | None = None
    root: etree._Element | None = None
    try:
        root = parse(data)
    except XmlRejected:
        root = None  # JSON or something else: routing then rests on the given facts only
    if root is not None:
        report = ValidationEngine.shared(default_schema_dirs(config.schema_dir)).validate_root(root)
    detected = {
        "standard": report.standard if report else None,
        "version": report.version if report else None,
        "message_type": report.message_type if report else None,
    }
    attributes: dict[str, Any] = {}
    if report is not None:
        attributes = {"reader": report.header.get("reader_id"), "author": report.header.get("author_id")}
    attributes.update({k: extra[k] for k in ATTRIBUTE_KEYS if k in extra})
    values = {k: extra.get(k, detected.get(k)) for k in _FACT_KEYS}
    values.setdefault("channel", None)
    return Facts(**values, attributes=attributes, root=root), report


def explain_route(config: Settings, rules: RuleSet, data: bytes, extra: dict[str, Any]) -> Explanation:
    facts, report = _facts(config, data, extra)
    result = Explanation(facts, report, rules.decide(facts))
    if result.decision.route is None:
        return result
    context = {"message_id": "(dry run)", "tenant": facts.tenant, "standard": facts.standard,
               "message_type": facts.message_type, "idempotency_key": "(dry run)"}
    for ref in result.decision.route.targets:
        if ref.mapping is None:
            result.outputs[ref.target] = f"the payload as it is ({len(data)} bytes)"
            continue
        try:
            rendered = rules.mappings[ref.mapping].render(data, context=context)
        except MappingFailed as exc:
            result.outputs[ref.target] = f"mapping {ref.mapping} FAILED: {exc}"
            continue
        body = rendered.body.decode("utf-8", errors="replace")
        if rendered.data is not None:
            body = json.dumps(rendered.data, indent=2, ensure_ascii=False)
        result.outputs[ref.target] = f"mapping {ref.mapping} ({rendered.content_type}):\n{body}"
    return result
