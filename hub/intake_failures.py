"""Failed attempts to take in one FIT-Connect submission, counted across polls, pollers and restarts.

A submission that the poller cannot take in stays at the delivery service and is tried again on the next
poll. So that a submission that can never be taken in is not retried forever, silently, each failure is
counted in ``intake_failures`` (one row per submission id):

* **transient** failures (the delivery service, the network, our database or disk, our configuration:
  :class:`~hub.errors.HubError`, ``OSError``, a lost database connection) are counted and shown, never held
  against the sender: the submission waits as long as the cause lasts;
* **unexpected** failures (any other exception while fetching, verifying or storing it: a bug, or an input
  the hardening does not know yet) are counted separately; after ``fitconnect.max_intake_failures`` of them
  the channel stores the submission as refused with ``technical-error``, and the pipeline rejects it.

The row is removed once the submission is stored (or refused). ``/health/ready`` shows how many
submissions are failing and since when. Only the exception's type and code location are stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from adapters.fitconnect import SubmissionRef
from hub.errors import HubError
from hub.models import IntakeFailure, utcnow

__all__ = ["FailureCount", "IntakeFailures", "is_transient"]

log = logging.getLogger(__name__)


def is_transient(exc: BaseException) -> bool:
    """Not the submission's fault: the other side, the network, our database, disk or configuration."""
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

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, submission_id: str) -> FailureCount | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(IntakeFailure).where(IntakeFailure.submission_id == submission_id)).first()
        if row is None:
            return None
        return FailureCount(row.attempts, row.unexpected, row.first_failed_at, row.last_error)

    def record(self, ref: SubmissionRef, what: str, *, unexpected: bool) -> int:
        """Count one failure (``what`` = :func:`hub.supervisor.describe`); returns the unexpected ones so far."""
        now = utcnow()
        with self.engine.begin() as conn:
            found = conn.execute(select(IntakeFailure.unexpected).where(
                IntakeFailure.submission_id == ref.submission_id)).scalar_one_or_none()
            if found is None:
                conn.execute(insert(IntakeFailure).values(
                    submission_id=ref.submission_id, case_id=ref.case_id, destination_id=ref.destination_id,
                    attempts=1, unexpected=int(unexpected), first_failed_at=now, last_failed_at=now,
                    last_error=what[:300]))
                return int(unexpected)
            conn.execute(update(IntakeFailure).where(IntakeFailure.submission_id == ref.submission_id).values(
                attempts=IntakeFailure.attempts + 1, unexpected=IntakeFailure.unexpected + int(unexpected),
                last_failed_at=now, last_error=what[:300]))
            return int(found) + int(unexpected)

    def forget(self, submission_id: str) -> None:
        """The submission is stored: its failures no longer matter. Best effort (a left-over row is harmless:
        a stored submission is never fetched again)."""
        try:
            with self.engine.begin() as conn:
                conn.execute(delete(IntakeFailure).where(IntakeFailure.submission_id == submission_id))
        except SQLAlchemyError as exc:
            log.warning("FIT-Connect: failure count of %s not cleared: %s", submission_id, type(exc).__name__)

    def summary(self) -> tuple[int, datetime | None]:
        """How many submissions are failing, and since when the oldest one is."""
        with self.engine.connect() as conn:
            count, oldest = conn.execute(select(func.count(), func.min(IntakeFailure.first_failed_at))).one()
        return int(count), oldest
