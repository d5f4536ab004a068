"""The pipeline run by a real worker on both backends, delivering over real loopback HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, update

from hub import operations, store
from hub.models import Message, utcnow
from hub.statemachine import Status
from hub.worker import Worker
from sandbox.recorder import create_recorder
from tests.support import XBAU_INVALID, XBAU_VALID, hub_config, running
from xhub import registry
from xhub.runtime import make_worker


@pytest.fixture
def sink() -> Iterator[str]:
    with running(create_recorder()) as url:
        yield url


def _submit(engine: Engine, body: bytes, content_type: str = "application/xml") -> store.Message:
    message, _ = store.accept(
        engine, store.NewMessage("memmingen", "rest", "portal", [store.Part("payload", content_type, body)]),
        actor="sender:portal",
    )
    return message


def _run(config: object, engine: Engine) -> Worker:
    worker = make_worker(config, engine)  # type: ignore[arg-type]
    worker.run(exit_when_idle=True)
    return worker


def _make_due(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(update(Message).where(Message.status == "retry_wait").values(next_attempt_at=utcnow()))


def _trail(engine: Engine, message_id: object) -> list[tuple[str | None, str | None]]:
    return [(e.from_status, e.to_status) for e in store.events(engine, message_id) if e.kind == "transition"]  # type: ignore[arg-type]


def test_happy_path_to_file_target(engine: Engine, db_url: str, tmp_path: Path) -> None:
    config = hub_config(db_url, tmp_path)
    message = _submit(engine, XBAU_VALID.read_bytes())
    _run(config, engine)
    done = store.get(engine, message.id)
    assert done is not None and done.status == "acknowledged"
    assert done.message_type == "prozessnachrichten.eingangsbestaetigung.1120"
    assert _trail(engine, message.id) == [
        (None, "received"), ("received", "validated"), ("validated", "routed"),
        ("routed", "delivered"), ("delivered", "acknowledged"),
    ]
    written = tmp_path / "outbox" / f"xhub-{message.id}-outbox.xml"
    assert written.read_bytes() == XBAU_VALID.read_bytes()
    assert all(e.actor.startswith("worker:") for e in store.events(engine, message.id)[1:])


def test_malformed_payload_is_rejected_not_retried(engine: Engine, db_url: str, tmp_path: Path) -> None:
    message = _submit(engine, b"<a><b></a>")
    _run(hub_config(db_url, tmp_path), engine)
    done = store.get(engine, message.id)
    assert done is not None and done.status == "rejected" and done.attempts == 0
    assert "Not well-formed XML" in (done.last_error or "")


def test_no_route_is_kept_as_dead_with_reason(engine: Engine, db_url: str, tmp_path: Path) -> None:
    config = hub_config(db_url, tmp_path, routes=[{"name": "only-xdomea", "match": {"standard": "urn:xdomea"},
                                                    "targets": ["outbox"]}])
    message = _submit(engine, XBAU_VALID.read_bytes())
    _run(config, engine)
    done = store.get(engine, message.id)
    assert done is not None and done.status == "dead" and done.resume_status == "validated"
    last = store.events(engine, message.id)[-1]
    assert "no route matches" in last.reason
    assert "standard is" in str(last.detail["not_matched"]["only-xdomea"])  # type: ignore[index]


def test_target_outage_retries_then_delivers_exactly_once(engine: Engine, db_url: str, tmp_path: Path,
                                                           sink: str) -> None:
    config = hub_config(db_url, tmp_path, targets={"registry": {"adapter": "rest", "url": f"{sink}/inbox/cases"}},
                        routes=[{"name": "all", "targets": ["registry"]}],
                        retry={"max_attempts": 5, "base_delay_seconds": 0, "jitter": 0})
    httpx.post(f"{sink}/_behaviour", json={"fail_status": 503, "fail_count": 2})
    message = _submit(engine, XBAU_VALID.read_bytes())
    for _ in range(3):
        _run(config, engine)
        _make_due(engine)
    done = store.get(engine, message.id)
    assert done is not None and done.status == "acknowledged" and done.attempts == 2
    received = httpx.get(f"{sink}/_received").json()
    assert received["count"] == 1 and received["items"][0]["idempotency_key"] == f"xhub-{message.id}-registry"
    trail = _trail(engine, message.id)
    assert trail.count(("routed", "retry_wait")) == 2 and trail.count(("retry_wait", "routed")) == 2
    waits = [e for e in store.events(engine, message.id) if e.to_status == "retry_wait"]
    assert "503" in waits[0].reason and waits[0].detail["retry_at"]  # type: ignore[index]


def test_retry_budget_spent_goes_dead_and_requeue_finishes(engine: Engine, db_url: str, tmp_path: Path,
                                                             sink: str) -> None:
    config = hub_config(db_url, tmp_path, targets={"registry": {"adapter": "rest", "url": f"{sink}/inbox/cases"}},
                        routes=[{"name": "all", "targets": ["registry"],
                                 "retry": {"max_attempts": 2, "base_delay_seconds": 0, "jitter": 0}}])
    httpx.post(f"{sink}/_behaviour", json={"fail_status": 502, "fail_count": 2})
    message = _submit(engine, XBAU_VALID.read_bytes())
    _run(config, engine)
    _make_due(engine)
    _run(config, engine)
    dead = store.get(engine, message.id)
    assert dead is not None and dead.status == "dead"
    assert "retry budget spent after 2 attempts" in store.events(engine, message.id)[-1].reason
    operations.requeue(engine, message.id, operator="anna", reason="registry is back")
    _run(config, engine)
    done = store.get(engine, message.id)
    assert done is not None and done.status == "acknowledged"
    requeue = [e for e in store.events(engine, message.id) if e.actor == "operator:anna"]
    assert requeue and requeue[0].reason == "requeued by operator anna: registry is back"


def test_permanent_target_error_goes_dead_with_the_answer(engine: Engine, db_url: str, tmp_path: Path,
                                                            sink: str) -> None:
    config = hub_config(db_url, tmp_path, targets={"registry": {"adapter": "rest", "url": f"{sink}/inbox/cases"}},
                        routes=[{"name": "all", "targets": ["registry"]}])
    httpx.post(f"{sink}/_behaviour", json={"fail_status": 400, "fail_count": 1})
    message = _submit(engine, XBAU_VALID.read_bytes())
    _run(config, engine)
    done = store.get(engine, message.id)
    assert done is not None and done.status == "dead" and done.attempts == 0
    (delivery,) = store.deliveries(engine, message.id)
    assert delivery.status == "failed" and delivery.response["status_code"] == 400  # type: ignore[index]
    assert "told to fail" in delivery.response["excerpt"]  # type: ignore[index]


def test_fan_out_partial_failure_redoes_only_the_failed_target(engine: Engine, db_url: str, tmp_path: Path,
                                                                 sink: str) -> None:
    config = hub_config(
        db_url, tmp_path,
        targets={"dms": {"adapter": "file", "directory": str(tmp_path / "dms")},
                 "registry": {"adapter": "rest", "url": f"{sink}/inbox/cases"}},
        routes=[{"name": "both", "targets": ["dms", "registry"]}],
    )
    httpx.post(f"{sink}/_behaviour", json={"fail_status": 503, "fail_count": 1})
    message = _submit(engine, XBAU_VALID.read_bytes())
    _run(config, engine)
    assert store.get(engine, message.id).status == "retry_wait"  # type: ignore[union-attr]
    states = {d.target: d.status for d in store.deliveries(engine, message.id)}
    assert states == {"dms": "delivered", "registry": "failed"}
    _make_due(engine)
    _run(config, engine)
    assert store.get(engine, message.id).status == "acknowledged"  # type: ignore[union-attr]
    attempts = {d.target: d.attempts for d in store.deliveries(engine, message.id)}
    assert attempts == {"dms": 1, "registry": 2}


def test_misconfigured_target_is_refused_before_any_delivery(tmp_path: Path) -> None:
    """A target whose settings do not fit its adapter stops the configuration from loading (it used to be
    found at the first delivery, which sent that message to dead)."""
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"targets\.registry\.url\n  String should match pattern"):
        hub_config(f"sqlite:///{tmp_path / 'hub.db'}", tmp_path, targets={"registry": {"adapter": "rest",
                                                                                   "url": "ftp://nope"}},
                   routes=[{"name": "all", "targets": ["registry"]}])


def test_status_is_the_only_way(engine: Engine, db_url: str, tmp_path: Path) -> None:
    """A message already taken by another worker's transition is not processed twice by a stale one."""
    from hub.pipeline.runner import Runner
    from hub.routing import RuleHolder

    config = hub_config(db_url, tmp_path)
    message = _submit(engine, XBAU_VALID.read_bytes())
    runner = Runner(config, engine, "w-stale", RuleHolder(config), build_adapter=registry.build_adapter,
                    channels=registry.channels(config))  # never claimed it: holds no lease
    from hub.pipeline.runner import LeaseLost

    with pytest.raises(LeaseLost, match="w-stale"):
        runner.process(message.id)
    assert store.get(engine, message.id).status == Status.RECEIVED  # type: ignore[union-attr]
    assert len(store.events(engine, message.id)) == 1  # the stale worker left no trace


XOEV = Path(__file__).resolve().parents[1] / "fixtures" / "xoev"


def test_valid_message_records_what_it_is(engine: Engine, db_url: str, tmp_path: Path) -> None:
    message = _submit(engine, XBAU_VALID.read_bytes())
    _run(hub_config(db_url, tmp_path), engine)
    done = store.get(engine, message.id)
    assert done is not None and done.status == "acknowledged" and done.verdict == "valid"
    assert (done.standard, done.standard_version) == ("XBau", "2.6")
    assert done.xoev_message_uuid  # from nachrichtenkopf.g2g
    validated = next(e for e in store.events(engine, message.id) if e.to_status == "validated")
    assert validated.detail["report"]["verdict"] == "valid"  # type: ignore[index]


def test_schema_invalid_message_is_rejected_with_the_report(engine: Engine, db_url: str, tmp_path: Path) -> None:
    message = _submit(engine, XBAU_INVALID.read_bytes())
    _run(hub_config(db_url, tmp_path), engine)
    done = store.get(engine, message.id)
    assert done is not None and done.status == "rejected" and done.verdict == "invalid"
    assert done.standard == "XBau" and done.attempts == 0  # kept even though it was rejected
    last = store.events(engine, message.id)[-1]
    findings = last.detail["report"]["findings"]  # type: ignore[index]
    assert findings[0]["severity"] == "error" and findings[0]["line"] and findings[0]["path"]
    assert not (tmp_path / "outbox").exists()


def test_code_list_violation_is_rejected(engine: Engine, db_url: str, tmp_path: Path) -> None:
    sample = next((XOEV / "xdomea-3.0.0").glob("*0503.xml"))
    message = _submit(engine, sample.read_bytes())
    _run(hub_config(db_url, tmp_path), engine)
    done = store.get(engine, message.id)
    assert done is not None and done.status == "rejected"
    assert "code '002' is not in code list" in (done.last_error or "")


@pytest.mark.parametrize(("policy", "final"), [("pass", "acknowledged"), ("reject", "rejected")])
def test_route_policy_decides_about_unchecked_messages(engine: Engine, db_url: str, tmp_path: Path,
                                                       policy: str, final: str) -> None:
    config = hub_config(db_url, tmp_path, routes=[{"name": "trade", "match": {"standard": "XGewerbeanzeige"},
                                                   "targets": ["outbox"], "not_checked": policy}])
    message = _submit(engine, (XOEV / "xgewerbeanzeige" / "xgwa2.2-valid.xml").read_bytes())
    _run(config, engine)
    done = store.get(engine, message.id)
    assert done is not None and done.status == final and done.verdict == "not_checked"
    assert (done.standard, done.standard_version) == ("XGewerbeanzeige", "2.2")
    validated = next(e for e in store.events(engine, message.id) if e.to_status == "validated")
    assert "not installed" in validated.reason
    if final == "rejected":
        assert "accepts only checked messages" in (done.last_error or "")
