"""`xhub demo --once`: the quickstart's main job runs end to end and checks its own outcome."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_demo_once_reaches_every_expected_state(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "xhub", "--log-level", "warning", "demo", "--once", "--port", "0",
         "--workdir", str(tmp_path / "demo")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "11 of 11 samples reached their expected state" in result.stdout
    assert "accepted is what the sender sees" in result.stdout  # FIT-Connect: the sender got its answer
    assert "after 1 retry" in result.stdout  # the stand-in's 503 was retried, not lost
    endpoints = json.loads((tmp_path / "demo" / "endpoints.json").read_text())
    assert {"token_url", "submission_api_url", "sender_client_id", "sender_client_secret",
            "destination_id"} <= set(endpoints["fitconnect"])
    config = (tmp_path / "demo" / "hub.toml").read_text()
    listed = subprocess.run([sys.executable, "-m", "xhub", "-c", str(tmp_path / "demo" / "hub.toml"), "messages",
                             "list", "--status", "dead"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and len(listed.stdout.strip().splitlines()) == 2, listed.stdout + listed.stderr
    assert "memmingen" in listed.stdout and "kempten" in listed.stdout  # one dead message in each town
    console = endpoints["console"]
    assert console["url"].endswith("/console/login")
    roles = {(u["role"], u["tenant"]) for u in console["users"]}
    assert {("admin", None), ("operator", "memmingen"), ("viewer", "memmingen"), ("operator", "kempten")} <= roles
    assert all(len(u["password"]) >= 16 for u in console["users"])
    assert "token_sha256" in config and "xhub_" not in config  # only hashes in the configuration


def test_demo_secrets_are_private(tmp_path: Path) -> None:
    """Everything under the work folder holds a secret or personal data: folders 0700, files 0600."""
    workdir = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "xhub", "--log-level", "warning", "demo", "--once", "--port", "0",
         "--workdir", str(workdir)], cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    keys = [p for p in (workdir / "fitconnect-keys").glob("*.jwk.json") if ".pub." not in p.name]
    assert len(keys) == 2 and (workdir / "endpoints.json").is_file() and (workdir / "hub.toml").is_file()
    loose = [f"{p.relative_to(workdir)} {oct(p.stat().st_mode & 0o777)}" for p in [workdir, *workdir.rglob("*")]
             if not p.is_symlink() and p.stat().st_mode & 0o077]
    assert not loose, loose
    again = subprocess.run(  # a folder the demo did not make is never deleted
        [sys.executable, "-m", "xhub", "demo", "--once", "--port", "0", "--workdir", str(tmp_path)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "was not made by `xhub demo`" in again.stderr and workdir.is_dir()
