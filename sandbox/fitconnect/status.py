"""The submission status (one enum) and its transitions: every change of status goes through :func:`check`.

incomplete → submitted → (forwarded) → accepted | rejected, as in the Submission API; the emulator never
forwards, and deletion after the retention period is not emulated.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DECIDABLE", "IllegalTransition", "Status", "check"]


class Status(StrEnum):
    INCOMPLETE = "incomplete"
    SUBMITTED = "submitted"
    FORWARDED = "forwarded"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class IllegalTransition(Exception):
    """The submission is not in a status from which the requested one can be reached."""


_ALLOWED: dict[Status, frozenset[Status]] = {
    Status.INCOMPLETE: frozenset({Status.SUBMITTED}),
    Status.SUBMITTED: frozenset({Status.FORWARDED, Status.ACCEPTED, Status.REJECTED}),
    Status.FORWARDED: frozenset({Status.ACCEPTED, Status.REJECTED}),
    Status.ACCEPTED: frozenset(),
    Status.REJECTED: frozenset(),
}

DECIDABLE = frozenset(s for s, nxt in _ALLOWED.items() if Status.ACCEPTED in nxt)
"""Statuses a subscriber may accept or reject from (and fetch the submission in)."""


def check(current: Status, new: Status) -> None:
    """Raise :class:`IllegalTransition` unless ``current → new`` is a transition of the Submission API."""
    if new not in _ALLOWED[current]:
        raise IllegalTransition(f"a submission cannot go from {current} to {new}")
