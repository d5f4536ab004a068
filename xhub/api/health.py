"""``/health``, ``/health/live`` and ``/health/ready``.

* ``/health/live``: the process answers (no database, no I/O): for restarts by an orchestrator.
* ``/health/ready``: every component (:mod:`hub.readiness`): ``200`` with the detail when none is ``degraded``
  (a component in ``warning``, such as a certificate that expires soon, is listed in ``warnings``);
  ``503`` ``application/problem+json`` (type ``…:not-ready``) naming each degraded component, with the
  same ``components`` member. For monitoring, and for routing traffic only to hubs that can process it.
* ``/health``: kept as it was for existing monitors and load balancers: the process answers and the
  database answers a ping (``503`` problem otherwise). Use ``/health/ready`` for the whole picture.

No answer carries a secret, a path, a host name or personal data.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from hub.db import ping
from hub.problems import PROBLEM_JSON, TYPE_PREFIX, Problem
from hub.readiness import DB_TIMEOUT_SECONDS
from xhub.api.deps import State

__all__ = ["router"]

#: the whole readiness check: the database probe's timeout, and the file probe, with room to spare
READY_TIMEOUT_SECONDS = 2 * DB_TIMEOUT_SECONDS + 2

router = APIRouter(tags=["Health"])


@router.get("/health")
async def legacy(hub: State) -> JSONResponse:
    try:
        await run_in_threadpool(ping, hub.engine)
    except SQLAlchemyError as exc:
        return JSONResponse(
            {"type": TYPE_PREFIX + "unhealthy", "title": "Database not reachable", "status": 503,
             "detail": f"the database did not answer: {type(exc).__name__}", "live": True, "database": "down"},
            status_code=503, media_type=PROBLEM_JSON)
    return JSONResponse({"status": "ok", "live": True, "database": "ok"})


@router.get("/health/live")
async def live() -> dict[str, Any]:
    return {"status": "ok", "live": True}


@router.get("/health/ready")
async def ready(request: Request, hub: State) -> JSONResponse:
    loops = getattr(request.app.state, "loops", [])
    try:
        components = await asyncio.wait_for(run_in_threadpool(hub.health.ready, loops), READY_TIMEOUT_SECONDS)
    except TimeoutError:
        raise Problem(503, "not-ready", "Not ready",
                      f"the readiness check did not finish within {READY_TIMEOUT_SECONDS:g} s") from None
    body = {name: c.as_json() for name, c in components.items()}
    degraded = [f"{name}: {c.reason}" for name, c in components.items() if not c.ok]
    if degraded:
        raise Problem(503, "not-ready", "Not ready", "; ".join(degraded), components=body)
    warnings = [f"{name}: {c.reason}" for name, c in components.items() if c.status == "warning"]
    return JSONResponse({"status": "ok", "components": body, **({"warnings": warnings} if warnings else {})})
