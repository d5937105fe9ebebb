"""End to end: the rendered service, scraped by a real Prometheus, fills every dashboard.

The ``sqlite`` profile (metrics and tracing on) is rendered and installed as the profile
tests do (the same render and venv when both run). Two instances of the service run on
loopback ports, one with a single process and one with ``--workers 2`` (prometheus_client's
multiprocess mode), each with its own migrated SQLite database. A real Prometheus scrapes
both every second under the job the rendered ``prometheus.yml`` gives the service, with
exemplar storage on and the rendered recording and alerting rules loaded. Their group
intervals (1m, 5m) are shortened to 1 s so that every recording rule has a value within
seconds; the expressions are not touched.

After a few seconds of healthy traffic (2xx, 304, 401, 404, 422; no 5xx; with the built-in
flag provider also a flag created through the admin API and evaluated through OFREP, plus
a key no flag has; with experiments an experiment started there, new visitors' arms read
over OFREP and a conversion per round; with outbound calls, the single-process instance
also looks each new item up in an enrichment service that then fails, so its breaker opens
and closes; with request protection also a request refused at the edge and one scored
as an anomaly, both outside the API; with GraphQL an operation of each outcome; with model
serving, predictions of the example iris classifier, whose second version is made its
shadow through the admin API, and of a regressor, each instance's processes measuring
drift every second from 10 inputs) the test checks through Prometheus's HTTP API that:

* every target of the job is up and has been scraped several times;
* each instance's request counter and latency histogram count every API request sent to
  it exactly once (in multiprocess mode whichever worker answers the scrape);
* every rendered rule group is loaded and every rule evaluates with health "ok";
* every PromQL expression of every rendered Grafana dashboard (panels inside rows
  included, Grafana's variables substituted) returns data, and so do the dashboards'
  variable queries and the trace-to-metrics queries of the provisioned data sources: a
  panel that shows "No data" for a healthy service is a bug;
* the latency histogram of each instance carries exemplars with a ``trace_id``, every
  dashboard query drawn with exemplars gets some, and their trace ids are ones the service
  wrote in its own log lines;
* with request protection, its refusals and anomalies, and with GraphQL, its operations by
  name and outcome, are counted once per instance.

A third instance runs under a job of its own with its items table dropped, so every API
request to it fails: its first 500s must show in the SLO error ratios (the service exports
the 5xx series at 0 before any failure; a series born with its first failure would have
increased by nothing).

The stack comes up once per module; each test checks one promise and reports all its
problems together. Prometheus is Debian's ``prometheus``
package (``.ci/run`` installs it); without it the test skips, or fails under CI=true.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import (
    EnrichmentService,
    OtlpReceiver,
    RenderCache,
    find_python,
    find_uv,
    locked,
    project_env,
    read_answers,
    require,
    run_scratch_dir,
)
from matrix import PROFILES, effective_answers

# One worker sets the stack up and runs every test on it (scripts/test distributes by
# group): a module fixture is set up again in each worker that runs one of its tests.
pytestmark = [pytest.mark.profile, pytest.mark.xdist_group("observability-e2e")]

PROFILE = "sqlite"  # metrics and tracing on; test_profiles.py uses the same render
PROMETHEUS = ("/usr/bin/prometheus", "prometheus")  # the first one found

SYNC_TIMEOUT = 900  # seconds: the first `uv sync` downloads the service's dependencies
STARTUP_TIMEOUT = 60  # seconds, for a service or Prometheus to answer
SETTLE_TIMEOUT = 60  # seconds, for targets to come up, or the last scrape and evaluation
TRAFFIC_ROUNDS = 8  # one round of requests per instance per second
MIN_SCRAPES = 5  # scrapes of every instance before the queries

# The instances of the service in the one job: name -> uvicorn worker processes.
INSTANCES: dict[str, int] = {"single": 1, "workers": 2}
# With outbound calls, the instance that looks items up in an enrichment service. One
# process only: the breaker and the fallback's cached answers are per process.
ENRICHED_INSTANCE = "single"
ENRICHMENT = "APP_OUTBOUND__DEPENDENCIES__ENRICHMENT__"
# The breaker opens after two failed attempts of three, and half-opens 0.2 s later.
ENRICHMENT_SETTINGS = {"BREAKER__MINIMUM_CALLS": "3", "BREAKER__OPEN_SECONDS": "0.2"}

# Grafana's interval variables: the data is less than a minute old, so a minute covers
# all of it. $__range is the dashboard's own time range.
INTERVAL = "1m"
INTERVAL_SECONDS = 60
DEFAULT_RANGE = "1h"
DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}

TRACE_ID = re.compile(r"[0-9a-f]{32}")
# $name, ${name}, ${name:format}, [[name]]; $1 (a label_replace group) is no variable.
GRAFANA_VARIABLE = re.compile(
    r"\$\{(?P<braced>\w+)(?::[^}]*)?\}|\$(?P<plain>[A-Za-z_]\w*)|\[\[(?P<old>\w+)(?::[^\]]*)?\]\]"
)
LABEL_VALUES = re.compile(r"\s*label_values\(\s*(?:(?P<match>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*")


# --------------------------------------------------------------------------- processes


# uvicorn names the port it bound: how a service started on port 0 tells which it got.
LISTENING = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)")


def _bound_port(process: subprocess.Popen[bytes], log: Path, what: str) -> int:
    """The port ``process`` bound, read from its log: nothing else can hold it."""
    _wait_until(lambda: LISTENING.search(log.read_bytes()) is not None, process, log, what)
    bound = LISTENING.search(log.read_bytes())
    assert bound is not None
    return int(bound.group(1))


@contextmanager
def _running(
    args: list[str], *, cwd: Path, env: Mapping[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """A process group (uv, the service, its workers), stopped with SIGTERM on exit."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            args,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield process
        finally:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=30)
            except ProcessLookupError:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


def _run(args: list[str], *, cwd: Path, env: Mapping[str, str], timeout: float) -> str:
    try:
        result = subprocess.run(
            args, cwd=cwd, env=dict(env), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"$ {' '.join(args)} timed out after {exc.timeout}s")
    assert result.returncode == 0, (
        f"$ {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout


def _tail(log: Path, lines: int = 60) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def _wait_until(
    ready: Callable[[], bool], process: subprocess.Popen[bytes], log: Path, what: str
) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not ready():
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not answer within {STARTUP_TIMEOUT}s:\n{_tail(log)}")
        time.sleep(0.2)


# --------------------------------------------------------------------------- HTTP


# Every address here is on loopback: never through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Reply:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _http(
    method: str,
    url: str,
    *,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10,
) -> Reply:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=timeout) as reply:
            return Reply(reply.status, _lower(reply.headers.items()), reply.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, _lower(exc.headers.items()), exc.read())


def _lower(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers}


def _is_service(url: str, service_name: str) -> Callable[[], bool]:
    """Ready, and this service: not another process that got the port."""

    def check() -> bool:
        try:
            if _http("GET", f"{url}/health/ready", timeout=2).status != 200:
                return False
            document = _http("GET", f"{url}/openapi.json", timeout=2)
            return document.status == 200 and document.json()["info"]["title"] == service_name
        except (OSError, ValueError, KeyError):
            return False

    return check


def _is_prometheus_of(prometheus: Prometheus, config: Path) -> Callable[[], bool]:
    """Ready, and running this test's configuration."""

    def check() -> bool:
        try:
            if _http("GET", f"{prometheus.base}/-/ready", timeout=2).status != 200:
                return False
            flags = prometheus.call("/api/v1/status/flags", {}).get("data", {})
            return bool(flags.get("config.file") == str(config))
        except (OSError, ValueError):
            return False

    return check


class Prometheus:
    """The HTTP API of the Prometheus under test."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def call(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        """The API's answer document: ``status``, then ``data`` or ``error``."""
        reply = _http("GET", f"{self.base}{path}?{urllib.parse.urlencode(params)}")
        document: dict[str, Any] = reply.json()
        return document

    def data(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        document = self.call(path, params or {})
        assert document.get("status") == "success", f"GET {path} {params}: {document}"
        return document["data"]

    def targets(self, job: str) -> list[dict[str, Any]]:
        active = self.data("/api/v1/targets", {"state": "active"})["activeTargets"]
        return [t for t in active if t["labels"].get("job") == job]

    def rule_groups(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = self.data("/api/v1/rules")["groups"]
        return groups


def _unix(timestamp: str) -> float:
    """A timestamp of Prometheus's API (RFC 3339, nanoseconds) as unix time; 0 for never."""
    match = re.fullmatch(r"(\d{4}-.+?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", timestamp)
    assert match, f"not an RFC 3339 timestamp: {timestamp!r}"
    whole, fraction, zone = match.groups()
    if whole.startswith("0001-"):
        return 0.0
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return moment.timestamp() + (float(f"0.{fraction}") if fraction else 0.0)


# --------------------------------------------------------------------------- the stack


@dataclass
class Instance:
    name: str
    workers: int
    log: Path
    port: int = 0  # the port the instance bound, once it has started

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"


@dataclass
class Stack:
    project: Path
    job: str
    service_name: str  # service.name of the spans
    token: str
    instances: list[Instance]
    failing: Instance  # under the job <job>-failing; every API request to it fails
    prometheus: Prometheus
    prometheus_log: Path
    rule_groups: dict[str, str]  # group name -> the rendered file it comes from
    started: float  # unix time before Prometheus started
    flags: bool  # the built-in flag provider: admin API and OFREP endpoints
    # The outbound slice: the single-process instance looks items up in ``enrichment``.
    enrichment: EnrichmentService | None
    protection: bool  # the request protection slice: refusals and anomalies are counted
    experiments: bool  # the experiments slice (with the built-in flags): arms over OFREP
    graphql: bool  # the GraphQL slice: operations of every outcome
    ml: bool  # the model serving slice: a classifier with a shadow, and a regressor


def _prometheus_config(
    project: Path, job: str, targets: list[str], failing_target: str, workdir: Path
) -> tuple[Path, dict[str, str]]:
    """The rendered job and rules, for ``targets``, with 1 s scrape and rule intervals.

    ``failing_target`` gets the same job under the name ``<job>-failing``.
    """
    rendered_dir = project / "observability" / "prometheus"
    rendered = yaml.safe_load((rendered_dir / "prometheus.yml").read_text())
    jobs = {c["job_name"]: c for c in rendered.get("scrape_configs") or []}
    assert job in jobs, (
        f"observability/prometheus/prometheus.yml has no scrape job {job!r} (the project "
        f"slug); its jobs are {sorted(jobs)}"
    )
    scrape = {
        key: value
        for key, value in jobs[job].items()
        if key not in {"static_configs", "scrape_interval", "scrape_timeout"}
    }
    scrape["static_configs"] = [{"targets": targets}]

    rules_dir = workdir / "rules"
    rules_dir.mkdir()
    groups: dict[str, str] = {}
    rule_files: list[str] = []
    for pattern in rendered.get("rule_files") or []:
        sources = sorted(rendered_dir.glob(pattern))
        assert sources, f"prometheus.yml's rule_files pattern {pattern!r} matches no file"
        for source in sources:
            document = yaml.safe_load(source.read_text())
            for group in document["groups"]:
                assert group["name"] not in groups, f"rule group {group['name']!r} twice"
                groups[group["name"]] = source.relative_to(project).as_posix()
                group["interval"] = "1s"
            copy = rules_dir / f"{len(rule_files)}-{source.name}"
            copy.write_text(yaml.safe_dump(document, sort_keys=False))
            rule_files.append(str(copy))
    assert groups, "the rendered prometheus.yml loads no rule groups"

    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": rule_files,
        "scrape_configs": [
            scrape,
            {
                **scrape,
                "job_name": f"{job}-failing",
                "static_configs": [{"targets": [failing_target]}],
            },
        ],
    }
    path = workdir / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, groups


def _service_env(extra: Mapping[str, str], spans: OtlpReceiver) -> dict[str, str]:
    env = {
        key: value
        for key, value in project_env(extra).items()
        if not key.startswith("OTEL_") and key != "PROMETHEUS_MULTIPROC_DIR"
    }
    # Exemplars need recorded traces, which a service records only with an exporter.
    env.update(
        {
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{spans.url}/v1/traces",
            "OTEL_LOGS_EXPORTER": "none",
        }
    )
    return env


@pytest.fixture(scope="module")
def stack(template_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    binary = next(filter(None, map(shutil.which, PROMETHEUS)), None)
    require(
        binary is not None,
        "Prometheus is not installed (`apt-get install prometheus`; .ci/run installs it)",
    )
    assert binary is not None
    uv = find_uv()
    require(uv is not None, "uv is not installed (it installs the rendered service)")
    assert uv is not None
    answers = effective_answers(PROFILES[PROFILE])
    assert answers["metrics"] and answers["tracing"], f"{PROFILE} profile: metrics/tracing off"
    version = str(answers["python_version"])
    python = find_python(version)
    require(python is not None, f"no Python {version} interpreter found for the {PROFILE} render")
    assert python is not None

    # A render of its own beside the profile tests' one: theirs is locked while its
    # `make test` runs, for minutes.
    root = run_scratch_dir(tmp_path_factory) / "profiles" / PROFILE
    root.mkdir(parents=True, exist_ok=True)
    project = RenderCache(template_src, root).get("e2e", PROFILES[PROFILE])
    spans = OtlpReceiver()
    env = _service_env({"UV_PYTHON": python}, spans)
    with locked(root / "e2e.lock"):
        _run([uv, "sync"], cwd=project, env=env, timeout=SYNC_TIMEOUT)
    job = str(answers["project_slug"])
    package = project / "src" / str(answers["package_name"]) / "__init__.py"
    service_name = re.search(r'^SERVICE_NAME = "([^"]+)"', package.read_text(), re.M)
    assert service_name, f"no SERVICE_NAME in {package}"
    command = [uv, "run", "--no-sync", job]
    token = _run([*command, "token", "--role", "admin"], cwd=project, env=env, timeout=120)

    workdir = tmp_path_factory.mktemp("observability-e2e")
    instances = [
        Instance(name, workers, workdir / f"service-{name}.log")
        for name, workers in INSTANCES.items()
    ]
    failing = Instance("failing", 1, workdir / "service-failing.log")

    envs = {
        i.name: {**env, "APP_DATABASE__URL": f"sqlite+aiosqlite:///{workdir / i.name}.db"}
        for i in instances
    }
    envs[failing.name] = {
        **env,
        "APP_DATABASE__URL": f"sqlite+aiosqlite:///{workdir / failing.name}.db",
    }
    enrichment = EnrichmentService() if answers.get("circuit_breakers") else None
    if enrichment is not None:
        envs[ENRICHED_INSTANCE] |= {
            f"{ENRICHMENT}BASE_URL": enrichment.url,
            **{ENRICHMENT + name: value for name, value in ENRICHMENT_SETTINGS.items()},
        }
    ml = bool(answers.get("ml_serving"))
    if ml:
        for instance in instances:
            envs[instance.name] |= {
                **ML_SETTINGS,
                "APP_ML__ARTIFACT_DIR": str(workdir / f"models-{instance.name}"),
            }
    for instance in [*instances, failing]:
        _run([*command, "migrate"], cwd=project, env=envs[instance.name], timeout=120)
    with sqlite3.connect(workdir / f"{failing.name}.db") as database:
        database.execute("DROP TABLE items")
    if ml:
        _register_models(uv, command, project, {i.name: envs[i.name] for i in instances}, workdir)

    # Everything starts at once; each is then waited for (Prometheus retries its scrapes).
    with ExitStack() as processes:
        processes.enter_context(spans)
        if enrichment is not None:
            processes.enter_context(enrichment)
        waits: list[tuple[str, Callable[[], bool], subprocess.Popen[bytes], Path]] = []
        for instance in [*instances, failing]:
            # Port 0: each binds a free port itself and logs which; no other test's
            # service can take it between choosing and binding.
            serve = [*command, "serve", "--port", "0"]
            serve += ["--workers", str(instance.workers)] if instance.workers > 1 else []
            process = processes.enter_context(
                _running(serve, cwd=project, env=envs[instance.name], log=instance.log)
            )
            what = f"the service {instance.name} ({' '.join(serve[3:])})"
            instance.port = _bound_port(process, instance.log, what)
            ready = _is_service(instance.url, service_name.group(1))
            waits.append((what, ready, process, instance.log))
        # Prometheus scrapes the ports the instances bound.
        config, groups = _prometheus_config(
            project, job, [i.address for i in instances], failing.address, workdir
        )
        started = time.time()
        log = workdir / "prometheus.log"
        prometheus_args = [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'tsdb'}",
            # Port 0: the kernel picks a free port, Prometheus logs which.
            "--web.listen-address=127.0.0.1:0",
            "--enable-feature=exemplar-storage",
        ]
        process = processes.enter_context(
            _running(prometheus_args, cwd=workdir, env=os.environ, log=log)
        )
        listening = re.compile(rb'msg="Listening on" address=127\.0\.0\.1:(\d+)')
        _wait_until(lambda: bool(listening.search(log.read_bytes())), process, log, "Prometheus")
        port_logged = listening.search(log.read_bytes())
        assert port_logged is not None
        prometheus = Prometheus(int(port_logged.group(1)))
        waits.append(("Prometheus", _is_prometheus_of(prometheus, config), process, log))
        for what, ready, process, output in waits:
            _wait_until(ready, process, output, what)
        yield Stack(
            project=project,
            job=job,
            service_name=service_name.group(1),
            token=token.strip(),
            instances=instances,
            failing=failing,
            prometheus=prometheus,
            prometheus_log=log,
            rule_groups=groups,
            started=started,
            flags=bool(answers["feature_flags"]) and answers.get("flag_provider") == "builtin",
            enrichment=enrichment,
            protection=bool(read_answers(project).get("request_protection")),
            experiments=bool(answers.get("experiments"))
            and answers.get("flag_provider") == "builtin",
            graphql=bool(answers.get("graphql")),
            ml=ml,
        )


# --------------------------------------------------------------------------- traffic

# With request protection, per instance and round, outside the API (the request counts
# checked are the API's): a method the filters refuse (reason "method", 405) and a
# path traversal in the query, scored as an anomaly and answered 404 (detect-only).
PROTECTION_CALLS: list[tuple[str, str, int]] = [
    ("TRACE", "/health/live", 405),
    ("GET", "/no-such-route?file=../../etc/passwd", 404),
]


# What the traffic sent to the API routes: instance address -> status class -> requests.
Sent = dict[str, Counter[str]]
# method, URL, JSON body, headers, expected status
Call = tuple[str, str, Any, Mapping[str, str], int]

# Evaluated through OFREP by the traffic: a rule and a rollout, so the flag dashboard's
# panels see variants and reasons of a known flag, and errors of a key no flag has.
FLAG: dict[str, Any] = {
    "key": "e2e-checkout",
    "type": "boolean",
    "variants": {"on": True, "off": False},
    "default_variant": "off",
    "rules": [
        {
            "name": "beta testers",
            "conditions": [{"attribute": "groups", "operator": "in", "values": ["beta"]}],
            "serve": {"variant": "on"},
        }
    ],
    "fallthrough": {"weights": {"on": 50, "off": 50}},
}
# A new flag reaches every worker once this many evaluations in a row, each on a new
# connection (so the kernel spreads them over the workers), find it.
FLAG_SYNC_EVALUATIONS = 10


def _create_flag(stack: Stack, sent: Sent) -> None:
    auth = {"Authorization": f"Bearer {stack.token}"}
    for instance in stack.instances:
        url = f"{instance.url}/api/v1/flags"
        reply = _http("POST", url, body=FLAG, headers=auth)
        assert reply.status == 201, f"POST {url}: {reply.status} {reply.body!r}"
        sent[instance.address]["2xx"] += 1
    for instance in stack.instances:
        _wait_for(
            functools.partial(_flag_known, stack, instance),
            stack,
            f"{instance.name}: flag {FLAG['key']}",
        )


def _flag_known(stack: Stack, instance: Instance) -> bool:
    auth = {"Authorization": f"Bearer {stack.token}", "Connection": "close"}
    url = f"{instance.url}/ofrep/v1/evaluate/flags/{FLAG['key']}"
    return all(
        _http("POST", url, body={"context": {}}, headers=auth).status == 200
        for _ in range(FLAG_SYNC_EVALUATIONS)
    )


def _flag_calls(stack: Stack, instance: Instance, round_: int) -> list[Call]:
    if not stack.flags:
        return []
    auth = {"Authorization": f"Bearer {stack.token}"}
    evaluate = f"{instance.url}/ofrep/v1/evaluate/flags"
    user = {"targetingKey": f"user-{round_}"}
    return [
        ("POST", f"{evaluate}/{FLAG['key']}", {"context": user}, auth, 200),
        ("POST", f"{evaluate}/{FLAG['key']}", {"context": {**user, "groups": ["beta"]}}, auth, 200),
        ("POST", f"{evaluate}/no-such-flag", {"context": user}, auth, 404),
    ]


# One GraphQL operation of each outcome a round: ok, error (a field failed: no such
# item), refused (validation stopped it).
GRAPHQL_OPERATIONS = {
    "ok": "query E2eItems { items(first: 5) { totalCount } }",
    "error": 'mutation E2eDelete { deleteItem(id: "999999999") }',
    "refused": "query E2eRefused { items { noSuchField } }",
}


def _graphql_calls(stack: Stack, instance: Instance) -> list[Call]:
    if not stack.graphql:
        return []
    auth = {"Authorization": f"Bearer {stack.token}"}
    url = f"{instance.url}/graphql"
    return [("POST", url, {"query": query}, auth, 200) for query in GRAPHQL_OPERATIONS.values()]


# Started on every instance; each round exposes new visitors (over OFREP, as a front end
# reads it) and records a conversion, so every panel of the experiments dashboard moves.
EXPERIMENT: dict[str, Any] = {
    "key": "e2e-button",
    "hypothesis": "The end-to-end test's button converts better.",
    "arms": [{"key": "grey", "weight": 0.5}, {"key": "green", "weight": 0.5}],
    "primary_metrics": [{"key": "e2e_purchase", "kind": "conversion"}],
}
VISITORS_PER_ROUND = 6


def _start_experiment(stack: Stack, sent: Sent) -> None:
    auth = {"Authorization": f"Bearer {stack.token}"}
    for instance in stack.instances:
        experiments = f"{instance.url}/api/v1/experiments"
        for url, body, status in (
            (experiments, EXPERIMENT, 201),
            (f"{experiments}/{EXPERIMENT['key']}/start", None, 200),
        ):
            reply = _http("POST", url, body=body, headers=auth)
            assert reply.status == status, f"POST {url}: {reply.status} {reply.body!r}"
            sent[instance.address]["2xx"] += 1
    for instance in stack.instances:
        _wait_for(
            functools.partial(_experiment_running, stack, instance),
            stack,
            f"{instance.name}: experiment {EXPERIMENT['key']}",
        )


def _experiment_running(stack: Stack, instance: Instance) -> bool:
    """Every worker serves the arms (a read outside the experiment is a 404: no flag)."""
    auth = {"Authorization": f"Bearer {stack.token}", "Connection": "close"}
    url = f"{instance.url}/ofrep/v1/evaluate/flags/{EXPERIMENT['key']}"
    return all(
        _http("POST", url, body={"context": {"targetingKey": "probe"}}, headers=auth).status == 200
        for _ in range(FLAG_SYNC_EVALUATIONS)
    )


def _experiment_calls(stack: Stack, instance: Instance, round_: int) -> list[Call]:
    if not stack.experiments:
        return []
    auth = {"Authorization": f"Bearer {stack.token}"}
    evaluate = f"{instance.url}/ofrep/v1/evaluate/flags/{EXPERIMENT['key']}"
    visitors = [f"visitor-{round_}-{index}" for index in range(VISITORS_PER_ROUND)]
    calls: list[Call] = [
        ("POST", evaluate, {"context": {"targetingKey": visitor}}, auth, 200)
        for visitor in visitors
    ]
    events = f"{instance.url}/api/v1/experiments/{EXPERIMENT['key']}/events"
    calls.append(("POST", events, {"metric": "e2e_purchase"}, {"X-Anonymous-Id": visitors[0]}, 202))
    return calls


# With model serving, for the instances' processes: drift measured every second from 10
# inputs (the least the settings take), so the drift panels have data within the traffic.
ML_SETTINGS = {"APP_ML__DRIFT_MIN_SAMPLES": "10", "APP_ML__DRIFT_CHECK_SECONDS": "1"}
CLASSIFIER = "iris"  # `models train-example`: version 1 the champion, version 2 the shadow
REGRESSOR = "iris-petal-width"  # a linear regression, registered from its file
IRIS_FEATURES = ("sepal_length_cm", "sepal_width_cm", "petal_length_cm", "petal_width_cm")
# Flowers of each of the three species, sent in every round: every class is answered, and
# each request's rows are enough for a drift figure.
IRIS_ROWS = [
    dict(zip(IRIS_FEATURES, row, strict=True))
    for row in (
        (5.1, 3.5, 1.4, 0.2),
        (4.9, 3.0, 1.4, 0.2),
        (4.7, 3.2, 1.3, 0.2),
        (5.0, 3.6, 1.4, 0.2),
        (7.0, 3.2, 4.7, 1.4),
        (6.4, 3.2, 4.5, 1.5),
        (6.9, 3.1, 4.9, 1.5),
        (5.5, 2.3, 4.0, 1.3),
        (6.3, 3.3, 6.0, 2.5),
        (5.8, 2.7, 5.1, 1.9),
        (7.1, 3.0, 5.9, 2.1),
        (6.3, 2.9, 5.6, 1.8),
    )
]
# The regressor answers the petal width from the other three.
REGRESSOR_ROWS = [{k: v for k, v in row.items() if k != "petal_width_cm"} for row in IRIS_ROWS]
# Trains the regressor on scikit-learn's iris data, in the service's environment: writes
# its skops file and its training CSV (the petal width is the target).
TRAIN_REGRESSOR = """
import csv, sys
import skops.io
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression
rows = load_iris().data
model = LinearRegression().fit(rows[:, :3], rows[:, 3])
with open(sys.argv[1], "wb") as out:
    out.write(skops.io.dumps(model))
with open(sys.argv[2], "w", newline="") as out:
    writer = csv.writer(out)
    writer.writerow(sys.argv[3].split(","))
    writer.writerows(rows.tolist())
"""


def _register_models(
    uv: str, command: list[str], project: Path, envs: Mapping[str, Mapping[str, str]], workdir: Path
) -> None:
    """Each instance's registry: the example classifier's champion and a second version
    (made the shadow once the services run), and the regressor's champion."""
    artifact, training = workdir / "regressor.skops", workdir / "regressor.csv"
    env = next(iter(envs.values()))
    train = [uv, "run", "--no-sync", "python", "-c", TRAIN_REGRESSOR]
    header = ",".join(IRIS_FEATURES)
    _run([*train, str(artifact), str(training), header], cwd=project, env=env, timeout=120)
    register = ["register", REGRESSOR, str(artifact), "--training-data", str(training)]
    for instance_env in envs.values():
        for args in (
            ["train-example", "--name", CLASSIFIER],
            ["train-example", "--name", CLASSIFIER, "--regularization", "0.05"],
            [*register, "--target", "petal_width_cm", "--promote", "champion"],
        ):
            _run([*command, "models", *args], cwd=project, env=instance_env, timeout=120)


def _start_shadow(stack: Stack, sent: Sent) -> None:
    """The classifier's version 2 becomes its shadow, and every worker serves it."""
    auth = {"Authorization": f"Bearer {stack.token}"}
    for instance in stack.instances:
        url = f"{instance.url}/api/v1/models/{CLASSIFIER}/aliases/shadow"
        reply = _http("PUT", url, body={"version": 2}, headers=auth)
        assert reply.status == 200, f"PUT {url}: {reply.status} {reply.body!r}"
        sent[instance.address]["2xx"] += 1
    for instance in stack.instances:
        _wait_for(
            functools.partial(_shadow_served, stack, instance, sent),
            stack,
            f"{instance.name}: the shadow of {CLASSIFIER}",
        )


def _shadow_served(stack: Stack, instance: Instance, sent: Sent) -> bool:
    """Every worker serves the shadow: so many drift readings in a row, each on a new
    connection, list it."""
    auth = {"Authorization": f"Bearer {stack.token}", "Connection": "close"}
    url = f"{instance.url}/api/v1/models/{CLASSIFIER}/drift"
    for _ in range(FLAG_SYNC_EVALUATIONS):
        reply = _http("GET", url, headers=auth)
        assert reply.status == 200, f"GET {url}: {reply.status} {reply.body!r}"
        sent[instance.address]["2xx"] += 1
        if "shadow" not in {reading["alias"] for reading in reply.json()}:
            return False
    return True


def _ml_calls(stack: Stack, instance: Instance) -> list[Call]:
    if not stack.ml:
        return []
    auth = {"Authorization": f"Bearer {stack.token}"}
    models = f"{instance.url}/api/v1/models"
    return [
        ("POST", f"{models}/{CLASSIFIER}/predict", {"inputs": IRIS_ROWS}, auth, 200),
        ("POST", f"{models}/{REGRESSOR}/predict", {"inputs": REGRESSOR_ROWS}, auth, 200),
    ]


def _look_up_enrichment(stack: Stack, instance: Instance, item: str, sent: Sent) -> None:
    """The new item's enrichment, then the same while the enrichment service fails twice.

    The second lookup fails an attempt, is retried, and fails again: unless the window
    already holds enough calls, that opens the breaker, the third attempt is refused and
    the cached answer is served. A pause lets the breaker half-open before the next
    round, whose first lookup (a new item, nothing cached) is the successful trial. Every
    panel of the outbound dashboard gets data, and every lookup answers 200.
    """
    if stack.enrichment is None or instance.name != ENRICHED_INSTANCE:
        return
    url = f"{item}/enrichment"
    for failures, sources in ((0, {"upstream"}), (2, {"upstream", "cache"})):
        stack.enrichment.fail_next(failures)
        reply = _http("GET", url)
        assert reply.status == 200, f"GET {url}: {reply.status} {reply.body!r}"
        assert reply.json()["source"] in sources, f"GET {url}: {reply.body!r}"
        sent[instance.address]["2xx"] += 1
    stack.enrichment.fail_next(0)
    time.sleep(float(ENRICHMENT_SETTINGS["BREAKER__OPEN_SECONDS"]) + 0.1)


def _drive_traffic(stack: Stack) -> Sent:
    """Healthy traffic: create, read, list, update, delete, and the usual 4xx; no 5xx."""
    auth = {"Authorization": f"Bearer {stack.token}"}
    sent: Sent = {instance.address: Counter() for instance in stack.instances}
    if stack.flags:
        _create_flag(stack, sent)
    if stack.experiments:
        _start_experiment(stack, sent)
    if stack.ml:
        _start_shadow(stack, sent)
    for round_ in range(TRAFFIC_ROUNDS):
        began = time.time()
        for instance in stack.instances:
            items = f"{instance.url}/api/v1/items"
            created = _http(
                "POST", items, body={"name": f"n{round_}", "price_cents": 1}, headers=auth
            )
            assert created.status == 201, f"POST {items}: {created.status} {created.body!r}"
            sent[instance.address]["2xx"] += 1
            item = f"{items}/{created.json()['id']}"
            _look_up_enrichment(stack, instance, item, sent)
            etag = {"If-None-Match": created.headers["etag"]}
            calls: list[Call] = [
                ("GET", items, None, {}, 200),
                ("GET", f"{items}?limit=5&offset=0", None, {}, 200),
                ("GET", item, None, etag, 304),
                ("PATCH", item, {"quantity": round_ + 1}, auth, 200),
                ("GET", f"{items}/999999", None, {}, 404),
                ("POST", items, {"name": "anonymous", "price_cents": 1}, {}, 401),
                ("POST", items, {"name": "", "price_cents": -1}, auth, 422),
                ("GET", f"{instance.url}/no-such-route", None, {}, 404),
                ("GET", f"{instance.url}/health/ready", None, {}, 200),
            ]
            if round_ % 2:
                calls.append(("DELETE", item, None, auth, 204))
            calls += _flag_calls(stack, instance, round_)
            calls += _experiment_calls(stack, instance, round_)
            calls += _graphql_calls(stack, instance)
            calls += _ml_calls(stack, instance)
            if stack.protection:
                calls += [
                    (verb, f"{instance.url}{path}", None, {}, code)
                    for verb, path, code in PROTECTION_CALLS
                ]
            for method, url, body, headers, status in calls:
                reply = _http(method, url, body=body, headers=headers)
                assert reply.status == status, f"{method} {url}: {reply.status} {reply.body!r}"
                if urllib.parse.urlsplit(url).path.startswith("/api/"):
                    sent[instance.address][f"{status // 100}xx"] += 1
        # One round per scrape, so the counts grow over several scrapes.
        _wait_for(functools.partial(_scraped_since, stack, began), stack, "a scrape")
    return sent


def _wait_for(condition: Callable[[], bool], stack: Stack, what: str) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(
                f"{what}: not within {SETTLE_TIMEOUT}s\n"
                f"targets: {json.dumps(stack.prometheus.targets(stack.job), indent=1)}\n"
                f"{_tail(stack.prometheus_log)}"
            )
        time.sleep(0.2)


def _targets_up(stack: Stack) -> bool:
    targets = stack.prometheus.targets(stack.job)
    return len(targets) == len(stack.instances) and all(t["health"] == "up" for t in targets)


def _scraped_after(stack: Stack, moment: float, job: str | None = None) -> float | None:
    """The latest scrape, once every target of the job has been scraped after ``moment``."""
    scrapes = [_unix(t["lastScrape"]) for t in stack.prometheus.targets(job or stack.job)]
    expected = len(stack.instances) if job is None else 1
    if len(scrapes) != expected or min(scrapes) <= moment:
        return None
    return max(scrapes)


def _scraped_since(stack: Stack, moment: float) -> bool:
    return _scraped_after(stack, moment) is not None


def _evaluated_after(stack: Stack, moment: float) -> bool:
    groups = stack.prometheus.rule_groups()
    return bool(groups) and all(_unix(g["lastEvaluation"]) > moment for g in groups)


# --------------------------------------------------------------------------- dashboards


@dataclass(frozen=True)
class Query:
    where: str
    expr: str
    exemplar: bool = False


@dataclass
class Datasources:
    """The provisioned Grafana data sources: uid and name -> plugin type."""

    types: dict[str, str]
    default: str
    # The trace-to-metrics links: (where, PromQL with $__tags, {span attribute: label})
    trace_queries: list[tuple[str, str, dict[str, str]]]

    @classmethod
    def load(cls, project: Path) -> Datasources:
        types: dict[str, str] = {}
        default = "prometheus"
        queries: list[tuple[str, str, dict[str, str]]] = []
        directory = project / "observability" / "grafana" / "provisioning" / "datasources"
        for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
            for source in yaml.safe_load(path.read_text()).get("datasources") or []:
                for key in ("uid", "name"):
                    if source.get(key):
                        types[source[key]] = source["type"]
                if source.get("isDefault"):
                    default = source["type"]
                links = (source.get("jsonData") or {}).get("tracesToMetrics") or {}
                tags = {t["key"]: t.get("value") or t["key"] for t in links.get("tags") or []}
                for query in links.get("queries") or []:
                    # In provisioning files `$$` is a literal `$`.
                    promql = str(query["query"]).replace("$$", "$")
                    where = f"data source {source['name']!r} > trace-to-metrics {query['name']!r}"
                    queries.append((where, promql, tags))
        return cls(types, default, queries)

    def type_of(self, ref: Any, variables: Mapping[str, str]) -> str:
        """The plugin type a panel's or target's ``datasource`` refers to."""
        if ref is None:
            return self.default
        if isinstance(ref, dict):
            if ref.get("type"):
                return str(ref["type"])
            ref = ref.get("uid")
            if ref is None:
                return self.default
        name = str(ref)
        variable = GRAFANA_VARIABLE.fullmatch(name)
        if variable:
            name = variables.get(next(filter(None, variable.groups())), name)
        return self.types.get(name, name)


def _panels(container: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """Every panel, those inside (collapsed) rows and the old schema's rows included."""
    for panel in container.get("panels") or []:
        yield panel
        yield from _panels(panel)
    for row in container.get("rows") or []:
        yield from _panels(row)


def _range(dashboard: Mapping[str, Any]) -> str:
    start = str((dashboard.get("time") or {}).get("from", ""))
    match = re.fullmatch(r"now-(\d+[smhdwy])", start)
    return match.group(1) if match else DEFAULT_RANGE


def _seconds(duration: str) -> int:
    return int(duration[:-1]) * DURATION_SECONDS[duration[-1]]


def _substitute(expr: str, values: Mapping[str, str]) -> tuple[str, set[str]]:
    """``expr`` with Grafana's variables replaced, and the names it does not know."""
    unknown: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = next(filter(None, match.groups()))
        if name in values:
            return values[name]
        unknown.add(name)
        return match.group(0)

    return GRAFANA_VARIABLE.sub(replace, expr), unknown


def _builtin_variables(time_range: str) -> dict[str, str]:
    seconds = _seconds(time_range)
    return {
        "__rate_interval": INTERVAL,
        "__interval": INTERVAL,
        "__interval_ms": str(INTERVAL_SECONDS * 1000),
        "__rate_interval_ms": str(INTERVAL_SECONDS * 1000),
        "__range": time_range,
        "__range_s": str(seconds),
        "__range_ms": str(seconds * 1000),
    }


def _dashboard_variables(
    dashboard: Mapping[str, Any],
    title: str,
    stack: Stack,
    datasources: Datasources,
    problems: list[str],
) -> dict[str, str]:
    """A value for each of the dashboard's variables, as Grafana would pick it here."""
    values = _builtin_variables(_range(dashboard))
    for variable in (dashboard.get("templating") or {}).get("list") or []:
        name, kind = variable["name"], variable.get("type", "query")
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        current = (variable.get("current") or {}).get("value")
        if kind == "datasource":
            values[name] = str(query)  # the plugin type: the variable is a data source
        elif kind == "query":
            if datasources.type_of(variable.get("datasource"), values) != "prometheus":
                continue
            match = LABEL_VALUES.fullmatch(str(query or ""))
            if not match:
                problems.append(f"{title}: variable {name}: cannot resolve query {query!r}")
                continue
            params: dict[str, str] = {}
            if match["match"]:
                params["match[]"], _ = _substitute(match["match"], values)
            found: list[str] = stack.prometheus.data(
                f"/api/v1/label/{match['label']}/values", params
            )
            if match["label"] == "job" and stack.job not in found:
                problems.append(
                    f"{title}: variable {name} ({query}) offers {found}, not the job {stack.job!r}"
                )
            elif not found:
                problems.append(f"{title}: variable {name} ({query}) has no value")
            if match["label"] == "job":
                values[name] = stack.job
            elif variable.get("includeAll") and current in ("$__all", ["$__all"]):
                # Saved as All: Grafana sends the allValue, else every value found.
                values[name] = variable.get("allValue") or "|".join(map(re.escape, found))
            else:
                values[name] = (found or [""])[0]
        elif kind in {"custom", "constant", "textbox", "interval"}:
            if isinstance(current, list):
                current = "|".join(current)
            options = [o.strip() for o in str(query or "").split(",") if o.strip()]
            values[name] = str(current) if current not in (None, "") else (options or [""])[0]
    return values


def _dashboard_queries(stack: Stack, problems: list[str]) -> tuple[list[Query], list[str]]:
    """Every PromQL query of the rendered dashboards (substituted), and the skipped ones."""
    directory = stack.project / "observability" / "grafana" / "dashboards"
    paths = sorted(directory.glob("*.json"))
    assert paths, f"no Grafana dashboard rendered: {directory} has no *.json"
    datasources = Datasources.load(stack.project)
    queries: list[Query] = []
    skipped: list[str] = []
    for path in paths:
        dashboard = json.loads(path.read_text())
        title = f"{path.relative_to(stack.project)} ({dashboard.get('title')!r})"
        values = _dashboard_variables(dashboard, title, stack, datasources, problems)
        count = len(queries)
        for panel in _panels(dashboard):
            for target in panel.get("targets") or []:
                where = f"{title} > panel {panel.get('title')!r} > {target.get('refId', '?')}"
                ref = target.get("datasource") or panel.get("datasource")
                kind = datasources.type_of(ref, values)
                if kind != "prometheus":
                    skipped.append(f"{where} ({kind})")
                    continue
                expr = str(target.get("expr") or "").strip()
                if not expr:
                    problems.append(f"{where}: a Prometheus target without an expression")
                    continue
                promql, unknown = _substitute(expr, values)
                if unknown:
                    problems.append(f"{where}: unknown variables {sorted(unknown)} in {expr}")
                    continue
                queries.append(Query(where, promql, bool(target.get("exemplar"))))
        if len(queries) == count:
            problems.append(f"{title}: no Prometheus query")
    # A span of the service carries its service.name; $__tags maps it to labels.
    span = {"service.name": stack.service_name}
    for where, expr, tags in datasources.trace_queries:
        missing = sorted(set(tags) - set(span))
        if missing:
            problems.append(f"{where}: maps span attributes the test does not know: {missing}")
            continue
        selector = ", ".join(f'{label}="{span[key]}"' for key, label in tags.items())
        promql, unknown = _substitute(
            expr, {**_builtin_variables(DEFAULT_RANGE), "__tags": selector}
        )
        if unknown:
            problems.append(f"{where}: unknown variables {sorted(unknown)} in {expr}")
        else:
            queries.append(Query(where, promql))
    return queries, skipped


def _check_query(stack: Stack, query: Query) -> str | None:
    """Why the query shows nothing (or NaN) in Grafana, or None when it has data."""
    document = stack.prometheus.call("/api/v1/query", {"query": query.expr})
    if document.get("status") != "success":
        return f"error {document.get('errorType')}: {document.get('error')}"
    data = document["data"]
    kind, result = data["resultType"], data["result"]
    if kind in {"scalar", "string"}:
        samples = [result[1]]
    elif kind == "vector":
        samples = [s["value"][1] for s in result]
    else:  # matrix
        samples = [v[1] for s in result for v in s["values"]]
    if not samples:
        return "no data (an empty result)"
    if kind != "string" and all(math.isnan(float(v)) for v in samples):
        return f"only NaN: {result}"
    return None


# --------------------------------------------------------------------------- checks


def _check_targets(stack: Stack, problems: list[str]) -> None:
    addresses = {i.address for i in stack.instances}
    targets = stack.prometheus.targets(stack.job)
    seen = {t["labels"]["instance"] for t in targets}
    if seen != addresses:
        problems.append(f"job {stack.job}: targets {sorted(seen)}, expected {sorted(addresses)}")
    for target in targets:
        if target["health"] != "up" or target["lastError"]:
            problems.append(
                f"target {target['scrapeUrl']}: {target['health']}, {target['lastError']!r}"
            )
    counts = stack.prometheus.data(
        "/api/v1/query", {"query": f'count_over_time(up{{job="{stack.job}"}}[5m])'}
    )["result"]
    scrapes = {s["metric"]["instance"]: int(float(s["value"][1])) for s in counts}
    for address in addresses:
        if scrapes.get(address, 0) < MIN_SCRAPES:
            problems.append(f"target {address}: {scrapes.get(address, 0)} scrapes")


def _check_counts(stack: Stack, sent: Sent, problems: list[str]) -> None:
    """Prometheus counted every API request once, whichever worker answered the scrape."""
    api = f'job="{stack.job}", route=~"/api/.+"'
    counted: Sent = {address: Counter() for address in sent}
    answer = stack.prometheus.data(
        "/api/v1/query", {"query": f"sum by (instance, status) (app_http_requests_total{{{api}}})"}
    )
    for sample in answer["result"]:
        labels = sample["metric"]
        counted.setdefault(labels["instance"], Counter())[labels["status"]] = round(
            float(sample["value"][1])
        )
    observed = stack.prometheus.data(
        "/api/v1/query",
        {"query": f"sum by (instance) (app_http_request_duration_seconds_count{{{api}}})"},
    )
    durations = {s["metric"]["instance"]: round(float(s["value"][1])) for s in observed["result"]}
    for instance in stack.instances:
        expected, got = sent[instance.address], counted.get(instance.address, Counter())
        if got != expected:
            problems.append(
                f"{instance.name}: app_http_requests_total by status class is {dict(got)}, "
                f"the traffic was {dict(expected)}"
            )
        total = sum(expected.values())
        if durations.get(instance.address) != total:
            problems.append(
                f"{instance.name}: app_http_request_duration_seconds_count is "
                f"{durations.get(instance.address)}, the traffic was {total} requests"
            )


def _check_rules(stack: Stack, problems: list[str]) -> None:
    loaded = {g["name"]: g for g in stack.prometheus.rule_groups()}
    for name, source in stack.rule_groups.items():
        if name not in loaded:
            problems.append(f"rule group {name} ({source}) is not loaded")
            continue
        for rule in loaded[name]["rules"]:
            if rule["health"] != "ok":
                problems.append(
                    f"rule {rule['name']} ({source}): health {rule['health']!r}, "
                    f"{rule.get('lastError', '')!r}"
                )
    extra = sorted(set(loaded) - set(stack.rule_groups))
    if extra:
        problems.append(f"rule groups loaded that no rendered file has: {extra}")


def _exemplars(stack: Stack, expr: str) -> list[dict[str, Any]]:
    series: list[dict[str, Any]] = stack.prometheus.data(
        "/api/v1/query_exemplars",
        {"query": expr, "start": f"{stack.started - 60:.3f}", "end": f"{time.time() + 60:.3f}"},
    )
    return series


def _check_exemplars(stack: Stack, queries: list[Query], problems: list[str]) -> None:
    histogram = f'app_http_request_duration_seconds_bucket{{job="{stack.job}"}}'
    series = _exemplars(stack, histogram)
    for instance in stack.instances:
        ids = {
            exemplar["labels"].get("trace_id", "")
            for s in series
            if s["seriesLabels"].get("instance") == instance.address
            for exemplar in s["exemplars"]
        }
        if not ids:
            problems.append(f"{histogram}: no exemplar from {instance.name} ({instance.address})")
            continue
        malformed = sorted(i for i in ids if not TRACE_ID.fullmatch(i))
        if malformed:
            problems.append(f"{instance.name}: exemplars without a 32-hex trace_id: {malformed}")
        logged = set(re.findall(r'"trace_id":\s*"([0-9a-f]{32})"', instance.log.read_text()))
        unknown = sorted(ids - logged - set(malformed))
        if unknown:
            problems.append(
                f"{instance.name}: exemplar trace ids that no log line of the service has: "
                f"{unknown}"
            )
    for query in queries:
        if query.exemplar and not any(s["exemplars"] for s in _exemplars(stack, query.expr)):
            problems.append(f"{query.where}: drawn with exemplars, but none for {query.expr}")


def _report(problems: list[str], summary: str = "") -> None:
    assert not problems, summary + "\n" + "\n".join(f"- {p}" for p in problems)


@pytest.fixture(scope="module")
def traffic(stack: Stack) -> Sent:
    """Healthy traffic sent, scraped, and every rule group evaluated on top of it."""
    _wait_for(lambda: _targets_up(stack), stack, f"every target of job {stack.job} up")
    sent = _drive_traffic(stack)
    traffic_done = time.time()
    _wait_for(lambda: _scraped_after(stack, traffic_done) is not None, stack, "a last scrape")
    last_scrape = _scraped_after(stack, traffic_done)
    assert last_scrape is not None
    _wait_for(lambda: _evaluated_after(stack, last_scrape), stack, "a last rule evaluation")
    return sent


def test_every_instance_is_up_and_scraped(stack: Stack, traffic: Sent) -> None:
    problems: list[str] = []
    _check_targets(stack, problems)
    _report(problems)


def test_every_api_request_is_counted_once(stack: Stack, traffic: Sent) -> None:
    problems: list[str] = []
    _check_counts(stack, traffic, problems)
    _report(problems)


def test_every_rule_group_loads_and_evaluates(stack: Stack, traffic: Sent) -> None:
    problems: list[str] = []
    _check_rules(stack, problems)
    _report(problems)


# Series that exist only with read replicas (APP_DATABASE__REPLICA_URLS, PostgreSQL): the
# stack's instances run on SQLite, which has none, so queries of them must run here but
# come back empty. The generated tests/test_read_replicas.py checks the series against a
# real hot standby.
NEEDS_READ_REPLICAS = re.compile(r"\bapp_db_(?:replica_\w+|reads_total)\b")


def test_every_dashboard_query_has_data(stack: Stack, traffic: Sent) -> None:
    problems: list[str] = []
    queries, skipped = _dashboard_queries(stack, problems)
    without_replicas = 0
    for query in queries:
        why = _check_query(stack, query)
        if why == "no data (an empty result)" and NEEDS_READ_REPLICAS.search(query.expr):
            without_replicas += 1
            continue
        if why is not None:
            problems.append(f"{query.where}: {why}\n    {query.expr}")
    _report(
        problems,
        f"{len(queries)} PromQL queries checked ({without_replicas} empty without read "
        f"replicas, as expected); skipped (not Prometheus): {skipped}",
    )


def test_latency_exemplars_carry_trace_ids_the_service_logged(stack: Stack, traffic: Sent) -> None:
    problems: list[str] = []
    queries, _ = _dashboard_queries(stack, problems)
    _check_exemplars(stack, queries, problems)
    _report(problems)


def test_refusals_and_anomalies_are_counted_once(stack: Stack, traffic: Sent) -> None:
    """The protection dashboard's counters count what the traffic provoked, per instance."""
    if not stack.protection:
        pytest.skip("the render has no request protection")
    problems: list[str] = []
    for query in (
        f'app_protection_refusals_total{{job="{stack.job}", reason="method"}}',
        f'app_protection_anomalies_total{{job="{stack.job}", rule="path_traversal"}}',
    ):
        _check_once_a_round(stack, query, problems)
    _report(problems)


def _check_once_a_round(stack: Stack, query: str, problems: list[str]) -> None:
    """``query`` reads TRAFFIC_ROUNDS on every instance: the traffic did it once a round."""
    counted = {
        s["metric"]["instance"]: round(float(s["value"][1]))
        for s in stack.prometheus.data("/api/v1/query", {"query": query})["result"]
    }
    for instance in stack.instances:
        if counted.get(instance.address) != TRAFFIC_ROUNDS:
            problems.append(
                f"{instance.name}: {query} is {counted.get(instance.address)}, "
                f"the traffic did it {TRAFFIC_ROUNDS} times"
            )


def test_graphql_operations_are_counted_by_outcome(stack: Stack, traffic: Sent) -> None:
    if not stack.graphql:
        pytest.skip("the render has no GraphQL")
    problems: list[str] = []
    for outcome, document in GRAPHQL_OPERATIONS.items():
        name = document.split()[1]
        query = (
            f'app_graphql_operations_total{{job="{stack.job}", operation="{name}", '
            f'outcome="{outcome}"}}'
        )
        _check_once_a_round(stack, query, problems)
    _report(problems)


def _instant(stack: Stack, query: str) -> list[float]:
    result = stack.prometheus.data("/api/v1/query", {"query": query})["result"]
    return [float(sample["value"][1]) for sample in result]


def test_the_first_server_errors_count_in_the_slo_error_ratio(stack: Stack) -> None:
    job, failing = f"{stack.job}-failing", stack.failing
    # Scraped once before any request: whatever series exist then are the starting point.
    before = time.time()
    _wait_for(lambda: _scraped_after(stack, before, job) is not None, stack, f"{job} scraped")
    for _ in range(4):
        reply = _http("GET", f"{failing.url}/api/v1/items")
        assert reply.status == 500, f"{failing.url}/api/v1/items: {reply.status} {reply.body!r}"
    failed = time.time()
    _wait_for(lambda: _scraped_after(stack, failed, job) is not None, stack, f"{job} scraped")
    last_scrape = _scraped_after(stack, failed, job)
    assert last_scrape is not None
    _wait_for(lambda: _evaluated_after(stack, last_scrape), stack, "a rule evaluation")

    selector = f'{{job="{job}"}}'
    assert _instant(stack, f'sum(app_http_requests_total{{job="{job}", status="5xx"}})') == [4]
    # Every API request to this instance failed: both windows must say so, not 0 or NaN.
    # A scrape landing between the group's request and error rules can tilt one
    # evaluation (each rule reads the samples there are when it runs): the next one,
    # a second later, is exact again.
    for window in ("5m", "30d"):
        query = f"job:app_slo_error_ratio:rate{window}{selector}"
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while (ratio := _instant(stack, query)) != [1.0] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ratio == [1.0], f"{query} of {job}: {ratio}"
