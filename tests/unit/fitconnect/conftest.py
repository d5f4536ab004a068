"""Keys are slow to make (RSA 4096): one set per test session."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from channels.fitconnect import KeyFiles, generate_destination_keys


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyFiles:
    return generate_destination_keys(tmp_path_factory.mktemp("keys"), name="dest")


@pytest.fixture(scope="session")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyFiles:
    """A second destination's keys: "the wrong key"."""
    return generate_destination_keys(tmp_path_factory.mktemp("other"), name="other")


@pytest.fixture(scope="session")
def destination_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture(scope="session")
def enc_public(keys: KeyFiles) -> dict[str, Any]:
    return dict(json.loads(keys.encryption_public.read_text()))


@pytest.fixture(scope="session")
def sig_public(keys: KeyFiles) -> dict[str, Any]:
    return dict(json.loads(keys.signing_public.read_text()))


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path / "work"
