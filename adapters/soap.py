"""SOAP sink driven by the target's WSDL: zeep builds and reads the envelopes, httpx carries them.

The message to deliver is the *mapped* one: a JSON object holding the operation's input (what the routing
and mapping step produces); an XML body is refused as :class:`~hub.errors.Permanent`. The WSDL (file or URL)
is loaded on the first delivery and kept for the adapter's life; WSDLs fetched over HTTP are also cached by
zeep (in memory for the process, or in SQLite across processes).

Why zeep builds the envelope but does not send it: zeep's transport (requests) loses the HTTP status and
headers behind its own exceptions, so ``Retry-After`` and 502/503/504 could not be told apart from a
fault. Here the envelope comes from zeep (schema checks, WS-Addressing, WS-Security), is posted with httpx
(timeouts, mutual TLS), and the answer is classified in :meth:`SoapAdapter._classify` before zeep parses it:

* transport errors and timeouts → :class:`Retriable`;
* a status the hub's one status table (:mod:`hub.http_status`) calls retriable (408, 425, 429, 502-504,
  507, 520-527, …) → :class:`Retriable` at once, ``Retry-After`` honoured; except 500, which SOAP 1.1 uses
  for every fault, so that there the fault decides;
* a SOAP fault → by its code: codes in ``retriable_fault_codes`` (default ``Server`` and ``Receiver``, which
  SOAP 1.1 §4.4.1 and 1.2 §5.4.6 define as "may succeed if resent") are retriable, all others
  (``Client``/``Sender``, ``MustUnderstand``, ``VersionMismatch``, ``wsse:FailedAuthentication``, …) are
  :class:`Permanent`; code, string, subcodes and a detail excerpt go into ``detail``;
* an answer without a SOAP envelope, or a non-2xx answer without a fault → as the status table says for
  its status (a 2xx without an envelope is permanent: the target answers something else than the WSDL);
* a request zeep cannot build from the input (unknown or missing element) → :class:`Permanent`.

The idempotency key travels as the SOAP header element ``idempotency_header`` (default ``IdempotencyKey``
in the WSDL's target namespace), optionally also into a field of the input, and always as the HTTP header
``Idempotency-Key``. zeep, httpx and lxml exceptions never leave this module.
"""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
import zeep
import zeep.cache
import zeep.exceptions
import zeep.helpers
import zeep.wsse.username
from lxml import etree
from pydantic import Field, SecretStr, model_validator

from hub.errors import HubError, Permanent, Retriable
from hub.http_status import classify_status, raise_for_status
from hub.http_support import redact_url, transport_problem
from hub.ports import AdapterConfig, DeliveryRequest, DeliveryResult

__all__ = ["SoapAdapter", "SoapConfig"]

EXCERPT = 500
NOT_MAPPED = "the soap adapter needs a mapped message (JSON with the operation's input)"


class SoapConfig(AdapterConfig):
    wsdl: str = Field(description="Path or http(s) URL of the WSDL.")
    service: str | None = Field(None, description="Service name in the WSDL (default: the first).")
    port: str | None = Field(None, description="Port name, which also picks SOAP 1.1 or 1.2 (default: the first).")
    operation: str
    endpoint: str | None = Field(None, pattern=r"^https?://", description="Overrides the port's soap:address.")
    timeout_seconds: float = Field(30.0, gt=0)
    connect_timeout_seconds: float = Field(5.0, gt=0)
    strict: bool = Field(True, description="zeep's strict mode; off tolerates answers that bend the schema.")
    wsdl_cache: Literal["memory", "sqlite", "none"] = "memory"
    wsdl_cache_path: Path | None = Field(None, description="SQLite file for wsdl_cache=sqlite (default: zeep's).")
    wsdl_cache_seconds: int = Field(3600, gt=0)
    username: str | None = Field(None, description="WS-Security UsernameToken.")
    password: SecretStr | None = None
    password_digest: bool = Field(False, description="Send PasswordDigest instead of PasswordText.")
    client_cert: Path | None = Field(None, description="Mutual TLS: client certificate (PEM).")
    client_key: Path | None = Field(None, description="Mutual TLS: its private key, unless in client_cert.")
    ca_bundle: Path | None = Field(None, description="CA bundle to verify the target (default: system CAs).")
    idempotency_header: str | None = Field(
        "IdempotencyKey", description="SOAP header element for the key: a local name in the WSDL's target "
        "namespace or {namespace}name; null sends none.")
    idempotency_field: str | None = Field(None, description="Dotted path in the input to set to the key as well.")
    reference_path: str | None = Field(None, description="Dotted path in the answer to the target's case id.")
    retriable_fault_codes: list[str] = Field(
        default_factory=lambda: ["Server", "Receiver"],
        description="Fault codes (local names; Server also matches Server.Busy; or a 1.2 subcode) worth a retry.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers.")

    @model_validator(mode="after")
    def _pairs(self) -> SoapConfig:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        if self.client_key is not None and self.client_cert is None:
            raise ValueError("client_key needs client_cert")
        return self


@dataclass(frozen=True)
class _Bound:
    """What the WSDL yields for this target: the zeep client, binding, operation, address, namespace."""

    client: zeep.Client
    binding: Any
    operation: Any
    address: str
    namespace: str


class SoapAdapter:
    name: ClassVar[str] = "soap"
    Config: ClassVar[type[AdapterConfig]] = SoapConfig

    def __init__(self, config: SoapConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._bound: _Bound | None = None
        timeout = httpx.Timeout(config.timeout_seconds, connect=config.connect_timeout_seconds)
        self._http = httpx.Client(timeout=timeout, follow_redirects=False, verify=self._tls())

    def deliver(self, request: DeliveryRequest) -> DeliveryResult:
        bound = self._load()
        envelope, http_headers = self._build(bound, request)
        headers = {**self.config.headers, **http_headers, "Idempotency-Key": request.idempotency_key,
                   "X-Xhub-Message-Id": request.message_id}
        body = etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
        try:
            response = self._http.post(bound.address, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise Retriable(f"{redact_url(bound.address)}: timed out ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise Retriable(f"{redact_url(bound.address)}: {transport_problem(exc)}") from None
        return self._classify(bound, response)

    def close(self) -> None:
        self._http.close()

    # -- the WSDL, loaded once per adapter
    def _load(self) -> _Bound:
        with self._lock:
            if self._bound is None:
                self._bound = self._bind()
            return self._bound

    def _bind(self) -> _Bound:
        cfg = self.config
        remote = cfg.wsdl.startswith(("http://", "https://"))
        transport = zeep.Transport(cache=self._cache(), timeout=cfg.timeout_seconds)  # type: ignore[no-untyped-call]
        transport.session.verify = str(cfg.ca_bundle) if cfg.ca_bundle else True
        transport.session.cert = self._cert()
        if cfg.ca_bundle is not None or cfg.client_cert is not None:
            # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's own `verify`; the
            # target's explicit TLS settings must win, so the environment is not consulted for this session.
            transport.session.trust_env = False
        wsse = None
        if cfg.username is not None and cfg.password is not None:
            wsse = zeep.wsse.username.UsernameToken(  # type: ignore[no-untyped-call]
                cfg.username, cfg.password.get_secret_value(), use_digest=cfg.password_digest)
        settings = zeep.Settings(strict=cfg.strict, forbid_dtd=True)
        try:
            client = zeep.Client(cfg.wsdl, transport=transport, settings=settings,  # type: ignore[no-untyped-call]
                                 wsse=wsse)
            return self._resolve(client)
        except OSError as exc:  # requests' errors are OSErrors too
            raise _wsdl_unreachable(redact_url(cfg.wsdl), exc, remote) from None
        except (zeep.exceptions.Error, etree.LxmlError, ValueError, KeyError) as exc:
            raise Permanent(f"unusable WSDL {redact_url(cfg.wsdl)}: {type(exc).__name__}: {exc}") from None
        finally:
            transport.session.close()  # only the WSDL was fetched with it; deliveries go through httpx

    def _resolve(self, client: zeep.Client) -> _Bound:
        cfg = self.config
        wsdl = redact_url(cfg.wsdl)
        services = client.wsdl.services
        service = services.get(cfg.service) if cfg.service else next(iter(services.values()), None)
        if service is None:
            raise Permanent(f"{wsdl}: no service {cfg.service!r} (there are: {', '.join(services)})")
        port = service.ports.get(cfg.port) if cfg.port else next(iter(service.ports.values()), None)
        if port is None:
            raise Permanent(f"{wsdl}: service {service.name} has no port {cfg.port!r} "
                            f"(there are: {', '.join(service.ports)})")
        address = cfg.endpoint or port.binding_options.get("address")
        if not address:
            raise Permanent(f"{wsdl}: port {port.name} has no address; set endpoint")
        operation = port.binding.get(cfg.operation)  # ValueError names the binding when unknown
        namespace = etree.QName(port.binding.name).namespace or ""  # the WSDL's targetNamespace
        return _Bound(client, port.binding, operation, address, namespace)

    def _cache(self) -> zeep.cache.Base | None:
        cfg = self.config
        if cfg.wsdl_cache == "memory":
            return zeep.cache.InMemoryCache(timeout=cfg.wsdl_cache_seconds)  # type: ignore[no-untyped-call]
        if cfg.wsdl_cache == "sqlite":
            path = str(cfg.wsdl_cache_path) if cfg.wsdl_cache_path else None
            return zeep.cache.SqliteCache(path=path, timeout=cfg.wsdl_cache_seconds)  # type: ignore[no-untyped-call]
        return None

    def _tls(self) -> ssl.SSLContext | bool:
        cfg = self.config
        if cfg.client_cert is None and cfg.ca_bundle is None:
            return True
        try:
            context = ssl.create_default_context(cafile=str(cfg.ca_bundle) if cfg.ca_bundle else None)
            if cfg.client_cert is not None:
                context.load_cert_chain(str(cfg.client_cert), str(cfg.client_key) if cfg.client_key else None)
        except (OSError, ssl.SSLError) as exc:
            raise Permanent(f"cannot load the TLS material: {exc}") from None
        return context

    def _cert(self) -> tuple[str, str] | str | None:
        cfg = self.config
        if cfg.client_cert is None:
            return None
        return (str(cfg.client_cert), str(cfg.client_key)) if cfg.client_key else str(cfg.client_cert)

    # -- one delivery
    def _build(self, bound: _Bound, request: DeliveryRequest) -> tuple[etree._Element, dict[str, str]]:
        values = _mapped_input(request)
        if self.config.idempotency_field:
            _set_path(values, self.config.idempotency_field, request.idempotency_key)
        if self.config.idempotency_header:
            name = self.config.idempotency_header
            tag = name if name.startswith("{") else f"{{{bound.namespace}}}{name}"
            header = etree.Element(tag)
            header.text = request.idempotency_key
            values["_soapheaders"] = [header]
        try:
            # Binding._create is what zeep's own create_message uses: envelope plus SOAPAction/Content-Type,
            # with WS-Addressing, plugins and WS-Security applied.
            envelope, http_headers = bound.binding._create(
                self.config.operation, (), values, client=bound.client, options={"address": bound.address})
        except (zeep.exceptions.Error, TypeError, ValueError, AttributeError) as exc:
            raise Permanent(f"the message does not fit the operation {self.config.operation}: {exc}",
                            detail={"operation": self.config.operation}) from None
        return envelope, dict(http_headers)

    def _classify(self, bound: _Bound, response: httpx.Response) -> DeliveryResult:
        status = response.status_code
        excerpt = response.text[:EXCERPT] if response.content else ""
        detail: dict[str, Any] = {"status_code": status, "excerpt": excerpt}
        where = f"{redact_url(bound.address)} ({self.config.operation})"
        if status != 500 and classify_status(status).retriable:
            raise_for_status(status, response.headers, f"{where} answered {status}", detail)
        try:
            result = bound.binding.process_reply(bound.client, bound.operation, response)
        except zeep.exceptions.Fault as fault:
            if fault.code is None:  # XML, but no SOAP fault in it (an error page)
                raise _by_status(status, f"{where} answered {status} without a SOAP fault", detail) from None
            raise self._fault(where, fault, detail) from None
        except zeep.exceptions.TransportError:
            raise _by_status(status, f"{where} answered {status} without a SOAP envelope", detail) from None
        except (zeep.exceptions.Error, etree.LxmlError, ValueError, TypeError, AttributeError) as exc:
            raise Permanent(f"{where}: the answer does not fit the WSDL: {exc}", detail=detail) from None
        if not 200 <= status < 300:
            raise _by_status(status, f"{where} answered {status} without a fault", detail)
        answer = zeep.helpers.serialize_object(result, dict)  # type: ignore[no-untyped-call]
        return DeliveryResult(reference=self._reference(answer), status_code=status, excerpt=excerpt,
                              detail={"operation": self.config.operation})

    def _fault(self, where: str, fault: zeep.exceptions.Fault, detail: dict[str, Any]) -> HubError:
        code = _local(str(fault.code or ""))
        subcodes = [_local(str(getattr(s, "localname", s))) for s in fault.subcodes or []]
        fault_detail = fault.detail
        detail = {
            **detail,
            "fault_code": fault.code,
            "fault_string": fault.message,
            "fault_subcodes": subcodes,
            "fault_detail": _excerpt(fault_detail) if isinstance(fault_detail, etree._Element) else fault_detail,
        }
        retriable = any(
            code == entry or code.startswith(f"{entry}.") or entry in subcodes
            for entry in self.config.retriable_fault_codes
        )
        kind = Retriable if retriable else Permanent
        return kind(f"{where}: SOAP fault {fault.code}: {fault.message}", detail=detail)

    def _reference(self, answer: Any) -> str | None:
        path = self.config.reference_path
        if path is None:
            return None if isinstance(answer, dict | list) or answer is None else str(answer)
        node = answer
        for step in path.split("."):
            if isinstance(node, dict):
                node = node.get(step)
            elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
                node = node[int(step)]
            else:
                return None
        return None if node is None else str(node)


def _wsdl_unreachable(wsdl: str, exc: OSError, remote: bool) -> HubError:
    """A WSDL that could not be read: a file is our configuration (permanent); over HTTP, the status table
    decides, and a connection problem is transient. requests' messages quote the full URL, so only the
    exception type is kept for remote WSDLs."""
    if not remote:
        return Permanent(f"cannot load the WSDL {wsdl}: {exc.strerror or type(exc).__name__}")
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(status, int):
        return _by_status(status, f"cannot load the WSDL {wsdl}: it answered {status}", {"status_code": status})
    return Retriable(f"cannot load the WSDL {wsdl}: {type(exc).__name__}")


def _by_status(status: int, message: str, detail: dict[str, Any]) -> HubError:
    """An answer zeep could not read as a reply: the status table decides (a 2xx that is no reply is permanent)."""
    verdict = classify_status(status)
    if verdict.retriable:
        return Retriable(f"{message} ({verdict.why})", detail=detail)
    return Permanent(message if 200 <= status < 300 else f"{message} ({verdict.why})", detail=detail)


def _mapped_input(request: DeliveryRequest) -> dict[str, Any]:
    media_type = request.content_type.split(";", 1)[0].strip().lower()
    if not (media_type == "application/json" or media_type.endswith("+json")):
        raise Permanent(NOT_MAPPED, detail={"content_type": request.content_type})
    try:
        values = json.loads(request.body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Permanent(f"{NOT_MAPPED}: {exc}") from None
    if not isinstance(values, dict):
        raise Permanent(f"{NOT_MAPPED}: the JSON is a {type(values).__name__}, not an object")
    return values


def _set_path(values: dict[str, Any], path: str, value: str) -> None:
    *parents, last = path.split(".")
    node = values
    for step in parents:
        child = node.setdefault(step, {})
        if not isinstance(child, dict):
            raise Permanent(f"idempotency_field {path}: {step} is not an object in the message")
        node = child
    node[last] = value


def _local(code: str) -> str:
    """``soap:Client`` → ``Client``; ``{ns}Sender`` → ``Sender``."""
    return code.rsplit("}", 1)[-1].rsplit(":", 1)[-1]


def _excerpt(element: etree._Element) -> str:
    text: str = etree.tostring(element, encoding="unicode")
    return text[:EXCERPT]
