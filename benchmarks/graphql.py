"""A GraphQL item query next to the equivalent REST call, in the same run.

Renders the service with the GraphQL slice from a snapshot of the working tree as run.py
does, with the caching slice on (the defaults) and off, installs, migrates and seeds each,
and loads with wrk, one after the other on the same server, round after round
(``--rounds``; the ratio is the median of the rounds'):

* ``GET /api/v1/items/{id}``: the REST read;
* ``GET /graphql?query={ item(id: ...) { every field } }``: the same item through GraphQL
  (a GET, so wrk's one script serves both), the same fields as the REST body.

Every seeded item is read once through REST before the rows, so the cached profile's REST
row answers from a warm cache. Goal: the GraphQL query at 0.7 of REST's RPS or more.

Needs wrk. Run from the repository root::

    uv run python benchmarks/graphql.py [--rounds 3] [--duration 10] [--keep]
"""

from __future__ import annotations

import sys
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RATIO_GOAL = 0.7
FIELDS = "id name description priceCents quantity createdBy version createdAt updatedAt"
# wrk.lua puts each seeded id where "{id}" stands; the query's own braces are escaped.
GRAPHQL_PATH = "/graphql?query=" + urllib.parse.quote("{ item(id: ", safe="") + "{id}"
GRAPHQL_PATH += urllib.parse.quote(") { " + FIELDS + " } }", safe="")
TARGETS = [("rest item", "/api/v1/items/{id}"), ("graphql item", GRAPHQL_PATH)]


def profiles() -> list[Any]:
    import run as harness  # benchmarks/run.py: render, install, serve, load, tables

    quiet = {
        **harness.BASE_ANSWERS,
        "metrics": False,
        "tracing": False,
        "graphql": True,
        # Its per-client limits would refuse most of one client's load: measured apart.
        "request_protection": False,
    }
    return [
        harness.Profile("graphql", quiet),
        harness.Profile("graphql-uncached", {**quiet, "caching": False}),
    ]


def check_the_query(base_url: str, item_id: int) -> None:
    query = GRAPHQL_PATH.replace("{id}", str(item_id))
    with urllib.request.urlopen(f"{base_url}{query}", timeout=10) as answer:
        body = answer.read().decode()
        if answer.status != 200 or '"errors"' in body:
            raise RuntimeError(f"the GraphQL query failed: {body}")


def ratio_table(results: Sequence[Any]) -> str:
    """GraphQL against REST per profile: the medians over the rounds, and the median of
    the rounds' ratios."""
    import run as harness

    lines = [
        "| profile | REST RPS | GraphQL RPS | GraphQL / REST | goal |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    rest, graphql = (name for name, _ in TARGETS)
    for profile in dict.fromkeys(result.target.profile for result in results):
        ratio = harness.median_ratio(results, (profile, graphql), (profile, rest))
        shown = "errors" if ratio is None else f"{ratio:.2f}"
        verdict = "not measured" if ratio is None else "met" if ratio >= RATIO_GOAL else "missed"
        lines.append(
            f"| {profile} | {harness.median_of(results, profile, rest, 'rps'):.0f} "
            f"| {harness.median_of(results, profile, graphql, 'rps'):.0f} | {shown} "
            f"| ≥ {RATIO_GOAL} {verdict} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import run as harness

    options = harness.ratio_options(__doc__.split("\n\n")[0], argv)
    harness.stop_cleanly_on_signals()

    def check(base_url: str, ids: Sequence[int]) -> None:
        check_the_query(base_url, ids[0])

    status, results = harness.compare_renders(
        "bench-graphql-", profiles(), TARGETS, options, check=check
    )
    if status:
        return status
    print()
    print(ratio_table(results))
    print(harness.result_lines(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
