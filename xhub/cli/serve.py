"""``xhub serve`` and ``xhub worker``: the processes of a running hub."""

from __future__ import annotations

import atexit
import threading
from typing import Annotated

import typer

from hub.worker import install_signal_handlers
from xhub.cli import common
from xhub.config import HubConfig
from xhub.observability import setup_metrics
from xhub.runtime import build_app, make_worker, reload_on_sighup, server, start_housekeeping
from xhub.tracing import TracingUnavailable, setup_tracing

__all__ = ["serve", "worker"]


def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default: api.host)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: api.port)")] = None,
    worker: Annotated[bool, typer.Option(help="run a worker in this process")] = True,
) -> None:
    """Run the API (and, by default, an embedded worker): the one-process set-up."""
    config = common.config()
    setup_metrics(config, clean=True)
    _tracing(config)
    engine = common.engine()
    rules = common.rule_holder()
    application = build_app(config, engine, embedded_worker=worker and config.worker.embedded, rules=rules)
    reload_on_sighup(rules)
    srv = server(application, host or config.api.host, port if port is not None else config.api.port)
    typer.echo(f"xoev-hub listening on http://{srv.config.host}:{srv.config.port} ({engine.url.get_backend_name()})")
    srv.run()


def worker(
    exit_when_idle: Annotated[bool, typer.Option(help="stop when nothing is due")] = False,
    max_messages: Annotated[int | None, typer.Option(help="stop after this many messages")] = None,
) -> None:
    """Run a worker process. Start as many as you like, on as many machines as share the database."""
    setup_metrics(common.config(), clean=False)
    _tracing(common.config())
    engine = common.engine()
    rules = common.rule_holder()
    stop = threading.Event()
    w = make_worker(common.config(), engine, rules, stop=stop)
    install_signal_handlers(stop)
    reload_on_sighup(rules)

    def wake_on_stop() -> None:  # a signal sets `stop`; wake the loop so it notices at once
        stop.wait()
        w.wake.set()

    threading.Thread(target=wake_on_stop, daemon=True).start()
    jobs = [] if exit_when_idle or max_messages else start_housekeeping(common.config(), engine)
    try:
        w.run(exit_when_idle=exit_when_idle, max_messages=max_messages)
    finally:
        for job in jobs:
            job.shutdown()
        w.channels.close()


def _tracing(config: HubConfig) -> None:
    try:
        shutdown = setup_tracing(config.tracing)
    except TracingUnavailable as exc:
        common.fail(str(exc))
    if shutdown is not None:
        atexit.register(shutdown)  # the last spans are sent when the process ends
