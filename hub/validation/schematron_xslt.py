"""Schematron → XSLT: one stylesheet per Schematron file, compiled once per bundle and run by Saxon-HE.

XÖV Schematron files use ``queryBinding="xslt2"`` (``if … then … else``, ``matches()``, sequence
comparisons), which lxml's XSLT 1.0 ``isoschematron`` cannot run. Saxon-HE runs the XPath; this module
only translates the Schematron structure into a stylesheet, following the ISO skeleton's model:

* one XSLT mode per pattern; within a pattern, a node fires at most the *first* rule whose context
  matches it (rule order becomes template priority). Each pattern's mode is applied once to the nodes
  a context can match, flat and in document order: every element, and also the document node,
  attributes and other nodes when some context of the pattern could match one of those
  (:func:`_elements_only`). Nodes no rule matches are skipped (``on-no-match="deep-skip"``). A pattern
  whose checks ask ``position()`` or ``last()`` of the context node gets the skeleton's recursive walk
  instead (``@*|node()`` from each node's template), which gives those their ISO meaning;
* ``sch:let`` at schema or pattern level becomes a global variable, at rule level a local one;
* abstract rules are pulled in through ``sch:extends``; ``sch:include`` is resolved inside the bundle;
* a failed ``sch:assert`` or a successful ``sch:report`` emits a ``hubr:failed`` with the assertion
  ``id``, its severity (from ``role``/``flag``, decided here), its text (``sch:value-of`` and
  ``sch:name`` evaluated) and the node's location: the element's number in document order (an
  accumulator, counted once per document and only when a finding asks), with ``/@name`` for an
  attribute. :mod:`hub.validation.schematron` maps that number onto its lxml tree for the line and a
  readable XPath, in one pass per document however many findings there are;
* each check, and each rule-level ``sch:let`` with the parts after it, sits in an ``xsl:try``: an XPath
  dynamic error (XPTY0004 on a valid document, say) is reported for that check and node as a
  ``hubr:error``, and every other check still runs. An error in a schema-level ``sch:let`` (a global
  variable, which no ``xsl:try`` in a template can catch) still stops the file;
* at most ``cap`` findings per file come out, then one ``hubr:omitted`` with the counts of the rest by
  severity and of faults, so a report cannot explode on a pathological document.

Abstract patterns (``sch:pattern[@abstract]``) and phases other than ``#ALL`` are refused at load time
with :class:`SchematronError`: no XÖV bundle here uses them, and ignoring them would report wrong results.

Why our own translation and not the ISO skeleton that lxml ships (``lxml/isoschematron/resources/xsl``):
that skeleton is the XSLT 1.0 one; run on Saxon it stops with "does not work with schemas using the
xslt2 query language". Forcing ``queryBinding="xslt"`` makes it generate a ``version="1.0"`` stylesheet,
which Saxon runs in backwards-compatible mode (first-item and numeric-comparison rules of XPath 1.0),
so it would not implement the binding the XÖV files declare.
"""

from __future__ import annotations

import re
from pathlib import Path

from lxml import etree

from hub.validation.confinement import screen
from hub.validation.schematron_source import (
    SCH,
    SchematronError,
    abstract_rules,
    check_id,
    check_role,
    load_sch,
    q,
    rule_parts,
    severity,
)

__all__ = ["OUT", "compile_schematron", "load_screened", "to_xslt"]

XSL = "http://www.w3.org/1999/XSL/Transform"
XS = "http://www.w3.org/2001/XMLSchema"
OUT = "urn:xoev-hub:schematron-result"
FN = "urn:xoev-hub:schematron-functions"
ERR = "http://www.w3.org/2005/xqt-errors"  # $err:code and $err:description inside xsl:catch

_SUPPORTED_BINDINGS = {"xslt", "xslt1", "xslt2", "xslt3", "xpath", "xpath2", "xpath3", "xpath31"}
_LITERAL_OR_PREDICATE = re.compile(r"'[^']*'|\"[^\"]*\"|\[|\]")
# Outside predicates, what lets a pattern match something other than an element: an attribute (@,
# attribute()), a kind test (text(), node(), comment(), …, document-node()), a function (key(), id(),
# root()), a variable (XSLT 3.0), "/" alone. Any "(" counts: element() and schema-element() only lose
# a little speed.
_NOT_ONLY_ELEMENTS = re.compile(r"[@($]|attribute::|namespace::|^\s*/\s*$|^\s*\.")


def _outside_predicates(pattern: str) -> str:
    """``pattern`` with the content of its predicates and string literals left out."""
    kept: list[str] = []
    depth, position = 0, 0
    for match in _LITERAL_OR_PREDICATE.finditer(pattern):
        if depth == 0:
            kept.append(pattern[position : match.start()])
        token = match.group()
        depth += 1 if token == "[" else -1 if token == "]" else 0
        position = match.end()
        if depth < 0:  # unbalanced: Saxon will say what is wrong; be conservative here
            return "("
    kept.append(pattern[position:] if depth == 0 else "(")
    return "".join(kept)


def _elements_only(contexts: list[str]) -> bool:
    """Whether every context (an XSLT pattern) can only match elements; conservative."""
    return not any(_NOT_ONLY_ELEMENTS.search(_outside_predicates(c)) for c in contexts)


_FOCUS_POSITION = re.compile(r"\b(?:position|last)\s*\(")


def _asks_position(parts: list[etree._Element]) -> bool:
    """Whether a test, let or message asks ``position()``/``last()`` of the rule's context node.

    The ISO skeleton applies templates to ``@*|node()`` of each node, so there the position is the
    node's among its parent's children; the flat pass of the other patterns would change it.
    """
    for part in parts:
        nodes = [part, *part.iter(q(SCH, "value-of"), q(SCH, "name"))]
        for node in nodes:
            for attribute in ("test", "value", "select", "path"):
                expression = node.get(attribute)
                if expression and _FOCUS_POSITION.search(_outside_predicates(expression)):
                    return True
    return False


def _avt_literal(value: str) -> str:
    # Attributes of literal result elements are attribute value templates: escape the braces.
    return value.replace("{", "{{").replace("}", "}}")


class _Compiler:
    """Builds the XSLT stylesheet for one Schematron schema (see the module docstring)."""

    def __init__(self, schema: etree._Element, name: str, cap: int) -> None:
        self.schema = schema
        self.name = name
        self.cap = cap
        binding = (schema.get("queryBinding") or "xslt").lower()
        if binding not in _SUPPORTED_BINDINGS:
            raise SchematronError(f"{name}: queryBinding {binding!r} is not supported")
        self.version = "1.0" if binding in ("xslt", "xslt1", "xpath") else "2.0"
        nsmap: dict[str | None, str] = {"xsl": XSL, "xs": XS, "hubr": OUT, "hubf": FN, "err": ERR}
        for ns in schema.iter(q(SCH, "ns")):
            nsmap[ns.get("prefix")] = ns.get("uri", "")
        self.out = etree.Element(q(XSL, "stylesheet"), nsmap=nsmap)
        self.out.set("version", self.version)
        self.out.set("exclude-result-prefixes", " ".join(p for p in nsmap if p and p not in ("xsl", "hubr")))
        self.abstract = abstract_rules(schema)

    def el(self, parent: etree._Element, local: str, **attrs: str) -> etree._Element:
        node = etree.SubElement(parent, q(XSL, local))
        for key, value in attrs.items():
            node.set(key.rstrip("_").replace("_", "-"), value)
        return node

    def compile(self) -> str:
        schema = self.schema
        if any(p.get("abstract") == "true" for p in schema.iter(q(SCH, "pattern"))):
            raise SchematronError(f"{self.name}: abstract patterns are not supported")
        default_phase = schema.get("defaultPhase")
        if default_phase and default_phase != "#ALL":
            raise SchematronError(f"{self.name}: phases are not supported (defaultPhase={default_phase!r})")
        self.el(self.out, "output", method="xml", indent="no")
        self._locations()
        for child in schema:
            if child.tag in (q(XSL, "function"), q(XSL, "key")):
                self.out.append(child.__copy__())
        for let in schema.findall(q(SCH, "let")):
            self._let(self.out, let)
        patterns = schema.findall(q(SCH, "pattern"))
        for let in (let for p in patterns for let in p.findall(q(SCH, "let"))):
            self._let(self.out, let)
        # The main template runs in XSLT 3.0 whatever the binding (it only collects and caps findings).
        main = self.el(self.out, "template", match="/", version="3.0")
        found = self.el(main, "variable", name="hubr:found", as_="element()*")
        for index, pattern in enumerate(patterns):
            self._pattern(found, pattern, f"p{index}")
        result = etree.SubElement(main, q(OUT, "result"))
        self.el(result, "sequence", select=f"$hubr:found[position() le {self.cap}]")
        more = self.el(result, "if", test=f"count($hubr:found) gt {self.cap}")
        omitted = etree.SubElement(more, q(OUT, "omitted"))
        rest = f"$hubr:found[position() gt {self.cap}]"
        for kind in ("error", "warning", "info"):
            omitted.set(kind, f"{{count({rest}[self::hubr:failed][@severity = '{kind}'])}}")
        omitted.set("faults", f"{{count({rest}[self::hubr:error])}}")
        return str(etree.tostring(self.out, encoding="unicode"))

    def _locations(self) -> None:
        # Elements numbered in document order (1 = the root element): computed by Saxon in one pass over
        # the document, the first time a finding asks for a location.
        acc = self.el(self.out, "accumulator", name="hubr:n", initial_value="0", as_="xs:integer", version="3.0")
        self.el(acc, "accumulator-rule", match="*", select="$value + 1")
        self.el(self.out, "mode", use_accumulators="hubr:n", version="3.0")
        func = self.el(self.out, "function", name="hubf:loc", as_="xs:string", version="3.0")
        self.el(func, "param", name="n", as_="node()")
        self.el(
            func,
            "sequence",
            select=(
                "if ($n instance of element()) then string($n/accumulator-before('hubr:n')) "
                "else if ($n instance of attribute()) then "
                "concat(hubf:loc($n/..), '/@', name($n)) "
                "else if (exists($n/ancestor::*[1])) then hubf:loc($n/ancestor::*[1]) else '0'"
            ),
        )

    def _let(self, parent: etree._Element, let: etree._Element) -> None:
        var = self.el(parent, "variable", name=let.get("name", ""))
        if let.get("value") is not None:
            var.set("select", let.get("value", ""))
        else:
            for child in let:
                var.append(child.__copy__())

    def _pattern(self, main: etree._Element, pattern: etree._Element, mode: str) -> None:
        rules = [r for r in pattern.findall(q(SCH, "rule")) if r.get("abstract") != "true"]
        contexts = [rule.get("context") or "" for rule in rules]
        if not all(contexts):
            raise SchematronError(f"{self.name}: a rule without @context in pattern {pattern.get('id')}")
        if not rules:
            return
        parts = [rule_parts(rule, self.abstract, self.name) for rule in rules]
        walk = any(_asks_position(p) for p in parts)
        if walk:  # the ISO skeleton's walk: every node, its attributes and children from its template
            self.el(main, "apply-templates", select="/", mode=mode)
            default = self.el(self.out, "template", match="@*|node()", mode=mode, priority="-10")
            self.el(default, "apply-templates", select="@*|node()", mode=mode)
        else:  # one flat pass over the nodes a context can match, in document order
            select = "//*" if _elements_only(contexts) else "/ | //node() | //@*"
            self.el(main, "apply-templates", select=select, mode=mode)
            self.el(self.out, "mode", name=mode, on_no_match="deep-skip", version="3.0")
        for position, (rule, context) in enumerate(zip(rules, contexts, strict=True)):
            template = self.el(self.out, "template", match=context, mode=mode, priority=str(len(rules) - position))
            # A let and the parts after it go into an xsl:try of their own: XSLT catches an error of
            # a variable only inside the try that declares it. Each check has its own try as well.
            body = template
            opened: list[tuple[etree._Element, str]] = []  # (the try around a let, the let's name)
            for part in parts[position]:
                if part.tag == q(SCH, "let"):
                    body = self._try(body)
                    self._let(body, part)
                    opened.append((body, part.get("name", "")))
                else:
                    self._check(body, part, rule)
            for attempt, name in opened:  # now that each try is complete: xsl:catch comes last
                self._catch(attempt, rule.get("id", ""), f"variable ${name}: ")
            if walk:
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
        if attempt.tag != q(XSL, "try"):
            return
        error = etree.SubElement(self.el(attempt, "catch"), q(OUT, "error"))
        error.set("id", _avt_literal(rule_id))
        error.set("code", "{local-name-from-QName($err:code)}")
        loc = self.el(error, "attribute", name="location")
        self.el(loc, "value-of", select="hubf:loc(.)")
        if what:
            self.el(error, "text").text = what
        self.el(error, "value-of", select="$err:description")

    def _check(self, template: etree._Element, check: etree._Element, rule: etree._Element) -> None:
        test = check.get("test", "")
        is_assert = check.tag == q(SCH, "assert")
        attempt = self._try(template)
        cond = self.el(attempt, "if", test=f"not({test})" if is_assert else f"({test})")
        failed = etree.SubElement(cond, q(OUT, "failed"))
        failed.set("id", _avt_literal(check_id(check, rule)))
        failed.set("severity", severity(check_role(check, rule)))
        loc = self.el(failed, "attribute", name="location")
        self.el(loc, "value-of", select="hubf:loc(.)")
        self._message(failed, check)
        self._catch(attempt, check_id(check, rule))

    def _message(self, target: etree._Element, node: etree._Element) -> None:
        if node.text:
            self.el(target, "text").text = node.text
        for child in node:
            if child.tag == q(SCH, "value-of"):
                self.el(target, "value-of", select=child.get("select", "."))
            elif child.tag == q(SCH, "name"):
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


def to_xslt(schema: etree._Element, name: str, cap: int) -> str:
    """The XSLT text for a loaded, screened Schematron schema (at most ``cap`` findings per document)."""
    return _Compiler(schema, name, cap).compile()


def compile_schematron(path: Path, bundle_dir: Path, cap: int = 200) -> str:
    """Return the XSLT text for the Schematron file ``path`` (includes resolved inside ``bundle_dir``)."""
    return to_xslt(load_screened(path, bundle_dir), path.name, cap)
