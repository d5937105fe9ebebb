"""The event store's tables: events, their global order, snapshots, projection positions,
the outbox and its lanes, the consumers' inbox and the dead letters.

Events are platform rows, not tenant rows: every tenant's events share one global order,
which projections and the relay read. An event names its tenant (``tenant``), and what
reads a stream for a tenant checks it (``repository.py``).
"""

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..core.database import Base, BigId, utcnow

# The outbox is split in this many lanes, by a hash of the aggregate id: a relay publishes
# the lanes it holds, in position order, so one aggregate's events leave in order while
# several relays share the work. Fixed by the migration that creates the lanes' rows.
OUTBOX_LANES = 16


class StoredEvent(Base):
    """One event of one aggregate: append-only, never updated."""

    __tablename__ = "events"
    # A second event with a version the stream already has is the optimistic
    # concurrency check: the losing append fails on this constraint.
    __table_args__ = (UniqueConstraint("aggregate_id", "version"),)

    # Gap-free, and in commit order: assigned from ``event_sequence`` inside the appending
    # transaction, whose row lock the next append waits for.
    position: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    # The CloudEvents id: unique across services, stable across redeliveries.
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    aggregate_type: Mapped[str] = mapped_column(String(64))
    aggregate_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int]
    event_type: Mapped[str] = mapped_column(String(100))
    # The schema version the data was written in; upcasters bring it to the current one.
    schema_version: Mapped[int]
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # Who appended it: a token's subject, ``cli:<user>``, or none for the system.
    actor: Mapped[str | None] = mapped_column(String(256))
    tenant: Mapped[str | None] = mapped_column(String(64))
    # The W3C trace context of the request that appended it, for the broker's headers.
    trace_parent: Mapped[str | None] = mapped_column(String(64))


class EventSequence(Base):
    """The last position handed out: one row, locked by each append until it commits."""

    __tablename__ = "event_sequence"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    last: Mapped[int] = mapped_column(BigId)


class Snapshot(Base):
    """An aggregate's state at a version, so a load replays only the events after it."""

    __tablename__ = "event_snapshots"

    aggregate_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    aggregate_type: Mapped[str] = mapped_column(String(64))
    version: Mapped[int]
    # The state's own schema version: a snapshot of another one is ignored (rebuilt).
    state_version: Mapped[int]
    state: Mapped[dict[str, Any]] = mapped_column(JSON)
    taken_at: Mapped[datetime] = mapped_column(default=utcnow)


class ProjectionPosition(Base):
    """How far a projection has applied the events (the last position it applied)."""

    __tablename__ = "event_projections"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(BigId, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OutboxEntry(Base):
    """An event still to publish, written in the appending transaction."""

    __tablename__ = "event_outbox"
    __table_args__ = (Index("ix_event_outbox_lane_position", "lane", "position"),)

    position: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=False)
    lane: Mapped[int]
    aggregate_id: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime]
    # Failed publishes: every failure (the backoff grows with them) ...
    attempts: Mapped[int] = mapped_column(default=0)
    # ... and those the broker refused the message itself in (not an outage): what makes
    # the event a dead letter at max_attempts.
    refusals: Mapped[int] = mapped_column(default=0)
    # Not before then: the backoff after a failed publish.
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)


class OutboxLane(Base):
    """One lane of the outbox; a relay holds its row lock while it publishes the lane."""

    __tablename__ = "event_outbox_lanes"

    lane: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)


class InboxEntry(Base):
    """A message a consumer has handled: a redelivery of it is dropped."""

    __tablename__ = "event_inbox"

    consumer: Mapped[str] = mapped_column(String(64), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class DeadLetter(Base):
    """An event the relay gave up publishing, or a message a consumer gave up handling."""

    __tablename__ = "event_dead_letters"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # ``relay`` or the consumer's name.
    source: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(64))
    position: Mapped[int | None] = mapped_column(BigId)
    aggregate_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int]
    error: Mapped[str] = mapped_column(Text)
    failed_at: Mapped[datetime] = mapped_column(default=utcnow)


class DeadLetterNotFoundError(LookupError):
    """No dead letter with that id for the one who would take it back."""
