"""Update migration to 0.1.0: the built-in flag provider's tables became a branch.

Before 0.1.0 the flag tables were revision ``0002``, chained after the items table's
``0001``, so a service's own revisions could follow ``0002``. From 0.1.0 they are
``flags_0001``, the root of a ``flags`` branch of their own, and ``0002`` is gone: every
revision of the service that named ``0002`` as its parent now names ``0001``. Copier runs
this in the service's folder after the update; it changes only revision files, and says
how to record the move in a database that was migrated before.

    python v0_1_0_flags_branch.py [PROJECT]     (default: the current folder)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

OLD, NEW = "0002", "0001"
PARENT = re.compile(r"^(?P<head>down_revision\b[^=\n]*=\s*)(?P<value>.+)$", re.MULTILINE)
REVISES = re.compile(rf"^Revises: (?P<parents>.*\b{OLD}\b.*)$", re.MULTILINE)
OLD_LITERAL = re.compile(rf"""(["']){OLD}\1""")


def rebase(text: str) -> str:
    """``text`` with ``0002`` replaced by ``0001`` among the revision's parents."""

    def parent(match: re.Match[str]) -> str:
        return match["head"] + OLD_LITERAL.sub(lambda m: f"{m[1]}{NEW}{m[1]}", match["value"])

    def revises(match: re.Match[str]) -> str:
        return "Revises: " + re.sub(rf"\b{OLD}\b", NEW, match["parents"])

    return REVISES.sub(revises, PARENT.sub(parent, text, count=1), count=1)


def migrate(project: Path) -> list[Path]:
    """Rewrite the service's own revisions; return the ones that changed."""
    changed: list[Path] = []
    for versions in sorted(project.glob("src/*/migrations/versions")):
        for revision in sorted(versions.glob("*.py")):
            text = revision.read_text(encoding="utf-8")
            rebased = rebase(text)
            if rebased != text:
                revision.write_text(rebased, encoding="utf-8")
                changed.append(revision.relative_to(project))
    return changed


def main(argv: list[str]) -> int:
    project = Path(argv[0]) if argv else Path.cwd()
    changed = migrate(project)
    flags_on = any(project.glob("src/*/migrations/versions/flags/flags_0001_*.py"))
    for path in changed:
        print(f"{path}: its parent {OLD} is now {NEW} (the flag tables are a branch)")
    if changed or flags_on:
        print(
            "A database migrated before this update records the flag tables as revision "
            f"{OLD}. Once the update is committed, record the move without touching a "
            "table: `uv run alembic stamp --purge heads` if the database was at its latest "
            "revision, then `make migrate`. See CHANGELOG.md of the template (0.1.0).",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
