"""``xhub messages`` and ``xhub targets``: look at messages and targets, and requeue a dead message.

The looking ones (``messages list/show``, ``targets``) open the database read-only: they never create a
database, a folder or a file.
"""

from __future__ import annotations

import json
import uuid
from typing import Annotated

import typer

from hub import operations, store
from hub.statemachine import IllegalTransition, Status
from hub.targets import target_overview
from xhub.api.views import event_json
from xhub.cli import common
from xhub.cli.dataprotection import messages_purge

__all__ = ["messages_app", "targets_cmd"]

messages_app = typer.Typer(help="Inspect and repair messages.", no_args_is_help=True)
messages_app.command("purge")(messages_purge)  # retention's purge, by hand


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
