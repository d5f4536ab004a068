"""The load generator of ``make bench`` and ``make reliability``: its own process, so that its CPU is never
counted as the hub's.

Posts each file of ``--files`` (a list, one path a line) to the hub's REST intake with ``--concurrency``
senders, either as fast as the hub answers (closed loop) or at ``--rate`` messages per second (open loop:
requests start on schedule, at most ``--concurrency`` in flight). Every message carries its own
Idempotency-Key; a request that fails (connection refused while the API restarts, 5xx, 429/503) is sent
again with the same key after a short pause until the hub answers 200/202, so a message the hub has
accepted once is never sent as a new one. Writes a JSON summary to ``--out``: per message the hub's id, and
the counts.

    python scripts/bench/loadgen.py --url http://127.0.0.1:8080/api/v1/messages --token T --files list \
        --out result.json [--concurrency 16] [--rate 40]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from pathlib import Path

import httpx


async def main(args: argparse.Namespace) -> None:
    files = [Path(line) for line in Path(args.files).read_text(encoding="utf-8").splitlines() if line]
    bodies = [f.read_bytes() for f in files]
    ids: list[str | None] = [None] * len(bodies)
    retries = 0
    refused: dict[str, int] = {}
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    gate = asyncio.Semaphore(args.concurrency)
    started = time.time()

    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def send(i: int) -> None:
            nonlocal retries
            if args.rate:
                await asyncio.sleep(max(0.0, started + i / args.rate - time.time()))
            key = f"bench-{uuid.uuid4()}"
            headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/xml"}
            if not args.no_keys:
                headers["Idempotency-Key"] = key
            async with gate:
                for attempt in range(10_000):
                    try:
                        r = await client.post(args.url, content=bodies[i], headers=headers)
                        if r.status_code in (200, 202):
                            ids[i] = r.json()["id"]
                            return
                        refused[str(r.status_code)] = refused.get(str(r.status_code), 0) + 1
                        if r.status_code < 500 and r.status_code != 429:
                            return  # the hub refuses this message for good: counted, not retried
                    except httpx.HTTPError as exc:
                        refused[type(exc).__name__] = refused.get(type(exc).__name__, 0) + 1
                    if args.no_keys:
                        return  # without a key a retry could store the message twice
                    retries += 1
                    await asyncio.sleep(min(1.0, 0.05 * (attempt + 1)))

        await asyncio.gather(*(send(i) for i in range(len(bodies))))
    finished = time.time()
    Path(args.out).write_text(json.dumps({
        "sent": len(bodies), "accepted": sum(1 for i in ids if i), "retries": retries, "refused": refused,
        "seconds": round(finished - started, 3), "ids": ids,
    }), encoding="utf-8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--files", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=None, help="messages per second (open loop)")
    parser.add_argument("--no-keys", action="store_true", help="send no Idempotency-Key")
    asyncio.run(main(parser.parse_args()))
