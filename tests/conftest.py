"""Session fixtures: a snapshot of the template working tree, cached renders."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    MYPY_CACHE_VARIABLE,
    RenderCache,
    Renderer,
    render,
    run_scratch_dir,
    snapshot_working_tree,
)


@pytest.fixture(scope="session")
def template_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template working tree as it is now, without .git (one per xdist worker)."""
    return snapshot_working_tree(tmp_path_factory.mktemp("template-src"))


@pytest.fixture(scope="session")
def render_template(template_src: Path) -> Renderer:
    """``render_template(answers, dst)``: copier.run_copy of the snapshot, no prompts."""

    def _render(answers: Mapping[str, Any], dst: Path) -> Path:
        return render(template_src, dst, answers)

    return _render


@pytest.fixture(scope="session")
def renders(template_src: Path, tmp_path_factory: pytest.TempPathFactory) -> RenderCache:
    """Renders shared by every xdist worker of this run."""
    return RenderCache(template_src, run_scratch_dir(tmp_path_factory) / "renders")


@pytest.fixture(scope="session")
def mypy_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mypy cache per xdist worker, reused across renders in that worker."""
    return tmp_path_factory.mktemp("mypy-cache")


@pytest.fixture(scope="session", autouse=True)
def _renders_mypy_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The mypy cache the renders' own `make lint` shares in this worker
    (helpers.shared_mypy_cache)."""
    previous = os.environ.get(MYPY_CACHE_VARIABLE)
    os.environ[MYPY_CACHE_VARIABLE] = str(tmp_path_factory.mktemp("renders-mypy-cache"))
    yield
    if previous is None:
        del os.environ[MYPY_CACHE_VARIABLE]
    else:
        os.environ[MYPY_CACHE_VARIABLE] = previous


@pytest.fixture(scope="session")
def git_identity() -> Iterator[None]:
    """Commit identity for tests that drive git (and copier's own git calls)."""
    keys = {
        "GIT_AUTHOR_NAME": "Template Tests",
        "GIT_AUTHOR_EMAIL": "template-tests@example.com",
        "GIT_COMMITTER_NAME": "Template Tests",
        "GIT_COMMITTER_EMAIL": "template-tests@example.com",
    }
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# The longest tests first, so that the two workers end together instead of one running a
# profile's suite alone at the end: measured on this suite's 2-core machine, the
# profiles' generated suites take 3 to 11 minutes each, the end-to-end stack 2.5, an
# update scenario half a minute to 1.5, anything else seconds.
_PROFILE_SUITES_BY_COST = (
    "postgresql-redis",
    "sqlite",
    "tenancy-schema",
    "flagd",
    "launchdarkly",
    "bare",
)


def _cost_rank(item: pytest.Item) -> int:
    name = item.nodeid
    for rank, profile in enumerate(_PROFILE_SUITES_BY_COST):
        if name == f"tests/test_profiles.py::test_make_test[{profile}]":
            return rank
    if name.startswith("tests/test_observability_e2e.py::"):
        return len(_PROFILE_SUITES_BY_COST)
    if item.get_closest_marker("update") or item.get_closest_marker("profile"):
        return len(_PROFILE_SUITES_BY_COST) + 1
    return len(_PROFILE_SUITES_BY_COST) + 2


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_cost_rank)  # stable: the order within each rank stays
