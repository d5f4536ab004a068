"""Status codes and RFC 7807 problem types, as the Submission API 1.1.3 has them."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandbox.fitconnect import Status
from sandbox.fitconnect.problem_types import PREFIX
from tests.integration.fitconnect_emulator.conftest import LEIKA, Setup, add_destination
from tests.integration.fitconnect_emulator.parties import Subscriber, sdk_sender, token

JWE = "eyJhbGciOiJSU0EtT0FFUC0yNTYifQ.a2V5.aXY.Y2lwaGVydGV4dA.dGFn"  # shape only: the emulator never decrypts


def problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = dict(response.json())
    assert body["type"] == PREFIX + slug and body["status"] == status and body["title"] and body["detail"]
    return body


@pytest.fixture
def sender(setup: Setup) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=setup.url,
                      headers={"Authorization": f"Bearer {token(setup.url, *setup.sender)}"}) as client:
        yield client


def announce(sender: httpx.Client, destination_id: str, attachments: list[str] | None = None,
             **extra: Any) -> httpx.Response:
    return sender.post("/v1/submissions", json={
        "destinationId": destination_id, "announcedAttachments": attachments or [],
        "serviceType": {"name": "Test", "identifier": LEIKA}, **extra})


def created(sender: httpx.Client, setup: Setup, attachments: list[str] | None = None) -> dict[str, str]:
    r = announce(sender, setup.destination_id, attachments)
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"destinationId", "submissionId", "caseId"}
    return dict(r.json())


def submit(sender: httpx.Client, submission_id: str) -> httpx.Response:
    return sender.put(f"/v1/submissions/{submission_id}", json={"encryptedMetadata": JWE, "encryptedData": JWE})


def upload(sender: httpx.Client, submission_id: str, attachment_id: str, body: str = JWE,
           content_type: str = "application/jose") -> httpx.Response:
    return sender.put(f"/v1/submissions/{submission_id}/attachments/{attachment_id}", content=body,
                      headers={"Content-Type": content_type})


def test_the_token_endpoint_speaks_oauth2(setup: Setup) -> None:
    url = f"{setup.url}/token"
    client_id, secret = setup.sender
    ok = httpx.post(url, data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret})
    assert ok.status_code == 200
    assert ok.json()["token_type"] == "Bearer" and ok.json()["expires_in"] == 1800
    assert ok.headers["cache-control"] == "no-store"
    basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    assert httpx.post(url, data={"grant_type": "client_credentials"},
                      headers={"Authorization": f"Basic {basic}"}).status_code == 200

    bad = httpx.post(url, data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": "x"})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    unknown = httpx.post(url, data={"grant_type": "client_credentials", "client_id": "nobody", "client_secret": "x"})
    assert unknown.status_code == 401
    grant = httpx.post(url, data={"grant_type": "password", "client_id": client_id, "client_secret": secret})
    assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
    as_json = httpx.post(url, json={"grant_type": "client_credentials", "client_id": client_id,
                                    "client_secret": secret})
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"


def test_a_missing_bad_or_expired_token_is_401(setup: Setup) -> None:
    path = f"{setup.url}/v1/submissions"
    assert problem(httpx.get(path), 401, "unauthorized")
    r = httpx.get(path, headers={"Authorization": "Bearer not-a-token"})
    problem(r, 401, "unauthorized")
    assert r.headers["www-authenticate"].startswith("Bearer")
    setup.emu.token_ttl_seconds = -1  # every token from now on is born expired
    expired = token(setup.url, *setup.subscriber)
    problem(httpx.get(path, headers={"Authorization": f"Bearer {expired}"}), 401, "unauthorized")


def test_unknown_things_are_404(setup: Setup, sender: httpx.Client, sub: Subscriber) -> None:
    unknown = str(uuid.uuid4())
    problem(sub.http.get(f"/v1/submissions/{unknown}"), 404, "submission-not-found")
    problem(sub.http.get(f"/v1/submissions/{unknown}/attachments/{unknown}"), 404, "submission-not-found")
    problem(sub.http.get(f"/v1/cases/{unknown}/events"), 404, "case-not-found")
    problem(sub.post_event(unknown, "a.b.c"), 404, "case-not-found")
    problem(sender.get(f"/v1/destinations/{unknown}"), 404, "destination-not-found")
    problem(httpx.get(f"{setup.url}/v1/destinations/{setup.destination_id}/keys/unknown-kid"), 404, "key-not-found")
    problem(announce(sender, unknown), 404, "destination-not-found")
    problem(submit(sender, unknown), 404, "submission-not-found")
    problem(sender.get("/v1/no-such-path"), 404, "not-found")
    with pytest.raises(ValueError, match="destination does not exist"):
        sdk_sender(setup).create_submission(unknown, LEIKA)
    # an incomplete submission is not offered to the subscriber, an attachment not uploaded is unknown
    incomplete = created(sender, setup, [str(uuid.uuid4())])
    problem(sub.http.get(f"/v1/submissions/{incomplete['submissionId']}"), 404, "submission-not-found")
    done = created(sender, setup)
    assert submit(sender, done["submissionId"]).status_code == 202
    problem(sub.http.get(f"/v1/submissions/{done['submissionId']}/attachments/{unknown}"), 404,
            "attachment-not-found")


def test_a_foreign_destination_or_submission_is_403(setup: Setup, sender: httpx.Client, sub: Subscriber) -> None:
    other = add_destination(setup.emu, setup.keys)
    problem(sub.http.get("/v1/submissions", params={"destinationId": other}), 403, "forbidden")
    problem(announce(sender, other), 403, "forbidden")
    problem(sender.get(f"/v1/destinations/{other}"), 403, "forbidden")

    # the other destination's subscriber cannot fetch, decide on or read ours
    theirs = setup.emu.add_client("subscriber", destinations=[other])
    mine = created(sender, setup)
    assert submit(sender, mine["submissionId"]).status_code == 202
    with httpx.Client(base_url=setup.url, headers={"Authorization": f"Bearer {token(setup.url, *theirs)}"}) as them:
        problem(them.get(f"/v1/submissions/{mine['submissionId']}"), 403, "forbidden")
        problem(them.get(f"/v1/cases/{mine['caseId']}/events"), 403, "forbidden")
        problem(them.post(f"/v1/cases/{mine['caseId']}/events", content="a.b.c",
                          headers={"Content-Type": "application/jose"}), 403, "forbidden")
    # roles: a subscriber does not send, a sender does not fetch, another sender does not touch
    problem(announce(sub.http, setup.destination_id), 403, "forbidden")
    problem(sender.get("/v1/submissions"), 403, "forbidden")
    problem(sender.get(f"/v1/submissions/{mine['submissionId']}"), 403, "forbidden")
    second_sender = setup.emu.add_client("sender", destinations=[setup.destination_id])
    with httpx.Client(base_url=setup.url,
                      headers={"Authorization": f"Bearer {token(setup.url, *second_sender)}"}) as stranger:
        problem(submit(stranger, mine["submissionId"]), 403, "forbidden")
        problem(stranger.get(f"/v1/cases/{mine['caseId']}/events"), 403, "forbidden")


@pytest.mark.parametrize("params", [{"limit": 501}, {"limit": 0}, {"offset": -1}, {"destinationId": "not-a-uuid"},
                                    {"limit": "many"}])
def test_bad_paging_parameters_are_400(setup: Setup, sub: Subscriber, params: dict[str, Any]) -> None:
    problem(sub.http.get("/v1/submissions", params=params), 400, "invalid-request")


def test_paging(setup: Setup, sender: httpx.Client, sub: Subscriber) -> None:
    ids = []
    for _ in range(3):
        s = created(sender, setup)
        assert submit(sender, s["submissionId"]).status_code == 202
        ids.append(s["submissionId"])
    first, rest = sub.pending(limit=2), sub.pending(limit=2, offset=2)
    assert (first["count"], first["offset"], first["totalCount"]) == (2, 0, 3)
    assert (rest["count"], rest["offset"], rest["totalCount"]) == (1, 2, 3)
    assert [s["submissionId"] for s in first["submissions"] + rest["submissions"]] == ids
    assert sub.pending(limit=500)["count"] == 3
    case = sub.http.get(f"/v1/cases/{first['submissions'][0]['caseId']}/events", params={"limit": 1, "offset": 1})
    assert (case.json()["count"], case.json()["offset"], case.json()["totalCount"]) == (1, 1, 2)
    problem(sub.http.get(f"/v1/cases/{ids[0]}/events", params={"limit": 501}), 400, "invalid-request")


def test_the_sender_flow_is_checked(setup: Setup, sender: httpx.Client) -> None:
    announced = str(uuid.uuid4())
    s = created(sender, setup, [announced])
    sid = s["submissionId"]
    problem(upload(sender, sid, str(uuid.uuid4())), 422, "attachment-not-announced")
    problem(upload(sender, sid, announced, content_type="application/octet-stream"), 415, "unsupported-media-type")
    problem(upload(sender, sid, announced, body="not a jwe!"), 400, "invalid-request")
    problem(upload(sender, sid, announced, body="only.three.parts"), 400, "invalid-request")
    problem(submit(sender, sid), 422, "missing-attachments")
    assert setup.emu.submission_status(sid) is Status.INCOMPLETE
    setup.emu.max_upload_bytes = len(JWE) - 1
    problem(upload(sender, sid, announced), 413, "payload-too-large")
    setup.emu.max_upload_bytes = 10**6
    assert upload(sender, sid, announced).status_code == 204
    assert upload(sender, sid, announced).status_code == 204  # a repeated upload replaces the first
    problem(sender.put(f"/v1/submissions/{sid}", content=b"{}", headers={"Content-Type": "text/plain"}), 415,
            "unsupported-media-type")
    problem(sender.put(f"/v1/submissions/{sid}", json={"encryptedData": JWE}), 400, "invalid-request")
    problem(sender.put(f"/v1/submissions/{sid}", json={"encryptedMetadata": "a.b"}), 400, "invalid-request")
    accepted = submit(sender, sid)
    assert accepted.status_code == 202
    assert accepted.json() == {"destinationId": setup.destination_id, "submissionId": sid, "caseId": s["caseId"],
                               "attachments": [announced], "serviceType": {"name": "Test", "identifier": LEIKA}}
    problem(submit(sender, sid), 422, "submission-state-invalid")
    problem(upload(sender, sid, announced), 422, "submission-state-invalid")


def test_announcements_are_checked(setup: Setup, sender: httpx.Client) -> None:
    problem(sender.post("/v1/submissions", json={"destinationId": setup.destination_id}), 400, "invalid-request")
    problem(sender.post("/v1/submissions", json={
        "destinationId": setup.destination_id, "announcedAttachments": [],
        "serviceType": {"identifier": "not a urn"}}), 400, "invalid-request")
    problem(sender.post("/v1/submissions", content=b"{}", headers={"Content-Type": "text/plain"}), 415,
            "unsupported-media-type")
    other_service = sender.post("/v1/submissions", json={
        "destinationId": setup.destination_id, "announcedAttachments": [],
        "serviceType": {"identifier": "urn:de:fim:leika:leistung:99000000000000"}})
    problem(other_service, 422, "service-type-not-supported")
    problem(announce(sender, setup.destination_id, caseId=str(uuid.uuid4())), 404, "case-not-found")
    first = created(sender, setup)
    reply = announce(sender, setup.destination_id, caseId=first["caseId"])
    assert reply.status_code == 201 and reply.json()["caseId"] == first["caseId"]

    setup.emu.set_destination_status(setup.destination_id, "inactive")
    problem(announce(sender, setup.destination_id), 422, "destination-state-invalid")
    with pytest.raises(ValueError, match="not active"):
        sdk_sender(setup).create_submission(setup.destination_id, LEIKA)


def test_destinations_and_keys_are_served_as_the_sdk_needs_them(setup: Setup, sender: httpx.Client) -> None:
    dest = sender.get(f"/v1/destinations/{setup.destination_id}")
    assert dest.status_code == 200 and dest.headers["cache-control"] == "no-cache"
    body = dest.json()
    assert body["status"] == "active" and body["encryptionKid"] == "enc-key-0001"
    assert body["services"][0]["identifier"] == LEIKA and body["metadataVersions"] == ["1.0.0"]
    # the keys need no token; key_ops is filled in (the SDK reads it), private parts never exist
    enc = httpx.get(f"{setup.url}/v1/destinations/{setup.destination_id}/keys/enc-key-0001").json()
    sig = httpx.get(f"{setup.url}/v1/destinations/{setup.destination_id}/keys/sig-key-0001").json()
    assert (enc["key_ops"], enc["alg"], sig["key_ops"], sig["alg"]) == (["wrapKey"], "RSA-OAEP-256", ["verify"],
                                                                        "PS512")
    assert "d" not in enc and len(enc["n"]) >= 683
    jwks = httpx.get(f"{setup.url}/.well-known/jwks.json").json()
    assert [k["kid"] for k in jwks["keys"]] == ["emulator-signing-key"]
    assert jwks["keys"][0]["alg"] == "PS512" and "d" not in jwks["keys"][0]
    assert httpx.get(f"{setup.url}/v1/info").json() == {"version": {"major": 1, "minor": 1, "patch": 3}}


def test_the_admin_api_refuses_private_or_weak_keys(setup: Setup) -> None:
    private = setup.keys.encryption.export_private(as_dict=True)
    public_sig = setup.keys.public(setup.keys.signature)
    with pytest.raises(ValueError, match="private key material"):
        setup.emu.add_destination(private, public_sig, [LEIKA])
    r = httpx.post(f"{setup.url}/_admin/destinations", json={
        "encryptionKey": private, "signingKey": public_sig, "services": [LEIKA]})
    problem(r, 400, "invalid-request")
    with pytest.raises(ValueError, match="different kids"):
        setup.emu.add_destination(public_sig | {"alg": "RSA-OAEP-256", "key_ops": ["wrapKey"]}, public_sig, [LEIKA])
    with pytest.raises(ValueError, match="both a URL and a secret"):
        setup.emu.add_destination(setup.keys.public(setup.keys.encryption), public_sig, [LEIKA],
                                  callback_url="http://127.0.0.1:1/cb")
