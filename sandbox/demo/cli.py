"""``xhub demo``: registered through the ``xhub.commands`` entry point group (see pyproject.toml)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from sandbox.demo import DemoError, run_demo
from xhub.cli import common

__all__ = ["demo"]


def demo(
    once: Annotated[bool, typer.Option(help="exit when done: 0 if every sample reached its expected state")] = False,
    port: Annotated[int, typer.Option(min=0, max=65535, help="port for the hub (0: any free port)")] = 8080,
    workdir: Annotated[Path, typer.Option(help="where the demo keeps its database and files")] = Path("var/demo"),
) -> None:
    """Run the hub on SQLite against local stand-ins, submit the sample messages, show what happened."""
    if port and not _port_free(port):
        typer.echo(f"port {port} is in use; using a free one")
        port = 0
    try:
        code = run_demo(workdir, port, once)
    except DemoError as exc:
        common.fail(str(exc))
    raise typer.Exit(code)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
