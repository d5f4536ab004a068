"""acknowledge: answer the sender once the message is delivered. ``delivered → acknowledged``.

FIT-Connect submissions get their signed ``accept-submission`` event token here (unless their route sent it
already after validation). The REST intake has no answer-back channel: the portal reads the status from the
API, and this stage only records that.
"""

from __future__ import annotations

from typing import ClassVar

from hub.errors import Permanent
from hub.pipeline.base import StageContext, StageResult
from hub.statemachine import Status

NEEDS_ANSWER = {"fitconnect"}


class Acknowledge:
    name: ClassVar[str] = "acknowledge"
    consumes: ClassVar[Status] = Status.DELIVERED
    produces: ClassVar[Status | None] = Status.ACKNOWLEDGED

    def run(self, ctx: StageContext) -> StageResult:
        message = ctx.message
        if message.channel not in NEEDS_ANSWER:
            return StageResult(
                reason=f"channel {message.channel} has no answer-back; the sender reads the status from the API",
                detail={"channel": message.channel},
            )
        if (message.attributes or {}).get("answered") == "accepted":
            return StageResult(reason="accepted already, after validation (route policy)")
        if ctx.answer is None:
            raise Permanent(f"channel {message.channel} needs an answer, but it is not configured")
        ctx.facts["attributes"] = {**(message.attributes or {}), "answered": "accepted"}
        return StageResult(reason=ctx.answer.accept(message), detail={"channel": message.channel})
