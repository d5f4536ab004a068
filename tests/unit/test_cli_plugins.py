"""``xhub demo`` and ``xhub sandbox`` join the command line from the sandbox's side (the ``xhub.commands`` entry
point group), so that no product module imports the sandbox; a command that cannot be loaded is left out."""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import ClassVar

import pytest
import typer
from typer.testing import CliRunner

import xhub.cli
from xhub.cli import PLUGINS, _plugins
from xhub.cli.lazy import LazyGroup, Spec


def test_the_sandbox_commands_come_from_the_entry_point_group() -> None:
    found = {point.name: point.value for point in entry_points(group=PLUGINS)}
    assert found == {"demo": "sandbox.demo.cli:demo", "sandbox": "sandbox.cli:sandbox_app"}
    help_text = CliRunner().invoke(xhub.cli.app, ["--help"]).output
    assert " demo " in help_text and " sandbox " in help_text


def test_a_command_that_cannot_be_loaded_is_left_out(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    broken = EntryPoint(name="broken", value="no_such_module_anywhere:command", group=PLUGINS)
    monkeypatch.setattr(xhub.cli, "entry_points", lambda group: [broken])

    class Commands(LazyGroup):
        specs: ClassVar[list[Spec]] = [Spec("kept", "tests.unit.test_cli_plugins:kept", "Kept."), *_plugins()]

    assert capsys.readouterr().err == ("xhub: command 'broken' (no_such_module_anywhere:command) not loaded: "
                                       "ModuleNotFoundError: No module named 'no_such_module_anywhere'\n")
    cli = typer.Typer(no_args_is_help=True, cls=Commands)

    @cli.callback()
    def main() -> None:
        pass

    result = CliRunner().invoke(cli, ["kept"])
    assert result.exit_code == 0 and result.output == "still here\n"
    assert "broken" not in CliRunner().invoke(cli, ["--help"]).output


def kept() -> None:
    """Kept."""
    typer.echo("still here")


def test_a_command_whose_module_fails_says_so_in_one_line() -> None:
    class Commands(LazyGroup):
        specs: ClassVar[list[Spec]] = [Spec("gone", "tests.unit.test_cli_plugins:no_such_command", "Gone.")]

    cli = typer.Typer(no_args_is_help=True, cls=Commands)

    @cli.callback()
    def main() -> None:
        pass

    assert " gone " in CliRunner().invoke(cli, ["--help"]).output  # listed: nothing is imported to list it
    result = CliRunner().invoke(cli, ["gone"])
    assert result.exit_code == 2
    assert result.stderr == ("xhub: command 'gone' (tests.unit.test_cli_plugins:no_such_command) not loaded: "
                             "AttributeError: module 'tests.unit.test_cli_plugins' has no attribute "
                             "'no_such_command'\n")
