"""``graphql``: write the schema to ``schema.graphql``, and check it.

The committed ``schema.graphql`` is the API's contract: clients generate their types from
it and reviews see each change to it. ``check`` fails when the code's schema and the file
disagree, and names the changes that would break clients (a removed field, a type made
stricter), against the file or against ``--against`` (the previous release's file).
"""

from pathlib import Path
from typing import Annotated

import typer
from graphql import build_schema, find_breaking_changes, find_dangerous_changes

from .schema import schema_text

app = typer.Typer(
    help="Export the GraphQL schema; check it against the committed file.",
    no_args_is_help=True,
)

SchemaFile = Annotated[Path, typer.Argument(help="The committed schema file")]
DEFAULT_FILE = Path("schema.graphql")


@app.command()
def export(path: SchemaFile = DEFAULT_FILE) -> None:
    """Write the code's schema to PATH."""
    path.write_text(schema_text())
    typer.echo(f"wrote {path}")


def _report_changes(previous_text: str, current_text: str, against: str) -> int:
    """Prints the breaking and dangerous changes; returns how many break clients."""
    previous, current = build_schema(previous_text), build_schema(current_text)
    breaking = find_breaking_changes(previous, current)
    for change in breaking:
        typer.echo(f"breaking ({change.type.name}) against {against}: {change.description}")
    for dangerous in find_dangerous_changes(previous, current):
        typer.echo(f"dangerous ({dangerous.type.name}) against {against}: {dangerous.description}")
    return len(breaking)


@app.command()
def check(
    path: SchemaFile = DEFAULT_FILE,
    against: Annotated[
        Path | None,
        typer.Option(help="An earlier schema file; its breaking changes fail the check"),
    ] = None,
    allow_breaking: Annotated[
        bool, typer.Option(help="Report breaking changes against --against, but pass")
    ] = False,
) -> None:
    """Fail when PATH differs from the code's schema; report what breaks clients."""
    current = schema_text()
    if not path.exists():
        typer.echo(f"{path} does not exist: write it with `graphql export`", err=True)
        raise typer.Exit(1)
    committed = path.read_text()
    failed = False
    if committed != current:
        _report_changes(committed, current, str(path))
        typer.echo(f"{path} is out of date with the code: run `graphql export` and commit it")
        failed = True
    if against is not None:
        breaking = _report_changes(against.read_text(), current, str(against))
        if breaking and not allow_breaking:
            typer.echo(f"{breaking} breaking change(s) against {against}")
            failed = True
    if failed:
        raise typer.Exit(1)
    typer.echo(f"{path} matches the code")
