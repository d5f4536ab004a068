"""Benchmark: FIT-Connect submissions through emulator → hub → vehicle registry, and the hub's memory while
receiving large attachments.

Every party is its own process: the emulator (``xhub sandbox fitconnect``), the vehicle registry
(``xhub sandbox vehicle-registry``), the hub's poller (``xhub fitconnect poll --once``) and one worker.

1. **Throughput**: ``--submissions`` vehicle registrations are sent with the public SDK first (not timed),
   then the clock runs from the start of the poll to the last ``acknowledged`` (fetch, decrypt, verify,
   store, map, SOAP delivery, signed accept-submission): submissions/s.
2. **Memory**: one submission with a 100 MB and one with a 500 MB attachment; the poller that fetches,
   decrypts (streamed) and stores it reports its own peak RSS.

    .venv/bin/python scripts/bench/fitconnect_intake.py [--submissions 50] [--sizes 100 500]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import fitconnect
import httpx
from sqlalchemy import func, select

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, free_port, report, wait_http, xhub

from channels.fitconnect import generate_destination_keys
from hub import migrate
from hub.db import make_engine
from hub.models import Event, Message

LEIKA = "urn:de:fim:leika:leistung:99036012104000"
JSON_SCHEMA = {"schemaUri": "urn:xoev-hub:sandbox:any-json-schema", "mimeType": "application/json"}
SAMPLE = json.loads((ROOT / "sandbox/demo/samples/kfz-zulassung.json").read_text())
# The poller's own peak: VmHWM of its address space. (ru_maxrss would be wrong here: Linux carries it across
# exec, so a child would report the benchmark driver's peak at fork time, the driver holding the attachment.)
PEAK_RSS = ("import sys\nfrom xhub.cli import app\ntry:\n    app(sys.argv[1:], prog_name='xhub')\n"
            "except SystemExit as exit:\n    code = exit.code\n"
            "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')).split()[1]\n"
            "print('PEAK_RSS_KB', hwm, file=sys.stderr)\nsys.exit(code or 0)\n")


def application() -> str:
    return json.dumps({**SAMPLE, "fahrzeug": {**SAMPLE["fahrzeug"], "fin": "WVWZZZ1JZ" + uuid.uuid4().hex[:8].upper()},
                       "wunschkennzeichen": None})


def start(*args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(xhub(None, "sandbox", *args, "--port", str(port)), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    return proc, url


def setup(work: Path, emulator: str, registry: str) -> tuple[Path, Any]:
    keys = generate_destination_keys(work / "keys", name="bench")
    admin = httpx.Client(base_url=emulator, timeout=60)
    dest = admin.post("/_admin/destinations", json={
        "encryptionKey": json.loads(keys.encryption_public.read_text()),
        "signingKey": json.loads(keys.signing_public.read_text()), "services": [LEIKA]}).raise_for_status().json()
    destination_id = dest["destinationId"]
    sender = admin.post("/_admin/clients", json={"role": "sender", "destinations": [destination_id]}).json()
    subscriber = admin.post("/_admin/clients", json={"role": "subscriber", "destinations": [destination_id]}).json()
    admin.close()
    db_url = f"sqlite:///{work / 'hub.db'}"
    migrate.upgrade(make_engine(db_url))
    (work / "rules").mkdir()
    (work / "rules" / "routes.toml").write_text(
        '[[routes]]\nname = "kfz"\nmatch = { service = "urn:de:fim:leika:leistung:99036*" }\n'
        'targets = [{ target = "kfz", mapping = "vehicle-registration-to-registry" }]\nnot_checked = "pass"\n')
    mapping = "vehicle-registration-to-registry"
    os.symlink(ROOT / "mappings" / mapping, work / "rules" / mapping)
    config = work / "hub.toml"
    config.write_text(f"""rules_dir = "{work / 'rules'}"
[database]
url = "{db_url}"
auto_upgrade = false
[storage]
blob_dir = "{work / 'blobs'}"
[worker]
poll_interval_seconds = 0.05
[targets.kfz]
adapter = "soap"
wsdl = "{registry}/VehicleRegistry?wsdl"
operation = "RegisterVehicle"
reference_path = "RegistrationNumber"
[fitconnect]
token_url = "{emulator}/token"
submission_api_url = "{emulator}/v1"
client_id = "{subscriber['clientId']}"
client_secret = "{subscriber['clientSecret']}"
[[fitconnect.destinations]]
id = "{destination_id}"
tenant = "bench"
encryption_key = "{keys.encryption_private}"
signing_key = "{keys.signing_private}"
""")
    client = fitconnect.FITConnectClient(fitconnect.Environment.TESTING, sender["clientId"], sender["clientSecret"])
    client.token_url, client.submission_api_url = f"{emulator}/token", f"{emulator}/v1"
    return config, (client, destination_id, db_url)


def poll(config: Path) -> int:
    """Run one poll in its own process; returns its peak RSS in MB."""
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS, "--config", str(config), "--log-level", "warning",
                           "fitconnect", "poll", "--once"], capture_output=True, text=True, timeout=3600, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"poll failed: {proc.stdout}{proc.stderr}")
    line = next(x for x in proc.stderr.splitlines() if x.startswith("PEAK_RSS_KB"))
    return int(line.split()[1]) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--submissions", type=int, default=50)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 500], help="attachment sizes in MB")
    parser.add_argument("--out", type=Path, default=ROOT / "scripts/bench/results/fitconnect_intake.json")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    emulator_proc, emulator = start("fitconnect", "--state-dir", tempfile.mkdtemp(prefix="xhub-bench-emu-"))
    registry_proc, registry = start("vehicle-registry")
    try:
        wait_http(f"{emulator}/.well-known/jwks.json")
        wait_http(f"{registry}/_received")
        with tempfile.TemporaryDirectory(prefix="xhub-bench-fitconnect-") as tmp:
            config, (sender, destination_id, db_url) = setup(Path(tmp), emulator, registry)
            for _ in range(args.submissions):
                sender.submission(destination_id, LEIKA, data=application(), data_schema=JSON_SCHEMA)
            started = time.time()
            rss = poll(config)
            fetched = time.time() - started
            worker = subprocess.run(xhub(config, "worker", "--exit-when-idle"), timeout=3600)
            if worker.returncode != 0:
                raise RuntimeError("the worker failed")
            engine = make_engine(db_url)
            with engine.connect() as conn:
                done = conn.execute(select(func.count()).select_from(Message)
                                    .where(Message.status == "acknowledged")).scalar()
                last = conn.execute(select(func.max(Event.at)).where(Event.to_status == "acknowledged")).scalar()
            if done != args.submissions:
                raise RuntimeError(f"only {done} of {args.submissions} submissions were acknowledged")
            total = last.timestamp() - started
            rows.append({"what": f"{args.submissions} submissions", "fetch_per_s": round(args.submissions / fetched, 1),
                         "end_to_end_per_s": round(args.submissions / total, 1), "poller_peak_rss_mb": rss})
            for size in args.sizes:
                attachment = os.urandom(1_000_000) * size  # one random MB, repeated (FIT-Connect counts MB)
                sender.submission(destination_id, LEIKA, data=application(), data_schema=JSON_SCHEMA,
                                  attachments=[attachment])
                del attachment
                started = time.time()
                rss = poll(config)
                rows.append({"what": f"attachment {size} MB", "seconds": round(time.time() - started, 1),
                             "poller_peak_rss_mb": rss})
    finally:
        for proc in (emulator_proc, registry_proc):
            proc.terminate()
            proc.wait(timeout=30)
    columns = [("what", "what"), ("fetch_per_s", "fetched/s"), ("end_to_end_per_s", "end-to-end/s"),
               ("seconds", "seconds"), ("poller_peak_rss_mb", "poller peak RSS MB")]
    report("fitconnect_intake", columns, rows, args.out)


if __name__ == "__main__":
    main()
