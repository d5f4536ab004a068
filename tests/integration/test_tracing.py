"""Tracing: one trace from the REST intake through the worker to the delivery, carried by the message row;
and nothing at all without ``[tracing] endpoint``."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Engine

from hub import store
from tests.support import SENDER_TOKEN, XBAU_VALID, hub_config, running, wait_for
from xhub.config import TracingConfig
from xhub.runtime import build_app
from xhub.tracing import setup_tracing


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    shutdown = setup_tracing(TracingConfig(), exporter=exporter)
    assert shutdown is not None
    yield exporter
    shutdown()


def test_one_trace_from_intake_to_delivery(spans: InMemorySpanExporter, db_url: str, engine: Engine,
                                           tmp_path: Path) -> None:
    config = hub_config(db_url, tmp_path, storage={"blob_dir": str(tmp_path / "blobs")})
    with running(build_app(config, engine, embedded_worker=True)) as url:
        r = httpx.post(f"{url}/api/v1/messages", content=XBAU_VALID.read_bytes(), headers={
            "Authorization": f"Bearer {SENDER_TOKEN}", "Content-Type": "application/xml"})
        assert r.status_code == 202, r.text
        message_id = r.json()["id"]

        def finished() -> bool:
            message = store.get(engine, uuid.UUID(message_id))
            return message is not None and message.status == "acknowledged"
        wait_for(finished)
    finished_spans = spans.get_finished_spans()
    by_name = {s.name: s for s in finished_spans}
    assert {"intake", "process", "stage validate", "stage route", "stage deliver", "deliver"} <= set(by_name)
    intake, process, deliver = by_name["intake"], by_name["process"], by_name["deliver"]
    trace = intake.context.trace_id
    assert process.context.trace_id == trace and deliver.context.trace_id == trace  # across the database
    assert process.parent is not None and process.parent.span_id == intake.context.span_id
    assert by_name["stage deliver"].parent.span_id == process.context.span_id
    assert deliver.parent.span_id == by_name["stage deliver"].context.span_id
    assert process.attributes["message_id"] == message_id and deliver.attributes["target"] == "outbox"
    stored = store.get(engine, uuid.UUID(message_id))
    assert stored is not None and (stored.attributes or {})["traceparent"].split("-")[1] == f"{trace:032x}"


def test_without_an_endpoint_nothing_is_imported_or_stored(db_url: str, engine: Engine, tmp_path: Path) -> None:
    probe = ("import sys; import xhub.cli; from xhub.tracing import setup_tracing; from xhub.config import "
             "TracingConfig; assert setup_tracing(TracingConfig()) is None; "
             "assert not [m for m in sys.modules if m.startswith('opentelemetry.sdk')], 'SDK imported'")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    config = hub_config(db_url, tmp_path)
    with running(build_app(config, engine, embedded_worker=False)) as url:
        r = httpx.post(f"{url}/api/v1/messages", content=XBAU_VALID.read_bytes(), headers={
            "Authorization": f"Bearer {SENDER_TOKEN}", "Content-Type": "application/xml"})
    stored = store.get(engine, uuid.UUID(r.json()["id"]))
    assert stored is not None and "traceparent" not in (stored.attributes or {})
