"""The HTTP face of the emulator: the Submission API 1.1.3 paths a sender and a subscriber use.

* ``POST /token``: OAuth2 client credentials (form-encoded, or HTTP Basic for the client); RFC 6749 errors.
* ``GET /v1/destinations/{id}``, ``GET /v1/destinations/{id}/keys/{kid}`` (the latter needs no token).
* Sender: ``POST /v1/submissions``, ``PUT /v1/submissions/{id}/attachments/{attId}`` (``application/jose``,
  streamed to disk), ``PUT /v1/submissions/{id}``; the event log at ``GET /v1/cases/{caseId}/events``.
* Subscriber: ``GET /v1/submissions``, ``GET /v1/submissions/{id}``, ``GET …/attachments/{attId}`` (streamed
  from disk), ``POST /v1/cases/{caseId}/events`` (a signed SET).
* ``GET /v1/info``, ``GET /.well-known/jwks.json``; the admin endpoints under ``/_admin/`` (:mod:`.admin`).

Errors are ``application/problem+json`` (:mod:`.problem_types`, built by :mod:`hub.problems`); a malformed
parameter or body is a 400.
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from sandbox.fitconnect.admin import admin_router
from sandbox.fitconnect.callbacks import Callback, deliver
from sandbox.fitconnect.emulator import Client, Emulator, InvalidClient
from sandbox.fitconnect.problem_types import Problem, ProblemType, install_problem_handlers

__all__ = ["create_fitconnect_emulator"]

_P = ProblemType
_JWE = r"^[a-zA-Z0-9-_=.]+$"
_URN = r"^urn:[a-z0-9][a-z0-9-]{0,31}:[a-z0-9()+,.:=@;$_!*'%/?#-]+$"
_JSON_LIMIT = 64 * 1024 * 1024  # encryptedData travels in the JSON body of the submit call
_SET_LIMIT = 1024 * 1024
_JOSE_CHARS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=."
_NO_CACHE = {"Cache-Control": "no-cache"}


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _ServiceType(_In):
    name: str | None = None
    description: str | None = None
    identifier: str = Field(min_length=7, max_length=255, pattern=_URN)


class _Callback(_In):
    url: str = Field(min_length=9, pattern=r"^https?://.+")  # the spec says https; http is allowed locally
    secret: str = Field(min_length=32, max_length=512)


class _CreateSubmission(_In):
    destinationId: uuid.UUID
    announcedAttachments: list[uuid.UUID]
    serviceType: _ServiceType
    caseId: uuid.UUID | None = None
    callback: _Callback | None = None


class _SubmitSubmission(_In):
    encryptedMetadata: str = Field(pattern=_JWE)
    encryptedData: str | None = Field(None, pattern=_JWE)


def _media_type(request: Request, expected: str) -> None:
    got = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if got != expected:
        raise Problem(_P.UNSUPPORTED_MEDIA_TYPE, f"expected Content-Type {expected}, got {got or 'none'}")


def _compact_jwe(value: str, what: str) -> str:
    if value.count(".") != 4 or not value.rsplit(".", 1)[1]:
        raise Problem(_P.INVALID_REQUEST, f"{what} is not a compact JWE (five segments)")
    return value


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Problem(_P.PAYLOAD_TOO_LARGE, f"the body may have at most {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise Problem(_P.PAYLOAD_TOO_LARGE, f"the body may have at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(model: type[_In], raw: bytes) -> Any:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise Problem(_P.INVALID_REQUEST, where) from exc


async def _receive_jwe(request: Request, target: Path, limit: int) -> tuple[int, str]:
    """Stream a compact JWE body into ``target``; returns ``(size, authentication tag)``.

    The body is checked on the fly (alphabet, size); only the last few KB are kept in memory, for the tag.
    Writes are blocking, but short: one chunk at a time into the page cache.
    """
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise Problem(_P.PAYLOAD_TOO_LARGE, f"an attachment may have at most {limit} bytes")
    size, dots, tail = 0, 0, b""
    with target.open("wb") as f:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Problem(_P.PAYLOAD_TOO_LARGE, f"an attachment may have at most {limit} bytes")
            if chunk.translate(None, _JOSE_CHARS):  # anything left is not base64url or a dot
                raise Problem(_P.INVALID_REQUEST, "the attachment is not a compact JWE (invalid characters)")
            dots += chunk.count(b".")
            tail = (tail + chunk)[-4096:]
            f.write(chunk)
    tag = tail.rsplit(b".", 1)[-1]
    if dots != 4 or not tag:
        raise Problem(_P.INVALID_REQUEST, "the attachment is not a compact JWE (five segments)")
    return size, tag.decode("ascii")


def _callback_task(callback: Callback | None) -> BackgroundTask | None:
    return BackgroundTask(deliver, callback) if callback else None


def _client(request: Request, authorization: Annotated[str | None, Header()] = None) -> Client:
    """The client behind the bearer token, or a 401 problem."""
    emu: Emulator = request.app.state.emulator
    scheme, _, token = (authorization or "").partition(" ")
    found = emu.client_for_token(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    if found is None:
        raise Problem(_P.UNAUTHORIZED, "a valid bearer token is required (POST /token)",
                      headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
    return found


# module level: with postponed annotations FastAPI resolves these names in the module's namespace
Auth = Annotated[Client, Depends(_client)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0)]


def create_fitconnect_emulator(emu: Emulator) -> FastAPI:
    """The emulator's FastAPI app over the state ``emu``; serve it with ``xhub.runtime.serve_in_thread``."""
    app = FastAPI(title="FIT-Connect delivery service emulator (xoev-hub sandbox)", version="1.1.3",
                  description=__doc__)
    app.state.emulator = emu
    install_problem_handlers(app)
    app.include_router(admin_router(emu))
    subs = emu.submissions

    def issuer(request: Request) -> str:
        return emu.issuer or str(request.base_url).rstrip("/")

    @app.post("/token", tags=["OAuth2"])
    async def token(request: Request, authorization: Annotated[str | None, Header()] = None) -> JSONResponse:
        def oauth_error(status: int, error: str, description: str) -> JSONResponse:
            headers = {"WWW-Authenticate": 'Basic realm="fit-connect-emulator"'} if status == 401 else None
            return JSONResponse({"error": error, "error_description": description}, status, headers=headers)

        if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
            return oauth_error(400, "invalid_request", "the body must be application/x-www-form-urlencoded")
        form = dict(urllib.parse.parse_qsl((await _body(request, 64 * 1024)).decode("utf-8", "replace")))
        if form.get("grant_type") != "client_credentials":
            return oauth_error(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
        if authorization and authorization.lower().startswith("basic "):
            try:
                basic = base64.b64decode(authorization[6:], validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return oauth_error(400, "invalid_request", "malformed Basic authorization")
            client_id, _, secret = (urllib.parse.unquote(p) for p in basic.partition(":"))
        try:
            access_token, found = await run_in_threadpool(emu.issue_token, client_id, secret)
        except InvalidClient:
            return oauth_error(401, "invalid_client", "unknown client or wrong secret")
        scope = " ".join(sorted(f"subscribe:destination:{d}" for d in found.destinations)) \
            if found.role == "subscriber" else "send:region:DE"
        return JSONResponse({"access_token": access_token, "token_type": "Bearer",
                             "expires_in": emu.token_ttl_seconds, "scope": scope},
                            headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    @app.get("/v1/destinations/{destinationId}", tags=["Einreichungsübermittlung"])
    def get_destination(destinationId: uuid.UUID, who: Auth) -> JSONResponse:
        dest = emu.destination(str(destinationId))
        if dest is None:
            raise Problem(_P.DESTINATION_NOT_FOUND, f"destination {destinationId} does not exist")
        if dest.destination_id not in who.destinations:
            raise Problem(_P.FORBIDDEN, f"this client has no access to destination {destinationId}")
        return JSONResponse(dest.public(), headers=_NO_CACHE)

    @app.get("/v1/destinations/{destinationId}/keys/{keyId}", tags=["Einreichungsübermittlung"])
    def get_destination_key(destinationId: uuid.UUID, keyId: str) -> JSONResponse:
        dest = emu.destination(str(destinationId))
        key = dest.key(keyId) if dest else None
        if key is None:
            raise Problem(_P.KEY_NOT_FOUND, f"destination {destinationId} has no key {keyId}")
        return JSONResponse(key, headers=_NO_CACHE)

    @app.post("/v1/submissions", status_code=201, tags=["Einreichungsübermittlung"])
    async def create_submission(request: Request, who: Auth) -> JSONResponse:
        _media_type(request, "application/json")
        body: _CreateSubmission = _json(_CreateSubmission, await _body(request, _JSON_LIMIT))
        created = await run_in_threadpool(
            lambda: subs.announce(
                who, destination_id=str(body.destinationId), announced=[str(a) for a in body.announcedAttachments],
                service_identifier=body.serviceType.identifier,
                service_type=body.serviceType.model_dump(exclude_none=True),
                case_id=str(body.caseId) if body.caseId else None,
                callback=(body.callback.url, body.callback.secret) if body.callback else None,
                issuer=issuer(request)))
        return JSONResponse(created, status_code=201)

    @app.put("/v1/submissions/{submissionId}/attachments/{attachmentId}", status_code=204,
             tags=["Einreichungsübermittlung"])
    async def add_attachment(request: Request, submissionId: uuid.UUID, attachmentId: uuid.UUID,
                             who: Auth) -> Response:
        _media_type(request, "application/jose")
        sid, aid = str(submissionId), str(attachmentId)
        await run_in_threadpool(subs.check_upload, who, sid, aid)
        upload = subs.upload_file()
        try:
            size, tag = await _receive_jwe(request, upload, emu.max_upload_bytes)
            await run_in_threadpool(subs.store_attachment, who, sid, aid, upload, size, tag)
        finally:
            upload.unlink(missing_ok=True)
        return Response(status_code=204)

    @app.put("/v1/submissions/{submissionId}", status_code=202, tags=["Einreichungsübermittlung"])
    async def submit_submission(request: Request, submissionId: uuid.UUID, who: Auth) -> JSONResponse:
        _media_type(request, "application/json")
        body: _SubmitSubmission = _json(_SubmitSubmission, await _body(request, _JSON_LIMIT))
        metadata = _compact_jwe(body.encryptedMetadata, "encryptedMetadata")
        data = _compact_jwe(body.encryptedData, "encryptedData") if body.encryptedData is not None else None
        reduced, callback = await run_in_threadpool(
            lambda: subs.submit(who, str(submissionId), encrypted_metadata=metadata, encrypted_data=data,
                                issuer=issuer(request)))
        return JSONResponse(reduced, status_code=202, background=_callback_task(callback))

    @app.get("/v1/submissions", tags=["Einreichungsempfang"])
    def list_submissions(who: Auth, destinationId: uuid.UUID | None = None, limit: Limit = 100,
                         offset: Offset = 0) -> JSONResponse:
        return JSONResponse(subs.pickup(who, str(destinationId) if destinationId else None, limit, offset))

    @app.get("/v1/submissions/{submissionId}", tags=["Einreichungsempfang"])
    def get_submission(submissionId: uuid.UUID, who: Auth) -> JSONResponse:
        return JSONResponse(subs.fetch(who, str(submissionId)))

    @app.get("/v1/submissions/{submissionId}/attachments/{attachmentId}", tags=["Einreichungsempfang"])
    def get_attachment(submissionId: uuid.UUID, attachmentId: uuid.UUID, who: Auth) -> FileResponse:
        return FileResponse(subs.attachment(who, str(submissionId), str(attachmentId)), media_type="application/jose")

    @app.post("/v1/cases/{caseId}/events", status_code=204, tags=["Einreichungsempfang"])
    async def send_case_event(request: Request, caseId: uuid.UUID, who: Auth) -> Response:
        _media_type(request, "application/jose")
        try:
            token = (await _body(request, _SET_LIMIT)).decode("ascii").strip()
        except UnicodeDecodeError as exc:
            raise Problem(_P.INVALID_REQUEST, "the body is not a compact JWS") from exc
        callback = await run_in_threadpool(subs.decide, who, str(caseId), token)
        return Response(status_code=204, background=_callback_task(callback))

    @app.get("/v1/cases/{caseId}/events", tags=["Einreichungsempfang", "Einreichungsübermittlung"])
    def get_case_events(caseId: uuid.UUID, who: Auth, limit: Limit = 100, offset: Offset = 0) -> JSONResponse:
        return JSONResponse(subs.event_log(who, str(caseId), limit, offset))

    @app.get("/v1/info", tags=["Technisch"])
    def info() -> dict[str, Any]:
        return {"version": {"major": 1, "minor": 1, "patch": 3}}

    @app.get("/.well-known/jwks.json", tags=["Technisch"])
    def jwks() -> dict[str, Any]:
        return emu.jwks()

    return app

