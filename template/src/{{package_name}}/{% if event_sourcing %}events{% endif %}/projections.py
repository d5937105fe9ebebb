"""Projections: read models kept up to date from the events, in global order.

Each projection stores the last position it applied in ``event_projections``, in the
same transaction as the rows it changed: a batch applies whole or not at all, so a
projection never applies an event twice nor skips one. Rebuilding clears its tables and
applies every event again in one transaction, so readers see the old read model until
the new one is complete.
"""

import asyncio
import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import structlog
from sqlalchemy import Table, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..core.database import utcnow
from .models import ProjectionPosition
from .observer import EventsObserver
from .store import EventStore, RecordedEvent, upsert

logger = structlog.stdlib.get_logger(__name__)


class Projection(ABC):
    """A read model: ``tables`` are its own (a rebuild empties them), ``apply`` changes
    them for one event, inside the runner's transaction."""

    name: ClassVar[str]
    tables: ClassVar[tuple[Table, ...]]

    @abstractmethod
    async def apply(self, session: AsyncSession, event: RecordedEvent) -> None: ...


class UnknownProjectionError(LookupError):
    pass


async def _claim(session: AsyncSession, name: str, *, wait: bool) -> int | None:
    """Locks the projection's position row for this transaction and returns it; None
    when another transaction holds it and ``wait`` is false (another worker applies the
    projection, or a rebuild runs)."""
    if session.get_bind().dialect.name == "postgresql":
        query = select(ProjectionPosition.position).where(ProjectionPosition.name == name)
        return await session.scalar(query.with_for_update(skip_locked=not wait))
    # SQLite has no row locks: writing first takes the database's write lock before the
    # read, so the position read is the latest (a read first could not write after a
    # concurrent commit).
    return await session.scalar(
        update(ProjectionPosition)
        .where(ProjectionPosition.name == name)
        .values(updated_at=utcnow())
        .returning(ProjectionPosition.position)
    )


class ProjectionRunner:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        store: EventStore,
        projections: Sequence[Projection],
        observer: EventsObserver,
        *,
        batch_size: int,
    ) -> None:
        self.sessions = sessions
        self.store = store
        self.projections = {projection.name: projection for projection in projections}
        self.observer = observer
        self.batch_size = batch_size
        # Set when this process appends: apply at once rather than at the next poll.
        self.wakeup = asyncio.Event()

    def projection(self, name: str) -> Projection:
        try:
            return self.projections[name]
        except KeyError:
            known = ", ".join(sorted(self.projections)) or "none"
            raise UnknownProjectionError(f"no projection {name!r} (known: {known})") from None

    async def register(self) -> None:
        """Creates the position row of each projection that has none (position 0)."""
        async with self.sessions() as session, session.begin():
            for name in self.projections:
                statement = upsert(session)(ProjectionPosition).values(
                    name=name, position=0, updated_at=utcnow()
                )
                await session.execute(statement.on_conflict_do_nothing())

    async def step(self, name: str, *, wait: bool = False) -> int:
        """Applies the next batch of events to one projection; how many it applied.

        While another transaction applies the projection, returns 0 at once, or with
        ``wait`` waits for it to commit and goes on from where it stopped."""
        projection = self.projection(name)
        async with self.sessions() as session:
            # Read first, lock only when there is work: idle polls write nothing.
            position = await session.scalar(
                select(ProjectionPosition.position).where(ProjectionPosition.name == name)
            )
            head = await self.store.head(session)
        if position is None:
            # Never registered, or the row is gone (a restore, a cleanup): from the start.
            await self.register()
            position = 0
        # Reported before applying: a projection failing on an event shows its lag grow.
        self.observer.projection_position(name, max(0, head - position))
        if position >= head:
            return 0
        async with self.sessions() as session, session.begin():
            position = await _claim(session, name, wait=wait)
            if position is None:
                return 0
            events = await self.store.read_all(session, after=position, limit=self.batch_size)
            for event in events:
                await projection.apply(session, event)
            if events:
                position = events[-1].position
                await session.execute(
                    update(ProjectionPosition)
                    .where(ProjectionPosition.name == name)
                    .values(position=position, updated_at=utcnow())
                )
        # Against the head read before the batch: no further query while the claim is
        # held (the 5 s measurement and the next step see later appends).
        self.observer.projection_position(name, max(0, head - position))
        return len(events)

    async def catch_up(self, *, wait: bool = False) -> None:
        """Applies every event committed so far to every projection. A batch another
        transaction is applying is left to it, or with ``wait`` waited for: only then
        are all events applied on return."""
        for name in self.projections:
            while await self.step(name, wait=wait) == self.batch_size:
                pass

    async def rebuild(self, name: str) -> int:
        """Empties the projection's tables and applies every event again, in one
        transaction; returns the position it reached. Waits for a live batch to end."""
        projection = self.projection(name)
        await self.register()
        async with self.sessions() as session, session.begin():
            await _claim(session, name, wait=True)
            for table in projection.tables:
                await session.execute(delete(table))
            position = 0
            while events := await self.store.read_all(
                session, after=position, limit=self.batch_size
            ):
                for event in events:
                    await projection.apply(session, event)
                position = events[-1].position
            await session.execute(
                update(ProjectionPosition)
                .where(ProjectionPosition.name == name)
                .values(position=position, updated_at=utcnow())
            )
        self.observer.projection_position(name, 0)
        logger.info("projection rebuilt", projection=name, position=position)
        return position

    async def positions(self) -> tuple[int, dict[str, int]]:
        """The store's head and each projection's position."""
        async with self.sessions() as session:
            head = await self.store.head(session)
            query = select(ProjectionPosition.name, ProjectionPosition.position)
            rows = (await session.execute(query)).all()
        stored = {row.name: row.position for row in rows}
        # A projection that never ran is at 0.
        return head, {name: stored.get(name, 0) for name in self.projections}

    async def run(self, poll_seconds: float) -> None:
        """Keeps every projection up to date: at once after an append in this process,
        within ``poll_seconds`` of one in another."""
        registered = False
        failures = 0
        while True:
            self.wakeup.clear()
            try:
                if not registered:
                    await self.register()
                    registered = True
                await self.catch_up()
                failures = 0
            except Exception:
                failures += 1
                # The traceback once per streak, then a line now and then: a database
                # that is gone must not flood the log.
                if failures == 1:
                    logger.warning("projections could not apply events; retrying", exc_info=True)
                elif failures % 20 == 0:
                    logger.warning("projections still failing", failures=failures)
            # Retries slow down while failures last, up to 30 s apart.
            wait = poll_seconds if not failures else min(30.0, poll_seconds * 2 ** min(failures, 8))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wakeup.wait(), wait)
