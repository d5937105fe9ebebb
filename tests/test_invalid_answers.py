"""Answers that copier.yml must refuse, and edge cases it must accept.

copier 9.19's run_copy(defaults=True, data=...) raises ValueError:
  * validator:  "Validation error for question '<name>': <validator message>"
  * choices:    "Invalid choice for '<name>': '<value>' is not in [...]"
  * missing:    'Question "<name>" is required'
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
from helpers import Renderer, read_answers
from matrix import BASE_ANSWERS

INVALID: list[tuple[str, dict[str, Any], str]] = [
    # (id, data overriding BASE_ANSWERS, question named in the error)
    ("name-empty", {"project_name": ""}, "project_name"),
    ("name-blank", {"project_name": "   "}, "project_name"),
    ("name-leading-digit", {"project_name": "1st Service"}, "project_name"),
    ("name-leading-space", {"project_name": " Service"}, "project_name"),
    # A README title ending in a space, which the service's own pre-commit hook rewrites.
    ("name-trailing-space", {"project_name": "Trail Space "}, "project_name"),
    ("name-trailing-tab", {"project_name": "Trail Tab\t"}, "project_name"),
    ("name-bad-char", {"project_name": "Service/API"}, "project_name"),
    ("name-too-long", {"project_name": "S" * 61}, "project_name"),
    ("slug-uppercase", {"project_slug": "My-Service"}, "project_slug"),
    ("slug-underscore", {"project_slug": "my_service"}, "project_slug"),
    ("slug-leading-digit", {"project_slug": "1service"}, "project_slug"),
    ("slug-leading-hyphen", {"project_slug": "-service"}, "project_slug"),
    ("slug-trailing-hyphen", {"project_slug": "service-"}, "project_slug"),
    ("slug-double-hyphen", {"project_slug": "my--service"}, "project_slug"),
    ("slug-space", {"project_slug": "my service"}, "project_slug"),
    ("package-leading-digit", {"package_name": "1abc"}, "package_name"),
    ("package-hyphen", {"package_name": "my-pkg"}, "package_name"),
    ("package-uppercase", {"package_name": "MyPkg"}, "package_name"),
    ("package-keyword", {"package_name": "class"}, "package_name"),
    ("package-soft-keyword-async", {"package_name": "async"}, "package_name"),
    ("package-shadows-stdlib", {"package_name": "logging"}, "package_name"),
    ("package-shadows-dependency", {"package_name": "fastapi"}, "package_name"),
    ("author-blank", {"author_name": "  "}, "author_name"),
    ("email-no-at", {"author_email": "not-an-email"}, "author_email"),
    ("email-no-dot-domain", {"author_email": "a@b"}, "author_email"),
    ("email-empty", {"author_email": ""}, "author_email"),
    ("email-space", {"author_email": "a b@example.com"}, "author_email"),
    ("email-two-ats", {"author_email": "a@b@example.com"}, "author_email"),
    ("python-too-old", {"python_version": "3.10"}, "python_version"),
    ("python-unknown", {"python_version": "4.0"}, "python_version"),
    ("database-unknown", {"database": "mysql"}, "database"),
    ("database-label-not-value", {"database": "PostgreSQL (asyncpg)"}, "database"),
    # Experiments are read through the flag client: refused without it, naming both.
    ("experiments-without-flags", {"feature_flags": False, "experiments": True}, "experiments"),
    (
        "tenant-isolation-unknown",
        {"multi_tenancy": True, "tenant_isolation": "cluster"},
        "tenant_isolation",
    ),
    # SQLite has no schemas: refused, naming both questions.
    (
        "tenant-schema-on-sqlite",
        {"multi_tenancy": True, "tenant_isolation": "schema", "database": "sqlite"},
        "tenant_isolation",
    ),
]

# Derived defaults that are invalid must be refused too, naming the derived question.
INVALID_DERIVED: list[tuple[str, dict[str, Any], str]] = [
    # project_name "Class" derives package_name "class", a keyword.
    ("derived-package-keyword", {"project_name": "Class"}, "package_name"),
    # project_name "Logging" derives package_name "logging", which shadows the stdlib.
    ("derived-package-stdlib", {"project_name": "Logging"}, "package_name"),
]


def _refused(render_template: Renderer, tmp_path: Path, data: dict[str, Any]) -> ValueError:
    dst = tmp_path / "out"
    with pytest.raises(ValueError) as excinfo:
        render_template({**BASE_ANSWERS, **data}, dst)
    leftovers = [p for p in dst.rglob("*") if p.is_file()] if dst.exists() else []
    assert not leftovers, f"refused answers still wrote files: {leftovers[:5]}"
    return excinfo.value


@pytest.mark.parametrize(
    ("data", "question"),
    [pytest.param(d, q, id=i) for i, d, q in INVALID + INVALID_DERIVED],
)
def test_invalid_answer_is_refused(
    tmp_path: Path, render_template: Renderer, data: dict[str, Any], question: str
) -> None:
    message = str(_refused(render_template, tmp_path, data))
    assert f"'{question}'" in message, f"error does not name {question!r}: {message}"


@pytest.mark.parametrize("name", ["Trail Space ", "Trail Tab\t"])
def test_name_with_trailing_whitespace_is_refused_saying_why(
    tmp_path: Path, render_template: Renderer, name: str
) -> None:
    message = str(_refused(render_template, tmp_path, {"project_name": name}))
    assert "project_name must not start or end with whitespace" in message, message


def test_missing_project_name_is_refused(tmp_path: Path, render_template: Renderer) -> None:
    with pytest.raises(ValueError, match="project_name"):
        render_template({}, tmp_path / "out")


VALID: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    # (id, data, expected recorded answers)
    ("name-one-letter", {"project_name": "A"}, {"project_slug": "a", "package_name": "a"}),
    (
        "name-punctuation",
        {"project_name": "Foo.Bar_baz-qux 2"},
        {"project_slug": "foo-bar-baz-qux-2", "package_name": "foo_bar_baz_qux_2"},
    ),
    ("name-60-chars", {"project_name": "S" * 60}, {"project_slug": "s" * 60}),
    ("email-plus-subdomain", {"author_email": "a.b+c@x-y.example.co.uk"}, {}),
    ("package-explicit", {"package_name": "svc2_core"}, {"package_name": "svc2_core"}),
]


@pytest.mark.parametrize(
    ("data", "expected"),
    [pytest.param(d, e, id=i) for i, d, e in VALID],
)
def test_valid_edge_answer_is_accepted(
    tmp_path: Path, render_template: Renderer, data: dict[str, Any], expected: dict[str, Any]
) -> None:
    dst = render_template({**BASE_ANSWERS, **data}, tmp_path / "out")
    recorded = read_answers(dst)
    for key, value in {**data, **expected}.items():
        assert recorded[key] == value


def test_questionnaire_renders_without_warnings(tmp_path: Path, render_template: Renderer) -> None:
    """Validators and defaults must not rely on deprecated behaviour (e.g. bad escapes)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        render_template(BASE_ANSWERS, tmp_path / "out")
    messages = [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught]
    assert not messages, "rendering warned:\n" + "\n".join(messages)
