"""Benchmark: documents/s of the xoev-hub validation engine vs bare lxml vs xmlschema, same documents.

    .venv/bin/python scripts/bench/validate.py [--seconds 1.5] [--rounds 5]

Per bundle (XBau 2.6, xdomea 3.0.0, XGewerbesteuer 1.4) it validates the fixture documents with

* ``engine``     ``ValidationEngine.validate(bytes)``: safe parse, detection, header, XSD, code lists,
                 Schematron (the full report);
* ``engine-xsd`` the same engine with the bundle's Schematron files removed (shows what Schematron costs);
* ``lxml``       ``etree.fromstring`` + ``XMLSchema.validate`` with the same compiled schema (the floor);
* ``xmlschema``  ``XMLSchema.is_valid`` (what a user would otherwise pick; XSD only).

Schemas are compiled before timing. Each rate is the best of ``--rounds`` rounds of ``--seconds/rounds``
each (the machine is shared; the best round is the least disturbed one, and every column gets the same
treatment). Run to run, the rates still move by about ±5 % on a 2-core machine. Prints a
table and writes ``scripts/bench/results/validate.json``. Targets from issue 3: engine ≤ 1.2x the lxml
cost per document, ≥ 20x faster than xmlschema.

Like with like: ``lxml`` and ``xmlschema`` only parse and check the XSD; ``engine`` also runs the safe
parser's prolog scan, detection, header extraction, code lists and Schematron, so its ratio to ``lxml``
includes all of those. Schematron runs on Saxon-HE only (``hub/validation/schematron.py``).

Then one message at a time (``MESSAGES``: valid and invalid XBau, xdomea and XGewerbesteuer fixtures),
µs per message, next to the figures recorded before the second Schematron engine (XPath 2 → 1 on lxml)
was removed (``results/validate_before_saxon_only.json``, same machine; that file cannot be regenerated,
the code is gone). Last, a pathological 1 MB XBau document, 175,000 empty elements, each one a
Schematron finding: the report stops at 200 findings plus a summary, and the time must stay in seconds.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import lxml
import xmlschema
from lxml import etree

from hub.validation import ValidationEngine
from hub.validation.bundles import Bundle, load_bundles
from hub.validation.schematron import SchematronIncomplete
from hub.xmlsafe import parse

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures" / "xoev"
RESULTS = Path(__file__).resolve().parent / "results" / "validate.json"
# Per-message figures measured before the second Schematron engine (XPath 2 -> 1 on lxml) was removed.
BEFORE = Path(__file__).resolve().parent / "results" / "validate_before_saxon_only.json"

_XBAU = FIXTURES / "xbau-2.6"
CASES: dict[str, tuple[str, list[Path]]] = {  # case -> (bundle folder, fixture documents)
    # a small Kernmodul process message (1.6 KB): fixed per-document costs dominate
    "xbau-2.6 kernmodul": ("xbau-2.6", sorted(_XBAU.glob("constructed_prozess*.xml"))),
    # portal-sized XBau messages (12 to 38 KB): application 0200, participation 0300, statistics 0421
    "xbau-2.6 messages": (
        "xbau-2.6",
        [
            _XBAU / "constructed_baugenehmigung.antrag.0200.xml",
            _XBAU / "constructed_beteiligung.aufforderung.0300.xml",
            _XBAU / "constructed_statistik.baugenehmigung.0421.xml",
        ],
    ),
    "xdomea-3.0.0": ("xdomea-3.0.0", sorted((FIXTURES / "xdomea-3.0.0").glob("*.xml"))),
    "xgewerbesteuer-1.4": ("xgewerbesteuer-1.4", sorted((FIXTURES / "xgewerbesteuer-1.4").glob("*.xml"))),
}


# One message at a time, valid and invalid: (label, bundle folder, fixture). The 0200 application
# (38 KB, 562 elements) is the portal-sized XBau message.
MESSAGES: list[tuple[str, str, Path]] = [
    ("xbau 1120 valid (1.6 KB)", "xbau-2.6", _XBAU / "constructed_prozessnachrichten.eingangsbestaetigung.1120.xml"),
    ("xbau 1120 invalid (XSD)", "xbau-2.6", _XBAU / "constructed_INVALID_wrong_standard_attr.1120.xml"),
    ("xbau 0200 valid (portal)", "xbau-2.6", _XBAU / "constructed_baugenehmigung.antrag.0200.xml"),
    ("xbau 0200 invalid (sch)", "xbau-2.6", _XBAU / "constructed_INVALID_schematron_baugenehmigung.antrag.0200.xml"),
    ("xbau 0300 valid", "xbau-2.6", _XBAU / "constructed_beteiligung.aufforderung.0300.xml"),
    ("xbau 0300 invalid (sch)", "xbau-2.6", _XBAU / "constructed_INVALID_schematron_beteiligung.aufforderung.0300.xml"),
    ("xbau 0421 valid", "xbau-2.6", _XBAU / "constructed_statistik.baugenehmigung.0421.xml"),
    ("xbau 0421 invalid (sch)", "xbau-2.6", _XBAU / "constructed_INVALID_schematron_statistik.baugenehmigung.0421.xml"),
    *[
        (f"xdomea {p.name.split('.')[-2]}", "xdomea-3.0.0", p)
        for p in sorted((FIXTURES / "xdomea-3.0.0").glob("*.xml"))
    ],
    *[  # one message type each, tax year 2023
        (f"xgewst {p.name.split('-')[1]}", "xgewerbesteuer-1.4", p)
        for p in sorted((FIXTURES / "xgewerbesteuer-1.4").glob("GEWST-*-2023-*.xml"))
    ],
]


def _per_message(bundles: dict[str, Bundle], seconds: float, rounds: int) -> dict[str, dict[str, Any]]:
    """µs per message of ``ValidationEngine.validate`` (best of ``rounds``), one fixture at a time."""
    engines = {name: ValidationEngine([bundle]) for name, bundle in bundles.items()}
    rows: dict[str, dict[str, Any]] = {}
    for label, bundle, path in MESSAGES:
        doc = path.read_bytes()
        engine = engines[bundle]
        rate = _rate(engine.validate, [doc], seconds, rounds)
        rows[label] = {
            "file": path.name,
            "kb": round(len(doc) / 1024, 1),
            "verdict": engine.validate(doc).verdict,
            "us_per_msg": round(1e6 / rate, 1),
        }
    return rows


def _rate(func: Callable[[bytes], object], docs: list[bytes], seconds: float, rounds: int) -> float:
    """Documents per second, best of ``rounds``: each round repeats the whole set for ``seconds/rounds``."""
    for doc in docs:
        func(doc)
    best = 0.0
    for _ in range(rounds):
        count, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds / rounds:
            for doc in docs:
                func(doc)
            count += len(docs)
        best = max(best, count / elapsed)
    return best


def _pathological(bundle: Bundle) -> dict[str, object]:
    """A 1 MB XBau 1120 whose Kernmodul header is followed by empty elements, each a Schematron finding.

    ``SchematronRules.check`` on the XSD-checked tree (the XSD would stop such a document first: this
    times the Schematron engine alone, which runs on whatever passes the XSD of some bundle).
    """
    rules = bundle.compiled().schematron
    assert rules is not None
    fixture = (_XBAU / "constructed_prozessnachrichten.eingangsbestaetigung.1120.xml").read_bytes()
    root = parse(fixture)
    count = 0
    while len(etree.tostring(root)) < 1024 * 1024:
        for _ in range(5000):
            etree.SubElement(root, "leer")
        count += 5000
    size = len(etree.tostring(root))
    started = time.perf_counter()
    try:
        findings = rules.check(root)
    except SchematronIncomplete as incomplete:
        findings = incomplete.findings
    seconds = time.perf_counter() - started
    return {"kb": round(size / 1024), "empty_elements": count, "findings_in_report": len(findings),
            "summary": findings[-1].message, "seconds": round(seconds, 2)}


def _bench_bundle(
    bundle: Bundle, docs: list[bytes], seconds: float, rounds: int
) -> dict[str, float]:
    engine = ValidationEngine([bundle])
    without_sch = ValidationEngine(
        [replace(bundle, manifest=bundle.manifest.model_copy(update={"schematron": []}), _compiled=None)]
    )
    entry = bundle.folder / bundle.manifest.entry
    schema = etree.XMLSchema(etree.parse(str(entry)))
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    xs_schema = xmlschema.XMLSchema(str(entry))

    def bare(doc: bytes) -> bool:
        return bool(schema.validate(etree.fromstring(doc, parser)))

    return {
        "engine": _rate(engine.validate, docs, seconds, rounds),
        "engine-xsd": _rate(without_sch.validate, docs, seconds, rounds),
        "lxml": _rate(bare, docs, seconds, rounds),
        "xmlschema": _rate(lambda d: xs_schema.is_valid(io.BytesIO(d)), docs, seconds, rounds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per measurement (the best counts)")
    args = parser.parse_args()
    bundles = {b.folder.name: b for b in load_bundles([REPO / "xsd"])[0]}
    rows: dict[str, dict[str, float]] = {}
    for name, (bundle, paths) in CASES.items():
        docs = [p.read_bytes() for p in paths]
        rows[name] = _bench_bundle(bundles[bundle], docs, args.seconds, args.rounds)
        rows[name]["documents"] = len(docs)
        rows[name]["avg_bytes"] = sum(map(len, docs)) / len(docs)

    header = (
        f"{'case':<21}{'docs':>5}{'KB':>6}{'engine/s':>10}{'eng-xsd/s':>11}{'lxml/s':>9}{'xmlschema/s':>13}"
        f"{'engine÷lxml':>13}{'eng-xsd÷lxml':>14}{'engine vs xmlschema':>21}"
    )
    print(header)
    print("-" * len(header))
    for name, r in rows.items():
        print(
            f"{name:<21}{int(r['documents']):>5}{r['avg_bytes'] / 1024:>6.1f}{r['engine']:>10.0f}"
            f"{r['engine-xsd']:>11.0f}{r['lxml']:>9.0f}"
            f"{r['xmlschema']:>13.0f}{r['lxml'] / r['engine']:>12.2f}x{r['lxml'] / r['engine-xsd']:>13.2f}x"
            f"{r['engine'] / r['xmlschema']:>19.1f}x faster"
        )
    messages = _per_message(bundles, args.seconds, args.rounds)
    before = json.loads(BEFORE.read_text())["per_message_us"] if BEFORE.is_file() else {}
    print(f"\n{'message':<27}{'KB':>6}{'verdict':>10}{'µs/msg':>10}{'before':>10}{'Δ µs':>9}")
    for label, m in messages.items():
        old = before.get(label, {}).get("us_per_msg")
        delta = f"{float(m['us_per_msg']) - old:>+9.0f}" if isinstance(old, int | float) else f"{'':>9}"
        was = f"{old:>10.0f}" if isinstance(old, int | float) else f"{'-':>10}"
        print(f"{label:<27}{m['kb']:>6}{m['verdict']:>10}{m['us_per_msg']:>10.0f}{was}{delta}")
    if before:
        print(f"(before: {BEFORE.relative_to(REPO)}, recorded on the same machine before the lxml path was removed)")
    worst = _pathological(bundles["xbau-2.6"])
    print(
        f"\npathological: {worst['kb']} KB, {worst['empty_elements']} empty elements: Schematron in "
        f"{worst['seconds']} s, {worst['findings_in_report']} findings in the report ({worst['summary']})"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "python": platform.python_version(),
                "lxml": lxml.__version__,
                "xmlschema": xmlschema.__version__,
                "seconds_per_measurement": args.seconds,
                "rounds_per_measurement": args.rounds,
                "documents_per_second": rows,
                "cost_ratio_engine_to_lxml": {n: r["lxml"] / r["engine"] for n, r in rows.items()},
                "speedup_engine_vs_xmlschema": {n: r["engine"] / r["xmlschema"] for n, r in rows.items()},
                "per_message_us": messages,
                "pathological_1mb": worst,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwritten to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
