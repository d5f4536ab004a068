"""The trade register stand-in: Gewerbe-An-, -Um- and -Abmeldungen as JSON, deduplicated, validated."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.trade_register import create_trade_register
from tests.support import running

PATH = "/api/v1/gewerbemeldungen"
# The XGewerbeanzeige 2.2 sample (tests/fixtures/xoev/xgewerbeanzeige/xgwa2.2-valid.xml) in this JSON shape.
ANMELDUNG: dict[str, Any] = {
    "meldungsart": "anmeldung",
    "behoerde": {"ags": "12052000", "name": "Gewerbeamt Cottbus"},
    "meldungNr": "2015 1023",
    "gewerbebetriebId": "0c9003a6-5b4f-4a99-98ae-b2b915708c1d",
    "datumMeldung": "2016-07-02",
    "gueltigAb": "2016-08-01",
    "betrieb": {
        "name": "Tibor Pick e.K.", "rechtsform": "170",
        "registereintrag": {"art": "A", "nummer": "11111", "gericht": "G1103", "ort": "Cottbus"},
        "anschrift": {"strasse": "Spremberger Str.", "hausnummer": "90", "plz": "03046", "ort": "Cottbus"},
        "vollzeitBeschaeftigte": 0, "teilzeitBeschaeftigte": 2,
    },
    "personen": [{
        "funktion": "1", "familienname": "Pick", "vorname": "Tibor", "geburtsname": "Rodríguez",
        "geburtsdatum": "1965-10-12", "geburtsort": "Santiago", "staatsangehoerigkeit": "332",
        "anschrift": {"strasse": "Ewald-Hase-Str.", "hausnummer": "4", "plz": "03044", "ort": "Cottbus"},
    }],
    "taetigkeit": {"schwerpunkt": "Friseur", "wzSchluessel": "96021",
                   "weitere": ["Verkauf von Haarpflegeprodukten", "Make-up-Beratung"]},
    "grundAnmeldung": "01",
}


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with running(create_trade_register()) as url, httpx.Client(base_url=url) as http:
        yield http


def meldung(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(ANMELDUNG)
    data.update(changes)
    return data


def test_an_anmeldung_becomes_a_case(client: httpx.Client) -> None:
    response = client.post(PATH, json=ANMELDUNG, headers={"Idempotency-Key": "k1", "X-Xhub-Message-Id": "m1"})
    assert response.status_code == 201
    body = response.json()
    assert body["case_id"].startswith("GEW-12052000-") and body["duplicate"] is False
    assert response.headers["x-case-id"] == body["case_id"]
    assert response.headers["location"] == f"{PATH}/{body['case_id']}"
    stored = client.get(response.headers["location"]).json()
    assert stored["meldung"]["personen"][0]["geburtsname"] == "Rodríguez"
    (item,) = client.get("/_received").json()["items"]
    assert (item["idempotency_key"], item["message_id"], item["status"], item["ags"]) == ("k1", "m1", 201, "12052000")


def test_ummeldung_and_abmeldung(client: httpx.Client) -> None:
    um = meldung(meldungsart="ummeldung", grundUmmeldung="02")
    del um["grundAnmeldung"]
    assert client.post(PATH, json=um).json()["meldungsart"] == "ummeldung"
    ab = meldung(meldungsart="abmeldung", grundAbmeldung="04", ursacheAbmeldung="17")
    del ab["grundAnmeldung"]
    assert client.post(PATH, json=ab).status_code == 201
    del ab["grundAbmeldung"]
    refused = client.post(PATH, json=ab)
    assert refused.status_code == 422 and "grundAbmeldung" in refused.json()["detail"]


def test_a_repeat_answers_the_first_case(client: httpx.Client) -> None:
    first = client.post(PATH, json=ANMELDUNG, headers={"Idempotency-Key": "k"})
    again = client.post(PATH, json=ANMELDUNG, headers={"Idempotency-Key": "k"})
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["case_id"] == first.json()["case_id"] and again.json()["duplicate"] is True
    other = client.post(PATH, json=meldung(meldungNr="2015 1024"), headers={"Idempotency-Key": "k"})
    assert other.status_code == 422 and other.json()["type"].endswith("idempotency-key-reused")
    assert [(i["duplicate"], i["status"]) for i in client.get("/_received").json()["items"]] == [
        (False, 201), (True, 200), (False, 422)]


@pytest.mark.parametrize(("data", "where"), [
    (meldung(behoerde={"ags": "1205200"}), "behoerde.ags"),
    (meldung(personen=[]), "personen"),
    (meldung(meldungsart="gruendung"), "body"),
    (meldung(unbekannt=True), "unbekannt"),
    (meldung(datumMeldung="02.07.2016"), "datumMeldung"),
])
def test_invalid_notifications_are_422_problems(client: httpx.Client, data: dict[str, Any], where: str) -> None:
    response = client.post(PATH, json=data)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith(":validation") and where in problem["detail"]
    assert client.get("/_received").json()["items"][0]["status"] == 422


def test_the_openapi_description_has_the_notification_shapes(client: httpx.Client) -> None:
    spec = client.get("/openapi.json").json()
    assert {"Anmeldung", "Ummeldung", "Abmeldung", "Person", "Betrieb"} <= set(spec["components"]["schemas"])
    assert "post" in spec["paths"][PATH]
    assert not any(p.startswith("/_") for p in spec["paths"])


def test_misbehaviour_comes_before_validation(client: httpx.Client) -> None:
    client.post("/_behaviour", json={"outage_seconds": 30}).raise_for_status()
    response = client.post(PATH, json={"not": "even valid"})
    assert response.status_code == 503 and 25 <= int(response.headers["retry-after"]) <= 30
    client.post("/_behaviour", json={"fault_count": 1, "fault": "client"}).raise_for_status()
    assert client.post(PATH, json=ANMELDUNG).status_code == 400
    assert client.post(PATH, json=ANMELDUNG).status_code == 201
    assert client.get("/_received").json()["count"] == 1
