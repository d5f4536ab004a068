"""``xhub`` commands that look at the hub and repair it: ``db``, ``messages``, ``targets``, ``rules``, ``route``.

The looking ones (``db current``, ``messages list/show``, ``targets``, ``rules check``, ``route``) never create
a database, a folder or a file; ``route`` and ``rules check`` need no database at all.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.exc import SQLAlchemyError

from hub import cli_common as common
from hub import migrate, operations, store
from hub.api.views import event_json
from hub.configfile import FileProblem, read_bytes
from hub.db import DatabaseProblem, describe, make_engine
from hub.explain import explain_route
from hub.jsonsafe import JsonLimits, JsonRejected, loads
from hub.mapping.golden import check_golden
from hub.rules import ATTRIBUTE_KEYS
from hub.statemachine import IllegalTransition, Status
from hub.targets import target_overview

__all__ = ["db_app", "messages_app", "route_cmd", "rules_app", "targets_cmd"]

db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
messages_app = typer.Typer(help="Inspect and repair messages.", no_args_is_help=True)
rules_app = typer.Typer(help="Routing rules and mappings (mappings/).", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply all pending migrations (creates a SQLite database and its folder when missing)."""
    url = common.config().database.url
    try:
        db = make_engine(url)
        before = migrate.current_revision(db)
        migrate.upgrade(db)
        after = migrate.current_revision(db)
    except DatabaseProblem as exc:
        common.fail(str(exc))
    except SQLAlchemyError as exc:
        common.fail(describe(exc, url))
    db.dispose()
    typer.echo(f"database at revision {after} (was {before or 'empty'})")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and the one this code needs. Creates nothing."""
    url = common.config().database.url
    try:
        db = make_engine(url, read_only=True)
        current = migrate.current_revision(db)
    except DatabaseProblem as exc:
        common.fail(str(exc))
    except SQLAlchemyError as exc:
        common.fail(describe(exc, url))
    db.dispose()
    typer.echo(f"database: {current or 'empty'}; code: {migrate.head_revision()}")


@messages_app.command("list")
def messages_list(
    status: Annotated[Status | None, typer.Option(help="only this status")] = None,
    tenant: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(min=1, max=10000)] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Newest messages first."""
    rows = store.list_messages(common.engine(read_only=True), status=status, tenant=tenant, limit=limit)
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
        shown = repr(value) if len(value) <= 60 else f"{value[:40]!r}… ({len(value)} characters)"
        common.fail(f"{shown} is not a message id (a UUID)")


@messages_app.command("show")
def messages_show(
    message_id: Annotated[str, typer.Argument(help="message id")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """A message with its deliveries and its full event trail (time, actor, from → to, reason)."""
    mid = _message_id(message_id)
    db = common.engine(read_only=True)
    m = store.get(db, mid)
    if m is None:
        typer.echo(f"xhub: no message {mid}", err=True)
        raise typer.Exit(1)
    events = store.events(db, mid)
    deliveries = store.deliveries(db, mid)
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
    if not 0 < len(operator) <= 100 or not operator.isprintable():
        common.fail("--operator must be 1-100 printable characters")
    if reason is not None and (len(reason) > 1000 or not reason.isprintable()):
        common.fail("--reason must be at most 1000 printable characters (one line)")
    try:
        operations.requeue(common.existing_engine(), mid, operator=operator, reason=reason)
    except IllegalTransition:
        typer.echo(f"xhub: message {mid} is not dead (or does not exist); only dead messages can be requeued",
                   err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{mid} requeued")


def targets_cmd(as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False) -> None:
    """Delivery targets: circuit state, consecutive failures, calls in flight."""
    rows = target_overview(common.engine(read_only=True), common.config().targets)
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
    rules_dir: Annotated[Path | None, typer.Option(help="the rules folder to check (default: rules_dir)")] = None,
) -> None:
    """Load and check every rule and mapping file; exit 2 with file and line on the first broken one.

    Without a configuration file the rules are checked on their own: a route's target that no configuration
    defines here is a warning, since the hub that uses these rules defines its targets.
    """
    config = common.config()
    if rules_dir is not None:
        config = config.model_copy(update={"rules_dir": rules_dir})
    if not config.rules_dir.is_dir():
        common.fail(f"no rules folder {config.rules_dir} (rules_dir); run where it is, or give --rules-dir or "
                    "-c hub.toml")
    rules = common.rule_set(config)
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


_METADATA_KEYS = ("tenant", "channel", "sender", "standard", "version", "message_type", *ATTRIBUTE_KEYS)
_METADATA_LIMITS = JsonLimits(max_bytes=64 * 1024, max_depth=3, max_string_chars=4096)


def _metadata(text: str | None) -> dict[str, Any]:
    """``--metadata``: a JSON object of routing facts, each a string or a list of strings."""
    if not text:
        return {}
    try:
        value = loads(text.encode("utf-8", "surrogatepass"), _METADATA_LIMITS)
    except JsonRejected as exc:
        common.fail(f"--metadata is not usable JSON: {exc.detail}")
    if not isinstance(value, dict):
        common.fail("--metadata must be a JSON object, e.g. {\"tenant\": \"memmingen\"}")
    unknown = sorted(set(value) - set(_METADATA_KEYS))
    if unknown:
        common.fail(f"--metadata: unknown key {unknown[0][:40]!r}; the keys are {', '.join(_METADATA_KEYS)}")
    for key, item in value.items():
        items = item if isinstance(item, list) else [item]
        if not all(isinstance(v, str) for v in items):
            common.fail(f"--metadata: {key} must be a string or a list of strings")
    return value


def route_cmd(
    file: Annotated[Path, typer.Argument(help="a message to route")],
    explain: Annotated[bool, typer.Option("--explain", help="say why each route did or did not match")] = True,
    metadata: Annotated[str | None, typer.Option(help='JSON facts, e.g. {"tenant": "memmingen", "service": '
                                                      '"99050012104000", "region": "09764000"}')] = None,
) -> None:
    """Show which route a message takes and what each target would receive. Delivers nothing, stores nothing."""
    extra = _metadata(metadata)
    config = common.config()
    try:
        data = read_bytes(file, config.api.max_body_bytes, "the message")
    except FileProblem as exc:
        common.fail(str(exc))
    result = explain_route(config, common.rule_set(config), data, extra)
    typer.echo(result.text(explain))
    raise typer.Exit(0 if result.decision.route is not None else 1)
