"""Settings of the outbound slice: one section per dependency the service calls.

``APP_OUTBOUND__DEPENDENCIES__<NAME>__<SETTING>`` sets one, for example
``APP_OUTBOUND__DEPENDENCIES__ENRICHMENT__BASE_URL=https://enrichment.internal``, and
gets the defaults below for the rest.
"""

from typing import Self

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

# A misspelt setting (APP_OUTBOUND__DEPENDENCIES__X__READ_TIMEOUT) stops the service at
# start-up, naming it, instead of leaving the default silently in place.
STRICT = ConfigDict(extra="forbid")


class BreakerSettings(BaseModel):
    """When the breaker opens, and for how long.

    The breaker judges the calls of the last ``window_seconds``: once at least
    ``minimum_calls`` were made, it opens when the share of failed calls reaches
    ``failure_rate_threshold`` or the share of slow ones ``slow_call_rate_threshold``.
    Each process judges its own calls: with several workers, each needs its own
    ``minimum_calls`` before it opens (and, with Redis, tells the others).
    """

    model_config = STRICT

    window_seconds: float = Field(default=10.0, gt=0)
    # Below this many calls in the window, a few failures are not a trend.
    minimum_calls: int = Field(default=10, ge=1)
    failure_rate_threshold: float = Field(default=0.5, gt=0, le=1)
    # A call answered after this long counts as slow, even when it succeeded.
    slow_call_seconds: float = Field(default=5.0, gt=0)
    # 1.0: only a window of nothing but slow calls opens the breaker.
    slow_call_rate_threshold: float = Field(default=1.0, gt=0, le=1)
    # Open this long the first time; each failed trial multiplies it, up to the maximum.
    open_seconds: float = Field(default=5.0, gt=0)
    open_multiplier: float = Field(default=2.0, ge=1)
    max_open_seconds: float = Field(default=60.0, gt=0)
    # Calls let through at once to test a half-open dependency; that many successes close
    # it. A trial that fails, or succeeds slowly, opens it again.
    half_open_trials: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _open_interval_capped_above_start(self) -> Self:
        if self.max_open_seconds < self.open_seconds:
            raise ValueError("breaker.max_open_seconds must be at least breaker.open_seconds")
        return self


class RetrySettings(BaseModel):
    """Retries of idempotent calls (or ones carrying an Idempotency-Key)."""

    model_config = STRICT

    # Attempts in all, the first included: 1 turns retries off.
    max_attempts: int = Field(default=3, ge=1)
    # Full jitter: the n-th retry waits a random time up to initial * 2**(n-1), capped.
    initial_backoff_seconds: float = Field(default=0.1, gt=0)
    max_backoff_seconds: float = Field(default=2.0, gt=0)
    # A Retry-After longer than this ends the call instead of holding the request.
    max_retry_after_seconds: float = Field(default=5.0, ge=0)
    # Retries may add this share of the calls of the last budget window, plus the floor
    # below: a failing dependency gets at most ~10 % more load, not max_attempts times it.
    budget_ratio: float = Field(default=0.1, ge=0, le=1)
    budget_window_seconds: float = Field(default=10.0, gt=0)
    # Retries allowed per second of window whatever the traffic, so a quiet service retries.
    budget_min_per_second: float = Field(default=1.0, ge=0)


class DependencySettings(BaseModel):
    model_config = STRICT

    # None: the dependency is not configured, and calls to it answer 503 at once.
    base_url: HttpUrl | None = None
    connect_timeout_seconds: float = Field(default=2.0, gt=0)
    # Between bytes of the response, per attempt.
    read_timeout_seconds: float = Field(default=5.0, gt=0)
    # The whole call, retries and their waits included.
    total_timeout_seconds: float = Field(default=10.0, gt=0)
    # Bulkhead: calls in flight at once; the excess waits at most max_wait_seconds, then
    # is refused, so a slow dependency cannot take every worker's attention.
    max_concurrent_calls: int = Field(default=20, ge=1)
    max_wait_seconds: float = Field(default=0.0, ge=0)
    # Critical: an open breaker fails readiness. Otherwise it only shows as degraded.
    critical: bool = False
    breaker: BreakerSettings = BreakerSettings()
    retry: RetrySettings = RetrySettings()


class OutboundSettings(BaseModel):
    model_config = STRICT

    # A section per dependency the service calls, by the name its code asks for
    # (``outbound_client("enrichment")``). One named nowhere is not configured: calls to
    # it answer 503 at once. Empty by default, as pydantic-settings would replace a
    # default entry, not merge into it, once the environment names any dependency.
    dependencies: dict[str, DependencySettings] = {}
    # With Redis: breaker transitions are published on this channel (and kept under this
    # key prefix); None derives "<service>:<environment>:outbound".
    shared_state_prefix: str | None = None
