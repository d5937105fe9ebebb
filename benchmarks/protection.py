"""What the request protection slice adds to a request, in process and over HTTP.

Renders the template four times with copier (``--vcs-ref HEAD``: the working tree,
uncommitted changes included; ``--defaults --trust --skip-tasks``) into a temporary
directory, without metrics and tracing so the requests' own cost stays small next to
what the slice adds: request protection off and on (the default), each without and
with Redis. Each render is installed with ``uv sync --no-dev``.

* **In process.** Runs this file again with each render's Python (``--measure``), which
  builds the service's own application (``create_app``) once per configuration of the
  slice's settings, enters its lifespan and awaits the ASGI app directly on uvloop, as
  uvicorn would call it, with a fresh scope per request. Every request is timed on its
  own, with one turn of the event loop after it; the rows of a render take turns over
  the rounds, and the renders' processes take turns over the repeats (off, on,
  off+redis, on+redis, off, ...). A row's figure is the median of its per-repeat
  medians; what the slice adds is the difference to the protection-off render's row for
  the same request in the same repeat. The counted rows have a quota nothing reaches, so
  every request takes the allowed path (one row after 10,000 other clients were
  counted); every answer's status and headers are checked (the RateLimit headers on
  every counted answer, the security headers on every answer where protection is on).
* **Over HTTP** (``--no-http`` skips it). Serves each render with run.py's uvicorn
  options (the on renders with the slice's header-deadline protocol, as its ``serve``
  runs them) and loads ``GET /health/ready`` (counted, one limit, where protection is on)
  with wrk next to the bare FastAPI app (run.py's serving, wrk and table code): the
  server's CPU per request, on against off.
* ``--profile`` also runs, in the first repeat of each on render, the counted
  ``GET /health/ready`` through the app as is and through the same app with the slice's
  middleware removed (timed, then cProfile's own time per function, the difference),
  and times each step of the middleware on its own.

Goals (from the slice's issue): the rate limit check and filters add under 30 µs to a
request with the counters in process memory, under 300 µs with them in Redis.

Needs a Redis 6+ (``--redis-url``, default ``redis://127.0.0.1:6379``; the counters go
under a namespace of their own, deleted at the end) and, for the HTTP rows, wrk. Run
from the repository root::

    uv run python benchmarks/protection.py [--iterations 3000] [--repeats 3] [--profile]

About 4 minutes, 5 with ``--profile``; results and findings in docs/performance.md.
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
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MEMORY_GOAL_US = 30.0
REDIS_GOAL_US = 300.0
REDIS_URL = "redis://127.0.0.1:6379"
ITERATIONS = 3_000  # timed requests per row and repeat
REPEATS = 3
WARMUP = 50  # untimed requests per row and round
ROUNDS = 10
PROFILE_REQUESTS = 5_000
STEP_CALLS = 5_000
HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
PACKAGE = "bench_service"

# A quota no run reaches: every counted request takes the allowed path, as most do.
ONE_LIMIT = ["100000000/minute"]
# A burst and a sustained limit, as a busy route's policy would have.
TWO_LIMITS = ["1000000/second", "100000000/hour"]

# --------------------------------------------------------------------------- #
# What is measured
# --------------------------------------------------------------------------- #

QUIET = {"project_name": "Bench Service", "python_version": "3.11", "metrics": False,
         "tracing": False}  # fmt: skip
OFF, ON, OFF_REDIS, ON_REDIS = "off", "on", "off+redis", "on+redis"
RENDERS: dict[str, dict[str, Any]] = {
    OFF: {**QUIET, "request_protection": False},
    ON: {**QUIET, "request_protection": True},
    OFF_REDIS: {**QUIET, "request_protection": False, "redis": True},
    ON_REDIS: {**QUIET, "request_protection": True, "redis": True},
}
BASELINE = {ON: OFF, ON_REDIS: OFF_REDIS}

_LIMITS = "APP_PROTECTION__RATE_LIMITS__"
# The slice's settings per configuration, as environment variables.
CONFIGS: dict[str, dict[str, str]] = {
    "plain": {},
    "no limits": {f"{_LIMITS}ENABLED": "false"},
    "no limits, no anomaly": {
        f"{_LIMITS}ENABLED": "false",
        "APP_PROTECTION__ANOMALY_SCORING": "false",
    },
    "one limit": {f"{_LIMITS}DEFAULT": json.dumps(ONE_LIMIT), f"{_LIMITS}EXEMPT_PATHS": "[]"},
    "two limits": {f"{_LIMITS}DEFAULT": json.dumps(TWO_LIMITS), f"{_LIMITS}EXEMPT_PATHS": "[]"},
}
# One limit, after this many other clients were counted (their counters live a window or
# two): what a busy service's in-process store holds.
MANY_CLIENTS = 10_000
MANY = f"one limit, {MANY_CLIENTS:,} clients"
CONFIGS[MANY] = CONFIGS["one limit"]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    token: bool  # a valid bearer token of a caller with the role "user" (not exempt)
    body: bytes
    status: int


# A body the route refuses (422, a negative price) after it parsed and validated it: no
# database work, but the JSON limits, the body read and the token's verification.
POST_BODY = json.dumps({"name": "bench item", "price_cents": -1}).encode()
REQUESTS: dict[str, Request] = {
    "GET /health/ready": Request("GET", "/health/ready", False, b"", 200),
    "GET /health/ready + token": Request("GET", "/health/ready", True, b"", 200),
    "POST /api/v1/items + token (422)": Request("POST", "/api/v1/items", True, POST_BODY, 422),
}
HEALTH, TOKEN, POST = REQUESTS
# /health/ready, not /health/live: the liveness probe is answered before every layer
# (the service's core/health.py), so it would measure none of the slice. Readiness runs
# its checks (one SQLite query) in both renders alike.


@dataclass(frozen=True)
class Row:
    render: str
    config: str
    request: str
    label: str
    goal_us: float | None = None

    @property
    def key(self) -> str:
        return f"{self.config} | {self.request}"


ROWS: list[Row] = [
    Row(OFF, "plain", HEALTH, "protection off"),
    Row(OFF, "plain", TOKEN, "protection off"),
    Row(OFF, "plain", POST, "protection off"),
    Row(ON, "no limits, no anomaly", HEALTH, "filters + headers (rate limits, anomaly off)",
        MEMORY_GOAL_US),
    Row(ON, "no limits", HEALTH, "filters + anomaly + headers (rate limits off)",
        MEMORY_GOAL_US),
    Row(ON, "one limit", HEALTH, "memory, one limit", MEMORY_GOAL_US),
    Row(ON, "two limits", HEALTH, "memory, two limits (burst + sustained)", MEMORY_GOAL_US),
    Row(ON, MANY, HEALTH, f"memory, one limit, {MANY_CLIENTS:,} other clients", MEMORY_GOAL_US),
    Row(ON, "one limit", TOKEN, "memory, one limit, keyed by the token's subject"),
    Row(ON, "one limit", POST, "memory, one limit, JSON body checked", MEMORY_GOAL_US),
    Row(OFF_REDIS, "plain", HEALTH, "protection off, Redis render"),
    Row(OFF_REDIS, "plain", TOKEN, "protection off, Redis render"),
    Row(OFF_REDIS, "plain", POST, "protection off, Redis render"),
    Row(ON_REDIS, "no limits", HEALTH, "Redis render, rate limits off", MEMORY_GOAL_US),
    Row(ON_REDIS, "one limit", HEALTH, "Redis, one limit", REDIS_GOAL_US),
    Row(ON_REDIS, "two limits", HEALTH, "Redis, two limits (burst + sustained)",
        REDIS_GOAL_US),
    Row(ON_REDIS, "one limit", TOKEN, "Redis, one limit, keyed by the token's subject"),
    Row(ON_REDIS, "one limit", POST, "Redis, one limit, JSON body checked", REDIS_GOAL_US),
]  # fmt: skip


def render_env(render: str, redis_url: str, namespace: str) -> dict[str, str]:
    """Settings every configuration of ``render`` gets."""
    # The flag slice polls its database every 0.5 s per app: with the several apps of a
    # measuring process, that is work in the rows' time that is no request's.
    env = {"APP_LOGGING__LEVEL": "WARNING", "APP_FLAGS__POLL_SECONDS": "3600"}
    if "redis" in render:
        # Apart, as the defaults keep them: the cache has Redis report every write under
        # its prefix (client-side caching), and counters there would be reported too.
        env |= {"APP_REDIS__URL": redis_url, "APP_CACHING__NAMESPACE": f"{namespace}cache:"}
        if render == ON_REDIS:
            env[f"{_LIMITS}NAMESPACE"] = f"{namespace}ratelimit"
            # Not 0.25 s: on a busy machine one slow answer would switch the limiter to its
            # outage path (no Redis) for seconds, and the rows would measure that instead.
            env[f"{_LIMITS}REDIS_TIMEOUT_SECONDS"] = "5"
    return env


# --------------------------------------------------------------------------- #
# In the render's venv
# --------------------------------------------------------------------------- #


class Driver:
    """Calls one application as uvicorn does, one request at a time, and checks answers."""

    def __init__(self, app: Any, request: Request, token: str, counted: bool, on: bool) -> None:
        self.app = app
        self.request = request
        self.counted = counted
        self.on = on
        headers = [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"bench/1.0"),
            (b"accept", b"*/*"),
        ]
        if request.token:
            headers.append((b"authorization", f"Bearer {token}".encode()))
        if request.body:
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(request.body)).encode()),
            ]
        self.headers = headers
        self.base = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": "http",
            "path": request.path,
            "raw_path": request.path.encode(),
            "query_string": b"",
            "root_path": "",
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        self.statuses: Counter[int] = Counter()
        # Answers carrying the RateLimit headers, and the security headers.
        self.limited = self.protected = 0

    def prepare(self) -> tuple[dict[str, Any], Any, Any]:
        scope = {**self.base, "headers": list(self.headers), "state": {}}
        body = self.request.body
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.statuses[message["status"]] += 1
                names = {name for name, _ in message.get("headers", ())}
                self.limited += b"ratelimit" in names
                self.protected += b"x-content-type-options" in names

        return scope, receive, send

    def check(self, row: str) -> None:
        if set(self.statuses) != {self.request.status}:
            raise RuntimeError(f"{row}: expected {self.request.status} only, got {self.statuses}")
        # The RateLimit headers come with every counted answer, and only with those: none
        # when the limiter could not ask its counters (an outage, decided by fail_open).
        answers = self.statuses.total()
        limited = answers if self.counted else 0
        protected = answers if self.on else 0
        if (self.limited, self.protected) != (limited, protected):
            raise RuntimeError(
                f"{row}: of {answers} answers {self.limited} had the RateLimit headers "
                f"(expected {limited}), {self.protected} the security headers "
                f"(expected {protected})"
            )
        self.statuses.clear()
        self.limited = self.protected = 0


async def _samples(driver: Driver, iterations: int) -> list[int]:
    """Nanoseconds per request, each timed on its own with one turn of the event loop
    after it, as a server's loop turns between requests: what a request leaves scheduled
    (limits' in-process store starts a task per count) is counted. The scope is built
    untimed."""
    clock = time.perf_counter_ns
    app = driver.app
    samples = [0] * iterations
    for n in range(iterations):
        scope, receive, send = driver.prepare()
        started = clock()
        await app(scope, receive, send)
        await asyncio.sleep(0)
        samples[n] = clock() - started
    return samples


def _settings(env: dict[str, str]) -> Any:
    """The service's settings read from the environment with ``env`` on top."""
    settings_module = importlib.import_module(f"{PACKAGE}.core.settings")
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return settings_module.Settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


async def _micro(render: str, args: argparse.Namespace) -> dict[str, Any]:
    from flags import _summary  # benchmarks/flags.py: median, p99 and mean in µs

    main = importlib.import_module(f"{PACKAGE}.main")
    tokens = importlib.import_module(f"{PACKAGE}.core.auth.tokens")
    rows = [row for row in ROWS if row.render == render]
    base_env = render_env(render, args.redis_url, args.namespace)
    on = render in (ON, ON_REDIS)
    async with contextlib.AsyncExitStack() as stack:
        apps: dict[str, Any] = {}
        for config in dict.fromkeys(row.config for row in rows):
            settings = _settings({**base_env, **CONFIGS[config]})
            app = main.create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            apps[config] = app
            if config == MANY:
                protection = app.state.protection
                for n in range(MANY_CLIENTS):
                    client = f"client:10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}"
                    await protection.limiter.decide("default", protection.default_quotas, client)
        auth = next(iter(apps.values())).state.settings.auth
        token = tokens.mint_token(auth, "bench-user", roles=["user"])
        drivers = {
            row.key: Driver(
                apps[row.config],
                REQUESTS[row.request],
                token,
                counted=on and "limit" in row.config and "no limits" not in row.config,
                on=on,
            )
            for row in rows
        }
        samples: dict[str, list[int]] = {row.key: [] for row in rows}
        per_round = max(1, args.iterations // ROUNDS)
        for _ in range(ROUNDS):
            for row in rows:
                driver = drivers[row.key]
                await _samples(driver, WARMUP)
                samples[row.key] += await _samples(driver, per_round)
                driver.check(f"{render}: {row.key}")
        result: dict[str, Any] = {"rows": {key: _summary(s) for key, s in samples.items()}}
        if args.profile and on:
            stripped = main.create_app(_settings({**base_env, **CONFIGS["one limit"]}))
            stripped.user_middleware = [
                m for m in stripped.user_middleware if m.cls.__name__ not in SLICE_MIDDLEWARE
            ]
            await stack.enter_async_context(stripped.router.lifespan_context(stripped))
            result["profile"] = await _differential(
                drivers[f"one limit | {HEALTH}"],
                Driver(stripped, REQUESTS[HEALTH], token, counted=False, on=False),
            )
            result["steps"] = await _steps(apps["one limit"], apps.get("two limits"), token)
    for key, row in result["rows"].items():
        print(f"  {render:<9} {key}: {row['median_us']:.1f} µs", file=sys.stderr, flush=True)
    return result


SLICE_MIDDLEWARE = {"ProtectionMiddleware", "CorsFromSettings", "JsonLimitsMiddleware"}


async def _differential(on: Driver, stripped: Driver) -> dict[str, Any]:
    """The same request through the same app with and without the slice's middleware, in
    one process: each timed (medians), then cProfile's own time per request by function,
    the difference between the two."""
    import cProfile
    import gc
    import pstats

    from flags import _summary

    samples: dict[str, list[int]] = {"on": [], "stripped": []}
    for _ in range(ROUNDS):
        for name, driver in (("on", on), ("stripped", stripped)):
            await _samples(driver, WARMUP)
            samples[name] += await _samples(driver, PROFILE_REQUESTS // ROUNDS)
    # Startup's objects out of the collector's way: a collection of the older generations
    # otherwise lands on whichever function allocated last, and cProfile blames it.
    gc.collect()
    gc.freeze()
    profilers = {"on": cProfile.Profile(), "stripped": cProfile.Profile()}
    for _ in range(ROUNDS):
        for name, driver in (("on", on), ("stripped", stripped)):
            profilers[name].enable()
            await _samples(driver, PROFILE_REQUESTS // ROUNDS)
            profilers[name].disable()
    gc.unfreeze()
    on.check("profile, as is")
    stripped.check("profile, the slice's middleware removed")
    own: dict[str, Counter[str]] = {}
    for name, profiler in profilers.items():
        own[name] = Counter()
        for (filename, line, function), row in pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
            own[name][f"{_where(filename)}:{line}:{function}"] += row[2] * 1e6 / PROFILE_REQUESTS
    difference = Counter({k: own["on"][k] - own["stripped"][k] for k in own["on"]})
    modules: Counter[str] = Counter()
    for key, value in difference.items():
        modules[key.rsplit(":", 2)[0]] += value
    return {
        "requests": PROFILE_REQUESTS,
        "median_us": {name: _summary(s)["median_us"] for name, s in samples.items()},
        "profiled_us": {name: sum(counts.values()) for name, counts in own.items()},
        "functions": difference.most_common(16),
        "modules": modules.most_common(10),
    }


def _where(filename: str) -> str:
    """A profiled function's file, short: the package path, or stdlib/<file>."""
    for marker in ("site-packages/", "/src/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    if filename.startswith("<") or filename == "~":
        return "builtins"
    return "stdlib/" + Path(filename).name


async def _steps(app: Any, two_app: Any | None, token: str) -> list[dict[str, Any]]:
    """Each step of the middleware on its own: a call timed at a time, median."""
    from flags import _summary

    middleware = importlib.import_module(f"{PACKAGE}.protection.middleware")
    anomaly = importlib.import_module(f"{PACKAGE}.protection.anomaly")
    filters = importlib.import_module(f"{PACKAGE}.protection.filters")
    protection = app.state.protection
    driver = Driver(app, REQUESTS[HEALTH], token, counted=True, on=True)
    scope, _, _ = driver.prepare()
    scope["app"] = app
    response_headers = [(b"content-type", b"application/json"), (b"content-length", b"15")]
    decision = await protection.limiter.decide("default", protection.default_quotas, "k")
    bearer = (b"authorization", f"Bearer {token}".encode())
    token_scope = {**scope, "headers": [*scope["headers"], bearer]}

    async def fresh_token_key() -> object:
        token_scope["state"] = {}  # a new request: nothing verified yet
        return await protection.key_for(token_scope, "user")

    def in_progress() -> None:
        with protection.counted_in_progress("127.0.0.1"):
            pass

    message = {"type": "http.request", "body": b"", "more_body": False}

    async def receive() -> dict[str, Any]:
        return message

    async def timed_receive() -> object:
        # A new request's receive, as the middleware wraps it, read once (as core's NUL
        # check reads every body, a GET's empty one included).
        return await middleware._body_within(protection, scope, receive)()

    async def deadline() -> None:
        async with asyncio.timeout(protection.settings.rate_limits.redis_timeout_seconds):
            pass

    async def two_limits() -> object:
        assert two_app is not None  # only listed when there is one
        two = two_app.state.protection
        return await two.limiter.decide("default", two.default_quotas, "bench")

    calls: list[tuple[str, Callable[[], Any]]] = [
        ("nothing (the turn of the loop every step is timed with)", lambda: None),
        ("filters.check (method, URL, query, headers, content type)",
         lambda: protection.filters.check(scope)),
        ("deny rules: rules.current().match (none configured)",
         lambda: protection.rules.current().match("127.0.0.1", "bench/1.0", "/health/ready")),
        ("anomaly: matched_rules (5 regular expressions)",
         lambda: anomaly.matched_rules(scope, "bench/1.0")),
        ("the whole screen (_screen: the three above)",
         lambda: middleware.ProtectionMiddleware._screen(None, protection, scope)),
        ("security headers: for_response", lambda: protection.headers.for_response(
            "http", response_headers, None)),
        ("RateLimit headers from one decision",
         lambda: middleware._rate_limit_headers([decision])),
        ("counted_in_progress (concurrency cap)", in_progress),
        ("receive, bare", receive),
        ("receive through the body timeout (anyio.move_on_after)", timed_receive),
        ("json_refusal of the POST body", lambda: filters.json_refusal(
            POST_BODY, protection.settings.filters)),
        ("key_for, anonymous (client address)",
         lambda: protection.key_for(scope, "user")),
        ("key_for with a bearer token (JWT verified)", fresh_token_key),
        ("asyncio.timeout around each decision, on its own", deadline),
        ("limiter.decide, one limit", lambda: protection.limiter.decide(
            "default", protection.default_quotas, "bench")),
    ]  # fmt: skip
    if two_app is not None:
        calls.append(("limiter.decide, two limits", two_limits))
    if protection.limiter.shared:
        calls.append(("one round trip: limiter.reachable (PING)", protection.limiter.reachable))
    clock = time.perf_counter_ns
    rows = []
    for name, call in calls:
        samples = [0] * STEP_CALLS
        for n in range(-STEP_CALLS // 10, STEP_CALLS):
            started = clock()
            result = call()
            if asyncio.iscoroutine(result):
                await result
            await asyncio.sleep(0)  # a turn of the loop, as between requests
            if n >= 0:
                samples[n] = clock() - started
        rows.append({"step": name, **_summary(samples)})
    return rows


def measure(render: str, args: argparse.Namespace) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    import structlog
    import uvloop

    # Log lines to stderr: stdout carries the results.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(_micro(render, args))
    found = {"python": platform.python_version()}
    for name in ("fastapi", "starlette", "limits", "pyjwt", "redis", "uvloop"):
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return {**result, "versions": found}


# --------------------------------------------------------------------------- #
# Orchestration (the repository's environment)
# --------------------------------------------------------------------------- #


def render(workdir: Path, name: str) -> Path:
    """The template rendered with ``name``'s answers and installed."""
    import copier
    import run as harness  # benchmarks/run.py

    project = workdir / re.sub(r"[^a-z0-9]+", "-", name) / harness.SLUG
    with contextlib.redirect_stderr(sys.stderr), _quiet_warnings():
        copier.run_copy(
            str(REPO_ROOT), str(project), data=RENDERS[name], vcs_ref="HEAD", defaults=True,
            unsafe=True, skip_tasks=True, quiet=True,
        )  # fmt: skip
    harness.run([harness.uv_executable(), "sync", "--no-dev"], project)
    harness.run([harness.uv_executable(), "run", "--no-sync", harness.SLUG, "migrate"], project)
    answers = (project / ".copier-answers.yml").read_text()
    wanted = f"request_protection: {'true' if name in (ON, ON_REDIS) else 'false'}"
    if wanted not in answers:
        raise RuntimeError(f"{name}: the render's answers do not say {wanted}")
    return project


@contextlib.contextmanager
def _quiet_warnings() -> Any:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # copier's DirtyLocalWarning: intended here
        yield


def run_micro(projects: dict[str, Path], args: argparse.Namespace) -> dict[str, Any]:
    """Every render's rows, the renders taking turns over the repeats."""
    import run as harness

    results: dict[str, list[dict[str, Any]]] = {name: [] for name in projects}
    for repeat in range(args.repeats):
        print(f"in process, repeat {repeat + 1} of {args.repeats}:", file=sys.stderr, flush=True)
        for name, project in projects.items():
            command = [
                str(project / ".venv/bin/python"), str(Path(__file__).resolve()),
                "--measure", name, "--redis-url", args.redis_url,
                "--namespace", args.namespace, "--iterations", str(args.iterations),
            ]  # fmt: skip
            if args.profile and repeat == 0:
                command.append("--profile")
            before = _cpu_clock()
            done = subprocess.run(
                command, cwd=project, env=harness.child_env(), stdout=subprocess.PIPE,
                text=True, check=True,
            )  # fmt: skip
            after = _cpu_clock()
            # CPU that other processes used meanwhile (the Redis server's included), in %
            # of the machine, as run.py's "others" column.
            machine, child, wall = (a - b for a, b in zip(after, before, strict=True))
            others = max(0.0, machine - child) / (wall * (os.cpu_count() or 1)) * 100
            results[name].append({**json.loads(done.stdout), "others_percent": others})
    return results


def _cpu_clock() -> tuple[float, float, float]:
    """CPU seconds of the whole machine and of finished children, and the wall clock."""
    import resource

    cpu = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy = (sum(cpu) - cpu[3] - cpu[4]) / os.sysconf("SC_CLK_TCK")  # all but idle, iowait
    return busy, children.ru_utime + children.ru_stime, time.monotonic()


def summarise(results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per row: the median of its per-repeat medians, and what it adds to its baseline."""
    table = []
    for row in ROWS:
        if row.render not in results:
            continue
        runs = results[row.render]
        medians = [run["rows"][row.key]["median_us"] for run in runs]
        entry: dict[str, Any] = {
            "render": row.render, "config": row.config, "request": row.request,
            "label": row.label, "goal_us": row.goal_us,
            "median_us": statistics.median(medians),
            "p99_us": statistics.median(run["rows"][row.key]["p99_us"] for run in runs),
            "medians_us": medians,
        }  # fmt: skip
        baseline = BASELINE.get(row.render)
        if baseline in results:
            base_key = f"plain | {row.request}"
            base = [run["rows"][base_key]["median_us"] for run in results[baseline]]
            added = [m - b for m, b in zip(medians, base, strict=True)]
            entry |= {
                "ratio": statistics.median(medians) / statistics.median(base),
                "added_us": statistics.median(added),
                "added_range_us": (min(added), max(added)),
            }
        table.append(entry)
    return table


def verdict(entry: dict[str, Any]) -> str:
    goal = entry["goal_us"]
    if entry["request"] == TOKEN and "added_us" in entry:
        return "(+ the JWT's verification, which this route does not do)"
    if goal is None or "added_us" not in entry:
        return ""
    added = entry["added_us"]
    return f"< {goal:g}: met" if added < goal else f"< {goal:g}: missed by {added - goal:.0f} µs"


def micro_report(
    table: Sequence[dict[str, Any]], versions: dict[str, str], args: argparse.Namespace
) -> str:
    names = ", ".join(f"{name} {v}" for name, v in versions.items() if name != "python")
    lines = [
        f"in process: the service's ASGI app awaited directly on uvloop, python "
        f"{versions['python']}, {names}; {args.iterations:,} requests per row and repeat, "
        f"each timed on its own, the rows taking turns over {ROUNDS} rounds, the renders "
        f"over {args.repeats} repeats; medians of the repeats' medians",
        f"{'render':<9} {'request':<33} {'configuration':<46} {'µs':>7} {'p99':>7} "
        f"{'ratio':>6} {'added µs':>9} {'range':>13}  goal (added µs)",
    ]
    lines.append("-" * (len(lines[1]) + 6))
    for e in table:
        added = f"{e['added_us']:>9.1f}" if "added_us" in e else f"{'':>9}"
        spread = (
            f"{e['added_range_us'][0]:>6.1f}..{e['added_range_us'][1]:<5.1f}"
            if "added_range_us" in e
            else f"{'':>13}"
        )
        ratio = f"{e['ratio']:>6.2f}" if "ratio" in e else f"{'1.00':>6}"
        lines.append(
            f"{e['render']:<9} {e['request']:<33} {e['label']:<46} {e['median_us']:>7.1f} "
            f"{e['p99_us']:>7.1f} {ratio} {added} {spread}  {verdict(e)}"
        )
    return "\n".join(lines)


def goal_lines(table: Sequence[dict[str, Any]]) -> str:
    lines = ["", "goals (median added µs per request against the protection-off render):"]
    for label, goal, render_name in (
        ("in process memory", MEMORY_GOAL_US, ON),
        ("with Redis", REDIS_GOAL_US, ON_REDIS),
    ):
        rows = [e for e in table if e["render"] == render_name and e["goal_us"] == goal]
        if not rows:
            continue
        worst = max(rows, key=lambda e: e["added_us"])
        met = all(e["added_us"] < goal for e in rows)
        lines.append(
            f"  {label}: < {goal:g} µs {'met' if met else 'missed'} "
            f"(largest: {worst['added_us']:.1f} µs, {worst['label']}, {worst['request']})"
        )
    return "\n".join(lines)


NOISY_PERCENT = 10


def noise_lines(results: dict[str, list[dict[str, Any]]], load_before: str) -> str:
    spans = {
        name: [run["others_percent"] for run in runs] for name, runs in results.items() if runs
    }
    lines = [
        "",
        f"load average before the run {load_before}; other processes' CPU while each render "
        "measured (% of the machine, Redis included): "
        + ", ".join(f"{name} {min(v):.0f}-{max(v):.0f} %" for name, v in spans.items()),
    ]
    if any(max(v) > NOISY_PERCENT for v in spans.values()):
        lines.append(
            f"Other processes used more than {NOISY_PERCENT}% of the machine during some "
            "renders' rows: the figures are high and noisy (each repeat's added µs is in "
            "'range'); rerun on a quiet machine."
        )
    return "\n".join(lines)


def profile_report(name: str, run: dict[str, Any]) -> str:
    profile, steps = run.get("profile"), run.get("steps")
    if not profile:
        return ""
    median, profiled = profile["median_us"], profile["profiled_us"]
    lines = [
        "",
        f"[{name}] GET /health/ready counted (one limit), one process: the app as is against "
        f"the same app with the slice's middleware removed, {profile['requests']:,} requests "
        f"each, taking turns",
        f"  timed: {median['on']:.1f} against {median['stripped']:.1f} µs median, "
        f"{median['on'] - median['stripped']:+.1f} µs",
        f"  cProfile (inflated; the shares count): {profiled['on']:.0f} against "
        f"{profiled['stripped']:.0f} µs, {profiled['on'] - profiled['stripped']:+.0f} µs; "
        f"own time added per request, by file:",
    ]
    lines += [f"    {m:<58} {t:>+7.1f} µs" for m, t in profile["modules"]]
    lines += ["  and by function:"]
    lines += [f"    {f:<70} {t:>+7.1f} µs" for f, t in profile["functions"]]
    if steps:
        lines += [
            "",
            f"[{name}] each step on its own (median of calls timed one by one, each with a "
            "turn of the event loop after it):",
        ]
        lines += [f"  {s['step']:<60} {s['median_us']:>7.1f} µs" for s in steps]
    return "\n".join(lines)


def delete_keys(redis_url: str, namespace: str) -> int:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        return int(client.delete(*keys)) if keys else 0
    finally:
        client.close()


GUARDED = f"{PACKAGE}.protection.server:GuardedHttpToolsProtocol"
PLAIN_PROTOCOL = "on, plain proto"
# label, render, configuration, with the slice's header-deadline protocol (as `serve` runs
# the on renders), the label of the row it is compared with.
HTTP_ROWS = [
    (OFF, OFF, "plain", False, None),
    (ON, ON, "one limit", True, OFF),
    (PLAIN_PROTOCOL, ON, "one limit", False, OFF),
    (OFF_REDIS, OFF_REDIS, "plain", False, None),
    (ON_REDIS, ON_REDIS, "one limit", True, OFF_REDIS),
]


def run_http(projects: dict[str, Path], workdir: Path, args: argparse.Namespace) -> list[Any]:
    """``GET /health/ready`` over HTTP: the bare app, then each render (counted where on)."""
    import run as harness

    options = harness.Options(
        args.duration, args.warmup, args.connections, args.keep, None, args.pin, ()
    )
    results = []
    print("over HTTP:", file=sys.stderr, flush=True)
    python = next(iter(projects.values())) / ".venv/bin/python"
    with (workdir / "servers.log").open("wb") as log:
        results.append(harness.bench_bare(harness.bare_app(python), log, options))
        for label, name, config, guarded, _ in HTTP_ROWS:
            if name not in projects:
                continue
            env = {**render_env(name, args.redis_url, args.namespace), **CONFIGS[config]}
            app = harness.service_app(projects[name])
            if guarded:
                app = replace(app, uvicorn_options=(*app.uvicorn_options, "--http", GUARDED))
            with harness.serving(app, log, options.server_core, **env) as server:
                target = harness.Target("health ready", "/health/ready", "WARNING", label)
                results.append(harness.load(server, target, [], options))
    return results


def http_report(results: Sequence[Any]) -> str:
    import run as harness

    lines = ["", harness.table(results, bare_rps=results[0].stats.rps)]
    rows = {r.target.profile: r for r in results}
    lines += ["", "what protection adds over HTTP (server CPU per request, RPS ratio):"]
    for label, _, _, _, baseline in HTTP_ROWS:
        if baseline is not None and label in rows and baseline in rows:
            on, off = rows[label], rows[baseline]
            added = on.cpu_us_per_request - off.cpu_us_per_request
            ratio = on.stats.rps / off.stats.rps
            lines.append(f"  {label:<22} vs {baseline:<9} {added:>+6.0f} µs CPU, RPS x {ratio:.2f}")
    lines.append(harness.caveats(results))
    return "\n".join(lines)


def benchmark(workdir: Path, args: argparse.Namespace) -> None:
    import run as harness

    print(f"rendering and installing in {workdir} ...", file=sys.stderr, flush=True)
    projects = {name: render(workdir, name) for name in args.renders}
    python = projects[args.renders[0]] / ".venv/bin/python"
    found = {} if args.no_http else harness.versions(python)
    http: list[Any] = []
    try:
        results = run_micro(projects, args)
        if not args.no_http:
            http = run_http(projects, workdir, args)
    finally:
        deleted = delete_keys(args.redis_url, args.namespace)
        print(f"deleted {deleted} keys under {args.namespace} in Redis", file=sys.stderr)
    table = summarise(results)
    versions = results[args.renders[-1]][0]["versions"]
    print()
    print(f"date:     {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine:  {os.cpu_count()} cores, {platform.machine()}, {harness.cpu_model()}")
    print()
    print(micro_report(table, versions, args))
    print(goal_lines(table))
    print(noise_lines(results, args.load_before))
    for name in (ON, ON_REDIS):
        if name in results and results[name][0].get("profile"):
            print(profile_report(name, results[name][0]))
    if http:
        options = harness.Options(
            args.duration, args.warmup, args.connections, args.keep, None, args.pin, ()
        )
        print()
        print(harness.environment(found, options))
        print(http_report(http))
    if args.json_path:
        payload = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": versions,
            "in_process": table,
            "runs": results,
            "http": [{**asdict(r.target), **asdict(r.stats),
                      "cpu_us_per_request": r.cpu_us_per_request,
                      "others_cpu_percent": r.others_cpu_percent} for r in http],
        }  # fmt: skip
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(payload, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--iterations", type=int, default=ITERATIONS, help="timed requests per row and repeat"
    )
    parser.add_argument(
        "--repeats", type=int, default=REPEATS, help="processes per render, taking turns"
    )
    parser.add_argument(
        "--render",
        action="append",
        choices=list(RENDERS),
        dest="renders",
        help="only this render; repeatable (default: all)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also cProfile the counted row and time each step"
    )
    parser.add_argument("--no-http", action="store_true", help="skip the rows over HTTP")
    parser.add_argument("--duration", type=int, default=5, help="seconds per HTTP row")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per HTTP row")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--pin", action="store_true", help="pin the server and wrk (as run.py)")
    parser.add_argument("--redis-url", default=REDIS_URL, help="a Redis 6+ the run may write to")
    parser.add_argument("--keep", action="store_true", help="keep the renders and servers.log")
    parser.add_argument("--json", type=Path, dest="json_path", help="also write results here")
    parser.add_argument("--measure", choices=list(RENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--namespace", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.renders = [name for name in RENDERS if name in (args.renders or RENDERS)]
    if args.iterations < ROUNDS or args.repeats < 1 or args.duration < 1:
        parser.error(f"--iterations must be at least {ROUNDS}, --repeats and --duration positive")

    if args.measure:  # the second stage, in the render's venv: results as JSON on stdout
        results = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)  # the service logs to stdout: to stderr with the progress lines
        print(json.dumps(measure(args.measure, args)), file=results)
        results.close()
        return 0

    sys.path.insert(0, str(HERE))
    import run as harness

    if not args.no_http and shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk (or --no-http)")
    for needed in ((OFF, ON), (OFF_REDIS, ON_REDIS)):
        if any(name in args.renders for name in needed) and not all(
            name in args.renders for name in needed
        ):
            parser.error(f"--render: {needed[0]} and {needed[1]} go together")
    args.namespace = f"bench-protection-{uuid.uuid4().hex[:12]}:"
    args.load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    harness.stop_cleanly_on_signals()
    return harness.in_workdir(
        "bench-protection-",
        keep=args.keep,
        kept="renders, servers.log",
        benchmark=lambda workdir: benchmark(workdir, args),
    )


if __name__ == "__main__":
    sys.exit(main())
