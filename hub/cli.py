"""``xhub``: the command line of xoev-hub.

Every command reads the same configuration (``--config`` or ``XHUB_CONFIG``, default ``./hub.toml``);
configuration errors end with exit code 2 and a message naming the file, key and line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import threading
import uuid
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from adapters.fitconnect import generate_destination_keys
from hub import migrate, operations, store
from hub.api.views import event_json
from hub.auth import hash_token, new_token
from hub.config import ConfigError, HubConfig, load_config
from hub.explain import explain_route
from hub.fitconnect import FitConnectChannel, Poller
from hub.mapping.golden import check_golden
from hub.rules import RuleHolder, RulesError
from hub.runtime import SchemaOutdated, answerer, build_app, open_engine, reload_on_sighup, server
from hub.sandbox.cli import sandbox_app
from hub.statemachine import IllegalTransition, Status
from hub.targets import target_overview
from hub.validation.cli import schemas_app, validate_command
from hub.worker import Worker, install_signal_handlers

app = typer.Typer(help="xoev-hub: receive, validate, route and deliver XÖV and FIT-Connect messages.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
messages_app = typer.Typer(help="Inspect and repair messages.", no_args_is_help=True)
token_app = typer.Typer(help="Bearer tokens for senders and operators.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(messages_app, name="messages")
app.add_typer(token_app, name="token")
app.add_typer(sandbox_app, name="sandbox", help="Local stand-ins for the demo and tests (not for production).")
fitconnect_app = typer.Typer(help="FIT-Connect subscriber.", no_args_is_help=True)
app.add_typer(fitconnect_app, name="fitconnect")
keys_app = typer.Typer(help="Keys for FIT-Connect destinations.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
rules_app = typer.Typer(help="Routing rules and mappings (mappings/).", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
app.add_typer(schemas_app, name="schemas", help="Schema bundles: list the installed ones, add an XRepository release.")
app.command("validate")(validate_command)

_state: dict[str, Any] = {}


@app.callback()
def main(
    config: Annotated[Path | None, typer.Option("--config", "-c", envvar="XHUB_CONFIG",
                                                 help="configuration file (TOML)")] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
) -> None:
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("alembic", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _state["config_path"] = config


def _config() -> HubConfig:
    if "config" not in _state:
        try:
            _state["config"] = load_config(_state.get("config_path"))
        except ConfigError as exc:
            typer.echo(f"xhub: {exc}", err=True)
            raise typer.Exit(2) from None
    config: HubConfig = _state["config"]
    return config


def _rules() -> RuleHolder:
    try:
        return RuleHolder(_config())
    except RulesError as exc:
        typer.echo(f"xhub: {exc}", err=True)
        raise typer.Exit(2) from None


def _engine() -> Any:
    try:
        return open_engine(_config())
    except SchemaOutdated as exc:
        typer.echo(f"xhub: {exc}", err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default: api.host)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default: api.port)")] = None,
    worker: Annotated[bool, typer.Option(help="run a worker in this process")] = True,
) -> None:
    """Run the API (and, by default, an embedded worker): the one-process set-up."""
    config = _config()
    engine = _engine()
    rules = _rules()
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
    engine = _engine()
    rules = _rules()
    stop = threading.Event()
    w = Worker(_config(), engine, rules, answer=answerer(_config()), stop=stop)
    install_signal_handlers(stop)
    reload_on_sighup(rules)

    def wake_on_stop() -> None:  # a signal sets `stop`; wake the loop so it notices at once
        stop.wait()
        w.wake.set()

    threading.Thread(target=wake_on_stop, daemon=True).start()
    w.run(exit_when_idle=exit_when_idle, max_messages=max_messages)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all pending migrations."""
    from hub.db import make_engine

    config = _config()
    engine = make_engine(config.database.url)
    before = migrate.current_revision(engine)
    migrate.upgrade(engine)
    typer.echo(f"database at revision {migrate.current_revision(engine)} (was {before or 'empty'})")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and the one this code needs."""
    from hub.db import make_engine

    engine = make_engine(_config().database.url)
    typer.echo(f"database: {migrate.current_revision(engine) or 'empty'}; code: {migrate.head_revision()}")


@app.command()
def submit(
    files: Annotated[list[Path], typer.Argument(help="XML files to submit", exists=True, dir_okay=False)],
    url: Annotated[str, typer.Option(envvar="XHUB_URL", help="the hub's base URL")] = "http://127.0.0.1:8080",
    token: Annotated[str, typer.Option(envvar="XHUB_TOKEN", help="sender token")] = "",
    idempotency_key: Annotated[bool, typer.Option(help="send the file's SHA-256 as Idempotency-Key")] = True,
) -> None:
    """Send files to a running hub's REST intake. Exit 1 if any was refused."""
    if not token:
        typer.echo("xhub: a sender token is needed (--token or XHUB_TOKEN)", err=True)
        raise typer.Exit(2)
    failed = 0
    with httpx.Client(base_url=url, timeout=60) as client:
        for path in files:
            body = path.read_bytes()
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/xml"}
            if idempotency_key:
                headers["Idempotency-Key"] = "sha256-" + hashlib.sha256(body).hexdigest()
            try:
                r = client.post("/api/v1/messages", content=body, headers=headers)
            except httpx.TransportError as exc:
                typer.echo(f"xhub: cannot reach {url}: {exc}", err=True)
                raise typer.Exit(2) from None
            if r.status_code in (200, 202):
                data = r.json()
                note = " (already submitted)" if r.status_code == 200 else ""
                typer.echo(f"{path}: {data['id']} {data['status']}{note}")
            else:
                failed += 1
                problem = r.json() if r.headers.get("content-type", "").endswith("json") else {}
                detail = problem.get("detail", r.text)
                typer.echo(f"{path}: refused {r.status_code} {problem.get('title', '')}: {detail}")
    raise typer.Exit(1 if failed else 0)


@messages_app.command("list")
def messages_list(
    status: Annotated[Status | None, typer.Option(help="only this status")] = None,
    tenant: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Newest messages first."""
    rows = store.list_messages(_engine(), status=status, tenant=tenant, limit=limit)
    if as_json:
        typer.echo(json.dumps([{"id": str(m.id), "status": m.status, "tenant": m.tenant, "sender": m.sender,
                                "message_type": m.message_type, "created_at": m.created_at.isoformat()}
                               for m in rows], indent=2))
        return
    for m in rows:
        typer.echo(f"{m.id}  {m.status:<12} {m.created_at:%Y-%m-%d %H:%M:%S}  {m.tenant}/{m.sender}  "
                   f"{m.message_type or '-'}")


def _message_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        typer.echo(f"xhub: {value!r} is not a message id (a UUID)", err=True)
        raise typer.Exit(2) from None


@messages_app.command("show")
def messages_show(
    message_id: Annotated[str, typer.Argument(help="message id")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """A message with its deliveries and its full event trail (time, actor, from → to, reason)."""
    engine = _engine()
    mid = _message_id(message_id)
    m = store.get(engine, mid)
    if m is None:
        typer.echo(f"xhub: no message {mid}", err=True)
        raise typer.Exit(1)
    events = store.events(engine, mid)
    deliveries = store.deliveries(engine, mid)
    if as_json:
        typer.echo(json.dumps({"id": str(m.id), "status": m.status, "events": [event_json(e) for e in events],
                               "deliveries": [{"target": d.target, "status": d.status, "attempts": d.attempts}
                                              for d in deliveries]}, indent=2, default=str))
        return
    typer.echo(f"message   {m.id}\nstatus    {m.status}   attempts {m.attempts}\n"
               f"from      {m.tenant}/{m.sender} via {m.channel}\n"
               f"type      {m.standard or '-'} {m.standard_version or ''} {m.message_type or '-'}\n"
               f"route     {m.route or '-'}\n"
               f"payload   {m.content_type}, {m.payload_size} bytes, sha256 {m.payload_sha256}")
    if m.last_error:
        typer.echo(f"error     {m.last_error}")
    for d in deliveries:
        typer.echo(f"delivery  {d.target}: {d.status} after {d.attempts} attempt(s)"
                   + (f", {d.last_error}" if d.last_error else ""))
    typer.echo("events")
    for e in events:
        move = f"{e.from_status or '∅'} → {e.to_status}" if e.kind == "transition" else f"[{e.kind}]"
        typer.echo(f"  {e.at:%Y-%m-%d %H:%M:%S.%f}  {move:<26} {e.actor}: {e.reason}")


@messages_app.command("requeue")
def messages_requeue(
    message_id: Annotated[str, typer.Argument(help="message id")],
    operator: Annotated[str, typer.Option(envvar="USER", help="who does this (for the trail)")] = "cli",
    reason: Annotated[str | None, typer.Option(help="why, for the trail")] = None,
) -> None:
    """Give a dead message a fresh retry budget."""
    mid = _message_id(message_id)
    try:
        operations.requeue(_engine(), mid, operator=operator, reason=reason)
    except IllegalTransition:
        typer.echo(f"xhub: message {mid} is not dead (or does not exist); only dead messages can be requeued",
                   err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{mid} requeued")


@app.command("targets")
def targets_cmd(as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False) -> None:
    """Delivery targets: circuit state, consecutive failures, calls in flight."""
    rows = target_overview(_engine(), _config().targets)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        limit = f"/{r['max_concurrency']}" if r["max_concurrency"] else ""
        line = f"{r['target']:<24} {r['adapter']:<6} circuit {r['circuit']:<9} in flight {r['in_flight']}{limit}"
        if r["circuit"] != "closed":
            line += f"  until {r['open_until']}"
        if r["consecutive_failures"]:
            line += f"  {r['consecutive_failures']} failure(s): {r['last_error']}"
        typer.echo(line)


@rules_app.command("check")
def rules_check(
    golden: Annotated[bool, typer.Option(help="also run every mapping's golden input/output pairs")] = False,
) -> None:
    """Load and check every rule and mapping file; exit 2 with file and line on the first broken one."""
    rules = _rules().current
    typer.echo(f"{len(rules.routes)} route(s): {', '.join(r.name for r in rules.routes) or 'none'}")
    typer.echo(f"{len(rules.mappings)} mapping(s): {', '.join(sorted(rules.mappings)) or 'none'}")
    if not golden:
        return
    failures = 0
    for name, mapping in sorted(rules.mappings.items()):
        for given, expected in mapping.goldens:
            result = check_golden(mapping, given, expected)
            failures += result.problem is not None
            typer.echo(f"  {name}: {result.case}: {result.problem or 'ok'}")
    raise typer.Exit(1 if failures else 0)


@app.command("route")
def route_cmd(
    file: Annotated[Path, typer.Argument(help="a message to route", exists=True, dir_okay=False)],
    explain: Annotated[bool, typer.Option("--explain", help="say why each route did or did not match")] = True,
    metadata: Annotated[str | None, typer.Option(help='JSON facts, e.g. {"tenant": "memmingen", "service": '
                                                      '"99050012104000", "region": "09764000"}')] = None,
) -> None:
    """Show which route a message takes and what each target would receive. Delivers nothing."""
    try:
        extra = json.loads(metadata) if metadata else {}
    except json.JSONDecodeError as exc:
        typer.echo(f"xhub: --metadata is not JSON: {exc}", err=True)
        raise typer.Exit(2) from None
    if not isinstance(extra, dict):
        typer.echo("xhub: --metadata must be a JSON object", err=True)
        raise typer.Exit(2)
    rules = _rules().current
    result = explain_route(_config(), rules, file.read_bytes(), extra)
    typer.echo(result.text(explain))
    raise typer.Exit(0 if result.decision.route is not None else 1)


@fitconnect_app.command("poll")
def fitconnect_poll(
    once: Annotated[bool, typer.Option(help="poll every destination once and exit")] = False,
) -> None:
    """Fetch waiting submissions from FIT-Connect into the hub (``xhub serve`` does this too)."""
    config = _config()
    if config.fitconnect is None:
        typer.echo("xhub: no [fitconnect] section in the configuration", err=True)
        raise typer.Exit(2)
    channel = FitConnectChannel(config, _engine())
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
    bits: Annotated[int, typer.Option(help="RSA key size; FIT-Connect requires at least 4096")] = 4096,
) -> None:
    """Make a destination's encryption and signing key pairs with self-signed x5c chains (test environments)."""
    if bits < 4096:
        typer.echo("xhub: FIT-Connect requires RSA keys of at least 4096 bits", err=True)
        raise typer.Exit(2)
    files = generate_destination_keys(out, name=name, bits=bits)
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
        typer.echo("xhub: a sender token needs --tenant", err=True)
        raise typer.Exit(2)
    token = new_token()
    typer.echo(f"token (give it to the {'operator' if operator else 'sender'}; it is not stored): {token}\n")
    section = "operators" if operator else "senders"
    typer.echo(f"[[{section}]]\nname = \"{name}\"")
    if not operator:
        typer.echo(f"tenant = \"{tenant}\"")
    typer.echo(f"token_sha256 = \"{hash_token(token)}\"")


@app.command()
def demo(
    once: Annotated[bool, typer.Option(help="exit when done: 0 if every sample reached its expected state")] = False,
    port: Annotated[int, typer.Option(help="port for the hub (0: any free port)")] = 8080,
    workdir: Annotated[Path, typer.Option(help="where the demo keeps its database and files")] = Path("var/demo"),
) -> None:
    """Run the hub on SQLite against local stand-ins, submit the sample messages, show what happened."""
    from hub.demo import run_demo

    if port and not _port_free(port):
        typer.echo(f"port {port} is in use; using a free one")
        port = 0
    raise typer.Exit(run_demo(workdir, port, once))


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
