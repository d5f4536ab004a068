"""Metrics, logs and the shipped alerts and dashboard, on a real hub: ``xhub demo`` runs the samples, then an
``xhub serve`` without a worker and a separate ``xhub worker`` process share its database and metrics folder.

* every log line of the demo is a JSON object, and none holds a personal-data string of the samples;
* ``/metrics`` of the serve process shows what the worker process counted (the stage histogram: only the
  worker ran stages) together with its own (the intake), and the database's facts;
* every metric that ``deploy/prometheus/alerts.yml`` and ``deploy/grafana/xoev-hub.json`` name is in that scrape.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.personal_data import SAMPLES, personal_strings
from tests.support import ROOT, wait_for
from xhub.runtime import free_port

pytestmark = pytest.mark.slow

ENV = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}


@dataclass
class Demo:
    workdir: Path
    stdout: str
    stderr: str
    endpoints: dict[str, Any]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Demo:
    workdir = tmp_path_factory.mktemp("obs") / "demo"
    result = subprocess.run(
        [sys.executable, "-m", "xhub", "--log-level", "debug", "--log-format", "json", "demo", "--once", "--port",
         "0", "--workdir", str(workdir)],
        cwd=workdir.parent, capture_output=True, text=True, timeout=300, env=ENV)
    assert result.returncode == 0, result.stdout + result.stderr
    return Demo(workdir, result.stdout, result.stderr, json.loads((workdir / "endpoints.json").read_text()))


def test_the_samples_hold_the_personal_data_the_scan_looks_for() -> None:
    strings = set(personal_strings())
    assert {"Musterfrau", "Erika", "Maximilianstraße", "Tibor", "Karl-Marx-Str.", "1234567890000",
            "wvwzzz1jz xw000001", "DE02120300000000202051"} <= strings, strings


def test_logs_are_json_lines_with_message_context_and_no_personal_data(demo: Demo) -> None:
    lines = [json.loads(line) for line in demo.stderr.splitlines() if line.strip()]
    assert len(lines) > 10
    assert all({"event", "level", "logger", "timestamp"} <= set(line) for line in lines)
    in_stage = [line for line in lines if {"message_id", "tenant", "stage"} <= set(line)]
    assert in_stage, "no log line carries the message, tenant and stage it is about"
    hits = sorted(s for s in personal_strings() if s in demo.stderr)
    assert hits == [], f"personal data in the logs: {hits}"


def test_text_logs_for_a_terminal(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "xhub", "--log-format", "text", "-c", str(tmp_path / "none.toml"),
                             "db", "upgrade"], cwd=tmp_path, capture_output=True, text=True, timeout=60, env=ENV)
    assert not result.stderr.lstrip().startswith("{"), result.stderr


@pytest.fixture(scope="module")
def serve(demo: Demo) -> Iterator[str]:
    """``xhub serve --no-worker`` on the demo's configuration (its stand-ins are gone; the file target works)."""
    port = free_port()
    log = (demo.workdir.parent / "serve.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "xhub", "-c", str(demo.workdir / "hub.toml"), "serve",
                                "--no-worker", "--port", str(port)], cwd=demo.workdir.parent, env=ENV,
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/health/live", timeout=2).status_code == 200
        except httpx.HTTPError:
            return process.poll() is not None
    wait_for(up, timeout=60, interval=0.2)
    assert process.poll() is None, (demo.workdir.parent / "serve.log").read_text()
    yield url
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)
    log.close()


def scrape(url: str, **headers: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    r = httpx.get(f"{url}/metrics", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(r.text):
        samples.setdefault(family.name, [])
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_metrics_of_serve_and_a_worker_process_in_one_scrape(demo: Demo, serve: str) -> None:
    body = (SAMPLES / "xbau-eingangsbestaetigung.xml").read_bytes()
    r = httpx.post(f"{serve}/api/v1/messages", content=body, headers={
        "Authorization": f"Bearer {demo.endpoints['sender_token']}", "Content-Type": "application/xml",
        "Idempotency-Key": f"obs-{uuid.uuid4()}"})
    assert r.status_code == 202, r.text
    worker = subprocess.run([sys.executable, "-m", "xhub", "-c", str(demo.workdir / "hub.toml"), "worker",
                             "--exit-when-idle"], cwd=demo.workdir.parent, capture_output=True, text=True,
                            timeout=120, env=ENV)
    assert worker.returncode == 0, worker.stderr
    assert "stopped after 1 messages" in worker.stderr, worker.stderr

    samples = scrape(serve)
    stage_counts = {labels["stage"]: value for labels, value in samples["xhub_stage_duration_seconds_count"]}
    assert stage_counts.get("deliver", 0) >= 1 and stage_counts.get("validate", 0) >= 1  # only the worker ran stages
    assert "xhub_stage_duration_seconds_bucket" in samples  # a histogram
    statuses = {(labels["status"], labels["channel"]): value for labels, value in samples["xhub_messages_total"]}
    assert statuses[("received", "rest")] >= 1  # counted by serve's intake
    assert statuses[("acknowledged", "rest")] >= 1  # counted by the worker process
    delivered = [v for labels, v in samples["xhub_delivery_attempts_total"]
                 if labels == {"target": "bauamt-dms", "outcome": "delivered"}]
    assert delivered and delivered[0] >= 1
    assert samples["xhub_store_up"] == [({}, 1.0)]
    assert ({"kind": "worker"}, 0.0) in samples["xhub_loops_running"]  # the worker process has ended
    expiries = {(labels["kind"], labels["name"]): value for labels, value in samples["xhub_key_expiry_seconds"]}
    destination = demo.endpoints["fitconnect"]["destination_id"]
    assert 700 * 86400 < expiries[("fitconnect_encryption", destination)] <= 730 * 86400
    assert samples["xhub_fitconnect_oldest_waiting_seconds"] == [({"destination": destination}, 0.0)]
    assert samples["xhub_purged_messages_total"] == [({}, 0.0)]
    text = httpx.get(f"{serve}/metrics").text
    assert not any(s in text for s in personal_strings())


def named_metrics(expression: str) -> set[str]:
    return set(re.findall(r"\bxhub_[a-z0-9_]+", expression))


def test_every_metric_the_alerts_and_the_dashboard_name_exists(demo: Demo, serve: str) -> None:
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    rules = [rule for group in alerts["groups"] for rule in group["rules"]]
    assert {r["alert"] for r in rules} >= {"XhubOldestWaitingMessage", "XhubDeadMessages", "XhubCircuitOpen",
                                           "XhubPollerSilent", "XhubFitConnectSubmissionWaiting",
                                           "XhubKeyExpiringSoon"}
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "xoev-hub.json").read_text())
    expressions = [r["expr"] for r in rules] + [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    expressions += [v["query"] for v in dashboard["templating"]["list"] if "xhub_" in str(v.get("query"))]
    named = set().union(*(named_metrics(e) for e in expressions))
    assert len(named) >= 15
    scraped = set(scrape(serve))
    missing = sorted(named - scraped)
    assert missing == [], f"named in alerts.yml or the dashboard but not exposed: {missing}"


def test_the_demo_tells_where_its_metrics_are(demo: Demo) -> None:
    assert demo.endpoints["metrics_url"] == f"{demo.endpoints['hub_url']}/metrics"
    folder = demo.workdir / "metrics"
    assert folder.is_dir() and folder.stat().st_mode & 0o777 == 0o700
