"""Item reads with 1, 2 and 4 uvicorn workers, and on a read replica next to the primary.

Renders the service from a snapshot of the working tree as run.py does, with PostgreSQL
and the read cache, observability and request protection off, so every read is a query.

- Workers: the render on a database of its own on the local server (``BENCH_POSTGRES_URL``,
  default the local one as user postgres), served by uvicorn with 1, 2 and 4 workers.
  Each row is a ratio to 1 worker. The machine's cores are shared by the workers, the
  PostgreSQL server and wrk: the rows say what more workers buy on this machine, not on
  a host of its own.
- Replica: a private primary and a hot standby streaming from it (``initdb`` and
  ``pg_basebackup -R``, as the generated tests do; as root they run as user postgres),
  one worker: reads with no replica configured (the primary serves them), then with the
  standby as the replica. The replica row is a ratio to the primary row: the routing's
  cost (choosing a replica, connecting the session before the handler) on one machine.
  The database CPU columns show where the reads' database work went: on the primary, or
  on the replica, which on separate hosts is capacity the primary keeps.

Needs wrk, psql and PostgreSQL's server programs. Run from the repository root::

    uv run python benchmarks/scale_out.py [--duration 10] [--keep]
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ITEM = ("item by id", "/api/v1/items/{id}")
WORKERS = (1, 2, 4)
ANSWERS = {
    "database": "postgresql",
    "metrics": False,
    "tracing": False,
    "caching": False,
    "request_protection": False,
}


@dataclass(frozen=True)
class Row:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    service_cpu_us: float  # the server's processes (workers included), per request
    primary_cpu_us: float | None  # the primary's PostgreSQL processes, per request
    replica_cpu_us: float | None


def tree_cpu_seconds(pid: int) -> float:
    """CPU (user + system) of ``pid`` and every descendant: uvicorn's workers, or a
    postmaster's backends, those that exited included (a parent's reaped children count
    in its cutime and cstime)."""
    tick = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            total += sum(int(field) for field in stat[11:15]) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
    return total


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Cluster:
    directory: Path
    port: int
    programs: Path
    as_owner: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def postmaster(self) -> int:
        return int((self.directory / "postmaster.pid").read_text().split()[0])

    def run(self, program: str, *arguments: str) -> None:
        command = [*self.as_owner, str(self.programs / program), *arguments]
        subprocess.run(command, check=True, capture_output=True)

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.directory.parent} -c fsync=off "
            "-c max_connections=200"
        )
        log = str(self.directory.with_suffix(".log"))
        self.run("pg_ctl", "-D", str(self.directory), "-o", options, "-l", log, "-w", "start")

    def stop(self) -> None:
        if (self.directory / "postmaster.pid").exists():
            self.run("pg_ctl", "-D", str(self.directory), "-m", "fast", "-w", "stop")


def _server_programs() -> Path:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
    )
    if not found:
        sys.exit("PostgreSQL's server programs are not installed (apt-get install postgresql)")
    return found[-1]


@contextlib.contextmanager
def streaming_pair() -> Iterator[tuple[Cluster, Cluster]]:
    programs = _server_programs()
    base = Path(tempfile.mkdtemp(prefix="bench-replica-"))
    as_owner: tuple[str, ...] = ()
    if os.geteuid() == 0:
        as_owner = ("runuser", "-u", "postgres", "--")
        shutil.chown(base, "postgres", "postgres")
    primary = Cluster(base / "primary", _free_port(), programs, as_owner)
    standby = Cluster(base / "standby", _free_port(), programs, as_owner)
    try:
        primary.run("initdb", "-D", str(primary.directory), "-U", "postgres", "-A", "trust")
        primary.start()
        standby.run(
            "pg_basebackup",
            *("-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres"),
            *("-D", str(standby.directory), "-R", "-X", "stream"),
        )
        standby.start()
        yield primary, standby
    finally:
        for cluster in (standby, primary):
            with contextlib.suppress(subprocess.CalledProcessError):
                cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def served(harness: Any, project: Path, log: Any, workers: int, **env: str) -> Iterator[Any]:
    port = harness.free_port()
    base_url = f"http://{harness.HOST}:{port}"
    command = [
        str(project / ".venv/bin/python"), "-m", "uvicorn", harness.SERVICE_APP, "--factory",
        "--host", harness.HOST, "--port", str(port), "--workers", str(workers),
        "--no-access-log",
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=project, env=harness.child_env(APP_LOGGING__LEVEL="WARNING", **env),
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        harness.wait_until_live(base_url, process, "/health/live")
        yield harness.Server(base_url, process.pid)
    finally:
        harness.stop(process)


def measure(
    harness: Any,
    server: Any,
    ids: Sequence[int],
    options: Any,
    name: str,
    primary: int | None = None,
    replica: int | None = None,
) -> Row:
    """wrk on the item route after a warm-up; CPU of the service and the databases."""
    path = ITEM[1]
    if options.warmup:
        harness.wrk(server.base_url, path, ids, options.warmup, options)
    named = (("service", server.pid), ("primary", primary), ("replica", replica))
    pids = {key: pid for key, pid in named if pid is not None}
    before = {key: tree_cpu_seconds(pid) for key, pid in pids.items()}
    stats = harness.parse_wrk(harness.wrk(server.base_url, path, ids, options.duration, options))
    spent = {key: tree_cpu_seconds(pid) - before[key] for key, pid in pids.items()}
    requests = max(stats.requests, 1)

    def per_request(key: str) -> float | None:
        return spent[key] / requests * 1e6 if key in spent else None

    row = Row(
        name,
        stats.rps,
        stats.p50_ms,
        stats.p99_ms,
        stats.error_count,
        spent["service"] / requests * 1e6,
        per_request("primary"),
        per_request("replica"),
    )
    print(f"  {name:<28} {row.rps:>8.0f} req/s", flush=True)
    return row


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def table(rows: Sequence[Row], baselines: dict[str, str]) -> str:
    by_name = {row.name: row for row in rows}
    lines = [
        "| row | RPS | ratio | p50 ms | p99 ms | errors | service CPU µs/req "
        "| primary CPU µs/req | replica CPU µs/req |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        base = by_name[baselines[row.name]]
        ratio = row.rps / base.rps if base.rps else 0.0
        lines.append(
            f"| {row.name} | {row.rps:.0f} | {ratio:.2f} | {row.p50_ms:.2f} | {row.p99_ms:.2f} "
            f"| {row.errors} | {row.service_cpu_us:.0f} | {_us(row.primary_cpu_us)} "
            f"| {_us(row.replica_cpu_us)} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import run as harness  # benchmarks/run.py: render, install, serve, load
    from helpers import snapshot_working_tree  # tests/helpers.py, on the path run.py sets

    options = harness.ratio_options(__doc__.split("\n\n")[0], argv)
    harness.stop_cleanly_on_signals()
    rows: list[Row] = []
    baselines: dict[str, str] = {}

    def benchmark(workdir: Path) -> None:
        template = snapshot_working_tree(workdir / "template")
        profile = harness.Profile("scale-out", {**harness.BASE_ANSWERS, **ANSWERS})
        project = harness.render_service(template, workdir, profile)
        with (workdir / "servers.log").open("wb") as log:
            with harness.postgres_database() as url:
                os.environ["APP_DATABASE__URL"] = url
                try:
                    token = harness.install_service(project)
                    with served(harness, project, log, 1) as server:
                        ids = harness.seed_items(server.base_url, token, harness.SEED_ITEMS)
                    for workers in WORKERS:
                        with served(harness, project, log, workers) as server:
                            name = f"{workers} worker{'s' if workers > 1 else ''}"
                            rows.append(measure(harness, server, ids, options, name))
                            baselines[name] = "1 worker"
                finally:
                    del os.environ["APP_DATABASE__URL"]
            with streaming_pair() as (primary, standby):
                os.environ["APP_DATABASE__URL"] = primary.url
                try:
                    token = harness.install_service(project)
                    with served(harness, project, log, 1) as server:
                        ids = harness.seed_items(server.base_url, token, harness.SEED_ITEMS)
                    databases = (primary.postmaster, standby.postmaster)
                    on_primary, on_replica = "reads on the primary", "reads on the replica"
                    with served(harness, project, log, 1) as server:
                        rows.append(measure(harness, server, ids, options, on_primary, *databases))
                    replicas = {"APP_DATABASE__REPLICA_URLS": f'["{standby.url}"]'}
                    with served(harness, project, log, 1, **replicas) as server:
                        rows.append(measure(harness, server, ids, options, on_replica, *databases))
                    baselines[on_primary] = baselines[on_replica] = on_primary
                finally:
                    del os.environ["APP_DATABASE__URL"]

    status = harness.in_workdir(
        "bench-scale-out-", keep=options.keep, kept="render, servers.log", benchmark=benchmark
    )
    if status:
        return status
    print()
    print(table(rows, baselines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
