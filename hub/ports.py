"""The core's two interfaces to the outside: outbound adapters and inbound channels.

The core (pipeline, runner, worker) talks to the world only through these; the packages that implement
them (``adapters/``, ``channels/``) depend on the core, never the other way round, and the composition
root (:mod:`xhub.registry`) is the one place that knows which implementations exist.

**Outbound adapter.** An adapter takes a rendered message (:class:`DeliveryRequest`) and returns a
:class:`DeliveryResult`, or raises :class:`~hub.errors.Retriable`, :class:`~hub.errors.Permanent` or
:class:`~hub.errors.Invalid`. It never touches the database and lets no library exception escape. Each
adapter class declares its ``name`` and a pydantic ``Config`` model (secret fields as ``SecretStr``). The
runner gets adapters from an :data:`AdapterFactory` that the composition root hands it.

**Inbound channel.** A channel takes messages in (a router or a poller that calls
:func:`hub.store.accept`) and may owe its sender an answer. The pipeline asks it, through
:class:`Channel`, for what only the protocol knows: whether a message it stored can be processed at all
(:meth:`Channel.verify`), whether its senders expect a decision (:attr:`Channel.answers`), and the
accept or reject answer itself (with the protocol's problem types). :class:`Channels` finds the channel of a
message by name; a channel nobody registered is a :class:`StatusOnly` one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from hub.errors import HubError, Permanent

if TYPE_CHECKING:
    from hub.models import Message
    from hub.settings import TargetConfig

__all__ = ["AdapterConfig", "AdapterConfigError", "AdapterFactory", "Channel", "Channels", "Deliverer",
           "DeliveryRequest", "DeliveryResult", "OutboundAdapter", "StatusOnly"]


# --------------------------------------------------------------------------------------------------
# Outbound


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


class AdapterConfigError(ValueError):
    """A target's settings do not fit its adapter (or it names no known adapter)."""


#: ``(target name, its configuration) → adapter``; raises :class:`AdapterConfigError`.
AdapterFactory = Callable[[str, "TargetConfig"], OutboundAdapter]


# --------------------------------------------------------------------------------------------------
# Inbound


class Channel(Protocol):
    """An inbound channel, as the pipeline sees it. ``name`` is the ``channel`` of the messages it stores."""

    @property
    def name(self) -> str: ...

    @property
    def answers(self) -> bool:
        """Whether this channel's senders expect an accept or reject decision from the hub."""
        ...

    def verify(self, message: Message) -> None:
        """Raise :class:`~hub.errors.Invalid` when the channel already found at intake that ``message`` can
        never be processed (it stored it only so that the pipeline rejects it, with the channel's reasons)."""

    def accept(self, message: Message) -> str:
        """Tell the sender the message is accepted; returns what was done, for the trail. Idempotent.
        Raises :class:`~hub.errors.Retriable` or :class:`~hub.errors.Permanent` when it cannot."""
        ...

    def reject(self, message: Message, error: HubError, stage: str) -> str:
        """Tell the sender why ``stage`` rejected the message (``error``), in the protocol's own terms."""
        ...

    def close(self) -> None:
        """Release what it holds (HTTP connections); called by whoever made it, when the process ends."""


@dataclass(frozen=True)
class StatusOnly:
    """A channel without answer-back: its senders read the status from the API (the REST intake)."""

    name: str
    answers: ClassVar[bool] = False

    def verify(self, message: Message) -> None:
        return None

    def accept(self, message: Message) -> str:
        raise Permanent(f"channel {self.name} has no answer-back")

    def reject(self, message: Message, error: HubError, stage: str) -> str:
        raise Permanent(f"channel {self.name} has no answer-back")

    def close(self) -> None:
        return None


class Channels:
    """The channels the pipeline knows, by name (built once by the composition root)."""

    def __init__(self, channels: Iterable[Channel] = ()) -> None:
        self._by_name = {c.name: c for c in channels}

    def __getitem__(self, name: str) -> Channel:
        found = self._by_name.get(name)
        return found if found is not None else StatusOnly(name)

    def close(self) -> None:
        for channel in self._by_name.values():
            channel.close()
