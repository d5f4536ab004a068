"""Logs: every record, from this code or a library through the standard ``logging`` module, becomes one JSON
line on stderr (``--log-format json``, the default when stderr is not a terminal) or one readable line
(``text``), rendered by structlog. Each carries ``timestamp``, ``level``, ``logger``, ``event`` and, while a
message is processed, ``message_id``, ``tenant``, ``channel`` and ``stage`` (:mod:`hub.logcontext`). An
exception is written as its type and the code locations it passed, never its message: an XML parser's message
can quote the document.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import MutableMapping
from typing import Any, Literal

from hub import logcontext

__all__ = ["LogFormat", "default_format", "setup_logging"]

LogFormat = Literal["json", "text"]




def default_format() -> LogFormat:
    return "text" if sys.stderr.isatty() else "json"


def setup_logging(level: str = "info", fmt: LogFormat | None = None, *, force: bool = False) -> None:
    """Route every log record through structlog to stderr, as JSON lines or readable text.

    Like ``logging.basicConfig``, nothing changes when the program that runs the command has set up logging
    already (handlers on the root logger that are not ours, e.g. a test runner's), unless ``force``."""
    root = logging.getLogger()
    if not force and any(not isinstance(h, _Stderr) for h in root.handlers):
        return
    handler = _Stderr()
    handler.setFormatter(_Lazy(fmt or default_format()))
    for old in [h for h in root.handlers if isinstance(h, _Stderr)]:  # ours from an earlier command (tests)
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("alembic", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _Lazy(logging.Formatter):
    """structlog's formatter, built when the first record comes: importing structlog costs a command that logs
    nothing (``xhub validate``) a fifth of a second."""

    def __init__(self, fmt: LogFormat) -> None:
        super().__init__()
        self._chosen = fmt
        self._real: logging.Formatter | None = None

    def format(self, record: logging.LogRecord) -> str:
        if self._real is None:
            self._real = _structlog_formatter(self._chosen)
        return self._real.format(record)


def _structlog_formatter(fmt: LogFormat) -> logging.Formatter:
    import structlog

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
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    return formatter


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
