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
  severity and of faults, so a report cannot explode on a pathological document. A finding costs Saxon
  some 20 µs to build (message, location), a mere count about 1 µs: so each pattern runs node by node
  (``xsl:iterate``) only until the cap is reached, and the rest of the document, and the patterns after
  it, run in a second mode per pattern that only counts (see :meth:`_Compiler._pattern`).

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
MAP = "http://www.w3.org/2005/xpath-functions/map"

_SUPPORTED_BINDINGS = {"xslt", "xslt1", "xslt2", "xslt3", "xpath", "xpath2", "xpath3", "xpath31"}
_LITERAL_OR_PREDICATE = re.compile(r"'[^']*'|\"[^\"]*\"|\[|\]")
# Outside predicates, what lets a pattern match something other than an element: an attribute (@,
# attribute()), a kind test (text(), node(), comment(), …, document-node()), a function (key(), id(),
# root()), a variable (XSLT 3.0), "/" alone. Any "(" counts: element() and schema-element() only lose
# a little speed.
_NOT_ONLY_ELEMENTS = re.compile(r"[@($]|attribute::|namespace::|^\s*/\s*$|^\s*\.")
_UNION = re.compile(r"\||\bunion\b")


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
    return not any(
        _NOT_ONLY_ELEMENTS.search(branch) for c in contexts for branch in _UNION.split(_outside_predicates(c))
    )


_FEW = 16  # up to this many elements with findings, each one's number is counted on its own
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
        nsmap: dict[str | None, str] = {"xsl": XSL, "xs": XS, "hubr": OUT, "hubf": FN, "hubm": MAP, "err": ERR}
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
        # First every pattern in its tally mode: per finding its node and severity, cheap; then the
        # findings themselves (message) for the nodes of the first ``cap`` findings only.
        reruns = [self._pattern(main, pattern, index) for index, pattern in enumerate(patterns)]
        for index, rerun in enumerate(reruns):
            found = self.el(main, "variable", name=f"hubr:f{index}", as_="node()*")
            before = f"$hubr:n{index - 1}" if index else "0"
            self.el(self.el(found, "if", test=f"{before} lt {self.cap} and exists($hubr:t{index})"),
                    "apply-templates", select=rerun.replace("KEEP", f"({self.cap} - {before})"), mode=f"p{index}")
        tallies = ", ".join(f"$hubr:t{i}" for i in range(len(patterns)))
        pairs = ", ".join(f"$hubr:f{i}" for i in range(len(patterns)))
        self.el(main, "variable", name="hubr:tally", select=f"({tallies})[position() mod 2 = 0]" if tallies else "()")
        levels = "$hubr:tally ! (if (starts-with(., 'fault|')) then 'fault' else .)"
        kept = f"({pairs})[position() le {2 * self.cap}]" if pairs else "()"
        self.el(main, "variable", name="hubr:kept", select=kept)
        # Element numbers in document order (1 = the root element), for the elements the kept findings are
        # on: counted per element while there are few (about 0.2 µs an element before it), else in one
        # pass over the document (generate-id of each element, about 0.4 µs): linear either way.
        targets = "$hubr:kept[position() mod 2 = 1] ! ancestor-or-self::*[1]"
        self.el(main, "variable", name="hubr:targets", select=targets)
        self.el(
            main,
            "variable",
            name="hubr:ids",
            select="hubm:merge($hubr:targets ! map{generate-id(.): 0}, map{'duplicates': 'use-first'})",
        )
        self.el(
            main,
            "variable",
            name="hubr:numbers",
            select=(
                f"if (hubm:size($hubr:ids) le {_FEW}) then hubm:merge($hubr:targets ! "
                "map{generate-id(.): count(preceding::*) + count(ancestor::*) + 1}, map{'duplicates': 'use-first'}) "
                "else let $all := //* return hubm:merge("
                "for $i in 1 to count($all) return let $id := generate-id($all[$i]) return "
                "if (hubm:contains($hubr:ids, $id)) then map{$id: $i} else ())"
            ),
        )
        result = etree.SubElement(main, q(OUT, "result"))
        each = self.el(result, "for-each", select="1 to count($hubr:kept) idiv 2")
        self.el(each, "variable", name="hubr:node", select="$hubr:kept[2 * current() - 1]")
        # A rule fault as the tally pass saw it: the rerun can differ (doc() remembers that the first
        # attempt failed and then says "marked not available" instead of why).
        self.el(each, "variable", name="hubr:fault", select="$hubr:tally[current()][starts-with(., 'fault|')]")
        copy = self.el(self.el(each, "for-each", select="$hubr:kept[2 * current()]"), "copy")
        self.el(copy, "copy-of", select="@*")
        self.el(copy, "attribute", name="location", select="hubf:loc($hubr:node, $hubr:numbers)")
        choose = self.el(copy, "choose")
        first = self.el(choose, "when", test="exists($hubr:fault) and self::hubr:error")
        self.el(first, "attribute", name="code", select="substring-before(substring-after($hubr:fault, '|'), '|')")
        self.el(first, "value-of", select="substring-after(substring-after($hubr:fault, '|'), '|')")
        self.el(self.el(choose, "otherwise"), "copy-of", select="node()")
        kinds = "$hubr:kept[position() mod 2 = 0] ! (if (self::hubr:error) then 'fault' else string(@severity))"
        more = self.el(result, "if", test="count($hubr:tally) gt count($hubr:kept) idiv 2")
        omitted = etree.SubElement(more, q(OUT, "omitted"))
        for kind in ("error", "warning", "info", "fault"):
            omitted.set(
                f"{kind}s" if kind == "fault" else kind,
                f"{{count(({levels})[. = '{kind}']) - count(({kinds})[. = '{kind}'])}}",
            )
        return str(etree.tostring(self.out, encoding="unicode"))

    def _locations(self) -> None:
        # A finding's location: the number of its element in document order (1 = the root element), with
        # "/@name" for an attribute; other nodes are reported on their element, the document node as "0".
        func = self.el(self.out, "function", name="hubf:loc", as_="xs:string", version="3.0")
        self.el(func, "param", name="n", as_="node()")
        self.el(func, "param", name="numbers", as_="map(*)")
        self.el(
            func,
            "sequence",
            select=(
                "let $e := $n/ancestor-or-self::*[1] return if (empty($e)) then '0' else "
                "concat($numbers(generate-id($e)), if ($n instance of attribute()) then '/@' || name($n) else '')"
            ),
        )

    def _let(self, parent: etree._Element, let: etree._Element) -> None:
        var = self.el(parent, "variable", name=let.get("name", ""))
        if let.get("value") is not None:
            var.set("select", let.get("value", ""))
        else:
            for child in let:
                var.append(child.__copy__())

    def _pattern(self, main: etree._Element, pattern: etree._Element, index: int) -> str:
        """The templates of one pattern, in two modes, and its tally in the main template.

        ``c<index>`` (tally) emits per finding its node and its severity (``'fault'`` for a check that
        raised), which costs Saxon about 1 µs; ``p<index>`` (full) emits the node and the finding with
        its message, about 20 µs. The main template runs every pattern in its tally mode into
        ``$hubr:t<index>`` (``$hubr:n<index>``: the findings up to this pattern), then the full mode on
        the nodes of the first ``cap`` findings only. Returns the full run's ``select``, with ``KEEP``
        for how many of this pattern's findings are still kept.
        """
        rules = [r for r in pattern.findall(q(SCH, "rule")) if r.get("abstract") != "true"]
        contexts = [rule.get("context") or "" for rule in rules]
        if not all(contexts):
            raise SchematronError(f"{self.name}: a rule without @context in pattern {pattern.get('id')}")
        parts = [rule_parts(rule, self.abstract, self.name) for rule in rules]
        full, tally = f"p{index}", f"c{index}"
        tallied = self.el(main, "variable", name=f"hubr:t{index}", as_="item()*")
        before = f"$hubr:n{index - 1}" if index else "0"
        self.el(main, "variable", name=f"hubr:n{index}", select=f"{before} + count($hubr:t{index}) idiv 2")
        if any(_asks_position(p) for p in parts):
            # the ISO skeleton's walk (every node, its attributes and children from its template), which
            # the full run repeats for the whole document: the position depends on the walk
            for mode in (full, tally):
                default = self.el(self.out, "template", match="@*|node()", mode=mode, priority="-10")
                self.el(default, "apply-templates", select="@*|node()", mode=mode)
                self._templates(rules, contexts, parts, mode, walk=True, tally=mode == tally)
            self.el(tallied, "apply-templates", select="/", mode=tally)
            return "/"
        # one flat pass over the nodes a context can match, in document order
        select = "//*" if _elements_only(contexts) else "/ | //node() | //@*"
        for mode in (full, tally):
            self.el(self.out, "mode", name=mode, on_no_match="deep-skip", version="3.0")
            self._templates(rules, contexts, parts, mode, tally=mode == tally)
        self.el(tallied, "apply-templates", select=select, mode=tally)
        return f"($hubr:t{index}[position() le 2 * KEEP][position() mod 2 = 1])/."

    def _templates(
        self,
        rules: list[etree._Element],
        contexts: list[str],
        parts: list[list[etree._Element]],
        mode: str,
        *,
        walk: bool = False,
        tally: bool = False,
    ) -> None:
        """One template per rule in ``mode``; rule order is priority (the first matching rule wins)."""
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
                    self._check(body, part, rule, tally)
            for attempt, name in opened:  # now that each try is complete: xsl:catch comes last
                self._catch(attempt, rule.get("id", ""), f"variable ${name}: ", tally)
            if walk:
                self.el(template, "apply-templates", select="@*|node()", mode=mode)

    def _try(self, parent: etree._Element) -> etree._Element:
        if self.version == "1.0":
            # Backwards-compatible mode (XPath 1.0 rules) has no such errors to catch, and a
            # version="3.0" xsl:try would take its content out of that mode.
            return parent
        return self.el(parent, "try")  # XSLT 3.0 processes a version="2.0" stylesheet as 3.0

    def _catch(self, attempt: etree._Element, rule_id: str, what: str = "", tally: bool = False) -> None:
        """Report a dynamic error inside ``attempt`` (e.g. XPTY0004, several items where the rule expects
        one) as a ``hubr:error`` for ``rule_id`` and the context node, instead of stopping the run."""
        if attempt.tag != q(XSL, "try"):
            return
        catch = self.el(attempt, "catch")
        if tally:  # the node, then 'fault|code|what and why'
            reason = f"'{what}' || " if what else ""
            code = "local-name-from-QName($err:code)"
            self.el(catch, "sequence", select=f"., 'fault|' || {code} || '|' || {reason}$err:description")
            return
        self.el(catch, "sequence", select=".")  # the node, then the finding
        error = etree.SubElement(catch, q(OUT, "error"))
        error.set("id", _avt_literal(rule_id))
        error.set("code", "{local-name-from-QName($err:code)}")
        if what:
            self.el(error, "text").text = what
        self.el(error, "value-of", select="$err:description")

    def _check(self, template: etree._Element, check: etree._Element, rule: etree._Element, tally: bool) -> None:
        test = check.get("test", "")
        is_assert = check.tag == q(SCH, "assert")
        attempt = self._try(template)
        cond = self.el(attempt, "if", test=f"not({test})" if is_assert else f"({test})")
        level = severity(check_role(check, rule))
        if tally:
            self.el(cond, "sequence", select=f"., '{level}'")
        else:
            self.el(cond, "sequence", select=".")  # the node, then the finding
            failed = etree.SubElement(cond, q(OUT, "failed"))
            failed.set("id", _avt_literal(check_id(check, rule)))
            failed.set("severity", level)
            self._message(failed, check)
        self._catch(attempt, check_id(check, rule), tally=tally)

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
