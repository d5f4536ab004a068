"""A FIT-Connect destination's keys for the tests (slow to make, RSA 4096: once per session and conftest)."""

from __future__ import annotations

import pytest

from channels.fitconnect import KeyFiles, generate_destination_keys


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyFiles:
    return generate_destination_keys(tmp_path_factory.mktemp("keys"), name="dest")


@pytest.fixture(scope="session")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyFiles:
    """A second destination's keys: "the wrong key"."""
    return generate_destination_keys(tmp_path_factory.mktemp("other"), name="other")
