"""Wiring for the processes the CLI starts: the engine (migrated), workers, the API server with its embedded
worker and the channels' pollers.

Config → adapters and channels (:mod:`xhub.registry`) → runner: :func:`make_worker` is the one place a
:class:`~hub.worker.Worker` is given its adapter factory and its channels. Every background loop started
here runs under a :class:`~hub.supervisor.Supervisor`; the ones of an API process are listed in
``app.state.loops`` for ``/health/ready``.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine

from hub import migrate, sealing
from hub.db import make_engine
from hub.housekeeping import BatchLoop, housekeeping_loops
from hub.ports import Channels
from hub.routing import RuleHolder, RulesError
from hub.supervisor import Supervisor
from hub.worker import Worker
from xhub import registry
from xhub.api.app import create_app
from xhub.config import HubConfig

__all__ = [
    "EmbeddedWorker",
    "Reloader",
    "SchemaOutdated",
    "build_app",
    "free_port",
    "install_keyring",
    "make_worker",
    "open_engine",
    "reload_on_sighup",
    "serve_in_thread",
    "server",
    "start_housekeeping",
]

log = logging.getLogger(__name__)


class SchemaOutdated(RuntimeError):
    """The database is not at the schema this code needs and auto-upgrade is off."""


def open_engine(config: HubConfig) -> Engine:
    """The engine, migrated (or checked), with its keyring installed (:func:`install_keyring`)."""
    engine = make_engine(config.database.url, config.database.pool_size)
    if config.database.auto_upgrade:
        migrate.upgrade(engine)
    else:
        current, head = migrate.current_revision(engine), migrate.head_revision()
        if current != head:
            raise SchemaOutdated(
                f"the database schema is at {current or 'nothing'}, this hub needs {head}: run `xhub db upgrade`"
            )
    try:
        install_keyring(config, engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def install_keyring(config: HubConfig, engine: Engine, env: dict[str, str] | None = None, *,
                    reading_only: bool = False) -> sealing.Keyring | None:
    """Seal what ``engine`` stores with the configured master key (``[storage] master_key_file``, else
    ``XHUB_MASTER_KEY``). A wrong master key stops here, before anything is read; so does a database holding
    sealed data without any key, and ``encryption = "required"`` without one. Raises
    :class:`hub.sealing.SealingError` (one line). ``reading_only`` (a command that only looks): without a key,
    nothing is installed and nothing is refused; sealed values show as such."""
    master = sealing.load_master_key(config.storage.master_key_file, os.environ if env is None else env)
    if master is None and reading_only:
        return None
    if master is None:
        if config.storage.encryption == "required":
            raise sealing.KeyUnavailable('[storage] encryption = "required", but no master key is configured: set '
                                         f"[storage] master_key_file or {sealing.MASTER_KEY_ENV}")
        if sealing.encrypted_data_exists(engine):
            raise sealing.KeyUnavailable("the database holds encrypted data, but no master key is configured: set "
                                         f"[storage] master_key_file or {sealing.MASTER_KEY_ENV}")
        log.warning("no master key configured: payloads and attachments are stored unencrypted "
                    "(docs/data-protection.md)")
        sealing.install(engine, None)
        return None
    keyring = sealing.Keyring(engine, master)
    keyring.check()
    if not reading_only:
        # The first data key is made now, outside any transaction: made while sealing inside one (the intake's
        # group commit), it would wait on SQLite for the write lock its own thread holds.
        keyring.current_id()
    sealing.install(engine, keyring)
    return keyring


def start_housekeeping(config: HubConfig, engine: Engine) -> list[BatchLoop]:
    """The purge and re-seal loops of a worker process (``xhub worker``), started; shut them down at the end."""
    jobs = housekeeping_loops(config, engine)
    for job in jobs:
        job.start()
    return jobs


def make_worker(config: HubConfig, engine: Engine, rules: RuleHolder | None = None, *,
                channels: Channels | None = None, **options: Any) -> Worker:
    """A worker wired from the registry: its adapters built per target, its channels (``channels`` replaces
    them, e.g. in a test). ``options`` go to :class:`~hub.worker.Worker` (``owner``, ``stop``, ...). The
    caller closes ``worker.channels`` when the worker is done."""
    return Worker(config, engine, rules, build_adapter=registry.build_adapter,
                  channels=channels if channels is not None else registry.channels(config), **options)


class EmbeddedWorker:
    """A worker thread inside the API process (the one-process default of ``xhub serve``)."""

    def __init__(self, config: HubConfig, engine: Engine, rules: RuleHolder) -> None:
        self.worker = make_worker(config, engine, rules)
        self._thread = threading.Thread(target=self.worker.run, name="xhub-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.worker.shutdown()
        self._thread.join(timeout=self.worker.config.worker.lease_seconds)
        self.worker.channels.close()

    def wake(self) -> None:
        self.worker.wake.set()


def build_app(config: HubConfig, engine: Engine, *, embedded_worker: bool, rules: RuleHolder | None = None) -> FastAPI:
    """The API; with ``embedded_worker`` a worker thread sharing its rules (one reload serves both), and the
    pollers of the channels that poll (the FIT-Connect one is woken early by callbacks)."""
    rules = rules or RuleHolder(config)
    starts: list[Callable[[], None]] = []
    stops: list[Callable[[], None]] = []
    loops: list[Supervisor] = []
    on_accept: Callable[[], None] | None = None
    on_callback: Callable[[], None] | None = None
    if embedded_worker:
        embedded = EmbeddedWorker(config, engine, rules)
        starts.append(embedded.start)
        stops.append(embedded.stop)
        loops.append(embedded.worker.supervisor)
        on_accept = embedded.wake
        for job in housekeeping_loops(config, engine):
            starts.append(job.start)
            stops.insert(0, job.shutdown)
            loops.append(job.supervisor)
    pollers = registry.pollers(config, engine)
    for poller in pollers.values():
        starts.append(poller.start)
        stops.insert(0, poller.shutdown)
        loops.append(poller.supervisor)
    if registry.CALLBACK_WAKES in pollers:
        on_callback = pollers[registry.CALLBACK_WAKES].wake.set

    def start_all() -> None:
        for start in starts:
            start()

    def stop_all() -> None:
        for stop in stops:
            stop()

    app = create_app(config, engine, rules=rules, on_accept=on_accept, on_callback=on_callback,
                     lifespan_hooks=(start_all, stop_all) if starts else None)
    app.state.loops = loops
    return app


class Reloader:
    """Reloads the rules in a supervised thread whenever :meth:`request` is called (SIGHUP does).

    Each reload is one item: a failure (invalid rules, or anything unexpected such as an unreadable file) is
    logged with its cause, the old rules stay in force, and the next request is served as usual."""

    def __init__(self, rules: RuleHolder) -> None:
        self.rules = rules
        self.requested = threading.Event()
        self.supervisor = Supervisor("rules-reloader")

    def request(self) -> None:
        self.requested.set()

    def start(self) -> None:
        self.supervisor.start(self._run)

    def stop(self) -> None:
        self.supervisor.stop.set()
        self.requested.set()
        self.supervisor.join(timeout=10)

    def _run(self) -> None:
        while not self.supervisor.stop.is_set():
            self.requested.wait()
            self.requested.clear()
            if self.supervisor.stop.is_set():
                return
            try:
                self.rules.reload()
                self.supervisor.beat(success=True, items=1)
            except RulesError:  # logged by RuleHolder.reload; the old rules stay in force
                self.supervisor.beat()
            except Exception as exc:  # not a rules problem (e.g. an unreadable file): the old rules stay too
                log.error("rules not reloaded, the previous ones stay in force: %s", self.supervisor.failed(exc))
                log.debug("rules reload failed", exc_info=exc)


def reload_on_sighup(rules: RuleHolder) -> Reloader:
    """SIGHUP reloads the rules in a thread (not in the signal handler); a failure keeps the old ones."""
    reloader = Reloader(rules)
    reloader.start()
    signal.signal(signal.SIGHUP, lambda _signum, _frame: reloader.request())
    return reloader


def server(app: FastAPI, host: str, port: int, **options: Any) -> uvicorn.Server:
    """A uvicorn server; ``options`` go to ``uvicorn.Config`` (e.g. ``ssl_certfile`` for TLS)."""
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                         **options))


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def serve_in_thread(app: FastAPI, host: str = "127.0.0.1", port: int = 0, **options: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread (demo, stand-ins, tests); yields the base URL.

    ``port=0`` picks a free port. The server (and the app's lifespan) stops when the block ends.
    ``options`` go to ``uvicorn.Config``; with ``ssl_certfile`` the URL is ``https://``.
    """
    port = port or free_port(host)
    srv = server(app, host, port, **options)
    thread = threading.Thread(target=srv.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not srv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"could not start a server on {host}:{port}")
        time.sleep(0.01)
    try:
        yield f"{'https' if options.get('ssl_certfile') else 'http'}://{host}:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=30)
