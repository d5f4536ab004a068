"""Commands loaded when they run, not when ``xhub`` starts.

``xhub --help`` lists every command from a table of names, targets (``module:attribute``) and one-line helps,
without importing a single command module; ``xhub validate x.xml`` imports the validation command and
nothing of the database, the API or the adapters. A command's module is imported the moment the command is
chosen (:meth:`LazyGroup.resolve_command`), and then it is a normal Typer command or group with its own
options and ``--help``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
import typer.main
from typer import _click as click  # Typer's own click: its groups and commands are made of these classes
from typer.core import TyperCommand, TyperGroup

__all__ = ["LazyCommand", "LazyGroup", "Spec", "load"]


@dataclass(frozen=True)
class Spec:
    """A command by name: where it lives, and the line ``xhub --help`` shows for it."""

    name: str
    target: str  # "package.module:attribute", a function (a command) or a typer.Typer (a group)
    help: str


class LazyCommand(TyperCommand):
    """The stand-in listed by the help until the command is chosen."""

    def __init__(self, spec: Spec) -> None:
        super().__init__(spec.name, help=spec.help, short_help=spec.help)
        self.spec = spec


def load(spec: Spec) -> click.Command:
    """Import the command's module and make the click command Typer would have made at start-up."""
    module_name, _, attribute = spec.target.partition(":")
    target: Any = getattr(importlib.import_module(module_name), attribute)
    command: click.Command
    if isinstance(target, typer.Typer):
        command = typer.main.get_group(target)  # a group even with one command, as `add_typer` makes it
        command.help = spec.help  # the line of the listing heads the group's own help too
    else:
        single = typer.Typer(add_completion=False)
        single.command(spec.name)(target)
        command = typer.main.get_command(single)
    command.name = spec.name
    _plain(command)
    return command


def _plain(command: click.Command) -> None:
    """Help as the top level shows it: plain text (rich's formatting costs more to import than a command)."""
    command.rich_markup_mode = None  # type: ignore[attr-defined]
    for sub in getattr(command, "commands", {}).values():
        _plain(sub)


class LazyGroup(TyperGroup):
    """A Typer group whose commands are :class:`Spec` entries, imported when one is run.

    ``specs`` is filled by whoever builds the command line (``xhub/cli/__init__.py``) before the group is made.
    """

    specs: ClassVar[list[Spec]] = []

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for spec in self.specs:
            self.commands.setdefault(spec.name, LazyCommand(spec))

    def resolve_command(self, ctx: click.Context,
                        args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        name, command, rest = super().resolve_command(ctx, args)
        if name is not None and isinstance(command, LazyCommand):
            spec = command.spec
            try:
                command = self.commands[name] = load(spec)
            except Exception as exc:  # e.g. an extra command whose package is broken: one line, no traceback
                typer.echo(f"xhub: command {name!r} ({spec.target}) not loaded: {type(exc).__name__}: {exc}",
                           err=True)
                raise typer.Exit(2) from None
        return name, command, rest
