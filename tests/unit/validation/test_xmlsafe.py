"""hub.xmlsafe: every hostile construct is refused with a clear title, before anything is expanded."""

from __future__ import annotations

import pytest

from hub.xmlsafe import _PLAIN_PROLOG, XmlLimits, XmlRejected, parse

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + b"".join(
        f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'.encode()
        for i in range(1, 10)
    )
    + b"]>\n<lolz>&lol9;</lolz>"
)


def _rejected(data: bytes, limits: XmlLimits | None = None) -> XmlRejected:
    with pytest.raises(XmlRejected) as info:
        parse(data, limits) if limits else parse(data)
    return info.value


def test_plain_document_parses() -> None:
    root = parse(b'<?xml version="1.0" encoding="UTF-8"?>\n<!-- c --><a xmlns="urn:x"><b>1</b></a>')
    assert root.tag == "{urn:x}a"


@pytest.mark.parametrize(
    "data",
    [
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>',
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "http://127.0.0.1:9/x">]><r>&x;</r>',
        b'<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]><r/>',
        b'<!DOCTYPE r SYSTEM "http://127.0.0.1:9/r.dtd"><r/>',
        b'<!DOCTYPE r PUBLIC "-//X//DTD X//EN" "file:///etc/passwd"><r/>',
        BILLION_LAUGHS,
        b'<!DOCTYPE r [<!ENTITY a "' + b"x" * 100_000 + b'">]><r>' + b"&a;" * 10_000 + b"</r>",
        b"<?pi x?>\n<!-- comment with <r> inside -->\n<!doctype r><r/>",
    ],
    ids=[
        "xxe-file",
        "xxe-network",
        "parameter-entity",
        "external-dtd",
        "public-dtd",
        "billion-laughs",
        "quadratic-blowup",
        "lowercase-after-comment",
    ],
)
def test_doctype_is_refused_before_parsing(data: bytes) -> None:
    exc = _rejected(data)
    assert exc.title == "Document type declaration not allowed"
    assert exc.line is not None


def test_doctype_in_utf16_is_refused() -> None:
    data = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>'.encode("utf-16")
    assert _rejected(data).title == "Document type declaration not allowed"


def test_utf16_document_without_doctype_parses() -> None:
    assert parse('<?xml version="1.0" encoding="UTF-16"?><r>ä</r>'.encode("utf-16")).text == "ä"


def test_entity_reference_without_declaration_is_refused() -> None:
    exc = _rejected(b"<r>&x;</r>")
    assert exc.title == "Entity references not allowed"


def test_deep_nesting_is_refused_by_libxml_cap() -> None:
    exc = _rejected(b"<a>" * 10_000 + b"</a>" * 10_000)
    assert exc.title == "Document too deeply nested"


def test_depth_limit_below_libxml_cap() -> None:
    data = b"<a>" * 21 + b"</a>" * 21
    parse(data, XmlLimits(max_depth=21))
    assert _rejected(data, XmlLimits(max_depth=20)).title == "Document too deeply nested"


def test_size_limit_is_checked_first() -> None:
    exc = _rejected(b"<r>" + b"x" * 2000 + b"</r>", XmlLimits(max_bytes=1000))
    assert exc.title == "Document too large"
    assert "1000" in exc.detail


@pytest.mark.parametrize("data", [b"", b"   \n\t"])
def test_empty(data: bytes) -> None:
    assert _rejected(data).title == "Empty document"


def test_invalid_utf8() -> None:
    exc = _rejected(b'<?xml version="1.0" encoding="UTF-8"?>\n<r>\xff\xfe\xfa</r>')
    assert exc.title == "Invalid character encoding"
    assert exc.line == 2


def test_not_well_formed_has_line() -> None:
    exc = _rejected(b"<r>\n<a>\n</r>")
    assert exc.title == "Not well-formed XML"
    assert exc.line == 3
    assert exc.detail.startswith("line 3")


def test_prolog_with_comments_and_a_doctype_after_them() -> None:
    assert parse(b'<?xml version="1.0"?>\n<!-- a - b -->\n<!--c--><r/>').tag == "r"
    exc = _rejected(b'<?xml version="1.0"?><!-- c --><!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>')
    assert exc.title == "Document type declaration not allowed"


def test_prolog_fast_path_takes_comments_and_leaves_the_rest_to_the_full_scan() -> None:
    # the one-match path covers the usual prolog, comments with single dashes and line breaks included
    assert _PLAIN_PROLOG.match(b'<?xml version="1.0"?>\n<!-- a - b\n - c -->\n<!---x--><r/>')
    # "--" inside a comment (not well-formed) and a DOCTYPE after a comment are left to the full scan
    assert not _PLAIN_PROLOG.match(b"<!-- a -- b --><r/>")
    assert not _PLAIN_PROLOG.match(b"<!-- x --><!DOCTYPE r><r/>")
    assert _rejected(b"<!-- a -- b --><r/>").title == "Not well-formed XML"


def test_many_unclosed_prolog_comments_are_refused_without_backtracking() -> None:
    # 50,000 comments and an unclosed one: the prolog fast path must fail in one pass (a backtracking
    # pattern would take exponential time here), and the parser then reports the broken comment.
    assert _rejected(b"<!--a-->" * 50_000 + b"<!--c").title == "Not well-formed XML"
