"""SubmissionApi and TokenCache in isolation: how answers of the delivery service map onto the hub's errors.

Each test puts an ``httpx.MockTransport`` under the one class it tests; the whole client against a delivery
service is tested on the emulator (tests/integration/fitconnect/test_client.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from channels.fitconnect import DestinationConfig, FitConnectConfig, KeyFiles
from channels.fitconnect.api import SubmissionApi
from channels.fitconnect.token import TokenCache
from hub.errors import Deferred, Permanent, Retriable

Handler = Callable[[httpx.Request], httpx.Response]


class Tokens:
    """The bearer tokens handed out: ``renew`` fetches a new one."""

    def __init__(self) -> None:
        self.issued = ["t1"]

    def __call__(self, renew: bool = False) -> str:
        if renew:
            self.issued.append(f"t{len(self.issued) + 1}")
        return self.issued[-1]


def api_with(handler: Handler, clock: Callable[[], float] = lambda: 1000.0) -> tuple[SubmissionApi, list[str]]:
    sent: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers.get("authorization", ""))
        return handler(request)

    http = httpx.Client(transport=httpx.MockTransport(record))
    return SubmissionApi("https://fc.test", http, Tokens(), clock), sent


def listing(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"submissions": []})


def test_429_with_retry_after_is_retriable_not_deferred() -> None:
    api, _ = api_with(lambda r: httpx.Response(429, headers={"Retry-After": "17"}))
    with pytest.raises(Retriable) as info:
        api.get_json("/v1/submissions", what="list")
    assert info.value.retry_after == 17 and not isinstance(info.value, Deferred)


def test_an_exhausted_rate_limit_defers_without_sending() -> None:
    now = [1000.0]
    answers = [httpx.Response(429, headers={"RateLimit-Limit": "10", "RateLimit-Remaining": "0",
                                            "RateLimit-Reset": "42"})]
    api, sent = api_with(lambda r: answers.pop(0) if answers else listing(r), clock=lambda: now[0])
    with pytest.raises(Retriable) as info:
        api.get_json("/v1/submissions", what="list")
    assert info.value.retry_after == 42
    with pytest.raises(Deferred) as deferred:  # nothing is sent until the reset
        api.get_json("/v1/submissions", what="list")
    assert len(sent) == 1 and 0 < (deferred.value.retry_after or 0) <= 42
    now[0] += 43
    assert api.get_json("/v1/submissions", what="list") == {"submissions": []}


def _raise_connect_error(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("refused", request=request)


@pytest.mark.parametrize("handler, kind", [
    (lambda r: httpx.Response(500), Retriable),
    (lambda r: httpx.Response(503, json={"type": "x", "title": "busy"}), Retriable),
    (lambda r: httpx.Response(403), Permanent),
    (lambda r: httpx.Response(404, json={"type": "urn:x:submission-not-found"}), Permanent),
    (_raise_connect_error, Retriable),
    (lambda r: httpx.Response(200, content=b"{not json"), Retriable),  # the service's fault, not the sender's
], ids=["500", "503", "403", "404", "connect-error", "malformed-answer"])
def test_answers_map_onto_the_hubs_errors(handler: Handler, kind: type[Exception]) -> None:
    api, _ = api_with(handler)
    with pytest.raises(kind):
        api.get_json("/v1/submissions", what="list")


def test_a_401_fetches_the_token_again_once() -> None:
    answers = [httpx.Response(401)]
    api, sent = api_with(lambda r: answers.pop(0) if answers else listing(r))
    assert api.get_json("/v1/submissions", what="list") == {"submissions": []}
    assert sent == ["Bearer t1", "Bearer t2"]


def test_a_second_401_is_permanent() -> None:
    api, sent = api_with(lambda r: httpx.Response(401))
    with pytest.raises(Permanent, match="refused twice"):
        api.get_json("/v1/submissions", what="list")
    assert len(sent) == 2


def config_for(keys: KeyFiles) -> FitConnectConfig:
    destination = DestinationConfig(id=str(uuid.uuid4()), encryption_key=keys.encryption_private,
                                    signing_key=keys.signing_private, tenant="memmingen")
    return FitConnectConfig(token_url="https://auth.test/token", submission_api_url="https://fc.test/v1",
                            client_id="hub", client_secret="s3cret-client", destinations=[destination])


def test_token_cache_refreshes_early(keys: KeyFiles) -> None:
    fetched: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetched.append(1)
        return httpx.Response(200, json={"access_token": f"t{len(fetched)}", "expires_in": 300})

    now = [1000.0]
    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        cache = TokenCache(config_for(keys), http, clock=lambda: now[0])
        assert cache.token() == "t1"
        now[0] += 239  # refresh margin is 60 s
        assert cache.token() == "t1"
        now[0] += 1
        assert cache.token() == "t2"
        assert cache.token(renew=True) == "t3"


def test_bad_credentials_are_permanent(keys: KeyFiles) -> None:
    def handler(request: httpx.Request) -> Any:
        return httpx.Response(401, json={"error": "invalid_client"})

    with httpx.Client(transport=httpx.MockTransport(handler)) as http, \
            pytest.raises(Permanent, match="invalid_client"):
        TokenCache(config_for(keys), http).token()
