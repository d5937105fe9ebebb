"""Profile tier: schemathesis fuzzes a served render over its own OpenAPI document.

Positive and negative cases, every check (schemathesis runs them all unless told not
to), the stateful phase over the document's links,
authenticated as an admin. Zero failures: the document describes what the service does,
and no request, however malformed, gets a 5xx. Run against the default render (SQLite)
and the PostgreSQL one, each with a database of its own and a seed, so a failure
reproduces.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from helpers import (
    EnrichmentService,
    RenderCache,
    find_uv,
    project_env,
    read_answers,
    require,
    run_scratch_dir,
    tcp_reachable,
)
from matrix import PROFILES

pytestmark = pytest.mark.profile

DATABASE_URL = os.environ.get(
    "TEMPLATE_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("TEMPLATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SEED = 20261204
MAX_EXAMPLES = 25
SERVE_ON_ANY_PORT = ("--host", "127.0.0.1", "--port", "0")
RUNNING_ON = re.compile(rb"Uvicorn running on http://127\.0\.0\.1:(\d+)")

# A precondition that fails (412) answers a request that was valid; so does a conflict
# (409) or a missing resource (404), which schemathesis expects already.
CONFIG = f"""
seed = {SEED}
workers = 1
[generation]
max-examples = {MAX_EXAMPLES}
[checks.positive_data_acceptance]
expected-statuses = ["2XX", "3XX", 401, 403, 404, 409, 412, 429]

# JSON Schema cannot say "the rollout weights add up to 100", nor everything flagd
# accepts in a document to import: such requests fit the schema and get a 422 naming the
# field, which is right, and which positive-data acceptance would report. Every other
# check still runs on these operations.
[[operations]]
include-path-regex = "^/api/v1/flags(/{{key}})?$|^/api/v1/flags/import/flagd$"
include-method-regex = "^(POST|PUT)$"
checks.positive_data_acceptance.enabled = false
"""


async def _create_database(admin_url: str, name: str) -> None:
    import asyncpg  # the template's environment has it for mypy; only this test runs it

    connection = await asyncpg.connect(admin_url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def database_for(profile: str, scratch: Path) -> str:
    if PROFILES[profile].get("database") != "postgresql":
        return f"sqlite+aiosqlite:///{scratch / 'contract.db'}"
    require(tcp_reachable("127.0.0.1", 5432), "PostgreSQL is not reachable on 127.0.0.1:5432")
    name = f"contract_{uuid.uuid4().hex[:12]}"
    admin = DATABASE_URL.replace("postgresql+asyncpg://", "postgresql://").rsplit("/", 1)[0]
    asyncio.run(_create_database(f"{admin}/postgres", name))
    return DATABASE_URL.rsplit("/", 1)[0] + f"/{name}"


def run(project: Path, env: dict[str, str], *command: str) -> str:
    result = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stderr}"
    return result.stdout


@pytest.fixture(params=["sqlite", "postgresql-redis"])
def served(
    request: pytest.FixtureRequest,
    template_src: Path,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
) -> Iterator[tuple[str, str]]:
    """A render of the profile, migrated and served; yields its URL and an admin token."""
    profile = str(request.param)
    uv = find_uv()
    require(uv is not None, "uv is not installed")
    assert uv is not None
    root = run_scratch_dir(tmp_path_factory) / "contract"
    project = RenderCache(template_src, root).get(profile, PROFILES[profile])
    env = project_env({"APP_DATABASE__URL": database_for(profile, tmp_path)})
    if PROFILES[profile].get("redis"):
        env["APP_REDIS__URL"] = REDIS_URL
    # With outbound calls, the items' enrichment lookup is on and fuzzed through to a
    # real service: answered, not the 404 of a lookup that is off.
    if read_answers(project).get("circuit_breakers"):
        enrichment = EnrichmentService()
        enrichment.start()
        request.addfinalizer(enrichment.stop)
        env["APP_OUTBOUND__DEPENDENCIES__ENRICHMENT__BASE_URL"] = enrichment.url
    run(project, env, uv, "sync", "--quiet")
    slug = read_answers(project)["project_slug"]
    package = read_answers(project)["package_name"]
    run(project, env, uv, "run", slug, "migrate")
    token = run(project, env, uv, "run", slug, "token", "--subject", "fuzzer", "--role", "admin")
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [uv, "run", "uvicorn", "--factory", f"{package}.main:create_app", *SERVE_ON_ANY_PORT],
            cwd=project,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        port = None
        while port is None and time.monotonic() < deadline and server.poll() is None:
            found = RUNNING_ON.search(log.read_bytes())
            port = int(found[1]) if found else None
            time.sleep(0.2)
        assert port is not None, f"the service did not start:\n{log.read_text()[-3000:]}"
        url = f"http://127.0.0.1:{port}"
        # The port is this process's own (it bound port 0); this checks it is the service.
        assert httpx.get(f"{url}/health/ready", timeout=10).status_code == 200
        yield url, token.strip().splitlines()[-1]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_schemathesis_finds_nothing(served: tuple[str, str], tmp_path: Path) -> None:
    url, token = served
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG, encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "--no-color",
        "run",
        f"{url}/openapi.json",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--header",
        f"Authorization: Bearer {token}",
        "--request-timeout",
        "30",
    ]
    # In the test's own folder: schemathesis keeps a cache of what it found where it runs.
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=1200, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20000:]
    assert "No issues found" in output or " passed" in output, output[-5000:]
