"""Schematron rules on Saxon-HE (``saxonche``): the one Schematron engine of the hub.

:class:`SchematronRules` holds the Schematron files of one bundle, each translated to XSLT by
:mod:`hub.validation.schematron_xslt` and compiled by Saxon once, when the bundle compiles (once per
process). :meth:`SchematronRules.check` serialises the document (after the XSD check, so schema-fixed
attributes are there), has Saxon parse it once and runs every file's stylesheet on it, then turns the
results into :class:`~hub.validation.report.Finding` objects:

* the location Saxon reports (the element's number in document order, ``/@name`` for an attribute) is
  mapped onto the lxml tree by one walk per document, done only when there is a finding: the line is
  the element's ``sourceline``, the path lxml's ``getpath`` (``/xbau:…/nachrichtenkopf.g2g/autor``);
* at most :data:`~hub.validation.report.MAX_FINDINGS_PER_CHECK` findings per document, then one summary
  finding whose severity is the worst of the omitted ones (so a cut never turns "invalid" into "valid");
* a check that raised an XPath error (a fault of the rule, e.g. XPTY0004 on a valid document) is a
  ``warning`` finding naming the rule; every other check ran. :meth:`check` then raises
  :class:`SchematronIncomplete` with all findings, and the engine reports ``not_checked`` unless an
  error finding makes the document invalid anyway.

Installed rules are untrusted code: :mod:`hub.validation.confinement` screens every file when it is
loaded, and the Saxon processor runs with no access to any URI and no external functions. When Saxon
cannot be imported or cannot start, :class:`SchematronUnavailable` says so, and the engine reports
``not_checked``: rules that did not run never make a document valid.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lxml import etree

from hub.validation.report import MAX_FINDINGS_PER_CHECK, Finding, Severity
from hub.validation.saxon import SchematronUnavailable, processor, saxon_available, saxon_lock
from hub.validation.schematron_source import SchematronError, q
from hub.validation.schematron_xslt import OUT, compile_schematron, load_screened, to_xslt

__all__ = [
    "SchematronError",
    "SchematronIncomplete",
    "SchematronRules",
    "SchematronUnavailable",
    "compile_schematron",
    "load_screened",
    "saxon_available",
]

_SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")  # worst first


@dataclass(frozen=True)
class _Failure:
    rule: str
    severity: Severity
    message: str
    location: str
    error: str | None = None  # the XPath error code when the check could not be evaluated here


@dataclass
class _Omitted:
    """Findings left out by the cap: how many per severity, and how many of them are rule faults."""

    error: int = 0
    warning: int = 0
    info: int = 0
    faults: int = 0

    def total(self) -> int:
        return self.error + self.warning + self.info + self.faults


class SchematronIncomplete(SchematronError):
    """Some checks raised an XPath 2.0 dynamic error on this document; every other check ran.

    An XÖV rule can fail on a valid document, e.g. ``normalize-space(//xbau:bauherr//name)`` with two
    builders (XPTY0004: more than one item). That is a fault of the rule, not a finding about the
    document. ``findings`` holds every finding, including one ``warning`` per check and node that could
    not be evaluated (its rule id, line and path); ``reason`` names the first of them.
    """

    def __init__(self, findings: list[Finding], faults: list[Finding]) -> None:
        first = faults[0]
        more = f" (and {len(faults) - 1} more)" if len(faults) > 1 else ""
        reason = f"{first.message}{more}"
        super().__init__(reason)
        self.findings = findings
        self.faults = faults
        self.reason = reason


class _Locator:
    """Maps Saxon's locations onto one lxml tree, in time linear in the document however many findings.

    The elements are numbered on first use, in one walk. Paths are those of lxml's ``getpath`` (libxml2's
    ``xmlGetNodePath``), built here from per-parent tables of steps: ``getpath`` scans all siblings of
    every ancestor on each call, which made 200 findings among 80,000 siblings take seconds.
    """

    def __init__(self, root: etree._Element) -> None:
        self.root = root
        self._elements: list[etree._Element] | None = None
        self._steps: dict[etree._Element, dict[etree._Element, str]] = {}

    def element(self, number: int) -> etree._Element | None:
        if self._elements is None:
            # the same elements, in the same order, as the text Saxon parsed (etree.tostring of root)
            self._elements = [self.root, *self.root.iterdescendants(etree.Element)]
        if number == 0:  # the document node: reported on the root element
            return self.root
        return self._elements[number - 1] if 0 < number <= len(self._elements) else None

    def path(self, element: etree._Element) -> str:
        steps: list[str] = []
        node: etree._Element | None = element
        while node is not None:
            parent = node.getparent()
            if parent is None:
                steps.append(_name_and_key(node)[0])
                break
            table = self._steps.get(parent)
            if table is None:
                table = self._steps[parent] = _child_steps(parent)
            steps.append(table[node])
            node = parent
        return "/" + "/".join(reversed(steps))

    def __call__(self, failure: _Failure) -> Finding:
        number, _, attribute = failure.location.partition("/@")
        element = self.element(int(number)) if number.isdigit() else None
        line = element.sourceline if element is not None else None
        path = self.path(element) if element is not None else None
        if path is not None and attribute:
            path = f"{path}/@{attribute}"
        message = failure.message
        if failure.error is not None:
            which = f"Schematron rule {failure.rule}" if failure.rule else "A Schematron rule"
            message = (
                f"{which} could not be evaluated here: {failure.error} {message} "
                "(a fault of the rule, not a finding about the document)"
            )
        return Finding(failure.severity, message, line, path, failure.rule or "schematron")


def _name_and_key(element: etree._Element) -> tuple[str, tuple[str, str] | None]:
    """The element's name in a libxml2 path, and which siblings count for its index (``None``: all).

    As ``xmlGetNodePath``: a prefixed element is ``prefix:name`` and counts siblings of the same name and
    prefix; one without namespace counts those of the same name without namespace; one in a default
    namespace cannot be named in XPath 1.0, so it is ``*`` and counts every element sibling.
    """
    qname = etree.QName(element)
    if qname.namespace is None:
        return qname.localname, (qname.localname, "")
    if element.prefix is None:
        return "*", None
    return f"{element.prefix}:{qname.localname}", (qname.localname, f"{element.prefix}:")


def _child_steps(parent: etree._Element) -> dict[etree._Element, str]:
    """The path step of every element child of ``parent``: its name, with ``[n]`` when it has namesakes."""
    children = list(parent.iterchildren(etree.Element))
    known: dict[tuple[str, str | None], tuple[str, tuple[str, str] | None]] = {}
    named = []
    for child in children:
        seen_as = (str(child.tag), child.prefix)
        name_key = known.get(seen_as)
        if name_key is None:
            name_key = known[seen_as] = _name_and_key(child)
        named.append((child, *name_key))
    totals: dict[tuple[str, str] | None, int] = {}
    for _, _, key in named:
        totals[key] = totals.get(key, 0) + 1
    seen: dict[tuple[str, str] | None, int] = {}
    steps: dict[etree._Element, str] = {}
    for child, name, key in named:
        # a generic (default namespace) element counts every element sibling
        count = len(children) if key is None else totals[key]
        position = seen[key] = seen.get(key, 0) + 1
        if key is None:
            position = len(steps) + 1
        steps[child] = f"{name}[{position}]" if count > 1 else name
    return steps


def _failures(output: str, omitted: _Omitted) -> list[_Failure]:
    """The findings of one stylesheet's result; adds what its cap left out to ``omitted``."""
    result = etree.fromstring(output.encode("utf-8"))
    failures: list[_Failure] = []
    for item in result:
        if item.tag == q(OUT, "omitted"):
            for kind in ("error", "warning", "info", "faults"):
                setattr(omitted, kind, getattr(omitted, kind) + int(item.get(kind, "0")))
            continue
        is_fault = item.tag == q(OUT, "error")
        declared = item.get("severity", "error")
        level: Severity = "warning" if is_fault else next((s for s in _SEVERITIES if s == declared), "error")
        failures.append(
            _Failure(
                item.get("id", ""),
                level,
                " ".join("".join(item.itertext()).split()),
                item.get("location", "0"),
                item.get("code") if is_fault else None,
            )
        )
    return failures


def _summary(omitted: _Omitted) -> Finding:
    worst: Severity = next((s for s in _SEVERITIES if getattr(omitted, s)), "info")
    if worst == "info" and omitted.faults:
        worst = "warning"
    counts = ", ".join(f"{getattr(omitted, s)} {s}" for s in _SEVERITIES if getattr(omitted, s))
    faults = f"{omitted.faults} rule faults" if omitted.faults else ""
    detail = "; ".join(part for part in (counts, faults) if part)
    return Finding(worst, f"{omitted.total()} more Schematron findings omitted ({detail})", rule="schematron")


class SchematronRules:
    """The Schematron files of one bundle, compiled once to Saxon executables; thread-safe."""

    def __init__(self, files: list[Path], bundle_dir: Path, *, cap: int = MAX_FINDINGS_PER_CHECK) -> None:
        self.names = [f.name for f in files]
        self.cap = cap
        sources = [to_xslt(load_screened(f, bundle_dir), f.name, cap) for f in files]
        with saxon_lock:
            proc = processor()
            from saxonche import PySaxonApiError  # importable: processor() succeeded

            xslt = proc.new_xslt30_processor()  # type: ignore[attr-defined]
            self._executables = []
            for name, text in zip(self.names, sources, strict=True):
                try:
                    self._executables.append(xslt.compile_stylesheet(stylesheet_text=text))
                except PySaxonApiError as exc:
                    raise SchematronError(f"{name}: Saxon cannot compile the rules: {exc}") from None
            self._pid = os.getpid()

    def _run(self, text: str) -> list[str]:
        from saxonche import PySaxonApiError

        with saxon_lock:
            if self._pid != os.getpid():
                raise SchematronError("Schematron rules were compiled in another process")
            proc = processor()
            try:
                node = proc.parse_xml(xml_text=text)  # type: ignore[attr-defined]
                return [executable.transform_to_string(xdm_node=node) for executable in self._executables]
            except PySaxonApiError as exc:
                raise SchematronError(f"Saxon failed while applying the rules: {exc}") from None

    def check(self, root: etree._Element) -> list[Finding]:
        """Apply every file's rules to the document; each finding names its assertion id as ``rule``.

        Raises :class:`SchematronIncomplete` (with all findings) when a check raised an XPath error.
        """
        omitted = _Omitted()
        outputs = self._run(etree.tostring(root, encoding="unicode"))
        failures = [failure for output in outputs for failure in _failures(output, omitted)]
        for failure in failures[self.cap :]:  # over the cap across files
            if failure.error is not None:
                omitted.faults += 1
            else:
                setattr(omitted, failure.severity, getattr(omitted, failure.severity) + 1)
        if not failures and not omitted.total():
            return []
        locate = _Locator(root)
        findings: list[Finding] = []
        faults: list[Finding] = []
        for failure in failures[: self.cap]:
            finding = locate(failure)
            findings.append(finding)
            if failure.error is not None:
                faults.append(finding)
        if omitted.total():
            findings.append(_summary(omitted))
            if omitted.faults and not faults:
                faults.append(findings[-1])
        if faults:
            raise SchematronIncomplete(findings, faults)
        return findings
