"""Slow tier: render full profiles and run the rendered project's own Makefile.

Each profile is rendered once per run for ``make lint``/``make test`` and once more,
fresh, for ``make format``; each render gets its own ``.venv`` (created by ``uv run``
inside the Makefile). The xdist workers share the renders; a lock per render runs
one make target at a time in it.

The PostgreSQL profile talks to the real servers named by ``APP_DATABASE__URL`` and
``APP_REDIS__URL``; under CI=true an unreachable server fails the test, elsewhere it
skips. The rendered suite itself always runs with ``CI=true`` (a prerequisite it misses
fails it) and must report no skipped test: every profile gives its tests what they need.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from helpers import (
    RenderCache,
    file_hashes,
    find_python,
    find_uv,
    locked,
    project_env,
    pytest_outcomes,
    require,
    run_scratch_dir,
    tcp_reachable,
)
from matrix import PROFILES, effective_answers

pytestmark = pytest.mark.profile

DATABASE_URL = os.environ.get(
    "TEMPLATE_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TEMPLATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

# Per profile: the service environment its tests get.
PROFILE_ENV: dict[str, dict[str, str]] = {
    "sqlite": {},
    "postgresql-redis": {"APP_DATABASE__URL": DATABASE_URL, "APP_REDIS__URL": REDIS_URL},
    "bare": {},
    "flagd": {},
}

MAKE_TIMEOUT = 1200  # seconds, per make target (includes the first uv sync)

# Created by running the project's tools; never part of what `make format` may change.
TOOL_ARTIFACTS = frozenset(
    {".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__", "uv.lock"}
)


@dataclass
class Profile:
    name: str
    answers: dict[str, Any]
    root: Path  # this profile's scratch directory, shared by the xdist workers
    env: dict[str, str]
    template_src: Path

    def project(self, variant: str) -> Path:
        """The profile rendered once per run into ``root/variant`` (workers share it)."""
        return RenderCache(self.template_src, self.root).get(variant, self.answers)

    def make(self, variant: str, target: str) -> subprocess.CompletedProcess[str]:
        """Run a make target in a render, alone among that render's targets."""
        cwd = self.project(variant)
        try:
            with locked(self.root / f"{variant}.lock"):
                return subprocess.run(
                    ["make", target],
                    cwd=cwd,
                    env=self.env,
                    capture_output=True,
                    text=True,
                    timeout=MAKE_TIMEOUT,
                    check=False,
                )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"`make {target}` in the {self.name} render timed out after {exc.timeout}s")


def _check_services(env: dict[str, str]) -> None:
    for var in ("APP_DATABASE__URL", "APP_REDIS__URL"):
        if var not in env:
            continue
        url = urlsplit(env[var])
        host = url.hostname or "127.0.0.1"
        port = url.port or (6379 if url.scheme.startswith("redis") else 5432)
        require(
            tcp_reachable(host, port),
            f"{var}={env[var]}: nothing listens on {host}:{port}; start the server "
            "(.ci/run starts PostgreSQL and Redis) or point the variable elsewhere",
        )


@pytest.fixture(scope="module", params=list(PROFILES))
def profile(
    request: pytest.FixtureRequest, template_src: Path, tmp_path_factory: pytest.TempPathFactory
) -> Profile:
    name = request.param
    assert isinstance(name, str)
    answers = dict(PROFILES[name])
    uv = find_uv()
    require(uv is not None, "uv is not installed (the rendered Makefile runs everything with uv)")
    assert uv is not None
    version = str(effective_answers(answers)["python_version"])
    python = find_python(version)
    require(python is not None, f"no Python {version} interpreter found for the {name} profile")
    assert python is not None
    # CI=true: a generated test whose server is missing fails instead of skipping;
    # -rs lists any skip with its reason in the output the failure message shows.
    env = project_env(
        {"UV": uv, "UV_PYTHON": python, "CI": "true", "PYTEST_ADDOPTS": "-rs", **PROFILE_ENV[name]}
    )
    root = run_scratch_dir(tmp_path_factory) / "profiles" / name
    root.mkdir(parents=True, exist_ok=True)
    return Profile(name=name, answers=answers, root=root, env=env, template_src=template_src)


def _report(result: subprocess.CompletedProcess[str]) -> str:
    tail = (result.stdout + "\n" + result.stderr).strip().splitlines()[-150:]
    return f"$ {' '.join(result.args)} exited {result.returncode}\n" + "\n".join(tail)


def test_make_format_changes_nothing(profile: Profile) -> None:
    """`make format` on a fresh render of its own (lint and test use another one)."""
    project = profile.project("format")
    before = file_hashes(project, TOOL_ARTIFACTS)
    result = profile.make("format", "format")
    assert result.returncode == 0, _report(result)
    after = file_hashes(project, TOOL_ARTIFACTS)
    changed = sorted(p for p in before if after.get(p) != before[p])
    added = sorted(set(after) - set(before))
    assert not changed and not added, (
        f"`make format` on a fresh {profile.name} render changed {changed} and added {added}"
    )


def test_make_lint(profile: Profile) -> None:
    result = profile.make("svc", "lint")
    assert result.returncode == 0, _report(result)


def test_make_test(profile: Profile) -> None:
    _check_services(profile.env)
    result = profile.make("svc", "test")
    assert result.returncode == 0, _report(result)
    outcomes = pytest_outcomes(result.stdout)
    assert outcomes.get("passed", 0) > 0, f"the rendered suite ran no test:\n{_report(result)}"
    unexpected = {k: n for k, n in outcomes.items() if k != "passed"}
    assert not unexpected, (
        f"the {profile.name} render's suite reported {unexpected} besides passes "
        f"(its prerequisites are all given):\n{_report(result)}"
    )
