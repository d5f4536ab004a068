"""A small OpenID Connect provider for the tests: discovery, authorize (logs in ``Provider.user`` at once),
token (client secret, PKCE S256, one use per code), JWKS; ID tokens signed RS256 with jwcrypto."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse
from jwcrypto import jwk, jws


@dataclass
class Provider:
    issuer: str = ""
    client_id: str = "xhub-console"
    client_secret: str = "provider-secret-for-tests"
    user: str = "erika.mustermann"
    audience: str | None = None  # to make a token for another client
    key: jwk.JWK = field(default_factory=lambda: jwk.JWK.generate(kty="RSA", size=2048, kid="k1"))
    codes: dict[str, dict[str, str]] = field(default_factory=dict)


def create_provider(p: Provider) -> FastAPI:
    app = FastAPI()

    @app.get("/.well-known/openid-configuration")
    def discovery() -> dict[str, Any]:
        return {"issuer": p.issuer, "authorization_endpoint": f"{p.issuer}/authorize",
                "token_endpoint": f"{p.issuer}/token", "jwks_uri": f"{p.issuer}/jwks",
                "response_types_supported": ["code"], "id_token_signing_alg_values_supported": ["RS256"]}

    @app.get("/jwks")
    def keys() -> dict[str, Any]:
        return {"keys": [json.loads(p.key.export_public())]}

    @app.get("/authorize")
    def authorize(request: Request) -> RedirectResponse:
        q = request.query_params
        assert q["client_id"] == p.client_id and q["response_type"] == "code"
        assert q["code_challenge_method"] == "S256"
        code = secrets.token_urlsafe(16)
        p.codes[code] = {"nonce": q["nonce"], "challenge": q["code_challenge"], "redirect_uri": q["redirect_uri"],
                         "sub": p.user}
        return RedirectResponse(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}", 303)

    @app.post("/token")
    async def token(request: Request) -> JSONResponse:
        expected = base64.b64encode(f"{p.client_id}:{p.client_secret}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return JSONResponse({"error": "invalid_client"}, 401)
        form = await request.form()
        grant = p.codes.pop(str(form.get("code")), None)
        verifier = str(form.get("code_verifier"))
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if grant is None or grant["challenge"] != challenge or grant["redirect_uri"] != form.get("redirect_uri"):
            return JSONResponse({"error": "invalid_grant"}, 400)
        now = int(time.time())
        claims = {"iss": p.issuer, "sub": grant["sub"], "aud": p.audience or p.client_id, "iat": now,
                  "exp": now + 300, "nonce": grant["nonce"]}
        signed = jws.JWS(json.dumps(claims).encode())
        signed.add_signature(p.key, None, json.dumps({"alg": "RS256", "kid": "k1"}))
        return JSONResponse({"access_token": "at", "token_type": "Bearer", "id_token": signed.serialize(compact=True)})

    return app
