"""``xhub fitconnect poll`` and ``xhub keys generate``: the FIT-Connect channel by hand."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

import typer

from channels.fitconnect.intake import Intake, Poller
from channels.fitconnect.keys import generate_destination_keys
from hub.worker import install_signal_handlers
from xhub.cli import common

__all__ = ["fitconnect_app", "keys_app"]

fitconnect_app = typer.Typer(help="FIT-Connect subscriber.", no_args_is_help=True)
keys_app = typer.Typer(help="Keys for FIT-Connect destinations.", no_args_is_help=True)


@fitconnect_app.command("poll")
def fitconnect_poll(
    once: Annotated[bool, typer.Option(help="poll every destination once and exit")] = False,
) -> None:
    """Fetch waiting submissions from FIT-Connect into the hub (``xhub serve`` does this too)."""
    config = common.config()
    if config.fitconnect is None:
        typer.echo("xhub: no [fitconnect] section in the configuration", err=True)
        raise typer.Exit(2)
    intake = Intake(config.fitconnect, config, common.engine())
    if once:
        report = intake.poll_once()
        intake.close()
        typer.echo(f"stored {report.stored}, refused {report.refused}, known {report.known}, "
                   f"failed {report.failed}")
        raise typer.Exit(1 if report.failed else 0)
    poller = Poller(intake, config.fitconnect.poll_interval_seconds)
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
