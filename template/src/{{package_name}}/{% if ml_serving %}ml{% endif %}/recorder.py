"""The prediction log: a sample of predictions, written off the request path.

A sampled prediction (``APP_ML__PREDICTION_LOG_RATE``) waits in process and is written
with others every ``prediction_log_flush_seconds``; a crash loses at most that much of
the sample. When the database refuses a batch, it is dropped and counted: the log is for
labelling later, and must never slow or fail the predictions themselves.
"""

import asyncio
import random
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ..core.database import utcnow
from .formats import Output
from .models import PredictionLogRow
from .observer import ServingObserver

logger = structlog.stdlib.get_logger(__name__)

# Entries waiting at most; beyond it new ones are dropped and counted.
BUFFER_SIZE = 10_000


class PredictionLog:
    def __init__(
        self, sessions: async_sessionmaker[AsyncSession], observer: ServingObserver, rate: float
    ) -> None:
        self._sessions = sessions
        self._observer = observer
        self._rate = rate
        self._pending: list[dict[str, Any]] = []

    def sampled(self) -> bool:
        # A sample, not a secret: the standard generator is right here.
        return self._rate > 0 and random.random() < self._rate  # noqa: S311  # nosec B311

    def add(
        self,
        prediction_id: str,
        model: str,
        version: int,
        role: str,
        rows: Sequence[Mapping[str, object]],
        outputs: Sequence[Output],
    ) -> None:
        if len(self._pending) + len(rows) > BUFFER_SIZE:
            self._observer.dropped(model, "log", len(rows))
            return
        now = utcnow()
        self._pending.extend(
            {
                "prediction_id": prediction_id,
                "row": index,
                "model_name": model,
                "version": version,
                "role": role,
                "inputs": dict(row),
                "output": output,
                "predicted_at": now,
            }
            for index, (row, output) in enumerate(zip(rows, outputs, strict=True))
        )

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            async with self._sessions() as session, session.begin():
                await session.execute(insert(PredictionLogRow), batch)
        except Exception:
            logger.warning("prediction log entries dropped", count=len(batch), exc_info=True)
            for model in {entry["model_name"] for entry in batch}:
                self._observer.dropped(
                    model, "log", sum(entry["model_name"] == model for entry in batch)
                )

    async def run(self, every_seconds: float) -> None:
        while True:
            await asyncio.sleep(every_seconds)
            await self.flush()
