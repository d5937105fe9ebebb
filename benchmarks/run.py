"""Load-test the rendered service against a bare FastAPI app with wrk.

Renders each profile (the foundation alone, with metrics, with tracing, with both) from a
snapshot of the working tree, installs it with ``uv sync --no-dev``, migrates and seeds
its SQLite database, then serves it with uvicorn (one worker, loopback only) and loads
each target with wrk (one thread) after a warm-up. A bare FastAPI app is served with the
same uvicorn options and loaded identically; every row's RPS is reported as a ratio to
it. Profiles with tracing export every span and log record over OTLP/HTTP to a sink in
this process, as they would to a collector.

Run from the repository root::

    uv run python benchmarks/run.py [--duration 10] [--connections 32] [--profile NAME] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

import copier

# One line per row. "{id}" is replaced per request by a random seeded item id.
TARGETS: list[tuple[str, str]] = [
    ("health live", "/health/live"),
    ("item by id", "/api/v1/items/{id}"),
    ("items list", "/api/v1/items?limit=20"),
]
BARE_TARGET = ("bare FastAPI", "/")


@dataclass(frozen=True)
class Profile:
    name: str
    answers: dict[str, Any]
    # Measured once per level: WARNING keeps logging out of the way, INFO writes one JSON
    # access line per request (to a file, as a container's stdout would).
    log_levels: tuple[str, ...] = ("WARNING",)
    # Spans and log records go to the OTLP sink (only profiles with tracing).
    exports: bool = False
    # Extra service settings, as environment variables.
    settings: tuple[tuple[str, str], ...] = ()
    # Another profile whose rows this one's are divided by (same endpoint and log level),
    # to isolate what the answers that differ between them cost.
    baseline: str | None = None


BASE_ANSWERS = {"project_name": "Bench Service", "python_version": "3.11"}
PROFILES: list[Profile] = [
    Profile(
        "foundation",
        {**BASE_ANSWERS, "metrics": False, "tracing": False},
        log_levels=("WARNING", "INFO"),
        baseline="no-flags",
    ),
    # The foundation without the flag slice (on by default): against it, the foundation's
    # rows show what the per-request evaluation context costs.
    Profile(
        "no-flags", {**BASE_ANSWERS, "metrics": False, "tracing": False, "feature_flags": False}
    ),
    Profile("metrics", {**BASE_ANSWERS, "metrics": True, "tracing": False}),
    Profile("tracing", {**BASE_ANSWERS, "metrics": False, "tracing": True}, exports=True),
    Profile(
        "metrics+tracing",
        {**BASE_ANSWERS, "metrics": True, "tracing": True},
        log_levels=("WARNING", "INFO"),
        exports=True,
    ),
    # The same service keeping one trace in ten, as a busy production service would.
    Profile(
        "metrics+tracing@10%",
        {**BASE_ANSWERS, "metrics": True, "tracing": True},
        exports=True,
        settings=(("APP_TRACING__SAMPLE_RATIO", "0.1"),),
    ),
]
SLUG = "bench-service"
SERVICE_APP = "bench_service.main:create_app"
SEED_ITEMS = 200
WRK_THREADS = 1  # 2 cores shared by wrk and the server: one each, roughly
SERVER_CORE, WRK_CORE = 0, 1  # with --pin

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent
# Renders come from the same working-tree snapshot the template's tests use.
sys.path.insert(0, str(REPO_ROOT / "tests"))
from helpers import OtlpReceiver, snapshot_working_tree  # noqa: E402

WRK_SCRIPT = HERE / "wrk.lua"
BARE_APP = "bare_app:app"  # benchmarks/bare_app.py, loaded with --app-dir
HOST = "127.0.0.1"
CORES = os.cpu_count() or 1
NOISY_PERCENT = 10  # CPU used by unrelated processes during a row, in % of the machine
VERSIONED_PACKAGES = (
    "uvicorn",
    "uvloop",
    "httptools",
    "fastapi",
    "starlette",
    "pydantic",
    "sqlalchemy",
    "aiosqlite",
    "structlog",
)


@dataclass(frozen=True)
class Options:
    duration: int
    warmup: int
    connections: int
    keep: bool
    json_path: Path | None
    pin: bool
    profiles: tuple[str, ...]
    rounds: int = 1

    @property
    def server_core(self) -> int | None:
        return SERVER_CORE if self.pin else None

    @property
    def wrk_core(self) -> int | None:
        return WRK_CORE if self.pin else None


@dataclass(frozen=True)
class Target:
    name: str
    path: str
    log_level: str
    profile: str = "-"


@dataclass(frozen=True)
class WrkStats:
    rps: float
    requests: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: dict[str, int]  # wrk's non-zero error counts: connect, read, write, status, timeout

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


@dataclass(frozen=True)
class Result:
    target: Target
    stats: WrkStats
    cpu_us_per_request: float  # the server process's CPU (all threads) per request
    # CPU that unrelated processes used meanwhile, in % of the machine: a noise indicator
    others_cpu_percent: float


@dataclass(frozen=True)
class App:
    """An ASGI app to serve: the service or the bare baseline, in the render's venv."""

    python: Path
    spec: str  # "module:attribute" for uvicorn
    uvicorn_options: tuple[str, ...]  # how to find or build it: --factory, --app-dir
    cwd: Path
    live_path: str


@dataclass(frozen=True)
class Server:
    base_url: str
    pid: int


# --------------------------------------------------------------------------- #
# Command line and process helpers
# --------------------------------------------------------------------------- #


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds measured per row")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of unmeasured load first")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--keep", action="store_true", help="keep the render dir and logs")
    parser.add_argument("--json", type=Path, dest="json_path", help="also write results here")
    parser.add_argument(
        "--pin",
        action="store_true",
        help=f"pin the server to core {SERVER_CORE} and wrk to core {WRK_CORE} (taskset)",
    )
    parser.add_argument(
        "--profile",
        action="append",
        choices=[profile.name for profile in PROFILES],
        dest="profiles",
        help="measure only this profile (repeatable; default: all)",
    )
    args = parser.parse_args(argv)
    if args.duration < 1 or args.warmup < 0 or args.connections < 1:
        parser.error("--duration and --connections must be positive, --warmup not negative")
    if args.pin and (CORES < 2 or shutil.which("taskset") is None):
        parser.error("--pin needs 2 cores and taskset (util-linux)")
    profiles = tuple(args.profiles or [profile.name for profile in PROFILES])
    return Options(
        args.duration, args.warmup, args.connections, args.keep, args.json_path, args.pin, profiles
    )


def child_env(**overrides: str) -> dict[str, str]:
    """The environment for child processes, minus the repo's own venv activation."""
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "UV_PROJECT"}}
    env.update(overrides)
    return env


def uv_executable() -> str:
    # `uv run` exports UV; the pyenv shim named uv breaks in dirs with a .python-version.
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        sys.exit("uv not found: export PATH=$HOME/.local/bin:$PATH")
    return found


def run(cmd: Sequence[str], cwd: Path) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=child_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def on_core(command: list[str], core: int | None) -> list[str]:
    return command if core is None else ["taskset", "--cpu-list", str(core), *command]


def ratio_parser(description: str) -> argparse.ArgumentParser:
    """The options of a script that compares renders row by row (graphql.py,
    tenancy.py, throughput.py): seconds per row and of warm-up, wrk's connections, rounds
    over every row, whether to keep the renders. A script adds its own to it."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--duration", type=int, default=10, help="seconds per row")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured seconds per row")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="rounds over every row")
    parser.add_argument("--keep", action="store_true", help="keep the renders")
    return parser


def ratio_options_from(arguments: argparse.Namespace) -> Options:
    """``ratio_parser``'s arguments as options. Exits when wrk is missing."""
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    if arguments.rounds < 1:
        sys.exit("--rounds: at least 1")
    return Options(
        duration=arguments.duration,
        warmup=arguments.warmup,
        connections=arguments.connections,
        keep=arguments.keep,
        json_path=None,
        pin=False,
        profiles=(),
        rounds=arguments.rounds,
    )


def ratio_options(description: str, argv: Sequence[str] | None) -> Options:
    return ratio_options_from(ratio_parser(description).parse_args(argv))


# Given a profile and its render, the environment its server gets beyond the log level
# (a database of its own, say), also set while the render is installed. Entered before
# the profile is installed, left once every row has been loaded.
Prepare = Callable[[Profile, Path], contextlib.AbstractContextManager[dict[str, str]]]
# Run once a render is installed and migrated, before it serves (creating a tenant).
Installed = Callable[[Profile, Path], None]
# Run once a render serves, before the load: a check that the targets answer as meant.
Check = Callable[[str, Sequence[int]], None]


@contextlib.contextmanager
def _nothing_to_prepare(_profile: Profile, _project: Path) -> Iterator[dict[str, str]]:
    yield {}


@contextlib.contextmanager
def environment_with(env: dict[str, str]) -> Iterator[None]:
    """``env`` in this process's environment while the block runs (the commands that
    install a render read it), as it was afterwards."""
    before = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def compare_renders(
    prefix: str,
    profiles: Sequence[Profile],
    targets: Sequence[tuple[str, str]],
    options: Options,
    *,
    prepare: Prepare = _nothing_to_prepare,
    installed: Installed | None = None,
    check: Check | None = None,
) -> tuple[int, list[Result]]:
    """The driver of the scripts that compare renders row by row (graphql.py,
    tenancy.py): each profile rendered from a snapshot of the working tree, installed,
    served, seeded with items and read once; then, with every profile serving, round
    after round (``options.rounds``) each profile's targets loaded in turn, so that the
    machine's drift between rounds touches every row alike (``median_ratio`` compares
    rows round by round). The status of ``in_workdir`` and the results, round after
    round."""
    results: list[Result] = []

    def benchmark(workdir: Path) -> None:
        template = snapshot_working_tree(workdir / "template")
        with (workdir / "servers.log").open("wb") as log, contextlib.ExitStack() as stack:
            served: list[tuple[Profile, Server, list[int]]] = []
            for profile in profiles:
                print(f"rendering and installing {profile.name} ...", flush=True)
                project = render_service(template, workdir, profile)
                env = stack.enter_context(prepare(profile, project))
                with environment_with(env):
                    token = install_service(project)
                    if installed is not None:
                        installed(profile, project)
                app = service_app(project)
                server = stack.enter_context(
                    serving(app, log, None, APP_LOGGING__LEVEL="WARNING", **env)
                )
                ids = seed_items(server.base_url, token, SEED_ITEMS)
                read_items(server.base_url, ids)
                if check is not None:
                    check(server.base_url, ids)
                served.append((profile, server, ids))
            for number in range(1, options.rounds + 1):
                print(f"round {number} of {options.rounds}:", flush=True)
                for profile, server, ids in served:
                    for name, path in targets:
                        target = Target(name, path, "WARNING", profile.name)
                        results.append(load(server, target, ids, options))

    status = in_workdir(prefix, keep=options.keep, kept="renders, servers.log", benchmark=benchmark)
    return status, results


def rounds_of(results: Sequence[Result], profile: str, target: str) -> list[Result]:
    """One row's results (a profile's target), round after round."""
    return [r for r in results if r.target.profile == profile and r.target.name == target]


def median_ratio_of(rows: Sequence[Result], bases: Sequence[Result]) -> float | None:
    """The median over the rounds of a row's RPS divided by its base row's in the same
    round (both lists round after round); None if either had a wrk error in any round (a
    refusal costs less than an answer: its RPS would flatter the row)."""
    pairs = list(zip(rows, bases, strict=True))
    if not pairs or any(
        a.stats.error_count or b.stats.error_count or not b.stats.rps for a, b in pairs
    ):
        return None
    return statistics.median(a.stats.rps / b.stats.rps for a, b in pairs)


def median_ratio(
    results: Sequence[Result], row: tuple[str, str], base: tuple[str, str]
) -> float | None:
    """``median_ratio_of`` two rows of ``results``, each a profile and a target."""
    return median_ratio_of(rounds_of(results, *row), rounds_of(results, *base))


def median_value(found: Sequence[Result], value: str) -> float:
    """The median over the rounds of a row's ``rps`` or ``cpu`` (µs per request)."""
    if value == "rps":
        return statistics.median(result.stats.rps for result in found)
    return statistics.median(result.cpu_us_per_request for result in found)


def median_of(results: Sequence[Result], profile: str, target: str, value: str) -> float:
    """``median_value`` of one row of ``results`` (a profile's target)."""
    return median_value(rounds_of(results, profile, target), value)


def result_lines(results: Sequence[Result]) -> str:
    """A line per result: latency, the server's CPU per request, errors."""
    return "\n".join(
        f"{result.target.profile:<20} {result.target.name:<14} p50 {result.stats.p50_ms:.2f} ms"
        f"  p95 {result.stats.p95_ms:.2f} ms  server CPU {result.cpu_us_per_request:.0f} µs"
        f"/request  errors {result.stats.errors or 'none'}"
        for result in results
    )


def stop_cleanly_on_signals() -> None:
    """Let Ctrl-C and SIGTERM unwind the stack, so every ``finally`` stops what it started.

    SIGINT gets Python's own handler back even where it was inherited as ignored (a
    background job of a non-interactive shell).
    """

    def exit_on(signum: int, _: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, exit_on)


# --------------------------------------------------------------------------- #
# Render and install
# --------------------------------------------------------------------------- #


def render_service(template: Path, workdir: Path, profile: Profile) -> Path:
    project = workdir / re.sub(r"[^a-z0-9]+", "-", profile.name) / SLUG
    copier.run_copy(
        str(template), str(project), data=profile.answers, defaults=True, unsafe=True, quiet=True
    )
    return project


def install_service(project: Path) -> str:
    """Install, migrate, and return a dev admin token minted by the service's CLI."""
    uv = uv_executable()
    run([uv, "sync", "--no-dev"], project)
    run([uv, "run", "--no-sync", SLUG, "migrate"], project)
    token = run(
        [uv, "run", "--no-sync", SLUG, "token", "--subject", "bench", "--role", "admin"], project
    )
    return token.strip()


def versions(python: Path) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, platform, sys;"
        f"names = {list(VERSIONED_PACKAGES)!r};"
        "print(json.dumps({'python': platform.python_version(),"
        " **{n: m.version(n) for n in names}}))"
    )
    found: dict[str, str] = json.loads(run([str(python), "-c", code], REPO_ROOT))
    found["wrk"] = wrk_version()
    return found


def wrk_version() -> str:
    # `wrk --version` prints "wrk <version> [epoll] ..." and exits 1.
    banner = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    return banner.split()[1] if banner.startswith("wrk ") else "unknown"


# --------------------------------------------------------------------------- #
# Serving
# --------------------------------------------------------------------------- #


# The server of the scripts' PostgreSQL rows (tenancy.py, scale_out.py).
BENCH_POSTGRES = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432"
)


def _psql(statement: str) -> None:
    server = BENCH_POSTGRES.replace("postgresql+asyncpg://", "postgresql://")
    subprocess.run(
        ["psql", f"{server}/postgres", "-v", "ON_ERROR_STOP=1", "-q", "-c", statement],
        check=True,
        capture_output=True,
    )


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """The URL of a new database on ``BENCH_POSTGRES_URL``'s server, dropped after."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    _psql(f'CREATE DATABASE "{name}"')
    try:
        yield f"{BENCH_POSTGRES}/{name}"
    finally:
        _psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def uvicorn_command(app: App, port: int) -> list[str]:
    """The same uvicorn options for every app: one worker, no uvicorn access log (as `serve`)."""
    return [
        str(app.python), "-m", "uvicorn", app.spec, *app.uvicorn_options,
        "--host", HOST, "--port", str(port), "--workers", "1", "--no-access-log",
    ]  # fmt: skip


def wait_until_live(base_url: str, process: subprocess.Popen[bytes], path: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before it was live")
        with (
            contextlib.suppress(OSError),
            urllib.request.urlopen(base_url + path, timeout=1) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{base_url}{path} was not live within 30 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)  # the group this script created for the server
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextlib.contextmanager
def serving(app: App, log: IO[bytes], core: int | None, **env: str) -> Iterator[Server]:
    """Serve ``app`` in its own process group on a free port; stop it on exit."""
    port = free_port()
    base_url = f"http://{HOST}:{port}"
    process = subprocess.Popen(
        on_core(uvicorn_command(app, port), core), cwd=app.cwd, env=child_env(**env), stdout=log,
        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        wait_until_live(base_url, process, app.live_path)
        yield Server(base_url, process.pid)
    finally:
        stop(process)


def otlp_sink() -> OtlpReceiver:
    """Where profiles with tracing export: an OTLP/HTTP endpoint in this process that
    counts the bytes it receives (a context manager)."""
    return OtlpReceiver()


def seed_items(base_url: str, token: str, count: int) -> list[int]:
    ids = []
    for n in range(count):
        body = json.dumps({"name": f"bench item {n:04d}", "price_cents": 100 + n}).encode()
        request = urllib.request.Request(
            f"{base_url}/api/v1/items",
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            ids.append(int(json.load(response)["id"]))
    if ids != list(range(ids[0], ids[0] + count)):
        raise RuntimeError(f"seeded ids are not contiguous: {ids[:5]}...")
    return ids


# --------------------------------------------------------------------------- #
# Load
# --------------------------------------------------------------------------- #

_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_PERCENTILE = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_SUMMARY = re.compile(r"^WRK_SUMMARY (.*)$", re.MULTILINE)
_TO_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def read_items(base_url: str, ids: Sequence[int]) -> None:
    """``GET /api/v1/items/{id}`` once for each id: a cached profile's rows then read a
    warm cache."""
    for item_id in ids:
        with urllib.request.urlopen(f"{base_url}/api/v1/items/{item_id}", timeout=10) as answer:
            if answer.status != 200:
                raise RuntimeError(f"GET /api/v1/items/{item_id}: {answer.status}")


def parse_wrk(output: str) -> WrkStats:
    """Requests/sec and p50/p99 from wrk's --latency block; p95 from wrk.lua's done()."""
    rps, summary_line = _RPS.search(output), _SUMMARY.search(output)
    if rps is None or summary_line is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    percentiles = {int(p): float(v) * _TO_MS[unit] for p, v, unit in _PERCENTILE.findall(output)}
    summary = {k: int(v) for k, v in (f.split("=") for f in summary_line.group(1).split())}
    kinds = ("connect", "read", "write", "status", "timeout")  # status: non-2xx/3xx answers
    errors = {kind: summary[kind] for kind in kinds if summary[kind]}
    return WrkStats(
        rps=float(rps.group(1)),
        requests=summary["requests"],
        p50_ms=percentiles[50],
        p95_ms=summary["p95_us"] / 1000,
        p99_ms=percentiles[99],
        errors=errors,
    )


def wrk(
    base_url: str,
    path: str,
    ids: Sequence[int],
    seconds: int,
    options: Options,
    request: Sequence[str] = (),
) -> str:
    """wrk's output; ``request``: wrk.lua's method, body and headers (default a GET)."""
    command = [
        "wrk", "--threads", str(WRK_THREADS), "--connections", str(options.connections),
        "--duration", f"{seconds}s", "--latency", "--script", str(WRK_SCRIPT),
        f"{base_url}/", "--", path, str(min(ids, default=1)), str(max(ids, default=1)),
        *request,
    ]  # fmt: skip
    return subprocess.run(
        on_core(command, options.wrk_core), check=True, capture_output=True, text=True
    ).stdout


@dataclass(frozen=True)
class CpuClock:
    """CPU seconds (user + system) of the server, of wrk, and of the whole machine."""

    server: float
    wrk: float  # children that have finished: the wrk runs
    machine: float
    wall: float

    @classmethod
    def read(cls, server_pid: int) -> CpuClock:
        tick = os.sysconf("SC_CLK_TCK")
        stat = Path(f"/proc/{server_pid}/stat").read_text().rpartition(")")[2].split()
        cpu = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return cls(
            server=(int(stat[11]) + int(stat[12])) / tick,
            wrk=children.ru_utime + children.ru_stime,
            machine=(sum(cpu) - cpu[3] - cpu[4]) / tick,  # all but idle and iowait
            wall=time.monotonic(),
        )


def load(
    server: Server,
    target: Target,
    ids: Sequence[int],
    options: Options,
    request: Sequence[str] = (),
) -> Result:
    if options.warmup:
        wrk(server.base_url, target.path, ids, options.warmup, options, request)
    before = CpuClock.read(server.pid)
    output = wrk(server.base_url, target.path, ids, options.duration, options, request)
    after = CpuClock.read(server.pid)
    stats = parse_wrk(output)
    server_cpu, wrk_cpu = after.server - before.server, after.wrk - before.wrk
    others = after.machine - before.machine - server_cpu - wrk_cpu
    result = Result(
        target,
        stats,
        cpu_us_per_request=server_cpu / max(stats.requests, 1) * 1e6,
        others_cpu_percent=max(others, 0) / ((after.wall - before.wall) * CORES) * 100,
    )
    print(
        f"  {target.profile:<16} {target.name:<14} {target.log_level:<8} "
        f"{result.stats.rps:>9.0f} req/s",
        flush=True,
    )
    return result


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #


def table(results: Sequence[Result], bare_rps: float) -> str:
    header = (
        f"{'profile':<16} {'endpoint':<14} {'path':<24} {'log':<8} {'RPS':>8} {'p50 ms':>8} "
        f"{'p95 ms':>8} {'p99 ms':>8} {'vs bare':>8} {'CPU us/req':>10} {'others':>6} "
        f"{'errors':>6}"
    )
    lines = [header, "-" * len(header)]
    for result in results:
        t, s = result.target, result.stats
        lines.append(
            f"{t.profile:<16} {t.name:<14} {t.path:<24} {t.log_level:<8} {s.rps:>8.0f} "
            f"{s.p50_ms:>8.2f} "
            f"{s.p95_ms:>8.2f} {s.p99_ms:>8.2f} {s.rps / bare_rps:>8.2f} "
            f"{result.cpu_us_per_request:>10.0f} {result.others_cpu_percent:>5.0f}% "
            f"{s.error_count:>6}"
        )
    return "\n".join(lines)


def ratios(results: Sequence[Result]) -> str:
    """Each row of a profile with a baseline, divided by the baseline's matching row."""
    baselines = {p.name: p.baseline for p in PROFILES if p.baseline}
    rows = {(r.target.profile, r.target.name, r.target.log_level): r for r in results}
    lines = []
    for result in results:
        t = result.target
        base = rows.get((baselines.get(t.profile, ""), t.name, t.log_level))
        if base is None:
            continue
        lines.append(
            f"{t.profile:<16} {base.target.profile:<16} {t.name:<14} {t.log_level:<8} "
            f"{result.stats.rps / base.stats.rps:>9.2f} "
            f"{result.cpu_us_per_request / base.cpu_us_per_request:>9.2f} "
            f"{result.cpu_us_per_request - base.cpu_us_per_request:>+11.0f}"
        )
    if not lines:
        return ""
    header = (
        f"{'profile':<16} {'vs':<16} {'endpoint':<14} {'log':<8} {'RPS ratio':>9} "
        f"{'CPU ratio':>9} {'+CPU us/req':>11}"
    )
    return "\n".join(["", header, "-" * len(header), *lines])


def caveats(results: Sequence[Result]) -> str:
    notes = []
    for r in results:
        if r.stats.errors:
            details = ", ".join(f"{kind} {count}" for kind, count in r.stats.errors.items())
            where = f"{r.target.profile} {r.target.name} ({r.target.log_level})"
            notes.append(f"{where} had errors: {details}.")
    if any(r.others_cpu_percent > NOISY_PERCENT for r in results):
        notes.append(
            f"Other processes used more than {NOISY_PERCENT}% of the machine during some rows "
            "('others'): those figures are low and noisy; rerun on a quiet machine."
        )
    return "\n".join(["", *notes]) if notes else ""


def environment(found: dict[str, str], options: Options) -> str:
    packages = ", ".join(f"{name} {found[name]}" for name in VERSIONED_PACKAGES)
    return "\n".join(
        [
            f"date:     {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"machine:  {CORES} cores, {platform.machine()}, {cpu_model()}",
            f"python:   {found['python']} (render venv); {packages}",
            f"wrk {found['wrk']}: {WRK_THREADS} thread, {options.connections} connections, "
            f"{options.warmup} s warm-up + {options.duration} s per row; "
            f"server: uvicorn, 1 worker, {HOST}; "
            + (
                f"server pinned to core {SERVER_CORE}, wrk to core {WRK_CORE}"
                if options.pin
                else "not pinned: server and wrk share the cores"
            ),
        ]
    )


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def write_json(path: Path, results: Sequence[Result], found: dict[str, str]) -> None:
    payload: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": CORES,
        "versions": found,
        "results": [
            {
                **asdict(r.target),
                **asdict(r.stats),
                "cpu_us_per_request": r.cpu_us_per_request,
                "others_cpu_percent": r.others_cpu_percent,
            }
            for r in results
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


# --------------------------------------------------------------------------- #
# Main
# --------------------------------------------------------------------------- #


def bare_app(python: Path) -> App:
    return App(python, BARE_APP, ("--app-dir", str(HERE)), REPO_ROOT, BARE_TARGET[1])


def service_app(project: Path) -> App:
    return App(project / ".venv/bin/python", SERVICE_APP, ("--factory",), project, "/health/live")


def bench_bare(app: App, log: IO[bytes], options: Options) -> Result:
    with serving(app, log, options.server_core) as server:
        return load(server, Target(*BARE_TARGET, log_level="-"), [], options)


def bench_service(
    app: App, log: IO[bytes], profile: Profile, ids: Sequence[int], options: Options, sink: str
) -> list[Result]:
    env = dict(profile.settings)
    if profile.exports:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink
    results = []
    for level in profile.log_levels:
        with serving(app, log, options.server_core, APP_LOGGING__LEVEL=level, **env) as server:
            results += [
                load(server, Target(name, path, level, profile.name), ids, options)
                for name, path in TARGETS
            ]
    return results


def seed(app: App, log: IO[bytes], token: str) -> list[int]:
    with serving(app, log, None, APP_LOGGING__LEVEL="WARNING") as server:
        return seed_items(server.base_url, token, SEED_ITEMS)


def prepare(
    template: Path, workdir: Path, profile: Profile, log: IO[bytes]
) -> tuple[App, list[int]]:
    project = render_service(template, workdir, profile)
    token = install_service(project)
    service = service_app(project)
    return service, seed(service, log, token)


def benchmark(workdir: Path, options: Options) -> None:
    print(f"rendering and installing in {workdir} ...", flush=True)
    template = snapshot_working_tree(workdir / "template")
    chosen = [profile for profile in PROFILES if profile.name in options.profiles]
    with (workdir / "servers.log").open("wb") as log, otlp_sink() as sink:
        prepared = [(profile, *prepare(template, workdir, profile, log)) for profile in chosen]
        found = versions(prepared[0][1].python)
        print(f"seeded {SEED_ITEMS} items each; loading (wrk, {WRK_THREADS} thread):", flush=True)
        results = [bench_bare(bare_app(prepared[0][1].python), log, options)]
        for profile, service, ids in prepared:
            results += bench_service(service, log, profile, ids, options, sink.url)
        print(f"\nthe OTLP sink received {sink.received_bytes / 1e6:.1f} MB", flush=True)
    print()
    print(environment(found, options))
    print()
    print(table(results, bare_rps=results[0].stats.rps))
    print(ratios(results))
    print(caveats(results))
    if options.json_path:
        write_json(options.json_path, results, found)


def in_workdir(prefix: str, *, keep: bool, kept: str, benchmark: Callable[[Path], object]) -> int:
    """Runs ``benchmark`` in a new temporary directory, removed afterwards unless
    ``keep`` (then named, with what it holds: ``kept``); 130 on Ctrl-C, else 0."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    with contextlib.ExitStack() as cleanup:
        if keep:
            cleanup.callback(print, f"\nkept {workdir} ({kept})", file=sys.stderr)
        else:
            cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        with contextlib.suppress(KeyboardInterrupt):
            benchmark(workdir)
            return 0
        print("interrupted", file=sys.stderr)
    return 130


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    if shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk")
    stop_cleanly_on_signals()
    workdir = Path(tempfile.mkdtemp(prefix="bench-service-"))
    try:
        benchmark(workdir, options)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if options.keep:
            print(f"\nkept {workdir} (render, servers.log)")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
