"""The README quickstart: one command generates a service with default answers and serves it.

The command runs from a git clone of the template, as a new user runs it, and must leave
that clone as clean as it found it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import find_python, find_uv, project_env, read_answers, require, snapshot_working_tree
from matrix import REPO_ROOT, effective_answers

pytestmark = pytest.mark.usefixtures("git_identity")

STARTUP_TIMEOUT = 600  # seconds: the first run installs the service's dependencies
# uvicorn logs the port it bound, which is how a service asked for port 0 tells it.
RUNNING_ON = re.compile(r"Uvicorn running on http://127\.0\.0\.1:(\d+)")


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"git {' '.join(args)} failed in {cwd}:\n{result.stderr}"
    return result.stdout


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """The template's working tree as a fresh clone: one commit, nothing uncommitted."""
    repo = snapshot_working_tree(tmp_path / "template")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--no-verify", "-m", "Template")
    return repo


def readme_quickstart_command() -> list[str]:
    """The ``scripts/quickstart`` line of the README's Quickstart, without its comment."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    lines = [line for line in readme.splitlines() if line.startswith("scripts/quickstart")]
    assert len(lines) == 1, f"expected one quickstart command in README.md, found {lines}"
    return shlex.split(lines[0], comments=True)


def quickstart_environment(**extra: str) -> dict[str, str]:
    uv = find_uv()
    require(uv is not None, "uv is not installed")
    assert uv is not None
    version = str(effective_answers({"project_name": "x"})["python_version"])
    python = find_python(version)
    require(python is not None, f"no Python {version} for the default answers")
    assert python is not None
    path = f"{Path(uv).parent}{os.pathsep}{os.environ['PATH']}"
    return project_env({"PATH": path, "UV_PYTHON": python, **extra})


def _get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            body: bytes = reply.read()
            return body if reply.status == 200 else None
    except OSError:
        return None


def _serving_port(log: Path) -> int | None:
    found = RUNNING_ON.search(log.read_text(errors="replace"))
    return int(found.group(1)) if found else None


@pytest.mark.profile
def test_readme_quickstart_serves_and_leaves_the_clone_clean(clone: Path) -> None:
    command = readme_quickstart_command()
    # Port 0: the service binds a free port itself and logs which, so no other process
    # can take the port between choosing it and binding it.
    env = quickstart_environment(APP_SERVER__PORT="0")
    log = clone.parent / "quickstart.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            command,
            cwd=clone,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            port = None
            openapi = None
            while openapi is None:
                assert process.poll() is None, f"quickstart exited early:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"not serving yet:\n{log.read_text()}"
                time.sleep(1)
                port = port or _serving_port(log)
                if port is not None and _get(f"http://127.0.0.1:{port}/health/live"):
                    openapi = _get(f"http://127.0.0.1:{port}/openapi.json")
            # The port answers as the service just generated, not as some other process.
            assert json.loads(openapi)["info"]["title"] == "my-service"
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
    output = log.read_text()
    assert "Serving on http://127.0.0.1 on a free port" in output
    service = clone.parent / "my-service"
    assert (service / "my_service.db").exists(), "the database was not migrated"
    assert '"event": "service stopping"' in output, "no graceful shutdown on SIGTERM"

    assert git(clone, "status", "--porcelain", "--untracked-files=all") == ""
    # The answers record the clone's commit, not a draft of an uncommitted tree.
    recorded = str(read_answers(service)["_commit"])
    resolved = git(clone, "rev-parse", "--verify", "--quiet", f"{recorded}^{{commit}}").strip()
    assert resolved == git(clone, "rev-parse", "HEAD").strip()


@pytest.mark.parametrize("destination", ["my-service", "docs/../my-service"])
def test_quickstart_refuses_a_destination_inside_the_clone(clone: Path, destination: str) -> None:
    result = subprocess.run(
        ["scripts/quickstart", destination],
        cwd=clone,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert "inside the template's clone" in result.stderr
    assert "scripts/quickstart ../my-service" in result.stderr
    assert git(clone, "status", "--porcelain", "--untracked-files=all") == ""
