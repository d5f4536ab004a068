"""``xhub``: the command line of xoev-hub, assembled from one module per command group.

Every command reads the same configuration (``--config`` or ``XHUB_CONFIG``, default ``./hub.toml``);
configuration errors end with exit code 2 and a message naming the file, key and line.

Commands of other installed packages join through the ``xhub.commands`` entry point group
(:data:`PLUGINS`): the sandbox adds ``demo`` and ``sandbox`` that way, so that no product module imports it.
"""

from __future__ import annotations

import enum
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer

from hub.validation import cli as validation_cli
from hub.validation.cli import schemas_app, validate_command
from xhub.cli import common
from xhub.cli.db import db_app
from xhub.cli.fitconnect import fitconnect_app, keys_app
from xhub.cli.messages import messages_app, targets_cmd
from xhub.cli.rules import route_cmd, rules_app
from xhub.cli.serve import serve, worker
from xhub.cli.submit import submit
from xhub.cli.token import token_app
from xhub.cli.users import users_app

__all__ = ["PLUGINS", "app"]

#: The entry point group of commands from other packages: a ``typer.Typer`` (a group) or a function.
PLUGINS = "xhub.commands"

app = typer.Typer(help="xoev-hub: receive, validate, route and deliver XÖV and FIT-Connect messages.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.command()(serve)
app.command("worker")(worker)
app.command()(submit)
app.add_typer(db_app, name="db")
app.add_typer(messages_app, name="messages")
app.command("targets")(targets_cmd)
app.add_typer(rules_app, name="rules")
app.command("route")(route_cmd)
app.add_typer(token_app, name="token")
app.add_typer(users_app, name="users")
app.add_typer(fitconnect_app, name="fitconnect")
app.add_typer(keys_app, name="keys")
app.add_typer(schemas_app, name="schemas", help="Schema bundles: list the installed ones, add an XRepository release.")
app.command("validate")(validate_command)
validation_cli.configured_schema_dir = lambda: common.config().schema_dir  # the core cannot import this package


def _add_plugins(cli: typer.Typer) -> None:
    """Every command of the ``xhub.commands`` group; one that cannot be loaded is named on stderr and left out
    (the product's own commands keep working)."""
    for point in sorted(entry_points(group=PLUGINS), key=lambda p: p.name):
        try:
            command = point.load()
        except Exception as exc:  # a broken extra must not take the product's commands down with it
            print(f"xhub: command {point.name!r} ({point.value}) not loaded: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            continue
        if isinstance(command, typer.Typer):
            cli.add_typer(command, name=point.name)
        else:
            cli.command(point.name)(command)


_add_plugins(app)


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
