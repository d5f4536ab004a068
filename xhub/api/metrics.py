"""``GET /metrics``: Prometheus exposition text (docs/operations.md).

Open by default, like the health endpoints: scrape it from the monitoring network, and keep the port off
the internet. With ``[metrics] token_sha256`` the scraper must send ``Authorization: Bearer <token>``
(``bearer_token_file`` in Prometheus); a missing or wrong token is a ``401`` problem. The answer names no
message, person or secret: only configured names (tenants, channels, routes, targets, destinations) and
counts.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from hub.problems import Problem
from xhub.observability import MetricsEndpoint

__all__ = ["router"]

router = APIRouter(tags=["Health"])


@router.get("/metrics", response_class=Response)
async def scrape(request: Request) -> Response:
    endpoint: MetricsEndpoint = request.app.state.metrics
    if not endpoint.allowed(request.headers.get("authorization")):
        raise Problem(401, "unauthorized", "Unauthorized", "/metrics needs the scraper's bearer token",
                      headers={"WWW-Authenticate": "Bearer"})
    return Response(await run_in_threadpool(endpoint.render), media_type=CONTENT_TYPE_LATEST)
