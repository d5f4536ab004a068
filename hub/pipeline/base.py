"""What a pipeline stage is, and what it is given.

A stage is a small object with ``name``, ``consumes`` (the status it runs in), ``produces`` (the status
the message moves to when it succeeds, or ``None`` for a check that only leaves a note) and one method,
``run(ctx) -> StageResult``. Failures are raised as :class:`~hub.errors.Retriable`,
:class:`~hub.errors.Permanent` or :class:`~hub.errors.Invalid`; the runner turns them into
``retry_wait``, ``dead`` or ``rejected``. Stages never write to the database themselves: what must be
stored goes back in the :class:`StageResult`, or through the narrow callbacks on :class:`StageContext`.
What only the message's channel knows (is it processable at all, does its sender expect an answer, the
answer itself) the stages ask :attr:`StageContext.channel` (:class:`hub.ports.Channel`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from hub.statemachine import Status

if TYPE_CHECKING:
    from lxml import etree

    from hub.errors import HubError
    from hub.models import Delivery, Message, MessagePart
    from hub.ports import Channel, Deliverer, DeliveryResult
    from hub.routing import RuleSet
    from hub.settings import Settings

__all__ = ["Stage", "StageContext", "StageResult"]


@dataclass(frozen=True)
class StageResult:
    reason: str
    detail: dict[str, Any] | None = None
    fields: dict[str, Any] | None = None  # message columns to set with the transition
    deliveries: tuple[tuple[str, str | None], ...] = ()  # (target, mapping) records to create with the transition


@dataclass
class StageContext:
    """Everything a stage may read about one message, plus callbacks for per-target bookkeeping."""

    message: Message
    config: Settings
    rules: RuleSet  # the rules in force when this run started; a reload does not change them mid-message
    load_parts: Callable[[], list[MessagePart]]
    load_deliveries: Callable[[], list[Delivery]]
    record_delivery: Callable[[Delivery, DeliveryResult | None, HubError | None], None]
    adapter: Callable[[str], Deliverer]
    keep_lease: Callable[[], None]
    channel: Channel  # the message's channel: what only the protocol knows
    cache: dict[str, Any] = field(default_factory=dict)  # shared between the stages of one run
    facts: dict[str, Any] = field(default_factory=dict)  # message columns learnt; stored with the next transition

    def parts(self) -> list[MessagePart]:
        if "parts" not in self.cache:
            self.cache["parts"] = self.load_parts()
        parts: list[MessagePart] = self.cache["parts"]
        return parts

    def payload(self) -> bytes:
        body = self.parts()[0].body
        assert body is not None, "the payload is always stored in the database"
        return body

    def xml_root(self) -> etree._Element | None:
        """The payload's tree when it is XML (parsed by verify, or now when a run resumes later)."""
        if "xml_root" not in self.cache:
            from hub.pipeline.verify import is_xml
            from hub.xmlsafe import parse

            body = self.payload()
            limits = self.config.limits.xml_limits(max(len(body), 1))  # the size was the intake door's to check
            self.cache["xml_root"] = parse(body, limits) if is_xml(self.message.content_type) else None
        root: etree._Element | None = self.cache["xml_root"]
        return root


class Stage(Protocol):
    name: ClassVar[str]
    consumes: ClassVar[Status]
    produces: ClassVar[Status | None]

    def run(self, ctx: StageContext) -> StageResult: ...
