"""Which XPath expressions give the same answer in XPath 1.0 (lxml) and XPath 2.0 (Saxon)?

XÖV Schematron declares ``queryBinding="xslt2"``, so the reference semantics is XPath 2.0 as Saxon runs
it. Many rules are written in the common ground of both languages (paths, ``=`` against a string,
``not()``, ``normalize-space(.)``), and lxml evaluates those far faster. This module recognises a
deliberately small *portable subset*: every expression it accepts has, for every input document, the
same value in both languages and never raises an error in XPath 2.0. Anything else returns ``None`` and
stays with Saxon. The subset excludes, because 1.0 and 2.0 differ there:

* arithmetic (``+ - * div mod``, unary minus): ``()`` vs NaN, cast errors on non-numeric text;
* ``< <= > >=`` unless both sides are numbers (2.0 compares untyped values as strings);
* ``=``/``!=`` between a node or string and a number or boolean (2.0 casts, and may raise);
* chained comparisons (``a = b = c`` is a syntax error in 2.0);
* node sets passed where a single string is expected (1.0 takes the first node, 2.0 raises): only
  ``.``, ``..`` and ``@name`` are accepted there;
* ``position()``/``last()`` outside a predicate (in XSLT they count the siblings apply-templates saw);
* node tests ``text()``, ``node()``, ``comment()``, ``processing-instruction()``, the namespace axis
  and ``//.`` (text node merging and nodes outside the root element can differ between the trees);
* every function not listed in ``_FUNCTIONS`` (``number``, ``sum``, ``substring``, ``id``, …), and all
  XPath 2.0 syntax (``if``, ``for``, ``eq``, sequences, ``1e3``, ``''`` escapes), which does not parse.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

__all__ = ["Kind", "PatternBranch", "Typed", "classify", "classify_pattern"]

Kind = Literal["nodes", "string", "number", "boolean"]

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>\d+(?:\.\d*)?|\.\d+)
     |(?P<lit>"[^"]*"|'[^']*')
     |(?P<var>\$(?:[^\W\d][\w.\-]*:)?[^\W\d][\w.\-]*)
     |(?P<name>[^\W\d][\w.\-]*(?::(?:\*|[^\W\d][\w.\-]*))?)
     |(?P<sym>//|::|\.\.|!=|<=|>=|[()\[\].@,/|+\-=<>*$:])
    )""",
    re.VERBOSE,
)
_AXES = {
    "child", "descendant", "descendant-or-self", "parent", "ancestor", "ancestor-or-self",
    "following-sibling", "preceding-sibling", "following", "preceding", "self", "attribute",
}  # fmt: skip
_NO_VARIABLES: Mapping[str, Kind] = MappingProxyType({})
_NODE_TYPES = {"text", "node", "comment", "processing-instruction"}
_OPERATOR_NAMES = {"and", "or", "div", "mod"}

# name -> (min args, max args, argument requirement, result kind)
#   "str": a string or a single node;  "node": a single node;  "nodes": any node set;  "any": any kind
_FUNCTIONS: dict[str, tuple[int, int, str, Kind]] = {
    "true": (0, 0, "any", "boolean"),
    "false": (0, 0, "any", "boolean"),
    "not": (1, 1, "any", "boolean"),
    "boolean": (1, 1, "any", "boolean"),
    "count": (1, 1, "nodes", "number"),
    "position": (0, 0, "any", "number"),
    "last": (0, 0, "any", "number"),
    "name": (0, 1, "node", "string"),
    "local-name": (0, 1, "node", "string"),
    "namespace-uri": (0, 1, "node", "string"),
    "string": (0, 1, "str", "string"),
    "normalize-space": (0, 1, "str", "string"),
    "string-length": (0, 1, "str", "number"),
    "concat": (2, 64, "str", "string"),
    "contains": (2, 2, "str", "boolean"),
    "starts-with": (2, 2, "str", "boolean"),
    "substring-before": (2, 2, "str", "string"),
    "substring-after": (2, 2, "str", "string"),
    "translate": (3, 3, "str", "string"),
}


@dataclass(frozen=True)
class Typed:
    """The static type of a portable expression: its kind, and for node sets whether it is one node."""

    kind: Kind
    single: bool = False


@dataclass(frozen=True)
class PatternBranch:
    """One ``|`` branch of a rule context: the equivalent XPath and the element names it needs."""

    expression: str
    required: tuple[str, ...]


class _NotPortable(Exception):
    """Raised inside the parser; the public functions turn it into ``None``."""


def _tokens(text: str) -> list[tuple[str, str, int]]:
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(text):
        found = _TOKEN.match(text, pos)
        if found is None or found.lastgroup is None:
            if text[pos:].strip():
                raise _NotPortable(text[pos:])
            break
        tokens.append((found.lastgroup, found.group(found.lastgroup), found.start(found.lastgroup)))
        pos = found.end()
    return tokens


class _Parser:
    """Recursive descent over the XPath 1.0 grammar, refusing everything outside the portable subset."""

    def __init__(self, text: str, variables: Mapping[str, Kind]) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0
        self.variables = variables
        self.predicate_depth = 0
        self.required: list[str] = []

    # -- token helpers
    def peek(self, offset: int = 0) -> tuple[str, str]:
        index = self.pos + offset
        if index < len(self.tokens):
            kind, value, _ = self.tokens[index]
            return kind, value
        return "end", ""

    def at(self, *values: str) -> bool:
        kind, value = self.peek()
        return kind in ("sym", "name") and value in values

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token[0] == "end":
            raise _NotPortable("unexpected end")
        self.pos += 1
        return token

    def expect(self, value: str) -> None:
        if self.take() != ("sym", value):
            raise _NotPortable(f"expected {value}")

    def offset(self) -> int:
        return self.tokens[self.pos][2] if self.pos < len(self.tokens) else len(self.text)

    # -- expressions
    def expr(self) -> Typed:
        left = self.and_expr()
        while self.peek() == ("name", "or"):
            self.take()
            self.and_expr()
            left = Typed("boolean")
        return left

    def and_expr(self) -> Typed:
        left = self.equality()
        while self.peek() == ("name", "and"):
            self.take()
            self.equality()
            left = Typed("boolean")
        return left

    def equality(self) -> Typed:
        left, left_cmp = self.relational()
        if not self.at("=", "!="):
            return left
        self.take()
        right, right_cmp = self.relational()
        if left_cmp or right_cmp or self.at("=", "!="):
            raise _NotPortable("chained comparison")
        textual = {"nodes", "string"}
        if not (
            (left.kind in textual and right.kind in textual)
            or left.kind == right.kind == "number"
            or left.kind == right.kind == "boolean"
        ):
            raise _NotPortable("comparison of different kinds")
        return Typed("boolean")

    def relational(self) -> tuple[Typed, bool]:
        left = self.unary()
        if not self.at("<", "<=", ">", ">="):
            return left, False
        self.take()
        right = self.unary()
        if self.at("<", "<=", ">", ">="):
            raise _NotPortable("chained comparison")
        if not left.kind == right.kind == "number":
            raise _NotPortable("relational comparison of non-numbers")
        return Typed("boolean"), True

    def unary(self) -> Typed:
        if self.at("-", "+"):
            raise _NotPortable("arithmetic")
        result = self.union()
        if self.at("+", "-", "*") or (self.peek()[0] == "name" and self.peek()[1] in ("div", "mod")):
            raise _NotPortable("arithmetic")
        return result

    def union(self) -> Typed:
        result = self.path()
        while self.at("|"):
            self.take()
            right = self.path()
            if result.kind != "nodes" or right.kind != "nodes":
                raise _NotPortable("union of non-nodes")
            result = Typed("nodes")
        return result

    def path(self) -> Typed:
        kind, value = self.peek()
        if kind == "sym" and value in ("/", "//"):
            return self.location_path()
        starts_filter = (
            kind in ("var", "lit", "num")
            or (kind, value) == ("sym", "(")
            or (kind == "name" and value not in _NODE_TYPES and self.peek(1) == ("sym", "("))
        )
        if not starts_filter:
            return self.location_path()
        result = self.primary()
        while self.at("["):
            if result.kind != "nodes":
                raise _NotPortable("predicate on a non-node value")
            self.predicate()
            result = Typed("nodes")
        if self.at("/", "//"):
            if result.kind != "nodes":
                raise _NotPortable("path from a non-node value")
            while self.at("/", "//"):
                self.after_slash(self.take()[1])
            result = Typed("nodes")
        return result

    def location_path(self) -> Typed:
        if self.at("/", "//"):
            slash = self.take()[1]
            if slash == "/" and not self.starts_step():
                raise _NotPortable("the document node on its own")
            self.after_slash(slash)
            single = False
        else:
            single = self.step()
        while self.at("/", "//"):
            self.after_slash(self.take()[1])
            single = False
        return Typed("nodes", single=single)

    def starts_step(self) -> bool:
        kind, value = self.peek()
        return kind == "name" or (kind == "sym" and value in ("*", "@", ".", ".."))

    def after_slash(self, slash: str) -> bool:
        if slash == "//" and self.at("."):
            raise _NotPortable("//. reaches nodes outside the root element")
        return self.step()

    def step(self) -> bool:
        """Parse one step; True when it selects at most one node from the context (``.``, ``..``, ``@a``)."""
        if self.at(".", ".."):
            self.take()
            return True
        axis = "child"
        if self.at("@"):
            self.take()
            axis = "attribute"
        elif self.peek()[0] == "name" and self.peek(1) == ("sym", "::"):
            axis = self.take()[1]
            self.take()
            if axis not in _AXES:
                raise _NotPortable(f"axis {axis}")
        kind, value = self.take()
        if kind == "name" and self.at("("):
            raise _NotPortable(f"node test {value}()")
        if (kind, value) != ("sym", "*") and kind != "name":
            raise _NotPortable("name test expected")
        wildcard = value == "*" or value.endswith(":*")
        if not wildcard and axis in ("child", "descendant", "descendant-or-self") and not self.predicate_depth:
            self.required.append(value)
        predicates = 0
        while self.at("["):
            self.predicate()
            predicates += 1
        return axis == "attribute" and not wildcard and not predicates

    def predicate(self) -> None:
        self.expect("[")
        self.predicate_depth += 1
        self.expr()
        self.predicate_depth -= 1
        self.expect("]")

    def primary(self) -> Typed:
        kind, value = self.take()
        if kind == "lit":
            return Typed("string")
        if kind == "num":
            return Typed("number")
        if kind == "var":
            known = self.variables.get(value[1:])
            if known is None:
                raise _NotPortable(f"variable {value}")
            return Typed(known)
        if (kind, value) == ("sym", "("):
            inner = self.expr()
            self.expect(")")
            return Typed(inner.kind)
        if kind == "name":
            return self.function(value)
        raise _NotPortable(f"unexpected {value}")

    def function(self, name: str) -> Typed:
        spec = _FUNCTIONS.get(name)
        if spec is None:
            raise _NotPortable(f"function {name}()")
        low, high, requirement, result = spec
        if name in ("position", "last") and not self.predicate_depth:
            raise _NotPortable(f"{name}() outside a predicate")
        self.expect("(")
        args: list[Typed] = []
        if not self.at(")"):
            args.append(self.expr())
            while self.at(","):
                self.take()
                args.append(self.expr())
        self.expect(")")
        if not low <= len(args) <= high:
            raise _NotPortable(f"{name}() with {len(args)} arguments")
        for arg in args:
            single_node = arg.kind == "nodes" and arg.single
            if (
                (requirement == "str" and not (arg.kind == "string" or single_node))
                or (requirement == "node" and not single_node)
                or (requirement == "nodes" and arg.kind != "nodes")
            ):
                raise _NotPortable(f"argument of {name}()")
        return Typed(result)


def classify(expression: str, variables: Mapping[str, Kind] = _NO_VARIABLES) -> Typed | None:
    """The type of ``expression`` when it is in the portable subset, else ``None``.

    ``variables`` are the portable variables in scope, by name (without ``$``), with their kinds.
    """
    try:
        parser = _Parser(expression, variables)
        result = parser.expr()
        if parser.peek()[0] != "end":
            return None
    except _NotPortable:
        return None
    return result


def classify_pattern(pattern: str, variables: Mapping[str, Kind] = _NO_VARIABLES) -> list[PatternBranch] | None:
    """Split an XSLT match pattern into branches lxml can evaluate, or ``None`` when it cannot.

    Accepted: ``|``-separated paths of element steps (``child::`` axis, name or ``*`` tests, portable
    predicates), relative or starting with ``/`` or ``//``. A node matches the pattern exactly when it
    is selected by one branch's ``expression`` evaluated from the document node (``//`` + a relative
    path), which is how XSLT defines pattern matching. ``required`` lists the element names (as written,
    ``prefix:local``) that must occur in a document for the branch to select anything.
    """
    try:
        parser = _Parser(pattern, variables)
        branches: list[PatternBranch] = []
        while True:
            start = parser.offset()
            parser.required = []
            absolute = parser.at("/", "//")
            if absolute:
                slash = parser.take()[1]
                if slash == "/" and not parser.starts_step():
                    return None
            _pattern_step(parser)
            while parser.at("/", "//"):
                parser.take()
                _pattern_step(parser)
            text = pattern[start : parser.offset()].strip()
            branches.append(PatternBranch(text if absolute else f"//{text}", tuple(parser.required)))
            if not parser.at("|"):
                break
            parser.take()
        if parser.peek()[0] != "end":
            return None
    except _NotPortable:
        return None
    return branches


def _pattern_step(parser: _Parser) -> None:
    if parser.peek()[0] == "name" and parser.peek(1) == ("sym", "::"):
        if parser.peek()[1] != "child":
            raise _NotPortable("pattern axis")
    elif not (parser.peek()[0] == "name" or parser.at("*")):
        raise _NotPortable("pattern step must select elements")
    parser.step()
