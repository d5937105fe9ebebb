"""The README quickstart: one command generates a service with default answers and serves it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import find_python, find_uv, project_env, require
from matrix import effective_answers

pytestmark = pytest.mark.profile

STARTUP_TIMEOUT = 600  # seconds: the first run installs the service's dependencies


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _live(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=2) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def test_quickstart_generates_and_serves(template_src: Path, tmp_path: Path) -> None:
    uv = find_uv()
    require(uv is not None, "uv is not installed")
    assert uv is not None
    version = str(effective_answers({"project_name": "x"})["python_version"])
    python = find_python(version)
    require(python is not None, f"no Python {version} for the default answers")
    assert python is not None
    port = _free_port()
    env = project_env(
        {
            "PATH": f"{Path(uv).parent}{os.pathsep}{os.environ['PATH']}",
            "UV_PYTHON": python,
            "APP_SERVER__PORT": str(port),
        }
    )
    log = tmp_path / "quickstart.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(template_src / "scripts" / "quickstart"), str(tmp_path / "svc"), "Quick Start"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            while not _live(port):
                assert process.poll() is None, f"quickstart exited early:\n{log.read_text()}"
                assert time.monotonic() < deadline, f"not serving yet:\n{log.read_text()}"
                time.sleep(1)
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=60)
    output = log.read_text()
    assert f"Serving on http://127.0.0.1:{port}" in output
    assert (tmp_path / "svc" / "quick_start.db").exists(), "the database was not migrated"
    assert '"event": "service stopping"' in output, "no graceful shutdown on SIGTERM"
