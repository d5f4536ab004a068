"""XPath 1.0 expressions, compiled once with the mapping's namespaces and checked at load time.

lxml reports some mistakes only when an expression runs (an unknown function inside a predicate, an
undefined prefix), so :func:`compile_xpath` adds a static check of function names and a trial run
against an empty document. Context values are XPath variables (``$message_id``); a value the caller
does not supply is the empty string.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lxml import etree

__all__ = ["Expr", "XPathProblem", "compile_xpath", "text_of", "texts", "truth"]

_FUNCTIONS = frozenset(
    {
        # XPath 1.0 core library
        "last", "position", "count", "id", "local-name", "namespace-uri", "name", "string", "concat",
        "starts-with", "contains", "substring-before", "substring-after", "substring", "string-length",
        "normalize-space", "translate", "boolean", "not", "true", "false", "lang", "number", "sum",
        "floor", "ceiling", "round",
        # node tests and operators that a name-followed-by-parenthesis scan also sees
        "node", "text", "comment", "processing-instruction", "and", "or", "div", "mod",
    }
)  # fmt: skip
_LITERAL = re.compile(r"\"[^\"]*\"|'[^']*'")
_CALL = re.compile(r"(?<![\w.$@:-])((?:[A-Za-z_][\w.-]*:)?[A-Za-z_][\w.-]*)\s*\(")
_VARIABLE = re.compile(r"\$((?:[A-Za-z_][\w.-]*:)?[A-Za-z_][\w.-]*)")
_PROBE = etree.fromstring("<_/>")


class XPathProblem(ValueError):
    """An expression that does not compile or cannot run; the message names it and says why."""


@dataclass(frozen=True)
class Expr:
    """One compiled expression and the context variables it refers to."""

    source: str
    compiled: etree.XPath
    variables: tuple[str, ...]

    def __call__(self, node: etree._Element, variables: Mapping[str, str]) -> Any:
        if not self.variables:
            return self.compiled(node)
        return self.compiled(node, **{name: variables.get(name, "") for name in self.variables})


def compile_xpath(source: object, namespaces: Mapping[str, str]) -> Expr:
    """Compile ``source`` or raise :class:`XPathProblem`."""
    if not isinstance(source, str) or not source.strip():
        raise XPathProblem(f"an XPath expression must be a non-empty string, not {source!r}")
    try:
        compiled = etree.XPath(source, namespaces=dict(namespaces), smart_strings=False)
    except etree.XPathSyntaxError as exc:
        raise XPathProblem(f"invalid XPath {source!r}: {exc.msg or exc}") from None
    bare = _LITERAL.sub("''", source)
    for match in _CALL.finditer(bare):
        if match.group(1) not in _FUNCTIONS:
            raise XPathProblem(f"invalid XPath {source!r}: unknown function {match.group(1)}() (XPath 1.0 only)")
    variables = tuple(dict.fromkeys(_VARIABLE.findall(bare)))
    expr = Expr(source, compiled, variables)
    try:
        expr(_PROBE, {})
    except etree.XPathEvalError as exc:
        raise XPathProblem(f"invalid XPath {source!r}: {exc}") from None
    return expr


def text_of(item: Any) -> str:
    """The XPath string-value of one result item."""
    if isinstance(item, etree._Element):
        return "".join(item.itertext()) if isinstance(item.tag, str) else (item.text or "")
    return str(item)


def texts(result: Any) -> list[str]:
    """An expression's result as stripped, non-empty strings: node-set → one per node, scalar → one.

    NaN (``number()`` of nothing) counts as no value; integral numbers are written without ``.0``.
    """
    if isinstance(result, list):
        values = [text_of(item).strip() for item in result]
        return [v for v in values if v]
    if isinstance(result, bool):
        return ["true" if result else "false"]
    if isinstance(result, float):
        if math.isnan(result):
            return []
        if math.isinf(result):
            return ["Infinity" if result > 0 else "-Infinity"]
        return [str(int(result))] if result.is_integer() else [repr(result)]
    value = str(result).strip()
    return [value] if value else []


def truth(result: Any) -> bool:
    """XPath ``boolean()`` of a result."""
    if isinstance(result, list):
        return bool(result)
    if isinstance(result, float):
        return not math.isnan(result) and result != 0.0
    return bool(result)
