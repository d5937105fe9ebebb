"""``tenants``: create, list, show, change, suspend, resume and delete tenants.

The commands work on the database directly, through ``TenantService`` as the admin API
does (audit actor ``cli:<os user>``). Running processes see a change within
``APP_TENANCY__DIRECTORY_TTL_SECONDS``.
"""

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, cast

import typer
from pydantic import ValidationError
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from ..core.audit import command_line_actor
from ..core.database import create_engine, session_factory
from ..core.errors import ProblemError
from ..core.settings import Settings
from .directory import TenantDirectory
from .isolation import tenant_sessions
from .resolution import TenantResolver
from .schemas import TenantCreate, TenantPatch, TenantRead
from .service import TenantService
from .usage import UsageMeter, usage_report

app = typer.Typer(
    help="Create, list, change, suspend, resume and delete tenants.", no_args_is_help=True
)

TenantArgument = Annotated[str, typer.Argument(help="The tenant's id")]


def _settings() -> Settings:
    # Imported here: the service's CLI module imports this one to mount it.
    from ..cli import load_settings

    return load_settings()


def _run(command: Callable[[TenantService], Awaitable[None]]) -> None:
    """Runs ``command`` with a TenantService on the configured database."""
    settings = _settings()

    async def main() -> None:
        engine = create_engine(settings.database)
        try:
            async with session_factory(engine)() as session:
                await command(TenantService(session, settings.tenancy.plans))
        finally:
            await engine.dispose()

    try:
        asyncio.run(main())
    except ProblemError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(code=1) from None
    except (OSError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        typer.echo(f"error: the tenants could not be read from the database: {reason}", err=True)
        typer.echo("(is APP_DATABASE__URL right, and has `migrate` been run?)", err=True)
        raise typer.Exit(code=1) from None


def _invalid(error: ValidationError) -> typer.Exit:
    for problem in error.errors(include_url=False):
        where = ".".join(str(part) for part in problem["loc"])
        typer.echo(f"error: {where}: {problem['msg']}", err=True)
    return typer.Exit(code=2)


def _print(tenant: TenantRead) -> None:
    typer.echo(json.dumps(tenant.model_dump(mode="json"), indent=2, ensure_ascii=False))


@app.command("list")
def list_tenants(
    suspended: Annotated[bool, typer.Option(help="Only the suspended ones")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False,
) -> None:
    """Every tenant, by id."""

    async def command(service: TenantService) -> None:
        tenants: list[TenantRead] = []
        while True:
            page = await service.page(
                status="suspended" if suspended else None, limit=500, offset=len(tenants)
            )
            tenants.extend(page.items)
            if len(tenants) >= page.total or not page.items:
                break
        if as_json:
            rows: list[Any] = [tenant.model_dump(mode="json") for tenant in tenants]
            typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
            return
        table = [("ID", "STATUS", "PLAN", "NAME")]
        table += [(t.id, t.status, t.plan, t.name) for t in tenants]
        widths = [max(len(row[index]) for row in table) for index in range(3)]
        for row in table:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            typer.echo("  ".join([*cells, row[3]]).rstrip())

    _run(command)


@app.command()
def create(
    tenant_id: TenantArgument,
    name: Annotated[str, typer.Option(help="Display name [default: the id]")] = "",
    plan: Annotated[str | None, typer.Option(help="Plan [default: the first plan]")] = None,
) -> None:
    """Creates a tenant (active)."""
    try:
        data = TenantCreate(id=tenant_id, name=name or tenant_id, plan=plan)
    except ValidationError as exc:
        raise _invalid(exc) from None

    async def command(service: TenantService) -> None:
        _print(await service.create(data, command_line_actor()))

    _run(command)


@app.command()
def show(tenant_id: TenantArgument) -> None:
    """One tenant, as JSON."""

    async def command(service: TenantService) -> None:
        _print(await service.get(tenant_id))

    _run(command)


def _json(option: str, text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        typer.echo(f"error: {option} is not JSON: {exc}", err=True)
        raise typer.Exit(code=2) from None


@app.command()
def update(
    tenant_id: TenantArgument,
    name: Annotated[str | None, typer.Option(help="New display name")] = None,
    plan: Annotated[str | None, typer.Option(help="New plan")] = None,
    features: Annotated[
        str | None,
        typer.Option(help='Flag values by key, as JSON: {"new-search": true}; {} drops them'),
    ] = None,
    limits: Annotated[
        str | None,
        typer.Option(help='Own quotas, as JSON: {"requests_per_day": 5000}; {}: the plan\'s'),
    ] = None,
) -> None:
    """Changes a tenant's name, plan, features or limits (the last two replace the old)."""
    if name is None and plan is None and features is None and limits is None:
        typer.echo(
            "error: nothing to change: give --name, --plan, --features or --limits", err=True
        )
        raise typer.Exit(code=2)
    try:
        patch = TenantPatch(
            name=name,
            plan=plan,
            features=_json("--features", features),
            limits=_json("--limits", limits),
        )
    except ValidationError as exc:
        raise _invalid(exc) from None

    async def command(service: TenantService) -> None:
        _print(await service.update(tenant_id, patch, command_line_actor()))

    _run(command)


@app.command()
def suspend(
    tenant_id: TenantArgument,
    reason: Annotated[str, typer.Option(help="Why, for the audit log")] = "",
) -> None:
    """Refuses the tenant's requests; its data is kept."""

    async def command(service: TenantService) -> None:
        _print(await service.suspend(tenant_id, command_line_actor(), reason))

    _run(command)


@app.command()
def resume(tenant_id: TenantArgument) -> None:
    """Serves a suspended tenant again."""

    async def command(service: TenantService) -> None:
        _print(await service.resume(tenant_id, command_line_actor()))

    _run(command)


@app.command()
def delete(
    tenant_id: TenantArgument,
    confirm: Annotated[
        str, typer.Option(help="The tenant's id again: its data is deleted with it")
    ] = "",
) -> None:
    """Deletes a suspended tenant and all of its data."""
    if confirm != tenant_id:
        typer.echo(
            f"error: deleting {tenant_id!r} deletes all of its data; "
            f"confirm with --confirm {tenant_id}",
            err=True,
        )
        raise typer.Exit(code=2)

    async def command(service: TenantService) -> None:
        await service.delete(tenant_id, command_line_actor())
        typer.echo(f"deleted tenant {tenant_id}")

    _run(command)


@app.command()
def changes(
    tenant_id: TenantArgument,
    limit: Annotated[int, typer.Option(min=1, help="Newest entries shown")] = 20,
) -> None:
    """The tenant's audit log, newest first, as JSON lines."""

    async def command(service: TenantService) -> None:
        for change in await service.changes(tenant_id, limit):
            typer.echo(json.dumps(change.model_dump(mode="json"), ensure_ascii=False))

    _run(command)


@app.command()
def usage(
    tenant_id: TenantArgument,
    since: Annotated[
        str | None, typer.Option(help="First UTC day, YYYY-MM-DD [default: the 1st of the month]")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Last UTC day [default: today]")] = None,
) -> None:
    """A tenant's usage over a period (stored counts), its rows, its quotas, as JSON."""
    from datetime import date

    try:
        first = date.fromisoformat(since) if since else None
        last = date.fromisoformat(until) if until else None
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from None
    settings = _settings()

    async def command(service: TenantService) -> None:
        # The engine _run opened for the command.
        engine = cast(AsyncEngine, service.session.bind)
        directory = TenantDirectory(session_factory(engine), ttl=0)
        await directory.lookup(tenant_id)
        quotas = TenantResolver(settings.tenancy, directory).quotas_of(tenant_id)
        async with tenant_sessions(engine).for_tenant(tenant_id) as tenants_own:
            report = await usage_report(
                tenant_id,
                first,
                last,
                platform=service.session,
                tenants_own=tenants_own,
                meter=UsageMeter(session_factory(engine)),
                quotas=quotas,
            )
        typer.echo(json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False))

    _run(command)
