"""hub.metrics: counting never fails the caller; label children are looked up once."""

from __future__ import annotations

import logging

import pytest

from hub import metrics


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
