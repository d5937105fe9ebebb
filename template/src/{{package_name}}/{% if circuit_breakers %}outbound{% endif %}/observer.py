"""What the outbound client reports while it works: outcomes, retries, transitions.

The client calls one :class:`Observer`; the log observer is always there, the metrics and
tracing slices add theirs (``metrics.py``, ``tracing.py``) when the service has them.
"""

import enum
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext

import structlog

from .breaker import BreakerState, Transition

logger = structlog.stdlib.get_logger(__name__)

# Reusable: nullcontext keeps no state.
NO_WRAPPING: AbstractContextManager[None] = nullcontext()


class Outcome(enum.StrEnum):
    """How one attempt ended; bounded, so it can label a metric."""

    SUCCESS = "success"
    # Succeeded after the dependency's slow_call_seconds.
    SLOW = "slow"
    # A 5xx, 408 or 429, a refused or reset connection.
    FAILURE = "failure"
    # No answer within the connect, read or total timeout.
    TIMEOUT = "timeout"
    # A 4xx the caller caused: the dependency is fine.
    CLIENT_ERROR = "client_error"
    # Cancelled by the caller (its own request ended) before the dependency answered.
    CANCELLED = "cancelled"
    REJECTED_BY_BREAKER = "rejected_by_breaker"
    REJECTED_BY_BULKHEAD = "rejected_by_bulkhead"


class Observer:
    """Does nothing; subclasses override what they report."""

    def attempt_finished(self, dependency: str, outcome: Outcome, seconds: float) -> None:
        """One attempt ended; ``seconds`` is 0 for rejected ones, which sent nothing."""

    def retrying(self, dependency: str, attempt: int, wait_seconds: float) -> None:
        """Attempt number ``attempt`` (2 or more) starts after ``wait_seconds``."""

    def budget_exhausted(self, dependency: str) -> None:
        """A retry was wanted and the retry budget refused it."""

    def transition(self, transition: Transition) -> None:
        """A breaker changed state."""

    def call(self, dependency: str, state: BreakerState) -> AbstractContextManager[None]:
        """Wraps a whole call, its retries included."""
        return NO_WRAPPING


class Observers(Observer):
    """Reports to each of ``observers`` in turn."""

    def __init__(self, observers: Sequence[Observer]) -> None:
        self._observers = tuple(observers)
        # Only the observers that wrap calls (spans): the others would add a context
        # manager per call that does nothing.
        self._wrapping = tuple(
            observer for observer in observers if type(observer).call is not Observer.call
        )

    def attempt_finished(self, dependency: str, outcome: Outcome, seconds: float) -> None:
        for observer in self._observers:
            observer.attempt_finished(dependency, outcome, seconds)

    def retrying(self, dependency: str, attempt: int, wait_seconds: float) -> None:
        for observer in self._observers:
            observer.retrying(dependency, attempt, wait_seconds)

    def budget_exhausted(self, dependency: str) -> None:
        for observer in self._observers:
            observer.budget_exhausted(dependency)

    def transition(self, transition: Transition) -> None:
        for observer in self._observers:
            observer.transition(transition)

    def call(self, dependency: str, state: BreakerState) -> AbstractContextManager[None]:
        if not self._wrapping:
            return NO_WRAPPING
        if len(self._wrapping) == 1:
            return self._wrapping[0].call(dependency, state)
        return self._all_calls(dependency, state)

    @contextmanager
    def _all_calls(self, dependency: str, state: BreakerState) -> Iterator[None]:
        with ExitStack() as stack:
            for observer in self._wrapping:
                stack.enter_context(observer.call(dependency, state))
            yield


class LogObserver(Observer):
    """A log line per breaker transition and per refused retry; none per call."""

    def __init__(self) -> None:
        # One warning per dependency until its budget allows a retry again.
        self._budget_spent: set[str] = set()

    def retrying(self, dependency: str, attempt: int, wait_seconds: float) -> None:
        self._budget_spent.discard(dependency)

    def budget_exhausted(self, dependency: str) -> None:
        if dependency not in self._budget_spent:
            self._budget_spent.add(dependency)
            logger.warning("outbound retry budget exhausted", dependency=dependency)

    def transition(self, transition: Transition) -> None:
        log = logger.warning if transition.new is BreakerState.OPEN else logger.info
        log(
            "circuit breaker state changed",
            dependency=transition.dependency,
            old_state=transition.old.value,
            new_state=transition.new.value,
            open_seconds=transition.open_seconds if transition.opened_at else None,
            remote=transition.remote,
        )
