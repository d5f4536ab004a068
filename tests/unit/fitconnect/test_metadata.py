"""Metadata: the bundled schema, $schema handling, hashes and data syntax."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import pytest

from channels.fitconnect.metadata import (
    SCHEMA_PATH,
    check_data_hash,
    check_data_syntax,
    check_metadata,
    hash_matches,
    parse_metadata,
)
from channels.fitconnect.reject_reasons import PROBLEM_BASE
from tests.fitconnect_sender import metadata_for

ATTACHMENT = "2046f9f1-dc89-4440-9c24-c76a8f40d668"


def types(found: list[Any]) -> list[str]:
    return [p.type.removeprefix(PROBLEM_BASE) for p in found]


def test_bundled_schema_is_the_reference_copy() -> None:
    digest = hashlib.sha256(SCHEMA_PATH.read_bytes()).hexdigest()
    assert digest == "d61ad55c5d084195dbd403f512b39c0ff40ca66471b3d5902cb4401982948916"


def test_valid_metadata_passes() -> None:
    assert check_metadata(metadata_for(b"<a/>", {ATTACHMENT: b"pdf"})) == []


@pytest.mark.parametrize("schema, expected", [
    (None, "missing-schema"),
    ("https://schema.fitko.de/fit-connect/metadata/2.0.0/metadata.schema.json", "unsupported-schema"),
    ("https://example.org/metadata.json", "unsupported-schema"),
    ("https://schema.fitko.de/fit-connect/metadata/1.2.0/metadata.schema.json", None),
])
def test_schema_reference(schema: str | None, expected: str | None) -> None:
    md = metadata_for(b"<a/>", {})
    if schema is None:
        del md["$schema"]
    else:
        md["$schema"] = schema
    assert types(check_metadata(md)) == ([expected] if expected else [])


@pytest.mark.parametrize("break_it", [
    lambda md: md.pop("contentStructure"),
    lambda md: md["contentStructure"]["data"]["hash"].update(content="XYZ"),
    lambda md: md["contentStructure"]["data"]["submissionSchema"].update(mimeType="text/plain"),
    lambda md: md["contentStructure"]["attachments"][0].update(purpose="selfie"),
    lambda md: md["contentStructure"]["attachments"][0].update(attachmentId="not-a-uuid"),
    lambda md: md.update(replyChannel={}),
])
def test_schema_violations(break_it: Any) -> None:
    md = copy.deepcopy(metadata_for(b"<a/>", {ATTACHMENT: b"pdf"}))
    break_it(md)
    found = check_metadata(md)
    assert types(found) == ["schema-violation"] and found[0].instance == "metadata"
    assert len(found[0].detail) <= 500


def test_metadata_that_is_not_json() -> None:
    assert types(parse_metadata(b"{nope")[1]) == ["syntax-violation"]
    assert types(parse_metadata(b"[1]")[1]) == ["syntax-violation"]


def test_data_hash() -> None:
    md = metadata_for(b"<a/>", {})
    assert check_data_hash(md, b"<a/>") == []
    found = check_data_hash(md, b"<b/>")
    assert types(found) == ["hash-mismatch"] and found[0].instance == "data"
    del md["contentStructure"]["data"]
    assert types(check_data_hash(md, b"<a/>")) == ["hash-mismatch"]


def test_hash_comparison() -> None:
    digest = hashlib.sha512(b"x").hexdigest()
    assert hash_matches({"type": "sha512", "content": digest}, digest)
    assert hash_matches({"type": "sha512", "content": digest.upper()}, digest)
    assert not hash_matches({"type": "sha256", "content": digest}, digest)
    assert not hash_matches(None, digest)


@pytest.mark.parametrize("data, mime, ok", [
    (b"<a><b/></a>", "application/xml", True),
    (b"<a><b></a>", "application/xml", False),
    (b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>', "application/xml", False),
    (b'{"a": 1}', "application/json", True),
    (b'{"a": ', "application/json", False),
])
def test_data_syntax(data: bytes, mime: str, ok: bool) -> None:
    found = check_data_syntax(data, mime)
    assert (found == []) is ok
    if not ok:
        assert types(found) == ["syntax-violation"] and found[0].instance == "data"
