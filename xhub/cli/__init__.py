"""``xhub``: the command line of xoev-hub, assembled from one module per command group.

Every command reads the same configuration (``--config`` or ``XHUB_CONFIG``, default ``./hub.toml``);
configuration errors end with exit code 2 and a message naming the file, key and line.

Commands of other installed packages join through the ``xhub.commands`` entry point group
(:data:`PLUGINS`): the sandbox adds ``demo`` and ``sandbox`` that way, so that no product module imports it.
"""

from __future__ import annotations

import enum
import sys
from importlib.metadata import entry_points
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated, ClassVar

import typer

from xhub.cli import common
from xhub.cli.lazy import LazyGroup, Spec

__all__ = ["COMMANDS", "PLUGINS", "app"]

#: The entry point group of commands from other packages: a ``typer.Typer`` (a group) or a function.
PLUGINS = "xhub.commands"

#: Every command of the product, in the order of ``xhub --help``; each module is imported when its command
#: runs (:mod:`xhub.cli.lazy`), so that ``xhub --help`` and ``xhub validate`` start without the database,
#: the API and the adapters. The line is what the listing shows (``tests/unit/test_cli_startup.py`` checks it
#: against each command's own help).
COMMANDS = [
    Spec("serve", "xhub.cli.serve:serve", "Run the API (and, by default, an embedded worker): the one-process set-up."),
    Spec("worker", "xhub.cli.serve:worker", "Run a worker process."),
    Spec("submit", "xhub.cli.submit:submit", "Send files to a running hub's REST intake."),
    Spec("db", "xhub.cli.db:db_app", "Database schema."),
    Spec("messages", "xhub.cli.messages:messages_app", "Inspect and repair messages."),
    Spec("targets", "xhub.cli.messages:targets_cmd",
         "Delivery targets: circuit state, consecutive failures, calls in flight."),
    Spec("rules", "xhub.cli.rules:rules_app", "Routing rules and mappings (mappings/)."),
    Spec("route", "xhub.cli.rules:route_cmd", "Show which route a message takes and what each target would receive."),
    Spec("token", "xhub.cli.token:token_app", "Bearer tokens for senders and operators."),
    Spec("users", "xhub.cli.users:users_app", "Console users: roles viewer, operator, admin; tenants."),
    Spec("fitconnect", "xhub.cli.fitconnect:fitconnect_app", "FIT-Connect subscriber."),
    Spec("keys", "xhub.cli.keys:keys_app",
         "Keys: FIT-Connect destinations' key pairs, and the master and data keys of encryption at rest."),
    Spec("schemas", "xhub.cli.validate:schemas_app",
         "Schema bundles: list the installed ones, add an XRepository release."),
    Spec("validate", "xhub.cli.validate:validate_command",
         "Validate XÖV documents against the installed schema bundles."),
]


def _plugins() -> list[Spec]:
    """Every command of the ``xhub.commands`` group, listed without importing it (its line names where it comes
    from); one whose package is not installed is named on stderr and left out (the product's own commands keep
    working). A module that is there but fails when imported says so when its command is run."""
    found = []
    for point in sorted(entry_points(group=PLUGINS), key=lambda p: p.name):
        module = point.value.partition(":")[0].strip()
        package = module.partition(".")[0]  # a submodule would be imported with its parents to be found
        try:
            if find_spec(package) is None:
                raise ModuleNotFoundError(f"No module named {package!r}")
        except (ImportError, ValueError) as exc:
            print(f"xhub: command {point.name!r} ({point.value}) not loaded: {type(exc).__name__}: {exc}",
                  file=sys.stderr)
            continue
        found.append(Spec(point.name, point.value, f"(from {module})"))
    return found


class _Commands(LazyGroup):
    specs: ClassVar[list[Spec]] = [*COMMANDS, *_plugins()]


app = typer.Typer(help="xoev-hub: receive, validate, route and deliver XÖV and FIT-Connect messages.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  cls=_Commands, rich_markup_mode=None)  # plain help and errors: rich costs 0.13 s at start


class LogFormat(enum.StrEnum):
    json = "json"
    text = "text"


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
    log_format: Annotated[LogFormat | None, typer.Option(
        help="log lines on stderr: json (one object a line) or text; default: text on a terminal, else json")] = None,
) -> None:
    from xhub.logsetup import setup_logging  # here, not at the top: `xhub --help` stays light

    setup_logging(log_level.value, log_format.value if log_format else None)
    common.reset(config)
    ctx.call_on_close(common.close)
