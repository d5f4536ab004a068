"""Shared paths for the validation unit tests (fixtures are copies, see tests/fixtures/xoev/SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "xoev"
XSD = REPO / "xsd"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def xsd_dir() -> Path:
    return XSD
