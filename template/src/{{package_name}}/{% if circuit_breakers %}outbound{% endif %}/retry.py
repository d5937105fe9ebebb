"""When a failed call is tried again, and how long it waits first.

tenacity runs the retries: exponential backoff with full jitter (each wait drawn at random
between zero and the exponential bound, so callers that failed together do not retry
together), unless the dependency said how long to wait with ``Retry-After``. The retry
budget here caps what retries add to a dependency's load: tenacity stops retrying as soon
as it is spent.
"""

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
from tenacity import RetryCallState, wait_random_exponential

from .settings import RetrySettings
from .window import WindowedCounts

# Safe to send twice (RFC 9110, section 9.2.2): retried without asking.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
# Statuses that say "not now" rather than "never": the same request may succeed later.
RETRYABLE_STATUSES = frozenset({408, 429, 502, 503, 504})

_CALLS, _RETRIES = range(2)


def may_retry(method: str, headers: httpx.Headers) -> bool:
    """Whether sending the request twice is safe: idempotent, or made so by its key."""
    return method.upper() in IDEMPOTENT_METHODS or "idempotency-key" in headers


def retry_after_seconds(response: httpx.Response) -> float | None:
    """The wait a 429 or 503 asks for, in seconds or as an HTTP date; None if it asks none."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class RetryBudget:
    """Retries allowed: ``budget_ratio`` of the calls of the window, plus a floor.

    Calls and retries are counted per second over ``budget_window_seconds``. Under
    sustained failure every call fails and wants retries, and the budget holds them to
    about ``budget_ratio`` more requests than the callers made (Finagle's retry budget).
    """

    def __init__(
        self, settings: RetrySettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._ratio = settings.budget_ratio
        self._floor = settings.budget_min_per_second * settings.budget_window_seconds
        self._counts = WindowedCounts(settings.budget_window_seconds, width=2, clock=clock)

    def record_call(self) -> None:
        self._counts.add(_CALLS)

    def try_spend(self) -> bool:
        """Take one retry from the budget; False (and nothing taken) when it is spent."""
        calls, retries = self._counts.totals()
        if retries + 1 > calls * self._ratio + self._floor:
            return False
        self._counts.add(_RETRIES)
        return True


class Backoff:
    """tenacity's wait: the dependency's Retry-After, or exponential with full jitter."""

    def __init__(self, settings: RetrySettings) -> None:
        self._max_retry_after = settings.max_retry_after_seconds
        self._jitter = wait_random_exponential(
            multiplier=settings.initial_backoff_seconds, max=settings.max_backoff_seconds
        )

    def __call__(self, retry_state: RetryCallState) -> float:
        outcome = retry_state.outcome
        if outcome is not None and not outcome.failed:
            response = outcome.result()
            if isinstance(response, httpx.Response):
                asked = retry_after_seconds(response)
                if asked is not None:
                    # Longer than the caller should be held: infinite, so the call ends.
                    return asked if asked <= self._max_retry_after else math.inf
        return float(self._jitter(retry_state))
