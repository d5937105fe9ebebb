"""Rate limit decisions on the ``limits`` library, in process memory or in Redis.

One :class:`RateLimiter` per application. A decision counts the request against every
limit of a policy and reports what the IETF RateLimit headers need. With Redis, a
failure or a slow answer decides the request by ``fail_open``; after three in a row
(``FAILURES_BEFORE_OUTAGE``) the limiter stops asking Redis for
``outage_retry_seconds``, so an outage costs three timeouts, not one per request.
"""

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import (
    FixedWindowRateLimiter,
    MovingWindowRateLimiter,
    SlidingWindowCounterRateLimiter,
)
from limits.aio.strategies import (
    RateLimiter as Strategy,
)
from limits.errors import StorageError

from .observer import ProtectionObserver
from .settings import RateLimitSettings

logger = structlog.stdlib.get_logger(__name__)

# Failed checks in a row before the counters are left alone for outage_retry_seconds: one
# slow answer under load is not an outage; a refused or black-holed Redis fails every time.
FAILURES_BEFORE_OUTAGE = 3

_STRATEGIES: dict[str, type[Strategy]] = {
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
    "moving-window": MovingWindowRateLimiter,
    "fixed-window": FixedWindowRateLimiter,
}


class SweptMemoryStorage(MemoryStorage):
    """limits' in-process store, its expired counters swept once a second.

    The library's own store starts a sweep of every counter after each counted request,
    which costs about a millisecond per request once ten thousand clients are counted
    (measured by the template's benchmarks/protection.py): the very flood a limiter is
    for. This one keeps one sweeper
    task instead. It replaces the store's private scheduling hook, so the ``limits``
    version is bounded in pyproject.toml and tests/test_protection.py checks the sweep.
    """

    SWEEP_SECONDS = 1.0

    async def _MemoryStorage__schedule_expiry(self) -> None:  # noqa: N802 - its mangled name
        if self.timer is None or self.timer.done():
            self.timer = asyncio.create_task(self._sweep_every_second())

    async def _sweep_every_second(self) -> None:
        expire = self._MemoryStorage__expire_events  # type: ignore[attr-defined]
        while True:
            await asyncio.sleep(self.SWEEP_SECONDS)
            await expire()


@dataclass(frozen=True)
class Quota:
    """One limit of a policy, named as the RateLimit headers name it."""

    name: str
    item: RateLimitItem

    @property
    def window_seconds(self) -> int:
        return int(self.item.get_expiry())


def quotas(policy: str, limits: Sequence[str]) -> tuple[Quota, ...]:
    """The quotas of ``limits`` ("10/second", "300/hour"), named after the policy and
    the window: ``items-create-1s``."""
    items = [item for text in limits for item in parse_many(text)]
    named: list[Quota] = []
    for item in items:
        name = f"{policy}-{int(item.get_expiry())}s"
        taken = sum(quota.name.startswith(name) for quota in named)
        named.append(Quota(f"{name}-{taken + 1}" if taken else name, item))
    return tuple(named)


@dataclass(frozen=True)
class Usage:
    """Where one quota stands for one key after a request."""

    quota: Quota
    remaining: int
    reset_seconds: int


@dataclass(frozen=True)
class Decision:
    allowed: bool
    # Empty when the counters could not be read (an outage).
    usage: tuple[Usage, ...] = ()
    # The quota that refused the request.
    refused_by: Quota | None = None
    outage: bool = False

    @property
    def retry_after(self) -> int:
        if self.refused_by is None:
            return 1
        return max(
            (usage.reset_seconds for usage in self.usage if usage.quota == self.refused_by),
            default=self.refused_by.window_seconds,
        )


class RateLimiter:
    def __init__(
        self,
        settings: RateLimitSettings,
        observer: ProtectionObserver,
        storage: Storage | None = None,
    ) -> None:
        self.settings = settings
        self.observer = observer
        self.storage = storage or SweptMemoryStorage()
        self.shared = isinstance(self.storage, RedisStorage)
        self._strategy = _STRATEGIES[settings.strategy](self.storage)
        self._asking_again_at = 0.0
        self._failures = 0

    async def decide(self, policy: str, policy_quotas: Sequence[Quota], key: str) -> Decision:
        """Counts one request of ``key`` against each quota until one refuses it."""
        if not self.shared:
            # Process memory cannot be slow or away: no timeout, no outage.
            return await self._decide(policy, policy_quotas, key)
        if time.monotonic() < self._asking_again_at:
            return self._outage_decision(policy)
        try:
            # Redis' own socket timeouts bound each command; a timer here would measure
            # the event loop's lag under load as much as Redis.
            decision = await self._decide(policy, policy_quotas, key)
        except StorageError as exc:
            self.observer.limiter_failed()
            self._failures += 1
            if self._failures >= FAILURES_BEFORE_OUTAGE:
                # Stop asking for a while: requests meanwhile cost nothing.
                self._asking_again_at = time.monotonic() + self.settings.outage_retry_seconds
                logger.warning(
                    "rate limit counters unavailable",
                    error=str(exc) or type(exc).__name__,
                    fail_open=self.settings.fail_open,
                    retry_in_seconds=self.settings.outage_retry_seconds,
                )
            return self._outage_decision(policy)
        if self._failures >= FAILURES_BEFORE_OUTAGE:
            logger.info("rate limit counters available again")
        self._failures = 0
        return decision

    def _outage_decision(self, policy: str) -> Decision:
        self.observer.limiter_bypassed(policy, allowed=self.settings.fail_open)
        return Decision(allowed=self.settings.fail_open, outage=True)

    async def _decide(self, policy: str, policy_quotas: Sequence[Quota], key: str) -> Decision:
        refused_by = None
        for quota in policy_quotas:
            if not await self._strategy.hit(quota.item, policy, key):
                refused_by = quota
                break
        # The headers report every quota; in Redis, their reads are sent together.
        counted = policy_quotas if refused_by is None else (refused_by,)
        if self.shared and len(counted) > 1:
            stats = await asyncio.gather(
                *(self._strategy.get_window_stats(quota.item, policy, key) for quota in counted)
            )
        else:
            stats = [
                await self._strategy.get_window_stats(quota.item, policy, key) for quota in counted
            ]
        now = time.time()
        usage = tuple(
            Usage(quota, max(0, stat.remaining), max(1, math.ceil(stat.reset_time - now)))
            for quota, stat in zip(counted, stats, strict=True)
        )
        return Decision(allowed=refused_by is None, usage=usage, refused_by=refused_by)

    async def reachable(self) -> bool:
        """Whether the counters answer (readiness)."""
        try:
            return bool(await self.storage.check())
        except StorageError:
            return False

    def close(self) -> None:
        """Stops the in-process store's sweeper (Redis' pool is its opener's)."""
        if isinstance(self.storage, MemoryStorage) and self.storage.timer is not None:
            self.storage.timer.cancel()


def policy_header_values(usage: Sequence[Usage]) -> tuple[bytes, bytes]:
    """``RateLimit-Policy`` and ``RateLimit`` (draft-ietf-httpapi-ratelimit-headers)."""
    policies = ", ".join(
        f'"{item.quota.name}";q={item.quota.item.amount};w={item.quota.window_seconds}'
        for item in usage
    )
    remaining = ", ".join(
        f'"{item.quota.name}";r={item.remaining};t={item.reset_seconds}' for item in usage
    )
    return policies.encode("ascii"), remaining.encode("ascii")
