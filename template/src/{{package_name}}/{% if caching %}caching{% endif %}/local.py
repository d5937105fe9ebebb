"""The in-process tier: cashews' LRU memory backend, bounded in bytes as well as entries.

cashews bounds its memory backend by the number of entries only; one large page of items
weighs as much as a thousand small ones, so the bytes are counted too.
"""

import time
from collections.abc import Callable
from typing import Any

from cashews.backends.memory import Memory

# What an entry costs besides its value: the key, the tuple, the dict slot.
ENTRY_OVERHEAD_BYTES = 200


def _weight(key: str, value: object) -> int:
    size = len(value) if isinstance(value, bytes | str) else 0
    return size + len(key) + ENTRY_OVERHEAD_BYTES


class BoundedMemory(Memory):
    """An LRU holding at most ``max_entries`` entries and about ``max_bytes`` bytes."""

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        on_evict: Callable[[int], None] = lambda count: None,
        on_invalidate: Callable[[int], None] = lambda count: None,
    ) -> None:
        # Expired entries are dropped when read or pushed out; a sweep of every key each
        # second would cost more than the memory it frees.
        super().__init__(size=max_entries, check_interval=60)
        self.max_bytes = max_bytes
        self.bytes = 0
        self._on_evict = on_evict
        self._on_invalidate = on_invalidate

    def __contains__(self, key: str) -> bool:
        return key in self.store

    def hold(self, key: str, value: Any) -> None:
        """Keeps ``value`` under ``key`` with no expiry of its own."""
        self._set(key, value)

    def holds(self, key: str, value: Any) -> bool:
        """Whether ``key`` still holds this very object (not an equal one)."""
        stored = self.store.get(key)
        return stored is not None and stored[1] is value

    def discard(self, key: str) -> bool:
        """Forgets ``key``; whether it was held. Not counted as an invalidation."""
        stored = self.store.pop(key, None)
        if stored is None:
            return False
        self.bytes -= _weight(key, stored[1])
        return True

    def invalidate(self, key: str) -> None:
        """Drops ``key`` because it changed elsewhere (counted when it was held)."""
        if self.discard(key):
            self._on_invalidate(1)

    def drop_all(self) -> None:
        """Drops every entry at once, as invalidations that may have been missed."""
        dropped = len(self.store)
        self.store.clear()
        self.bytes = 0
        if dropped:
            self._on_invalidate(dropped)

    def _set(self, key: str, value: Any, expire: float | None = None) -> None:
        expire_at = time.time() + expire if expire else None
        previous = self.store.pop(key, None)
        if previous is not None:
            self.bytes -= _weight(key, previous[1])
            if expire_at is None:
                expire_at = previous[0]
        self.store[key] = (expire_at, value)
        self.bytes += _weight(key, value)
        evicted = 0
        while len(self.store) > self.size or self.bytes > self.max_bytes:
            oldest, (_, dropped) = self.store.popitem(last=False)
            self.bytes -= _weight(oldest, dropped)
            evicted += 1
        if evicted:
            self._on_evict(evicted)

    async def _delete(self, key: str) -> bool:
        stored = self.store.get(key)
        if stored is None:
            return False
        self.bytes -= _weight(key, stored[1])
        return await super()._delete(key)

    async def clear(self) -> None:
        # cashews' own callers (its client-side backend) clear through here.
        self.drop_all()
