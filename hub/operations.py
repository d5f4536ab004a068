"""What an operator can do to a message (CLI and API call these)."""

from __future__ import annotations

import uuid

from sqlalchemy import Engine

from hub.models import utcnow
from hub.statemachine import Status, Transition, transition

__all__ = ["requeue"]


def requeue(engine: Engine, message_id: uuid.UUID, *, operator: str, reason: str | None = None) -> None:
    """Give a ``dead`` message a fresh retry budget; it resumes at the stage where it stopped.

    Raises :class:`~hub.statemachine.IllegalTransition` when the message is not ``dead``.
    """
    with engine.begin() as conn:
        transition(
            conn,
            message_id,
            Status.RETRY_WAIT,
            Transition(
                reason=f"requeued by operator {operator}" + (f": {reason}" if reason else ""),
                attempts=0,
                next_attempt_at=utcnow(),
                release_lease=True,
            ),
            actor=f"operator:{operator}",
            from_statuses={Status.DEAD},
        )
