"""SubscriberClient against an in-memory delivery service (httpx.MockTransport)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from channels.fitconnect import (
    ACCEPT,
    REJECT,
    AuthTags,
    DestinationConfig,
    SubmissionRef,
    SubmissionRejected,
    SubscriberClient,
)
from channels.fitconnect.events import accept_set, reject_set
from channels.fitconnect.keys import KeyFiles, load_private_key
from channels.fitconnect.reject_reasons import PROBLEM_BASE, hash_mismatch
from channels.fitconnect.token import TokenCache
from hub.errors import Deferred, Permanent, Retriable

from .fakes import (
    FakeDeliveryService,
    build_submission,
    config_for,
    encrypt,
    flip_ciphertext,
    metadata_for,
    problem,
    tree,
)

ATT = "2046f9f1-dc89-4440-9c24-c76a8f40d668"
PDF = b"%PDF-1.7 " + bytes(range(256)) * 40


@pytest.fixture
def service(destination_id: str, sig_public: dict[str, Any]) -> FakeDeliveryService:
    return FakeDeliveryService(destination_id, sig_public)


@pytest.fixture
def client(service: FakeDeliveryService, keys: KeyFiles, destination_id: str) -> Iterator[SubscriberClient]:
    with SubscriberClient(config_for(keys, destination_id, page_size=2), transport=service.transport()) as c:
        yield c


def ref_of(s: Any) -> SubmissionRef:
    return SubmissionRef(s.submission_id, s.case_id, s.destination_id)


def rejected_types(exc: pytest.ExceptionInfo[SubmissionRejected]) -> list[tuple[str, str]]:
    return [(p.type.removeprefix(PROBLEM_BASE), p.instance) for p in exc.value.problems]


def test_pending_reads_every_page(client: SubscriberClient, service: FakeDeliveryService,
                                  enc_public: dict[str, Any], destination_id: str) -> None:
    made = [service.add(build_submission(enc_public, destination_id)) for _ in range(5)]
    refs = list(client.pending(destination_id))
    assert {r.submission_id for r in refs} == {s.submission_id for s in made}
    pages = [r for r in service.requests if r.url.path == "/v1/submissions"]
    assert [int(r.url.params["offset"]) for r in pages] == [0, 2, 4]
    assert service.token_requests == 1  # cached across requests


@pytest.mark.parametrize("zip_def", [False, True])
def test_fetch_decrypts_and_verifies(client: SubscriberClient, service: FakeDeliveryService, workdir: Path,
                                     enc_public: dict[str, Any], destination_id: str, zip_def: bool) -> None:
    s = service.add(build_submission(enc_public, destination_id, attachments={ATT: PDF}, zip_def=zip_def))
    got = client.fetch(ref_of(s), workdir)
    assert got.data == b"<antrag>1</antrag>" and got.data_mime_type == "application/xml"
    assert got.service_identifier == "urn:de:fim:leika:leistung:99010003001006"
    (attachment,) = got.attachments
    assert attachment.path.read_bytes() == PDF and attachment.size == len(PDF)
    assert attachment.path.parent == workdir and attachment.filename == f"../{ATT}.pdf"  # never used as a path
    assert got.auth_tags.metadata == s.encrypted_metadata.split(".")[4]  # type: ignore[union-attr]
    assert got.auth_tags.attachments == {ATT: s.attachments[ATT].split(".")[4]}
    assert tree(workdir) == [f"attachment-{ATT}"]  # no .jwe or .part left


def test_fetch_json_data(client: SubscriberClient, service: FakeDeliveryService, workdir: Path,
                         enc_public: dict[str, Any], destination_id: str) -> None:
    s = service.add(build_submission(enc_public, destination_id, data=b'{"a": 1}', mime="application/json"))
    assert client.fetch(ref_of(s), workdir).data_mime_type == "application/json"


def tamper_data(s: Any) -> None:
    s.encrypted_data = flip_ciphertext(s.encrypted_data)


def tamper_attachment(s: Any) -> None:
    s.attachments[ATT] = flip_ciphertext(s.attachments[ATT])


def drop_attachment(s: Any) -> None:
    del s.attachments[ATT]


def no_data(s: Any) -> None:
    s.encrypted_data = None


@pytest.mark.parametrize("tamper, expected", [
    (tamper_data, [("encryption-issue", "data")]),
    (tamper_attachment, [("encryption-issue", f"attachment:{ATT}")]),
    (drop_attachment, [("attachments-mismatch", "metadata")]),
    (no_data, [("missing-data", "submission")]),
])
def test_fetch_rejects(client: SubscriberClient, service: FakeDeliveryService, workdir: Path,
                       enc_public: dict[str, Any], destination_id: str, tamper: Any,
                       expected: list[tuple[str, str]]) -> None:
    s = service.add(build_submission(enc_public, destination_id, attachments={ATT: PDF}, tamper=tamper))
    with pytest.raises(SubmissionRejected) as info:
        client.fetch(ref_of(s), workdir)
    assert rejected_types(info) == expected
    assert tree(workdir) == []  # nothing half-processed


def test_wrong_key_rejects_metadata(client: SubscriberClient, service: FakeDeliveryService, workdir: Path,
                                    other_keys: KeyFiles, destination_id: str) -> None:
    wrong = json.loads(other_keys.encryption_public.read_text())
    s = service.add(build_submission(wrong, destination_id))
    with pytest.raises(SubmissionRejected) as info:
        client.fetch(ref_of(s), workdir)
    assert rejected_types(info) == [("encryption-issue", "metadata")]
    assert "not this destination's encryption key" in info.value.problems[0].detail


def test_hash_mismatches(client: SubscriberClient, service: FakeDeliveryService, workdir: Path,
                         enc_public: dict[str, Any], destination_id: str) -> None:
    md = metadata_for(b"<other/>", {ATT: b"other pdf"})
    s = service.add(build_submission(enc_public, destination_id, attachments={ATT: PDF}, metadata=md))
    with pytest.raises(SubmissionRejected) as info:
        client.fetch(ref_of(s), workdir)
    assert rejected_types(info) == [("hash-mismatch", "data")]  # attachments are not downloaded then
    md = metadata_for(b"<antrag>1</antrag>", {ATT: b"other pdf"})
    s = service.add(build_submission(enc_public, destination_id, attachments={ATT: PDF}, metadata=md))
    with pytest.raises(SubmissionRejected) as info:
        client.fetch(ref_of(s), workdir)
    assert rejected_types(info) == [("hash-mismatch", f"attachment:{ATT}")]
    assert tree(workdir) == []


def test_invalid_metadata(client: SubscriberClient, service: FakeDeliveryService, workdir: Path,
                          enc_public: dict[str, Any], destination_id: str) -> None:
    md = metadata_for(b"<antrag>1</antrag>", {})
    md["contentStructure"]["data"]["submissionSchema"]["mimeType"] = "text/csv"
    s = service.add(build_submission(enc_public, destination_id, metadata=md))
    with pytest.raises(SubmissionRejected) as info:
        client.fetch(ref_of(s), workdir)
    assert rejected_types(info) == [("schema-violation", "metadata")]


def test_service_mismatch(client: SubscriberClient, service: FakeDeliveryService, workdir: Path,
                          enc_public: dict[str, Any], destination_id: str) -> None:
    md = metadata_for(b"<antrag>1</antrag>", {})
    md["publicServiceType"]["identifier"] = "urn:de:fim:leika:leistung:99000000000000"
    s = service.add(build_submission(enc_public, destination_id, metadata=md))
    with pytest.raises(SubmissionRejected) as info:
        client.fetch(ref_of(s), workdir)
    assert rejected_types(info) == [("service-mismatch", "metadata")]


def test_attachment_download_interrupted_is_retriable(client: SubscriberClient, service: FakeDeliveryService,
                                                      workdir: Path, enc_public: dict[str, Any],
                                                      destination_id: str) -> None:
    s = service.add(build_submission(enc_public, destination_id, attachments={ATT: PDF}))
    service.script.append((r"/v1/submissions/.*/attachments/.*", problem(503, "unavailable")))
    with pytest.raises(Retriable):
        client.fetch(ref_of(s), workdir)
    assert tree(workdir) == []
    assert client.fetch(ref_of(s), workdir).attachments  # the next attempt works


def test_429_with_retry_after_is_retriable(client: SubscriberClient, service: FakeDeliveryService,
                                           destination_id: str) -> None:
    service.script.append(("/v1/submissions", httpx.Response(429, headers={"Retry-After": "17"})))
    with pytest.raises(Retriable) as info:
        list(client.pending(destination_id))
    assert info.value.retry_after == 17 and not isinstance(info.value, Deferred)


def test_ratelimit_headers(client: SubscriberClient, service: FakeDeliveryService, destination_id: str) -> None:
    service.script.append(("/v1/submissions", httpx.Response(429, headers={"RateLimit-Limit": "10",
                                                                           "RateLimit-Remaining": "0",
                                                                           "RateLimit-Reset": "42"})))
    with pytest.raises(Retriable) as info:
        list(client.pending(destination_id))
    assert info.value.retry_after == 42
    sent = len(service.requests)
    with pytest.raises(Deferred) as deferred:  # nothing is sent until the reset
        list(client.pending(destination_id))
    assert len(service.requests) == sent and 0 < (deferred.value.retry_after or 0) <= 42


@pytest.mark.parametrize("failure, kind", [
    (httpx.Response(500), Retriable),
    (httpx.Response(403), Permanent),
    (httpx.ConnectError("refused"), Retriable),
])
def test_error_mapping(client: SubscriberClient, service: FakeDeliveryService, destination_id: str,
                       failure: Any, kind: type[Exception]) -> None:
    original = service.handle

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/submissions":
            if isinstance(failure, Exception):
                raise failure
            return failure  # type: ignore[no-any-return]
        return original(request)

    service.handle = handle  # type: ignore[method-assign]
    with pytest.raises(kind):
        list(client.pending(destination_id))


def test_bad_credentials_are_permanent(service: FakeDeliveryService, keys: KeyFiles, destination_id: str) -> None:
    service.script.append(("/token", httpx.Response(401, json={"error": "invalid_client"})))
    with SubscriberClient(config_for(keys, destination_id), transport=service.transport()) as c, \
            pytest.raises(Permanent, match="invalid_client"):
        list(c.pending(destination_id))


def test_token_refreshed_once_after_401(client: SubscriberClient, service: FakeDeliveryService,
                                        destination_id: str) -> None:
    service.script.append(("/v1/submissions", problem(401, "expired")))
    assert list(client.pending(destination_id)) == []
    assert service.token_requests == 2


def test_token_cache_refreshes_early(keys: KeyFiles, destination_id: str) -> None:
    fetched: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetched.append(1)
        return httpx.Response(200, json={"access_token": f"t{len(fetched)}", "expires_in": 300})

    now = [1000.0]
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        cache = TokenCache(config_for(keys, destination_id), http, clock=lambda: now[0])
        assert cache.token() == "t1"
        now[0] += 239  # refresh margin is 60 s
        assert cache.token() == "t1"
        now[0] += 1
        assert cache.token() == "t2"
        assert cache.token(renew=True) == "t3"


def test_unknown_destination_is_permanent(client: SubscriberClient) -> None:
    with pytest.raises(Permanent, match="not configured"):
        list(client.pending(str(uuid.uuid4())))


def test_accept_is_signed_and_idempotent(client: SubscriberClient, service: FakeDeliveryService, workdir: Path,
                                         enc_public: dict[str, Any], destination_id: str) -> None:
    s = service.add(build_submission(enc_public, destination_id, attachments={ATT: PDF}))
    got = client.fetch(ref_of(s), workdir)
    client.accept(got.ref, got.auth_tags)
    assert service.status[s.submission_id] == "accepted"  # the fake verified our SET with jwcrypto
    posts = [r for r in service.requests if r.method == "POST" and r.url.path.endswith("/events")]
    assert len(posts) == 1 and posts[0].headers["content-type"] == "application/jose"
    client.accept(got.ref, got.auth_tags)  # after a crash: the log already has it, nothing is sent
    assert len([r for r in service.requests if r.method == "POST" and r.url.path.endswith("/events")]) == 1
    with pytest.raises(Permanent, match="already carries accept-submission"):
        client.reject(got.ref, [hash_mismatch("data")])
    events = client.event_log(s.case_id, destination_id)
    assert [(e.name, e.verified) for e in events] == [("submit-submission", True), ("accept-submission", True)]
    assert events[1].payload["events"][ACCEPT]["authenticationTags"]["attachments"] == got.auth_tags.attachments


def test_409_is_resolved_by_reading_the_log(client: SubscriberClient, service: FakeDeliveryService, keys: KeyFiles,
                                            enc_public: dict[str, Any], destination_id: str) -> None:
    s = service.add(build_submission(enc_public, destination_id))
    ref = ref_of(s)
    key = load_private_key(keys.signing_private, "signing", where="t")
    # another worker rejected it between our read of the log and our POST
    service.handle(httpx.Request("POST", f"https://fake.test/v1/cases/{s.case_id}/events",
                                 headers={"authorization": "Bearer tok-0"},
                                 content=reject_set(key, ref, [hash_mismatch("data")])))

    def stale() -> tuple[str, httpx.Response]:
        return (r"/v1/cases/.*/events",
                httpx.Response(200, json={"eventLog": service.events[s.case_id][:1], "totalCount": 1}))

    service.script.append(stale())
    client.reject(ref, [hash_mismatch("data")])  # 409; the log shows the same decision: fine
    service.script.append(stale())
    with pytest.raises(Permanent, match="already carries reject-submission"):
        client.accept(ref, AuthTags("a", "b"))
    assert service.status[s.submission_id] == "rejected"


def test_409_without_a_decision_is_permanent(client: SubscriberClient, service: FakeDeliveryService,
                                             enc_public: dict[str, Any], destination_id: str) -> None:
    s = service.add(build_submission(enc_public, destination_id))
    service.script.append((r"/v1/cases/.*/events", httpx.Response(200, json={"eventLog": [], "totalCount": 0})))
    service.script.append((r"/v1/cases/.*/events", problem(409, "invalid-state-transition")))
    with pytest.raises(Permanent, match="409"):
        client.reject(ref_of(s), [hash_mismatch("data")])


def test_event_log_flags_forged_sets(client: SubscriberClient, service: FakeDeliveryService,
                                     enc_public: dict[str, Any], destination_id: str, other_keys: KeyFiles) -> None:
    s = service.add(build_submission(enc_public, destination_id))
    intruder = load_private_key(other_keys.signing_private, "signing", where="t")
    forged = accept_set(intruder, ref_of(s), AuthTags("a", "b"))  # "our" accept, signed with another key
    service.events[s.case_id].append(forged)
    service.events[s.case_id].append("not.a.set")
    events = client.event_log(s.case_id, destination_id)
    assert [(e.name, e.verified) for e in events] == [("submit-submission", True), ("accept-submission", False),
                                                      ("", False)]
    client.reject(ref_of(s), [hash_mismatch("data")])  # the forged accept does not count as a decision
    assert service.status[s.submission_id] == "rejected"
    assert client.event_log(s.case_id, destination_id)[-1].event == REJECT


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch, keys: KeyFiles, destination_id: str,
                                   service: FakeDeliveryService) -> None:
    monkeypatch.setenv("FC_ENC", keys.encryption_private.read_text())
    monkeypatch.setenv("FC_SIG", keys.signing_private.read_text())
    dest = DestinationConfig(id=destination_id, encryption_key_env="FC_ENC", signing_key_env="FC_SIG", tenant="t")
    config = config_for(keys, destination_id).model_copy(update={"destinations": [dest]})
    SubscriberClient(config, transport=service.transport()).close()
    monkeypatch.delenv("FC_SIG")
    with pytest.raises(Permanent, match=r"\$FC_SIG is not set"):
        SubscriberClient(config, transport=service.transport())


def test_config_hides_secrets_and_normalises_the_url(keys: KeyFiles, destination_id: str) -> None:
    config = config_for(keys, destination_id)
    assert config.submission_api_url == "https://fake.test" and "s3cret-client" not in repr(config)
    with pytest.raises(ValueError, match="exactly one"):
        DestinationConfig(id=destination_id, signing_key=keys.signing_private, tenant="t")


def test_encrypt_helper_roundtrip(enc_public: dict[str, Any]) -> None:
    assert encrypt(enc_public, b"x").count(".") == 4
