"""The service's command line: ``serve``, ``migrate`` and ``token``."""

from datetime import timedelta
from typing import Annotated

import typer
import uvicorn
from pydantic import ValidationError

from .core.auth.tokens import mint_token
from .core.settings import Settings, get_settings
from .migrations import upgrade

# Tracebacks with local variables would print settings, secrets included.
app = typer.Typer(
    help=__doc__, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False
)


def load_settings() -> Settings:
    """The settings, or exit 2 naming each invalid one without echoing its value."""
    try:
        return get_settings()
    except ValidationError as exc:
        for error in exc.errors(include_input=False, include_url=False):
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            typer.echo(f"error: invalid setting {where}: {error['msg']}", err=True)
        raise typer.Exit(code=2) from None


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [default: settings]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [default: settings]")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes")] = None,
    reload: Annotated[bool, typer.Option(help="Restart on code changes (development)")] = False,
) -> None:
    """Serve the API with uvicorn."""
    server = load_settings().server
    bind_host = host or server.host
    bind_port = port or server.port
    typer.echo(f"Serving on http://{bind_host}:{bind_port} (docs at /docs)", err=True)
    uvicorn.run(
        f"{__package__}.main:create_app",
        factory=True,
        host=bind_host,
        port=bind_port,
        workers=None if reload else (workers or server.workers),
        reload=reload,
        access_log=False,
        log_config=None,
        proxy_headers=True,
        timeout_graceful_shutdown=server.graceful_shutdown_seconds,
    )


@app.command()
def migrate(
    revision: Annotated[str, typer.Argument(help="Target revision")] = "head",
) -> None:
    """Apply database migrations up to REVISION."""
    upgrade(load_settings().database, revision)
    typer.echo(f"Database migrated to {revision}.", err=True)


@app.command()
def token(
    subject: Annotated[str, typer.Option(help="The token's subject (user id)")] = "developer",
    role: Annotated[list[str] | None, typer.Option(help="A role to grant; repeatable")] = None,
    group: Annotated[list[str] | None, typer.Option(help="A group; repeatable")] = None,
    tenant: Annotated[str | None, typer.Option(help="Tenant claim")] = None,
    ttl_minutes: Annotated[int, typer.Option(min=1, help="Lifetime in minutes")] = 60,
) -> None:
    """Print a development bearer token signed with the configured HS256 secret."""
    try:
        encoded = mint_token(
            load_settings().auth,
            subject,
            roles=role or [],
            groups=group or [],
            tenant=tenant,
            ttl=timedelta(minutes=ttl_minutes),
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    typer.echo(encoded)
