"""The layers hold (docs/architecture.md): ``lint-imports`` passes on the code, fails on each import in the wrong
direction that the code once had, and the picture in the documentation names the packages of the contracts.

Runs ``lint-imports`` as a process, so that ``make test`` (and ``.ci/run``) enforce the contracts in
pyproject.toml. The wrong-direction cases run it on a copy of the sources with one import added.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))
CONTRACTS: list[dict[str, Any]] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"][
    "contracts"]
PACKAGES = ("hub", "channels", "adapters", "xhub", "sandbox")


def lint_imports(root: Path, *contracts: str) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` on the packages under ``root`` (found there first: PYTHONPATH)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    args = [LINT_IMPORTS, "--no-cache", *(a for c in contracts for a in ("--contract", c))]
    return subprocess.run(args, cwd=root, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_the_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken" in result.stdout


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Python sources and the contracts, copied once; each case adds its import to a copy of one file."""
    copy = tmp_path_factory.mktemp("layers")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("*.pyc", "__pycache__"),
                        dirs_exist_ok=False)
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


#: Imports the code had before the layers were drawn (issue 15), each with the contract that refuses it.
WRONG = {
    "core settings know a channel's config": ("hub/settings.py", "from channels.fitconnect.config import "
                                              "FitConnectConfig", "layers"),
    "the target gate imports an adapter": ("hub/targets.py", "from adapters.file import FileAdapter", "layers"),
    "the runner constructs adapters itself": ("hub/pipeline/runner.py", "from xhub import registry", "layers"),
    "a generic stage knows FIT-Connect": ("hub/pipeline/verify.py", "from channels.fitconnect import reject_reasons",
                                          "layers"),
    "the core imports the app": ("hub/worker.py", "from xhub.api.app import create_app", "layers"),
    "a channel imports the composition root": ("channels/fitconnect/intake.py", "from xhub.config import HubConfig",
                                               "layers"),
    "a channel imports an adapter": ("channels/fitconnect/api.py", "from adapters.rest import RestAdapter", "layers"),
    "the SOAP adapter imports the REST adapter": ("adapters/soap.py", "from adapters.rest import RestAdapter",
                                                  "adapters-independent"),
    "one channel imports another": ("channels/rest/router.py", "from channels.fitconnect.intake import CHANNEL",
                                    "channels-independent"),
    "the product imports the sandbox": ("xhub/cli/__init__.py", "import sandbox.demo", "product-without-sandbox"),
}


@pytest.mark.parametrize("case", WRONG)
def test_each_wrong_direction_fails(sources: Path, case: str) -> None:
    module, line, contract = WRONG[case]
    target = sources / module
    original = target.read_text()
    target.write_text(f"{original}\n{line}  # the wrong direction\n")
    try:
        result = lint_imports(sources, contract)
    finally:
        target.write_text(original)
    assert result.returncode != 0, result.stdout
    assert "BROKEN" in result.stdout and "0 kept, 1 broken" in result.stdout, result.stdout


def _picture() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    found = re.search(r"<!-- layers -->\s*```text\n(.*?)```", text, re.S)
    assert found, "docs/architecture.md has no layer picture (a ```text block after <!-- layers -->)"
    return found.group(1).splitlines()


def test_the_picture_in_the_docs_is_the_contracts() -> None:
    """Top to bottom, the picture's layers are the layers contract's (the sandbox beside them, last), and the
    line under a layer names every module of its independence contract."""
    picture = _picture()
    rows = [(i, re.match(r"^([a-z]+/(?: \| [a-z]+/)*)", line)) for i, line in enumerate(picture)]
    drawn = [(i, re.findall(r"([a-z]+)/", m.group(1))) for i, m in rows if m]
    layers = next(c for c in CONTRACTS if c["type"] == "layers")["layers"]
    assert [names for _, names in drawn] == [[n.strip() for n in layer.split("|")] for layer in layers] + [
        ["sandbox"]]
    for contract in (c for c in CONTRACTS if c["type"] == "independence"):
        (parent,) = {m.rsplit(".", 1)[0] for m in contract["modules"]}
        (row,) = [i for i, names in drawn if parent in names]
        for module in contract["modules"]:
            assert re.search(rf"\b{module.rsplit('.', 1)[1]}\b", picture[row + 1]), (module, picture[row + 1])
