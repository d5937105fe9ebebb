"""A circuit breaker for asyncio, with pybreaker as its state machine.

pybreaker keeps the state (closed, open, half-open), the moment the breaker opened, the
half-open successes and the transitions its listeners hear of. Its own ``call`` runs a
synchronous function under a thread lock, and its async support is Tornado's, so this
wrapper never hands it the awaited call. A call asks :meth:`Breaker.admit` for a permit
before it starts and reports its outcome with :meth:`Breaker.record` when it ends; both
are synchronous and short, so on the event loop's single thread nothing can interleave
with them and nothing blocks.

When to open is decided here, not by pybreaker's count of consecutive failures: that
count opens at 5 failures in a row whether they are 5 of 5 calls or 5 of 50,000, and never
opens on a dependency failing every other call. Like resilience4j, the breaker judges the
share of failed calls, and of slow ones, among the calls of the last few seconds, once
there were enough of them to mean something (see ``BreakerSettings``).

In half-open state only ``half_open_trials`` calls pass at once; the rest are refused as
if the breaker were open. A failed trial opens it again for longer (the open interval
grows by ``open_multiplier`` up to ``max_open_seconds``); enough successful ones close it
and the interval starts over.
"""

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pybreaker

from .settings import BreakerSettings
from .window import WindowedCounts


class BreakerState(enum.StrEnum):
    CLOSED = pybreaker.STATE_CLOSED
    OPEN = pybreaker.STATE_OPEN
    HALF_OPEN = pybreaker.STATE_HALF_OPEN


class Verdict(enum.Enum):
    """What a finished call tells the breaker about the dependency."""

    SUCCESS = enum.auto()
    # Succeeded, but took longer than slow_call_seconds.
    SLOW = enum.auto()
    FAILURE = enum.auto()
    # Neither: the caller's own mistake (a 404, a 422) or a call cancelled by its caller.
    IGNORED = enum.auto()


@dataclass(frozen=True)
class Transition:
    dependency: str
    old: BreakerState
    new: BreakerState
    # When the breaker opened, and for how long; both set when ``new`` is open.
    opened_at: datetime | None
    open_seconds: float
    # Heard from another process (shared state), not decided here.
    remote: bool


@dataclass(frozen=True, slots=True)
class RemoteDecision:
    """A state another process decided: when its breaker opened, and for how long."""

    opened_at: datetime | None
    open_seconds: float


class BreakerOpenError(Exception):
    """The breaker refused the call; the dependency was not contacted."""

    def __init__(self, dependency: str, retry_after_seconds: float) -> None:
        super().__init__(f"the circuit breaker of {dependency!r} is open")
        self.dependency = dependency
        self.retry_after_seconds = retry_after_seconds


@dataclass(frozen=True, slots=True)
class Permit:
    # A half-open trial: its outcome decides the breaker's next state.
    trial: bool
    # The breaker's generation when the call was admitted; outcomes of calls admitted
    # before the latest transition say nothing about the dependency's present state.
    generation: int


_CALLS, _FAILURES, _SLOW = range(3)


class _TrialFailedError(Exception):
    """Handed to pybreaker to record a failed trial."""


def _trial_succeeded() -> None:
    return None


def _trial_failed() -> None:
    raise _TrialFailedError


class Breaker:
    def __init__(
        self,
        dependency: str,
        settings: BreakerSettings,
        on_transition: Callable[[Transition], None] = lambda transition: None,
    ) -> None:
        self.dependency = dependency
        self._settings = settings
        self._on_transition = on_transition
        self._storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        self._machine = pybreaker.CircuitBreaker(
            reset_timeout=settings.open_seconds,
            success_threshold=settings.half_open_trials,
            state_storage=self._storage,
            listeners=[_TransitionListener(self)],
            name=dependency,
            # A failed trial re-raises the recorded error, which record() expects.
            throw_new_error_on_trip=False,
        )
        self._window = WindowedCounts(settings.window_seconds, width=3)
        self._trials_in_flight = 0
        self._generation = 0
        # Set while a transition heard from another process is applied.
        self._remote: RemoteDecision | None = None

    @property
    def state(self) -> BreakerState:
        return BreakerState(self._machine.current_state)

    @property
    def open_seconds(self) -> float:
        """How long the breaker stays open this time (grows with each failed trial)."""
        return self._machine.reset_timeout

    def retry_after_seconds(self) -> float:
        """Seconds until the open breaker admits a trial; 0 when it admits calls now."""
        opened_at = self._storage.opened_at
        if self.state is not BreakerState.OPEN or opened_at is None:
            return 0.0
        until = opened_at + timedelta(seconds=self._machine.reset_timeout)
        return max(0.0, (until - datetime.now(UTC)).total_seconds())

    def refusing_for(self) -> float:
        """Seconds the breaker will go on refusing every call; 0 when it may admit one.

        A check without side effects, for callers that want to skip their own work: an
        open breaker past its interval still half-opens only in admit().
        """
        if self._machine.current_state != pybreaker.STATE_OPEN:
            return 0.0
        return self.retry_after_seconds()

    def admit(self) -> Permit:
        """A permit to call the dependency, or BreakerOpenError."""
        state = self._machine.current_state
        if state == pybreaker.STATE_CLOSED:
            return Permit(trial=False, generation=self._generation)
        if state == pybreaker.STATE_OPEN:
            remaining = self.retry_after_seconds()
            if remaining > 0:
                raise BreakerOpenError(self.dependency, remaining)
            self._machine.half_open()
        if self._trials_in_flight >= self._settings.half_open_trials:
            # The trials decide first; a refused call may try again in a moment.
            raise BreakerOpenError(self.dependency, 1.0)
        self._trials_in_flight += 1
        return Permit(trial=True, generation=self._generation)

    def record(self, permit: Permit, verdict: Verdict) -> None:
        """What the permitted call found out; calls from before a transition are ignored."""
        if permit.generation != self._generation:
            return
        if permit.trial:
            self._trials_in_flight -= 1
        if verdict is Verdict.IGNORED:
            return
        if permit.trial:
            try:
                if verdict is Verdict.SUCCESS:
                    self._machine.call(_trial_succeeded)
                else:
                    self._machine.call(_trial_failed)
            except _TrialFailedError:
                pass
            return
        self._window.add(_CALLS)
        if verdict is Verdict.SUCCESS:
            return
        self._window.add(_FAILURES if verdict is Verdict.FAILURE else _SLOW)
        calls, failures, slow = self._window.totals()
        if calls < self._settings.minimum_calls:
            return
        if (
            failures >= calls * self._settings.failure_rate_threshold
            or slow >= calls * self._settings.slow_call_rate_threshold
        ):
            self._machine.open()

    def force(self, state: BreakerState, opened_at: datetime | None, open_seconds: float) -> None:
        """Take on a state decided elsewhere (another process); a no-op if already in it.

        The transition this makes is marked remote, whatever the state, so that nothing
        publishes it again: an echo could undo a newer decision of its origin.
        """
        if state is BreakerState.OPEN:
            if opened_at is None:
                return
            if self.state is BreakerState.OPEN and self._storage.opened_at == opened_at:
                return
        elif state is self.state:
            return
        self._remote = RemoteDecision(opened_at, open_seconds)
        try:
            if state is BreakerState.OPEN:
                self._machine.open()
            elif state is BreakerState.CLOSED:
                self._machine.close()
            else:
                self._machine.half_open()
        finally:
            self._remote = None

    def _transitioned(self, old: BreakerState, new: BreakerState) -> None:
        self._generation += 1
        self._trials_in_flight = 0
        self._window.clear()
        remote = self._remote is not None
        if new is BreakerState.OPEN:
            if self._remote is not None and self._remote.opened_at is not None:
                self._storage.opened_at = self._remote.opened_at
                open_seconds = self._remote.open_seconds
            elif old is BreakerState.HALF_OPEN:
                open_seconds = min(
                    self._machine.reset_timeout * self._settings.open_multiplier,
                    self._settings.max_open_seconds,
                )
            else:
                open_seconds = self._settings.open_seconds
            self._machine.reset_timeout = open_seconds
        elif new is BreakerState.CLOSED:
            self._machine.reset_timeout = self._settings.open_seconds
        self._on_transition(
            Transition(
                dependency=self.dependency,
                old=old,
                new=new,
                opened_at=self._storage.opened_at if new is BreakerState.OPEN else None,
                open_seconds=self._machine.reset_timeout,
                remote=remote,
            )
        )


class _TransitionListener(pybreaker.CircuitBreakerListener):
    def __init__(self, breaker: Breaker) -> None:
        self._breaker = breaker

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        old = BreakerState(old_state.name) if old_state is not None else BreakerState.CLOSED
        self._breaker._transitioned(old, BreakerState(new_state.name))


def retry_after_header(seconds: float) -> str:
    """A Retry-After value: whole seconds, at least one."""
    return str(max(1, math.ceil(seconds)))
