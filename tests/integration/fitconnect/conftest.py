"""Keys are slow to make (RSA 4096): one set per test session."""

from __future__ import annotations

from tests.fitconnect_keys import keys, other_keys

__all__ = ["keys", "other_keys"]
