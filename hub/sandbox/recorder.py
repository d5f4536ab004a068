"""A recording HTTP sink: accepts deliveries, remembers every request, misbehaves on demand.

Endpoints:

* ``POST|PUT /inbox/{anything}``: a delivery. Answers ``201`` with ``{"case_id": …}``; a repeated
  ``Idempotency-Key`` gets ``200`` and the first case id (it is recorded as a duplicate, not a new case).
* ``GET /_received``: every request that reached the sink (key, body SHA-256, size, time, whether it was a
  duplicate, whether its answer went out); requests refused by the misbehaviour model are not in it.
* ``POST /_behaviour``: how to misbehave, see :mod:`hub.sandbox.chaos`; e.g. ``{"delay_seconds": 2}`` holds
  each request, ``{"fail_status": 503, "fail_count": 2}`` refuses the next two.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hub.sandbox.chaos import Chaos, Drop, Fault, Refuse, hold, install, refusal_headers

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
    lock = threading.Lock()
    received: list[Received] = []
    cases: dict[str, str] = {}
    state = {"in_flight": 0}

    @app.api_route("/inbox/{path:path}", methods=["POST", "PUT"])
    async def inbox(path: str, request: Request) -> JSONResponse:
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
        with lock:
            key = request.headers.get("idempotency-key")
            duplicate = key is not None and key in cases
            case_id = cases[key] if key is not None and duplicate else f"case-{uuid.uuid4().hex[:12]}"
            if key is not None:
                cases[key] = case_id
            record = Received(key, request.headers.get("x-xhub-message-id"), hashlib.sha256(body).hexdigest(),
                              len(body), time.time(), duplicate, case_id, completed=False)
            received.append(record)
            state["in_flight"] += 1
        try:
            if not await hold(request, decision.delay):
                return JSONResponse({"error": "the caller went away"}, status_code=499)
            record.completed = True
            return JSONResponse({"case_id": case_id, "duplicate": duplicate}, status_code=200 if duplicate else 201,
                                headers={"X-Case-Id": case_id})
        finally:
            with lock:
                state["in_flight"] -= 1

    @app.get("/_received")
    async def get_received() -> dict[str, Any]:
        with lock:
            return {"count": len(received), "in_flight": state["in_flight"], "items": [asdict(r) for r in received]}

    return app
