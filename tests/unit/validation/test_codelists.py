"""Genericode loading and the code-list membership rules."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from hub.validation.codelists import CodeList, CodeListError, CodeListSet, load_genericode

GENERICODE = """<?xml version="1.0" encoding="UTF-8"?>
<gc:CodeList xmlns:gc="http://docs.oasis-open.org/codelist/ns/genericode/1.0/">
  <Identification><ShortName>farbe</ShortName><Version>{version}</Version>
    <CanonicalUri>urn:test:farbe</CanonicalUri></Identification>
  <ColumnSet>
    <Column Id="schluessel"><ShortName>schluessel</ShortName></Column>
    <Column Id="text"><ShortName>text</ShortName></Column>
    <Key Id="k"><ShortName>k</ShortName><ColumnRef Ref="schluessel"/></Key>
  </ColumnSet>
  <SimpleCodeList>{rows}</SimpleCodeList>
</gc:CodeList>"""


def _write(tmp_path: Path, version: str, codes: list[str]) -> Path:
    rows = "".join(
        f"<Row><Value ColumnRef='schluessel'><SimpleValue>{c}</SimpleValue></Value>"
        f"<Value ColumnRef='text'><SimpleValue>t{c}</SimpleValue></Value></Row>"
        for c in codes
    )
    path = tmp_path / f"farbe_{version}.xml"
    path.write_text(GENERICODE.format(version=version, rows=rows), encoding="utf-8")
    return path


def test_load_uses_key_column(tmp_path: Path) -> None:
    code_list = load_genericode(_write(tmp_path, "2", ["01", "02"]))
    assert code_list == CodeList("urn:test:farbe", "2", "farbe", frozenset({"01", "02"}))
    assert code_list.rule == "urn:test:farbe_2"


def test_not_genericode(tmp_path: Path) -> None:
    path = tmp_path / "x.xml"
    path.write_text("<x/>")
    with pytest.raises(CodeListError, match="not a genericode"):
        load_genericode(path)


def test_xdomea_erreichbarkeit_list(xsd_dir: Path) -> None:
    code_list = load_genericode(
        xsd_dir / "xdomea-3.0.0" / "xdomea_3.0.0" / "code_lists" / "Erreichbarkeit_3.xml"
    )
    assert code_list.uri == "urn:de:xoev:codeliste:erreichbarkeit"
    assert code_list.codes == frozenset(f"0{i}" for i in range(1, 10))


def _doc(*elements: str) -> etree._Element:
    return etree.fromstring(("<r>\n" + "\n".join(elements) + "\n</r>").encode())


def test_check_rules(tmp_path: Path) -> None:
    lists = CodeListSet.from_paths([_write(tmp_path, "1", ["01"]).parent])
    _write(tmp_path, "2", ["01", "02"])
    lists = CodeListSet.from_paths([tmp_path])
    assert len(lists) == 2
    root = _doc(
        "<a listURI='urn:test:farbe' listVersionID='2'><code>02</code></a>",  # fine
        "<a listURI='urn:test:farbe' listVersionID='1'><code>02</code></a>",  # not in version 1
        "<a listURI='urn:test:farbe'><code>02</code></a>",  # no version: in some version, fine
        "<a listURI='urn:test:farbe'><code>09</code></a>",  # in no version
        "<a listURI='urn:test:farbe' listVersionID='7'><code>01</code></a>",  # version not installed
        "<a listURI='urn:test:other' listVersionID='1'><code>zz</code></a>",  # list not installed
        "<a listURI=''><code>zz</code></a>",
    )
    findings = lists.check(root)
    assert [(f.severity, f.line, f.rule) for f in findings] == [
        ("error", 3, "urn:test:farbe_1"),
        ("error", 5, "urn:test:farbe"),
        ("info", None, "urn:test:farbe_7"),
    ]
    assert findings[0].path == "/r/a[2]/code"
    assert "'02' is not in code list urn:test:farbe version 1" in findings[0].message
    assert "installed version (1, 2)" in findings[1].message


def test_empty_set_checks_nothing() -> None:
    assert CodeListSet([]).check(_doc("<a listURI='u'><code>x</code></a>")) == []
