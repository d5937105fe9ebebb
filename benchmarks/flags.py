"""Time one feature-flag evaluation through the OpenFeature client in the rendered service.

Renders the default answers (built-in flag provider, metrics and tracing on) from a
snapshot of the working tree as run.py does, installs the render with ``uv sync --no-dev``
and runs this file again with the render's Python (``--measure``), which imports the
service's own provider, flag schema and hooks.

The flag is a boolean with three targeting rules, none of which matches the context, and
a 25 % fallthrough rollout: the longest path (every condition, then the bucketing hash).
It is read with ``client.get_boolean_value`` inside a request's transaction context, set
up as the service's flag middleware does it (the service's propagator, a signed-in
caller, the context built on the first read), warm, and every call is timed on its own
with ``time.perf_counter_ns``. Goal: a median under 20 µs.

Run from the repository root::

    uv run python benchmarks/flags.py [--iterations 100000] [--keep] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

GOAL_US = 20.0
ITERATIONS = 100_000
WARMUP = 500  # per row and round
ROUNDS = 20
FLAG_KEY = "new-checkout"
# Three rules (four conditions) the context below fails, then a 25 % rollout.
DEFINITION: dict[str, Any] = {
    "key": FLAG_KEY,
    "type": "boolean",
    "variants": {"on": True, "off": False},
    "default_variant": "off",
    "rules": [
        {
            "name": "beta testers",
            "conditions": [{"attribute": "groups", "operator": "in", "values": ["beta", "qa"]}],
            "serve": {"variant": "on"},
        },
        {
            "name": "enterprise in Oceania",
            "conditions": [
                {"attribute": "country", "operator": "in", "values": ["NZ", "AU"]},
                {"attribute": "plan", "operator": "in", "values": ["enterprise"]},
            ],
            "serve": {"variant": "on"},
        },
        {
            "name": "test accounts",
            "conditions": [
                {
                    "attribute": "targetingKey",
                    "operator": "starts_with",
                    "values": ["test-", "internal-"],
                }
            ],
            "serve": {"rollout": {"weights": {"on": 50, "off": 50}}},
        },
    ],
    "fallthrough": {"weights": {"on": 25, "off": 75}},
}
STATIC: dict[str, Any] = {
    "key": "static-flag",
    "type": "boolean",
    "variants": {"on": True, "off": False},
    "default_variant": "on",
}
# What flags/context.py builds for a signed-in user.
CONTEXT: dict[str, Any] = {
    "anonymous": False,
    "groups": ["staff"],
    "roles": ["user"],
    "plan": "pro",
    "country": "DE",
}
TARGETING_KEY = "user-42"

HERE = Path(__file__).resolve().parent
# Puts a row's conditions in place (hooks, a span) for the calls made inside it.
Arrange = Callable[[], contextlib.AbstractContextManager[object]]


# --------------------------------------------------------------------------- #
# In the render's venv
# --------------------------------------------------------------------------- #


def _time_calls(call: Callable[[], object], iterations: int) -> list[int]:
    """Nanoseconds per call, each call timed on its own after a short warm-up."""
    for _ in range(WARMUP):
        call()
    clock = time.perf_counter_ns
    samples = [0] * iterations
    for n in range(iterations):
        started = clock()
        call()
        samples[n] = clock() - started
    return samples


def _summary(samples: list[int]) -> dict[str, float]:
    samples = sorted(samples)
    count = len(samples)
    return {
        "median_us": samples[count // 2] / 1000,
        "p99_us": samples[min(count - 1, count * 99 // 100)] / 1000,
        "mean_us": sum(samples) / count / 1000,
    }


def measure(package: str, iterations: int) -> list[dict[str, Any]]:
    """The rows, measured in this process (the render's Python, the service installed)."""
    from fastapi import Request
    from openfeature import api
    from opentelemetry.sdk.trace import TracerProvider

    provider_module = importlib.import_module(f"{package}.flags.builtin.provider")
    schemas = importlib.import_module(f"{package}.flags.builtin.schemas")
    hooks = importlib.import_module(f"{package}.flags.hooks")
    context = importlib.import_module(f"{package}.flags.context")
    principal = importlib.import_module(f"{package}.core.auth.principal")

    provider = provider_module.BuiltinProvider()
    provider.replace(schemas.FlagDefinition.model_validate(d) for d in (DEFINITION, STATIC))
    api.set_transaction_context_propagator(context.RequestContextPropagator())
    api.set_provider_and_wait(provider)
    caller = principal.Principal(
        subject=TARGETING_KEY,
        roles=frozenset(CONTEXT["roles"]),
        groups=frozenset(CONTEXT["groups"]),
        claims={"plan": CONTEXT["plan"], "country": CONTEXT["country"]},
    )
    request = Request({"type": "http", "method": "GET", "path": "/", "headers": []})
    # What FlagContextMiddleware sets for a request; the first read builds the context.
    context._request_targeting.set(context.RequestTargeting(request, caller))
    client = api.get_client()
    built = api.get_transaction_context()
    if (built.targeting_key, dict(built.attributes)) != (TARGETING_KEY, CONTEXT):
        raise RuntimeError(f"the service built another context than the benchmark's: {built}")
    details = client.get_boolean_details(FLAG_KEY, False)
    if details.reason != "SPLIT" or details.error_code is not None:
        raise RuntimeError(f"the benchmark flag did not take the rollout path: {details}")

    def flag() -> bool:
        return client.get_boolean_value(FLAG_KEY, False)

    def static() -> bool:
        return client.get_boolean_value("static-flag", False)

    service_hooks = hooks.flag_hooks()
    tracer = TracerProvider().get_tracer(__name__)

    def hooks_off() -> contextlib.AbstractContextManager[object]:
        api.clear_hooks()
        return contextlib.nullcontext()

    def hooks_on() -> contextlib.AbstractContextManager[object]:
        api.clear_hooks()
        api.add_hooks(service_hooks)
        return contextlib.nullcontext()

    def hooks_on_in_span() -> contextlib.AbstractContextManager[object]:
        hooks_on()
        # In a sampled request the hook also writes a span event per evaluation.
        return tracer.start_as_current_span("request")

    plan: list[
        tuple[str, Callable[[], contextlib.AbstractContextManager[object]], Callable[[], object]]
    ]
    plan = [
        ("static flag, no hooks (the SDK's own cost)", hooks_off, static),
        ("3 rules + rollout, no hooks", hooks_off, flag),
        ("3 rules + rollout, the service's hook (no span)", hooks_on, flag),
        ("3 rules + rollout, the service's hook, in a sampled span", hooks_on_in_span, flag),
    ]
    # The rows take turns, a slice of the calls each per round: a noisy neighbour or a
    # frequency change then spreads over every row instead of skewing one of them.
    samples: dict[str, list[int]] = {name: [] for name, _, _ in plan}
    per_round = max(1, iterations // ROUNDS)
    for _ in range(ROUNDS):
        for name, arrange, call in plan:
            with arrange():
                samples[name] += _time_calls(call, per_round)
    rows = [{"row": name, **_summary(samples[name])} for name, _, _ in plan]
    for row in rows:
        print(f"  {row['row']}: {row['median_us']:.1f} µs median", file=sys.stderr, flush=True)
    api.shutdown()
    return rows


# --------------------------------------------------------------------------- #
# Orchestration (the repository's environment)
# --------------------------------------------------------------------------- #


def render_and_install(workdir: Path) -> tuple[Path, str]:
    """The default answers rendered and installed; the project and its package name."""
    sys.path.insert(0, str(HERE))
    import run as load_benchmark  # benchmarks/run.py: the same render, snapshot and uv
    from helpers import snapshot_working_tree  # tests/helpers.py, on the path run.py sets

    template = snapshot_working_tree(workdir / "template")
    profile = load_benchmark.Profile("flags", dict(load_benchmark.BASE_ANSWERS))
    project = load_benchmark.render_service(template, workdir, profile)
    load_benchmark.run([load_benchmark.uv_executable(), "sync", "--no-dev"], project)
    answers = (project / ".copier-answers.yml").read_text()
    if "flag_provider: builtin" not in answers:
        raise RuntimeError("the default answers no longer give the built-in flag provider")
    return project, load_benchmark.SERVICE_APP.split(".", 1)[0]


def report(rows: Sequence[dict[str, Any]], versions: dict[str, str], iterations: int) -> str:
    lines = [
        f"python {versions['python']}, openfeature-sdk {versions['openfeature-sdk']}, "
        f"prometheus-client {versions['prometheus-client']}, {os.cpu_count()} cores, "
        f"{platform.machine()}",
        f"client.get_boolean_value, {iterations:,} calls per row, each timed on its own "
        f"(warm-up {WARMUP:,}), the rows taking turns over {ROUNDS} rounds",
        "",
        f"{'row':<58} {'median µs':>10} {'p99 µs':>8} {'mean µs':>8}  "
        f"goal: median < {GOAL_US:g} µs",
    ]
    for r in rows:
        over = r["median_us"] - GOAL_US
        verdict = "met" if over < 0 else f"missed by {over:.1f} µs"
        lines.append(
            f"{r['row']:<58} {r['median_us']:>10.1f} {r['p99_us']:>8.1f} {r['mean_us']:>8.1f}  "
            f"{verdict}"
        )
    by_name = {r["row"]: r for r in rows}
    bare = by_name["3 rules + rollout, no hooks"]["median_us"]
    hooked = by_name["3 rules + rollout, the service's hook (no span)"]["median_us"]
    lines += ["", f"the hook adds {hooked - bare:.1f} µs to the median"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=ITERATIONS, help="timed calls per row")
    parser.add_argument("--keep", action="store_true", help="keep the render")
    parser.add_argument("--json", type=Path, dest="json_path", help="also write results here")
    parser.add_argument("--measure", metavar="PACKAGE", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.iterations < 100:
        parser.error("--iterations must be at least 100")

    if args.measure:  # the second stage, in the render's venv: rows as JSON on stdout
        from importlib.metadata import version

        rows = measure(args.measure, args.iterations)
        names = ("openfeature-sdk", "prometheus-client")
        versions = {"python": platform.python_version(), **{n: version(n) for n in names}}
        print(json.dumps({"rows": rows, "versions": versions}))
        return 0

    workdir = Path(tempfile.mkdtemp(prefix="bench-flags-"))
    try:
        print(f"rendering and installing in {workdir} ...", file=sys.stderr, flush=True)
        project, package = render_and_install(workdir)
        print("measuring:", file=sys.stderr, flush=True)
        command = [
            str(project / ".venv/bin/python"), str(Path(__file__).resolve()),
            "--measure", package, "--iterations", str(args.iterations),
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "UV_PROJECT"}}
        done = subprocess.run(
            command, cwd=project, env=env, stdout=subprocess.PIPE, text=True, check=True
        )
        result = json.loads(done.stdout)
        print()
        print(report(result["rows"], result["versions"], args.iterations))
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
