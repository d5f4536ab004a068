"""``xhub rules check`` and ``xhub route``: the routing rules and mappings, and where a message would go.

Neither needs a database, and neither creates anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hub.configfile import FileProblem, read_bytes
from hub.explain import explain_route
from hub.jsonsafe import JsonLimits, JsonRejected, loads
from hub.mapping.golden import check_golden
from hub.routing import ATTRIBUTE_KEYS
from xhub.cli import common

__all__ = ["route_cmd", "rules_app"]

rules_app = typer.Typer(help="Routing rules and mappings (mappings/).", no_args_is_help=True)


@rules_app.command("check")
def rules_check(
    golden: Annotated[bool, typer.Option(help="also run every mapping's golden input/output pairs")] = False,
    rules_dir: Annotated[Path | None, typer.Option(help="the rules folder to check (default: rules_dir)")] = None,
) -> None:
    """Load and check every rule and mapping file; exit 2 with file and line on the first broken one.

    Without a configuration file the rules are checked on their own: a route's target that no configuration
    defines here is a warning, since the hub that uses these rules defines its targets.
    """
    config = common.config()
    if rules_dir is not None:
        config = config.model_copy(update={"rules_dir": rules_dir})
    if not config.rules_dir.is_dir():
        common.fail(f"no rules folder {config.rules_dir} (rules_dir); run where it is, or give --rules-dir or "
                    "-c hub.toml")
    rules = common.rule_set(config)
    typer.echo(f"{len(rules.routes)} route(s): {', '.join(r.name for r in rules.routes) or 'none'}")
    typer.echo(f"{len(rules.mappings)} mapping(s): {', '.join(sorted(rules.mappings)) or 'none'}")
    if not golden:
        return
    failures = 0
    for name, mapping in sorted(rules.mappings.items()):
        for given, expected in mapping.goldens:
            result = check_golden(mapping, given, expected)
            failures += result.problem is not None
            typer.echo(f"  {name}: {result.case}: {result.problem or 'ok'}")
    raise typer.Exit(1 if failures else 0)


_METADATA_KEYS = ("tenant", "channel", "sender", "standard", "version", "message_type", *ATTRIBUTE_KEYS)
_METADATA_LIMITS = JsonLimits(max_bytes=64 * 1024, max_depth=3, max_string_chars=4096)


def _metadata(text: str | None) -> dict[str, Any]:
    """``--metadata``: a JSON object of routing facts, each a string or a list of strings."""
    if not text:
        return {}
    try:
        value = loads(text.encode("utf-8", "surrogatepass"), _METADATA_LIMITS)
    except JsonRejected as exc:
        common.fail(f"--metadata is not usable JSON: {exc.detail}")
    if not isinstance(value, dict):
        common.fail("--metadata must be a JSON object, e.g. {\"tenant\": \"memmingen\"}")
    unknown = sorted(set(value) - set(_METADATA_KEYS))
    if unknown:
        common.fail(f"--metadata: unknown key {unknown[0][:40]!r}; the keys are {', '.join(_METADATA_KEYS)}")
    for key, item in value.items():
        items = item if isinstance(item, list) else [item]
        if not all(isinstance(v, str) for v in items):
            common.fail(f"--metadata: {key} must be a string or a list of strings")
    return value


def route_cmd(
    file: Annotated[Path, typer.Argument(help="a message to route")],
    explain: Annotated[bool, typer.Option("--explain", help="say why each route did or did not match")] = True,
    metadata: Annotated[str | None, typer.Option(help='JSON facts, e.g. {"tenant": "memmingen", "service": '
                                                      '"99050012104000", "region": "09764000"}')] = None,
) -> None:
    """Show which route a message takes and what each target would receive. Delivers nothing, stores nothing."""
    extra = _metadata(metadata)
    config = common.config()
    try:
        data = read_bytes(file, config.api.max_body_bytes, "the message")
    except FileProblem as exc:
        common.fail(str(exc))
    result = explain_route(config, common.rule_set(config), data, extra)
    typer.echo(result.text(explain))
    raise typer.Exit(0 if result.decision.route is not None else 1)
