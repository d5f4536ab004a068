"""``xhub sandbox …``: run one stand-in in the foreground, one command each (for the demo and by hand)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from fastapi import FastAPI

from sandbox.recorder import create_recorder
from sandbox.trade_register import create_trade_register
from sandbox.vehicle_registry import PATH, create_vehicle_registry

__all__ = ["create_recorder", "create_trade_register", "create_vehicle_registry", "sandbox_app"]

sandbox_app = typer.Typer(help="Local stand-ins for the demo and tests (not for production).",
                          no_args_is_help=True)

Host = Annotated[str, typer.Option(help="Interface to listen on.")]


def _serve(app: FastAPI, host: str, port: int, what: str) -> None:
    typer.echo(f"{what} on http://{host}:{port}  (misbehaviour: POST /_behaviour, records: GET /_received)")
    uvicorn.run(app, host=host, port=port, log_level="info")


@sandbox_app.command("vehicle-registry")
def vehicle_registry(
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8081,
    user: Annotated[list[str] | None, typer.Option(
        help="name:password for WS-Security; repeat for more users. Without it, no authentication.")] = None,
) -> None:
    """The vehicle registry SOAP service (SOAP 1.1 and 1.2); WSDL at /VehicleRegistry?wsdl."""
    users: dict[str, str] = {}
    for item in user or []:
        name, sep, password = item.partition(":")
        if not sep or not name:
            raise typer.BadParameter(f"{item!r}: expected name:password", param_hint="--user")
        users[name] = password
    _serve(create_vehicle_registry(users=users), host, port, f"vehicle registry (SOAP at {PATH})")


@sandbox_app.command("trade-register")
def trade_register(
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8082,
) -> None:
    """The trade register REST service; OpenAPI at /openapi.json, Swagger UI at /docs."""
    _serve(create_trade_register(), host, port, "trade register (POST /api/v1/gewerbemeldungen)")


@sandbox_app.command("recorder")
def recorder(
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8083,
) -> None:
    """A recording HTTP sink that accepts anything under /inbox/."""
    _serve(create_recorder(), host, port, "recording sink (POST /inbox/…)")


@sandbox_app.command("fitconnect")
def fitconnect(
    host: Host = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8084,
    state_dir: Annotated[Path, typer.Option(help="Where the state lives (SQLite, attachments, signing key); "
                                                 "kept across restarts.")] = Path("var/fitconnect-emulator"),
) -> None:
    """A FIT-Connect delivery service (Submission API 1.1.3); set it up under /_admin/ (docs/fitconnect-emulator.md)."""
    from sandbox.fitconnect import Emulator, create_fitconnect_emulator  # only this command needs jwcrypto

    emu = Emulator(state_dir)
    base = f"http://{host}:{port}"
    typer.echo(f"FIT-Connect emulator on {base}  (token URL {base}/token, submission API {base}/v1, "
               f"admin {base}/_admin/, state in {state_dir})")
    try:
        uvicorn.run(create_fitconnect_emulator(emu), host=host, port=port, log_level="info")
    finally:
        emu.close()


if __name__ == "__main__":
    sandbox_app()
