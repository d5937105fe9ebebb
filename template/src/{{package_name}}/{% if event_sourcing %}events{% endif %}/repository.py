"""Loading an aggregate (now, or as it was) and running a command on it."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Generic

from sqlalchemy.ext.asyncio import AsyncSession

from ..core.errors import ConflictError, NotFoundError, PreconditionFailedError
from ..core.tenant import current_tenant
from .domain import AggregateKind, DomainEvent, StateT
from .store import EventStore, RecordedEvent


@dataclass(frozen=True, slots=True)
class Loaded(Generic[StateT]):
    aggregate_id: str
    state: StateT
    # 0: no event yet (a stream that does not exist).
    version: int
    created_at: datetime
    changed_at: datetime


class Repository(Generic[StateT]):
    """An aggregate kind's streams in the store, with a snapshot every ``snapshot_every``
    events so that a load replays at most that many."""

    def __init__(
        self, kind: AggregateKind[StateT], store: EventStore, *, snapshot_every: int
    ) -> None:
        self.kind = kind
        self.store = store
        self.snapshot_every = snapshot_every

    def _fold(self, state: StateT, events: Sequence[RecordedEvent]) -> StateT:
        for event in events:
            state = self.kind.evolve(state, event.decoded(self.kind.events))
        return state

    async def load(
        self,
        session: AsyncSession,
        aggregate_id: str,
        *,
        at_version: int | None = None,
        at_time: datetime | None = None,
    ) -> Loaded[StateT] | None:
        """The aggregate after its last event, or after the last one at or before
        ``at_version``/``at_time`` (time travel); None if it had no event by then, or
        belongs to another tenant than the current one."""
        state = self.kind.initial()
        after = 0
        # A snapshot serves the present and any version after it; a point in time would
        # need the time of the snapshot's last event, so time travel replays from zero.
        snapshot = None
        if at_time is None:
            snapshot = await self.store.snapshot(session, aggregate_id)
        if (
            snapshot is not None
            and snapshot.aggregate_type == self.kind.aggregate_type
            and snapshot.state_version == self.kind.state_version
            and (at_version is None or at_version >= snapshot.version)
        ):
            state = self.kind.state_type.model_validate(snapshot.state)
            after = snapshot.version
        events = await self.store.stream(
            session, aggregate_id, after_version=after, up_to_version=at_version, up_to_time=at_time
        )
        if after == 0 and not events:
            return None
        reference = events[0] if events else None
        if reference is not None and reference.aggregate_type != self.kind.aggregate_type:
            return None
        if reference is not None and reference.tenant != current_tenant.get():
            return None
        if after == 0 and reference is not None:
            created_at: datetime | None = reference.recorded_at
        else:
            created_at = await self._created_at(session, aggregate_id)
        if created_at is None:
            return None
        state = self._fold(state, events)
        if events:
            version, changed_at = events[-1].version, events[-1].recorded_at
        else:
            version = after
            changed_at = await self._changed_at(session, aggregate_id, version)
        return Loaded(aggregate_id, state, version, created_at, changed_at)

    async def _created_at(self, session: AsyncSession, aggregate_id: str) -> datetime | None:
        # Also the tenant check for a load from a snapshot: its first event names it.
        first = await self.store.stream(session, aggregate_id, up_to_version=1)
        if not first or first[0].tenant != current_tenant.get():
            return None
        return first[0].recorded_at

    async def _changed_at(self, session: AsyncSession, aggregate_id: str, version: int) -> datetime:
        events = await self.store.stream(
            session, aggregate_id, after_version=version - 1, up_to_version=version
        )
        return events[0].recorded_at

    async def execute(
        self,
        session: AsyncSession,
        aggregate_id: str,
        decide: Callable[[StateT], Sequence[DomainEvent]],
        *,
        actor: str | None,
        create: bool = False,
        precondition: Callable[[int], bool] | None = None,
    ) -> tuple[Loaded[StateT], list[RecordedEvent]]:
        """Runs a command: loads the aggregate, lets ``decide`` refuse it or name its
        events, appends them and commits. ``create``: the stream must not exist yet;
        ``precondition``: the caller's test of the current version (If-Match; 412)."""
        async with session.begin():
            loaded = await self.load(session, aggregate_id)
            if create and loaded is not None:
                raise ConflictError(f"{self.kind.aggregate_type} {aggregate_id} exists already")
            if not create and loaded is None:
                raise NotFoundError(f"{self.kind.aggregate_type} {aggregate_id} not found")
            state = loaded.state if loaded is not None else self.kind.initial()
            version = loaded.version if loaded is not None else 0
            if precondition is not None and not precondition(version):
                raise PreconditionFailedError(
                    f"{self.kind.aggregate_type} {aggregate_id} changed; it is at version {version}"
                )
            new_events = decide(state)
            recorded = await self.store.append(
                session, self.kind.aggregate_type, aggregate_id, version, new_events, actor=actor
            )
            for event in new_events:
                state = self.kind.evolve(state, event)
            new_version = version + len(recorded)
            if new_version // self.snapshot_every > version // self.snapshot_every:
                await self.store.save_snapshot(
                    session,
                    self.kind.aggregate_type,
                    aggregate_id,
                    new_version,
                    self.kind.state_version,
                    state.model_dump(mode="json"),
                )
        self.store.notify_committed()
        if not recorded:
            if loaded is None:  # only a new stream's first command may decide nothing
                raise ConflictError(f"{self.kind.aggregate_type} {aggregate_id} had no event")
            # A command that decided nothing changes nothing.
            return loaded, recorded
        changed_at = recorded[-1].recorded_at
        created_at = loaded.created_at if loaded is not None else changed_at
        return Loaded(aggregate_id, state, new_version, created_at, changed_at), recorded
