"""``xhub users add/list/disable/passwd``: the console's users.

Passwords are asked for on the terminal (twice, not echoed) or read from standard input with
``--password-stdin`` (one line, for scripts); never from the command line, where other users of the machine
could read them in the process list and the shell history.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from hub import users
from hub.users import Role, UserError
from xhub.cli import common

__all__ = ["users_app"]

users_app = typer.Typer(help="Console users: roles viewer, operator, admin; tenants.", no_args_is_help=True)

StdinOption = Annotated[bool, typer.Option("--password-stdin", help="read the password from standard input")]


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline(users.MAX_PASSWORD + 2)
        return line.rstrip("\r\n")
    first = typer.prompt("password", hide_input=True)
    again = typer.prompt("password (again)", hide_input=True)
    if first != again:
        common.fail("the two passwords differ")
    return str(first)


@users_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="login name")],
    role: Annotated[Role, typer.Option(help="viewer (reads), operator (reads and repairs), admin (everything)")],
    tenant: Annotated[list[str] | None, typer.Option(help="a tenant the user may see (repeat for more); "
                                                          "none for an admin")] = None,
    password_stdin: StdinOption = False,
    oidc_subject: Annotated[str | None, typer.Option(help="log in through the identity provider as ISSUER|SUB "
                                                          "(then no password is needed)")] = None,
    no_password: Annotated[bool, typer.Option(help="identity provider login only")] = False,
) -> None:
    """Add a user."""
    password = None if no_password else _password(password_stdin)
    try:
        user = users.add_user(common.existing_engine(), name, role, list(tenant or []), password, oidc_subject)
    except UserError as exc:
        common.fail(str(exc))
    typer.echo(f"user {user.name} added: {user.role.value}, tenants {', '.join(user.tenants) or 'all'}")


@users_app.command("list")
def list_() -> None:
    """Every user with role, tenants and whether it is disabled."""
    rows = users.list_users(common.engine(read_only=True))
    if not rows:
        typer.echo("no users yet: xhub users add NAME --role admin")
        return
    width = max(len(u.name) for u in rows)
    for u in rows:
        login = "+".join(x for x, on in (("password", u.has_password), ("idp", u.oidc_subject is not None)) if on)
        typer.echo(f"{u.name:<{width}}  {u.role.value:<8}  {'disabled' if u.disabled else 'active  '}  "
                   f"{login:<12}  {', '.join(u.tenants) or 'all tenants'}")


@users_app.command("disable")
def disable(
    name: str,
    enable: Annotated[bool, typer.Option(help="enable the user again instead")] = False,
) -> None:
    """Disable a user (every login of theirs ends at once), or enable them again."""
    try:
        users.disable_user(common.existing_engine(), name, disabled=not enable)
    except UserError as exc:
        common.fail(str(exc))
    typer.echo(f"user {name} {'enabled' if enable else 'disabled'}")


@users_app.command("passwd")
def passwd(name: str, password_stdin: StdinOption = False) -> None:
    """Set a user's password (every login of theirs ends)."""
    password = _password(password_stdin)
    try:
        users.set_password(common.existing_engine(), name, password)
    except UserError as exc:
        common.fail(str(exc))
    typer.echo(f"password of {name} changed")
