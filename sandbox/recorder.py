"""A recording HTTP sink: accepts deliveries, remembers every request, misbehaves on demand.

Endpoints:

* ``POST|PUT /inbox/{anything}``: a delivery. Answers ``201`` with ``{"case_id": …}``; a repeated
  ``Idempotency-Key`` gets ``200`` and the first case id (it is recorded as a duplicate, not a new case).
* ``GET /_received``: every request that reached the sink (key, body SHA-256, size, time, whether it was a
  duplicate, whether its answer went out); requests refused by the misbehaviour model are not in it.
* ``POST /_behaviour``: how to misbehave, see :mod:`sandbox.chaos`; e.g. ``{"delay_seconds": 2}`` holds
  each request, ``{"fail_status": 503, "fail_count": 2}`` refuses the next two.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from sandbox.chaos import Chaos, Drop, Fault, Refuse, hold, install, refusal_headers
from sandbox.ledger import Ledger

__all__ = ["Received", "create_recorder"]


@dataclass
class Received:
    idempotency_key: str | None
    message_id: str | None
    sha256: str
    size: int
    at: float
    duplicate: bool
    case_id: str
    completed: bool  # False while held by delay_seconds, or when the caller went away meanwhile


def create_recorder(chaos: Chaos | None = None) -> FastAPI:
    app = FastAPI(title="xoev-hub recording sink")
    chaos = chaos or Chaos()
    install(app, chaos)
    ledger: Ledger[Received] = Ledger()
    ledger.mount(app)
    cases: dict[str, str] = {}

    @app.api_route("/inbox/{path:path}", methods=["POST", "PUT"])
    async def inbox(path: str, request: Request) -> Response:
        body = await request.body()
        decision = chaos.decide()
        if isinstance(decision, Refuse):
            return JSONResponse({"error": f"told to fail ({decision.reason})"}, status_code=decision.status,
                                headers=refusal_headers(decision))
        if isinstance(decision, Drop):
            await hold(request, decision.seconds)
            return JSONResponse({"error": "gateway timeout (told to)"}, status_code=504)
        if isinstance(decision, Fault):
            await hold(request, decision.delay)
            status = 400 if decision.kind == "client" else 500
            return JSONResponse({"error": f"{decision.kind} fault (told to)"}, status_code=status)
        with ledger.lock:
            key = request.headers.get("idempotency-key")
            duplicate = key is not None and key in cases
            case_id = cases[key] if key is not None and duplicate else f"case-{uuid.uuid4().hex[:12]}"
            if key is not None:
                cases[key] = case_id
            record = ledger.add(
                Received(key, request.headers.get("x-xhub-message-id"), hashlib.sha256(body).hexdigest(),
                         len(body), time.time(), duplicate, case_id, completed=False),
                held=True,
            )
        return await ledger.answer(
            request, decision.delay, record,
            lambda: JSONResponse({"case_id": case_id, "duplicate": duplicate}, status_code=200 if duplicate else 201,
                                 headers={"X-Case-Id": case_id}),
            gone=JSONResponse({"error": "the caller went away"}, status_code=499),
        )

    return app
