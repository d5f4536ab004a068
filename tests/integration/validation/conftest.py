"""Shared fixtures for the validation integration tests: one engine over the shipped bundles."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.validation import ValidationEngine

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "xoev"
XSD = REPO / "xsd"




@pytest.fixture(scope="session")
def engine() -> ValidationEngine:
    """Shipped bundles only (no operator dir): compiled once for the whole session."""
    return ValidationEngine.from_dirs([XSD])
