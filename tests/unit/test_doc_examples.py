"""Every ```toml example in README.md and docs/ loads as it is written, so that copying one works.

What a block is, is decided by its content, not by a marker:

* a block whose top-level keys are all sections of a mapping file (``mapping``, ``fields``, ``tables``,
  ``params``, ``namespaces``) is a ``mapping.toml`` example: it must be valid TOML (the mapping language
  has its own tests; these blocks are often single rules);
* every other block is a ``hub.toml`` (or ``routes.toml``, whose ``[[routes]]`` are valid in ``hub.toml``
  too) example and is loaded through :func:`xhub.config.load_config` on its own: every section has
  defaults, so no block needs a "fragment" marker. Paths in ``*_file`` keys are pointed at stand-in secret
  files (the example's path is kept in the file name), since ``/run/secrets`` does not exist here.

The README's blocks together also form one configuration: its routes are checked against its targets and
the shipped mappings, as ``xhub serve`` would.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from hub.routing import load_rules
from xhub.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
MAPPING_SECTIONS = {"mapping", "fields", "tables", "params", "namespaces"}
_BLOCK = re.compile(r"^```toml\n(.*?)^```", re.MULTILINE | re.DOTALL)
_SECRET_FILE = re.compile(r'(\w+)_file(\s*=\s*)"([^"]+)"')


def blocks(doc: Path) -> list[tuple[int, str]]:
    text = doc.read_text(encoding="utf-8")
    return [(text.count("\n", 0, m.start()) + 2, m.group(1)) for m in _BLOCK.finditer(text)]


EXAMPLES = [pytest.param(doc, line, block, id=f"{doc.relative_to(ROOT)}:{line}")
            for doc in DOCS for line, block in blocks(doc)]


def with_stand_in_secrets(block: str, folder: Path) -> str:
    """Point every ``<name>_file = "path"`` at a file holding a value fit for ``<name>``."""
    def swap(match: re.Match[str]) -> str:
        name, sep, path = match.groups()
        stand_in = folder / re.sub(r"[^A-Za-z0-9.-]", "_", path)
        stand_in.write_text("ab" * 32 if name.endswith("sha256") else "example-secret\n", encoding="utf-8")
        return f'{name}_file{sep}"{stand_in}"'
    folder.mkdir(exist_ok=True)
    return _SECRET_FILE.sub(swap, block)


def test_the_docs_have_examples() -> None:
    assert len(EXAMPLES) >= 10  # a broken extraction must not pass silently
    assert sum(1 for doc, *_ in (p.values for p in EXAMPLES) if doc.name == "README.md") >= 3


@pytest.mark.parametrize(("doc", "line", "block"), EXAMPLES)
def test_example_loads(doc: Path, line: int, block: str, tmp_path: Path) -> None:
    data = tomllib.loads(block)  # every block is TOML, whatever it is for
    if data and set(data) <= MAPPING_SECTIONS:
        return
    path = tmp_path / "hub.toml"
    path.write_text(with_stand_in_secrets(block, tmp_path / "secrets"), encoding="utf-8")
    load_config(path, env={})


def test_readme_examples_form_one_working_configuration(tmp_path: Path) -> None:
    """Its routes name its own targets and the shipped mappings."""
    # Keys before the first table belong to no table: the block that has some goes first.
    readme = sorted((block for _, block in blocks(ROOT / "README.md")), key=lambda b: b.lstrip().startswith("["))
    rules_dir = tmp_path / "rules"  # the shipped mappings without the shipped routes.toml
    rules_dir.mkdir()
    for mapping in (ROOT / "mappings").iterdir():
        if mapping.is_dir():
            (rules_dir / mapping.name).symlink_to(mapping)
    text = "\n".join(readme).replace('rules_dir = "mappings"', f'rules_dir = "{rules_dir}"')
    path = tmp_path / "hub.toml"
    path.write_text(with_stand_in_secrets(text, tmp_path / "secrets"), encoding="utf-8")
    config = load_config(path, env={})
    assert config.rules_dir == rules_dir and config.fitconnect is not None
    rules = load_rules(config)
    assert [r.name for r in rules.routes] == ["gewerbeanzeige"] and not rules.warnings
