"""Update migrations in hooks/migrations/: unit tests of each rewrite, and a real
``copier update`` from a template commit that predates it."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path
from types import ModuleType

import copier
import pytest
from helpers import (
    commit_all,
    find_uv,
    git,
    project_env,
    read_answers,
    render,
    require,
    snapshot_working_tree,
)
from matrix import BASE_ANSWERS, REPO_ROOT


def load(name: str) -> ModuleType:
    path = REPO_ROOT / "hooks" / "migrations" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


flags_branch = load("v0_1_0_flags_branch")

USER_REVISION = '''"""add orders

Revision ID: 3f1c2a9b7d10
Revises: 0002
Create Date: 2026-12-01 10:00:00
"""

revision: str = "3f1c2a9b7d10"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE orders SET code = '0002' WHERE code = 'x'")
'''


def test_a_revision_after_0002_is_rebased_on_0001() -> None:
    rebased = flags_branch.rebase(USER_REVISION)
    assert 'down_revision: str | None = "0001"' in rebased
    assert "Revises: 0001\n" in rebased
    # Only the parents change: a "0002" elsewhere in the file is the user's business.
    assert "SET code = '0002'" in rebased
    assert flags_branch.rebase(rebased) == rebased


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("down_revision = '0002'", "down_revision = '0001'"),
        ('down_revision = ("0002", "ab12")', 'down_revision = ("0001", "ab12")'),
        ('down_revision = "00020"', 'down_revision = "00020"'),
        ('down_revision = "ab12"', 'down_revision = "ab12"'),
    ],
)
def test_only_the_literal_0002_among_the_parents_changes(line: str, expected: str) -> None:
    assert flags_branch.rebase(line + "\n") == expected + "\n"


# The last template commit with the flag tables as revision 0002 on the main line.
BEFORE_THE_BRANCH = "7819663"


def run_in(project: Path, *command: str) -> None:
    uv = find_uv()
    require(uv is not None, "uv is not installed")
    assert uv is not None
    result = subprocess.run(
        [uv, "run", *command],
        cwd=project,
        env=project_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"


def template_at(commit: str, dst: Path) -> Path:
    """The template as it was at ``commit``, as a git repository of its own."""
    known = subprocess.run(
        ["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=REPO_ROOT, check=False
    )
    require(known.returncode == 0, f"commit {commit} is not in this clone")
    dst.mkdir()
    archive = subprocess.run(
        ["git", "archive", commit], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dst)], input=archive, check=True)
    git(dst, "init", "-q", "-b", "main")
    commit_all(dst, f"template at {commit}")
    return dst


@pytest.mark.update
@pytest.mark.usefixtures("git_identity")
def test_update_from_before_the_flags_branch_keeps_user_revisions(tmp_path: Path) -> None:
    """A service generated before 0.1.0, with its own revision on top of 0002, updates to
    0.1.0: the migration rebases that revision, the stamp the migration prints records the
    move, and the database migrates and matches the models."""
    template = template_at(BEFORE_THE_BRANCH, tmp_path / "template")
    project = render(template, tmp_path / "svc", BASE_ANSWERS, vcs_ref="HEAD")
    git(project, "init", "-q", "-b", "main")
    commit_all(project, "Generate from template")
    slug = read_answers(project)["project_slug"]
    run_in(project, slug, "migrate")
    run_in(project, "alembic", "revision", "-m", "mark orders")
    run_in(project, slug, "migrate")
    commit_all(project, "Our revision after 0002")

    # The template as it is now, released as 0.1.0.
    shutil.rmtree(template / "template")
    snapshot_working_tree(template)
    commit_all(template, "0.1.0")
    git(template, "tag", "0.1.0")
    copier.run_update(
        str(project), vcs_ref="0.1.0", defaults=True, overwrite=True, unsafe=True, quiet=True
    )

    (ours,) = (project / "src").glob("*/migrations/versions/*_mark_orders.py")
    assert 'down_revision: str | None = "0001"' in ours.read_text(encoding="utf-8")
    assert not list((project / "src").glob("*/migrations/versions/0002_*.py"))
    commit_all(project, "Update to 0.1.0")
    run_in(project, "alembic", "stamp", "--purge", "heads")
    run_in(project, slug, "migrate")
    run_in(project, "alembic", "check")
