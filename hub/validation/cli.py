"""Typer commands: ``xhub validate PATH…`` and ``xhub schemas add|list``.

Mounted by ``xhub/cli/__init__.py`` (``app.command("validate")(validate_command)``,
``app.add_typer(schemas_app, name="schemas")``); runnable alone as ``python -m hub.validation.cli``.
Works without a running hub or database. Without ``--schema-dir`` the commands use the configured
``schema_dir`` (``--config``, ``XHUB_CONFIG`` or ``./hub.toml``, as every ``xhub`` command), the same
folder the running hub validates with.

Exit codes of ``validate``: 0 every document valid, 1 any invalid or not checked, 2 usage error or any
path that could not be read (named on stderr, one line each; the other files are still validated).
Exit codes of ``schemas add``: 0 installed, 2 refused (one line on stderr, nothing changed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer

from hub.settings import Settings
from hub.validation.bundles import default_schema_dirs
from hub.validation.engine import ValidationEngine
from hub.validation.install import install_bundle
from hub.validation.manifest import BundleError
from hub.validation.paths import PathProblem, documents, read_regular, show
from hub.validation.report import Report

__all__ = ["default_schema_dirs", "main_app", "schemas_app", "validate_command"]

SchemaDirOption = Annotated[
    Path | None,
    typer.Option(
        "--schema-dir",
        help="Operator schema directory (bundles installed by 'schemas add'); default: schema_dir of the "
        "configuration.",
    ),
]


def _default_schema_dir() -> Path:
    return Settings().schema_dir


#: The configured ``schema_dir``: the xhub command line puts its one configuration loader here (the core
#: cannot import the command line); run alone, the default folder.
configured_schema_dir: Callable[[], Path] = _default_schema_dir


def _schema_dir(option: Path | None) -> Path:
    """``--schema-dir`` when given, else the configured ``schema_dir`` (config errors end the command)."""
    if option is not None:
        return option
    return configured_schema_dir()


def _text(file: Path, report: Report) -> str:
    # Messages can quote the document (an XSD error names the bad value): escaped, so that a value with a
    # line break cannot forge an output line.
    lines = [f"{show(file)}: {show(report.summary())}"]
    for f in report.findings:
        where = " ".join(
            p
            for p in (f"line {f.line}" if f.line else "", f.path or "", f"[{f.rule}]" if f.rule else "")
            if p
        )
        lines.append(f"    {f.severity}: {show(f.message)}" + (f" ({show(where)})" if where else ""))
    return "\n".join(lines)


JobsOption = Annotated[
    int,
    typer.Option("--jobs", "-j", min=0, help="Processes to spread the files over; 0 = one per CPU core."),
]


def _check(item: Path, dirs: list[Path], as_json: bool) -> tuple[str, object, bool]:
    """One file, in whichever process runs it: ``("error", line, False)`` when it cannot be read, else
    ``("report", text or dict, valid)``. Plain values only, so that a worker process can hand them back."""
    engine = ValidationEngine.shared(dirs)
    try:
        data = read_regular(item, engine.limits.max_bytes)
    except PathProblem as problem:  # one file's failure never stops the others
        return "error", str(problem), False
    report = engine.validate(data)
    shown: object = {"file": show(item), **report.to_dict()} if as_json else _text(item, report)
    return "report", shown, report.verdict == "valid"


def _checked(items: list[Path | PathProblem], dirs: list[Path], as_json: bool,
             jobs: int) -> Iterator[tuple[str, object, bool]]:
    """Every item's result, in the order of ``items``; with ``jobs`` > 1 the files are spread over as many
    processes (each compiles the schemas it needs once), and the results still come in input order."""
    files = [item for item in items if not isinstance(item, PathProblem)]
    if jobs <= 1 or len(files) <= 1:
        done: Iterator[tuple[str, object, bool]] = (_check(f, dirs, as_json) for f in files)
        pool = None
    else:
        from concurrent.futures import ProcessPoolExecutor  # only here: its import costs every run otherwise

        pool = ProcessPoolExecutor(max_workers=min(jobs, len(files)))
        chunk = max(1, min(64, len(files) // (jobs * 4)))
        done = pool.map(_check, files, [dirs] * len(files), [as_json] * len(files), chunksize=chunk)
    try:
        for item in items:
            yield ("error", str(item), False) if isinstance(item, PathProblem) else next(done)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def validate_command(
    paths: Annotated[list[Path], typer.Argument(help="XML files or folders (searched for *.xml).")],
    format: Annotated[str, typer.Option("--format", help="Output format: text or json.")] = "text",
    schema_dir: SchemaDirOption = None,
    jobs: JobsOption = 1,
) -> None:
    """Validate XÖV documents against the installed schema bundles."""
    if format not in ("text", "json"):
        typer.echo(f"error: --format must be 'text' or 'json', not {format!r}", err=True)
        raise typer.Exit(2)
    dirs = default_schema_dirs(_schema_dir(schema_dir))
    engine = ValidationEngine.shared(dirs)
    for problem in engine.problems:
        typer.echo(f"warning: {show(problem)}", err=True)
    results: list[object] = []
    all_valid, unreadable, seen = True, False, 0
    items = list(documents(paths))
    for kind, shown, valid in _checked(items, dirs, format == "json", jobs or os.cpu_count() or 1):
        if kind == "error":
            typer.echo(f"error: {shown}", err=True)
            unreadable = True
            continue
        seen += 1
        all_valid = all_valid and valid
        if format == "json":
            results.append(shown)
        else:
            typer.echo(shown)
    if format == "json":
        typer.echo(json.dumps(results, indent=2, ensure_ascii=False))
    if not seen and not unreadable:
        typer.echo("error: no XML files found", err=True)
    if unreadable or not seen:
        raise typer.Exit(2)
    raise typer.Exit(0 if all_valid else 1)


schemas_app = typer.Typer(help="Manage XÖV schema bundles.", no_args_is_help=True)


@schemas_app.command("add")
def schemas_add(
    path: Annotated[Path, typer.Argument(help="XRepository release: a zip file or a folder.")],
    schema_dir: SchemaDirOption = None,
    standard: Annotated[str | None, typer.Option(help="Standard name, if it cannot be inferred.")] = None,
    version: Annotated[str | None, typer.Option(help="Standard version, if it cannot be inferred.")] = None,
    replace: Annotated[bool, typer.Option(help="Overwrite an installed bundle of the same version.")] = False,
) -> None:
    """Install a schema bundle into the operator schema directory and show what it contains."""
    try:
        bundle = install_bundle(path, _schema_dir(schema_dir), standard=standard, version=version, replace=replace)
    except BundleError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    ValidationEngine.reset_shared()
    m = bundle.manifest
    typer.echo(f"installed {m.standard} {m.version} into {show(bundle.folder)}")
    typer.echo(f"  namespaces: {', '.join(m.namespaces)}")
    typer.echo(
        f"  message types ({len(m.message_types)}): {', '.join(m.message_types[:20])}"
        + (" …" if len(m.message_types) > 20 else "")
    )
    typer.echo(f"  schematron: {', '.join(m.schematron) or '-'}; code lists: {len(m.codelists)}")
    unavailable = bundle.compiled().schematron_unavailable
    if unavailable:
        typer.echo(f"warning: {unavailable}; documents of this bundle will be 'not_checked'", err=True)


@schemas_app.command("list")
def schemas_list(schema_dir: SchemaDirOption = None) -> None:
    """Show the installed bundles (shipped and operator-installed)."""
    engine = ValidationEngine.from_dirs(default_schema_dirs(_schema_dir(schema_dir)))
    for bundle in engine.bundles:
        m = bundle.manifest
        typer.echo(f"{m.standard} {m.version} [{bundle.origin}] {show(bundle.folder)}")
        typer.echo(f"  namespaces: {', '.join(m.namespaces)}")
        typer.echo(
            f"  message types: {len(m.message_types)}; schematron: {len(m.schematron)}; "
            f"code lists: {len(m.codelists)}"
        )
    for problem in engine.problems:
        typer.echo(f"broken: {show(problem)}")


main_app = typer.Typer(help="XÖV validation (standalone).", no_args_is_help=True)
main_app.command("validate")(validate_command)
main_app.add_typer(schemas_app, name="schemas")

if __name__ == "__main__":
    main_app()
