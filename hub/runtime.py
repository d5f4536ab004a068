"""Wiring for the processes the CLI starts: the engine (migrated), the API server, embedded workers."""

from __future__ import annotations

import logging
import threading

import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine

from hub import migrate
from hub.api.app import create_app
from hub.config import HubConfig
from hub.db import make_engine
from hub.worker import Worker

__all__ = ["EmbeddedWorker", "SchemaOutdated", "build_app", "open_engine", "server"]

log = logging.getLogger(__name__)


class SchemaOutdated(RuntimeError):
    """The database is not at the schema this code needs and auto-upgrade is off."""


def open_engine(config: HubConfig) -> Engine:
    engine = make_engine(config.database.url, config.database.pool_size)
    if config.database.auto_upgrade:
        migrate.upgrade(engine)
        return engine
    current, head = migrate.current_revision(engine), migrate.head_revision()
    if current != head:
        raise SchemaOutdated(
            f"the database schema is at {current or 'nothing'}, this hub needs {head}: run `xhub db upgrade`"
        )
    return engine


class EmbeddedWorker:
    """A worker thread inside the API process (the one-process default of ``xhub serve``)."""

    def __init__(self, config: HubConfig, engine: Engine) -> None:
        self.worker = Worker(config, engine)
        self._thread = threading.Thread(target=self.worker.run, name="xhub-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.worker.shutdown()
        self._thread.join(timeout=self.worker.config.worker.lease_seconds)

    def wake(self) -> None:
        self.worker.wake.set()


def build_app(config: HubConfig, engine: Engine, *, embedded_worker: bool) -> FastAPI:
    if not embedded_worker:
        return create_app(config, engine)
    embedded = EmbeddedWorker(config, engine)
    return create_app(config, engine, on_accept=embedded.wake, lifespan_hooks=(embedded.start, embedded.stop))


def server(app: FastAPI, host: str, port: int) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
