"""Keep this service on the latest release of the template it was generated from.

    uv run python scripts/template_update.py check
        Which template release the service is on, and the latest one. Exit code 0 when
        it is up to date, 10 when a newer release exists.

    uv run python scripts/template_update.py update [--to TAG] [--push REMOTE] [--body FILE]
        On a branch ``template-update/<release>``, runs ``copier update`` to the latest
        release (or TAG), commits the result (conflict markers included, so a reviewer sees
        them) and writes a pull-request description listing every conflict to FILE. With
        --push, force-pushes that branch to REMOTE. The current branch is left as it was.

The scheduled workflow ``.github/workflows/template-update.yml`` runs ``update`` and opens
the pull request, as Renovate or Dependabot do for dependencies. ``COPIER`` names the
Copier command (default: ``uvx --from copier>=9.4,<10 copier``).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml
from packaging.version import InvalidVersion, Version

ANSWERS_FILE = Path(".copier-answers.yml")
BRANCH_PREFIX = "template-update/"
DEFAULT_COPIER = "uvx --from copier>=9.4,<10 copier"
UPDATE_AVAILABLE = 10
# `git describe` form Copier records for a commit after a tag: 1.2.0-3-gabc1234.
DESCRIBED = re.compile(r"^(?P<tag>.+?)-(?P<ahead>\d+)-g[0-9a-f]+$")
CONFLICT_MARKER = re.compile(r"^(<{7}|>{7}) ", re.MULTILINE)


class UpdateError(Exception):
    """Something the person or workflow running the update has to fix first."""


@dataclass(frozen=True)
class Status:
    source: str
    current: str
    latest: Version | None

    @property
    def current_release(self) -> Version | None:
        match = DESCRIBED.match(self.current)
        return parse_release(match["tag"] if match else self.current)

    @property
    def behind(self) -> bool:
        current = self.current_release
        return self.latest is not None and (current is None or self.latest > current)


def git(*args: str, check: bool = True) -> str:
    result = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise UpdateError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def parse_release(tag: str) -> Version | None:
    """A final release's version; ``None`` for pre-releases and names that are not one."""
    try:
        version = Version(tag)
    except InvalidVersion:
        return None
    return None if version.is_prerelease or version.is_devrelease else version


def read_answers() -> dict[str, object]:
    if not ANSWERS_FILE.is_file():
        raise UpdateError(f"{ANSWERS_FILE} not found: run this from the service's root folder")
    answers = yaml.safe_load(ANSWERS_FILE.read_text(encoding="utf-8"))
    if not isinstance(answers, dict) or not answers.get("_src_path"):
        raise UpdateError(f"{ANSWERS_FILE} does not say which template the service came from")
    return answers


# Copier's own shorthands for hosted templates, which git does not know.
SHORTHANDS = {"gh:": "https://github.com/", "gl:": "https://gitlab.com/"}


def git_url(source: str) -> str:
    for prefix, base in SHORTHANDS.items():
        if source.startswith(prefix):
            return base + source.removeprefix(prefix)
    return source


def release_tags(source: str) -> dict[Version, str]:
    listed = git("ls-remote", "--tags", "--refs", git_url(source))
    tags: dict[Version, str] = {}
    for line in listed.splitlines():
        tag = line.rpartition("refs/tags/")[2]
        version = parse_release(tag)
        if version is not None:
            tags[version] = tag
    return tags


def status() -> tuple[Status, dict[Version, str]]:
    answers = read_answers()
    source = str(answers["_src_path"])
    tags = release_tags(source)
    current = str(answers.get("_commit", ""))
    return Status(source=source, current=current, latest=max(tags, default=None)), tags


def check() -> int:
    found, _ = status()
    latest = found.latest or "none"
    print(f"template: {found.source}")
    print(f"on: {found.current or 'unknown'}; latest release: {latest}")
    if found.behind:
        print("A newer release exists: `make template-update` brings it in.")
        return UPDATE_AVAILABLE
    print("Up to date.")
    return 0


def conflicts() -> list[str]:
    """Files Copier could not merge: inline conflict markers, or ``.rej`` leftovers."""
    found: list[str] = []
    # A set: a conflicted file is listed once per merge stage in the index.
    listed = set(git("ls-files", "--cached", "--others", "--exclude-standard").splitlines())
    for name in listed:
        path = Path(name)
        if path.suffix == ".rej":
            found.append(name)
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if CONFLICT_MARKER.search(text):
            found.append(name)
    return sorted(found)


def describe(found: Status, target: str, conflicted: list[str]) -> str:
    lines = [
        f"Updates the service from template release {found.current} to {target}",
        f"(`{found.source}`) with `copier update`.",
        "",
    ]
    if conflicted:
        lines += [
            f"**{len(conflicted)} file(s) need a decision.** Copier could not merge the "
            "template's change with this service's own edits; each place is marked with "
            "`<<<<<<<` / `>>>>>>>` (or left as a `.rej` file). Resolve them on this branch:",
            "",
            *(f"- [ ] `{name}`" for name in conflicted),
        ]
    else:
        lines.append("Copier merged every change: no conflicts.")
    lines += [
        "",
        "Before merging: `make lint test`, and read the template's changelog for the",
        "upgrading notes of each release in between.",
    ]
    return "\n".join(lines) + "\n"


def update(target: str | None, remote: str | None, body: Path | None) -> int:
    if git("status", "--porcelain"):
        raise UpdateError("the working tree has uncommitted changes: commit or stash them")
    found, tags = status()
    if target is None:
        if not found.behind or found.latest is None:
            print(f"Up to date with the template's latest release ({found.current}).")
            return 0
        target = tags[found.latest]
    start = git("rev-parse", "--abbrev-ref", "HEAD").strip()
    branch = BRANCH_PREFIX + target
    conflicted: list[str] = []
    git("switch", "-C", branch)
    try:
        copier = shlex.split(os.environ.get("COPIER", DEFAULT_COPIER))
        # --trust: the template's update migrations and tasks run, as for any update.
        command = [*copier, "update", "--trust", "--defaults", "--vcs-ref", target]
        if subprocess.run(command, check=False).returncode != 0:
            raise UpdateError(f"{' '.join(command)} failed; the branch {branch} is unchanged")
        conflicted = conflicts()
        git("add", "-A")
        # --no-verify: hooks would refuse the conflict markers the reviewer must see.
        message = f"Update from template {found.current} to {target}"
        git("commit", "--no-verify", "--allow-empty", "-m", message)
        if body is not None:
            body.write_text(describe(found, target, conflicted), encoding="utf-8")
        if remote is not None:
            git("push", "--force", remote, f"{branch}:{branch}")
    finally:
        git("switch", start, check=False)
    print(f"{branch}: {found.current} -> {target}, {len(conflicted)} conflict(s)")
    # In a GitHub Actions step, later steps read the branch from the step's outputs.
    if outputs := os.environ.get("GITHUB_OUTPUT"):
        with Path(outputs).open("a", encoding="utf-8") as fh:
            fh.write(f"branch={branch}\nconflicts={len(conflicted)}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("check", help="say which release the service is on")
    updating = commands.add_parser("update", help="update on a branch of its own")
    updating.add_argument("--to", help="release tag (default: the latest release)")
    updating.add_argument("--push", metavar="REMOTE", help="push the branch to REMOTE")
    updating.add_argument("--body", type=Path, help="write the pull-request text here")
    args = parser.parse_args(argv)
    try:
        if args.command == "check":
            return check()
        return update(args.to, args.push, args.body)
    except UpdateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
