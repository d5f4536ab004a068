"""Golden runner: every mapping in mappings/ renders each golden input to exactly its expected output.

A mapping without a golden pair fails here: adding a mapping means adding its golden files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.mapping import Mapping, load_mappings
from hub.mapping.golden import check_golden

REPO = Path(__file__).resolve().parents[3]
MAPPINGS_DIR = REPO / "mappings"
MAPPINGS = load_mappings(MAPPINGS_DIR)
CASES = [
    pytest.param(name, inp, expected, id=f"{name}/{inp.name.split('.input.')[0]}")
    for name, mapping in sorted(MAPPINGS.items())
    for inp, expected in mapping.goldens
]


def test_the_shipped_mappings_are_found() -> None:
    assert {
        "gewerbeanzeige-to-gewerberegister",
        "gewerbeanzeige13-to-gewerberegister",
        "vehicle-registration-to-registry",
        "xbau-to-xdomea-abgabe",
    } <= set(MAPPINGS)


@pytest.mark.parametrize("name", sorted(MAPPINGS))
def test_every_mapping_has_goldens(name: str) -> None:
    assert MAPPINGS[name].goldens, f"mappings/{name}/golden/ has no <case>.input.* / <case>.expected.* pair"


@pytest.mark.parametrize(("name", "input_path", "expected_path"), CASES)
def test_golden(name: str, input_path: Path, expected_path: Path) -> None:
    result = check_golden(MAPPINGS[name], input_path, expected_path)
    assert result.problem is None, f"{name}/{result.case}: {result.problem}\n--- actual:\n{result.actual!r}"


def test_a_changed_output_is_caught(tmp_path: Path) -> None:
    """The runner's comparison is not vacuous: a different expected file fails, for JSON and for XML."""
    mapping: Mapping = MAPPINGS["vehicle-registration-to-registry"]
    inp, expected = mapping.goldens[0]
    wrong = tmp_path / "wrong.expected.json"
    wrong.write_text(expected.read_text(encoding="utf-8").replace('"Vin"', '"VIN"'), encoding="utf-8")
    assert "$.VIN: missing" in (check_golden(mapping, inp, wrong).problem or "")
    xml_mapping = MAPPINGS["xbau-to-xdomea-abgabe"]
    inp, expected = xml_mapping.goldens[0]
    wrong = tmp_path / "wrong.expected.xml"
    wrong.write_text(expected.read_text(encoding="utf-8").replace("<code>030</code>", "<code>031</code>"))
    assert check_golden(xml_mapping, inp, wrong).problem is not None
    reindented = tmp_path / "reindented.expected.xml"
    reindented.write_text(expected.read_text(encoding="utf-8").replace("\n  ", "\n\t\t"))
    assert check_golden(xml_mapping, inp, reindented).problem is None
