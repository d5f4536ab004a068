"""validate: detect what the message is and check it. ``received → validated``."""

from __future__ import annotations

from typing import ClassVar

from lxml import etree

from hub.pipeline.base import StageContext, StageResult
from hub.statemachine import Status


class Validate:
    name: ClassVar[str] = "validate"
    consumes: ClassVar[Status] = Status.RECEIVED
    produces: ClassVar[Status | None] = Status.VALIDATED

    def run(self, ctx: StageContext) -> StageResult:
        root = ctx.cache.get("xml_root")
        if root is None:
            return StageResult(reason="not XML; nothing to validate", detail={"verdict": "not_checked"})
        qname = etree.QName(root)
        fields = {"standard": qname.namespace, "message_type": qname.localname}
        return StageResult(
            reason=f"well-formed {qname.localname}",
            detail={"verdict": "not_checked", "root": qname.text},
            fields=fields,
        )
