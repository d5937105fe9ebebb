"""Time a call through the outbound client next to a bare httpx call, and a refused one.

Renders the default answers (outbound calls, metrics and tracing on) from a snapshot of
the working tree as run.py does, installs the render with ``uv sync --no-dev`` and runs
this file again with the render's Python (``--measure``), which imports the service's own
``outbound`` package.

A local upstream in a process of its own answers every GET with a small JSON object over
keep-alive connections, so its work is not on the measured event loop (uvloop, as uvicorn
runs the service). Each call is timed on its own with ``time.perf_counter_ns``, warm, the
rows taking turns over many rounds, every row inside a sampled span as a route's calls are:

* a bare ``httpx.AsyncClient`` GET, with the limits and timeouts the outbound client uses;
* the same GET through ``OutboundClient.request``: closed breaker, retries on (the
  default settings), no observer;
* the same with the observers the service builds with metrics on (log and Prometheus);
* the same with tracing's span observer too, under an SDK tracer provider (no exporter);
* a call refused by an open breaker (``DependencyUnavailableError``, nothing sent), with
  the log and metrics observers, and with the span observer too;
* the bare GET and the three client rows again over httpx's in-process transport: no
  network, so the differences are the client's own work without the loopback's noise.

Goals: under 50 µs added per call (median, against the bare GET), under 20 µs for a
refusal. ``--profile`` also runs cProfile over in-process calls through the client with
its log and metrics observers and times the client's steps one by one.

Run from the repository root::

    uv run python benchmarks/outbound.py [--iterations 20000] [--keep] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import json
import os
import platform
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ADDED_GOAL_US = 50.0
REFUSAL_GOAL_US = 20.0
ITERATIONS = 20_000
WARMUP = 200  # per row and round
ROUNDS = 20
PROFILED_CALLS = 20_000
PATH = "/items/1"
HERE = Path(__file__).resolve().parent

# The upstream, run by the render's Python in a process of its own: HTTP/1.1, keep-alive,
# 200 with a small JSON body to every request.
UPSTREAM = """
import asyncio

BODY = b'{"colour": "teal", "stock": 3}'
ANSWER = (
    b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json\\r\\n"
    b"Content-Length: %d\\r\\n\\r\\n" % len(BODY) + BODY
)

async def serve(reader, writer):
    try:
        while True:
            await reader.readuntil(b"\\r\\n\\r\\n")  # GETs only: no body to read
            writer.write(ANSWER)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""

# A row: its name, the call, the row it adds to (None: a baseline or a refusal) and its goal.
Call = Callable[[], Awaitable[bool]]
Row = tuple[str, Call, str | None, str | None]
BARE = "bare httpx GET"
IN_PROCESS_BARE = "in process: bare httpx GET"


# --------------------------------------------------------------------------- #
# In the render's venv
# --------------------------------------------------------------------------- #


async def _time_calls(call: Call, iterations: int) -> tuple[list[int], int]:
    """Nanoseconds per call, each timed on its own after a short warm-up; and how many
    calls did not end as the row expects (checked outside the timed interval)."""
    for _ in range(WARMUP):
        await call()
    clock = time.perf_counter_ns
    samples = [0] * iterations
    unexpected = 0
    for n in range(iterations):
        started = clock()
        expected = await call()
        samples[n] = clock() - started
        unexpected += not expected
    return samples, unexpected


def _summary(samples: list[int]) -> dict[str, float]:
    samples = sorted(samples)
    count = len(samples)
    return {
        "median_us": samples[count // 2] / 1000,
        "p99_us": samples[min(count - 1, count * 99 // 100)] / 1000,
        "mean_us": sum(samples) / count / 1000,
    }


class Service:
    """The render's outbound package, and the clients the rows call."""

    def __init__(self, package: str, url: str) -> None:
        import httpx
        import structlog
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider

        self.client = importlib.import_module(f"{package}.outbound.client")
        self.breaker = importlib.import_module(f"{package}.outbound.breaker")
        self.observer = importlib.import_module(f"{package}.outbound.observer")
        self.retry = importlib.import_module(f"{package}.outbound.retry")
        metrics = importlib.import_module(f"{package}.outbound.metrics")
        tracing = importlib.import_module(f"{package}.outbound.tracing")
        settings_module = importlib.import_module(f"{package}.outbound.settings")

        trace.set_tracer_provider(TracerProvider())  # spans made and ended, exported nowhere
        self.tracer = trace.get_tracer(__name__)
        # Log lines (the breaker forced open below) to stderr: stdout carries the results.
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
        self.settings = settings = settings_module.DependencySettings(base_url=url)
        names = (
            "plain",
            "metered",
            "spanned",
            "refusing",
            "local",
            "local-metered",
            "local-spanned",
            "refusing-spanned",
        )
        attempts = dict.fromkeys(names, settings.retry.max_attempts)
        logged = self.observer.LogObserver()
        counted = metrics.MetricsObserver(attempts)
        spanned = tracing.SpanObserver()
        # What lifespan.py builds with metrics on, and with tracing too.
        self.metered_observer = self.observer.Observers([logged, counted])
        self.spanned_observer = self.observer.Observers([logged, counted, spanned])
        self.span_observer = spanned

        def outbound(name: str, observer: Any = None, transport: Any = None) -> Any:
            return self.client.OutboundClient(
                name, settings, observer=observer, transport=transport
            )

        # The limits and timeouts OutboundClient gives its own httpx client.
        self.bare = httpx.AsyncClient(
            base_url=url,
            timeout=httpx.Timeout(
                connect=settings.connect_timeout_seconds,
                read=settings.read_timeout_seconds,
                write=settings.read_timeout_seconds,
                pool=settings.connect_timeout_seconds,
            ),
            limits=httpx.Limits(
                max_connections=settings.max_concurrent_calls,
                max_keepalive_connections=settings.max_concurrent_calls,
            ),
        )
        self.plain = outbound("plain")
        self.metered = outbound("metered", self.metered_observer)
        self.spanned = outbound("spanned", self.spanned_observer)
        self.refusing = outbound("refusing", self.metered_observer)
        self.refusing_spanned = outbound("refusing-spanned", self.spanned_observer)
        for refusing in (self.refusing, self.refusing_spanned):
            refusing.breaker.force(self.breaker.BreakerState.OPEN, datetime.now(UTC), 3600.0)

        # The same calls over a transport that answers in process: no socket, no upstream.
        def answer(request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, json={"colour": "teal", "stock": 3})

        self.local_bare = httpx.AsyncClient(base_url=url, transport=httpx.MockTransport(answer))
        self.local = outbound("local", transport=httpx.MockTransport(answer))
        self.local_metered = outbound(
            "local-metered", self.metered_observer, httpx.MockTransport(answer)
        )
        self.local_spanned = outbound(
            "local-spanned", self.spanned_observer, httpx.MockTransport(answer)
        )
        self.measured = (
            self.plain, self.metered, self.spanned, self.local, self.local_metered,
            self.local_spanned,
        )  # fmt: skip

    def rows(self) -> list[Row]:
        def bare(client: Any) -> Call:
            async def call() -> bool:
                response: Any = await client.get(PATH)
                return bool(response.status_code == 200)

            return call

        def through(client: Any) -> Call:
            async def call() -> bool:
                response: Any = await client.request("GET", PATH)
                return bool(response.status_code == 200)

            return call

        unavailable = self.client.DependencyUnavailableError

        def refused(client: Any) -> Call:
            async def call() -> bool:
                try:
                    await client.request("GET", PATH)
                except unavailable:
                    return True
                return False

            return call

        added, refusal = "added", "refusal"
        return [
            (BARE, bare(self.bare), None, None),
            ("OutboundClient.request, no observer", through(self.plain), BARE, added),
            ("  with the log + metrics observers", through(self.metered), BARE, added),
            ("  with the log + metrics + span observers", through(self.spanned), BARE, added),
            ("refused, open breaker (log + metrics)", refused(self.refusing), None, refusal),
            (
                "refused, open breaker (log + metrics + span)",
                refused(self.refusing_spanned),
                None,
                refusal,
            ),
            (IN_PROCESS_BARE, bare(self.local_bare), None, None),
            ("in process: no observer", through(self.local), IN_PROCESS_BARE, added),
            ("in process: log + metrics", through(self.local_metered), IN_PROCESS_BARE, added),
            (
                "in process: log + metrics + span",
                through(self.local_spanned),
                IN_PROCESS_BARE,
                added,
            ),
        ]

    def check_breakers(self) -> None:
        closed = self.breaker.BreakerState.CLOSED
        for client in self.measured:
            if client.breaker.state is not closed:
                raise RuntimeError(f"the breaker of {client.name!r} left the closed state")
        for client in (self.refusing, self.refusing_spanned):
            if client.breaker.state is not self.breaker.BreakerState.OPEN:
                raise RuntimeError(f"the forced-open breaker of {client.name!r} closed")

    async def aclose(self) -> None:
        for client in (*self.measured, self.refusing, self.refusing_spanned):
            await client.aclose()
        await self.bare.aclose()
        await self.local_bare.aclose()


async def _measure(service: Service, iterations: int) -> list[dict[str, Any]]:
    plan = service.rows()
    for name, call, _, _ in plan:
        if not await call():
            raise RuntimeError(f"{name}: the first call did not end as the row expects")
    samples: dict[str, list[int]] = {name: [] for name, *_ in plan}
    unexpected = 0
    per_round = max(1, iterations // ROUNDS)
    for _ in range(ROUNDS):
        for name, call, _, _ in plan:
            # Inside a sampled request's span, as a route's calls are: the span observer
            # makes its span only there. The other rows do not look at it.
            with service.tracer.start_as_current_span("request"):
                taken, missed = await _time_calls(call, per_round)
            samples[name] += taken
            unexpected += missed
    if unexpected:
        raise RuntimeError(f"{unexpected} calls did not end as their rows expect")
    service.check_breakers()
    rows = [
        {"row": name, "baseline": baseline, "goal": goal, **_summary(samples[name])}
        for name, _, baseline, goal in plan
    ]
    for row in rows:
        print(f"  {row['row']}: {row['median_us']:.1f} µs median", file=sys.stderr, flush=True)
    return rows


def _module(filename: str, outbound: str) -> str:
    """What a profiled function belongs to: a file of the outbound package, or a library."""
    if filename.startswith(outbound):
        return "outbound/" + filename.rsplit("/", 1)[-1]
    for library in ("httpx", "prometheus_client", "pybreaker", "opentelemetry", "structlog"):
        if f"/{library}/" in filename:
            return library
    if "/asyncio/" in filename:
        return "asyncio/" + filename.rsplit("/", 1)[-1]
    if filename == "~":
        return "built-in functions"
    return "/".join(filename.rsplit("/", 2)[-2:])


async def _profile(service: Service) -> dict[str, Any]:
    """cProfile over in-process calls, bare and through the metered client; its steps timed."""
    client = service.local_metered
    outbound = str(Path(str(service.client.__file__)).parent) + os.sep
    own_time: dict[str, dict[str, float]] = {}
    for name, call in (
        ("bare", lambda: service.local_bare.get(PATH)),
        ("client", lambda: client.request("GET", PATH)),
    ):
        profiler = cProfile.Profile()
        with service.tracer.start_as_current_span("request"):
            profiler.enable()
            for _ in range(PROFILED_CALLS):
                await call()
            profiler.disable()
        groups: dict[str, float] = {}
        stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
        for (filename, _, _), (_, _, own, _, _) in stats.items():
            group = _module(filename, outbound)
            groups[group] = groups.get(group, 0.0) + own / PROFILED_CALLS * 1e6
        own_time[name] = groups
    print(
        f"\ncProfile, {PROFILED_CALLS:,} in-process calls each: own time per call by module, "
        "µs (cProfile inflates every function call; compare the columns):",
        file=sys.stderr,
    )
    print(f"  {'module':<40} {'bare':>7} {'client':>7} {'added':>7}", file=sys.stderr)
    names = set(own_time["bare"]) | set(own_time["client"])
    added = {n: own_time["client"].get(n, 0.0) - own_time["bare"].get(n, 0.0) for n in names}
    for name in sorted(names, key=lambda n: -abs(added[n]))[:18]:
        print(
            f"  {name:<40} {own_time['bare'].get(name, 0.0):>7.1f} "
            f"{own_time['client'].get(name, 0.0):>7.1f} {added[name]:>7.1f}",
            file=sys.stderr,
        )
    total = {k: sum(v.values()) for k, v in own_time.items()}
    print(
        f"  {'total':<40} {total['bare']:>7.1f} {total['client']:>7.1f} "
        f"{total['client'] - total['bare']:>7.1f}",
        file=sys.stderr,
    )

    # Each step the client adds to an httpx call, timed on its own, as request() runs it.
    observer = service.metered_observer
    success = service.observer.Outcome.SUCCESS
    verdict = service.breaker.Verdict.SUCCESS
    headers = client._http.build_request("GET", PATH).headers
    may_retry = service.retry.may_retry
    spans = service.span_observer

    async def nothing() -> None:
        return None

    async def timeout() -> None:
        async with asyncio.timeout(10.0):
            pass

    async def bulkhead() -> None:
        await client.bulkhead.acquire()
        client.bulkhead.release()

    async def breaker() -> None:
        client.breaker.record(client.breaker.admit(), verdict)

    async def refusing_for() -> None:
        client.breaker.refusing_for()

    async def build_request() -> None:
        client._http.build_request("GET", PATH)

    async def retry_check() -> None:
        may_retry("GET", headers)

    async def budget() -> None:
        client.budget.record_call()

    async def clocks() -> None:
        time.monotonic()
        time.monotonic()
        time.perf_counter()
        time.perf_counter()

    async def observer_call() -> None:
        with observer.call(client.name, client.breaker.state):
            pass

    async def observer_outcome() -> None:
        observer.attempt_finished(client.name, success, 0.001)

    async def span() -> None:
        with spans.call(client.name, client.breaker.state):
            spans.attempt_finished(client.name, success, 0.001)

    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("an empty coroutine (the timer's floor)", nothing),
        ("asyncio.timeout(): enter and exit", timeout),
        ("bulkhead: acquire and release", bulkhead),
        ("breaker: admit and record a success", breaker),
        ("breaker.refusing_for() (closed)", refusing_for),
        ("retry budget: record_call", budget),
        ("may_retry (method, Idempotency-Key)", retry_check),
        ("time.monotonic x2, perf_counter x2", clocks),
        ("observers: call() (log + metrics: no wrapping)", observer_call),
        ("observers: attempt_finished (log + metrics)", observer_outcome),
        ("span observer: span + attempt_finished (sampled)", span),
        ("httpx build_request (the bare GET does it too)", build_request),
    ]
    timed: dict[str, list[int]] = {name: [] for name, _ in steps}
    with service.tracer.start_as_current_span("request"):
        for _ in range(ROUNDS):
            for name, step in steps:

                async def call(step: Callable[[], Awaitable[None]] = step) -> bool:
                    await step()
                    return True

                taken, _ = await _time_calls(call, 1000)
                timed[name] += taken
    result = [{"step": name, **_summary(timed[name])} for name, _ in steps]
    print("steps of a call, each timed on its own (median, p99 µs):", file=sys.stderr)
    for row in result:
        print(
            f"  {row['step']:<52} {row['median_us']:>6.2f} {row['p99_us']:>7.2f}",
            file=sys.stderr,
        )
    return {"steps": result, "cprofile_own_us": own_time}


async def _run(package: str, iterations: int, url: str, profile: bool) -> dict[str, Any]:
    service = Service(package, url)
    try:
        result: dict[str, Any] = {"rows": await _measure(service, iterations)}
        if profile:
            result["profile"] = await _profile(service)
        return result
    finally:
        await service.aclose()


def measure(package: str, iterations: int, loop: str, profile: bool) -> dict[str, Any]:
    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM], stdout=subprocess.PIPE, text=True)
    try:
        assert upstream.stdout is not None
        port = int(upstream.stdout.readline())
        factory = None
        if loop == "uvloop":
            import uvloop

            factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(_run(package, iterations, f"http://127.0.0.1:{port}", profile))
    finally:
        upstream.terminate()
        upstream.wait()


# --------------------------------------------------------------------------- #
# Orchestration (the repository's environment)
# --------------------------------------------------------------------------- #


def render_and_install(workdir: Path) -> tuple[Path, str]:
    """The default answers rendered and installed; the project and its package name."""
    sys.path.insert(0, str(HERE))
    import run as load_benchmark  # benchmarks/run.py: the same render, snapshot and uv
    from helpers import snapshot_working_tree  # tests/helpers.py, on the path run.py sets

    template = snapshot_working_tree(workdir / "template")
    profile = load_benchmark.Profile("outbound", dict(load_benchmark.BASE_ANSWERS))
    project = load_benchmark.render_service(template, workdir, profile)
    load_benchmark.run([load_benchmark.uv_executable(), "sync", "--no-dev"], project)
    answers = (project / ".copier-answers.yml").read_text()
    for wanted in ("circuit_breakers: true", "metrics: true", "tracing: true"):
        if wanted not in answers:
            raise RuntimeError(f"the default answers no longer give {wanted!r}")
    return project, load_benchmark.SERVICE_APP.split(".", 1)[0]


def report(result: dict[str, Any], iterations: int) -> str:
    versions = result["versions"]
    rows = result["rows"]
    lines = [
        f"python {versions['python']} ({versions['loop']}), httpx {versions['httpx']}, "
        f"pybreaker {versions['pybreaker']}, tenacity {versions['tenacity']}, "
        f"{os.cpu_count()} cores, {platform.machine()}",
        f"{iterations:,} calls per row, each timed on its own (warm-up {WARMUP:,} per round), "
        f"the rows taking turns over {ROUNDS} rounds; upstream on loopback, keep-alive",
        "",
        f"{'row':<46} {'median µs':>10} {'p99 µs':>8} {'mean µs':>8} {'vs bare':>7} "
        f"{'added µs':>9}  goal",
    ]
    medians = {r["row"]: r["median_us"] for r in rows}
    for r in rows:
        ratio = added = ""
        if r["goal"] == "refusal":
            met = r["median_us"] < REFUSAL_GOAL_US
            verdict = f"median < {REFUSAL_GOAL_US:g} µs: {'met' if met else 'missed'}"
        elif r["baseline"] is None:
            verdict = "baseline"
        else:
            extra = r["median_us"] - medians[r["baseline"]]
            ratio = f"{r['median_us'] / medians[r['baseline']]:.3f}"
            added = f"{extra:.1f}"
            met = extra < ADDED_GOAL_US
            verdict = f"< {ADDED_GOAL_US:g} µs added: {'met' if met else 'missed'}"
        lines.append(
            f"{r['row']:<46} {r['median_us']:>10.1f} {r['p99_us']:>8.1f} {r['mean_us']:>8.1f} "
            f"{ratio:>7} {added:>9}  {verdict}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=ITERATIONS, help="timed calls per row")
    parser.add_argument("--keep", action="store_true", help="keep the render")
    parser.add_argument("--json", type=Path, dest="json_path", help="also write results here")
    parser.add_argument(
        "--profile", action="store_true", help="also profile the client's work (to stderr)"
    )
    parser.add_argument(
        "--loop", choices=("uvloop", "asyncio"), default="uvloop", help="the measured event loop"
    )
    parser.add_argument("--measure", metavar="PACKAGE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.iterations < 100:
        parser.error("--iterations must be at least 100")

    if args.measure:  # the second stage, in the render's venv: results as JSON on stdout
        from importlib.metadata import version

        result = measure(args.measure, args.iterations, args.loop, args.profile)
        names = ("httpx", "pybreaker", "tenacity", "uvloop", "opentelemetry-sdk")
        result["versions"] = {
            "python": platform.python_version(),
            "loop": args.loop,
            **{n: version(n) for n in names},
        }
        print(json.dumps(result))
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="bench-outbound-"))
    try:
        print(f"rendering and installing in {workdir} ...", file=sys.stderr, flush=True)
        project, package = render_and_install(workdir)
        print("measuring:", file=sys.stderr, flush=True)
        command = [
            str(project / ".venv/bin/python"), str(Path(__file__).resolve()),
            "--measure", package, "--iterations", str(args.iterations), "--loop", args.loop,
            *(["--profile"] if args.profile else []),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "UV_PROJECT"}}
        done = subprocess.run(
            command, cwd=project, env=env, stdout=subprocess.PIPE, text=True, check=True
        )
        result = json.loads(done.stdout)
        print()
        print(report(result, args.iterations))
        if args.json_path:
            args.json_path.parent.mkdir(parents=True, exist_ok=True)
            args.json_path.write_text(json.dumps(result, indent=2) + "\n")
    finally:
        if args.keep:
            print(f"\nkept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
