"""Helpers shared by the template's tests (no fixtures: those live in conftest.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import copier
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent


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
    """Render the template at ``src`` into ``dst`` non-interactively."""
    options: dict[str, Any] = {"defaults": True, "unsafe": True, "quiet": True}
    options.update(kwargs)
    copier.run_copy(str(src), str(dst), data=dict(answers), **options)
    return dst


def read_answers(project: Path) -> dict[str, Any]:
    with (project / ".copier-answers.yml").open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    assert isinstance(data, dict), ".copier-answers.yml is not a mapping"
    return data


class RenderCache:
    """Renders each answer set once per worker (renders are read-only for checks)."""

    def __init__(self, src: Path, root: Path) -> None:
        self.src = src
        self.root = root
        self._renders: dict[str, Path] = {}

    def get(self, key: str, answers: Mapping[str, Any]) -> Path:
        if key not in self._renders:
            safe = "".join(c if c.isalnum() or c in "-_=." else "_" for c in key)
            dst = self.root / safe
            render(self.src, dst, answers)
            self._renders[key] = dst
        return self._renders[key]


# --------------------------------------------------------------------------- #
# Services for the slow tier
# --------------------------------------------------------------------------- #

IN_CI = os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


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
    if IN_CI:
        pytest.fail(f"{message} (CI=true: missing prerequisites fail, they are never skipped)")
    pytest.skip(message)
