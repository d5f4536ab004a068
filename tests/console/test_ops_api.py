"""The operations API: search, a case, actions, bulk, payload, dashboard, audit — with bearer tokens and sessions."""

from __future__ import annotations

import uuid

import httpx
import pytest

from hub import store
from tests.console.world import Browser, World, bearer, status_of
from tests.support import XBAU_VALID


@pytest.fixture
def api(hub_url: str) -> httpx.Client:
    with httpx.Client(base_url=hub_url, headers=bearer(), timeout=30) as client:
        yield client


def test_the_seeded_world_has_every_state(world: World) -> None:
    got = {name: status_of(world.engine, i) for name, i in world.ids.items()}
    assert got == {"mm-ok": "acknowledged", "mm-invalid": "rejected", "mm-dead": "dead", "mm-dead2": "dead",
                   "ab-ok": "acknowledged", "ab-dead": "dead"}


def test_search_by_every_id_and_by_facts(world: World, api: httpx.Client) -> None:
    ident = world.ids["mm-dead"]
    assert [m["id"] for m in api.get("/api/v1/ops/messages", params={"q": str(ident)}).json()["items"]] == [str(ident)]
    found = api.get("/api/v1/ops/messages", params={"q": "antrag-mm-3"}).json()["items"]
    assert [m["id"] for m in found] == [str(ident)]
    dead = api.get("/api/v1/ops/messages", params={"status": "dead"}).json()["items"]
    assert {m["id"] for m in dead} == {str(world.ids[k]) for k in ("mm-dead", "mm-dead2", "ab-dead")}
    by_target = api.get("/api/v1/ops/messages", params={"target": "archive", "tenant": "memmingen"}).json()["items"]
    assert {m["id"] for m in by_target} == {str(world.ids["mm-dead"]), str(world.ids["mm-dead2"])}
    r = api.get("/api/v1/ops/messages", params={"route": "all", "standard": "xbau"})
    assert r.status_code == 200


def test_keyset_paging_walks_every_message_once(world: World, api: httpx.Client) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.get("/api/v1/ops/messages", params=params).json()
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 6
    assert api.get("/api/v1/ops/messages", params={"cursor": "bm9wZQ"}).status_code == 400


def test_case_has_the_whole_story(world: World, api: httpx.Client) -> None:
    case = api.get(f"/api/v1/ops/messages/{world.ids['mm-dead']}").json()
    assert case["status"] == "dead"
    assert [e["to"] for e in case["events"] if e["kind"] == "transition"][:3] == ["received", "validated", "routed"]
    assert case["validation"]["verdict"] in ("valid", "not_checked")
    assert case["route_explanation"]["route"] == "broken"
    [delivery] = case["deliveries"]
    assert delivery["target"] == "archive" and delivery["attempt_log"][0]["outcome"] == "failed"
    assert case["actions"] == ["retry", "requeue", "reject", "resubmit"]
    invalid = api.get(f"/api/v1/ops/messages/{world.ids['mm-invalid']}").json()
    assert invalid["validation"]["findings"], invalid["validation"]


def test_retry_requeue_reject_are_guarded_and_audited(world: World, api: httpx.Client) -> None:
    dead, ok = world.ids["mm-dead"], world.ids["mm-ok"]
    assert api.post(f"/api/v1/ops/messages/{ok}/retry").status_code == 409
    r = api.post(f"/api/v1/ops/messages/{dead}/requeue", json={"stage": "route", "reason": "route fixed"})
    assert r.status_code == 200, r.text
    message = store.get(world.engine, dead)
    assert message is not None and message.status == "retry_wait" and message.resume_status == "validated"
    assert api.post(f"/api/v1/ops/messages/{dead}/retry").status_code == 200  # waiting → due now
    assert api.post(f"/api/v1/ops/messages/{dead}/reject", json={}).status_code == 422
    r = api.post(f"/api/v1/ops/messages/{dead}/reject", json={"reason": "duplicate of antrag-mm-1"})
    assert r.status_code == 200 and status_of(world.engine, dead) == "rejected"
    actions = [a["action"] for a in api.get("/api/v1/ops/audit", params={"message": str(dead)}).json()["items"]]
    assert actions == ["reject", "retry", "requeue"]
    trail = api.get(f"/api/v1/ops/messages/{dead}").json()["events"]
    assert trail[-1]["actor"] == "operator:ops" and "duplicate of antrag-mm-1" in trail[-1]["reason"]


def test_resubmit_makes_a_linked_new_version(world: World, api: httpx.Client) -> None:
    dead = world.ids["mm-dead2"]
    r = api.post(f"/api/v1/ops/messages/{dead}/resubmit", content=XBAU_VALID.read_bytes(),
                 headers={"Content-Type": "application/xml", "X-Comment": "fixed"})
    assert r.status_code == 201, r.text
    new_id = uuid.UUID(r.json()["id"])
    new = store.get(world.engine, new_id)
    assert new is not None and new.previous_version_id == dead and new.sender_reference == "antrag-mm-4"
    assert status_of(world.engine, dead) == "rejected"
    old = api.get(f"/api/v1/ops/messages/{dead}").json()
    assert old["versions"]["next"] == [str(new_id)]
    bad = api.post(f"/api/v1/ops/messages/{world.ids['mm-ok']}/resubmit", content=b"<a>",
                   headers={"Content-Type": "application/xml"})
    assert bad.status_code == 422  # not well-formed, before anything else


def test_bulk_preview_bound_and_tally(world: World, api: httpx.Client) -> None:
    body = {"filter": {"status": "dead"}, "action": "requeue"}
    preview = api.post("/api/v1/ops/bulk/preview", json=body).json()
    assert preview["count"] == 3 and not preview["more_than_bound"] and len(preview["sample"]) == 3
    too_many = api.post("/api/v1/ops/bulk", json={**body, "bound": 2})
    assert too_many.status_code == 409 and too_many.json()["matched"] == 3
    assert status_of(world.engine, world.ids["mm-dead"]) == "dead"  # nothing done
    assert api.post("/api/v1/ops/bulk", json={"filter": {}, "action": "requeue"}).status_code == 422
    tally = api.post("/api/v1/ops/bulk", json={"filter": {"tenant": "memmingen"}, "action": "requeue"}).json()
    assert tally["done"] == 2 and tally["skipped"] == {"acknowledged": 1, "rejected": 1}


def test_payload_download_is_audited(world: World, api: httpx.Client) -> None:
    r = api.get(f"/api/v1/ops/messages/{world.ids['mm-ok']}/payload")
    assert r.status_code == 200 and r.content == XBAU_VALID.read_bytes()
    assert r.headers["content-disposition"].startswith("attachment")
    [entry] = api.get("/api/v1/ops/audit", params={"message": str(world.ids["mm-ok"])}).json()["items"]
    assert entry["action"] == "payload-view" and entry["actor"] == "operator:ops" and entry["remote_addr"]


def test_dashboard_figures(world: World, api: httpx.Client) -> None:
    d = api.get("/api/v1/ops/dashboard").json()
    tenants = {t["tenant"]: t for t in d["tenants"]}
    assert tenants["memmingen"]["dead"] == 2 and tenants["aschaffenburg"]["dead"] == 1
    assert tenants["memmingen"]["received_15m"] == 4 and sum(tenants["memmingen"]["series"]) == 4
    targets = {(t["tenant"], t["target"]): t for t in d["targets"]}
    assert targets[("memmingen", "archive")]["error_rate"] == 1.0
    assert targets[("memmingen", "outbox")]["p95_latency_seconds"] is not None


def test_explain_is_a_dry_run(world: World, api: httpx.Client) -> None:
    r = api.post("/api/v1/ops/explain", params={"tenant": "memmingen"}, content=XBAU_VALID.read_bytes(),
                 headers={"Content-Type": "application/xml"})
    assert r.status_code == 200, r.text
    assert r.json()["route"] == "all" and r.json()["validation"]["summary"]


def test_a_session_needs_its_csrf_token_to_change_anything(world: World, hub_url: str) -> None:
    b = Browser(hub_url)
    assert b.login("op-mm").status_code == 303
    dead = world.ids["mm-dead"]
    assert b.client.get("/api/v1/ops/me").json() == {"name": "op-mm", "kind": "user", "role": "operator",
                                                     "tenants": ["memmingen"]}
    assert b.client.post(f"/api/v1/ops/messages/{dead}/retry").status_code == 403
    r = b.client.post(f"/api/v1/ops/messages/{dead}/retry", headers={"X-CSRF-Token": b.csrf})
    assert r.status_code == 200
    b.close()
