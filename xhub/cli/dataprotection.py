"""``xhub keys new-master-key | rotate-data-key | reseal | status`` and ``xhub messages purge``: encryption at
rest (:mod:`hub.sealing`) and retention (:mod:`hub.retention`) by hand. docs/data-protection.md explains both."""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError

from hub import retention, sealing
from hub.blobs import BlobStore
from hub.db import describe
from hub.models import DataKey, MessagePart
from xhub.cli import common

__all__ = ["keys_new_master_key", "keys_reseal", "keys_rotate_data_key", "keys_rotate_master_key", "keys_status",
           "messages_purge"]


def _keyring() -> tuple[sealing.Keyring, Engine]:
    engine = common.existing_engine()
    keyring = sealing.keyring_of(engine)
    if keyring is None:
        common.fail(f"no master key is configured: set [storage] master_key_file or {sealing.MASTER_KEY_ENV} "
                    "(xhub keys new-master-key makes one)")
    return keyring, engine


def keys_new_master_key(
    out: Annotated[Path, typer.Argument(help="the file to create (mode 0600; an existing file is never "
                                             "overwritten)")],
) -> None:
    """Make a new master key file for [storage] master_key_file (or print it for a secrets manager with '-')."""
    if str(out) == "-":
        typer.echo(sealing.MasterKey.generate())
        return
    try:
        key = sealing.MasterKey.write_new(out)
    except FileExistsError:
        common.fail(f"{out} exists; a master key is never overwritten (the data sealed with it would be lost)")
    except OSError as exc:
        common.fail(f"cannot write {out}: {exc.strerror}")
    typer.echo(f"master key {key.fingerprint} written to {out} (mode 0600). Keep a copy where you keep secrets: "
               "without it the stored messages cannot be read.")


def keys_rotate_data_key(
    reseal: Annotated[bool, typer.Option(help="re-seal the records of older keys now, not only in the workers' "
                                              "background loop")] = False,
) -> None:
    """Make a new data key; new records are sealed with it at once (every process within seconds), older ones
    are re-sealed in the background by each worker process (or now, with --reseal). No downtime."""
    keyring, _ = _keyring()
    try:
        key_id = keyring.rotate()
    except SQLAlchemyError as exc:
        common.fail(describe(exc, ""))
    typer.echo(f"data key {key_id} is now current (master key {keyring.master.fingerprint})")
    if reseal:
        keys_reseal()


def keys_rotate_master_key(
    new_key_file: Annotated[Path, typer.Argument(help="the new master key (a 0600 file from `xhub keys "
                                                      "new-master-key`)")],
) -> None:
    """Wrap the data keys with a new master key (the stored records stay as they are). Then point [storage]
    master_key_file (or XHUB_MASTER_KEY) at the new key and restart the hub's processes; the old key can go."""
    keyring, _ = _keyring()
    try:
        new = sealing.MasterKey.from_file(new_key_file)
        count = keyring.change_master(new)
    except sealing.SealingError as exc:
        common.fail(str(exc))
    except SQLAlchemyError as exc:
        common.fail(describe(exc, ""))
    typer.echo(f"{count} data key(s) now wrapped by master key {new.fingerprint}; configure {new_key_file} and "
               "restart every hub process")


def keys_reseal(
    batch: Annotated[int, typer.Option(min=1, max=10000, help="parts per batch")] = 200,
) -> None:
    """Re-seal every part not sealed with the current data key (older keys, and plain rows written before
    encryption was switched on), batch by batch, beside the running hub."""
    _, engine = _keyring()
    config = common.config()
    total = sealing.RewrapReport()
    try:
        while True:
            step = sealing.rewrap_batch(engine, config.storage.blob_dir, limit=batch)
            total.resealed, total.blobs, total.skipped = (total.resealed + step.resealed, total.blobs + step.blobs,
                                                          total.skipped + step.skipped)
            if not step.remaining or not (step.resealed + step.blobs):
                break
    except sealing.SealingError as exc:
        common.fail(str(exc))
    typer.echo(str(total))


def keys_status(as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False) -> None:
    """The data keys and how many stored parts each one seals (plain: not sealed yet)."""
    engine = common.engine(read_only=True)
    with engine.connect() as conn:
        keys = conn.execute(select(DataKey.id, DataKey.master, DataKey.created_at, DataKey.retired_at)
                            .order_by(DataKey.id)).all()
        counts = dict(conn.execute(select(MessagePart.key_id, func.count()).group_by(MessagePart.key_id)).all())
    rows = [{"key_id": k.id, "master": k.master, "created_at": k.created_at.isoformat(),
             "retired_at": k.retired_at.isoformat() if k.retired_at else None, "parts": counts.get(k.id, 0)}
            for k in keys]
    if as_json:
        typer.echo(json.dumps({"keys": rows, "plain_parts": counts.get(None, 0)}, indent=2))
        return
    for row in rows:
        state = f"retired {row['retired_at'][:19]}" if row["retired_at"] else "current" if row is rows[-1] else "-"
        typer.echo(f"key {row['key_id']:<4} master {row['master']}  created {row['created_at'][:19]}  {state:<28} "
                   f"{row['parts']} part(s)")
    typer.echo(f"plain (not sealed): {counts.get(None, 0)} part(s)")


def messages_purge(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only list what is due")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
) -> None:
    """Remove the payloads and attachments of ended messages whose retention period ([retention]) has passed;
    the message rows and their event trails stay."""
    config = common.config()
    policy = retention.Policy(config.retention)
    if not policy.active:
        common.fail("no retention period is configured ([retention] delivered / rejected / dead): nothing is purged")
    engine = common.existing_engine()
    actor = f"cli:{_user()}"
    try:
        report = retention.purge(engine, policy, BlobStore(config.storage.blob_dir), actor=actor,
                                 batch=config.retention.batch_size, dry_run=dry_run)
    except SQLAlchemyError as exc:
        common.fail(describe(exc, config.database.url))
    if as_json:
        typer.echo(json.dumps({"dry_run": dry_run, "messages": dict(report.messages), "parts": report.parts,
                               "bytes": report.bytes, "blob_files": report.blobs, "skipped": report.skipped,
                               "ids": [str(i) for i in report.ids]}, indent=2))
        return
    if dry_run:
        for message_id in report.ids:
            typer.echo(str(message_id))
    typer.echo(str(report))


def _user() -> str:
    try:
        return getpass.getuser()[:100]
    except (KeyError, OSError):  # no name for this uid (a container)
        return f"uid{os.getuid()}"
