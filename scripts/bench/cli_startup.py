"""Benchmark: how long ``xhub --help`` and ``xhub validate one.xml`` take to start, before and after.

"Before" is the tree of another revision (``--base``, default ``main``), exported with ``git archive`` into a
temporary folder and run with this checkout's interpreter and libraries (the folder comes first on
``sys.path``, so its ``xhub``, ``hub``, … are the ones imported); "after" is this checkout. Both run in the
same loop, alternately, ``--runs`` times each; the table has the median wall and CPU time (user + system of
the child), and the floors: the bare interpreter and ``import typer``. Also which of the heavy libraries
each command imported.

    .venv/bin/python scripts/bench/cli_startup.py [--base main] [--runs 9]
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, report

SAMPLE = ROOT / "tests/fixtures/xoev/xgewerbesteuer-1.4"
HEAVY = ("sqlalchemy", "fastapi", "uvicorn", "zeep", "saxonche", "httpx", "jwcrypto", "alembic")
PROBE = ("import sys\nfrom xhub.cli import app\ntry:\n    app(sys.argv[1:], prog_name='xhub')\nexcept SystemExit:\n"
         "    pass\nsys.stdout.flush()\n"
         f"print('HEAVY', ','.join(m for m in {HEAVY!r} if m in sys.modules) or '-', file=sys.stderr)\n")


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def heavy(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          check=False)
    return next((line.split(" ", 1)[1] for line in done.stderr.splitlines() if line.startswith("HEAVY ")), "?")


def export(revision: str, into: Path) -> None:
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")


def main(args: argparse.Namespace) -> None:
    sample = str(sorted(SAMPLE.glob("*.xml"))[0])
    commands = {"xhub --help": ["--help"], "xhub validate one.xml": ["validate", sample]}
    floors = {"python -c pass": [sys.executable, "-c", "pass"],
              "python -c 'import typer'": [sys.executable, "-c", "import typer"]}
    with tempfile.TemporaryDirectory(prefix="xhub-cli-startup-") as tmp:
        base = Path(tmp) / "base"
        export(args.base, base)
        cwd = Path(tmp) / "cwd"  # no hub.toml here: the defaults, as on a fresh machine
        cwd.mkdir()
        trees = {args.base: base, "this checkout": ROOT}
        envs = {name: {**os.environ, "PYTHONPATH": str(tree)} for name, tree in trees.items()}
        samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for _ in range(args.runs):  # alternate, so that a busy moment of the machine hits both alike
            for label, argv in commands.items():
                for name in trees:
                    samples.setdefault((label, name), []).append(
                        timed([sys.executable, "-m", "xhub", *argv], cwd, envs[name]))
            for label, argv in floors.items():
                samples.setdefault((label, "-"), []).append(timed(argv, cwd, dict(os.environ)))
        rows: list[dict[str, Any]] = []
        for (label, name), values in samples.items():
            rows.append({
                "command": label, "tree": name,
                "wall_median_s": round(statistics.median(v[0] for v in values), 3),
                "cpu_median_s": round(statistics.median(v[1] for v in values), 3),
                "heavy_imports": heavy(commands[label], cwd, envs[name]) if label in commands else "",
            })
    for label in commands:
        before = next(r for r in rows if r["command"] == label and r["tree"] == args.base)
        after = next(r for r in rows if r["command"] == label and r["tree"] == "this checkout")
        after["x_base_wall"] = round(after["wall_median_s"] / before["wall_median_s"], 2)
    report("cli_startup",
           [("command", "command"), ("tree", "tree"), ("wall_median_s", "wall s (median)"),
            ("cpu_median_s", "CPU s (median)"), ("x_base_wall", f"x {args.base}"), ("heavy_imports", "heavy imports")],
           rows, Path(args.out), extra={"runs": args.runs, "base": args.base, "load_average": os.getloadavg()})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="the revision to compare with")
    parser.add_argument("--runs", type=int, default=9)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "cli_startup.json"))
    main(parser.parse_args())
