"""The naive script the hub is measured against: what a clerk could write in an afternoon.

One process, one file after another: validate against the XGewerbesteuer XSD with xmlschema, POST it with
httpx to the target, count the 201s. No database, no retries, no record of what was sent: a crash loses
whatever it was doing, and a target outage loses every message sent during it.

    python scripts/bench/naive_script.py --files list --url http://127.0.0.1:9000/deliver --out result.json
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import uuid
from pathlib import Path

import httpx
import xmlschema

XSD = Path(__file__).resolve().parents[2] / "xsd" / "xgewerbesteuer-1.4" / "xunternehmen-gewerbesteuer.xsd"


def main(args: argparse.Namespace) -> None:
    files = [Path(line) for line in Path(args.files).read_text(encoding="utf-8").splitlines() if line]
    schema = xmlschema.XMLSchema(str(XSD))
    start_cpu, started = resource.getrusage(resource.RUSAGE_SELF), time.time()
    delivered = invalid = failed = 0
    with httpx.Client(timeout=30) as client:
        for path in files:
            body = path.read_bytes()
            if not schema.is_valid(body.decode("utf-8")):
                invalid += 1
                continue
            key = str(uuid.uuid4())
            r = client.post(args.url, content=body, headers={
                "Content-Type": "application/xml", "Idempotency-Key": f"naive-{key}", "X-Xhub-Message-Id": key})
            if r.status_code == 201:
                delivered += 1
            else:
                failed += 1
    finished, end_cpu = time.time(), resource.getrusage(resource.RUSAGE_SELF)
    cpu = (end_cpu.ru_utime - start_cpu.ru_utime) + (end_cpu.ru_stime - start_cpu.ru_stime)
    Path(args.out).write_text(json.dumps({
        "messages": len(files), "delivered": delivered, "invalid": invalid, "failed": failed,
        "seconds": round(finished - started, 3), "cpu_seconds": round(cpu, 3),
    }), encoding="utf-8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--out", required=True)
    main(parser.parse_args())
