"""XPath 2.0 expressions rewritten into XPath 1.0 that lxml evaluates with exactly Saxon's answer.

XÖV Schematron declares ``queryBinding="xslt2"``, so the reference semantics is XPath 2.0 as Saxon runs
it. lxml only knows XPath 1.0 (plus EXSLT regular expressions), and is far faster. :func:`translate`
turns an expression into an XPath 1.0 :class:`Translation` when it can prove that, for every input
document, the translation has the same value as the original has in XPath 2.0 — *unless* one of the
translation's ``guards`` is true for the context node. A guard is an XPath 1.0 boolean expression that
recognises, at run time, the inputs on which the two languages could differ (including every input on
which XPath 2.0 raises a dynamic error); the caller must then ask Saxon instead. Guards over-approximate:
a guard may fire on an input that would have been fine, never the other way round. Anything outside the
accepted language makes :func:`translate` return ``None`` and stays with Saxon.

Common ground, passed through unchanged
---------------------------------------
Location paths of element and attribute steps with predicates, ``|``, string literals, ``and``/``or``,
``=``/``!=`` between node sets and strings, and the functions of ``_FUNCTIONS``. Both languages agree on
them: node sets are sets in document order, string values are the same, ``and``/``or``/``not``/
``boolean``/predicates use the same effective boolean value (EBV) for node sets, strings, booleans and
numbers (a number in a predicate is a position in both).
The subset excludes, because 1.0 and 2.0 differ there:

* ``text()``, ``node()``, ``comment()``, ``processing-instruction()``, the namespace axis and ``//.``
  (text node merging and nodes outside the root element can differ between the two trees);
* ``position()``/``last()`` outside a predicate (in XSLT they count the nodes apply-templates saw);
* chained comparisons (``a = b = c`` is a syntax error in 2.0), unary minus, every function not listed
  and all other XPath 2.0 syntax (``for``, ``some``, ``eq``, ``instance of``, ``1e3``, ``''`` escapes…).

Translations
------------
``exists(X)`` → ``boolean(X)``, ``empty(X)`` → ``not(X)``
    for a node set ``X`` only; both are the emptiness test of the node set.

``if (C) then T else E`` → ``((boolean(C) and (T)) or (not(boolean(C)) and (E)))``
    only when ``T`` and ``E`` are boolean-valued, so the ``if`` has the value of ``T`` when the EBV of
    ``C`` is true, else the value of ``E`` — exactly what the rewritten form computes (``boolean(C)`` is
    just ``(C)`` for a boolean ``C``). XPath 2.0 evaluates (and raises errors in) only the branch it takes;
    the rewrite may evaluate both, which is harmless in XPath 1.0 (it has no dynamic errors), and the
    guards of ``T`` become ``boolean(C) and (guards)``, those of ``E`` ``not(boolean(C)) and (guards)``:
    a branch's guards matter only where 2.0 evaluates it. The guards of ``C`` itself, and of both
    operands of ``and``/``or`` (2.0 may evaluate those in either order), apply unconditionally.

``V op (a, b, …)`` → ``(V op a or V op b or …)``
    a general comparison with a parenthesised sequence of literals is existential over the items in 2.0;
    each item comparison is then translated on its own (and must be portable on its own). Sequences are
    accepted nowhere else.

Single-string arguments (``normalize-space(X)``, ``string(X)``, ``name(X)``, ``matches(X, …)``, …)
    2.0 raises a type error when ``X`` has more than one node, 1.0 takes the first; both use ``''`` for no
    node. ``.``, ``..`` and ``@name`` are single; for any other node set the guard is ``count(X) > 1``.

``matches(S, 'regex')`` → ``re:test(string(S), 'python-regex')``
    (EXSLT ``test``, which lxml runs with Python's :mod:`re` as a search, like ``matches``). Two arguments
    only, the pattern a literal in the subset of XSD/XPath regular expressions that means the same in
    Python: literal characters (re-emitted as ``\\xHH``/``\\uHHHH`` escapes, so nothing is special to
    Python), single-character escapes, classes ``[…]``/``[^…]`` of characters and ranges, groups,
    ``|``, the quantifiers ``? * + {m} {m,} {m,n}`` (greedy only), ``^`` and ``$`` (translated to ``\\A``
    and ``\\Z``: without the ``m`` flag XPath's ``$`` matches only at the very end, Python's ``$`` also
    before a final newline), ``\\s``/``\\S`` (XML whitespace, spelt out), ``\\d``/``\\D`` (``[0-9]``,
    ``[^0-9]``). XPath's ``\\d`` is the Unicode category Nd, whose membership depends on the Unicode
    version of each engine; with ``\\d`` the guard ``re:test(S, '[^\\x00-\\x7F]')`` sends every string
    with a non-ASCII character to Saxon, and among ASCII characters Nd is exactly 0-9. Not accepted:
    ``.``, flags, reluctant quantifiers, ``\\w``, ``\\p{…}``, ``\\i``/``\\c``, back-references, class
    subtraction and an unescaped ``-`` inside a class.

Numbers
-------
2.0 casts an untyped node value that is compared with, or computed with, a number to ``xs:double``:
correctly rounded, and raising an error when the text is no double literal. libxml2's ``number()``
accepts other texts (NaN) and is not guaranteed to round correctly. So a node set ``X`` in a numeric
context becomes ``xh:double(string(X))``, a function of :data:`EXTENSIONS` that converts with Python's
correctly rounded ``float()``, with two guards: ``count(X) > 1`` (2.0 raises a type error in arithmetic,
and compares existentially in a comparison, which the translation does not do), and ``(X)[…]`` firing
for a node whose whitespace-stripped text is not a decimal numeral ``-?(digits(.digits?)?|.digits)`` of
at most 100 characters. Every such numeral is an ``xs:double`` literal, which 2.0 casts without error
to the value ``float()`` gives. With no node, 2.0 has the empty sequence ``()`` where the translation has
NaN (``xh:double('')``). On top of that:

* number literals are accepted when they denote a double exactly (at most 15 digits before and after
  the point): 2.0's ``xs:integer``/``xs:decimal`` literal, promoted to ``xs:double`` next to a double,
  and 1.0's double then have the same value;
* ``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=`` between two numbers (not node sets) compare the same
  values in both. Between a node set and a number, ``= < <= > >=`` are false for no node in both (()
  vs NaN); ``!=`` becomes ``(boolean(X) and … != …)``, since ``NaN != n`` is true;
* ``+ - * div mod`` when at least one operand is a node set or an arithmetic result: 2.0 then computes
  in ``xs:double`` (its integers are promoted exactly), with the IEEE operations 1.0 uses (``mod`` is
  the truncating remainder in both). Arithmetic on numbers alone is refused (2.0 computes it in
  ``xs:integer``/``xs:decimal``). An empty operand gives ``()`` in 2.0, NaN in 1.0; the two agree under
  ``= < <= > >=`` (false) and in further arithmetic, so an arithmetic result is accepted only there:
  not under ``!=``, as an EBV, a function argument or the value of the whole expression.

Comparisons between node sets or strings with ``<``/``>`` (2.0 compares strings, 1.0 numbers), and
between strings and numbers or booleans and anything but booleans (2.0 raises or casts), are refused.
Guards inside predicates (where the context node is not the rule's) are refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import Literal

__all__ = [
    "EXTENSIONS",
    "FUNCTION_NAMESPACE",
    "REGEX_NAMESPACE",
    "Kind",
    "PatternBranch",
    "Translation",
    "Typed",
    "classify",
    "classify_pattern",
    "translate",
]

Kind = Literal["nodes", "string", "number", "boolean"]

REGEX_NAMESPACE = "http://exslt.org/regular-expressions"
"""The EXSLT regular expressions namespace: bind the ``regex_prefix`` of :func:`translate` to it."""
FUNCTION_NAMESPACE = "urn:xoev-hub:xpath-functions"
"""The namespace of :data:`EXTENSIONS`: bind the ``function_prefix`` of :func:`translate` to it."""

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
_COMPARISONS = ("=", "!=", "<", "<=", ">", ">=")
_EBV_SHAPES = {"nodes", "string", "number", "boolean"}

# name -> (min args, max args, argument requirement, result kind)
#   "str": a string or a node set of at most one node (guarded);  "node": a node set of at most one node
#   (guarded);  "nodes": any node set;  "ebv": anything with an effective boolean value
_FUNCTIONS: dict[str, tuple[int, int, str, Kind]] = {
    "true": (0, 0, "ebv", "boolean"),
    "false": (0, 0, "ebv", "boolean"),
    "not": (1, 1, "ebv", "boolean"),
    "boolean": (1, 1, "ebv", "boolean"),
    "exists": (1, 1, "nodes", "boolean"),
    "empty": (1, 1, "nodes", "boolean"),
    "count": (1, 1, "nodes", "number"),
    "position": (0, 0, "ebv", "number"),
    "last": (0, 0, "ebv", "number"),
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

# The texts whose xs:double value the translation computes itself (after XML whitespace is stripped):
# plain decimal numerals, a subset of the xs:double lexical space. See the module docstring.
_DECIMAL = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
_DECIMAL_MAX_LENGTH = 100
# True for a context node whose text is not such a numeral, checked in XPath 1.0: only '-', '.' and
# digits, '-' only in front, at most one '.', at least one digit, at most 100 characters.
_NOT_DECIMAL = (
    "not(translate(normalize-space(), '-.0123456789', '') = ''"
    " and not(contains(substring(normalize-space(), 2), '-'))"
    " and not(contains(substring-after(normalize-space(), '.'), '.'))"
    " and translate(normalize-space(), '-.', '') != ''"
    f" and string-length(normalize-space()) <= {_DECIMAL_MAX_LENGTH})"
)


def _xs_double(_context: object, text: str) -> float:
    """``xh:double(s)``: the xs:double a decimal numeral denotes, correctly rounded; NaN for anything else.

    Python's ``float()`` rounds correctly, as Saxon's cast does; libxml2's ``number()`` is not guaranteed
    to. Texts that are not numerals never decide a result: a guard sends them to Saxon (2.0 raises on them,
    or, for ``''`` from an empty node set, has the empty sequence, which NaN stands for).
    """
    stripped = str(text).strip(" \t\n\r")
    if len(stripped) > _DECIMAL_MAX_LENGTH or _DECIMAL.fullmatch(stripped) is None:
        return math.nan
    return float(stripped)


EXTENSIONS: Mapping[tuple[str, str], Callable[[object, str], float]] = MappingProxyType(
    {(FUNCTION_NAMESPACE, "double"): _xs_double}
)
"""The lxml XPath extension functions translations call (pass as ``extensions`` to ``etree.XPath``)."""


@dataclass(frozen=True)
class Typed:
    """The static type of a portable expression: its kind, and for node sets whether it is one node."""

    kind: Kind
    single: bool = False


@dataclass(frozen=True)
class Translation:
    """An XPath 2.0 expression as XPath 1.0 (see the module docstring).

    ``expression`` has the value of the original for every context node for which no guard is true;
    ``guards`` are XPath 1.0 boolean expressions over the same context node and variables.
    """

    expression: str
    typed: Typed
    guards: tuple[str, ...] = ()

    @property
    def guard(self) -> str | None:
        """All guards as one boolean XPath 1.0 expression, or ``None`` when there is none."""
        return _any(self.guards) if self.guards else None


@dataclass(frozen=True)
class PatternBranch:
    """One ``|`` branch of a rule context: the equivalent XPath and the element names it needs."""

    expression: str
    required: tuple[str, ...]


def _any(conditions: list[str] | tuple[str, ...]) -> str:
    # A translation collects the same guard once per use of a value (e.g. the numeral check of a node
    # that is compared three times): or-ing it once is the same boolean and one evaluation, not three.
    return " or ".join(f"({c})" for c in dict.fromkeys(conditions))


class _NotPortable(Exception):
    """Raised inside the parser; the public functions turn it into ``None``."""


# Shapes beyond Kind, internal to the parser: "arith" is the result of arithmetic (a double, or () in
# 2.0 where 1.0 has NaN), "sequence" a parenthesised list of literals. Neither may escape a comparison.
_Shape = Literal["nodes", "string", "number", "boolean", "arith", "sequence"]


_KINDS: dict[_Shape, Kind] = {"nodes": "nodes", "string": "string", "number": "number", "boolean": "boolean"}


@dataclass(frozen=True)
class _Val:
    text: str  # the XPath 1.0 translation ("" for a sequence, whose items are translated one by one)
    shape: _Shape
    single: bool = False  # nodes: at most one node
    literal: bool = False  # a string or number literal
    items: tuple[_Val, ...] = ()  # sequence: its items


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


def _exact_number(text: str) -> bool:
    """Whether a number literal denotes a double exactly, with at most 15 digits before and after the point."""
    whole, _, fraction = text.partition(".")
    return len(whole) <= 15 and len(fraction) <= 15 and Decimal(text) == Decimal(float(text))


class _Parser:
    """Recursive descent over the XPath 2.0 grammar, translating what the portable subset holds."""

    def __init__(self, text: str, variables: Mapping[str, Kind], prefixes: tuple[str, str]) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0
        self.variables = variables
        self.regex_prefix, self.function_prefix = prefixes
        self.predicate_depth = 0
        self.required: list[str] = []
        self.guards: list[str] = []

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

    def at_name(self, *values: str) -> bool:
        kind, value = self.peek()
        return kind == "name" and value in values

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token[0] == "end":
            raise _NotPortable("unexpected end")
        self.pos += 1
        return token

    def expect(self, value: str) -> None:
        if self.take() not in (("sym", value), ("name", value)):
            raise _NotPortable(f"expected {value}")

    def guard(self, condition: str) -> None:
        """Require the run-time guard ``condition`` (true: this input needs Saxon)."""
        if self.predicate_depth:
            raise _NotPortable("a run-time guard inside a predicate")
        self.guards.append(condition)

    # -- values
    @staticmethod
    def ebv(value: _Val) -> _Val:
        """A value used for its effective boolean value, which must be the same in both languages."""
        if value.shape not in _EBV_SHAPES:
            raise _NotPortable(f"effective boolean value of {value.shape}")
        return value

    def one_node(self, value: _Val) -> None:
        """A node set where 2.0 requires at most one item: guard against several."""
        if not value.single:
            self.guard(f"count({value.text}) > 1")

    def double(self, value: _Val) -> str:
        """The text of a numeric operand; a node set is cast to xs:double as 2.0 does (see the docstring)."""
        if value.shape != "nodes":
            return value.text
        self.one_node(value)
        self.guard(f"({value.text})[{_NOT_DECIMAL}]")
        return f"{self.function_prefix}:double(string({value.text}))"

    # -- expressions
    def expr(self) -> _Val:
        """ExprSingle: ``if`` or an or-expression."""
        if self.at_name("if") and self.peek(1) == ("sym", "("):
            return self.if_expr()
        return self.or_expr()

    def if_expr(self) -> _Val:
        self.take()
        self.expect("(")
        test = self.ebv(self.expr())
        condition = f"({test.text})" if test.shape == "boolean" else f"boolean({test.text})"
        self.expect(")")
        self.expect("then")
        outer, self.guards = self.guards, []
        then = self.expr()
        then_guards, self.guards = self.guards, []
        self.expect("else")
        other = self.expr()
        else_guards, self.guards = self.guards, outer
        if then.shape != "boolean" or other.shape != "boolean":
            raise _NotPortable("if with a non-boolean branch")
        if then_guards:
            self.guards.append(f"{condition} and ({_any(then_guards)})")
        if else_guards:
            self.guards.append(f"not({condition}) and ({_any(else_guards)})")
        return _Val(f"(({condition} and ({then.text})) or (not({condition}) and ({other.text})))", "boolean")

    def or_expr(self) -> _Val:
        left = self.and_expr()
        while self.at_name("or"):
            self.take()
            right = self.ebv(self.and_expr())
            left = _Val(f"{self.ebv(left).text} or {right.text}", "boolean")
        return left

    def and_expr(self) -> _Val:
        left = self.comparison()
        while self.at_name("and"):
            self.take()
            right = self.ebv(self.comparison())
            left = _Val(f"{self.ebv(left).text} and {right.text}", "boolean")
        return left

    def comparison(self) -> _Val:
        left = self.additive()
        if not self.at(*_COMPARISONS):
            return left
        op = self.take()[1]
        right = self.additive()
        if self.at(*_COMPARISONS):
            raise _NotPortable("chained comparison")
        return self.compare(left, op, right)

    def compare(self, left: _Val, op: str, right: _Val) -> _Val:
        if left.shape == "sequence" or right.shape == "sequence":
            if left.shape == right.shape:
                raise _NotPortable("comparison of two sequences")
            parts = [
                self.compare(item, op, right) if left.shape == "sequence" else self.compare(left, op, item)
                for item in (left.items if left.shape == "sequence" else right.items)
            ]
            return _Val("(" + " or ".join(p.text for p in parts) + ")", "boolean")
        text = f"{left.text} {op} {right.text}"
        shapes = {left.shape, right.shape}
        if shapes <= {"nodes", "string"}:
            if op not in ("=", "!="):
                raise _NotPortable("relational comparison of strings or nodes")
            return _Val(text, "boolean")
        if shapes == {"boolean"}:
            if op not in ("=", "!="):
                raise _NotPortable("relational comparison of booleans")
            return _Val(text, "boolean")
        if shapes <= {"nodes", "number", "arith"} and shapes != {"nodes"}:
            if "arith" in shapes and op == "!=":
                raise _NotPortable("!= with an arithmetic result: () in 2.0, NaN in 1.0")
            text = f"{self.double(left)} {op} {self.double(right)}"
            if op == "!=" and "nodes" in shapes:  # () != n is false in 2.0, NaN != n true in 1.0
                nodes = left if left.shape == "nodes" else right
                text = f"(boolean({nodes.text}) and {text})"
            return _Val(text, "boolean")
        raise _NotPortable("comparison of different kinds")

    def additive(self) -> _Val:
        left = self.multiplicative()
        while self.at("+", "-"):
            op = self.take()[1]
            left = self.arithmetic(left, op, self.multiplicative())
        return left

    def multiplicative(self) -> _Val:
        left = self.union()
        while self.at("*") or self.at_name("div", "mod"):
            op = self.take()[1]
            left = self.arithmetic(left, op, self.union())
        return left

    def arithmetic(self, left: _Val, op: str, right: _Val) -> _Val:
        shapes = {left.shape, right.shape}
        if not shapes & {"nodes", "arith"}:
            raise _NotPortable("arithmetic without a double operand (xs:integer/xs:decimal in 2.0)")
        if not shapes <= {"nodes", "number", "arith"}:
            raise _NotPortable("arithmetic on a non-number")
        return _Val(f"{self.double(left)} {op} {self.double(right)}", "arith")

    def union(self) -> _Val:
        if self.at("-", "+"):
            raise _NotPortable("unary minus")
        result = self.path()
        while self.at("|"):
            self.take()
            right = self.path()
            if result.shape != "nodes" or right.shape != "nodes":
                raise _NotPortable("union of non-nodes")
            result = _Val(f"{result.text} | {right.text}", "nodes")
        return result

    def path(self) -> _Val:
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
        if not self.at("[", "/", "//"):
            return result
        if result.shape != "nodes":
            raise _NotPortable("predicate or path on a non-node value")
        text = result.text
        while self.at("["):
            text += self.predicate()
        while self.at("/", "//"):
            slash = self.take()[1]
            text += slash + self.after_slash(slash)[0]
        return _Val(text, "nodes")

    def location_path(self) -> _Val:
        parts: list[str] = []
        if self.at("/", "//"):
            slash = self.take()[1]
            if slash == "/" and not self.starts_step():
                raise _NotPortable("the document node on its own")
            parts += [slash, self.after_slash(slash)[0]]
            single = False
        else:
            step, single = self.step()
            parts.append(step)
        while self.at("/", "//"):
            slash = self.take()[1]
            parts += [slash, self.after_slash(slash)[0]]
            single = False
        return _Val("".join(parts), "nodes", single=single)

    def starts_step(self) -> bool:
        kind, value = self.peek()
        return kind == "name" or (kind == "sym" and value in ("*", "@", ".", ".."))

    def after_slash(self, slash: str) -> tuple[str, bool]:
        if slash == "//" and self.at("."):
            raise _NotPortable("//. reaches nodes outside the root element")
        return self.step()

    def step(self) -> tuple[str, bool]:
        """Parse one step: its text, and whether it selects at most one node (``.``, ``..``, ``@a``)."""
        if self.at(".", ".."):
            return self.take()[1], True
        axis, text = "child", ""
        if self.at("@"):
            self.take()
            axis, text = "attribute", "@"
        elif self.peek()[0] == "name" and self.peek(1) == ("sym", "::"):
            axis = self.take()[1]
            self.take()
            if axis not in _AXES:
                raise _NotPortable(f"axis {axis}")
            text = f"{axis}::"
        kind, value = self.take()
        if kind == "name" and self.at("("):
            raise _NotPortable(f"node test {value}()")
        if (kind, value) != ("sym", "*") and kind != "name":
            raise _NotPortable("name test expected")
        if ":" in value and value.partition(":")[0] in (self.regex_prefix, self.function_prefix):
            raise _NotPortable("a prefix reserved for the translation")
        wildcard = value == "*" or value.endswith(":*")
        if not wildcard and axis in ("child", "descendant", "descendant-or-self") and not self.predicate_depth:
            self.required.append(value)
        text += value
        predicates = 0
        while self.at("["):
            text += self.predicate()
            predicates += 1
        return text, axis == "attribute" and not wildcard and not predicates

    def predicate(self) -> str:
        self.expect("[")
        self.predicate_depth += 1
        inner = self.ebv(self.expr())  # a number is a position in both languages
        self.predicate_depth -= 1
        self.expect("]")
        return f"[{inner.text}]"

    def primary(self) -> _Val:
        kind, value = self.take()
        if kind == "lit":
            return _Val(value, "string", literal=True)
        if kind == "num":
            if not _exact_number(value):
                raise _NotPortable(f"number literal {value} is not exactly a double")
            return _Val(value, "number", literal=True)
        if kind == "var":
            known = self.variables.get(value[1:])
            if known is None:
                raise _NotPortable(f"variable {value}")
            return _Val(value, known)
        if (kind, value) == ("sym", "("):
            if self.at(")"):
                raise _NotPortable("the empty sequence")
            items = [self.expr()]
            while self.at(","):
                self.take()
                items.append(self.expr())
            self.expect(")")
            if len(items) > 1:
                if not all(item.literal for item in items):
                    raise _NotPortable("a sequence of non-literals")
                return _Val("", "sequence", items=tuple(items))
            inner = items[0]
            if inner.shape == "sequence":
                return inner
            return _Val(f"({inner.text})", inner.shape, single=inner.single)
        if kind == "name":
            return self.function(value)
        raise _NotPortable(f"unexpected {value}")

    def function(self, name: str) -> _Val:
        if name == "matches":
            return self.matches()
        spec = _FUNCTIONS.get(name)
        if spec is None:
            raise _NotPortable(f"function {name}()")
        low, high, requirement, result = spec
        if name in ("position", "last") and not self.predicate_depth:
            raise _NotPortable(f"{name}() outside a predicate")
        args = self.arguments()
        if not low <= len(args) <= high:
            raise _NotPortable(f"{name}() with {len(args)} arguments")
        for arg in args:
            if requirement == "ebv":
                self.ebv(arg)
            elif arg.shape == "nodes" and requirement in ("str", "node"):
                self.one_node(arg)
            elif not (requirement == "str" and arg.shape == "string") and not (
                requirement == "nodes" and arg.shape == "nodes"
            ):
                raise _NotPortable(f"argument of {name}()")
        texts = [arg.text for arg in args]
        if name == "exists":
            return _Val(f"boolean({texts[0]})", "boolean")
        if name == "empty":
            return _Val(f"not({texts[0]})", "boolean")
        return _Val(f"{name}({', '.join(texts)})", result)

    def arguments(self) -> list[_Val]:
        self.expect("(")
        args: list[_Val] = []
        if not self.at(")"):
            args.append(self.expr())
            while self.at(","):
                self.take()
                args.append(self.expr())
        self.expect(")")
        return args

    def matches(self) -> _Val:
        self.expect("(")
        subject = self.expr()
        self.expect(",")
        kind, pattern = self.take()
        self.expect(")")  # the three-argument form (flags) is not accepted
        if kind != "lit":
            raise _NotPortable("matches() with a pattern that is not a literal")
        python, ascii_only = _Regex(pattern[1:-1]).translate()
        if subject.shape == "nodes":
            self.one_node(subject)
            text = f"string({subject.text})"
        elif subject.shape == "string":
            text = subject.text
        else:
            raise _NotPortable("matches() on a non-string")
        if ascii_only:
            self.guard(f"{self.regex_prefix}:test({text}, '[^\\x00-\\x7F]')")
        return _Val(f"{self.regex_prefix}:test({text}, '{python}')", "boolean")


_REGEX_META = set(".\\?*+{}()|[]^$")
_SINGLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"} | {c: c for c in "\\|.-^?*+{}()[]$"}
_XML_SPACE = r"\x20\t\n\r"


def _regex_char(char: str) -> str:
    """One character as a Python regex escape that is literal everywhere, inside classes too."""
    if char.isascii() and char.isalnum():
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class _Regex:
    """An XSD/XPath 2.0 regular expression translated into Python's dialect (see the module docstring)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.pos = 0
        self.ascii_only = False  # uses \d or \D: exact for ASCII input only

    def peek(self) -> str:
        return self.source[self.pos] if self.pos < len(self.source) else ""

    def translate(self) -> tuple[str, bool]:
        """The Python pattern, and whether it is exact only for ASCII input; ``_NotPortable`` if unsure."""
        out = self.alternatives()
        if self.pos != len(self.source):
            raise _NotPortable("unbalanced ) in a regular expression")
        re.compile(out)  # cannot fail for the accepted subset; a failure here is a bug, not a fallback
        return out, self.ascii_only

    def alternatives(self) -> str:
        branches = [self.branch()]
        while self.peek() == "|":
            self.pos += 1
            branches.append(self.branch())
        return "|".join(branches)

    def branch(self) -> str:
        out = ""
        while self.peek() not in ("", "|", ")"):
            out += self.piece()
        return out

    def piece(self) -> str:
        char = self.peek()
        if char in ("^", "$"):
            self.pos += 1
            if self.peek() in ("?", "*", "+", "{"):
                raise _NotPortable("a quantified anchor")
            return r"\A" if char == "^" else r"\Z"
        atom = self.atom()
        quantifier = self.quantifier()
        if quantifier and self.peek() in ("?", "*", "+", "{"):
            raise _NotPortable("a reluctant or repeated quantifier")
        return atom + quantifier

    def atom(self) -> str:
        char = self.peek()
        if char == "(":
            self.pos += 1
            if self.peek() == "?":
                raise _NotPortable("(? in a regular expression")
            inner = self.alternatives()
            if self.peek() != ")":
                raise _NotPortable("unbalanced ( in a regular expression")
            self.pos += 1
            return f"({inner})"
        if char == "[":
            return self.char_class()
        if char == "\\":
            return self.escape(in_class=False)
        if char in _REGEX_META:
            raise _NotPortable(f"{char} in a regular expression")
        self.pos += 1
        return _regex_char(char)

    def quantifier(self) -> str:
        char = self.peek()
        if char in ("?", "*", "+"):
            self.pos += 1
            return char
        if char != "{":
            return ""
        found = re.compile(r"\{([0-9]{1,4})(,([0-9]{1,4})?)?\}").match(self.source, self.pos)
        if found is None:
            raise _NotPortable("a malformed {} quantifier")
        low, comma, high = found.group(1), found.group(2), found.group(3)
        if high is not None and int(low) > int(high):
            raise _NotPortable("{m,n} with m > n")
        self.pos = found.end()
        return "{" + str(int(low)) + ("," if comma else "") + (str(int(high)) if high is not None else "") + "}"

    def escape(self, *, in_class: bool) -> str:
        """A backslash escape: the Python text, without brackets when ``in_class``."""
        code = self.source[self.pos + 1 : self.pos + 2]
        self.pos += 2
        if code in _SINGLE_ESCAPES:
            return _regex_char(_SINGLE_ESCAPES[code])
        if code == "d":
            self.ascii_only = True
            return "0-9" if in_class else "[0-9]"
        if code == "s":
            return _XML_SPACE if in_class else f"[{_XML_SPACE}]"
        if not in_class and code == "D":
            self.ascii_only = True
            return "[^0-9]"
        if not in_class and code == "S":
            return f"[^{_XML_SPACE}]"
        raise _NotPortable(f"\\{code} in a regular expression")

    def class_char(self) -> tuple[str, str | None]:
        """One class member: its Python text, and the character itself when it can start or end a range."""
        char = self.peek()
        if char in ("", "[", "]", "-"):
            raise _NotPortable("an unsupported character class")
        if char == "\\":
            code = self.source[self.pos + 1 : self.pos + 2]
            text = self.escape(in_class=True)
            return text, _SINGLE_ESCAPES.get(code)
        self.pos += 1
        return _regex_char(char), char

    def char_class(self) -> str:
        self.pos += 1
        negated = self.peek() == "^"
        if negated:
            self.pos += 1
        members: list[str] = []
        while self.peek() != "]":
            text, first = self.class_char()
            if self.peek() == "-" and self.source[self.pos + 1 : self.pos + 2] != "]":
                self.pos += 1
                _, last = self.class_char()
                if first is None or last is None or ord(first) > ord(last):
                    raise _NotPortable("an invalid range in a character class")
                text = f"{_regex_char(first)}-{_regex_char(last)}"
            members.append(text)
        self.pos += 1
        if not members:
            raise _NotPortable("an empty character class")
        return "[" + ("^" if negated else "") + "".join(members) + "]"


def translate(
    expression: str,
    variables: Mapping[str, Kind] = _NO_VARIABLES,
    regex_prefix: str = "re",
    function_prefix: str = "xh",
) -> Translation | None:
    """The XPath 1.0 translation of ``expression`` when it is in the portable subset, else ``None``.

    ``variables`` are the portable variables in scope, by name (without ``$``), with their kinds. The
    translation uses ``regex_prefix`` for :data:`REGEX_NAMESPACE` and ``function_prefix`` for
    :data:`FUNCTION_NAMESPACE`; the caller binds both (and supplies :data:`EXTENSIONS`), and names with
    these prefixes are refused in the input.
    """
    try:
        parser = _Parser(expression, variables, (regex_prefix, function_prefix))
        result = parser.expr()
        kind = _KINDS.get(result.shape)
        if parser.peek()[0] != "end" or kind is None:
            return None  # not all of the input, or an arithmetic result or sequence as the value
    except _NotPortable:
        return None
    return Translation(result.text, Typed(kind, result.single), tuple(dict.fromkeys(parser.guards)))


def classify(expression: str, variables: Mapping[str, Kind] = _NO_VARIABLES) -> Typed | None:
    """The type of ``expression`` when :func:`translate` accepts it, else ``None``."""
    translation = translate(expression, variables)
    return None if translation is None else translation.typed


def classify_pattern(
    pattern: str,
    variables: Mapping[str, Kind] = _NO_VARIABLES,
    regex_prefix: str = "re",
    function_prefix: str = "xh",
) -> list[PatternBranch] | None:
    """Split an XSLT match pattern into branches lxml can evaluate, or ``None`` when it cannot.

    Accepted: ``|``-separated paths of element steps (``child::`` axis, name or ``*`` tests, portable
    predicates without guards), relative or starting with ``/`` or ``//``. A node matches the pattern
    exactly when it is selected by one branch's ``expression`` (translated to XPath 1.0) evaluated from
    the document node (``//`` + a relative path), which is how XSLT defines pattern matching. ``required``
    lists the element names (as written, ``prefix:local``) that must occur in a document for the branch to
    select anything.
    """
    try:
        parser = _Parser(pattern, variables, (regex_prefix, function_prefix))
        branches: list[PatternBranch] = []
        while True:
            parser.required = []
            parts: list[str] = []
            absolute = parser.at("/", "//")
            if absolute:
                slash = parser.take()[1]
                if slash == "/" and not parser.starts_step():
                    return None
                parts.append(slash)
            parts.append(_pattern_step(parser))
            while parser.at("/", "//"):
                parts += [parser.take()[1], _pattern_step(parser)]
            text = "".join(parts)
            branches.append(PatternBranch(text if absolute else f"//{text}", tuple(parser.required)))
            if not parser.at("|"):
                break
            parser.take()
        if parser.peek()[0] != "end" or parser.guards:
            return None
    except _NotPortable:
        return None
    return branches


def _pattern_step(parser: _Parser) -> str:
    if parser.peek()[0] == "name" and parser.peek(1) == ("sym", "::"):
        if parser.peek()[1] != "child":
            raise _NotPortable("pattern axis")
    elif not (parser.peek()[0] == "name" or parser.at("*")):
        raise _NotPortable("pattern step must select elements")
    return parser.step()[0]
