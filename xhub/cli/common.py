"""What every ``xhub`` command shares: the configuration, the rules, the database, and how a command fails.

A command that fails says so in one line on stderr (``xhub: …``) and exits 2 (1 where the command's own
answer is "no", e.g. an invalid message); it never shows a traceback. Commands that only look at the
database open it read-only (:func:`engine` with ``read_only=True``): they never create a database or a
folder, and they say how to make one when it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:  # imported where used: every command starts here, most need only a few of these
    from sqlalchemy import Engine

    from hub.routing import RuleHolder, RuleSet
    from xhub.config import HubConfig

__all__ = ["close", "config", "engine", "existing_engine", "fail", "reset", "rule_holder", "rule_set"]

_state: dict[str, Any] = {}


def reset(path: Path | None) -> None:
    """Start a command: one process may run several (tests), so nothing carries over."""
    _state.clear()
    _state["config_path"] = path
    _state["engines"] = []


def close() -> None:
    """End a command: give back every database connection it opened."""
    for opened in _state.get("engines", []):
        opened.dispose()
    _state["engines"] = []


def fail(message: str, code: int = 2) -> NoReturn:
    """One line on stderr, no traceback."""
    typer.echo(f"xhub: {message}", err=True)
    raise typer.Exit(code)


def config() -> HubConfig:
    from xhub.config import ConfigError, load_config

    if "config" not in _state:
        try:
            _state["config"] = load_config(_state.get("config_path"))
        except ConfigError as exc:
            fail(str(exc))
    loaded: HubConfig = _state["config"]
    return loaded


def rule_holder() -> RuleHolder:
    """The rules for a running hub: every route's target must be configured."""
    from hub.routing import RuleHolder, RulesError

    try:
        return RuleHolder(config())
    except RulesError as exc:
        fail(str(exc))


def rule_set(cfg: HubConfig) -> RuleSet:
    """The rules for a look at them (``rules check``, ``route``), warnings on stderr. Without a configuration
    file, a target that is not configured here is a warning: the hub that uses these rules defines its targets."""
    from hub.routing import RulesError, load_rules
    from xhub.config import config_path

    try:
        rules = load_rules(cfg, targets_elsewhere=config_path(_state.get("config_path")) is None)
    except RulesError as exc:
        fail(str(exc))
    for warning in rules.warnings:
        typer.echo(f"warning: {warning}", err=True)
    return rules


def engine(*, read_only: bool = False) -> Engine:
    """The database; ``read_only`` for commands that only look: they never create a database or a folder,
    and need its schema to be current. Every database problem is one line and exit code 2."""
    from sqlalchemy.exc import SQLAlchemyError

    from hub import migrate, sealing
    from hub.db import DatabaseProblem, describe, make_engine
    from xhub.runtime import SchemaOutdated, install_keyring, open_engine

    cfg = config()
    url = cfg.database.url
    try:
        if not read_only:
            return _track(open_engine(cfg))
        opened = _track(make_engine(url, cfg.database.pool_size, read_only=True))
        current, head = migrate.current_revision(opened), migrate.head_revision()
        if current != head:
            opened.dispose()
            raise SchemaOutdated(f"the database schema is at {current or 'nothing (an empty database)'}, this hub "
                                 f"needs {head}: run `xhub db upgrade`")
        install_keyring(cfg, opened, reading_only=True)
        return opened
    except (DatabaseProblem, SchemaOutdated, sealing.SealingError) as exc:
        fail(str(exc))
    except SQLAlchemyError as exc:
        fail(describe(exc, url))


def _track(opened: Engine) -> Engine:
    _state.setdefault("engines", []).append(opened)
    return opened


def existing_engine() -> Engine:
    """A writing engine on a database that must exist already (a requeue never creates one)."""
    engine(read_only=True).dispose()
    return engine()
