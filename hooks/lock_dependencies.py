"""Writes a new service's uv.lock, so its CI and Dockerfile (`uv sync --locked`) work as generated.

Copier runs this in the generated project after `copier copy` (see `_tasks` in copier.yml).
Running it again changes nothing: `uv lock` keeps a lock that matches pyproject.toml. When
uv is missing or cannot lock (offline, say), it prints the command to run later instead of
failing: the service is generated either way.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


def lock_dependencies(project: Path, uv: str | None) -> bool:
    """Run ``uv lock`` in ``project``; False, after saying what to run, when it could not."""
    if uv is None:
        _advise(project, "uv is not installed (https://docs.astral.sh/uv/)")
        return False
    try:
        returncode = subprocess.run([uv, "lock"], cwd=project, check=False).returncode
    except OSError as exc:
        _advise(project, f"{uv} could not be run: {exc}")
        return False
    if returncode != 0:
        _advise(project, f"`uv lock` exited with status {returncode}")
        return False
    return True


def _advise(project: Path, reason: str) -> None:
    print(
        f"warning: uv.lock was not written: {reason}.\n"
        "Its CI and Dockerfile install exactly what uv.lock pins, so before the first "
        f"commit run:\n\n    cd {project} && uv lock\n",
        file=sys.stderr,
    )


def main() -> int:
    lock_dependencies(Path.cwd(), shutil.which("uv"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
