"""What the GraphQL slice reports: metrics when the service has them.

``OperationObserver`` is a schema extension: Strawberry makes one per operation, so it
times that operation alone. Operation names are the clients' choice: only well-formed
names are labels, and once a process has seen ``MAX_OPERATION_NAMES`` of them the rest
count as ``<other>``, so no client can grow the metrics without end.
"""

import re
import time
from collections.abc import Iterator
from typing import Protocol

from graphql import ExecutionResult as GraphQLExecutionResult
from strawberry.extensions import SchemaExtension
from strawberry.types import ExecutionResult

MAX_OPERATION_NAMES = 200
_WELL_FORMED = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


class GraphQLObserver(Protocol):
    def operation(self, name: str, kind: str, outcome: str, seconds: float) -> None: ...

    def subscriptions(self, change: int) -> None: ...

    def slow_consumer(self) -> None: ...


class QuietObserver:
    """Reports nothing: without the metrics slice, refusals are still in the responses."""

    def operation(self, name: str, kind: str, outcome: str, seconds: float) -> None:
        pass

    def subscriptions(self, change: int) -> None:
        pass

    def slow_consumer(self) -> None:
        pass


class OperationNames:
    """The labels operation names get: bounded, as the module says."""

    def __init__(self, limit: int = MAX_OPERATION_NAMES) -> None:
        self._seen: set[str] = set()
        self._limit = limit

    def label(self, name: str | None) -> str:
        if name is None:
            return "<anonymous>"
        if not _WELL_FORMED.fullmatch(name):
            return "<other>"
        if name not in self._seen:
            if len(self._seen) >= self._limit:
                return "<other>"
            self._seen.add(name)
        return name


def outcome_of(result: object, refused: bool) -> str:
    """``refused`` when parsing, validation or a limit stopped it; ``error`` when it ran
    and some field failed; ``ok`` otherwise."""
    if refused:
        return "refused"
    if isinstance(result, (ExecutionResult, GraphQLExecutionResult)) and result.errors:
        return "error"
    return "ok"


class OperationObserver(SchemaExtension):
    def __init__(self, *, observer: GraphQLObserver, names: OperationNames) -> None:
        self._observer = observer
        self._names = names
        self._executed = False

    def on_execute(self) -> Iterator[None]:
        # Reached only once parsing, validation and the limits let the operation run.
        self._executed = True
        yield

    def on_operation(self) -> Iterator[None]:
        self._executed = False
        started = time.perf_counter()
        yield
        context = self.execution_context
        try:
            kind = context.operation_type.value
        except RuntimeError:  # the document did not parse: no operation to name
            kind = "unknown"
        self._observer.operation(
            self._names.label(context.operation_name),
            kind,
            outcome_of(context.result, refused=not self._executed),
            time.perf_counter() - started,
        )
