"""What the event store, projections, relay and consumers report; the metrics slice's
observer (metrics.py) counts it, without that slice nothing does."""

from typing import Literal, Protocol

ConsumeOutcome = Literal["applied", "duplicate", "failed", "dead_letter"]


class EventsObserver(Protocol):
    def known(
        self, aggregate_types: list[str], projections: list[str], consumers: list[str]
    ) -> None: ...

    def appended(self, aggregate_type: str, count: int) -> None: ...

    def projection_position(self, projection: str, lag: int) -> None: ...

    def published(self, seconds: float) -> None: ...

    def publish_failed(self, count: int) -> None: ...

    def outbox(self, backlog: int, oldest_age_seconds: float) -> None: ...

    def dead_lettered(self, source: str, count: int) -> None: ...

    def consumed(self, consumer: str, outcome: ConsumeOutcome, delay_seconds: float) -> None: ...


class QuietObserver:
    def known(
        self, aggregate_types: list[str], projections: list[str], consumers: list[str]
    ) -> None:
        pass

    def appended(self, aggregate_type: str, count: int) -> None:
        pass

    def projection_position(self, projection: str, lag: int) -> None:
        pass

    def published(self, seconds: float) -> None:
        pass

    def publish_failed(self, count: int) -> None:
        pass

    def outbox(self, backlog: int, oldest_age_seconds: float) -> None:
        pass

    def dead_lettered(self, source: str, count: int) -> None:
        pass

    def consumed(self, consumer: str, outcome: ConsumeOutcome, delay_seconds: float) -> None:
        pass
