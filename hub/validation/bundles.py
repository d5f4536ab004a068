"""Schema bundles on disk: discovery, and the compiled checks of one bundle (built lazily, once).

``load_bundles(dirs)`` finds every ``<dir>/<bundle>/bundle.json``. A bundle compiles its XSD, code
lists and Schematron the first time a document of its namespaces arrives, and keeps them for the life
of the process. Compiled lxml schemas share one error log per object, so validation holds a per-bundle
lock; the lock is uncontended in the sync workers and cheap in the API's thread pool.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from lxml import etree

import hub
from hub.validation.codelists import CodeListError, CodeListSet
from hub.validation.manifest import MANIFEST_NAME, BundleError, Manifest, read_manifest
from hub.validation.report import MAX_FINDINGS_PER_CHECK, Finding, Severity
from hub.validation.resolver import BundleResolver, schema_parser
from hub.validation.saxon import SchematronUnavailable, saxon_available
from hub.validation.schematron import SchematronError, SchematronRules

__all__ = ["DEFAULT_OPERATOR_DIR", "Bundle", "CompiledBundle", "default_schema_dirs", "load_bundles",
           "shipped_schema_dir"]

DEFAULT_OPERATOR_DIR = Path("var/schemas")


def shipped_schema_dir() -> Path:
    """``xsd/`` beside the ``hub`` package (a source checkout), else ``./xsd``."""
    beside = Path(hub.__file__).resolve().parents[1] / "xsd"
    return beside if beside.is_dir() else Path.cwd() / "xsd"


def default_schema_dirs(operator_dir: Path = DEFAULT_OPERATOR_DIR) -> list[Path]:
    """Shipped bundles first, the operator's directory second (it overrides)."""
    return [shipped_schema_dir(), operator_dir]


def _xsd_severity(entry: etree._LogEntry) -> Severity:
    return "warning" if entry.level_name == "WARNING" else "error"


@dataclass
class CompiledBundle:
    """The ready-to-run checks of one bundle."""

    schema: etree.XMLSchema
    codelists: CodeListSet
    schematron: SchematronRules | None
    notes: list[Finding] = field(default_factory=list)
    # Why the bundle's Schematron rules cannot run in this process (Saxon missing or not starting): the
    # engine then reports "not_checked" for documents that passed the XSD, never "valid".
    schematron_unavailable: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def check_xsd(self, root: etree._Element) -> list[Finding]:
        """XSD validation; also inserts schema-fixed attributes (``listURI``…) for the code-list check."""
        tree = root.getroottree()
        with self.lock:
            if self.schema.validate(tree):
                return []
            entries = list(self.schema.error_log)
        findings = [
            Finding(_xsd_severity(e), e.message, e.line or None, e.path or None, "xsd")
            for e in entries[:MAX_FINDINGS_PER_CHECK]
        ]
        if len(entries) > MAX_FINDINGS_PER_CHECK:
            findings.append(
                Finding(
                    "info", f"{len(entries) - MAX_FINDINGS_PER_CHECK} more XSD findings omitted", rule="xsd"
                )
            )
        return findings


@dataclass
class Bundle:
    """One bundle folder and its manifest; :meth:`compiled` builds the checks on first use."""

    folder: Path
    manifest: Manifest
    origin: str
    _compiled: CompiledBundle | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return f"{self.manifest.standard} {self.manifest.version}"

    @cached_property
    def header_paths(self) -> dict[str, tuple[str, ...]]:
        """The manifest's header paths, resolved once (the header walk is cached per paths object)."""
        return self.manifest.header_paths()

    def compiled(self) -> CompiledBundle:
        """Compile (once per process) and return the checks; raises :class:`BundleError`."""
        if self._compiled is None:
            with self._lock:
                if self._compiled is None:
                    self._compiled = self._compile()
        return self._compiled

    def _compile(self) -> CompiledBundle:
        manifest, folder = self.manifest, self.folder
        resolver = BundleResolver(folder, manifest.schema_locations)
        try:
            doc = etree.parse(str(folder / manifest.entry), schema_parser(resolver))
            # Schema-fixed attributes (listURI …) are inserted only when a later check reads them: the
            # code-list check, or Schematron rules (which must see the document as KoSIT's would).
            schema = etree.XMLSchema(
                doc, attribute_defaults=bool(manifest.codelists or manifest.schematron)
            )
        except (OSError, etree.XMLSyntaxError, etree.XMLSchemaParseError) as exc:
            refused = (
                f" (refused schema locations: {', '.join(resolver.refused)})" if resolver.refused else ""
            )
            raise BundleError(f"{self.name}: XSD {manifest.entry} does not compile: {exc}{refused}") from None
        try:
            codelists = CodeListSet.from_paths(folder / rel for rel in manifest.codelists)
        except CodeListError as exc:
            raise BundleError(f"{self.name}: {exc}") from None
        rules: SchematronRules | None = None
        unavailable: str | None = None
        if manifest.schematron:
            try:
                if not saxon_available():
                    raise SchematronUnavailable("saxonche is not installed")
                rules = SchematronRules([folder / rel for rel in manifest.schematron], folder)
            except SchematronUnavailable as exc:
                unavailable = f"Schematron rules of {self.name} not checked: {exc}"
            except SchematronError as exc:
                raise BundleError(f"{self.name}: {exc}") from None
        notes = [Finding("warning", unavailable, rule="schematron")] if unavailable else []
        return CompiledBundle(schema, codelists, rules, notes, schematron_unavailable=unavailable)


def load_bundles(dirs: list[Path]) -> tuple[list[Bundle], list[str]]:
    """All bundles under ``dirs`` (missing dirs are skipped) and a list of problems, one per bad bundle.

    The origin is ``"shipped"`` for the first dir and ``"operator"`` for the others. Folders whose name
    starts with ``.`` are skipped: ``xhub schemas add`` stages and replaces bundles there.
    """
    bundles: list[Bundle] = []
    problems: list[str] = []
    for index, directory in enumerate(dirs):
        if not directory.is_dir():
            continue
        try:
            found = sorted(
                p for p in directory.iterdir() if not p.name.startswith(".") and (p / MANIFEST_NAME).is_file()
            )
        except OSError as exc:
            problems.append(f"{directory}: cannot list the schema folder: {exc.strerror or exc}")
            continue
        for folder in found:
            try:
                manifest = read_manifest(folder)
            except BundleError as exc:
                problems.append(str(exc))
                continue
            bundles.append(Bundle(folder, manifest, "shipped" if index == 0 else "operator"))
    return bundles, problems
