"""What the API's own routers share: the app's state (one :class:`ApiState`, kept on ``app.state``) as a
FastAPI dependency, and the checks of who may see and do what."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine

from channels.rest.router import Waker
from hub.auth import Principal
from hub.models import Message
from hub.problems import Problem
from hub.readiness import Health
from hub.routing import RuleHolder
from xhub.config import HubConfig

__all__ = ["ApiState", "State", "operator_only", "visible"]


@dataclass
class ApiState:
    config: HubConfig
    engine: Engine
    rules: RuleHolder  # shared with an embedded worker: one reload serves both
    wake: Waker  # after a requeue
    health: Health

    @property
    def base(self) -> str:
        """``api.public_url`` or empty (links are then relative): never the request's Host header."""
        return self.config.api.public_url or ""


def _state(request: Request) -> ApiState:
    found: ApiState = request.app.state.api
    return found


State = Annotated[ApiState, Depends(_state)]


def operator_only(who: Principal, what: str) -> None:
    if who.kind != "operator":
        raise Problem(403, "not-an-operator", "Operators only", f"{what} needs an operator token")


def visible(message: Message | None, who: Principal, message_id: uuid.UUID) -> Message:
    """The message, if ``who`` may see it (senders see their own only); 404 otherwise, never 403."""
    if message is None or (who.kind == "sender" and (message.tenant, message.sender) != (who.tenant, who.name)):
        raise Problem(404, "message-not-found", "Message not found", f"no message {message_id} is visible to you")
    return message
