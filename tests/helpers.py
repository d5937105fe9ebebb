"""Helpers shared by the template's tests (no fixtures: those live in conftest.py)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import copier
import pytest
import yaml
from matrix import REPO_ROOT, effective_answers

# render_template(answers, dst) -> dst (the conftest fixture of that name)
Renderer = Callable[[Mapping[str, Any], Path], Path]


def snapshot_working_tree(dst: Path) -> Path:
    """Copy the repo's working tree (tracked + untracked, not ignored) to ``dst``.

    No ``.git`` is copied, so copier renders the files exactly as they are on
    disk, committed or not.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
    ).stdout.decode()
    dst.mkdir(parents=True, exist_ok=True)
    for rel in sorted(set(filter(None, listed.split("\0")))):
        src = REPO_ROOT / rel
        if not src.is_file() and not src.is_symlink():
            continue  # tracked but deleted in the working tree
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target, follow_symlinks=False)
    return dst


def render(src: Path | str, dst: Path, answers: Mapping[str, Any], **kwargs: Any) -> Path:
    """Render the template at ``src`` into ``dst`` non-interactively, without its tasks.

    The tasks write ``uv.lock``, a dependency resolution per render that the checks of
    the files do not need; ``render_as_user`` runs them.
    """
    options: dict[str, Any] = {"defaults": True, "unsafe": True, "quiet": True, "skip_tasks": True}
    options.update(kwargs)
    copier.run_copy(str(src), str(dst), data=dict(answers), **options)
    return dst


def render_as_user(
    src: Path, dst: Path, answers: Mapping[str, Any], env: Mapping[str, str]
) -> Path:
    """Render with the copier command in ``env``, tasks included, as a user generates a service."""
    data_file = dst.with_name(f"{dst.name}.answers.yml")
    data_file.write_text(yaml.safe_dump(dict(answers)), encoding="utf-8")
    command = [sys.executable, "-m", "copier", "copy", "--defaults", "--trust", "--quiet"]
    result = subprocess.run(
        [*command, "--data-file", str(data_file), str(src), str(dst)],
        env=dict(env),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"copier copy failed:\n{result.stdout}{result.stderr}"
    assert (dst / "uv.lock").is_file(), f"the copy's task wrote no uv.lock:\n{result.stderr}"
    return dst


def read_answers(project: Path) -> dict[str, Any]:
    with (project / ".copier-answers.yml").open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    assert isinstance(data, dict), ".copier-answers.yml is not a mapping"
    return data


def run_scratch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory shared by all xdist workers of this run (and only this run)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextmanager
def locked(lock_file: Path) -> Iterator[None]:
    """An exclusive advisory lock across the processes of this run."""
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def safe_name(key: str) -> str:
    """A file name for a render key; long keys keep a readable head and a digest.

    Pairwise keys name every answer and outgrow the 255-byte file name limit
    once the ``.lock`` and ``.done`` suffixes are added.
    """
    name = "".join(c if c.isalnum() or c in "-_=." else "_" for c in key)
    if len(name) <= 120:
        return name
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{name[:100]}-{digest}"


class RenderCache:
    """Renders each answer set once per test run, shared by the xdist workers.

    Renders are read-only for the checks that use them; a lock makes the first
    worker that needs a render produce it while the others wait.
    """

    def __init__(self, src: Path, root: Path, user_env: Mapping[str, str] | None = None) -> None:
        self.src = src
        self.root = root
        # Given, renders run the template's tasks in this environment (render_as_user).
        self.user_env = user_env

    def get(self, key: str, answers: Mapping[str, Any]) -> Path:
        name = safe_name(key)
        dst = self.root / name
        done = self.root / f"{name}.done"
        with locked(self.root / f"{name}.lock"):
            if not done.exists():
                if dst.exists():
                    shutil.rmtree(dst)  # a half-written render from a crashed worker
                if self.user_env is None:
                    render(self.src, dst, answers)
                else:
                    render_as_user(self.src, dst, answers, self.user_env)
                done.touch()
        return dst


# --------------------------------------------------------------------------- #
# Services for the slow tier
# --------------------------------------------------------------------------- #

# The spellings of "true" CI systems set CI to; compared case-insensitively. The rendered
# suite (tests/support.py) and .ci/run apply the same rule.
CI_TRUE_VALUES = frozenset({"1", "true", "yes"})


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in CI_TRUE_VALUES


def tcp_reachable(host: str, port: int, timeout: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require(condition: bool, message: str) -> None:
    """Fail under CI, skip elsewhere, when a prerequisite of a test is missing."""
    if condition:
        return
    if running_in_ci():
        pytest.fail(f"{message} (under CI missing prerequisites fail, they are never skipped)")
    pytest.skip(message)


# The real servers a render's own tests may be pointed at.
TEST_DATABASE_URL = os.environ.get(
    "TEMPLATE_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
TEST_REDIS_URL = os.environ.get("TEMPLATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def require_services(env: Mapping[str, str]) -> None:
    """The servers ``env`` points a render's tests at (APP_DATABASE__URL, APP_REDIS__URL) answer."""
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


# --------------------------------------------------------------------------- #
# Interpreters and tools for running a rendered project's own Makefile
# --------------------------------------------------------------------------- #


def _interpreter(exe: str, version: str) -> str | None:
    """The real executable behind ``exe`` (shims resolved) if it runs ``version``."""
    try:
        out = subprocess.run(
            [exe, "-c", "import sys; print('%d.%d' % sys.version_info[:2]); print(sys.executable)"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 2 or lines[0] != version:
        return None
    return lines[1]


def find_python(version: str) -> str | None:
    """A real interpreter for ``version`` (e.g. "3.12") that uv can use offline.

    uv cannot download interpreters here, and pyenv shims for non-global
    versions fail (or, given as UV_PYTHON, make uv recreate the venv on every
    call), so look in the usual install locations first, then on PATH.
    """
    candidates = [
        str(p)
        for pattern in (
            f"root/.pyenv/versions/{version}*/bin/python{version}",
            f"{str(Path.home()).lstrip('/')}/.pyenv/versions/{version}*/bin/python{version}",
            f"usr/local/bin/python{version}",
            f"usr/bin/python{version}",
        )
        for p in sorted(Path("/").glob(pattern))
    ]
    found = shutil.which(f"python{version}")
    if found:
        candidates.append(found)
    for exe in candidates:
        real = _interpreter(exe, version)
        if real:
            return real
    return None


def find_uv() -> str | None:
    """A working uv binary, never a pyenv shim.

    A shim resolves per directory and fails inside a render whose .python-version
    names an interpreter that has no uv installed.
    """
    candidates = [
        str(Path(entry) / "uv")
        for entry in os.environ.get("PATH", "").split(os.pathsep)
        if entry and Path(entry).name != "shims"
    ]
    candidates.append(str(Path.home() / ".local" / "bin" / "uv"))
    for exe in candidates:
        if not os.access(exe, os.X_OK):
            continue
        try:
            ok = subprocess.run([exe, "--version"], capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            continue
        if ok:
            return exe
    return None


def project_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for commands run inside a render: no trace of this repo's venv."""
    # Where PYTHONDONTWRITEBYTECODE is set (this suite's CI machine sets it), every process
    # of a render compiled every module it imports from source: 4 s to import the
    # all-features service instead of 1.4, paid by each served process the generated tests
    # start. Without it Python writes each module's bytecode at its first import, once.
    # UV_COMPILE_BYTECODE would do it at install, but uv then compiles the whole venv
    # again on every `uv run` (2.7 s of CPU each, dozens of times per render).
    dropped = {
        "VIRTUAL_ENV",
        "UV_PROJECT_ENVIRONMENT",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONDONTWRITEBYTECODE",
        "UV_COMPILE_BYTECODE",
    }
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in dropped and not k.startswith("APP_") and not k.startswith("PYTEST_")
    }
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env["UV_PYTHON_DOWNLOADS"] = "never"
    env.update(extra or {})
    return env


_SUMMARY_LINE = re.compile(r"^=+ (?P<counts>.+?) in [0-9.]+s(?: \([0-9:]+\))? =+$")
_OUTCOME = re.compile(r"(?P<count>[0-9]+) (?P<outcome>[a-z]+)")


def pytest_outcomes(output: str) -> dict[str, int]:
    """Count per outcome ("passed", "skipped", "errors", ...) from pytest's summary line.

    Empty if ``output`` has no summary line (pytest did not get that far).
    """
    for line in reversed(output.splitlines()):
        summary = _SUMMARY_LINE.match(line.strip())
        if summary:
            return {m["outcome"]: int(m["count"]) for m in _OUTCOME.finditer(summary["counts"])}
    return {}


def project_tools_env(answers: Mapping[str, Any], extra: Mapping[str, str]) -> dict[str, str]:
    """Environment for a render's own Makefile: uv and the render's Python, ``CI=true``.

    ``CI=true`` makes a generated test whose server is missing fail instead of skip, and
    ``-rfEs`` ends the output with each failure, error and skip on a line of its own: the
    tail of the output, which a failure message keeps whatever is cut from the middle.
    """
    uv = find_uv()
    require(uv is not None, "uv is not installed (the rendered Makefile runs everything with uv)")
    assert uv is not None
    version = str(effective_answers(answers)["python_version"])
    python = find_python(version)
    require(python is not None, f"no Python {version} interpreter found for the render")
    assert python is not None
    return project_env(
        {"UV": uv, "UV_PYTHON": python, "CI": "true", "PYTEST_ADDOPTS": "-rfEs", **extra}
    )


# A mypy cache per xdist worker for the renders' own `make lint` (profiles, updates),
# set by conftest.py: the third-party modules, most of what mypy reads, are analysed
# once per worker rather than once per render (a cold `make lint` of the all-features
# render spent 33 s of CPU in mypy, a warm one 3 s).
MYPY_CACHE_VARIABLE = "TEMPLATE_TEST_MYPY_CACHE"


def shared_mypy_cache(env: Mapping[str, str], project: Path) -> dict[str, str]:
    """``env`` with mypy's cache the worker's shared one, after every Python file of
    ``project`` is given a modification time no file had at an earlier call.

    mypy trusts a cached module whose path, size and mtime (whole seconds) match without
    reading it, and the renders' modules share relative paths: another render's entry
    for one of them could pass for this render's. With a time of their own, mypy
    compares each file's content hash with its entry instead, and reuses the entries
    of modules whose content has not changed (most of them, between two renders or an
    update's two states); third-party modules live in each render's own venv, so their
    paths differ and mypy compares hashes for them anyway.
    """
    root = os.environ.get(MYPY_CACHE_VARIABLE)
    if not root:
        return dict(env)
    # One cache per mypy configuration: mypy discards a whole cache made with other
    # options or plugins (renders with GraphQL add strawberry's), and the renders of
    # different configurations a worker lints in turn would each find it cold.
    with (project / "pyproject.toml").open("rb") as pyproject:
        config = tomllib.load(pyproject).get("tool", {}).get("mypy", {})
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    cache = Path(root) / key
    cache.mkdir(parents=True, exist_ok=True)
    _stamp_sources(project, Path(root) / "stamps")
    return {**env, "MYPY_CACHE_DIR": str(cache)}


# Stamps count up from 2001-09-09, never the time of a file written since, in a range of
# a million per xdist worker: a render the workers share may be stamped by either, and
# no two stamps may be equal.
FIRST_STAMP = 1_000_000_000
STAMPS_PER_WORKER = 1_000_000


def _stamp_sources(project: Path, counter: Path) -> None:
    """Sets the mtime of every ``.py``/``.pyi`` file of ``project`` (not its venv) to the
    next of a count kept in ``counter``; the worker's calls come one after another."""
    worker = re.sub(r"\D", "", os.environ.get("PYTEST_XDIST_WORKER", "")) or "0"
    first = FIRST_STAMP + int(worker) * STAMPS_PER_WORKER
    stamp = int(counter.read_text()) + 1 if counter.is_file() else first
    counter.write_text(str(stamp))
    for folder, children, files in os.walk(project):
        children[:] = [name for name in children if not name.startswith(".")]
        for name in files:
            if name.endswith((".py", ".pyi")):
                os.utime(Path(folder, name), (stamp, stamp))


def run(
    cmd: list[str], cwd: Path, *, env: Mapping[str, str] | None = None, timeout: float = 1200
) -> subprocess.CompletedProcess[str]:
    """``cmd`` in ``cwd`` with its output captured; a timeout fails the test."""
    try:
        return subprocess.run(
            cmd,
            cwd=cwd,
            env=None if env is None else dict(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`{' '.join(cmd)}` in {cwd} timed out after {exc.timeout}s")


# Lines of a pytest run that name what failed, wherever they are in a long output.
PYTEST_VERDICT = re.compile(
    r"^(?:FAILED |ERROR |INTERNALERROR|_{3,} \S.* _{3,}$|=+ .*(?:passed|failed|error|"
    r"Interrupted|no tests ran).* =+$|!+ .* !+$)"
)
# pytest's "E   " lines: the assertion and the exception of each failure, which a log-heavy
# run's tail (library warnings printed at teardown) can push out of view.
PYTEST_EXPLANATION = re.compile(r"^E {2,}\S")


def command_report(result: subprocess.CompletedProcess[str], lines: int = 150) -> str:
    """The command, its exit status, what a pytest run says failed, and the tail of its
    output, for a failure message."""
    output = (result.stdout + "\n" + result.stderr).strip().splitlines()
    verdict = [
        line for line in output if PYTEST_VERDICT.match(line) or PYTEST_EXPLANATION.match(line)
    ]
    args = result.args if isinstance(result.args, str) else " ".join(map(str, result.args))
    report = f"$ {args} exited {result.returncode}\n"
    if verdict:
        report += "--- what failed ---\n" + "\n".join(verdict[-80:]) + "\n--- output tail ---\n"
    return report + "\n".join(output[-lines:])


# The one skip a render's suite reports with every prerequisite given: its schema
# compatibility check has no previous release where the render has no release tag (or no
# git). tests/test_schema_compatibility.py runs that check with releases.
NO_PREVIOUS_RELEASE = re.compile(
    r"^SKIPPED \[1\] tests/test_schema_compatibility\.py:[0-9]+: "
    r"(?:no release tag reachable from HEAD|not a git checkout)",
    re.MULTILINE,
)


def assert_suite_passed(result: subprocess.CompletedProcess[str], what: str) -> None:
    """``make test`` succeeded and every test passed: none skipped (but the schema
    compatibility check without a previous release), none errored."""
    assert result.returncode == 0, command_report(result)
    outcomes = pytest_outcomes(result.stdout)
    assert outcomes.get("passed", 0) > 0, f"{what}: no test ran\n{command_report(result)}"
    if outcomes.get("skipped") == 1 and NO_PREVIOUS_RELEASE.search(result.stdout):
        del outcomes["skipped"]
    others = {outcome: n for outcome, n in outcomes.items() if outcome != "passed"}
    assert not others, (
        f"{what}: {others} besides passes (every prerequisite is given)\n{command_report(result)}"
    )


def file_hashes(root: Path, ignore: frozenset[str] = frozenset()) -> dict[str, str]:
    """sha256 of every file under ``root`` whose path has no part in ``ignore``."""
    hashes: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if ignore & set(rel.parts) or not path.is_file():
            continue
        hashes[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def git(cwd: Path, *args: str) -> str:
    """Run git in ``cwd``; fail the test with git's message when it fails."""
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"git {' '.join(args)} failed in {cwd}:\n{result.stderr}"
    return result.stdout


def commit_all(cwd: Path, message: str) -> None:
    git(cwd, "add", "-A")
    git(cwd, "commit", "-q", "--no-verify", "--allow-empty", "-m", message)


# --------------------------------------------------------------------------- compose


def compose_model(project: Path) -> dict[str, Any]:
    """``compose.yaml`` with its ``include:`` files merged in, as Compose reads it.

    Compose resolves an included file's relative paths against that file's folder; here
    they are rewritten relative to the project (``./observability/...``) so checks can
    treat every bind mount alike. A service or volume defined twice is refused, as
    Compose refuses it.
    """
    main = yaml.safe_load((project / "compose.yaml").read_text(encoding="utf-8"))
    assert isinstance(main, dict), "compose.yaml is not a mapping"
    services: dict[str, Any] = dict(main.get("services") or {})
    volumes: dict[str, Any] = dict(main.get("volumes") or {})
    for entry in main.get("include") or []:
        relative = entry if isinstance(entry, str) else entry["path"]
        path = project / relative
        assert path.is_file(), f"compose.yaml includes {relative}, which does not exist"
        fragment = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for name, service in (fragment.get("services") or {}).items():
            assert name not in services, f"service {name!r} is defined twice ({relative})"
            services[name] = _rebased(service, path.parent, project)
        for name, volume in (fragment.get("volumes") or {}).items():
            assert name not in volumes, f"volume {name!r} is defined twice ({relative})"
            volumes[name] = volume
    return {**main, "services": services, "volumes": volumes}


def _rebased(service: dict[str, Any], folder: Path, project: Path) -> dict[str, Any]:
    mounts = []
    for volume in service.get("volumes", []):
        source, _, rest = str(volume).partition(":")
        if source.startswith(("./", "../")):
            resolved = os.path.normpath(folder / source)
            source = "./" + Path(resolved).relative_to(project).as_posix()
        mounts.append(f"{source}:{rest}" if rest else source)
    return {**service, "volumes": mounts} if "volumes" in service else service


class OtlpReceiver:
    """Where a render's spans go when a test or a benchmark needs them recorded: an
    OTLP/HTTP endpoint that accepts every export and keeps only the count of its bytes, as
    a collector would receive them (a service with no exporter records no trace that
    starts in it). A context manager: it serves in a thread while entered."""

    def __init__(self) -> None:
        self.received_bytes = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # the exporters keep their connections

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.received_bytes += len(body)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> OtlpReceiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class EnrichmentService:
    """A stand-in for the enrichment service a render's items look themselves up in
    (the outbound slice's example): a JSON object for every GET, or 503 for the next
    ``fail_next`` requests. A context manager: it serves in a thread while entered."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures_left = 0
        enrichment = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with enrichment._lock:
                    failing = enrichment._failures_left > 0
                    enrichment._failures_left -= failing
                body = b'{"colour": "teal"}'
                self.send_response(503 if failing else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def fail_next(self, requests: int) -> None:
        with self._lock:
            self._failures_left = requests

    def start(self) -> None:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> EnrichmentService:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
