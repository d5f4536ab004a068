"""Code-list membership checks against genericode files (XRepository format).

XSD cannot say whether ``<code>002</code>`` is in code list ``urn:de:xoev:codeliste:erreichbarkeit``
version 3; this module can. A coded value in an XÖV document is an element with an unqualified ``code``
child and the attributes ``listURI`` / ``listVersionID`` (``xoev-code:Code``). Where a schema fixes
those attributes, the engine lets lxml insert them during XSD validation (``attribute_defaults``), so
the check below sees them as if the sender had written them.

Rules:

* the list (``listURI``) is not installed: nothing to check, no finding;
* the version is given and installed: the code must be in that version (``error`` otherwise);
* the version is given but only other versions are installed: one ``info`` finding per list/version;
* no version is given: the code must be in at least one installed version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from hub.validation.report import Finding

__all__ = ["CodeList", "CodeListError", "CodeListSet", "load_genericode"]

GC = "http://docs.oasis-open.org/codelist/ns/genericode/1.0/"


class CodeListError(ValueError):
    """A file that is not a usable genericode code list."""


@dataclass(frozen=True)
class CodeList:
    """One version of one code list: its canonical URI, version, short name and the set of codes."""

    uri: str
    version: str
    name: str
    codes: frozenset[str]

    @property
    def rule(self) -> str:
        return f"{self.uri}_{self.version}"


def _is_genericode(root: etree._Element) -> bool:
    return isinstance(root.tag, str) and root.tag == f"{{{GC}}}CodeList"


def load_genericode(path: Path) -> CodeList:
    """Read a genericode file; the key column (first ``Key/ColumnRef``, else ``code``) gives the codes."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.parse(str(path), parser).getroot()
    except (OSError, etree.XMLSyntaxError) as exc:
        raise CodeListError(f"{path.name}: cannot read code list: {exc}") from None
    if not _is_genericode(root):
        raise CodeListError(f"{path.name}: not a genericode CodeList")
    uri = (root.findtext("Identification/CanonicalUri") or "").strip()
    version = (root.findtext("Identification/Version") or "").strip()
    if not uri or not version:
        raise CodeListError(f"{path.name}: CanonicalUri or Version missing")
    key = root.find("ColumnSet/Key/ColumnRef")
    column = key.get("Ref", "code") if key is not None else "code"
    codes = frozenset(
        (value.findtext("SimpleValue") or "").strip()
        for value in root.iterfind(f"SimpleCodeList/Row/Value[@ColumnRef='{column}']")
    )
    if not codes:
        raise CodeListError(f"{path.name}: no codes in column {column!r}")
    name = (root.findtext("Identification/ShortName") or path.stem).strip()
    return CodeList(uri, version, name, codes)


def is_genericode_file(path: Path) -> bool:
    """Cheap sniff used when scanning an operator bundle for code lists."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return False
    return b"genericode" in head and b"CodeList" in head


def _finding(code_element: etree._Element, message: str, rule: str) -> Finding:
    return Finding("error", message, code_element.sourceline, code_element.getroottree().getpath(code_element), rule)


class CodeListSet:
    """All code lists of a bundle, indexed by URI and version."""

    def __init__(self, lists: Iterable[CodeList]) -> None:
        self._by_uri: dict[str, dict[str, CodeList]] = {}
        for code_list in lists:
            self._by_uri.setdefault(code_list.uri, {})[code_list.version] = code_list

    @classmethod
    def from_paths(cls, paths: Iterable[Path]) -> CodeListSet:
        """Load every genericode file under the given files or folders."""
        files: list[Path] = []
        for path in paths:
            files.extend(sorted(p for p in path.rglob("*.xml")) if path.is_dir() else [path])
        return cls(load_genericode(f) for f in files if is_genericode_file(f))

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_uri.values())

    def check(self, root: etree._Element) -> list[Finding]:
        """Check every coded value in the document against the installed lists."""
        if not self._by_uri:
            return []
        findings: list[Finding] = []
        missing_versions: set[tuple[str, str]] = set()
        # iter("code") filters in C on the unqualified name; the coded element is its parent. Most coded
        # values name a list that is not installed (or none at all), so those leave the loop first.
        by_uri = self._by_uri
        for code_element in root.iter("code"):
            element = code_element.getparent()
            uri = element.get("listURI") if element is not None else None
            if uri is None:
                continue
            versions = by_uri.get(uri)
            if versions is None:
                stripped = uri.strip()
                if stripped == uri or (versions := by_uri.get(stripped)) is None:
                    continue
                uri = stripped
            code = (code_element.text or "").strip()
            version = element.get("listVersionID")
            if version and (version := version.strip()):
                code_list = versions.get(version)
                if code_list is None:
                    missing_versions.add((uri, version))
                elif code not in code_list.codes:
                    message = f"code {code!r} is not in code list {uri} version {version} ({code_list.name})"
                    findings.append(_finding(code_element, message, code_list.rule))
            elif not any(code in cl.codes for cl in versions.values()):
                installed = ", ".join(sorted(versions))
                message = f"code {code!r} is not in any installed version ({installed}) of code list {uri}"
                findings.append(_finding(code_element, message, uri))
        for uri, version in sorted(missing_versions):
            installed = ", ".join(sorted(self._by_uri[uri]))
            findings.append(
                Finding(
                    "info",
                    f"code list {uri} version {version} is not installed (installed: {installed}); "
                    "its codes were not checked",
                    rule=f"{uri}_{version}",
                )
            )
        return findings
