"""Setting up what the hub shows about itself: metrics (Prometheus, multi-process), logs (JSON lines through
structlog), and what ``/metrics`` answers. Called once per process by the commands that run a hub.

**Metrics.** prometheus-client counts in memory per process; ``xhub serve`` and every ``xhub worker`` on
one host write their counts into one directory instead (multi-process mode), which ``/metrics`` reads and
sums. The directory is ``PROMETHEUS_MULTIPROC_DIR`` when the operator sets it, else ``[metrics] directory``
(made 0700: the counts are not secret, but nobody else needs to write there). When ``xhub serve`` starts it
folds the files of processes that are gone into one archive file per type and removes them: the summed
counters never go down (a false reset would make ``rate()`` jump) and the folder does not grow with every
restarted worker. A process that ends marks itself dead (``mark_process_dead``, for live gauges).
What the database knows is read at scrape time by :class:`hub.metrics_store.StoreCollector`.

**Logs.** Every record, from this code or a library through the standard ``logging`` module, becomes one
JSON line on stderr (``--log-format json``, the default when stderr is not a terminal) or one readable line
(``text``). Each carries ``timestamp``, ``level``, ``logger``, ``event`` and, while a message is processed,
``message_id``, ``tenant``, ``channel`` and ``stage`` (:mod:`hub.logcontext`). An exception is written as its
type and the code locations it passed, never its message: an XML parser's message can quote the document.
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
import sys
import traceback
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any, Literal

import structlog
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, values
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from hub import logcontext, metrics
from hub.metrics_store import StoreCollector
from xhub.config import HubConfig, MetricsConfig

__all__ = ["ENV", "LogFormat", "MetricsEndpoint", "setup_logging", "setup_metrics"]

ENV = "PROMETHEUS_MULTIPROC_DIR"
LogFormat = Literal["json", "text"]
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


# --------------------------------------------------------------------------------------------------
# Logs


def default_format() -> LogFormat:
    return "text" if sys.stderr.isatty() else "json"


def setup_logging(level: str = "info", fmt: LogFormat | None = None, *, force: bool = False) -> None:
    """Route every log record through structlog to stderr, as JSON lines or readable text.

    Like ``logging.basicConfig``, nothing changes when the program that runs the command has set up logging
    already (handlers on the root logger that are not ours, e.g. a test runner's), unless ``force``."""
    root = logging.getLogger()
    if not force and any(not isinstance(h, _Stderr) for h in root.handlers):
        return
    fmt = fmt or default_format()
    shared: list[Any] = [
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _message_context,
    ]
    renderer: Any = (structlog.processors.JSONRenderer(ensure_ascii=False) if fmt == "json"
                     else structlog.dev.ConsoleRenderer(colors=False))
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _exception_without_message,
                    renderer],
    )
    handler = _Stderr()
    handler.setFormatter(formatter)
    for old in [h for h in root.handlers if isinstance(h, _Stderr)]:  # ours from an earlier command (tests)
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("alembic", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record comes (a test may swap it between commands)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def _message_context(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in logcontext.current().items():
        event.setdefault(key, value)
    return event


def _exception_without_message(_logger: Any, _name: str,
                               event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """``exc_info`` → ``exception`` (the type) and ``traceback`` (file, line, function of each frame): the
    exception's text is left out, since it may quote a document or a secret."""
    info = event.pop("exc_info", None)
    if info is True:
        info = sys.exc_info()
    if isinstance(info, BaseException):
        info = (type(info), info, info.__traceback__)
    if isinstance(info, tuple) and info[0] is not None:
        event["exception"] = info[0].__name__
        event["traceback"] = [f"{f.filename}:{f.lineno} in {f.name}" for f in traceback.extract_tb(info[2])]
    return event
