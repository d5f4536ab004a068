"""Keys are slow to make (RSA 4096): one set per test session."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from channels.fitconnect import KeyFiles
from tests.fitconnect_keys import keys, other_keys

__all__ = ["keys", "other_keys"]


@pytest.fixture(scope="session")
def destination_id() -> str:
    return str(uuid.uuid4())


@pytest.fixture(scope="session")
def enc_public(keys: KeyFiles) -> dict[str, Any]:
    return dict(json.loads(keys.encryption_public.read_text()))


@pytest.fixture(scope="session")
def sig_public(keys: KeyFiles) -> dict[str, Any]:
    return dict(json.loads(keys.signing_public.read_text()))
