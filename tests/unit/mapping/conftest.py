"""Helpers for the mapping unit tests: write a mapping folder from TOML text and load it."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from hub.mapping import Mapping, load_mapping

MakeMapping = Callable[..., Mapping]


@pytest.fixture
def make_mapping(tmp_path: Path) -> MakeMapping:
    """``make_mapping(toml, name="m", files={"x.xsl": "..."})`` → the loaded mapping."""

    def make(toml: str, *, name: str = "m", files: dict[str, str] | None = None) -> Mapping:
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        (folder / "mapping.toml").write_text(textwrap.dedent(toml), encoding="utf-8")
        for file, text in (files or {}).items():
            (folder / file).write_text(textwrap.dedent(text), encoding="utf-8")
        return load_mapping(folder)

    return make
