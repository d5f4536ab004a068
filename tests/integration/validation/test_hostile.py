"""Hostile-input corpus, generated at test time: clear findings, bounded memory and time, no crash."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from hub.validation import ValidationEngine

REPO = Path(__file__).resolve().parents[3]
GEWST = b"urn:xoev-de:xunternehmen:standard:gewerbesteuer_1.4"


def _laughs(levels: int = 10) -> bytes:
    entities = ['<!ENTITY l0 "lol">'] + [
        f'<!ENTITY l{i} "{("&l" + str(i - 1) + ";") * 10}">' for i in range(1, levels)
    ]
    return f"<!DOCTYPE r [{''.join(entities)}]><r>&l{levels - 1};</r>".encode()


CORPUS: dict[str, tuple[bytes, str]] = {
    "xxe-file": (
        b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
        "Document type declaration not allowed",
    ),
    "xxe-network": (
        b'<!DOCTYPE r [<!ENTITY x SYSTEM "http://169.254.169.254/latest/meta-data/">]><r>&x;</r>',
        "Document type declaration not allowed",
    ),
    "billion-laughs": (_laughs(), "Document type declaration not allowed"),
    "quadratic-blowup": (
        b'<!DOCTYPE r [<!ENTITY a "' + b"A" * 200_000 + b'">]><r>' + b"&a;" * 50_000 + b"</r>",
        "Document type declaration not allowed",
    ),
    "external-dtd": (
        b'<?xml version="1.0"?>\n<!DOCTYPE r SYSTEM "http://127.0.0.1:9/evil.dtd">\n<r/>',
        "Document type declaration not allowed",
    ),
    "deep-10000": (b"<a>" * 10_000 + b"</a>" * 10_000, "Document too deeply nested"),
    "invalid-utf8": (
        b'<?xml version="1.0" encoding="UTF-8"?><r>caf\xe9 \xc3\x28</r>',
        "Invalid character encoding",
    ),
    "truncated": (b'<?xml version="1.0"?><r><a>', "Not well-formed XML"),
    "binary-garbage": (bytes(range(256)) * 10, "Not well-formed XML"),
    "empty": (b"", "Empty document"),
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_hostile_input_is_invalid_with_clear_finding(engine: ValidationEngine, name: str) -> None:
    data, title = CORPUS[name]
    started = time.perf_counter()
    report = engine.validate(data)
    assert time.perf_counter() - started < 2.0
    assert report.verdict == "invalid"
    assert report.reason == title
    [finding] = report.findings
    assert (finding.severity, finding.rule) == ("error", "xml")
    assert finding.message.startswith(title)


def test_wrong_namespace_and_unknown_root(engine: ValidationEngine) -> None:
    wrong = engine.validate(b'<g:bescheide.gewerbesteuer.0001 xmlns:g="urn:evil:gewerbesteuer_1.4"/>')
    assert wrong.verdict == "not_checked"
    assert wrong.reason is not None and "namespace urn:evil:gewerbesteuer_1.4" in wrong.reason
    unknown = engine.validate(b"<g:gibtsnicht xmlns:g='" + GEWST + b"'/>")
    assert unknown.verdict == "invalid"
    assert "No matching global declaration" in unknown.errors[0].message


def test_many_schema_errors_are_capped(engine: ValidationEngine) -> None:
    data = (
        b"<g:bescheide.zinsen.0002 xmlns:g='"
        + GEWST
        + b"'>"
        + b"<x/>" * 100_000
        + b"</g:bescheide.zinsen.0002>"
    )
    report = engine.validate(data)
    assert report.verdict == "invalid"
    assert len(report.findings) <= 201


_PROBE = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    from hub.validation import ValidationEngine
    engine = ValidationEngine.from_dirs([Path(sys.argv[1])])
    engine.validate(b"<warm-up/>")
    kind, size = sys.argv[2], int(sys.argv[3])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if kind == "big-text":
        data = b"<r>" + (b"<t>" + b"A" * 1000 + b"</t>") * (size // 1007) + b"</r>"
    else:
        data = b"<a>" * (size // 8) + b"</a>" * (size // 8)
    after_alloc = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    report = engine.validate(data)
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"verdict": report.verdict, "reason": report.reason, "before_kb": before,
                      "data_kb": len(data) // 1024, "after_alloc_kb": after_alloc, "peak_kb": peak,
                      "seconds": elapsed}))
    """
)


def _probe(kind: str, size: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, str(REPO / "xsd"), kind, str(size)],
        capture_output=True,
        check=True,
        timeout=120,
        cwd=REPO,
        text=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.mark.slow
def test_200_mb_document_is_refused_without_copying(tmp_path: Path) -> None:
    result = _probe("big-text", 200 * 1024 * 1024)
    assert result["verdict"] == "invalid"
    assert result["reason"] == "Document too large"
    # The 200 MB input itself is resident; the engine must not add a copy of it.
    grown = result["peak_kb"] - result["after_alloc_kb"]
    assert grown < 20 * 1024, result
    assert result["seconds"] < 1.0


@pytest.mark.slow
def test_deep_40_mb_document_is_refused_with_bounded_memory() -> None:
    result = _probe("deep", 40 * 1024 * 1024)
    assert result["verdict"] == "invalid"
    assert result["reason"] == "Document too deeply nested"
    grown = result["peak_kb"] - result["after_alloc_kb"]
    assert grown < 64 * 1024, result


@pytest.mark.slow
def test_40_mb_document_under_the_limit_parses_with_bounded_memory() -> None:
    result = _probe("big-text", 40 * 1024 * 1024)
    assert result["verdict"] == "not_checked"
    grown = result["peak_kb"] - result["after_alloc_kb"]
    assert grown < 2 * result["data_kb"], result
