"""``xhub --help`` and ``xhub validate`` start without the database, the API, the adapters or Saxon: each
command's module is imported when the command runs (``xhub/cli/lazy.py``). Behaviour, not timing: what a
fresh interpreter has imported after the command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer.main

from xhub.cli import COMMANDS
from xhub.cli.lazy import load

pytestmark = pytest.mark.slow

HEAVY = ("sqlalchemy", "fastapi", "uvicorn", "zeep", "saxonche", "httpx", "jwcrypto", "alembic")
GEWST = Path(__file__).resolve().parents[1] / "fixtures/xoev/xgewerbesteuer-1.4"


def _imported_after(*argv: str, cwd: Path) -> tuple[set[str], str]:
    script = ("import sys\nfrom xhub.cli import app\ntry:\n    app(sys.argv[1:], prog_name='xhub')\n"
              "except SystemExit:\n    pass\nsys.stdout.flush()\n"
              f"print('MODULES', ' '.join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, cwd=cwd,
                          timeout=120, check=False)
    line = [x for x in done.stderr.splitlines() if x.startswith("MODULES")][-1]
    return set(line.split()[1:]), done.stdout


def test_help_imports_none_of_the_heavy_libraries(tmp_path: Path) -> None:
    modules, out = _imported_after("--help", cwd=tmp_path)
    assert modules == set()
    assert "validate" in out and "serve" in out and "sandbox" in out


def test_validate_imports_none_of_the_heavy_libraries(tmp_path: Path) -> None:
    sample = sorted(GEWST.glob("*.xml"))[0]
    modules, out = _imported_after("validate", str(sample), cwd=tmp_path)
    assert modules == set()
    assert ": valid | XGewerbesteuer 1.4" in out


def test_a_command_that_runs_is_the_real_one(tmp_path: Path) -> None:
    _, out = _imported_after("db", "--help", cwd=tmp_path)
    assert "upgrade" in out and "current" in out


@pytest.mark.parametrize("spec", COMMANDS, ids=lambda s: s.name)
def test_each_listed_line_is_the_commands_own_help(spec: object) -> None:
    command = load(spec)  # type: ignore[arg-type]
    assert command.name == spec.name  # type: ignore[attr-defined]
    if isinstance(command, typer.core.TyperGroup):
        assert command.help == spec.help  # type: ignore[attr-defined]
    else:
        assert command.get_short_help_str(200) == spec.help  # type: ignore[attr-defined]
