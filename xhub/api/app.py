"""The HTTP app: assembled from one router per concern, nothing more.

* intake (``POST /api/v1/messages``): :mod:`channels.rest.router`;
* messages (status, trail, requeue): :mod:`xhub.api.messages`;
* operations (targets, rules): :mod:`xhub.api.operations`;
* the FIT-Connect callback: :mod:`channels.fitconnect.router`;
* health: :mod:`xhub.api.health`;
* ``/metrics`` for Prometheus: :mod:`xhub.api.metrics` (what it counts: :mod:`xhub.observability`).
* the operations API (``/api/v1/ops/…``): :mod:`xhub.api.ops`; the console (``/console/…``):
  :mod:`xhub.console.pages`; the API docs (``/docs``) from vendored Swagger UI assets: :mod:`xhub.api.docs`.

Every error is a problem document (:mod:`hub.problems`); :class:`~xhub.api.guard.ErrorGuard` answers what
nobody handled. Routers get what they need through FastAPI dependencies on ``app.state``: ``config`` (the
settings, read by :data:`hub.auth.Auth`), ``api`` (:class:`~xhub.api.deps.ApiState`), and each channel's own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from channels.rest.router import Waker
from hub import problems
from hub.access import LoginThrottle
from hub.blobs import BlobStore
from hub.metrics_store import StoreCollector
from hub.readiness import Health
from hub.routing import RuleHolder
from hub.watch import Watches
from xhub import registry
from xhub.api import docs, health, messages, metrics, operations, ops
from xhub.api.access import OpsState
from xhub.api.deps import ApiState
from xhub.api.guard import ErrorGuard
from xhub.config import HubConfig
from xhub.console import oidc, pages
from xhub.observability import MetricsEndpoint

__all__ = ["create_app"]

Hook = Callable[[], None]


def create_app(
    config: HubConfig,
    engine: Engine,
    *,
    rules: RuleHolder | None = None,
    on_accept: Hook | None = None,
    on_callback: Hook | None = None,
    lifespan_hooks: tuple[Hook, Hook] | None = None,
) -> FastAPI:
    """Build the app. ``on_accept`` is called after each new message (wakes an embedded worker),
    ``on_callback`` after each verified FIT-Connect callback (wakes the poller); ``lifespan_hooks`` =
    (start, stop) run with the server (start/stop the embedded worker and the pollers)."""
    closers: list[Hook] = []
    app = FastAPI(title="xoev-hub", version="0.1.0", lifespan=_lifespan(lifespan_hooks, closers),
                  docs_url=None, redoc_url=None)
    wake = Waker(on_accept)
    app.state.config = config
    watches = Watches(engine, registry.watches(config), ttl=max(config.metrics.refresh_seconds, 1.0))
    app.state.api = ApiState(config, engine, rules or RuleHolder(config), wake,
                             Health(config, engine, registry.poller_checks(config), watches=watches.components))
    app.state.metrics = MetricsEndpoint(config.metrics, StoreCollector(
        engine, targets=config.targets, loop_kinds=registry.loop_kinds(config), watches=watches,
        ttl=config.metrics.refresh_seconds))
    channels = registry.channels(config)
    closers.append(channels.close)
    app.state.ops = OpsState(config, engine, channels, BlobStore(config.storage.blob_dir),
                             LoginThrottle(config.console.login_attempts, config.console.login_window_seconds))
    problems.install(app)
    app.add_middleware(ErrorGuard, retry_after=config.api.retry_after_seconds,
                       max_header_bytes=config.api.max_header_bytes)
    closers += registry.mount_channels(app, config, engine, wake, on_callback)
    app.include_router(messages.router)
    app.include_router(operations.router)
    app.include_router(health.router)
    if config.metrics.enabled:
        app.include_router(metrics.router)
    app.include_router(ops.router)
    docs.mount(app)
    if config.console.enabled:
        pages.mount(app)
        app.include_router(oidc.router)
    return app


def _lifespan(hooks: tuple[Hook, Hook] | None,
              closers: list[Hook]) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if hooks:
            await run_in_threadpool(hooks[0])
        try:
            yield
        finally:
            if hooks:
                await run_in_threadpool(hooks[1])
            for close in closers:
                await run_in_threadpool(close)

    return lifespan
