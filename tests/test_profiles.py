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

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    TEST_DATABASE_URL,
    TEST_REDIS_URL,
    RenderCache,
    assert_suite_passed,
    command_report,
    file_hashes,
    locked,
    project_tools_env,
    require_services,
    run,
    run_scratch_dir,
    shared_mypy_cache,
)
from matrix import PROFILES

pytestmark = pytest.mark.profile

# Per profile: the service environment its tests get.
PROFILE_ENV: dict[str, dict[str, str]] = {
    "sqlite": {},
    "postgresql-redis": {
        "APP_DATABASE__URL": TEST_DATABASE_URL,
        "APP_REDIS__URL": TEST_REDIS_URL,
    },
    "bare": {},
    "flagd": {"APP_DATABASE__URL": TEST_DATABASE_URL},
    "launchdarkly": {},
    "tenancy-schema": {"APP_DATABASE__URL": TEST_DATABASE_URL},
}

# Seconds per make target (the first uv sync included). A bound for hangs, not a speed
# goal: the all-features suite takes about 400 s alone and twice that beside another
# profile's, and a slower machine must not turn that into a failure.
MAKE_TIMEOUT = 1800

# Created by running the project's tools; never part of what `make format` may change.
TOOL_ARTIFACTS = frozenset({".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__"})


@dataclass
class Profile:
    name: str
    answers: dict[str, Any]
    root: Path  # this profile's scratch directory, shared by the xdist workers
    env: dict[str, str]
    template_src: Path

    def project(self, variant: str) -> Path:
        """The profile rendered once per run into ``root/variant`` (workers share it), as a
        user renders it: its task writes uv.lock, which the Makefile then installs from."""
        renders = RenderCache(self.template_src, self.root, user_env=self.env)
        return renders.get(variant, self.answers)

    def make(self, variant: str, target: str) -> subprocess.CompletedProcess[str]:
        """Run a make target in a render, alone among that render's targets."""
        cwd = self.project(variant)
        with locked(self.root / f"{variant}.lock"):
            # Under the lock: the lint's cache set-up touches the render's sources.
            env = shared_mypy_cache(self.env, cwd) if target == "lint" else self.env
            return run(["make", target], cwd, env=env, timeout=MAKE_TIMEOUT)


@pytest.fixture(scope="module", params=list(PROFILES))
def profile(
    request: pytest.FixtureRequest, template_src: Path, tmp_path_factory: pytest.TempPathFactory
) -> Profile:
    name = request.param
    assert isinstance(name, str)
    answers = dict(PROFILES[name])
    env = project_tools_env(answers, PROFILE_ENV[name])
    root = run_scratch_dir(tmp_path_factory) / "profiles" / name
    root.mkdir(parents=True, exist_ok=True)
    return Profile(name=name, answers=answers, root=root, env=env, template_src=template_src)


def test_make_format_changes_nothing(profile: Profile) -> None:
    """`make format` changes nothing in the render (whatever else ran in it: its lint and
    tests write no Python file, and the three never run at once)."""
    project = profile.project("svc")
    # Under the render's lock: another worker's `make test` in it would add files.
    with locked(profile.root / "svc.lock"):
        before = file_hashes(project, TOOL_ARTIFACTS)
        result = run(["make", "format"], project, env=profile.env, timeout=MAKE_TIMEOUT)
        after = file_hashes(project, TOOL_ARTIFACTS)
    assert result.returncode == 0, command_report(result)
    changed = sorted(p for p in before if after.get(p) != before[p])
    added = sorted(set(after) - set(before))
    assert not changed and not added, (
        f"`make format` on the {profile.name} render changed {changed} and added {added}"
    )


def test_make_lint(profile: Profile) -> None:
    result = profile.make("svc", "lint")
    assert result.returncode == 0, command_report(result)


def test_make_test(profile: Profile) -> None:
    require_services(profile.env)
    assert_suite_passed(profile.make("svc", "test"), f"the {profile.name} render's suite")
