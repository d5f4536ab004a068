"""Benchmark: mapping cost per message (µs) of each shipped mapping, next to the bare lxml cost.

    .venv/bin/python scripts/bench/mapping.py [--seconds 0.5] [--rounds 5]

For every golden input of every mapping in ``mappings/`` it times

* ``engine``  ``Mapping.render(payload, context=…)``: safe parse (or JSON → tree), every rule
              (conditions, alternatives, conversions, code tables), JSON serialisation or XSLT + bytes;
* ``bare``    the same work done with lxml directly and no engine: ``etree.fromstring`` (for a JSON
              source: ``json.loads`` + the JSON → XML tree, which lxml cannot do), then either every
              XPath expression the engine evaluated for this input, called on the same nodes in the same
              order (recorded from one engine run), or the same stylesheet applied with the same
              parameters and serialised;
* ``parse``   the parsing part of ``bare`` alone.

``overhead`` = engine - bare: what the rule walk, conversions, error bookkeeping, the safe parser's
checks and the lock cost per message. Each figure is the best of ``--rounds`` rounds (the machine is
shared). Prints a table and writes ``scripts/bench/results/mapping.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lxml
from lxml import etree

from hub.mapping import Mapping, load_mappings
from hub.mapping.golden import golden_context
from hub.mapping.jsontree import json_to_tree
from hub.mapping.xpath import Expr

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results" / "mapping.json"
_PARSER = etree.XMLParser(resolve_entities=False, no_network=True)


def per_call_us(fn: Callable[[], object], seconds: float, rounds: int) -> float:
    timer = timeit.Timer(fn)
    number, elapsed = timer.autorange()
    number = max(1, int(number * seconds / max(elapsed, 1e-9)))
    return min(timer.repeat(repeat=rounds, number=number)) / number * 1e6


def child_indexes(node: etree._Element) -> tuple[int, ...]:
    """Where ``node`` sits: child indexes from the root element down."""
    steps: list[int] = []
    parent = node.getparent()
    while parent is not None:
        steps.append(parent.index(node))
        node, parent = parent, parent.getparent()
    return tuple(reversed(steps))


def record_xpath_calls(
    mapping: Mapping, payload: bytes, context: dict[str, str | None]
) -> list[tuple[Expr, tuple[int, ...]]]:
    """The (expression, node position) pairs the engine evaluates for this payload, in order."""
    calls: list[tuple[Expr, tuple[int, ...]]] = []
    original = Expr.__call__

    def recording(self: Expr, node: etree._Element, variables: Any) -> Any:
        calls.append((self, child_indexes(node)))
        return original(self, node, variables)

    Expr.__call__ = recording  # type: ignore[method-assign]
    try:
        mapping.render(payload, context=context)
    finally:
        Expr.__call__ = original  # type: ignore[method-assign]
    return calls


def bare_parse(mapping: Mapping) -> Callable[[bytes], etree._Element]:
    if mapping.source == "json":
        return json_to_tree
    return lambda payload: etree.fromstring(payload, _PARSER)


def bare_xpath(mapping: Mapping, payload: bytes, context: dict[str, str | None]) -> Callable[[], object]:
    parse = bare_parse(mapping)
    calls = record_xpath_calls(mapping, payload, context)
    variables = {k: v or "" for k, v in context.items()}
    plan = [(expr.compiled, path, {n: variables.get(n, "") for n in expr.variables}) for expr, path in calls]

    def run() -> object:
        root = parse(payload)
        nodes: dict[tuple[int, ...], etree._Element] = {}
        result = None
        for compiled, path, bound in plan:
            node = nodes.get(path)
            if node is None:
                node = root
                for index in path:
                    node = node[index]
                nodes[path] = node
            result = compiled(node, **bound)
        return result

    return run


def bare_xslt(mapping: Mapping, payload: bytes, context: dict[str, str | None]) -> Callable[[], object]:
    parse = bare_parse(mapping)
    stylesheet = mapping._stylesheet
    assert stylesheet is not None
    transform = etree.XSLT(etree.parse(str(stylesheet.path)))
    params = {k: etree.XSLT.strparam(v or "") for k, v in context.items()}
    params.update({k: etree.XSLT.strparam(t.render(context) or "") for k, t in stylesheet.params.items()})
    return lambda: bytes(transform(parse(payload), **params))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    mappings = load_mappings(REPO / "mappings")
    rows: list[dict[str, Any]] = []
    for name, mapping in sorted(mappings.items()):
        for inp, _ in mapping.goldens:
            payload = inp.read_bytes()
            context = golden_context(inp)
            parse = bare_parse(mapping)

            def render(m: Mapping = mapping, p: bytes = payload, c: dict[str, str | None] = context) -> object:
                return m.render(p, context=c)

            def parse_only(f: Callable[[bytes], etree._Element] = parse, p: bytes = payload) -> object:
                return f(p)

            engine = per_call_us(render, args.seconds, args.rounds)
            if mapping.output == "xml":
                bare_fn, kind, expressions = bare_xslt(mapping, payload, context), "xslt", 1
            else:
                bare_fn, kind = bare_xpath(mapping, payload, context), "xpath"
                expressions = len(record_xpath_calls(mapping, payload, context))
            bare = per_call_us(bare_fn, args.seconds, args.rounds)
            parse_us = per_call_us(parse_only, args.seconds, args.rounds)
            rows.append({
                "mapping": name, "case": inp.name.split(".input.")[0], "bytes": len(payload), "kind": kind,
                "evaluations": expressions, "engine_us": round(engine, 1), "bare_us": round(bare, 1),
                "parse_us": round(parse_us, 1), "overhead_us": round(engine - bare, 1),
                "engine_per_bare": round(engine / bare, 2),
            })
    header = f"{'mapping':36} {'case':38} {'bytes':>6} {'kind':5} {'evals':>5} {'engine':>8} {'bare':>8} " \
             f"{'parse':>7} {'overhead':>9} {'ratio':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['mapping']:36} {r['case']:38} {r['bytes']:>6} {r['kind']:5} {r['evaluations']:>5} "
              f"{r['engine_us']:>8.1f} {r['bare_us']:>8.1f} {r['parse_us']:>7.1f} {r['overhead_us']:>9.1f} "
              f"{r['engine_per_bare']:>6.2f}")
    print("µs per message; evals = XPath evaluations per message (1 = one XSLT run); ratio = engine / bare")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "python": platform.python_version(), "lxml": ".".join(map(str, lxml.etree.LXML_VERSION)),
        "seconds_per_round": args.seconds, "rounds": args.rounds, "unit": "microseconds per message", "cases": rows,
    }, indent=2) + "\n", encoding="utf-8")
    print(f"written: {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
