"""Failed attempts of a polling channel to take in one message, counted across polls, pollers and restarts.

A message that a channel's poller cannot take in stays where it is (at the delivery service, in the
mailbox) and is tried again on the next poll. So that a message that can never be taken in is not retried
forever, silently, each failure is counted in ``intake_failures`` (one row per channel and external id):

* **transient** failures (the other side, the network, our database or disk, our configuration:
  :class:`~hub.errors.HubError`, ``OSError``, a lost database connection) are counted and shown, never held
  against the sender: the message waits as long as the cause lasts;
* **unexpected** failures (any other exception while fetching, verifying or storing it: a bug, or an input
  the hardening does not know yet) are counted separately; after the channel's limit of them the channel
  stores the message as refused, and the pipeline rejects it.

The row is removed once the message is stored (or refused). ``/health/ready`` shows how many messages are
failing and since when. Only the exception's type and code location are stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from hub.errors import HubError
from hub.models import IntakeFailure, utcnow

__all__ = ["FailureCount", "IntakeFailures", "failing", "is_transient"]

log = logging.getLogger(__name__)


def is_transient(exc: BaseException) -> bool:
    """Not the message's fault: the other side, the network, our database, disk or configuration."""
    if isinstance(exc, HubError | OSError | OperationalError | InterfaceError | PoolTimeout):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


@dataclass(frozen=True)
class FailureCount:
    attempts: int
    unexpected: int
    first_failed_at: datetime
    last_error: str


class IntakeFailures:
    """The ``intake_failures`` table. Every method is one short transaction of its own."""

    def __init__(self, engine: Engine, channel: str) -> None:
        self.engine = engine
        self.channel = channel

    def _this(self, external_id: str) -> Any:
        return (IntakeFailure.channel == self.channel) & (IntakeFailure.external_id == external_id)

    def get(self, external_id: str) -> FailureCount | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(IntakeFailure).where(self._this(external_id))).first()
        if row is None:
            return None
        return FailureCount(row.attempts, row.unexpected, row.first_failed_at, row.last_error)

    def record(self, external_id: str, *, case_id: str, source: str, what: str, unexpected: bool) -> int:
        """Count one failure (``what`` = :func:`hub.supervisor.describe`); returns the unexpected ones so far."""
        now = utcnow()
        with self.engine.begin() as conn:
            found = conn.execute(select(IntakeFailure.unexpected).where(
                self._this(external_id))).scalar_one_or_none()
            if found is None:
                conn.execute(insert(IntakeFailure).values(
                    channel=self.channel, external_id=external_id, case_id=case_id, source=source,
                    attempts=1, unexpected=int(unexpected), first_failed_at=now, last_failed_at=now,
                    last_error=what[:300]))
                return int(unexpected)
            conn.execute(update(IntakeFailure).where(self._this(external_id)).values(
                attempts=IntakeFailure.attempts + 1, unexpected=IntakeFailure.unexpected + int(unexpected),
                last_failed_at=now, last_error=what[:300]))
            return int(found) + int(unexpected)

    def forget(self, external_id: str) -> None:
        """The message is stored: its failures no longer matter. Best effort (a left-over row is harmless:
        a stored message is never fetched again)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(IntakeFailure).where(self._this(external_id)))
        except SQLAlchemyError as exc:
            log.warning("%s: failure count of %s not cleared: %s", self.channel, external_id, type(exc).__name__)


def failing(conn: Connection, channel: str) -> tuple[int, datetime | None]:
    """How many of ``channel``'s messages are failing to be taken in, and since when the oldest one is."""
    count, oldest = conn.execute(select(func.count(), func.min(IntakeFailure.first_failed_at))
                                 .where(IntakeFailure.channel == channel)).one()
    return int(count), oldest
