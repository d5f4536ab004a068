"""route: pick the first matching route and record one pending delivery per target. ``validated → routed``."""

from __future__ import annotations

from typing import ClassVar

from hub.config import RouteConfig
from hub.errors import Invalid, Permanent
from hub.models import Message
from hub.pipeline.base import StageContext, StageResult
from hub.statemachine import Status


def matches(route: RouteConfig, message: Message) -> list[str]:
    """The reasons ``route`` does not match ``message``; empty means it matches."""
    misses = []
    wanted = route.match.model_dump(exclude_none=True)
    for key, value in wanted.items():
        have = getattr(message, key)
        if have != value:
            misses.append(f"{key} is {have!r}, route wants {value!r}")
    return misses


class Route:
    name: ClassVar[str] = "route"
    consumes: ClassVar[Status] = Status.VALIDATED
    produces: ClassVar[Status | None] = Status.ROUTED

    def run(self, ctx: StageContext) -> StageResult:
        explanation: dict[str, list[str]] = {}
        for route in ctx.config.routes:
            misses = matches(route, ctx.message)
            if not misses:
                if ctx.message.verdict == "not_checked" and route.not_checked == "reject":
                    raise Invalid(
                        f"route {route.name} accepts only checked messages, and this one could not be checked "
                        "(no schema installed for it; see the validation report)",
                        detail={"route": route.name},
                    )
                unchecked = ""
                if ctx.message.verdict == "not_checked":
                    unchecked = " (passed on unchecked, as the route allows)"
                return StageResult(
                    reason=f"route {route.name} → {', '.join(route.targets)}{unchecked}",
                    detail={"route": route.name, "targets": route.targets, "not_matched": explanation},
                    fields={"route": route.name},
                    deliveries=tuple(route.targets),
                )
            explanation[route.name] = misses
        # Kept, not dropped: the message waits in dead with this reason until the rules are fixed and an
        # operator requeues it.
        raise Permanent("no route matches this message", detail={"not_matched": explanation})
