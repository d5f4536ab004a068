"""bundle.json is checked when loaded; the resolver never leaves the bundle or touches the network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub.validation.manifest import BundleError, Manifest, read_manifest, write_manifest
from hub.validation.report import Finding, Report
from hub.validation.resolver import BundleResolver

GOOD = {"standard": "X", "version": "1", "namespaces": ["urn:x"], "entry": "x.xsd"}


def _bundle(tmp_path: Path, **changes: object) -> Path:
    (tmp_path / "x.xsd").write_text("<xs:schema xmlns:xs='http://www.w3.org/2001/XMLSchema'/>")
    (tmp_path / "bundle.json").write_text(json.dumps({**GOOD, **changes}))
    return tmp_path


def test_round_trip(tmp_path: Path) -> None:
    manifest = read_manifest(_bundle(tmp_path))
    assert manifest.header == "auto"
    write_manifest(tmp_path, manifest)
    assert read_manifest(tmp_path) == manifest


def test_shipped_manifests_load(xsd_dir: Path) -> None:
    names = {read_manifest(p.parent).standard for p in xsd_dir.glob("*/bundle.json")}
    assert names == {"XBau", "xdomea", "XGewerbesteuer"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"entry": "missing.xsd"}, "does not exist"),
        ({"entry": "../x.xsd"}, "relative to the bundle"),
        ({"header": "nope"}, "unknown header profile"),
        ({"header": {"author_id": ["a/b'] | //x"]}}, "local element names"),
        ({"header": {"colour": ["a"]}}, "unknown header field"),
        ({"namespaces": []}, "namespaces"),
        ({"extra": 1}, "extra"),
    ],
)
def test_bad_manifest(tmp_path: Path, changes: dict[str, object], message: str) -> None:
    with pytest.raises(BundleError, match=message):
        read_manifest(_bundle(tmp_path, **changes))


@pytest.mark.parametrize(
    ("retired", "warned"),
    [
        ({"header_xpath": {"author_id": ["k:kopf/k:autor["]}, "prefixes": {"k": "urn:k"}}, True),
        ({"header_xpath": {}, "prefixes": {}}, False),  # what `xhub schemas add` wrote before
    ],
)
def test_retired_header_xpath_is_ignored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, retired: dict[str, object], warned: bool
) -> None:
    # A bundle installed by an earlier version still loads; the header is read one way ("header" paths).
    manifest = read_manifest(_bundle(tmp_path, header="xoev-g2g", **retired))
    assert manifest.header_paths()["author_id"] == ("nachrichtenkopf.g2g/autor/kennung",)
    messages = [r.getMessage() for r in caplog.records if r.name == "hub.validation.manifest"]
    if warned:
        assert messages == [
            f"{tmp_path.name}/bundle.json: header_xpath and prefixes ignored: the header is read by the "
            "'header' paths only; remove the key"
        ]
    else:
        assert messages == []
    write_manifest(tmp_path, manifest)
    assert "header_xpath" not in (tmp_path / "bundle.json").read_text()
    with pytest.raises(ValueError, match="header_xpath"):  # the model itself has no such field
        Manifest(**GOOD, header_xpath={})  # type: ignore[call-arg]


def test_custom_header_paths() -> None:
    manifest = Manifest(**GOOD, header={"author_id": ["kopf/autor"]})  # type: ignore[arg-type]
    assert manifest.header_paths() == {"author_id": ("kopf/autor",)}


def test_resolver_maps_urls_locally_and_refuses_the_rest(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "xml.xsd").write_text("<x/>")
    (tmp_path / "a.xsd").write_text("<x/>")
    resolver = BundleResolver(tmp_path, {"urn:mapped": "a.xsd"})
    assert resolver.local_path("http://www.w3.org/2001/xml.xsd") == tmp_path.resolve() / "sub" / "xml.xsd"
    assert resolver.local_path("urn:mapped") == tmp_path.resolve() / "a.xsd"
    assert resolver.local_path("http://example.org/unknown.xsd") is None
    assert resolver.local_path("/etc/passwd") is None
    assert resolver.local_path("file:///etc/passwd") is None
    assert resolver.local_path(str(tmp_path / "a.xsd")) == tmp_path / "a.xsd"


def test_report_to_dict_is_json_safe() -> None:
    report = Report(
        "invalid",
        reason="r",
        header={"reader_id": ["a", "b"]},
        findings=[Finding("error", "m", 3, "/a", "xsd")],
    )
    assert json.loads(json.dumps(report.to_dict())) == {
        "verdict": "invalid",
        "reason": "r",
        "standard": None,
        "version": None,
        "message_type": None,
        "header": {"reader_id": ["a", "b"]},
        "findings": [{"severity": "error", "message": "m", "line": 3, "path": "/a", "rule": "xsd"}],
    }
    assert report.summary() == "invalid | unknown document | r"
