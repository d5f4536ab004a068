"""deliver: hand the message to every target that does not have it yet. ``routed → delivered``.

Each target's outcome is recorded on its delivery row as it happens, so a retry only redoes the targets
that failed. When several targets fail, the message follows the most severe failure
(invalid > permanent > retriable > deferred).
"""

from __future__ import annotations

from typing import ClassVar

from hub.errors import Deferred, HubError, Invalid, Permanent
from hub.mapping import MappingFailed
from hub.pipeline.base import StageContext, StageResult
from hub.ports import DeliveryRequest
from hub.statemachine import DeliveryStatus, Status


def _severity(error: HubError) -> int:
    """Lower is worse: invalid, permanent, retriable, then deferred (not even attempted)."""
    if isinstance(error, Invalid):
        return 0
    if isinstance(error, Permanent):
        return 1
    if isinstance(error, Deferred):
        return 3
    return 2


class Deliver:
    name: ClassVar[str] = "deliver"
    consumes: ClassVar[Status] = Status.ROUTED
    produces: ClassVar[Status | None] = Status.DELIVERED

    def run(self, ctx: StageContext) -> StageResult:
        message = ctx.message
        rows = ctx.load_deliveries()
        if not rows:
            raise Permanent("message is routed but has no delivery records")
        failures: list[HubError] = []
        done = []
        for row in rows:
            if row.status is DeliveryStatus.DELIVERED:
                continue
            ctx.keep_lease()
            meta = {
                "tenant": message.tenant,
                "standard": message.standard,
                "message_type": message.message_type,
                "xoev_message_uuid": message.xoev_message_uuid,
            }
            try:
                body, content_type = self._render(ctx, row.mapping, row.idempotency_key, meta)
                request = DeliveryRequest(
                    message_id=str(message.id),
                    target=row.target,
                    idempotency_key=row.idempotency_key,
                    body=body,
                    content_type=content_type,
                    meta=meta,
                )
                result = ctx.adapter(row.target).deliver(request)
            except HubError as exc:
                ctx.record_delivery(row, None, exc)
                failures.append(exc)
                continue
            ctx.record_delivery(row, result, None)
            done.append(row.target)
        if failures:
            raise min(failures, key=_severity)
        delivered = [r.target for r in rows]
        return StageResult(
            reason=f"delivered to {', '.join(delivered)}",
            detail={"targets": delivered, "this_attempt": done},
        )

    @staticmethod
    def _render(ctx: StageContext, mapping: str | None, key: str, meta: dict[str, str | None]) -> tuple[bytes, str]:
        """The body for one target: the payload as it came, or what its mapping makes of it."""
        if mapping is None:
            return ctx.payload(), ctx.message.content_type
        compiled = ctx.rules.mappings.get(mapping)
        if compiled is None:  # the rules were reloaded without it; fix the rules, then requeue
            raise Permanent(f"mapping {mapping!r} is not in the rules in force")
        context = {"message_id": str(ctx.message.id), "idempotency_key": key,
                   "received_at": ctx.message.created_at.isoformat(), **meta}
        try:
            rendered = compiled.render(ctx.payload(), context=context)
        except MappingFailed as exc:
            raise Permanent(f"mapping {mapping} failed: {exc}", detail={"mapping": mapping}) from None
        return rendered.body, rendered.content_type
