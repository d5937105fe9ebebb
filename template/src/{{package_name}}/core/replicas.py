"""Reads from PostgreSQL streaming replicas, the primary standing in when none can serve.

A route that only reads takes ``ReadSessionDep`` instead of ``SessionDep``. Its session
is on a replica, chosen in turn among those known to be at most
``database.replica_max_lag_seconds`` behind the primary, unless:

- the request is not a safe method (GET, HEAD, OPTIONS): a request that writes reads
  what it wrote, on the primary;
- the client wrote within ``database.read_your_writes_seconds``: a response to a request
  that committed sets a cookie for that long (``ReadYourWritesMiddleware``), and requests
  carrying it read from the primary, so a client sees its own changes on its next read;
- no replica is known to be close enough (none configured, every one down, behind or not
  checked for a while), or the chosen one does not connect in
  ``database.replica_connect_timeout_seconds``: it is then skipped until a check finds it
  back, and the primary serves the read.

How far behind a replica is, is measured against the primary, not by the replica alone:
each check reads the primary's WAL position and keeps the positions of the last checks;
a replica that has replayed up to the position the primary had at time ``t`` misses at
most what was committed since ``t``. A replica that stopped receiving WAL (its link to the
primary cut) stays at an old position and falls behind, though by its own account it has
replayed all it received; one restarted while the primary is idle is current at once.
The bound holds between checks too: a replica measured ``lag`` behind ``s`` seconds ago
serves only while ``lag + s`` is within it. With the primary out of reach, the replicas'
own account stands in (what they received, fully replayed, counts as current).

One request, one database: SQLAlchemy's per-statement routing (a ``Session.get_bind``
that sends reads to a replica and flushes to the primary) would let a request check a
write against what a replica a moment behind said. SQLAlchemy leaves replica routing to
the application and no maintained library does it with a lag bound: hence this module.
"""

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol

import structlog
from fastapi import Depends, FastAPI, Request
from sqlalchemy import event, make_url, text
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)
from sqlalchemy.orm import Session
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .database import create_engine, database_failure, release
from .health import readiness_checks
from .settings import DatabaseSettings
from .slices import Extensions, Slice

logger = structlog.stdlib.get_logger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Set on responses to writes; while the client sends it back, its reads go to the primary.
READ_YOUR_WRITES_COOKIE = "read_from_primary"

# Each query also says whether its role may read past row-level security: a replica must
# not connect as one that may where the primary's may not (a physical replica has the
# primary's policies, which such a role ignores).
PRIMARY_QUERY = text(
    """
    SELECT
        pg_current_wal_lsn()::text,
        (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)
    """
)
# The replay position, and the replica's own account of its lag for when the primary is
# out of reach: 0 once it has replayed all it received, else the age of the last
# transaction it replayed.
REPLICA_QUERY = text(
    """
    SELECT
        pg_is_in_recovery(),
        pg_last_wal_replay_lsn()::text,
        CASE
            WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
            ELSE EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())
        END,
        (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)
    """
)

Database = Literal["replica", "primary"]
# Why a read went where it went: the label of app_db_reads.
ReadReason = Literal["read only", "write request", "recent write", "no replica", "replica failed"]


def wal_position(lsn: str) -> int:
    """A PostgreSQL LSN ("16/B374D848") as a number, for comparing positions."""
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


@dataclass(eq=False)
class Replica:
    # host:port/database: safe to log and to use as a metric label (no credentials).
    name: str
    engine: AsyncEngine
    available: bool = False
    # How far behind the primary the last check found it (at most; None: unknown), and
    # when (time.monotonic()).
    lag_seconds: float | None = None
    measured_at: float = 0.0
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


@dataclass(frozen=True)
class _PrimaryState:
    bypasses_row_security: bool


class ReadReplicas:
    def __init__(
        self,
        settings: DatabaseSettings,
        primary: AsyncEngine,
        replicas: Sequence[Replica],
        observer: ReplicaObserver | None = None,
    ) -> None:
        self.settings = settings
        self.primary = primary
        self.replicas = list(replicas)
        self.observer: ReplicaObserver = observer or _Unobserved()
        self._turn = 0
        # (time.monotonic(), the primary's WAL position) of recent checks, oldest first.
        self._positions: deque[tuple[float, int]] = deque()
        self._primary_unreachable = False
        # Sessions of replicas that failed, closing in the background (kept referenced).
        self._closing: set[asyncio.Task[None]] = set()

    @classmethod
    def connect(
        cls,
        settings: DatabaseSettings,
        primary: AsyncEngine,
        observer: ReplicaObserver | None = None,
    ) -> "ReadReplicas":
        """Engines for the replicas ``settings`` lists; none connects before it is used."""
        # The primary's pool and timeouts, but a short connect: the primary can serve instead.
        # And a ping on every checkout: checking out is where a read falls back to the
        # primary, so a replica stopped or gone silent a moment ago must fail there, within
        # the connect timeout, not in the read's query.
        as_replica = settings.model_copy(
            update={
                "connect_timeout_seconds": settings.replica_connect_timeout_seconds,
                "ping_after_idle_seconds": 0,
            }
        )
        replicas = [
            Replica(
                name=replica_name(url.get_secret_value()),
                engine=create_engine(as_replica.model_copy(update={"url": url})),
            )
            for url in settings.replica_urls
        ]
        return cls(settings, primary, replicas, observer)

    def choose(self) -> Replica | None:
        """The next replica in turn known to be within the lag bound now, or None."""
        now = time.monotonic()
        bound = self.settings.replica_max_lag_seconds
        count = len(self.replicas)
        for offset in range(count):
            replica = self.replicas[(self._turn + offset) % count]
            # Behind by at most its measured lag plus the time since it was measured.
            if (
                replica.available
                and replica.lag_seconds is not None
                and replica.lag_seconds + now - replica.measured_at <= bound
            ):
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

    def _timeout(self) -> float:
        # Room to connect, and a moment for the query itself.
        return self.settings.replica_connect_timeout_seconds + 1.0

    async def _primary_state(self) -> _PrimaryState | None:
        """Records the primary's WAL position now; None if the primary is out of reach."""
        measured_at = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout()), self.primary.connect() as connection:
                lsn, bypasses = (await connection.execute(PRIMARY_QUERY)).one()
        except Exception as error:
            if not self._primary_unreachable:
                logger.warning(
                    "primary out of reach: replicas judged by their own account",
                    error=repr(error),
                )
            self._primary_unreachable = True
            return None
        self._primary_unreachable = False
        self._positions.append((measured_at, wal_position(lsn)))
        # Positions older than any lag a replica may serve with are of no more use.
        keep = self.settings.replica_max_lag_seconds + 2 * self.settings.replica_check_seconds
        while len(self._positions) > 1 and self._positions[0][0] < measured_at - keep:
            self._positions.popleft()
        return _PrimaryState(bypasses_row_security=bool(bypasses))

    def _behind_by(self, replayed: int, now: float) -> tuple[float, bool]:
        """How long ago the primary was at a position the replica has replayed: the most
        the replica can miss; and whether that is exact (False: older than every position
        kept, so the lag is that much or more)."""
        for measured_at, position in reversed(self._positions):
            if position <= replayed:
                return now - measured_at, True
        return now - self._positions[0][0], False

    async def check(self, replica: Replica, primary: _PrimaryState | None) -> None:
        """Measures ``replica``'s lag; skips it if it is down, behind or not fit to serve."""
        try:
            async with asyncio.timeout(self._timeout()), replica.engine.connect() as connection:
                in_recovery, replayed, own_lag, bypasses = (
                    await connection.execute(REPLICA_QUERY)
                ).one()
        except TimeoutError:
            replica.lag_seconds = None
            self.skip(replica, "did not answer in time", timeout_seconds=self._timeout())
            return
        except Exception as error:
            # Whatever went wrong (a refused login, say), the replica cannot serve now.
            replica.lag_seconds = None
            self.skip(replica, "unavailable", error=repr(error))
            return
        now = time.monotonic()
        replica.measured_at = now
        if not in_recovery:
            replica.lag_seconds = None
            self.skip(replica, "not a standby: a primary (promoted, or the primary's own URL)")
            return
        if primary is not None and bool(bypasses) and not primary.bypasses_row_security:
            replica.lag_seconds = None
            self.skip(replica, "connects as a role that bypasses row-level security")
            return
        lag: float | None
        if primary is not None and replayed is not None:
            lag, exact = self._behind_by(wal_position(replayed), now)
        else:
            lag, exact = (None, False) if own_lag is None else (max(float(own_lag), 0.0), True)
        replica.lag_seconds = lag
        if lag is None:
            self.skip(replica, "not streaming from the primary yet")
        elif not exact or lag > self.settings.replica_max_lag_seconds:
            self.skip(replica, "behind the primary", lag_seconds=round(lag, 3))
        else:
            self._serve(replica)

    async def check_all(self) -> None:
        primary = await self._primary_state()
        await asyncio.gather(*(self.check(replica, primary) for replica in self.replicas))
        for replica in self.replicas:
            self.observer.replica_checked(replica)

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.replica_check_seconds)
            try:
                await self.check_all()
            except Exception:
                # A fault here (an observer's, say) must not stop the checks: replicas
                # would keep the state of the last one.
                logger.exception("read replica check failed")

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
        # Connected in a task of its own, given up on at the timeout rather than awaited
        # out: a cancelled asyncpg command first sends the server a cancel request, which a
        # silent replica makes the request wait for as long again.
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
        """Cancels ``connecting`` and closes ``session`` in the background once it is over."""
        connecting.cancel()
        closing = asyncio.get_running_loop().create_task(_close_after(connecting, session))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        # Sessions still closing get a moment; then the engines' pools go, theirs included.
        if self._closing:
            await asyncio.wait(self._closing, timeout=self._timeout())
            for closing in self._closing:
                closing.cancel()
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
        await release(session)


ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session)]


class _Committed:
    """Whether the request this belongs to has committed a transaction."""

    def __init__(self) -> None:
        self.yes = False


# The current write request's record, set by ReadYourWritesMiddleware: a shared object,
# so that commits in the tasks the request runs in are seen by the middleware.
_request_committed: ContextVar[_Committed | None] = ContextVar("request_committed", default=None)


@event.listens_for(Session, "after_commit")
def _record_commit(session: Session) -> None:
    committed = _request_committed.get()
    if committed is not None:
        committed.yes = True


class ReadYourWritesMiddleware:
    """Marks a client whose request committed (a cookie with a lifetime), so that its
    reads go to the primary until every replica that serves has its change: the cookie
    lasts ``read_your_writes_seconds``, at least the lag bound (settings.py)."""

    def __init__(self, app: ASGIApp, seconds: int) -> None:
        self.app = app
        self.cookie = (
            f"{READ_YOUR_WRITES_COOKIE}=1; Max-Age={seconds}; Path=/; HttpOnly; SameSite=Lax"
        ).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in SAFE_METHODS:
            await self.app(scope, receive, send)
            return
        committed = _Committed()

        async def send_marked(message: Message) -> None:
            # A request that wrote nothing (a query sent as POST, a refused write) has
            # nothing to read back.
            if message["type"] == "http.response.start" and committed.yes:
                message["headers"] = [*message.get("headers", ()), (b"set-cookie", self.cookie)]
            await send(message)

        token = _request_committed.set(committed)
        try:
            await self.app(scope, receive, send_marked)
        finally:
            _request_committed.reset(token)


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
    replicas = app.state.read_replicas = ReadReplicas.connect(settings, app.state.engine, observer)
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
