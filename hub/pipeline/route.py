"""route: pick the first matching route and record one pending delivery per target. ``validated → routed``."""

from __future__ import annotations

from typing import ClassVar

from hub.errors import Invalid, Permanent
from hub.pipeline.base import StageContext, StageResult
from hub.routing import Facts
from hub.statemachine import Status


class Route:
    name: ClassVar[str] = "route"
    consumes: ClassVar[Status] = Status.VALIDATED
    produces: ClassVar[Status | None] = Status.ROUTED

    def run(self, ctx: StageContext) -> StageResult:
        m = ctx.message
        facts = Facts(tenant=m.tenant, channel=m.channel, sender=m.sender, standard=m.standard,
                      version=m.standard_version, message_type=m.message_type, attributes=m.attributes or {},
                      root=ctx.xml_root())
        decision = ctx.rules.decide(facts)
        route = decision.route
        if route is None:
            # Kept, not dropped: the message waits in dead with this reason until the rules are fixed and an
            # operator requeues it.
            raise Permanent("no route matches this message", detail=decision.as_detail())
        if m.verdict == "not_checked" and route.not_checked == "reject":
            raise Invalid(
                f"route {route.name} accepts only checked messages, and this one could not be checked "
                "(no schema installed for it; see the validation report)",
                detail=decision.as_detail(),
            )
        unchecked = " (passed on unchecked, as the route allows)" if m.verdict == "not_checked" else ""
        answered = ""
        if route.accept_after == "validated" and ctx.channel.answers:
            answered = f"; {ctx.channel.accept(m)} (the route accepts after validation)"
            ctx.facts["attributes"] = {**(m.attributes or {}), "answered": "accepted"}
        targets = [f"{t.target} (mapping {t.mapping})" if t.mapping else t.target for t in route.targets]
        return StageResult(
            reason=f"route {route.name} → {', '.join(targets)}{unchecked}{answered}",
            detail={**decision.as_detail(), "targets": [t.model_dump() for t in route.targets]},
            fields={"route": route.name},
            deliveries=tuple((t.target, t.mapping) for t in route.targets),
        )
