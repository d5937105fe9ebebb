"""Keeps every worker's flags current within a second of a change, by polling.

Each worker polls a cheap watermark of the audit log (its newest id, and how many entries
lie above a point a little before that) and reloads when it moved; the worker that made
a change reloads before answering. A service generated with Redis subclasses this to be
told of changes at once over pub/sub, polling only as a safety net.

Failures are logged, never raised into a request or the poll loop: the flags in memory
stay in use until a reload succeeds.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .models import Flag, FlagChange
from .provider import BuiltinProvider
from .service import definition_of

logger = structlog.stdlib.get_logger(__name__)

# Audit ids come from a sequence, so on PostgreSQL two concurrent changes can commit out
# of id order: the newest id alone would miss the later commit of the older id. Counting
# the entries above a point this far below the newest id catches it, and stays an index
# range scan however long the audit log grows.
LATE_COMMIT_WINDOW = 1000


@dataclass(frozen=True)
class Watermark:
    """How far the audit log had got: the newest id and the entry count above ``floor``."""

    latest: int
    floor: int
    count: int


class FlagSync:
    def __init__(
        self,
        sessions: Callable[[], AsyncSession],
        provider: BuiltinProvider,
        poll_seconds: float,
    ) -> None:
        self.sessions = sessions
        self.provider = provider
        self.poll_seconds = poll_seconds
        self._seen: Watermark | None = None
        # One load at a time: two interleaved loads could install the older set last.
        self._lock = asyncio.Lock()
        self._requested = 0
        self._covered = 0

    @property
    def loaded(self) -> bool:
        return self._seen is not None

    async def reload(self) -> None:
        """Loads every flag; on return the flags include each change committed before
        the call. Calls that arrive during a load share the next one. Raises on failure.
        """
        self._requested += 1
        ticket = self._requested
        async with self._lock:
            if self._covered >= ticket:
                return  # a load that started after this call has already finished
            covers = self._requested
            await self._load()
            self._covered = covers

    async def changed(self) -> None:
        """After a change committed by this worker: apply it now.

        The change is committed whatever happens here, so a failure is logged (the next
        poll retries) rather than turned into an error for the caller who made it.
        """
        await self._reload_logged("flag change committed but not applied here yet")

    async def poll(self) -> None:
        """Reloads when the audit log moved since the last load."""
        seen = self._seen
        try:
            if seen is not None:
                async with self.sessions() as session:
                    if await self._watermark(session, seen.floor) == seen:
                        return
        except Exception:
            logger.warning("flag poll failed; keeping the current flags", exc_info=True)
            return
        await self._reload_logged("flag reload failed; keeping the current flags")

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            await self.poll()

    async def _reload_logged(self, message: str) -> None:
        try:
            await self.reload()
        except Exception:
            logger.warning(message, exc_info=True)

    async def _load(self) -> None:
        async with self.sessions() as session:
            # The watermark before the flags: every change it counts is in the flags read
            # after it. A change landing in between is loaded now and seen as new at the
            # next poll (one extra reload), never marked as seen without being loaded.
            seen = await self._watermark(session, None)
            rows = (await session.scalars(select(Flag))).all()
        definitions = []
        for row in rows:
            try:
                definitions.append(definition_of(row))
            except ValidationError:
                # One unreadable row must not stop every other flag from updating.
                logger.error("stored flag definition is invalid; skipped", flag=row.key)
        self.provider.replace(definitions)
        self._seen = seen

    @staticmethod
    async def _watermark(session: AsyncSession, floor: int | None) -> Watermark:
        latest = await session.scalar(select(func.max(FlagChange.id))) or 0
        if floor is None:
            floor = max(0, latest - LATE_COMMIT_WINDOW)
        count = await session.scalar(
            select(func.count()).select_from(FlagChange).where(FlagChange.id > floor)
        )
        return Watermark(latest, floor, count or 0)
