"""xoev-hub's composition root: the configuration, the registry of adapters and channels, the wiring of the
processes, the HTTP app and the ``xhub`` command line. Nothing below it imports it."""

from __future__ import annotations
