"""Slow tier: render full profiles and run the rendered project's own Makefile.

Each profile gets its own render with its own ``.venv`` (created by ``uv run``
inside the Makefile). The PostgreSQL profile talks to the real servers named by
``APP_DATABASE__URL``/``APP_REDIS__URL``; under CI=true an unreachable server
fails the test, elsewhere it skips.
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
    file_hashes,
    find_python,
    find_uv,
    project_env,
    read_answers,
    render,
    require,
    tcp_reachable,
)
from matrix import PROFILES

pytestmark = pytest.mark.profile

DATABASE_URL = os.environ.get(
    "TEMPLATE_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TEMPLATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

# Per profile: the service environment its tests get.
PROFILE_ENV: dict[str, dict[str, str]] = {
    "sqlite": {},
    "postgresql-redis": {"APP_DATABASE__URL": DATABASE_URL, "APP_REDIS__URL": REDIS_URL},
}

MAKE_TIMEOUT = 1200  # seconds, per make target (includes the first uv sync)

# Created by running the project's tools; never part of what `make format` may change.
TOOL_ARTIFACTS = frozenset(
    {".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__", "uv.lock"}
)


@dataclass
class Profile:
    name: str
    path: Path
    env: dict[str, str]
    pristine: dict[str, str]  # file hashes right after rendering

    def make(self, target: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                ["make", target],
                cwd=self.path,
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


def _params() -> list[Any]:
    return [
        pytest.param(name, id=name, marks=pytest.mark.xdist_group(f"profile-{name}"))
        for name in PROFILES
    ]


@pytest.fixture(scope="module", params=_params())
def profile(
    request: pytest.FixtureRequest, template_src: Path, tmp_path_factory: pytest.TempPathFactory
) -> Profile:
    name = request.param
    assert isinstance(name, str)
    uv = find_uv()
    require(uv is not None, "uv is not installed (the rendered Makefile runs everything with uv)")
    assert uv is not None
    path = render(template_src, tmp_path_factory.mktemp(f"profile-{name}") / "svc", PROFILES[name])
    pristine = file_hashes(path, TOOL_ARTIFACTS)
    version = str(read_answers(path)["python_version"])
    python = find_python(version)
    require(python is not None, f"no Python {version} interpreter found for the {name} render")
    assert python is not None
    env = project_env({"UV": uv, "UV_PYTHON": python, **PROFILE_ENV[name]})
    return Profile(name=name, path=path, env=env, pristine=pristine)


def _report(result: subprocess.CompletedProcess[str]) -> str:
    tail = (result.stdout + "\n" + result.stderr).strip().splitlines()[-150:]
    return f"$ {' '.join(result.args)} exited {result.returncode}\n" + "\n".join(tail)


def test_make_format_changes_nothing(profile: Profile) -> None:
    result = profile.make("format")
    assert result.returncode == 0, _report(result)
    after = file_hashes(profile.path, TOOL_ARTIFACTS)
    changed = sorted(p for p in profile.pristine if after.get(p) != profile.pristine[p])
    added = sorted(set(after) - set(profile.pristine))
    assert not changed and not added, (
        f"`make format` on a fresh {profile.name} render changed {changed} and added {added}"
    )


def test_make_lint(profile: Profile) -> None:
    result = profile.make("lint")
    assert result.returncode == 0, _report(result)


def test_make_test(profile: Profile) -> None:
    _check_services(profile.env)
    result = profile.make("test")
    assert result.returncode == 0, _report(result)
    output = result.stdout + result.stderr
    assert " passed" in output, f"the rendered suite ran no test:\n{_report(result)}"
    assert " skipped" not in output or profile.name == "sqlite", (
        f"tests skipped in the {profile.name} profile (its services are given):\n{_report(result)}"
    )
