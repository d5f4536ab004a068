"""Schematron rules evaluated by lxml where XPath 1.0 gives exactly the XPath 2.0 answer.

:class:`LxmlRules` holds one Schematron file as lxml XPath objects, compiled once per bundle. For each
document, :meth:`LxmlRules.run` either returns the complete list of findings of that file — identical,
in content and order, to what the Saxon stylesheet of :mod:`hub.validation.schematron` produces — or
``None``, meaning "this document needs Saxon for this file". It answers ``None`` when

* a pattern has a rule whose context is not a portable pattern (see
  :func:`hub.validation.xpath_subset.classify_pattern`): lxml cannot tell which rule fires where;
* a rule fires on some node (first matching rule of its pattern, as in the ISO skeleton) and one of
  its ``let``, ``assert``/``report`` tests or message parts is not portable;
* at run time, a ``let`` yields something lxml cannot pass on faithfully (attribute or text nodes);
* at run time, a guard of a translation is true for a node the rule fires on (or, for a ``let`` at
  schema or pattern level, for the document): the XPath 1.0 translation might differ from XPath 2.0
  there, or XPath 2.0 might raise an error.

Every expression goes through :func:`hub.validation.xpath_subset.translate`, which rewrites XPath 2.0
idioms (``if … then … else``, ``exists()``, ``matches()``, sequence comparisons, numeric comparisons and
arithmetic on node values) into XPath 1.0, EXSLT regular expressions and one extension function, with
the run-time guards that make the rewrite exact. lxml evaluates the translation; the original text only
ever goes to Saxon.

A rule's checks (and their guards) run node by node when the rule has a ``let`` or fires on few nodes
(``_PER_NODE``); otherwise each check runs once for all the rule's context nodes, ``(context)[test]``
and ``(context)[guard]``, ignoring the nodes an earlier rule of the pattern took. Either way the
findings are sorted into document order, then check order, as the stylesheet emits them. Node by node,
a rule without ``let`` first evaluates all its tests and guards or-ed into one XPath (``suspect``): when
that is false, as on valid documents, no check fires and no guard holds, and one call replaced one per
test and guard (about 1 µs each; 0421: 10 checks and 2 guards on ``datenEinzelnesGebaeude``). When it
is true the checks run one by one as before, so a node with a finding pays for its rule twice.

Most contexts are chains of element names, ``//a//b`` (all 154 XBau rules, e.g.
``xbau:statistik.baugenehmigung.0421//xbau:heizenergie``). Their nodes are found without XPath
(``_Chains``): one C-level ``root.iter`` over the chains' last names (7 for XBau) yields the candidates
in document order, and a candidate belongs to a chain when its ancestors, nearest first, contain the
chain's other names in reverse order. That is the XPath's answer whatever the nesting, e.g. for a
message inside the ``xs:any`` of another one's ``anwendungsspezifischeErweiterung``. libxml2 instead
walks the whole tree once per context (16 µs on 0200, 7.5 µs on 0421), and knowing which rules may match
took a walk building the tag string of every XBau-qualified element (75 µs on 0200); ``_Chains.match``
takes 15 µs on 0200, 6.5 µs of it the walk.
Other rules are skipped when an element name on their context's main path is missing from the document
(one C-level walk per namespace).

Measured per document, the whole :meth:`SchematronRules.check
<hub.validation.schematron.SchematronRules.check>` for both XBau files (best of 9): 0200 (38 KB, 562
elements) 205 → 100 µs, of which 70 µs is the no-empty-elements walk; 0300 69 → 42 µs; 0421 (234
elements) 275 → 153 µs, nearly all of it evaluating the translated checks; 1120 (1.6 KB) 10.5 → 11 µs.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from lxml import etree

from hub.validation.report import Finding, Severity
from hub.validation.schematron_source import (
    SCH,
    abstract_rules,
    check_id,
    check_role,
    q,
    rule_parts,
    severity,
)
from hub.validation.xpath_subset import (
    EXTENSIONS,
    FUNCTION_NAMESPACE,
    REGEX_NAMESPACE,
    Kind,
    Translation,
    classify_pattern,
    translate,
)

__all__ = ["LxmlRules"]

_STRING_VALUE = etree.XPath("string()")
_EXTENSIONS = dict(EXTENSIONS)  # lxml wants a dict
# Up to this many context nodes, a rule's checks run node by node; beyond, each check runs once for all
# of them (``(context)[test]``), which costs one more evaluation of the context per check.
_PER_NODE = 8
_VarValue = str | float | bool | list[etree._Element]
# A context branch (as translated by classify_pattern) that is a chain of element names: ``//a//p:b``.
_NCNAME = r"[^\W\d][\w.\-]*"
_CHAIN = re.compile(rf"(?://(?:{_NCNAME}:)?{_NCNAME})+")


class _Unportable(Exception):
    """A let, test or message part outside the portable subset (at compile time)."""


class _Fallback(Exception):
    """At run time: this document needs Saxon for this file."""


@dataclass(frozen=True)
class _Let:
    name: str
    kind: Kind
    value: etree.XPath
    guard: etree.XPath | None  # boolean: the value needs Saxon, for the context node


@dataclass(frozen=True)
class _Insert:
    """A ``sch:value-of`` or ``sch:name`` of a message: an XPath whose value is inserted."""

    kind: Kind
    value: etree.XPath
    guard: etree.XPath | None


_Part = str | _Insert  # literal text, or an inserted value


@dataclass(frozen=True)
class _Check:
    test: etree.XPath  # boolean: the assertion failed / the report fired, for the context node
    guard: etree.XPath | None  # boolean: the test needs Saxon, for the context node
    # all failing nodes of the rule at once (rules without let only): an XPath, or _empty_leaves
    failing: Callable[..., object] | None
    guarded: etree.XPath | None  # all context nodes of the rule for which the guard holds (ditto)
    rule: str
    severity: Severity
    message: tuple[_Part, ...]


@dataclass(eq=False)
class _Rule:
    order: tuple[int, int]  # (pattern, position among the pattern's concrete rules)
    context: etree.XPath | None  # None: the pattern cannot be matched by lxml
    required: tuple[frozenset[str], ...]  # per context branch: element names that must occur
    # per context branch, when every branch is a chain ``//a//b``: its element names (Clark notation);
    # the context nodes are then found by _Chains instead of the XPath
    chains: tuple[tuple[str, ...], ...] = ()
    # lets and checks in document order: a let is in scope for the checks after it only
    steps: list[_Let | _Check] = field(default_factory=list)
    has_let: bool = False
    portable: bool = True
    # rules without let: boolean, some check fails or needs Saxon for the context node (all tests and
    # guards or-ed, one XPath call instead of one per test and guard)
    suspect: etree.XPath | None = None

    def may_match(self, present: set[str]) -> bool:
        """Whether some context branch has all its required element names in the document."""
        return any(names <= present for names in self.required)


class _Chains:
    """The rules whose context branches are all chains ``//a//b``, indexed for :meth:`match`.

    A node matches the chain ``//a1//…//an//b`` exactly when its name is ``b`` and its ancestors, read
    from the parent upwards, contain ``an``, …, ``a1`` in this order (with anything between): the
    nearest ``an`` leaves the most ancestors for the rest, so greedy matching is exact.
    """

    def __init__(self, rules: list[_Rule]) -> None:
        self.alone: dict[str, list[_Rule]] = {}  # one-name chains: name -> rules
        # longer chains: last name -> nearest ancestor's name -> (rule, the names above it, upwards)
        self.under: dict[str, dict[str, list[tuple[_Rule, tuple[str, ...]]]]] = {}
        for rule in rules:
            for *above, last in rule.chains:
                if not above:
                    self.alone.setdefault(last, []).append(rule)
                    continue
                nearest, *upwards = reversed(above)
                self.under.setdefault(last, {}).setdefault(nearest, []).append((rule, tuple(upwards)))
        self.names = sorted({*self.alone, *self.under})

    def match(self, root: etree._Element) -> tuple[dict[_Rule, list[etree._Element]], list[etree._Element]]:
        """Per rule, its context nodes in document order (rules without any are left out); and every
        element that has one of the chains' last names, in document order (all context nodes are among
        them)."""
        found: dict[_Rule, list[etree._Element]] = {}
        candidates = list(root.iter(*self.names)) if self.names else []
        for node in candidates:
            name = str(node.tag)
            for rule in self.alone.get(name, ()):
                self._add(found, rule, node)
            groups = self.under.get(name)
            if groups is None:
                continue
            ancestors = [str(a.tag) for a in node.iterancestors()]
            seen: set[str] = set()
            for position, ancestor in enumerate(ancestors):
                entries = groups.get(ancestor)
                if entries is None or ancestor in seen:  # a farther namesake cannot match more
                    continue
                seen.add(ancestor)
                for rule, upwards in entries:
                    rest = iter(ancestors[position + 1 :])
                    if all(wanted in rest for wanted in upwards):  # subsequence test, greedy
                        self._add(found, rule, node)
        return found, candidates

    @staticmethod
    def _add(found: dict[_Rule, list[etree._Element]], rule: _Rule, node: etree._Element) -> None:
        nodes = found.setdefault(rule, [])
        if not nodes or nodes[-1] is not node:  # two branches of the rule may match the same node
            nodes.append(node)


@dataclass
class _Contexts:
    """Per document: the rules that may match, and the context nodes of chain rules."""

    patterns: list[list[_Rule]]  # per pattern with any, its rules that may match, in rule order
    nodes: dict[_Rule, list[etree._Element]]  # chain rules: their context nodes, in document order
    candidates: list[etree._Element]  # in document order; every node in ``nodes`` is one of them


def _text(value: object) -> str:
    return "true" if value is True else "false" if value is False else str(value)


# XÖV's "no empty elements" rule (XBau sch-xbau-gen-001 and its relatives) is an assertion on every
# element, ``not(not(*) and normalize-space(.) = '')``. libxml2 evaluates that predicate at ~300 ns per
# element; the walk below gives the same node set, in document order, at ~100 ns per element.
_NO_EMPTY_ELEMENTS = {
    f"not(not(*)andnormalize-space({arg})={quote}{quote})" for arg in (".", "") for quote in ("'", '"')
}
_XML_SPACE = " \t\r\n"


_LITERAL = re.compile(r"""('[^']*'|"[^"]*")""")


def _is_no_empty_elements(test: str) -> bool:
    # whitespace between tokens is insignificant, inside a string literal it is not
    parts = _LITERAL.split(test)
    squeezed = "".join(part if i % 2 else "".join(part.split()) for i, part in enumerate(parts))
    return squeezed in _NO_EMPTY_ELEMENTS


def _empty_leaves(tree: etree._ElementTree, **_variables: object) -> list[etree._Element]:
    """Elements without element children whose string value is XML whitespace only (or empty).

    Without comments, processing instructions and entity references in the document (a C-level walk
    that stops at the first one: 5 µs on the 562 elements of the 0200 fixture), every child that
    ``len()`` counts is an element and ``.text`` is the whole string value of a childless element: one
    comprehension, 60 µs on 0200 where :func:`_empty_leaves_mixed` takes 85 µs (creating the 562
    element proxies alone takes 30 µs).
    """
    root = tree.getroot()
    if next(root.iter(etree.Comment, etree.ProcessingInstruction, etree.Entity), None) is not None:
        return _empty_leaves_mixed(root)
    space = _XML_SPACE
    return [el for el in root.iter(etree.Element) if not len(el) and not (el.text or "").strip(space)]


def _empty_leaves_mixed(root: etree._Element) -> list[etree._Element]:
    """:func:`_empty_leaves` for documents with comments, processing instructions or entity references."""
    empty: list[etree._Element] = []
    for element in root.iter(etree.Element):
        if len(element) == 0:  # no children of any kind: the string value is the text
            text = element.text
            if not text or not text.strip(_XML_SPACE):
                empty.append(element)
        elif not isinstance(element[0].tag, str) and not any(isinstance(c.tag, str) for c in element):
            # only comments or processing instructions inside: the string value is the text nodes
            # between them (their tails), never the comments' own text
            value = (element.text or "") + "".join(child.tail or "" for child in element)
            if not value.strip(_XML_SPACE):
                empty.append(element)
    return empty


class LxmlRules:
    """One Schematron file (includes resolved) as lxml XPath objects; see the module docstring."""

    def __init__(self, schema: etree._Element, name: str) -> None:
        self.name = name
        self.namespaces: dict[str, str] = {ns.get("prefix", ""): ns.get("uri", "") for ns in schema.iter(q(SCH, "ns"))}
        # the prefixes translations use for EXSLT regular expressions and our functions: undeclared ones
        self._prefixes = (self._free_prefix("re"), self._free_prefix("xh"))
        self.namespaces.update(zip(self._prefixes, (REGEX_NAMESPACE, FUNCTION_NAMESPACE), strict=True))
        self._abstract = abstract_rules(schema)
        patterns = schema.findall(q(SCH, "pattern"))
        self.globals: list[_Let] = []
        env: dict[str, Kind] = {}
        for let in [*schema.findall(q(SCH, "let")), *(x for p in patterns for x in p.findall(q(SCH, "let")))]:
            try:
                self.globals.append(self._let(let, env))
            except _Unportable:
                env.pop(let.get("name", ""), None)  # a later reference to it is not portable
        self.patterns = [self._pattern(i, p, env) for i, p in enumerate(patterns)]
        self._index_rules()

    def _free_prefix(self, prefix: str) -> str:
        while prefix in self.namespaces:
            prefix += "_"
        return prefix

    def _index_rules(self) -> None:
        # Chain rules are matched by _Chains. Every other context branch gets a key: a namespace-qualified
        # name it requires if it has one (found by one C-level walk per namespace, which skips the
        # unqualified bulk of an XÖV message), else an unqualified one. Rules none of whose keys occur in
        # the document cannot match.
        self._always: set[_Rule] = set()  # a branch requiring nothing, or a context lxml cannot match
        self._by_key: dict[str, list[_Rule]] = {}
        rules = [r for rules in self.patterns for r in rules]
        self._chains = _Chains([r for r in rules if r.chains])
        for rule in (r for r in rules if not r.chains):
            for names in rule.required:
                ordered = sorted(names, key=lambda n: (not n.startswith("{"), n))  # qualified first
                key = ordered[0] if ordered else None
                if key is None or rule.context is None:
                    self._always.add(rule)
                else:
                    self._by_key.setdefault(key, []).append(rule)
        keys = set(self._by_key)
        self._namespaces = sorted({f"{k.partition('}')[0]}}}*" for k in keys if k.startswith("{")})
        self._plain_keys = sorted(k for k in keys if not k.startswith("{"))

    def _active(self, root: etree._Element) -> _Contexts:
        """The rules that may match the document, and the context nodes of the chain rules among them."""
        nodes, candidates = self._chains.match(root)
        rules = self._keyed(root).union(nodes) if self._by_key or self._always else nodes.keys()
        active: dict[int, list[_Rule]] = {}
        for rule in sorted(rules, key=lambda r: r.order):
            active.setdefault(rule.order[0], []).append(rule)
        return _Contexts(list(active.values()), nodes, candidates)

    def _keyed(self, root: etree._Element) -> set[_Rule]:
        """The rules other than chain rules that may match the document."""
        if not self._by_key:
            return set(self._always)  # each has a context lxml cannot match or a branch needing no name
        present: set[str] = set()
        for wildcard in self._namespaces:
            present.update(str(el.tag) for el in root.iter(wildcard))
        if self._plain_keys:
            present.update(str(el.tag) for el in root.iter(*self._plain_keys))
        candidates = set(self._always)
        for key in present.intersection(self._by_key):
            candidates.update(self._by_key[key])
        known = self._namespaces
        unknown = {
            name
            for rule in candidates
            for names in rule.required
            for name in names
            if f"{name.partition('}')[0]}}}*" not in known and name not in self._plain_keys
        }
        if unknown:
            present.update(str(el.tag) for el in root.iter(*unknown))
        return {rule for rule in candidates if rule.context is None or rule.may_match(present)}

    # -- compiling
    def _xpath(self, expression: str) -> etree.XPath:
        try:
            return etree.XPath(expression, namespaces=self.namespaces, extensions=_EXTENSIONS)
        except etree.XPathSyntaxError:
            raise _Unportable(expression) from None

    def _translate(self, expression: str, env: Mapping[str, Kind]) -> Translation:
        translation = translate(expression, env, *self._prefixes)
        if translation is None:
            raise _Unportable(expression)
        return translation

    def _guard(self, translation: Translation) -> etree.XPath | None:
        guard = translation.guard
        return None if guard is None else self._xpath(f"boolean({guard})")

    def _let(self, let: etree._Element, env: dict[str, Kind]) -> _Let:
        name, value = let.get("name", ""), let.get("value")
        if value is None or ":" in name:
            raise _Unportable(name)
        translation = self._translate(value, env)
        compiled = _Let(name, translation.typed.kind, self._xpath(translation.expression), self._guard(translation))
        env[name] = compiled.kind
        return compiled

    def _clark(self, qname: str) -> str:
        prefix, _, local = qname.rpartition(":")
        if not prefix:
            return local
        if prefix not in self.namespaces:
            raise _Unportable(qname)
        return f"{{{self.namespaces[prefix]}}}{local}"

    def _pattern(self, index: int, pattern: etree._Element, global_env: dict[str, Kind]) -> list[_Rule]:
        rules: list[_Rule] = []
        concrete = [r for r in pattern.findall(q(SCH, "rule")) if r.get("abstract") != "true"]
        for position, rule in enumerate(concrete):
            order = (index, position)
            context = rule.get("context", "")
            branches = classify_pattern(context, global_env, *self._prefixes)
            try:
                if branches is None:
                    raise _Unportable(context)
                required = tuple(frozenset(self._clark(n) for n in b.required) for b in branches)
                union = " | ".join(b.expression for b in branches)
                chains: tuple[tuple[str, ...], ...] = ()
                if all(_CHAIN.fullmatch(b.expression) for b in branches):
                    chains = tuple(tuple(self._clark(n) for n in b.expression[2:].split("//")) for b in branches)
                compiled = _Rule(order, self._xpath(union), required, chains)
            except _Unportable:
                rules.append(_Rule(order, None, (frozenset(),), portable=False))
                continue
            try:
                self._rule_body(compiled, rule, union, global_env)
            except _Unportable:
                compiled.portable = False
            rules.append(compiled)
        return rules

    def _rule_body(self, target: _Rule, rule: etree._Element, union: str, env: Mapping[str, Kind]) -> None:
        local_env = dict(env)
        alarms: list[str] = []  # every condition and guard
        for part in rule_parts(rule, self._abstract, self.name):
            if part.tag == q(SCH, "let"):
                target.steps.append(self._let(part, local_env))
                target.has_let = True
                continue
            test = self._translate(part.get("test", ""), local_env)
            condition = f"not({test.expression})" if part.tag == q(SCH, "assert") else f"boolean({test.expression})"
            guard = test.guard
            alarms += [condition] if guard is None else [guard, condition]
            failing: Callable[..., object] | None = None
            if not target.has_let:
                native = union == "//*" and part.tag == q(SCH, "assert") and _is_no_empty_elements(part.get("test", ""))
                failing = _empty_leaves if native else self._xpath(f"({union})[{condition}]")
            target.steps.append(
                _Check(
                    self._xpath(condition),
                    self._guard(test),
                    failing,
                    None if target.has_let or guard is None else self._xpath(f"({union})[{guard}]"),
                    check_id(part, rule),
                    severity(check_role(part, rule)),
                    tuple(self._message(part, local_env)),
                )
            )
        if len(alarms) > 1 and not target.has_let:
            try:
                target.suspect = self._xpath(f"boolean({' or '.join(f'({a})' for a in alarms)})")
            except _Unportable:  # every part compiled on its own: the rule stays portable, check by check
                target.suspect = None

    def _message(self, node: etree._Element, env: Mapping[str, Kind]) -> list[_Part]:
        # Mirrors _Compiler._message: text, sch:value-of, sch:name, other markup's text, tails.
        parts: list[_Part] = [node.text] if node.text else []
        for child in node:
            if child.tag in (q(SCH, "value-of"), q(SCH, "name")):
                select = (
                    child.get("select", ".") if child.tag == q(SCH, "value-of") else f"name({child.get('path', '.')})"
                )
                value = self._translate(select, env)
                if value.typed.kind == "number":
                    raise _Unportable(select)  # number formatting differs between 1.0 and 2.0
                parts.append(_Insert(value.typed.kind, self._xpath(value.expression), self._guard(value)))
            elif isinstance(child.tag, str):
                parts.extend(self._message(child, env))
            if child.tail:
                parts.append(child.tail)
        return parts

    # -- running
    @staticmethod
    def _value(kind: Kind, result: object) -> _VarValue:
        if kind == "nodes":
            if not isinstance(result, list) or not all(isinstance(n, etree._Element) for n in result):
                raise _Fallback  # attribute or text nodes come back as strings: not a node set any more
            return result
        if isinstance(result, bool | float | str):
            return result
        raise _Fallback

    def _render(self, parts: tuple[_Part, ...], node: etree._Element, variables: Mapping[str, _VarValue]) -> str:
        out: list[str] = []
        for part in parts:
            if isinstance(part, str):
                out.append(part)
                continue
            if part.guard is not None and part.guard(node, **variables):
                raise _Fallback
            result = part.value(node, **variables)
            if part.kind != "nodes":
                out.append(_text(result))
                continue
            if not isinstance(result, list):
                raise _Fallback
            values = []  # xsl:value-of in XSLT 2.0: string values joined by single spaces
            for item in result:
                if isinstance(item, etree._Element):
                    values.append(str(_STRING_VALUE(item)))
                elif isinstance(item, str):
                    values.append(str(item))
                else:
                    raise _Fallback
            out.append(" ".join(values))
        return " ".join("".join(out).split())

    def run(self, root: etree._Element) -> list[Finding] | None:
        """The findings of this file for the document, or ``None`` when Saxon must run it."""
        tree = root.getroottree()
        contexts = self._active(root)
        if not contexts.patterns:
            return []
        try:
            variables: dict[str, _VarValue] = {}
            for let in self.globals:
                variables[let.name] = self._let_value(let, tree, variables)
            findings: list[Finding] = []
            for rules in contexts.patterns:
                findings.extend(self._run_pattern(rules, tree, variables, contexts))
        except _Fallback:
            return None
        return findings

    def _run_pattern(
        self, rules: list[_Rule], tree: etree._ElementTree, variables: dict[str, _VarValue], contexts: _Contexts
    ) -> list[Finding]:
        """Findings of one pattern; ``rules`` are its rules that may match, in order."""
        claimed: set[etree._Element] = set()  # nodes taken by an earlier rule of this pattern
        hits: list[tuple[etree._Element, int, _Check, dict[str, _VarValue]]] = []
        for position, rule in enumerate(rules):
            if rule.context is None:
                raise _Fallback
            last = position == len(rules) - 1
            if rule.portable and not rule.has_let and len(rule.steps) == 1 and last and not rule.chains:
                # The last rule, with one check: a single XPath call finds its failing nodes; the context
                # nodes themselves are only needed to subtract the claimed ones.
                self._vectorised(rule, tree, variables, claimed, hits)
                break
            matched = contexts.nodes.get(rule, []) if rule.chains else rule.context(tree, **variables)
            if not isinstance(matched, list):
                raise _Fallback
            fresh = [n for n in matched if n not in claimed]
            taken = set(claimed) if len(fresh) != len(matched) else set()
            claimed.update(matched)
            if not fresh:
                continue
            if not rule.portable:
                raise _Fallback
            if rule.has_let or len(fresh) <= _PER_NODE:
                self._per_node(rule, fresh, variables, hits)
            else:
                self._vectorised(rule, tree, variables, taken, hits)
        if len(hits) > 1:
            # document order: the chain candidates hold every context node of a chain rule
            order = {el: i for i, el in enumerate(contexts.candidates)}
            if any(hit[0] not in order for hit in hits):
                order = {el: i for i, el in enumerate(tree.getroot().iter())}
            hits.sort(key=lambda hit: (order[hit[0]], hit[1]))
        return [
            Finding(
                check.severity,
                self._render(check.message, node, env),
                node.sourceline,
                tree.getpath(node),
                check.rule or "schematron",
            )
            for node, _, check, env in hits
        ]

    @staticmethod
    def _vectorised(
        rule: _Rule,
        tree: etree._ElementTree,
        variables: dict[str, _VarValue],
        taken: set[etree._Element],
        hits: list[tuple[etree._Element, int, _Check, dict[str, _VarValue]]],
    ) -> None:
        """All failing nodes of each check in one XPath call, minus nodes an earlier rule took."""
        for check in rule.steps:
            assert isinstance(check, _Check) and check.failing is not None  # rules without let
            if check.guarded is not None:
                guarded = check.guarded(tree, **variables)
                if not isinstance(guarded, list) or any(node not in taken for node in guarded):
                    raise _Fallback
            failing = check.failing(tree, **variables)
            if not isinstance(failing, list):
                raise _Fallback
            for node in failing:
                if node not in taken:
                    hits.append((node, len(hits), check, variables))

    def _per_node(
        self,
        rule: _Rule,
        nodes: list[etree._Element],
        variables: dict[str, _VarValue],
        hits: list[tuple[etree._Element, int, _Check, dict[str, _VarValue]]],
    ) -> None:
        suspect = rule.suspect
        for node in nodes:
            if suspect is not None and not suspect(node, **variables):
                continue  # no check fails, no guard holds
            env = dict(variables)
            for step in rule.steps:
                if isinstance(step, _Let):
                    env[step.name] = self._let_value(step, node, env)
                    continue
                if step.guard is not None and step.guard(node, **env):
                    raise _Fallback
                if step.test(node, **env):
                    hits.append((node, len(hits), step, dict(env)))

    @classmethod
    def _let_value(
        cls, let: _Let, context: etree._Element | etree._ElementTree, variables: Mapping[str, _VarValue]
    ) -> _VarValue:
        if let.guard is not None and let.guard(context, **variables):
            raise _Fallback
        return cls._value(let.kind, let.value(context, **variables))
