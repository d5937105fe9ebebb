"""What the experiments slice costs: a flag read through its provider layer, the results
over a million metric events, and the statistics library's share of the image.

Renders the template with copier (``--vcs-ref HEAD``: the working tree, uncommitted
changes included; ``--defaults --trust --skip-tasks``) with ``experiments=true``, once
with SQLite and once with PostgreSQL (the other answers are the defaults: metrics and
tracing on, the built-in flag provider), into a temporary directory, and installs each
render with ``uv sync --no-dev``. Then:

* **Request path** (goal: under 30 µs added per evaluation on top of a flag read). Runs
  this file again with the SQLite render's Python (``--measure request``), which imports
  the service's own ``BuiltinProvider``, ``ExperimentProvider``, ``ExperimentRegistry``,
  ``Recorder`` and flag hooks, and reads flags with
  ``client.get_string_value(key, default, EvaluationContext(...))`` on the default
  OpenFeature provider: (a) a built-in flag with a 50/50 rollout; (b) the same through
  the experiment layer, no experiment on that key; (c) a running experiment's key, a new
  subject each read (assignment, exposure queued); (d) the same for a subject already
  exposed (assignment, the dedup check); (e) (b) with 5 cohorts defined. Each row runs
  without hooks and with the service's hook (``flags.hooks.flag_hooks()``: the metrics
  counter and the tracing check, outside a span). Every read is timed on its own, warm,
  the rows taking turns over the rounds; the exposures the (c) rows queue are flushed to
  a SQLite file between their slices (untimed), as the recorder's task would, and
  counted afterwards. Then each step of the layer is timed on its own, and the
  recorder's ``flush()`` of 5,000 buffered exposures and of 5,000 metric events to that
  file (the writes its task does in the background, on the service's event loop).
* **Results** (goal: ``experiments.results.compute`` under 5 s over 1,000,000 events, on
  SQLite and on PostgreSQL). Runs this file again with each render's Python
  (``--measure results``), which creates a database (a SQLite file; a scratch PostgreSQL
  database, dropped at the end), migrates it with the render's ``migrate``, bulk-loads a
  running experiment started 7 days ago (100,000 exposed subjects over 2 arms; 1,000,000
  events of a conversion and a mean metric, a fifth of them in the 7 days before the
  start, some from subjects never exposed), checks ``compute`` against the same figures
  computed in Python, and times it without and with ``cuped_days``, loading excluded.
  The statements' plans (``EXPLAIN QUERY PLAN``; ``EXPLAIN (ANALYZE, BUFFERS)``) are
  printed when a median misses the goal, or with ``--explain``.
* **Image size**: the installed size of mpmath in the render's venv, against numpy +
  scipy installed into a throwaway venv (``uv pip install``) with the same Python.

No timing is asserted: the tables print each figure against its goal.

Needs ``uv`` and, for the PostgreSQL rows, a PostgreSQL the run may create a database on
(``--postgres-url``, default ``postgresql://postgres@127.0.0.1:5432/postgres``). Run from
the repository root::

    uv run python benchmarks/experiments.py [--iterations 100000] [--repeats 3] [--json out.json]

About 2 minutes on 2 cores; results and findings in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REQUEST_GOAL_US = 30.0
RESULTS_GOAL_S = 5.0
ITERATIONS = 100_000  # timed reads per row
WARMUP = 500  # untimed reads per row and round
ROUNDS = 20
STEP_CALLS = 20_000
REPEATS = 3  # timed compute() calls per variant, after one untimed
POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
PACKAGE = "bench_service"
SLUG = "bench-service"
ANSWERS: dict[str, Any] = {
    "project_name": "Bench Service",
    "python_version": "3.11",
    "experiments": True,
}
DATABASES = ("sqlite", "postgresql")

# --------------------------------------------------------------------------- #
# What is read (request path)
# --------------------------------------------------------------------------- #

FLAG_KEY = "checkout-layout"
EXPERIMENT_KEY = "search-ranking"
FLAGS: list[dict[str, Any]] = [
    # (a): a string flag without rules and a 50/50 fallthrough rollout (the bucketing hash).
    {
        "key": FLAG_KEY,
        "type": "string",
        "variants": {"classic": "classic", "compact": "compact"},
        "default_variant": "classic",
        "fallthrough": {"weights": {"classic": 50, "compact": 50}},
    },
    # The flag the experiment names: what it reads as without the experiment.
    {
        "key": EXPERIMENT_KEY,
        "type": "string",
        "variants": {"bm25": "bm25", "vector": "vector"},
        "default_variant": "bm25",
    },
]
# What flags/context.py builds for a signed-in user; every row reads with it.
ATTRIBUTES: dict[str, Any] = {
    "anonymous": False,
    "groups": ["staff"],
    "roles": ["user"],
    "plan": "pro",
    "country": "DE",
}
# Five cohorts of the kinds the slice allows: a member list, conditions, both.
COHORTS: list[dict[str, Any]] = [
    {"key": "beta-testers", "members": [f"beta-{n:05d}" for n in range(1_000)]},
    {"key": "staff", "conditions": [{"attribute": "groups", "operator": "in",
                                     "values": ["staff", "qa"]}]},
    {"key": "enterprise-eu", "conditions": [
        {"attribute": "plan", "operator": "in", "values": ["enterprise"]},
        {"attribute": "country", "operator": "in", "values": ["DE", "FR", "NL", "IT", "ES"]},
    ]},
    {"key": "internal", "members": ["ops-1", "ops-2"], "conditions": [
        {"attribute": "targetingKey", "operator": "starts_with",
         "values": ["test-", "internal-"]}]},
    {"key": "mobile", "conditions": [{"attribute": "platform", "operator": "in",
                                      "values": ["ios", "android"]}]},
]  # fmt: skip
EXPOSED_POOL = 10_000  # the subjects the (d) rows read again


def experiment_definition(key: str, started_at: datetime, **extra: Any) -> dict[str, Any]:
    """A running experiment of two arms, 50/50, with a conversion and a mean metric."""
    return {
        "key": key,
        "hypothesis": "the new variant converts better",
        "arms": [
            {"key": "control", "weight": 0.5, "value": "bm25"},
            {"key": "treatment", "weight": 0.5, "value": "vector"},
        ],
        "primary_metrics": [
            {"key": "purchase", "kind": "conversion"},
            {"key": "revenue", "kind": "mean"},
        ],
        "status": "running",
        "started_at": started_at,
        "stopped_at": None,
        "shipped_arm": None,
        **extra,
    }


# --------------------------------------------------------------------------- #
# In the render's venv: the request path
# --------------------------------------------------------------------------- #


def _time_reads(read: Callable[..., object], key: str, contexts: Sequence[Any]) -> list[int]:
    """Nanoseconds per read, each read timed on its own; the contexts are built untimed."""
    clock = time.perf_counter_ns
    samples = [0] * len(contexts)
    for n, context in enumerate(contexts):
        started = clock()
        read(key, "default", context)
        samples[n] = clock() - started
    return samples


def measure_request(workdir: Path, iterations: int) -> dict[str, Any]:
    from flags import _summary  # benchmarks/flags.py: median, p99 and mean in µs
    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext
    from sqlalchemy import func, select

    builtin = importlib.import_module(f"{PACKAGE}.flags.builtin.provider")
    flag_schemas = importlib.import_module(f"{PACKAGE}.flags.builtin.schemas")
    hooks = importlib.import_module(f"{PACKAGE}.flags.hooks")
    database = importlib.import_module(f"{PACKAGE}.core.database")
    core_settings = importlib.import_module(f"{PACKAGE}.core.settings")
    provider_module = importlib.import_module(f"{PACKAGE}.experiments.provider")
    registry_module = importlib.import_module(f"{PACKAGE}.experiments.registry")
    recorder_module = importlib.import_module(f"{PACKAGE}.experiments.recorder")
    observer_module = importlib.import_module(f"{PACKAGE}.experiments.observer")
    schemas = importlib.import_module(f"{PACKAGE}.experiments.schemas")
    models = importlib.import_module(f"{PACKAGE}.experiments.models")
    assignment = importlib.import_module(f"{PACKAGE}.experiments.assignment")

    inner = builtin.BuiltinProvider()
    inner.replace(flag_schemas.FlagDefinition.model_validate(flag) for flag in FLAGS)
    started_at = datetime.now(UTC) - timedelta(days=7)
    experiment = schemas.ExperimentRead.model_validate(
        experiment_definition(EXPERIMENT_KEY, started_at)
    )
    cohorts = [schemas.Cohort.model_validate(cohort) for cohort in COHORTS]

    # The exposures the (c) rows queue are written here between their slices, as the
    # recorder's task writes them every second: the buffer stays as small as in a service.
    # (The two tables the recorder writes, as the slice's migration creates them.)
    url = f"sqlite+aiosqlite:///{workdir / 'exposures.db'}"
    runner = asyncio.Runner()
    engine = database.create_engine(core_settings.DatabaseSettings(url=url))

    async def create_table() -> None:
        async with engine.begin() as connection:
            await connection.run_sync(models.Exposure.__table__.create)
            await connection.run_sync(models.MetricEventRow.__table__.create)

    runner.run(create_table())
    sessions = database.session_factory(engine)

    def layer(with_cohorts: bool) -> tuple[Any, Any]:
        registry = registry_module.ExperimentRegistry()
        registry.replace([experiment], cohorts if with_cohorts else [])
        # The slice's defaults (ExperimentsSettings): batches of 500, 100,000 entries
        # buffered at most, 100,000 subjects remembered.
        recorder = recorder_module.Recorder(sessions, observer_module.QuietObserver())
        return provider_module.ExperimentProvider(inner, registry, recorder), recorder

    plain, plain_recorder = layer(False)  # (b)
    exposing, exposing_recorder = layer(False)  # (c): new subjects
    repeated, repeated_recorder = layer(False)  # (d): subjects already queued
    cohorted, cohorted_recorder = layer(True)  # (e)
    counter = iter(range(10**9))

    def fresh(count: int) -> list[Any]:
        return [EvaluationContext(f"visitor-{next(counter):09d}", ATTRIBUTES) for _ in range(count)]

    pool = [f"member-{n:06d}" for n in range(EXPOSED_POOL)]
    position = iter(range(10**12))

    def exposed(count: int) -> list[Any]:
        return [
            EvaluationContext(pool[next(position) % EXPOSED_POOL], ATTRIBUTES) for _ in range(count)
        ]

    # Every (d) subject read once, untimed, and its exposure written: later reads find it.
    api.set_provider_and_wait(repeated)
    client = api.get_client()
    for subject in pool:
        client.get_string_value(EXPERIMENT_KEY, "default", EvaluationContext(subject, ATTRIBUTES))
    runner.run(repeated_recorder.flush())

    # Each row: its provider, the key read, the contexts, what the read must give.
    Row = tuple[str, Any, str, Callable[[int], list[Any]], str]
    plan: list[Row] = [
        ("a", inner, FLAG_KEY, fresh, "SPLIT flag"),
        ("b", plain, FLAG_KEY, fresh, "SPLIT flag"),
        ("c", exposing, EXPERIMENT_KEY, fresh, "SPLIT experiment"),
        ("d", repeated, EXPERIMENT_KEY, exposed, "SPLIT experiment"),
        ("e", cohorted, FLAG_KEY, fresh, "SPLIT flag"),
    ]
    for _, provider, key, contexts, expected in plan:
        api.set_provider_and_wait(provider)
        details = api.get_client().get_string_details(key, "default", contexts(1)[0])
        served = "experiment" if details.flag_metadata.get("experiment") else "flag"
        if f"{details.reason} {served}" != expected or details.error_code is not None:
            raise RuntimeError(f"{key}: expected {expected}, got {details}")
    exposures_before = exposing_recorder.pending
    runner.run(exposing_recorder.flush())

    service_hooks = hooks.flag_hooks()
    samples: dict[str, list[int]] = {}
    exposing_reads = exposures_before
    per_round = max(1, iterations // ROUNDS)
    for _ in range(ROUNDS):
        for hooked in (False, True):
            api.clear_hooks()
            if hooked:
                api.add_hooks(service_hooks)
            for name, provider, key, contexts, _ in plan:
                api.set_provider_and_wait(provider)
                read = api.get_client().get_string_value
                _time_reads(read, key, contexts(WARMUP))
                samples.setdefault(f"{name} {hooked}", [])
                samples[f"{name} {hooked}"] += _time_reads(read, key, contexts(per_round))
                if provider is exposing:
                    exposing_reads += WARMUP + per_round
                    runner.run(exposing_recorder.flush())
    api.clear_hooks()

    # What the rows left behind: one exposure per new subject, none from the others.
    async def written() -> int:
        async with sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(models.Exposure)))

    count = runner.run(written())
    if count != exposing_reads + EXPOSED_POOL:
        raise RuntimeError(
            f"{count} exposures written; expected {exposing_reads + EXPOSED_POOL} "
            f"({exposing_reads} new subjects and the {EXPOSED_POOL} read again)"
        )
    for recorder in (plain_recorder, repeated_recorder, cohorted_recorder):
        if recorder.pending:
            raise RuntimeError(f"a row that exposes nobody queued {recorder.pending} exposures")

    steps = _steps(
        assignment, registry_module, recorder_module, observer_module, experiment, cohorts
    )
    flushes = [runner.run(_flush(exposing_recorder, kind)) for kind in ("exposures", "events")]
    runner.run(engine.dispose())
    runner.close()
    api.shutdown()
    rows = [
        {"row": name, "hooks": hooked, **_summary(samples[f"{name} {hooked}"])}
        for hooked in (False, True)
        for name, *_ in plan
    ]
    for row in rows:
        print(
            f"  ({row['row']}) hooks {'on' if row['hooks'] else 'off'}: "
            f"{row['median_us']:.1f} µs median",
            file=sys.stderr,
            flush=True,
        )
    return {"rows": rows, "steps": steps, "exposures_written": count, "flushes": flushes}


FLUSHED = 5_000  # entries per timed flush: 10 of the recorder's 500-row batches
FLUSHES = 5


async def _flush(recorder: Any, kind: str) -> dict[str, Any]:
    """What the recorder's task spends writing: ``flush()`` of 5,000 buffered entries to
    the SQLite file, wall and process CPU time (the loop's thread and aiosqlite's)."""
    walls, cpus = [], []
    for repeat in range(FLUSHES + 1):
        for n in range(FLUSHED):
            subject = f"flush-{repeat}-{n:05d}"
            if kind == "exposures":
                recorder.expose(EXPERIMENT_KEY, subject, "control")
            else:
                recorder.track("purchase", subject, 1.0)
        if recorder.pending != FLUSHED:
            raise RuntimeError(f"{recorder.pending} entries buffered, not {FLUSHED}")
        wall, cpu = time.perf_counter(), time.process_time()
        await recorder.flush()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        if recorder.pending:
            raise RuntimeError(f"{recorder.pending} {kind} left after a flush")
        if repeat:  # the first one warms the connection and the statement cache
            walls.append(wall)
            cpus.append(cpu)
    return {
        "kind": kind,
        "entries": FLUSHED,
        "wall_us_per_entry": statistics.median(walls) / FLUSHED * 1e6,
        "cpu_us_per_entry": statistics.median(cpus) / FLUSHED * 1e6,
    }


def _steps(
    assignment: Any,
    registry_module: Any,
    recorder_module: Any,
    observer_module: Any,
    experiment: Any,
    cohorts: list[Any],
) -> list[dict[str, Any]]:
    """The layer's steps, each called on its own (median of calls timed one by one)."""
    from flags import _summary
    from openfeature.evaluation_context import EvaluationContext

    compiled = registry_module.CompiledExperiment(experiment)
    registry = registry_module.ExperimentRegistry()
    registry.replace([experiment], cohorts)
    recorder = recorder_module.Recorder(None, observer_module.QuietObserver())
    keys = [f"visitor-{n:09d}" for n in range(STEP_CALLS)]
    seed = experiment.key
    # A subject already queued: the (d) path's dedup check.
    recorder.expose(experiment.key, "member-000001", "control")

    calls: list[tuple[str, Callable[[str], object]]] = [
        ("assignment.fnv1a32 (seed + key, 31 ASCII characters)",
         lambda key: assignment.fnv1a32(seed + key)),
        ("assignment.position (two FNV-1a hashes)", lambda key: assignment.position(seed, key)),
        ("CompiledExperiment.assign (no audience, 2 arms)",
         lambda key: compiled.assign(key, ATTRIBUTES)),
        ("Recorder.expose, a new subject (queued)",
         lambda key: recorder.expose(experiment.key, key, "control")),
        ("Recorder.expose, a subject already queued",
         lambda key: recorder.expose(experiment.key, "member-000001", "control")),
        ("ExperimentRegistry.cohorts_of, 5 cohorts",
         lambda key: registry.cohorts_of(key, ATTRIBUTES)),
        ("EvaluationContext with the cohorts added (what _with_cohorts builds)",
         lambda key: EvaluationContext(key, {**ATTRIBUTES, "cohorts": ["staff"]})),
    ]  # fmt: skip
    clock = time.perf_counter_ns
    rows = []
    for name, call in calls:
        for key in keys[: STEP_CALLS // 10]:
            call(key)
        recorder = recorder_module.Recorder(None, observer_module.QuietObserver())
        recorder.expose(experiment.key, "member-000001", "control")
        samples = [0] * STEP_CALLS
        for n, key in enumerate(keys):
            started = clock()
            call(key)
            samples[n] = clock() - started
        rows.append({"step": name, **_summary(samples)})
    return rows


# --------------------------------------------------------------------------- #
# In the render's venv: the results
# --------------------------------------------------------------------------- #

SEED = 20261205
SUBJECTS = 100_000  # exposed
POPULATION_SHARE = 1.25  # of SUBJECTS: the others send events but were never exposed
EVENTS = 1_000_000
PRE_SHARE = 0.2  # of EVENTS, in the CUPED window before the start
CUPED_DAYS = 7
TREATMENT_LIFT = 0.05  # more activity in the treatment arm after the start
ALPHA = 0.05


def generate(
    compiled: Any, started_at: datetime, now: datetime, subjects: int, events: int
) -> dict[str, Any]:
    """Exposures and events, and the per-arm figures compute() must find (no CUPED)."""
    rng = random.Random(SEED)
    population = [f"user-{n:08d}" for n in range(round(subjects * POPULATION_SHARE))]
    # Heavy-tailed activity, the same before and after the start: what CUPED exploits.
    activity = [rng.paretovariate(2.5) for _ in population]
    span = (now - started_at).total_seconds()
    exposures = []
    arm_of: dict[str, str] = {}
    exposed_at: dict[str, datetime] = {}
    for subject in population[:subjects]:
        assigned = compiled.assign(subject, {})
        at = started_at + timedelta(seconds=rng.random() * span)
        exposures.append((EXPERIMENT_KEY, subject, assigned.arm, at))
        arm_of[subject], exposed_at[subject] = assigned.arm, at
    after = [
        weight * (1 + TREATMENT_LIFT if arm_of.get(subject) == "treatment" else 1)
        for subject, weight in zip(population, activity, strict=True)
    ]
    pre_count = round(events * PRE_SHARE)
    window = CUPED_DAYS * 86_400
    rows = []
    for count, weights, first, length in (
        (pre_count, activity, started_at - timedelta(days=CUPED_DAYS), window),
        (events - pre_count, after, started_at, span),
    ):
        chosen = rng.choices(population, weights=weights, k=count)
        for subject in chosen:
            at = first + timedelta(seconds=rng.random() * length)
            if rng.random() < 0.5:
                rows.append(("purchase", subject, 1.0, at))
            else:
                rows.append(("revenue", subject, round(rng.lognormvariate(3.0, 1.0), 2), at))
    # The reference: per arm, the share of subjects with a purchase after their exposure
    # and the mean revenue after it.
    converted: set[str] = set()
    revenue: dict[str, float] = {}
    for metric, subject, value, at in rows:
        if subject in exposed_at and at >= exposed_at[subject]:
            if metric == "purchase":
                converted.add(subject)
            else:
                revenue[subject] = revenue.get(subject, 0.0) + value
    reference: dict[str, dict[str, float]] = {"purchase": {}, "revenue": {}, "n": {}}
    for arm in ("control", "treatment"):
        members = [s for s, a in arm_of.items() if a == arm]
        reference["n"][arm] = len(members)
        reference["purchase"][arm] = sum(s in converted for s in members) / len(members)
        reference["revenue"][arm] = sum(revenue.get(s, 0.0) for s in members) / len(members)
    return {"exposures": exposures, "events": rows, "reference": reference}


def migrate(url: str) -> None:
    """The render's own ``migrate`` command, at the given database."""
    command = [str(Path(sys.executable).parent / SLUG), "migrate"]
    env = {**os.environ, "APP_DATABASE__URL": url}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"migrate failed ({done.returncode}):\n{done.stderr}")


def load_sqlite(path: Path, data: dict[str, Any]) -> None:
    import sqlite3

    from sqlalchemy.dialects import sqlite

    models = importlib.import_module(f"{PACKAGE}.experiments.models")
    dialect = sqlite.dialect()
    # The service's own type (UTC, then SQLAlchemy's SQLite text format), so the rows
    # read exactly as rows the recorder wrote.
    stamp = models.Exposure.__table__.c.exposed_at.type.dialect_impl(dialect).bind_processor(
        dialect
    )
    connection = sqlite3.connect(path)
    try:
        connection.executemany(
            "INSERT INTO experiment_exposures (experiment_key, subject, arm, exposed_at) "
            "VALUES (?, ?, ?, ?)",
            ((key, subject, arm, stamp(at)) for key, subject, arm, at in data["exposures"]),
        )
        connection.executemany(
            "INSERT INTO experiment_metric_events (metric, subject, value, occurred_at) "
            "VALUES (?, ?, ?, ?)",
            ((metric, subject, value, stamp(at)) for metric, subject, value, at in data["events"]),
        )
        connection.commit()
    finally:
        connection.close()


async def load_postgresql(url: str, data: dict[str, Any]) -> None:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        await connection.copy_records_to_table(
            "experiment_exposures",
            records=data["exposures"],
            columns=["experiment_key", "subject", "arm", "exposed_at"],
        )
        await connection.copy_records_to_table(
            "experiment_metric_events",
            records=data["events"],
            columns=["metric", "subject", "value", "occurred_at"],
        )
        # What autovacuum does soon after a bulk load: the statistics, and the visibility
        # map and hint bits (otherwise the first scans write every page they read).
        await connection.execute("VACUUM ANALYZE experiment_exposures, experiment_metric_events")
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def scratch_database(kind: str, workdir: Path, admin_url: str) -> Any:
    """A new, empty database's SQLAlchemy URL and its plain URL; dropped afterwards."""
    if kind == "sqlite":
        path = workdir / "results.db"
        path.unlink(missing_ok=True)
        try:
            yield f"sqlite+aiosqlite:///{path}", str(path)
        finally:
            path.unlink(missing_ok=True)
        return
    import asyncpg

    name = f"bench_experiments_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    plain = re.sub(r"/[^/?]*(\?|$)", f"/{name}\\1", admin_url.split("://", 1)[1], count=1)
    plain = f"postgresql://{plain}"
    try:
        yield plain.replace("postgresql://", "postgresql+asyncpg://", 1), plain
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        print(f"  dropped the scratch database {name}", file=sys.stderr, flush=True)


async def _results(kind: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import event

    database = importlib.import_module(f"{PACKAGE}.core.database")
    core_settings = importlib.import_module(f"{PACKAGE}.core.settings")
    results = importlib.import_module(f"{PACKAGE}.experiments.results")
    schemas = importlib.import_module(f"{PACKAGE}.experiments.schemas")
    registry_module = importlib.import_module(f"{PACKAGE}.experiments.registry")

    now = datetime.now(UTC).replace(microsecond=0)
    started_at = now - timedelta(days=7)
    variants = {
        "no CUPED": schemas.ExperimentRead.model_validate(
            experiment_definition(EXPERIMENT_KEY, started_at)
        ),
        f"CUPED, {CUPED_DAYS} days": schemas.ExperimentRead.model_validate(
            experiment_definition(EXPERIMENT_KEY, started_at, cuped_days=CUPED_DAYS)
        ),
    }
    compiled = registry_module.CompiledExperiment(variants["no CUPED"])
    clock = time.perf_counter
    began = clock()
    data = generate(compiled, started_at, now, args.subjects, args.events)
    generated = clock() - began
    print(
        f"  [{kind}] generated {len(data['events']):,} events in {generated:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    out: dict[str, Any] = {
        "database": kind,
        "subjects": len(data["exposures"]),
        "events": len(data["events"]),
    }
    async with scratch_database(kind, workdir, args.postgres_url) as (url, plain):
        began = clock()
        await asyncio.to_thread(migrate, url)
        out["migrate_s"] = clock() - began
        began = clock()
        if kind == "sqlite":
            await asyncio.to_thread(load_sqlite, Path(plain), data)
        else:
            await load_postgresql(plain, data)
        out["load_s"] = clock() - began
        print(f"  [{kind}] loaded in {out['load_s']:.1f} s", file=sys.stderr, flush=True)
        reference = data["reference"]
        del data

        # The service's own engine and sessions (its pool, timeouts and hooks).
        engine = database.create_engine(core_settings.DatabaseSettings(url=url))
        sessions = database.session_factory(engine)
        # Where compute() spends its time: its two query functions, timed (arm_data per
        # kind of metric: one conversion, one mean).
        spent: dict[str, float] = {}
        originals = {name: getattr(results, name) for name in ("exposure_counts", "arm_data")}

        def timed(name: str) -> Any:
            original = originals[name]

            async def wrapper(*a: Any, **k: Any) -> Any:
                started = clock()
                try:
                    return await original(*a, **k)
                finally:
                    took = clock() - started
                    spent[name] = spent.get(name, 0.0) + took
                    if name == "arm_data":
                        spent[a[2].kind] = spent.get(a[2].kind, 0.0) + took

            return wrapper

        for name in originals:
            setattr(results, name, timed(name))
        statements: list[tuple[str, Any]] = []

        def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            statements.append((statement, parameters))

        timings: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
        first: dict[str, float] = {}
        try:
            for repeat in range(args.repeats + 1):
                for name, experiment in variants.items():
                    spent.clear()
                    if repeat == 0:
                        event.listen(engine.sync_engine, "before_cursor_execute", capture)
                    started = clock()
                    async with sessions() as session:
                        computed = await results.compute(session, experiment, ALPHA)
                    elapsed = clock() - started
                    if repeat == 0:
                        event.remove(engine.sync_engine, "before_cursor_execute", capture)
                        first[name] = elapsed
                        _check(computed, reference, cuped=experiment.cuped_days is not None)
                        if name == "no CUPED":
                            out["computed"] = json.loads(computed.model_dump_json())
                        continue
                    queries = spent.get("exposure_counts", 0.0) + spent.get("arm_data", 0.0)
                    timings[name].append(
                        {
                            "total_s": elapsed,
                            "exposure_counts_s": spent.get("exposure_counts", 0.0),
                            "arm_data_s": spent.get("arm_data", 0.0),
                            "conversion_s": spent.get("conversion", 0.0),
                            "mean_s": spent.get("mean", 0.0),
                            "rest_s": elapsed - queries,
                        }
                    )
                    print(f"  [{kind}] {name}: {elapsed:.2f} s", file=sys.stderr, flush=True)
            out["variants"] = [
                {
                    "variant": name,
                    "first_s": first[name],
                    "median_s": statistics.median(t["total_s"] for t in runs),
                    "min_s": min(t["total_s"] for t in runs),
                    "max_s": max(t["total_s"] for t in runs),
                    **{
                        part: statistics.median(t[part] for t in runs)
                        for part in (
                            "exposure_counts_s",
                            "arm_data_s",
                            "conversion_s",
                            "mean_s",
                            "rest_s",
                        )
                    },
                    "runs_s": [t["total_s"] for t in runs],
                }
                for name, runs in timings.items()
            ]
            missed = any(v["median_s"] >= RESULTS_GOAL_S for v in out["variants"])
            if args.explain or missed:
                out["plans"] = await _plans(kind, engine, statements)
            if kind == "postgresql":
                async with engine.connect() as connection:
                    version = (await connection.exec_driver_sql("SHOW server_version")).scalar()
                    memory = (await connection.exec_driver_sql("SHOW work_mem")).scalar()
                    server_version = f"{str(version).split()[0]} (work_mem {memory})"
            else:
                import sqlite3

                server_version = sqlite3.sqlite_version
            out["server"] = f"{kind} {server_version}"
        finally:
            for name, original in originals.items():
                setattr(results, name, original)
            await engine.dispose()
    return out


def _check(computed: Any, reference: dict[str, dict[str, float]], cuped: bool) -> None:
    """compute() over the loaded rows must give what the Python reference gives."""
    counts = {arm.arm: arm.exposures for arm in computed.arms}
    if counts != reference["n"]:
        raise RuntimeError(f"exposures per arm {counts}, expected {reference['n']}")
    for metric in computed.metrics:
        for arm in metric.arms:
            if arm.n != reference["n"][arm.arm]:
                raise RuntimeError(f"{metric.metric}/{arm.arm}: n {arm.n}")
            expected = reference[metric.metric][arm.arm]
            # CUPED moves the means by theta (x - mean x): only the unadjusted ones compare.
            if not cuped and abs(arm.mean - expected) > 1e-9 * max(1.0, abs(expected)):
                raise RuntimeError(
                    f"{metric.metric}/{arm.arm}: mean {arm.mean}, the reference {expected}"
                )


async def _plans(kind: str, engine: Any, statements: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    """Each statement of the first compute() of each variant, with its plan."""
    plans = []
    seen: set[str] = set()
    prefix = "EXPLAIN QUERY PLAN " if kind == "sqlite" else "EXPLAIN (ANALYZE, BUFFERS) "
    async with engine.connect() as connection:
        for statement, parameters in statements:
            if statement in seen or not statement.lstrip().upper().startswith("SELECT"):
                continue
            seen.add(statement)
            rows = await connection.exec_driver_sql(prefix + statement, parameters)
            if kind == "sqlite":
                # (id, parent, _, detail) rows: indented by their depth in the tree.
                depth: dict[int, int] = {0: -1}
                lines = []
                for node, parent, _, detail in rows.all():
                    depth[node] = depth.get(parent, -1) + 1
                    lines.append("  " * depth[node] + detail)
            else:
                lines = [row[0] for row in rows]
            plans.append({"statement": statement, "plan": lines})
    return plans


def measure_results(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    import uvloop

    workdir = Path(tempfile.mkdtemp(prefix="bench-experiments-results-"))
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(_results(kind, workdir, args))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    import structlog

    # The service's log lines to stderr: stdout carries the results.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    found = {"python": platform.python_version()}
    for name in (
        "openfeature-sdk",
        "prometheus-client",
        "sqlalchemy",
        "aiosqlite",
        "asyncpg",
        "mpmath",
        "uvloop",
    ):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    if args.measure == "request":
        workdir = Path(tempfile.mkdtemp(prefix="bench-experiments-request-"))
        try:
            return {**measure_request(workdir, args.iterations), "versions": found}
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return {**measure_results(args.databases[0], args), "versions": found}


# --------------------------------------------------------------------------- #
# Orchestration (the repository's environment)
# --------------------------------------------------------------------------- #


def render(workdir: Path, database: str) -> Path:
    """The template rendered with experiments on and ``database``, and installed."""
    import copier
    import run as harness  # benchmarks/run.py

    project = workdir / database / SLUG
    with contextlib.redirect_stderr(sys.stderr), _quiet_warnings():
        copier.run_copy(
            str(REPO_ROOT),
            str(project),
            data={**ANSWERS, "database": database},
            vcs_ref="HEAD",
            defaults=True,
            unsafe=True,
            skip_tasks=True,
            quiet=True,
        )
    answers = (project / ".copier-answers.yml").read_text()
    for wanted in ("experiments: true", f"database: {database}", "flag_provider: builtin"):
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
    the machine other processes used meanwhile (%)."""
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


def _tree_size(paths: Sequence[Path]) -> tuple[int, int]:
    """Bytes (the files' sizes, as an image layer holds them) and files under ``paths``."""
    total = files = 0
    for top in paths:
        if top.is_file():
            total, files = total + top.stat().st_size, files + 1
            continue
        for root, _, names in os.walk(top):
            for name in names:
                path = Path(root, name)
                if not path.is_symlink():
                    total, files = total + path.stat().st_size, files + 1
    return total, files


def _site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python*/site-packages"))


def sizes(project: Path, workdir: Path) -> dict[str, Any]:
    """mpmath in the render's venv against numpy + scipy in a throwaway one."""
    import run as harness

    uv = harness.uv_executable()
    site = _site_packages(project / ".venv")
    mpmath = [p for p in site.iterdir() if p.name.lower().startswith("mpmath")]
    venv_bytes, venv_files = _tree_size([site])
    scratch = workdir / "scipy-venv"
    python = project / ".venv/bin/python"
    harness.run([uv, "venv", "--quiet", "--python", str(python), str(scratch)], workdir)
    empty = {p.name for p in _site_packages(scratch).iterdir()}
    harness.run(
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(scratch / "bin/python"),
            "numpy",
            "scipy",
        ],
        workdir,
    )
    added = [p for p in _site_packages(scratch).iterdir() if p.name not in empty]
    listed = harness.run(
        [uv, "pip", "list", "--python", str(scratch / "bin/python"), "--format", "json"], workdir
    )
    installed = {p["name"]: p["version"] for p in json.loads(listed)}
    found = {}
    for name in ("numpy", "scipy"):
        mine = [p for p in added if p.name.lower().split("-")[0].split(".")[0] == name]
        found[name] = {"version": installed.get(name, "?"), "paths": sorted(p.name for p in mine)}
        found[name]["bytes"], found[name]["files"] = _tree_size(mine)
    scipy_bytes, scipy_files = _tree_size(added)
    mpmath_bytes, mpmath_files = _tree_size(mpmath)
    version = next(
        (
            p.name.removesuffix(".dist-info").split("-")[1]
            for p in mpmath
            if p.name.endswith(".dist-info")
        ),
        "?",
    )
    return {
        "mpmath": {
            "version": version,
            "bytes": mpmath_bytes,
            "files": mpmath_files,
            "paths": sorted(p.name for p in mpmath),
        },
        "numpy+scipy": {"bytes": scipy_bytes, "files": scipy_files, **found},
        "render_site_packages": {"bytes": venv_bytes, "files": venv_files},
    }


LABELS = {
    "a": "(a) built-in flag, 50/50 rollout",
    "b": "(b) (a) through the experiment layer, no experiment on the key",
    "c": "(c) experiment read, new subject (assign + exposure queued)",
    "d": "(d) experiment read, subject already exposed (assign + dedup)",
    "e": "(e) (b) with 5 cohorts (cohort attribute computed)",
}


def request_report(result: dict[str, Any], iterations: int) -> str:
    v = result["versions"]
    lines = [
        f"request path: client.get_string_value(key, default, EvaluationContext(key, 5 "
        f"attributes)) on the default provider; python {v['python']}, openfeature-sdk "
        f"{v['openfeature-sdk']}, prometheus-client {v['prometheus-client']}; "
        f"{iterations:,} reads per row, each timed on its own (warm-up {WARMUP:,} per "
        f"round), the rows taking turns over {ROUNDS} rounds",
    ]
    for hooked, title in (
        (False, "no hooks"),
        (True, "the service's hook (metrics counter, tracing check, no span)"),
    ):
        rows = [r for r in result["rows"] if r["hooks"] is hooked]
        base = next(r for r in rows if r["row"] == "a")
        lines += [
            "",
            f"{title}:",
            f"{'row':<64} {'median µs':>10} {'p99 µs':>8} {'mean µs':>8} {'added µs':>9}  "
            f"goal: added < {REQUEST_GOAL_US:g} µs",
        ]
        for r in rows:
            if r["row"] == "a":
                added, verdict = f"{'':>9}", "baseline"
            else:
                extra = r["median_us"] - base["median_us"]
                added = f"{extra:>+9.1f}"
                over = extra - REQUEST_GOAL_US
                verdict = "met" if over < 0 else f"missed by {over:.1f} µs"
            lines.append(
                f"{LABELS[r['row']]:<64} {r['median_us']:>10.1f} {r['p99_us']:>8.1f} "
                f"{r['mean_us']:>8.1f} {added}  {verdict}"
            )
    lines += ["", f"each step on its own ({STEP_CALLS:,} calls, median µs):"]
    lines += [f"  {s['step']:<70} {s['median_us']:>6.2f}" for s in result["steps"]]
    lines.append(f"exposures written by the (c) and (d) rows: {result['exposures_written']:,}")
    lines += [
        "",
        f"the recorder's flush() of {FLUSHED:,} buffered entries (500-row batches) to a SQLite "
        f"file, median of {FLUSHES}:",
    ]
    lines += [
        f"  {f['kind']:<10} {f['wall_us_per_entry']:>6.1f} µs per entry "
        f"({f['wall_us_per_entry'] * 500 / 1000:.1f} ms per batch), process CPU "
        f"{f['cpu_us_per_entry']:.1f} µs per entry"
        for f in result["flushes"]
    ]
    return "\n".join(lines)


def results_report(runs: Sequence[dict[str, Any]], repeats: int) -> str:
    lines = [
        f"results: experiments.results.compute(session, experiment, alpha={ALPHA}) over "
        f"a running experiment of 2 arms started 7 days ago; one untimed call per variant "
        f"(checked against Python's figures), then {repeats} timed, taking turns",
        "databases: " + "; ".join(run["server"] for run in runs),
        f"{'database':<11} {'variant':<15} {'subjects':>9} {'events':>10} {'load s':>7} "
        f"{'first s':>8} {'median s':>9} {'range s':>12} {'counts s':>9} {'conv. s':>8} "
        f"{'mean s':>7} {'rest s':>7}  goal: < {RESULTS_GOAL_S:g} s",
    ]
    for run in runs:
        for v in run["variants"]:
            over = v["median_s"] - RESULTS_GOAL_S
            verdict = (
                "met"
                if over < 0
                else f"missed by {over:.2f} s ({v['median_s'] / RESULTS_GOAL_S:.1f}x)"
            )
            lines.append(
                f"{run['database']:<11} {v['variant']:<15} {run['subjects']:>9,} "
                f"{run['events']:>10,} {run['load_s']:>7.1f} {v['first_s']:>8.2f} "
                f"{v['median_s']:>9.2f} {v['min_s']:>5.2f}-{v['max_s']:<6.2f} "
                f"{v['exposure_counts_s']:>9.2f} {v['conversion_s']:>8.2f} {v['mean_s']:>7.2f} "
                f"{v['rest_s']:>7.3f}  "
                f"{verdict}"
            )
    lines.append(
        "  counts: exposure_counts (one query); conv., mean: arm_data of the conversion and "
        "of the mean metric (one query each); rest: the statistics and the response model"
    )
    for run in runs:
        for plan in run.get("plans", []):
            statement = " ".join(plan["statement"].split())
            lines += ["", f"[{run['database']}] {statement}"]
            lines += [f"    {line}" for line in plan["plan"]]
    return "\n".join(lines)


def sizes_report(found: dict[str, Any]) -> str:
    mb = 1_000_000
    mp, sci = found["mpmath"], found["numpy+scipy"]
    numpy, scipy = sci["numpy"], sci["scipy"]
    site = found["render_site_packages"]["bytes"]
    return "\n".join(
        [
            "installed size (the files' bytes, as an image layer holds them):",
            f"  mpmath {mp['version']} in the render's venv ({', '.join(mp['paths'])}): "
            f"{mp['bytes'] / mb:.1f} MB, {mp['files']:,} files",
            f"  numpy {numpy['version']} + scipy {scipy['version']} in a fresh venv: "
            f"{sci['bytes'] / mb:.1f} MB, {sci['files']:,} files (numpy "
            f"{numpy['bytes'] / mb:.1f} MB, scipy {scipy['bytes'] / mb:.1f} MB, each with its "
            ".libs and dist-info)",
            f"  the render's whole site-packages: {site / mb:.1f} MB; numpy + scipy would add "
            f"{sci['bytes'] / site:.0%} to it, mpmath is {mp['bytes'] / site:.1%} of it",
        ]
    )


def benchmark(workdir: Path, args: argparse.Namespace) -> None:
    import run as harness

    needed = ["sqlite"] if not args.no_request or not args.no_size else []
    needed += [d for d in args.databases if d not in needed]
    print(f"rendering and installing in {workdir} ...", file=sys.stderr, flush=True)
    projects = {database: render(workdir, database) for database in needed}
    found: dict[str, Any] = {}
    noise: dict[str, float] = {}
    if not args.no_request:
        print("request path:", file=sys.stderr, flush=True)
        found["request"], noise["request path"] = stage(
            projects["sqlite"], ["--measure", "request", "--iterations", str(args.iterations)]
        )
    found["results"] = []
    for database in args.databases:
        print(f"results on {database}:", file=sys.stderr, flush=True)
        options = [
            "--measure",
            "results",
            "--database",
            database,
            "--repeats",
            str(args.repeats),
            "--subjects",
            str(args.subjects),
            "--events",
            str(args.events),
            "--postgres-url",
            args.postgres_url,
        ]
        if args.explain:
            options.append("--explain")
        run, noise[f"results, {database}"] = stage(projects[database], options)
        found["results"].append(run)
    if not args.no_size:
        print("sizes:", file=sys.stderr, flush=True)
        found["sizes"] = sizes(projects["sqlite"], workdir)

    print()
    print(f"date:     {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine:  {os.cpu_count()} cores, {platform.machine()}, {harness.cpu_model()}")
    print(
        f"load average before the run: {args.load_before}; other processes' CPU, in % of "
        "the machine (the PostgreSQL server's work included), during: "
        + ", ".join(f"{k} {v:.0f} %" for k, v in noise.items())
    )
    if "request" in found:
        print()
        print(request_report(found["request"], args.iterations))
    if found["results"]:
        v: dict[str, str] = {}
        for run in found["results"]:
            v |= run["versions"]
        print()
        print(
            ", ".join(
                f"{name} {v[name]}"
                for name in ("python", "sqlalchemy", "aiosqlite", "asyncpg", "mpmath", "uvloop")
                if name in v
            )
        )
        print(results_report(found["results"], args.repeats))
    if "sizes" in found:
        print()
        print(sizes_report(found["sizes"]))
    # On the PostgreSQL part the server's own work counts as another process's.
    if any(value > 10 for part, value in noise.items() if "postgresql" not in part):
        print(
            "\nOther processes used more than 10 % of the machine during a part: its "
            "figures are high and noisy; rerun on a quiet machine."
        )
    if args.json_path:
        payload = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "others_percent": noise,
            **found,
        }
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=ITERATIONS, help="timed reads per row")
    parser.add_argument(
        "--repeats",
        type=int,
        default=REPEATS,
        help="timed compute() calls per variant and database",
    )
    parser.add_argument(
        "--database",
        action="append",
        choices=DATABASES,
        dest="databases",
        help="results on this database only; repeatable (default: both)",
    )
    parser.add_argument("--subjects", type=int, default=SUBJECTS, help="exposed subjects")
    parser.add_argument("--events", type=int, default=EVENTS, help="metric events")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print the query plans of the results even when they meet the goal",
    )
    parser.add_argument(
        "--postgres-url", default=POSTGRES_URL, help="a PostgreSQL to create a scratch database on"
    )
    parser.add_argument("--no-request", action="store_true", help="skip the request path")
    parser.add_argument("--no-results", action="store_true", help="skip the results")
    parser.add_argument("--no-size", action="store_true", help="skip the image size")
    parser.add_argument("--keep", action="store_true", help="keep the renders")
    parser.add_argument("--json", type=Path, dest="json_path", help="also write results here")
    parser.add_argument("--measure", choices=("request", "results"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.databases = [] if args.no_results else list(args.databases or DATABASES)
    if args.iterations < ROUNDS or args.repeats < 1 or args.subjects < 100 or args.events < 1:
        parser.error(
            f"--iterations must be at least {ROUNDS}, --repeats positive, --subjects at least 100"
        )

    if args.measure:  # the second stage, in the render's venv: results as JSON on stdout
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
        "bench-experiments-",
        keep=args.keep,
        kept="renders",
        benchmark=lambda workdir: benchmark(workdir, args),
    )


if __name__ == "__main__":
    sys.exit(main())
