"""The REST adapter over real TLS on loopback: mutual TLS works, a missing client certificate does not."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from adapters.rest import RestAdapter, RestConfig
from hub.errors import Permanent, Retriable
from hub.ports import DeliveryRequest
from sandbox.recorder import create_recorder
from tests.tls import make_pki
from xhub.runtime import serve_in_thread


def test_mutual_tls(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    tls = {"ssl_certfile": str(pki.server_cert), "ssl_keyfile": str(pki.server_key),
           "ssl_ca_certs": str(pki.ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    request = DeliveryRequest("m1", "t", "k1", b"<a/>", "application/xml")
    with serve_in_thread(create_recorder(), **tls) as url:
        assert url.startswith("https://")
        good = RestAdapter(RestConfig(url=f"{url}/inbox/x", ca_bundle=pki.ca, client_cert=pki.client_cert,
                                      client_key=pki.client_key))
        assert good.deliver(request).status_code == 201
        good.close()
        anonymous = RestAdapter(RestConfig(url=f"{url}/inbox/x", ca_bundle=pki.ca))
        with pytest.raises(Retriable):  # the handshake fails: a transport error, as with any TLS failure
            anonymous.deliver(request)
        anonymous.close()
        untrusting = RestAdapter(RestConfig(url=f"{url}/inbox/x", client_cert=pki.client_cert,
                                            client_key=pki.client_key))
        with pytest.raises(Retriable, match="ConnectError"):  # the system store does not know our test CA
            untrusting.deliver(request)
        untrusting.close()
    with pytest.raises(Permanent, match="cannot load the TLS material"):
        RestAdapter(RestConfig(url="https://x/", client_cert=tmp_path / "nope.pem", client_key=tmp_path / "nope.key"))
