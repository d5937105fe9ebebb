"""The one place that lists what the template's questions can be answered with.

Adding a choice or boolean question to ``copier.yml`` means adding one line to
``DOMAINS`` (``test_matrix_covers_questionnaire`` fails until you do). Adding a
file that exists only for some answers means adding one line to
``CONDITIONAL_PATHS``.

The derived case list (``CASES``) is:

* ``defaults``: only ``project_name`` is given;
* every value of every domain alone (the others left at their defaults);
* a pairwise (allpairspy) covering array over all domains;
* a few identity cases exercising the derived ``project_slug``/``package_name``.

Cases whose effective answers coincide with an earlier case are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from allpairspy import AllPairs  # type: ignore[import-untyped]

REPO_ROOT = Path(__file__).resolve().parent.parent
COPIER_YML = REPO_ROOT / "copier.yml"

Answers = dict[str, Any]

# Question -> every value it accepts. One line per choice/bool question.
DOMAINS: dict[str, list[Any]] = {
    "python_version": ["3.11", "3.12", "3.13"],
    "database": ["sqlite", "postgresql"],
    "redis": [False, True],
    "metrics": [False, True],
    "tracing": [False, True],
    "trace_backend": ["jaeger", "tempo"],
    "feature_flags": [False, True],
    "flag_provider": ["builtin", "flagd", "launchdarkly"],
    "experiments": [False, True],
    "circuit_breakers": [False, True],
    "caching": [False, True],
    "request_protection": [False, True],
    "graphql": [False, True],
    "multi_tenancy": [False, True],
    "tenant_isolation": ["row", "schema", "database"],
    "event_sourcing": [False, True],
    "message_broker": ["none", "rabbitmq", "nats", "kafka"],
    "ml_serving": [False, True],
    "kubernetes": [False, True],
}

# Questions asked only for some answers (their `when:`): skipped ones are not recorded.
ASKED_WHEN: dict[str, Callable[[Answers], bool]] = {
    "trace_backend": lambda a: bool(a["tracing"]),
    "flag_provider": lambda a: bool(a["feature_flags"]),
    "experiments": lambda a: bool(a["feature_flags"]),
    "tenant_isolation": lambda a: bool(a["multi_tenancy"]),
    "message_broker": lambda a: bool(a["event_sourcing"]),
}

# Always given: copier.yml has no default for project_name.
BASE_ANSWERS: Answers = {"project_name": "Acme Order Service"}

# Free-text identity answers worth rendering on top of BASE_ANSWERS.
IDENTITY_CASES: dict[str, Answers] = {
    # Derived slug/package from a name with dots, digits and underscores.
    "identity-derived": {"project_name": "Q.2 billing_API v3"},
    # Explicit slug and package that differ from the derived ones.
    "identity-explicit": {
        "project_name": "Orders",
        "project_slug": "order-api",
        "package_name": "orders_core",
        "description": "Takes orders; ships them.",
        "author_name": "Jane O'Neil",
        "author_email": "jane.oneil+svc@mail.example.org",
    },
    # The longest project_name the validator accepts (60 characters), with every
    # backend on: long derived names must not push generated lines past the limit.
    "identity-longest": {
        "project_name": "Enterprise Customer Loyalty And Rewards Points Ledger Svc v2",
        "database": "postgresql",
        "redis": True,
    },
}

# Rendered path (``{package_name}`` is substituted) -> predicate on the effective
# answers telling whether the path must exist. Paths are relative to the render.
CONDITIONAL_PATHS: dict[str, Callable[[Answers], bool]] = {
    "src/{package_name}/core/redis.py": lambda a: bool(a["redis"]),
    "src/{package_name}/metrics": lambda a: bool(a["metrics"]),
    "src/{package_name}/tracing": lambda a: bool(a["tracing"]),
    "tests/test_metrics.py": lambda a: bool(a["metrics"]),
    "tests/test_service_process.py": lambda a: bool(
        a["metrics"] or (a["feature_flags"] and a["flag_provider"] == "builtin")
    ),
    "tests/test_tracing.py": lambda a: bool(a["tracing"]),
    "tests/test_otlp_export.py": lambda a: bool(a["tracing"]),
    "observability": lambda a: bool(a["metrics"] or a["tracing"]),
    "observability/prometheus": lambda a: bool(a["metrics"]),
    "observability/alertmanager": lambda a: bool(a["metrics"]),
    "observability/grafana/dashboards": lambda a: bool(a["metrics"]),
    "observability/otel-collector": lambda a: bool(a["tracing"]),
    "observability/loki": lambda a: bool(a["tracing"]),
    "observability/tempo": lambda a: bool(a["tracing"]) and a["trace_backend"] == "tempo",
    "docs/runbooks": lambda a: bool(a["metrics"]),
    "docs/observability.md": lambda a: bool(a["metrics"] or a["tracing"]),
    "src/{package_name}/flags": lambda a: bool(a["feature_flags"]),
    "src/{package_name}/flags/metrics.py": lambda a: bool(a["feature_flags"] and a["metrics"]),
    "src/{package_name}/flags/tracing.py": lambda a: bool(a["feature_flags"] and a["tracing"]),
    "observability/grafana/dashboards/flags.json": lambda a: bool(
        a["metrics"] and a["feature_flags"]
    ),
    "docs/flags.md": lambda a: bool(a["feature_flags"]),
    "tests/test_flag_cli.py": lambda a: (
        bool(a["feature_flags"]) and a["flag_provider"] == "builtin"
    ),
    "tests/test_flag_admin.py": lambda a: (
        bool(a["feature_flags"]) and a["flag_provider"] == "builtin"
    ),
    "tests/test_flag_evaluation.py": lambda a: (
        bool(a["feature_flags"]) and a["flag_provider"] == "builtin"
    ),
    "tests/test_flag_context.py": lambda a: (
        bool(a["feature_flags"]) and a["flag_provider"] == "builtin"
    ),
    "tests/test_flag_observability.py": lambda a: bool(
        a["feature_flags"] and (a["metrics"] or a["tracing"])
    ),
    "tests/test_flag_sync.py": lambda a: (
        bool(a["feature_flags"]) and a["flag_provider"] == "builtin"
    ),
    "tests/test_ofrep.py": lambda a: bool(a["feature_flags"]) and a["flag_provider"] == "builtin",
    "src/{package_name}/flags/builtin": lambda a: (
        bool(a["feature_flags"]) and a["flag_provider"] == "builtin"
    ),
    "src/{package_name}/flags/builtin/redis_sync.py": lambda a: (
        bool(a["feature_flags"]) and a["flag_provider"] == "builtin" and bool(a["redis"])
    ),
    "src/{package_name}/migrations/versions/flags": lambda a: (
        bool(a["feature_flags"]) and a["flag_provider"] == "builtin"
    ),
    "flags": lambda a: bool(a["feature_flags"]) and a["flag_provider"] == "flagd",
    "flags/flags.json": lambda a: bool(a["feature_flags"]) and a["flag_provider"] == "flagd",
    "tests/test_flagd.py": lambda a: bool(a["feature_flags"]) and a["flag_provider"] == "flagd",
    "tests/test_launchdarkly.py": lambda a: (
        bool(a["feature_flags"]) and a["flag_provider"] == "launchdarkly"
    ),
    "tests/test_flagd_format.py": lambda a: (
        bool(a["feature_flags"]) and a["flag_provider"] == "builtin"
    ),
    "tests/fixtures/redis.py": lambda a: bool(a["redis"]),
    "tests/fixtures/flags.py": lambda a: bool(a["feature_flags"]),
    "compose/compose.sqlite.yaml": lambda a: a["database"] == "sqlite",
    "compose/compose.postgresql.yaml": lambda a: a["database"] == "postgresql",
    "compose/compose.redis.yaml": lambda a: bool(a["redis"]),
    "compose/compose.ml.yaml": lambda a: bool(a["ml_serving"]),
    "compose/postgres-app-role.sql": lambda a: (
        a["database"] == "postgresql" and bool(a["multi_tenancy"])
    ),
    "compose/compose.flagd.yaml": lambda a: (
        bool(a["feature_flags"]) and a["flag_provider"] == "flagd"
    ),
    "compose/compose.metrics.yaml": lambda a: bool(a["metrics"]),
    "compose/compose.tracing.yaml": lambda a: bool(a["tracing"]),
    "compose/compose.grafana.yaml": lambda a: bool(a["metrics"] or a["tracing"]),
    "src/{package_name}/outbound": lambda a: bool(a["circuit_breakers"]),
    "src/{package_name}/outbound/metrics.py": lambda a: bool(
        a["circuit_breakers"] and a["metrics"]
    ),
    "src/{package_name}/outbound/tracing.py": lambda a: bool(
        a["circuit_breakers"] and a["tracing"]
    ),
    "src/{package_name}/outbound/shared_state.py": lambda a: bool(
        a["circuit_breakers"] and a["redis"]
    ),
    "src/{package_name}/items/enrichment.py": lambda a: bool(a["circuit_breakers"]),
    "tests/fixtures/upstream.py": lambda a: bool(a["circuit_breakers"]),
    "tests/test_outbound_client.py": lambda a: bool(a["circuit_breakers"]),
    "tests/test_enrichment.py": lambda a: bool(a["circuit_breakers"]),
    "tests/test_outbound_shared_state.py": lambda a: bool(a["circuit_breakers"] and a["redis"]),
    "docs/outbound.md": lambda a: bool(a["circuit_breakers"]),
    "docs/runbooks/AppOutboundBreakerOpen.md": lambda a: bool(
        a["circuit_breakers"] and a["metrics"]
    ),
    "docs/runbooks/AppOutboundRetryBudgetExhausted.md": lambda a: bool(
        a["circuit_breakers"] and a["metrics"]
    ),
    "observability/grafana/dashboards/outbound.json": lambda a: bool(
        a["circuit_breakers"] and a["metrics"]
    ),
    "observability/prometheus/rules/outbound.yml": lambda a: bool(
        a["circuit_breakers"] and a["metrics"]
    ),
    "observability/prometheus/tests/outbound.test.yml": lambda a: bool(
        a["circuit_breakers"] and a["metrics"]
    ),
    "src/{package_name}/tenancy": lambda a: bool(a["multi_tenancy"]),
    "src/{package_name}/tenancy/tracing.py": lambda a: bool(a["multi_tenancy"] and a["tracing"]),
    "src/{package_name}/tenancy/flags.py": lambda a: bool(
        a["multi_tenancy"] and a["feature_flags"]
    ),
    "src/{package_name}/tenancy/metrics.py": lambda a: bool(a["multi_tenancy"] and a["metrics"]),
    "src/{package_name}/migrations/versions/tenancy": lambda a: bool(a["multi_tenancy"]),
    "src/{package_name}/tenancy/rls.py": lambda a: bool(
        a["multi_tenancy"] and a["tenant_isolation"] == "row"
    ),
    "src/{package_name}/tenancy/storage.py": lambda a: bool(
        a["multi_tenancy"] and a["tenant_isolation"] != "row"
    ),
    "src/{package_name}/tenancy/provisioning.py": lambda a: bool(
        a["multi_tenancy"] and a["tenant_isolation"] != "row"
    ),
    "tests/test_tenancy.py": lambda a: bool(a["multi_tenancy"]),
    "docs/tenancy.md": lambda a: bool(a["multi_tenancy"]),
    # multi_tenancy: observability assets
    "docs/runbooks/AppTenantUsageNotStored.md": lambda a: bool(a["multi_tenancy"] and a["metrics"]),
    "docs/runbooks/AppTenantQuotaRefusalSpike.md": lambda a: bool(
        a["multi_tenancy"] and a["metrics"]
    ),
    "observability/grafana/dashboards/tenancy.json": lambda a: bool(
        a["multi_tenancy"] and a["metrics"]
    ),
    "observability/prometheus/rules/tenancy.yml": lambda a: bool(
        a["multi_tenancy"] and a["metrics"]
    ),
    "observability/prometheus/tests/tenancy.test.yml": lambda a: bool(
        a["multi_tenancy"] and a["metrics"]
    ),
    "src/{package_name}/caching": lambda a: bool(a["caching"]),
    "src/{package_name}/caching/metrics.py": lambda a: bool(a["caching"] and a["metrics"]),
    "src/{package_name}/caching/shared.py": lambda a: bool(a["caching"] and a["redis"]),
    "src/{package_name}/items/cached.py": lambda a: bool(a["caching"]),
    "tests/fixtures/caching.py": lambda a: bool(a["caching"]),
    "tests/test_caching.py": lambda a: bool(a["caching"]),
    "tests/test_caching_shared.py": lambda a: bool(a["caching"] and a["redis"]),
    "tests/test_scale_out.py": lambda a: bool(
        (a["caching"] and a["redis"])
        or (a["feature_flags"] and a["experiments"] and a["flag_provider"] == "builtin")
        or a["multi_tenancy"]
        or a["event_sourcing"]
    ),
    "docs/caching.md": lambda a: bool(a["caching"]),
    "docs/runbooks/AppCacheLatencyHigh.md": lambda a: bool(a["caching"] and a["metrics"]),
    "docs/runbooks/AppCacheHitRatioLow.md": lambda a: bool(a["caching"] and a["metrics"]),
    "docs/runbooks/AppCacheUnavailable.md": lambda a: bool(a["caching"] and a["metrics"]),
    "observability/grafana/dashboards/caching.json": lambda a: bool(a["caching"] and a["metrics"]),
    "observability/prometheus/rules/caching.yml": lambda a: bool(a["caching"] and a["metrics"]),
    "observability/prometheus/tests/caching.test.yml": lambda a: bool(
        a["caching"] and a["metrics"]
    ),
    "src/{package_name}/protection": lambda a: bool(a["request_protection"]),
    "src/{package_name}/protection/metrics.py": lambda a: bool(
        a["request_protection"] and a["metrics"]
    ),
    "tests/test_protection.py": lambda a: bool(a["request_protection"]),
    "tests/test_protection_process.py": lambda a: bool(a["request_protection"]),
    "tests/test_fuzz.py": lambda a: bool(a["request_protection"]),
    ".secrets.baseline": lambda a: bool(a["request_protection"]),
    "docs/security-scanning.md": lambda a: bool(a["request_protection"]),
    "docs/protection.md": lambda a: bool(a["request_protection"]),
    "docs/runbooks/AppRequestRefusalSpike.md": lambda a: bool(
        a["request_protection"] and a["metrics"]
    ),
    "docs/runbooks/AppRateLimiterUnavailable.md": lambda a: bool(
        a["request_protection"] and a["metrics"]
    ),
    "docs/runbooks/AppSlowClientsClosed.md": lambda a: bool(
        a["request_protection"] and a["metrics"]
    ),
    "observability/grafana/dashboards/protection.json": lambda a: bool(
        a["request_protection"] and a["metrics"]
    ),
    "observability/prometheus/rules/protection.yml": lambda a: bool(
        a["request_protection"] and a["metrics"]
    ),
    "observability/prometheus/tests/protection.test.yml": lambda a: bool(
        a["request_protection"] and a["metrics"]
    ),
    "src/{package_name}/graphql": lambda a: bool(a["graphql"]),
    "src/{package_name}/graphql/redis_relay.py": lambda a: bool(a["graphql"] and a["redis"]),
    "src/{package_name}/graphql/metrics.py": lambda a: bool(a["graphql"] and a["metrics"]),
    "src/{package_name}/graphql/tracing.py": lambda a: bool(a["graphql"] and a["tracing"]),
    "schema.graphql": lambda a: bool(a["graphql"]),
    "observability/grafana/dashboards/graphql.json": lambda a: bool(a["graphql"] and a["metrics"]),
    "tests/test_graphql.py": lambda a: bool(a["graphql"]),
    "docs/graphql.md": lambda a: bool(a["graphql"]),
    "src/{package_name}/experiments": lambda a: bool(a["feature_flags"] and a["experiments"]),
    "src/{package_name}/experiments/metrics.py": lambda a: bool(
        a["feature_flags"] and a["experiments"] and a["metrics"]
    ),
    "src/{package_name}/migrations/versions/experiments": lambda a: bool(
        a["feature_flags"] and a["experiments"]
    ),
    "src/{package_name}/flags/targeting.py": lambda a: bool(a["feature_flags"]),
    "tests/test_experiments.py": lambda a: bool(a["feature_flags"] and a["experiments"]),
    "tests/test_experiment_cli.py": lambda a: bool(a["feature_flags"] and a["experiments"]),
    "tests/test_experiment_assignment.py": lambda a: bool(a["feature_flags"] and a["experiments"]),
    "tests/test_experiment_statistics.py": lambda a: bool(a["feature_flags"] and a["experiments"]),
    "tests/test_experiment_simulations.py": lambda a: bool(a["feature_flags"] and a["experiments"]),
    "docs/experiments.md": lambda a: bool(a["feature_flags"] and a["experiments"]),
    # experiments: observability assets
    "docs/runbooks/AppExperimentSampleRatioMismatch.md": lambda a: bool(
        a["feature_flags"] and a["experiments"] and a["metrics"]
    ),
    "docs/runbooks/AppExperimentExposuresDropped.md": lambda a: bool(
        a["feature_flags"] and a["experiments"] and a["metrics"]
    ),
    "observability/grafana/dashboards/experiments.json": lambda a: bool(
        a["feature_flags"] and a["experiments"] and a["metrics"]
    ),
    "observability/prometheus/rules/experiments.yml": lambda a: bool(
        a["feature_flags"] and a["experiments"] and a["metrics"]
    ),
    "observability/prometheus/tests/experiments.test.yml": lambda a: bool(
        a["feature_flags"] and a["experiments"] and a["metrics"]
    ),
    # event_sourcing
    "src/{package_name}/events": lambda a: bool(a["event_sourcing"]),
    "src/{package_name}/wallets": lambda a: bool(a["event_sourcing"]),
    "src/{package_name}/migrations/versions/events": lambda a: bool(a["event_sourcing"]),
    "src/{package_name}/events/metrics.py": lambda a: bool(a["event_sourcing"] and a["metrics"]),
    "src/{package_name}/events/tracing.py": lambda a: bool(a["event_sourcing"] and a["tracing"]),
    "src/{package_name}/events/broker.py": lambda a: (
        bool(a["event_sourcing"]) and a["message_broker"] != "none"
    ),
    "src/{package_name}/events/cloudevents.py": lambda a: (
        bool(a["event_sourcing"]) and a["message_broker"] != "none"
    ),
    "src/{package_name}/events/consumers.py": lambda a: (
        bool(a["event_sourcing"]) and a["message_broker"] != "none"
    ),
    "src/{package_name}/events/relay.py": lambda a: (
        bool(a["event_sourcing"]) and a["message_broker"] != "none"
    ),
    "tests/test_events.py": lambda a: bool(a["event_sourcing"]),
    "tests/test_outbox.py": lambda a: bool(a["event_sourcing"]) and a["message_broker"] != "none",
    "tests/fixtures/broker.py": lambda a: (
        bool(a["event_sourcing"]) and a["message_broker"] != "none"
    ),
    "compose/compose.broker.yaml": lambda a: (
        bool(a["event_sourcing"]) and a["message_broker"] != "none"
    ),
    "docs/events.md": lambda a: bool(a["event_sourcing"]),
    # ml_serving
    "src/{package_name}/ml": lambda a: bool(a["ml_serving"]),
    "src/{package_name}/ml/metrics.py": lambda a: bool(a["ml_serving"] and a["metrics"]),
    "src/{package_name}/migrations/versions/ml": lambda a: bool(a["ml_serving"]),
    "tests/test_ml.py": lambda a: bool(a["ml_serving"]),
    # read replicas: tested against a hot standby, which only PostgreSQL has
    "tests/test_read_replicas.py": lambda a: a["database"] == "postgresql",
    "tests/fixtures/replicas.py": lambda a: a["database"] == "postgresql",
    "tests/fixtures/ml.py": lambda a: bool(a["ml_serving"]),
    "docs/ml.md": lambda a: bool(a["ml_serving"]),
    "src/{package_name}/ml/experiment_split.py": lambda a: bool(
        a["ml_serving"] and a["feature_flags"] and a["experiments"]
    ),
    # ml_serving: observability assets
    "docs/runbooks/AppModelDriftWarning.md": lambda a: bool(a["ml_serving"] and a["metrics"]),
    "docs/runbooks/AppModelDrift.md": lambda a: bool(a["ml_serving"] and a["metrics"]),
    "docs/runbooks/AppModelErrors.md": lambda a: bool(a["ml_serving"] and a["metrics"]),
    "docs/runbooks/AppModelLoadFailing.md": lambda a: bool(a["ml_serving"] and a["metrics"]),
    "observability/grafana/dashboards/ml.json": lambda a: bool(a["ml_serving"] and a["metrics"]),
    "observability/prometheus/rules/ml.yml": lambda a: bool(a["ml_serving"] and a["metrics"]),
    "observability/prometheus/tests/ml.test.yml": lambda a: bool(a["ml_serving"] and a["metrics"]),
    # event_sourcing: observability assets (the broker's in files of their own)
    "docs/runbooks/AppEventProjectionLagging.md": lambda a: bool(
        a["event_sourcing"] and a["metrics"]
    ),
    "docs/runbooks/AppEventOutboxStale.md": lambda a: bool(
        a["event_sourcing"] and a["message_broker"] != "none" and a["metrics"]
    ),
    "docs/runbooks/AppEventDeadLetters.md": lambda a: bool(
        a["event_sourcing"] and a["message_broker"] != "none" and a["metrics"]
    ),
    "observability/grafana/dashboards/events.json": lambda a: bool(
        a["event_sourcing"] and a["metrics"]
    ),
    "observability/grafana/dashboards/events-broker.json": lambda a: bool(
        a["event_sourcing"] and a["message_broker"] != "none" and a["metrics"]
    ),
    "observability/prometheus/rules/events.yml": lambda a: bool(
        a["event_sourcing"] and a["metrics"]
    ),
    "observability/prometheus/rules/events-broker.yml": lambda a: bool(
        a["event_sourcing"] and a["message_broker"] != "none" and a["metrics"]
    ),
    "observability/prometheus/tests/events.test.yml": lambda a: bool(
        a["event_sourcing"] and a["metrics"]
    ),
    "observability/prometheus/tests/events-broker.test.yml": lambda a: bool(
        a["event_sourcing"] and a["message_broker"] != "none" and a["metrics"]
    ),
    # kubernetes
    "deploy": lambda a: bool(a["kubernetes"]),
    "deploy/kubernetes/base/horizontalpodautoscaler.yaml": lambda a: (
        bool(a["kubernetes"]) and a["database"] == "postgresql"
    ),
    "deploy/kubernetes/base/migrate-job.yaml": lambda a: (
        bool(a["kubernetes"]) and a["database"] == "postgresql"
    ),
    "deploy/kubernetes/base/persistentvolumeclaim.yaml": lambda a: (
        bool(a["kubernetes"]) and a["database"] == "sqlite"
    ),
    "deploy/kubernetes/base/flagd.yaml": lambda a: (
        bool(a["kubernetes"] and a["feature_flags"]) and a["flag_provider"] == "flagd"
    ),
    "deploy/kubernetes/base/flagd": lambda a: (
        bool(a["kubernetes"] and a["feature_flags"]) and a["flag_provider"] == "flagd"
    ),
    "deploy/kubernetes/components": lambda a: bool(a["kubernetes"] and a["metrics"]),
    "deploy/kubernetes/components/hpa-request-rate": lambda a: (
        bool(a["kubernetes"] and a["metrics"]) and a["database"] == "postgresql"
    ),
    "scripts/kubernetes_assets.py": lambda a: bool(
        a["kubernetes"] and (a["metrics"] or (a["feature_flags"] and a["flag_provider"] == "flagd"))
    ),
    "docs/kubernetes.md": lambda a: bool(a["kubernetes"]),
    "tests/test_kubernetes_assets.py": lambda a: bool(
        a["kubernetes"] and (a["metrics"] or (a["feature_flags"] and a["flag_provider"] == "flagd"))
    ),
}

# Paths that every render must contain (the contract of the generated project).
REQUIRED_PATHS: list[str] = [
    "pyproject.toml",
    "Makefile",
    "README.md",
    "alembic.ini",
    ".copier-answers.yml",
    "compose.yaml",
    "Dockerfile",
    ".github/workflows/ci.yml",
    "src/{package_name}/__init__.py",
    "tests",
]


def load_questionnaire() -> dict[str, Any]:
    """The questions of copier.yml (settings starting with ``_`` removed)."""
    with COPIER_YML.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    assert isinstance(data, dict)
    return {k: v for k, v in data.items() if not k.startswith("_")}


def asked_questions() -> dict[str, dict[str, Any]]:
    """Questions that are asked and stored (not ``when: false`` derived values)."""
    return {
        name: spec
        for name, spec in load_questionnaire().items()
        if isinstance(spec, dict) and spec.get("when", True) is not False
    }


def _domain_defaults() -> Answers:
    questions = load_questionnaire()
    defaults: Answers = {}
    for name in DOMAINS:
        spec = questions.get(name)
        if isinstance(spec, dict) and "default" in spec:
            defaults[name] = spec["default"]
    return defaults


def slugify(name: str) -> str:
    """Mirror of copier.yml's project_slug default (used to predict paths)."""
    import re

    slug = re.sub(r"[^a-z0-9]+", "-", name.strip().lower())
    return re.sub(r"^-+|-+$", "", slug)


def effective_answers(data: Mapping[str, Any]) -> Answers:
    """Answers as the template will see them: given data over defaults."""
    answers: Answers = {**_domain_defaults(), **data}
    answers.setdefault("project_slug", slugify(str(answers["project_name"])))
    answers.setdefault("package_name", str(answers["project_slug"]).replace("-", "_"))
    for name, asked in ASKED_WHEN.items():
        if not asked(answers):
            answers.pop(name, None)
    return answers


def _answerable(data: Answers) -> Answers:
    """``data`` as copier accepts it (test_invalid_answers checks the refusals): no
    experiments answer without feature flags, no tenant_isolation answer without
    multi_tenancy, schema isolation on PostgreSQL only, no message_broker answer
    without event_sourcing."""
    if data.get("feature_flags") is False:
        data = {name: value for name, value in data.items() if name != "experiments"}
    if data.get("multi_tenancy") is False:
        data = {name: value for name, value in data.items() if name != "tenant_isolation"}
    if data.get("tenant_isolation") == "schema":
        data = {**data, "database": "postgresql", "multi_tenancy": True}
    if data.get("event_sourcing") is False:
        data = {name: value for name, value in data.items() if name != "message_broker"}
    elif data.get("message_broker", "none") != "none":
        # A broker alone means the slice with that broker.
        data = {**data, "event_sourcing": True}
    return data


@dataclass(frozen=True)
class Case:
    id: str
    data: Answers = field(default_factory=dict)

    @property
    def answers(self) -> Answers:
        return effective_answers(self.data)


def _value_id(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def _case_id(data: Mapping[str, Any]) -> str:
    return "-".join(f"{k}={_value_id(v)}" for k, v in data.items() if k in DOMAINS)


def _build_cases() -> list[Case]:
    candidates: list[Case] = [Case("defaults", dict(BASE_ANSWERS))]
    for name, values in DOMAINS.items():
        for value in values:
            single = _answerable({**BASE_ANSWERS, name: value})
            candidates.append(Case(f"{name}={_value_id(value)}", single))
    names = list(DOMAINS)
    for row in AllPairs([DOMAINS[n] for n in names]):
        data = {**BASE_ANSWERS, **dict(zip(names, row, strict=True))}
        data = _answerable(data)
        candidates.append(Case("pairwise:" + _case_id(data), data))
    for case_id, identity in IDENTITY_CASES.items():
        candidates.append(Case(case_id, dict(identity)))

    seen: set[tuple[tuple[str, str], ...]] = set()
    cases: list[Case] = []
    for case in candidates:
        key = tuple(sorted((k, repr(v)) for k, v in case.answers.items()))
        if key not in seen:
            seen.add(key)
            cases.append(case)
    return cases


CASES: list[Case] = _build_cases()

# Named profiles for the slow tier.
PROFILES: dict[str, Answers] = {
    # The defaults, and experiments, GraphQL, event sourcing and model serving (off by
    # default) on SQLite with the built-in flags: the observability end-to-end test's render.
    "sqlite": {
        **BASE_ANSWERS,
        "experiments": True,
        "graphql": True,
        "event_sourcing": True,
        "ml_serving": True,
    },
    # The all-features profile: every slice on, tenants isolated by row with row-level
    # security, the cache and rate limits in Redis and keyed by tenant, events published
    # to RabbitMQ.
    "postgresql-redis": {
        **BASE_ANSWERS,
        "database": "postgresql",
        "redis": True,
        "trace_backend": "tempo",
        "experiments": True,
        "graphql": True,
        "multi_tenancy": True,
        "event_sourcing": True,
        "message_broker": "rabbitmq",
        "ml_serving": True,
    },
    "bare": {
        **BASE_ANSWERS,
        "metrics": False,
        "tracing": False,
        "feature_flags": False,
        "circuit_breakers": False,
        "caching": False,
        "request_protection": False,
    },
    # Lean profiles each with one more way of keeping tenants apart: a database per
    # tenant on PostgreSQL and on SQLite (with the model registry among the platform's
    # tables), a schema per tenant.
    "flagd": {
        **BASE_ANSWERS,
        "flag_provider": "flagd",
        "metrics": False,
        "tracing": False,
        "database": "postgresql",
        "multi_tenancy": True,
        "tenant_isolation": "database",
    },
    "launchdarkly": {
        **BASE_ANSWERS,
        "flag_provider": "launchdarkly",
        "metrics": False,
        "multi_tenancy": True,
        "tenant_isolation": "database",
        "ml_serving": True,
    },
    "tenancy-schema": {
        **BASE_ANSWERS,
        "metrics": False,
        "tracing": False,
        "circuit_breakers": False,
        "request_protection": False,
        "database": "postgresql",
        "multi_tenancy": True,
        "tenant_isolation": "schema",
        "event_sourcing": True,
        "message_broker": "nats",
    },
}
