"""The qualified header XPath of a bundle gives exactly what the namespace-agnostic walk gives.

The engine takes ``header_xpath`` from the manifest for documents that passed the XSD and the walk of
``header`` for the rest; a routing rule must never see a different header because of that. Every
schema-valid fixture of every shipped bundle is checked both ways.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from hub.validation import ValidationEngine
from hub.validation.detection import HeaderXPath, extract_header, split_tag
from hub.xmlsafe import parse

from .conftest import FIXTURES

SHIPPED = sorted(
    p for folder in ("xbau-2.6", "xdomea-3.0.0", "xgewerbesteuer-1.4") for p in (FIXTURES / folder).glob("*.xml")
)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name[:60])
def test_fast_header_equals_the_walk(engine: ValidationEngine, path: Path) -> None:
    root = parse(path.read_bytes())
    bundle = engine.bundle_for(split_tag(root.tag)[0])
    assert bundle is not None
    compiled = bundle.compiled()
    assert compiled.header_xpath, f"{bundle.name} ships without header_xpath"
    report = engine.validate_root(root)
    walked = extract_header(root, bundle.header_paths)
    assert report.header == walked
    assert compiled.header_xpath(root) == walked
    assert report.header["message_uuid"] or report.header["created_at"], "the fixture has a header"


def test_xsd_invalid_documents_get_the_agnostic_walk(engine: ValidationEngine) -> None:
    # The header is qualified by mistake: the XSD refuses it, the walk (by local name) still reads it.
    data = sorted((FIXTURES / "xgewerbesteuer-1.4").glob("*.xml"))[0].read_bytes()
    root = parse(data)
    head = root.find("nachrichtenkopf")
    assert head is not None
    head.tag = "{urn:xoev-de:xunternehmen:standard:gewerbesteuer_1.4}nachrichtenkopf"
    report = engine.validate_root(root)
    assert report.verdict == "invalid"
    assert report.header["message_uuid"] == "00000000-0000-0000-0000-000000000011"
    assert report.header["author_id"] == "12345678"


def test_alternatives_normalisation_and_type_code_fallback() -> None:
    fast = HeaderXPath(
        {"message_uuid": ["k:kopf/k:id", "k:kopf/k:uuid"], "reader_id": ["k:kopf/k:leser"]},
        {"k": "urn:k"},
    )
    root = etree.fromstring(
        b"<k:nachricht.antrag.0200 xmlns:k='urn:k'><k:kopf><k:id>  </k:id><k:uuid>\n a\n  b </k:uuid>"
        b"<k:leser>x<k:sub> y </k:sub></k:leser></k:kopf></k:nachricht.antrag.0200>"
    )
    assert fast(root) == {
        "message_uuid": "a b",  # the first alternative is blank, so the second one counts
        "type_code": "0200",  # from the root element's name, as the walk does
        "created_at": None,
        "author_id": None,
        "reader_id": "x y",
    }
    assert fast(root) == extract_header(root, {"message_uuid": ("kopf/id", "kopf/uuid"), "reader_id": ("kopf/leser",)})
