"""Login through the town's identity provider: OpenID Connect, authorization code flow with PKCE (S256).

The protocol's pieces (the authorization request, PKCE, the token request) are authlib's; the HTTP calls are
httpx with timeouts; the ID token is checked with jwcrypto (signature against the provider's JWKS, RS/PS/ES
algorithms only, ``iss``, ``aud``, ``exp``, ``iat`` and the ``nonce`` of this login). A login is let in only
when a console user has the provider's subject (``issuer|sub``, :func:`hub.users.find_by_subject`): the
provider says who someone is, the hub says what they may do.

The flow's state (``state``, ``nonce``, the PKCE verifier) travels in an HttpOnly cookie scoped to
``/console/oidc``; ``state`` in the callback must equal the cookie's, so a callback the browser did not start
is refused. The provider's discovery document and keys are cached for ten minutes.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import threading
import time
from typing import Any

import httpx
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri, prepare_token_request
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from jwcrypto import jwk, jws
from jwcrypto.common import JWException
from starlette.concurrency import run_in_threadpool

from hub import audit, users
from hub.jsonsafe import JsonRejected
from hub.jsonsafe import loads as json_loads
from xhub.api.access import OpsState, client_addr
from xhub.console import i18n
from xhub.console.config import OidcConfig
from xhub.console.pages import login_page, start_session

__all__ = ["OidcError", "Provider", "router"]

FLOW_COOKIE = "xhub_oidc"
CACHE_SECONDS = 600
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]
LEEWAY = 60

router = APIRouter(prefix="/console/oidc", include_in_schema=False)


class OidcError(Exception):
    """The login through the provider failed; the message is for the log and the audit, not for the page."""


class Provider:
    """One identity provider: its discovery document and keys, fetched on first use and cached."""

    def __init__(self, config: OidcConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._meta: dict[str, Any] | None = None
        self._keys: jwk.JWKSet | None = None
        self._fetched = 0.0

    def _get_json(self, url: str) -> dict[str, Any]:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
            return _json_object(client.get(url, headers={"Accept": "application/json"}), url)

    def metadata(self) -> tuple[dict[str, Any], jwk.JWKSet]:
        with self._lock:
            if self._meta is None or self._keys is None or time.monotonic() - self._fetched > CACHE_SECONDS:
                issuer = self.config.issuer.rstrip("/")
                meta = self._get_json(f"{issuer}/.well-known/openid-configuration")
                if meta.get("issuer") != self.config.issuer:
                    raise OidcError("the discovery document names another issuer")
                for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    if not isinstance(meta.get(key), str):
                        raise OidcError(f"the discovery document has no {key}")
                keys = jwk.JWKSet.from_json(json.dumps(self._get_json(meta["jwks_uri"])))
                self._meta, self._keys, self._fetched = meta, keys, time.monotonic()
            return self._meta, self._keys

    def authorization_url(self, redirect_uri: str, state: str, nonce: str, verifier: str) -> str:
        meta, _ = self.metadata()
        return str(prepare_grant_uri(meta["authorization_endpoint"], self.config.client_id, "code",
                                     redirect_uri=redirect_uri, scope=self.config.scope, state=state, nonce=nonce,
                                     code_challenge=create_s256_code_challenge(verifier),
                                     code_challenge_method="S256"))

    def subject(self, code: str, redirect_uri: str, verifier: str, nonce: str) -> str:
        """Exchange ``code`` and check the ID token; returns ``issuer|sub``."""
        meta, keys = self.metadata()
        body = prepare_token_request("authorization_code", code=code, redirect_uri=redirect_uri,
                                     code_verifier=verifier)
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
            r = client.post(meta["token_endpoint"], content=body,
                            auth=(self.config.client_id, self.config.client_secret.get_secret_value()),
                            headers={"Content-Type": "application/x-www-form-urlencoded",
                                     "Accept": "application/json"})
        id_token = _json_object(r, "the token endpoint").get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("the token answer has no id_token")
        claims = self._verify(id_token, keys)
        if claims.get("nonce") != nonce:
            raise OidcError("the ID token's nonce is not this login's")
        return f"{claims['iss']}|{claims['sub']}"

    def _verify(self, id_token: str, keys: jwk.JWKSet) -> dict[str, Any]:
        try:
            signed = jws.JWS()
            signed.deserialize(id_token)
            signed.allowed_algs = ALGORITHMS
            signed.verify(keys)
            claims = json_loads(signed.payload)
        except (JWException, ValueError, JsonRejected) as exc:
            raise OidcError(f"the ID token does not verify: {type(exc).__name__}") from None
        if not isinstance(claims, dict):
            raise OidcError("the ID token's claims are not an object")
        now = time.time()
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        checks = {
            "iss": claims.get("iss") == self.config.issuer,
            "aud": self.config.client_id in audiences,
            "azp": len(audiences) == 1 or claims.get("azp") == self.config.client_id,
            "exp": isinstance(claims.get("exp"), int | float) and claims["exp"] > now - LEEWAY,
            "iat": isinstance(claims.get("iat"), int | float) and claims["iat"] < now + LEEWAY,
            "sub": isinstance(claims.get("sub"), str) and 0 < len(claims["sub"]) <= 200,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise OidcError(f"the ID token fails its {', '.join(failed)} check")
        return claims


def _json_object(r: httpx.Response, what: str) -> dict[str, Any]:
    """A provider's answer: 200, at most 256 KiB, a JSON object (parsed within the hub's JSON limits)."""
    if r.status_code != 200 or len(r.content) > 256 * 1024:
        raise OidcError(f"{what} answered {r.status_code}")
    try:
        data = json_loads(r.content)
    except JsonRejected as exc:
        raise OidcError(f"{what}: {exc}") from None
    if not isinstance(data, dict):
        raise OidcError(f"{what}: not a JSON object")
    return data


def _provider(request: Request) -> Provider | None:
    ops: OpsState = request.app.state.ops
    if ops.config.console.oidc is None:
        return None
    found: Provider | None = getattr(request.app.state, "oidc", None)
    if found is None:
        found = request.app.state.oidc = Provider(ops.config.console.oidc)
    return found


def _redirect_uri(request: Request) -> str:
    ops: OpsState = request.app.state.ops
    base = ops.config.api.public_url or f"{request.url.scheme}://{request.url.netloc}"
    return f"{base}/console/oidc/callback"


@router.get("/start")
async def start(request: Request) -> Response:
    provider = _provider(request)
    if provider is None:
        return RedirectResponse("/console/login", status_code=303)
    state, nonce, verifier = secrets.token_urlsafe(24), secrets.token_urlsafe(24), secrets.token_urlsafe(48)
    try:
        url = await run_in_threadpool(provider.authorization_url, _redirect_uri(request), state, nonce, verifier)
    except (OidcError, httpx.HTTPError, JWException, ValueError) as exc:
        return await _refused(request, f"identity provider not reachable: {type(exc).__name__}: {exc}")
    flow = base64.urlsafe_b64encode(json.dumps([state, nonce, verifier]).encode()).decode()
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(FLOW_COOKIE, flow, max_age=600, httponly=True, samesite="lax",
                        secure=request.url.scheme == "https", path="/console/oidc")
    return response


@router.get("/callback")
async def callback(request: Request) -> Response:
    provider = _provider(request)
    if provider is None:
        return RedirectResponse("/console/login", status_code=303)
    try:
        state, nonce, verifier = json.loads(base64.urlsafe_b64decode(request.cookies.get(FLOW_COOKIE, "")))
    except (ValueError, TypeError):
        return await _refused(request, "callback without a login started in this browser")
    sent_state, code = request.query_params.get("state", ""), request.query_params.get("code", "")
    if not hmac.compare_digest(sent_state.encode(), str(state).encode()) or not code or len(code) > 2000:
        return await _refused(request, "callback with a wrong state or without a code")
    try:
        subject = await run_in_threadpool(provider.subject, code, _redirect_uri(request), verifier, nonce)
    except (OidcError, httpx.HTTPError) as exc:
        return await _refused(request, f"{type(exc).__name__}: {exc}")
    ops: OpsState = request.app.state.ops
    user = await run_in_threadpool(users.find_by_subject, ops.engine, subject)
    if user is None:
        return await _refused(request, "no enabled console user has this identity provider subject")
    response = await start_session(request, ops, user, "oidc")
    response.delete_cookie(FLOW_COOKIE, path="/console/oidc")
    return response


async def _refused(request: Request, why: str) -> Response:
    ops: OpsState = request.app.state.ops
    await run_in_threadpool(lambda: audit.record(ops.engine, None, "login-failed", remote_addr=client_addr(request),
                                                 detail={"how": "oidc", "why": why[:300]}))
    t = i18n.translator(i18n.language(request))
    response = login_page(request, t("The identity provider login failed."), 401)
    response.delete_cookie(FLOW_COOKIE, path="/console/oidc")
    return response
