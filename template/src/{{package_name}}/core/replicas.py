"""Reads from PostgreSQL streaming replicas, the primary standing in when none can serve.

A route that only reads takes ``ReadSessionDep`` instead of ``SessionDep`` (the items'
GET routes do). Its session is on a replica, chosen in turn among those whose last check
found them up and at most ``database.replica_max_lag_seconds`` behind, unless:

- the request is not a safe method (GET, HEAD, OPTIONS): a request that writes reads
  what it wrote, on the primary;
- the client wrote within ``database.read_your_writes_seconds``: responses to writes set
  a cookie for that long (``ReadYourWritesMiddleware``), and requests carrying it read
  from the primary, so a client sees its own changes on its next read;
- no replica is available (none configured, every one down or behind), or the chosen one
  does not connect in ``database.replica_connect_timeout_seconds``: it is then skipped
  until a check finds it back, and the primary serves the read.

One request, one database: SQLAlchemy's per-statement routing (a ``Session.get_bind``
that sends reads to a replica and flushes to the primary) would let a request check a
write against what a replica a moment behind said. The lag is measured on each replica
every ``database.replica_check_seconds`` and offered to the metrics slice, which exports
it (``app_db_replica_lag_seconds``, ``app_db_replica_available``, ``app_db_reads``).
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol

import structlog
from fastapi import Depends, FastAPI, Request
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .database import create_engine, database_failure
from .health import readiness_checks
from .settings import DatabaseSettings
from .slices import Extensions, Slice

logger = structlog.stdlib.get_logger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Set on responses to writes; while the client sends it back, its reads go to the primary.
READ_YOUR_WRITES_COOKIE = "read_from_primary"

# How far the replica's replay is behind what it has received from the primary. A replica
# that has replayed all it received is current however long ago the primary last wrote
# (an idle primary sends nothing), hence 0; NULL (never streamed yet) counts as unknown.
# Right after a quiet spell, a replica replaying the first new write reads as far behind
# as the quiet spell was long, for one check.
LAG_QUERY = text(
    """
    SELECT CASE
        WHEN NOT pg_is_in_recovery() THEN 0
        WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
        ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())
    END
    """
)

Database = Literal["replica", "primary"]
# Why a read went where it went: the label of app_db_reads.
ReadReason = Literal["read only", "write request", "recent write", "no replica", "replica failed"]


@dataclass(eq=False)
class Replica:
    # host:port/database: safe to log and to use as a metric label (no credentials).
    name: str
    engine: AsyncEngine
    available: bool = False
    lag_seconds: float | None = None
    # Why the replica is skipped, while it is; logged once per change.
    skipped_because: str | None = "not checked yet"


class ReplicaObserver(Protocol):
    """What the metrics slice hears (see metrics/replicas.py)."""

    def replica_checked(self, replica: Replica) -> None: ...

    def read_routed(self, database: Database, reason: ReadReason) -> None: ...


class _Unobserved:
    def replica_checked(self, replica: Replica) -> None:
        pass

    def read_routed(self, database: Database, reason: ReadReason) -> None:
        pass


def replica_name(url: str) -> str:
    parsed = make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"


class ReadReplicas:
    def __init__(
        self,
        settings: DatabaseSettings,
        replicas: Sequence[Replica],
        observer: ReplicaObserver | None = None,
    ) -> None:
        self.settings = settings
        self.replicas = list(replicas)
        self.observer: ReplicaObserver = observer or _Unobserved()
        self._turn = 0
        # Sessions of replicas that failed, closing in the background (kept referenced).
        self._closing: set[asyncio.Task[None]] = set()

    @classmethod
    def connect(
        cls, settings: DatabaseSettings, observer: ReplicaObserver | None = None
    ) -> "ReadReplicas":
        """Engines for the replicas ``settings`` lists; none connects before it is used."""
        # The primary's pool and timeouts, but a short connect: the primary can serve instead.
        as_replica = settings.model_copy(
            update={"connect_timeout_seconds": settings.replica_connect_timeout_seconds}
        )
        replicas = [
            Replica(
                name=replica_name(url.get_secret_value()),
                engine=create_engine(as_replica.model_copy(update={"url": url})),
            )
            for url in settings.replica_urls
        ]
        return cls(settings, replicas, observer)

    def choose(self) -> Replica | None:
        """The next available replica in turn, or None when none is."""
        count = len(self.replicas)
        for offset in range(count):
            replica = self.replicas[(self._turn + offset) % count]
            if replica.available:
                self._turn = (self._turn + offset + 1) % count
                return replica
        return None

    def skip(self, replica: Replica, because: str, **details: object) -> None:
        replica.available = False
        if replica.skipped_because != because:
            logger.warning("read replica skipped", replica=replica.name, because=because, **details)
        replica.skipped_because = because

    def _serve(self, replica: Replica) -> None:
        replica.available = True
        if replica.skipped_because is not None:
            logger.info("read replica serving reads", replica=replica.name)
        replica.skipped_because = None

    async def check(self, replica: Replica) -> None:
        """Measures ``replica``'s lag; skips it if it is down, behind or not streaming."""
        # Room to connect, and a moment for the query itself.
        timeout = self.settings.replica_connect_timeout_seconds + 1.0
        try:
            async with asyncio.timeout(timeout), replica.engine.connect() as connection:
                lag = (await connection.execute(LAG_QUERY)).scalar_one_or_none()
        except TimeoutError:
            replica.lag_seconds = None
            self.skip(replica, "did not answer in time", timeout_seconds=timeout)
        except Exception as error:
            # Whatever went wrong (a refused login, say), the replica cannot serve now.
            replica.lag_seconds = None
            self.skip(replica, "unavailable", error=repr(error))
        else:
            replica.lag_seconds = None if lag is None else max(float(lag), 0.0)
            if replica.lag_seconds is None:
                self.skip(replica, "not streaming from the primary yet")
            elif replica.lag_seconds > self.settings.replica_max_lag_seconds:
                self.skip(replica, "behind the primary", lag_seconds=replica.lag_seconds)
            else:
                self._serve(replica)
        self.observer.replica_checked(replica)

    async def check_all(self) -> None:
        await asyncio.gather(*(self.check(replica) for replica in self.replicas))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.replica_check_seconds)
            await self.check_all()

    def primary_because(self, request: Request) -> ReadReason | None:
        """Why ``request`` reads from the primary whatever the replicas, or None."""
        if request.method not in SAFE_METHODS:
            return "write request"
        if READ_YOUR_WRITES_COOKIE in request.cookies:
            return "recent write"
        return None

    async def session_for(
        self, request: Request, sessions: async_sessionmaker[AsyncSession]
    ) -> AsyncSession:
        """A session on a replica, connected already, or else on the primary."""
        reason = self.primary_because(request)
        if reason is None:
            replica = self.choose()
            if replica is None:
                reason = "no replica"
            else:
                session = await self._connected(replica, sessions)
                if session is not None:
                    self.observer.read_routed("replica", "read only")
                    return session
                reason = "replica failed"
        self.observer.read_routed("primary", reason)
        return sessions()

    async def _connected(
        self, replica: Replica, sessions: async_sessionmaker[AsyncSession]
    ) -> AsyncSession | None:
        """A session on ``replica``, connected already, so that a replica that fails is
        swapped for the primary before the handler runs; None if it fails."""
        # ``bind`` in place of the primary's engine, through whatever factory the service
        # uses (the tenancy slice's binds each session to its tenant).
        session = sessions(bind=replica.engine)
        # Waited for, not cancelled at the timeout: cancelling asyncpg mid-command sends
        # the server a cancel request, which a silent replica makes wait as long again.
        connecting = asyncio.get_running_loop().create_task(session.connection())
        try:
            await asyncio.wait((connecting,), timeout=self.settings.replica_connect_timeout_seconds)
        except asyncio.CancelledError:  # the request was cut meanwhile
            self._let_go(connecting, session)
            raise
        error = connecting.exception() if connecting.done() else TimeoutError()
        if error is None:
            return session
        self._let_go(connecting, session)
        if not isinstance(error, TimeoutError) and database_failure(error) is None:
            raise error
        self.skip(replica, "failed to connect", error=repr(error))
        return None

    def _let_go(self, connecting: "asyncio.Task[AsyncConnection]", session: AsyncSession) -> None:
        """Closes ``session`` in the background once ``connecting`` is over."""
        connecting.cancel()
        closing = asyncio.get_running_loop().create_task(_close_after(connecting, session))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        for replica in self.replicas:
            await replica.engine.dispose()


async def _close_after(connecting: Awaitable[object], session: AsyncSession) -> None:
    with contextlib.suppress(BaseException):
        await connecting
    await session.close()


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session for a route that only reads: on a replica when one can serve it."""
    sessions: async_sessionmaker[AsyncSession] = request.app.state.sessions
    replicas: ReadReplicas | None = getattr(request.app.state, "read_replicas", None)
    session = sessions() if replicas is None else await replicas.session_for(request, sessions)
    try:
        yield session
    finally:
        # As core.database.get_session: an unused session needs no closing, and closing
        # is shielded so a request cut by its deadline still gives the connection back.
        if session.in_transaction():
            await asyncio.shield(session.close())


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session)]


class ReadYourWritesMiddleware:
    """Marks a client that has just written (a cookie with a lifetime), so that its reads
    go to the primary until every replica within the lag bound has its change."""

    def __init__(self, app: ASGIApp, seconds: int) -> None:
        self.app = app
        self.cookie = (
            f"{READ_YOUR_WRITES_COOKIE}=1; Max-Age={seconds}; Path=/; HttpOnly; SameSite=Lax"
        ).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return

        async def send_marked(message: Message) -> None:
            # A refused write (4xx, 5xx) changed nothing to read back.
            if message["type"] == "http.response.start" and message["status"] < 400:
                message["headers"] = [*message.get("headers", ()), (b"set-cookie", self.cookie)]
            await send(message)

        await self.app(scope, receive, send_marked)


def read_your_writes(app: FastAPI, _: Extensions) -> None:
    settings: DatabaseSettings = app.state.settings.database
    if settings.replica_urls and settings.read_your_writes_seconds > 0:
        app.add_middleware(ReadYourWritesMiddleware, seconds=settings.read_your_writes_seconds)


@asynccontextmanager
async def replicas_lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: DatabaseSettings = app.state.settings.database
    if not settings.replica_urls:
        app.state.read_replicas = None
        yield
        return
    observer: ReplicaObserver | None = getattr(app.state, "replica_observer", None)
    replicas = app.state.read_replicas = ReadReplicas.connect(settings, observer)
    # Checked once before serving: a replica serves no read before its lag is known.
    await replicas.check_all()
    for replica in replicas.replicas:

        async def serving(replica: Replica = replica) -> None:
            if not replica.available:
                raise RuntimeError(f"skipped: {replica.skipped_because}")

        # Not critical: the primary serves the reads of a replica that is skipped.
        readiness_checks(app).register(f"read replica {replica.name}", serving, critical=False)
    task = asyncio.create_task(replicas.run(), name="read-replica-checks")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await replicas.close()


replicas_slice = Slice(
    name="read replicas",
    after=("database",),
    lifespan=replicas_lifespan,
    instrument=read_your_writes,
)
