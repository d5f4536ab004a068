"""The validation engine: bytes in, :class:`~hub.validation.report.Report` out, never an exception.

Steps, KoSIT-scenario style: safe parse → detect (installed bundle by root namespace, else a known
standard, else unknown) → header → XSD → code lists → Schematron (only when the XSD passed, as the
KoSIT validator does: rules written for valid documents only produce noise on invalid ones).

Bundle choice when several bundles claim a namespace: a later directory wins over an earlier one (the
operator's ``var/schemas`` overrides the shipped ``xsd/``); within one directory the higher version wins.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

from lxml import etree

from hub.validation.bundles import Bundle, load_bundles
from hub.validation.detection import HEADER_PROFILES, detect_known, extract_header, split_tag
from hub.validation.manifest import BundleError
from hub.validation.report import Finding, Report
from hub.validation.saxon import SchematronUnavailable
from hub.validation.schematron import SchematronError, SchematronIncomplete
from hub.xmlsafe import DEFAULT_LIMITS, XmlLimits, XmlRejected, parse

__all__ = ["ValidationEngine"]

# Faults of the engine itself (a broken bundle, Saxon failing): not the sender's fault, so the verdict
# is "not_checked" and the route policy decides. Everything the *document* can cause is handled below.
_ENGINE_FAULTS = (BundleError, SchematronError, etree.LxmlError, OSError, MemoryError, RecursionError)


def _version_key(version: str) -> tuple[tuple[int, str], ...]:
    return tuple((int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"[.\-_]", version))


class ValidationEngine:
    """Validates XÖV documents against the bundles found in a list of directories."""

    _shared: ClassVar[dict[tuple[Path, ...], ValidationEngine]] = {}
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self, bundles: Iterable[Bundle], *, limits: XmlLimits = DEFAULT_LIMITS, problems: Iterable[str] = ()
    ) -> None:
        self.bundles = list(bundles)
        self.limits = limits
        self.problems = list(problems)
        self._by_namespace: dict[str, Bundle] = {}
        ranked = sorted(
            enumerate(self.bundles),
            key=lambda item: (item[1].origin == "operator", _version_key(item[1].manifest.version), item[0]),
        )
        for _, bundle in ranked:  # later entries override earlier ones
            for namespace in bundle.manifest.namespaces:
                self._by_namespace[namespace] = bundle

    @classmethod
    def from_dirs(cls, dirs: Iterable[Path], *, limits: XmlLimits = DEFAULT_LIMITS) -> ValidationEngine:
        """Load the bundles of ``dirs`` (first: shipped, others: operator-installed; missing ones skipped)."""
        bundles, problems = load_bundles(list(dirs))
        return cls(bundles, limits=limits, problems=problems)

    @classmethod
    def shared(cls, dirs: Iterable[Path]) -> ValidationEngine:
        """One engine per process and tuple of dirs, so each bundle compiles once per process."""
        key = tuple(Path(d).resolve() for d in dirs)
        with cls._shared_lock:
            engine = cls._shared.get(key)
            if engine is None:
                engine = cls._shared[key] = cls.from_dirs(key)
            return engine

    @classmethod
    def reset_shared(cls) -> None:
        """Forget the shared engines (after ``xhub schemas add`` in a long-running process, and in tests)."""
        with cls._shared_lock:
            cls._shared.clear()

    def bundle_for(self, namespace: str) -> Bundle | None:
        return self._by_namespace.get(namespace)

    def validate(self, data: bytes) -> Report:
        """Validate one document. Hostile or malformed input gives ``invalid``; this never raises."""
        try:
            root = parse(data, self.limits)
        except XmlRejected as exc:
            return Report(
                "invalid",
                reason=exc.title,
                findings=[Finding("error", f"{exc.title}: {exc.detail}", exc.line, None, "xml")],
            )
        return self.validate_root(root)

    def validate_root(self, root: etree._Element) -> Report:
        """Validate a tree that :func:`hub.xmlsafe.parse` produced (the pipeline parses once)."""
        namespace, local = split_tag(root.tag)
        bundle = self.bundle_for(namespace)
        if bundle is None:
            return self._not_installed(root, namespace, local)
        manifest = bundle.manifest
        report = Report("valid", standard=manifest.standard, version=manifest.version, message_type=local)
        findings = report.findings
        incomplete: str | None = None  # why a Schematron check could not be evaluated
        try:
            compiled = bundle.compiled()
            findings.extend(compiled.notes)
            findings.extend(compiled.check_xsd(root))
            xsd_ok = not findings or not any(f.severity == "error" for f in findings)
            report.header = extract_header(root, bundle.header_paths)
            findings.extend(compiled.codelists.check(root))
            if compiled.schematron_unavailable is not None:
                if xsd_ok:  # the rules did not run: never "valid" (invalid findings above still count)
                    incomplete = compiled.schematron_unavailable
            elif compiled.schematron is not None:
                if xsd_ok:
                    try:
                        findings.extend(compiled.schematron.check(root))
                    except SchematronIncomplete as exc:  # some rule failed on this document, the rest ran
                        findings.extend(exc.findings)
                        incomplete = exc.reason
                    except SchematronUnavailable as exc:  # Saxon did not start in this (forked) process
                        incomplete = f"Schematron rules of {bundle.name} not checked: {exc}"
                else:
                    findings.append(
                        Finding(
                            "info",
                            "Schematron rules not applied because the XSD check failed",
                            rule="schematron",
                        )
                    )
        except _ENGINE_FAULTS as exc:
            report.verdict = "not_checked"
            report.reason = f"validation could not run: {exc}"
            if not report.header:
                report.header = extract_header(root, bundle.header_paths)
            return report
        if not findings:  # the common case: a valid document without notes
            return report
        first_error = next((f for f in findings if f.severity == "error"), None)
        if first_error is not None:
            report.verdict = "invalid"
            report.reason = first_error.message
        elif incomplete is not None:
            report.verdict = "not_checked"
            report.reason = incomplete
        return report

    def _not_installed(self, root: etree._Element, namespace: str, local: str) -> Report:
        known = detect_known(namespace, local)
        if known is not None:
            return Report(
                "not_checked",
                reason=f"schema for namespace {namespace} not installed",
                standard=known.standard,
                version=known.version,
                message_type=local,
                header=extract_header(root, HEADER_PROFILES[known.header]),
            )
        where = f"namespace {namespace}" if namespace else "no namespace"
        return Report(
            "not_checked",
            reason=f"unknown document: root element <{local}> in {where}; no installed schema or known "
            "standard matches",
        )
