"""Compile the ``[fields]`` and ``[tables]`` of a mapping file into a rule tree, checking everything.

Every problem raises :class:`~hub.mapping.errors.MappingError` with the file, the line of the key and the
key path. How a TOML value is read (the full language is in docs/mappings.md):

* a string is an XPath (``name = "xga:familienname"``); a number or boolean is a constant;
* a table with ``each`` is a list, with ``fields`` an object, with ``xpath``/``const``/``template`` a
  value; any other table is a plain nested object evaluated at the same node.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

from hub.mapping.convert import TYPES, CodeTable, ConversionError, Converter, ValueType
from hub.mapping.errors import MappingError
from hub.mapping.locate import KeyLines
from hub.mapping.rules import ListRule, ObjectRule, Rule, Template, ValueRule
from hub.mapping.xpath import Expr, XPathProblem, compile_xpath

__all__ = ["Compiler"]

VALUE_OPTIONS = frozenset(
    {"xpath", "const", "template", "type", "format", "output_format", "table", "default", "required", "when",
     "list", "split"}
)  # fmt: skip
OBJECT_OPTIONS = frozenset({"fields", "from", "when", "required"})
LIST_OPTIONS = frozenset({"each", "fields", "item", "when", "required"})
RULE_WORDS = VALUE_OPTIONS | OBJECT_OPTIONS | LIST_OPTIONS
TABLE_OPTIONS = frozenset({"values", "default", "passthrough"})


def _scalar_text(value: object) -> str | None:
    """A TOML scalar as source text (for defaults); None when it is not a scalar."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


class Compiler:
    """Compiles the parts of one mapping file; knows the file, its key lines and its namespaces."""

    def __init__(self, file: Path, lines: KeyLines, namespaces: Mapping[str, str]) -> None:
        self.file = file
        self.lines = lines
        self.namespaces = namespaces
        self.tables: dict[str, CodeTable] = {}

    def fail(self, path: tuple[str, ...], problem: str) -> NoReturn:
        raise MappingError(self.file, self.lines.line(path), ".".join(path), problem)

    def xpath(self, source: object, path: tuple[str, ...]) -> Expr:
        try:
            return compile_xpath(source, self.namespaces)
        except XPathProblem as exc:
            self.fail(path, str(exc))

    def compile_tables(self, raw: object) -> None:
        path: tuple[str, ...] = ("tables",)
        if not isinstance(raw, dict):
            self.fail(path, "must be a table of code tables")
        for name, spec in raw.items():
            where = (*path, name)
            if not isinstance(spec, dict):
                self.fail(where, "a code table is a table with values = { code = \"target\" } (and default)")
            unknown = sorted(set(spec) - TABLE_OPTIONS)
            if unknown:
                self.fail((*where, unknown[0]), f"unknown option; a code table has {', '.join(sorted(TABLE_OPTIONS))}")
            values = spec.get("values")
            if not isinstance(values, dict) or not values:
                self.fail((*where, "values"), "must be a non-empty table of code = \"target\"")
            for code, target in values.items():
                if not isinstance(target, str):
                    self.fail((*where, "values", code), f"a target code must be a string, not {target!r}")
            default = spec.get("default")
            if default is not None and not isinstance(default, str):
                self.fail((*where, "default"), "must be a string")
            passthrough = spec.get("passthrough", False)
            if not isinstance(passthrough, bool):
                self.fail((*where, "passthrough"), "must be true or false")
            if passthrough and default is not None:
                self.fail((*where, "passthrough"), "a table has either a default or passthrough, not both")
            self.tables[name] = CodeTable(name, dict(values), default, passthrough)

    def compile_fields(self, raw: object, path: tuple[str, ...]) -> dict[str, Rule]:
        if not isinstance(raw, dict) or not raw:
            self.fail(path, "must be a non-empty table of target fields")
        return {key: self.rule(value, (*path, key)) for key, value in raw.items()}

    def rule(self, raw: object, path: tuple[str, ...]) -> Rule:
        if isinstance(raw, str):
            return ValueRule(xpaths=(self.xpath(raw, path),))
        if isinstance(raw, bool | int | float):
            return ValueRule(const=Decimal(str(raw)) if isinstance(raw, float) else raw)
        if not isinstance(raw, dict):
            self.fail(path, f"a field is an XPath string, a constant or a table, not {raw!r}")
        if "each" in raw:
            return self._list(raw, path)
        if "fields" in raw:
            return self._object(raw, path)
        if raw.keys() & {"xpath", "const", "template"}:
            return self._value(raw, path)
        options = sorted(raw.keys() & RULE_WORDS)
        if options:
            self.fail(
                (*path, options[0]),
                f"has rule options ({', '.join(options)}) but no source: give xpath, const, template, fields or "
                "each (a target field with such a name is written inside fields = { … })",
            )
        return ObjectRule(fields=self.compile_fields(raw, path))

    def _check_options(self, raw: Mapping[str, Any], allowed: frozenset[str], path: tuple[str, ...], kind: str) -> None:
        unknown = sorted(set(raw) - allowed)
        if unknown:
            self.fail((*path, unknown[0]), f"unknown option for a {kind}; allowed: {', '.join(sorted(allowed))}")

    def _flag(self, raw: Mapping[str, Any], key: str, path: tuple[str, ...]) -> bool:
        value = raw.get(key, False)
        if not isinstance(value, bool):
            self.fail((*path, key), "must be true or false")
        return value

    def _when(self, raw: Mapping[str, Any], path: tuple[str, ...]) -> Expr | None:
        return self.xpath(raw["when"], (*path, "when")) if "when" in raw else None

    def _list(self, raw: Mapping[str, Any], path: tuple[str, ...]) -> ListRule:
        self._check_options(raw, LIST_OPTIONS, path, "list (each)")
        if ("fields" in raw) == ("item" in raw):
            self.fail(path, "a list needs exactly one of fields (items are objects) or item (items are values)")
        item: Rule
        if "fields" in raw:
            item = ObjectRule(fields=self.compile_fields(raw["fields"], (*path, "fields")))
        else:
            item = self.rule(raw["item"], (*path, "item"))
        return ListRule(
            each=self.xpath(raw["each"], (*path, "each")),
            item=item,
            when=self._when(raw, path),
            required=self._flag(raw, "required", path),
        )

    def _object(self, raw: Mapping[str, Any], path: tuple[str, ...]) -> ObjectRule:
        self._check_options(raw, OBJECT_OPTIONS, path, "object (fields)")
        return ObjectRule(
            fields=self.compile_fields(raw["fields"], (*path, "fields")),
            from_=self.xpath(raw["from"], (*path, "from")) if "from" in raw else None,
            when=self._when(raw, path),
            required=self._flag(raw, "required", path),
        )

    def _value(self, raw: Mapping[str, Any], path: tuple[str, ...]) -> ValueRule:
        self._check_options(raw, VALUE_OPTIONS, path, "value")
        sources = sorted(raw.keys() & {"xpath", "const", "template"})
        if len(sources) > 1:
            self.fail((*path, sources[1]), f"a value has one source, not {' and '.join(sources)}")
        when = self._when(raw, path)
        if "const" in raw:
            extra = sorted(set(raw) - {"const", "when"})
            if extra:
                self.fail((*path, extra[0]), "a constant takes no conversion options (only when)")
            const = raw["const"]
            if isinstance(const, float):
                const = Decimal(str(const))
            elif not isinstance(const, str | int | bool):
                self.fail((*path, "const"), f"a constant is a string, number or boolean, not {const!r}")
            return ValueRule(const=const, when=when)
        rule = ValueRule(
            xpaths=self._xpaths(raw, path),
            template=self._template(raw, path),
            converter=self._converter(raw, path),
            table=self._table(raw, path),
            default=self._default(raw, path),
            required=self._flag(raw, "required", path),
            when=when,
            many=self._flag(raw, "list", path),
            split=self._split(raw, path),
        )
        if rule.default is not None:
            if rule.required:
                self.fail((*path, "default"), "a field with a default is never missing: drop required or default")
            try:
                rule.convert(rule.default)
            except ConversionError as exc:
                self.fail((*path, "default"), f"the default does not convert: {exc}")
        return rule

    def _xpaths(self, raw: Mapping[str, Any], path: tuple[str, ...]) -> tuple[Expr, ...]:
        if "xpath" not in raw:
            return ()
        sources = raw["xpath"]
        where = (*path, "xpath")
        if isinstance(sources, list):
            if not sources:
                self.fail(where, "a list of XPath alternatives must not be empty")
            return tuple(self.xpath(s, where) for s in sources)
        return (self.xpath(sources, where),)

    def _template(self, raw: Mapping[str, Any], path: tuple[str, ...]) -> Template | None:
        if "template" not in raw:
            return None
        source = raw["template"]
        if not isinstance(source, str) or not source:
            self.fail((*path, "template"), "must be a non-empty string")
        try:
            return Template.parse(source)
        except ValueError as exc:
            self.fail((*path, "template"), str(exc))

    def _converter(self, raw: Mapping[str, Any], path: tuple[str, ...]) -> Converter:
        kind = raw.get("type", "string")
        if kind not in TYPES:
            self.fail((*path, "type"), f"unknown type {kind!r}; one of {', '.join(TYPES)}")
        formats = raw.get("format", ())
        if isinstance(formats, str):
            formats = (formats,)
        if not isinstance(formats, list | tuple) or not all(isinstance(f, str) and f for f in formats):
            self.fail((*path, "format"), "must be a format string or a list of them")
        output_format = raw.get("output_format")
        if output_format is not None and not isinstance(output_format, str):
            self.fail((*path, "output_format"), "must be a strftime pattern")
        value_type: ValueType = kind
        converter = Converter(value_type, tuple(formats), output_format)
        problem = converter.check()
        if problem is not None:
            self.fail((*path, "format" if "format" in raw else "output_format"), problem)
        return converter

    def _table(self, raw: Mapping[str, Any], path: tuple[str, ...]) -> CodeTable | None:
        if "table" not in raw:
            return None
        name = raw["table"]
        table = self.tables.get(name) if isinstance(name, str) else None
        if table is None:
            known = ", ".join(sorted(self.tables)) or "none"
            self.fail((*path, "table"), f"no code table {name!r} in [tables] (defined: {known})")
        return table

    def _default(self, raw: Mapping[str, Any], path: tuple[str, ...]) -> str | None:
        if "default" not in raw:
            return None
        text = _scalar_text(raw["default"])
        if text is None or text == "":
            self.fail((*path, "default"), "must be a non-empty string, number or boolean")
        return text

    def _split(self, raw: Mapping[str, Any], path: tuple[str, ...]) -> str | None:
        separator = raw.get("split")
        if separator is not None and (not isinstance(separator, str) or not separator):
            self.fail((*path, "split"), "must be a non-empty separator string")
        return separator

