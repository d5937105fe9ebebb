"""The event store: append-only streams with optimistic concurrency, one global order.

Written on SQLAlchemy rather than taken from the ``eventsourcing`` package, whose
reference design this follows (a stream's version is unique; a table lock orders the
appends) but whose persistence is synchronous: here the appends share the service's
async sessions and transactions, so an aggregate's events, its snapshot, the outbox rows
and a projection's rows commit together or not at all.
"""

import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from ..core.database import conflict_insert, utcnow
from ..core.errors import ConflictError
from ..core.tenant import current_tenant
from .domain import DomainEvent, EventTypes
from .models import (
    OUTBOX_LANES,
    EventSequence,
    OutboxEntry,
    Snapshot,
    StoredEvent,
)
from .observer import EventsObserver

SEQUENCE = "events"


class ConcurrencyError(ConflictError):
    """Another append reached the stream's next version first (409): read it again."""


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """An event as stored, in its stored schema version (``EventTypes.load`` reads it)."""

    position: int
    event_id: str
    aggregate_type: str
    aggregate_id: str
    version: int
    event_type: str
    schema_version: int
    data: dict[str, Any]
    recorded_at: datetime
    actor: str | None
    tenant: str | None
    trace_parent: str | None

    @classmethod
    def of(cls, row: StoredEvent) -> "RecordedEvent":
        return cls(
            position=row.position,
            event_id=row.event_id,
            aggregate_type=row.aggregate_type,
            aggregate_id=row.aggregate_id,
            version=row.version,
            event_type=row.event_type,
            schema_version=row.schema_version,
            data=row.data,
            recorded_at=row.recorded_at,
            actor=row.actor,
            tenant=row.tenant,
            trace_parent=row.trace_parent,
        )

    def decoded(self, types: EventTypes) -> DomainEvent:
        return types.load(self.event_type, self.schema_version, self.data)


def outbox_lane(aggregate_id: str) -> int:
    # crc32: the same lane in every process and release (str hashes are salted).
    return zlib.crc32(aggregate_id.encode()) % OUTBOX_LANES


def upsert(session: AsyncSession) -> Callable[..., Any]:
    """The dialect's INSERT with ON CONFLICT (PostgreSQL's and SQLite's read alike)."""
    return conflict_insert(session.get_bind().dialect.name)


def no_trace_context() -> str | None:
    return None


class EventStore:
    def __init__(
        self,
        observer: EventsObserver,
        *,
        publishes: bool,
        trace_context: Callable[[], str | None] = no_trace_context,
        committed: Callable[[], None] = lambda: None,
    ) -> None:
        self.observer = observer
        # Whether appends also write outbox rows (a broker is configured).
        self.publishes = publishes
        self._trace_context = trace_context
        # Wakes the projections and the relay; called once an append has committed.
        self._committed = committed

    async def append(
        self,
        session: AsyncSession,
        aggregate_type: str,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[DomainEvent],
        *,
        actor: str | None,
    ) -> list[RecordedEvent]:
        """Appends ``events`` after version ``expected_version`` of the stream, in the
        session's transaction; the caller commits. ConcurrencyError if another append
        took one of those versions."""
        if not events:
            return []
        # Takes the sequence row's lock until the transaction ends: appends commit one
        # after another, so positions are gap-free (a rolled-back append gives its
        # numbers back) and a reader that saw position N has seen every one before it.
        advance = (
            update(EventSequence)
            .where(EventSequence.name == SEQUENCE)
            .values(last=EventSequence.last + len(events))
            .returning(EventSequence.last)
        )
        last = await session.scalar(advance)
        if last is None:
            # The row is gone (the migration writes it; a restore or a cleanup may not):
            # start it again after the last stored position.
            start = select(func.coalesce(func.max(StoredEvent.position), 0))
            statement = upsert(session)(EventSequence).values(
                name=SEQUENCE, last=start.scalar_subquery()
            )
            await session.execute(statement.on_conflict_do_nothing())
            last = (await session.execute(advance)).scalar_one()
        # After the lock: times then rise with the positions.
        now = utcnow()
        tenant = current_tenant.get()
        trace_parent = self._trace_context()
        first = last - len(events) + 1
        recorded = [
            RecordedEvent(
                position=first + index,
                event_id=str(uuid.uuid4()),
                aggregate_type=aggregate_type,
                aggregate_id=aggregate_id,
                version=expected_version + 1 + index,
                event_type=event.event_type,
                schema_version=event.schema_version,
                data=event.model_dump(mode="json"),
                recorded_at=now,
                actor=actor,
                tenant=tenant,
                trace_parent=trace_parent,
            )
            for index, event in enumerate(events)
        ]
        try:
            await session.execute(insert(StoredEvent), [asdict(event) for event in recorded])
        except IntegrityError as error:
            # Only the stream's (aggregate_id, version) constraint means a concurrent
            # append; a position taken twice means event_sequence is behind the events.
            if "aggregate_id" not in str(error.orig):
                raise
            raise ConcurrencyError(
                f"{aggregate_type} {aggregate_id} changed since version {expected_version}; "
                "read it again and retry"
            ) from None
        if self.publishes:
            lane = outbox_lane(aggregate_id)
            await session.execute(
                insert(OutboxEntry),
                [
                    {
                        "position": event.position,
                        "lane": lane,
                        "aggregate_id": aggregate_id,
                        "recorded_at": now,
                        "attempts": 0,
                        "refusals": 0,
                        "next_attempt_at": now,
                    }
                    for event in recorded
                ],
            )
        self.observer.appended(aggregate_type, len(recorded))
        return recorded

    def notify_committed(self) -> None:
        """Events were committed in this process: readers need not wait for their poll."""
        self._committed()

    async def stream(
        self,
        session: AsyncSession,
        aggregate_id: str,
        *,
        after_version: int = 0,
        up_to_version: int | None = None,
        up_to_time: datetime | None = None,
        limit: int | None = None,
    ) -> list[RecordedEvent]:
        query = (
            select(StoredEvent)
            .where(StoredEvent.aggregate_id == aggregate_id, StoredEvent.version > after_version)
            .order_by(StoredEvent.version)
        )
        if up_to_version is not None:
            query = query.where(StoredEvent.version <= up_to_version)
        if up_to_time is not None:
            query = query.where(StoredEvent.recorded_at <= up_to_time)
        if limit is not None:
            query = query.limit(limit)
        return [RecordedEvent.of(row) for row in (await session.scalars(query))]

    async def read_all(
        self, session: AsyncSession, *, after: int, limit: int
    ) -> list[RecordedEvent]:
        """Events in global order after position ``after``: committed ones only, and with
        no gap, so a reader that stores the last position it read misses none."""
        query = (
            select(StoredEvent)
            .where(StoredEvent.position > after)
            .order_by(StoredEvent.position)
            .limit(limit)
        )
        return [RecordedEvent.of(row) for row in (await session.scalars(query))]

    async def head(self, session: AsyncSession) -> int:
        """The last committed position (0 for an empty store)."""
        return (await session.scalar(select(func.max(StoredEvent.position)))) or 0

    async def snapshot(self, session: AsyncSession, aggregate_id: str) -> Snapshot | None:
        return await session.get(Snapshot, aggregate_id)

    async def save_snapshot(
        self,
        session: AsyncSession,
        aggregate_type: str,
        aggregate_id: str,
        version: int,
        state_version: int,
        state: dict[str, Any],
    ) -> None:
        statement = upsert(session)(Snapshot).values(
            aggregate_id=aggregate_id,
            aggregate_type=aggregate_type,
            version=version,
            state_version=state_version,
            state=state,
            taken_at=utcnow(),
        )
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[Snapshot.aggregate_id],
                set_={
                    "version": statement.excluded.version,
                    "state_version": statement.excluded.state_version,
                    "state": statement.excluded.state,
                    "taken_at": statement.excluded.taken_at,
                },
                # A slower transaction's older snapshot never replaces a newer one.
                where=Snapshot.version < statement.excluded.version,
            )
        )
