"""The short form of ``make reliability`` (``scripts/bench/reliability.py``): several hundred real messages
through ``xhub serve`` and two ``xhub worker`` processes on PostgreSQL, while workers and the API are killed
with SIGKILL, the target answers 503 for a while and every connection of the hub's database is ended.
Nothing may be lost, delivered as a second case, or left stuck.

The database fault here is ``terminate`` (the hub's connections end, as in a server restart) rather than a
restart of the server: the test server is shared by every test running at the time. ``make reliability``
restarts the server. ``RELIABILITY_SHORT_MESSAGES`` sets the size (default 600: on a quiet 2-core machine
that is well under 90 s; with other work on the machine it takes longer).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PG_URL

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench" / "reliability.py"


def test_kills_an_outage_and_lost_connections_lose_duplicate_and_strand_nothing(pg_url: str,  # skips without PG
                                                                                 tmp_path: Path) -> None:
    out = tmp_path / "reliability.json"
    messages = int(os.environ.get("RELIABILITY_SHORT_MESSAGES", 600))
    env = {**os.environ, "HUB_BENCH_POSTGRES_URL": PG_URL}
    done = subprocess.run([sys.executable, str(SCRIPT), "--messages", str(messages), "--kills", "4",
                           "--outage-seconds", "4", "--pg", "terminate", "--drain-seconds", "240",
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=290, check=False)
    assert out.exists(), done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads(out.read_text())["result"]
    assert result["accepted"] == messages
    assert (result["lost"], result["duplicated"], result["stuck"], result["dead"]) == (0, 0, 0, 0)
    assert result["kills_worker"] + result["kills_api"] == 4
    assert sum(result["restarts"].values()) >= 4  # every killed process came back
    assert result["waiting_during_outage"] > 0 and result["events_per_waiting_msg_during_outage"] is not None
    assert done.returncode == 0, done.stdout[-2000:]
