"""Reading Schematron files: includes, abstract rules, severities.

:mod:`hub.validation.schematron_xslt` reads a ``.sch`` file through :func:`load_sch` (includes resolved
inside the bundle) and expands ``sch:extends`` through :func:`rule_parts` before it writes the stylesheet
Saxon runs; :mod:`hub.validation.confinement` screens what :func:`load_sch` returns.
"""

from __future__ import annotations

import re
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


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
_XSL = "http://www.w3.org/1999/XSL/Transform"
# What a top-level xsl:include/xsl:import of a Schematron file contributes: the compiler copies these.
_XSLT_KEPT = (q(_XSL, "function"), q(_XSL, "key"))


def _included_file(path: Path, root_dir: Path, element: etree._Element, kind: str) -> Path:
    """The local file an include's ``href`` names, when it is a relative path that stays in the bundle."""
    href = element.get("href", "")
    where = f"{path.name}, line {element.sourceline}: {kind} {href!r}"
    if not href or not href.isprintable() or "#" in href or "\\" in href:
        raise SchematronError(f"{where} must be a relative file name inside the bundle")
    if _SCHEME.match(href) or href.startswith("/"):
        raise SchematronError(f"{where} points outside the bundle (only relative paths inside it are allowed)")
    try:
        target: Path = (path.parent / str(href)).resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise SchematronError(f"{where} cannot be resolved: {exc}") from None
    if not target.is_relative_to(root_dir.resolve()):
        raise SchematronError(f"{where} points outside the bundle")
    if not target.is_file():
        raise SchematronError(f"{where} does not exist or is not a regular file")
    return target


def _parse(path: Path) -> etree._Element:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True)
    try:
        root = etree.parse(str(path), parser).getroot()
    except (OSError, etree.XMLSyntaxError) as exc:
        raise SchematronError(f"{path.name}: cannot read Schematron: {exc}") from None
    if root is None:
        raise SchematronError(f"{path.name}: no root element")
    return root


def load_sch(path: Path, root_dir: Path, depth: int = 0) -> etree._Element:
    """Parse a .sch file and inline ``sch:include`` and top-level ``xsl:include``/``xsl:import``.

    Included files must be relative paths that stay inside ``root_dir`` (the bundle), also after symbolic
    links are resolved; of an included stylesheet only its ``xsl:function`` and ``xsl:key`` are kept.
    """
    if depth > 10:
        raise SchematronError(f"{path.name}: sch:include nested too deeply")
    root = _parse(path)
    for inc in list(root.iter(q(SCH, "include"))):
        included = load_sch(_included_file(path, root_dir, inc, "sch:include"), root_dir, depth + 1)
        parent = inc.getparent()
        assert parent is not None  # an include element is never the document root
        parent.replace(inc, included)
    for inc in [c for c in root if c.tag in (q(_XSL, "include"), q(_XSL, "import"))]:
        kind = f"xsl:{etree.QName(inc).localname}"
        stylesheet = _parse(_included_file(path, root_dir, inc, kind))
        if stylesheet.tag not in (q(_XSL, "stylesheet"), q(_XSL, "transform")):
            raise SchematronError(f"{path.name}, line {inc.sourceline}: {kind} {inc.get('href')!r} is not XSLT")
        if any(c.tag in (q(_XSL, "include"), q(_XSL, "import")) for c in stylesheet):
            raise SchematronError(f"{path.name}: {kind} {inc.get('href')!r} includes further stylesheets")
        for kept in (c for c in stylesheet if c.tag in _XSLT_KEPT):
            inc.addprevious(kept)
        root.remove(inc)
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
