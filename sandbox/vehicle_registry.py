"""Vehicle registry stand-in (Kfz-Zulassung): a SOAP 1.1 and 1.2 service built on FastAPI and lxml.

Why not a SOAP server library: the Python ones are either unmaintained (spyne's last release is from 2022,
soaplib is dead) or clients only (zeep). One document/literal operation needs an envelope parser, an XSD
check (lxml does that against the very schema the WSDL imports) and a fault writer: that is this module.

Endpoints:

* ``POST /VehicleRegistry``: the operation ``RegisterVehicle``. ``text/xml`` (with ``SOAPAction``) is
  SOAP 1.1, ``application/soap+xml`` is SOAP 1.2; the answer is in the same version. Faults carry the
  standard codes (1.1 ``Client``/``Server``, 1.2 ``Sender``/``Receiver``, ``VersionMismatch``,
  ``MustUnderstand``, ``wsse:FailedAuthentication``) and a ``RegistrationFault`` detail with a specific
  code (``InvalidVin``, ``SchemaViolation``, ``PlateNotAvailable``, ``VehicleAlreadyRegistered``, …).
* ``GET /VehicleRegistry?wsdl`` and ``GET /vehicle-registry.xsd``: the description, with this server's
  address in ``soap:address``.
* ``GET /_received``: what arrived (key, SOAP version, WS-Security user name — never the password —, VIN,
  outcome, registration number); ``POST|GET /_behaviour``: misbehaviour, see :mod:`sandbox.chaos`.

The idempotency key travels in the SOAP header element ``IdempotencyKey`` of the service's namespace (an
HTTP ``Idempotency-Key`` header is the fallback). A repeat answers the first registration again and is
recorded as a duplicate; the same key with a different request is a client fault.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from lxml import etree
from starlette.datastructures import Headers

from hub import xmlsafe
from sandbox.chaos import Chaos, Drop, Fault, Refuse, hold, install, refusal_headers
from sandbox.ledger import Ledger

__all__ = ["NS", "WSDL_DIR", "create_vehicle_registry"]

NS = "urn:xoev-hub:sandbox:vehicle-registry:1"
SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
SOAP12 = "http://www.w3.org/2003/05/soap-envelope"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
PASSWORD_DIGEST = "#PasswordDigest"
WSDL_DIR = Path(__file__).parent / "wsdl"
PATH = "/VehicleRegistry"
_PLACEHOLDER = "http://localhost:8081/VehicleRegistry"
_CONTENT_TYPE = {SOAP11: "text/xml; charset=utf-8", SOAP12: "application/soap+xml; charset=utf-8"}

Kind = Literal["client", "server", "version", "must-understand", "auth"]
# (SOAP 1.1 faultcode, SOAP 1.2 Code/Value) per kind; authentication uses the WS-Security code.
_CODES: dict[Kind, tuple[str, str]] = {
    "client": ("soap:Client", "soap:Sender"),
    "server": ("soap:Server", "soap:Receiver"),
    "version": ("soap:VersionMismatch", "soap:VersionMismatch"),
    "must-understand": ("soap:MustUnderstand", "soap:MustUnderstand"),
    "auth": ("wsse:FailedAuthentication", "soap:Sender"),
}


class SoapFault(Exception):
    def __init__(self, kind: Kind, code: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.code, self.message = kind, code, message


@dataclass
class Received:
    idempotency_key: str | None
    message_id: str | None
    soap_version: str
    soap_action: str | None
    username: str | None
    vin: str | None
    sha256: str
    size: int
    at: float
    duplicate: bool
    outcome: str  # "registered", "duplicate", or "fault:<code>"
    registration_number: str | None = None
    plate: str | None = None
    completed: bool = False


@dataclass
class Registration:
    digest: str  # of the request payload, to tell a repeat from a reused key
    registration_number: str
    plate: str
    registered_at: str
    vin: str


@dataclass
class Registry:
    """The service's state: registrations by key, VINs and plates in use."""

    users: dict[str, str]
    by_key: dict[str, Registration] = field(default_factory=dict)
    vins: dict[str, str] = field(default_factory=dict)
    plates: set[str] = field(default_factory=set)
    sequence: int = 0

    def register(self, payload: etree._Element, key: str | None) -> tuple[Registration, bool]:
        digest = hashlib.sha256(etree.tostring(payload, method="c14n", exclusive=True)).hexdigest()
        if key is not None and key in self.by_key:
            first = self.by_key[key]
            if first.digest != digest:
                raise SoapFault("client", "IdempotencyKeyReused",
                                f"idempotency key {key!r} was used before for a different request")
            return first, True
        vin = _text(payload, "Vin")
        district = _text(payload, "RegistrationDistrict")
        if vin in self.vins:
            raise SoapFault("client", "VehicleAlreadyRegistered",
                            f"vehicle {vin} is already registered as {self.vins[vin]}")
        plate = _text(payload, "DesiredPlate") or self._free_plate(district)
        if not plate.startswith(f"{district}-"):
            raise SoapFault("client", "InvalidPlate", f"plate {plate!r} does not belong to district {district}")
        if plate in self.plates:
            raise SoapFault("client", "PlateNotAvailable", f"plate {plate!r} is already assigned")
        self.sequence += 1
        now = datetime.now(UTC)
        number = f"KFZ-{district}-{now.year}-{self.sequence:06d}"
        registration = Registration(digest, number, plate, now.isoformat(timespec="seconds"), vin)
        self.vins[vin] = number
        self.plates.add(plate)
        if key is not None:
            self.by_key[key] = registration
        return registration, False

    def _free_plate(self, district: str) -> str:
        n = 1
        while f"{district}-XH {n}" in self.plates:
            n += 1
        return f"{district}-XH {n}"


@lru_cache(maxsize=1)
def _schema() -> etree.XMLSchema:
    return etree.XMLSchema(etree.parse(str(WSDL_DIR / "vehicle-registry.xsd")))


def _text(parent: etree._Element, name: str) -> str:
    return (parent.findtext(f"{{{NS}}}{name}") or "").strip()


def _envelope(soap_ns: str, payload: etree._Element) -> bytes:
    envelope = etree.Element(f"{{{soap_ns}}}Envelope", nsmap={"soap": soap_ns})
    etree.SubElement(envelope, f"{{{soap_ns}}}Body").append(payload)
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"))


def _fault_document(soap_ns: str, fault: SoapFault) -> bytes:
    nsmap = {"soap": soap_ns, "tns": NS, "wsse": WSSE}
    envelope = etree.Element(f"{{{soap_ns}}}Envelope", nsmap=nsmap)
    node = etree.SubElement(etree.SubElement(envelope, f"{{{soap_ns}}}Body"), f"{{{soap_ns}}}Fault")
    detail_parent: etree._Element
    code11, code12 = _CODES[fault.kind]
    if soap_ns == SOAP11:
        etree.SubElement(node, "faultcode").text = code11
        etree.SubElement(node, "faultstring").text = fault.message
        detail_parent = etree.SubElement(node, "detail")
    else:
        code = etree.SubElement(node, f"{{{soap_ns}}}Code")
        etree.SubElement(code, f"{{{soap_ns}}}Value").text = code12
        if fault.kind in ("client", "server", "auth"):
            sub = "wsse:FailedAuthentication" if fault.kind == "auth" else f"tns:{fault.code}"
            etree.SubElement(etree.SubElement(code, f"{{{soap_ns}}}Subcode"), f"{{{soap_ns}}}Value").text = sub
        reason = etree.SubElement(node, f"{{{soap_ns}}}Reason")
        text = etree.SubElement(reason, f"{{{soap_ns}}}Text")
        text.set("{http://www.w3.org/XML/1998/namespace}lang", "en")
        text.text = fault.message
        detail_parent = etree.SubElement(node, f"{{{soap_ns}}}Detail")
    detail = etree.SubElement(detail_parent, f"{{{NS}}}RegistrationFault")
    etree.SubElement(detail, f"{{{NS}}}Code").text = fault.code
    etree.SubElement(detail, f"{{{NS}}}Message").text = fault.message
    return bytes(etree.tostring(envelope, xml_declaration=True, encoding="utf-8"))


def _fault_response(soap_ns: str, fault: SoapFault) -> Response:
    # SOAP 1.2 over HTTP: Sender faults are 400, all others 500; SOAP 1.1 faults are always 500.
    status = 400 if soap_ns == SOAP12 and fault.kind in ("client", "auth") else 500
    return Response(_fault_document(soap_ns, fault), status_code=status, media_type=_CONTENT_TYPE[soap_ns])


def _soap_version(content_type: str) -> str | None:
    media_type = content_type.split(";", 1)[0].strip().lower()
    return {"text/xml": SOAP11, "application/soap+xml": SOAP12}.get(media_type)


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip() in ("1", "true")


def _check_password(users: dict[str, str], token: etree._Element) -> None:
    username = (token.findtext(f"{{{WSSE}}}Username") or "").strip()
    password = token.find(f"{{{WSSE}}}Password")
    expected = users.get(username)
    if expected is None or password is None:
        raise SoapFault("auth", "FailedAuthentication", "unknown user or no password")
    given = password.text or ""
    if (password.get("Type") or "").endswith(PASSWORD_DIGEST):
        nonce = base64.b64decode(token.findtext(f"{{{WSSE}}}Nonce") or "")
        created = token.findtext(f"{{{WSU}}}Created") or ""
        digest = hashlib.sha1(nonce + created.encode() + expected.encode()).digest()  # SHA-1: fixed by WSS 1.0
        ok = hmac.compare_digest(base64.b64encode(digest).decode(), given)
    else:
        ok = hmac.compare_digest(expected, given)
    if not ok:
        raise SoapFault("auth", "FailedAuthentication", f"wrong password for {username!r}")


def _read_headers(envelope: etree._Element, soap_ns: str) -> tuple[str | None, etree._Element | None]:
    """Returns the idempotency key and the WS-Security UsernameToken; enforces mustUnderstand."""
    key: str | None = None
    token: etree._Element | None = None
    header = envelope.find(f"{{{soap_ns}}}Header")
    for block in header if header is not None else ():
        if not isinstance(block.tag, str):
            continue
        if block.tag == f"{{{NS}}}IdempotencyKey":
            key = (block.text or "").strip() or None
        elif block.tag == f"{{{WSSE}}}Security":
            token = block.find(f"{{{WSSE}}}UsernameToken")
        elif _truthy(block.get(f"{{{soap_ns}}}mustUnderstand")):
            raise SoapFault("must-understand", "MustUnderstand", f"header {block.tag} is not understood")
    return key, token


def _payload(envelope: etree._Element, soap_ns: str) -> etree._Element:
    body = envelope.find(f"{{{soap_ns}}}Body")
    children = [c for c in body if isinstance(c.tag, str)] if body is not None else []
    if len(children) != 1 or children[0].tag != f"{{{NS}}}RegisterVehicle":
        found = children[0].tag if children else "nothing"
        raise SoapFault("client", "UnknownOperation", f"expected one {{{NS}}}RegisterVehicle in the body, got {found}")
    return children[0]


def _validate(payload: etree._Element) -> None:
    schema = _schema()
    if not schema.validate(payload):
        error = schema.error_log.last_error
        message = error.message if error is not None else "schema violation"
        code = "InvalidVin" if f"{{{NS}}}Vin'" in message else "SchemaViolation"
        raise SoapFault("client", code, message)


def create_vehicle_registry(*, users: dict[str, str] | None = None, chaos: Chaos | None = None) -> FastAPI:
    """The stand-in as an ASGI app. ``users`` (name → password) turns on WS-Security checking."""
    app = FastAPI(title="Vehicle registry stand-in (SOAP)", openapi_url=None, docs_url=None, redoc_url=None)
    chaos = chaos or Chaos()
    install(app, chaos)
    registry = Registry(users=dict(users or {}))
    ledger: Ledger[Received] = Ledger()
    ledger.mount(app)

    @app.get(PATH)
    async def wsdl(request: Request) -> Response:
        if "wsdl" not in {k.lower() for k in request.query_params}:
            return PlainTextResponse(f"SOAP endpoint; the description is at {PATH}?wsdl\n")
        address = str(request.url.replace(query=""))
        text = (WSDL_DIR / "vehicle-registry.wsdl").read_text(encoding="utf-8").replace(_PLACEHOLDER, address)
        return Response(text, media_type="text/xml; charset=utf-8")

    @app.get("/vehicle-registry.xsd")
    async def xsd() -> Response:
        return Response((WSDL_DIR / "vehicle-registry.xsd").read_bytes(), media_type="text/xml; charset=utf-8")

    @app.post(PATH)
    async def endpoint(request: Request) -> Response:
        body = await request.body()
        soap_ns = _soap_version(request.headers.get("content-type", ""))
        if soap_ns is None:
            return PlainTextResponse("use text/xml (SOAP 1.1) or application/soap+xml (SOAP 1.2)\n", status_code=415)
        decision = chaos.decide()
        if isinstance(decision, Refuse):
            return PlainTextResponse(f"{decision.status} ({decision.reason}, told to)\n", status_code=decision.status,
                                     headers=refusal_headers(decision))
        if isinstance(decision, Drop):
            await hold(request, decision.seconds)
            return PlainTextResponse("gateway timeout (told to)\n", status_code=504)
        if isinstance(decision, Fault):
            await hold(request, decision.delay)
            told = SoapFault(decision.kind, "ToldToFail", f"{decision.kind} fault (told to)")
            return _fault_response(soap_ns, told)
        with ledger.lock:
            record, answer = _process(registry, body, soap_ns, request)
            ledger.add(record, held=True)
        return await ledger.answer(request, decision.delay, record, lambda: answer,
                                   gone=PlainTextResponse("the caller went away\n", status_code=499))

    return app


def _process(registry: Registry, body: bytes, soap_ns: str, request: Request) -> tuple[Received, Response]:
    """Handle one SOAP request against the registry; returns what to record and what to answer."""
    headers = request.headers
    record = Received(
        idempotency_key=headers.get("idempotency-key"), message_id=headers.get("x-xhub-message-id"),
        soap_version="1.1" if soap_ns == SOAP11 else "1.2", soap_action=_soap_action(soap_ns, headers),
        username=None, vin=None, sha256=hashlib.sha256(body).hexdigest(), size=len(body), at=time.time(),
        duplicate=False, outcome="",
    )
    try:
        try:
            envelope = xmlsafe.parse(body)
        except xmlsafe.XmlRejected as exc:
            raise SoapFault("client", "MalformedRequest", str(exc)) from None
        root = etree.QName(envelope)
        if root.localname != "Envelope" or root.namespace not in (SOAP11, SOAP12):
            raise SoapFault("client", "MalformedRequest", f"not a SOAP envelope: {envelope.tag}")
        if root.namespace != soap_ns:
            raise SoapFault("version", "VersionMismatch", "the envelope's version does not match the content type")
        key, token = _read_headers(envelope, soap_ns)
        if token is not None:
            record.username = (token.findtext(f"{{{WSSE}}}Username") or "").strip() or None
        if registry.users:
            if token is None:
                raise SoapFault("auth", "FailedAuthentication", "a WS-Security UsernameToken is required")
            _check_password(registry.users, token)
        record.idempotency_key = key or record.idempotency_key
        payload = _payload(envelope, soap_ns)
        record.vin = _text(payload, "Vin") or None
        _validate(payload)
        registration, record.duplicate = registry.register(payload, record.idempotency_key)
    except SoapFault as fault:
        record.outcome = f"fault:{fault.code}"
        return record, _fault_response(soap_ns, fault)
    record.outcome = "duplicate" if record.duplicate else "registered"
    record.registration_number, record.plate = registration.registration_number, registration.plate
    answer = etree.Element(f"{{{NS}}}RegisterVehicleResponse", nsmap={"tns": NS})
    etree.SubElement(answer, f"{{{NS}}}RegistrationNumber").text = registration.registration_number
    etree.SubElement(answer, f"{{{NS}}}Plate").text = registration.plate
    etree.SubElement(answer, f"{{{NS}}}RegisteredAt").text = registration.registered_at
    return record, Response(_envelope(soap_ns, answer), media_type=_CONTENT_TYPE[soap_ns])


def _soap_action(soap_ns: str, headers: Headers) -> str | None:
    if soap_ns == SOAP11:
        action = headers.get("soapaction")
        return action.strip('"') if action is not None else None
    for param in headers.get("content-type", "").split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.lower() == "action":
            return value.strip('"')
    return None
