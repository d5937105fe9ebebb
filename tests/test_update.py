"""Update tier: `copier update` of a generated project across template versions.

The template working tree is snapshotted into a throwaway git repository and
tagged, so these tests exercise the files as they are on disk, committed or not.

Every updated project is then checked as its developers would: `make lint`, `make test`
(with CI=true, no test may skip) and `make migrate` on a fresh database. Projects start
with metrics, tracing and feature flags off unless the scenario is about them, so the
generated suites stay small.
"""

from __future__ import annotations

import ast
import io
import shutil
import sqlite3
import subprocess
import tarfile
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import copier
import pytest
from helpers import (
    TEST_REDIS_URL,
    assert_suite_passed,
    command_report,
    compose_model,
    find_uv,
    project_env,
    project_tools_env,
    read_answers,
    render,
    require,
    require_services,
    run,
    shared_mypy_cache,
    snapshot_working_tree,
)
from matrix import BASE_ANSWERS, REPO_ROOT
from packaging.version import InvalidVersion, Version

pytestmark = [pytest.mark.update, pytest.mark.usefixtures("git_identity")]

CONFLICT_MARKERS = ("<<<<<<<", ">>>>>>>")
NOT_PROJECT = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__"}
# Off unless a scenario is about them: the smaller render keeps `make test` short.
LEAN = {
    "metrics": False,
    "tracing": False,
    "feature_flags": False,
    "circuit_breakers": False,
    "caching": False,
    "request_protection": False,
}


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"git {' '.join(args)} failed in {cwd}:\n{result.stderr}"
    return result.stdout


def commit_all(cwd: Path, message: str) -> None:
    git(cwd, "add", "-A")
    git(cwd, "commit", "-q", "--no-verify", "--allow-empty", "-m", message)


@pytest.fixture
def template_repo(tmp_path: Path) -> Path:
    """The template working tree as a git repository tagged 0.1.0."""
    repo = snapshot_working_tree(tmp_path / "template-repo")
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "template 0.1.0")
    git(repo, "tag", "0.1.0")
    return repo


def generate(template_repo: Path, dst: Path, **answers: object) -> Path:
    return generate_from(template_repo, "0.1.0", dst, answers)


def generate_from(template_repo: Path, ref: str, dst: Path, answers: Mapping[str, Any]) -> Path:
    # With its tasks, as a user generates it: the copy writes uv.lock.
    render(template_repo, dst, {**BASE_ANSWERS, **LEAN, **answers}, vcs_ref=ref, skip_tasks=False)
    git(dst, "init", "-q", "-b", "main")
    commit_all(dst, "Generate from template")
    return dst


def left_behind(path: Path) -> bool:
    """Whether anything of ``path`` is still there but bytecode caches: Python writes
    them wherever the service ran, git ignores them, and copier leaves them (with the
    directories they are in) when a slice's files go."""
    if path.is_dir():
        return any(
            "__pycache__" not in entry.relative_to(path).parts
            for entry in path.rglob("*")
            if not entry.is_dir()
        )
    return path.exists()


def project_problems(project: Path) -> list[str]:
    """Conflict markers and .rej files anywhere in the project."""
    problems: list[str] = []
    for path in sorted(project.rglob("*")):
        rel = path.relative_to(project)
        if NOT_PROJECT & set(rel.parts) or not path.is_file():
            continue
        if path.suffix == ".rej" or path.name.endswith(".orig"):
            problems.append(f"{rel}: leftover from a failed merge")
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.startswith(CONFLICT_MARKERS):
                problems.append(f"{rel}:{lineno}: conflict marker {line[:7]!r}")
    return problems


# The generated tests of what every update touches around a switched slice: the items
# (whose service the user edited), the wiring of slices, settings, probes, migrations.
CORE_TESTS = (
    "test_items.py",
    "test_slices.py",
    "test_settings.py",
    "test_health.py",
    "test_migrations.py",
)


def check_as_developers_would(
    project: Path,
    tmp_path: Path,
    services: Mapping[str, str] | None = None,
    slice_tests: Sequence[str] = (),
) -> set[str]:
    """`uv lock` (which the update message asks for when dependencies changed), `make lint`,
    the tests, then `make migrate` on a new SQLite file: its tables.

    With ``slice_tests`` (file name patterns), the switched slice's generated tests and
    the core ones (CORE_TESTS) run, not the whole suite: the rest is the code a fresh
    render has, which the profiles' suites run."""
    env = project_tools_env(read_answers(project), services or {})
    require_services(env)
    lock = run([env["UV"], "lock"], project, env=env)
    assert lock.returncode == 0, command_report(lock)
    lint = run(["make", "lint"], project, env=shared_mypy_cache(env, project))
    assert lint.returncode == 0, command_report(lint)
    if slice_tests:
        files = sorted(
            {
                str(path.relative_to(project))
                for pattern in (*CORE_TESTS, *slice_tests)
                for path in (project / "tests").glob(pattern)
            }
        )
        missing = [p for p in slice_tests if not list((project / "tests").glob(p))]
        assert not missing, f"no generated tests match {missing}"
        tests = run([env["UV"], "run", "--locked", "pytest", *files], project, env=env)
        assert_suite_passed(tests, f"the updated project's tests ({', '.join(files)})")
    else:
        assert_suite_passed(run(["make", "test"], project, env=env), "the updated project's suite")
    database = tmp_path / "fresh.db"
    assert not database.exists()
    fresh = {**env, "APP_DATABASE__URL": f"sqlite+aiosqlite:///{database}"}
    migrate = run(["make", "migrate"], project, env=fresh)
    assert migrate.returncode == 0, command_report(migrate)
    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}


def compose_services(project: Path) -> dict[str, Any]:
    services = compose_model(project).get("services")
    assert isinstance(services, dict), "compose.yaml has no services mapping"
    return services


def module_ast(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def assigned_value(module: ast.Module, name: str) -> object:
    """The literal a module-level (annotated) assignment gives ``name``."""
    for node in module.body:
        targets = (
            [node.target]
            if isinstance(node, ast.AnnAssign)
            else node.targets
            if isinstance(node, ast.Assign)
            else []
        )
        named = any(isinstance(target, ast.Name) and target.id == name for target in targets)
        if named and isinstance(node, ast.AnnAssign | ast.Assign) and node.value is not None:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not assigned at module level")


def relative_imports(module: ast.Module) -> set[str]:
    return {
        node.module
        for node in ast.walk(module)
        if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
    }


USER_FUNCTION = '''

def user_added_helper() -> str:
    """Added by the service's developers after generation."""
    return "kept across updates"
'''


def edit_user_code(project: Path) -> tuple[Path, Path]:
    pkg = read_answers(project)["package_name"]
    service = project / "src" / pkg / "items" / "service.py"
    assert service.is_file(), f"{service.relative_to(project)} is part of the contract"
    service.write_text(service.read_text(encoding="utf-8") + USER_FUNCTION, encoding="utf-8")
    readme = project / "README.md"
    lines = readme.read_text(encoding="utf-8").splitlines(keepends=True)
    assert lines, "README.md is empty"
    lines[0] = lines[0].rstrip("\n") + " (maintained by the orders team)\n"
    readme.write_text("".join(lines), encoding="utf-8")
    commit_all(project, "User edits")
    return service, readme


def test_update_to_new_template_version_keeps_user_edits(
    template_repo: Path, tmp_path: Path
) -> None:
    project = generate(template_repo, tmp_path / "svc")
    assert read_answers(project)["_commit"] == "0.1.0"
    service, readme = edit_user_code(project)
    readme_first_line = readme.read_text(encoding="utf-8").splitlines()[0]

    # Template 0.2.0: a line appended to the README template, and a new file.
    readme_template = template_repo / "template" / "README.md.jinja"
    assert readme_template.is_file()
    with readme_template.open("a", encoding="utf-8") as fh:
        fh.write("\nTemplate 0.2.0 added this line.\n")
    new_doc = template_repo / "template" / "docs" / "upgrading.md"
    new_doc.parent.mkdir(parents=True, exist_ok=True)
    new_doc.write_text("# Upgrading\n\nAdded in template 0.2.0.\n", encoding="utf-8")
    commit_all(template_repo, "template 0.2.0")
    git(template_repo, "tag", "0.2.0")

    copier.run_update(
        str(project), vcs_ref="0.2.0", defaults=True, overwrite=True, unsafe=True, quiet=True
    )

    assert USER_FUNCTION.strip() in service.read_text(encoding="utf-8"), "user code lost"
    readme_text = readme.read_text(encoding="utf-8")
    assert readme_text.splitlines()[0] == readme_first_line, "user README edit lost"
    assert "Template 0.2.0 added this line." in readme_text, "template README change missing"
    assert (
        (project / "docs" / "upgrading.md")
        .read_text(encoding="utf-8")
        .endswith("Added in template 0.2.0.\n")
    )
    assert not project_problems(project), "\n".join(project_problems(project))
    assert read_answers(project)["_commit"] == "0.2.0"
    assert {"alembic_version", "items"} <= check_as_developers_would(project, tmp_path)


def switch_on(project: Path, data: dict[str, Any]) -> None:
    """``copier update --data ...``: the other answers stay as they are."""
    copier.run_update(
        str(project), data=data, defaults=True, overwrite=True, unsafe=True, quiet=True
    )


def test_update_switching_redis_on(template_repo: Path, tmp_path: Path) -> None:
    project = generate(template_repo, tmp_path / "svc", redis=False)
    pkg = read_answers(project)["package_name"]
    redis_module = project / "src" / pkg / "core" / "redis.py"
    assert not left_behind(redis_module)
    service, _ = edit_user_code(project)

    switch_on(project, {"redis": True})

    assert redis_module.is_file(), "redis module missing after switching redis on"
    assert read_answers(project)["redis"] is True
    assert USER_FUNCTION.strip() in service.read_text(encoding="utf-8"), "user code lost"
    assert not project_problems(project), "\n".join(project_problems(project))
    services = compose_services(project)
    assert "redis" in services, "compose.yaml did not gain the redis service"
    assert services["app"]["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert "APP_REDIS__URL" in services["app"]["environment"]
    check_as_developers_would(
        project, tmp_path, {"APP_REDIS__URL": TEST_REDIS_URL}, ["test_faults.py", "test_cli.py"]
    )


def test_update_switching_observability_on(template_repo: Path, tmp_path: Path) -> None:
    project = generate(template_repo, tmp_path / "svc")
    pkg = read_answers(project)["package_name"]
    package = project / "src" / pkg
    assert not left_behind(package / "metrics")
    assert not left_behind(project / "observability")
    service, _ = edit_user_code(project)

    switch_on(project, {"metrics": True, "tracing": True, "trace_backend": "tempo"})

    answers = read_answers(project)
    assert (answers["metrics"], answers["tracing"], answers["trace_backend"]) == (
        True,
        True,
        "tempo",
    )
    assert (package / "metrics" / "router.py").is_file()
    assert (package / "tracing" / "setup.py").is_file()
    # Both slices are enabled (their exemplar hook meets in core/slices.py).
    imported = {
        alias.name
        for node in ast.walk(module_ast(package / "main.py"))
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert {"metrics_slice", "tracing_slice"} <= imported, sorted(imported)
    assert {"prometheus", "tempo"} <= set(compose_services(project))
    assert "jaeger" not in compose_services(project)
    assert (project / "observability" / "tempo").is_dir()
    assert USER_FUNCTION.strip() in service.read_text(encoding="utf-8"), "user code lost"
    assert not project_problems(project), "\n".join(project_problems(project))
    observability_tests = ["test_metrics.py", "test_tracing.py", "test_otlp_export.py"]
    check_as_developers_would(project, tmp_path, slice_tests=observability_tests)


def test_update_switching_feature_flags_on(template_repo: Path, tmp_path: Path) -> None:
    project = generate(template_repo, tmp_path / "svc")
    pkg = read_answers(project)["package_name"]
    package = project / "src" / pkg
    migration = package / "migrations" / "versions" / "flags" / "flags_0001_create_feature_flags.py"
    assert not left_behind(package / "flags")
    assert not left_behind(migration)
    service, _ = edit_user_code(project)

    switch_on(project, {"feature_flags": True})

    answers = read_answers(project)
    assert (answers["feature_flags"], answers["flag_provider"]) == (True, "builtin")
    assert (package / "flags" / "builtin" / "provider.py").is_file()
    # The flag tables arrive as a branch of their own, beside the revisions already applied.
    assert assigned_value(module_ast(migration), "down_revision") is None
    assert assigned_value(module_ast(migration), "branch_labels") == ("flags",)
    assert "flags.builtin.models" in relative_imports(module_ast(package / "models.py"))
    assert USER_FUNCTION.strip() in service.read_text(encoding="utf-8"), "user code lost"
    assert not project_problems(project), "\n".join(project_problems(project))
    tables = check_as_developers_would(
        project, tmp_path, slice_tests=["test_flag_*.py", "test_ofrep.py"]
    )
    assert {"items", "feature_flags", "feature_flag_changes"} <= tables


def test_update_switching_circuit_breakers_on(template_repo: Path, tmp_path: Path) -> None:
    """With Redis, so the breaker state is shared: the whole slice arrives and works."""
    project = generate(template_repo, tmp_path / "svc", redis=True)
    package = project / "src" / read_answers(project)["package_name"]
    assert not left_behind(package / "outbound")
    assert "enrichment" not in (package / "items" / "wiring.py").read_text(encoding="utf-8")
    service, _ = edit_user_code(project)

    switch_on(project, {"circuit_breakers": True})

    assert read_answers(project)["circuit_breakers"] is True
    assert (package / "outbound" / "breaker.py").is_file()
    assert (package / "outbound" / "shared_state.py").is_file()
    assert (package / "items" / "enrichment.py").is_file()
    assert "outbound_slice" in (package / "main.py").read_text(encoding="utf-8")
    wiring = module_ast(package / "items" / "wiring.py")
    assert "enrichment" in relative_imports(wiring)
    assert USER_FUNCTION.strip() in service.read_text(encoding="utf-8"), "user code lost"
    assert not project_problems(project), "\n".join(project_problems(project))
    outbound_tests = ["test_enrichment.py", "test_outbound_*.py"]
    check_as_developers_would(project, tmp_path, {"APP_REDIS__URL": TEST_REDIS_URL}, outbound_tests)


def test_update_switching_caching_on(template_repo: Path, tmp_path: Path) -> None:
    """With Redis, so the cache is two-level: the slice arrives, the items read through
    it, and the user's code in the items service stays."""
    project = generate(template_repo, tmp_path / "svc", redis=True)
    package = project / "src" / read_answers(project)["package_name"]
    assert not left_behind(package / "caching")
    service, _ = edit_user_code(project)

    switch_on(project, {"caching": True})

    assert read_answers(project)["caching"] is True
    assert (package / "caching" / "cache.py").is_file()
    assert (package / "caching" / "shared.py").is_file()
    assert (package / "items" / "cached.py").is_file()
    assert (project / "tests" / "test_caching_shared.py").is_file()
    assert "caching_slice" in (package / "main.py").read_text(encoding="utf-8")
    assert "cached" in relative_imports(module_ast(package / "items" / "dependencies.py"))
    assert USER_FUNCTION.strip() in service.read_text(encoding="utf-8"), "user code lost"
    assert not project_problems(project), "\n".join(project_problems(project))
    check_as_developers_would(
        project, tmp_path, {"APP_REDIS__URL": TEST_REDIS_URL}, ["test_caching*.py"]
    )


USER_MODEL = """

class ItemNote(Base):
    \"\"\"A note on an item: added by the service's developers after generation.\"\"\"

    __tablename__ = "item_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    text: Mapped[str] = mapped_column(String(500))
"""


def run_in(
    project: Path, *command: str, expect: int = 0, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    uv = find_uv()
    require(uv is not None, "uv is not installed")
    assert uv is not None
    result = subprocess.run(
        [uv, "run", *command],
        cwd=project,
        env=dict(env) if env is not None else project_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == expect, (
        f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result


def make_lint(project: Path) -> None:
    """`make lint`, mypy's cache shared with the worker's other renders."""
    run_in(project, "make", "lint", env=shared_mypy_cache(project_env(), project))


def database_tables(project: Path) -> set[str]:
    """The tables of the render's default SQLite database."""
    pkg = read_answers(project)["package_name"]
    probe = (
        "import sys, sqlalchemy as sa; "
        "print(' '.join(sa.inspect(sa.create_engine(sys.argv[1])).get_table_names()))"
    )
    listed = run_in(project, "python", "-c", probe, f"sqlite:///{pkg}.db").stdout
    return set(listed.split())


def add_user_model_and_revision(project: Path) -> Path:
    """The team's own model and the revision the README has them autogenerate for it
    (against a database migrated to the template's heads); returns the models module."""
    answers = read_answers(project)
    models: Path = project / "src" / answers["package_name"] / "items" / "models.py"
    text = models.read_text(encoding="utf-8")
    models.write_text(
        text.replace("CheckConstraint, String", "CheckConstraint, ForeignKey, String", 1)
        + USER_MODEL,
        encoding="utf-8",
    )
    run_in(project, answers["project_slug"], "migrate")
    run_in(project, "alembic", "revision", "--autogenerate", "-m", "add item notes")
    run_in(project, "ruff", "format", ".")
    return models


def service_with_user_work(
    template_repo: Path, tmp_path: Path, **answers: object
) -> tuple[Path, Path]:
    """A service generated with ``answers``, its team's own model and revision migrated
    and its service module edited, all committed: the project and the edited module."""
    project = generate(template_repo, tmp_path / "svc", **answers)
    add_user_model_and_revision(project)
    run_in(project, read_answers(project)["project_slug"], "migrate")
    service, _ = edit_user_code(project)
    commit_all(project, "Item notes")
    return project, service


def locked_and_linted(project: Path) -> dict[str, str]:
    """Locks the updated project's dependencies and lints it, as its team would; the
    environment its tools run in."""
    env = project_tools_env(read_answers(project), {})
    lock = run([env["UV"], "lock"], project, env=env)
    assert lock.returncode == 0, command_report(lock)
    lint = run(["make", "lint"], project, env=shared_mypy_cache(env, project))
    assert lint.returncode == 0, command_report(lint)
    return env


def test_feature_branches_and_user_revisions_never_collide(
    template_repo: Path, tmp_path: Path
) -> None:
    """A service with its own model and autogenerated revision switches the built-in flag
    provider on, then off again, migrating its database each time: the feature's revisions
    are a branch of their own, so neither update breaks the user's revision chain."""
    project = generate(template_repo, tmp_path / "svc", feature_flags=False)
    slug = read_answers(project)["project_slug"]
    add_user_model_and_revision(project)
    run_in(project, slug, "migrate")
    commit_all(project, "Item notes")
    assert "item_notes" in database_tables(project)

    switch_on(project, {"feature_flags": True})
    assert not project_problems(project), "\n".join(project_problems(project))
    run_in(project, slug, "migrate")
    assert {"item_notes", "feature_flags"} <= database_tables(project)
    run_in(project, "alembic", "check")
    commit_all(project, "Feature flags on")

    # Off again, the documented way: drop the feature's branch first, then update.
    run_in(project, "alembic", "downgrade", "flags@base")
    switch_on(project, {"feature_flags": False})
    assert not project_problems(project), "\n".join(project_problems(project))
    run_in(project, slug, "migrate")
    tables = database_tables(project)
    assert "item_notes" in tables
    assert "feature_flags" not in tables
    run_in(project, "alembic", "check")
    make_lint(project)


def test_update_switching_experiments_on_and_off(template_repo: Path, tmp_path: Path) -> None:
    """A service with flags, its own model and revision switches experiments on (their
    tables a branch of their own beside the user's revision), then off again the
    documented way: the slice's files go, the user's code and tables stay."""
    project, service = service_with_user_work(template_repo, tmp_path, feature_flags=True)
    slug = read_answers(project)["project_slug"]
    package = project / "src" / read_answers(project)["package_name"]

    switch_on(project, {"experiments": True})

    assert read_answers(project)["experiments"] is True
    assert (package / "experiments" / "provider.py").is_file()
    versions = package / "migrations" / "versions" / "experiments"
    migration = versions / "experiments_0001_create_experiments.py"
    assert assigned_value(module_ast(migration), "branch_labels") == ("experiments",)
    assert "experiments_slice" in (package / "main.py").read_text(encoding="utf-8")
    assert not project_problems(project), "\n".join(project_problems(project))
    run_in(project, slug, "migrate")
    assert {"item_notes", "experiments", "experiment_exposures"} <= database_tables(project)
    run_in(project, "alembic", "check")
    # The slice's own tests and the migrations' (the whole suite runs in the profiles).
    env = locked_and_linted(project)
    suite = ["tests/test_experiments.py", "tests/test_migrations.py"]
    result = run([env["UV"], "run", "pytest", *suite], project, env=env)
    assert_suite_passed(result, "the updated project's experiment and migration tests")
    commit_all(project, "Experiments on")

    run_in(project, "alembic", "downgrade", "experiments@base")
    switch_on(project, {"experiments": False})

    assert not left_behind(package / "experiments")
    assert not left_behind(project / "tests" / "test_experiments.py")
    assert "experiments" not in (package / "main.py").read_text(encoding="utf-8")
    assert USER_FUNCTION.strip() in service.read_text(encoding="utf-8"), "user code lost"
    assert not project_problems(project), "\n".join(project_problems(project))
    run_in(project, slug, "migrate")
    tables = database_tables(project)
    assert "item_notes" in tables
    assert "experiments" not in tables
    run_in(project, "alembic", "check")
    make_lint(project)


def test_update_switching_event_sourcing_on_and_off(template_repo: Path, tmp_path: Path) -> None:
    """A service with its own model and revision switches event sourcing on with a
    broker (the store's tables a branch of their own beside the user's revision, the
    slice's tests passing), then off again the documented way: the slice's files and
    compose service go, the user's code and tables stay."""
    project, service = service_with_user_work(template_repo, tmp_path)
    slug = read_answers(project)["project_slug"]
    package = project / "src" / read_answers(project)["package_name"]

    switch_on(project, {"event_sourcing": True, "message_broker": "rabbitmq"})

    assert read_answers(project)["message_broker"] == "rabbitmq"
    assert (package / "events" / "relay.py").is_file()
    assert (package / "wallets" / "domain.py").is_file()
    migration = package / "migrations" / "versions" / "events" / "events_0001_create_event_store.py"
    assert assigned_value(module_ast(migration), "branch_labels") == ("events",)
    assert "events_slice" in (package / "main.py").read_text(encoding="utf-8")
    assert "broker" in compose_services(project)
    assert not project_problems(project), "\n".join(project_problems(project))
    run_in(project, slug, "migrate")
    assert {"item_notes", "events", "event_outbox", "wallet_summaries"} <= database_tables(project)
    run_in(project, "alembic", "check")
    env = locked_and_linted(project)
    suite = ["tests/test_events.py", "tests/test_migrations.py"]
    result = run([env["UV"], "run", "pytest", *suite], project, env=env)
    assert_suite_passed(result, "the updated project's event store and migration tests")
    commit_all(project, "Event sourcing on")

    run_in(project, "alembic", "downgrade", "events@base")
    switch_on(project, {"event_sourcing": False})

    assert not left_behind(package / "events")
    assert not left_behind(package / "wallets")
    assert not left_behind(project / "tests" / "test_events.py")
    assert "broker" not in compose_services(project)
    assert "events" not in (package / "main.py").read_text(encoding="utf-8")
    assert USER_FUNCTION.strip() in service.read_text(encoding="utf-8"), "user code lost"
    assert not project_problems(project), "\n".join(project_problems(project))
    run_in(project, slug, "migrate")
    tables = database_tables(project)
    assert "item_notes" in tables
    assert "events" not in tables
    run_in(project, "alembic", "check")
    make_lint(project)


def test_update_switching_graphql_on_and_off(template_repo: Path, tmp_path: Path) -> None:
    """A service with its own model and revision switches GraphQL on (the schema file
    matching the code, the slice's tests passing over the user's items), then off again:
    the slice's files go, the user's code stays."""
    project, service = service_with_user_work(template_repo, tmp_path)
    slug = read_answers(project)["project_slug"]
    package = project / "src" / read_answers(project)["package_name"]

    switch_on(project, {"graphql": True})

    assert read_answers(project)["graphql"] is True
    assert (package / "graphql" / "schema.py").is_file()
    assert "graphql_slice" in (package / "main.py").read_text(encoding="utf-8")
    assert USER_FUNCTION.strip() in service.read_text(encoding="utf-8"), "user code lost"
    assert not project_problems(project), "\n".join(project_problems(project))
    env = locked_and_linted(project)
    check = run([env["UV"], "run", slug, "graphql", "check"], project, env=env)
    assert check.returncode == 0, command_report(check)
    result = run([env["UV"], "run", "pytest", "tests/test_graphql.py"], project, env=env)
    assert_suite_passed(result, "the updated project's GraphQL tests")
    commit_all(project, "GraphQL on")

    switch_on(project, {"graphql": False})

    for path in (package / "graphql", project / "schema.graphql", project / "docs/graphql.md"):
        assert not left_behind(path), f"{path.relative_to(project)} left behind"
    assert "graphql" not in (package / "main.py").read_text(encoding="utf-8")
    assert USER_FUNCTION.strip() in service.read_text(encoding="utf-8"), "user code lost"
    assert not project_problems(project), "\n".join(project_problems(project))
    make_lint(project)


def test_update_switching_tenancy_on_and_off(template_repo: Path, tmp_path: Path) -> None:
    """A service with items, its own model and revision switches tenancy on: its items go
    to the first tenant, its revision, model and code stay, the slice's tests pass; then
    off again the documented way, its items kept."""
    project, service = service_with_user_work(template_repo, tmp_path)
    answers = read_answers(project)
    slug = answers["project_slug"]
    package = project / "src" / answers["package_name"]
    models = package / "items" / "models.py"
    database = project / f"{answers['package_name']}.db"
    # Closed, not only committed: an open connection would outlive the migrations that
    # rebuild the tables under it.
    with closing(sqlite3.connect(database)) as connection, connection:
        connection.execute(
            "INSERT INTO items (name, price_cents, quantity, created_by, version, created_at,"
            " updated_at) VALUES ('Widget', 100, 1, 'alice', 1, '2026-01-01 00:00:00',"
            " '2026-01-01 00:00:00')"
        )
        connection.execute("INSERT INTO item_notes (item_id, text) VALUES (1, 'fragile')")

    switch_on(project, {"multi_tenancy": True})

    assert read_answers(project)["multi_tenancy"] is True
    assert (package / "tenancy" / "isolation.py").is_file()
    assert "tenancy_slice" in (package / "main.py").read_text(encoding="utf-8")
    assert "class ItemNote" in models.read_text(encoding="utf-8"), "user model lost"
    assert USER_FUNCTION.strip() in service.read_text(encoding="utf-8"), "user code lost"
    assert not project_problems(project), "\n".join(project_problems(project))
    run_in(project, slug, "migrate")
    with closing(sqlite3.connect(database)) as connection:
        tenants = connection.execute("SELECT id, status FROM tenants").fetchall()
        items = connection.execute("SELECT name, tenant_id FROM items").fetchall()
        notes = connection.execute("SELECT text FROM item_notes").fetchall()
    assert tenants == [("default", "active")]
    assert items == [("Widget", "default")]
    assert notes == [("fragile",)]
    run_in(project, "alembic", "check")
    env = locked_and_linted(project)
    suite = ["tests/test_tenancy.py", "tests/test_items.py", "tests/test_migrations.py"]
    result = run([env["UV"], "run", "pytest", *suite], project, env=env)
    assert_suite_passed(result, "the updated project's tenancy, item and migration tests")
    commit_all(project, "Tenancy on")

    # Off again, the documented way: the slice's revision down first, then the update.
    run_in(project, "alembic", "downgrade", "tenancy@base")
    switch_on(project, {"multi_tenancy": False})

    for path in (
        package / "tenancy",
        package / "migrations" / "versions" / "tenancy",
        project / "tests" / "test_tenancy.py",
        project / "docs" / "tenancy.md",
    ):
        assert not left_behind(path), f"{path.relative_to(project)} left behind"
    assert "tenancy" not in (package / "main.py").read_text(encoding="utf-8")
    assert "class ItemNote" in models.read_text(encoding="utf-8"), "user model lost"
    assert USER_FUNCTION.strip() in service.read_text(encoding="utf-8"), "user code lost"
    assert not project_problems(project), "\n".join(project_problems(project))
    run_in(project, slug, "migrate")
    with closing(sqlite3.connect(database)) as connection:
        items = connection.execute("SELECT name FROM items").fetchall()
        columns = {row[1] for row in connection.execute("PRAGMA table_info(items)")}
    assert items == [("Widget",)]
    assert "tenant_id" not in columns
    assert "tenants" not in database_tables(project)
    run_in(project, "alembic", "check")
    make_lint(project)


def test_update_switching_on_a_database_per_tenant_runs_the_teams_revisions_per_tenant(
    template_repo: Path, tmp_path: Path
) -> None:
    """A service with its own model and revision switches tenancy on with a database per
    tenant: no conflict, the platform migrates, a new tenant's database gets the service
    branch (items and the team's table); then off again the documented way."""
    project, service = service_with_user_work(template_repo, tmp_path)
    answers = read_answers(project)
    slug, package_name = answers["project_slug"], answers["package_name"]
    package = project / "src" / package_name
    models = package / "items" / "models.py"

    switch_on(project, {"multi_tenancy": True, "tenant_isolation": "database"})

    assert (package / "tenancy" / "provisioning.py").is_file()
    assert "class ItemNote" in models.read_text(encoding="utf-8"), "user model lost"
    assert USER_FUNCTION.strip() in service.read_text(encoding="utf-8"), "user code lost"
    assert not project_problems(project), "\n".join(project_problems(project))
    migrated = run_in(project, slug, "migrate")
    assert "Platform database at" in migrated.stderr, migrated.stderr
    run_in(project, slug, "tenants", "create", "acme")
    tenants_database = project / f"{package_name}.tenants" / "acme.db"
    with closing(sqlite3.connect(tenants_database)) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"items", "item_notes", "alembic_version"} <= tables, tables
    assert "tenants" in database_tables(project)
    every = run_in(project, slug, "migrate", "--all-tenants")
    assert "tenant acme: at " in every.stderr, every.stderr
    locked_and_linted(project)
    commit_all(project, "Tenants, a database each")

    # Off again: the registry's revision down first, then the update.
    run_in(project, "alembic", "downgrade", "tenancy@base")
    switch_on(project, {"multi_tenancy": False})
    assert not left_behind(package / "tenancy")
    assert "class ItemNote" in models.read_text(encoding="utf-8"), "user model lost"
    assert not project_problems(project), "\n".join(project_problems(project))
    run_in(project, slug, "migrate")
    assert "tenants" not in database_tables(project)
    make_lint(project)


def test_update_switching_ml_serving_on_and_off(template_repo: Path, tmp_path: Path) -> None:
    """A service with its own model and revision switches model serving on (the
    registry's tables a branch of their own beside the user's revision, the example model
    registered and served, the slice's tests passing), then off again the documented way:
    the slice's files go, the user's code and tables stay."""
    project, service = service_with_user_work(template_repo, tmp_path)
    slug = read_answers(project)["project_slug"]
    package = project / "src" / read_answers(project)["package_name"]

    switch_on(project, {"ml_serving": True})

    assert read_answers(project)["ml_serving"] is True
    assert (package / "ml" / "server.py").is_file()
    migration = package / "migrations" / "versions" / "ml" / "ml_0001_create_model_registry.py"
    assert assigned_value(module_ast(migration), "branch_labels") == ("ml",)
    assert "ml_slice" in (package / "main.py").read_text(encoding="utf-8")
    assert not project_problems(project), "\n".join(project_problems(project))
    run_in(project, slug, "migrate")
    assert {"item_notes", "ml_models", "ml_model_versions"} <= database_tables(project)
    run_in(project, "alembic", "check")
    env = locked_and_linted(project)
    run_in(project, slug, "models", "train-example")
    assert "iris: champion v1" in run_in(project, slug, "models", "list").stdout
    suite = ["tests/test_ml.py", "tests/test_migrations.py"]
    result = run([env["UV"], "run", "pytest", *suite], project, env=env)
    assert_suite_passed(result, "the updated project's model serving and migration tests")
    commit_all(project, "Model serving on")

    run_in(project, "alembic", "downgrade", "ml@base")
    switch_on(project, {"ml_serving": False})

    assert not left_behind(package / "ml")
    assert not left_behind(project / "tests" / "test_ml.py")
    assert "ml_slice" not in (package / "main.py").read_text(encoding="utf-8")
    assert USER_FUNCTION.strip() in service.read_text(encoding="utf-8"), "user code lost"
    assert not project_problems(project), "\n".join(project_problems(project))
    run_in(project, slug, "migrate")
    tables = database_tables(project)
    assert "item_notes" in tables
    assert "ml_models" not in tables
    run_in(project, "alembic", "check")
    make_lint(project)


def test_update_switching_every_optional_slice_off(template_repo: Path, tmp_path: Path) -> None:
    """A service generated with Redis, metrics, tracing, the built-in flags, experiments,
    outbound calls, caching, request protection, GraphQL, tenants, event sourcing
    with NATS, model serving and the Kubernetes manifests, with user code,
    switches them all off (its database never migrated: nothing to downgrade): each
    slice's package, wiring, compose file, settings section and tests go, the user's code
    stays, and the lean service lints, tests and migrates."""
    slices = {
        "redis": True,
        "metrics": True,
        "tracing": True,
        "feature_flags": True,
        "experiments": True,
        "circuit_breakers": True,
        "caching": True,
        "request_protection": True,
        "graphql": True,
        "multi_tenancy": True,
        "event_sourcing": True,
        "ml_serving": True,
        "kubernetes": True,
    }
    project = generate(template_repo, tmp_path / "svc", message_broker="nats", **slices)
    package = project / "src" / read_answers(project)["package_name"]
    owned = {
        "redis": [package / "core" / "redis.py", project / "compose" / "compose.redis.yaml"],
        "metrics": [package / "metrics", project / "compose" / "compose.metrics.yaml"],
        "tracing": [package / "tracing", project / "compose" / "compose.tracing.yaml"],
        "feature_flags": [package / "flags", project / "tests" / "fixtures" / "flags.py"],
        "experiments": [package / "experiments", project / "tests" / "test_experiments.py"],
        "circuit_breakers": [
            package / "outbound",
            package / "items" / "enrichment.py",
            project / "tests" / "fixtures" / "upstream.py",
        ],
        "caching": [
            package / "caching",
            package / "items" / "cached.py",
            project / "tests" / "fixtures" / "caching.py",
        ],
        "request_protection": [package / "protection", project / "tests" / "test_protection.py"],
        "graphql": [
            package / "graphql",
            project / "schema.graphql",
            project / "docs" / "graphql.md",
        ],
        "multi_tenancy": [
            package / "tenancy",
            package / "migrations" / "versions" / "tenancy",
            project / "tests" / "test_tenancy.py",
        ],
        "event_sourcing": [
            package / "events",
            package / "wallets",
            package / "migrations" / "versions" / "events",
            project / "compose" / "compose.broker.yaml",
            project / "tests" / "test_outbox.py",
        ],
        "ml_serving": [
            package / "ml",
            package / "migrations" / "versions" / "ml",
            project / "tests" / "test_ml.py",
        ],
        "kubernetes": [
            project / "deploy",
            project / "docs" / "kubernetes.md",
            project / "scripts" / "kubernetes_assets.py",
        ],
    }
    for paths in owned.values():
        for path in paths:
            assert path.exists(), f"{path.relative_to(project)} missing before the update"
    service, _ = edit_user_code(project)

    switch_on(project, dict.fromkeys(slices, False))

    answers = read_answers(project)
    # Experiments, asked only with feature flags, is no longer recorded at all.
    assert not any(answers.get(name) for name in slices), answers
    left = [str(path.relative_to(project)) for paths in owned.values() for path in paths]
    left = [path for path in left if left_behind(project / path)]
    assert not left, f"files of switched-off slices left behind: {left}"
    assert not left_behind(project / "observability")
    main = (package / "main.py").read_text(encoding="utf-8")
    slice_names = (
        "redis_slice",
        "flags_slice",
        "experiments_slice",
        "metrics_slice",
        "tracing_slice",
        "outbound_slice",
        "caching_slice",
        "protection_slice",
        "graphql_slice",
        "tenancy_slice",
        "events_slice",
        "ml_slice",
    )
    for name in slice_names:
        assert name not in main, f"main.py still lists {name}"
    assert set(compose_services(project)) == {"app", "migrate"}
    assert USER_FUNCTION.strip() in service.read_text(encoding="utf-8"), "user code lost"
    assert not project_problems(project), "\n".join(project_problems(project))
    tables = check_as_developers_would(project, tmp_path)
    assert "items" in tables
    assert "feature_flags" not in tables


def test_update_switching_request_protection_on(template_repo: Path, tmp_path: Path) -> None:
    """With Redis, so the limits are shared: the slice arrives at the edge of the app, its
    settings section and tests with it, and the user's code stays."""
    project = generate(template_repo, tmp_path / "svc", redis=True)
    package = project / "src" / read_answers(project)["package_name"]
    assert not left_behind(package / "protection")
    service, _ = edit_user_code(project)

    switch_on(project, {"request_protection": True})

    assert read_answers(project)["request_protection"] is True
    assert (package / "protection" / "middleware.py").is_file()
    assert (project / "tests" / "test_protection_process.py").is_file()
    assert "protection_slice" in (package / "main.py").read_text(encoding="utf-8")
    assert "ProtectionSettings" in (package / "core" / "settings.py").read_text(encoding="utf-8")
    assert USER_FUNCTION.strip() in service.read_text(encoding="utf-8"), "user code lost"
    assert not project_problems(project), "\n".join(project_problems(project))
    check_as_developers_would(
        project,
        tmp_path,
        {"APP_REDIS__URL": TEST_REDIS_URL},
        ["test_protection*.py", "test_fuzz.py"],
    )


def release_tags() -> list[Version]:
    """The template's releases: this repository's PEP 440 tags, oldest first."""
    listed = subprocess.run(
        ["git", "tag", "--list"], cwd=REPO_ROOT, capture_output=True, text=True, check=False
    ).stdout.split()
    versions = []
    for tag in listed:
        try:
            versions.append(Version(tag))
        except InvalidVersion:
            continue
    return sorted(versions)


RELEASES = release_tags()


def release_and_working_tree(repo: Path, release: Version) -> str:
    """A template repository holding ``release`` as it was tagged, then the working tree
    on top, tagged as the release after every tag: the version the update goes to."""
    tag = str(release)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", tag], cwd=REPO_ROOT, capture_output=True, check=True
    ).stdout
    repo.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(repo, filter="data")
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, f"template {tag}")
    git(repo, "tag", tag)
    for child in repo.iterdir():
        if child.name != ".git":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    snapshot_working_tree(repo)
    latest = RELEASES[-1]
    upcoming = f"{latest.major}.{latest.minor}.{latest.micro + 1}"
    commit_all(repo, f"template {upcoming}")
    git(repo, "tag", upcoming)
    return upcoming


@pytest.mark.parametrize(
    "release",
    RELEASES
    or [pytest.param(None, marks=pytest.mark.skip(reason="this clone has no release tags"))],
    ids=str,
)
def test_update_from_every_release_keeps_user_edits(release: Version, tmp_path: Path) -> None:
    """A service generated from each tagged release, then edited as a team would (a model
    and its autogenerated revision, a function, README, settings example and a new
    dependency), updates to the working tree without a conflict, keeps every edit, and
    lints, tests and migrates."""
    upcoming = release_and_working_tree(tmp_path / "template-repo", release)
    project = generate_from(tmp_path / "template-repo", str(release), tmp_path / "svc", {})
    package = project / "src" / read_answers(project)["package_name"]
    models = add_user_model_and_revision(project)
    env_example = project / ".env.example"
    user_setting = "# Orders team: the partner API we call (set in the deploy's secrets).\n"
    env_example.write_text(env_example.read_text(encoding="utf-8") + user_setting, "utf-8")
    pyproject = project / "pyproject.toml"
    dependencies = pyproject.read_text(encoding="utf-8")
    assert "dependencies = [\n" in dependencies
    pyproject.write_text(
        dependencies.replace("dependencies = [\n", 'dependencies = [\n    "tenacity>=8",\n', 1),
        encoding="utf-8",
    )
    service, readme = edit_user_code(project)  # commits everything above too
    readme_first_line = readme.read_text(encoding="utf-8").splitlines()[0]
    revisions = sorted((package / "migrations" / "versions").glob("*add_item_notes.py"))
    assert len(revisions) == 1, revisions

    copier.run_update(
        str(project), vcs_ref=upcoming, defaults=True, overwrite=True, unsafe=True, quiet=True
    )

    assert not project_problems(project), "\n".join(project_problems(project))
    assert read_answers(project)["_commit"] == upcoming
    assert USER_FUNCTION.strip() in service.read_text(encoding="utf-8"), "user code lost"
    assert readme.read_text(encoding="utf-8").splitlines()[0] == readme_first_line
    assert user_setting in env_example.read_text(encoding="utf-8"), "settings edit lost"
    assert '"tenacity>=8"' in pyproject.read_text(encoding="utf-8"), "dependency lost"
    assert "class ItemNote" in models.read_text(encoding="utf-8"), "user model lost"
    assert revisions[0].is_file(), "user revision lost"
    tables = check_as_developers_would(project, tmp_path)
    assert {"alembic_version", "items", "item_notes"} <= tables
