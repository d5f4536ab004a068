"""Hostile inputs at the FIT-Connect door: submissions sent through the real delivery-service emulator, correctly
encrypted for the destination, carrying what an attacker (or a broken online service) would put inside.

Attack classes: pathological JSON in the decrypted metadata and data (deep nesting, 5,000-digit and
overflowing numbers, lone surrogates, duplicate keys, NaN/Infinity, wrong encodings, BOM, empty, truncated,
over-long strings), pathological XML data (deep nesting, DOCTYPE/XXE, entity expansion), malformed and
hostile JWEs (deep or huge protected headers, non-string kid, corrupt base64url, zip bombs), sizes over
every limit (metadata, data, attachment, number of attachments, total), names and types that do not fit the
store (NUL, control characters, path traversal, over-long file names and MIME types).

Every case sends the hostile submission and then a good one, polls once and runs the pipeline, and asserts:
the hostile one is stored as a refused record and rejected with the precise FIT-Connect problem type and
instance (read back from the emulator's event log), and the good one, taken in by the same poll, is stored,
delivered and accepted. Nothing is left waiting at the emulator.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from hub import store
from tests.hostile.fitconnect_world import (
    GOOD_DATA,
    XML_SCHEMA,
    Sender,
    Sent,
    World,
    b64u,
    metadata_for,
    world_fixtures,
)

pytestmark = pytest.mark.slow

Case = Callable[[Sender], Sent]


sqlite_world, pg_world, both_worlds = world_fixtures()


def hostile_then_good(w: World, case: Case) -> tuple[Sent, Sent]:
    """Send the hostile submission, then a good one; one poll takes both in; the pipeline answers both."""
    bad, good = case(w.sender), w.sender.good()
    report = w.poll()
    assert report.failed == 0 and (report.stored, report.refused) in ((1, 1), (2, 0)), report
    w.drain()
    w.assert_accepted(good)
    assert w.pending_at_emulator() == []
    return bad, good


def _metadata(raw: bytes) -> Case:
    return lambda s: s.send(metadata=raw, data=GOOD_DATA)


def _data(raw: bytes, schema: dict[str, str] | None = None) -> Case:
    return lambda s: s.send(metadata=json.dumps(metadata_for(raw, schema=schema)).encode(), data=raw)


def _with_good_metadata(extra: str) -> bytes:
    """Valid metadata for GOOD_DATA with one more member spliced in (as raw JSON text)."""
    good = json.dumps(metadata_for(GOOD_DATA))
    return (good[:-1] + ", " + extra + "}").encode()


DEEP = 5000  # json's C scanner gives up (RecursionError) far earlier

METADATA_SYNTAX: dict[str, bytes] = {
    "deeply nested arrays": _with_good_metadata('"x": ' + "[" * DEEP + "]" * DEEP),
    "deeply nested objects": _with_good_metadata('"x": ' + '{"a": ' * DEEP + "1" + "}" * DEEP),
    "5000-digit integer": _with_good_metadata('"x": ' + "7" * 5000),
    "101-digit integer": _with_good_metadata('"x": ' + "9" * 101),
    "float overflowing to infinity": _with_good_metadata('"x": 1e400'),
    "NaN": _with_good_metadata('"x": NaN'),
    "Infinity": _with_good_metadata('"x": Infinity'),
    "-Infinity": _with_good_metadata('"x": -Infinity'),
    "lone high surrogate": _with_good_metadata('"x": "\\ud800"'),
    "lone low surrogate in a key": _with_good_metadata('"\\udc00": 1'),
    "duplicate $schema": _with_good_metadata('"$schema": "https://schema.fitko.de/fit-connect/metadata/1.0.0/'
                                             'metadata.schema.json"'),
    "string over the length limit": _with_good_metadata('"x": "' + "a" * 5000 + '"'),
    "not UTF-8": _with_good_metadata('"x": "').replace(b'"x": "', b'"x": "\xff\xfe"'),
    "UTF-16": json.dumps(metadata_for(GOOD_DATA)).encode("utf-16"),
    "byte-order mark": b"\xef\xbb\xbf" + json.dumps(metadata_for(GOOD_DATA)).encode(),
    "empty": b"",
    "only whitespace": b" \n\t ",
    "a JSON array": b"[1, 2, 3]",
    "a JSON string": b'"metadata"',
    "truncated": json.dumps(metadata_for(GOOD_DATA)).encode()[:-7],
}


@pytest.mark.parametrize("raw", METADATA_SYNTAX.values(), ids=METADATA_SYNTAX.keys())
def test_metadata_that_is_not_acceptable_json_is_a_syntax_violation(sqlite_world: World, raw: bytes) -> None:
    bad, _ = hostile_then_good(sqlite_world, _metadata(raw))
    assert sqlite_world.outcome(bad) == ("reject-submission", [("syntax-violation", "metadata")])


DATA_SYNTAX: dict[str, tuple[bytes, dict[str, str] | None]] = {
    "JSON nested 5000 deep": (b"[" * DEEP + b"]" * DEEP, None),
    "JSON 5000-digit number": (b'{"betrag": ' + b"1" * 5000 + b"}", None),
    "JSON lone surrogate": (b'{"name": "\\udfff"}', None),
    "JSON duplicate key": (b'{"name": "a", "name": "b"}', None),
    "JSON NaN": (b'{"betrag": NaN}', None),
    "JSON not UTF-8": (b'{"name": "M\xfcller"}', None),
    "JSON empty": (b"", None),
    "XML nested 300 deep": (b"<a>" * 300 + b"</a>" * 300, XML_SCHEMA),
    "XML with an external entity": (b'<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>', XML_SCHEMA),
    "XML entity expansion": (b'<!DOCTYPE a [<!ENTITY x "xxxxxxxxxx"><!ENTITY y "&x;&x;&x;&x;&x;&x;&x;&x;&x;&x;">'
                             b']><a>&y;&y;&y;&y;</a>', XML_SCHEMA),
    "XML not well-formed": (b"<antrag><name>Erika</antrag>", XML_SCHEMA),
}


@pytest.mark.parametrize(("raw", "schema"), DATA_SYNTAX.values(), ids=DATA_SYNTAX.keys())
def test_data_that_is_not_acceptable_is_a_syntax_violation(sqlite_world: World, raw: bytes,
                                                          schema: dict[str, str] | None) -> None:
    bad, _ = hostile_then_good(sqlite_world, _data(raw, schema))
    assert sqlite_world.outcome(bad) == ("reject-submission", [("syntax-violation", "data")])


def _header(header: str) -> str:
    """A compact JWE whose protected header is ``header`` (the rest cannot matter: it is refused first)."""
    return ".".join([b64u(header.encode()), "AAAA", "AAAAAAAAAAAAAAAA", "AAAA", "AAAAAAAAAAAAAAAAAAAAAA"])


JWE = '"alg": "RSA-OAEP-256", "enc": "A256GCM"'
METADATA_JWE: dict[str, Case] = {
    "protected header nested 5000 deep": lambda s: s.send(
        metadata=_header("{" + JWE + ', "x": ' + "[" * DEEP + "]" * DEEP + "}"), data=GOOD_DATA),
    "protected header with a 5000-digit number": lambda s: s.send(
        metadata=_header("{" + JWE + ', "x": ' + "1" * 5000 + "}"), data=GOOD_DATA),
    "protected header of 40 kB": lambda s: s.send(
        metadata=_header("{" + JWE + ', "x": "' + "a" * 40_000 + '"}'), data=GOOD_DATA),
    "protected header with duplicate alg": lambda s: s.send(
        metadata=_header("{" + JWE + ', "alg": "dir"}'), data=GOOD_DATA),
    "kid that is an object": lambda s: s.send(
        metadata=s.encrypt(json.dumps(metadata_for(GOOD_DATA)).encode(), kid={"$ref": "x"}), data=GOOD_DATA),
    "ciphertext not base64url": lambda s: s.send(metadata=".".join(
        [*s.encrypt(json.dumps(metadata_for(GOOD_DATA)).encode()).split(".")[:3], "AAAA=AAA", "AAAA"]),
        data=GOOD_DATA),
    "five segments of nothing": lambda s: s.send(metadata="A.A.A.A.A", data=GOOD_DATA),
}


@pytest.mark.parametrize("case", METADATA_JWE.values(), ids=METADATA_JWE.keys())
def test_hostile_metadata_jwes_are_an_encryption_issue(sqlite_world: World, case: Case) -> None:
    bad, _ = hostile_then_good(sqlite_world, case)
    assert sqlite_world.outcome(bad) == ("reject-submission", [("encryption-issue", "metadata")])


def _attachment_case(attachments: dict[str, bytes], *, listed: dict[str, bytes] | None = None,
                     **encrypt: Any) -> Case:
    """Metadata naming ``attachments``; the ones ``listed`` (default: the same) are uploaded."""
    def send(s: Sender) -> Sent:
        uploaded = {a: s.encrypt(raw, **encrypt) for a, raw in (attachments if listed is None else listed).items()}
        return s.send(metadata=json.dumps(metadata_for(GOOD_DATA, attachments)).encode(), data=GOOD_DATA,
                      attachments=uploaded)
    return send


def _ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


LIMITS: dict[str, tuple[Case, list[tuple[str, str]] | Callable[[World, Sent], list[tuple[str, str]]]]] = {
    "metadata over max_metadata_bytes": (
        _metadata(_with_good_metadata('"x": "' + "a" * 1000 + '"' + ', "y": [' + ", ".join(['"ab"'] * 20_000) + "]")),
        [("technical-error", "metadata")]),
    "metadata zip bomb": (
        lambda s: s.send(metadata=s.encrypt(_with_good_metadata('"x": "' + " " * 4_000_000 + '"'), zip="DEF"),
                         data=GOOD_DATA),
        [("technical-error", "metadata")]),
    "data over max_data_bytes": (_data(b'{"x": "' + b"a" * 300_000 + b'"}'), [("technical-error", "data")]),
    "more attachments than max_attachments": (
        _attachment_case({a: b"%PDF-1.7 x" for a in _ids(4)}), [("technical-error", "submission")]),
    "attachments together over max_submission_bytes": (
        _attachment_case({a: bytes(60_000) for a in _ids(2)}), [("technical-error", "submission")]),
}


@pytest.mark.parametrize(("case", "expected"), LIMITS.values(), ids=LIMITS.keys())
def test_sizes_over_the_limits_are_a_technical_error(sqlite_world: World, case: Case,
                                                    expected: list[tuple[str, str]]) -> None:
    bad, _ = hostile_then_good(sqlite_world, case)
    assert sqlite_world.outcome(bad) == ("reject-submission", expected)


def test_an_attachment_over_its_limit_is_a_technical_error_for_it(sqlite_world: World) -> None:
    (big,) = _ids(1)
    bad, _ = hostile_then_good(sqlite_world, _attachment_case({big: bytes(70_000)}))
    assert sqlite_world.outcome(bad) == ("reject-submission", [("technical-error", f"attachment:{big}")])


def test_an_attachment_zip_bomb_stops_at_the_limit(sqlite_world: World) -> None:
    (bomb,) = _ids(1)
    bad, _ = hostile_then_good(sqlite_world, _attachment_case({bomb: bytes(8_000_000)}, zip="DEF"))
    assert sqlite_world.outcome(bad) == ("reject-submission", [("technical-error", f"attachment:{bomb}")])


def test_an_attachment_id_that_is_a_path_is_never_fetched(sqlite_world: World) -> None:
    real = str(uuid.uuid4())
    traversal = {"../../../../etc/passwd": b"x"}

    def send(s: Sender) -> Sent:
        metadata = metadata_for(GOOD_DATA, {real: b"%PDF"})
        metadata["contentStructure"]["attachments"][0]["attachmentId"] = next(iter(traversal))
        return s.send(metadata=json.dumps(metadata).encode(), data=GOOD_DATA, attachments={real: s.encrypt(b"%PDF")})

    bad, _ = hostile_then_good(sqlite_world, send)
    assert sqlite_world.outcome(bad) == ("reject-submission", [("schema-violation", "metadata")])
    assert not any(p.name and ".." in p.name for m in store.list_messages(sqlite_world.engine, limit=10_000)
                   for p in store.payload(sqlite_world.engine, m.id))


def test_a_data_hash_that_is_not_hex_is_a_schema_violation(sqlite_world: World) -> None:
    metadata = metadata_for(GOOD_DATA)
    metadata["contentStructure"]["data"]["hash"]["content"] = "\u0000" * 128
    bad, _ = hostile_then_good(sqlite_world, _metadata(json.dumps(metadata).encode()))
    assert sqlite_world.outcome(bad) == ("reject-submission", [("schema-violation", "metadata")])


# -- what must be stored, not refused: strange but valid input, on both databases

def test_nul_and_control_characters_in_valid_metadata_are_stored(both_worlds: World) -> None:
    metadata = metadata_for(GOOD_DATA, additionalReferenceInfo={"senderReference": "Az\u0000\u001b[31m\u202e-1"})
    sent = both_worlds.sender.send(metadata=json.dumps(metadata).encode(), data=GOOD_DATA)
    both_worlds.poll()
    both_worlds.drain()
    both_worlds.assert_accepted(sent)
    message = both_worlds.message(sent.submission_id)
    assert message is not None
    stored = next(p for p in store.payload(both_worlds.engine, message.id) if p.role == "metadata")
    assert json.loads(stored.body or b"") == metadata


def test_nul_in_json_data_is_stored_as_sent(both_worlds: World) -> None:
    data = b'{"name": "Erika\\u0000Mustermann"}'
    sent = both_worlds.sender.send(data=data)
    both_worlds.poll()
    both_worlds.drain()
    both_worlds.assert_accepted(sent)
    message = both_worlds.message(sent.submission_id)
    assert message is not None and store.payload(both_worlds.engine, message.id)[0].body == data


def test_attachment_names_and_types_that_do_not_fit_the_store_are_made_to_fit(both_worlds: World) -> None:
    attachment_id = str(uuid.uuid4())
    metadata = metadata_for(GOOD_DATA, {attachment_id: b"%PDF-1.7"})
    entry = metadata["contentStructure"]["attachments"][0]
    entry["filename"] = "../../etc/passwd\u0000" + "\u202e" + "ä" * 1000 + ".pdf"
    entry["mimeType"] = "application/" + "x" * 300
    sent = both_worlds.sender.send(metadata=json.dumps(metadata).encode(), data=GOOD_DATA,
                            attachments={attachment_id: both_worlds.sender.encrypt(b"%PDF-1.7")})
    both_worlds.poll()
    both_worlds.drain()
    both_worlds.assert_accepted(sent)
    message = both_worlds.message(sent.submission_id)
    assert message is not None
    (part,) = [p for p in store.payload(both_worlds.engine, message.id) if p.role == "attachment"]
    assert part.content_type == "application/octet-stream"
    assert part.name is not None and len(part.name) == 255 and "\u0000" not in part.name
    assert part.blob_path is not None and ".." not in part.blob_path


@pytest.mark.parametrize("name", ["lone surrogate in the metadata", "5000-digit data number", "zip bomb"])
def test_pathological_submissions_are_refused_on_postgres_too(both_worlds: World, name: str) -> None:
    case, where, kind = {
        "lone surrogate in the metadata": (_metadata(METADATA_SYNTAX["lone high surrogate"]), "metadata",
                                           "syntax-violation"),
        "5000-digit data number": (_data(DATA_SYNTAX["JSON 5000-digit number"][0]), "data", "syntax-violation"),
        "zip bomb": (LIMITS["metadata zip bomb"][0], "metadata", "technical-error"),
    }[name]
    bad, _ = hostile_then_good(both_worlds, case)
    assert both_worlds.outcome(bad) == ("reject-submission", [(kind, where)])
    message = both_worlds.message(bad.submission_id)
    assert message is not None and message.status == "rejected"
    record = json.loads(store.payload(both_worlds.engine, message.id)[0].body or b"")
    assert record["problems"][0]["type"].endswith(kind)
