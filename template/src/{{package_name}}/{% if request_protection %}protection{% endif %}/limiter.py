"""Rate limit decisions on the ``limits`` library, in process memory or in Redis.

One :class:`RateLimiter` per application. A decision counts the request against every
limit of a policy and reports what the IETF RateLimit headers need. With Redis, a
failure or a slow answer decides the request by ``fail_open`` and stops asking Redis
for ``outage_retry_seconds``, so an outage costs one timeout, not one per request.
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

_STRATEGIES: dict[str, type[Strategy]] = {
    "sliding-window-counter": SlidingWindowCounterRateLimiter,
    "moving-window": MovingWindowRateLimiter,
    "fixed-window": FixedWindowRateLimiter,
}


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
    return tuple(Quota(f"{policy}-{int(item.get_expiry())}s", item) for item in items)


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
        self.storage = storage or MemoryStorage()
        self.shared = isinstance(self.storage, RedisStorage)
        self._strategy = _STRATEGIES[settings.strategy](self.storage)
        self._asking_again_at = 0.0

    async def decide(self, policy: str, policy_quotas: Sequence[Quota], key: str) -> Decision:
        """Counts one request of ``key`` against each quota until one refuses it."""
        if time.monotonic() < self._asking_again_at:
            return self._outage_decision(policy)
        try:
            async with asyncio.timeout(self.settings.redis_timeout_seconds):
                return await self._decide(policy, policy_quotas, key)
        except (StorageError, TimeoutError) as exc:
            self._asking_again_at = time.monotonic() + self.settings.outage_retry_seconds
            self.observer.limiter_failed()
            logger.warning(
                "rate limit counters unavailable",
                error=str(exc) or type(exc).__name__,
                fail_open=self.settings.fail_open,
                retry_in_seconds=self.settings.outage_retry_seconds,
            )
            return self._outage_decision(policy)

    def _outage_decision(self, policy: str) -> Decision:
        self.observer.limiter_bypassed(policy, allowed=self.settings.fail_open)
        return Decision(allowed=self.settings.fail_open, outage=True)

    async def _decide(self, policy: str, policy_quotas: Sequence[Quota], key: str) -> Decision:
        refused_by = None
        for quota in policy_quotas:
            if not await self._strategy.hit(quota.item, policy, key):
                refused_by = quota
                break
        # The headers report every quota; in Redis, one round trip for all of them.
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
            async with asyncio.timeout(self.settings.redis_timeout_seconds):
                return bool(await self.storage.check())
        except (StorageError, TimeoutError):
            return False

    def close(self) -> None:
        """Stops the in-process store's expiry task (Redis' pool is its opener's)."""
        if isinstance(self.storage, MemoryStorage) and self.storage.timer is not None:
            self.storage.timer.cancel()

    async def reset(self) -> None:
        """Forgets every counter (tests; a new deployment's counters start empty anyway)."""
        await self.storage.reset()


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
