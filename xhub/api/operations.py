"""Operators' view of the hub itself: the targets' circuits and slots, and the rules in force (and a reload)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from hub.auth import Auth
from hub.problems import Problem, no_unknown_query
from hub.routing import RulesError
from hub.targets import target_overview
from xhub.api.deps import State, operator_only

__all__ = ["router"]

router = APIRouter(tags=["Operations"])


@router.get("/api/v1/targets")
async def targets(request: Request, who: Auth, hub: State) -> dict[str, Any]:
    """Every target with its circuit state (closed | open | half-open) and calls in flight."""
    operator_only(who, "target state")
    no_unknown_query(request)
    return {"items": await run_in_threadpool(target_overview, hub.engine, hub.config.targets)}


@router.get("/api/v1/rules")
async def rules_in_force(request: Request, who: Auth, hub: State) -> dict[str, Any]:
    """The routes and mappings in force, and why the last reload failed (if it did)."""
    operator_only(who, "reading the rules")
    no_unknown_query(request)
    return {**hub.rules.current.summary(), "last_reload_error": hub.rules.last_error}


@router.post("/api/v1/rules/reload")
async def reload_rules(request: Request, who: Auth, hub: State) -> dict[str, Any]:
    """Load the rules again; messages in flight finish with the rules they started with."""
    operator_only(who, "reloading the rules")
    no_unknown_query(request)
    try:
        fresh = await run_in_threadpool(hub.rules.reload)
    except RulesError as exc:
        raise Problem(422, "invalid-rules", "Rules not reloaded",
                      "the new rules have problems; the previous ones stay in force",
                      problems=exc.problems) from None
    return fresh.summary()
