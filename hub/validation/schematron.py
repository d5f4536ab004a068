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
  maps back onto its lxml tree to get the line number and a readable XPath;
* each check, and each rule-level ``sch:let`` with the parts after it, sits in an ``xsl:try``: an XPath
  dynamic error (XPTY0004 on a valid document, say) is reported for that check and node as a
  ``hubr:error``, and every other check still runs. :meth:`SchematronRules.check` then raises
  :class:`SchematronIncomplete` with all findings; an error in a schema-level ``sch:let`` (a global
  variable, which no ``xsl:try`` in a template can catch) still stops the file.

Abstract patterns (``sch:pattern[@abstract]``) and phases other than ``#ALL`` are refused at load time
with :class:`SchematronError`: no XÖV bundle here uses them, and ignoring them would report wrong results.

Installed rules are untrusted code: :mod:`hub.validation.confinement` screens every file when it is
loaded, and the Saxon processor runs with no access to any URI and no external functions. When Saxon
cannot be imported or cannot start, :class:`SchematronUnavailable` says so, and the engine reports
``not_checked``: rules that did not run never make a document valid.

Why our own translation and not the ISO skeleton that lxml ships (``lxml/isoschematron/resources/xsl``):
that skeleton is the XSLT 1.0 one; run on Saxon it stops with "does not work with schemas using the
xslt2 query language". Forcing ``queryBinding="xslt"`` makes it generate a ``version="1.0"`` stylesheet,
which Saxon runs in backwards-compatible mode (first-item and numeric-comparison rules of XPath 1.0),
so it would not implement the binding the XÖV files declare.

:class:`SchematronRules` is the entry point. Saxon stays the reference; per document and file, rules
that :mod:`hub.validation.schematron_lxml` can prove portable are answered by lxml instead, with the
same findings (``tests/unit/validation/test_schematron_hybrid.py`` compares both paths).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from hub.validation.confinement import screen
from hub.validation.report import Finding, Severity
from hub.validation.saxon import SchematronUnavailable, processor, saxon_available, saxon_lock
from hub.validation.schematron_lxml import LxmlRules
from hub.validation.schematron_source import (
    SCH,
    SchematronError,
    abstract_rules,
    check_id,
    check_role,
    load_sch,
    rule_parts,
    severity,
)
from hub.validation.schematron_source import q as _q

__all__ = [
    "SchematronError",
    "SchematronIncomplete",
    "SchematronRules",
    "SchematronUnavailable",
    "compile_schematron",
    "load_screened",
    "saxon_available",
]

XSL = "http://www.w3.org/1999/XSL/Transform"
XS = "http://www.w3.org/2001/XMLSchema"
OUT = "urn:xoev-hub:schematron-result"
FN = "urn:xoev-hub:schematron-functions"
ERR = "http://www.w3.org/2005/xqt-errors"  # $err:code and $err:description inside xsl:catch

_SUPPORTED_BINDINGS = {"xslt", "xslt1", "xslt2", "xslt3", "xpath", "xpath2", "xpath3", "xpath31"}


def _avt_literal(value: str) -> str:
    # Attributes of literal result elements are attribute value templates: escape the braces.
    return value.replace("{", "{{").replace("}", "}}")


class _Compiler:
    """Builds the XSLT stylesheet for one Schematron schema (see the module docstring)."""

    def __init__(self, schema: etree._Element, name: str) -> None:
        self.schema = schema
        self.name = name
        binding = (schema.get("queryBinding") or "xslt").lower()
        if binding not in _SUPPORTED_BINDINGS:
            raise SchematronError(f"{name}: queryBinding {binding!r} is not supported")
        self.version = "1.0" if binding in ("xslt", "xslt1", "xpath") else "2.0"
        nsmap: dict[str | None, str] = {"xsl": XSL, "xs": XS, "hubr": OUT, "hubf": FN, "err": ERR}
        for ns in schema.iter(_q(SCH, "ns")):
            nsmap[ns.get("prefix")] = ns.get("uri", "")
        self.out = etree.Element(_q(XSL, "stylesheet"), nsmap=nsmap)
        self.out.set("version", self.version)
        self.out.set("exclude-result-prefixes", " ".join(p for p in nsmap if p and p not in ("xsl", "hubr")))
        self.abstract = abstract_rules(schema)

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
            # A let and the parts after it go into an xsl:try of their own: XSLT catches an error of
            # a variable only inside the try that declares it. Each check has its own try as well.
            body = template
            opened: list[tuple[etree._Element, str]] = []  # (the try around a let, the let's name)
            for part in rule_parts(rule, self.abstract, self.name):
                if part.tag == _q(SCH, "let"):
                    body = self._try(body)
                    self._let(body, part)
                    opened.append((body, part.get("name", "")))
                else:
                    self._check(body, part, rule)
            for attempt, name in opened:  # now that each try is complete: xsl:catch comes last
                self._catch(attempt, rule.get("id", ""), f"variable ${name}: ")
            self.el(template, "apply-templates", select="@*|node()", mode=mode)

    def _try(self, parent: etree._Element) -> etree._Element:
        if self.version == "1.0":
            # Backwards-compatible mode (XPath 1.0 rules) has no such errors to catch, and a
            # version="3.0" xsl:try would take its content out of that mode.
            return parent
        return self.el(parent, "try")  # XSLT 3.0 processes a version="2.0" stylesheet as 3.0

    def _catch(self, attempt: etree._Element, rule_id: str, what: str = "") -> None:
        """Report a dynamic error inside ``attempt`` (e.g. XPTY0004, several items where the rule expects
        one) as a ``hubr:error`` for ``rule_id`` and the context node, instead of stopping the run."""
        if attempt.tag != _q(XSL, "try"):
            return
        error = etree.SubElement(self.el(attempt, "catch"), _q(OUT, "error"))
        error.set("id", _avt_literal(rule_id))
        error.set("code", "{local-name-from-QName($err:code)}")
        loc = self.el(error, "attribute", name="location")
        self.el(loc, "value-of", select="hubf:loc(.)")
        if what:
            self.el(error, "text").text = what
        self.el(error, "value-of", select="$err:description")

    def _check(self, template: etree._Element, check: etree._Element, rule: etree._Element) -> None:
        test = check.get("test", "")
        is_assert = check.tag == _q(SCH, "assert")
        attempt = self._try(template)
        cond = self.el(attempt, "if", test=f"not({test})" if is_assert else f"({test})")
        failed = etree.SubElement(cond, _q(OUT, "failed"))
        failed.set("kind", "assert" if is_assert else "report")
        failed.set("id", _avt_literal(check_id(check, rule)))
        failed.set("role", _avt_literal(check_role(check, rule)))
        loc = self.el(failed, "attribute", name="location")
        self.el(loc, "value-of", select="hubf:loc(.)")
        self._message(failed, check)
        self._catch(attempt, check_id(check, rule))

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


def load_screened(path: Path, bundle_dir: Path) -> etree._Element:
    """The Schematron file ``path``, includes inlined (inside ``bundle_dir`` only), screened for escapes."""
    schema = load_sch(path, bundle_dir)
    screen(schema, path.name)
    return schema


def compile_schematron(path: Path, bundle_dir: Path) -> str:
    """Return the XSLT 2.0 text for the Schematron file ``path`` (includes resolved inside ``bundle_dir``)."""
    return _Compiler(load_screened(path, bundle_dir), path.name).compile()


# --- running --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Failure:
    rule: str
    severity: Severity
    message: str
    location: str
    error: str | None = None  # the XPath error code when the check could not be evaluated here


class SchematronIncomplete(SchematronError):
    """Some checks raised an XPath 2.0 dynamic error on this document; every other check ran.

    An XÖV rule can fail on a valid document, e.g. ``normalize-space(//xbau:bauherr//name)`` with two
    builders (XPTY0004: more than one item). That is a fault of the rule, not a finding about the
    document. ``findings`` holds every finding, including one ``warning`` per check and node that could
    not be evaluated (its rule id, line and path); ``reason`` names the first of them.
    """

    def __init__(self, findings: list[Finding], faults: list[Finding]) -> None:
        first = faults[0]
        more = f" (and {len(faults) - 1} more)" if len(faults) > 1 else ""
        reason = f"{first.message}{more}"
        super().__init__(reason)
        self.findings = findings
        self.faults = faults
        self.reason = reason


class SchematronRules:
    """The Schematron files of one bundle, ready to run; thread-safe.

    Each file exists twice: as a Saxon executable (the reference, XPath 2.0 as the files declare) and
    as :class:`~hub.validation.schematron_lxml.LxmlRules`. :meth:`check` asks lxml first, file by file,
    and runs Saxon only for the files lxml cannot answer exactly for this document (see
    :mod:`hub.validation.schematron_lxml`); the findings are the same either way.
    """

    def __init__(self, files: list[Path], bundle_dir: Path) -> None:
        self.names = [f.name for f in files]
        schemas = [load_screened(f, bundle_dir) for f in files]
        sources = [_Compiler(s, f.name).compile() for s, f in zip(schemas, files, strict=True)]
        self._lxml = [LxmlRules(s, f.name) for s, f in zip(schemas, files, strict=True)]
        with saxon_lock:
            proc = processor()
            from saxonche import PySaxonApiError  # importable: processor() succeeded

            xslt = proc.new_xslt30_processor()  # type: ignore[attr-defined]
            self._executables = []
            for name, text in zip(self.names, sources, strict=True):
                try:
                    self._executables.append(xslt.compile_stylesheet(stylesheet_text=text))
                except PySaxonApiError as exc:
                    raise SchematronError(f"{name}: Saxon cannot compile the rules: {exc}") from None
            self._pid = os.getpid()

    def _run(self, text: str, files: list[int]) -> dict[int, list[_Failure]]:
        from saxonche import PySaxonApiError

        with saxon_lock:
            if self._pid != os.getpid():
                raise SchematronError("Schematron rules were compiled in another process")
            proc = processor()
            try:
                node = proc.parse_xml(xml_text=text)  # type: ignore[attr-defined]
                outputs = {i: self._executables[i].transform_to_string(xdm_node=node) for i in files}
            except PySaxonApiError as exc:
                raise SchematronError(f"Saxon failed while applying the rules: {exc}") from None
        failures: dict[int, list[_Failure]] = {}
        for index, output in outputs.items():
            result = etree.fromstring(output.encode("utf-8"))
            failures[index] = [
                _Failure(
                    item.get("id", ""),
                    severity(item.get("role", "")) if item.get("code") is None else "warning",
                    " ".join("".join(item.itertext()).split()),
                    item.get("location", "/"),
                    item.get("code"),
                )
                for item in result.iter(_q(OUT, "failed"), _q(OUT, "error"))
            ]
        return failures

    def check(self, root: etree._Element) -> list[Finding]:
        """Apply every file's rules to the document; each finding names its assertion id as ``rule``.

        Raises :class:`SchematronIncomplete` (with all findings) when a check raised an XPath error.
        """
        per_file = [rules.run(root) for rules in self._lxml]
        missing = [i for i, findings in enumerate(per_file) if findings is None]
        faults: list[Finding] = []
        if missing:
            from_saxon, faults = self._saxon_findings(root, missing)
            per_file = [from_saxon[i] if found is None else found for i, found in enumerate(per_file)]
        findings = [finding for found in per_file if found is not None for finding in found]
        if faults:
            raise SchematronIncomplete(findings, faults)
        return findings

    def check_with_saxon(self, root: etree._Element) -> list[Finding]:
        """Every file on Saxon (the reference path, used to prove the lxml path equivalent)."""
        found, faults = self._saxon_findings(root, list(range(len(self._executables))))
        findings = [finding for i in range(len(self._executables)) for finding in found[i]]
        if faults:
            raise SchematronIncomplete(findings, faults)
        return findings

    def check_with_lxml(self, root: etree._Element) -> list[Finding] | None:
        """The findings when lxml can answer for every file, else ``None`` (Saxon would be needed)."""
        findings: list[Finding] = []
        for rules in self._lxml:
            found = rules.run(root)
            if found is None:
                return None
            findings.extend(found)
        return findings

    def _saxon_findings(
        self, root: etree._Element, files: list[int]
    ) -> tuple[dict[int, list[Finding]], list[Finding]]:
        """Per file its findings, and the findings among them that report a check's XPath error."""
        text = etree.tostring(root, encoding="unicode")
        tree = root.getroottree()
        found: dict[int, list[Finding]] = {}
        faults: list[Finding] = []
        for index, failures in self._run(text, files).items():
            found[index] = []
            for failure in failures:
                finding = _locate(tree, failure)
                found[index].append(finding)
                if failure.error is not None:
                    faults.append(finding)
        return found, faults


def _locate(tree: etree._ElementTree, failure: _Failure) -> Finding:
    """Map Saxon's positional location back onto the lxml tree (line number, readable XPath)."""
    root = tree.getroot()
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
    message = failure.message
    if failure.error is not None:
        which = f"Schematron rule {failure.rule}" if failure.rule else "A Schematron rule"
        message = (
            f"{which} could not be evaluated here: {failure.error} {message} "
            "(a fault of the rule, not a finding about the document)"
        )
    return Finding(failure.severity, message, line, path, failure.rule or "schematron")
