"""docs/security.md: the tally of the hostile suite matches what pytest collects, and the limits table names
config keys that exist."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

from xhub.config import HubConfig

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
START, END = "<!-- tally:start -->", "<!-- tally:end -->"


def collected() -> Counter[str]:
    # Without HUB_REQUIRE_POSTGRES: a collection runs no PostgreSQL test, which that setting would call a failure.
    env = {k: v for k, v in os.environ.items() if k != "HUB_REQUIRE_POSTGRES"}
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "tests/hostile"], cwd=ROOT,
                         capture_output=True, text=True, check=True, env=env).stdout
    return Counter(line.split("::", 1)[0] for line in out.splitlines() if "::" in line)


def tally_table(counts: Counter[str]) -> str:
    rows = [f"| `{name}` | {n} |" for name, n in sorted(counts.items())]
    return "\n".join(["| file | cases |", "|---|---|", *rows, f"| **all** | **{sum(counts.values())}** |"])


def test_tally_matches_the_suite() -> None:
    text = DOC.read_text(encoding="utf-8")
    shown = text[text.index(START) + len(START) : text.index(END)].strip()
    counts = collected()
    expected = tally_table(counts)
    assert shown == expected, (
        "docs/security.md's tally is out of date; replace the block between the tally markers with:\n" + expected)
    assert sum(counts.values()) >= 150


def test_limit_config_keys_exist() -> None:
    text = DOC.read_text(encoding="utf-8")
    keys = set(re.findall(r"^\|[^|]*\|[^|]*\| `((?:api|limits|fitconnect|worker|storage)\.[a-z_]+)`", text, re.M))
    assert keys, "no config keys found in the limits table"
    defaults = HubConfig.model_json_schema()["$defs"]
    sections = {"api": "ApiConfig", "limits": "LimitsConfig", "worker": "WorkerConfig", "storage": "StorageConfig",
                "fitconnect": "FitConnectConfig"}
    for key in sorted(keys):
        section, field = key.split(".")
        assert field in defaults[sections[section]]["properties"], f"{key} in docs/security.md is not a config key"
