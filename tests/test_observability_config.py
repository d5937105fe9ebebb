"""The monitoring stack of the compose `observability` profile, checked on renders.

Each combination of the answers that shape the stack (metrics, tracing, trace_backend, and
feature_flags, which adds a metric and a dashboard) is rendered once (shared with
test_render.py when a matrix case has the same answers) and checked with the tools that run
the files, promtool and amtool, and against the contracts between the files: dashboards
query only metrics the service exports or the rules record, through provisioned data source
uids; every alert has a runbook and unit tests; every collector pipeline limits memory
before it batches; compose mounts files that exist.

promtool and amtool come from Debian's `prometheus` and `prometheus-alertmanager`
packages (.ci/run installs them). Without them these tests skip, or fail under CI=true.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import RenderCache, command_report, compose_model, read_answers, require, run
from matrix import BASE_ANSWERS, CASES, REPO_ROOT, Answers

TEMPLATE_PROMETHEUS = (
    REPO_ROOT
    / "template"
    / "{% if observability %}observability{% endif %}"
    / "{% if metrics %}prometheus{% endif %}"
)

# What the service exports at /metrics (docs/observability.md, "Metric names"): the
# histogram as its series, the counters with their _total suffix.
SERVICE_METRICS = frozenset(
    {
        "app_http_requests_total",
        "app_http_request_duration_seconds_bucket",
        "app_http_request_duration_seconds_count",
        "app_http_request_duration_seconds_sum",
        "app_http_requests_in_progress",
        "app_db_pool_connections_in_use",
        "app_db_pool_connections_limit",
        "app_runtime_event_loop_lag_seconds",
        "app_process_cpu_seconds_total",
        "app_process_resident_memory_bytes",
        "app_build_info",
        # Exported once APP_DATABASE__REPLICA_URLS names read replicas.
        "app_db_replica_lag_seconds",
        "app_db_replica_available",
        "app_db_reads_total",
    }
)
# With feature_flags: the flag slice's evaluation counter (its dashboard reads it).
FLAG_METRICS = frozenset({"app_flags_evaluations_total"})
# With circuit_breakers: the outbound slice's (its dashboard and alerts read them).
OUTBOUND_METRICS = frozenset(
    {
        "app_outbound_breaker_state",
        "app_outbound_breaker_transitions_total",
        "app_outbound_calls_total",
        "app_outbound_retries_total",
        "app_outbound_retry_budget_exhausted_total",
        "app_outbound_call_duration_seconds_bucket",
        "app_outbound_call_duration_seconds_count",
        "app_outbound_call_duration_seconds_sum",
    }
)
CACHING_METRICS = frozenset(
    {
        "app_cache_lookups_total",
        "app_cache_computations_total",
        "app_cache_computation_seconds_bucket",
        "app_cache_computation_seconds_count",
        "app_cache_computation_seconds_sum",
        "app_cache_evictions_total",
        "app_cache_invalidations_total",
        "app_cache_local_entries",
        "app_cache_local_bytes",
        "app_cache_available",
    }
)
# With request_protection: the protection slice's (its dashboard and alerts read them).
PROTECTION_METRICS = frozenset(
    {
        "app_protection_refusals_total",
        "app_protection_anomalies_total",
        "app_protection_limiter_errors_total",
        "app_protection_limiter_bypassed_total",
        "app_protection_slow_connections_total",
    }
)
# With experiments (asked only with feature_flags): the experiments slice's (its dashboard
# and alerts read them); the flush histogram as its series.
EXPERIMENTS_METRICS = frozenset(
    {
        "app_experiments_exposures_total",
        "app_experiments_exposures_dropped_total",
        "app_experiments_events_total",
        "app_experiments_events_dropped_total",
        "app_experiments_sample_ratio_p_value",
        "app_experiments_flush_seconds_bucket",
        "app_experiments_flush_seconds_count",
        "app_experiments_flush_seconds_sum",
    }
)
# With graphql: the GraphQL slice's (its dashboard reads them).
GRAPHQL_METRICS = frozenset(
    {
        "app_graphql_operations_total",
        "app_graphql_operation_seconds_bucket",
        "app_graphql_operation_seconds_count",
        "app_graphql_operation_seconds_sum",
        "app_graphql_subscriptions",
        "app_graphql_slow_consumers_total",
    }
)
# With multi_tenancy: the tenancy slice's (its dashboard and alerts read them).
TENANCY_METRICS = frozenset(
    {
        "app_tenant_usage_total",
        "app_tenant_quota_refusals_total",
        "app_tenant_usage_batch_failures_total",
    }
)
TENANCY_ALERTS = frozenset({"AppTenantUsageNotStored", "AppTenantQuotaRefusalSpike"})
# With event_sourcing: the event store's and projections' (the events dashboard and rules
# read them), whatever the broker.
EVENTS_METRICS = frozenset({"app_events_appended_total", "app_events_projection_lag"})
# With event_sourcing and a broker (message_broker other than none): the outbox's, the
# relay's and the consumers' (the events-broker dashboard and rules read them); the
# histograms as their series.
EVENTS_BROKER_METRICS = frozenset(
    {
        "app_events_outbox_backlog",
        "app_events_outbox_oldest_age_seconds",
        "app_events_relay_publish_seconds_bucket",
        "app_events_relay_publish_seconds_count",
        "app_events_relay_publish_seconds_sum",
        "app_events_relay_failures_total",
        "app_events_dead_letters_total",
        "app_events_consumed_total",
        "app_events_consumer_delay_seconds_bucket",
        "app_events_consumer_delay_seconds_count",
        "app_events_consumer_delay_seconds_sum",
    }
)
EVENTS_ALERTS = frozenset({"AppEventProjectionLagging"})
EVENTS_BROKER_ALERTS = frozenset({"AppEventOutboxStale", "AppEventDeadLetters"})
# The broker's rules and rule tests: only renders with a broker have them.
EVENTS_BROKER_RULE_FILES = frozenset({"rules/events-broker.yml", "tests/events-broker.test.yml"})
EXPERIMENTS_ALERTS = frozenset(
    {"AppExperimentSampleRatioMismatch", "AppExperimentExposuresDropped"}
)
# With ml_serving: the model serving slice's (the ml dashboard and rules read them); the
# histograms and the regressors' summary as their series.
ML_METRICS = frozenset(
    {
        "app_ml_predictions_total",
        "app_ml_prediction_errors_total",
        "app_ml_prediction_seconds_bucket",
        "app_ml_prediction_seconds_count",
        "app_ml_prediction_seconds_sum",
        "app_ml_predicted_class_total",
        "app_ml_predicted_value_count",
        "app_ml_predicted_value_sum",
        "app_ml_batch_requests_bucket",
        "app_ml_batch_requests_count",
        "app_ml_batch_requests_sum",
        "app_ml_batch_rows_bucket",
        "app_ml_batch_rows_count",
        "app_ml_batch_rows_sum",
        "app_ml_inference_seconds_bucket",
        "app_ml_inference_seconds_count",
        "app_ml_inference_seconds_sum",
        "app_ml_feature_psi",
        "app_ml_agreement_total",
        "app_ml_dropped_total",
        "app_ml_loads_total",
        "app_ml_load_seconds_bucket",
        "app_ml_load_seconds_count",
        "app_ml_load_seconds_sum",
        "app_ml_serving_version",
    }
)
ML_ALERTS = frozenset(
    {"AppModelDriftWarning", "AppModelDrift", "AppModelErrors", "AppModelLoadFailing"}
)
# The experiments slice's rules and rule tests: only renders with feature_flags have them.
EXPERIMENTS_RULE_FILES = frozenset({"rules/experiments.yml", "tests/experiments.test.yml"})
# Series Prometheus itself writes.
PROMETHEUS_BUILTINS = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})

SEVERITIES = {"page", "ticket"}

TOOL_PACKAGES = {"promtool": "prometheus", "amtool": "prometheus-alertmanager"}


# experiments is asked only with feature_flags (unrecorded without it, hence True below).
SLICES_WITH_RULES = (
    "circuit_breakers",
    "caching",
    "request_protection",
    "experiments",
    "multi_tenancy",
)
# event_sourcing too (off by default), with a broker: its rules for the outbox and the dead
# letters come only with one. The variants take this one; every broker has the same rules.
# And ml_serving (off by default).
VARIANT_BROKER = "rabbitmq"


@dataclass(frozen=True)
class Variant:
    """One shape of the monitoring stack."""

    id: str
    metrics: bool
    tracing: bool
    trace_backend: str | None = None
    feature_flags: bool = True

    def matches(self, answers: Answers) -> bool:
        return (
            answers["metrics"] == self.metrics
            and answers["tracing"] == self.tracing
            and answers.get("trace_backend") == self.trace_backend
            and answers["feature_flags"] == self.feature_flags
            # The built-in provider's: flagd's adds a compose service of its own.
            and answers.get("flag_provider", "builtin") == "builtin"
            # GraphQL (off by default) on: its dashboard is checked with the others.
            and answers.get("graphql", False)
            # The slices with rules of their own are on: the variants differ only in the
            # monitoring stack (test_rules_are_the_same_in_every_render).
            and all(answers.get(name, True) for name in SLICES_WITH_RULES)
            # Event sourcing with a broker: off by default, and message_broker is asked
            # only with it.
            and bool(answers.get("event_sourcing", False))
            and answers.get("message_broker", "none") != "none"
            # Model serving: off by default.
            and bool(answers.get("ml_serving", False))
        )

    def render_key(self) -> tuple[str, Answers]:
        """A matrix case with these answers (its render is shared), else answers of our own."""
        for case in CASES:
            if self.matches(case.answers):
                return case.id, case.data
        data: Answers = {
            **BASE_ANSWERS,
            "metrics": self.metrics,
            "tracing": self.tracing,
            "feature_flags": self.feature_flags,
        }
        if self.trace_backend is not None:
            data["trace_backend"] = self.trace_backend
        if self.feature_flags:
            data["experiments"] = True  # off by default
        data["graphql"] = True  # off by default
        data["multi_tenancy"] = True  # off by default
        data["event_sourcing"] = True  # off by default
        data["message_broker"] = VARIANT_BROKER  # none by default
        data["ml_serving"] = True  # off by default
        return f"observability-{self.id}", data


VARIANTS = [
    Variant("metrics-jaeger", metrics=True, tracing=True, trace_backend="jaeger"),
    Variant("metrics-tempo", metrics=True, tracing=True, trace_backend="tempo"),
    Variant("metrics-only", metrics=True, tracing=False),
    # The flag slice adds a metric and a dashboard: without it, neither may appear.
    Variant("metrics-no-flags", metrics=True, tracing=False, feature_flags=False),
    Variant("tracing-jaeger", metrics=False, tracing=True, trace_backend="jaeger"),
    Variant("tracing-tempo", metrics=False, tracing=True, trace_backend="tempo"),
]
METRICS_VARIANTS = [v for v in VARIANTS if v.metrics]
TRACING_VARIANTS = [v for v in VARIANTS if v.tracing]


def params(variants: list[Variant]) -> list[Any]:
    return [pytest.param(v, id=v.id) for v in variants]


def render_of(variant: Variant, renders: RenderCache) -> Path:
    key, data = variant.render_key()
    project = renders.get(key, data)
    assert variant.matches(read_answers(project)), f"render {key} does not have {variant}"
    return project


def exported_metrics(project: Path) -> frozenset[str]:
    """What the render's service exports: each slice's metrics only when it has the slice."""
    answers = read_answers(project)
    flags = FLAG_METRICS if answers.get("feature_flags") else frozenset()
    outbound = OUTBOUND_METRICS if answers.get("circuit_breakers") else frozenset()
    caching = CACHING_METRICS if answers.get("caching") else frozenset()
    protection = PROTECTION_METRICS if answers.get("request_protection") else frozenset()
    experiments = EXPERIMENTS_METRICS if answers.get("experiments") else frozenset()
    graphql = GRAPHQL_METRICS if answers.get("graphql") else frozenset()
    tenancy = TENANCY_METRICS if answers.get("multi_tenancy") else frozenset()
    events = EVENTS_METRICS if answers.get("event_sourcing") else frozenset()
    if answers.get("event_sourcing") and answers.get("message_broker", "none") != "none":
        events |= EVENTS_BROKER_METRICS
    ml = ML_METRICS if answers.get("ml_serving") else frozenset()
    return (
        SERVICE_METRICS
        | flags
        | outbound
        | caching
        | protection
        | experiments
        | graphql
        | tenancy
        | events
        | ml
    )


def tool(name: str) -> str:
    path = shutil.which(name)
    require(path is not None, f"{name} is not installed (apt-get install {TOOL_PACKAGES[name]})")
    assert path is not None
    return path


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def rule_groups(project: Path) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in sorted((project / "observability/prometheus/rules").glob("*.yml")):
        groups += load_yaml(path)["groups"]
    return groups


def alerting_rules(project: Path) -> list[dict[str, Any]]:
    return [r for g in rule_groups(project) for r in g["rules"] if "alert" in r]


def recorded_names(project: Path) -> set[str]:
    return {str(r["record"]) for g in rule_groups(project) for r in g["rules"] if "record" in r}


# --------------------------------------------------------------------------- #
# PromQL: Grafana variables and metric names
# --------------------------------------------------------------------------- #

PROMQL_KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}


def substitute_grafana_variables(expr: str) -> str:
    """A dashboard query as Prometheus would receive it (variables filled in)."""
    expr = expr.replace("$__tags", 'job="svc"')
    for name, value in (("__rate_interval", "1m"), ("__interval", "30s"), ("__range", "1h")):
        expr = expr.replace(f"${{{name}}}", value).replace(f"${name}", value)
    return re.sub(r"\$\{?\w+\}?", "svc", expr)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression reads (label names, functions, keywords dropped)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # grouping label lists
    text = re.sub(r"(?<![\w:])\d[\d.]*(?:[eE][+-]?\d+)?[smhdwy]*", " ", text)  # numbers
    names = set()
    for match in re.finditer(r"[A-Za-z_:][\w:]*", text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("("):
            continue  # a function or an aggregation
        if match.group().lower() not in PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def test_metric_names_finds_metrics_only() -> None:
    expr = (
        'sum by (job, le) (rate(app_http_request_duration_seconds_bucket{route=~"/api/.+",'
        ' le="0.1"}[5m])) / ignoring (le) job:app_slo_requests:rate5m > (14.4 * 1e-4)'
        ' and on (job) count(ALERTS{alertstate="firing"}) or vector(0)'
    )
    assert metric_names(expr) == {
        "app_http_request_duration_seconds_bucket",
        "job:app_slo_requests:rate5m",
        "ALERTS",
    }


# --------------------------------------------------------------------------- #
# Prometheus
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("variant", params(METRICS_VARIANTS))
def test_promtool_check_config(variant: Variant, renders: RenderCache) -> None:
    """prometheus.yml is valid and its rule_files exist and pass `check rules`."""
    prometheus_dir = render_of(variant, renders) / "observability/prometheus"
    result = run([tool("promtool"), "check", "config", "prometheus.yml"], prometheus_dir)
    assert result.returncode == 0, command_report(result)
    assert "rule files found" in result.stdout and " 0 rule files" not in result.stdout, (
        command_report(result)
    )


@pytest.mark.parametrize("variant", params(METRICS_VARIANTS))
def test_promtool_check_rules(variant: Variant, renders: RenderCache) -> None:
    rules = sorted((render_of(variant, renders) / "observability/prometheus/rules").glob("*.yml"))
    assert rules, "no rule files under observability/prometheus/rules"
    result = run([tool("promtool"), "check", "rules", *map(str, rules)], rules[0].parent)
    assert result.returncode == 0, command_report(result)


@pytest.mark.parametrize("variant", params(METRICS_VARIANTS))
def test_prometheus_scrapes_the_service_as_its_job(variant: Variant, renders: RenderCache) -> None:
    project = render_of(variant, renders)
    config = load_yaml(project / "observability/prometheus/prometheus.yml")
    jobs = {c["job_name"]: c for c in config["scrape_configs"]}
    slug = read_answers(project)["project_slug"]
    assert slug in jobs, f"no scrape job named {slug!r}: {sorted(jobs)}"
    targets = [t for sc in jobs[slug]["static_configs"] for t in sc["targets"]]
    assert targets == ["app:8000"], targets
    assert jobs[slug].get("metrics_path", "/metrics") == "/metrics"
    assert ("otel-collector" in jobs) == variant.tracing, sorted(jobs)
    managers = config["alerting"]["alertmanagers"]
    assert [t for m in managers for sc in m["static_configs"] for t in sc["targets"]] == [
        "alertmanager:9093"
    ]


def rule_test_files() -> list[str]:
    """The rule unit tests' rendered names (a slice's under a conditional name)."""
    names = (
        re.sub(r"\{% if [^%]*%\}(.*)\{% endif %\}", r"\1", p.name)
        for p in (TEMPLATE_PROMETHEUS / "tests").iterdir()
    )
    return sorted(name for name in names if name.endswith(".test.yml"))


@pytest.mark.parametrize("test_file", rule_test_files())
def test_promtool_rule_unit_tests(test_file: str, renders: RenderCache) -> None:
    """The rules' unit tests pass (see test_rules_are_the_same_in_every_render)."""
    tests_dir = render_of(METRICS_VARIANTS[0], renders) / "observability/prometheus/tests"
    result = run([tool("promtool"), "test", "rules", test_file], tests_dir)
    assert result.returncode == 0, command_report(result)
    assert "SUCCESS" in result.stdout, command_report(result)


def test_rule_unit_tests_exist() -> None:
    assert len(rule_test_files()) >= 3, rule_test_files()


def test_rules_are_the_same_in_every_render(renders: RenderCache) -> None:
    """The rule unit tests run on one render only: that holds for all while they agree."""

    def contents(project: Path) -> dict[str, bytes]:
        base = project / "observability/prometheus"
        return {
            p.relative_to(base).as_posix(): p.read_bytes()
            for sub in ("rules", "tests")
            for p in sorted((base / sub).rglob("*"))
            if p.is_file()
        }

    first = contents(render_of(METRICS_VARIANTS[0], renders))
    assert set(first) >= EXPERIMENTS_RULE_FILES, sorted(first)
    for variant in METRICS_VARIANTS[1:]:
        # Without feature flags the experiments slice's files are absent, the rest the same.
        expected = (
            first
            if variant.feature_flags
            else {k: v for k, v in first.items() if k not in EXPERIMENTS_RULE_FILES}
        )
        assert contents(render_of(variant, renders)) == expected, (
            f"rules or rule tests differ in {variant.id}: run test_promtool_rule_unit_tests "
            "on every variant whose rules differ"
        )


@pytest.mark.parametrize("variant", params(METRICS_VARIANTS))
def test_alerts_have_severity_annotations_and_runbooks(
    variant: Variant, renders: RenderCache
) -> None:
    project = render_of(variant, renders)
    alerts = alerting_rules(project)
    assert alerts, "no alerting rules"
    problems: list[str] = []
    for rule in alerts:
        name = rule["alert"]
        labels = rule.get("labels", {})
        annotations = rule.get("annotations", {})
        if labels.get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity {labels.get('severity')!r} not in {SEVERITIES}")
        for key in ("summary", "description", "runbook_url"):
            if not str(annotations.get(key, "")).strip():
                problems.append(f"{name}: no {key} annotation")
        url = annotations.get("runbook_url")
        if url != f"docs/runbooks/{name}.md":
            problems.append(f"{name}: runbook_url {url!r} is not docs/runbooks/{name}.md")
        elif not (project / url).is_file():
            problems.append(f"{name}: {url} does not exist")
    names = {rule["alert"] for rule in alerts}
    for runbook in sorted((project / "docs/runbooks").glob("*.md")):
        if runbook.stem not in names:
            problems.append(f"docs/runbooks/{runbook.name} belongs to no alert")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("variant", params(METRICS_VARIANTS[:1]))
def test_every_alert_is_tested_firing_and_silent(variant: Variant, renders: RenderCache) -> None:
    project = render_of(variant, renders)
    fired: set[str] = set()
    silent: set[str] = set()
    for path in sorted((project / "observability/prometheus/tests").glob("*.test.yml")):
        for case in load_yaml(path)["tests"]:
            for check in case.get("alert_rule_test", []):
                (fired if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerting_rules(project)}
    assert not names - fired, f"alerts no unit test shows firing: {sorted(names - fired)}"
    assert not names - silent, f"alerts no unit test shows silent: {sorted(names - silent)}"


@pytest.mark.parametrize("variant", params(METRICS_VARIANTS))
def test_rules_read_only_exported_or_recorded_metrics(
    variant: Variant, renders: RenderCache
) -> None:
    project = render_of(variant, renders)
    known = exported_metrics(project) | PROMETHEUS_BUILTINS | recorded_names(project)
    problems = [
        f"{rule.get('record') or rule.get('alert')}: {sorted(metric_names(rule['expr']) - known)}"
        for group in rule_groups(project)
        for rule in group["rules"]
        if metric_names(rule["expr"]) - known
    ]
    assert not problems, "rules read metrics nobody exports or records:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- #
# Alertmanager
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("variant", params(METRICS_VARIANTS))
def test_amtool_check_config(variant: Variant, renders: RenderCache) -> None:
    alertmanager_dir = render_of(variant, renders) / "observability/alertmanager"
    result = run([tool("amtool"), "check-config", "alertmanager.yml"], alertmanager_dir)
    assert result.returncode == 0, command_report(result)


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=page"], "page"),
        (["severity=ticket"], "ticket"),
        # Without a severity an alert still reaches someone.
        (["alertname=Unlabelled"], "ticket"),
    ],
)
def test_alertmanager_routes_by_severity(
    labels: list[str], receiver: str, renders: RenderCache
) -> None:
    alertmanager_dir = render_of(METRICS_VARIANTS[0], renders) / "observability/alertmanager"
    result = run(
        [tool("amtool"), "config", "routes", "test", "--config.file=alertmanager.yml", *labels],
        alertmanager_dir,
    )
    assert result.returncode == 0, command_report(result)
    assert result.stdout.split() == [receiver], command_report(result)


@pytest.mark.parametrize("variant", params(METRICS_VARIANTS))
def test_pagerduty_key_comes_from_the_file_the_entrypoint_writes(
    variant: Variant, renders: RenderCache
) -> None:
    project = render_of(variant, renders)
    config = load_yaml(project / "observability/alertmanager/alertmanager.yml")
    pagerduty = [
        pd for receiver in config["receivers"] for pd in receiver.get("pagerduty_configs", [])
    ]
    assert pagerduty, "no PagerDuty receiver"
    inline = [pd for pd in pagerduty if {"routing_key", "service_key"} & set(pd)]
    assert not inline, f"a PagerDuty key is written into alertmanager.yml: {inline}"
    key_files = {pd.get("routing_key_file") for pd in pagerduty}
    assert len(key_files) == 1, key_files
    key_file = str(key_files.pop())
    entrypoint = (project / "observability/alertmanager/entrypoint.sh").read_text()
    assert f"key_file={key_file}\n" in entrypoint, f"entrypoint.sh does not write {key_file}"
    compose = compose_model(project)
    alertmanager = compose["services"]["alertmanager"]
    assert str(Path(key_file).parent) in alertmanager.get("tmpfs", []), alertmanager
    assert "PAGERDUTY_ROUTING_KEY" in alertmanager["environment"]


# --------------------------------------------------------------------------- #
# Grafana
# --------------------------------------------------------------------------- #


def datasources(project: Path) -> list[dict[str, Any]]:
    path = project / "observability/grafana/provisioning/datasources/datasources.yaml"
    result: list[dict[str, Any]] = load_yaml(path)["datasources"]
    return result


def dashboards(project: Path) -> dict[str, dict[str, Any]]:
    return {
        p.name: json.loads(p.read_text(encoding="utf-8"))
        for p in sorted((project / "observability/grafana/dashboards").glob("*.json"))
    }


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable."""
    queries: list[tuple[str, str]] = []
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            if "expr" in target:
                queries.append((f"panel {panel.get('title')!r}", target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        label_values = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", text)
        queries.append(
            (f"variable {variable['name']!r}", label_values[1] if label_values else text)
        )
    return queries


def metrics_read(board: dict[str, Any]) -> set[str]:
    """The metric names a dashboard's queries read."""
    return {
        name
        for _, expr in dashboard_queries(board)
        for name in metric_names(substitute_grafana_variables(expr))
    }


def grafana_promql(project: Path) -> list[tuple[str, str]]:
    """Every PromQL query of the dashboards and of the data sources' trace-to-metrics links."""
    queries = [
        (f"{name}: {where}", expr)
        for name, dashboard in dashboards(project).items()
        for where, expr in dashboard_queries(dashboard)
    ]
    for source in datasources(project):
        for query in source.get("jsonData", {}).get("tracesToMetrics", {}).get("queries", []):
            # `$$` is the provisioning file's escape for `$`.
            queries.append((f"data source {source['uid']}", query["query"].replace("$$", "$")))
    return queries


@pytest.mark.parametrize("variant", params(VARIANTS))
def test_datasources_have_fixed_unique_uids_and_links_resolve(
    variant: Variant, renders: RenderCache
) -> None:
    project = render_of(variant, renders)
    sources = datasources(project)
    uids = [s["uid"] for s in sources]
    expected = {"prometheus"} if variant.metrics else set()
    if variant.tracing:
        expected |= {"loki", str(variant.trace_backend)}
    assert sorted(uids) == sorted(expected), uids
    assert sum(bool(s.get("isDefault")) for s in sources) == 1, "exactly one default source"
    linked = {
        str(node["datasourceUid"])
        for node in walk(sources)
        if isinstance(node, dict) and "datasourceUid" in node
    }
    assert linked <= set(uids), f"links to unprovisioned data sources: {linked - set(uids)}"
    if variant.metrics and variant.tracing:
        prometheus = next(s for s in sources if s["uid"] == "prometheus")
        destinations = prometheus["jsonData"]["exemplarTraceIdDestinations"]
        assert [d["name"] for d in destinations] == ["trace_id"], destinations


@pytest.mark.parametrize("variant", params(TRACING_VARIANTS))
def test_loki_links_json_log_lines_to_their_trace(variant: Variant, renders: RenderCache) -> None:
    loki = next(s for s in datasources(render_of(variant, renders)) if s["uid"] == "loki")
    (field,) = loki["jsonData"]["derivedFields"]
    assert field["datasourceUid"] == variant.trace_backend
    # `$$` in the provisioning file reaches Grafana as `$`: the link is the matched id.
    assert field["url"].replace("$$", "$") == "${__value.raw}", field["url"]
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    pattern = re.compile(field["matcherRegex"])
    for line in (
        json.dumps({"event": "request", "status": 200, "trace_id": trace_id, "span_id": "0" * 16}),
        json.dumps({"trace_id": trace_id}, separators=(",", ":")),
    ):
        match = pattern.search(line)
        assert match is not None and match[1] == trace_id, line
    assert pattern.search(json.dumps({"request_id": trace_id})) is None


@pytest.mark.parametrize("variant", params(METRICS_VARIANTS))
def test_dashboards_use_provisioned_datasources(variant: Variant, renders: RenderCache) -> None:
    project = render_of(variant, renders)
    uids = {s["uid"] for s in datasources(project)}
    boards = dashboards(project)
    assert {"service-overview.json", "slo.json"} <= set(boards), sorted(boards)
    problems: list[str] = []
    for name, dashboard in boards.items():
        for node in walk(dashboard):
            if isinstance(node, dict) and isinstance(node.get("datasource"), dict):
                uid = node["datasource"].get("uid")
                if uid not in uids:
                    problems.append(f"{name}: data source uid {uid!r} is not provisioned")
        panels = [p for p in dashboard["panels"] if p.get("type") != "row"]
        missing = [p.get("title") for p in panels if not p.get("datasource")]
        if missing:
            problems.append(f"{name}: panels without a data source: {missing}")
        ids = [p["id"] for p in dashboard["panels"]]
        if len(ids) != len(set(ids)):
            problems.append(f"{name}: duplicate panel ids")
    dashboard_uids = [d["uid"] for d in boards.values()]
    assert len(dashboard_uids) == len(set(dashboard_uids)), dashboard_uids
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("variant", params(METRICS_VARIANTS))
def test_grafana_promql_parses(variant: Variant, renders: RenderCache, tmp_path: Path) -> None:
    """Every dashboard query is valid PromQL once Grafana's variables are filled in."""
    queries = grafana_promql(render_of(variant, renders))
    assert queries
    rules = [
        {"record": f"grafana:query_{i}:check", "expr": substitute_grafana_variables(expr)}
        for i, (_, expr) in enumerate(queries)
    ]
    rules_file = tmp_path / "grafana-queries.yml"
    rules_file.write_text(
        yaml.safe_dump({"groups": [{"name": "grafana-queries", "rules": rules}]}), "utf-8"
    )
    result = run([tool("promtool"), "check", "rules", rules_file.name], tmp_path)
    where = "\n".join(f"grafana:query_{i}:check  {w}" for i, (w, _) in enumerate(queries))
    assert result.returncode == 0, command_report(result) + "\n" + where


@pytest.mark.parametrize("variant", params(METRICS_VARIANTS))
def test_grafana_queries_read_only_exported_or_recorded_metrics(
    variant: Variant, renders: RenderCache
) -> None:
    project = render_of(variant, renders)
    known = exported_metrics(project) | PROMETHEUS_BUILTINS | recorded_names(project)
    problems = [
        f"{where}: {sorted(metric_names(substitute_grafana_variables(expr)) - known)}"
        for where, expr in grafana_promql(project)
        if metric_names(substitute_grafana_variables(expr)) - known
    ]
    assert not problems, "queries of metrics nobody exports or records:\n" + "\n".join(problems)


@pytest.mark.parametrize("variant", params(METRICS_VARIANTS))
def test_flag_dashboard_comes_with_the_flag_slice(variant: Variant, renders: RenderCache) -> None:
    project = render_of(variant, renders)
    boards = dashboards(project)
    assert ("flags.json" in boards) == variant.feature_flags, sorted(boards)
    if variant.feature_flags:
        read = metrics_read(boards["flags.json"])
        assert read - {"app_build_info"} == FLAG_METRICS, sorted(read)


@pytest.mark.parametrize("variant", params(METRICS_VARIANTS))
def test_outbound_dashboard_and_alerts_read_the_outbound_metrics(
    variant: Variant, renders: RenderCache
) -> None:
    project = render_of(variant, renders)
    boards = dashboards(project)
    read = metrics_read(boards["outbound.json"])
    assert read <= OUTBOUND_METRICS | {"app_build_info"}, sorted(read - OUTBOUND_METRICS)
    alerts = {rule["alert"] for rule in alerting_rules(project)}
    assert {"AppOutboundBreakerOpen", "AppOutboundRetryBudgetExhausted"} <= alerts


def test_a_service_without_circuit_breakers_has_no_outbound_dashboard_nor_alerts(
    renders: RenderCache,
) -> None:
    project = renders.get("observability-no-outbound", {**BASE_ANSWERS, "circuit_breakers": False})
    assert "outbound.json" not in dashboards(project)
    assert not any("Outbound" in rule["alert"] for rule in alerting_rules(project))
    assert not list((project / "docs/runbooks").glob("AppOutbound*"))
    assert not (project / "observability/prometheus/tests/outbound.test.yml").exists()


@pytest.mark.parametrize("variant", params(VARIANTS))
def test_grafana_loads_the_dashboards_compose_mounts(
    variant: Variant, renders: RenderCache
) -> None:
    project = render_of(variant, renders)
    provider_file = project / "observability/grafana/provisioning/dashboards/dashboards.yaml"
    providers = load_yaml(provider_file)["providers"]
    grafana = compose_model(project)["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("./"))
    if not variant.metrics:
        assert providers == []
        assert "./observability/grafana/dashboards" not in mounts
        return
    (provider,) = providers
    assert mounts.get("./observability/grafana/dashboards") == provider["options"]["path"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert Path(home).parent.as_posix() == provider["options"]["path"]
    assert (project / "observability/grafana/dashboards" / Path(home).name).is_file(), home


# --------------------------------------------------------------------------- #
# OpenTelemetry Collector
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("variant", params(TRACING_VARIANTS))
def test_collector_pipelines(variant: Variant, renders: RenderCache) -> None:
    config = load_yaml(render_of(variant, renders) / "observability/otel-collector/config.yaml")
    pipelines: dict[str, dict[str, list[str]]] = config["service"]["pipelines"]
    expected = {"traces", "logs"} | ({"metrics"} if variant.metrics else set())
    assert set(pipelines) == expected, sorted(pipelines)
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for name, pipeline in pipelines.items():
        processors = pipeline.get("processors", [])
        assert processors[:1] == ["memory_limiter"], f"{name}: memory_limiter must come first"
        assert processors[-1:] == ["batch"], f"{name}: batch must come last"
        for kind in used:
            used[kind] |= set(pipeline.get(kind, []))
    for kind, names in used.items():
        defined = set(config.get(kind) or {})
        assert names == defined, f"{kind}: used {sorted(names)}, defined {sorted(defined)}"
    exporters = config["exporters"]
    (traces,) = pipelines["traces"]["exporters"]
    assert exporters[traces]["endpoint"] == f"{variant.trace_backend}:4317"
    (logs,) = pipelines["logs"]["exporters"]
    assert exporters[logs]["endpoint"] == "http://loki:3100/otlp"
    for protocol in ("grpc", "http"):
        endpoint = config["receivers"]["otlp"]["protocols"][protocol]["endpoint"]
        assert endpoint.startswith("0.0.0.0:"), f"otlp {protocol} receiver listens on {endpoint}"


# --------------------------------------------------------------------------- #
# compose.yaml
# --------------------------------------------------------------------------- #

SERVICE_PROFILE_FREE = {"app", "migrate", "db", "redis", "broker"}


def expected_observability_services(variant: Variant) -> set[str]:
    services = {"grafana"}
    if variant.metrics:
        services |= {"prometheus", "alertmanager"}
    if variant.tracing:
        services |= {"otel-collector", "loki"}
        services |= {"jaeger"} if variant.trace_backend == "jaeger" else {"tempo", "tempo-init"}
    return services


@pytest.mark.parametrize("variant", params(VARIANTS))
def test_compose_observability_profile(variant: Variant, renders: RenderCache) -> None:
    project = render_of(variant, renders)
    services: dict[str, dict[str, Any]] = compose_model(project)["services"]
    in_profile = {n for n, s in services.items() if "observability" in s.get("profiles", [])}
    assert in_profile == expected_observability_services(variant), sorted(in_profile)
    assert set(services) - in_profile <= SERVICE_PROFILE_FREE, sorted(services)
    problems: list[str] = []
    for name in sorted(in_profile):
        service = services[name]
        image = str(service.get("image", ""))
        tag = image.rpartition(":")[2] if ":" in image else ""
        if not re.search(r"\d", tag) or tag == "latest":
            problems.append(f"{name}: image {image!r} is not pinned to a version")
        for port in service.get("ports", []):
            if not str(port).startswith("127.0.0.1:"):
                problems.append(f"{name}: port {port!r} is not bound to 127.0.0.1")
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./") and not (project / source).exists():
                problems.append(f"{name}: mounts {source}, which the render does not have")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("variant", params(VARIANTS))
def test_compose_app_exports_only_when_asked(variant: Variant, renders: RenderCache) -> None:
    """The OTLP endpoint reaches the service from the shell, empty (off) by default."""
    services = compose_model(render_of(variant, renders))["services"]
    environment = services["app"]["environment"]
    if variant.tracing:
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "${OTEL_EXPORTER_OTLP_ENDPOINT:-}"
    else:
        assert not any(key.startswith("OTEL_") for key in environment), environment


@pytest.mark.parametrize("variant", params(METRICS_VARIANTS))
def test_compose_prometheus_keeps_the_slo_window(variant: Variant, renders: RenderCache) -> None:
    services = compose_model(render_of(variant, renders))["services"]
    command = services["prometheus"]["command"]
    assert "--enable-feature=exemplar-storage" in command, command
    (retention,) = [c for c in command if c.startswith("--storage.tsdb.retention.time=")]
    days = re.fullmatch(r"--storage\.tsdb\.retention\.time=(\d+)d", retention)
    assert days is not None and int(days[1]) >= 30, f"{retention}: the SLO window is 30 days"


def test_a_service_without_caching_has_no_cache_dashboard_nor_alerts(
    renders: RenderCache,
) -> None:
    project = renders.get("observability-no-caching", {**BASE_ANSWERS, "caching": False})
    assert "caching.json" not in dashboards(project)
    assert not any("Cache" in rule["alert"] for rule in alerting_rules(project))
    assert not list((project / "docs/runbooks").glob("AppCache*"))
    assert not (project / "observability/prometheus/tests/caching.test.yml").exists()


@pytest.mark.parametrize("variant", params(METRICS_VARIANTS))
def test_protection_dashboard_and_alerts_read_the_protection_metrics(
    variant: Variant, renders: RenderCache
) -> None:
    project = render_of(variant, renders)
    read = metrics_read(dashboards(project)["protection.json"])
    # Refusals are a share of every request answered.
    assert read - {"app_build_info", "app_http_requests_total"} == PROTECTION_METRICS, sorted(read)
    alerts = {rule["alert"] for rule in alerting_rules(project)}
    assert {"AppRequestRefusalSpike", "AppRateLimiterUnavailable", "AppSlowClientsClosed"} <= (
        alerts
    )


def test_a_service_without_request_protection_has_no_protection_dashboard_nor_alerts(
    renders: RenderCache,
) -> None:
    project = renders.get(
        "observability-no-protection", {**BASE_ANSWERS, "request_protection": False}
    )
    assert "protection.json" not in dashboards(project)
    names = {"AppRequestRefusalSpike", "AppRateLimiterUnavailable", "AppSlowClientsClosed"}
    assert not names & {rule["alert"] for rule in alerting_rules(project)}
    assert not [p for p in (project / "docs/runbooks").glob("*.md") if p.stem in names]
    assert not (project / "observability/prometheus/tests/protection.test.yml").exists()
    assert "app_protection_" not in (project / "docs/observability.md").read_text()


@pytest.mark.parametrize("variant", params(METRICS_VARIANTS))
def test_experiments_dashboard_and_alerts_come_with_the_experiments_slice(
    variant: Variant, renders: RenderCache
) -> None:
    """The experiments slice is asked only with feature_flags (and is on in the variants)."""
    project = render_of(variant, renders)
    boards = dashboards(project)
    alerts = {rule["alert"] for rule in alerting_rules(project)}
    assert ("experiments.json" in boards) == variant.feature_flags, sorted(boards)
    assert (alerts >= EXPERIMENTS_ALERTS) == variant.feature_flags, sorted(alerts)
    if variant.feature_flags:
        read = metrics_read(boards["experiments.json"])
        histogram_totals = {
            "app_experiments_flush_seconds_count",
            "app_experiments_flush_seconds_sum",
        }
        assert read - {"app_build_info"} == EXPERIMENTS_METRICS - histogram_totals, sorted(read)
    else:
        assert not EXPERIMENTS_ALERTS & alerts, sorted(alerts)


@pytest.mark.parametrize("variant", params(METRICS_VARIANTS))
def test_the_graphql_dashboard_reads_the_graphql_metrics(
    variant: Variant, renders: RenderCache
) -> None:
    boards = dashboards(render_of(variant, renders))
    read = metrics_read(boards["graphql.json"])
    histogram_totals = {
        "app_graphql_operation_seconds_count",
        "app_graphql_operation_seconds_sum",
    }
    assert read - {"app_build_info"} == GRAPHQL_METRICS - histogram_totals, sorted(read)


def test_a_service_without_experiments_has_no_experiments_dashboard_nor_alerts(
    renders: RenderCache,
) -> None:
    project = renders.get("observability-no-experiments", {**BASE_ANSWERS, "experiments": False})
    assert read_answers(project)["feature_flags"], "the flag slice is on, experiments off"
    assert "experiments.json" not in dashboards(project)
    assert not EXPERIMENTS_ALERTS & {rule["alert"] for rule in alerting_rules(project)}
    assert not [p for p in (project / "docs/runbooks").glob("*.md") if p.stem in EXPERIMENTS_ALERTS]
    assert not (project / "observability/prometheus/tests/experiments.test.yml").exists()
    assert "app_experiments_" not in (project / "docs/observability.md").read_text()


@pytest.mark.parametrize("variant", params(METRICS_VARIANTS))
def test_tenancy_dashboard_and_alerts_read_the_tenancy_metrics(
    variant: Variant, renders: RenderCache
) -> None:
    project = render_of(variant, renders)
    read = metrics_read(dashboards(project)["tenancy.json"])
    assert read - {"app_build_info"} == TENANCY_METRICS, sorted(read)
    assert {rule["alert"] for rule in alerting_rules(project)} >= TENANCY_ALERTS


def test_a_service_without_multi_tenancy_has_no_tenancy_dashboard_nor_alerts(
    renders: RenderCache,
) -> None:
    project = renders.get("observability-no-tenancy", dict(BASE_ANSWERS))
    assert not read_answers(project)["multi_tenancy"]
    assert "tenancy.json" not in dashboards(project)
    assert not {rule["alert"] for rule in alerting_rules(project)} & TENANCY_ALERTS
    assert not [p for p in (project / "docs/runbooks").glob("*.md") if p.stem in TENANCY_ALERTS]
    assert not (project / "observability/prometheus/tests/tenancy.test.yml").exists()
    assert "app_tenant_" not in (project / "docs/observability.md").read_text()


@pytest.mark.parametrize("variant", params(METRICS_VARIANTS))
def test_events_dashboards_and_alerts_read_the_events_metrics(
    variant: Variant, renders: RenderCache
) -> None:
    """With a broker (the variants'): the store's dashboard and the broker's, each with a
    panel for every metric of its part."""
    project = render_of(variant, renders)
    boards = dashboards(project)
    read = metrics_read(boards["events.json"])
    assert read - {"app_build_info"} == EVENTS_METRICS, sorted(read)
    read = metrics_read(boards["events-broker.json"])
    unread = {
        "app_events_relay_publish_seconds_sum",
        "app_events_consumer_delay_seconds_count",
        "app_events_consumer_delay_seconds_sum",
    }
    assert read - {"app_build_info"} == EVENTS_BROKER_METRICS - unread, sorted(read)
    alerts = {rule["alert"] for rule in alerting_rules(project)}
    assert alerts >= EVENTS_ALERTS | EVENTS_BROKER_ALERTS, sorted(alerts)


def test_events_without_a_broker_have_no_broker_dashboard_nor_alerts(
    renders: RenderCache,
) -> None:
    """message_broker none: no outbox, relay nor consumers, so neither their dashboard,
    rules, rule tests, runbooks nor metric names; the projections' are there."""
    project = renders.get(
        "observability-events-no-broker",
        {**BASE_ANSWERS, "event_sourcing": True, "message_broker": "none"},
    )
    boards = dashboards(project)
    assert "events-broker.json" not in boards, sorted(boards)
    read = metrics_read(boards["events.json"])
    assert read - {"app_build_info"} == EVENTS_METRICS, sorted(read)
    alerts = {rule["alert"] for rule in alerting_rules(project)}
    assert alerts >= EVENTS_ALERTS and not alerts & EVENTS_BROKER_ALERTS, sorted(alerts)
    runbooks = {p.stem for p in (project / "docs/runbooks").glob("*.md")}
    assert runbooks >= EVENTS_ALERTS and not runbooks & EVENTS_BROKER_ALERTS, sorted(runbooks)
    prometheus_dir = project / "observability/prometheus"
    assert not [name for name in EVENTS_BROKER_RULE_FILES if (prometheus_dir / name).exists()]
    assert "app_events_outbox_" not in (project / "docs/observability.md").read_text()
    # Its rules pass promtool, its rule tests pass, its queries read what it exports.
    rules = sorted((prometheus_dir / "rules").glob("*.yml"))
    result = run([tool("promtool"), "check", "rules", *map(str, rules)], prometheus_dir)
    assert result.returncode == 0, command_report(result)
    result = run([tool("promtool"), "test", "rules", "events.test.yml"], prometheus_dir / "tests")
    assert result.returncode == 0 and "SUCCESS" in result.stdout, command_report(result)
    known = exported_metrics(project) | PROMETHEUS_BUILTINS | recorded_names(project)
    unknown = {
        where: sorted(metric_names(substitute_grafana_variables(expr)) - known)
        for where, expr in grafana_promql(project)
        if metric_names(substitute_grafana_variables(expr)) - known
    }
    assert not unknown, unknown


def test_a_service_without_event_sourcing_has_no_events_dashboards_nor_alerts(
    renders: RenderCache,
) -> None:
    project = renders.get("observability-no-tenancy", dict(BASE_ANSWERS))
    assert not read_answers(project)["event_sourcing"]
    boards = dashboards(project)
    assert not {"events.json", "events-broker.json"} & set(boards), sorted(boards)
    names = EVENTS_ALERTS | EVENTS_BROKER_ALERTS
    assert not {rule["alert"] for rule in alerting_rules(project)} & names
    assert not [p for p in (project / "docs/runbooks").glob("*.md") if p.stem in names]
    tests_dir = project / "observability/prometheus/tests"
    assert not list(tests_dir.glob("events*.test.yml"))
    assert "app_events_" not in (project / "docs/observability.md").read_text()


@pytest.mark.parametrize("variant", params(METRICS_VARIANTS))
def test_ml_dashboard_and_alerts_read_the_ml_metrics(
    variant: Variant, renders: RenderCache
) -> None:
    """With ml_serving (the variants'): a panel for every metric of the slice, and its
    alerts, each with a runbook."""
    project = render_of(variant, renders)
    read = metrics_read(dashboards(project)["ml.json"])
    unread = {
        "app_ml_prediction_seconds_count",
        "app_ml_prediction_seconds_sum",
        "app_ml_inference_seconds_count",
        "app_ml_inference_seconds_sum",
        "app_ml_load_seconds_count",
        "app_ml_load_seconds_sum",
    }
    assert read - {"app_build_info"} == ML_METRICS - unread, sorted(read)
    alerts = {rule["alert"] for rule in alerting_rules(project)}
    assert alerts >= ML_ALERTS, sorted(alerts)
    runbooks = {p.stem for p in (project / "docs/runbooks").glob("*.md")}
    assert runbooks >= ML_ALERTS, sorted(runbooks)


def test_a_service_without_ml_serving_has_no_ml_dashboard_nor_alerts(
    renders: RenderCache,
) -> None:
    project = renders.get("observability-no-tenancy", dict(BASE_ANSWERS))
    assert not read_answers(project)["ml_serving"]
    assert "ml.json" not in dashboards(project)
    assert not {rule["alert"] for rule in alerting_rules(project)} & ML_ALERTS
    assert not [p for p in (project / "docs/runbooks").glob("*.md") if p.stem in ML_ALERTS]
    prometheus_dir = project / "observability/prometheus"
    assert not (prometheus_dir / "rules/ml.yml").exists()
    assert not (prometheus_dir / "tests/ml.test.yml").exists()
    assert "app_ml_" not in (project / "docs/observability.md").read_text()
