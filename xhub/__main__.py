"""``python -m xhub`` is ``xhub``."""

from __future__ import annotations

from xhub.cli import app

app(prog_name="xhub")
