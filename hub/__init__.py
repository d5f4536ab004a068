"""xoev-hub: receive, verify, validate, route, deliver and answer back XÖV and FIT-Connect messages."""

from __future__ import annotations

__version__ = "0.1.0"
