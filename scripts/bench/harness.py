"""The black-box harness of ``make bench`` and ``make reliability``: a target stand-in, the messages, a hub made
of ``xhub`` processes, CPU accounting per process tree and per PostgreSQL backend, and the event trail.

It drives the hub only through its command line and its HTTP API, and reads the outcome from the database's
``messages`` and ``events`` tables, so it measures whatever worker and intake implementation the checkout
has.

* :class:`Nginx`: the target stand-in: nginx answering ``201`` (``503`` while an outage flag file exists),
  logging every request's time, status, ``Idempotency-Key`` and ``X-Xhub-Message-Id``. Without nginx on the
  machine, :class:`Responder` (a one-file asyncio HTTP responder) stands in and says so.
* :func:`make_messages`: real XGewerbesteuer 1.4 messages built from the test fixtures with fresh
  ``nachrichtenID`` values.
* :class:`Hub`: ``xhub db upgrade``, ``xhub serve`` and ``xhub worker`` processes on one configuration.
* :class:`CpuMeter`: CPU seconds of process trees and of the database's backends (``pg_stat_activity`` by
  database name), sampled so that a backend that ends during the run still counts.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import create_engine, select, text

sys.path.insert(0, str(Path(__file__).parent))
from common import ROOT, free_port, percentile, postgres_url, wait_http

from hub.auth import hash_token
from hub.db import normalise_url
from hub.models import Event, Message

FIXTURES = ROOT / "tests" / "fixtures" / "xoev" / "xgewerbesteuer-1.4"
XSD = ROOT / "xsd" / "xgewerbesteuer-1.4" / "xunternehmen-gewerbesteuer.xsd"
TOKEN = "bench-sender-token-0123456789"
_ID = re.compile(rb"<nachrichtenID>[^<]*</nachrichtenID>")


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


# --------------------------------------------------------------------------------------------------
# Messages


def make_messages(folder: Path, n: int) -> list[Path]:
    """``n`` XGewerbesteuer messages (about 1.8 to 2.0 KB) in ``folder``: the 15 fixtures in turn, each with a fresh
    ``nachrichtenID``, so that every message is distinct and valid."""
    samples = [p.read_bytes() for p in sorted(FIXTURES.glob("*.xml"))]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        body = _ID.sub(f"<nachrichtenID>{uuid.uuid4()}</nachrichtenID>".encode(), samples[i % len(samples)], count=1)
        path = folder / f"m{i:06d}.xml"
        path.write_bytes(body)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------------------------------
# The target stand-in

NGINX_CONF = """worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  client_body_temp_path {d}/body; proxy_temp_path {d}/proxy; fastcgi_temp_path {d}/fastcgi;
  uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;
  log_format bench '$msec $status $http_idempotency_key $http_x_xhub_message_id';
  access_log {d}/access.log bench;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      if (-f {d}/outage) {{ return 503 '{{"error":"outage"}}'; }}
      default_type application/json;
      return 201 '{{"case_id":"bench"}}';
    }}
  }}
}}
"""


@dataclass
class Delivery:
    at: float
    status: int
    key: str
    message_id: str


class Nginx:
    """nginx answering 201 to every POST, 503 while ``outage`` is on; every request in ``access.log``."""

    kind = "nginx (answers 201)"

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="xhub-bench-nginx-"))
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/deliver"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Nginx:
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.dir / sub).mkdir(exist_ok=True)
            os.chmod(self.dir / sub, 0o777)
        conf = self.dir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(d=self.dir, port=self.port), encoding="utf-8")
        self.proc = subprocess.Popen([nginx_binary() or "nginx", "-c", str(conf), "-p", str(self.dir)],
                                     stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{self.port}/", timeout=15)
        return self

    def outage(self, on: bool) -> None:
        flag = self.dir / "outage"
        flag.touch() if on else flag.unlink(missing_ok=True)

    def deliveries(self) -> list[Delivery]:
        out = []
        log = self.dir / "access.log"
        for line in log.read_text(encoding="utf-8").splitlines() if log.exists() else []:
            parts = line.split()
            if len(parts) == 4 and parts[2] != "-":
                out.append(Delivery(float(parts[0]), int(parts[1]), parts[2], parts[3]))
        return out

    def reset(self) -> None:
        """Forget what was logged so far (between phases)."""
        (self.dir / "access.log").write_text("", encoding="utf-8")  # nginx appends at the end (O_APPEND)

    def pids(self) -> list[int]:
        if self.proc is None:
            return []
        return [self.proc.pid, *(c.pid for c in psutil.Process(self.proc.pid).children(recursive=True))]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None)


RESPONDER = r'''
import asyncio, sys, time
from pathlib import Path
d = Path(sys.argv[1]); port = int(sys.argv[2]); log = open(d / "access.log", "a", buffering=1)
async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            h = {}
            for line in head.decode("latin-1").split("\r\n")[1:]:
                if ":" in line:
                    k, v = line.split(":", 1); h[k.strip().lower()] = v.strip()
            await reader.readexactly(int(h.get("content-length", "0")))
            status, body = (503, b'{"error":"outage"}') if (d / "outage").exists() else (201, b'{"case_id":"bench"}')
            if "idempotency-key" in h:
                log.write(f"{time.time():.3f} {status} {h['idempotency-key']} {h.get('x-xhub-message-id', '-')}\n")
            writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (status, len(body), body))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", port)
    async with server:
        await server.serve_forever()
asyncio.run(main())
'''


class Responder(Nginx):
    """Without nginx: a minimal asyncio HTTP/1.1 responder with the same answers and the same log."""

    kind = "asyncio responder (nginx not installed; answers 201)"

    def start(self) -> Responder:
        script = self.dir / "responder.py"
        script.write_text(RESPONDER, encoding="utf-8")
        self.proc = subprocess.Popen([sys.executable, str(script), str(self.dir), str(self.port)])
        wait_http(f"http://127.0.0.1:{self.port}/", timeout=15)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def target_stand_in() -> Nginx:
    return (Nginx() if nginx_binary() else Responder()).start()


# --------------------------------------------------------------------------------------------------
# CPU accounting


def cpu_seconds(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
        return t.user + t.system
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0


class CpuMeter:
    """CPU seconds used between :meth:`start` and :meth:`stop` by named groups of processes.

    ``groups`` maps a name to a function returning the pids of that group now (process trees, the backends
    of one database); a sampler thread looks every 0.2 s, so that pids that come and go are counted with
    what they used while they were seen (a backend that lives less than 0.2 s is missed: the pool keeps
    connections, so these are rare).
    """

    def __init__(self, groups: dict[str, Any]) -> None:
        self.groups = groups
        self.first: dict[tuple[str, int], float] = {}
        self.last: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self, initial: bool = False) -> None:
        for name, pids in self.groups.items():
            for pid in pids():
                used = cpu_seconds(pid)
                key = (name, pid)
                if key not in self.first:
                    self.first[key] = used if initial else 0.0  # born during the run: all its CPU counts
                self.last[key] = max(self.last.get(key, 0.0), used)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def start(self) -> CpuMeter:
        self._sample(initial=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, float]:
        self._sample()
        self._stop.set()
        self._thread.join()
        used: dict[str, float] = defaultdict(float)
        for (name, pid), last in self.last.items():
            used[name] += last - self.first[(name, pid)]
        return {name: used.get(name, 0.0) for name in self.groups}


def tree(proc: subprocess.Popen[bytes] | None) -> list[int]:
    if proc is None or proc.poll() is not None:
        return []
    try:
        return [proc.pid, *(c.pid for c in psutil.Process(proc.pid).children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


class Backends:
    """The PostgreSQL backends connected to one database (the hub's, and only the hub's, in a bench run)."""

    def __init__(self, url: str) -> None:
        self.database = normalise_url(url).database
        base = os.environ.get("HUB_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
        self.engine = create_engine(normalise_url(base), pool_size=1, isolation_level="AUTOCOMMIT")

    def __call__(self) -> list[int]:
        with self.engine.connect() as conn:
            return list(conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = :d AND pid <> "
                                          "pg_backend_pid()"), {"d": self.database}).scalars())

    def counters(self) -> dict[str, float]:
        """Commits, rows written and read for this database, and the server's WAL position (bytes)."""
        with self.engine.connect() as conn:
            row = conn.execute(text(
                "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, tup_returned, "
                "tup_fetched, pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') AS wal FROM pg_stat_database "
                "WHERE datname = :d"), {"d": self.database}).mappings().one()
        return {k: float(v) for k, v in row.items()}

    def close(self) -> None:
        self.engine.dispose()


# --------------------------------------------------------------------------------------------------
# The hub


@dataclass
class Hub:
    """A hub of ``xhub`` processes on one configuration: the API (``serve``, with or without the embedded
    worker) and ``workers`` worker processes."""

    db_url: str
    target_url: str
    workdir: Path
    workers: int = 2
    embedded: bool = False
    poll_seconds: float = 0.2
    cooldown_seconds: float = 5.0
    lease_seconds: float = 30.0
    port: int = field(default_factory=free_port)
    api: subprocess.Popen[bytes] | None = None
    worker_procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config(self) -> Path:
        return self.workdir / "hub.toml"

    def write_config(self) -> None:
        (self.workdir / "rules").mkdir(parents=True, exist_ok=True)
        self.config.write_text(f"""rules_dir = "{self.workdir / 'rules'}"
[database]
url = "{self.db_url}"
auto_upgrade = false
[api]
host = "127.0.0.1"
port = {self.port}
[worker]
poll_interval_seconds = {self.poll_seconds}
lease_seconds = {self.lease_seconds}
embedded = {"true" if self.embedded else "false"}
[retry]
max_attempts = 1000
base_delay_seconds = 1
max_delay_seconds = 10
jitter = 0.2
[[senders]]
name = "bench"
tenant = "bench"
token_sha256 = "{hash_token(TOKEN)}"
[targets.standin]
adapter = "rest"
url = "{self.target_url}"
timeout_seconds = 10
circuit = {{ failure_threshold = 5, cooldown_seconds = {self.cooldown_seconds} }}
[[routes]]
name = "all"
targets = ["standin"]
""", encoding="utf-8")

    def xhub(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "xhub", "--log-level", "warning", "--config", str(self.config), *args]

    def prepare(self) -> Hub:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        subprocess.run(self.xhub("db", "upgrade"), check=True, stdout=subprocess.DEVNULL)
        return self

    def start_api(self) -> None:
        log = (self.workdir / "api.log").open("ab")
        self.api = subprocess.Popen(self.xhub("serve", *([] if self.embedded else ["--no-worker"])),
                                    stdout=log, stderr=log)
        wait_http(f"{self.url}/health/live", timeout=60)

    def start_worker(self) -> subprocess.Popen[bytes]:
        log = (self.workdir / "workers.log").open("ab")
        proc = subprocess.Popen(self.xhub("worker"), stdout=log, stderr=log)
        self.worker_procs.append(proc)
        return proc

    def start(self) -> Hub:
        self.start_api()
        for _ in range(0 if self.embedded else self.workers):
            self.start_worker()
        return self

    def api_pids(self) -> list[int]:
        return tree(self.api)

    def worker_pids(self) -> list[int]:
        return [pid for p in self.worker_procs for pid in tree(p)]

    def stop(self) -> None:
        procs = [p for p in [self.api, *self.worker_procs] if p is not None and p.poll() is None]
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


def fresh_database(name: str, engine: str, workdir: Path) -> str:
    """A new, empty database: PostgreSQL (``engine == "postgres"``; the name gets this process's id, so that
    two runs on one server never share one) or a SQLite file in ``workdir``."""
    if engine == "sqlite":
        return f"sqlite:///{workdir / 'hub.db'}"
    url = postgres_url(f"{name}_{os.getpid()}")
    if url is None:
        raise SystemExit("PostgreSQL is not available (HUB_BENCH_POSTGRES_URL); the hub rows need it")
    return url


def drop_database(url: str) -> None:
    """Drop a database :func:`fresh_database` made (nothing for SQLite: its folder goes with the run)."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() != "postgresql":
        return
    base = os.environ.get("HUB_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    admin = create_engine(normalise_url(base), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)'))
    finally:
        admin.dispose()


# --------------------------------------------------------------------------------------------------
# The load generator (its own process: its CPU is not the hub's)


def load(hub_url: str, files: list[Path], out: Path, *, concurrency: int = 16, rate: float | None = None,
         keys: bool = True) -> dict[str, Any]:
    """Send ``files`` to the hub with ``scripts/bench/loadgen.py``; returns its summary."""
    listing = out.with_suffix(".files")
    listing.write_text("\n".join(str(f) for f in files), encoding="utf-8")
    cmd = [sys.executable, str(Path(__file__).parent / "loadgen.py"), "--url", f"{hub_url}/api/v1/messages",
           "--token", TOKEN, "--files", str(listing), "--out", str(out), "--concurrency", str(concurrency)]
    if rate:
        cmd += ["--rate", str(rate)]
    if not keys:
        cmd += ["--no-keys"]
    subprocess.run(cmd, check=True)
    summary: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return summary


# --------------------------------------------------------------------------------------------------
# Reading the outcome


def db_engine(url: str) -> Any:
    return create_engine(normalise_url(url), pool_size=2)


def wait_done(url: str, ids: Iterable[str], timeout: float, done: tuple[str, ...] = ("delivered", "acknowledged"),
              ) -> bool:
    """Wait until every message of ``ids`` has reached a status of ``done``; False on timeout."""
    wanted = {uuid.UUID(i) for i in ids}
    engine = db_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                with engine.connect() as conn:
                    finished = set(conn.execute(select(Message.id).where(Message.status.in_(done))).scalars())
            except Exception:  # the database may be restarting (reliability run): look again
                finished = set()
            if wanted <= finished:
                return True
            time.sleep(0.2)
        return False
    finally:
        engine.dispose()


@dataclass
class Trail:
    """Per message: when it was received and delivered, and how many events it has."""

    received: dict[str, datetime]
    delivered: dict[str, datetime]
    events: Counter[str]
    times: dict[str, list[datetime]]
    statuses: dict[str, str]

    def latencies_ms(self, ids: Iterable[str]) -> list[float]:
        return [(self.delivered[i] - self.received[i]).total_seconds() * 1000
                for i in ids if i in self.delivered and i in self.received]

    def throughput(self, ids: Iterable[str]) -> float:
        ids = [i for i in ids if i in self.delivered]
        if len(ids) < 2:
            return 0.0
        span = (max(self.delivered[i] for i in ids) - min(self.received[i] for i in ids)).total_seconds()
        return len(ids) / span if span > 0 else 0.0


def trail(url: str) -> Trail:
    engine = db_engine(url)
    received: dict[str, datetime] = {}
    delivered: dict[str, datetime] = {}
    events: Counter[str] = Counter()
    times: dict[str, list[datetime]] = defaultdict(list)
    with engine.connect() as conn:
        for mid, at, to_status in conn.execute(select(Event.message_id, Event.at, Event.to_status)):
            key = str(mid)
            events[key] += 1
            times[key].append(at)
            if to_status == "received":
                received[key] = min(at, received.get(key, at))
            elif to_status == "delivered":
                delivered[key] = min(at, delivered.get(key, at))
        statuses = {str(i): s for i, s in conn.execute(select(Message.id, Message.status))}
    engine.dispose()
    return Trail(received, delivered, events, times, statuses)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    return {"p50": round(percentile(values, 50), 1), "p90": round(percentile(values, 90), 1),
            "p99": round(percentile(values, 99), 1), "max": round(max(values), 1)}
