"""Starts the tenancy slice: tenant-bound sessions, the directory, the resolver."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from ..core.database import database_failure, session_factory
from ..core.health import readiness_checks
from .directory import TenantDirectory
from .isolation import tenant_sessions
from .resolution import TenantResolver

logger = structlog.stdlib.get_logger(__name__)


class RowSecurityBypassedError(RuntimeError):
    """The service's database role is exempt from row-level security."""


async def check_role(engine: AsyncEngine) -> None:
    """Refuses a PostgreSQL role that row-level security does not hold: a superuser, or
    one with BYPASSRLS, would see every tenant's rows through any raw query."""
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                text(
                    "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles "
                    "WHERE rolname = current_user"
                )
            )
        ).one()
    role, superuser, bypasses = row
    if superuser or bypasses:
        why = "is a superuser" if superuser else "has BYPASSRLS"
        raise RowSecurityBypassedError(
            f"APP_DATABASE__URL connects as role {role!r}, which {why}: row-level security "
            "would not keep tenants apart. Connect as a role without SUPERUSER and "
            "BYPASSRLS (docs/tenancy.md, 'The database role')."
        )


@asynccontextmanager
async def tenancy_lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine: AsyncEngine = app.state.engine
    if engine.dialect.name == "postgresql":
        try:
            await check_role(engine)
        except RowSecurityBypassedError:
            raise
        except Exception as exc:
            if database_failure(exc) is None:
                raise
            # Started without the database: checked as soon as it answers, and until
            # then (or if the role is wrong) the instance is not ready.
            logger.warning("database role not checked yet", error=repr(exc))

            async def role_checked() -> None:
                await check_role(engine)

            readiness_checks(app).register("database role", role_checked)
    settings = app.state.settings.tenancy
    app.state.sessions = tenant_sessions(engine)
    # The registry is no tenant's: read through sessions bound to none.
    directory = TenantDirectory(session_factory(engine), settings.directory_ttl_seconds)
    app.state.tenant_directory = directory
    app.state.tenant_resolver = TenantResolver(settings, directory)
    yield
