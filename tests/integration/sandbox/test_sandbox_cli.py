"""Each stand-in runs with one command."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest
from typer.testing import CliRunner

from sandbox.cli import sandbox_app
from tests.support import wait_for
from xhub.runtime import free_port


def test_the_commands_are_listed() -> None:
    result = CliRunner().invoke(sandbox_app, ["--help"])
    assert result.exit_code == 0
    for command in ("vehicle-registry", "trade-register", "recorder"):
        assert command in result.output


def test_a_malformed_user_is_refused() -> None:
    result = CliRunner().invoke(sandbox_app, ["vehicle-registry", "--user", "no-colon"])
    assert result.exit_code == 2


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize(("command", "probe"), [
    ("vehicle-registry", "/VehicleRegistry?wsdl"), ("trade-register", "/openapi.json"), ("recorder", "/_received")])
def test_a_stand_in_runs_in_the_foreground(command: str, probe: str) -> None:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "sandbox.cli", command, "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: _up(f"http://127.0.0.1:{port}{probe}"), timeout=30)
    finally:
        process.terminate()
        # uvicorn shuts down gracefully, then re-raises the signal so that the exit status tells why it ended.
        assert process.wait(timeout=30) in (0, -signal.SIGTERM)
