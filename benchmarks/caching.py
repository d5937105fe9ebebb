"""Cached item reads over HTTP next to the bare app, and the cache's hits in process.

Two parts in one run:

* **HTTP.** Renders the service from a snapshot of the working tree as run.py does, in
  several profiles (the default answers with the caching slice on, with it off, with Redis,
  and the same without metrics and tracing), installs, migrates and seeds each, and loads
  ``GET /health/live`` and ``GET /api/v1/items/{id}`` with wrk next to the bare FastAPI app
  (run.py's serving, wrk and table code). Every seeded item is read once before its row, so
  the cached profiles answer from a warm cache. With metrics on, ``/metrics`` is read
  before and after the item row to show how the cache answered during it.
* **In process.** Runs this file again with the Redis render's Python (``--measure``),
  which imports the service's own ``caching`` package and times one read of a stored
  representation through ``Cache.representation`` on uvloop, each call on its own: a hit
  in the in-process tier, and a hit in the Redis tier (the key in Redis, not in the
  process: the in-process copy is dropped, untimed, before every read).

Goals: the cached item read at 0.5 of the bare app's RPS or more, its p95 under 50 ms at
32 connections; an in-process hit under 50 µs, a Redis hit under 500 µs.

Needs wrk and a Redis 6+ (``--redis-url``, default ``redis://127.0.0.1:6379``); every key
the run writes is under a namespace of its own and deleted at the end. Run from the
repository root::

    uv run python benchmarks/caching.py [--duration 10] [--iterations 20000] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import platform
import re
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

RATIO_GOAL = 0.5
P95_GOAL_MS = 50.0
LOCAL_GOAL_US = 50.0
REDIS_GOAL_US = 500.0
REDIS_URL = "redis://127.0.0.1:6379"
ITERATIONS = 20_000
WARMUP = 200  # untimed reads per row and round
ROUNDS = 20
HERE = Path(__file__).resolve().parent
TARGETS = [("health live", "/health/live"), ("item by id", "/api/v1/items/{id}")]
ITEM_ROW = "item by id"
# How the cached default render's item row reads against the other profiles.
CACHED, UNCACHED = "cached", "uncached"

# What one item looks like as GET /api/v1/items/{id} sends it (ItemRead), for the rows
# in process.
ITEM_BODY = json.dumps(
    {
        "id": 1,
        "name": "bench item 0000",
        "description": None,
        "price_cents": 100,
        "quantity": 0,
        "created_by": "bench",
        "version": 1,
        "created_at": "2026-12-05T17:00:00.000000Z",
        "updated_at": "2026-12-05T17:00:00.000000Z",
    },
    separators=(",", ":"),
).encode()


# --------------------------------------------------------------------------- #
# In the render's venv
# --------------------------------------------------------------------------- #

Read = Callable[[], Awaitable[object]]
Reset = Callable[[], Awaitable[None]]


async def _samples(read: Read, reset: Reset | None, iterations: int) -> list[int]:
    """Nanoseconds per read, each read timed on its own; ``reset`` runs untimed before it."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(iterations):
        if reset is not None:
            await reset()
        started = clock()
        await read()
        samples.append(clock() - started)
    return samples


async def _micro(package: str, url: str, iterations: int) -> list[dict[str, Any]]:
    from flags import _summary  # benchmarks/flags.py: median, p99 and mean in µs
    from prometheus_client import REGISTRY
    from redis.asyncio import Redis

    cache_module = importlib.import_module(f"{package}.caching.cache")
    local_module = importlib.import_module(f"{package}.caching.local")
    observer_module = importlib.import_module(f"{package}.caching.observer")
    settings_module = importlib.import_module(f"{package}.caching.settings")
    shared = importlib.import_module(f"{package}.caching.shared")
    metrics = importlib.import_module(f"{package}.caching.metrics")
    representations = importlib.import_module(f"{package}.core.representations")
    Lookup = observer_module.Lookup

    class Counting(observer_module.CacheObserver):  # type: ignore[misc,name-defined]
        """Counts how reads were answered, to check each row read what it claims to."""

        def __init__(self) -> None:
            self.outcomes: Counter[str] = Counter()

        def lookup(self, name: str, outcome: Any) -> None:
            self.outcomes[str(outcome)] += 1

    # The default settings but an hour's TTL: no entry reaches its early-refresh window
    # during the run (a hit takes the same path whatever the TTL).
    settings = settings_module.CachingSettings(ttl_seconds=3600.0)
    body = representations.Representation(ITEM_BODY, '"1"')

    async def compute() -> Any:
        return body

    def bounded() -> Any:
        return local_module.BoundedMemory(
            max_entries=settings.local_max_entries, max_bytes=settings.local_max_bytes
        )

    def reader(cache: Any) -> Read:
        async def read() -> object:
            return await cache.representation("item", "1", compute, tags=("item:1",))

        return read

    counted = Counting()
    local_only = cache_module.Cache(settings, local=bounded(), observer=counted)
    metered = cache_module.Cache(settings, local=bounded(), observer=metrics.MetricsObserver())
    metered.declare("item")
    in_process = bounded()
    tier = shared.SharedTier(
        url, local=in_process, prefix=f"bench:{uuid.uuid4().hex[:12]}:", timeout=0.25
    )
    await tier.init()
    two_level = cache_module.Cache(
        settings, local=in_process, store=tier, faults=shared.FAULTS, observer=counted
    )
    client = Redis.from_url(url, protocol=2)
    try:
        for cache in (local_only, metered, two_level):
            await cache.local.init()
            await reader(cache)()  # the miss that stores the entry
        # A write keeps no in-process copy (Redis's invalidation of it follows): reads
        # copy the entry in, once that invalidation has gone by.
        for _ in range(100):
            await reader(two_level)()
            copies = [k for k in in_process.store if k.startswith("item:1|")]
            if copies and isinstance(in_process.store[copies[0]][1], bytes):
                break
            await asyncio.sleep(0.01)
        entry_key = copies[0]

        async def drop_all() -> None:
            in_process.drop_all()

        async def drop_entry() -> None:
            in_process.discard(entry_key)

        async def redis_get() -> object:
            return await client.get(tier._add_prefix(entry_key))

        # name, read, reset before each read, expected outcome (None: not checked), goal µs
        local, shared_hit = LOCAL_GOAL_US, REDIS_GOAL_US
        plan: list[tuple[str, Read, Reset | None, Any, float | None]] = [
            ("in-process hit, no Redis", reader(local_only), None, Lookup.LOCAL_HIT, local),
            ("  with the metrics observer", reader(metered), None, None, local),
            ("in-process copy hit, Redis tier on", reader(two_level), None, Lookup.LOCAL_HIT,
             local),
            ("Redis hit: entry and tag generation", reader(two_level), drop_all,
             Lookup.REDIS_HIT, shared_hit),
            ("Redis hit: entry (generation in process)", reader(two_level), drop_entry,
             Lookup.REDIS_HIT, shared_hit),
            ("one Redis GET of the entry (redis-py)", redis_get, None, None, None),
        ]  # fmt: skip
        samples: dict[str, list[int]] = {name: [] for name, *_ in plan}
        per_round = max(1, iterations // ROUNDS)
        for _ in range(ROUNDS):
            for name, read, reset, expected, _ in plan:
                await _samples(read, reset, WARMUP)
                counted.outcomes.clear()
                samples[name] += await _samples(read, reset, per_round)
                if expected is not None and counted.outcomes != {str(expected): per_round}:
                    raise RuntimeError(f"{name}: expected {expected} only, got {counted.outcomes}")
        hits = REGISTRY.get_sample_value(
            "app_cache_lookups_total", {"name": "item", "outcome": str(Lookup.LOCAL_HIT)}
        )
        if hits != ROUNDS * (WARMUP + per_round):
            raise RuntimeError(f"the metered row counted {hits} local hits")
        if len(ITEM_BODY) != len((await reader(two_level)()).body):  # type: ignore[attr-defined]
            raise RuntimeError("the Redis tier did not return the stored body")
        await two_level.clear()  # the run's keys, in Redis too
    finally:
        await client.aclose()
        await tier.close()
    rows = [{"row": name, "goal_us": goal, **_summary(samples[name])} for name, *_, goal in plan]
    for row in rows:
        print(f"  {row['row']}: {row['median_us']:.1f} µs median", file=sys.stderr, flush=True)
    return rows


def measure(package: str, url: str, iterations: int) -> dict[str, Any]:
    from importlib.metadata import version

    import structlog
    import uvloop

    # The tier's log lines to stderr: stdout carries the results.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        rows = runner.run(_micro(package, url, iterations))
    names = ("cashews", "redis", "uvloop")
    return {
        "rows": rows,
        "versions": {"python": platform.python_version(), **{n: version(n) for n in names}},
    }


# --------------------------------------------------------------------------- #
# Orchestration (the repository's environment)
# --------------------------------------------------------------------------- #


def profiles(redis_url: str, namespace: str) -> list[Any]:
    import run as harness  # benchmarks/run.py: render, install, serve, load, tables

    defaults = dict(harness.BASE_ANSWERS)
    quiet = {**defaults, "metrics": False, "tracing": False}
    redis = (("APP_REDIS__URL", redis_url), ("APP_CACHING__NAMESPACE", namespace))
    return [
        harness.Profile(CACHED, defaults, exports=True),
        harness.Profile(UNCACHED, {**defaults, "caching": False}, exports=True),
        harness.Profile("cached+redis", {**defaults, "redis": True}, exports=True, settings=redis),
        harness.Profile("cached-no-obs", quiet),
        harness.Profile("uncached-no-obs", {**quiet, "caching": False}),
    ]


def prepare(template: Path, workdir: Path, profile: Any, log: IO[bytes]) -> tuple[Any, list[int]]:
    """Render, install, migrate and seed, with the profile's settings (Redis) while seeding."""
    import run as harness

    project = harness.render_service(template, workdir, profile)
    token = harness.install_service(project)
    app = harness.service_app(project)
    settings = dict(profile.settings)
    with harness.serving(app, log, None, APP_LOGGING__LEVEL="WARNING", **settings) as server:
        return app, harness.seed_items(server.base_url, token, harness.SEED_ITEMS)


_LOOKUP = re.compile(r'^app_cache_lookups_total\{name="item",outcome="(\w+)"\} ([\d.e+]+)$', re.M)


def lookups(base_url: str) -> Counter[str]:
    """The item reads through the cache so far, by outcome; empty without metrics."""
    try:
        with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as response:
            text = response.read().decode()
    except OSError:
        return Counter()
    return Counter({outcome: int(float(n)) for outcome, n in _LOOKUP.findall(text)})


def bench_profile(
    app: Any, log: IO[bytes], profile: Any, ids: list[int], options: Any, sink: str
) -> tuple[list[Any], Counter[str]]:
    """The profile's rows at WARNING, the item row after every item was read once."""
    import run as harness

    env = dict(profile.settings)
    if profile.exports:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink
    results, outcomes = [], Counter[str]()
    with harness.serving(
        app, log, options.server_core, APP_LOGGING__LEVEL="WARNING", **env
    ) as server:
        for name, path in TARGETS:
            target = harness.Target(name, path, "WARNING", profile.name)
            if name != ITEM_ROW:
                results.append(harness.load(server, target, ids, options))
                continue
            harness.read_items(server.base_url, ids)
            before = lookups(server.base_url)
            results.append(harness.load(server, target, ids, options))
            outcomes = lookups(server.base_url) - before
    return results, outcomes


def goals(results: Sequence[Any], bare_rps: float) -> str:
    rows = {r.target.profile: r for r in results if r.target.name == ITEM_ROW}
    lines = ["", "item by id, cached (default answers) against its goals:"]
    cached = rows.get(CACHED)
    if cached is None:
        return ""
    ratio, p95 = cached.stats.rps / bare_rps, cached.stats.p95_ms
    ratio_met = "met" if ratio >= RATIO_GOAL else "missed"
    p95_met = "met" if p95 < P95_GOAL_MS else "missed"
    lines.append(
        f"  RPS {ratio:.2f} of bare (goal >= {RATIO_GOAL}: {ratio_met}); "
        f"p95 {p95:.1f} ms (goal < {P95_GOAL_MS:g} ms: {p95_met})"
    )
    for other, result in rows.items():
        if other != CACHED:
            lines.append(
                f"  {other:<16} {result.stats.rps / bare_rps:>5.2f} of bare, "
                f"cached is {cached.stats.rps / result.stats.rps:.1f}x its RPS"
            )
    return "\n".join(lines)


def outcome_lines(outcomes: dict[str, Counter[str]]) -> str:
    lines = [
        f"  {name:<16} " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()) if v)
        for name, counts in outcomes.items()
        if counts
    ]
    if not lines:
        return ""
    return "\n".join(["", "item reads through the cache during the item rows (/metrics):", *lines])


def micro_report(result: dict[str, Any], iterations: int) -> str:
    v = result["versions"]
    lines = [
        "",
        f"in process: Cache.representation, python {v['python']} (uvloop {v['uvloop']}), "
        f"cashews {v['cashews']}, redis-py {v['redis']}; {iterations:,} reads per row, each "
        f"timed on its own, the rows taking turns over {ROUNDS} rounds",
        f"{'row':<42} {'median µs':>10} {'p99 µs':>8} {'mean µs':>8}  goal",
    ]
    for r in result["rows"]:
        goal = r["goal_us"]
        verdict = "" if goal is None else f"< {goal:g} µs: "
        verdict += "" if goal is None else ("met" if r["median_us"] < goal else "missed")
        lines.append(
            f"{r['row']:<42} {r['median_us']:>10.1f} {r['p99_us']:>8.1f} {r['mean_us']:>8.1f}  "
            f"{verdict}"
        )
    return "\n".join(lines)


def delete_keys(redis_url: str, namespace: str) -> int:
    """Deletes what the Redis profile's service stored under the run's namespace."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()


def benchmark(workdir: Path, args: argparse.Namespace) -> None:
    import run as harness
    from helpers import snapshot_working_tree  # tests/helpers.py, on the path run.py sets

    namespace = f"bench-{uuid.uuid4().hex[:12]}:"
    chosen = [p for p in profiles(args.redis_url, namespace) if p.name in args.profiles]
    options = harness.Options(
        args.duration, args.warmup, args.connections, args.keep, args.json_path, args.pin,
        tuple(args.profiles),
    )  # fmt: skip
    print(f"rendering and installing in {workdir} ...", file=sys.stderr, flush=True)
    template = snapshot_working_tree(workdir / "template")
    results: list[Any] = []
    outcomes: dict[str, Counter[str]] = {}
    micro: dict[str, Any] | None = None
    try:
        with (workdir / "servers.log").open("wb") as log, harness.otlp_sink() as sink:
            prepared = [(p, *prepare(template, workdir, p, log)) for p in chosen]
            found = harness.versions(prepared[0][1].python)
            print("loading:", file=sys.stderr, flush=True)
            results.append(
                harness.bench_bare(harness.bare_app(prepared[0][1].python), log, options)
            )
            for profile, app, ids in prepared:
                rows, outcomes[profile.name] = bench_profile(
                    app, log, profile, ids, options, sink.url
                )
                results += rows
        if not args.no_micro:
            micro = run_micro(template, workdir, args)
    finally:
        deleted = delete_keys(args.redis_url, namespace)
        print(f"deleted {deleted} keys under {namespace} in Redis", file=sys.stderr)
    print()
    print(harness.environment(found, options))
    print()
    print(harness.table(results, bare_rps=results[0].stats.rps))
    print(goals(results, results[0].stats.rps))
    print(outcome_lines(outcomes))
    if micro is not None:
        print(micro_report(micro, args.iterations))
    print(harness.caveats(results))
    if args.json_path:
        payload = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": found,
            "results": [{**asdict(r.target), **asdict(r.stats),
                         "cpu_us_per_request": r.cpu_us_per_request,
                         "others_cpu_percent": r.others_cpu_percent} for r in results],
            "cache_outcomes": outcomes,
            "in_process": micro,
        }  # fmt: skip
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(payload, indent=2) + "\n")


def run_micro(template: Path, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The in-process rows, in the Redis render's venv (rendered here if not loaded)."""
    import run as harness

    profile = harness.Profile("cached+redis", {**harness.BASE_ANSWERS, "redis": True})
    project = workdir / "cached-redis" / harness.SLUG
    if not (project / ".venv").exists():
        project = harness.render_service(template, workdir, profile)
        harness.run([harness.uv_executable(), "sync", "--no-dev"], project)
    print("measuring in process:", file=sys.stderr, flush=True)
    command = [
        str(project / ".venv/bin/python"), str(Path(__file__).resolve()),
        "--measure", harness.SERVICE_APP.split(".", 1)[0], "--redis-url", args.redis_url,
        "--iterations", str(args.iterations),
    ]  # fmt: skip
    done = subprocess.run(
        command, cwd=project, env=harness.child_env(), stdout=subprocess.PIPE, text=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    names = [CACHED, UNCACHED, "cached+redis", "cached-no-obs", "uncached-no-obs"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per row")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load first")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--pin", action="store_true", help="pin the server and wrk (as run.py)")
    parser.add_argument(
        "--profile", action="append", choices=names, dest="profiles", help="only this; repeatable"
    )
    parser.add_argument("--iterations", type=int, default=ITERATIONS, help="reads per row")
    parser.add_argument("--no-micro", action="store_true", help="skip the in-process rows")
    parser.add_argument("--redis-url", default=REDIS_URL, help="a Redis 6+ the run may write to")
    parser.add_argument("--keep", action="store_true", help="keep the renders and servers.log")
    parser.add_argument("--json", type=Path, dest="json_path", help="also write results here")
    parser.add_argument("--measure", metavar="PACKAGE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.profiles = args.profiles or names
    if args.iterations < ROUNDS or args.duration < 1 or args.connections < 1:
        parser.error(
            f"--iterations must be at least {ROUNDS}, --duration and --connections positive"
        )

    if args.measure:  # the second stage, in the render's venv: results as JSON on stdout
        print(json.dumps(measure(args.measure, args.redis_url, args.iterations)))
        return 0

    sys.path.insert(0, str(HERE))
    import run as harness

    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    harness.stop_cleanly_on_signals()
    return harness.in_workdir(
        "bench-caching-",
        keep=args.keep,
        kept="renders, servers.log",
        benchmark=lambda workdir: benchmark(workdir, args),
    )


if __name__ == "__main__":
    sys.exit(main())
