"""``scripts/release.py``: a release is a tag above every earlier one, cut from a clean
tree whose changelog says how to upgrade across it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import commit_all, git
from matrix import REPO_ROOT

pytestmark = pytest.mark.usefixtures("git_identity")

NOTES = """# Changelog

## {version} - 2027-01-04

### Added
- Something.

### Upgrading
{upgrading}
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A template-like repository holding the release script and a changelog."""
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "release.py").write_bytes(
        (REPO_ROOT / "scripts" / "release.py").read_bytes()
    )
    git(tmp_path, "init", "-q", "-b", "main")
    return tmp_path


def write_changelog(repo: Path, version: str, upgrading: str = "Nothing to do.") -> None:
    text = NOTES.format(version=version, upgrading=upgrading)
    (repo / "CHANGELOG.md").write_text(text, encoding="utf-8")
    commit_all(repo, f"Changelog for {version}")


def cut(repo: Path, version: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "scripts/release.py", version],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )


def tags(repo: Path) -> list[str]:
    return git(repo, "tag", "--list").split()


def test_a_release_is_an_annotated_tag(repo: Path) -> None:
    write_changelog(repo, "0.1.0")
    result = cut(repo, "0.1.0")
    assert result.returncode == 0, result.stderr
    assert "git push origin 0.1.0" in result.stdout
    assert tags(repo) == ["0.1.0"]
    assert git(repo, "cat-file", "-t", "0.1.0").strip() == "tag"


@pytest.mark.parametrize(
    ("version", "message"),
    [
        ("next", "'next' is not a PEP 440 version"),
        ("0.01.0", "normal form: 0.1.0"),
        ("0.0.9", "0.0.9 is not above the latest release, 0.1.0"),
        ("0.1.0", "0.1.0 is not above the latest release, 0.1.0"),
        ("0.2.0", "CHANGELOG.md has no '## 0.2.0' section"),
    ],
)
def test_refused_versions_say_why(repo: Path, version: str, message: str) -> None:
    write_changelog(repo, "0.1.0")
    assert cut(repo, "0.1.0").returncode == 0
    result = cut(repo, version)
    assert result.returncode == 2
    assert message in result.stderr
    assert tags(repo) == ["0.1.0"]


def test_a_release_needs_an_upgrading_note(repo: Path) -> None:
    write_changelog(repo, "0.2.0", upgrading="")
    result = cut(repo, "0.2.0")
    assert result.returncode == 2
    assert "needs an '### Upgrading' note" in result.stderr
    assert tags(repo) == []


def test_a_release_needs_a_clean_tree(repo: Path) -> None:
    write_changelog(repo, "0.2.0")
    (repo / "stray.txt").write_text("not committed\n", encoding="utf-8")
    result = cut(repo, "0.2.0")
    assert result.returncode == 2
    assert "uncommitted changes" in result.stderr
    assert tags(repo) == []


def test_the_changelog_names_the_release_tool() -> None:
    assert "scripts/release.py" in (REPO_ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
