"""Setting up what the hub shows about itself: metrics (Prometheus, multi-process), logs (JSON lines through
structlog, :mod:`xhub.logsetup`), and what ``/metrics`` answers. Called once per process by the commands that run a hub.

**Metrics.** prometheus-client counts in memory per process; ``xhub serve`` and every ``xhub worker`` on
one host write their counts into one directory instead (multi-process mode), which ``/metrics`` reads and
sums. The directory is ``PROMETHEUS_MULTIPROC_DIR`` when the operator sets it, else ``[metrics] directory``
(made 0700: the counts are not secret, but nobody else needs to write there). When ``xhub serve`` starts it
folds the files of processes that are gone into one archive file per type and removes them: the summed
counters never go down (a false reset would make ``rate()`` jump) and the folder does not grow with every
restarted worker. A process that ends marks itself dead (``mark_process_dead``, for live gauges).
What the database knows is read at scrape time by :class:`hub.metrics_store.StoreCollector`.
Logs: :mod:`xhub.logsetup`.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import re
import struct
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, values
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from hub import metrics
from hub.metrics_store import StoreCollector
from xhub.config import HubConfig, MetricsConfig

__all__ = ["ENV", "MetricsEndpoint", "setup_metrics"]

ENV = "PROMETHEUS_MULTIPROC_DIR"
_DB_FILE = re.compile(r"^[a-z_]+_(\d+)\.db$")  # <type>_<pid>.db, gauge_<mode>_<pid>.db

log = logging.getLogger(__name__)
_Mmap: Any = MmapedDict  # prometheus-client's own file format (untyped)


# --------------------------------------------------------------------------------------------------
# Metrics


def setup_metrics(config: HubConfig, *, clean: bool) -> Path | None:
    """Switch this process to multi-process counting (before any series exists); ``clean`` (``xhub serve``)
    removes the files of processes that are gone. Returns the directory, or ``None`` when metrics are off or
    this process already counts in memory (a test that built an app earlier)."""
    if not config.metrics.enabled:
        return None
    chosen = os.environ.get(ENV)
    path = Path(chosen) if chosen else config.metrics.directory
    if metrics._series is not None and values.ValueClass is values.MutexValue:  # too late to switch
        return None
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not chosen:
        path.chmod(0o700)
    if clean:
        _fold_dead(path)
    os.environ[ENV] = str(path)
    values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]  # prometheus-client chooses its mode when it is imported
    metrics.series()  # every process shows its (zero) counters from the start, e.g. xhub_purged_messages_total
    pid = os.getpid()
    atexit.register(mark_process_dead, pid, str(path))
    return path


def _fold_dead(path: Path) -> None:
    """The files of processes that are gone: their counts are added into one archive file per type (summed
    series stay monotonic, so ``rate()`` sees no false reset when ``serve`` restarts while workers run), then
    removed. One ``serve`` at a time does this (a lock file)."""
    with open(path / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for file in sorted(path.glob("*.db")):
            found = _DB_FILE.match(file.name)
            if not found or _alive(int(found.group(1))):
                continue
            kind = file.name.split("_", 1)[0]
            if kind in ("counter", "histogram", "summary"):
                _add_into(path / f"{kind}_archive.db", file)
            with contextlib.suppress(FileNotFoundError):
                file.unlink()


def _add_into(archive: Path, dead: Path) -> None:
    try:
        found = [(key, value) for key, value, _ts, _pos in _Mmap.read_all_values_from_file(str(dead))]
    except (OSError, RuntimeError, struct.error):  # cut short by a crash: its counts cannot be read
        log.warning("metrics: the counts in %s cannot be read; left out", dead.name)
        return
    into = _Mmap(str(archive))
    try:
        for key, value in found:
            before, _ = into.read_value(key)
            into.write_value(key, before + value, 0.0)
    finally:
        into.close()


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class MetricsEndpoint:
    """What ``GET /metrics`` answers: the counts of every process (or of this one) and the database's facts."""

    def __init__(self, settings: MetricsConfig, store: StoreCollector) -> None:
        self.settings = settings
        self.store = store
        self._store_registry = CollectorRegistry(auto_describe=False)
        self._store_registry.register(store)

    def allowed(self, authorization: str | None) -> bool:
        """No token configured, or ``Authorization: Bearer <token>`` whose SHA-256 matches."""
        expected = self.settings.token_sha256
        if expected is None:
            return True
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        digest = hashlib.sha256(token.strip().encode()).hexdigest()
        return hmac.compare_digest(digest, expected.get_secret_value())

    def render(self) -> bytes:
        """The exposition text. Blocking (reads files and the database): call it from a worker thread."""
        directory = os.environ.get(ENV)
        if directory and values.ValueClass is not values.MutexValue:
            registry = CollectorRegistry(auto_describe=False)
            MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
            return generate_latest(registry) + generate_latest(self._store_registry)
        return generate_latest(REGISTRY) + generate_latest(self._store_registry)
