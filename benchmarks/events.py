"""What the event sourcing slice costs: appends, the outbox relay, the way from a commit
to a consumer, and a wallet command next to an item update.

Renders the template with copier (``--vcs-ref HEAD``: the working tree, uncommitted
changes included; ``--defaults --trust --skip-tasks``) with ``event_sourcing=true``, once
per database and broker it needs (SQLite with RabbitMQ; PostgreSQL with RabbitMQ and with
NATS JetStream), tracing and request protection off (no collector to export to; the
protection's per-client limits would refuse one client's requests), the other answers the
defaults (metrics on: the slice's Prometheus observer counts every append, publish and
delivery). Each render is installed with ``uv sync --no-dev``, and this file runs again
with the render's Python (``--measure ...``), which imports the service's own modules.
Every part works on a database of its own, migrated with the render's ``migrate`` (a
SQLite file; a scratch PostgreSQL database, dropped at the end), on uvloop, through the
service's own ``create_engine`` and ``session_factory``:

* **Appends** (events/s, per-command latency). One event per transaction, for
  ``--append-seconds`` per row (the rows taking turns in four slices), on SQLite and on
  PostgreSQL: through
  ``Repository.execute`` (a deposit: load the wallet from its snapshot and the events
  after it, decide, append, save a snapshot every 50 events, commit: what a command
  costs) and through ``EventStore.append`` alone in a transaction of its own, each on one
  aggregate (sequential) and on ``--concurrency`` aggregates at once (one task per
  aggregate). The store writes outbox rows, as with a broker; one row appends without
  them (``message_broker=none``). For scale, a plain ORM update of an item (get, set,
  commit: what the items' update does), on one row and on ``--concurrency`` rows. Every
  append takes the ``event_sequence`` row lock until its transaction ends (gap-free
  positions in commit order): the wait for it and the time it is held (from the locking
  ``UPDATE``'s return to the end of the commit, timed through SQLAlchemy's cursor
  events) are printed with each row, and 1/held, the rate the lock lets through.
* **Relay** (events/s into each broker). The outbox preloaded with events as appends
  leave them (the store's rows, written in bulk, untimed): 100 aggregates x 200 events
  taking turns (one event of each in turn), the same with each aggregate's 200 events
  one after another, and 1 aggregate x 5,000; then ``Relay.relay_once()`` in a loop until
  the outbox is empty, timed. A durable queue bound to the exchange (RabbitMQ; a quorum
  queue, like a consumer's) or the stream (NATS JetStream) stores every message; the
  count stored is checked. Printed with each publish's confirm time (p50/p99), the share
  of the time spent publishing, the aggregates per batch, and the process's CPU per event.
* **Commit to consumer** (p50/p95/p99). ``Relay.run()`` and a ``ConsumerGroup`` with a
  recording projection (subscribed before anything is published), in one process as in
  the service; deposits at each ``--rate`` for ``--seconds`` over 50 wallets through
  ``Repository.execute``, whose ``store.notify_committed()`` wakes the relay as the
  service's does, each deposit started on time whether the ones before have finished or
  not (as requests arrive; at most 15 at once, the pool's connections). For each event:
  from the end of its commit to the end of its handling (the consumer's transaction
  committed, before the broker's ack); on the way, to the broker's confirm of its publish
  and to the projection's apply. Before that, the consumer alone: ``--drain`` events put
  in the outbox at once, and the rate at which it handles them once relayed.
* **Request path** (ratios). ``create_app`` with its lifespan entered, requests through
  httpx's ``ASGITransport`` (no socket), a bearer token on each: ``POST
  /api/v1/wallets/{id}/deposits`` next to ``PATCH /api/v1/items/{id}`` of the same
  service, each request timed on its own, the rows taking turns, with the slice's
  background work off (``run_projections``, ``run_relay``, ``run_consumers`` false: the
  request alone), with the projections only, and on (the defaults: a deposit also wakes
  the projection runner, the relay and, through the broker, the example consumer; their
  work is settled, untimed, after each slice). Wall time per request and the process's
  CPU per request, the background work included; and how many of the app's middleware
  are the slice's.

Each broker part gets a destination of its own (``bench-<random>.events``), deleted at
the end with what it holds (RabbitMQ: the exchange and the queues; NATS: the stream).
Kafka is not measured: there is no Kafka broker on this machine. No timing is asserted;
the tables print the figures.

Needs ``uv``, a PostgreSQL the run may create a database on (``--postgres-url``), RabbitMQ
(``--rabbitmq-url``) and NATS with JetStream (``--nats-url``); a broker that does not
answer is skipped. Run from the repository root::

    uv run python benchmarks/events.py [--append-seconds 2] [--rate 50 --rate 200] [--json out.json]

About 5 minutes on 2 cores; results and findings in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
PACKAGE = "bench_service"
SLUG = "bench-service"
ANSWERS: dict[str, Any] = {
    "project_name": "Bench Service",
    "python_version": "3.11",
    "event_sourcing": True,
    # No collector to export to; per-client limits would refuse one client's requests.
    "tracing": False,
    "request_protection": False,
}
DATABASES = ("sqlite", "postgresql")
BROKERS = ("rabbitmq", "nats")
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"  # pragma: allowlist secret
NATS_URL = "nats://127.0.0.1:4222"

APPEND_SECONDS = 2.0  # per append row
CONCURRENCY = 8  # aggregates (tasks) at once in the "many" rows
WARMUP_COMMANDS = 20  # untimed, per task, before each append row (a quarter per slice)
APPEND_ROUNDS = 4  # the append rows take turns, a slice each, this many times
AGGREGATES, PER_AGGREGATE, SINGLE = 100, 200, 5_000  # the relay's preloads
RATES, SECONDS = (50, 200), 8  # deposits per second, for this long (commit to consumer)
E2E_WALLETS = 50
DRAIN = 1_000  # events put in the outbox at once for the consumer alone
REQUESTS = 600  # timed requests per request-path row and variant
ROUNDS = 10  # the request-path rows take turns this many times
REQUEST_WARMUP = 20  # untimed requests per row and round
SETTLE_TIMEOUT = 120.0  # seconds for background work or a broker to catch up
CONSUMER = "bench_recording"

# --------------------------------------------------------------------------- #
# In the render's venv: shared
# --------------------------------------------------------------------------- #


def service(module: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{module}")


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max and the mean of ``samples`` (seconds), in ms; nearest rank."""
    ordered = sorted(samples)
    count = len(ordered)
    if not count:
        return {"count": 0}

    def rank(share: float) -> float:
        return ordered[min(count - 1, max(0, round(share * count + 0.5) - 1))] * 1000

    return {
        "count": count,
        "p50_ms": rank(0.50),
        "p95_ms": rank(0.95),
        "p99_ms": rank(0.99),
        "max_ms": ordered[-1] * 1000,
        "mean_ms": sum(ordered) / count * 1000,
    }


def migrate(url: str) -> None:
    """The render's own ``migrate`` command, at the given database."""
    command = [str(Path(sys.executable).parent / SLUG), "migrate"]
    env = {**os.environ, "APP_DATABASE__URL": url}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"migrate failed ({done.returncode}):\n{done.stderr}")


@contextlib.asynccontextmanager
async def scratch_database(kind: str, workdir: Path, admin_url: str) -> Any:
    """A new database, migrated: its SQLAlchemy URL; dropped (or deleted) afterwards."""
    if kind == "sqlite":
        path = workdir / f"events-{uuid.uuid4().hex[:8]}.db"
        url = f"sqlite+aiosqlite:///{path}"
        try:
            await asyncio.to_thread(migrate, url)
            yield url
        finally:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    import asyncpg

    name = f"bench_events_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    plain = re.sub(r"/[^/?]*(\?|$)", f"/{name}\\1", admin_url.split("://", 1)[1], count=1)
    url = f"postgresql+asyncpg://{plain}"
    try:
        await asyncio.to_thread(migrate, url)
        yield url
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        print(f"  dropped the scratch database {name}", file=sys.stderr, flush=True)


@contextlib.asynccontextmanager
async def engine_for(url: str) -> Any:
    """The service's own engine (its pool, timeouts and SQLite settings) and sessions."""
    database = service("core.database")
    settings = service("core.settings")
    engine = database.create_engine(settings.DatabaseSettings(url=url))
    try:
        yield engine, database.session_factory(engine)
    finally:
        await engine.dispose()


async def server_version(engine: Any) -> str:
    if engine.dialect.name == "sqlite":
        import sqlite3

        return f"SQLite {sqlite3.sqlite_version}"
    async with engine.connect() as connection:
        version = (await connection.exec_driver_sql("SHOW server_version")).scalar()
        sync = (await connection.exec_driver_sql("SHOW synchronous_commit")).scalar()
    return f"PostgreSQL {str(version).split()[0]} (synchronous_commit {sync})"


def events_settings(url: str, **overrides: Any) -> Any:
    """The slice's settings with a destination of this run's own."""
    settings = service("events.settings")
    return settings.EventsSettings(
        broker_url=url, destination=f"bench-{uuid.uuid4().hex[:12]}.events", **overrides
    )


async def remove_destination(broker: str, settings: Any, queues: Sequence[str]) -> None:
    """Deletes what a destination left on the broker: the exchange and ``queues`` (their
    suffixes) on RabbitMQ, the stream (and its consumers) on NATS."""
    url = settings.broker_url.get_secret_value()
    if broker == "rabbitmq":
        import aio_pika

        connection = await aio_pika.connect(url)
        async with connection:
            channel = await connection.channel()
            for queue in queues:
                await channel.queue_delete(f"{settings.destination}.{queue}")
            await channel.exchange_delete(settings.destination)
    else:
        import nats
        from nats.js.errors import NotFoundError

        client = await nats.connect(url)
        try:
            with contextlib.suppress(NotFoundError):
                await client.jetstream().delete_stream(stream_name(settings))
        finally:
            await client.close()
    print(f"  removed {settings.destination} from {broker}", file=sys.stderr, flush=True)


def stream_name(settings: Any) -> str:
    return str(settings.destination.replace(".", "_").upper())


async def eventually(
    condition: Callable[[], Awaitable[bool]], within: float, what: str | Callable[[], str]
) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            waited = what() if callable(what) else what
            raise RuntimeError(f"timed out after {within:.0f} s waiting for {waited}")
        await asyncio.sleep(0.02)


def run_on_uvloop(coroutine: Awaitable[Any]) -> Any:
    import uvloop

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- #
# In the render's venv: appends
# --------------------------------------------------------------------------- #


async def _appends(kind: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    import contextvars

    from sqlalchemy import event

    store_module = service("events.store")
    repository = service("events.repository")
    lifespan = service("events.lifespan")
    wallets = service("wallets.domain")
    items = service("items.models")
    snapshot_every = service("events.settings").EventsSettings().snapshot_every
    clock = time.perf_counter
    # Per task: when the statement that takes the lock (the event_sequence row's, the
    # item's row) was sent, when it returned, when the commit began and when it ended.
    marks: contextvars.ContextVar[list[float]] = contextvars.ContextVar("marks")
    marks.set([0.0, 0.0, 0.0, 0.0])  # each worker task sets its own
    locking = ("UPDATE event_sequence", "UPDATE items")

    def lock_requested(_c: Any, _cu: Any, statement: str, *_: Any) -> None:
        if statement.startswith(locking):
            marks.get()[0] = clock()

    def lock_taken(_c: Any, _cu: Any, statement: str, *_: Any) -> None:
        if statement.startswith(locking):
            marks.get()[1] = clock()

    def committing(_c: Any) -> None:
        marks.get()[2] = clock()

    class Timed(store_module.EventStore):  # type: ignore[misc,name-defined]
        def notify_committed(self) -> None:  # right after the commit (Repository.execute)
            marks.get()[3] = clock()
            super().notify_committed()

    reporter = lifespan.observer()  # the Prometheus observer: metrics are on
    with_outbox = Timed(reporter, publishes=True)
    without_outbox = Timed(reporter, publishes=False)
    repo = repository.Repository(wallets.Wallets(), with_outbox, snapshot_every=snapshot_every)

    async with (
        scratch_database(kind, workdir, args.postgres_url) as url,
        engine_for(url) as (
            engine,
            sessions,
        ),
    ):
        # SQLAlchemy runs them in the awaiting task's context (its greenlet's).
        event.listen(engine.sync_engine, "before_cursor_execute", lock_requested)
        event.listen(engine.sync_engine, "after_cursor_execute", lock_taken)
        event.listen(engine.sync_engine, "commit", committing)
        versions: dict[str, int] = {}

        def deposit(state: Any) -> Any:
            return wallets.deposit(state, 1, None)

        async def open_wallet(store: Any) -> str:
            wallet = str(uuid.uuid4())
            if store is None:
                async with sessions() as session:
                    await repo.execute(
                        session,
                        wallet,
                        lambda _: wallets.open_wallet("bench", "EUR"),
                        actor="bench",
                        create=True,
                    )
            else:
                async with sessions() as session, session.begin():
                    await store.append(
                        session, "wallet", wallet, 0, wallets.open_wallet("bench", "EUR"),
                        actor="bench",
                    )  # fmt: skip
            versions[wallet] = 1
            return wallet

        async def open_item() -> int:
            async with sessions() as session:
                item = items.Item(
                    name=f"bench-{uuid.uuid4().hex}", price_cents=100, quantity=0,
                    created_by="bench",
                )  # fmt: skip
                session.add(item)
                await session.commit()
                return int(item.id)

        async def command(wallet: str) -> None:
            async with sessions() as session:
                await repo.execute(session, wallet, deposit, actor="bench")

        def appending(store: Any) -> Callable[[str], Awaitable[None]]:
            async def append(wallet: str) -> None:
                async with sessions() as session:
                    async with session.begin():
                        await store.append(
                            session, "wallet", wallet, versions[wallet],
                            [wallets.MoneyDeposited(amount=1)], actor="bench",
                        )  # fmt: skip
                    store.notify_committed()  # as Repository.execute does
                versions[wallet] += 1

            return append

        async def update(item_id: Any) -> None:
            async with sessions() as session:
                item = await session.get(items.Item, item_id)
                item.quantity += 1
                await session.commit()
                marks.get()[3] = clock()

        Row = tuple[str, str, Callable[[Any], Awaitable[None]], Callable[[], Awaitable[Any]]]
        plan: list[Row] = [
            ("execute", "Repository.execute (deposit)", command, lambda: open_wallet(None)),
            ("append", "EventStore.append", appending(with_outbox),
             lambda: open_wallet(with_outbox)),
            ("append-no-outbox", "EventStore.append, no outbox (no broker)",
             appending(without_outbox), lambda: open_wallet(without_outbox)),
            ("orm", "plain ORM update of an item", update, open_item),
        ]  # fmt: skip
        # Every row's aggregates made first; then the rows take turns, APPEND_ROUNDS
        # slices each, so that a busy moment of the machine does not fall on one row.
        entries = []
        for key, label, one, new_target in plan:
            for tasks in (1, args.concurrency):
                if key != "append-no-outbox" or tasks == 1:
                    targets = [await new_target() for _ in range(tasks)]
                    entries.append((key, label, one, targets, Samples()))
        for turn in range(APPEND_ROUNDS):
            warmup = WARMUP_COMMANDS if turn == 0 else WARMUP_COMMANDS // 4
            for _, _, one, targets, samples in entries:
                seconds = args.append_seconds / APPEND_ROUNDS
                await _timed_commands(one, targets, seconds, warmup, marks, samples)
        rows = []
        for key, label, _, targets, samples in entries:
            row = {"row": key, "label": label, "aggregates": len(targets), **samples.summary()}
            rows.append(row)
            print(
                f"  [{kind}] {label}, {len(targets)} at once: {row['per_second']:.0f}/s, "
                f"p50 {row['latency']['p50_ms']:.2f} ms",
                file=sys.stderr,
                flush=True,
            )
        return {"database": kind, "server": await server_version(engine), "rows": rows}


class Samples:
    """What an append row's slices measured, added up."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.waits: list[float] = []
        self.held: list[float] = []
        self.commits: list[float] = []
        self.seconds = 0.0
        self.cpu = 0.0

    def summary(self) -> dict[str, Any]:
        count = len(self.latencies)
        return {
            "commands": count,
            "seconds": self.seconds,
            "per_second": count / self.seconds,
            "cpu_us_per_command": self.cpu / max(1, count) * 1e6,
            "latency": percentiles(self.latencies),
            "lock_wait_ms": statistics.median(self.waits) * 1000,
            "lock_held_ms": statistics.median(self.held) * 1000,
            "commit_ms": statistics.median(self.commits) * 1000,
        }


async def _timed_commands(
    one: Callable[[Any], Awaitable[None]],
    targets: Sequence[Any],
    seconds: float,
    warmup: int,
    marks: Any,
    samples: Samples,
) -> None:
    """``one(target)`` over and over for ``seconds``, a task per target, after ``warmup``
    untimed each, into ``samples``: the time, the process's CPU, each command's latency,
    and from the marks it left (``marks``, per task) the wait for the lock, the time it
    was held (from the locking statement's return to the end of the commit) and the
    commit's."""
    clock = time.perf_counter
    stop_at = 0.0

    async def worker(target: Any, warmup: int) -> None:
        marks.set([0.0, 0.0, 0.0, 0.0])
        for _ in range(warmup):
            await one(target)
        while (started := clock()) < stop_at:
            await one(target)
            samples.latencies.append(clock() - started)
            requested, taken, committing, committed = marks.get()
            samples.waits.append(taken - requested)
            samples.held.append(committed - taken)
            samples.commits.append(committed - committing)

    await asyncio.gather(*(worker(target, warmup) for target in targets))
    cpu, began = time.process_time(), clock()
    stop_at = began + seconds
    await asyncio.gather(*(worker(target, 0) for target in targets))
    samples.seconds += clock() - began
    samples.cpu += time.process_time() - cpu


# --------------------------------------------------------------------------- #
# In the render's venv: the relay
# --------------------------------------------------------------------------- #


async def preload(sessions: Any, aggregates: int, per_aggregate: int, turns: bool) -> list[str]:
    """Writes what ``aggregates`` x ``per_aggregate`` appends leave behind (the events,
    their outbox rows, the sequence), in bulk: one event of each aggregate in turn, or
    each aggregate's events one after another. Returns their ids."""
    from sqlalchemy import func, insert, select, update

    store_module = service("events.store")
    models = service("events.models")
    wallets = service("wallets.domain")
    utcnow = service("core.database").utcnow
    ids = [str(uuid.uuid4()) for _ in range(aggregates)]
    if turns:
        order = [(a, v) for v in range(1, per_aggregate + 1) for a in range(aggregates)]
    else:
        order = [(a, v) for a in range(aggregates) for v in range(1, per_aggregate + 1)]
    opened = wallets.WalletOpened(owner="bench", currency="EUR")
    deposited = wallets.MoneyDeposited(amount=1)
    async with sessions() as session, session.begin():
        last = await session.scalar(select(func.max(models.StoredEvent.position))) or 0
        now = utcnow()
        events, outbox = [], []
        for offset, (a, version) in enumerate(order, start=1):
            event = opened if version == 1 else deposited
            events.append(
                {
                    "position": last + offset, "event_id": str(uuid.uuid4()),
                    "aggregate_type": "wallet", "aggregate_id": ids[a], "version": version,
                    "event_type": event.event_type, "schema_version": event.schema_version,
                    "data": event.model_dump(mode="json"), "recorded_at": now,
                    "actor": "bench", "tenant": None, "trace_parent": None,
                }
            )  # fmt: skip
            outbox.append(
                {
                    "position": last + offset, "lane": store_module.outbox_lane(ids[a]),
                    "aggregate_id": ids[a], "recorded_at": now, "attempts": 0,
                    "next_attempt_at": now,
                }
            )  # fmt: skip
        for start in range(0, len(events), 5_000):
            await session.execute(insert(models.StoredEvent), events[start : start + 5_000])
            await session.execute(insert(models.OutboxEntry), outbox[start : start + 5_000])
        await session.execute(
            update(models.EventSequence)
            .where(models.EventSequence.name == store_module.SEQUENCE)
            .values(last=last + len(order))
        )
    return [row["event_id"] for row in events]


class BrokerSink:
    """What stores the relay's messages: a durable queue bound to the exchange (RabbitMQ,
    a quorum queue like a consumer's) or the destination's stream (NATS); counted and
    emptied between preloads."""

    def __init__(self, broker: str, settings: Any) -> None:
        self.broker = broker
        self.settings = settings
        self.url = settings.broker_url.get_secret_value()

    async def declare(self) -> None:
        if self.broker == "rabbitmq":
            import aio_pika

            connection = await aio_pika.connect(self.url)
            async with connection:
                channel = await connection.channel()
                exchange = await channel.declare_exchange(
                    self.settings.destination, aio_pika.ExchangeType.TOPIC, durable=True
                )
                queue = await channel.declare_queue(
                    f"{self.settings.destination}.sink",
                    durable=True,
                    arguments={"x-queue-type": "quorum"},
                )
                await queue.bind(exchange, routing_key="#")
        # NATS: the relay's client declares the stream when it connects.

    async def count_and_empty(self) -> int:
        if self.broker == "rabbitmq":
            import aio_pika

            connection = await aio_pika.connect(self.url)
            async with connection:
                channel = await connection.channel()
                queue = await channel.declare_queue(
                    f"{self.settings.destination}.sink", passive=True
                )
                count = int(queue.declaration_result.message_count or 0)
                await queue.purge()
            return count
        import nats

        client = await nats.connect(self.url)
        try:
            stream = client.jetstream()
            name = stream_name(self.settings)
            count = int((await stream.stream_info(name)).state.messages)
            await stream.purge_stream(name)
        finally:
            await client.close()
        return count


async def _relay(broker: str, kind: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import func, select

    relay_module = service("events.relay")
    broker_module = service("events.broker")
    store_module = service("events.store")
    models = service("events.models")
    lifespan = service("events.lifespan")
    clock = time.perf_counter
    url = args.broker_urls[broker]
    settings = events_settings(url)
    observer_type = type(lifespan.observer())

    class Counting(observer_type):  # type: ignore[misc,valid-type]
        """The service's observer, keeping each publish's confirm time too."""

        def __init__(self) -> None:
            super().__init__()
            self.publishes: list[float] = []
            self.failures = 0

        def published(self, seconds: float) -> None:
            super().published(seconds)
            self.publishes.append(seconds)

        def publish_failed(self, count: int) -> None:
            super().publish_failed(count)
            self.failures += count

    class Timed(relay_module.Relay):  # type: ignore[misc,name-defined]
        """Keeps, per batch, the aggregates published and the span of the publishing."""

        def begin_batch(self) -> None:
            self.streams = 0
            self.first: float | None = None
            self.last = 0.0

        async def _publish_stream(self, stream: Any, outcome: Any) -> None:
            self.streams += 1
            if self.first is None:
                self.first = clock()
            await super()._publish_stream(stream, outcome)
            self.last = clock()

    shapes = [
        (f"{args.aggregates} aggregates x {args.per_aggregate}, taking turns",
         args.aggregates, args.per_aggregate, True),
        (f"{args.aggregates} aggregates x {args.per_aggregate}, one after another",
         args.aggregates, args.per_aggregate, False),
        (f"1 aggregate x {args.single:,}", 1, args.single, True),
    ]  # fmt: skip
    sink = BrokerSink(broker, settings)
    rows = []
    async with (
        scratch_database(kind, workdir, args.postgres_url) as db,
        engine_for(db) as (
            engine,
            sessions,
        ),
    ):
        store = store_module.EventStore(lifespan.observer(), publishes=True)
        try:
            await sink.declare()
            for label, aggregates, per_aggregate, turns in shapes:
                loaded = clock()
                count = len(await preload(sessions, aggregates, per_aggregate, turns))
                loaded = clock() - loaded
                observer = Counting()
                client = broker_module.BrokerClient(url, settings)
                relay = Timed(sessions, client, store, observer, settings)
                await client.connect()  # connecting (and declaring) untimed
                publishing = 0.0
                streams: list[int] = []
                batches = 0
                cpu, began = time.process_time(), clock()
                try:
                    while True:
                        relay.begin_batch()
                        published = await relay.relay_once()
                        if relay.first is not None:
                            publishing += relay.last - relay.first
                            streams.append(relay.streams)
                        if published:
                            batches += 1
                            continue
                        async with sessions() as session:
                            waiting = await session.scalar(
                                select(func.count()).select_from(models.OutboxEntry)
                            )
                        if not waiting:
                            break
                        if clock() - began > SETTLE_TIMEOUT:
                            raise RuntimeError(f"{waiting} events still in the outbox")
                        await asyncio.sleep(0.05)  # a failed publish backs off
                    elapsed = clock() - began
                    cpu = time.process_time() - cpu
                finally:
                    await relay.close()
                stored = await sink.count_and_empty()
                row = {
                    "shape": label,
                    "events": count,
                    "preload_s": loaded,
                    "seconds": elapsed,
                    "per_second": count / elapsed,
                    "batches": batches,
                    "aggregates_per_batch": statistics.mean(streams) if streams else 0.0,
                    "publishing_share": publishing / elapsed,
                    "publish": percentiles(observer.publishes),
                    "failures": observer.failures,
                    "cpu_us_per_event": cpu / count * 1e6,
                    "stored_by_broker": stored,
                }
                rows.append(row)
                print(
                    f"  [{broker}] {label}: {row['per_second']:.0f} events/s, {stored:,} stored",
                    file=sys.stderr,
                    flush=True,
                )
                if stored < count:
                    raise RuntimeError(f"the broker stored {stored} of {count} events")
        finally:
            await remove_destination(broker, settings, ["sink"])
        return {
            "broker": broker,
            "database": kind,
            "server": await server_version(engine),
            "batch_size": settings.relay_batch_size,
            "rows": rows,
        }


# --------------------------------------------------------------------------- #
# In the render's venv: from a commit to the consumer
# --------------------------------------------------------------------------- #


async def _end_to_end(
    broker: str, kind: str, workdir: Path, args: argparse.Namespace
) -> dict[str, Any]:
    relay_module = service("events.relay")
    broker_module = service("events.broker")
    store_module = service("events.store")
    consumers = service("events.consumers")
    projections = service("events.projections")
    repository = service("events.repository")
    lifespan = service("events.lifespan")
    wallets = service("wallets.domain")
    clock = time.perf_counter
    url = args.broker_urls[broker]
    settings = events_settings(url)
    handled: dict[str, float] = {}
    applied_at: dict[str, float] = {}
    confirmed: dict[str, float] = {}

    class Recording(projections.Projection):  # type: ignore[misc,name-defined]
        name = CONSUMER
        tables = ()

        async def apply(self, session: Any, event: Any) -> None:
            applied_at[event.event_id] = clock()

    transactions: list[float] = []

    class Timing(consumers.ConsumerGroup):  # type: ignore[misc,name-defined]
        async def handle(self, consumer: Any, delivery: Any) -> bool:
            acknowledged: bool = await super().handle(consumer, delivery)
            if acknowledged:
                handled.setdefault(delivery.message_id, clock())
            return acknowledged

        async def _apply_once(self, consumer: Any, event: Any) -> bool:
            started = clock()
            try:
                new: bool = await super()._apply_once(consumer, event)
                return new
            finally:
                transactions.append(clock() - started)

    class Confirming(relay_module.Relay):  # type: ignore[misc,name-defined]
        async def _publish(self, event: Any, message: Any) -> None:
            await super()._publish(event, message)
            confirmed.setdefault(event.event_id, clock())

    reporter = lifespan.observer()
    wakers: list[asyncio.Event] = []

    def appended() -> None:
        for waker in wakers:
            waker.set()

    rows = []
    async with (
        scratch_database(kind, workdir, args.postgres_url) as db,
        engine_for(db) as (engine, sessions),
    ):
        store = store_module.EventStore(reporter, publishes=True, committed=appended)
        relay = Confirming(
            sessions, broker_module.BrokerClient(url, settings), store, reporter, settings
        )
        wakers.append(relay.wakeup)
        group = Timing(sessions, [consumers.Consumer(CONSUMER, Recording())], reporter, settings)
        repo = repository.Repository(
            wallets.Wallets(), store, snapshot_every=settings.snapshot_every
        )
        relaying: asyncio.Task[None] | None = None
        try:
            await group.start(broker_module.BrokerClient(url, settings))

            async def connected() -> bool:
                return bool(group.connected)

            await eventually(connected, 30, "the consumer to subscribe")
            relaying = asyncio.create_task(relay.run(), name="outbox-relay")
            ids = []
            opened: dict[str, float] = {}
            for _ in range(E2E_WALLETS):
                wallet = str(uuid.uuid4())
                async with sessions() as session:
                    _, recorded = await repo.execute(
                        session, wallet, lambda _: wallets.open_wallet("bench", "EUR"),
                        actor="bench", create=True,
                    )  # fmt: skip
                ids.append(wallet)
                opened |= {event.event_id: 0.0 for event in recorded}
            await _all_handled(opened, handled)
            # The consumer alone: events put in the outbox at once, relayed in a few
            # batches, then handled one after another.
            ids_waiting = await preload(sessions, 10, max(1, args.drain // 10), True)
            transactions.clear()
            cpu, began = time.process_time(), clock()
            relay.wakeup.set()
            await _all_handled(dict.fromkeys(ids_waiting, 0.0), handled)
            cpu = time.process_time() - cpu
            ends = sorted(handled[event_id] for event_id in ids_waiting)
            drain = {
                "events": len(ids_waiting),
                "relayed_s": max(confirmed[event_id] for event_id in ids_waiting) - began,
                "handled_s": ends[-1] - began,
                "consumed_per_second": (len(ends) - 1) / (ends[-1] - ends[0]),
                "transaction": percentiles(transactions),
                "cpu_us_per_event": cpu / len(ids_waiting) * 1e6,
            }
            print(
                f"  [{broker}] the consumer alone: {drain['consumed_per_second']:.0f}/s",
                file=sys.stderr,
                flush=True,
            )
            for rate in args.rates:
                row = await _steady_deposits(
                    repo, sessions, ids, rate, args.seconds, handled, store_module
                )
                committed = row.pop("committed")
                row["to_apply"] = percentiles(
                    [applied_at[event_id] - at for event_id, at in committed.items()]
                )
                row["to_confirm"] = percentiles(
                    [confirmed[event_id] - at for event_id, at in committed.items()]
                )
                rows.append(row)
                print(
                    f"  [{broker}] {rate}/s, commit to consumer: "
                    f"p50 {row['latency']['p50_ms']:.1f} ms, "
                    f"p99 {row['latency']['p99_ms']:.1f} ms",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            if relaying is not None:
                relaying.cancel()
                await asyncio.gather(relaying, return_exceptions=True)
            await relay.close()
            await group.stop()
            await remove_destination(broker, settings, [CONSUMER])
        return {
            "broker": broker,
            "database": kind,
            "server": await server_version(engine),
            "drain": drain,
            "rows": rows,
        }


async def _all_handled(committed: dict[str, float], handled: dict[str, float]) -> None:
    async def done() -> bool:
        return committed.keys() <= handled.keys()

    await eventually(done, SETTLE_TIMEOUT, f"{len(committed):,} events to be handled")


async def _steady_deposits(
    repo: Any,
    sessions: Any,
    ids: Sequence[str],
    rate: int,
    seconds: int,
    handled: dict[str, float],
    store_module: Any,
) -> dict[str, Any]:
    """``rate`` deposits a second for ``seconds``, each started at its time whether the
    ones before have finished or not (as requests arrive), at most as many at once as the
    pool has connections; returns when every one has been handled."""
    clock = time.perf_counter
    deposit = service("wallets.domain").deposit
    committed: dict[str, float] = {}
    commands: list[float] = []
    conflicts = 0
    slots = asyncio.Semaphore(15)  # the pool's 5 + 10 overflow

    async def one(wallet: str, due: float) -> None:
        nonlocal conflicts
        async with slots:
            while True:
                try:
                    async with sessions() as session:
                        _, recorded = await repo.execute(
                            session, wallet, lambda state: deposit(state, 1, None), actor="bench"
                        )
                        at = clock()
                    break
                except store_module.ConcurrencyError:
                    conflicts += 1  # another deposit on the wallet got there first: again
        commands.append(at - due)
        for event in recorded:
            committed[event.event_id] = at

    total = rate * seconds
    began = clock()
    running = set()
    for n in range(total):
        due = began + n / rate
        wait = due - clock()
        if wait > 0:
            await asyncio.sleep(wait)
        task = asyncio.create_task(one(ids[n % len(ids)], due))
        running.add(task)
        task.add_done_callback(running.discard)
    await asyncio.gather(*running)
    appending = clock() - began
    await _all_handled(committed, handled)
    drained = clock() - began
    ends = sorted(handled[event_id] for event_id in committed)
    consumed_in = ends[-1] - ends[0] if len(ends) > 1 else 0.0
    return {
        "rate": rate,
        "events": len(committed),
        "appended_per_second": len(committed) / appending,
        "conflicts": conflicts,
        "command": percentiles(commands),
        "drained_s": drained,
        "consumed_per_second": (len(ends) - 1) / consumed_in if consumed_in else 0.0,
        "latency": percentiles([handled[event_id] - at for event_id, at in committed.items()]),
        "committed": committed,
    }


# --------------------------------------------------------------------------- #
# In the render's venv: the request path
# --------------------------------------------------------------------------- #


# What runs besides the requests: the projections, the relay, the example consumer.
BACKGROUNDS = {
    "off": (False, False, False),
    "projections": (True, False, False),
    "on": (True, True, True),
}


async def _requests(kind: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    variants = []
    for background in BACKGROUNDS:
        # A database of each variant's own: nothing left in the outbox by another.
        async with scratch_database(kind, workdir, args.postgres_url) as url:
            variant = await _request_variant(url, background, args)
        variants.append(variant)
        for row in variant["rows"]:
            print(
                f"  [{kind}] background {background}, {row['row']}: "
                f"p50 {row['latency']['p50_ms']:.2f} ms, "
                f"CPU {row['cpu_us_per_request']:.0f} µs",
                file=sys.stderr,
                flush=True,
            )
    return {"database": kind, "broker": args.render_broker, "variants": variants}


async def _request_variant(url: str, background: str, args: argparse.Namespace) -> dict[str, Any]:
    """An item update and a deposit over HTTP in process, with the slice's background
    work that ``background`` names running."""
    import httpx
    from sqlalchemy import func, select

    main = service("main")
    core_settings = service("core.settings")
    tokens = service("core.auth.tokens")
    models = service("events.models")
    clock = time.perf_counter
    broker = args.render_broker
    projecting, relaying, consuming = BACKGROUNDS[background]
    events = events_settings(
        args.broker_urls[broker],
        run_projections=projecting,
        run_relay=relaying,
        run_consumers=consuming,
    )
    settings = core_settings.Settings(
        database=core_settings.DatabaseSettings(url=url),
        logging={"level": "WARNING"},
        events=events,
    )
    app = main.create_app(settings)
    middleware = [m.cls.__module__ for m in app.user_middleware]
    token = tokens.mint_token(settings.auth, "bench", roles=["admin"])
    headers = {"Authorization": f"Bearer {token}"}
    transport = httpx.ASGITransport(app=app)
    counter = iter(range(1, 10**9))

    state: dict[str, Any] = {}

    async def settled() -> bool:
        """What runs of the relay, the projections and the consumer has caught up."""
        if not projecting:
            return True
        head, positions = await app.state.projection_runner.positions()
        waiting = consumed = 0
        if relaying:
            async with app.state.sessions() as session:
                query = select(func.count()).select_from(models.OutboxEntry)
                waiting = await session.scalar(query) or 0
        if consuming:
            consumed = sum(app.state.event_consumers.outcomes.values())
        state.update(head=head, projections=positions, outbox=waiting, consumed=consumed)
        return (
            not waiting
            and all(p == head for p in positions.values())
            and (not consuming or consumed >= head)
        )

    def background_work() -> str:
        return f"the background work (at {state})"

    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://bench") as client,
        ):
            if consuming:
                # The consumer's queue exists once it has subscribed: on RabbitMQ what the
                # relay publishes before then reaches no queue.
                group = app.state.event_consumers

                async def subscribed() -> bool:
                    return bool(group.connected)

                await eventually(subscribed, 30, "the example consumer to subscribe")
            created = await client.post(
                "/api/v1/items",
                json={"name": f"bench-{uuid.uuid4().hex}", "price_cents": 100},
                headers=headers,
            )
            created.raise_for_status()
            item = created.json()["id"]
            opened = await client.post("/api/v1/wallets", json={"currency": "EUR"}, headers=headers)
            opened.raise_for_status()
            wallet = opened.json()["id"]

            def item_update() -> Awaitable[Any]:
                body = {"quantity": next(counter)}
                return client.patch(f"/api/v1/items/{item}", json=body, headers=headers)

            def deposit() -> Awaitable[Any]:
                path = f"/api/v1/wallets/{wallet}/deposits"
                return client.post(path, json={"amount": 1}, headers=headers)

            plan = [("item update", item_update), ("wallet deposit", deposit)]
            samples: dict[str, list[float]] = {name: [] for name, _ in plan}
            cpu: dict[str, float] = {name: 0.0 for name, _ in plan}
            per_round = max(1, args.requests // ROUNDS)
            for _ in range(ROUNDS):
                for name, request in plan:
                    for _ in range(REQUEST_WARMUP):
                        (await request()).raise_for_status()
                    await eventually(settled, SETTLE_TIMEOUT, background_work)
                    spent = time.process_time()
                    for _ in range(per_round):
                        started = clock()
                        response = await request()
                        samples[name].append(clock() - started)
                        response.raise_for_status()
                    # The background work a slice set off counts to it.
                    await eventually(settled, SETTLE_TIMEOUT, background_work)
                    cpu[name] += time.process_time() - spent
    finally:
        await remove_destination(broker, events, ["wallet_activity"])
    rows = [
        {
            "row": name,
            "requests": len(samples[name]),
            "latency": percentiles(samples[name]),
            "cpu_us_per_request": cpu[name] / len(samples[name]) * 1e6,
        }
        for name, _ in plan
    ]
    return {"background": background, "middleware": middleware, "rows": rows}


# --------------------------------------------------------------------------- #
# In the render's venv: the entry point
# --------------------------------------------------------------------------- #


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    import structlog

    # The service's log lines to stderr: stdout carries the results.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    found = {"python": platform.python_version()}
    for name in (
        "sqlalchemy", "aiosqlite", "asyncpg", "faststream", "aio-pika", "aiormq", "nats-py",
        "fastapi", "pydantic", "httpx", "uvloop",
    ):  # fmt: skip
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    workdir = Path(tempfile.mkdtemp(prefix="bench-events-measure-"))
    try:
        part = args.measure
        if part == "appends":
            result = run_on_uvloop(_appends(args.part_database, workdir, args))
        elif part == "relay":
            result = run_on_uvloop(_relay(args.part_broker, args.part_database, workdir, args))
        elif part == "latency":
            result = run_on_uvloop(_end_to_end(args.part_broker, args.part_database, workdir, args))
        else:
            result = run_on_uvloop(_requests(args.part_database, workdir, args))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {**result, "versions": found}


# --------------------------------------------------------------------------- #
# Orchestration (the repository's environment)
# --------------------------------------------------------------------------- #


def reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or default_port)
    try:
        with socket.create_connection(address, 3):
            return True
    except OSError:
        return False


def render(workdir: Path, database: str, broker: str) -> Path:
    """The template rendered with the event sourcing slice, ``database`` and ``broker``,
    and installed."""
    import copier
    import run as harness  # benchmarks/run.py

    project = workdir / f"{database}-{broker}" / SLUG
    if project.exists():
        return project
    with contextlib.redirect_stderr(sys.stderr), _quiet_warnings():
        copier.run_copy(
            str(REPO_ROOT),
            str(project),
            data={**ANSWERS, "database": database, "message_broker": broker},
            vcs_ref="HEAD",
            defaults=True,
            unsafe=True,
            skip_tasks=True,
            quiet=True,
        )
    answers = (project / ".copier-answers.yml").read_text()
    for wanted in ("event_sourcing: true", f"database: {database}", f"message_broker: {broker}"):
        if wanted not in answers:
            raise RuntimeError(f"the render's answers do not say {wanted}")
    harness.run([harness.uv_executable(), "sync", "--no-dev"], project)
    return project


@contextlib.contextmanager
def _quiet_warnings() -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # copier's DirtyLocalWarning: intended here
        yield


def stage(project: Path, options: list[str]) -> tuple[dict[str, Any], float]:
    """This file's ``--measure`` stage in the render's venv; its result and the share of
    the machine other processes used meanwhile (%: the database's and brokers' work
    included)."""
    import run as harness
    from protection import _cpu_clock  # benchmarks/protection.py

    command = [str(project / ".venv/bin/python"), str(Path(__file__).resolve()), *options]
    before = _cpu_clock()
    done = subprocess.run(
        command,
        cwd=project,
        env=harness.child_env(),
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    after = _cpu_clock()
    machine, child, wall = (a - b for a, b in zip(after, before, strict=True))
    others = max(0.0, machine - child) / (wall * (os.cpu_count() or 1)) * 100
    return json.loads(done.stdout), others


def common_options(args: argparse.Namespace) -> list[str]:
    return [
        "--postgres-url", args.postgres_url, "--rabbitmq-url", args.rabbitmq_url,
        "--nats-url", args.nats_url, "--append-seconds", str(args.append_seconds),
        "--concurrency", str(args.concurrency), "--aggregates", str(args.aggregates),
        "--per-aggregate", str(args.per_aggregate), "--single", str(args.single),
        *(option for rate in args.rates for option in ("--rate", str(rate))),
        "--seconds", str(args.seconds), "--drain", str(args.drain),
        "--requests", str(args.requests),
    ]  # fmt: skip


NAMES = {"sqlite": "SQLite", "postgresql": "PostgreSQL", "rabbitmq": "RabbitMQ", "nats": "NATS"}


def appends_report(runs: Sequence[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"appends: one event per transaction, {args.append_seconds:g} s per row, the rows "
        f"taking turns in {APPEND_ROUNDS} slices (after {WARMUP_COMMANDS} untimed commands "
        "per aggregate); 'at once': one task per "
        "aggregate (ORM: per item); lock: the event_sequence row (ORM: the item's row; "
        "SQLite: the database's write lock), its wait from sending the locking UPDATE to "
        "its return, held from then to the end of the commit, and of that the commit "
        "(medians); 1/held: the events/s the lock lets through at most, whatever the "
        "concurrency",
        "databases: " + "; ".join(run["server"] for run in runs),
        "",
        "| database | path | aggregates | events/s | p50 ms | p99 ms | lock wait ms "
        "| lock held ms | commit ms | 1/held | CPU µs/command | vs 1 aggregate |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        single: dict[str, float] = {}
        for row in run["rows"]:
            if row["aggregates"] == 1:
                single[row["row"]] = row["per_second"]
                scale = ""
            else:
                scale = f"{row['per_second'] / single[row['row']]:.2f}"
            orm = row["row"] == "orm"
            ceiling = "" if orm else f"{1000 / max(row['lock_held_ms'], 1e-6):,.0f}"
            lines.append(
                f"| {NAMES[run['database']]} | {row['label']} | {row['aggregates']} "
                f"| {row['per_second']:,.0f}{' updates/s' if orm else ''} "
                f"| {row['latency']['p50_ms']:.2f} | {row['latency']['p99_ms']:.2f} "
                f"| {row['lock_wait_ms']:.2f} | {row['lock_held_ms']:.2f} "
                f"| {row['commit_ms']:.2f} | {ceiling} "
                f"| {row['cpu_us_per_command']:.0f} | {scale} |"
            )
    lines += [
        "",
        "Repository.execute against a plain ORM update (the same database, the same concurrency):",
        "",
        "| database | aggregates/rows | execute p50 / ORM p50 | ORM updates/s / execute events/s "
        "| execute CPU / ORM CPU |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        by = {(row["row"], row["aggregates"]): row for row in run["rows"]}
        for tasks in (1, args.concurrency):
            execute, orm = by.get(("execute", tasks)), by.get(("orm", tasks))
            if execute is None or orm is None:
                continue
            lines.append(
                f"| {NAMES[run['database']]} | {tasks} "
                f"| {execute['latency']['p50_ms'] / orm['latency']['p50_ms']:.2f} "
                f"| {orm['per_second'] / execute['per_second']:.2f} "
                f"| {execute['cpu_us_per_command'] / orm['cpu_us_per_command']:.2f} |"
            )
    return "\n".join(lines)


def relay_report(runs: Sequence[dict[str, Any]]) -> str:
    lines = [
        "relay: the outbox preloaded (untimed), then Relay.relay_once() until it is empty; "
        f"batches of {runs[0]['batch_size']} events; 'publishing': the share of the time "
        "between a batch's first publish and its last confirm; CPU: this process's",
        "databases: " + "; ".join(sorted({run["server"] for run in runs})),
        "",
        "| broker | outbox | events | seconds | events/s | aggregates per batch "
        "| confirm p50 ms | confirm p99 ms | publishing | CPU µs/event | stored |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for run in runs:
        for row in run["rows"]:
            lines.append(
                f"| {NAMES[run['broker']]} | {row['shape']} | {row['events']:,} "
                f"| {row['seconds']:.2f} | {row['per_second']:,.0f} "
                f"| {row['aggregates_per_batch']:.1f} | {row['publish']['p50_ms']:.2f} "
                f"| {row['publish']['p99_ms']:.2f} | {row['publishing_share']:.0%} "
                f"| {row['cpu_us_per_event']:.0f} | {row['stored_by_broker']:,} |"
            )
    failures = sum(row["failures"] for run in runs for row in run["rows"])
    if failures:
        lines.append(f"(publishes that failed and were retried: {failures})")
    lines.append("kafka: not measured (no Kafka broker on this machine)")
    return "\n".join(lines)


def latency_report(runs: Sequence[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        "commit to consumer: Relay.run() and a ConsumerGroup (a recording projection) in "
        f"this process; deposits at a steady rate for {args.seconds} s over {E2E_WALLETS} "
        "wallets through Repository.execute, each started on time (as requests arrive, at "
        "most 15 at once: the pool); from the end of each event's commit to the end of its "
        "handling (the consumer's transaction committed); on the way: to the broker's "
        "confirm of its publish, and to the projection's apply (before the consumer's "
        "commit); command: from a deposit's due time to its commit",
        "databases: " + "; ".join(sorted({run["server"] for run in runs})),
        "",
        "| broker | rate/s | events | appended/s | command p50 ms | consumed/s | p50 ms "
        "| p95 ms | p99 ms | max ms | confirmed p50 ms | applied p50 ms | all handled after s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: |",
    ]
    for run in runs:
        for row in run["rows"]:
            latency = row["latency"]
            lines.append(
                f"| {NAMES[run['broker']]} | {row['rate']} | {row['events']:,} "
                f"| {row['appended_per_second']:.0f} | {row['command']['p50_ms']:.1f} "
                f"| {row['consumed_per_second']:.0f} | {latency['p50_ms']:.1f} "
                f"| {latency['p95_ms']:.1f} | {latency['p99_ms']:.1f} "
                f"| {latency['max_ms']:.1f} | {row['to_confirm']['p50_ms']:.1f} "
                f"| {row['to_apply']['p50_ms']:.1f} | {row['drained_s']:.1f} |"
            )
    lines.append("")
    for run in runs:
        drain = run["drain"]
        lines.append(
            f"{NAMES[run['broker']]}, the consumer alone: {drain['events']:,} events put in "
            f"the outbox at once, all published {drain['relayed_s']:.2f} s later, all "
            f"handled {drain['handled_s']:.2f} s later: {drain['consumed_per_second']:.0f} "
            f"events/s handled, {1000 / drain['consumed_per_second']:.1f} ms each, of "
            f"which the consumer's transaction (inbox + apply + commit) "
            f"{drain['transaction']['p50_ms']:.1f} ms (p50); this process's CPU "
            f"{drain['cpu_us_per_event']:.0f} µs per event (the relay's included)"
        )
    conflicts = sum(row["conflicts"] for run in runs for row in run["rows"])
    if conflicts:
        lines.append(f"(deposits retried after a concurrent one on the same wallet: {conflicts})")
    lines.append("kafka: not measured (no Kafka broker on this machine)")
    return "\n".join(lines)


def requests_report(runs: Sequence[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"request path: in process (httpx ASGITransport, create_app, lifespan entered), "
        f"a bearer token on each request; {args.requests:,} timed requests per row, each "
        f"timed on its own, the rows taking turns over {ROUNDS} rounds; background: what "
        "runs besides the requests (off: nothing; projections: the projection runner; on: "
        "the defaults, the projections, the relay and the example consumer); CPU: the "
        "process's, the background work a slice set off included (settled, untimed, "
        "before the next slice)",
        "",
        "| database | background | request | p50 ms | p95 ms | p99 ms | mean ms | CPU µs/request |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    ratios = [
        "",
        "| database | background | deposit / update: p50 | mean | CPU | deposit CPU added µs |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    notes = []
    for run in runs:
        for variant in run["variants"]:
            background = variant["background"]
            by = {row["row"]: row for row in variant["rows"]}
            for row in variant["rows"]:
                latency = row["latency"]
                lines.append(
                    f"| {NAMES[run['database']]} | {background} | {row['row']} "
                    f"| {latency['p50_ms']:.2f} | {latency['p95_ms']:.2f} "
                    f"| {latency['p99_ms']:.2f} | {latency['mean_ms']:.2f} "
                    f"| {row['cpu_us_per_request']:.0f} |"
                )
            update, deposit = by["item update"], by["wallet deposit"]
            ratios.append(
                f"| {NAMES[run['database']]} | {background} "
                f"| {deposit['latency']['p50_ms'] / update['latency']['p50_ms']:.2f} "
                f"| {deposit['latency']['mean_ms'] / update['latency']['mean_ms']:.2f} "
                f"| {deposit['cpu_us_per_request'] / update['cpu_us_per_request']:.2f} "
                f"| {deposit['cpu_us_per_request'] - update['cpu_us_per_request']:+.0f} |"
            )
        middleware = run["variants"][0]["middleware"]
        sliced = [m for m in middleware if ".events." in m or ".wallets." in m]
        notes.append(
            f"{NAMES[run['database']]}: the app has {len(middleware)} middleware, "
            f"{len(sliced)} of them the event sourcing slice's"
        )
    return "\n".join(lines + ratios + [""] + notes)


def benchmark(workdir: Path, args: argparse.Namespace) -> None:
    import run as harness

    brokers = []
    for broker in args.brokers:
        port = 5672 if broker == "rabbitmq" else 4222
        if reachable(args.broker_urls[broker], port):
            brokers.append(broker)
        else:
            print(f"{broker}: not reachable at {args.broker_urls[broker]}; skipped", flush=True)
    # The appends and the request path in a RabbitMQ render (its store writes outbox rows
    # as any broker's does); the brokers' parts each in its own broker's render.
    render_broker = "rabbitmq"
    print(f"rendering and installing in {workdir} ...", file=sys.stderr, flush=True)
    found: dict[str, list[dict[str, Any]]] = {
        "appends": [], "relay": [], "latency": [], "requests": []
    }  # fmt: skip
    noise: dict[str, float] = {}
    base = common_options(args)

    def part(name: str, database: str, broker: str, label: str) -> None:
        project = render(workdir, database, broker)
        print(f"{label}:", file=sys.stderr, flush=True)
        options = ["--measure", name, "--part-database", database, "--part-broker", broker]
        result, noise[label] = stage(project, [*options, *base])
        found[name].append(result)

    if not args.no_appends:
        for database in args.databases:
            part("appends", database, render_broker, f"appends, {database}")
    for broker in brokers:
        if not args.no_relay:
            part("relay", args.broker_database, broker, f"relay, {broker}")
        if not args.no_latency:
            part("latency", args.broker_database, broker, f"commit to consumer, {broker}")
    if not args.no_requests and render_broker in brokers:
        for database in args.databases:
            part("requests", database, render_broker, f"request path, {database}")

    print()
    print(f"date:     {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine:  {os.cpu_count()} cores, {platform.machine()}, {harness.cpu_model()}")
    versions: dict[str, str] = {}
    for results in found.values():
        for result in results:
            versions |= result["versions"]
    print("versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())))
    print(
        f"load average before the run: {args.load_before}; other processes' CPU, in % of "
        "the machine (the database's and the brokers' work included), during: "
        + ", ".join(f"{k} {v:.0f} %" for k, v in noise.items())
    )
    if found["appends"]:
        print()
        print(appends_report(found["appends"], args))
    if found["relay"]:
        print()
        print(relay_report(found["relay"]))
    if found["latency"]:
        print()
        print(latency_report(found["latency"], args))
    if found["requests"]:
        print()
        print(requests_report(found["requests"], args))
    if not brokers:
        print("\nno broker reachable: no relay, latency or request-path figures")
    if args.json_path:
        payload = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "others_percent": noise,
            "settings": {k: v for k, v in vars(args).items() if k not in {"json_path"}},
            **found,
        }
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database",
        action="append",
        choices=DATABASES,
        dest="databases",
        help="appends and request path on this database only; repeatable (default: both)",
    )
    parser.add_argument(
        "--broker",
        action="append",
        choices=BROKERS,
        dest="brokers",
        help="relay and latency to this broker only; repeatable (default: both)",
    )
    parser.add_argument(
        "--broker-database",
        choices=DATABASES,
        default="postgresql",
        help="the database of the relay and latency parts (default: postgresql)",
    )
    parser.add_argument(
        "--append-seconds", type=float, default=APPEND_SECONDS, help="seconds per append row"
    )
    parser.add_argument(
        "--concurrency", type=int, default=CONCURRENCY, help="aggregates at once (many rows)"
    )
    parser.add_argument(
        "--aggregates", type=int, default=AGGREGATES, help="the relay's many-aggregate preload"
    )
    parser.add_argument(
        "--per-aggregate", type=int, default=PER_AGGREGATE, help="events per aggregate there"
    )
    parser.add_argument(
        "--single", type=int, default=SINGLE, help="events of the relay's one-aggregate preload"
    )
    parser.add_argument(
        "--rate",
        action="append",
        type=int,
        dest="rates",
        help=f"deposits per second (commit to consumer); repeatable (default: {RATES})",
    )
    parser.add_argument("--seconds", type=int, default=SECONDS, help="seconds of deposits")
    parser.add_argument(
        "--drain", type=int, default=DRAIN, help="events the consumer drains on its own"
    )
    parser.add_argument(
        "--requests", type=int, default=REQUESTS, help="timed requests per request-path row"
    )
    parser.add_argument("--postgres-url", default=POSTGRES_URL, help="for scratch databases")
    parser.add_argument("--rabbitmq-url", default=RABBITMQ_URL)
    parser.add_argument("--nats-url", default=NATS_URL)
    parser.add_argument("--no-appends", action="store_true", help="skip the appends")
    parser.add_argument("--no-relay", action="store_true", help="skip the relay")
    parser.add_argument("--no-latency", action="store_true", help="skip commit to consumer")
    parser.add_argument("--no-requests", action="store_true", help="skip the request path")
    parser.add_argument("--keep", action="store_true", help="keep the renders")
    parser.add_argument("--json", type=Path, dest="json_path", help="also write results here")
    parser.add_argument(
        "--measure", choices=("appends", "relay", "latency", "requests"), help=argparse.SUPPRESS
    )
    parser.add_argument("--part-database", choices=DATABASES, help=argparse.SUPPRESS)
    parser.add_argument("--part-broker", choices=BROKERS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.databases = list(args.databases or DATABASES)
    args.rates = list(args.rates or RATES)
    args.brokers = list(args.brokers or BROKERS)
    args.broker_urls = {"rabbitmq": args.rabbitmq_url, "nats": args.nats_url}
    if (
        args.append_seconds <= 0
        or args.concurrency < 2
        or min(args.aggregates, args.per_aggregate, args.single, *args.rates, args.seconds) < 1
        or args.drain < 20
        or args.requests < ROUNDS
    ):
        parser.error(
            "--append-seconds, --aggregates, --per-aggregate, --single, --rate and --seconds "
            f"must be positive, --concurrency at least 2, --requests at least {ROUNDS}, "
            "--drain at least 20"
        )

    if args.measure:  # the second stage, in the render's venv: results as JSON on stdout
        args.render_broker = args.part_broker
        results = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)  # the service logs to stdout: to stderr with the progress lines
        print(json.dumps(measure(args), default=str), file=results)
        results.close()
        return 0

    sys.path.insert(0, str(HERE))
    import run as harness

    args.load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    harness.stop_cleanly_on_signals()
    return harness.in_workdir(
        "bench-events-",
        keep=args.keep,
        kept="renders",
        benchmark=lambda workdir: benchmark(workdir, args),
    )


if __name__ == "__main__":
    sys.exit(main())
