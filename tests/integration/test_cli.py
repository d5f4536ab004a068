"""The `xhub` command line as an operator uses it (real processes, real server)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hub import migrate, store
from hub.db import make_engine
from tests.support import ROOT, SENDER_TOKEN, XBAU_VALID, hub_config, running
from xhub.api.app import create_app
from xhub.runtime import make_worker

pytestmark = pytest.mark.slow


def xhub(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xhub", "--log-level", "warning", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env=env)


def config_file(tmp_path: Path, db_url: str) -> Path:
    path = tmp_path / "hub.toml"
    path.write_text(f'[database]\nurl = "{db_url}"\n\n[targets.outbox]\nadapter = "file"\n'
                    f'directory = "{tmp_path / "outbox"}"\n\n[[routes]]\nname = "all"\ntargets = ["outbox"]\n')
    return path


def test_config_error_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "hub.toml"
    bad.write_text('[api]\nport = "eighty"\n')
    result = xhub("-c", str(bad), "messages", "list", cwd=tmp_path)
    assert result.returncode == 2
    assert f"{bad}:2: api.port" in result.stderr and "Traceback" not in result.stderr


def test_token_new_prints_the_token_once_and_only_a_hash_for_the_config(tmp_path: Path) -> None:
    result = xhub("token", "new", "--name", "portal-bw", "--tenant", "memmingen", cwd=tmp_path)
    assert result.returncode == 0
    token = result.stdout.split("): ", 1)[1].split()[0]
    from hub.auth import hash_token

    assert f'token_sha256 = "{hash_token(token)}"' in result.stdout and 'tenant = "memmingen"' in result.stdout
    assert xhub("token", "new", "--name", "x", cwd=tmp_path).returncode == 2  # a sender needs a tenant


def test_db_upgrade_then_show_and_requeue(tmp_path: Path, sqlite_url: str) -> None:
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    cfg = config_file(tmp_path, fresh)
    up = xhub("-c", str(cfg), "db", "upgrade", cwd=tmp_path)
    assert up.returncode == 0 and "was empty" in up.stdout
    head = migrate.head_revision()
    assert f"database: {head}; code: {head}" in xhub("-c", str(cfg), "db", "current", cwd=tmp_path).stdout

    engine = make_engine(fresh)
    message, _ = store.accept(engine, store.NewMessage("memmingen", "rest", "portal", [
        store.Part("payload", "application/xml", b"<unknown xmlns='urn:nothing'/>")]), actor="sender:portal")
    config = hub_config(fresh, tmp_path, routes=[{"name": "xbau", "match": {"standard": "XBau"},
                                                  "targets": ["outbox"]}])
    make_worker(config, engine).run(exit_when_idle=True)
    shown = xhub("-c", str(cfg), "messages", "show", str(message.id), cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "status    dead" in shown.stdout and "received → validated" in shown.stdout
    assert "no route matches this message" in shown.stdout and "sender:portal" in shown.stdout

    requeued = xhub("-c", str(cfg), "messages", "requeue", str(message.id), "--operator", "anna", cwd=tmp_path)
    assert requeued.returncode == 0
    assert "requeued by operator anna" in xhub("-c", str(cfg), "messages", "show", str(message.id),
                                               cwd=tmp_path).stdout
    again = xhub("-c", str(cfg), "messages", "requeue", str(message.id), cwd=tmp_path)
    assert again.returncode == 1 and "not dead" in again.stderr
    assert xhub("-c", str(cfg), "messages", "show", "nope", cwd=tmp_path).returncode == 2
    engine.dispose()


def test_submit_sends_files_to_a_running_hub(tmp_path: Path, sqlite_url: str) -> None:
    config = hub_config(sqlite_url, tmp_path)
    junk = tmp_path / "junk.xml"
    junk.write_text("no xml here")
    engine = make_engine(sqlite_url)
    with running(create_app(config, engine)) as url:
        ok = xhub("submit", "--url", url, "--token", SENDER_TOKEN, str(XBAU_VALID), cwd=tmp_path)
        again = xhub("submit", "--url", url, "--token", SENDER_TOKEN, str(XBAU_VALID), cwd=tmp_path)
        bad = xhub("submit", "--url", url, "--token", SENDER_TOKEN, str(junk), cwd=tmp_path)
        wrong = xhub("submit", "--url", url, "--token", "nope", str(XBAU_VALID), cwd=tmp_path)
    assert ok.returncode == 0 and "received" in ok.stdout
    assert again.returncode == 0 and "(already submitted)" in again.stdout
    assert bad.returncode == 1 and "refused 400 Not well-formed XML" in bad.stdout
    assert wrong.returncode == 1 and "refused 401 Invalid token" in wrong.stdout
    assert len(store.list_messages(engine)) == 1
    engine.dispose()


SHIPPED_TARGETS = "".join(f'[targets.{name}]\nadapter = "file"\ndirectory = "out/{name}"\n\n'
                          for name in ("bauamt-dms", "gewerberegister", "kfz-register", "steueramt"))


@pytest.mark.parametrize(("sample", "route", "outcome"), [
    ("xgwa1.3-valid.xml", "gewerbeanzeige-1.3", '"meldungsart": "anmeldung"'),
    ("xgwa2.0-valid.xml", "gewerbeanzeige", '"meldungsart": "anmeldung"'),
    ("xgwa2.1-valid.xml", "gewerbeanzeige", "personen[0].geburtsdatum: required"),  # the sample has none
    ("xgwa2.2-valid.xml", "gewerbeanzeige", '"meldungsart": "anmeldung"'),
    ("xgwa2.2-invalid.xml", "gewerbeanzeige", "personen[0].familienname: required"),
])
def test_route_explain_on_the_kosit_samples_with_the_shipped_rules(tmp_path: Path, sample: str, route: str,
                                                                    outcome: str) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text(f'rules_dir = "{ROOT / "mappings"}"\n\n' + SHIPPED_TARGETS)
    assert xhub("-c", str(cfg), "rules", "check", "--golden", cwd=tmp_path).returncode == 0
    path = ROOT / "tests" / "fixtures" / "xoev" / "xgewerbeanzeige" / sample
    result = xhub("-c", str(cfg), "route", "--explain", str(path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"route {route}: MATCHES" in result.stdout and outcome in result.stdout
    assert "route bauaufsicht: no (standard is 'XGewerbeanzeige', route wants 'XBau')" in result.stdout


def test_route_explain_without_a_match_exits_1(tmp_path: Path) -> None:
    cfg = tmp_path / "hub.toml"
    cfg.write_text(f'rules_dir = "{ROOT / "mappings"}"\n\n' + SHIPPED_TARGETS)
    path = ROOT / "tests" / "fixtures" / "xoev" / "xgewerbeanzeige" / "xy-unknown.xml"
    result = xhub("-c", str(cfg), "route", "--explain", str(path), cwd=tmp_path)
    assert result.returncode == 1 and "no route matches" in result.stdout
    bad = xhub("-c", str(cfg), "route", "--explain", str(path), "--metadata", "[1]", cwd=tmp_path)
    assert bad.returncode == 2 and "must be a JSON object" in bad.stderr


def test_rules_check_rejects_a_broken_rule_file_with_file_and_line(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    shutil.copytree(ROOT / "mappings" / "xbau-to-xdomea-abgabe", rules / "xbau-to-xdomea-abgabe")
    (rules / "routes.toml").write_text('[[routes]]\nname = "bau"\nmatch = { standart = "XBau" }\n'
                                       'targets = [{ target = "dms", mapping = "xbau-to-xdomea-abgabe" }]\n')
    cfg = tmp_path / "hub.toml"
    cfg.write_text(f'rules_dir = "{rules}"\n[targets.dms]\nadapter = "file"\ndirectory = "out"\n')
    broken = xhub("-c", str(cfg), "rules", "check", cwd=tmp_path)
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert f"{rules / 'routes.toml'}:3: routes[0].match.standart: unknown key" in broken.stderr
    (rules / "routes.toml").write_text((rules / "routes.toml").read_text().replace("standart", "standard"))
    fixed = xhub("-c", str(cfg), "rules", "check", "--golden", cwd=tmp_path)
    assert fixed.returncode == 0 and "1 route(s): bau" in fixed.stdout and "eingangsbestaetigung: ok" in fixed.stdout
    mapping = rules / "xbau-to-xdomea-abgabe" / "mapping.toml"
    mapping.write_text(mapping.read_text().replace("[mapping]", "[mapping]\nsorce = 'xml'", 1))
    bad_mapping = xhub("-c", str(cfg), "rules", "check", cwd=tmp_path)
    assert bad_mapping.returncode == 2 and f"{mapping}:" in bad_mapping.stderr and "sorce" in bad_mapping.stderr
