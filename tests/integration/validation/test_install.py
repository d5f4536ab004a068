"""Operator-installed bundles: an XRepository-style zip without manifest is inferred, installed, used."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.validation import ValidationEngine
from hub.validation.cli import main_app
from hub.validation.install import install_bundle
from hub.validation.manifest import BundleError, read_manifest

FIX = Path(__file__).resolve().parents[2] / "fixtures" / "xoev" / "xgewerbeanzeige"
NS = "http://www.xgewerbeanzeige.de/spezifikation/2.2"

# A stand-in for the XRepository release (the real XSDs are not public here): every message is a
# nachrichtenkopf plus satz elements, content not checked further; the code types come from an
# xoev-code import by absolute URL, as real releases do.
MAIN_XSD = f"""<?xml version="1.0" encoding="UTF-8"?>
<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" xmlns:xga="{NS}" targetNamespace="{NS}"
           elementFormDefault="qualified">
  <xs:import namespace="http://xoev.de/schemata/code/1_0"
             schemaLocation="http://xoev.de/schemata/code/1_0/xoev-code.xsd"/>
  <xs:complexType name="Nachricht">
    <xs:sequence>
      <xs:element name="nachrichtenkopf"><xs:complexType><xs:sequence>
        <xs:any processContents="skip" maxOccurs="unbounded"/></xs:sequence></xs:complexType></xs:element>
      <xs:element name="satz" maxOccurs="unbounded"><xs:complexType><xs:sequence>
        <xs:any processContents="skip" maxOccurs="unbounded"/></xs:sequence></xs:complexType></xs:element>
    </xs:sequence>
    <xs:anyAttribute processContents="skip"/>
  </xs:complexType>
  <xs:element name="abh.gewerbemeldung.0500" type="xga:Nachricht"/>
  <xs:element name="sta.gewerbemeldung.0100" type="xga:Nachricht"/>
</xs:schema>"""

CODE_XSD = """<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema" targetNamespace="http://xoev.de/schemata/code/1_0">
  <xs:complexType name="Code"><xs:sequence><xs:element name="code" type="xs:token" form="unqualified"/>
  </xs:sequence></xs:complexType></xs:schema>"""

SCH = f"""<sch:schema xmlns:sch="http://purl.oclc.org/dsdl/schematron" queryBinding="xslt2">
  <sch:ns prefix="xga" uri="{NS}"/>
  <sch:pattern><sch:rule context="xga:anmeldung">
    <sch:assert id="xga-test-001" test="exists(.//xga:betriebArt)">Die Betriebsart fehlt.</sch:assert>
  </sch:rule></sch:pattern>
</sch:schema>"""

GENERICODE = """<gc:CodeList xmlns:gc="http://docs.oasis-open.org/codelist/ns/genericode/1.0/">
  <Identification><ShortName>kanal</ShortName><Version>3</Version>
  <CanonicalUri>urn:de:xoev:codeliste:erreichbarkeit</CanonicalUri></Identification>
  <ColumnSet><Column Id="code"/><Key Id="k"><ColumnRef Ref="code"/></Key></ColumnSet>
  <SimpleCodeList><Row><Value ColumnRef="code"><SimpleValue>01</SimpleValue></Value></Row></SimpleCodeList>
</gc:CodeList>"""


def _release_zip(tmp_path: Path, extra: dict[str, str] | None = None) -> Path:
    path = tmp_path / "xgewerbeanzeige_2.2.zip"
    files = {
        "xgewerbeanzeige_2.2/xsd/xgewerbeanzeige-nachrichten.xsd": MAIN_XSD,
        "xgewerbeanzeige_2.2/xsd/xoev-code.xsd": CODE_XSD,
        "xgewerbeanzeige_2.2/schematron/xgewerbeanzeige.sch": SCH,
        "xgewerbeanzeige_2.2/codelisten/erreichbarkeit_3.xml": GENERICODE,
        "xgewerbeanzeige_2.2/README.txt": "Release notes",
        **(extra or {}),
    }
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def test_install_infers_manifest_and_validates(tmp_path: Path, xsd_dir: Path) -> None:
    schema_dir = tmp_path / "schemas"
    bundle = install_bundle(_release_zip(tmp_path), schema_dir)
    assert bundle.folder == schema_dir / "xgewerbeanzeige-2.2"
    manifest = read_manifest(bundle.folder)
    assert (manifest.standard, manifest.version, manifest.header) == (
        "XGewerbeanzeige",
        "2.2",
        "xgewerbeanzeige",
    )
    assert manifest.namespaces == [NS]
    assert manifest.message_types == ["abh.gewerbemeldung.0500", "sta.gewerbemeldung.0100"]
    assert manifest.schematron == ["schematron/xgewerbeanzeige.sch"]
    assert manifest.codelists == ["codelisten/erreichbarkeit_3.xml"]
    assert manifest.schema_locations == {
        "http://xoev.de/schemata/code/1_0/xoev-code.xsd": "xsd/xoev-code.xsd"
    }
    assert manifest.source is not None and manifest.source.startswith("xgewerbeanzeige_2.2.zip sha256:")
    assert [p.name for p in schema_dir.iterdir()] == ["xgewerbeanzeige-2.2"]  # no staging left behind

    engine = ValidationEngine.from_dirs([xsd_dir, schema_dir])
    valid = engine.validate((FIX / "xgwa2.2-valid.xml").read_bytes())
    assert valid.verdict == "valid", valid.findings
    assert valid.header["author_id"] == "12052000"
    invalid = engine.validate((FIX / "xgwa2.2-invalid.xml").read_bytes())
    assert invalid.verdict == "invalid"
    assert [(e.rule, e.message) for e in invalid.errors] == [("xga-test-001", "Die Betriebsart fehlt.")]
    assert invalid.errors[0].line is not None
    assert engine.validate((FIX / "xgwa2.1-valid.xml").read_bytes()).verdict == "not_checked"


def test_existing_bundle_needs_replace(tmp_path: Path) -> None:
    schema_dir = tmp_path / "schemas"
    install_bundle(_release_zip(tmp_path), schema_dir)
    with pytest.raises(BundleError, match="--replace"):
        install_bundle(_release_zip(tmp_path), schema_dir)
    install_bundle(_release_zip(tmp_path), schema_dir, replace=True)


def test_folder_with_manifest_is_installed_as_is(tmp_path: Path, xsd_dir: Path) -> None:
    bundle = install_bundle(xsd_dir / "xgewerbesteuer-1.4", tmp_path / "schemas")
    assert bundle.folder.name == "xgewerbesteuer-1.4"
    assert bundle.origin == "operator"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"../evil.xsd": "<x/>"}, "unsafe member"),
        (
            {
                "xgewerbeanzeige_2.2/xsd/broken.xsd": "<xs:schema "
                f"xmlns:xs='http://www.w3.org/2001/XMLSchema' "
                f"targetNamespace='{NS}'><xs:element name='x.0001' type='nope'/></xs:schema>"
            },
            "does not compile",
        ),
    ],
)
def test_bad_release_is_refused_and_nothing_installed(
    tmp_path: Path, extra: dict[str, str], message: str
) -> None:
    schema_dir = tmp_path / "schemas"
    with pytest.raises(BundleError, match=message):
        install_bundle(_release_zip(tmp_path, extra), schema_dir)
    assert list(schema_dir.iterdir()) == []


def test_unknown_standard_needs_name(tmp_path: Path) -> None:
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "a.xsd").write_text(
        "<xs:schema xmlns:xs='http://www.w3.org/2001/XMLSchema' targetNamespace='urn:a'>"
        "<xs:element name='a.nachricht.0001'/></xs:schema>"
    )
    with pytest.raises(BundleError, match="--standard"):
        install_bundle(folder, tmp_path / "schemas")
    bundle = install_bundle(folder, tmp_path / "schemas", standard="XA", version="1.0")
    assert bundle.manifest.header == "auto"
    report = ValidationEngine([bundle]).validate(b"<a:a.nachricht.0001 xmlns:a='urn:a'/>")
    assert (report.verdict, report.standard, report.version) == ("valid", "XA", "1.0")


def test_cli_schemas_add_list_and_validate(tmp_path: Path) -> None:
    runner = CliRunner()
    schema_dir = str(tmp_path / "schemas")
    result = runner.invoke(
        main_app, ["schemas", "add", str(_release_zip(tmp_path)), "--schema-dir", schema_dir]
    )
    assert result.exit_code == 0, result.output
    assert "installed XGewerbeanzeige 2.2" in result.output
    assert f"namespaces: {NS}" in result.output
    assert "abh.gewerbemeldung.0500" in result.output

    listing = runner.invoke(main_app, ["schemas", "list", "--schema-dir", schema_dir])
    assert "XGewerbeanzeige 2.2 [operator]" in listing.output
    assert "XBau 2.6 [shipped]" in listing.output

    valid = runner.invoke(main_app, ["validate", str(FIX / "xgwa2.2-valid.xml"), "--schema-dir", schema_dir])
    assert valid.exit_code == 0, valid.output
    both = runner.invoke(
        main_app,
        [
            "validate",
            "--format",
            "json",
            "--schema-dir",
            schema_dir,
            str(FIX / "xgwa2.2-valid.xml"),
            str(FIX / "xgwa2.2-invalid.xml"),
        ],
    )
    assert both.exit_code == 1
    data = json.loads(both.stdout)
    assert [d["verdict"] for d in data] == ["valid", "invalid"]
    assert data[1]["findings"][0]["rule"] == "xga-test-001"
    ValidationEngine.reset_shared()
