"""Typer commands: ``xhub validate PATH…`` and ``xhub schemas add|list``.

Mounted by ``hub/cli.py`` (``app.command("validate")(validate_command)``,
``app.add_typer(schemas_app, name="schemas")``); runnable alone as ``python -m hub.validation.cli``.
Works without a running hub or database. Exit codes of ``validate``: 0 every document valid,
1 any invalid or not checked, 2 usage error or unreadable file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hub.validation.bundles import DEFAULT_OPERATOR_DIR, default_schema_dirs
from hub.validation.engine import ValidationEngine
from hub.validation.install import install_bundle
from hub.validation.manifest import BundleError
from hub.validation.report import Report

__all__ = ["default_schema_dirs", "main_app", "schemas_app", "validate_command"]

SchemaDirOption = Annotated[
    Path, typer.Option("--schema-dir", help="Operator schema directory (bundles installed by 'schemas add').")
]


def _collect(paths: list[Path]) -> tuple[list[Path], list[str]]:
    files: list[Path] = []
    problems: list[str] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*.xml") if p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            problems.append(f"{path}: no such file or directory")
    return files, problems


def _text(file: Path, report: Report) -> str:
    lines = [f"{file}: {report.summary()}"]
    for f in report.findings:
        where = " ".join(
            p
            for p in (f"line {f.line}" if f.line else "", f.path or "", f"[{f.rule}]" if f.rule else "")
            if p
        )
        lines.append(f"    {f.severity}: {f.message}" + (f" ({where})" if where else ""))
    return "\n".join(lines)


def validate_command(
    paths: Annotated[list[Path], typer.Argument(help="XML files or folders (searched for *.xml).")],
    format: Annotated[str, typer.Option("--format", help="Output format: text or json.")] = "text",
    schema_dir: SchemaDirOption = DEFAULT_OPERATOR_DIR,
) -> None:
    """Validate XÖV documents against the installed schema bundles."""
    if format not in ("text", "json"):
        typer.echo(f"error: --format must be 'text' or 'json', not {format!r}", err=True)
        raise typer.Exit(2)
    files, problems = _collect(paths)
    engine = ValidationEngine.shared(default_schema_dirs(schema_dir))
    for problem in engine.problems:
        typer.echo(f"warning: {problem}", err=True)
    results: list[dict[str, object]] = []
    all_valid = True
    for file in files:
        try:
            data = file.read_bytes()
        except OSError as exc:
            problems.append(f"{file}: cannot read: {exc.strerror}")
            continue
        report = engine.validate(data)
        all_valid = all_valid and report.verdict == "valid"
        if format == "json":
            results.append({"file": str(file), **report.to_dict()})
        else:
            typer.echo(_text(file, report))
    if format == "json":
        typer.echo(json.dumps(results, indent=2, ensure_ascii=False))
    for problem in problems:
        typer.echo(f"error: {problem}", err=True)
    if problems or not files:
        if not files and not problems:
            typer.echo("error: no XML files found", err=True)
        raise typer.Exit(2)
    raise typer.Exit(0 if all_valid else 1)


schemas_app = typer.Typer(help="Manage XÖV schema bundles.", no_args_is_help=True)


@schemas_app.command("add")
def schemas_add(
    path: Annotated[Path, typer.Argument(help="XRepository release: a zip file or a folder.")],
    schema_dir: SchemaDirOption = DEFAULT_OPERATOR_DIR,
    standard: Annotated[str | None, typer.Option(help="Standard name, if it cannot be inferred.")] = None,
    version: Annotated[str | None, typer.Option(help="Standard version, if it cannot be inferred.")] = None,
    replace: Annotated[bool, typer.Option(help="Overwrite an installed bundle of the same version.")] = False,
) -> None:
    """Install a schema bundle into the operator schema directory and show what it contains."""
    try:
        bundle = install_bundle(path, schema_dir, standard=standard, version=version, replace=replace)
    except BundleError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    ValidationEngine.reset_shared()
    m = bundle.manifest
    typer.echo(f"installed {m.standard} {m.version} into {bundle.folder}")
    typer.echo(f"  namespaces: {', '.join(m.namespaces)}")
    typer.echo(
        f"  message types ({len(m.message_types)}): {', '.join(m.message_types[:20])}"
        + (" …" if len(m.message_types) > 20 else "")
    )
    typer.echo(f"  schematron: {', '.join(m.schematron) or '-'}; code lists: {len(m.codelists)}")


@schemas_app.command("list")
def schemas_list(schema_dir: SchemaDirOption = DEFAULT_OPERATOR_DIR) -> None:
    """Show the installed bundles (shipped and operator-installed)."""
    engine = ValidationEngine.from_dirs(default_schema_dirs(schema_dir))
    for bundle in engine.bundles:
        m = bundle.manifest
        typer.echo(f"{m.standard} {m.version} [{bundle.origin}] {bundle.folder}")
        typer.echo(f"  namespaces: {', '.join(m.namespaces)}")
        typer.echo(
            f"  message types: {len(m.message_types)}; schematron: {len(m.schematron)}; "
            f"code lists: {len(m.codelists)}"
        )
    for problem in engine.problems:
        typer.echo(f"broken: {problem}")


main_app = typer.Typer(help="XÖV validation (standalone).", no_args_is_help=True)
main_app.command("validate")(validate_command)
main_app.add_typer(schemas_app, name="schemas")

if __name__ == "__main__":
    main_app()
