"""``experiments``: list, show, start, stop and ship experiments, and read their results.

The commands work on the database directly, through ``ExperimentService`` as the admin
API does (audit actor ``cli:<os user>``). Running workers pick a change up at their next
poll (``APP_EXPERIMENTS__POLL_SECONDS``). ``results`` prints a table, or JSON with
``--json``, or writes the results page with ``--html FILE``.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.exc import SQLAlchemyError

from ..core.audit import command_line_actor
from ..core.database import create_engine, session_factory
from ..core.errors import ConflictError, NotFoundError
from ..core.settings import Settings
from .page import results_page
from .results import Results, compute
from .schemas import ExperimentRead
from .service import ExperimentService, nothing_to_announce

app = typer.Typer(
    help="List, start, stop and ship experiments; read their results.",
    no_args_is_help=True,
)

KeyArgument = Annotated[str, typer.Argument(help="The experiment's key")]


def _settings() -> Settings:
    # Imported here: the service's CLI module imports this one to mount it.
    from ..cli import load_settings

    return load_settings()


def _run(command: Callable[[ExperimentService, Settings], Awaitable[None]]) -> None:
    """Runs ``command`` with an ExperimentService on the configured database."""
    settings = _settings()

    async def main() -> None:
        engine = create_engine(settings.database)
        try:
            async with session_factory(engine)() as session:
                await command(ExperimentService(session, nothing_to_announce), settings)
        finally:
            await engine.dispose()

    try:
        asyncio.run(main())
    except (NotFoundError, ConflictError) as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(code=1) from None
    except (OSError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        typer.echo(
            f"error: the experiments could not be read from the database: {reason}", err=True
        )
        typer.echo("(is APP_DATABASE__URL right, and has `migrate` been run?)", err=True)
        raise typer.Exit(code=1) from None


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _document(experiment: ExperimentRead) -> dict[str, Any]:
    return {"key": experiment.key, **experiment.model_dump(mode="json", exclude={"key"})}


def _columns(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(row[index]) for row in (header, *rows)) for index in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    )


def _table(experiments: list[ExperimentRead]) -> str:
    rows = [
        (
            e.key,
            e.status,
            ", ".join(f"{arm.key} {arm.weight:g}" for arm in e.arms),
            f"{e.coverage:g}",
            ", ".join(metric.key for metric in e.primary_metrics),
        )
        for e in experiments
    ]
    return _columns(("KEY", "STATUS", "ARMS", "COVERAGE", "PRIMARY METRICS"), rows)


def _interval(bounds: tuple[float, float] | None, scale: float = 1.0) -> str:
    if bounds is None:
        return "-"
    return f"[{bounds[0] * scale:+.4g}, {bounds[1] * scale:+.4g}]"


def results_text(results: Results) -> str:
    """The results as a terminal reads them: exposures, then one table per metric."""
    lines = [
        f"{results.experiment} ({results.status}); "
        f"{'sequential' if results.sequential else 'fixed-horizon'} inference, "
        f"alpha {results.alpha:g}{', CUPED' if results.cuped else ''}",
        _columns(
            ("ARM", "WEIGHT", "EXPOSED"),
            [(arm.arm, f"{arm.weight:g}", str(arm.exposures)) for arm in results.arms],
        ),
        f"sample ratio p = {results.sample_ratio_p_value:.3g}"
        + ("  MISMATCH: do not trust these results" if results.sample_ratio_mismatch else ""),
    ]
    for metric in results.metrics:
        lines.append("")
        lines.append(f"{metric.metric} ({metric.kind}, {metric.role})")
        means = {arm.arm: arm for arm in metric.arms}
        rows = [(arm.arm, str(arm.n), f"{arm.mean:.4g}", "", "", "", "", "") for arm in metric.arms]
        for lift in metric.lifts:
            rows.append(
                (
                    f"{lift.arm} vs {lift.control}",
                    str(means[lift.arm].n),
                    f"{means[lift.arm].mean:.4g}",
                    f"{lift.absolute_lift:+.4g} {_interval(lift.absolute_ci)}",
                    "-"
                    if lift.relative_lift is None
                    else f"{lift.relative_lift * 100:+.2f}% {_interval(lift.relative_ci, 100)}",
                    f"{lift.p_value:.3g}",
                    f"{lift.adjusted_p_value:.3g}" + (" *" if lift.significant else ""),
                    "-" if lift.power is None else f"{lift.power:.2f}",
                )
            )
        header = ("ARM", "N", "MEAN", "LIFT [CI]", "RELATIVE [CI]", "P", "P (HOLM)", "POWER")
        lines.append(_columns(header, rows))
    return "\n".join(lines)


@app.command("list")
def list_experiments(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
) -> None:
    """List every experiment."""

    async def command(service: ExperimentService, _: Settings) -> None:
        experiments = await service.list_all()
        if as_json:
            _print_json([_document(experiment) for experiment in experiments])
        elif experiments:
            typer.echo(_table(experiments))
        else:
            typer.echo("no experiments", err=True)

    _run(command)


@app.command()
def show(key: KeyArgument) -> None:
    """Print one experiment as JSON."""

    async def command(service: ExperimentService, _: Settings) -> None:
        _print_json(_document(await service.get(key)))

    _run(command)


def _transition(
    change: Callable[[ExperimentService], Awaitable[ExperimentRead]], verb: str
) -> None:
    async def command(service: ExperimentService, _: Settings) -> None:
        experiment = await change(service)
        typer.echo(f"{experiment.key}: {verb} ({experiment.status})", err=True)

    _run(command)


@app.command()
def start(key: KeyArgument) -> None:
    """Start a draft experiment."""
    _transition(lambda service: service.start(key, command_line_actor()), "started")


@app.command()
def stop(key: KeyArgument) -> None:
    """Stop a running experiment: everyone reads the flag as without it."""
    _transition(lambda service: service.stop(key, command_line_actor()), "stopped")


@app.command()
def ship(
    key: KeyArgument,
    arm: Annotated[str, typer.Argument(help="The arm everyone gets from now on")],
) -> None:
    """Serve one arm to everyone (stops the experiment if it still runs)."""
    _transition(lambda service: service.ship(key, arm, command_line_actor()), f"shipped {arm}")


@app.command()
def results(
    key: KeyArgument,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write the results page to this file")
    ] = None,
) -> None:
    """Print an experiment's results: per metric and arm, lifts, intervals, p-values."""

    async def command(service: ExperimentService, settings: Settings) -> None:
        experiment = await service.get(key)
        computed = await compute(service.session, experiment, settings.experiments.alpha)
        if html is not None:
            html.write_text(results_page(experiment, computed), encoding="utf-8")
            typer.echo(f"wrote {html}", err=True)
        if as_json:
            _print_json(computed.model_dump(mode="json"))
        elif html is None:
            typer.echo(results_text(computed))

    _run(command)
