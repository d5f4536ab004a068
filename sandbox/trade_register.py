"""Trade register stand-in (Gewerberegister): a REST service for Gewerbe-An-, -Um- and -Abmeldungen.

The JSON is a flattened view of an XGewerbeanzeige 2.2 notification (authority's AGS, business, persons,
activity, dates; codes keep their XÖV values). Every field is described in the OpenAPI description at
``/openapi.json`` (Swagger UI at ``/docs``); unknown fields are refused, so a mapping typo shows at once.

Endpoints:

* ``POST /api/v1/gewerbemeldungen``: one notification, discriminated by ``meldungsart``
  (``anmeldung`` | ``ummeldung`` | ``abmeldung``). ``201`` with ``{"case_id", …}``, ``Location`` and
  ``X-Case-Id``; a repeated ``Idempotency-Key`` answers ``200`` with the first case (recorded as a
  duplicate); the same key with a different notification, or an invalid one, is a ``422`` problem.
* ``GET /api/v1/gewerbemeldungen/{case_id}``: the stored case.
* ``GET /_received``: what arrived, including rejected requests; ``POST|GET /_behaviour``: misbehaviour
  (:mod:`sandbox.chaos`), applied before the request is validated, as a gateway in front would.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from sandbox.chaos import Chaos, Drop, Fault, Proceed, Refuse, hold, install, refusal_headers
from sandbox.ledger import Ledger

__all__ = ["Abmeldung", "Anmeldung", "Gewerbemeldung", "Ummeldung", "create_trade_register"]

PREFIX = "/api/v1/gewerbemeldungen"
PROBLEM_JSON = "application/problem+json"
PROBLEM = "urn:xoev-hub:sandbox:problem:"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


Text = Annotated[str, Field(min_length=1, max_length=200)]
Code = Annotated[str, Field(pattern=r"^[0-9A-Za-z]{1,10}$", description="A code as in XGewerbeanzeige.")]


class Anschrift(_Model):
    strasse: Text
    hausnummer: str | None = Field(None, max_length=10)
    plz: str = Field(pattern=r"^[0-9]{5}$")
    ort: Text
    staat: str = Field("276", pattern=r"^[0-9]{3}$", description="Destatis Staatsschlüssel (276 = Deutschland).")


class Behoerde(_Model):
    ags: str = Field(pattern=r"^[0-9]{8}$", description="Amtlicher Gemeindeschlüssel of the reporting authority.")
    name: Text | None = None


class Registereintrag(_Model):
    art: Code = Field(description="eintragungArt, e.g. A (HRA), B (HRB).")
    nummer: Text
    gericht: Code | None = Field(None, description="gerichtSchluessel, e.g. G1103.")
    ort: Text | None = None


class Betrieb(_Model):
    name: Text = Field(description="Registered name, or the owner's name for a sole trader.")
    rechtsform: Code | None = Field(None, description="rechtsformSchluessel, e.g. 170 (e.K.).")
    registereintrag: Registereintrag | None = None
    anschrift: Anschrift
    vollzeitBeschaeftigte: int | None = Field(None, ge=0)
    teilzeitBeschaeftigte: int | None = Field(None, ge=0)


class Person(_Model):
    funktion: Code = Field("1", description="personFunktion code (1 = Inhaber).")
    familienname: Text
    vorname: Text
    geburtsname: Text | None = None
    geburtsdatum: date
    geburtsort: Text | None = None
    staatsangehoerigkeit: str | None = Field(None, pattern=r"^[0-9]{3}$", description="Destatis Staatsschlüssel.")
    anschrift: Anschrift | None = None

    @field_validator("geburtsdatum")
    @classmethod
    def _in_the_past(cls, value: date) -> date:
        if value >= date.today():
            raise ValueError("must be in the past")
        return value


class Taetigkeit(_Model):
    schwerpunkt: Text = Field(description="taetigkeitSchwerpunkt, e.g. Friseur.")
    wzSchluessel: str | None = Field(None, pattern=r"^[0-9]{2,5}$", description="WZ 2008 code, e.g. 96021.")
    weitere: list[Text] = Field(default_factory=list, max_length=50)


class _Meldung(_Model):
    behoerde: Behoerde
    meldungNr: Text | None = Field(None, description="gemeindeMeldungNr.")
    gewerbebetriebId: Text | None = Field(None, description="gewerbebetriebID, stable across the business's life.")
    datumMeldung: date
    gueltigAb: date = Field(description="Start (Anmeldung), change (Ummeldung) or end (Abmeldung) of the business.")
    betrieb: Betrieb
    personen: list[Person] = Field(min_length=1, max_length=50)
    taetigkeit: Taetigkeit


class Anmeldung(_Meldung):
    meldungsart: Literal["anmeldung"]
    grundAnmeldung: Code | None = Field(None, description="grundAnmeldungSchluessel, e.g. 01 (Neuerrichtung).")


class Ummeldung(_Meldung):
    meldungsart: Literal["ummeldung"]
    grundUmmeldung: Code | None = Field(None, description="grundUmmeldungSchluessel.")


class Abmeldung(_Meldung):
    meldungsart: Literal["abmeldung"]
    grundAbmeldung: Code = Field(description="grundAbmeldungSchluessel, e.g. 04.")
    ursacheAbmeldung: Code | None = Field(None, description="ursacheAbmeldungSchluessel.")


Gewerbemeldung = Annotated[Anmeldung | Ummeldung | Abmeldung, Field(discriminator="meldungsart")]


class CaseCreated(BaseModel):
    case_id: str
    meldungsart: str
    status: Literal["eingegangen"] = "eingegangen"
    received_at: datetime
    duplicate: bool


@dataclass
class Received:
    idempotency_key: str | None
    message_id: str | None
    sha256: str
    size: int
    at: float
    status: int
    duplicate: bool = False
    case_id: str | None = None
    meldungsart: str | None = None
    ags: str | None = None
    problem: str | None = None
    completed: bool = False


class _Answered(Exception):
    """Raised by the misbehaviour gate: answer this instead of processing the request."""

    def __init__(self, response: JSONResponse) -> None:
        self.response = response


def _problem(status: int, slug: str, title: str, detail: str, *, headers: dict[str, str] | None = None,
             **extra: Any) -> JSONResponse:
    body = {"type": PROBLEM + slug, "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


async def _gate(request: Request) -> Proceed:
    """Misbehaviour first, before the body is validated (FastAPI solves dependencies before the body)."""
    chaos: Chaos = request.app.state.chaos
    decision = chaos.decide()
    if isinstance(decision, Refuse):
        raise _Answered(_problem(decision.status, "told-to-fail", "Told to fail", decision.reason,
                                 headers=refusal_headers(decision)))
    if isinstance(decision, Drop):
        await hold(request, decision.seconds)
        raise _Answered(_problem(504, "timeout", "Gateway timeout", "held and dropped (told to)"))
    if isinstance(decision, Fault):
        await hold(request, decision.delay)
        status = 400 if decision.kind == "client" else 500
        raise _Answered(_problem(status, f"{decision.kind}-fault", "Told to fail", f"{decision.kind} fault"))
    return decision


def create_trade_register(*, chaos: Chaos | None = None) -> FastAPI:
    """The stand-in as an ASGI app with its OpenAPI description."""
    app = FastAPI(title="Trade register stand-in (Gewerberegister)", version="1.0.0",
                  description="Accepts Gewerbe-An-, -Um- and -Abmeldungen as JSON; a sandbox, not a real register.")
    chaos = chaos or Chaos()
    app.state.chaos = chaos
    install(app, chaos)
    ledger: Ledger[Received] = Ledger()
    ledger.mount(app)
    lock = ledger.lock
    cases: dict[str, dict[str, Any]] = {}
    by_key: dict[str, tuple[str, str]] = {}  # key -> (digest of the notification, case id)
    state = {"sequence": 0}

    def record_of(request: Request, body: bytes, status: int) -> Received:
        return Received(request.headers.get("idempotency-key"), request.headers.get("x-xhub-message-id"),
                        hashlib.sha256(body).hexdigest(), len(body), time.time(), status)

    @app.exception_handler(_Answered)
    async def answered(request: Request, exc: _Answered) -> JSONResponse:
        return exc.response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))} for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
        body = await request.body()
        record = record_of(request, body, 422)
        record.problem, record.completed = detail, True
        ledger.add(record, held=False)
        return _problem(422, "validation", "The notification is not valid", detail, errors=errors)

    @app.post(PREFIX, status_code=201, response_model=CaseCreated, responses={
        200: {"model": CaseCreated, "description": "A repeat (same Idempotency-Key): the first case."},
        422: {"description": "Invalid notification, or the key was used for another one (problem+json)."}})
    async def submit(meldung: Gewerbemeldung, request: Request,
                     decision: Annotated[Proceed, Depends(_gate)]) -> Response:
        body = await request.body()
        key = request.headers.get("idempotency-key")
        digest = hashlib.sha256(meldung.model_dump_json().encode()).hexdigest()
        record = record_of(request, body, 201)
        record.meldungsart, record.ags = meldung.meldungsart, meldung.behoerde.ags
        with lock:
            if key is not None and key in by_key and by_key[key][0] != digest:
                record.status, record.problem, record.completed = 422, "idempotency key reused", True
                ledger.add(record, held=False)
                return _problem(422, "idempotency-key-reused", "Idempotency-Key reused",
                                f"the key {key!r} was used for a different notification")
            if key is not None and key in by_key:
                case = cases[by_key[key][1]]
                record.status, record.duplicate = 200, True
            else:
                state["sequence"] += 1
                now = datetime.now(UTC)
                case_id = f"GEW-{meldung.behoerde.ags}-{now.year}-{state['sequence']:06d}"
                case = {"case_id": case_id, "meldungsart": meldung.meldungsart, "received_at": now.isoformat(),
                        "meldung": meldung.model_dump(mode="json")}
                cases[case_id] = case
                if key is not None:
                    by_key[key] = (digest, case_id)
            record.case_id = case["case_id"]
            ledger.add(record, held=True)

        def created() -> JSONResponse:
            answer = CaseCreated(case_id=case["case_id"], meldungsart=case["meldungsart"],
                                 received_at=case["received_at"], duplicate=record.duplicate)
            return JSONResponse(answer.model_dump(mode="json"), status_code=record.status,
                                headers={"Location": f"{PREFIX}/{case['case_id']}", "X-Case-Id": case["case_id"]})

        return await ledger.answer(request, decision.delay, record, created,
                                   gone=JSONResponse({"error": "the caller went away"}, status_code=499))

    @app.get(PREFIX + "/{case_id}")
    async def get_case(case_id: str) -> JSONResponse:
        with lock:
            case = cases.get(case_id)
        if case is None:
            return _problem(404, "not-found", "No such case", f"no case {case_id!r}")
        return JSONResponse(case)

    return app
