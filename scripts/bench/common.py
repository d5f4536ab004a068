"""Helpers shared by the benchmark scripts: processes, ports, PostgreSQL, the printed table and the JSON."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from hub.db import normalise_url  # noqa: E402
from xhub.runtime import free_port  # noqa: E402, F401  (re-exported for the benchmarks)


def wait_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def xhub(config: Path | None, *args: str) -> list[str]:
    """argv for an ``xhub`` process with this interpreter."""
    head = [sys.executable, "-m", "xhub", "--log-level", "warning"]
    return [*head, "--config", str(config), *args] if config else [*head, *args]


def postgres_url(database: str) -> str | None:
    """A fresh, empty database on the benchmark server, or ``None`` (its rows are then skipped)."""
    base = os.environ.get("HUB_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
            conn.execute(text(f"CREATE DATABASE {database}"))
    except Exception as exc:  # no server here: say so and go on without those rows
        print(f"PostgreSQL not available ({type(exc).__name__}); skipping its rows", file=sys.stderr)
        return None
    finally:
        admin.dispose()
    return normalise_url(base).set(database=database).render_as_string(hide_password=False)


def proc_cpu(pids: list[int] | set[int]) -> float:
    """CPU seconds (user + system) of these processes so far, from ``/proc/<pid>/stat`` (0 for a process gone,
    or on a server that is not on this machine)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def report(name: str, columns: list[tuple[str, str]], rows: list[dict[str, Any]], out: Path,
           extra: dict[str, Any] | None = None) -> None:
    """Print ``rows`` as a table (``columns`` = (key, heading)) and write them with machine facts as JSON."""
    widths = [max(len(h), *(len(str(r.get(k, ""))) for r in rows)) for k, h in columns]
    print("  ".join(h.rjust(w) for (_, h), w in zip(columns, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(r.get(k, "")).rjust(w) for (k, _), w in zip(columns, widths, strict=True)))
    result = {
        "benchmark": name,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        **(extra or {}),
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten {out}")
