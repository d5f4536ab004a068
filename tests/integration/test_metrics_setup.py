"""Multi-process metrics set-up (in a child process: it switches prometheus-client's mode for good)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

pytestmark = pytest.mark.slow

CHILD = """
import sys
from pathlib import Path
from hub import metrics
from xhub.config import HubConfig
from xhub.observability import setup_metrics
config = HubConfig.model_validate({"metrics": {"directory": sys.argv[1]}})
print(setup_metrics(config, clean=sys.argv[2] == "clean"))
metrics.record_purged(3)
metrics.record_poll("fitconnect", ok=False)
"""


def run_child(folder: Path, mode: str, **env: str) -> str:
    result = subprocess.run([sys.executable, "-c", CHILD, str(folder), mode], capture_output=True, text=True,
                            timeout=60, env={**{k: v for k, v in os.environ.items()
                                                if k != "PROMETHEUS_MULTIPROC_DIR"}, **env})
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def scrape(folder: Path) -> str:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))  # type: ignore[no-untyped-call]
    return generate_latest(registry).decode()


def test_serve_folds_the_counts_of_dead_processes_and_keeps_the_living(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir(mode=0o755)
    run_child(folder, "keep")  # a worker that has ended: its file stays until a serve starts
    run_child(folder, "keep")
    dead = sorted(folder.glob("counter_[0-9]*.db"))
    assert len(dead) == 2 and "xhub_purged_messages_total 6.0" in scrape(folder)
    living = folder / f"counter_{os.getpid()}.db"  # this test's process stands for a worker still running
    living.write_bytes(dead[0].read_bytes())
    broken = folder / "counter_999999999.db"  # a process killed while its file was being made
    broken.write_bytes(b"")

    assert run_child(folder, "clean") == str(folder)
    assert not any(p.exists() for p in [*dead, broken]) and living.exists()
    assert (folder / "counter_archive.db").exists()
    assert folder.stat().st_mode & 0o777 == 0o700
    text = scrape(folder)  # 3 + 3 folded, 3 of the living one, 3 of the new serve: never fewer than before
    assert "xhub_purged_messages_total 12.0" in text
    assert 'xhub_polls_total{channel="fitconnect",result="failed"} 4.0' in text
    living.unlink()
    assert run_child(folder, "clean") and "xhub_purged_messages_total 12.0" in scrape(folder)


def test_workers_add_up_and_a_worker_does_not_clean(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    run_child(folder, "clean")
    run_child(folder, "keep")  # a second process (a worker): the first one's counts stay
    assert "xhub_purged_messages_total 6.0" in scrape(folder)


def test_the_operator_chooses_the_folder(tmp_path: Path) -> None:
    chosen = tmp_path / "chosen"
    chosen.mkdir(mode=0o750)
    assert run_child(tmp_path / "ignored", "clean", PROMETHEUS_MULTIPROC_DIR=str(chosen)) == str(chosen)
    assert not (tmp_path / "ignored").exists() and "xhub_purged_messages_total 3.0" in scrape(chosen)
    assert chosen.stat().st_mode & 0o777 == 0o750  # the operator's folder, the operator's mode
