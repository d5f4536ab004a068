"""Deadline and key watch, ``/health/ready`` warnings and ``/metrics`` in one process, on SQLite and PostgreSQL.

* a FIT-Connect submission the poller could not fetch for two days shows as waiting, with the time left
  before the delivery service escalates it; a fetched one without an answer shows too; both warn in
  ``/health/ready`` and leave it ``200``;
* a target's client certificate that expires tomorrow warns, and is in ``xhub_key_expiry_seconds``;
* ``/metrics`` with ``[metrics] token_sha256`` wants the bearer token;
* queue depth and the oldest waiting message come from the database.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, insert, update

from channels.fitconnect import KeyFiles
from hub import store
from hub.auth import hash_token
from hub.models import IntakeFailure, Message, utcnow
from tests.fitconnect_keys import keys  # noqa: F401  (a fixture)
from tests.support import accept_many, hub_config, running, wait_for
from tests.tls import make_pki
from xhub.logsetup import setup_logging
from xhub.runtime import build_app

DESTINATION = "5f0a3c1e-1b2d-4c3e-8f4a-0123456789ab"
SCRAPER_TOKEN = "scraper-token-for-tests"


def gauges(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_deadlines_keys_and_queue_in_metrics_and_ready(db_url: str, engine: Engine, tmp_path: Path,
                                                       keys: KeyFiles) -> None:  # noqa: F811
    pki = make_pki(tmp_path)
    config = hub_config(
        db_url, tmp_path, storage={"blob_dir": str(tmp_path / "blobs")}, limits={"blob_min_free_bytes": 0},
        worker={"embedded": False},
        targets={"outbox": {"adapter": "file", "directory": str(tmp_path / "outbox")},
                 "dms": {"adapter": "rest", "url": "https://127.0.0.1:9/in", "client_cert": str(pki.client_cert),
                         "client_key": str(pki.client_key)}},
        fitconnect={"token_url": "http://127.0.0.1:9/token", "submission_api_url": "http://127.0.0.1:9",
                    "client_id": "hub", "client_secret": "s", "poll_interval_seconds": 3600,
                    "destinations": [{"id": DESTINATION, "tenant": "memmingen",
                                      "encryption_key": str(keys.encryption_private),
                                      "signing_key": str(keys.signing_private)}]},
        metrics={"token_sha256": hash_token(SCRAPER_TOKEN), "refresh_seconds": 0})
    now = utcnow()
    with engine.begin() as conn:
        conn.execute(insert(IntakeFailure).values(
            channel="fitconnect", external_id="11111111-1111-4111-8111-111111111111", case_id="c", source=DESTINATION,
            attempts=9, unexpected=0, first_failed_at=now - timedelta(days=2), last_failed_at=now, last_error="x"))
    fetched, _ = store.accept(engine, store.NewMessage(
        "memmingen", "fitconnect", "fitconnect", [store.Part("payload", "application/json", b"{}")],
        external_id="22222222-2222-4222-8222-222222222222", attributes={"destination": DESTINATION}),
        actor="fitconnect:test")
    waiting = accept_many(engine, 2)
    with engine.begin() as conn:  # fetched 30 h ago, the REST messages due for 20 minutes
        conn.execute(update(Message).where(Message.id == fetched.id).values(created_at=now - timedelta(hours=30)))
        conn.execute(update(Message).where(Message.id.in_(waiting))
                     .values(next_attempt_at=now - timedelta(minutes=20)))

    with running(build_app(config, engine, embedded_worker=False)) as url:
        assert httpx.get(f"{url}/metrics").status_code == 401
        assert httpx.get(f"{url}/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        r = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {SCRAPER_TOKEN}"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        found = gauges(r.text)
        ready = httpx.get(f"{url}/health/ready")

    dest = (("destination", DESTINATION),)
    assert 2 * 86400 - 60 < found["xhub_fitconnect_oldest_waiting_seconds"][dest] < 2 * 86400 + 60
    assert 86400 - 60 < found["xhub_fitconnect_escalation_seconds_left"][dest] < 86400 + 60
    assert 12 * 86400 - 60 < found["xhub_fitconnect_auto_reject_seconds_left"][dest] < 12 * 86400 + 60
    assert 30 * 3600 - 60 < found["xhub_fitconnect_oldest_unanswered_seconds"][dest] < 30 * 3600 + 60
    expiry = found["xhub_key_expiry_seconds"]
    assert 0 < expiry[(("kind", "client_certificate"), ("name", "dms"))] < 86400
    assert 729 * 86400 < expiry[(("kind", "fitconnect_signing"), ("name", DESTINATION))] <= 730 * 86400
    assert found["xhub_queue_due_messages"][()] == 3
    assert 20 * 60 - 5 < found["xhub_queue_oldest_waiting_seconds"][()] < 20 * 60 + 60
    assert found["xhub_queue_messages"][(("channel", "rest"), ("route", ""), ("status", "received"),
                                         ("tenant", "memmingen"))] == 2
    assert found["xhub_circuit_open"] == {(("target", "dms"),): 0.0, (("target", "outbox"),): 0.0}
    assert found["xhub_loops_running"] == {(("kind", "fitconnect-poller"),): 1, (("kind", "worker"),): 0}
    assert (("kind", "fitconnect-poller"),) in found["xhub_loop_last_success_age_seconds"]
    assert found["xhub_polls_total"][(("channel", "fitconnect"), ("result", "failed"))] >= 1

    # warnings, not a reason to take the hub out of its load balancer (only the missing poller/worker is)
    body = ready.json()
    components = body.get("components", {})
    assert components["keys"]["status"] == "warning" and "client_certificate dms expires in" in \
        components["keys"]["reason"]
    assert components["fitconnect_deadlines"]["status"] == "warning"
    assert "waited 48 h to be fetched" in components["fitconnect_deadlines"]["reason"]
    assert "waited 30 h for its answer" in components["fitconnect_deadlines"]["reason"]
    assert set(body["detail"].split("; ")) >= {"workers: no worker is running: accepted messages are not processed"}
    assert "keys" not in body["detail"] and "fitconnect_deadlines" not in body["detail"]


def test_ready_stays_200_with_warnings(db_url: str, engine: Engine, tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    config = hub_config(
        db_url, tmp_path, storage={"blob_dir": str(tmp_path / "blobs")}, limits={"blob_min_free_bytes": 0},
        targets={"dms": {"adapter": "rest", "url": "https://127.0.0.1:9/in", "client_cert": str(pki.client_cert),
                         "client_key": str(pki.client_key)}},
        routes=[{"name": "all", "targets": ["dms"]}])
    with running(build_app(config, engine, embedded_worker=True)) as url:
        def ready() -> httpx.Response:
            return httpx.get(f"{url}/health/ready")
        wait_for(lambda: ready().status_code == 200)
        body = ready().json()
    assert body["status"] == "ok" and body["components"]["keys"]["status"] == "warning"
    assert body["warnings"] == [body["warnings"][0]] and body["warnings"][0].startswith("keys: client_certificate dms")


def test_an_exception_is_logged_without_its_text(capsys: object) -> None:
    setup_logging("info", "json", force=True)
    try:
        try:
            raise ValueError("Erika Musterfrau, Maximilianstraße 12a")
        except ValueError:
            logging.getLogger("test").exception("parsing failed")
    finally:
        for handler in [h for h in logging.getLogger().handlers if type(h).__name__ == "_Stderr"]:
            logging.getLogger().removeHandler(handler)
        logging.getLogger().setLevel(logging.WARNING)
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert '"exception": "ValueError"' in err and "test_an_exception_is_logged_without_its_text" in err
    assert "Musterfrau" not in err and "Maximilian" not in err
