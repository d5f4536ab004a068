"""Fixtures: one set of RSA-4096 keys per session (the public SDK refuses smaller encryption keys), a fresh
emulator state per test, served on loopback, with a destination, a sender and a subscriber."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jwcrypto import jwk

from sandbox.fitconnect import Emulator, create_fitconnect_emulator
from xhub.runtime import serve_in_thread

LEIKA = "urn:de:fim:leika:leistung:99050012104000"


@dataclass(frozen=True)
class Keys:
    encryption: jwk.JWK  # private; the destination's public half goes to the emulator
    signature: jwk.JWK
    server: jwk.JWK  # seed for the emulator's own signing key

    @staticmethod
    def public(key: jwk.JWK) -> dict[str, Any]:
        return dict(json.loads(key.export_public()))


def _key(kid: str, alg: str, use: str) -> jwk.JWK:
    return jwk.JWK.generate(kty="RSA", size=4096, kid=kid, alg=alg, use=use)


@pytest.fixture(scope="session")
def keys() -> Keys:
    return Keys(encryption=_key("enc-key-0001", "RSA-OAEP-256", "enc"),
                signature=_key("sig-key-0001", "PS512", "sig"),
                server=_key("emulator-signing-key", "PS512", "sig"))


@dataclass
class Setup:
    emu: Emulator
    url: str
    destination_id: str
    sender: tuple[str, str]
    subscriber: tuple[str, str]
    keys: Keys


def make_emulator(state_dir: Path, keys: Keys) -> Emulator:
    return Emulator(state_dir, signing_key=keys.server)


def add_destination(emu: Emulator, keys: Keys, **options: Any) -> str:
    return emu.add_destination(encryption_jwk=Keys.public(keys.encryption), signature_jwk=Keys.public(keys.signature),
                               service_identifiers=[LEIKA], **options)


@pytest.fixture
def setup(tmp_path: Path, keys: Keys) -> Iterator[Setup]:
    emu = make_emulator(tmp_path / "state", keys)
    dest = add_destination(emu, keys)
    sender = emu.add_client("sender", destinations=[dest])
    subscriber = emu.add_client("subscriber", destinations=[dest])
    try:
        with serve_in_thread(create_fitconnect_emulator(emu)) as url:
            yield Setup(emu, url, dest, sender, subscriber, keys)
    finally:
        emu.close()


@pytest.fixture
def sub(setup: Setup) -> Iterator[Any]:
    """The subscriber (a :class:`~tests.integration.fitconnect_emulator.parties.Subscriber`)."""
    from tests.integration.fitconnect_emulator.parties import Subscriber

    subscriber = Subscriber(setup)
    try:
        yield subscriber
    finally:
        subscriber.close()
