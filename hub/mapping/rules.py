"""The compiled rule tree of a JSON-output mapping and how it runs on one document.

Three rule kinds, each a frozen dataclass with ``evaluate(node, run, path)``:

* :class:`ValueRule`: one value (or a list of values) from XPath alternatives, a constant or a template,
  through ``split`` → code table → type conversion, with ``default``, ``required`` and ``when``;
* :class:`ObjectRule`: a JSON object, optionally evaluated at another node (``from``);
* :class:`ListRule`: a JSON array, one item per node that ``each`` selects.

A rule that produces nothing returns :data:`MISSING` and its key is left out of the output; a required
one raises :class:`~hub.mapping.errors.MappingFailed` naming the field and why.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from lxml import etree

from hub.mapping.convert import CodeTable, ConversionError, Converter, OutputValue
from hub.mapping.errors import MappingFailed
from hub.mapping.xpath import Expr, texts, truth

__all__ = ["MISSING", "ListRule", "ObjectRule", "Rule", "Run", "Template", "ValueRule"]


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


@dataclass(frozen=True)
class Run:
    """What one render call carries through the rules."""

    mapping: str
    context: Mapping[str, str | None]
    variables: Mapping[str, str]

    def fail(self, path: str, problem: str) -> MappingFailed:
        return MappingFailed(self.mapping, path or None, problem)


@dataclass(frozen=True)
class Template:
    """A string with ``{name}`` placeholders filled from the context; ``{{`` is a literal brace."""

    source: str
    names: tuple[str, ...]

    @classmethod
    def parse(cls, source: str) -> Template:
        names = [name for _, name, spec, conv in string.Formatter().parse(source) if name is not None]
        for name in names:
            if not name.isidentifier():
                raise ValueError(f"placeholder {{{name}}} is not a context name (letters, digits, _)")
        return cls(source, tuple(dict.fromkeys(names)))

    def render(self, context: Mapping[str, str | None]) -> str | None:
        """The filled string, or None when a placeholder has no value."""
        values: dict[str, str] = {}
        for name in self.names:
            value = context.get(name)
            if value is None or value == "":
                return None
            values[name] = value
        return self.source.format_map(values)


def _nodes(expr: Expr, node: etree._Element, run: Run, path: str, key: str) -> list[etree._Element]:
    result = expr(node, run.variables)
    if not isinstance(result, list) or not all(isinstance(n, etree._Element) for n in result):
        raise run.fail(path, f"{key} {expr.source!r} must select elements, but gave {result!r}")
    return result


def _applies(when: Expr | None, node: etree._Element, run: Run) -> bool:
    return when is None or truth(when(node, run.variables))


@dataclass(frozen=True)
class ValueRule:
    """One output value. Exactly one of ``xpaths`` (tried in order, the first that yields a value wins),
    ``const`` and ``template`` is set."""

    xpaths: tuple[Expr, ...] = ()
    const: OutputValue | None = None
    template: Template | None = None
    converter: Converter = field(default_factory=Converter)
    table: CodeTable | None = None
    default: str | None = None
    required: bool = False
    when: Expr | None = None
    many: bool = False
    split: str | None = None

    def evaluate(self, node: etree._Element, run: Run, path: str) -> Any:
        if not _applies(self.when, node, run):
            return MISSING
        if self.const is not None:
            return self.const
        found = self._texts(node, run, path)
        if self.split is not None:
            found = [part.strip() for text in found for part in text.split(self.split) if part.strip()]
        if not found:
            if self.default is not None:
                found = [self.default]
            elif self.required:
                raise run.fail(path, f"required, but {self._where()} gave no value")
            else:
                return MISSING
        try:
            values = [self.convert(text) for text in found]
        except ConversionError as exc:
            raise run.fail(path, str(exc)) from None
        return values if self.many or self.split is not None else values[0]

    def convert(self, text: str) -> OutputValue:
        """Code table, then type conversion; raises ConversionError."""
        if self.table is not None:
            text = self.table(text)
        return self.converter(text)

    def _texts(self, node: etree._Element, run: Run, path: str) -> list[str]:
        if self.template is not None:
            rendered = self.template.render(run.context)
            return [rendered] if rendered else []
        for expr in self.xpaths:
            found = texts(expr(node, run.variables))
            if len(found) > 1 and not self.many:
                raise run.fail(
                    path,
                    f"{expr.source!r} selected {len(found)} values where one is expected "
                    "(narrow it, e.g. with [1], or set list = true)",
                )
            if found:
                return found
        return []

    def _where(self) -> str:
        if self.template is not None:
            return f"template {self.template.source!r} (context: {', '.join(self.template.names)})"
        return " | ".join(repr(e.source) for e in self.xpaths)


@dataclass(frozen=True)
class ObjectRule:
    """A JSON object; its fields are evaluated at the node ``from_`` selects (at most one), else here."""

    fields: Mapping[str, Rule]
    from_: Expr | None = None
    when: Expr | None = None
    required: bool = False

    def evaluate(self, node: etree._Element, run: Run, path: str) -> Any:
        if not _applies(self.when, node, run):
            return MISSING
        if self.from_ is not None:
            nodes = _nodes(self.from_, node, run, path, "from")
            if len(nodes) > 1:
                raise run.fail(path, f"from {self.from_.source!r} selected {len(nodes)} elements where one is expected")
            if not nodes:
                if self.required:
                    raise run.fail(path, f"required, but from {self.from_.source!r} selected nothing")
                return MISSING
            node = nodes[0]
        out: dict[str, Any] = {}
        for key, rule in self.fields.items():
            value = rule.evaluate(node, run, f"{path}.{key}" if path else key)
            if value is not MISSING:
                out[key] = value
        if not out:
            if self.required:
                raise run.fail(path, "required, but none of its fields has a value")
            return MISSING
        return out


@dataclass(frozen=True)
class ListRule:
    """A JSON array: ``item`` evaluated at each node that ``each`` selects, in document order."""

    each: Expr
    item: Rule
    when: Expr | None = None
    required: bool = False

    def evaluate(self, node: etree._Element, run: Run, path: str) -> Any:
        if not _applies(self.when, node, run):
            return MISSING
        out = []
        for index, item_node in enumerate(_nodes(self.each, node, run, path, "each")):
            value = self.item.evaluate(item_node, run, f"{path}[{index}]")
            if value is not MISSING:
                out.append(value)
        if not out:
            if self.required:
                raise run.fail(path, f"required, but each {self.each.source!r} gave no items")
            return MISSING
        return out


Rule = ValueRule | ObjectRule | ListRule
