"""A minimal HTTP target stand-in for the benchmarks: answers every request with ``201`` and counts the
``Idempotency-Key`` values it saw (so a benchmark can count duplicates), on a raw asyncio protocol so that
its own CPU is small and not counted as the hub's (it runs as its own process).

    python scripts/bench/sink201.py PORT [--fail-first N]   # GET /stats → {"requests": n, "keys": k, "duplicates": d}
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import ClassVar

ANSWER = (b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 2\r\n"
          b"connection: keep-alive\r\n\r\n{}")


class Sink(asyncio.Protocol):
    keys: ClassVar[dict[bytes, int]] = {}
    requests = 0
    down = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1")
            length, key = 0, b""
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                lowered = name.strip().lower()
                if lowered == "content-length":
                    length = int(value.strip())
                elif lowered == "idempotency-key":
                    key = value.strip().encode()
            if len(self.buffer) < head_end + 4 + length:
                return
            self.buffer = self.buffer[head_end + 4 + length:]
            self._answer(head.split(" ", 2), key)

    def _answer(self, request_line: list[str], key: bytes) -> None:
        method, path = request_line[0], request_line[1]
        if method == "GET" and path == "/stats":
            dupes = sum(n - 1 for n in Sink.keys.values() if n > 1)
            body = json.dumps({"requests": Sink.requests, "keys": len(Sink.keys), "duplicates": dupes}).encode()
            self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "  # type: ignore[attr-defined]
                                 + str(len(body)).encode() + b"\r\n\r\n" + body)
            return
        if method == "POST" and path in ("/down", "/up"):
            Sink.down = path == "/down"
            self.transport.write(ANSWER)  # type: ignore[attr-defined]
            return
        if Sink.down:
            self.transport.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")  # type: ignore[attr-defined]
            return
        Sink.requests += 1
        if key:
            Sink.keys[key] = Sink.keys.get(key, 0) + 1
        self.transport.write(ANSWER)  # type: ignore[attr-defined]


async def main(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Sink, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
