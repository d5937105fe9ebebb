"""Database-backed routes against a bare FastAPI + SQLAlchemy app on the same table.

Renders the service from a snapshot of the working tree (as run.py does), once per
profile, installs, migrates and seeds each with 200 items, and serves all of them at once,
each with one uvicorn worker, beside ``bare_app.py`` reading the same ``items`` table
(``BARE_DATABASE_URL``): one bare server per database. Then it loads every row in turn with
wrk, round after round (``--rounds``), so that the machine's drift touches every row alike;
each row's ratio is its RPS over the bare app's on the same route and database in the
same round, and the table shows the median over the rounds.

Profiles:

* ``default``: the default answers (SQLite; metrics, tracing, flags, breakers, caching,
  request protection), as a new service runs them: no OTLP endpoint configured;
* ``foundation``: every optional slice off;
* ``postgresql``: the default answers on PostgreSQL (a database of its own on
  ``BENCH_POSTGRES_URL``'s server, dropped after);
* ``no-observability``: the default answers with metrics and tracing off, the divisor of
  what observability costs.

Every service answers at ``APP_LOGGING__LEVEL=WARNING`` with its read cache off
(``APP_CACHING__ENABLED=false``: every read reaches the database) and its rate limit raised
and its per-client concurrency cap lifted, so that one client's load is never refused (the
limiter still counts every request); the
``default`` render is also served with its cache on, as the ``cached`` row.
``--exporting`` adds the ``default`` render exporting every trace to an OTLP sink in this
process, and one trace in ten.

Needs wrk and psql. From the repository root::

    uv run python benchmarks/throughput.py [--rounds 3] [--duration 8] [--keep]
"""

from __future__ import annotations

import contextlib
import os
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as harness  # benchmarks/run.py: render, install, serve, load
from helpers import snapshot_working_tree  # tests/helpers.py, on the path run.py set
from matrix import BASE_ANSWERS as TEST_BASE_ANSWERS
from matrix import PROFILES as TEST_PROFILES

ROUTES = {
    # route: (the service's path, the bare app's path)
    "health": ("/health/live", "/"),
    "item by id": ("/api/v1/items/{id}", "/items/{id}"),
    "list of 20": ("/api/v1/items?limit=20", "/items?limit=20"),
}
SERVED = {
    "APP_LOGGING__LEVEL": "WARNING",
    "APP_CACHING__ENABLED": "false",
    "APP_PROTECTION__RATE_LIMITS__DEFAULT": '["1000000000/minute"]',
    # wrk's connections are one client: more than the default 32 in progress would be 429s.
    "APP_PROTECTION__ABUSE__MAX_CONCURRENT_PER_CLIENT": "1000",
}
# Every optional slice off: the template tests' bare profile, without its project name.
OFF: dict[str, Any] = {
    question: answer
    for question, answer in TEST_PROFILES["bare"].items()
    if question not in TEST_BASE_ANSWERS
}
PROFILES: dict[str, dict[str, Any]] = {
    "default": {},
    "foundation": OFF,
    "postgresql": {"database": "postgresql"},
    "no-observability": {"metrics": False, "tracing": False},
}
# (row, route) -> the least ratio to bare asked for.
GOALS: dict[tuple[str, str], float] = {
    ("default", "item by id"): 0.8,
    ("postgresql", "item by id"): 0.8,
    ("foundation", "item by id"): 0.9,
    **{(row, "list of 20"): 0.7 for row in ("default", "postgresql", "foundation")},
    **{(row, "health"): 0.8 for row in ("default", "postgresql", "foundation")},
}
OBSERVABILITY_GOAL = 0.85  # default / no-observability, on every route


@dataclass
class Row:
    """A server under load: a render (or the bare app) with its settings."""

    name: str
    app: harness.App
    env: dict[str, str]
    database: str  # which bare server it is compared with
    ids: list[int] = field(default_factory=list)
    bare: bool = False
    server: harness.Server | None = None
    results: dict[str, list[harness.Result]] = field(default_factory=dict)


def parse_args(argv: Sequence[str] | None) -> tuple[harness.Options, bool]:
    parser = harness.ratio_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--exporting", action="store_true", help="add the exporting rows")
    parser.set_defaults(duration=8)
    arguments = parser.parse_args(argv)
    return harness.ratio_options_from(arguments), arguments.exporting


def render(template: Path, workdir: Path, name: str, database_url: str) -> tuple[Path, str]:
    answers = {**harness.BASE_ANSWERS, **PROFILES[name]}
    project = harness.render_service(template, workdir, harness.Profile(name, answers))
    os.environ["APP_DATABASE__URL"] = database_url
    try:
        token = harness.install_service(project)
    finally:
        del os.environ["APP_DATABASE__URL"]
    return project, token


def bare_row(database: str, url: str, python: Path) -> Row:
    app = harness.App(
        python, harness.BARE_APP, ("--app-dir", str(harness.HERE)), harness.REPO_ROOT, "/"
    )
    return Row(f"bare ({database})", app, {"BARE_DATABASE_URL": url}, database, bare=True)


def start(row: Row, stack: contextlib.ExitStack, log: IO[bytes]) -> None:
    row.server = stack.enter_context(harness.serving(row.app, log, None, **row.env))


def load_round(rows: Sequence[Row], options: harness.Options) -> None:
    for row in rows:
        assert row.server is not None
        for route, (path, bare_path) in ROUTES.items():
            target = harness.Target(route, bare_path if row.bare else path, "WARNING", row.name)
            result = harness.load(row.server, target, row.ids, options)
            row.results.setdefault(route, []).append(result)


def ratio(row: Row, base: Row, route: str) -> float | None:
    return harness.median_ratio_of(row.results[route], base.results[route])


def shown(value: float | None, goal: float | None) -> tuple[str, str]:
    if value is None:
        return "errors", "" if goal is None else f"≥ {goal} not measured"
    verdict = "" if goal is None else f"≥ {goal} {'met' if value >= goal else 'missed'}"
    return f"{value:.2f}", verdict


def check(row: Row) -> None:
    """Every route answers 200 before it is loaded."""
    assert row.server is not None
    for path, bare_path in ROUTES.values():
        url = row.server.base_url + (bare_path if row.bare else path).replace(
            "{id}", str(row.ids[0])
        )
        with urllib.request.urlopen(url, timeout=10) as answer:
            if answer.status != 200:
                raise RuntimeError(f"{row.name}: GET {url} answered {answer.status}")


def median_of(row: Row, route: str, value: str) -> float:
    return harness.median_value(row.results[route], value)


def report(rows: Sequence[Row]) -> str:
    bare = {row.database: row for row in rows if row.bare}
    by_name = {row.name: row for row in rows}
    lines = [
        "| route | row | RPS | CPU µs/req | vs bare | goal |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for route in ROUTES:
        for row in rows:
            value, verdict = shown(
                ratio(row, bare[row.database], route), GOALS.get((row.name, route))
            )
            lines.append(
                f"| {route} | {row.name} | {median_of(row, route, 'rps'):,.0f} "
                f"| {median_of(row, route, 'cpu'):,.0f} | {value} | {verdict} |"
            )
    if "default" in by_name and "no-observability" in by_name:
        lines += ["", "| route | default / no-observability | goal |", "| --- | ---: | --- |"]
        for route in ROUTES:
            measured = ratio(by_name["default"], by_name["no-observability"], route)
            value, verdict = shown(measured, OBSERVABILITY_GOAL)
            lines.append(f"| {route} | {value} | {verdict} |")
    noisy = [
        f"{row.name} {route}: {result.others_cpu_percent:.0f} %"
        for row in rows
        for route, results in row.results.items()
        for result in results
        if result.others_cpu_percent > harness.NOISY_PERCENT
    ]
    errors = [
        f"{row.name} {route}: {result.stats.errors}"
        for row in rows
        for route, results in row.results.items()
        for result in results
        if result.stats.error_count
    ]
    if noisy:
        lines += ["", "other processes were busy during: " + "; ".join(noisy)]
    if errors:
        lines += ["", "wrk errors: " + "; ".join(errors)]
    return "\n".join(lines)


@contextlib.contextmanager
def databases(workdir: Path) -> Iterator[dict[str, str]]:
    """The URL each profile's service and its bare app use."""
    with harness.postgres_database() as postgresql:
        yield {
            name: postgresql
            if PROFILES[name].get("database") == "postgresql"
            else f"sqlite+aiosqlite:///{workdir / name}.db"
            for name in PROFILES
        }


def main(argv: Sequence[str] | None = None) -> int:
    options, exporting = parse_args(argv)
    rounds = options.rounds
    harness.stop_cleanly_on_signals()
    printed: list[str] = []

    def benchmark(workdir: Path) -> None:
        template = snapshot_working_tree(workdir / "template")
        with (
            (workdir / "servers.log").open("wb") as log,
            databases(workdir) as urls,
            harness.otlp_sink() as sink,
            contextlib.ExitStack() as stack,
        ):
            rows: list[Row] = []
            bares: dict[str, Row] = {}
            for name in PROFILES:
                print(f"rendering and installing {name} ...", flush=True)
                project, token = render(template, workdir, name, urls[name])
                service = harness.service_app(project)
                database = "postgresql" if "postgresql" in urls[name] else "sqlite"
                env = {**SERVED, "APP_DATABASE__URL": urls[name]}
                row = Row(name, service, env, database)
                start(row, stack, log)
                assert row.server is not None
                row.ids = harness.seed_items(row.server.base_url, token, harness.SEED_ITEMS)
                rows.append(row)
                if database not in bares:
                    bares[database] = bare_row(database, urls[name], service.python)
                if name == "default":
                    cached = Row(
                        "cached",
                        service,
                        {**env, "APP_CACHING__ENABLED": "true"},
                        database,
                        row.ids,
                    )
                    rows.append(cached)
                    if exporting:
                        endpoint = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url}
                        rows.append(
                            Row("exporting", service, {**env, **endpoint}, database, row.ids)
                        )
                        tenth = {**env, **endpoint, "APP_TRACING__SAMPLE_RATIO": "0.1"}
                        rows.append(Row("exporting 10 %", service, tenth, database, row.ids))
            rows = [*bares.values(), *rows]
            for row in rows:
                if row.server is None:
                    start(row, stack, log)
                if row.bare:
                    row.ids = next(r.ids for r in rows if not r.bare and r.database == row.database)
                else:
                    harness.read_items(row.server.base_url, row.ids)  # type: ignore[union-attr]
                check(row)
            found = harness.versions(rows[0].app.python)
            for number in range(1, rounds + 1):
                print(f"round {number} of {rounds}:", flush=True)
                load_round(rows, options)
            printed.append(harness.environment(found, options))
            printed.append(report(rows))

    status = harness.in_workdir(
        "bench-throughput-", keep=options.keep, kept="renders, servers.log", benchmark=benchmark
    )
    print()
    print("\n\n".join(printed))
    return status


if __name__ == "__main__":
    raise SystemExit(main())
