"""Retry decisions are data: when, or give up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hub.retry import decide
from hub.settings import RetryConfig

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_exponential_backoff_with_bounded_jitter() -> None:
    policy = RetryConfig(max_attempts=10, base_delay_seconds=10, max_delay_seconds=100, jitter=0.2)
    delays = [decide(policy, n, NOW, rand=0.5).retry_at - NOW for n in range(5)]  # type: ignore[operator]
    assert delays == [timedelta(seconds=s) for s in (10, 20, 40, 80, 100)]
    low = decide(policy, 0, NOW, rand=0.0).retry_at
    high = decide(policy, 0, NOW, rand=0.999999).retry_at
    assert low == NOW + timedelta(seconds=8) and high is not None and high < NOW + timedelta(seconds=12)


def test_budget_and_retry_after() -> None:
    policy = RetryConfig(max_attempts=3, base_delay_seconds=1, jitter=0)
    assert not decide(policy, 1, NOW).give_up
    spent = decide(policy, 2, NOW)
    assert spent.give_up and spent.attempts == 3 and spent.retry_at is None
    assert decide(policy, 0, NOW, retry_after=30).retry_at == NOW + timedelta(seconds=30)
