"""Exposures and metric events, buffered in process and written in batches.

A flag read must not wait for a database write, so ``expose`` and ``track`` only append
to a buffer (safe from any thread: sync handlers run in worker threads), and a task
writes the buffer every ``flush_seconds`` or as soon as a batch is full.

* An exposure is recorded once per experiment and subject: the first one wins. The
  process skips subjects it has already queued (a bounded set: when it fills up it
  starts again, and the database's unique constraint keeps the rest out), and the
  insert ignores rows that exist, so concurrent requests and other processes cannot
  record a second one.
* A batch the database refuses is tried once more on the next flush, then dropped,
  counted (``app_experiments_exposures_dropped_total``) and logged; its subjects are
  queued again on their next read. A full buffer drops new entries the same way.
* What a crash loses: the entries buffered since the last flush (at most
  ``flush_seconds`` of them). Shutting down flushes what is left.
"""

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime

import structlog
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..core.database import utcnow
from .models import Exposure, MetricEventRow
from .observer import ExperimentsObserver

logger = structlog.stdlib.get_logger(__name__)


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


def _insert(session: AsyncSession, model: type[Exposure]) -> postgresql.Insert | sqlite.Insert:
    dialect = session.get_bind().dialect.name
    return postgresql.insert(model) if dialect == "postgresql" else sqlite.insert(model)


class Recorder:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        observer: ExperimentsObserver,
        *,
        batch_size: int = 500,
        buffer_size: int = 100_000,
        remembered_subjects: int = 100_000,
    ) -> None:
        self._sessions = sessions
        self._observer = observer
        self._batch_size = batch_size
        self._buffer_size = buffer_size
        self._remembered = remembered_subjects
        self._exposures: deque[PendingExposure] = deque()
        self._events: deque[PendingEvent] = deque()
        self._queued: set[tuple[str, str]] = set()
        # One refused batch of each kind, kept for a second attempt.
        self._retry_exposures: list[PendingExposure] = []
        self._retry_events: list[PendingEvent] = []
        self._full = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Serialises flushes: the task's and an explicit one (tests, shutdown).
        self._flushing = asyncio.Lock()

    def expose(self, experiment: str, subject: str, arm: str) -> None:
        pair = (experiment, subject)
        if pair in self._queued:
            return
        if len(self._exposures) >= self._buffer_size:
            self._observer.dropped(experiment, 1)
            return
        if len(self._queued) >= self._remembered:
            self._queued.clear()
        self._queued.add(pair)
        self._exposures.append(PendingExposure(experiment, subject, arm))
        if len(self._exposures) >= self._batch_size:
            self._wake()

    def forget(self, experiments: list[str]) -> None:
        """Forgets which subjects were queued for these experiments: one started again
        under the same key (deleted and created anew) records its exposures afresh."""
        if experiments:
            keys = set(experiments)
            self._queued = {pair for pair in self._queued if pair[0] not in keys}

    def track(self, metric: str, subject: str, value: float) -> None:
        if len(self._events) >= self._buffer_size:
            logger.warning("metric event dropped: the buffer is full", metric=metric)
            return
        self._events.append(PendingEvent(metric, subject, value))
        self._observer.event(metric)
        if len(self._events) >= self._batch_size:
            self._wake()

    def _wake(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            # From a worker thread too: asyncio.Event is not thread-safe.
            loop.call_soon_threadsafe(self._full.set)

    @property
    def pending(self) -> int:
        return len(self._exposures) + len(self._events)

    async def run(self, flush_seconds: float) -> None:
        """Flushes every ``flush_seconds``, or sooner when a batch is full."""
        self._loop = asyncio.get_running_loop()
        while True:
            # Woken early by a full batch; otherwise on the interval.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._full.wait(), timeout=flush_seconds)
            self._full.clear()
            await self.flush()

    async def flush(self) -> None:
        """Writes everything buffered now; never raises (failures are counted)."""
        async with self._flushing:
            while self._exposures or self._retry_exposures:
                await self._flush_exposures()
                if self._retry_exposures:
                    break
            while self._events or self._retry_events:
                await self._flush_events()
                if self._retry_events:
                    break

    def _take(self, buffer: deque[PendingExposure] | deque[PendingEvent]) -> list[object]:
        batch: list[object] = []
        while buffer and len(batch) < self._batch_size:
            batch.append(buffer.popleft())
        return batch

    async def _flush_exposures(self) -> None:
        retrying = bool(self._retry_exposures)
        batch = self._retry_exposures or [
            entry for entry in self._take(self._exposures) if isinstance(entry, PendingExposure)
        ]
        self._retry_exposures = []
        started = time.perf_counter()
        try:
            async with self._sessions() as session:
                statement = (
                    _insert(session, Exposure)
                    .values(
                        [
                            {
                                "experiment_key": entry.experiment,
                                "subject": entry.subject,
                                "arm": entry.arm,
                                "exposed_at": entry.at,
                            }
                            for entry in batch
                        ]
                    )
                    .on_conflict_do_nothing(index_elements=["experiment_key", "subject"])
                    .returning(Exposure.experiment_key, Exposure.arm)
                )
                written = (await session.execute(statement)).all()
                await session.commit()
        except Exception:
            if not retrying:
                logger.warning("exposures not written yet; retrying", exc_info=True)
                self._retry_exposures = batch
                return
            self._drop_exposures(batch)
            return
        self._observer.flushed(time.perf_counter() - started)
        counts: dict[tuple[str, str], int] = {}
        for experiment, arm in written:
            counts[experiment, arm] = counts.get((experiment, arm), 0) + 1
        for (experiment, arm), count in counts.items():
            self._observer.exposed(experiment, arm, count)

    def _drop_exposures(self, batch: list[PendingExposure]) -> None:
        per_experiment: dict[str, int] = {}
        for entry in batch:
            per_experiment[entry.experiment] = per_experiment.get(entry.experiment, 0) + 1
            # Queued again on the subject's next read.
            self._queued.discard((entry.experiment, entry.subject))
        for experiment, count in per_experiment.items():
            self._observer.dropped(experiment, count)
        logger.error("exposures dropped: the database refused them twice", dropped=per_experiment)

    async def _flush_events(self) -> None:
        retrying = bool(self._retry_events)
        batch = self._retry_events or [
            entry for entry in self._take(self._events) if isinstance(entry, PendingEvent)
        ]
        self._retry_events = []
        started = time.perf_counter()
        try:
            async with self._sessions() as session:
                session.add_all(
                    MetricEventRow(
                        metric=entry.metric,
                        subject=entry.subject,
                        value=entry.value,
                        occurred_at=entry.at,
                    )
                    for entry in batch
                )
                await session.commit()
        except Exception:
            if not retrying:
                logger.warning("metric events not written yet; retrying", exc_info=True)
                self._retry_events = batch
                return
            logger.error(
                "metric events dropped: the database refused them twice", dropped=len(batch)
            )
            return
        self._observer.flushed(time.perf_counter() - started)
