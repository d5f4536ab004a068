"""Metadata checks: ``$schema``, the bundled FIT-Connect metadata schema (1.x), hashes, data syntax.

Each check returns the :class:`~channels.fitconnect.reject_reasons.EventProblem` s it found (empty = fine), so the
client can collect every problem of a submission into one ``reject-submission``.

Schema versions: a metadata document must name its schema in ``$schema``
(``https://schema.fitko.de/fit-connect/metadata/<x.y.z>/metadata.schema.json``). Major version 1 is
supported and validated against the bundled 1.0.0 schema (later 1.x minors only add optional members);
any other version is ``unsupported-schema``; no ``$schema`` at all is ``missing-schema``.

Parsing: metadata and JSON data go through :func:`hub.jsonsafe.loads`, XML data through
:func:`hub.xmlsafe.parse`, with the limits the caller passes (``HubConfig.limits``). Whatever they refuse
(deep nesting, huge numbers, lone surrogates, duplicate keys, NaN, DOCTYPEs, …) is a ``syntax-violation``;
no other exception type leaves these functions for any input.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from channels.fitconnect import reject_reasons as problems
from channels.fitconnect.reject_reasons import EventProblem
from hub.jsonsafe import DEFAULT_JSON_LIMITS, JsonLimits, JsonRejected, loads
from hub.xmlsafe import DEFAULT_LIMITS as DEFAULT_XML_LIMITS
from hub.xmlsafe import XmlLimits, XmlRejected, parse

__all__ = ["SCHEMA_PATH", "attachment_entries", "check_data_hash", "check_data_syntax", "check_metadata",
           "hash_matches", "parse_metadata"]

SCHEMA_PATH = Path(__file__).with_name("schema") / "metadata.schema-1.0.0.json"
_SCHEMA_URI = re.compile(r"^https://schema\.fitko\.de/fit-connect/metadata/(\d+)\.(\d+)\.(\d+)/metadata\.schema\.json$")
DATA_MIME_TYPES = ("application/json", "application/xml")


@cache
def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text("utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def parse_metadata(raw: bytes, limits: JsonLimits = DEFAULT_JSON_LIMITS) -> tuple[dict[str, Any] | None,
                                                                                   list[EventProblem]]:
    try:
        value = loads(raw, limits)
    except JsonRejected as exc:
        return None, [problems.syntax_violation("metadata", f"Die Metadaten sind kein valides JSON ({exc.title}: "
                                                f"{exc.detail}).")]
    if not isinstance(value, dict):
        return None, [problems.syntax_violation("metadata", "Die Metadaten sind kein JSON-Objekt.")]
    return value, []


def check_metadata(metadata: dict[str, Any]) -> list[EventProblem]:
    """``$schema`` present and 1.x, then the document against the schema (all errors, shortest path first)."""
    uri = metadata.get("$schema")
    if uri is None:
        return [problems.missing_schema()]
    match = _SCHEMA_URI.match(uri) if isinstance(uri, str) else None
    if match is None or match.group(1) != "1":
        return [problems.unsupported_schema("metadata", f"Das Metadatenschema {uri!r} wird nicht unterstützt; "
                                            "unterstützt: 1.x (https://schema.fitko.de/fit-connect/metadata/1.*).")]
    errors = sorted(_validator().iter_errors(metadata), key=lambda e: (len(e.absolute_path), str(e.absolute_path)))
    if errors:
        where = "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '(Wurzel)'}: {_short(e)}" for e in errors[:3])
        more = f" (und {len(errors) - 3} weitere)" if len(errors) > 3 else ""
        return [problems.schema_violation("metadata", f"Die Metadaten entsprechen nicht dem Metadatenschema: "
                                          f"{where}{more}.")]
    return []


#: keywords whose messages name a property, not a value (``'x' is a required property``)
_NAMES_ONLY = frozenset({"required", "additionalProperties", "dependentRequired", "propertyNames"})


def _short(error: jsonschema.ValidationError) -> str:
    # Validator messages repeat the offending value (a reply e-mail address, a name): it is stored with the
    # message and sent back, so say what the schema expects instead; messages about property names stay.
    if error.validator in _NAMES_ONLY:
        message = error.message
    else:
        message = f"erwartet {json.dumps(error.validator_value, ensure_ascii=False, default=str)}"
    message = message if len(message) <= 120 else message[:117] + "..."
    return f"{error.validator}: {message}"


def hash_matches(expected: Any, actual_hex: str) -> bool:
    if not isinstance(expected, dict) or expected.get("type") != "sha512":
        return False
    content = expected.get("content")
    return isinstance(content, str) and hmac.compare_digest(content.lower(), actual_hex)


def check_data_hash(metadata: dict[str, Any], data: bytes) -> list[EventProblem]:
    data_entry = (metadata.get("contentStructure") or {}).get("data")
    if not isinstance(data_entry, dict):
        return [problems.hash_mismatch("data", "Die Metadaten enthalten keinen Hashwert für den Fachdatensatz "
                                       "(contentStructure.data fehlt).")]
    if not hash_matches(data_entry.get("hash"), hashlib.sha512(data).hexdigest()):
        return [problems.hash_mismatch("data")]
    return []


def data_mime_type(metadata: dict[str, Any]) -> str | None:
    entry = (metadata.get("contentStructure") or {}).get("data") or {}
    mime = (entry.get("submissionSchema") or {}).get("mimeType")
    return mime if mime in DATA_MIME_TYPES else None


def check_data_syntax(data: bytes, mime_type: str, json_limits: JsonLimits = DEFAULT_JSON_LIMITS,
                      xml_limits: XmlLimits = DEFAULT_XML_LIMITS) -> list[EventProblem]:
    """Well-formedness (within the limits) only; validating against the referenced data schema is the
    pipeline's job."""
    if mime_type == "application/json":
        try:
            loads(data, json_limits)
        except JsonRejected as exc:
            return [problems.syntax_violation("data", f"Der Fachdatensatz ist kein valides JSON ({exc.title}: "
                                              f"{exc.detail}).")]
        return []
    try:
        parse(data, xml_limits)
    except XmlRejected as exc:
        return [problems.syntax_violation("data", f"Der Fachdatensatz ist kein wohlgeformtes XML ({exc.title}: "
                                          f"{exc.detail}).")]
    return []


def attachment_entries(metadata: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``contentStructure.attachments`` by ``attachmentId`` (ids compared case-insensitively)."""
    entries = (metadata.get("contentStructure") or {}).get("attachments") or []
    return {str(e["attachmentId"]).lower(): e for e in entries if isinstance(e, dict) and "attachmentId" in e}
