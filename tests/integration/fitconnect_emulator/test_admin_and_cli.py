"""The emulator is set up over HTTP under /_admin/, and runs as ``xhub sandbox fitconnect``."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from sandbox.cli import sandbox_app
from tests.integration.fitconnect_emulator.conftest import LEIKA, Keys, Setup
from tests.integration.fitconnect_emulator.parties import sdk_sender
from tests.support import wait_for
from xhub.runtime import free_port


def test_setup_over_http(setup: Setup, keys: Keys) -> None:
    admin = f"{setup.url}/_admin"
    r = httpx.post(f"{admin}/destinations", json={
        "encryptionKey": keys.public(keys.encryption), "signingKey": keys.public(keys.signature),
        "services": [LEIKA], "regions": ["DE09"]})
    assert r.status_code == 201, r.text
    dest = r.json()["destinationId"]
    sender = httpx.post(f"{admin}/clients", json={"role": "sender", "destinations": [dest]})
    assert sender.status_code == 201
    assert httpx.post(f"{admin}/clients", json={"role": "admin"}).status_code == 400
    assert httpx.post(f"{admin}/clients", json={"role": "sender", "destinations": ["nope"]}).status_code == 400

    credentials = Setup(setup.emu, setup.url, dest, (sender.json()["clientId"], sender.json()["clientSecret"]),
                        setup.subscriber, keys)
    sent = sdk_sender(credentials).submission(dest, LEIKA, data={"$schema": "urn:x:y"})
    overview = httpx.get(f"{admin}/submissions").json()
    assert [(s["submissionId"], s["status"]) for s in overview] == [(sent["submissionId"], "submitted")]

    assert httpx.patch(f"{admin}/destinations/{dest}", json={"status": "inactive"}).status_code == 204
    assert httpx.patch(f"{admin}/destinations/unknown", json={"status": "inactive"}).status_code == 404
    with pytest.raises(ValueError, match="not active"):
        sdk_sender(credentials).create_submission(dest, LEIKA)


def test_the_command_is_listed() -> None:
    result = CliRunner().invoke(sandbox_app, ["fitconnect", "--help"])
    assert result.exit_code == 0
    assert "--state-dir" in result.output


@pytest.mark.slow
def test_the_command_serves_and_keeps_its_state(tmp_path: Path) -> None:
    port = free_port()
    state = tmp_path / "emulator"
    proc = subprocess.Popen([sys.executable, "-m", "sandbox.cli", "fitconnect", "--port", str(port),
                             "--state-dir", str(state)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        def up() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/v1/info", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(up, timeout=60)
        assert httpx.get(f"http://127.0.0.1:{port}/.well-known/jwks.json").json()["keys"][0]["alg"] == "PS512"
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=30)[0].decode()
    assert "FIT-Connect emulator on http://127.0.0.1:" in output
    assert (state / "emulator.sqlite3").exists() and (state / "signing-key.jwk").exists()
