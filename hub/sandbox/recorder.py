"""A recording HTTP sink: accepts deliveries, remembers every request, misbehaves on demand.

Endpoints:

* ``POST|PUT /inbox/{anything}``: a delivery. Answers ``201`` with ``{"case_id": …}``; a repeated
  ``Idempotency-Key`` gets ``200`` and the first case id (it is recorded as a duplicate, not a new case).
* ``GET /_received``: every request so far (key, body SHA-256, size, time, whether it was a duplicate).
* ``POST /_behaviour``: ``{"delay_seconds": 0, "fail_status": null, "fail_count": 0}``: hold each request,
  or answer ``fail_status`` to the next ``fail_count`` requests (e.g. 503 for an outage).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field


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


class Behaviour(BaseModel):
    delay_seconds: float = Field(0.0, ge=0, le=600)
    fail_status: int | None = Field(None, ge=400, le=599)
    fail_count: int = Field(0, ge=0)


def create_recorder() -> FastAPI:
    app = FastAPI(title="xoev-hub recording sink")
    lock = threading.Lock()
    received: list[Received] = []
    cases: dict[str, str] = {}
    behaviour = Behaviour()
    state: dict[str, Any] = {"behaviour": behaviour, "in_flight": 0}

    @app.api_route("/inbox/{path:path}", methods=["POST", "PUT"])
    async def inbox(path: str, request: Request) -> JSONResponse:
        body = await request.body()
        with lock:
            current: Behaviour = state["behaviour"]
            if current.fail_status and current.fail_count > 0:
                state["behaviour"] = current.model_copy(update={"fail_count": current.fail_count - 1})
                return JSONResponse({"error": "told to fail"}, status_code=current.fail_status,
                                    headers={"Retry-After": "1"} if current.fail_status in (429, 503) else {})
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
            if current.delay_seconds:
                await asyncio.sleep(current.delay_seconds)
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

    @app.post("/_behaviour")
    async def set_behaviour(new: Behaviour) -> dict[str, Any]:
        state["behaviour"] = new
        return new.model_dump()

    return app
