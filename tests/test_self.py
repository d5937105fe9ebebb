"""The template repository's own tooling: its suite is lint- and type-clean."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["ruff", "check", "--no-cache", "tests", "hooks"], id="ruff-check"),
        pytest.param(
            ["ruff", "format", "--check", "--no-cache", "tests", "hooks"], id="ruff-format"
        ),
        pytest.param(["mypy", "--no-incremental"], id="mypy"),
    ],
)
def test_suite_is_clean(args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
