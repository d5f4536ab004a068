"""``xhub demo``: the hub's main job end to end, on SQLite, against local stand-ins.

It writes a complete configuration to ``var/demo/hub.toml`` (fresh database each run), starts a recording
HTTP stand-in for the specialist procedures and the hub (API + embedded worker), submits the samples in
``samples/`` over the real REST intake, waits for each to reach an end state and prints what happened.
``--once`` then exits 0 only if every sample reached the state ``samples.toml`` expects; without it the
hub keeps running so that you can look around (``xhub -c var/demo/hub.toml messages list``).

Payloads, attachments and blobs are sealed with a master key the demo makes (``master.key``, 0600).
The work folder holds tokens, client secrets, private keys and the samples' personal data, so the demo
runs with umask 077: every folder it creates is 0700 and every file 0600, including the files the
stand-ins, the emulator and the hub write there, and its own files are created 0600 from the start
(``os.open``), never chmod-ed afterwards. It only ever deletes a folder it made itself (a marker file says
so): ``--workdir ~`` is refused, not emptied.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import threading
import time
import tomllib
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import Engine

from hub import users
from hub.auth import hash_token, new_token
from hub.sealing import MasterKey
from hub.statemachine import TERMINAL
from hub.users import Role
from sandbox.demo import fitconnect as fitconnect_demo
from sandbox.recorder import create_recorder
from sandbox.trade_register import create_trade_register
from sandbox.vehicle_registry import create_vehicle_registry
from xhub.config import HubConfig, load_config
from xhub.observability import setup_metrics
from xhub.runtime import build_app, free_port, open_engine, serve_in_thread

__all__ = ["DemoError", "run_demo"]

SAMPLES = Path(__file__).with_name("samples")
MARKER = ".xhub-demo"
SHIPPED_RULES = Path(__file__).resolve().parents[2] / "mappings"
STAND_INS: dict[str, Callable[[], FastAPI]] = {
    "trade register": create_trade_register,
    "vehicle registry": create_vehicle_registry,
    "tax office": create_recorder,
}


@dataclass(frozen=True)
class Sample:
    file: str
    expect: str
    why: str
    tenant: str = "memmingen"
    content_type: str = "application/xml"
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    sample: Sample
    message_id: str | None = None
    status: str = "?"
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status == self.sample.expect


def load_samples() -> list[Sample]:
    data = tomllib.loads((SAMPLES / "samples.toml").read_text(encoding="utf-8"))
    return [Sample(**entry) for entry in data["sample"]]


class DemoError(Exception):
    """The demo cannot start; one line for the console."""


def write_private(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 from the first byte on (it holds secrets)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def prepare_workdir(workdir: Path) -> None:
    """An empty work folder, mode 0700. An existing one is only removed when the demo made it."""
    if workdir.is_symlink() or (workdir.exists() and not workdir.is_dir()):
        raise DemoError(f"--workdir {workdir} is not a folder")
    if workdir.exists():
        config = workdir / "hub.toml"
        made_by_demo = ((workdir / MARKER).is_file() or not any(workdir.iterdir())
                        or (config.is_file() and config.read_bytes().startswith(b"# Written by `xhub demo`")))
        if not made_by_demo:
            raise DemoError(f"--workdir {workdir} exists and was not made by `xhub demo`; remove it yourself or "
                            "choose another folder")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True, mode=0o700)
    write_private(workdir / MARKER, "made by `xhub demo`; the next run deletes this folder\n")


#: The towns of the demo, each with its portal (a sender), and the console users: (name, role, tenant).
TOWNS = ("memmingen", "kempten")
CONSOLE_USERS = (("admin", "admin", None), ("mm-operator", "operator", "memmingen"),
                 ("mm-viewer", "viewer", "memmingen"), ("ke-operator", "operator", "kempten"),
                 ("ke-viewer", "viewer", "kempten"))


def write_config(workdir: Path, port: int, stand_ins: dict[str, str], sender_hashes: dict[str, str],
                 operator_hash: str, extra: str) -> Path:
    path = workdir / "hub.toml"
    write_private(
        path,
        f"""# Written by `xhub demo`. Use it to look around: xhub -c {path} messages list
# The routes and mappings are the shipped ones in {SHIPPED_RULES}.
rules_dir = "{SHIPPED_RULES}"

[database]
url = "sqlite:///{workdir / 'hub.db'}"

[storage]
blob_dir = "{workdir / 'blobs'}"
master_key_file = "{workdir / 'master.key'}"
encryption = "required"

[api]
port = {port}

[worker]
poll_interval_seconds = 0.2

[metrics]
directory = "{workdir / 'metrics'}"

[retry]
max_attempts = 5
base_delay_seconds = 1
jitter = 0.1

{"".join(f'[[senders]]{chr(10)}name = "{_portal(town)}"{chr(10)}tenant = "{town}"{chr(10)}'
         f'token_sha256 = "{digest}"{chr(10)}{chr(10)}' for town, digest in sender_hashes.items())}
[[operators]]
name = "demo-operator"
token_sha256 = "{operator_hash}"

[targets.bauamt-dms]
adapter = "file"
directory = "{workdir / 'outbox' / 'bauamt-dms'}"

[targets.gewerberegister]
adapter = "rest"
url = "{stand_ins['trade register']}/api/v1/gewerbemeldungen"
max_concurrency = 4
circuit = {{ failure_threshold = 5, cooldown_seconds = 30 }}

[targets.kfz-register]
adapter = "soap"
wsdl = "{stand_ins['vehicle registry']}/VehicleRegistry?wsdl"
operation = "RegisterVehicle"
reference_path = "RegistrationNumber"

[targets.steueramt]
adapter = "rest"
url = "{stand_ins['tax office']}/inbox/gewerbesteuer"
{extra}""",
    )
    return path


def _portal(town: str) -> str:
    return "demo-portal" if town == "memmingen" else f"demo-portal-{town}"


def seed_console_users(engine: Engine, url: str) -> dict[str, Any]:
    """A user of each role for each town (and an admin), with generated passwords: the ``console`` entry of
    endpoints.json."""
    listed = []
    for name, role, tenant in CONSOLE_USERS:
        password = secrets.token_urlsafe(15)
        users.add_user(engine, name, Role(role), [tenant] if tenant else [], password)
        listed.append({"name": name, "password": password, "role": role, "tenant": tenant})
    return {"url": f"{url}/console/login", "users": listed}


def _submit(client: httpx.Client, token: str, sample: Sample) -> Outcome:
    body = (SAMPLES / sample.file).read_bytes()
    r = client.post("/api/v1/messages", content=body,
                    headers={"Authorization": f"Bearer {token}", "Content-Type": sample.content_type,
                             "Idempotency-Key": f"demo-{sample.file}", **sample.headers})
    if r.status_code in (200, 202):
        return Outcome(sample, message_id=r.json()["id"], status=r.json()["status"])
    problem = r.json()
    return Outcome(sample, status="refused", detail=f"{r.status_code} {problem['title']}: {problem['detail']}")


def _send_fitconnect(fc: fitconnect_demo.FitConnectDemo, engine: Engine) -> Outcome:
    sample = Sample("kfz-zulassung.json via FIT-Connect", "acknowledged",
                    "sent with the public fitconnect SDK through the emulator, with a PDF attachment: fetched, "
                    "decrypted, verified, mapped to SOAP, delivered, answered with a signed accept-submission")
    application = json.loads((SAMPLES / "kfz-zulassung.json").read_text(encoding="utf-8"))
    application["fahrzeug"]["fin"] = "WVWZZZ1JZYW000002"  # another car than the REST sample's
    application["wunschkennzeichen"] = None
    submission_id = fc.send(application, b"%PDF-1.7 Zulassungsbescheinigung Teil II (demo)\n" * 2000)
    message_id = fitconnect_demo.message_of(engine, submission_id, timeout=30)
    if message_id is None:
        return Outcome(sample, status="not fetched", detail=f"submission {submission_id} was not fetched in 30s")
    return Outcome(sample, message_id=str(message_id), status="received")


def _settle(client: httpx.Client, token: str, outcomes: list[Outcome], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = [o for o in outcomes if o.message_id]
    while pending and time.monotonic() < deadline:
        for outcome in list(pending):
            data = client.get(f"/api/v1/messages/{outcome.message_id}",
                              headers={"Authorization": f"Bearer {token}"}).json()
            outcome.status = data["status"]
            if outcome.status in {s.value for s in TERMINAL}:
                outcome.detail = _explain(data)
                pending.remove(outcome)
        time.sleep(0.2)
    for outcome in pending:
        outcome.detail = f"still {outcome.status} after {timeout:.0f}s"


def _explain(data: dict[str, Any]) -> str:
    what = " ".join(p for p in (data.get("standard"), data.get("standard_version"), data.get("message_type")) if p)
    what = what or data["content_type"]
    if data["status"] == "acknowledged":
        retries = [e for e in data["events"] if e["to"] == "retry_wait"]
        targets = ", ".join(f"{d['target']} ({(d['response'] or {}).get('reference') or 'ok'})"
                            for d in data["deliveries"])
        note = f" (after {len(retries)} retry)" if retries else ""
        return f"{what}: delivered to {targets}{note}"
    return f"{what or 'unknown document'}: {data.get('last_error') or data['events'][-1]['reason']}"


def _label(sample: Sample) -> str:
    return sample.file if sample.tenant == "memmingen" else f"{sample.file} ({sample.tenant})"


def _print(outcomes: list[Outcome]) -> None:
    width = max(len(_label(o.sample)) for o in outcomes)
    print(f"\n{'sample':<{width}}  {'expected':<12} {'got':<12}  what happened")
    print("-" * (width + 80))
    for o in outcomes:
        mark = "ok " if o.ok else "FAIL"
        detail = o.detail if len(o.detail) <= 160 else o.detail[:157] + "..."
        print(f"{_label(o.sample):<{width}}  {o.sample.expect:<12} {o.status:<12}  {mark} {detail}")
        if o.message_id:
            print(f"{'':<{width}}  {'':<25}  id {o.message_id}")


def run_demo(workdir: Path, port: int, once: bool, timeout: float = 90.0) -> int:
    """Run the demo; returns the process exit code. Raises :class:`DemoError` when it cannot start."""
    previous = os.umask(0o077)  # everything the demo and its stand-ins create is for this user only
    try:
        prepare_workdir(workdir)
        return _run(workdir, port, once, timeout)
    finally:
        os.umask(previous)


def _run(workdir: Path, port: int, once: bool, timeout: float) -> int:
    sender_tokens = {town: new_token() for town in TOWNS}
    sender_token, operator_token = sender_tokens["memmingen"], new_token()
    with ExitStack() as stack:
        stand_ins = {name: stack.enter_context(serve_in_thread(factory())) for name, factory in STAND_INS.items()}
        # The trade register answers 503 once: the demo shows a retry that loses nothing.
        httpx.post(f"{stand_ins['trade register']}/_behaviour", json={"fail_status": 503, "fail_count": 1})
        port = port or free_port()
        MasterKey.write_new(workdir / "master.key")  # 0600 from the first byte: payloads are sealed with it
        fc = fitconnect_demo.start(stack, workdir, port)
        config_path = write_config(workdir, port, stand_ins, {t: hash_token(k) for t, k in sender_tokens.items()},
                                   hash_token(operator_token), fc.config_section())
        config: HubConfig = load_config(config_path, env={})
        setup_metrics(config, clean=True)
        engine = open_engine(config)
        app = build_app(config, engine, embedded_worker=True)
        with serve_in_thread(app, port=port) as hub_url, httpx.Client(base_url=hub_url, timeout=30) as client:
            console = seed_console_users(engine, hub_url)
            write_private(workdir / "endpoints.json", json.dumps({
                "hub_url": hub_url, "sender_token": sender_token, "sender_tokens": sender_tokens,
                "operator_token": operator_token, "stand_ins": stand_ins, "fitconnect": fc.endpoints(),
                "config": str(config_path), "console": console,
                "metrics_url": f"{hub_url}/metrics",
            }, indent=2) + "\n")
            print(f"hub on {hub_url} (SQLite {workdir / 'hub.db'}); stand-ins: "
                  + ", ".join(f"{name} {url}" for name, url in stand_ins.items())
                  + f"; FIT-Connect emulator {fc.url}")
            outcomes = [_submit(client, sender_tokens[s.tenant], s) for s in load_samples()]
            outcomes.append(_send_fitconnect(fc, engine))
            _settle(client, operator_token, outcomes, timeout)
            _print(outcomes)
            print()
            for name, url in stand_ins.items():
                items = httpx.get(f"{url}/_received").json()["items"]
                print(f"{name} stand-in ({url}/_received): {len(items)} request(s) received")
            print(f"FIT-Connect emulator ({fc.url}): {fc.emulator.overview()[-1]['status']} is what the sender sees "
                  "for its submission (the accept-submission token is in the case's event log)")
            files = sorted(p.name for p in (workdir / "outbox").rglob("*") if p.is_file())
            print(f"DMS drop folder {workdir / 'outbox' / 'bauamt-dms'}: {', '.join(files) or 'empty'}")
            failed = [o for o in outcomes if not o.ok]
            print(f"{len(outcomes) - len(failed)} of {len(outcomes)} samples reached their expected state")
            if not once:
                print(f"\nThe hub keeps running. Tokens and console logins are in {workdir / 'endpoints.json'}.\n"
                      f"Console: {console['url']}\nTry:\n"
                      f"  .venv/bin/xhub -c {config_path} messages list\n"
                      f"  .venv/bin/xhub -c {config_path} messages show <id>\n"
                      "Press Ctrl-C to stop.")
                try:
                    threading.Event().wait()
                except KeyboardInterrupt:
                    print("stopping")
        engine.dispose()
    return 1 if failed else 0
