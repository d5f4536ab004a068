"""``POST /api/v1/messages``: the REST intake for portals.

The handler is async; database work runs on the intake's group commit thread (:class:`hub.store.GroupCommit`:
the requests that arrive together are stored in one transaction) and parsing on the intake's parse gate,
never on the event loop. It answers ``202`` only after the message and its first event are committed, and
always once they are (from what was written, without reading it back). The door's checks, limits and memory
budget are in :mod:`channels.rest.door` and docs/security/intake.md.

The composition root mounts :data:`router` with :func:`mount`, which keeps the route's :class:`Intake` on
the app; :meth:`Intake.close` ends the parse threads when the app stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from channels.rest.budget import MemoryBudget, ParseGate
from channels.rest.door import check_payload, intake_headers, read_body
from hub import metrics, store, tracing
from hub.auth import Auth, Principal
from hub.models import Message
from hub.problems import Problem, database_unavailable, is_database_unavailable, no_unknown_query, safe_description
from hub.settings import Settings

__all__ = ["CHANNEL", "Intake", "Waker", "mount", "router"]

log = logging.getLogger(__name__)

CHANNEL = "rest"


@dataclass
class Waker:
    """Tells the embedded worker there is new work (``None``: no worker in this process)."""

    on_accept: Callable[[], None] | None = None

    def __call__(self) -> None:
        """The message is committed, so nothing here may turn the answer into an error."""
        if self.on_accept is None:
            return
        try:
            self.on_accept()
        except Exception as exc:  # the worker polls anyway; the sender must still hear "accepted"
            log.error("could not wake the worker after an accept: %s", safe_description(exc))


@dataclass
class Intake:
    """What the intake route needs: the database, the settings, the memory budget and parse gate, the waker."""

    engine: Engine
    config: Settings
    wake: Waker = field(default_factory=Waker)
    budget: MemoryBudget = field(init=False)
    gate: ParseGate = field(init=False)
    commits: store.GroupCommit = field(init=False)  # concurrent requests are stored in one transaction

    def __post_init__(self) -> None:
        self.budget = MemoryBudget(self.config.api.intake_memory_bytes)
        self.gate = ParseGate(self.config.api.intake_parse_threads)
        self.commits = store.GroupCommit(self.engine, max_group=self.config.api.group_commit_max,
                                         wait_seconds=self.config.api.group_commit_wait_ms / 1000)

    def close(self) -> None:
        self.gate.close()
        self.commits.close()


def mount(app: FastAPI, intake: Intake) -> None:
    app.state.rest_intake = intake
    app.state.intake_budget = intake.budget
    app.include_router(router)


def _intake(request: Request) -> Intake:
    found: Intake = request.app.state.rest_intake
    return found


router = APIRouter(tags=["Intake"])


@router.post("/api/v1/messages", status_code=202, responses={200: {}, 202: {}})
async def submit(request: Request, who: Auth, intake: Annotated[Intake, Depends(_intake)]) -> JSONResponse:
    """Accept one message (XML or JSON). 202 when stored, 200 when an Idempotency-Key replays one."""
    if who.kind != "sender":
        raise Problem(403, "not-a-sender", "Not a sender", "only sender tokens can submit messages")
    no_unknown_query(request)
    api, limits = intake.config.api, intake.config.limits
    headers = intake_headers(request, api.max_body_bytes)
    body, reservation = await read_body(request, headers, api.max_body_bytes, intake.budget, api.retry_after_seconds)
    with reservation:
        await intake.gate.run(len(body), check_payload, body, headers.is_xml, limits.xml_limits(api.max_body_bytes),
                              limits.json_limits(api.max_body_bytes))
        with tracing.span("intake", channel=CHANNEL, tenant=who.tenant) as trace:
            new = store.NewMessage(
                tenant=who.tenant or "",
                channel=CHANNEL,
                sender=who.name,
                parts=[store.Part("payload", headers.media_type, body)],
                idempotency_key=headers.idempotency_key,
                sender_reference=headers.sender_reference,
                attributes={**headers.attributes, **trace},
            )
            del body
            message, created = await _accept(intake.commits, new, who, api.retry_after_seconds)
            del new
    if created:
        metrics.record_status(message.status, tenant=message.tenant, channel=CHANNEL, route=None)
        intake.wake()
    # Links are built from configuration only: a Host header is the client's word, not the hub's address.
    location = f"{api.public_url or ''}/api/v1/messages/{message.id}"
    answer = {"id": str(message.id), "status": message.status, "links": {"self": location}}
    replay = {} if created else {"Idempotent-Replayed": "true"}
    return JSONResponse(answer, status_code=202 if created else 200, headers={"Location": location, **replay})


async def _accept(commits: store.GroupCommit, new: store.NewMessage, who: Principal,
                  retry_after: int) -> tuple[Message, bool]:
    try:  # stored with the requests arriving meanwhile, in one commit; answered after it
        return await asyncio.wrap_future(commits.submit(new, actor=f"sender:{who.name}"))
    except store.IdempotencyConflict as exc:
        raise Problem(422, "idempotency-key-reused", "Idempotency-Key reused",
                      f"this Idempotency-Key was already used for message {exc.existing_id} with a different "
                      "payload; use a new key for a new message", existing_message=str(exc.existing_id)) from None
    except SQLAlchemyError as exc:
        if not is_database_unavailable(exc):
            raise
        log.warning("database unavailable while accepting a message of sender %s: %s", who.name,
                    safe_description(exc))
        raise database_unavailable(
            retry_after,
            "the hub's database did not answer, so the message may not have been stored. Send it again after "
            "the Retry-After interval with the same Idempotency-Key: if it was stored after all, the hub answers "
            "with that message instead of storing it twice",
        ) from None
