"""Keeps this process's experiments current, and checks the running ones' sample ratio.

A change made through this process's API is applied at once (``changed``). Changes from
other processes arrive with the next poll: one cheap query (count, latest update, sum of
versions of both tables) every ``poll_seconds``, and a reload only when it moved.

Every ``sample_ratio_check_seconds`` the running experiments' exposure counts are tested
against their weights (chi-square); a p-value under 0.001 is logged as an error and, with
the metrics slice, exported for the AppExperimentSampleRatioMismatch alert.
"""

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from .observer import ExperimentsObserver
from .registry import ExperimentRegistry
from .results import SAMPLE_RATIO_ALARM, exposure_counts, sample_ratio
from .service import ExperimentService, nothing_to_announce

logger = structlog.stdlib.get_logger(__name__)


class ExperimentSync:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: ExperimentRegistry,
        observer: ExperimentsObserver,
        on_change: Callable[[list[str]], None],
    ) -> None:
        self._sessions = sessions
        self._registry = registry
        self._observer = observer
        self._on_change = on_change
        self._revision: tuple[Any, ...] | None = None
        self._checked: set[str] = set()
        self._check_soon = True
        self._lock = asyncio.Lock()
        self.loaded = False

    async def reload(self) -> None:
        async with self._lock, self._sessions() as session:
            service = ExperimentService(session, nothing_to_announce)
            revision = await service.revision()
            experiments = await service.list_all()
            cohorts = await service.list_cohorts()
            changed = self._registry.replace(experiments, cohorts)
            self._revision = revision
            self.loaded = True
            # A started or stopped experiment gets its sample-ratio series at once.
            self._check_soon = self._check_soon or bool(changed)
        self._observer.known(
            {experiment.key: [arm.key for arm in experiment.arms] for experiment in experiments},
            {metric.key for experiment in experiments for metric in experiment.metrics()},
        )
        self._on_change(changed)

    async def changed(self) -> None:
        """Applies a change this process just committed."""
        await self.reload()

    async def _poll(self) -> None:
        async with self._sessions() as session:
            revision = await ExperimentService(session, nothing_to_announce).revision()
        if revision != self._revision:
            await self.reload()

    async def check_sample_ratios(self) -> None:
        running = self._registry.running()
        # An experiment that stopped keeps its series (labels cannot be removed across
        # processes): it reads 1, no alarm, from then on.
        for key in self._checked - {experiment.key for experiment in running}:
            self._observer.sample_ratio(key, 1.0)
        self._checked = {experiment.key for experiment in running}
        for experiment in running:
            try:
                async with self._sessions() as session:
                    counts = await exposure_counts(session, experiment.key)
                p_value = sample_ratio(experiment, counts)
            except Exception:
                # One experiment's failure must not hide the others' mismatches.
                logger.warning("sample ratio not checked", experiment=experiment.key, exc_info=True)
                continue
            self._observer.sample_ratio(experiment.key, p_value)
            if p_value < SAMPLE_RATIO_ALARM:
                logger.error(
                    "sample ratio mismatch: the arms' exposures do not match their weights",
                    experiment=experiment.key,
                    exposures=counts,
                    p_value=p_value,
                )

    async def run(self, poll_seconds: float) -> None:
        """Polls for changes every ``poll_seconds``."""
        while True:
            try:
                await self._poll()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The database being away must not end the sync: try again next poll.
                logger.warning("experiments not refreshed", exc_info=True)
            await asyncio.sleep(poll_seconds)

    async def watch_sample_ratios(self, every_seconds: float) -> None:
        """Checks the running experiments' sample ratio every ``every_seconds``, and at
        once when an experiment started or stopped. A task of its own: its grouped
        counts may take a while on a large table, and must not hold up the poll."""
        next_check = time.monotonic()
        while True:
            if self._check_soon or time.monotonic() >= next_check:
                self._check_soon = False
                next_check = time.monotonic() + every_seconds
                await self.check_sample_ratios()
            await asyncio.sleep(min(1.0, every_seconds))
