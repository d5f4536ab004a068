"""acknowledge: answer the sender once the message is delivered. ``delivered → acknowledged``.

A channel whose senders expect a decision (:attr:`hub.ports.Channel.answers`) sends its accept here
(unless the route had it sent already after validation). A channel without answer-back (the REST intake:
the portal reads the status from the API) gets nothing; this stage only records that.
"""

from __future__ import annotations

from typing import ClassVar

from hub.pipeline.base import StageContext, StageResult
from hub.statemachine import Status


class Acknowledge:
    name: ClassVar[str] = "acknowledge"
    consumes: ClassVar[Status] = Status.DELIVERED
    produces: ClassVar[Status | None] = Status.ACKNOWLEDGED

    def run(self, ctx: StageContext) -> StageResult:
        message = ctx.message
        if not ctx.channel.answers:
            return StageResult(
                reason=f"channel {message.channel} has no answer-back; the sender reads the status from the API",
                detail={"channel": message.channel},
            )
        if (message.attributes or {}).get("answered") == "accepted":
            return StageResult(reason="accepted already, after validation (route policy)")
        answered = ctx.channel.accept(message)
        # Only once the sender was told: a failed accept must be tried again, not skipped on the retry.
        ctx.facts["attributes"] = {**(message.attributes or {}), "answered": "accepted"}
        return StageResult(reason=answered, detail={"channel": message.channel})
