"""What the cache reports while it works; the metrics slice adds an observer that counts."""

import enum


class Lookup(enum.StrEnum):
    """How one read through the cache was answered; bounded, so it can label a metric."""

    LOCAL_HIT = "local_hit"
    REDIS_HIT = "redis_hit"
    # Computed by this request (or by one it waited for).
    MISS = "miss"
    # Computing failed and an expired entry, still within stale_if_error_seconds, was sent.
    STALE = "stale"
    # The cache was unavailable or turned off; computed without it.
    BYPASS = "bypass"


class Tier(enum.StrEnum):
    LOCAL = "local"
    REDIS = "redis"


class CacheObserver:
    """Does nothing; subclasses override what they report."""

    def declare(self, name: str) -> None:
        """``name`` is a family of entries the service reads through the cache."""

    def lookup(self, name: str, outcome: Lookup) -> None:
        """A read of the entry family ``name`` (``item``, ``items_page``) was answered."""

    def computed(self, name: str, seconds: float) -> None:
        """A value of ``name`` was computed (a miss or an early refresh)."""

    def evicted(self, count: int) -> None:
        """The in-process tier dropped ``count`` entries to stay within its bounds."""

    def invalidated(self, tier: Tier, count: int) -> None:
        """``count`` tags were invalidated (redis), or in-process copies dropped (local)."""

    def local_size(self, entries: int, size_bytes: int) -> None:
        """The in-process tier now holds this much."""

    def available(self, up: bool) -> None:
        """Redis became reachable (``up``) or not."""
