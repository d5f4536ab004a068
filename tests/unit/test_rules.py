"""Routing rules as data: load-time checks with file and line, matching semantics, reload."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from hub.routing import Facts, RuleHolder, RulesError, load_rules
from xhub.config import HubConfig

TARGETS = {"dms": {"adapter": "file", "directory": "/tmp/x"}, "register": {"adapter": "rest", "url": "http://r/"}}


def config(tmp_path: Path, routes_toml: str | None = None, **extra: object) -> HubConfig:
    rules = tmp_path / "rules"
    rules.mkdir(exist_ok=True)
    if routes_toml is not None:
        (rules / "routes.toml").write_text(routes_toml, encoding="utf-8")
    return HubConfig.model_validate({"targets": TARGETS, "rules_dir": str(rules), **extra})


ROUTES = """
[[routes]]
name = "trade-memmingen"
match = { standard = "XGewerbeanzeige", message_type = "*.gewerbemeldung.*", region = "09764*" }
targets = ["register"]

[[routes]]
name = "vehicles"
match = { service = ["urn:de:fim:leika:leistung:99036*", "99036*"] }
targets = [{ target = "register" }]

[[routes]]
name = "big-buildings"
match = { standard = "XBau", xpath = "count(//x:geschoss) > 3" }
namespaces = { x = "urn:test" }
targets = ["dms", "register"]

[[routes]]
name = "fallback"
targets = ["dms"]
"""


def test_first_match_wins_and_the_others_are_explained(tmp_path: Path) -> None:
    rules = load_rules(config(tmp_path, ROUTES))
    trade = Facts(standard="XGewerbeanzeige", message_type="abh.gewerbemeldung.0500",
                  attributes={"region": "09764000"})
    decision = rules.decide(trade)
    assert decision.route is not None and decision.route.name == "trade-memmingen" and decision.explanation == {}

    elsewhere = Facts(standard="XGewerbeanzeige", message_type="abh.gewerbemeldung.0500",
                      attributes={"region": "06411000"})
    decision = rules.decide(elsewhere)
    assert decision.route is not None and decision.route.name == "fallback"
    assert decision.explanation["trade-memmingen"] == ["region is '06411000', route wants '09764*'"]
    assert "service is None" in decision.explanation["vehicles"][0]


def test_lists_globs_multi_valued_attributes_and_xpath(tmp_path: Path) -> None:
    rules = load_rules(config(tmp_path, ROUTES))
    vehicle = Facts(attributes={"service": "urn:de:fim:leika:leistung:99036012104000"})
    assert rules.decide(vehicle).route.name == "vehicles"  # type: ignore[union-attr]
    root = etree.fromstring(b"<a xmlns='urn:test'>" + b"<geschoss/>" * 4 + b"</a>")
    assert rules.decide(Facts(standard="XBau", root=root)).route.name == "big-buildings"  # type: ignore[union-attr]
    low = etree.fromstring(b"<a xmlns='urn:test'><geschoss/></a>")
    decision = rules.decide(Facts(standard="XBau", root=low))
    assert decision.route.name == "fallback"  # type: ignore[union-attr]
    assert "is false" in decision.explanation["big-buildings"][0]
    two_readers = Facts(standard="XGewerbeanzeige", message_type="x.gewerbemeldung.1",
                        attributes={"region": ["01001000", "09764000"]})
    assert rules.decide(two_readers).route.name == "trade-memmingen"  # type: ignore[union-attr]


def test_no_match_is_explicit(tmp_path: Path) -> None:
    rules = load_rules(config(tmp_path, ROUTES.split("[[routes]]\nname = \"fallback\"")[0]))
    decision = rules.decide(Facts(standard="xdomea"))
    assert decision.route is None and set(decision.explanation) == {"trade-memmingen", "vehicles", "big-buildings"}


@pytest.mark.parametrize(("broken", "expected"), [
    (ROUTES.replace('targets = ["register"]', 'targets = ["registr"]', 1),
     ":5: routes[0].targets[0]: unknown target"),
    (ROUTES.replace("message_type =", "mesage_type =", 1), ":4: routes[0].match.mesage_type: unknown key"),
    (ROUTES.replace("count(//x:geschoss) > 3", "count(//x:geschoss >", 1), ":14: routes[2].match.xpath"),
    (ROUTES.replace('name = "vehicles"', 'name = "trade-memmingen"'), ":8: routes[1].name: duplicate route name"),
    (ROUTES + '\n[[routes]]\nname = "late"\ntargets = ["dms"]\n', ":19: routes[3]: 'fallback' matches everything"),
    (ROUTES.replace("[[routes]]", "[[route]]", 1), "route: unknown key"),
    (ROUTES.replace('{ target = "register" }', '{ target = "register", mapping = "nope" }'),
     "unknown mapping 'nope'"),
])
def test_broken_rules_name_file_and_line(tmp_path: Path, broken: str, expected: str) -> None:
    with pytest.raises(RulesError) as info:
        load_rules(config(tmp_path, broken))
    assert expected in str(info.value) and str(tmp_path / "rules" / "routes.toml") in str(info.value)


def test_routes_in_two_places_are_refused(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="keep them in one place"):
        load_rules(config(tmp_path, ROUTES, routes=[{"name": "inline", "targets": ["dms"]}]))


def test_reload_keeps_the_old_rules_when_the_new_ones_are_broken(tmp_path: Path) -> None:
    cfg = config(tmp_path, ROUTES)
    holder = RuleHolder(cfg)
    first = holder.current
    (tmp_path / "rules" / "routes.toml").write_text(ROUTES.replace("dms", "nowhere"), encoding="utf-8")
    with pytest.raises(RulesError):
        holder.reload()
    assert holder.current is first and holder.last_error and "unknown target 'nowhere'" in holder.last_error
    (tmp_path / "rules" / "routes.toml").write_text('[[routes]]\nname = "only"\ntargets = ["dms"]\n')
    assert [r.name for r in holder.reload().routes] == ["only"] and holder.last_error is None
