"""The outbound adapter interface: one method, typed in and out, mapped errors.

An adapter takes a rendered message (:class:`DeliveryRequest`) and returns a :class:`DeliveryResult`, or
raises :class:`~hub.errors.Retriable`, :class:`~hub.errors.Permanent` or :class:`~hub.errors.Invalid`.
It never touches the database and lets no library exception escape. Each adapter class declares its
``name`` and a pydantic ``Config`` model (secret fields as ``SecretStr``); the registry in
:mod:`adapters` is the one place that lists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

__all__ = ["AdapterConfig", "Deliverer", "DeliveryRequest", "DeliveryResult", "OutboundAdapter"]


class AdapterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class DeliveryRequest:
    message_id: str
    target: str
    idempotency_key: str
    body: bytes
    content_type: str
    meta: dict[str, str | None] = field(default_factory=dict)  # tenant, standard, message_type, ...


@dataclass(frozen=True)
class DeliveryResult:
    reference: str | None = None  # the target's id for the case, when it gives one
    status_code: int | None = None
    excerpt: str = ""  # the start of the target's answer, for the audit trail
    detail: dict[str, Any] = field(default_factory=dict)

    def as_event(self) -> dict[str, Any]:
        return {"reference": self.reference, "status_code": self.status_code, "excerpt": self.excerpt, **self.detail}


class Deliverer(Protocol):
    """What the deliver stage needs: an adapter, or an adapter behind the hub's target gate."""

    def deliver(self, request: DeliveryRequest) -> DeliveryResult: ...


class OutboundAdapter(Deliverer, Protocol):
    name: ClassVar[str]
    Config: ClassVar[type[AdapterConfig]]
