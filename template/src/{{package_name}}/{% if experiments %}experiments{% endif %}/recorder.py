"""Exposures and metric events, buffered in process and written in batches.

A flag read must not wait for a database write, so ``expose`` and ``track`` only append
to a buffer (safe from any thread: sync handlers run in worker threads), and a task
writes the buffer every ``flush_seconds`` or as soon as a batch is full.

* An exposure is recorded once per experiment and subject: the first one wins. The
  process skips subjects it has already queued (a bounded set: when it fills up it
  starts again, and the database's unique constraint keeps the rest out), and the
  insert ignores rows that exist, so concurrent requests and other processes cannot
  record a second one.
* Entries the database cannot store (a subject longer than its column, a metric name
  or value the API would refuse) are refused here, one by one, so they never fail the
  batch they would have been written with.
* While the database is down or slow (each write has ``write_timeout`` seconds), the
  entries wait in the buffer and the writes are retried with a growing pause (up to
  30 s); nothing is dropped until the buffer is full, and then the oldest entries go
  first, counted (``app_experiments_exposures_dropped_total``,
  ``app_experiments_events_dropped_total``) and logged once per flush.
* What a crash loses: what the buffer holds (normally the last ``flush_seconds``; during
  a database outage, everything since it began). Shutting down writes what is left,
  for at most ``write_timeout`` seconds.
"""

import asyncio
import contextlib
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import structlog
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.sql.dml import ReturningInsert

from ..core.database import conflict_insert, utcnow
from .models import Exposure, MetricEventRow
from .observer import ExperimentsObserver

logger = structlog.stdlib.get_logger(__name__)

# What the tables and the events API accept (models.py, schemas.py).
MAX_SUBJECT_LENGTH = 256
METRIC_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_VALUE = 1e12
MAX_BACKOFF_SECONDS = 30.0


@dataclass(frozen=True)
class PendingExposure:
    experiment: str
    subject: str
    arm: str
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True)
class PendingEvent:
    metric: str
    subject: str
    value: float
    at: datetime = field(default_factory=utcnow)


Entry = TypeVar("Entry", PendingExposure, PendingEvent)


def storable_event(metric: str, subject: str, value: float) -> bool:
    """Whether the database and the results can take this event as it is."""
    return bool(
        METRIC_NAME.fullmatch(metric)
        and 0 < len(subject) <= MAX_SUBJECT_LENGTH
        and math.isfinite(value)
        and abs(value) <= MAX_VALUE
    )


def _first_exposures(session: AsyncSession) -> ReturningInsert[str, str]:
    """INSERT of exposures that skips subjects already recorded (the unique constraint),
    returning the rows it wrote."""
    return (
        conflict_insert(session.get_bind().dialect.name)(Exposure)
        .on_conflict_do_nothing(index_elements=["experiment_key", "subject"])
        .returning(Exposure.experiment_key, Exposure.arm)
    )


class Recorder:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        observer: ExperimentsObserver,
        *,
        batch_size: int = 500,
        buffer_size: int = 100_000,
        remembered_subjects: int = 100_000,
        write_timeout: float = 5.0,
    ) -> None:
        self._sessions = sessions
        self._observer = observer
        self._batch_size = batch_size
        self._buffer_size = buffer_size
        self._remembered = remembered_subjects
        self._write_timeout = write_timeout
        self._exposures: deque[PendingExposure] = deque()
        self._events: deque[PendingEvent] = deque()
        self._queued: set[tuple[str, str]] = set()
        # Entries dropped since the last flush logged them: one line per flush, not one
        # per entry, however many a full buffer turns away.
        self._dropped_exposures: dict[str, int] = {}
        self._dropped_events: dict[str, int] = {}
        self._full = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Serialises flushes: the task's and an explicit one (tests, shutdown).
        self._flushing = asyncio.Lock()
        self._failures = 0
        self.last_write = time.monotonic()

    # Called on the request path, from any thread.

    def expose(self, experiment: str, subject: str, arm: str) -> None:
        pair = (experiment, subject)
        if pair in self._queued:
            return
        if not 0 < len(subject) <= MAX_SUBJECT_LENGTH:
            # Longer than the column: the caller's arm is served, the exposure is not
            # recorded (and would have failed its whole batch).
            self._count_drop(self._dropped_exposures, experiment)
            return
        if len(self._queued) >= self._remembered:
            self._queued.clear()
        self._queued.add(pair)
        if len(self._exposures) >= self._buffer_size:
            dropped = self._exposures.popleft()
            self._queued.discard((dropped.experiment, dropped.subject))
            self._count_drop(self._dropped_exposures, dropped.experiment)
        self._exposures.append(PendingExposure(experiment, subject, arm))
        if len(self._exposures) >= self._batch_size:
            self._wake()

    def track(self, metric: str, subject: str, value: float) -> None:
        if not storable_event(metric, subject, value):
            label = metric if METRIC_NAME.fullmatch(metric) else "<invalid>"
            self._count_drop(self._dropped_events, label)
            return
        if len(self._events) >= self._buffer_size:
            self._count_drop(self._dropped_events, self._events.popleft().metric)
        self._events.append(PendingEvent(metric, subject, value))
        if len(self._events) >= self._batch_size:
            self._wake()

    def forget(self, experiments: Sequence[str]) -> None:
        """Forgets which subjects were queued for these experiments: one started again
        under the same key (deleted and created anew) records its exposures afresh."""
        if experiments:
            keys = set(experiments)
            # list() copies the set in one step; other threads may add to it meanwhile.
            self._queued = {pair for pair in list(self._queued) if pair[0] not in keys}

    @staticmethod
    def _count_drop(drops: dict[str, int], key: str) -> None:
        drops[key] = drops.get(key, 0) + 1

    def _wake(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            # From a worker thread too: asyncio.Event is not thread-safe.
            loop.call_soon_threadsafe(self._full.set)

    @property
    def pending(self) -> int:
        return len(self._exposures) + len(self._events)

    # The writing task.

    async def run(self, flush_seconds: float) -> None:
        """Flushes every ``flush_seconds``, or sooner when a batch is full; after failed
        writes, with a pause that doubles up to MAX_BACKOFF_SECONDS."""
        self._loop = asyncio.get_running_loop()
        while True:
            pause = min(flush_seconds * 2**self._failures, MAX_BACKOFF_SECONDS)
            if self._failures:
                await asyncio.sleep(pause)
            else:
                # Woken early by a full batch; otherwise on the interval.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), timeout=pause)
            self._full.clear()
            await self.flush()

    async def flush(self) -> bool:
        """Writes everything buffered now, batch by batch; never raises. False when the
        database refused or did not answer (what was not written stays buffered)."""
        async with self._flushing:
            written = await self._drain(self._exposures, self._write_exposures)
            written = written and await self._drain(self._events, self._write_events)
            self._report_drops()
            if written:
                self._failures = 0
                self.last_write = time.monotonic()
            else:
                self._failures = min(self._failures + 1, 10)
            return written

    async def _drain(
        self, buffer: deque[Entry], write: Callable[[list[Entry]], Awaitable[None]]
    ) -> bool:
        while buffer:
            batch = [buffer.popleft() for _ in range(min(self._batch_size, len(buffer)))]
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self._write_timeout):
                    await write(batch)
            except BaseException as error:
                # Back to the front, in order, for the next attempt (or for the final
                # flush, when this task is being cancelled at shutdown).
                buffer.extendleft(reversed(batch))
                if not isinstance(error, Exception):
                    raise
                if self._failures == 0:
                    logger.warning(
                        "experiment data not written yet; retrying",
                        buffered=len(self._exposures) + len(self._events),
                        exc_info=True,
                    )
                return False
            self._observer.flushed(time.perf_counter() - started)
        return True

    async def _write_exposures(self, batch: list[PendingExposure]) -> None:
        rows = [
            {
                "experiment_key": entry.experiment,
                "subject": entry.subject,
                "arm": entry.arm,
                "exposed_at": entry.at,
            }
            for entry in batch
        ]
        async with self._sessions() as session:
            # One statement, its rows as parameters: compiled once and cached, where a
            # multi-row VALUES would be compiled anew for every batch (CPU on the event
            # loop, 30-50 ms a batch of 500).
            written = (await session.execute(_first_exposures(session), rows)).all()
            await session.commit()
        counts: dict[tuple[str, str], int] = {}
        for experiment, arm in written:
            counts[experiment, arm] = counts.get((experiment, arm), 0) + 1
        for (experiment, arm), count in counts.items():
            self._observer.exposed(experiment, arm, count)

    async def _write_events(self, batch: list[PendingEvent]) -> None:
        rows = [
            {
                "metric": entry.metric,
                "subject": entry.subject,
                "value": entry.value,
                "occurred_at": entry.at,
            }
            for entry in batch
        ]
        async with self._sessions() as session:
            await session.execute(insert(MetricEventRow), rows)
            await session.commit()
        for entry in batch:
            self._observer.event(entry.metric)

    def _report_drops(self) -> None:
        exposures, self._dropped_exposures = self._dropped_exposures, {}
        events, self._dropped_events = self._dropped_events, {}
        for experiment, count in exposures.items():
            self._observer.dropped(experiment, count)
        for metric, count in events.items():
            self._observer.event_dropped(metric, count)
        if exposures or events:
            logger.error(
                "experiment data dropped: the buffer was full, or entries the database "
                "cannot store",
                exposures=exposures,
                events=events,
            )

    def stuck_for(self) -> float:
        """Seconds since data last reached the database, while some is waiting (0 when
        the buffer is empty)."""
        return time.monotonic() - self.last_write if self.pending else 0.0
