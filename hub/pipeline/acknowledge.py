"""acknowledge: answer the sender once the message is delivered. ``delivered → acknowledged``.

The REST intake has no answer-back channel (the portal reads the status from the API), so for it this
stage only records that. FIT-Connect submissions get their ``accept-submission`` event token here.
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
        channel = ctx.message.channel
        return StageResult(
            reason=f"channel {channel} has no answer-back; the sender reads the status from the API",
            detail={"channel": channel},
        )
