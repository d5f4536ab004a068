"""Routing rules and mappings as data: loaded, checked and compiled together, swapped atomically on reload.

Routes come from ``<rules_dir>/routes.toml`` (``[[routes]]`` tables), or, for small set-ups, from
``[[routes]]`` in ``hub.toml``; both at once is an error. Mappings come from ``<rules_dir>/<name>/``
(see :mod:`hub.mapping`). Semantics, in this order:

* routes are tried top to bottom and the **first match wins**; fan-out is several targets in one route;
* every condition in ``match`` must hold; values are glob patterns, a list means any of them; a message
  attribute with several values (e.g. two readers) matches when any value does;
* a route without conditions is the **fallback**: it must be the last route (routes after it could never
  match, which is refused at load time);
* no match: the message is kept in ``dead`` with the reason "no route", until the rules are fixed and an
  operator requeues it.

Every problem is reported with file and line (where it can be found) when the rules are loaded; a
reload that fails leaves the previous rules in force.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
from collections.abc import Mapping as MappingType
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lxml import etree
from pydantic import TypeAdapter, ValidationError

from hub.configfile import FileProblem, explain, locate, read_toml
from hub.mapping import Mapping, MappingError, load_mappings
from hub.models import utcnow
from hub.settings import RetryConfig, RouteConfig, Settings

__all__ = ["Decision", "Facts", "RuleHolder", "RuleSet", "RulesError", "load_rules"]

log = logging.getLogger(__name__)

ROUTES_FILE = "routes.toml"
_ROUTES = TypeAdapter(list[RouteConfig])
#: Match keys read from message attributes (filled by the validate stage and the intake channels).
ATTRIBUTE_KEYS = ("service", "destination", "region", "reader", "author")


class RulesError(ValueError):
    """The rules cannot be used; ``problems`` are ``<file>:<line>: <key>: <message>`` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid rules\n  " + "\n  ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Facts:
    """What routing looks at: message columns, attributes, and the parsed payload (XML only)."""

    tenant: str | None = None
    channel: str | None = None
    sender: str | None = None
    standard: str | None = None
    version: str | None = None
    message_type: str | None = None
    attributes: MappingType[str, Any] = field(default_factory=dict)
    root: etree._Element | None = None

    def values(self, key: str) -> list[str]:
        value = self.attributes.get(key) if key in ATTRIBUTE_KEYS else getattr(self, key)
        if value is None:
            return []
        return [str(v) for v in value] if isinstance(value, list) else [str(value)]


@dataclass(frozen=True)
class Decision:
    route: RouteConfig | None
    explanation: dict[str, list[str]]  # route name → why it did not match (routes tried before the winner)

    def as_detail(self) -> dict[str, Any]:
        return {"route": self.route.name if self.route else None, "not_matched": self.explanation}


@dataclass
class RuleSet:
    routes: list[RouteConfig]
    mappings: dict[str, Mapping]
    sources: list[str]
    warnings: list[str] = field(default_factory=list)  # worth an operator's look, but the rules work
    loaded_at: datetime = field(default_factory=utcnow)
    _xpaths: dict[str, etree.XPath] = field(default_factory=dict)

    def decide(self, facts: Facts) -> Decision:
        explanation: dict[str, list[str]] = {}
        for route in self.routes:
            misses = self._misses(route, facts)
            if not misses:
                return Decision(route, explanation)
            explanation[route.name] = misses
        return Decision(None, explanation)

    def _misses(self, route: RouteConfig, facts: Facts) -> list[str]:
        misses = []
        for key, wanted in route.match.model_dump(exclude_none=True).items():
            if key == "xpath":
                if facts.root is None:
                    misses.append("xpath: the payload is not XML")
                elif not bool(self._xpaths[route.name](facts.root)):
                    misses.append(f"xpath {wanted!r} is false")
                continue
            patterns = wanted if isinstance(wanted, list) else [wanted]
            have = facts.values(key)
            if not any(fnmatch.fnmatchcase(v, p) for v in have for p in patterns):
                shown = have[0] if len(have) == 1 else (have or None)
                misses.append(f"{key} is {shown!r}, route wants {wanted!r}")
        return misses

    def retry_for(self, route_name: str | None, default: RetryConfig) -> RetryConfig:
        route = next((r for r in self.routes if r.name == route_name), None)
        return route.retry if route is not None and route.retry is not None else default

    def summary(self) -> dict[str, Any]:
        return {"routes": [r.name for r in self.routes], "mappings": sorted(self.mappings),
                "sources": self.sources, "loaded_at": self.loaded_at.isoformat()}


def _read_routes(path: Path) -> tuple[list[RouteConfig], str]:
    try:
        data, text = read_toml(path, "routes file")
    except FileProblem as exc:
        raise RulesError([str(exc)]) from None
    unknown = sorted(set(data) - {"routes"})
    if unknown:
        line = locate(text, (unknown[0],))
        where = f"{path}:{line}" if line else str(path)
        raise RulesError([f"{where}: {unknown[0]}: unknown key; this file holds [[routes]] tables only"])
    try:
        return _ROUTES.validate_python(data.get("routes", [])), text
    except ValidationError as exc:
        raise RulesError(explain(exc, str(path), text, prefix=("routes",))) from None


def _cross_check(routes: list[RouteConfig], config: Settings, mappings: dict[str, Mapping], source: str,
                 text: str, unconfigured: list[str] | None) -> tuple[list[str], dict[str, etree.XPath]]:
    """Problems with the routes; a target missing from the configuration goes to ``unconfigured`` instead
    when that is a list (``xhub rules check`` without a configuration file)."""
    problems: list[str] = []
    xpaths: dict[str, etree.XPath] = {}

    def where(*loc: str | int) -> str:
        line = locate(text, ("routes", *loc)) if text else None
        return f"{source}:{line}" if line else source

    seen: set[str] = set()
    for i, route in enumerate(routes):
        if route.name in seen:
            problems.append(f"{where(i, 'name')}: routes[{i}].name: duplicate route name {route.name!r}")
        seen.add(route.name)
        for j, ref in enumerate(route.targets):
            if ref.target not in config.targets and unconfigured is not None:
                unconfigured.append(f"{where(i, 'targets')}: routes[{i}].targets[{j}]: target {ref.target!r} is "
                                    "not configured here (a hub using these rules must define it in [targets])")
            elif ref.target not in config.targets:
                known = ", ".join(sorted(config.targets)) or "none configured in hub.toml"
                problems.append(f"{where(i, 'targets')}: routes[{i}].targets[{j}]: unknown target {ref.target!r} "
                                f"(known: {known})")
            if ref.mapping is not None and ref.mapping not in mappings:
                known = ", ".join(sorted(mappings)) or "none"
                problems.append(f"{where(i, 'targets')}: routes[{i}].targets[{j}]: unknown mapping {ref.mapping!r} "
                                f"(known: {known})")
        if route.match.xpath is not None:
            try:
                xpaths[route.name] = etree.XPath(route.match.xpath, namespaces=route.namespaces)
            except etree.XPathSyntaxError as exc:
                problems.append(f"{where(i, 'match', 'xpath')}: routes[{i}].match.xpath: {exc}")
        if not route.match.model_dump(exclude_none=True) and i < len(routes) - 1:
            later = ", ".join(r.name for r in routes[i + 1:])
            problems.append(f"{where(i, 'name')}: routes[{i}]: {route.name!r} matches everything, so the routes "
                            f"after it ({later}) can never match; make it the last one")
    return problems, xpaths


def load_rules(config: Settings, *, targets_elsewhere: bool = False) -> RuleSet:
    """Load, check and compile routes and mappings. Raises :class:`RulesError` listing every problem.

    With ``targets_elsewhere`` (checking a rules folder without the hub's configuration) a route to a
    target that is not configured is a warning in :attr:`RuleSet.warnings`, not a problem.
    """
    rules_dir = config.rules_dir
    warnings: list[str] = []
    if rules_dir.exists() and not rules_dir.is_dir():
        raise RulesError([f"{rules_dir}: rules_dir is not a directory"])
    if not rules_dir.exists() and not config.routes:
        warnings.append(f"{rules_dir}: rules_dir does not exist and the configuration has no [[routes]]: every "
                        "message would end in dead (no route)")
    try:
        mappings = load_mappings(rules_dir) if rules_dir.is_dir() else {}
    except MappingError as exc:
        raise RulesError([str(exc)]) from None
    routes_file = rules_dir / ROUTES_FILE
    if routes_file.exists() or routes_file.is_symlink():  # not a regular file: refused by the reader
        if config.routes:
            raise RulesError([f"{routes_file}: routes are defined here and in the configuration file; "
                              "keep them in one place"])
        routes, text = _read_routes(routes_file)
        source = str(routes_file)
    else:
        routes, text, source = list(config.routes), "", "configuration [[routes]]"
    problems, xpaths = _cross_check(routes, config, mappings, source, text, warnings if targets_elsewhere else None)
    if problems:
        raise RulesError(problems)
    return RuleSet(routes, mappings, [source, *(str(rules_dir / n) for n in sorted(mappings))], warnings=warnings,
                   _xpaths=xpaths)


class RuleHolder:
    """The rules in force. Readers take :attr:`current` once per message; :meth:`reload` swaps atomically."""

    def __init__(self, config: Settings, rules: RuleSet | None = None) -> None:
        self.config = config
        self._lock = threading.Lock()
        self.current = rules if rules is not None else load_rules(config)
        self.last_error: str | None = None
        for warning in self.current.warnings:
            log.warning("rules: %s", warning)

    def reload(self) -> RuleSet:
        """Load the rules again. On failure the old ones stay in force and :class:`RulesError` is raised."""
        with self._lock:
            try:
                fresh = load_rules(self.config)
            except RulesError as exc:
                self.last_error = str(exc)
                log.error("rules not reloaded, the previous ones stay in force: %s", exc)
                raise
            self.current, self.last_error = fresh, None
        log.info("rules reloaded: %d routes, %d mappings", len(fresh.routes), len(fresh.mappings))
        for warning in fresh.warnings:
            log.warning("rules: %s", warning)
        return fresh

