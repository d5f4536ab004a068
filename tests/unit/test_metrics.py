"""hub.metrics: counting never fails the caller; label children are looked up once. hub.watch: a failing
watch warns."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, cast

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from hub import metrics
from hub.models import utcnow
from hub.readiness import Component
from hub.watch import Report, Watches


class _Full:
    def inc(self, amount: float = 1) -> None:
        raise OSError(28, "No space left on device")


def test_a_count_that_cannot_be_written_is_logged_once_and_never_raises(caplog: pytest.LogCaptureFixture,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    s = metrics.series()
    monkeypatch.setattr(metrics, "_failed", False)
    monkeypatch.setitem(s._children, (id(s.messages), ("received", "full", "rest", "")), _Full())
    with caplog.at_level(logging.ERROR, logger="hub.metrics"):
        metrics.record_status("received", tenant="full", channel="rest", route=None)
        metrics.record_status("received", tenant="full", channel="rest", route=None)
    assert [r.getMessage() for r in caplog.records] == [
        "metrics: counting failed (OSError); counts of this process are incomplete from now on"]


def test_children_are_reused() -> None:
    s = metrics.series()
    assert s.child(s.polls, "x", "ok") is s.child(s.polls, "x", "ok") is s.polls.labels("x", "ok")


class _Broken:
    component = "broken"

    def check(self, engine: Any, now: datetime) -> Report:
        raise OperationalError("SELECT 1", {}, Exception("down"))


def test_a_failing_watch_warns_and_is_not_asked_again_within_its_ttl() -> None:
    calls = []

    class Counting(_Broken):
        def check(self, engine: Any, now: datetime) -> Report:
            calls.append(now)
            return super().check(engine, now)

    watches = Watches(cast(Engine, None), [Counting()], ttl=60)
    first = watches.components(utcnow())
    assert first == [("broken", Component("warning", "the check failed (OperationalError)"))]
    assert first[0][1].ok  # a warning never takes the hub out of its load balancer
    watches.components(utcnow())
    assert len(calls) == 1
