"""Benchmark: µs per message of ``ValidationEngine.validate``, this tree against an earlier commit, same run.

    .venv/bin/python scripts/bench/validate_vs.py [--rev cde800d] [--rounds 5] [--seconds 0.3]

The messages are ``MESSAGES`` of ``scripts/bench/validate.py`` (valid and invalid XBau, xdomea and
XGewerbesteuer fixtures of this tree). ``hub/`` and ``xsd/`` of ``--rev`` are unpacked (``git archive``)
into a temporary folder; each round runs one child process per side, alternately, each timing every
message (best of 5 repetitions of ``--seconds``/5). The figure per message and side is the best over the
rounds: the machine is shared, and the alternation gives both sides the same disturbances. Prints a table
and writes ``scripts/bench/results/validate_vs.json``.

The default ``--rev`` is the last commit with the second Schematron engine (XPath 2 → 1 on lxml), so the
table shows what one engine on Saxon costs per message.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESULTS = Path(__file__).resolve().parent / "results" / "validate_vs.json"


def _child(seconds: float) -> None:
    """Time every message with the ``hub`` on ``sys.path`` and the ``xsd/`` beside it; JSON to stdout."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import validate  # the MESSAGES list and the timing loop

    import hub
    from hub.validation.bundles import load_bundles

    xsd = Path(hub.__file__).resolve().parents[1] / "xsd"
    bundles = {b.folder.name: b for b in load_bundles([xsd])[0]}
    rows = validate._per_message(bundles, seconds, 5)
    print(json.dumps({label: row["us_per_msg"] for label, row in rows.items()}))


def _unpack(rev: str, target: Path) -> None:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", rev, "hub", "xsd"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")


def _run(tree: Path, seconds: float) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--seconds", str(seconds)],
        check=True, capture_output=True, text=True, env=env, cwd=tree,
    ).stdout
    return {label: float(us) for label, us in json.loads(out.splitlines()[-1]).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rev", default="cde800d", help="the commit to compare with")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (the best counts)")
    parser.add_argument("--seconds", type=float, default=0.3, help="time per message and round")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.seconds)
        return
    best: dict[str, dict[str, float]] = {"before": {}, "after": {}}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        _unpack(args.rev, base)
        for _ in range(args.rounds):
            for side, tree in (("before", base), ("after", REPO)):
                for label, us in _run(tree, args.seconds).items():
                    best[side][label] = min(us, best[side].get(label, us))
    print(f"{'message':<27}{args.rev + ' µs':>14}{'now µs':>10}{'Δ µs':>9}{'ratio':>8}")
    for label, was in best["before"].items():
        now = best["after"][label]
        print(f"{label:<27}{was:>14.0f}{now:>10.0f}{now - was:>+9.0f}{now / was:>7.2f}x")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"rev": args.rev, "rounds": args.rounds, "seconds_per_message_and_round": args.seconds,
             "python": sys.version.split()[0], "us_per_message": best},
            indent=2, ensure_ascii=False,
        )
        + "\n"
    )
    print(f"\nwritten to {RESULTS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
