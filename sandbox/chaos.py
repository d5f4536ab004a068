"""The misbehaviour model shared by the stand-ins: told over ``POST /_behaviour`` how to fail, it decides per request.

A :class:`Behaviour` is the whole instruction; posting one replaces the previous one (fields left out take
their defaults, so ``{}`` restores good behaviour). For each request :meth:`Chaos.decide` returns one
:class:`Decision`, checked in this order:

1. **outage** (``outage_seconds``): every request in the window is refused with 503 and ``Retry-After``
   set to the rest of the window;
2. **burst** (``fail_status`` for the next ``fail_count`` requests), e.g. 503, 502 or 429;
3. **timeouts** (the next ``timeout_count`` requests are held ``timeout_seconds``, longer than the client
   waits): ``timeout_phase="after"`` processes the request first and loses the answer (the interesting case
   for idempotency: the case exists, the client does not know), ``"before"`` holds it unprocessed and then
   answers 504;
4. **faults** (the next ``fault_count`` requests get a ``client`` or ``server`` fault: a SOAP fault from the
   vehicle registry, a 400/500 problem from the REST stand-ins);
5. **random errors** (``error_rate`` of the requests answer ``error_status``; ``seed`` makes the sequence
   reproducible);
6. otherwise the request is processed and answered after ``delay_seconds`` plus up to ``jitter_seconds``.

Refusals (1, 2, 5) are answered at once and never reach the service; faults and normal answers wait for
the latency. A hold ends early when the client goes away, so a stopped test never waits for a stand-in.
"""

from __future__ import annotations

import asyncio
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Behaviour", "Chaos", "Decision", "Drop", "Fault", "Proceed", "Refuse", "hold", "install", "refusal_headers"]

FaultKind = Literal["client", "server"]
_POLL_SECONDS = 0.05


class Behaviour(BaseModel):
    """How a stand-in should misbehave from now on. All fields are optional; the defaults are good behaviour."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    delay_seconds: float = Field(0.0, ge=0, le=600, description="Latency before each answer (after processing).")
    jitter_seconds: float = Field(0.0, ge=0, le=600, description="Extra random latency, 0 to this many seconds.")
    fail_status: int | None = Field(None, ge=400, le=599, description="Status for the next `fail_count` requests.")
    fail_count: int = Field(0, ge=0, description="How many of the next requests get `fail_status`.")
    error_rate: float = Field(0.0, ge=0, le=1, description="Share of requests answered with `error_status`.")
    error_status: int = Field(500, ge=400, le=599, description="Status of the random errors.")
    seed: int | None = Field(None, description="Seed for the random errors and jitter (reproducible runs).")
    timeout_count: int = Field(0, ge=0, description="How many of the next requests are held `timeout_seconds`.")
    timeout_seconds: float = Field(60.0, gt=0, le=3600, description="How long a timed-out request is held.")
    timeout_phase: Literal["before", "after"] = Field(
        "after", description="`after`: processed, answer lost; `before`: not processed, then 504.")
    fault_count: int = Field(0, ge=0, description="How many of the next requests get a fault.")
    fault: FaultKind = Field("server", description="`client` (the request's fault) or `server` (ours).")
    outage_seconds: float = Field(0.0, ge=0, le=86_400, description="Refuse everything with 503 for this long.")
    retry_after_seconds: int | None = Field(
        None, ge=0, description="Retry-After on refusals (default: 1 for 429 and 503, none otherwise).")


@dataclass(frozen=True)
class Refuse:
    """Answer ``status`` at once, without processing."""

    status: int
    retry_after: int | None
    reason: str


@dataclass(frozen=True)
class Drop:
    """Hold the request unprocessed for ``seconds``, then answer 504 (a gateway that gave up)."""

    seconds: float


@dataclass(frozen=True)
class Fault:
    """Answer a fault of ``kind`` after ``delay`` seconds, without processing."""

    kind: FaultKind
    delay: float


@dataclass(frozen=True)
class Proceed:
    """Process the request, then hold the answer ``delay`` seconds (latency, or a timeout after processing)."""

    delay: float
    timeout: bool = False


Decision = Refuse | Drop | Fault | Proceed


class Chaos:
    """The current behaviour and what is left of its bursts; thread-safe, one per stand-in."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.configure(Behaviour())

    def configure(self, behaviour: Behaviour) -> None:
        with self._lock:
            self._behaviour = behaviour
            self._random = random.Random(behaviour.seed)
            self._fails_left = behaviour.fail_count if behaviour.fail_status else 0
            self._timeouts_left = behaviour.timeout_count
            self._faults_left = behaviour.fault_count
            self._outage_until = self._clock() + behaviour.outage_seconds if behaviour.outage_seconds else None
            self._refused = 0

    @property
    def behaviour(self) -> Behaviour:
        return self._behaviour

    def decide(self) -> Decision:
        with self._lock:
            b = self._behaviour
            now = self._clock()
            if self._outage_until is not None and now < self._outage_until:
                self._refused += 1
                return Refuse(503, math.ceil(self._outage_until - now), "outage")
            if self._fails_left > 0 and b.fail_status is not None:
                self._fails_left -= 1
                self._refused += 1
                return Refuse(b.fail_status, self._retry_after(b.fail_status), "burst")
            if self._timeouts_left > 0:
                self._timeouts_left -= 1
                if b.timeout_phase == "before":
                    return Drop(b.timeout_seconds)
                return Proceed(b.timeout_seconds, timeout=True)
            latency = b.delay_seconds + (self._random.uniform(0, b.jitter_seconds) if b.jitter_seconds else 0.0)
            if self._faults_left > 0:
                self._faults_left -= 1
                return Fault(b.fault, latency)
            if b.error_rate and self._random.random() < b.error_rate:
                self._refused += 1
                return Refuse(b.error_status, self._retry_after(b.error_status), "random error")
            return Proceed(latency)

    def state(self) -> dict[str, Any]:
        """The behaviour as posted, plus what is left of it (for ``GET /_behaviour``)."""
        with self._lock:
            outage_left = max(0.0, self._outage_until - self._clock()) if self._outage_until is not None else 0.0
            return {
                **self._behaviour.model_dump(),
                "remaining": {
                    "fail_count": self._fails_left,
                    "timeout_count": self._timeouts_left,
                    "fault_count": self._faults_left,
                    "outage_seconds": round(outage_left, 3),
                },
                "refused": self._refused,
            }

    def _retry_after(self, status: int) -> int | None:
        if self._behaviour.retry_after_seconds is not None:
            return self._behaviour.retry_after_seconds
        return 1 if status in (429, 503) else None


async def hold(request: Request, seconds: float) -> bool:
    """Wait ``seconds``; returns ``False`` as soon as the client has gone away (its answer would be lost)."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        await asyncio.sleep(min(_POLL_SECONDS, left))
        if await request.is_disconnected():
            return False
    return True


def refusal_headers(decision: Refuse) -> dict[str, str]:
    return {"Retry-After": str(decision.retry_after)} if decision.retry_after is not None else {}


def install(app: FastAPI, chaos: Chaos) -> None:
    """Add ``GET|POST /_behaviour`` to a stand-in (hidden from its OpenAPI description)."""

    @app.get("/_behaviour", include_in_schema=False)
    async def get_behaviour() -> dict[str, Any]:
        return chaos.state()

    @app.post("/_behaviour", include_in_schema=False)
    async def set_behaviour(new: Behaviour) -> dict[str, Any]:
        chaos.configure(new)
        return chaos.state()
