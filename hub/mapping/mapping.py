"""A mapping: one ``mappings/<name>/mapping.toml`` (plus an optional stylesheet and its golden files),
compiled once at load, rendering one message body for one target per call.
"""

from __future__ import annotations

import json
import re
import threading
import tomllib
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from lxml import etree

from hub import xmlsafe
from hub.mapping.compile import Compiler
from hub.mapping.errors import MappingError, MappingFailed
from hub.mapping.jsontree import JsonRejected, json_to_tree
from hub.mapping.locate import KeyLines
from hub.mapping.namespaces import Namespaces, parse_namespaces
from hub.mapping.rules import ObjectRule, Run, Template
from hub.mapping.xpath import Expr
from hub.mapping.xslt import Stylesheet

__all__ = ["MAPPING_FILE", "Mapping", "Rendered", "dumps", "load_mapping", "load_mappings"]

MAPPING_FILE = "mapping.toml"
GOLDEN_DIR = "golden"
Source = Literal["xml", "json"]
Output = Literal["json", "xml"]
CONTENT_TYPES: dict[str, str] = {"json": "application/json", "xml": "application/xml"}
_HEADER_OPTIONS = frozenset({"description", "source", "output", "root", "xslt"})
_TOP_LEVEL = frozenset({"mapping", "namespaces", "tables", "fields", "params"})


@dataclass(frozen=True)
class Rendered:
    """The mapped body. ``data`` is the JSON-like value before serialisation (None for XML output)."""

    body: bytes
    content_type: str
    data: Any


@dataclass(frozen=True)
class Rules:
    """The rules of a JSON-output mapping, compiled for one namespace binding."""

    root: Expr | None
    fields: ObjectRule


def _dump(value: Any, out: list[str]) -> None:
    if isinstance(value, dict):
        out.append("{")
        for index, (key, member) in enumerate(value.items()):
            out.append(("," if index else "") + json.dumps(key, ensure_ascii=False) + ":")
            _dump(member, out)
        out.append("}")
    elif isinstance(value, list):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _dump(item, out)
        out.append("]")
    elif isinstance(value, Decimal):
        out.append(str(value))  # the converter admits finite literals only, all valid JSON numbers
    else:
        out.append(json.dumps(value, ensure_ascii=False))


def _refuse(value: Any) -> Any:
    raise TypeError(type(value).__name__)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; :class:`~decimal.Decimal` is written with its digits, not through float."""
    try:  # the C encoder, for the common case of no decimals
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_refuse).encode("utf-8")
    except TypeError:
        out: list[str] = []
        _dump(value, out)
        return "".join(out).encode("utf-8")


class Mapping:
    """A compiled mapping. ``render`` is safe to call from several threads (one at a time per mapping:
    lxml's compiled XPath and XSLT objects must not run concurrently)."""

    def __init__(
        self,
        *,
        name: str,
        file: Path,
        description: str,
        source: Source,
        output: Output,
        namespaces: Namespaces,
        rules: tuple[Rules, ...],
        stylesheet: Stylesheet | None,
        goldens: list[tuple[Path, Path]],
    ) -> None:
        self.name = name
        self.file = file
        self.description = description
        self.source: Source = source
        self.output: Output = output
        self.content_type = CONTENT_TYPES[output]
        self.goldens = goldens
        self._namespaces = namespaces
        self._rules = rules  # one per namespace binding (empty for XML output)
        self._stylesheet = stylesheet
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Mapping {self.name}: {self.source} → {self.output}>"

    def parse(self, payload: bytes) -> etree._Element:
        """The payload as a tree (JSON through :mod:`hub.mapping.jsontree`); MappingFailed if unreadable."""
        try:
            if self.source == "json":
                return json_to_tree(payload)
            return xmlsafe.parse(payload)
        except (xmlsafe.XmlRejected, JsonRejected) as exc:
            raise MappingFailed(self.name, None, f"the {self.source} payload cannot be read: {exc}") from None

    def render(self, payload: bytes, *, context: MappingABC[str, str | None]) -> Rendered:
        """Map one message. Raises :class:`MappingFailed` when this message cannot be mapped."""
        tree = self.parse(payload)
        with self._lock:
            if self._stylesheet is not None:
                body = self._stylesheet.apply(tree, context, mapping=self.name)
                return Rendered(body, self.content_type, None)
            rules = self._rules[self._namespaces.choose(tree)]
            run = Run(self.name, context, {k: v or "" for k, v in context.items()})
            node = self._root_node(rules.root, tree, run)
            data = rules.fields.evaluate(node, run, "")
        if not isinstance(data, dict):
            data = {}
        return Rendered(dumps(data), self.content_type, data)

    def _root_node(self, root: Expr | None, tree: etree._Element, run: Run) -> etree._Element:
        if root is None:
            return tree
        result = root(tree, run.variables)
        nodes = [n for n in result if isinstance(n, etree._Element)] if isinstance(result, list) else []
        if len(nodes) != 1:
            found = f"{len(nodes)} elements" if isinstance(result, list) else repr(result)
            raise MappingFailed(self.name, None, f"root {root.source!r} must select one element, found {found} "
                                f"(the document's root element is {tree.tag})")
        return nodes[0]


def _goldens(folder: Path, source: str, output: str) -> list[tuple[Path, Path]]:
    """Pairs ``<case>.input.<source>`` / ``<case>.expected.<output>``; a half pair is a MappingError."""
    golden = folder / GOLDEN_DIR
    if not golden.is_dir():
        return []
    inputs = {p.name[: -len(f".input.{source}")]: p for p in golden.glob(f"*.input.{source}")}
    expected = {p.name[: -len(f".expected.{output}")]: p for p in golden.glob(f"*.expected.{output}")}
    for path in sorted(golden.iterdir()):
        known = path.name.endswith((f".input.{source}", f".expected.{output}", ".context.json", ".md"))
        if path.is_file() and not known:
            raise MappingError(path, None, "golden", f"not a golden file (<case>.input.{source}, "
                               f"<case>.expected.{output}, optional <case>.context.json)")
    for case in sorted(set(inputs) ^ set(expected)):
        have = inputs.get(case) or expected[case]
        raise MappingError(have, None, "golden", f"case {case!r} needs both {case}.input.{source} and "
                           f"{case}.expected.{output}")
    return [(inputs[case], expected[case]) for case in sorted(inputs)]


def _read(file: Path) -> tuple[dict[str, Any], KeyLines]:
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MappingError(file, None, "", f"cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"at line (\d+)", str(exc))
        raise MappingError(file, int(match.group(1)) if match else None, "", f"not valid TOML: {exc}") from None
    return data, KeyLines(text)


def _choice(compiler: Compiler, header: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = header.get(key)
    if value not in allowed:
        compiler.fail(("mapping", key), f"must be one of {', '.join(map(repr, allowed))}, not {value!r}")
    return str(value)


def load_mapping(folder: Path) -> Mapping:
    """Load and compile ``folder/mapping.toml``; raises :class:`MappingError` at the first problem."""
    file = folder / MAPPING_FILE
    raw, lines = _read(file)
    compiler = Compiler(file, lines, {})
    for key in sorted(set(raw) - _TOP_LEVEL):
        compiler.fail((key,), f"unknown section; a mapping has {', '.join(sorted(_TOP_LEVEL))}")
    header = raw.get("mapping")
    if not isinstance(header, dict):
        compiler.fail(("mapping",), "a [mapping] table with source and output is required")
    for key in sorted(set(header) - _HEADER_OPTIONS):
        compiler.fail(("mapping", key), f"unknown option; [mapping] has {', '.join(sorted(_HEADER_OPTIONS))}")
    source: Source = "json" if _choice(compiler, header, "source", ("xml", "json")) == "json" else "xml"
    output: Output = "xml" if _choice(compiler, header, "output", ("json", "xml")) == "xml" else "json"
    description = header.get("description", "")
    if not isinstance(description, str):
        compiler.fail(("mapping", "description"), "must be a string")
    namespaces = parse_namespaces(raw.get("namespaces", {}), compiler.fail)
    compiler.compile_tables(raw.get("tables", {}))
    rules: list[Rules] = []
    stylesheet: Stylesheet | None = None
    if output == "json":
        for key in ("xslt", "params"):
            if key in header or key in raw:
                compiler.fail(("mapping", key) if key in header else (key,), "only for output = \"xml\"")
        # XPath binds prefixes at compile time: the rules are compiled once per namespace binding.
        for binding in namespaces.bindings():
            compiler.namespaces = binding
            root = compiler.xpath(header["root"], ("mapping", "root")) if "root" in header else None
            fields = ObjectRule(fields=compiler.compile_fields(raw.get("fields"), ("fields",)), required=True)
            rules.append(Rules(root, fields))
    else:
        if "fields" in raw or "root" in header:
            compiler.fail(("fields",) if "fields" in raw else ("mapping", "root"),
                          "output = \"xml\" is produced by the stylesheet (xslt); fields and root are for JSON output")
        stylesheet = _stylesheet(compiler, folder, header.get("xslt"), raw.get("params", {}))
    return Mapping(
        name=folder.name, file=file, description=description, source=source,
        output=output, namespaces=namespaces, rules=tuple(rules), stylesheet=stylesheet,
        goldens=_goldens(folder, source, output),
    )


def _stylesheet(compiler: Compiler, folder: Path, name: object, params: object) -> Stylesheet:
    if not isinstance(name, str) or not name:
        compiler.fail(("mapping", "xslt"), "output = \"xml\" needs xslt = \"<file>.xsl\" (next to mapping.toml)")
    path = (folder / name).resolve()
    if not path.is_relative_to(folder.resolve()) or not path.is_file():
        compiler.fail(("mapping", "xslt"), f"no stylesheet {name!r} in {folder}")
    if not isinstance(params, dict):
        compiler.fail(("params",), "must be a table of name = \"template\"")
    templates: dict[str, Template] = {}
    for key, value in params.items():
        if not isinstance(value, str):
            compiler.fail(("params", key), "a parameter is a string (with {context} placeholders)")
        try:
            templates[key] = Template.parse(value)
        except ValueError as exc:
            compiler.fail(("params", key), str(exc))
    lines = {key: compiler.lines.line(("params", key)) for key in params}
    lines[""] = compiler.lines.line(("mapping", "xslt"))
    return Stylesheet(path, templates, mapping_file=compiler.file, param_lines=lines, folder=folder)


def load_mappings(directory: Path) -> dict[str, Mapping]:
    """Every ``directory/<name>/mapping.toml``, compiled, by name (folders without one are not mappings)."""
    found: dict[str, Mapping] = {}
    if not directory.is_dir():
        return found
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        if (folder / MAPPING_FILE).is_file():
            found[folder.name] = load_mapping(folder)
    return found
