"""Saturation signals sampled in each worker: event-loop lag, CPU, memory, DB pool."""

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psutil
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from .instruments import (
    BUILD_INFO,
    DB_POOL_IN_USE,
    DB_POOL_LIMIT,
    EVENT_LOOP_LAG,
    PROCESS_CPU,
    PROCESS_MEMORY,
)
from .multiprocess import forget_dead_processes, forget_this_process


class RuntimeSampler:
    def __init__(self, engine: AsyncEngine, interval: float, lag_window: float) -> None:
        self.engine = engine
        self.interval = interval
        self.lag_window = lag_window
        self._process = psutil.Process()
        self._cpu_seconds = 0.0
        self._lags: deque[tuple[float, float]] = deque()
        self.worst_lag = 0.0

    def sample_process(self) -> None:
        cpu = self._process.cpu_times()
        total = cpu.user + cpu.system
        # A counter only goes up: add what was spent since the previous sample.
        PROCESS_CPU.inc(max(total - self._cpu_seconds, 0.0))
        self._cpu_seconds = total
        PROCESS_MEMORY.set(self._process.memory_info().rss)
        checked_out = getattr(self.engine.pool, "checkedout", None)
        if callable(checked_out):
            DB_POOL_IN_USE.set(checked_out())

    def record_lag(self, now: float, lag: float) -> float:
        """Adds a sample; returns and publishes the worst lag of the window.

        The worst rather than the latest, so a stall between two scrapes is still
        visible at the next one.
        """
        self._lags.append((now, lag))
        while self._lags[0][0] < now - self.lag_window:
            self._lags.popleft()
        worst = max(sample for _, sample in self._lags)
        EVENT_LOOP_LAG.set(worst)
        return worst

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.sample_process()
            expected = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            # A timer fires late by as long as callbacks kept the loop from running.
            now = loop.time()
            self.worst_lag = self.record_lag(now, max(now - expected, 0.0))


@asynccontextmanager
async def runtime_metrics_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Samples while the app runs; enter it after the database lifespan (it reads the pool)."""
    settings = app.state.settings
    forget_dead_processes()
    DB_POOL_LIMIT.set(settings.database.pool_size + settings.database.max_overflow)
    BUILD_INFO.labels(app.version, settings.environment).set(1)
    sampler = RuntimeSampler(
        app.state.engine,
        interval=settings.metrics.runtime_sample_seconds,
        lag_window=settings.metrics.event_loop_lag_window_seconds,
    )
    task = asyncio.create_task(sampler.run(), name="runtime-metrics")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        forget_this_process()
