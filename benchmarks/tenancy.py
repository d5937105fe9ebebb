"""What tenants cost an item read: the multi-tenant render next to the single-tenant one.

Renders the service from a snapshot of the working tree as run.py does, once per
profile: without tenants, and with ``multi_tenancy=true`` in each way of keeping tenants
apart. Row isolation is measured with the read cache off (every read a query, so the
isolation's criteria and session binding are on the path) and on (the defaults: the
tenant's key prefix and the private caching headers); a database per tenant (SQLite) and
a schema per tenant (PostgreSQL, against a single-tenant PostgreSQL render) with it off.
Observability and request protection are off in every profile, so the rows differ by
tenancy alone. PostgreSQL profiles get a database of their own on the server
``BENCH_POSTGRES_URL`` names (default: the local one, as user postgres), dropped after.

The tenant render serves with ``APP_TENANCY__DEFAULT_TENANT`` naming its one tenant, so
wrk's anonymous reads go through the whole of tenant resolution (the directory lookup,
the request's context, the usage meter's count) with no token to verify: the single-tenant
row verifies none either. Every profile serves at once and is loaded round after round
(``--rounds``), so that the machine's drift touches single and tenant rows alike; each
ratio is the median of the rounds' ratios. Goal: each tenant row at 0.9 of its
single-tenant row's RPS or more.

Needs wrk, and psql for the PostgreSQL rows. Run from the repository root::

    uv run python benchmarks/tenancy.py [--rounds 3] [--duration 10] [--keep]
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

RATIO_GOAL = 0.9
TENANT = "bench"
ITEM = ("item", "/api/v1/items/{id}")
# Single-tenant profile, multi-tenant profile.
PAIRS = [
    ("uncached", "row-uncached"),
    ("cached", "row-cached"),
    ("uncached", "database-uncached"),
    ("postgresql-uncached", "schema-uncached"),
]


def profiles() -> list[Any]:
    import run as harness  # benchmarks/run.py: render, install, serve, load, tables

    quiet = {
        **harness.BASE_ANSWERS,
        "metrics": False,
        "tracing": False,
        # Its per-client limits would refuse most of one client's load: measured apart.
        "request_protection": False,
    }
    uncached = {**quiet, "caching": False}
    tenants = {"multi_tenancy": True}
    postgresql = {"database": "postgresql"}
    return [
        harness.Profile("uncached", uncached),
        harness.Profile("row-uncached", {**uncached, **tenants}),
        harness.Profile("cached", quiet),
        harness.Profile("row-cached", {**quiet, **tenants}),
        harness.Profile(
            "database-uncached", {**uncached, **tenants, "tenant_isolation": "database"}
        ),
        harness.Profile("postgresql-uncached", {**uncached, **postgresql}),
        harness.Profile(
            "schema-uncached",
            {**uncached, **postgresql, **tenants, "tenant_isolation": "schema"},
        ),
    ]


@contextlib.contextmanager
def database_of(profile: Any) -> Iterator[dict[str, str]]:
    """For a PostgreSQL profile, ``APP_DATABASE__URL`` naming a new database of its own,
    dropped after; nothing for SQLite (each render has its own file)."""
    if profile.answers.get("database") != "postgresql":
        yield {}
        return
    import run as harness

    with harness.postgres_database() as url:
        yield {"APP_DATABASE__URL": url}


def ratio_table(results: Sequence[Any]) -> str:
    """Each tenant row against its single-tenant row: the medians over the rounds, and
    the median of the rounds' ratios."""
    import run as harness

    lines = [
        "| read (single, tenants) | single-tenant RPS | tenants RPS | tenants / single "
        "| CPU µs/req (single, tenants) | goal |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    target = ITEM[0]
    for single, tenants in PAIRS:
        if not harness.rounds_of(results, single, target) or not harness.rounds_of(
            results, tenants, target
        ):
            continue
        ratio = harness.median_ratio(results, (tenants, target), (single, target))
        shown = "errors" if ratio is None else f"{ratio:.2f}"
        verdict = "not measured" if ratio is None else "met" if ratio >= RATIO_GOAL else "missed"
        rps = [harness.median_of(results, name, target, "rps") for name in (single, tenants)]
        cpu = [harness.median_of(results, name, target, "cpu") for name in (single, tenants)]
        lines.append(
            f"| {single}, {tenants} | {rps[0]:.0f} | {rps[1]:.0f} | {shown} "
            f"| {cpu[0]:.0f}, {cpu[1]:.0f} | ≥ {RATIO_GOAL} {verdict} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import run as harness

    options = harness.ratio_options(__doc__.split("\n\n")[0], argv)
    harness.stop_cleanly_on_signals()

    @contextlib.contextmanager
    def served_as(profile: Any, _project: Path) -> Iterator[dict[str, str]]:
        """A database of its own; with tenants, anonymous reads act for the one created."""
        with database_of(profile) as env:
            if profile.answers.get("multi_tenancy"):
                env = {**env, "APP_TENANCY__DEFAULT_TENANT": TENANT}
            yield env

    def create_the_tenant(profile: Any, project: Path) -> None:
        if profile.answers.get("multi_tenancy"):
            create = ["run", "--no-sync", harness.SLUG, "tenants", "create", TENANT]
            harness.run([harness.uv_executable(), *create], project)

    status, results = harness.compare_renders(
        "bench-tenancy-",
        profiles(),
        [ITEM],
        options,
        prepare=served_as,
        installed=create_the_tenant,
    )
    if status:
        return status
    print()
    print(ratio_table(results))
    print(harness.result_lines(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
