"""Routing and mapping in the running pipeline: fan-out with per-target mappings, reload through the API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
from sqlalchemy import Engine

from hub import operations, store
from hub.routing import RuleHolder
from hub.validation import ValidationEngine
from hub.validation.bundles import default_schema_dirs
from tests.support import OPERATOR_TOKEN, ROOT, XBAU_VALID, hub_config, running
from xhub.api.app import create_app
from xhub.runtime import make_worker

ROUTES = """
[[routes]]
name = "bauaufsicht"
match = { standard = "XBau", reader = "*" }
targets = ["archive", { target = "dms", mapping = "xbau-to-xdomea-abgabe" }]
"""


def rules_dir(tmp_path: Path, routes: str = ROUTES) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    shutil.copytree(ROOT / "mappings" / "xbau-to-xdomea-abgabe", folder / "xbau-to-xdomea-abgabe", dirs_exist_ok=True)
    (folder / "routes.toml").write_text(routes, encoding="utf-8")
    return folder


def config_for(db_url: str, tmp_path: Path) -> object:
    return hub_config(db_url, tmp_path, routes=[], rules_dir=str(rules_dir(tmp_path)), targets={
        "archive": {"adapter": "file", "directory": str(tmp_path / "archive")},
        "dms": {"adapter": "file", "directory": str(tmp_path / "dms")},
    })


def test_fan_out_renders_each_target_through_its_mapping(engine: Engine, db_url: str, tmp_path: Path) -> None:
    config = config_for(db_url, tmp_path)
    message, _ = store.accept(engine, store.NewMessage("memmingen", "rest", "portal", [
        store.Part("payload", "application/xml", XBAU_VALID.read_bytes())]), actor="sender:portal")
    make_worker(config, engine).run(exit_when_idle=True)  # type: ignore[arg-type]

    done = store.get(engine, message.id)
    assert done is not None and done.status == "acknowledged" and done.route == "bauaufsicht"
    records = {d.target: d for d in store.deliveries(engine, message.id)}
    assert {t: (d.mapping, d.status) for t, d in records.items()} == {
        "archive": (None, "delivered"), "dms": ("xbau-to-xdomea-abgabe", "delivered")}
    raw = (tmp_path / "archive" / f"xhub-{message.id}-archive.xml").read_bytes()
    assert raw == XBAU_VALID.read_bytes()
    xdomea = (tmp_path / "dms" / f"xhub-{message.id}-dms.xml").read_bytes()
    report = ValidationEngine.shared(default_schema_dirs(tmp_path / "none")).validate(xdomea)
    assert (report.standard, report.message_type, report.verdict) == ("xdomea", "Abgabe.Abgabe.0401", "valid")
    assert str(message.id) in xdomea.decode()  # the hub's message id becomes the xdomea ProzessID
    routed = next(e for e in store.events(engine, message.id) if e.to_status == "routed")
    assert routed.reason == "route: route bauaufsicht → archive, dms (mapping xbau-to-xdomea-abgabe)"


def test_a_failed_mapping_waits_in_dead_and_completes_after_the_fix(engine: Engine, db_url: str,
                                                                    tmp_path: Path) -> None:
    """The operator's story: a district the mapping does not know; fix the table, reload, requeue."""
    folder = tmp_path / "rules"
    name = "vehicle-registration-to-registry"
    shutil.copytree(ROOT / "mappings" / name, folder / name)
    (folder / "routes.toml").write_text('[[routes]]\nname = "kfz"\nmatch = { service = "99036*" }\n'
                                        f'targets = [{{ target = "kfz", mapping = "{name}" }}]\n')
    config = hub_config(db_url, tmp_path, routes=[], rules_dir=str(folder),
                        targets={"kfz": {"adapter": "file", "directory": str(tmp_path / "kfz"), "suffix": ".json"}})
    holder = RuleHolder(config)
    application = json.loads((ROOT / "sandbox" / "demo" / "samples" / "kfz-zulassung.json").read_text())
    application["zulassungsbezirk"]["ags"] = "05315000"  # Köln: not in the mapping's table
    message, _ = store.accept(engine, store.NewMessage("memmingen", "rest", "portal", [
        store.Part("payload", "application/json", json.dumps(application).encode())],
        attributes={"service": "99036012104000"}), actor="sender:portal")
    make_worker(config, engine, holder).run(exit_when_idle=True)
    dead = store.get(engine, message.id)
    assert dead is not None and dead.status == "dead" and dead.resume_status == "routed"
    assert "mapping vehicle-registration-to-registry failed" in (dead.last_error or "")
    assert "05315000" in (dead.last_error or "")

    table = folder / "vehicle-registration-to-registry" / "mapping.toml"
    table.write_text(table.read_text().replace('"09764000" = "MM",', '"09764000" = "MM", "05315000" = "K",'))
    holder.reload()
    operations.requeue(engine, message.id, operator="anna", reason="Köln added to the district table")
    make_worker(config, engine, holder).run(exit_when_idle=True)
    done = store.get(engine, message.id)
    assert done is not None and done.status == "acknowledged"
    written = json.loads((tmp_path / "kfz" / f"xhub-{message.id}-kfz.json").read_text())
    assert written["RegistrationDistrict"] == "K" and written["Vin"] == "WVWZZZ1JZXW000001"  # normalised


def test_reload_through_the_api_keeps_old_rules_on_error(engine: Engine, db_url: str, tmp_path: Path) -> None:
    config = config_for(db_url, tmp_path)
    holder = RuleHolder(config)  # type: ignore[arg-type]
    auth = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    with running(create_app(config, engine, rules=holder)) as url, httpx.Client(base_url=url) as client:  # type: ignore[arg-type]
        assert client.get("/api/v1/rules", headers=auth).json()["routes"] == ["bauaufsicht"]
        (tmp_path / "rules" / "routes.toml").write_text(ROUTES.replace('"archive"', '"archiv"'))
        r = client.post("/api/v1/rules/reload", headers=auth)
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        assert any("unknown target 'archiv'" in p for p in r.json()["problems"])
        state = client.get("/api/v1/rules", headers=auth).json()
        assert state["routes"] == ["bauaufsicht"] and "archiv" in state["last_reload_error"]
        (tmp_path / "rules" / "routes.toml").write_text(ROUTES.replace('name = "bauaufsicht"', 'name = "bau"'))
        assert client.post("/api/v1/rules/reload", headers=auth).json()["routes"] == ["bau"]
        assert holder.current.routes[0].name == "bau"
        assert client.post("/api/v1/rules/reload", headers={"Authorization": "Bearer nope"}).status_code == 401
