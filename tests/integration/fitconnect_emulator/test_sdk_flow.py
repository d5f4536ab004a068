"""The public ``fitconnect`` SDK (0.4.2) sends through the emulator; a plain subscriber fetches and decides."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from jwcrypto import jwk

from sandbox.fitconnect import Status
from sandbox.fitconnect.problem_types import PREFIX
from sandbox.fitconnect.sets import ACCEPT
from tests.integration.fitconnect_emulator.conftest import LEIKA, Setup
from tests.integration.fitconnect_emulator.parties import Subscriber, event_names, sdk_sender, token

DATA = {"$schema": "https://schema.example.org/antrag.schema.json", "antrag": {"name": "Erika Mustermann"}}
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 64


def send(setup: Setup, attachments: list[bytes] | None = None) -> dict[str, Any]:
    reduced = sdk_sender(setup).submission(setup.destination_id, LEIKA, data=DATA, attachments=attachments or [])
    assert reduced["destinationId"] == setup.destination_id
    return dict(reduced)


def test_the_sdk_sends_without_attachment_and_the_subscriber_accepts(setup: Setup, sub: Subscriber) -> None:
    sent = send(setup)
    assert sent["attachments"] == [] and sent["serviceType"]["identifier"] == LEIKA
    assert setup.emu.submission_status(sent["submissionId"]) is Status.SUBMITTED

    pending = sub.pending()
    assert pending == {"count": 1, "offset": 0, "totalCount": 1, "submissions": [
        {"destinationId": setup.destination_id, "submissionId": sent["submissionId"], "caseId": sent["caseId"]}]}
    submission = sub.fetch(sent["submissionId"])
    assert json.loads(submission["data"]) == DATA
    assert submission["metadata"]["contentStructure"]["data"]["submissionSchema"]["schemaUri"] == DATA["$schema"]

    assert sub.post_event(sent["caseId"], sub.accept(submission)).status_code == 204
    assert setup.emu.submission_status(sent["submissionId"]) is Status.ACCEPTED
    assert sub.pending()["submissions"] == []
    # after the decision the submission is no longer offered (404 as in the spec)
    assert sub.http.get(f"/v1/submissions/{sent['submissionId']}").json()["type"] == PREFIX + "submission-not-found"

    sender_token = token(setup.url, *setup.sender)
    assert event_names(setup, sent["caseId"], sender_token) == [
        "create-submission", "submit-submission", "accept-submission"]


def test_the_sdk_sends_an_attachment_that_the_subscriber_decrypts(setup: Setup, sub: Subscriber) -> None:
    sent = send(setup, [PDF])
    assert len(sent["attachments"]) == 1
    submission = sub.fetch(sent["submissionId"])
    (attachment_id,) = submission["attachments"]
    assert submission["attachment_bodies"][attachment_id] == PDF
    assert submission["metadata"]["contentStructure"]["attachments"][0]["attachmentId"] == attachment_id

    # the delivery service's submit-submission event carries the authentication tags the subscriber can compare
    log = sub.http.get(f"/v1/cases/{sent['caseId']}/events").json()["eventLog"]
    submit = json.loads(jwk.base64url_decode(log[1].split(".")[1]))
    tags = submit["events"]["https://schema.fitko.de/fit-connect/events/submit-submission"]["authenticationTags"]
    assert tags == {"metadata": submission["encryptedMetadata"].rsplit(".", 1)[1],
                    "data": submission["encryptedData"].rsplit(".", 1)[1],
                    "attachments": submission["attachment_tags"]}

    assert sub.post_event(sent["caseId"], sub.accept(submission)).status_code == 204
    assert event_names(setup, sent["caseId"], token(setup.url, *setup.sender))[-1] == "accept-submission"


def test_a_reject_ends_the_case_and_a_second_different_decision_conflicts(setup: Setup, sub: Subscriber) -> None:
    sent = send(setup)
    submission = sub.fetch(sent["submissionId"])
    assert sub.post_event(sent["caseId"], sub.reject(submission)).status_code == 204
    assert setup.emu.submission_status(sent["submissionId"]) is Status.REJECTED

    second = sub.post_event(sent["caseId"], sub.accept(submission))
    assert second.status_code == 409
    assert second.headers["content-type"] == "application/problem+json"
    assert second.json()["type"] == PREFIX + "invalid-state-transition"
    again = sub.post_event(sent["caseId"], sub.reject(submission))
    assert again.status_code == 409
    assert event_names(setup, sent["caseId"], token(setup.url, *setup.sender)) == [
        "create-submission", "submit-submission", "reject-submission"]


@pytest.fixture
def fetched(setup: Setup, sub: Subscriber) -> tuple[Subscriber, dict[str, object]]:
    sent = send(setup)
    return sub, sub.fetch(sent["submissionId"])


def _problem(response: httpx.Response, status: int, slug: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == PREFIX + slug and body["status"] == status and body["title"]


def test_an_unsigned_set_is_refused(setup: Setup, fetched: tuple[Subscriber, dict[str, object]]) -> None:
    sub, submission = fetched
    signed = sub.accept(submission)
    header, payload, _ = signed.split(".")
    _problem(sub.post_event(str(submission["caseId"]), f"{header}.{payload}."), 422,
             "security-event-token-signature-invalid")
    none_header = jwk.base64url_encode(json.dumps({"typ": "secevent+jwt", "alg": "none"}))
    _problem(sub.post_event(str(submission["caseId"]), f"{none_header}.{payload}."), 422,
             "security-event-token-invalid")
    assert setup.emu.submission_status(str(submission["submissionId"])) is Status.SUBMITTED


def test_a_badly_signed_set_is_refused(setup: Setup, fetched: tuple[Subscriber, dict[str, object]]) -> None:
    sub, submission = fetched
    case = str(submission["caseId"])
    # signed by another key under the destination's kid
    impostor = jwk.JWK.generate(kty="RSA", size=2048, kid=setup.keys.signature.get("kid"))
    _problem(sub.post_event(case, sub.set_for(submission, ACCEPT, {}, key=impostor)), 422,
             "security-event-token-signature-invalid")
    # a tampered payload
    header, _, signature = sub.accept(submission).split(".")
    forged = jwk.base64url_encode(json.dumps({"events": {ACCEPT: {}}}))
    _problem(sub.post_event(case, f"{header}.{forged}.{signature}"), 422, "security-event-token-signature-invalid")
    # signed with the right key, but claims that do not fit
    _problem(sub.post_event(case, sub.set_for(submission, ACCEPT, {}, iss=str(uuid.uuid4()))), 422,
             "security-event-token-invalid")
    _problem(sub.post_event(case, sub.set_for(submission, ACCEPT, {}, header={
        "typ": "JWT", "alg": "PS512", "kid": setup.keys.signature.get("kid")})), 422, "security-event-token-invalid")
    _problem(sub.post_event(case, sub.set_for(
        submission, "https://schema.fitko.de/fit-connect/events/submit-submission", {})), 422,
        "security-event-token-invalid")
    _problem(sub.post_event(case, sub.set_for(submission, ACCEPT, {"authenticationTags": {
        "metadata": "AAAA", "data": "BBBB", "attachments": {}}})), 422, "security-event-token-invalid")
    # not a JWS at all; and the wrong media type
    _problem(sub.post_event(case, "not-a-token"), 400, "invalid-request")
    _problem(sub.post_event(case, sub.accept(submission), content_type="application/json"), 415,
             "unsupported-media-type")
    assert setup.emu.submission_status(str(submission["submissionId"])) is Status.SUBMITTED
