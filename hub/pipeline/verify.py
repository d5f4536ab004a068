"""verify: the channel can process the message, the stored bytes are intact and parse safely.

Runs in ``received``; leaves a note. A message its channel stored only to have it rejected (it found at
intake that it can never be processed) is rejected here, with the channel's reasons.
"""

from __future__ import annotations

import hashlib
from typing import ClassVar

from hub.errors import Invalid, Permanent
from hub.jsonsafe import JsonRejected, loads
from hub.pipeline.base import StageContext, StageResult
from hub.statemachine import Status
from hub.xmlsafe import XmlRejected, parse


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def is_xml(content_type: str) -> bool:
    base = media_type(content_type)
    return base in {"application/xml", "text/xml"} or base.endswith("+xml")


def is_json(content_type: str) -> bool:
    base = media_type(content_type)
    return base == "application/json" or base.endswith("+json")


class Verify:
    name: ClassVar[str] = "verify"
    consumes: ClassVar[Status] = Status.RECEIVED
    produces: ClassVar[Status | None] = None

    def run(self, ctx: StageContext) -> StageResult:
        ctx.channel.verify(ctx.message)
        body = ctx.payload()
        digest = hashlib.sha256(body).hexdigest()
        if digest != ctx.message.payload_sha256:
            # The store itself is damaged: a human must look; never reject the sender for it.
            raise Permanent(
                "stored payload does not match its SHA-256 digest",
                detail={"expected": ctx.message.payload_sha256, "actual": digest},
            )
        if is_xml(ctx.message.content_type):
            try:
                ctx.cache["xml_root"] = parse(body, ctx.config.limits.xml_limits(max(len(body), 1)))
            except XmlRejected as exc:
                raise Invalid(f"{exc.title}: {exc.detail}", detail={"line": exc.line}) from None
            kind = "well-formed XML"
        else:
            # The limits of the doors (``[limits]``), so that what an intake accepted passes here too. The size
            # was the door's to check (each has its own); here it bounds nothing the door did not.
            limits = ctx.config.limits.json_limits(max(len(body), 1))
            try:
                loads(body, limits)
            except JsonRejected as exc:
                raise Invalid(f"{exc.title}: {exc.detail}", detail={"line": exc.line, "problem": exc.slug}) from None
            kind = "valid JSON"
        return StageResult(reason=f"payload intact (sha256 matches) and {kind}", detail={"sha256": digest})
