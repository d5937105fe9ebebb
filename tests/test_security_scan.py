"""Cheap tier: the scanners of a render's `make security` report nothing on the render.

bandit, zizmor (offline audits) and detect-secrets run from this repo's environment over
a few representative renders, with each render's own configuration (``[tool.bandit]``,
``.secrets.baseline``), as ``make security`` runs them. pip-audit runs over a lock of the
default render made here, against a local stand-in of OSV's query API: this machine
reaches no vulnerability database, and the stand-in's one flagged package shows the audit
fails on a finding. Semgrep's registry rules and the image scan run in the generated CI
only.

The renders are the matrix cases' (``helpers.RenderCache``), shared with test_render.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import (
    RenderCache,
    command_report,
    find_uv,
    project_tools_env,
    read_answers,
    require,
    run,
)
from matrix import CASES, Answers, Case

VENV_BIN = Path(sys.executable).parent
NOT_RENDERED = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__"}

# One render per kind of code and configuration the scanners see: the first case each
# predicate accepts, among the cases with request_protection on (the others have no
# scanners), and the one with the fewest optional slices.
REPRESENTATIVE: dict[str, Callable[[Answers], bool]] = {
    "defaults": lambda a: True,
    "postgresql and redis": lambda a: a["database"] == "postgresql" and bool(a["redis"]),
    "flagd": lambda a: a.get("flag_provider") == "flagd",
    "launchdarkly": lambda a: a.get("flag_provider") == "launchdarkly",
    "explicit package name": lambda a: a["package_name"] != a["project_slug"].replace("-", "_"),
}
OPTIONAL_SLICES = ("metrics", "tracing", "feature_flags", "circuit_breakers", "caching")


def protected(answers: Answers) -> bool:
    return bool(answers.get("request_protection", True))


def _representative_cases() -> list[Case]:
    candidates = [c for c in CASES if protected(c.answers)]
    chosen: list[Case] = []
    for name, predicate in REPRESENTATIVE.items():
        case = next((c for c in candidates if predicate(c.answers)), None)
        assert case is not None, f"no matrix case with request_protection on is {name!r}"
        chosen.append(case)
    chosen.append(min(candidates, key=lambda c: sum(bool(c.answers[n]) for n in OPTIONAL_SLICES)))
    return list({case.id: case for case in chosen}.values())


SCANNED = _representative_cases()
# The first case without the slice, once the matrix has one: nothing of it is rendered.
UNPROTECTED = [c for c in CASES if not protected(c.answers)][:1]


@pytest.fixture(params=[pytest.param(case, id=case.id) for case in SCANNED])
def case(request: pytest.FixtureRequest) -> Case:
    param = request.param
    assert isinstance(param, Case)
    return param


@pytest.fixture
def project(case: Case, renders: RenderCache) -> Path:
    path = renders.get(case.id, case.data)
    assert read_answers(path).get("request_protection", True), f"{case.id}: slice is off"
    return path


def tool(name: str) -> str:
    exe = VENV_BIN / name
    assert exe.is_file(), f"{name} is not installed here: `uv sync` the repo's dev group"
    return str(exe)


def tracked_files(project: Path) -> list[str]:
    """What `git ls-files` lists in a fresh repository of the render, relative paths."""
    return sorted(
        path.relative_to(project).as_posix()
        for path in project.rglob("*")
        if path.is_file() and not NOT_RENDERED & set(path.relative_to(project).parts)
    )


# --------------------------------------------------------------------------- #
# The scanners
# --------------------------------------------------------------------------- #


def test_bandit(project: Path) -> None:
    result = run(
        [tool("bandit"), "--configfile", "pyproject.toml", "--recursive", "--quiet", "src"],
        project,
    )
    assert result.returncode == 0, command_report(result)


def test_zizmor(project: Path) -> None:
    """`.github`: the workflows and dependabot.yml; the online audits run in the render's CI."""
    result = run([tool("zizmor"), "--offline", "--no-progress", ".github"], project)
    assert result.returncode == 0, command_report(result)


# (path, sha256) of the files detect-secrets passed in this process: most files are the
# same in every render, and the same path with the same content gets the same verdict.
_NO_SECRETS: set[tuple[str, str]] = set()


def test_detect_secrets(project: Path, tmp_path: Path) -> None:
    files = {
        (rel, hashlib.sha256((project / rel).read_bytes()).hexdigest())
        for rel in tracked_files(project)
    }
    unseen = sorted(files - _NO_SECRETS)
    # A copy of the baseline: the hook rewrites the one it is given when it is outdated
    # (another detect-secrets version), and the render is shared.
    baseline = tmp_path / ".secrets.baseline"
    shutil.copy(project / ".secrets.baseline", baseline)
    before = baseline.read_bytes()
    result = run(
        [tool("detect-secrets-hook"), "--baseline", str(baseline), *(rel for rel, _ in unseen)],
        project,
    )
    assert result.returncode == 0, command_report(result)
    assert baseline.read_bytes() == before, (
        "detect-secrets rewrote .secrets.baseline: regenerate the template's with this "
        f"detect-secrets version\n{command_report(result)}"
    )
    _NO_SECRETS.update(unseen)


class _StandInOsv(BaseHTTPRequestHandler):
    """OSV's query API as pip-audit calls it: no vulnerability, except one for the
    project named in ``VULNERABLE`` (a negative control)."""

    vulnerable: str = ""

    def do_POST(self) -> None:
        query = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        name = query["package"]["name"]
        found = {}
        if name == self.vulnerable:
            found = {
                "vulns": [
                    {
                        "id": "PYSEC-0000-STANDIN",
                        "summary": "stand-in vulnerability",
                        "details": "",
                        "affected": [
                            {
                                "package": {"name": name, "ecosystem": "PyPI"},
                                "ranges": [
                                    {
                                        "type": "ECOSYSTEM",
                                        "events": [{"introduced": "0"}, {"fixed": "999999"}],
                                    }
                                ],
                            }
                        ],
                    }
                ]
            }
        body = json.dumps(found).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class StandIn:
    url: str
    handler: type[_StandInOsv]


@pytest.fixture
def stand_in_osv() -> Iterator[StandIn]:
    handler = type("Handler", (_StandInOsv,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield StandIn(f"http://127.0.0.1:{server.server_address[1]}/v1/query", handler)
    finally:
        server.shutdown()


def test_pip_audit_reads_the_lock(
    renders: RenderCache, tmp_path: Path, stand_in_osv: StandIn
) -> None:
    """As `make security` runs it, over a lock of the default render made now (renders
    have none): every locked requirement is looked up, and a vulnerable one fails the
    audit. The vulnerability service is a local stand-in of OSV's API (this machine reaches
    no vulnerability database); the generated CI asks PyPI's."""
    case = SCANNED[0]
    project = renders.get(case.id, case.data)
    uv = find_uv()
    require(uv is not None, "uv is not installed")
    assert uv is not None
    env = project_tools_env(case.answers, {})
    copy = tmp_path / "service"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns(*NOT_RENDERED))
    locked = run([uv, "lock", "--quiet"], copy, env=env, timeout=600)
    assert locked.returncode == 0, command_report(locked)
    requirements = tmp_path / "requirements.txt"
    export = [uv, "export", "--locked", "--all-groups", "--no-emit-project", "--quiet"]
    exported = run([*export, "--output-file", str(requirements)], copy, env=env)
    assert exported.returncode == 0, command_report(exported)
    url = stand_in_osv.url
    audit = [
        tool("pip-audit"),
        *("--strict", "--disable-pip", "--require-hashes", "--progress-spinner", "off"),
        *("--vulnerability-service", "osv", "--osv-url", url, "--requirement", str(requirements)),
    ]
    clean = run(audit, copy, timeout=600)
    assert clean.returncode == 0, command_report(clean)
    stand_in_osv.handler.vulnerable = "fastapi"
    flagged = run(audit, copy, timeout=600)
    assert flagged.returncode == 1, command_report(flagged)
    assert "PYSEC-0000-STANDIN" in flagged.stdout + flagged.stderr


# --------------------------------------------------------------------------- #
# Where the scans are wired in
# --------------------------------------------------------------------------- #


def _workflow(project: Path) -> dict[str, Any]:
    data = yaml.safe_load((project / ".github" / "workflows" / "ci.yml").read_text("utf-8"))
    assert isinstance(data, dict)
    return data


def test_ci_security_job(project: Path) -> None:
    """The CI job runs `make security`, Semgrep and Trivy, with a read-only token."""
    job = _workflow(project)["jobs"]["security"]
    assert job["permissions"] == {"contents": "read"}
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    for command in ("make security", "semgrep", "aquasec/trivy:", "--exit-code 1"):
        assert command in runs, f"the security job does not run {command!r}"
    assert "aquasec/trivy:0" in runs and "@sha256:" in runs, "Trivy's image is not pinned"
    for step in job["steps"]:
        if "uses" in step:
            ref = step["uses"].split("@", 1)[1]
            assert len(ref) == 40, f"{step['uses']} is not pinned to a commit"
    makefile = (project / "Makefile").read_text(encoding="utf-8")
    assert "\nsecurity: ## " in makefile


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in UNPROTECTED])
def test_no_scanners_without_the_slice(case: Case, renders: RenderCache) -> None:
    project = renders.get(case.id, case.data)
    assert not (project / ".secrets.baseline").exists()
    assert not (project / "docs" / "security-scanning.md").exists()
    assert "security" not in _workflow(project)["jobs"]
    assert "\nsecurity:" not in (project / "Makefile").read_text(encoding="utf-8")
    assert "[tool.bandit]" not in (project / "pyproject.toml").read_text(encoding="utf-8")
