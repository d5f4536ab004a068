"""A broken mapping fails at load time, with file, line and key path in the message."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.mapping import MappingError, load_mappings
from tests.unit.mapping.conftest import MakeMapping

HEADER = """\
[mapping]
source = "xml"
output = "json"
[namespaces]
a = "urn:example:a"
"""  # 5 lines: the first field below is on line 7


@pytest.mark.parametrize(
    ("fields", "line", "key", "problem"),
    [
        ('x = "a:b["', 7, "fields.x", "invalid XPath 'a:b['"),
        ('x = "q:b"', 7, "fields.x", "Undefined namespace prefix"),
        ('x = "a:b[frobnicate(.)]"', 7, "fields.x", "unknown function frobnicate()"),
        ('x = "concat(a:b)"', 7, "fields.x", "Invalid number of arguments"),
        ('x = { xpath = "a:b", when = "a:c[" }', 7, "fields.x.when", "invalid XPath"),
        ('x = { xpath = "a:b", type = "money" }', 7, "fields.x.type", "unknown type 'money'"),
        ('x = { xpath = "a:b", type = "integer", format = "%d" }', 7, "fields.x.format", "not integer"),
        ('x = { xpath = "a:b", table = "nope" }', 7, "fields.x.table", "no code table 'nope'"),
        ('x = { xpath = "a:b", defualt = "1" }', 7, "fields.x.defualt", "unknown option for a value"),
        ('x = { xpath = "a:b", const = "1" }', 7, "fields.x.xpath", "one source, not const and xpath"),
        ('x = { const = "1", required = true }', 7, "fields.x.required", "a constant takes no conversion"),
        ('x = { xpath = "a:b", type = "integer", default = "n/a" }', 7, "fields.x.default", "does not convert"),
        ('x = { xpath = "a:b", required = true, default = "1" }', 7, "fields.x.default", "never missing"),
        ('x = { xpath = "a:b", required = "yes" }', 7, "fields.x.required", "must be true or false"),
        ('x = { template = "{not valid}" }', 7, "fields.x.template", "not a context name"),
        ('x = { when = "a:b" }', 7, "fields.x.when", "has rule options (when) but no source"),
        ('x = { each = "a:b" }', 7, "fields.x", "exactly one of fields"),
        ('x = { fields = { y = "a:b" }, each2 = 1 }', 7, "fields.x.each2", "unknown option for a object"),
        ("x = [1, 2]", 7, "fields.x", "a field is an XPath string"),
        ('x = ""', 7, "fields.x", "non-empty string"),
        ('ok = "a:b"\n\n[fields.deep.er]\ny = "a:b["', 10, "fields.deep.er.y", "invalid XPath"),
        ('ok = "a:b"\n[fields.obj]\nfrom = "a:b"\nfields = { z = "1 +" }', 10, "fields.obj.fields.z", "invalid"),
    ],
)
def test_field_errors(make_mapping: MakeMapping, fields: str, line: int, key: str, problem: str) -> None:
    with pytest.raises(MappingError) as caught:
        make_mapping(HEADER + "[fields]\n" + fields + "\n")
    error = caught.value
    assert str(error).startswith(f"{error.file}:{line}: {key}: "), str(error)
    assert error.file.endswith("mapping.toml")
    assert problem in str(error)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('[mapping]\nsource = "xml"\noutput = "json"\nfields = 1\n', 4, "mapping.fields: unknown option"),
        ('[fields]\nx = "a"\n', None, "a [mapping] table with source and output is required"),
        ('[mapping]\nsource = "csv"\noutput = "json"\n[fields]\nx = "a"\n', 2, "mapping.source: must be one of"),
        ('[mapping]\nsource = "xml"\noutput = "json"\nroot = "/x["\n[fields]\nx = "a"\n', 4, "mapping.root: invalid"),
        ('[mapping]\nsource = "xml"\noutput = "json"\ncolour = 1\n[fields]\nx = "a"\n', 4, "mapping.colour: unknown"),
        ('[mapping]\nsource = "xml"\noutput = "json"\n[fieldz]\nx = "a"\n', 4, "fieldz: unknown section"),
        ('[mapping]\nsource = "xml"\noutput = "json"\n', None, "fields: must be a non-empty table"),
        ('[mapping]\nsource = "xml"\noutput = "json"\n[namespaces]\n"a b" = "urn:x"\n[fields]\nx = "a"\n', 5,
         "namespaces.a b: not a namespace prefix"),
        ('[mapping]\nsource = "xml"\noutput = "json"\n[tables.t]\nvalues = { a = 1 }\n[fields]\nx = "a"\n', 5,
         "tables.t.values.a: a target code must be a string"),
        ('[mapping]\nsource = "xml"\noutput = "json"\n[tables.t]\nvalues = { a = "b" }\ndefault = "c"\n'
         'passthrough = true\n[fields]\nx = "a"\n', 7, "either a default or passthrough"),
        ('[mapping]\nsource = "xml"\noutput = "json"\n[fields]\nx = "a"\nx = "b"\n', 6, "not valid TOML"),
        ('[mapping]\nsource = "xml"\noutput = "xml"\n', 1, "mapping.xslt: output = \"xml\" needs xslt"),
        ('[mapping]\nsource = "xml"\noutput = "json"\nxslt = "t.xsl"\n[fields]\nx = "a"\n', 4,
         "only for output = \"xml\""),
    ],
)
def test_file_errors(make_mapping: MakeMapping, text: str, line: int | None, message: str) -> None:
    with pytest.raises(MappingError) as caught:
        make_mapping(text)
    assert caught.value.line == line, str(caught.value)
    assert message in str(caught.value)


def test_goldens_must_come_in_pairs(make_mapping: MakeMapping, tmp_path: Path) -> None:
    golden = tmp_path / "m" / "golden"
    golden.mkdir(parents=True)
    (golden / "one.input.xml").write_text("<a/>")
    with pytest.raises(MappingError, match=r"case 'one' needs both one\.input\.xml and one\.expected\.json"):
        make_mapping(HEADER + '[fields]\nx = "a:b"\n')
    (golden / "one.expected.json").write_text("{}")
    (golden / "stray.txt").write_text("")
    with pytest.raises(MappingError, match=r"stray\.txt: golden: not a golden file"):
        make_mapping(HEADER + '[fields]\nx = "a:b"\n')
    (golden / "stray.txt").unlink()
    mapping = make_mapping(HEADER + '[fields]\nx = "a:b"\n')
    assert mapping.goldens == [(golden / "one.input.xml", golden / "one.expected.json")]


def test_load_mappings_reads_every_folder_with_a_mapping_file(tmp_path: Path) -> None:
    for name in ("b", "a"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "mapping.toml").write_text(HEADER + '[fields]\nx = "a:b"\n')
    (tmp_path / "notes").mkdir()
    (tmp_path / "routes.toml").write_text("")
    mappings = load_mappings(tmp_path)
    assert list(mappings) == ["a", "b"]
    assert (mappings["a"].name, mappings["a"].source, mappings["a"].output) == ("a", "xml", "json")
    assert load_mappings(tmp_path / "missing") == {}
