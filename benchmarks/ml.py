"""What the model serving slice costs: predictions per second and latency of the example
model called directly, through ``ModelServer.predict`` in process, and over HTTP, with
micro-batching off and on.

Renders the template from a snapshot of the working tree (uncommitted changes count) with
``ml_serving=true`` and the other answers the defaults (SQLite; metrics, tracing, request
protection on), installs it with ``uv sync --no-dev``, migrates it, mints an admin token
(``token --role admin``: the service admin role is exempt from the default rate limit) and
registers the example model (``models train-example``: the iris classifier, a scaled
logistic regression, as champion v1), all with run.py's helpers. Then:

* **In process.** This file runs again with the render's Python (``--measure``), which
  imports the service's own modules, on uvloop (as uvicorn runs it):

  - *the limit*: the model called directly, ``model.predict_proba`` on one row and on
    batches of 32, 100 and 256 rows (``example.train()``: the same model the command
    registered), and the slice's ``SklearnPredictor.predict`` (the same call, and the
    answers built as dicts); each call timed on its own, the rows taking turns;
  - *the request path's steps*, each timed on its own: the signature check
    (``rows_array``), the hop to an inference thread (``anyio.to_thread.run_sync`` of a
    no-op under a 2-thread limiter), ``MicroBatcher.predict`` with no wait around a no-op
    model and around the predictor, the metrics observer, the drift window, parsing the
    request body and building the response (``PredictResponse``, serialised as FastAPI
    does with ``response_model_exclude_none``);
  - *the server*: ``create_app`` with its lifespan entered (the model loaded from the
    registry; tracing off: nothing to export to), then ``server.predict("iris", rows,
    ...)`` from 1, 8, 32 and 64 concurrent callers (tasks, each sending its next request
    when its answer comes: a closed loop), one row per request and also 100, for
    ``--seconds`` per cell after a short untimed warm-up, once per ``batch_wait_ms`` (0:
    no micro-batching; 2, the default; 5). Predictions/s, each request's latency, the
    batcher's ``calls`` and ``requests`` counters (requests per model call) and the
    process's CPU per prediction.

* **Over HTTP.** The render served by uvicorn with run.py's options (one worker,
  ``APP_LOGGING__LEVEL=WARNING``, traces exported to run.py's OTLP sink, request
  protection's cap on one client's requests in progress raised from 32 to 1,000: wrk is one
  client), once per ``APP_ML__BATCH_WAIT_MS`` (0 and 2), loaded with wrk through
  ``wrk.lua`` (1 thread, ``--connections`` 1, 8, 32, 64): ``POST
  /api/v1/models/iris/predict`` with the bearer token and one row (``input``), and at 1 and
  32 connections 100 rows (``inputs``). Requests per model call from the
  slice's ``app_ml_batch_requests`` histogram on ``/metrics`` (before and after each row,
  its warm-up included). ``GET /health/live`` once, for the server's floor (the probe is
  answered before the service's middleware).

No timing is asserted; the tables print the figures and their ratios: in process against
the direct call (the limit), micro-batched against not, over HTTP against in process.

Needs ``uv`` and wrk. Run from the repository root::

    uv run python benchmarks/ml.py [--seconds 3] [--duration 10] [--pin] [--json out.json]

About 6 minutes on 2 cores; results and findings in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import inspect
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PACKAGE = "bench_service"
MODEL = "iris"
PREDICT_PATH = f"/api/v1/models/{MODEL}/predict"
WAITS = (0.0, 2.0, 5.0)  # batch_wait_ms in process
HTTP_WAITS = (0.0, 2.0)  # APP_ML__BATCH_WAIT_MS over HTTP
CALLERS = (1, 8, 32, 64)  # concurrent callers in process; wrk connections over HTTP
BIG = 100  # rows of the large request
BIG_CALLERS = (1, 32)  # callers (connections) of the large request's rows
BATCHES = (1, 32, 100, 256)  # rows per direct model call
SECONDS = 3.0  # per in-process cell
WARMUP_SECONDS = 0.5  # untimed, before each in-process cell
CALLS = 5_000  # timed calls per direct row and per step
ROUNDS = 5  # the direct rows and the steps take turns this many times
# wrk's connections all come from one address: request protection's cap on one client's
# requests in progress (32 by default) would refuse the 33rd, and /metrics after a row.
ONE_CLIENT = {"APP_PROTECTION__ABUSE__MAX_CONCURRENT_PER_CLIENT": "1000"}
# Repeatable options: option, destination, type, default, help.
REPEATABLE = (
    ("--wait", "waits", float, WAITS, "batch_wait_ms in process; repeatable"),
    ("--callers", "callers", int, CALLERS, "concurrent callers in process; repeatable"),
    ("--http-wait", "http_waits", float, HTTP_WAITS, "APP_ML__BATCH_WAIT_MS over HTTP; repeatable"),
    ("--connections", "connections", int, CALLERS, "wrk connections; repeatable"),
)
VERSIONED = (
    "numpy", "scikit-learn", "skops", "onnxruntime", "anyio", "fastapi", "pydantic",
    "prometheus-client", "uvloop",
)  # fmt: skip

# --------------------------------------------------------------------------- #
# In the render's venv
# --------------------------------------------------------------------------- #


def service(module: str) -> Any:
    return importlib.import_module(f"{PACKAGE}.{module}")


def iris_rows() -> list[dict[str, float]]:
    """The 150 flowers as request rows: feature name to value."""
    example = service("ml.example")
    features, _ = example.iris()
    return [dict(zip(example.FEATURES, map(float, row), strict=True)) for row in features]


def _summary(samples_ns: Sequence[int]) -> dict[str, float]:
    from events import percentiles  # benchmarks/events.py: p50/p95/p99 in ms

    found = percentiles([sample / 1e9 for sample in samples_ns])
    return {
        "calls": len(samples_ns),
        "p50_us": found["p50_ms"] * 1000,
        "p99_us": found["p99_ms"] * 1000,
        "mean_us": found["mean_ms"] * 1000,
    }


Step = tuple[str, int, Callable[[], Any]]  # name, rows, a call (or one that returns an awaitable)


async def _time_in_turns(steps: Sequence[Step], calls: int) -> list[dict[str, Any]]:
    """Each step called ``calls`` times, each call timed on its own, the steps taking
    turns over ``ROUNDS`` rounds after untimed warm-up calls."""
    samples: dict[str, list[int]] = {name: [] for name, _, _ in steps}
    cpu: dict[str, float] = dict.fromkeys(samples, 0.0)
    clock = time.perf_counter_ns
    per_round = max(1, calls // ROUNDS)
    for _ in range(ROUNDS):
        for name, _, call in steps:
            awaits = inspect.isawaitable(first := call())
            if awaits:
                await first
            for _ in range(max(20, per_round // 10)):
                await call() if awaits else call()
            timed = samples[name]
            spent = time.process_time()
            if awaits:
                for _ in range(per_round):
                    started = clock()
                    await call()
                    timed.append(clock() - started)
            else:
                for _ in range(per_round):
                    started = clock()
                    call()
                    timed.append(clock() - started)
            cpu[name] += time.process_time() - spent
    return [
        {
            "step": name,
            "rows": rows,
            **_summary(samples[name]),
            "cpu_us": cpu[name] / len(samples[name]) * 1e6,
        }
        for name, rows, _ in steps
    ]


async def measure_direct(args: argparse.Namespace) -> dict[str, Any]:
    """The model called directly (the limit), and the request path's steps."""
    import anyio
    import numpy as np

    example = service("ml.example")
    formats = service("ml.formats")
    signature_module = service("ml.signature")
    batching = service("ml.batching")
    schemas = service("ml.schemas")
    drift = service("ml.drift")
    lifespan = service("ml.lifespan")
    settings = service("ml.settings").MlSettings()
    from pydantic import TypeAdapter

    model = example.train()
    features, _ = example.iris()
    features = np.asarray(features, dtype=np.float64)
    rows = iris_rows()
    signature = signature_module.Signature(
        task="classification",
        features=[{"name": name} for name in example.FEATURES],
        classes=[str(label) for label in model.classes_],
    )
    predictor = formats.SklearnPredictor(model, signature)
    training = drift.profile(signature, features)
    window = drift.DriftWindow(signature, training, settings.drift_window)
    observer = lifespan.observer()
    observer.known(MODEL, 1, [str(label) for label in model.classes_], example.FEATURES)
    limiter = anyio.CapacityLimiter(settings.inference_threads)
    batches = {size: np.resize(features, (size, features.shape[1])) for size in BATCHES}
    big_rows = [rows[i % len(rows)] for i in range(BIG)]

    def no_op_model(array: Any) -> list[dict[str, Any]]:
        return [{}] * len(array)

    def quiet(requests: int, rows: int, seconds: float) -> None:
        pass

    def batcher(predict: Callable[[Any], Any]) -> Any:
        return batching.MicroBatcher(
            predict, limiter, max_rows=settings.max_batch_rows, wait_seconds=0, observe=quiet
        )

    no_op_batcher, predictor_batcher = batcher(no_op_model), batcher(predictor.predict)
    one, one_locs = [rows[0]], [("body", "input")]
    big_locs = [("body", "inputs", i) for i in range(BIG)]
    outputs_one, outputs_big = predictor.predict(batches[1]), predictor.predict(batches[BIG])
    response_type = TypeAdapter(schemas.PredictResponse)
    body_one = json.dumps({"input": rows[0]}).encode()
    body_big = json.dumps({"inputs": big_rows}).encode()

    def respond(outputs: list[dict[str, Any]]) -> Callable[[], bytes]:
        single = len(outputs) == 1

        def build() -> bytes:
            predictions = [schemas.prediction_output(output) for output in outputs]
            answer = schemas.PredictResponse(
                model=MODEL, version=1, served_by="champion", prediction_id="x" * 36,
                prediction=predictions[0] if single else None,
                predictions=None if single else predictions,
            )  # fmt: skip
            # What FastAPI does with a returned model (response_model_exclude_none).
            checked = response_type.validate_python(answer)
            return response_type.dump_json(checked, exclude_none=True)

        return build

    def parse(body: bytes) -> Callable[[], Any]:
        return lambda: schemas.PredictRequest.model_validate(json.loads(body))

    def no_op() -> None:
        pass

    direct: list[Step] = [
        *((f"model.predict_proba, {size} row{'s' if size > 1 else ''}", size,
           lambda array=batches[size]: model.predict_proba(array)) for size in BATCHES),
        ("SklearnPredictor.predict, 1 row", 1, lambda: predictor.predict(batches[1])),
        (f"SklearnPredictor.predict, {BIG} rows", BIG, lambda: predictor.predict(batches[BIG])),
    ]  # fmt: skip
    steps: list[Step] = [
        ("parse the body (PredictRequest), 1 row", 1, parse(body_one)),
        (f"parse the body (PredictRequest), {BIG} rows", BIG, parse(body_big)),
        ("signature check (rows_array), 1 row", 1,
         lambda: signature_module.rows_array(signature, one, one_locs)),
        (f"signature check (rows_array), {BIG} rows", BIG,
         lambda: signature_module.rows_array(signature, big_rows, big_locs)),
        ("thread hop (to_thread.run_sync, no-op)", 1,
         lambda: anyio.to_thread.run_sync(no_op, limiter=limiter)),
        ("MicroBatcher.predict, no wait, no-op model", 1,
         lambda: no_op_batcher.predict(batches[1])),
        ("MicroBatcher.predict, no wait, the predictor", 1,
         lambda: predictor_batcher.predict(batches[1])),
        ("metrics observer (predicted + batch), 1 row", 1,
         lambda: (observer.predicted(MODEL, 1, "champion", outputs_one, 0.001),
                  observer.batch(MODEL, 1, 1, 0.001))),
        (f"metrics observer (predicted + batch), {BIG} rows", BIG,
         lambda: (observer.predicted(MODEL, 1, "champion", outputs_big, 0.001),
                  observer.batch(MODEL, 1, BIG, 0.001))),
        ("drift window add, 1 row", 1, lambda: window.add(batches[1])),
        ("build the response, 1 row", 1, respond(outputs_one)),
        (f"build the response, {BIG} rows", BIG, respond(outputs_big)),
    ]  # fmt: skip
    print("  direct calls and steps ...", file=sys.stderr, flush=True)
    return {
        "direct": await _time_in_turns(direct, args.calls),
        "steps": await _time_in_turns(steps, args.calls),
    }


async def _load_in_process(
    server: Any, batcher: Any, rows: Sequence[dict[str, float]], callers: int, size: int,
    seconds: float,
) -> dict[str, Any]:  # fmt: skip
    """``callers`` tasks calling ``server.predict`` with ``size`` rows each, one request
    after another each, for ``seconds``."""
    from events import percentiles

    clock = time.perf_counter
    latencies: list[float] = []
    # Every request's rows, made up front: request n starts at flower n.
    bodies = [[rows[(n + i) % len(rows)] for i in range(size)] for n in range(len(rows))]
    locs = [("body", "inputs", i) for i in range(size)]
    stop = clock() + seconds

    async def caller(n: int) -> None:
        while clock() < stop:
            started = clock()
            _, _, outputs, _ = await server.predict(MODEL, bodies[n % len(bodies)], locs, None)
            latencies.append(clock() - started)
            if len(outputs) != size:
                raise RuntimeError(f"{len(outputs)} answers for {size} rows")
            n += callers

    calls, requests = batcher.calls, batcher.requests
    cpu, started = time.process_time(), clock()
    await asyncio.gather(*(caller(k) for k in range(callers)))
    wall, cpu = clock() - started, time.process_time() - cpu
    calls, requests = batcher.calls - calls, batcher.requests - requests
    predictions = len(latencies) * size
    return {
        "callers": callers,
        "rows_per_request": size,
        "requests": len(latencies),
        "predictions_per_second": predictions / wall,
        "latency": percentiles(latencies),
        "model_calls": calls,
        "requests_per_call": requests / max(calls, 1),
        "cpu_us_per_prediction": cpu / max(predictions, 1) * 1e6,
    }


async def through_the_app(
    app: Any, settings: Any, rows: Sequence[dict[str, float]], calls: int
) -> list[dict[str, Any]]:
    """One caller's requests through the whole app in process (httpx's ASGITransport: no
    socket, no server), next to ``server.predict`` alone, each timed on its own."""
    import httpx

    tokens = service("core.auth.tokens")
    # The service admin role: exempt from the default rate limit, as over HTTP.
    token = tokens.mint_token(settings.auth, "bench", roles=[settings.auth.service_admin_role])
    headers = {"Authorization": f"Bearer {token}"}
    server = app.state.model_server
    one = {"input": rows[0]}
    big = {"inputs": [rows[i % len(rows)] for i in range(BIG)]}
    big_locs = [("body", "inputs", i) for i in range(BIG)]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        plan: list[Step] = [
            ("GET /health/live", 0, lambda: client.get("/health/live")),
            ("ModelServer.predict, 1 row", 1,
             lambda: server.predict(MODEL, [rows[0]], [("body", "input")], None)),
            (f"POST {PREDICT_PATH}, 1 row", 1,
             lambda: client.post(PREDICT_PATH, json=one, headers=headers)),
            (f"ModelServer.predict, {BIG} rows", BIG,
             lambda: server.predict(MODEL, big["inputs"], big_locs, None)),
            (f"POST {PREDICT_PATH}, {BIG} rows", BIG,
             lambda: client.post(PREDICT_PATH, json=big, headers=headers)),
        ]  # fmt: skip
        for name, _, call in plan:
            answer = await call()
            if isinstance(answer, httpx.Response) and answer.status_code != 200:
                raise RuntimeError(f"{name}: {answer.status_code} {answer.text}")
        print("  through the app (ASGI) ...", file=sys.stderr, flush=True)
        return await _time_in_turns(plan, calls)


async def measure_server(args: argparse.Namespace) -> dict[str, Any]:
    """``ModelServer.predict`` of an app with its lifespan entered, per batch wait; with
    no wait, also whole requests through the app."""
    main = service("main")
    core_settings = service("core.settings")
    rows = iris_rows()
    cells: list[dict[str, Any]] = []
    asgi: list[dict[str, Any]] = []
    plan = [(callers, 1) for callers in args.callers] + [(callers, BIG) for callers in BIG_CALLERS]
    for wait in args.waits:
        settings = core_settings.Settings(
            logging={"level": "WARNING"}, tracing={"enabled": False}, ml={"batch_wait_ms": wait}
        )
        app = main.create_app(settings)
        async with app.router.lifespan_context(app):
            server = app.state.model_server
            if server.unready():
                raise RuntimeError(f"the model server is not ready: {server.unready()}")
            batcher = server.route(MODEL).served["champion"].batcher
            if wait == 0:
                asgi = await through_the_app(app, settings, rows, max(ROUNDS, args.calls // 5))
            for callers, size in plan:
                await _load_in_process(server, batcher, rows, callers, size, WARMUP_SECONDS)
                cell = await _load_in_process(server, batcher, rows, callers, size, args.seconds)
                cells.append({"batch_wait_ms": wait, **cell})
                print(
                    f"  wait {wait:g} ms, {callers:>2} callers, {size:>3} rows/request: "
                    f"{cell['predictions_per_second']:,.0f} predictions/s, "
                    f"{cell['requests_per_call']:.1f} requests/call",
                    file=sys.stderr,
                    flush=True,
                )
    return {"server": cells, "asgi": asgi}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from importlib.metadata import version

    from events import run_on_uvloop  # benchmarks/events.py

    ml_settings = service("ml.settings").MlSettings()
    result: dict[str, Any] = {
        "versions": {"python": platform.python_version()} | {n: version(n) for n in VERSIONED},
        "defaults": {
            "batch_wait_ms": ml_settings.batch_wait_ms,
            "max_batch_rows": ml_settings.max_batch_rows,
            "inference_threads": ml_settings.inference_threads,
        },
        "rows": iris_rows()[:BIG],
    }
    if args.measure == "rows":
        return result
    result.update(run_on_uvloop(measure_direct(args)))
    result.update(run_on_uvloop(measure_server(args)))
    return result


# --------------------------------------------------------------------------- #
# Orchestration (the repository's environment)
# --------------------------------------------------------------------------- #


def render(workdir: Path) -> tuple[Path, str]:
    """The render with the slice, installed, migrated, the example model registered; and
    an admin token."""
    import run as harness  # benchmarks/run.py
    from helpers import snapshot_working_tree  # tests/helpers.py, on the path run.py sets

    template = snapshot_working_tree(workdir / "template")
    profile = harness.Profile("ml", {**harness.BASE_ANSWERS, "ml_serving": True}, exports=True)
    project = harness.render_service(template, workdir, profile)
    if "ml_serving: true" not in (project / ".copier-answers.yml").read_text():
        raise RuntimeError("the render's answers do not say ml_serving: true")
    token = harness.install_service(project)
    harness.run(
        [harness.uv_executable(), "run", "--no-sync", harness.SLUG, "models", "train-example"],
        project,
    )
    return project, token


def in_process(project: Path, args: argparse.Namespace) -> tuple[dict[str, Any], float]:
    """This file's ``--measure`` stage in the render's Python: its results, and the share
    of the machine other processes used meanwhile (%)."""
    import run as harness
    from protection import _cpu_clock  # benchmarks/protection.py

    results = project.parent / "in-process.json"
    options = [
        "--measure", "rows" if args.no_in_process else "all", "--results", str(results),
        "--seconds", str(args.seconds), "--calls", str(args.calls),
        *(option for wait in args.waits for option in ("--wait", f"{wait:g}")),
        *(option for callers in args.callers for option in ("--callers", str(callers))),
    ]  # fmt: skip
    before = _cpu_clock()
    command = [str(project / ".venv/bin/python"), str(Path(__file__).resolve()), *options]
    # Its progress lines and the service's log (WARNING: little) to this one's stderr.
    subprocess.run(command, cwd=project, env=harness.child_env(), stdout=sys.stderr, check=True)
    machine, child, wall = (a - b for a, b in zip(_cpu_clock(), before, strict=True))
    others = max(0.0, machine - child) / (wall * (os.cpu_count() or 1)) * 100
    return json.loads(results.read_text()), others


_BATCH = re.compile(r'^app_ml_batch_requests_(sum|count)\{model="iris"\} ([\d.e+]+)$', re.M)


def batch_counters(base_url: str) -> dict[str, float]:
    """The requests the model calls answered so far (sum) and the calls (count)."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    return {kind: float(value) for kind, value in _BATCH.findall(text)}


def check_prediction(base_url: str, body: str, headers: dict[str, str]) -> None:
    request = urllib.request.Request(
        base_url + PREDICT_PATH, data=body.encode(), headers=headers, method="POST"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        found = json.load(answer)
    if answer.status != 200 or not (found.get("prediction") or found.get("predictions")):
        raise RuntimeError(f"POST {PREDICT_PATH}: {answer.status} {found}")


def over_http(
    project: Path, token: str, rows: list[dict[str, float]], workdir: Path, args: argparse.Namespace
) -> list[dict[str, Any]]:
    import run as harness

    options = harness.Options(
        duration=args.duration, warmup=args.warmup, connections=32, keep=args.keep,
        json_path=None, pin=args.pin, profiles=(),
    )  # fmt: skip
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    bodies = {1: json.dumps({"input": rows[0]}), BIG: json.dumps({"inputs": rows[:BIG]})}
    plan = [(connections, 1) for connections in args.connections]
    plan += [(connections, BIG) for connections in BIG_CALLERS]
    app = harness.service_app(project)
    found: list[dict[str, Any]] = []
    with (workdir / "servers.log").open("wb") as log, harness.otlp_sink() as sink:
        for index, wait in enumerate(args.http_waits):
            env = {
                "APP_ML__BATCH_WAIT_MS": f"{wait:g}",
                "OTEL_EXPORTER_OTLP_ENDPOINT": sink.url,
                **ONE_CLIENT,
            }
            label = f"wait {wait:g} ms"
            with harness.serving(
                app, log, options.server_core, APP_LOGGING__LEVEL="WARNING", **env
            ) as server:
                for body in bodies.values():
                    check_prediction(server.base_url, body, headers)
                if index == 0:
                    target = harness.Target("health live", "/health/live", "WARNING", "service")
                    result = harness.load(server, target, [], options)
                    found.append({"result": result, "batch_wait_ms": None, "rows_per_request": 0})
                for connections, size in plan:
                    name = f"predict {size} row{'s' if size > 1 else ''}"
                    target = harness.Target(name, PREDICT_PATH, "WARNING", label)
                    request = ("POST", bodies[size], *(f"{k}: {v}" for k, v in headers.items()))
                    counted = batch_counters(server.base_url)
                    result = harness.load(
                        server, target, [], dataclasses.replace(options, connections=connections),
                        request,
                    )  # fmt: skip
                    after = batch_counters(server.base_url)
                    calls = after["count"] - counted["count"]
                    found.append({
                        "result": result, "batch_wait_ms": wait, "connections": connections,
                        "rows_per_request": size,
                        "requests_per_call": (after["sum"] - counted["sum"]) / max(calls, 1),
                    })  # fmt: skip
        print(f"  the OTLP sink received {sink.received_bytes / 1e6:.1f} MB", file=sys.stderr)
    return found


# --------------------------------------------------------------------------- #
# Report
# --------------------------------------------------------------------------- #


def direct_report(found: dict[str, Any]) -> str:
    lines = [
        "the limit: the model called directly (each call timed on its own, "
        f"{found['direct'][0]['calls']:,} calls per row, the rows taking turns); calls/s "
        "and rows/s: one thread calling back to back at the median time (1/p50)",
        "",
        "| call | rows | p50 µs | p99 µs | mean µs | calls/s | rows/s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in found["direct"]:
        per_second = 1e6 / row["p50_us"]
        lines.append(
            f"| {row['step']} | {row['rows']} | {row['p50_us']:.0f} | {row['p99_us']:.0f} "
            f"| {row['mean_us']:.0f} | {per_second:,.0f} | {per_second * row['rows']:,.0f} |"
        )
    lines += [
        "",
        "the request path's steps, each timed on its own (µs per call; CPU: the process's, "
        "the inference thread's included):",
        "",
        "| step | rows | p50 µs | p99 µs | mean µs | CPU µs |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in found["steps"]:
        lines.append(
            f"| {row['step']} | {row['rows']} | {row['p50_us']:.1f} | {row['p99_us']:.1f} "
            f"| {row['mean_us']:.1f} | {row['cpu_us']:.1f} |"
        )
    return "\n".join(lines)


def asgi_report(found: dict[str, Any]) -> str:
    """Whole requests through the app in process next to ``server.predict`` alone."""
    by = {row["step"]: row for row in found["asgi"]}
    lines = [
        "through the app in process (httpx ASGITransport: no socket; batching off, tracing "
        f"off; one caller, {found['asgi'][0]['calls']:,} requests per row, the rows taking "
        "turns); the app's share: the request's p50 (CPU) minus ModelServer.predict's",
        "",
        "| request | rows | p50 µs | p99 µs | CPU µs | the app's share p50 µs | CPU µs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in found["asgi"]:
        inner = by.get(f"ModelServer.predict, {row['rows']} row{'s' if row['rows'] > 1 else ''}")
        share = ""
        if row["step"].startswith("POST") and inner is not None:
            share = f"{row['p50_us'] - inner['p50_us']:.0f} | {row['cpu_us'] - inner['cpu_us']:.0f}"
        lines.append(
            f"| {row['step']} | {row['rows']} | {row['p50_us']:.0f} | {row['p99_us']:.0f} "
            f"| {row['cpu_us']:.0f} | {share or ' |'} |"
        )
    return "\n".join(lines)


def _direct_p50(found: dict[str, Any], rows: int) -> float:
    """The median µs of ``model.predict_proba`` on ``rows`` rows."""
    return float(
        next(r["p50_us"] for r in found["direct"] if r["rows"] == rows and "proba" in r["step"])
    )


def server_report(found: dict[str, Any], seconds: float) -> str:
    one_row = 1e6 / _direct_p50(found, 1)  # predictions/s of one-row calls, one thread
    big = 1e6 / _direct_p50(found, BIG) * BIG
    off = {
        (c["callers"], c["rows_per_request"]): c for c in found["server"] if c["batch_wait_ms"] == 0
    }
    lines = [
        f"in process: ModelServer.predict, an app with its lifespan entered; {seconds:g} s per "
        "cell (closed loop: each caller sends its next request when its answer comes); "
        "vs limit: predictions/s against model.predict_proba called one row at a time, back "
        "to back at its median time "
        f"({one_row:,.0f}/s; 100-row requests: against {BIG}-row calls, {big:,.0f} rows/s)",
        "",
        "| batch wait ms | callers | rows/request | predictions/s | p50 ms | p99 ms "
        "| requests/call | CPU µs/prediction | vs limit | vs no batching |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for cell in found["server"]:
        size = cell["rows_per_request"]
        limit = one_row if size == 1 else big
        base = off.get((cell["callers"], size))
        versus = (
            f"{cell['predictions_per_second'] / base['predictions_per_second']:.2f}"
            if base is not None
            else ""
        )
        lines.append(
            f"| {cell['batch_wait_ms']:g} | {cell['callers']} | {size} "
            f"| {cell['predictions_per_second']:,.0f} | {cell['latency']['p50_ms']:.2f} "
            f"| {cell['latency']['p99_ms']:.2f} | {cell['requests_per_call']:.1f} "
            f"| {cell['cpu_us_per_prediction']:.0f} "
            f"| {cell['predictions_per_second'] / limit:.2f} | {versus} |"
        )
    single = off.get((1, 1))
    if single is not None:
        p50_us = single["latency"]["p50_ms"] * 1000
        model = next(r["p50_us"] for r in found["direct"] if r["rows"] == 1)
        lines += [
            "",
            f"one caller, no batching: a request takes {p50_us:.0f} µs (p50) where the model "
            f"call takes {model:.0f} µs: the slice adds {p50_us - model:.0f} µs "
            f"({p50_us / model:.2f} times the call)",
        ]
    return "\n".join(lines)


def http_report(rows: list[dict[str, Any]], found: dict[str, Any] | None) -> str:
    in_process = {}
    if found is not None:
        in_process = {
            (c["batch_wait_ms"], c["callers"], c["rows_per_request"]): c for c in found["server"]
        }
    off = {
        (r["connections"], r["rows_per_request"]): r["result"].stats.rps
        for r in rows
        if r["batch_wait_ms"] == 0
    }
    lines = [
        "over HTTP: uvicorn, 1 worker; wrk, 1 thread; requests/call from /metrics "
        "(app_ml_batch_requests, the warm-up included); vs in process: predictions/s "
        "against the in-process cell with as many callers and the same wait",
        "",
        "| batch wait ms | connections | rows/request | requests/s | predictions/s | p50 ms "
        "| p99 ms | requests/call | server CPU µs/request | errors | vs in process "
        "| vs no batching |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        result, size = row["result"], row["rows_per_request"]
        stats = result.stats
        if not size:
            lines.append(
                f"| `GET /health/live` | 32 | | {stats.rps:,.0f} | | {stats.p50_ms:.2f} "
                f"| {stats.p99_ms:.2f} | | {result.cpu_us_per_request:.0f} "
                f"| {stats.error_count} | | |"
            )
            continue
        cell = in_process.get((row["batch_wait_ms"], row["connections"], size))
        versus = (
            f"{stats.rps * size / cell['predictions_per_second']:.2f}" if cell is not None else ""
        )
        base = off.get((row["connections"], size))
        batched = f"{stats.rps / base:.2f}" if base else ""
        lines.append(
            f"| {row['batch_wait_ms']:g} | {row['connections']} | {size} | {stats.rps:,.0f} "
            f"| {stats.rps * size:,.0f} | {stats.p50_ms:.2f} | {stats.p99_ms:.2f} "
            f"| {row['requests_per_call']:.1f} | {result.cpu_us_per_request:.0f} "
            f"| {stats.error_count} | {versus} | {batched} |"
        )
    return "\n".join(lines)


def benchmark(workdir: Path, args: argparse.Namespace) -> None:
    import run as harness

    print(f"rendering and installing in {workdir} ...", file=sys.stderr, flush=True)
    project, token = render(workdir)
    print("in process ...", file=sys.stderr, flush=True)
    found, others = in_process(project, args)
    http: list[dict[str, Any]] = []
    versions = found["versions"]
    if not args.no_http:
        print("over HTTP ...", file=sys.stderr, flush=True)
        http = over_http(project, token, found["rows"], workdir, args)
        versions = {**harness.versions(project / ".venv/bin/python"), **versions}

    print()
    print(f"date:     {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"machine:  {os.cpu_count()} cores, {platform.machine()}, {harness.cpu_model()}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    defaults = found["defaults"]
    print(
        f"slice defaults: batch_wait_ms {defaults['batch_wait_ms']:g}, max_batch_rows "
        f"{defaults['max_batch_rows']}, inference_threads {defaults['inference_threads']}"
    )
    print(
        f"load average before the run: {args.load_before}; other processes' CPU during the "
        f"in-process part: {others:.0f} % of the machine"
        + ("" if args.pin else "; over HTTP: not pinned, server and wrk share the cores")
    )
    if not args.no_in_process:
        print()
        print(direct_report(found))
        print()
        print(server_report(found, args.seconds))
        print()
        print(asgi_report(found))
    if http:
        print()
        print(http_report(http, None if args.no_in_process else found))
        results = [row["result"] for row in http]
        print(harness.caveats(results))
        noisy = max(result.others_cpu_percent for result in results)
        print(f"other processes' CPU during the HTTP rows: at most {noisy:.0f} % of the machine")
    if others > harness.NOISY_PERCENT:
        print(
            f"\nOther processes used {others:.0f} % of the machine during the in-process part: "
            "its figures are low and noisy; rerun on a quiet machine."
        )
    if args.json_path:
        payload: dict[str, Any] = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "versions": versions,
            "defaults": defaults,
            "others_percent_in_process": others,
            "settings": {k: v for k, v in vars(args).items() if k not in {"json_path", "measure"}},
            **{key: found[key] for key in ("direct", "steps", "server", "asgi") if key in found},
            "http": [
                {
                    **{k: v for k, v in row.items() if k != "result"},
                    **dataclasses.asdict(row["result"].target),
                    **dataclasses.asdict(row["result"].stats),
                    "cpu_us_per_request": row["result"].cpu_us_per_request,
                    "others_cpu_percent": row["result"].others_cpu_percent,
                }
                for row in http
            ],
        }
        args.json_path.parent.mkdir(parents=True, exist_ok=True)
        args.json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=SECONDS, help="seconds per in-process cell"
    )
    parser.add_argument(
        "--calls", type=int, default=CALLS, help="timed calls per direct row and per step"
    )
    for option, dest, kind, default, what in REPEATABLE:
        listed = ", ".join(f"{value:g}" for value in default)
        parser.add_argument(
            option, action="append", type=kind, dest=dest, help=f"{what} (default: {listed})"
        )
    parser.add_argument("--duration", type=int, default=10, help="seconds per HTTP row")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured seconds per HTTP row")
    parser.add_argument(
        "--pin", action="store_true", help="pin the server to core 0 and wrk to core 1 (as run.py)"
    )
    parser.add_argument("--no-in-process", action="store_true", help="skip the in-process part")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP part")
    parser.add_argument("--keep", action="store_true", help="keep the render and servers.log")
    parser.add_argument("--json", type=Path, dest="json_path", help="also write results here")
    parser.add_argument("--measure", choices=("all", "rows"), help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for _, dest, _, default, _ in REPEATABLE:
        setattr(args, dest, list(getattr(args, dest) or default))
    if (
        args.seconds <= 0
        or args.calls < ROUNDS
        or min(*args.callers, *args.connections, args.duration) < 1
        or min(*args.waits, *args.http_waits, args.warmup) < 0
    ):
        parser.error(
            f"--seconds, --callers, --connections and --duration must be positive, --calls "
            f"at least {ROUNDS}, --wait, --http-wait and --warmup not negative"
        )
    if 0 not in args.waits:
        args.waits.insert(0, 0.0)  # the baseline of 'vs no batching'

    if args.measure:  # the second stage, in the render's venv: results as JSON in a file
        args.results.write_text(json.dumps(measure(args), default=str))
        return 0

    sys.path.insert(0, str(HERE))
    import run as harness

    if not args.no_http and shutil.which("wrk") is None:
        sys.exit("wrk not found: apt-get install -y wrk (or --no-http)")
    if args.pin and ((os.cpu_count() or 1) < 2 or shutil.which("taskset") is None):
        parser.error("--pin needs 2 cores and taskset (util-linux)")
    args.load_before = " ".join(f"{v:.2f}" for v in os.getloadavg())
    harness.stop_cleanly_on_signals()
    return harness.in_workdir(
        "bench-ml-",
        keep=args.keep,
        kept="render, servers.log",
        benchmark=lambda workdir: benchmark(workdir, args),
    )


if __name__ == "__main__":
    sys.exit(main())
