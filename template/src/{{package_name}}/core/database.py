"""Async SQLAlchemy engine and sessions, one engine per application instance."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar

from fastapi import Depends, FastAPI, Request
from sqlalchemy import BigInteger, DateTime, Dialect, Integer, MetaData, event, text
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.ext import asyncio as sqlalchemy_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from .health import readiness_checks
from .settings import DatabaseSettings

# Deterministic constraint names keep Alembic autogenerate and SQLite batch migrations stable.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend; SQLite would hand them back naive."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware one")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


# 64-bit ids on PostgreSQL; SQLite only auto-increments a column declared INTEGER, which
# is 64-bit there anyway.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


def _same_as_created_at(context: DefaultExecutionContext) -> object:
    # SQLAlchemy leaves this method unannotated; it returns the row's insert parameters.
    parameters: dict[str, object] = context.get_current_parameters()  # type: ignore[no-untyped-call]
    return parameters["created_at"]


class TimestampMixin:
    # Indexed: lists sort by it by default.
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # On insert, the very same instant as created_at; on update, now.
    updated_at: Mapped[datetime] = mapped_column(default=_same_as_created_at, onupdate=utcnow)


def _enable_sqlite_foreign_keys(dbapi_connection: object, _: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    url = settings.url.get_secret_value()
    sqlite = url.startswith("sqlite")
    # Looked up on its module at call time, so instrumentation that wraps it (OpenTelemetry's
    # SQLAlchemy instrumentor) sees every engine, however early this module was imported.
    engine = sqlalchemy_asyncio.create_async_engine(
        url,
        echo=settings.echo,
        # Bound parameters are user data: keep them out of error messages and logs.
        hide_parameters=True,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout_seconds,
        # Connections dropped by the server (restart, failover) are replaced, not handed out.
        pool_pre_ping=not sqlite,
    )
    if sqlite:
        event.listen(engine.sync_engine, "connect", _enable_sqlite_foreign_keys)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Objects stay readable after commit, so handlers can serialise what they just saved.
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def database_lifespan(app: FastAPI) -> AsyncIterator[None]:
    engine = create_engine(app.state.settings.database)
    app.state.engine = engine
    app.state.sessions = session_factory(engine)

    async def database_ready() -> None:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    readiness_checks(app).register("database", database_ready)
    try:
        yield
    finally:
        await engine.dispose()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    async with sessions() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
