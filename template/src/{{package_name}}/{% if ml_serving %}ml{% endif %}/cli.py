"""``models``: register, list, show, promote, roll back and split model versions.

The commands work on the database and the artifact store directly, through
``ModelRegistry`` as the API does (audit actor ``cli:<os user>``). Serving processes
pick a change up at their next poll (``APP_ML__POLL_SECONDS``).
"""

import asyncio
import csv
import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from numpy.typing import NDArray
from sqlalchemy.exc import SQLAlchemyError

from ..core.audit import command_line_actor
from ..core.database import create_engine, session_factory
from ..core.errors import ConflictError, NotFoundError
from ..core.settings import Settings
from . import example
from .artifacts import ArtifactMissingError, artifact_store
from .formats import ArtifactRefusedError, Framework
from .registry import ModelRegistry
from .schemas import Alias, ModelRead

app = typer.Typer(
    help="Register, list, show, promote, roll back and split model versions.",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="The model's name")]
AliasOption = Annotated[str, typer.Option("--alias", help="champion, challenger or shadow")]
ALIAS_NAMES = ("champion", "challenger", "shadow")


def _settings() -> Settings:
    # Imported here: the service's CLI module imports this one to mount it.
    from ..cli import load_settings

    return load_settings()


def _run(command: Callable[[ModelRegistry], Awaitable[None]]) -> None:
    """Runs ``command`` with a ModelRegistry on the configured database and store."""
    settings = _settings()

    async def main() -> None:
        engine = create_engine(settings.database)
        try:
            async with session_factory(engine)() as session:
                registry = ModelRegistry(
                    session, artifact_store(settings.ml), settings.ml.trusted_types
                )
                await command(registry)
        finally:
            await engine.dispose()

    try:
        asyncio.run(main())
    except (NotFoundError, ConflictError) as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(code=1) from None
    except (ArtifactRefusedError, ArtifactMissingError) as exc:
        typer.echo(f"error: refused: {exc}", err=True)
        raise typer.Exit(code=1) from None
    except (OSError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        typer.echo(f"error: the model registry could not be reached: {reason}", err=True)
        typer.echo("(is APP_DATABASE__URL right, and has `migrate` been run?)", err=True)
        raise typer.Exit(code=1) from None


def _alias(value: str) -> Alias:
    if value not in ALIAS_NAMES:
        raise typer.BadParameter(
            f"{value!r}: choose {', '.join(ALIAS_NAMES)}", param_hint="--alias"
        )
    return value  # type: ignore[return-value]


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _summary(model: ModelRead) -> str:
    aliases = ", ".join(f"{alias} v{version}" for alias, version in sorted(model.aliases.items()))
    split = f"; challenger gets {model.challenger_percent:g}%" if model.challenger_percent else ""
    return f"{model.name}: {aliases or 'no aliases'}{split}"


def read_training_csv(path: Path, target: str | None) -> tuple[list[str], NDArray[np.float64]]:
    """The feature names (the header, less ``target``) and their values as numbers."""
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.reader(file)
        header = next(reader, None)
        if not header:
            raise typer.BadParameter(f"{path} is empty", param_hint="--training-data")
        if target is not None and target not in header:
            raise typer.BadParameter(
                f"{path} has no column {target!r} (its columns: {', '.join(header)})",
                param_hint="--target",
            )
        keep = [index for index, name in enumerate(header) if name != target]
        rows = []
        for line, row in enumerate(reader, start=2):
            try:
                rows.append([float(row[index]) for index in keep])
            except (ValueError, IndexError):
                raise typer.BadParameter(
                    f"{path}, line {line}: every feature must be a number (columns other "
                    "than the label; name the label with --target)",
                    param_hint="--training-data",
                ) from None
    return [header[index] for index in keep], np.array(rows, dtype=np.float64)


@app.command()
def register(
    name: NameArgument,
    artifact: Annotated[
        Path, typer.Argument(help="A .skops or .onnx file", exists=True, dir_okay=False)
    ],
    training_data: Annotated[
        Path | None,
        typer.Option(help="CSV the model was trained on: names its features, enables drift"),
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="The CSV column that is the label, not a feature")
    ] = None,
    features: Annotated[
        str | None, typer.Option(help="Feature names, comma-separated, without a CSV")
    ] = None,
    classes: Annotated[
        str | None, typer.Option(help="An ONNX classifier's labels, in probability order")
    ] = None,
    metrics: Annotated[str | None, typer.Option(help='JSON, as {"accuracy": 0.97}')] = None,
    description: Annotated[str, typer.Option(help="What changed in this version")] = "",
    promote: Annotated[
        str | None, typer.Option(help="Point this alias at the new version at once")
    ] = None,
) -> None:
    """Register a new version of NAME from a skops or ONNX file."""
    framework: Framework = "onnx" if artifact.suffix.lower() == ".onnx" else "sklearn"
    names = [name.strip() for name in features.split(",")] if features else None
    training = None
    if training_data is not None:
        if features:
            raise typer.BadParameter(
                "the training CSV's header names the features", param_hint="--features"
            )
        names, training = read_training_csv(training_data, target)
    try:
        measured = json.loads(metrics) if metrics else {}
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--metrics") from None
    labels = [label.strip() for label in classes.split(",")] if classes else None
    alias = None if promote is None else _alias(promote)
    data = artifact.read_bytes()

    async def command(registry: ModelRegistry) -> None:
        created = await registry.register(
            name,
            framework,
            data,
            actor=command_line_actor(),
            features=names,
            classes=labels,
            training=training,
            metrics=measured,
            description=description,
        )
        typer.echo(f"{name}: registered version {created.version}", err=True)
        if alias is not None:
            moved = await registry.promote(name, alias, created.version, command_line_actor())
            typer.echo(_summary(moved), err=True)

    _run(command)


@app.command("train-example")
def train_example(
    name: Annotated[str, typer.Option(help="Register it under this name")] = example.NAME,
    regularization: Annotated[float, typer.Option(help="Inverse strength (C)")] = 1.0,
    promote: Annotated[
        str | None, typer.Option(help="Alias to point at it (default: champion, if none)")
    ] = None,
) -> None:
    """Train the example iris classifier and register it (champion if there is none)."""
    model = example.train(regularization)
    features, _ = example.iris()

    async def command(registry: ModelRegistry) -> None:
        created = await registry.register(
            name,
            "sklearn",
            example.artifact(model),
            actor=command_line_actor(),
            features=example.FEATURES,
            training=features,
            metrics={"training_accuracy": example.accuracy(model)},
            description=f"iris logistic regression, C={regularization:g}",
        )
        typer.echo(f"{name}: registered version {created.version}", err=True)
        current = await registry.get(name)
        alias = _alias(promote) if promote else None
        if alias is None and "champion" not in current.aliases:
            alias = "champion"
        if alias is not None:
            current = await registry.promote(name, alias, created.version, command_line_actor())
        typer.echo(_summary(current), err=True)

    _run(command)


@app.command("list")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """List the models with their aliases and split."""

    async def command(registry: ModelRegistry) -> None:
        models = await registry.list_models()
        if as_json:
            _print_json([model.model_dump(mode="json") for model in models])
        elif models:
            for model in models:
                typer.echo(_summary(model))
        else:
            typer.echo("no models", err=True)

    _run(command)


@app.command()
def show(
    name: NameArgument,
    version: Annotated[int | None, typer.Option(help="One version in full")] = None,
) -> None:
    """Print a model (its aliases and versions) or one version as JSON."""

    async def command(registry: ModelRegistry) -> None:
        if version is not None:
            _print_json((await registry.version(name, version)).model_dump(mode="json"))
            return
        model = (await registry.get(name)).model_dump(mode="json")
        versions: Sequence[Any] = await registry.versions(name)
        model["versions"] = [
            {
                "version": entry.version,
                "framework": entry.framework,
                "aliases": entry.aliases,
                "metrics": entry.metrics,
                "created_by": entry.created_by,
                "created_at": entry.created_at.isoformat(),
                "description": entry.description,
            }
            for entry in versions
        ]
        _print_json(model)

    _run(command)


@app.command()
def promote(
    name: NameArgument,
    version: Annotated[int, typer.Argument(help="The version to serve")],
    alias: AliasOption = "champion",
) -> None:
    """Point an alias (the champion unless --alias) at a version."""
    chosen = _alias(alias)

    async def command(registry: ModelRegistry) -> None:
        typer.echo(
            _summary(await registry.promote(name, chosen, version, command_line_actor())), err=True
        )

    _run(command)


@app.command()
def rollback(name: NameArgument, alias: AliasOption = "champion") -> None:
    """Move an alias back to the version it served before its last promotion."""
    chosen = _alias(alias)

    async def command(registry: ModelRegistry) -> None:
        typer.echo(_summary(await registry.rollback(name, chosen, command_line_actor())), err=True)

    _run(command)


@app.command()
def retire(name: NameArgument, alias: AliasOption = "challenger") -> None:
    """Remove a challenger or a shadow."""
    chosen = _alias(alias)

    async def command(registry: ModelRegistry) -> None:
        typer.echo(_summary(await registry.retire(name, chosen, command_line_actor())), err=True)

    _run(command)


@app.command()
def split(
    name: NameArgument,
    percent: Annotated[
        float, typer.Argument(help="Share of callers for the challenger", min=0, max=100)
    ],
) -> None:
    """Send PERCENT of callers (sticky) to the challenger; 0 stops the canary."""

    async def command(registry: ModelRegistry) -> None:
        typer.echo(_summary(await registry.split(name, percent, command_line_actor())), err=True)

    _run(command)
