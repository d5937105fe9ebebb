"""deploy/kubernetes of the generated service.

For every matrix case with ``kubernetes``: each overlay renders with kubectl's Kustomize
(offline), every object validates against the Kubernetes JSON schemas bundled with
kubernetes-validate (strict: unknown fields fail), the Prometheus Operator's objects
(CRDs, for which that package has no schema) have the structure the operator reads, the
objects refer to each other consistently, and the render's copies of its rule files and
flags are what its ``scripts/kubernetes_assets.py`` writes. checkov (run with uv, pinned;
its dependencies clash with this environment's) scans two representative renders, every
overlay and the request-rate component, with the render's own ``.checkov.yaml``: no
failed check. The CI workflow's kind job is checked with the rest of the workflow
(test_render's schema check, test_security_scan's zizmor).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from helpers import RenderCache, command_report, find_uv, read_answers, require, run
from matrix import BASE_ANSWERS, CASES, PROFILES, REPO_ROOT, Case

KUBERNETES_VERSION = "1.32"  # the kubectl on these machines; kind's nodes are newer
CHECKOV = "checkov==3.3.30"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
CRDS = {"monitoring.coreos.com/v1": {"ServiceMonitor", "PrometheusRule"}}
# The fields of a PrometheusRule's groups and rules (the CRD's schema).
GROUP_KEYS = {"name", "interval", "rules", "limit", "partial_response_strategy"}
RULE_KEYS = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
PROBES = {"startupProbe": "/health/live", "livenessProbe": "/health/live"}

Manifest = dict[str, Any]

KUBERNETES_CASES = [case for case in CASES if case.answers["kubernetes"]]
# Every workload the manifests can have: PostgreSQL (HPA, migration Job), flagd, a broker,
# model serving, tenants, metrics; and the defaults (SQLite, one replica, a volume).
REPRESENTATIVE: dict[str, dict[str, Any]] = {
    "defaults": dict(BASE_ANSWERS),
    "kubernetes-every-workload": {**PROFILES["postgresql-redis"], "flag_provider": "flagd"},
}


@cache
def kubectl() -> str:
    found = shutil.which("kubectl")
    require(
        found is not None,
        "kubectl is not installed (Debian package kubectl; .ci/run installs it)",
    )
    assert found is not None
    return found


def kustomize(directory: Path) -> list[Manifest]:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {directory}:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def overlays(kubernetes: Path) -> list[Path]:
    """The overlays of a render's deploy/kubernetes (or a copy of it)."""
    found = sorted(path for path in (kubernetes / "overlays").iterdir())
    assert [path.name for path in found] == ["dev", "prod"], found
    return found


def pod_specs(objects: list[Manifest]) -> dict[str, Manifest]:
    specs = {}
    for obj in objects:
        if obj["kind"] in {"Deployment", "Job"}:
            specs[f"{obj['kind']}/{obj['metadata']['name']}"] = obj["spec"]["template"]["spec"]
    return specs


def check_prometheus_operator(obj: Manifest) -> list[str]:
    """The fields the Prometheus Operator reads, as its CRDs define them."""
    problems = []
    spec = obj.get("spec", {})
    where = f"{obj['kind']}/{obj['metadata']['name']}"
    if obj["kind"] == "ServiceMonitor":
        if not spec.get("selector", {}).get("matchLabels"):
            problems.append(f"{where}: spec.selector.matchLabels is empty")
        for endpoint in spec.get("endpoints", []) or [None]:
            if not isinstance(endpoint, dict) or not {"port", "path"} <= set(endpoint):
                problems.append(f"{where}: an endpoint needs port and path: {endpoint}")
    else:
        groups = spec.get("groups")
        if not isinstance(groups, list) or not groups:
            return [f"{where}: spec.groups is empty"]
        names = [group.get("name") for group in groups]
        if len(set(names)) != len(names):
            problems.append(f"{where}: group names repeat: {names}")
        for group in groups:
            unknown = set(group) - GROUP_KEYS
            if unknown or not isinstance(group.get("rules"), list):
                problems.append(f"{where}: group {group.get('name')}: {sorted(unknown)}, rules?")
                continue
            for rule in group["rules"]:
                if set(rule) - RULE_KEYS or ("record" in rule) == ("alert" in rule):
                    problems.append(f"{where}: rule {rule} is neither a recording nor an alert")
                elif not isinstance(rule.get("expr"), str):
                    problems.append(f"{where}: rule {rule.get('alert') or rule.get('record')}")
    return problems


def check_objects(objects: list[Manifest], answers: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    name = answers.get("kubernetes_name") or objects[0]["metadata"]["labels"].get(
        "app.kubernetes.io/part-of"
    )
    by_kind: dict[str, set[str]] = {}
    for obj in objects:
        kind, metadata = obj["kind"], obj["metadata"]
        by_kind.setdefault(kind, set()).add(metadata["name"])
        # Services and Jobs (their pods' job-name label) are named by DNS labels, as
        # namespaces are; other objects by DNS subdomains (253 characters).
        labels = [metadata.get("namespace", "x")]
        labels += [metadata["name"]] if kind in {"Service", "Job"} else []
        for field in labels:
            if not (DNS_LABEL.match(field) and len(field) <= 63):
                problems.append(f"{kind}/{field}: not a DNS label of at most 63 characters")
        if not (DNS_SUBDOMAIN.match(metadata["name"]) and len(metadata["name"]) <= 253):
            problems.append(f"{kind}/{metadata['name']}: not a DNS subdomain")
        group_version = obj["apiVersion"]
        if kind in CRDS.get(group_version, set()):
            problems += check_prometheus_operator(obj)
            continue
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{kind}/{metadata['name']}: {error.message} at {error.path}")
    for where, spec in pod_specs(objects).items():
        account = spec.get("serviceAccountName")
        if account and account not in by_kind.get("ServiceAccount", set()):
            problems.append(f"{where}: no ServiceAccount {account}")
        if not spec["securityContext"].get("runAsNonRoot"):
            problems.append(f"{where}: not runAsNonRoot")
        for volume in spec.get("volumes", []):
            claim = volume.get("persistentVolumeClaim", {}).get("claimName")
            config = volume.get("configMap", {}).get("name")
            if claim and claim not in by_kind.get("PersistentVolumeClaim", set()):
                problems.append(f"{where}: no PersistentVolumeClaim {claim}")
            if config and config not in by_kind.get("ConfigMap", set()):
                problems.append(f"{where}: no ConfigMap {config}")
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container.get("securityContext", {})
            if not context.get("readOnlyRootFilesystem") or context.get("allowPrivilegeEscalation"):
                problems.append(f"{where}/{container['name']}: root filesystem writable")
            if "limits" not in container.get("resources", {}):
                problems.append(f"{where}/{container['name']}: no resource limits")
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef", {}).get("name")
                if ref and ref not in by_kind.get("ConfigMap", set()):
                    problems.append(f"{where}: no ConfigMap {ref} (kustomize names it)")
    # The service's own Deployment: probes on the health routes, graceful shutdown, and
    # the Service, HPA and PodDisruptionBudget pointing at its pods.
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    server = next(o for o in deployments if o["metadata"]["name"] == name)
    container = server["spec"]["template"]["spec"]["containers"][0]
    for probe, path in {**PROBES, "readinessProbe": "/health/ready"}.items():
        if container.get(probe, {}).get("httpGet", {}).get("path") != path:
            problems.append(f"{name}: {probe} is not on {path}")
    if container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0) < 5:
        problems.append(f"{name}: no preStop delay")
    pod_labels = server["spec"]["template"]["metadata"]["labels"]
    for obj in objects:
        selector = obj.get("spec", {}).get("selector")
        ours = obj["metadata"]["name"] == name
        if obj["kind"] == "Service" and ours and not selector.items() <= pod_labels.items():
            problems.append(f"Service {name} selects {selector}, the pods are {pod_labels}")
        pdb = obj["kind"] == "PodDisruptionBudget" and ours
        if pdb and not selector["matchLabels"].items() <= pod_labels.items():
            problems.append(f"PodDisruptionBudget {name} selects no pod of the service")
        target = obj.get("spec", {}).get("scaleTargetRef", {}).get("name", name)
        if obj["kind"] == "HorizontalPodAutoscaler" and target != name:
            problems.append(f"HorizontalPodAutoscaler targets {target}, not {name}")
    return problems


@pytest.fixture(params=[pytest.param(case, id=case.id) for case in KUBERNETES_CASES])
def project(request: pytest.FixtureRequest, renders: RenderCache) -> Path:
    case = request.param
    assert isinstance(case, Case)
    return renders.get(case.id, case.data)


def test_overlays_render_and_validate(project: Path) -> None:
    answers = read_answers(project)
    answers["kubernetes_name"] = answers["project_slug"][:55].rstrip("-")
    problems = []
    for overlay in overlays(project / "deploy/kubernetes"):
        objects = kustomize(overlay)
        kinds = {obj["kind"] for obj in objects}
        wanted = {"Deployment", "Service", "ConfigMap", "ServiceAccount", "NetworkPolicy"}
        wanted |= {"PodDisruptionBudget"}
        if answers["database"] == "postgresql":
            wanted |= {"HorizontalPodAutoscaler", "Job"}
        else:
            wanted |= {"PersistentVolumeClaim"}
        if answers["metrics"] and overlay.name == "prod":
            wanted |= {"ServiceMonitor", "PrometheusRule"}
        assert wanted <= kinds, f"{overlay.name}: missing {wanted - kinds}"
        assert not {"Secret", "StatefulSet"} & kinds, f"{overlay.name}: secrets or databases"
        problems += [f"{overlay.name}: {p}" for p in check_objects(objects, answers)]
    assert not problems, "\n".join(problems)


def test_copies_are_current(project: Path) -> None:
    """The PrometheusRule holds the groups of the compose stack's rule files, and the
    render's own script finds its copies current."""
    script = project / "scripts/kubernetes_assets.py"
    answers = read_answers(project)
    flagd = answers.get("feature_flags") and answers.get("flag_provider") == "flagd"
    assert script.exists() == bool(answers["metrics"] or flagd)
    if not script.exists():
        return
    result = run([sys.executable, str(script), "--check"], project)
    assert result.returncode == 0, command_report(result)
    if answers["metrics"]:
        rule = yaml.safe_load(
            (
                project / "deploy/kubernetes/components/prometheus-operator/prometheus-rules.yaml"
            ).read_text(encoding="utf-8")
        )
        groups = [
            group
            for path in sorted((project / "observability/prometheus/rules").glob("*.yml"))
            for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        ]
        assert rule["spec"]["groups"] == groups


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, id=case.id)
        for case in KUBERNETES_CASES
        if case.answers["metrics"] and case.answers["database"] == "postgresql"
    ],
)
def test_request_rate_component(case: Case, renders: RenderCache, tmp_path: Path) -> None:
    """components/hpa-request-rate (metrics and PostgreSQL: an autoscaler) adds a Pods
    metric to the prod overlay's autoscaler."""
    project = renders.get(case.id, case.data)
    tree = shutil.copytree(project / "deploy/kubernetes", tmp_path / "kubernetes")
    overlay = tree / "overlays" / "request-rate"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
        "resources: [../prod]\ncomponents: [../../components/hpa-request-rate]\n",
        encoding="utf-8",
    )
    objects = kustomize(overlay)
    (hpa,) = [obj for obj in objects if obj["kind"] == "HorizontalPodAutoscaler"]
    kubernetes_validate.validate(hpa, KUBERNETES_VERSION, strict=True)
    metrics = {metric["type"]: metric for metric in hpa["spec"]["metrics"]}
    assert set(metrics) == {"Resource", "Pods"}
    assert metrics["Pods"]["pods"]["metric"]["name"] == "app_http_requests_per_second"


def test_template_copies_are_current() -> None:
    """The template's PrometheusRule and flags copies are what scripts/kubernetes_assets.py
    writes from the template's rule files and flags."""
    script = REPO_ROOT / "scripts" / "kubernetes_assets.py"
    result = run([sys.executable, str(script), "--check"], REPO_ROOT)
    assert result.returncode == 0, (
        f"{command_report(result)}\nrun `uv run python scripts/kubernetes_assets.py`"
    )


@pytest.mark.parametrize("key", list(REPRESENTATIVE))
def test_checkov(key: str, renders: RenderCache, tmp_path: Path) -> None:
    project = renders.get(key, REPRESENTATIVE[key])
    uv = find_uv()
    require(uv is not None, "uv is not installed")
    assert uv is not None
    tree = shutil.copytree(project / "deploy/kubernetes", tmp_path / "kubernetes")
    files = []
    for overlay in overlays(tree):
        rendered = tmp_path / f"{overlay.name}.yaml"
        rendered.write_text(yaml.safe_dump_all(kustomize(overlay)), encoding="utf-8")
        files += ["--file", str(rendered)]
    result = run(
        [
            uv,
            "tool",
            "run",
            "--from",
            CHECKOV,
            "checkov",
            "--config-file",
            str(tree / ".checkov.yaml"),
            *files,
        ],
        tmp_path,
    )
    assert result.returncode == 0 and "Failed checks: 0" in result.stdout, command_report(result)
