"""Count the Jinja tags in the template's wiring files, now or at a git revision.

    uv run python scripts/jinja_tags.py            # the working tree
    uv run python scripts/jinja_tags.py 0.1.0      # a tag or commit

A tag is one ``{% ... %}`` statement or ``{{ ... }}`` expression. The wiring files are the
ones every slice touches; docs/architecture.md records the counts and the budget.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "template/src/{{package_name}}"
WIRING = [
    f"{PACKAGE}/main.py.jinja",
    f"{PACKAGE}/core/settings.py.jinja",
    "template/compose.yaml.jinja",
    "template/tests/conftest.py.jinja",
    "template/README.md.jinja",
    "template/.github/workflows/ci.yml.jinja",
    "template/pyproject.toml.jinja",
    f"{PACKAGE}/cli.py.jinja",
]
TAG = re.compile(r"\{%.*?%\}|\{\{.*?\}\}", re.DOTALL)


def read(path: str, revision: str | None) -> str | None:
    if revision is None:
        file = ROOT / path
        return file.read_text(encoding="utf-8") if file.exists() else None
    shown = subprocess.run(
        ["git", "show", f"{revision}:{path}"], cwd=ROOT, capture_output=True, text=True
    )
    return shown.stdout if shown.returncode == 0 else None


def main(argv: list[str]) -> int:
    revision = argv[1] if len(argv) > 1 else None
    print(f"{'file':58} {'tags':>5} {'lines':>6}")
    for path in WIRING:
        text = read(path, revision)
        if text is None:
            print(f"{path:58} {'-':>5} {'-':>6}")
            continue
        print(f"{path:58} {len(TAG.findall(text)):>5} {text.count(chr(10)):>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
