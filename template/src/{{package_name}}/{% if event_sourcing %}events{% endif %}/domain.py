"""What an event-sourced model is made of: domain events, their stored versions, and the
aggregate kind that folds them into state.

A command is a function from the current state to new events, which refuses what the
state does not allow; the state is what applying every event in order gives (``evolve``).
Events and states are pydantic models: what is stored is their JSON, an event's under its
``event_type`` and ``schema_version``.
"""

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class DomainEvent(BaseModel):
    """Something that happened to an aggregate. Subclasses set ``event_type`` (stored,
    so never renamed) and raise ``schema_version`` when their fields change."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1


class StoredEventError(RuntimeError):
    """A stored event this code cannot read: an unknown type, a version without an
    upcaster, or data its class refuses. Never the client's fault."""


class EventTypes:
    """One aggregate kind's event classes by stored name, and the upcasters that bring an
    event stored in an older schema version to its class's current one."""

    def __init__(self, *classes: type[DomainEvent]) -> None:
        self._classes = {cls.event_type: cls for cls in classes}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Registers a function turning ``event_type``'s data from ``from_version`` into
        ``from_version + 1``; a chain of them reaches the current version."""

        def register(function: Upcaster) -> Upcaster:
            self._upcasters[(event_type, from_version)] = function
            return function

        return register

    def load(self, event_type: str, schema_version: int, data: dict[str, Any]) -> DomainEvent:
        cls = self._classes.get(event_type)
        if cls is None:
            raise StoredEventError(f"no event class for stored event type {event_type!r}")
        if schema_version > cls.schema_version:
            raise StoredEventError(
                f"{event_type} was stored in schema version {schema_version}, newer than "
                f"this code's {cls.schema_version}: is an older release reading the store?"
            )
        version = schema_version
        while version < cls.schema_version:
            upcast = self._upcasters.get((event_type, version))
            if upcast is None:
                raise StoredEventError(
                    f"no upcaster for {event_type} from schema version {version} to {version + 1}"
                )
            data = upcast(data)
            version += 1
        try:
            return cls.model_validate(data)
        except ValidationError as error:
            raise StoredEventError(f"stored {event_type} does not fit its class: {error}") from None


StateT = TypeVar("StateT", bound=BaseModel)


class AggregateKind(ABC, Generic[StateT]):
    """A kind of aggregate: its stored name, its events, and how they fold into state.

    ``state_version`` is the schema version of the state's JSON in snapshots: raise it
    when the state's fields change, and older snapshots are ignored (the state is rebuilt
    from the events, and the next snapshot is of the new shape).
    """

    aggregate_type: ClassVar[str]
    events: ClassVar[EventTypes]
    state_type: type[StateT]
    state_version: ClassVar[int] = 1

    @abstractmethod
    def initial(self) -> StateT:
        """The state before the first event."""

    @abstractmethod
    def evolve(self, state: StateT, event: DomainEvent) -> StateT:
        """The state after ``event``; pure, and never refuses an event."""
