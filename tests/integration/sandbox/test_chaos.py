"""The shared misbehaviour model: decisions in order, reproducible randomness, holds that end with the client."""

from __future__ import annotations

import httpx
import pytest

from sandbox.chaos import Behaviour, Chaos, Drop, Fault, Proceed, Refuse
from sandbox.recorder import create_recorder
from tests.support import running, wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_good_behaviour_by_default() -> None:
    assert Chaos().decide() == Proceed(0.0)


def test_outage_refuses_with_the_rest_of_the_window_then_ends() -> None:
    clock = Clock()
    chaos = Chaos(clock)
    chaos.configure(Behaviour(outage_seconds=10))
    assert chaos.decide() == Refuse(503, 10, "outage")
    clock.now += 7.5
    assert chaos.decide() == Refuse(503, 3, "outage")
    clock.now += 3
    assert chaos.decide() == Proceed(0.0)
    assert chaos.state()["refused"] == 2


def test_bursts_timeouts_and_faults_are_counted_down_in_order() -> None:
    chaos = Chaos()
    chaos.configure(Behaviour(fail_status=502, fail_count=1, timeout_count=1, timeout_seconds=9,
                              fault_count=1, fault="client", delay_seconds=0.5))
    assert chaos.decide() == Refuse(502, None, "burst")
    assert chaos.decide() == Proceed(9, timeout=True)
    assert chaos.decide() == Fault("client", 0.5)
    assert chaos.decide() == Proceed(0.5)
    assert chaos.state()["remaining"] == {"fail_count": 0, "timeout_count": 0, "fault_count": 0,
                                          "outage_seconds": 0.0}


def test_a_timeout_before_processing_is_a_drop() -> None:
    chaos = Chaos()
    chaos.configure(Behaviour(timeout_count=1, timeout_seconds=3, timeout_phase="before"))
    assert chaos.decide() == Drop(3)


def test_retry_after_defaults_to_one_second_for_429_and_503() -> None:
    chaos = Chaos()
    chaos.configure(Behaviour(fail_status=429, fail_count=1))
    assert chaos.decide() == Refuse(429, 1, "burst")
    chaos.configure(Behaviour(fail_status=429, fail_count=1, retry_after_seconds=30))
    assert chaos.decide() == Refuse(429, 30, "burst")


def test_random_errors_are_reproducible_with_a_seed() -> None:
    def run() -> list[bool]:
        chaos = Chaos()
        chaos.configure(Behaviour(error_rate=0.3, error_status=500, seed=42))
        return [isinstance(chaos.decide(), Refuse) for _ in range(200)]

    first = run()
    assert first == run()
    assert 30 <= sum(first) <= 90


def test_posting_a_behaviour_replaces_the_previous_one_and_refuses_unknown_knobs() -> None:
    with running(create_recorder()) as url, httpx.Client(base_url=url) as client:
        client.post("/_behaviour", json={"fail_status": 503, "fail_count": 5}).raise_for_status()
        state = client.post("/_behaviour", json={"delay_seconds": 0}).json()
        assert state["remaining"]["fail_count"] == 0
        assert client.post("/_behaviour", json={"latency": 3}).status_code == 422
        assert client.get("/_behaviour").json()["delay_seconds"] == 0


@pytest.mark.parametrize("phase", ["after", "before"])
def test_a_held_request_is_released_when_the_client_gives_up(phase: str) -> None:
    with running(create_recorder()) as url, httpx.Client(base_url=url) as client:
        client.post("/_behaviour", json={"timeout_count": 1, "timeout_seconds": 300, "timeout_phase": phase})
        with pytest.raises(httpx.ReadTimeout):
            client.post("/inbox/x", content=b"<a/>", headers={"Idempotency-Key": "k"}, timeout=0.3)
        wait_for(lambda: client.get("/_received").json()["in_flight"] == 0, timeout=5)
        items = client.get("/_received").json()["items"]
        # "after": processed but the answer was lost; "before": never reached the sink.
        assert [i["completed"] for i in items] == ([False] if phase == "after" else [])
