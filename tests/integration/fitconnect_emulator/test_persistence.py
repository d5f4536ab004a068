"""State survives a restart: clients, tokens, destinations, submissions, attachments, event log, signing key."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx

from sandbox.fitconnect import Emulator, Status, create_fitconnect_emulator
from tests.integration.fitconnect_emulator.conftest import LEIKA, Keys, Setup, add_destination, make_emulator
from tests.integration.fitconnect_emulator.parties import Subscriber, event_names, sdk_sender, token
from xhub.runtime import serve_in_thread

PDF = b"%PDF-1.7 persistent"


def test_state_survives_a_restart(tmp_path: Path, keys: Keys) -> None:
    state = tmp_path / "state"
    emu = make_emulator(state, keys)
    dest = add_destination(emu, keys)
    sender, subscriber = emu.add_client("sender", [dest]), emu.add_client("subscriber", [dest])
    with serve_in_thread(create_fitconnect_emulator(emu)) as url:
        setup = Setup(emu, url, dest, sender, subscriber, keys)
        sent = sdk_sender(setup).submission(dest, LEIKA, data={"$schema": "urn:x:y"}, attachments=[PDF])
        old_token = token(url, *subscriber)
        jwks = httpx.get(f"{url}/.well-known/jwks.json").json()
    emu.close()

    again = Emulator(state)  # no seed: the key comes from the state directory
    try:
        with serve_in_thread(create_fitconnect_emulator(again)) as url:
            setup = Setup(again, url, dest, sender, subscriber, keys)
            assert httpx.get(f"{url}/.well-known/jwks.json").json() == jwks
            assert httpx.get(f"{url}/v1/submissions",
                             headers={"Authorization": f"Bearer {old_token}"}).json()["totalCount"] == 1
            sub = Subscriber(setup)
            try:
                submission = sub.fetch(sent["submissionId"])
                assert list(submission["attachment_bodies"].values()) == [PDF]
                assert sub.post_event(sent["caseId"], sub.accept(submission)).status_code == 204
            finally:
                sub.close()
            assert event_names(setup, sent["caseId"], token(url, *sender)) == [
                "create-submission", "submit-submission", "accept-submission"]
    finally:
        again.close()
    reopened = Emulator(state)
    try:
        assert reopened.submission_status(sent["submissionId"]) is Status.ACCEPTED
        assert [s["events"] for s in reopened.overview()] == [
            ["create-submission", "submit-submission", "accept-submission"]]
    finally:
        reopened.close()


def test_a_new_state_directory_gets_its_own_rsa_4096_signing_key(tmp_path: Path) -> None:
    emu = Emulator(tmp_path / "fresh")
    try:
        (key,) = emu.jwks()["keys"]
        assert key["kty"] == "RSA" and key["alg"] == "PS512" and len(key["n"]) >= 683 and "d" not in key
        key_file = tmp_path / "fresh" / "signing-key.jwk"
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    finally:
        emu.close()
    emu = Emulator(tmp_path / "fresh")
    try:
        assert emu.jwks()["keys"][0]["kid"] == key["kid"]
    finally:
        emu.close()
