"""``python -m hub`` is ``xhub``."""

from __future__ import annotations

from hub.cli import app

app(prog_name="xhub")
