"""``xhub``: the command line of xoev-hub.

Every command reads the same configuration (``--config`` or ``XHUB_CONFIG``, default ``./hub.toml``);
configuration errors end with exit code 2 and a message naming the file, key and line.
"""

from __future__ import annotations

import enum
import logging
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from adapters.fitconnect import generate_destination_keys
from hub import cli_common as common
from hub.auth import hash_token, new_token
from hub.cli_inspect import db_app, messages_app, route_cmd, rules_app, targets_cmd
from hub.config import OperatorConfig, SenderConfig
from hub.fitconnect import FitConnectChannel, Poller
from hub.runtime import answerer, build_app, reload_on_sighup, server
from hub.sandbox.cli import sandbox_app
from hub.submit import SubmitProblem, Submitter
from hub.validation.cli import schemas_app, validate_command
from hub.worker import Worker, install_signal_handlers

app = typer.Typer(help="xoev-hub: receive, validate, route and deliver XÖV and FIT-Connect messages.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
token_app = typer.Typer(help="Bearer tokens for senders and operators.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(messages_app, name="messages")
app.add_typer(token_app, name="token")
app.add_typer(sandbox_app, name="sandbox", help="Local stand-ins for the demo and tests (not for production).")
fitconnect_app = typer.Typer(help="FIT-Connect subscriber.", no_args_is_help=True)
app.add_typer(fitconnect_app, name="fitconnect")
keys_app = typer.Typer(help="Keys for FIT-Connect destinations.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(rules_app, name="rules")
app.add_typer(schemas_app, name="schemas", help="Schema bundles: list the installed ones, add an XRepository release.")
app.command("validate")(validate_command)
app.command("targets")(targets_cmd)
app.command("route")(route_cmd)


class LogLevel(enum.StrEnum):
    debug = "debug"
    info = "info"
    warning = "warning"
    error = "error"

@app.callback()
def main(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", envvar="XHUB_CONFIG",
                                                 help="configuration file (TOML)")] = None,
    log_level: Annotated[LogLevel, typer.Option(help="how much to log")] = LogLevel.info,
) -> None:
    logging.basicConfig(level=log_level.value.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    common.reset(config)
    ctx.call_on_close(common.close)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default: api.host)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: api.port)")] = None,
    worker: Annotated[bool, typer.Option(help="run a worker in this process")] = True,
) -> None:
    """Run the API (and, by default, an embedded worker): the one-process set-up."""
    config = common.config()
    engine = common.engine()
    rules = common.rule_holder()
    application = build_app(config, engine, embedded_worker=worker and config.worker.embedded, rules=rules)
    reload_on_sighup(rules)
    srv = server(application, host or config.api.host, port if port is not None else config.api.port)
    typer.echo(f"xoev-hub listening on http://{srv.config.host}:{srv.config.port} ({engine.url.get_backend_name()})")
    srv.run()


@app.command("worker")
def worker_cmd(
    exit_when_idle: Annotated[bool, typer.Option(help="stop when nothing is due")] = False,
    max_messages: Annotated[int | None, typer.Option(help="stop after this many messages")] = None,
) -> None:
    """Run a worker process. Start as many as you like, on as many machines as share the database."""
    engine = common.engine()
    rules = common.rule_holder()
    stop = threading.Event()
    w = Worker(common.config(), engine, rules, answer=answerer(common.config()), stop=stop)
    install_signal_handlers(stop)
    reload_on_sighup(rules)

    def wake_on_stop() -> None:  # a signal sets `stop`; wake the loop so it notices at once
        stop.wait()
        w.wake.set()

    threading.Thread(target=wake_on_stop, daemon=True).start()
    w.run(exit_when_idle=exit_when_idle, max_messages=max_messages)


@app.command()
def submit(
    files: Annotated[list[Path], typer.Argument(help="XML files to submit")],
    url: Annotated[str, typer.Option(envvar="XHUB_URL", help="the hub's base URL")] = "http://127.0.0.1:8080",
    token: Annotated[str, typer.Option(envvar="XHUB_TOKEN", help="sender token", show_default=False)] = "",
    idempotency_key: Annotated[bool, typer.Option(help="send the file's SHA-256 as Idempotency-Key")] = True,
    max_bytes: Annotated[int, typer.Option(min=1, help="larger files are not sent (the hub's default "
                                                       "api.max_body_bytes)")] = 10 * 1024 * 1024,
) -> None:
    """Send files to a running hub's REST intake. Exit 1 if any was not accepted, 2 if the hub is unreachable."""
    if not token:
        common.fail("a sender token is needed (--token or XHUB_TOKEN)")
    try:
        failed = Submitter(url, token, max_bytes, idempotency_key).run(files, typer.echo)
    except SubmitProblem as exc:
        common.fail(str(exc))
    raise typer.Exit(1 if failed else 0)


@fitconnect_app.command("poll")
def fitconnect_poll(
    once: Annotated[bool, typer.Option(help="poll every destination once and exit")] = False,
) -> None:
    """Fetch waiting submissions from FIT-Connect into the hub (``xhub serve`` does this too)."""
    config = common.config()
    if config.fitconnect is None:
        typer.echo("xhub: no [fitconnect] section in the configuration", err=True)
        raise typer.Exit(2)
    channel = FitConnectChannel(config, common.engine())
    if once:
        report = channel.poll_once()
        channel.close()
        typer.echo(f"stored {report.stored}, refused {report.refused}, known {report.known}, "
                   f"failed {report.failed}")
        raise typer.Exit(1 if report.failed else 0)
    poller = Poller(channel, config.fitconnect.poll_interval_seconds)
    stop = threading.Event()
    install_signal_handlers(stop)
    poller.start()
    stop.wait()
    poller.shutdown()


@keys_app.command("generate")
def keys_generate(
    out: Annotated[Path, typer.Option(help="folder for the key files (private ones are written 0600)")],
    name: Annotated[str, typer.Option(help="a name for the certificates, e.g. the destination's authority")],
    bits: Annotated[int, typer.Option(max=16384, help="RSA key size; FIT-Connect requires at least 4096")] = 4096,
) -> None:
    """Make a destination's encryption and signing key pairs with self-signed x5c chains (test environments)."""
    if bits < 4096:
        common.fail("FIT-Connect requires RSA keys of at least 4096 bits")
    try:
        files = generate_destination_keys(out, name=name, bits=bits)
    except OSError as exc:
        common.fail(f"cannot write the keys to {out}: {exc.strerror}")
    for label, path in vars(files).items():
        typer.echo(f"{label:<20} {path}")
    typer.echo("Give the public keys to the delivery service; keep the private ones for the hub's [fitconnect] "
               "destinations (encryption_key, signing_key).")


@token_app.command("new")
def token_new(
    name: Annotated[str, typer.Option(help="sender or operator name")],
    tenant: Annotated[str | None, typer.Option(help="tenant (senders only)")] = None,
    operator: Annotated[bool, typer.Option(help="make an operator token")] = False,
) -> None:
    """Create a token; prints it once, and the configuration entry that holds only its hash."""
    if not operator and not tenant:
        common.fail("a sender token needs --tenant")
    token = new_token()
    entry = {"name": name, "token_sha256": hash_token(token), **({} if operator else {"tenant": tenant})}
    try:  # the printed lines go into hub.toml: they must be what the configuration accepts
        (OperatorConfig if operator else SenderConfig).model_validate(entry)
    except ValidationError as exc:
        common.fail("; ".join(f"--{e['loc'][0]}: {e['msg']}"
                              for e in exc.errors(include_url=False, include_input=False)))
    typer.echo(f"token (give it to the {'operator' if operator else 'sender'}; it is not stored): {token}\n")
    section = "operators" if operator else "senders"
    typer.echo(f"[[{section}]]\nname = \"{name}\"")
    if not operator:
        typer.echo(f"tenant = \"{tenant}\"")
    typer.echo(f"token_sha256 = \"{hash_token(token)}\"")


@app.command()
def demo(
    once: Annotated[bool, typer.Option(help="exit when done: 0 if every sample reached its expected state")] = False,
    port: Annotated[int, typer.Option(min=0, max=65535, help="port for the hub (0: any free port)")] = 8080,
    workdir: Annotated[Path, typer.Option(help="where the demo keeps its database and files")] = Path("var/demo"),
) -> None:
    """Run the hub on SQLite against local stand-ins, submit the sample messages, show what happened."""
    from hub.demo import DemoError, run_demo

    if port and not _port_free(port):
        typer.echo(f"port {port} is in use; using a free one")
        port = 0
    try:
        code = run_demo(workdir, port, once)
    except DemoError as exc:
        common.fail(str(exc))
    raise typer.Exit(code)


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def run() -> None:  # pragma: no cover - console entry for `python -m hub`
    app(prog_name="xhub")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
