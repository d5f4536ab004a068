"""Helpers shared by the tests: real servers on loopback, configurations, message factories."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine

from hub import store
from hub.auth import hash_token
from xhub.config import HubConfig
from xhub.runtime import serve_in_thread

SENDER_TOKEN = "sender-token-for-tests"
OTHER_SENDER_TOKEN = "other-sender-token-for-tests"
OPERATOR_TOKEN = "operator-token-for-tests"
ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
XBAU_VALID = FIXTURES / "xoev" / "xbau-2.6" / "constructed_prozessnachrichten.eingangsbestaetigung.1120.xml"
XBAU_INVALID = FIXTURES / "xoev" / "xbau-2.6" / "constructed_INVALID_wrong_standard_attr.1120.xml"


@contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` on a free loopback port in a thread; yields the base URL."""
    with serve_in_thread(app) as url:
        yield url


def accept_many(engine: Engine, n: int, body: Callable[[int], bytes] | None = None,
                content_type: str = "application/xml") -> list[uuid.UUID]:
    """Store ``n`` messages from sender ``portal`` of tenant ``memmingen`` (the XBau sample by default)."""
    ids = []
    for i in range(n):
        payload = body(i) if body else XBAU_VALID.read_bytes()
        message, _ = store.accept(engine, store.NewMessage("memmingen", "rest", "portal", [
            store.Part("payload", content_type, payload)]), actor="sender:portal")
        ids.append(message.id)
    return ids


def hub_config(db_url: str, tmp_path: Path, **overrides: Any) -> HubConfig:
    """A complete configuration: two senders, an operator, a file target, one catch-all route."""
    data: dict[str, Any] = {
        "database": {"url": db_url},
        "worker": {"lease_seconds": 30, "poll_interval_seconds": 0.05},
        "retry": {"max_attempts": 3, "base_delay_seconds": 0, "jitter": 0},
        "senders": [
            {"name": "portal", "tenant": "memmingen", "token_sha256": hash_token(SENDER_TOKEN)},
            {"name": "other", "tenant": "aschaffenburg", "token_sha256": hash_token(OTHER_SENDER_TOKEN)},
        ],
        "operators": [{"name": "ops", "token_sha256": hash_token(OPERATOR_TOKEN)}],
        "targets": {"outbox": {"adapter": "file", "directory": str(tmp_path / "outbox")}},
        "routes": [{"name": "all", "targets": ["outbox"]}],
        "rules_dir": str(tmp_path / "rules"),  # no mappings unless a test puts some there
    }
    data.update(overrides)
    return HubConfig.model_validate(data)


def wait_for(predicate: Any, timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy (for processes and servers, not for timing)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def write_config(path: Path, db_url: str, target_url: str, *, lease_seconds: float = 30, extra: str = "",
                 target_extra: str = "", batch_size: int = 32) -> Path:
    """A hub.toml for worker subprocesses: one http target, one catch-all route. A small ``batch_size`` spreads
    a few messages over several workers."""
    path.write_text(
        f"""
rules_dir = "{path.parent / 'rules'}"

[database]
url = "{db_url}"
auto_upgrade = false

[worker]
lease_seconds = {lease_seconds}
poll_interval_seconds = 0.1
batch_size = {batch_size}

[retry]
max_attempts = 5
base_delay_seconds = 0.2
jitter = 0

[targets.registry]
adapter = "rest"
url = "{target_url}"
{target_extra}

[[routes]]
name = "all"
targets = ["registry"]
{extra}
""",
        encoding="utf-8",
    )
    return path


def xhub(config: Path, *args: str, log_level: str = "warning") -> list[str]:
    """argv for an ``xhub`` subprocess using this interpreter."""
    import sys

    return [sys.executable, "-m", "xhub", "--config", str(config), "--log-level", log_level, *args]
