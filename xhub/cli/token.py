"""``xhub token new``: a bearer token for a sender or an operator, and the configuration lines with its hash."""

from __future__ import annotations

from typing import Annotated

import typer
from pydantic import ValidationError

from hub.auth import hash_token, new_token
from hub.settings import OperatorConfig, SenderConfig
from xhub.cli import common

__all__ = ["token_app"]

token_app = typer.Typer(help="Bearer tokens for senders and operators.", no_args_is_help=True)


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
