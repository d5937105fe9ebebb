"""The task Copier runs after a copy: `hooks/lock_dependencies.py` writes uv.lock."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import (
    find_python,
    find_uv,
    project_env,
    read_answers,
    render,
    require,
    snapshot_working_tree,
)
from matrix import REPO_ROOT, effective_answers

sys.path.insert(0, str(REPO_ROOT / "hooks"))
from lock_dependencies import lock_dependencies

# Directories with git (copier needs it for updates) and without any uv.
NO_UV_PATH = "/usr/bin:/bin"
NOT_WRITTEN = "uv.lock was not written"


def _uv() -> str:
    uv = find_uv()
    require(uv is not None, "uv is not installed")
    assert uv is not None
    return uv


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project without dependencies, locked with this interpreter (nothing to download)."""
    monkeypatch.setenv("UV_PYTHON", sys.executable)
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS", "never")
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "locked"\nversion = "0.1.0"\nrequires-python = ">=3.11"\n'
        "dependencies = []\n",
        encoding="utf-8",
    )
    return tmp_path


def test_lock_writes_uv_lock_and_a_second_run_changes_nothing(project: Path) -> None:
    uv = _uv()
    assert lock_dependencies(project, uv)
    written = (project / "uv.lock").read_bytes()
    assert b'name = "locked"' in written
    assert lock_dependencies(project, uv)
    assert (project / "uv.lock").read_bytes() == written
    check = subprocess.run([uv, "lock", "--check"], cwd=project, capture_output=True, check=False)
    assert check.returncode == 0, check.stderr


def test_without_uv_it_prints_the_command_to_run(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert not lock_dependencies(project, None)
    err = capsys.readouterr().err
    assert f"{NOT_WRITTEN}: uv is not installed" in err
    assert f"cd {project} && uv lock" in err
    assert not (project / "uv.lock").exists()


def test_a_failing_lock_is_reported_with_the_command(
    project: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    (project / "pyproject.toml").write_text("[project\n", encoding="utf-8")
    assert not lock_dependencies(project, _uv())
    err = capfd.readouterr().err
    assert f"{NOT_WRITTEN}: `uv lock` exited with status" in err
    assert f"cd {project} && uv lock" in err


def _copier(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The copier command in its own process: its tasks see exactly ``env``."""
    result = subprocess.run(
        [sys.executable, "-m", "copier", *args, "--defaults", "--trust"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"copier {args[0]} failed:\n{result.stdout}{result.stderr}"
    return result


def test_copy_runs_the_task_and_writes_a_current_lock(template_src: Path, tmp_path: Path) -> None:
    uv = _uv()
    version = str(effective_answers({"project_name": "x"})["python_version"])
    python = find_python(version)
    require(python is not None, f"no Python {version} for the default answers")
    assert python is not None
    env = project_env({"PATH": f"{Path(uv).parent}:{NO_UV_PATH}", "UV_PYTHON": python})
    project = tmp_path / "svc"
    result = _copier(
        tmp_path, env, "copy", "--data", "project_name=Locked", str(template_src), "svc"
    )
    assert (project / "uv.lock").is_file(), result.stderr
    # The task did it: the next steps do not ask for it again.
    assert "uv lock" not in result.stderr.split("Next steps:")[1]
    check = subprocess.run(
        [uv, "lock", "--check"], cwd=project, env=env, capture_output=True, check=False
    )
    assert check.returncode == 0, check.stderr


def test_copy_without_uv_succeeds_and_says_what_to_run(template_src: Path, tmp_path: Path) -> None:
    project = tmp_path / "svc"
    env = project_env({"PATH": NO_UV_PATH})
    result = _copier(
        tmp_path, env, "copy", "--data", "project_name=No Uv", str(template_src), "svc"
    )
    assert f"{NOT_WRITTEN}: uv is not installed" in result.stderr
    assert f"cd {project} && uv lock" in result.stderr
    assert not (project / "uv.lock").exists()
    assert (project / "pyproject.toml").is_file(), "the service was not generated"


@pytest.mark.usefixtures("git_identity")
def test_update_does_not_run_the_task(tmp_path: Path) -> None:
    """The lock is the service's own once generated: an update leaves it to ``uv lock``."""
    template_src = snapshot_working_tree(tmp_path / "template")
    _git(template_src, "init", "-q", "-b", "main")
    _git(template_src, "add", "-A")
    _git(template_src, "commit", "-q", "--no-verify", "-m", "Template")
    project = render(template_src, tmp_path / "svc", {"project_name": "Updated"})
    _git(project, "init", "-q", "-b", "main")
    _git(project, "add", "-A")
    _git(project, "commit", "-q", "--no-verify", "-m", "Generate")
    # Without uv on PATH the task, had it run, would say that it wrote no lock.
    env = project_env({"PATH": NO_UV_PATH})
    result = _copier(project, env, "update", "--data", "description=Changed")
    assert read_answers(project)["description"] == "Changed"
    assert NOT_WRITTEN not in result.stderr
    assert not (project / "uv.lock").exists()


def test_copy_without_tasks_lists_uv_lock_in_the_next_steps(
    template_src: Path, tmp_path: Path
) -> None:
    args = ("copy", "--skip-tasks", "--data", "project_name=Unlocked", str(template_src), "svc")
    result = _copier(tmp_path, project_env(), *args)
    assert "uv lock" in result.stderr.split("Next steps:")[1]
    assert not (tmp_path / "svc" / "uv.lock").exists()
