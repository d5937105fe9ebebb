"""The generated service's own updater: ``scripts/template_update.py`` (``make
template-check``, ``make template-update`` and the scheduled workflow that opens a pull
request), run against a template repository with release tags and a bare git remote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import commit_all, git, render, snapshot_working_tree
from matrix import BASE_ANSWERS

pytestmark = [pytest.mark.update, pytest.mark.usefixtures("git_identity")]

UP_TO_DATE, UPDATE_AVAILABLE = 0, 10


def updater(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COPIER": f"{sys.executable} -m copier"}
    env.pop("GITHUB_OUTPUT", None)
    return subprocess.run(
        [sys.executable, "scripts/template_update.py", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def release(template: Path, tag: str) -> None:
    commit_all(template, f"template {tag}")
    git(template, "tag", tag)


def test_update_lands_on_a_pushed_branch_with_its_conflicts_listed(tmp_path: Path) -> None:
    template = snapshot_working_tree(tmp_path / "template")
    git(template, "init", "-q", "-b", "main")
    release(template, "0.1.0")
    project = render(template, tmp_path / "svc", BASE_ANSWERS, vcs_ref="0.1.0")
    git(project, "init", "-q", "-b", "main")
    commit_all(project, "Generate from template")
    remote = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", str(remote))
    git(project, "remote", "add", "origin", str(remote))
    git(project, "push", "-q", "origin", "main")

    checked = updater(project, "check")
    assert checked.returncode == UP_TO_DATE, checked.stdout + checked.stderr
    assert "latest release: 0.1.0" in checked.stdout

    # The service's team retitles its README; the template's next release changes the same
    # line (a conflict) and adds a page (a clean change). A pre-release is not offered.
    readme = project / "README.md"
    lines = readme.read_text(encoding="utf-8").splitlines(keepends=True)
    readme.write_text("# Orders (owned by the orders team)\n" + "".join(lines[1:]), "utf-8")
    commit_all(project, "Our title")
    template_readme = template / "template" / "README.md.jinja"
    text = template_readme.read_text(encoding="utf-8")
    template_readme.write_text("# {{ project_name }}, a service\n" + text.split("\n", 1)[1])
    (template / "template" / "docs" / "upgrading.md").write_text("# Upgrading\n", "utf-8")
    release(template, "0.2.0")
    (template / "template" / "docs" / "next.md").write_text("# Next\n", "utf-8")
    release(template, "0.3.0rc1")

    checked = updater(project, "check")
    assert checked.returncode == UPDATE_AVAILABLE, checked.stdout + checked.stderr
    assert "on: 0.1.0; latest release: 0.2.0" in checked.stdout

    before = git(project, "rev-parse", "HEAD")
    body = tmp_path / "pr-body.md"
    for _ in range(2):  # a second run refreshes the same branch
        updated = updater(project, "update", "--push", "origin", "--body", str(body))
        assert updated.returncode == 0, updated.stdout + updated.stderr
        assert "template-update/0.2.0: 0.1.0 -> 0.2.0, 1 conflict(s)" in updated.stdout

    # The service's own branch is as it was; the update is on the pushed branch only.
    assert git(project, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert git(project, "rev-parse", "HEAD") == before
    assert not git(project, "status", "--porcelain")
    branch = "template-update/0.2.0"
    assert git(remote, "branch", "--list", branch).strip() == branch
    answers = yaml.safe_load(git(remote, "show", f"{branch}:.copier-answers.yml"))
    assert answers["_commit"] == "0.2.0"
    assert git(remote, "show", f"{branch}:docs/upgrading.md") == "# Upgrading\n"
    merged_readme = git(remote, "show", f"{branch}:README.md")
    assert "<<<<<<<" in merged_readme
    assert "owned by the orders team" in merged_readme
    assert "- [ ] `README.md`" in body.read_text(encoding="utf-8")
    assert "from template release 0.1.0 to 0.2.0" in body.read_text(encoding="utf-8")

    # Once merged, the service is up to date again.
    git(project, "merge", "-q", "--ff-only", branch)
    checked = updater(project, "check")
    assert checked.returncode == UP_TO_DATE, checked.stdout + checked.stderr
    updated = updater(project, "update")
    assert updated.returncode == 0
    assert "Up to date" in updated.stdout


def test_update_refuses_a_dirty_tree(tmp_path: Path) -> None:
    template = snapshot_working_tree(tmp_path / "template")
    git(template, "init", "-q", "-b", "main")
    release(template, "0.1.0")
    project = render(template, tmp_path / "svc", BASE_ANSWERS, vcs_ref="0.1.0")
    git(project, "init", "-q", "-b", "main")
    commit_all(project, "Generate from template")
    (project / "notes.txt").write_text("work in progress\n", encoding="utf-8")

    updated = updater(project, "update")

    assert updated.returncode == 2
    assert "uncommitted changes" in updated.stderr
    assert git(project, "branch", "--list", "template-update/*") == ""
