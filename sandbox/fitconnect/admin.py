"""``/_admin/``: set the emulator up over HTTP (not part of FIT-Connect; no authentication: bind to loopback).

* ``POST /_admin/destinations`` ``{"encryptionKey": JWK, "signingKey": JWK, "services": ["urn:…"],
  "callback": {"url", "secret"} | null, "regions": ["DE…"], "status": "active"}`` → 201 ``{"destinationId"}``
* ``PATCH /_admin/destinations/{id}`` ``{"status": "inactive"}`` → 204
* ``POST /_admin/clients`` ``{"role": "sender" | "subscriber", "destinations": [id, …]}`` →
  201 ``{"clientId", "clientSecret"}``
* ``GET /_admin/submissions``: every submission with its status and events.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from sandbox.fitconnect.emulator import Emulator
from sandbox.fitconnect.problem_types import Problem, ProblemType

__all__ = ["admin_router"]


class _Admin(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _CallbackIn(_Admin):
    url: str
    secret: str


class _DestinationIn(_Admin):
    encryptionKey: dict[str, Any]
    signingKey: dict[str, Any]
    services: list[str] = Field(min_length=1)
    callback: _CallbackIn | None = None
    regions: list[str] = Field(default_factory=lambda: ["DE"], min_length=1)
    status: Literal["created", "active", "inactive", "decommissioned"] = "active"


class _StatusIn(_Admin):
    status: Literal["created", "active", "inactive", "decommissioned"]


class _ClientIn(_Admin):
    role: Literal["sender", "subscriber"]
    destinations: list[str] = Field(default_factory=list)


def admin_router(emu: Emulator) -> APIRouter:
    router = APIRouter(prefix="/_admin", tags=["Admin (emulator only)"])

    @router.post("/destinations", status_code=201)
    def add_destination(body: _DestinationIn) -> JSONResponse:
        try:
            destination_id = emu.add_destination(
                body.encryptionKey, body.signingKey, body.services,
                body.callback.url if body.callback else None, body.callback.secret if body.callback else None,
                regions=body.regions, status=body.status)
        except ValueError as exc:
            raise Problem(ProblemType.INVALID_REQUEST, str(exc)) from exc
        return JSONResponse({"destinationId": destination_id}, status_code=201)

    @router.patch("/destinations/{destination_id}", status_code=204)
    def set_status(destination_id: str, body: _StatusIn) -> Response:
        try:
            emu.set_destination_status(destination_id, body.status)
        except KeyError as exc:
            raise Problem(ProblemType.DESTINATION_NOT_FOUND, f"destination {destination_id} does not exist") from exc
        return Response(status_code=204)

    @router.post("/clients", status_code=201)
    def add_client(body: _ClientIn) -> JSONResponse:
        try:
            client_id, secret = emu.add_client(body.role, body.destinations)
        except ValueError as exc:
            raise Problem(ProblemType.INVALID_REQUEST, str(exc)) from exc
        return JSONResponse({"clientId": client_id, "clientSecret": secret}, status_code=201)

    @router.get("/submissions")
    def submissions() -> list[dict[str, Any]]:
        return emu.overview()

    return router
