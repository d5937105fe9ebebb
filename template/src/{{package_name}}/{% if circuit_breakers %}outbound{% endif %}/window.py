"""Counts over a sliding time window, in one-second buckets.

The breaker judges the failure rate of the last few seconds of calls, and the retry
budget the retries of the last few seconds against the calls. Both only ever add one to
a count and sum the window, so a ring of per-second buckets is enough: adding is O(1),
summing O(window), and nothing grows with the traffic.
"""

import math
import time
from collections.abc import Callable


class WindowedCounts:
    """``width`` counters, each summed over the last ``window_seconds`` (whole seconds)."""

    def __init__(
        self, window_seconds: float, width: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._size = max(1, math.ceil(window_seconds))
        self._width = width
        self._clock = clock
        # The second each bucket counts, and its counts; a bucket of an older second is
        # stale and restarts from zero when next written.
        self._seconds = [-1] * self._size
        self._counts = [[0] * width for _ in range(self._size)]

    def add(self, index: int, amount: int = 1) -> None:
        second = int(self._clock())
        slot = second % self._size
        if self._seconds[slot] != second:
            self._seconds[slot] = second
            self._counts[slot] = [0] * self._width
        self._counts[slot][index] += amount

    def totals(self) -> list[int]:
        """Each counter summed over the buckets still inside the window."""
        oldest = int(self._clock()) - self._size + 1
        sums = [0] * self._width
        for second, counts in zip(self._seconds, self._counts, strict=True):
            if second >= oldest:
                for index, count in enumerate(counts):
                    sums[index] += count
        return sums

    def clear(self) -> None:
        self._seconds = [-1] * self._size
