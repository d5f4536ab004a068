"""The REST intake door: headers, body and payload checks, in the order they cost.

1. headers (:func:`intake_headers`): each at most once, each of the right shape; a ``Content-Type`` the hub
   can read (XML or JSON, ``charset`` only UTF-8), a ``Content-Length`` within ``api.max_body_bytes``;
2. memory (:func:`read_body`): the declared length is reserved in the intake's :class:`MemoryBudget` before
   a byte is read (a chunked body reserves chunk by chunk); no room: 503 with ``Retry-After``. The body is
   read into one ``bytearray`` of its final size: no list of chunks, no join, no second copy;
3. payload (:func:`check_payload`): parsed once, on the :class:`ParseGate`, with the limits in
   ``[limits]`` (the verify stage applies the same ones): XML without building a tree
   (:func:`hub.xmlsafe.check`), JSON into a tree that is dropped right away.

Every refusal is a :class:`Problem` with a precise type, status and detail.
"""

from __future__ import annotations

import re
from contextlib import aclosing
from dataclasses import dataclass

from starlette.requests import Request

from channels.rest.budget import MemoryBudget, Reservation
from hub.jsonsafe import JsonLimits, JsonRejected, loads
from hub.pipeline.verify import is_json, is_xml
from hub.problems import Problem, shorten, single_header
from hub.xmlsafe import XmlLimits, XmlRejected, check

__all__ = ["IntakeHeaders", "check_payload", "intake_headers", "read_body"]

#: Headers of the intake whose meaning two copies would make ambiguous.
_SINGLE = ("content-type", "content-encoding", "content-length", "transfer-encoding", "idempotency-key",
           "x-sender-reference", "x-service-identifier", "x-region-key")
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
#: FIT-Connect service identifier: the LeiKa key, with or without its URN prefix.
_LEIKA = re.compile(r"^(urn:de:fim:leika:leistung:)?\d{14}$")
_REGION = re.compile(r"^\d{8}(\d{4})?$")
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"^\s*({_TOKEN})/({_TOKEN})\s*")
#: RFC 9110 §5.6.6: ``*( OWS ";" OWS [ name "=" ( token / quoted-string ) ] )`` (an empty one is allowed).
_PARAMETER = re.compile(rf'\s*;\s*(?:({_TOKEN})=({_TOKEN}|"(?:[^"\\]|\\.)*"))?\s*')
_MAX_MEDIA_TYPE = 100  # the column that stores it
_UTF8 = {"utf-8", "utf8"}


@dataclass(frozen=True)
class IntakeHeaders:
    media_type: str  # lower case, without parameters: what is stored as the message's content type
    content_length: int | None  # None: chunked (or no body at all)
    idempotency_key: str | None
    sender_reference: str | None
    attributes: dict[str, str]  # routing facts: service, region

    @property
    def is_xml(self) -> bool:
        return is_xml(self.media_type)


def _invalid_header(name: str, message: str) -> Problem:
    # Same shape as the framework's own parameter errors (``invalid-request`` with ``errors``).
    location = f"header.{name}"
    return Problem(400, "invalid-request", "Invalid request", f"{location}: {message}",
                   errors=[{"location": location, "message": message}])


def intake_headers(request: Request, max_body_bytes: int) -> IntakeHeaders:
    """Check every header the intake reads, before anything else happens."""
    for name in _SINGLE:
        single_header(request, name)
    h = request.headers
    media = _media_type(h.get("content-type"))
    coding = h.get("content-encoding")
    if coding is not None and coding.strip().lower() != "identity":
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      f"Content-Encoding {shorten(coding, 40)!r} is not supported; send the body uncompressed")
    key = h.get("idempotency-key")
    if key is not None and not _IDEMPOTENCY_KEY.match(key):
        raise Problem(400, "invalid-idempotency-key", "Invalid Idempotency-Key",
                      "the Idempotency-Key must be 1 to 255 printable ASCII characters without spaces")
    reference = _sender_reference(h.get("x-sender-reference"))
    service, region = h.get("x-service-identifier"), h.get("x-region-key")
    if service is not None and not _LEIKA.match(service):
        raise _invalid_header("x-service-identifier", "must be a LeiKa key: 14 digits, optionally prefixed "
                              "with urn:de:fim:leika:leistung:")
    if region is not None and not _REGION.match(region):
        raise _invalid_header("x-region-key", "must be a region key: 8 digits (AGS) or 12 digits (ARS)")
    attributes = {k: v for k, v in (("service", service), ("region", region)) if v}
    return IntakeHeaders(media, _content_length(request, max_body_bytes), key, reference, attributes)


def _media_type(value: str | None) -> str:
    readable = ("send the message as application/xml (an XÖV message) or application/json")
    if value is None or not value.strip():
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      f"{readable} (got no Content-Type)")
    match = _MEDIA_TYPE.match(value)
    if match is None:
        raise Problem(400, "invalid-content-type", "Invalid Content-Type",
                      f"the Content-Type {shorten(value, 80)!r} is not type/subtype[; parameter=value]")
    media = f"{match.group(1)}/{match.group(2)}".lower()
    params: dict[str, str] = {}
    rest = value[match.end():]
    while rest:
        param = _PARAMETER.match(rest)
        if param is None:
            raise Problem(400, "invalid-content-type", "Invalid Content-Type",
                          f"the parameters of the Content-Type {shorten(value, 80)!r} are malformed")
        rest = rest[param.end():]
        if param.group(1) is None:
            continue
        name = param.group(1).lower()
        if name in params:
            raise Problem(400, "invalid-content-type", "Invalid Content-Type",
                          f"the Content-Type parameter {shorten(name, 40)!r} appears twice")
        params[name] = param.group(2).strip('"')
    if len(media) > _MAX_MEDIA_TYPE or not (is_xml(media) or is_json(media)):
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      f"{readable} (got {shorten(media, 80)})")
    charset = params.get("charset")
    if charset is not None and charset.lower() not in _UTF8:
        why = ("JSON is UTF-8 (RFC 8259)" if is_json(media) else
               "leave out the charset parameter and declare the encoding in the XML declaration instead")
        raise Problem(415, "unsupported-media-type", "Unsupported media type",
                      f"charset {shorten(charset, 40)!r} is not supported: {why}")
    return media


def _sender_reference(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        # Header bytes arrive as latin-1 text; a portal sends its reference (often with umlauts) as UTF-8.
        text = value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        raise _invalid_header("x-sender-reference", "must be UTF-8 text") from None
    if not text or len(text) > 255 or not text.isprintable():
        raise _invalid_header("x-sender-reference", "must be 1 to 255 printable characters")
    return text


def _content_length(request: Request, limit: int) -> int | None:
    declared = request.headers.get("content-length")
    if declared is None:
        return None
    if "transfer-encoding" in request.headers:
        # RFC 9112 §6.3: both framings at once is how requests are smuggled past a proxy in front of the hub.
        raise Problem(400, "bad-content-length", "Invalid Content-Length",
                      "the request has both Transfer-Encoding and Content-Length; send one of them",
                      headers={"Connection": "close"})
    if not declared.isascii() or not declared.isdigit() or len(declared) > 18:
        raise Problem(400, "bad-content-length", "Invalid Content-Length", "Content-Length must be a number")
    size = int(declared)
    if size > limit:
        raise too_large(limit)
    return size


def too_large(limit: int) -> Problem:
    # The rest of the body is not read: closing the connection stops a stranger from making the hub drain it.
    return Problem(413, "payload-too-large", "Payload too large", f"the message must not exceed {limit} bytes",
                   headers={"Connection": "close"})


def busy(retry_after: int) -> Problem:
    return Problem(503, "intake-busy", "Intake busy",
                   "the hub is receiving as many large messages as its memory budget allows; nothing was "
                   "stored, send the message again after the Retry-After interval",
                   headers={"Retry-After": str(retry_after)})


async def read_body(request: Request, headers: IntakeHeaders, limit: int, budget: MemoryBudget,
                    retry_after: int) -> tuple[bytearray, Reservation]:
    """The body, in memory reserved from ``budget``; the caller releases the reservation when done with it."""
    declared = headers.content_length
    reservation = budget.reserve(declared or 0)
    if reservation is None:
        raise busy(retry_after)
    try:
        return await _fill(request, declared, limit, reservation, retry_after), reservation
    except BaseException:
        reservation.release()
        raise


async def _fill(request: Request, declared: int | None, limit: int, reservation: Reservation,
                retry_after: int) -> bytearray:
    if declared is not None:
        body = bytearray(declared)
        filled = 0
        async with aclosing(request.stream()) as stream:
            with memoryview(body) as view:
                async for chunk in stream:
                    end = filled + len(chunk)
                    if end > declared:  # the server frames by Content-Length; this is a defence in depth
                        raise Problem(400, "bad-content-length", "Invalid Content-Length",
                                      f"the body is longer than its Content-Length ({declared})")
                    view[filled:end] = chunk
                    filled = end
        if filled != declared:
            raise Problem(400, "bad-content-length", "Invalid Content-Length",
                          f"the body has {filled} bytes, its Content-Length says {declared}")
        return body
    body = bytearray()
    async with aclosing(request.stream()) as stream:
        async for chunk in stream:
            if len(body) + len(chunk) > limit:
                raise too_large(limit)
            if not reservation.grow(len(chunk)):
                raise busy(retry_after)
            body += chunk
    return body


def check_payload(body: bytearray, xml: bool, xml_limits: XmlLimits, json_limits: JsonLimits) -> None:
    """Parse once with the door's limits; runs on the parse gate's thread. XML builds no tree at all (the
    verify stage builds it, with the same refusals); the JSON tree is dropped before returning."""
    if xml:
        try:
            check(body, xml_limits)  # type: ignore[arg-type]  # lxml reads any buffer; no copy to bytes
        except XmlRejected as exc:
            slug, status = _XML_SLUGS.get(exc.title, ("malformed-xml", 400))
            raise Problem(status, slug, exc.title, exc.detail, line=exc.line) from None
        return
    try:
        value = loads(body, json_limits)
    except JsonRejected as exc:
        status = 413 if exc.slug == "payload-too-large" else 400
        raise Problem(status, exc.slug, exc.title, exc.detail, line=exc.line) from None
    if not isinstance(value, dict):
        raise Problem(400, "malformed-json", "Not valid JSON", "the message must be a JSON object")


_XML_SLUGS = {
    "Empty document": ("empty-body", 400),
    "Document too deeply nested": ("xml-too-deep", 400),
    "Document too large": ("payload-too-large", 413),
}
