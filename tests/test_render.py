"""Cheap tier: render every matrix case and check the result statically.

Each case is rendered once per run (the xdist workers share the renders, see
``helpers.RenderCache``) and every check below reads that render without changing it.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from helpers import RenderCache, command_report, compose_model, read_answers, run
from matrix import (
    ASKED_WHEN,
    CASES,
    CONDITIONAL_PATHS,
    DOMAINS,
    REPO_ROOT,
    REQUIRED_PATHS,
    Case,
    asked_questions,
    load_questionnaire,
)
from packaging.markers import default_environment
from packaging.requirements import Requirement

TEMPLATE_DIR = REPO_ROOT / "template"
VENV_BIN = Path(sys.executable).parent

# Directories that tools may create and that are never part of a render.
NOT_RENDERED = {".git", ".venv", ".mypy_cache", ".ruff_cache", ".pytest_cache", "__pycache__"}

JINJA_MARKERS = ("{{", "}}", "{%", "%}", "{#")
# In file contents a lone `{{`/`}}` is legitimate (nested dict literals close
# with `}}`), so there an expression is `{{ ... }}` on one line; statement and
# comment delimiters are residue wherever they appear.
JINJA_IN_TEXT = re.compile(r"\{\{.*?\}\}|\{%|%\}|\{#|#\}")
# GitHub expressions `${{ ... }}` are legitimate in workflow files only.
GITHUB_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
# Prometheus, Alertmanager and Grafana files under observability/ use Go templates
# (`{{ $labels.route }}`, `{{route}}`); there an expression is residue only if it names
# one of the template's questions or copier's own variables. deploy/ holds the
# PrometheusRule, a copy of those rules.
GO_TEMPLATE_DIRS = ("observability", "deploy")

# Longest run of consecutive blank lines a file type may contain. Python is
# left to `ruff format` (which wants two blank lines around top-level blocks).
MAX_BLANK_RUN_DEFAULT = 1
MAX_BLANK_RUN: dict[str, int | None] = {".py": None, ".mako": 2}


@pytest.fixture(params=[pytest.param(case, id=case.id) for case in CASES])
def case(request: pytest.FixtureRequest) -> Case:
    param = request.param
    assert isinstance(param, Case)
    return param


@pytest.fixture
def project(case: Case, renders: RenderCache) -> Path:
    return renders.get(case.id, case.data)


def rendered_files(project: Path) -> list[Path]:
    files = []
    for path in sorted(project.rglob("*")):
        rel = path.relative_to(project)
        if NOT_RENDERED & set(rel.parts):
            continue
        if path.is_file():
            files.append(path)
    return files


def text_files(project: Path) -> dict[Path, str]:
    """Rendered files that are UTF-8 text (binary files are skipped)."""
    texts: dict[Path, str] = {}
    for path in rendered_files(project):
        raw = path.read_bytes()
        if b"\0" in raw:
            continue
        try:
            texts[path] = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
    return texts


# --------------------------------------------------------------------------- #
# The matrix itself
# --------------------------------------------------------------------------- #


def test_matrix_covers_questionnaire() -> None:
    """Every choice/bool question of copier.yml is a DOMAINS line with all its values."""
    for name, spec in asked_questions().items():
        choices = spec.get("choices")
        if spec.get("type") == "bool":
            assert DOMAINS.get(name) == [False, True], f"DOMAINS[{name!r}] must be [False, True]"
        elif choices is not None:
            values = list(choices.values()) if isinstance(choices, dict) else list(choices)
            assert name in DOMAINS, f"choice question {name!r} is missing from tests/matrix.py"
            assert sorted(map(str, DOMAINS[name])) == sorted(map(str, values)), (
                f"DOMAINS[{name!r}] = {DOMAINS[name]} but copier.yml offers {values}"
            )
    unknown = set(DOMAINS) - set(load_questionnaire())
    assert not unknown, f"DOMAINS names questions copier.yml does not have: {unknown}"


def test_conditional_template_paths_are_listed() -> None:
    """Every template path with an `{% if %}` in its name has a CONDITIONAL_PATHS entry."""
    listed = {p.replace("{package_name}", "{{package_name}}") for p in CONDITIONAL_PATHS}
    for path in TEMPLATE_DIR.rglob("*"):
        rel = path.relative_to(TEMPLATE_DIR).as_posix()
        if "{%" not in rel or "{% if" not in path.name or "__pycache__" in path.parts:
            continue  # bytecode is git-ignored: not rendered
        # `dir/{% if redis %}redis.py{% endif %}.jinja` -> `dir/redis.py`
        parent = re.sub(r"\{%.*?%\}", "", path.relative_to(TEMPLATE_DIR).parent.as_posix())
        inner = re.sub(r"\{%.*?%\}", "", path.name)
        inner = inner.removesuffix(".jinja")
        rendered_rel = f"{parent}/{inner}" if parent != "." else inner
        rendered_rel = re.sub(r"\{\{\s*(\w+)\s*\}\}", r"{{\1}}", rendered_rel)
        assert rendered_rel in listed, (
            f"template/{rel} is conditional but tests/matrix.py CONDITIONAL_PATHS has no "
            f"entry for {rendered_rel!r}"
        )


# --------------------------------------------------------------------------- #
# Per-case static checks
# --------------------------------------------------------------------------- #


def test_answers_file(case: Case, project: Path) -> None:
    recorded = read_answers(project)
    expected = case.answers
    asked = {
        name for name in asked_questions() if name not in ASKED_WHEN or ASKED_WHEN[name](expected)
    }
    missing = asked - set(recorded)
    assert not missing, f".copier-answers.yml does not record {sorted(missing)}"
    for name, value in expected.items():
        assert recorded[name] == value, (
            f".copier-answers.yml records {name}={recorded[name]!r}, expected {value!r}"
        )
    derived = set(load_questionnaire()) - set(asked_questions())
    leaked = derived & set(recorded)
    assert not leaked, f"derived (when: false) values stored in .copier-answers.yml: {leaked}"
    assert "_src_path" in recorded


def test_required_paths(case: Case, project: Path) -> None:
    pkg = read_answers(project)["package_name"]
    missing = [p for p in REQUIRED_PATHS if not (project / p.format(package_name=pkg)).exists()]
    assert not missing, f"render lacks required paths: {missing}"


def test_conditional_paths(case: Case, project: Path) -> None:
    answers = read_answers(project)
    for pattern, wanted in CONDITIONAL_PATHS.items():
        path = project / pattern.format(package_name=answers["package_name"])
        if wanted(answers):
            assert path.exists(), f"{path.relative_to(project)} must exist for {case.id}"
        else:
            assert not path.exists(), f"{path.relative_to(project)} must not exist for {case.id}"


def test_no_empty_or_suffixed_paths(project: Path) -> None:
    for path in rendered_files(project):
        rel = path.relative_to(project)
        assert not path.name.endswith(".jinja"), f"{rel}: template suffix left in a file name"
        assert all(part.strip() for part in rel.parts), f"{rel}: empty path component"


def names_template_variable(expression: str) -> bool:
    """True if a ``{{ ... }}`` expression mentions a question or a ``_copier`` value."""
    if not expression.startswith("{{"):
        return True  # `{%`, `{#`: Jinja statements and comments are residue anywhere
    names = set(load_questionnaire()) | {"_copier_conf", "_copier_answers", "_folder_name"}
    return any(word in names for word in re.findall(r"[A-Za-z_]\w*", expression))


def test_no_jinja_residue(project: Path) -> None:
    problems: list[str] = []
    for path in sorted(project.rglob("*")):
        rel_name = path.relative_to(project).as_posix()
        if any(m in rel_name for m in JINJA_MARKERS):
            problems.append(f"path {rel_name}")
    for path, text in text_files(project).items():
        rel = path.relative_to(project)
        if rel.parts[0] == ".github":
            text = GITHUB_EXPRESSION.sub("", text)
        go_templates = rel.parts[0] in GO_TEMPLATE_DIRS
        for lineno, line in enumerate(text.splitlines(), 1):
            for match in JINJA_IN_TEXT.finditer(line):
                if go_templates and not names_template_variable(match.group()):
                    continue
                problems.append(f"{rel}:{lineno}: {match.group()!r} in {line.strip()!r}")
    assert not problems, "Jinja residue:\n" + "\n".join(problems)


def test_whitespace_hygiene(project: Path) -> None:
    problems: list[str] = []
    for path, text in text_files(project).items():
        rel = path.relative_to(project)
        if text == "":
            continue
        if not text.endswith("\n"):
            problems.append(f"{rel}: no newline at end of file")
        elif text.endswith("\n\n"):
            problems.append(f"{rel}: blank line(s) at end of file")
        if text.startswith("\n"):
            problems.append(f"{rel}: blank line at start of file")
        if "\r" in text:
            problems.append(f"{rel}: carriage return (CRLF) line endings")
        max_run = MAX_BLANK_RUN.get(path.suffix, MAX_BLANK_RUN_DEFAULT)
        blank_run = 0
        for lineno, line in enumerate(text.split("\n")[:-1], 1):
            if line != line.rstrip():
                problems.append(f"{rel}:{lineno}: trailing whitespace")
            if "\t" in line and path.name != "Makefile" and path.suffix != ".mk":
                problems.append(f"{rel}:{lineno}: tab character")
            blank_run = blank_run + 1 if not line.strip() else 0
            if max_run is not None and blank_run == max_run + 1:
                problems.append(f"{rel}:{lineno}: {blank_run} consecutive blank lines")
    assert not problems, "whitespace problems:\n" + "\n".join(problems)


def test_structured_files_parse(project: Path) -> None:
    problems: list[str] = []
    for path in rendered_files(project):
        rel = path.relative_to(project)
        try:
            if path.suffix == ".toml":
                tomllib.loads(path.read_text(encoding="utf-8"))
            elif path.suffix in {".yaml", ".yml"}:
                list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
        except Exception as exc:  # report every parse failure, whatever the parser raises
            problems.append(f"{rel}: {type(exc).__name__}: {exc}")
    assert not problems, "unparseable files:\n" + "\n".join(problems)


def test_pyproject_matches_answers(project: Path) -> None:
    answers = read_answers(project)
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    meta = pyproject["project"]
    assert meta["name"] == answers["project_slug"]
    assert meta["description"] == answers["description"]
    assert meta["requires-python"].startswith(f">={answers['python_version']}")
    authors = meta.get("authors", [])
    assert {"name": answers["author_name"], "email": answers["author_email"]} in authors
    deps = {Requirement(r).name.lower() for r in meta["dependencies"]}
    assert ("redis" in deps) == bool(answers["redis"]), "redis dependency iff redis: true"
    if answers["database"] == "postgresql":
        assert "asyncpg" in deps
    else:
        assert "aiosqlite" in deps
    assert (project / "src" / answers["package_name"]).is_dir()


def test_python_version_is_consistent(project: Path) -> None:
    """The python_version answer reaches every place that names a Python version."""
    version = str(read_answers(project)["python_version"])
    tag = "py" + version.replace(".", "")
    problems: list[str] = []
    python_version_file = project / ".python-version"
    if (
        python_version_file.exists()
        and python_version_file.read_text(encoding="utf-8").strip() != version
    ):
        problems.append(".python-version")
    tools = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8")).get("tool", {})
    if tools.get("ruff", {}).get("target-version", tag) != tag:
        problems.append(f"[tool.ruff] target-version = {tools['ruff']['target-version']!r}")
    if str(tools.get("mypy", {}).get("python_version", version)) != version:
        problems.append(f"[tool.mypy] python_version = {tools['mypy']['python_version']!r}")
    dockerfile = (project / "Dockerfile").read_text(encoding="utf-8")
    for image in re.findall(r"^FROM\s+(?:--\S+\s+)?python:(\S+)", dockerfile, re.MULTILINE):
        if not image.startswith(f"{version}-") and image != version:
            problems.append(f"Dockerfile FROM python:{image}")
    for workflow in sorted((project / ".github" / "workflows").glob("*.y*ml")):
        text = workflow.read_text(encoding="utf-8")
        for found in re.findall(r"python-version:\s*[\"']?([^\"'\s]+)", text):
            if found != version:
                problems.append(f"{workflow.relative_to(project)}: python-version {found}")
    assert not problems, f"python_version={version} not used in: {problems}"


def test_compose_services_match_answers(project: Path) -> None:
    answers = read_answers(project)
    if not (project / "compose.yaml").exists():
        pytest.fail("compose.yaml is missing")
    services = set(compose_model(project)["services"])
    # copier.yml's _message_after_copy tells users `docker compose up -d db redis`.
    assert ("db" in services) == (answers["database"] == "postgresql"), services
    assert ("redis" in services) == bool(answers["redis"]), services


def _requirement_problems(req: Requirement, env: dict[str, str]) -> list[str]:
    try:
        dist = metadata.distribution(req.name)
    except metadata.PackageNotFoundError:
        return [f"{req}: {req.name} is not installed in the template's dev environment"]
    problems = []
    if req.specifier and not req.specifier.contains(dist.version, prereleases=True):
        problems.append(f"{req}: installed {req.name} {dist.version} does not satisfy it")
    for extra in req.extras:
        for dep in map(Requirement, dist.requires or []):
            # Requirements the extra adds (true with the extra, false without it).
            if (
                dep.marker
                and dep.marker.evaluate({**env, "extra": extra})
                and not dep.marker.evaluate({**env, "extra": ""})
            ):
                problems += _requirement_problems(Requirement(dep.name), env)
    return problems


def test_dependencies_installed_here(project: Path) -> None:
    """Every dependency of the render is installed here, so mypy --strict can see it.

    When this fails, add the package to the `dev` group of the repo's pyproject.toml.
    """
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))
    requirements: list[str] = list(pyproject["project"].get("dependencies", []))
    for group in pyproject.get("project", {}).get("optional-dependencies", {}).values():
        requirements += group
    for group in pyproject.get("dependency-groups", {}).values():
        requirements += [r for r in group if isinstance(r, str)]
    env: dict[str, str] = {k: str(v) for k, v in default_environment().items()}
    problems: list[str] = []
    for raw in requirements:
        req = Requirement(raw)
        if req.marker and not req.marker.evaluate(env):
            continue
        problems += _requirement_problems(req, env)
    assert not problems, "template repo's dev environment lacks:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- #
# Tools run on the render, with the render's own configuration
# --------------------------------------------------------------------------- #


def test_ruff_check(project: Path) -> None:
    result = run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], project)
    assert result.returncode == 0, command_report(result)


def test_ruff_format(project: Path) -> None:
    result = run([sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "."], project)
    assert result.returncode == 0, command_report(result)


def test_mypy_strict(project: Path, mypy_cache_dir: Path) -> None:
    # Absolute paths: the cache is shared by the renders of this worker, and mypy trusts a
    # cached module whose path, size and mtime (in whole seconds) match without hashing it.
    # Two renders' tests/test_cli.py can agree on all three while importing other packages.
    targets = [str(project / t) for t in ("src", "tests") if (project / t).is_dir()]
    result = run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--cache-dir",
            str(mypy_cache_dir),
            "--no-error-summary",
            *targets,
        ],
        project,
    )
    assert result.returncode == 0, command_report(result)


def _check_jsonschema(schema: str, files: list[Path], cwd: Path) -> None:
    assert files, f"no files to validate against {schema}"
    exe = VENV_BIN / "check-jsonschema"
    result = run([str(exe), "--builtin-schema", schema, *map(str, files)], cwd)
    assert result.returncode == 0, command_report(result)


def test_github_workflows_schema(project: Path) -> None:
    workflows = sorted((project / ".github" / "workflows").glob("*.y*ml"))
    _check_jsonschema("vendor.github-workflows", workflows, project)


def test_compose_schema(project: Path) -> None:
    """compose.yaml and each file it includes (Compose validates them one by one)."""
    fragments = sorted((project / "compose").glob("*.yaml"))
    _check_jsonschema("vendor.compose-spec", [project / "compose.yaml", *fragments], project)


def test_compose_references_resolve(project: Path) -> None:
    """What ``docker compose config`` would refuse: every included file is there, no
    service or volume is defined twice, every dependency and named volume is defined, and
    every bind mount exists in the render; and no fragment is left out of the include."""
    model = compose_model(project)
    services, volumes = model["services"], model["volumes"]
    included = {
        Path(entry if isinstance(entry, str) else entry["path"]) for entry in model["include"]
    }
    fragments = {path.relative_to(project) for path in (project / "compose").glob("*.yaml")}
    assert fragments == included, f"compose/ files not included: {sorted(fragments - included)}"
    problems = []
    for name, service in services.items():
        for dependency in service.get("depends_on") or {}:
            if dependency not in services:
                problems.append(f"{name}: depends on {dependency!r}, which is not defined")
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith("./"):
                if not (project / source).exists():
                    problems.append(f"{name}: mounts {source}, which the render does not have")
            elif not source.startswith("/") and source not in volumes:
                problems.append(f"{name}: volume {source!r} is not declared")
    assert not problems, "\n".join(problems)
