"""The generated schema compatibility check (tests/test_schema_compatibility.py of a
render) passes an expand-style migration and fails a contract-breaking one.

One default render, with its uv.lock, becomes a git repository; its own check then runs
alone (nothing else of its suite) at each step: before any release tag (it skips), with
an uncommitted new nullable column over release v1.0.0 and again once that change is
release v1.1.0 (it passes, against v1.0.0 both times), and with an uncommitted rename of
the column the old code writes (it fails, naming the release, also when
APP_TEST_PREVIOUS_RELEASE names an older one). Slow like the update tier, and marked so.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from helpers import (
    command_report,
    commit_all,
    git,
    project_tools_env,
    pytest_outcomes,
    read_answers,
    render,
    run,
)
from matrix import BASE_ANSWERS

pytestmark = [pytest.mark.update, pytest.mark.usefixtures("git_identity")]

CHECK = "tests/test_schema_compatibility.py"

ADD_NOTES = '''"""Add items.notes: expand only, the previous release never sees it.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("items", sa.Column("notes", sa.String(length=500), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.drop_column("notes")
'''

RENAME_NAME = '''"""Rename items.name to items.title in one release: the previous release writes it.

Revision ID: 0003
Revises: 0002
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.alter_column("name", new_column_name="title")


def downgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.alter_column("title", new_column_name="name")
'''


def check(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The render's schema compatibility check, alone, its output shown for passes too."""
    command = [env["UV"], "run", "--locked", "pytest", "-p", "no:randomly", "-rsP", CHECK]
    return run(command, project, env=env, timeout=600)


def outcome(result: subprocess.CompletedProcess[str]) -> str:
    outcomes = pytest_outcomes(result.stdout)
    assert len(outcomes) == 1 and sum(outcomes.values()) == 1, command_report(result)
    return next(iter(outcomes))


def test_generated_check_passes_expand_and_fails_contract(
    template_src: Path, tmp_path: Path
) -> None:
    project = render(template_src, tmp_path / "svc", BASE_ANSWERS, skip_tasks=False)
    package = project / "src" / read_answers(project)["package_name"]
    env = project_tools_env(BASE_ANSWERS, {})
    git(project, "init", "-q", "-b", "main")
    commit_all(project, "Generate")

    first = check(project, env)
    assert outcome(first) == "skipped", command_report(first)
    assert "no release tag" in first.stdout, command_report(first)

    # Release v1.0.0, then an expand change on top of it, not committed yet.
    git(project, "tag", "v1.0.0")
    models = package / "items" / "models.py"
    text = models.read_text(encoding="utf-8")
    field = "    created_by: Mapped[str] = mapped_column(String(255))\n"
    assert field in text
    models.write_text(
        text.replace(field, field + "    notes: Mapped[str | None] = mapped_column(String(500))\n"),
        encoding="utf-8",
    )
    versions = package / "migrations" / "versions"
    (versions / "0002_add_item_notes.py").write_text(ADD_NOTES, encoding="utf-8")
    expand = check(project, env)
    assert outcome(expand) == "passed", command_report(expand)
    assert "previous release: v1.0.0" in expand.stdout, command_report(expand)

    # The change released as v1.1.0: HEAD is that tag, so the check takes the one before.
    commit_all(project, "Item notes")
    git(project, "tag", "v1.1.0")
    released = check(project, env)
    assert outcome(released) == "passed", command_report(released)
    assert "previous release: v1.0.0" in released.stdout, command_report(released)

    # A rename in one release: release v1.1.0's code writes `name`, which is gone.
    (versions / "0003_rename_item_name.py").write_text(RENAME_NAME, encoding="utf-8")
    contract = check(project, env)
    assert outcome(contract) == "failed", command_report(contract)
    assert "the code of release v1.1.0 fails against this tree's schema" in contract.stdout
    assert "POST /api/v1/items answered 500, not 201" in contract.stdout, command_report(contract)

    named = check(project, {**env, "APP_TEST_PREVIOUS_RELEASE": "v1.0.0"})
    assert outcome(named) == "failed", command_report(named)
    assert "the code of release v1.0.0 fails" in named.stdout, command_report(named)
