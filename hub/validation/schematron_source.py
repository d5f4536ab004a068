"""Reading Schematron files: includes, abstract rules, severities. Shared by both ways of running rules.

:mod:`hub.validation.schematron` turns a schema into an XSLT 2.0 stylesheet for Saxon;
:mod:`hub.validation.schematron_lxml` evaluates the rules it can prove portable with lxml. Both read the
``.sch`` file through :func:`load_sch` and expand ``sch:extends`` through :func:`rule_parts`, so they see
the same rules in the same order.
"""

from __future__ import annotations

from pathlib import Path

from lxml import etree

from hub.validation.report import Severity

__all__ = [
    "SCH",
    "SchematronError",
    "abstract_rules",
    "check_id",
    "check_role",
    "load_sch",
    "q",
    "rule_parts",
    "severity",
]

SCH = "http://purl.oclc.org/dsdl/schematron"

_WARNING_ROLES = {"warning", "warn", "caution"}
_INFO_ROLES = {"info", "information", "hint"}


class SchematronError(ValueError):
    """A Schematron file that cannot be compiled or run; names the file and what is wrong."""


def q(ns: str, local: str) -> str:
    """Clark notation ``{ns}local``."""
    return f"{{{ns}}}{local}"


def load_sch(path: Path, root_dir: Path, depth: int = 0) -> etree._Element:
    """Parse a .sch file and inline ``sch:include`` (local files inside the bundle only)."""
    if depth > 10:
        raise SchematronError(f"{path.name}: sch:include nested too deeply")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True)
    try:
        root = etree.parse(str(path), parser).getroot()
    except (OSError, etree.XMLSyntaxError) as exc:
        raise SchematronError(f"{path.name}: cannot read Schematron: {exc}") from None
    for inc in list(root.iter(q(SCH, "include"))):
        href = inc.get("href", "")
        target = (path.parent / href).resolve()
        if "://" in href or not target.is_relative_to(root_dir.resolve()):
            raise SchematronError(f"{path.name}: sch:include {href!r} points outside the bundle")
        included = load_sch(target, root_dir, depth + 1)
        parent = inc.getparent()
        assert parent is not None  # an include element is never the document root
        parent.replace(inc, included)
    return root


def abstract_rules(schema: etree._Element) -> dict[str, etree._Element]:
    """The abstract rules of a schema by id (targets of ``sch:extends``)."""
    return {r.get("id", ""): r for r in schema.iter(q(SCH, "rule")) if r.get("abstract") == "true"}


def rule_parts(
    rule: etree._Element,
    abstract: dict[str, etree._Element],
    name: str,
    seen: frozenset[str] = frozenset(),
) -> list[etree._Element]:
    """The ``sch:let``, ``sch:assert`` and ``sch:report`` children of a rule, ``sch:extends`` expanded."""
    parts: list[etree._Element] = []
    for child in rule:
        if child.tag == q(SCH, "extends"):
            ref = child.get("rule", "")
            if ref in seen or ref not in abstract:
                raise SchematronError(f"{name}: sch:extends refers to unknown or cyclic rule {ref!r}")
            parts.extend(rule_parts(abstract[ref], abstract, name, seen | {ref}))
        elif child.tag in (q(SCH, "let"), q(SCH, "assert"), q(SCH, "report")):
            parts.append(child)
    return parts


def check_id(check: etree._Element, rule: etree._Element) -> str:
    """The id a finding carries: the assertion's, else the (concrete) rule's."""
    return check.get("id") or rule.get("id") or ""


def check_role(check: etree._Element, rule: etree._Element) -> str:
    """The role that decides the severity: assertion ``role``, its ``flag``, else the rule's ``role``."""
    return check.get("role") or check.get("flag") or rule.get("role") or ""


def severity(role: str) -> Severity:
    """Map a Schematron role to a finding severity (unknown or no role: ``error``)."""
    role = role.lower()
    if role in _WARNING_ROLES:
        return "warning"
    if role in _INFO_ROLES:
        return "info"
    return "error"
