"""`xhub demo --once`: the quickstart's main job runs end to end and checks its own outcome."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_once_reaches_every_expected_state(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hub", "--log-level", "warning", "demo", "--once", "--port", "0",
         "--workdir", str(tmp_path / "demo")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "8 of 8 samples reached their expected state" in result.stdout
    assert "after 1 retry" in result.stdout  # the stand-in's 503 was retried, not lost
    assert (tmp_path / "demo" / "endpoints.json").exists()
    config = (tmp_path / "demo" / "hub.toml").read_text()
    listed = subprocess.run([sys.executable, "-m", "hub", "-c", str(tmp_path / "demo" / "hub.toml"), "messages",
                             "list", "--status", "dead"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and len(listed.stdout.strip().splitlines()) == 1, listed.stdout + listed.stderr
    assert "token_sha256" in config and "xhub_" not in config  # only hashes in the configuration
