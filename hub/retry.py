"""Retry decisions. A retry is data: the policy returns *when*, the state machine stores it."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from hub.settings import RetryConfig

__all__ = ["RetryDecision", "decide"]


@dataclass(frozen=True)
class RetryDecision:
    give_up: bool
    attempts: int  # failed attempts so far, including this one
    retry_at: datetime | None


def decide(
    policy: RetryConfig,
    failed_attempts_before: int,
    now: datetime,
    retry_after: float | None = None,
    rand: float | None = None,
) -> RetryDecision:
    """Decide after a transient failure: retry at some time, or give up when the budget is spent.

    ``retry_after`` (seconds, from the other side) is a lower bound on the delay.
    """
    attempts = failed_attempts_before + 1
    if attempts >= policy.max_attempts:
        return RetryDecision(give_up=True, attempts=attempts, retry_at=None)
    delay = policy.delay(attempts, random.random() if rand is None else rand)
    if retry_after is not None:
        delay = max(delay, timedelta(seconds=retry_after))
    return RetryDecision(give_up=False, attempts=attempts, retry_at=now + delay)
