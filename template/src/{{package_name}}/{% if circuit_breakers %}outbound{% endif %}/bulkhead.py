"""A cap on the calls in flight to one dependency.

A dependency that slows down keeps every call to it waiting; without a cap, those calls
pile up until they hold all of the service's connections and memory, and requests that
never touch the dependency suffer too. The excess waits at most ``max_wait_seconds`` for
a free slot and is then refused, at once by default.
"""

import asyncio


class BulkheadFullError(Exception):
    def __init__(self, dependency: str, limit: int) -> None:
        super().__init__(f"{dependency!r} already has {limit} calls in flight")
        self.dependency = dependency


class Bulkhead:
    def __init__(self, dependency: str, limit: int, max_wait_seconds: float) -> None:
        self._dependency = dependency
        self._limit = limit
        self._max_wait = max_wait_seconds
        self._slots = asyncio.Semaphore(limit)
        self.in_flight = 0

    async def acquire(self, within: float | None = None) -> None:
        """Take a slot, waiting at most max_wait_seconds (and ``within``, the caller's
        time left); BulkheadFullError otherwise."""
        if not self._slots.locked():
            await self._slots.acquire()  # a free slot: taken without waiting
            self.in_flight += 1
            return
        wait = self._max_wait if within is None else min(self._max_wait, within)
        if wait <= 0:
            raise BulkheadFullError(self._dependency, self._limit)
        try:
            await asyncio.wait_for(self._slots.acquire(), wait)
        except TimeoutError:
            raise BulkheadFullError(self._dependency, self._limit) from None
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        self._slots.release()
