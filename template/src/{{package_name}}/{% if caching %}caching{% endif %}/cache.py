"""Read-through cache with tag invalidation, one computation per key, early refresh and
stale-if-error, over cashews' backends.

Invalidation by generation. Every tag (``item:42``, ``items``) has a generation, a random
token; an entry's key holds the generations of its tags at the time it was read. A write
replaces the generations of the tags it touches, after its commit and before it returns:
from then on every read looks under new keys and misses. A read that raced the write and
computed the old value stores it under the old key, where no later read looks, so it can
never be served; deleting tagged keys instead (cashews' tags) would let such a read put
the old value back after the deletion. Entries under old keys expire with their TTL.

Tiers. Without Redis, entries live in this process (``local.BoundedMemory``). With it,
Redis holds them for every process and each keeps in-process copies that Redis client
tracking invalidates (``shared.SharedTier``).

Tenants. A cache opened ``per_tenant`` (the tenancy slice is on) keeps each tenant's
entries and tags apart: keys and tags are prefixed with the tenant the code runs for
(``core.tenant.current_tenant``), so one tenant's read never finds another's entry and
one tenant's write invalidates only its own. Code running for no tenant reads through to
its computation and stores nothing.

Faults. Every Redis call is bounded by ``redis_timeout_seconds``. The first fault is
logged, reported and starts a pause of ``outage_retry_seconds`` during which reads go
straight to their computation (the database); the first success after it logs recovery
and clears the in-process tier, whose invalidations may have been missed.
"""

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any, TypeVar

import structlog
from cashews.backends.interface import Backend
from pydantic import TypeAdapter, ValidationError

from ..core.errors import ProblemError
from ..core.representations import Representation
from ..core.tenant import current_tenant
from .entries import Entry, decode, represent
from .local import BoundedMemory
from .observer import CacheObserver, Lookup, Tier
from .settings import CachingSettings

logger = structlog.stdlib.get_logger(__name__)

T = TypeVar("T")
Compute = Callable[[], Awaitable[Representation]]

# Generations outlive any entry stored under them; one that expires only orphans entries.
GENERATION_SECONDS = 24 * 3600.0
# How often a process waiting for another one's computation looks for its result.
WAIT_STEP_SECONDS = 0.02


class _LeaderGoneError(Exception):
    """The computation others waited for was cancelled; they compute themselves."""


def _is_fault(exc: Exception) -> bool:
    """Whether an expired entry may stand in: not for answers such as 404, only faults."""
    return not isinstance(exc, ProblemError) or exc.status >= 500


class Cache:
    """Representations (rendered JSON with ETags) and JSON values, by name, key and tags."""

    def __init__(
        self,
        settings: CachingSettings,
        *,
        local: BoundedMemory,
        store: Backend | None = None,
        faults: tuple[type[Exception], ...] = (),
        observer: CacheObserver | None = None,
        on_invalidate: Callable[[Sequence[str]], None] | None = None,
        per_tenant: bool = False,
    ) -> None:
        self.settings = settings
        # Entries and tags belong to the tenant they were computed for (see above).
        self.per_tenant = per_tenant
        self.local = local
        # The shared store (Redis with in-process copies) or, without Redis, the local tier.
        self.store: Backend = store if store is not None else local
        self.shared = store is not None
        # What the shared store's calls fail with (shared.FAULTS); the local tier cannot.
        self._faults = faults
        self._observer = observer or CacheObserver()
        # Told of every invalidation (a CDN purge, purge.py).
        self._on_invalidate = on_invalidate
        self._inflight: dict[str, asyncio.Future[Representation]] = {}
        self._lookups: dict[str, asyncio.Future[tuple[str, object, bool]]] = {}
        # Counts this process's invalidations (see representation()).
        self._epoch = 0
        # Tags invalidated while Redis was away, invalidated there once it is back.
        self._unsent: set[str] = set()
        self._available = True
        self._retry_at = 0.0

    def declare(self, *names: str) -> None:
        """Names the entry families a slice reads, so their metrics exist from the start."""
        for name in names:
            self._observer.declare(name)

    # -- reads ---------------------------------------------------------------------

    async def representation(
        self,
        name: str,
        key: str,
        compute: Compute,
        *,
        tags: Sequence[str] = (),
        ttl: float | None = None,
    ) -> Representation:
        """The cached representation under ``name:key``, computed on a miss.

        ``name`` is a family of entries (a metric label: a fixed word such as ``item``);
        ``tags`` name what the value was computed from, for :meth:`invalidate`.
        """
        if not self.settings.enabled:
            # Off means as without the slice: each read computes, none shares another's.
            self._observer.lookup(name, Lookup.BYPASS)
            return await compute()
        scope = self._scope()
        if scope is None:
            # Per tenant, outside any: nothing this computes may be read by a tenant.
            self._observer.lookup(name, Lookup.BYPASS)
            return await compute()
        plain_key = f"{scope}{name}:{key}"
        tags = [f"{scope}{tag}" for tag in tags]
        # Concurrent reads share a lookup or a computation only within one epoch: a read
        # that starts after an invalidation never joins one that started before it.
        flight = f"{plain_key}#{self._epoch}"
        if self._bypassing():
            self._observer.lookup(name, Lookup.BYPASS)
            return await self._single_flight(flight, compute)
        try:
            versioned, stored, in_local = await self._lookup(flight, plain_key, tags)
        except self._faults as exc:
            self._fault(exc)
            self._observer.lookup(name, Lookup.BYPASS)
            return await self._single_flight(flight, compute)
        self._recovered()
        entry = decode(stored)
        now = time.time()
        lifetime = self.settings.ttl_seconds if ttl is None else ttl
        if entry is not None and now < entry.fresh_until:
            self._observer.lookup(name, Lookup.LOCAL_HIT if in_local else Lookup.REDIS_HIT)
            if now >= entry.fresh_until - self.settings.early_refresh_seconds:
                return await self._refresh_early(name, versioned, entry, compute, lifetime)
            return entry.representation
        try:
            representation = await self._single_flight(
                versioned, lambda: self._compute_and_store(name, versioned, compute, lifetime)
            )
        except Exception as exc:
            if entry is None or now >= entry.stale_until or not _is_fault(exc):
                raise
            logger.warning("cache served a stale entry", name=name, error=repr(exc))
            self._observer.lookup(name, Lookup.STALE)
            return entry.representation
        self._observer.lookup(name, Lookup.MISS)
        return representation

    async def value(
        self,
        name: str,
        key: str,
        compute: Callable[[], Awaitable[T]],
        adapter: TypeAdapter[T],
        *,
        tags: Sequence[str] = (),
        ttl: float | None = None,
    ) -> T:
        """A cached JSON value of the type ``adapter`` validates; computed on a miss.

        Values pydantic cannot render as JSON are refused (``CacheSerializationError``);
        a stored value that is no longer a valid ``T`` is computed again.
        """

        async def computed() -> Representation:
            return represent(await compute(), adapter)

        representation = await self.representation(name, key, computed, tags=tags, ttl=ttl)
        try:
            return adapter.validate_json(representation.body)
        except ValidationError:
            # Stored by a release whose type differed: not a T, so computed again.
            return await compute()

    # -- writes --------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """False from a Redis fault until a call succeeds again."""
        return self._available

    async def invalidate(self, *tags: str) -> bool:
        """Entries computed from ``tags`` are never read again, in any process.

        Call it after the write's commit and before answering: a read that starts after
        it returns misses and computes the new value. False when Redis could not be
        told: then only this process forgot its entries, the others keep theirs until
        they notice the fault or the entries expire.
        """
        if not tags:
            return True
        scope = self._scope()
        if scope is None:
            # No tenant: no entry was stored under these tags (see representation()).
            return True
        tags = tuple(f"{scope}{tag}" for tag in tags)
        self._epoch += 1
        if self._bypassing():
            # Redis is known to be away: no write waits for its timeout again.
            self._unsent.update(tags)
            self.local.drop_all()
            sent = False
        else:
            sent = await self._send(tags)
        # Again: a lookup that started while the generations were being replaced may
        # have read the old ones, and no read that starts after this returns may join it.
        self._epoch += 1
        # Answers for a tenant are never kept by shared caches (http.py): no CDN holds
        # anything under a tenant's tags.
        if self._on_invalidate is not None and not scope:
            # After Redis: a CDN refetching at once gets the new value from this process.
            self._on_invalidate(tags)
        return sent

    async def _send(self, tags: Sequence[str]) -> bool:
        try:
            async with self._bounded():
                for tag in tags:
                    await self._replace_generation(tag)
        except self._faults as exc:
            # Other processes learn of the fault from their own invalidation connection
            # (and clear their in-process tier). This one forgets what it holds and
            # invalidates the tags in Redis once it answers again, before reading from it:
            # entries stored there under the old generations would be read back otherwise.
            self._fault(exc)
            self._unsent.update(tags)
            self.local.drop_all()
            return False
        self._observer.invalidated(Tier.REDIS if self.shared else Tier.LOCAL, len(tags))
        return True

    async def clear(self) -> None:
        """Drops every entry and generation of this namespace, in every process.

        Not bounded by the Redis timeout: it scans the whole namespace.
        """
        if self.shared:
            await self.store.delete_match("*")
        self.local.drop_all()

    # -- internals -----------------------------------------------------------------

    def _scope(self) -> str | None:
        """The prefix of the running tenant's keys and tags: empty for a cache shared by
        everyone, None for a per-tenant cache outside any tenant."""
        if not self.per_tenant:
            return ""
        tenant = current_tenant.get()
        return None if tenant is None else f"tenant:{tenant}/"

    def _bounded(self) -> AbstractAsyncContextManager[Any]:
        # The in-process tier never waits; Redis calls wait at most the configured time.
        if self.shared:
            return asyncio.timeout(self.settings.redis_timeout_seconds)
        return nullcontext()

    async def _lookup(
        self, flight: str, plain_key: str, tags: Sequence[str]
    ) -> tuple[str, object, bool]:
        """The entry's key with its tags' generations, what is stored under it, and
        whether that came from this process; concurrent callers share one Redis lookup."""
        if not self.shared:
            versioned = await self._versioned(plain_key, tags)
            return versioned, await self.store.get(versioned), True

        async def lookup() -> tuple[str, object, bool]:
            async with self._bounded():
                await self._send_unsent()
                versioned = await self._versioned(plain_key, tags)
                in_local = versioned in self.local
                return versioned, await self.store.get(versioned), in_local

        return await self._shared(self._lookups, flight, lookup)

    async def _send_unsent(self) -> None:
        """Invalidates in Redis the tags whose invalidation failed (see invalidate())."""
        while self._unsent:
            tag = self._unsent.pop()
            try:
                await self._replace_generation(tag)
            except BaseException:
                self._unsent.add(tag)
                raise
            self._observer.invalidated(Tier.REDIS, 1)

    async def _replace_generation(self, tag: str) -> None:
        await self.store.set(_generation_key(tag), _new_generation(), expire=GENERATION_SECONDS)

    async def _versioned(self, plain_key: str, tags: Sequence[str]) -> str:
        if not tags:
            return plain_key
        keys = [_generation_key(tag) for tag in tags]
        generations = list(await self.store.get_many(*keys))
        for index, generation in enumerate(generations):
            if generation is None:
                # First use, or expired: start one, unless another process just did.
                candidate = _new_generation()
                if await self.store.set(keys[index], candidate, GENERATION_SECONDS, exist=False):
                    generations[index] = candidate
                    continue
                # The in-process tier noted the miss; the winner's generation is in Redis.
                self.local.discard(keys[index])
                generations[index] = await self.store.get(keys[index]) or candidate
        suffix = ".".join(
            generation.decode() if isinstance(generation, bytes) else str(generation)
            for generation in generations
        )
        return f"{plain_key}|{suffix}"

    async def _single_flight(self, key: str, compute: Compute) -> Representation:
        """One computation per key in this process; concurrent callers share its result."""
        return await self._shared(self._inflight, key, compute)

    async def _shared(
        self, flights: dict[str, asyncio.Future[T]], key: str, work: Callable[[], Awaitable[T]]
    ) -> T:
        """``work()``'s result, shared with every caller that asks for ``key`` meanwhile.

        A caller whose leader was cancelled (its request ended) does the work itself.
        """
        pending = flights.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except _LeaderGoneError:
                pass
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        flights[key] = future
        try:
            result = await work()
        except Exception as exc:
            future.set_exception(exc)
            raise
        except BaseException:
            future.set_exception(_LeaderGoneError())
            raise
        else:
            future.set_result(result)
            return result
        finally:
            if flights.get(key) is future:
                del flights[key]
            if future.done() and not future.cancelled():
                # Marks the exception retrieved: no "never retrieved" log without waiters.
                future.exception()

    async def _compute_and_store(
        self, name: str, versioned: str, compute: Compute, lifetime: float
    ) -> Representation:
        lock = f"lock:{versioned}"
        token = uuid.uuid4().hex
        if self.shared and not await self._lock(lock, token):
            waited = await self._wait_for(versioned, lock)
            if waited is not None:
                return waited.representation
        try:
            return await self._recompute(name, versioned, compute, lifetime)
        finally:
            if self.shared:
                await self._unlock(lock, token)

    async def _refresh_early(
        self, name: str, versioned: str, entry: Entry, compute: Compute, lifetime: float
    ) -> Representation:
        """Within the early-refresh window one request recomputes; the others do not wait."""
        lock = f"lock:{versioned}"
        token = uuid.uuid4().hex
        if versioned in self._inflight or (self.shared and not await self._lock(lock, token)):
            return entry.representation
        try:
            return await self._single_flight(
                versioned, lambda: self._recompute(name, versioned, compute, lifetime)
            )
        except Exception as exc:
            logger.warning("cache early refresh failed", name=name, error=repr(exc))
            return entry.representation
        finally:
            if self.shared:
                await self._unlock(lock, token)

    async def _recompute(
        self, name: str, versioned: str, compute: Compute, lifetime: float
    ) -> Representation:
        """Computes the value, times it and stores it, whoever holds the lock."""
        started = time.perf_counter()
        representation = await compute()
        self._observer.computed(name, time.perf_counter() - started)
        await self._put(versioned, representation, lifetime)
        return representation

    async def _put(self, versioned: str, representation: Representation, lifetime: float) -> None:
        if self._bypassing():
            return
        now = time.time()
        stale = self.settings.stale_if_error_seconds
        entry = Entry(representation, now + lifetime, now + lifetime + stale)
        try:
            async with self._bounded():
                await self.store.set(versioned, entry.encode(), expire=lifetime + stale)
        except self._faults as exc:
            self._fault(exc)
        self._observer.local_size(len(self.local.store), self.local.bytes)

    async def _lock(self, lock: str, token: str) -> bool:
        if self._bypassing():
            return True
        try:
            async with self._bounded():
                return bool(await self.store.set_lock(lock, token, self.settings.lock_seconds))
        except self._faults as exc:
            self._fault(exc)
            return True

    async def _unlock(self, lock: str, token: str) -> None:
        if self._bypassing():
            return
        try:
            async with self._bounded():
                await self.store.unlock(lock, token)
        except self._faults as exc:
            self._fault(exc)

    async def _wait_for(self, versioned: str, lock: str) -> Entry | None:
        """Another process computes ``versioned``: its entry, once stored and fresh, or
        None when it gave up (its lock is gone) or took longer than ``lock_seconds``."""
        deadline = time.monotonic() + self.settings.lock_seconds
        while time.monotonic() < deadline and not self._bypassing():
            await asyncio.sleep(WAIT_STEP_SECONDS)
            try:
                async with self._bounded():
                    entry = decode(await self.store.get(versioned))
                    if entry is not None and time.time() < entry.fresh_until:
                        return entry
                    if not await self.store.exists(lock):
                        return None
            except self._faults as exc:
                self._fault(exc)
                return None
        return None

    def _bypassing(self) -> bool:
        return not self._available and time.monotonic() < self._retry_at

    def _fault(self, exc: BaseException) -> None:
        self._retry_at = time.monotonic() + self.settings.outage_retry_seconds
        if self._available:
            self._available = False
            logger.warning(
                "cache unavailable; reads go to the database",
                error=repr(exc),
                retry_in_seconds=self.settings.outage_retry_seconds,
            )
            self._observer.available(False)

    def _recovered(self) -> None:
        if self._available:
            return
        self._available = True
        logger.info("cache available again; in-process tier cleared")
        self._observer.available(True)
        # Writes made while Redis was away reached no other process: what this one holds
        # may be out of date.
        self.local.drop_all()


def _generation_key(tag: str) -> str:
    return f"tag:{tag}"


def _new_generation() -> bytes:
    # A letter first: cashews reads an all-digit value back as an int.
    return b"g" + uuid.uuid4().hex[:16].encode()
