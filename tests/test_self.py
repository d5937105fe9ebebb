"""The template repository's own tooling: its suite is lint- and type-clean, one CI rule,
and test modules (its own and the generated ones) share helpers only through support modules."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import command_report, pytest_outcomes, running_in_ci
from matrix import REPO_ROOT


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


def test_pytest_outcomes_reads_a_real_summary(tmp_path: Path) -> None:
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n\n\ndef test_passes() -> None:\n    pass\n\n\n"
        "def test_skips() -> None:\n    pytest.skip('not here')\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-rs", "-p", "no:cacheprovider", "-p", "no:xdist"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert pytest_outcomes(result.stdout) == {"passed": 1, "skipped": 1}, result.stdout
    assert pytest_outcomes("collected 0 items\n") == {}


CI_SPELLINGS = {
    **dict.fromkeys(["1", "true", "TRUE", "True", "yes", "YES", "Yes"], True),
    **dict.fromkeys(["", "0", "false", "no", "off", "truthy"], False),
}


def test_a_failure_report_keeps_the_assertion_under_a_noisy_tail(tmp_path: Path) -> None:
    """A failing run whose teardown prints hundreds of lines still shows why it failed."""
    (tmp_path / "test_noisy.py").write_text(
        "def test_fails() -> None:\n"
        "    answered = [503, 503]\n"
        "    assert len(answered) == 1, (\n"
        "        'two requests were cut; the log shows one deadline line and no database "
        "timeout at all'\n"
        "    )\n\n\n"
        "def teardown_module() -> None:\n"
        "    for n in range(400):\n"
        "        print(f'Task was destroyed but it is pending {n}')\n",
        encoding="utf-8",
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    report = command_report(result, lines=20)
    what_failed = report.split("--- output tail ---")[0]
    # The short summary line cuts a long message at the terminal's width; the E lines don't.
    assert "no database timeout at all" in what_failed, report
    assert "FAILED" in what_failed, report


@pytest.mark.parametrize(("value", "is_ci"), CI_SPELLINGS.items())
def test_ci_detection_is_one_rule(monkeypatch: pytest.MonkeyPatch, value: str, is_ci: bool) -> None:
    """tests/helpers.py and .ci/run agree on what CI values mean "in CI"."""
    monkeypatch.setenv("CI", value)
    assert running_in_ci() is is_ci
    in_ci = subprocess.run(
        ["bash", "-c", "set -u; source <(sed -n '/^in_ci() {/,/^}/p' .ci/run); in_ci"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert in_ci.stderr == ""
    assert (in_ci.returncode == 0) is is_ci, f".ci/run's in_ci with CI={value!r}"


def test_template_suite_modules_import_no_other_test_module() -> None:
    """Shared code lives in helpers.py, matrix.py and conftest.py's fixtures."""
    found = {
        f"{path.name} imports {node.module}"
        for path in sorted((REPO_ROOT / "tests").glob("test_*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ImportFrom)
        and (node.module or "").split(".")[0].startswith(("test_", "conftest"))
    }
    assert not found, sorted(found)


# A relative import in a generated test module: ``from .module import names``.
GENERATED_IMPORT = re.compile(r"^from \.(?P<module>\w*) import (?P<names>.+)$", re.MULTILINE)


def test_generated_test_modules_import_only_the_support_module() -> None:
    """Generated test modules take helpers from tests/support.py, fixtures from conftest
    and its plugin modules in tests/fixtures/."""
    found = {
        f"{path.name}: {match[0]}"
        for path in sorted((REPO_ROOT / "template" / "tests").rglob("*"))
        if path.is_file() and path.name != "support.py.jinja"
        for match in GENERATED_IMPORT.finditer(path.read_text(encoding="utf-8"))
        if (match["module"], match["names"]) not in {("support", match["names"]), ("", "support")}
    }
    assert not found, sorted(found)
