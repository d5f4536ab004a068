"""Schematron rules, compiled to XSLT 2.0 and run by Saxon-HE (``saxonche``).

XÖV Schematron files use ``queryBinding="xslt2"`` (``if … then … else``, ``matches()``, sequence
comparisons), which lxml's XSLT 1.0 ``isoschematron`` cannot run. Saxon-HE runs the XPath; this module
only translates the Schematron structure into a stylesheet, following the ISO skeleton's model:

* one XSLT mode per pattern; within a pattern, a node fires at most the *first* rule whose context
  matches it (rule order becomes template priority); every node is visited (``@*|node()``);
* ``sch:let`` at schema or pattern level becomes a global variable, at rule level a local one;
* abstract rules are pulled in through ``sch:extends``; ``sch:include`` is resolved inside the bundle;
* a failed ``sch:assert`` or a successful ``sch:report`` emits a finding with the assertion ``id``, its
  text (``sch:value-of`` and ``sch:name`` evaluated) and a positional path of the node, which the engine
  maps back onto its lxml tree to get the line number and a readable XPath.

Abstract patterns (``sch:pattern[@abstract]``) and phases other than ``#ALL`` are refused at load time
with :class:`SchematronError`: no XÖV bundle here uses them, and ignoring them would report wrong results.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from hub.validation.report import Finding, Severity

__all__ = ["SchematronError", "SchematronRules", "compile_schematron", "saxon_available"]

SCH = "http://purl.oclc.org/dsdl/schematron"
XSL = "http://www.w3.org/1999/XSL/Transform"
XS = "http://www.w3.org/2001/XMLSchema"
OUT = "urn:xoev-hub:schematron-result"
FN = "urn:xoev-hub:schematron-functions"

_SUPPORTED_BINDINGS = {"xslt", "xslt1", "xslt2", "xslt3", "xpath", "xpath2", "xpath3", "xpath31"}
_WARNING_ROLES = {"warning", "warn", "caution"}
_INFO_ROLES = {"info", "information", "hint"}


class SchematronError(ValueError):
    """A Schematron file that cannot be compiled or run; names the file and what is wrong."""


def _q(ns: str, local: str) -> str:
    return f"{{{ns}}}{local}"


def _avt_literal(value: str) -> str:
    # Attributes of literal result elements are attribute value templates: escape the braces.
    return value.replace("{", "{{").replace("}", "}}")


def _load_sch(path: Path, root_dir: Path, depth: int = 0) -> etree._Element:
    """Parse a .sch file and inline ``sch:include`` (local files inside the bundle only)."""
    if depth > 10:
        raise SchematronError(f"{path.name}: sch:include nested too deeply")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, remove_comments=True)
    try:
        root = etree.parse(str(path), parser).getroot()
    except (OSError, etree.XMLSyntaxError) as exc:
        raise SchematronError(f"{path.name}: cannot read Schematron: {exc}") from None
    for inc in list(root.iter(_q(SCH, "include"))):
        href = inc.get("href", "")
        target = (path.parent / href).resolve()
        if "://" in href or not target.is_relative_to(root_dir.resolve()):
            raise SchematronError(f"{path.name}: sch:include {href!r} points outside the bundle")
        included = _load_sch(target, root_dir, depth + 1)
        parent = inc.getparent()
        assert parent is not None  # an include element is never the document root
        parent.replace(inc, included)
    return root


class _Compiler:
    """Builds the XSLT stylesheet for one Schematron schema (see the module docstring)."""

    def __init__(self, schema: etree._Element, name: str) -> None:
        self.schema = schema
        self.name = name
        binding = (schema.get("queryBinding") or "xslt").lower()
        if binding not in _SUPPORTED_BINDINGS:
            raise SchematronError(f"{name}: queryBinding {binding!r} is not supported")
        self.version = "1.0" if binding in ("xslt", "xslt1", "xpath") else "2.0"
        nsmap: dict[str | None, str] = {"xsl": XSL, "xs": XS, "hubr": OUT, "hubf": FN}
        for ns in schema.iter(_q(SCH, "ns")):
            nsmap[ns.get("prefix")] = ns.get("uri", "")
        self.out = etree.Element(_q(XSL, "stylesheet"), nsmap=nsmap)
        self.out.set("version", self.version)
        self.out.set("exclude-result-prefixes", " ".join(p for p in nsmap if p and p not in ("xsl", "hubr")))
        self.abstract: dict[str, etree._Element] = {
            r.get("id", ""): r for r in schema.iter(_q(SCH, "rule")) if r.get("abstract") == "true"
        }

    def el(self, parent: etree._Element, local: str, **attrs: str) -> etree._Element:
        node = etree.SubElement(parent, _q(XSL, local))
        for key, value in attrs.items():
            node.set(key.rstrip("_"), value)
        return node

    def compile(self) -> str:
        schema = self.schema
        if any(p.get("abstract") == "true" for p in schema.iter(_q(SCH, "pattern"))):
            raise SchematronError(f"{self.name}: abstract patterns are not supported")
        default_phase = schema.get("defaultPhase")
        if default_phase and default_phase != "#ALL":
            raise SchematronError(f"{self.name}: phases are not supported (defaultPhase={default_phase!r})")
        self.el(self.out, "output", method="xml", indent="no")
        self._location_function()
        for child in schema:
            if child.tag in (_q(XSL, "function"), _q(XSL, "key")):
                self.out.append(child.__copy__())
        for let in schema.findall(_q(SCH, "let")):
            self._let(self.out, let)
        patterns = schema.findall(_q(SCH, "pattern"))
        for let in (let for p in patterns for let in p.findall(_q(SCH, "let"))):
            self._let(self.out, let)
        main = self.el(self.out, "template", match="/")
        result = etree.SubElement(main, _q(OUT, "result"))
        for index, pattern in enumerate(patterns):
            self.el(result, "apply-templates", select="/", mode=f"p{index}")
            self._pattern(pattern, f"p{index}")
        return str(etree.tostring(self.out, encoding="unicode"))

    def _location_function(self) -> None:
        func = self.el(self.out, "function", name="hubf:loc", as_="xs:string")
        func.set("version", "2.0")
        self.el(func, "param", name="n", as_="node()")
        self.el(
            func,
            "sequence",
            select=(
                "concat('/', string-join(for $a in $n/ancestor-or-self::* return "
                "concat('*[', count($a/preceding-sibling::*) + 1, ']'), '/'), "
                "if ($n instance of attribute()) then concat('/@', name($n)) else '')"
            ),
        )

    def _let(self, parent: etree._Element, let: etree._Element) -> None:
        var = self.el(parent, "variable", name=let.get("name", ""))
        if let.get("value") is not None:
            var.set("select", let.get("value", ""))
        else:
            for child in let:
                var.append(child.__copy__())

    def _pattern(self, pattern: etree._Element, mode: str) -> None:
        # Default behaviour in this mode: visit attributes and children, emit nothing for text.
        walk = self.el(self.out, "template", match="@*|node()", mode=mode, priority="-10")
        self.el(walk, "apply-templates", select="@*|node()", mode=mode)
        rules = [r for r in pattern.findall(_q(SCH, "rule")) if r.get("abstract") != "true"]
        for position, rule in enumerate(rules):
            context = rule.get("context")
            if not context:
                raise SchematronError(f"{self.name}: a rule without @context in pattern {pattern.get('id')}")
            template = self.el(
                self.out, "template", match=context, mode=mode, priority=str(len(rules) - position)
            )
            for part in self._rule_parts(rule):
                if part.tag == _q(SCH, "let"):
                    self._let(template, part)
                else:
                    self._check(template, part, rule)
            self.el(template, "apply-templates", select="@*|node()", mode=mode)

    def _rule_parts(self, rule: etree._Element, seen: frozenset[str] = frozenset()) -> list[etree._Element]:
        parts: list[etree._Element] = []
        for child in rule:
            if child.tag == _q(SCH, "extends"):
                ref = child.get("rule", "")
                if ref in seen or ref not in self.abstract:
                    raise SchematronError(
                        f"{self.name}: sch:extends refers to unknown or cyclic rule {ref!r}"
                    )
                parts.extend(self._rule_parts(self.abstract[ref], seen | {ref}))
            elif child.tag in (_q(SCH, "let"), _q(SCH, "assert"), _q(SCH, "report")):
                parts.append(child)
        return parts

    def _check(self, template: etree._Element, check: etree._Element, rule: etree._Element) -> None:
        test = check.get("test", "")
        is_assert = check.tag == _q(SCH, "assert")
        cond = self.el(template, "if", test=f"not({test})" if is_assert else f"({test})")
        failed = etree.SubElement(cond, _q(OUT, "failed"))
        failed.set("kind", "assert" if is_assert else "report")
        failed.set("id", _avt_literal(check.get("id") or rule.get("id") or ""))
        failed.set("role", _avt_literal(check.get("role") or check.get("flag") or rule.get("role") or ""))
        loc = self.el(failed, "attribute", name="location")
        self.el(loc, "value-of", select="hubf:loc(.)")
        self._message(failed, check)

    def _message(self, target: etree._Element, node: etree._Element) -> None:
        if node.text:
            self.el(target, "text").text = node.text
        for child in node:
            if child.tag == _q(SCH, "value-of"):
                self.el(target, "value-of", select=child.get("select", "."))
            elif child.tag == _q(SCH, "name"):
                self.el(target, "value-of", select=f"name({child.get('path', '.')})")
            elif isinstance(child.tag, str):
                self._message(target, child)  # sch:emph, sch:dir, sch:span and foreign markup: keep text
            if child.tail:
                self.el(target, "text").text = child.tail


def compile_schematron(path: Path, bundle_dir: Path) -> str:
    """Return the XSLT 2.0 text for the Schematron file ``path`` (includes resolved inside ``bundle_dir``)."""
    return _Compiler(_load_sch(path, bundle_dir), path.name).compile()


# --- running --------------------------------------------------------------------------------------

_saxon_lock = threading.Lock()
_saxon_state: dict[str, object] = {}


def saxon_available() -> bool:
    """True when saxonche can be imported (it is an optional native wheel)."""
    try:
        import saxonche  # noqa: F401
    except ImportError:
        return False
    return True


def _processor() -> object:
    # One Saxon processor per process; a forked worker must not reuse its parent's (GraalVM isolate).
    if _saxon_state.get("pid") != os.getpid():
        from saxonche import PySaxonProcessor

        _saxon_state["proc"] = PySaxonProcessor(license=False)
        _saxon_state["pid"] = os.getpid()
    return _saxon_state["proc"]


def _severity(role: str) -> Severity:
    role = role.lower()
    if role in _WARNING_ROLES:
        return "warning"
    if role in _INFO_ROLES:
        return "info"
    return "error"


@dataclass(frozen=True)
class _Failure:
    rule: str
    severity: Severity
    message: str
    location: str


class SchematronRules:
    """The compiled Schematron files of one bundle. ``check(root)`` returns findings; thread-safe."""

    def __init__(self, files: list[Path], bundle_dir: Path) -> None:
        from saxonche import PySaxonApiError

        self.names = [f.name for f in files]
        sources = [compile_schematron(f, bundle_dir) for f in files]
        with _saxon_lock:
            proc = _processor()
            xslt = proc.new_xslt30_processor()  # type: ignore[attr-defined]
            self._executables = []
            for name, text in zip(self.names, sources, strict=True):
                try:
                    self._executables.append(xslt.compile_stylesheet(stylesheet_text=text))
                except PySaxonApiError as exc:
                    raise SchematronError(f"{name}: Saxon cannot compile the rules: {exc}") from None
            self._pid = os.getpid()

    def _run(self, text: str) -> list[_Failure]:
        from saxonche import PySaxonApiError

        failures: list[_Failure] = []
        with _saxon_lock:
            if self._pid != os.getpid():
                raise SchematronError("Schematron rules were compiled in another process")
            proc = _processor()
            try:
                node = proc.parse_xml(xml_text=text)  # type: ignore[attr-defined]
                outputs = [exe.transform_to_string(xdm_node=node) for exe in self._executables]
            except PySaxonApiError as exc:
                raise SchematronError(f"Saxon failed while applying the rules: {exc}") from None
        for output in outputs:
            result = etree.fromstring(output.encode("utf-8"))
            for failed in result.iter(_q(OUT, "failed")):
                message = " ".join("".join(failed.itertext()).split())
                failures.append(
                    _Failure(
                        failed.get("id", ""),
                        _severity(failed.get("role", "")),
                        message,
                        failed.get("location", "/"),
                    )
                )
        return failures

    def check(self, root: etree._Element) -> list[Finding]:
        """Apply every file's rules to the document; each finding names its assertion id as ``rule``."""
        text = etree.tostring(root, encoding="unicode")
        tree = root.getroottree()
        findings: list[Finding] = []
        for failure in self._run(text):
            line: int | None = None
            path: str | None = failure.location
            hits = tree.xpath(failure.location) if failure.location != "/" else [root]
            if isinstance(hits, list) and hits:
                hit = hits[0]
                element = hit.getparent() if isinstance(hit, etree._ElementUnicodeResult) else hit
                if isinstance(element, etree._Element):
                    line = element.sourceline
                    path = tree.getpath(element)
                    if isinstance(hit, etree._ElementUnicodeResult) and hit.attrname:
                        path = f"{path}/@{hit.attrname}"
            findings.append(
                Finding(failure.severity, failure.message, line, path, failure.rule or "schematron")
            )
        return findings
