"""Cut a release of the template: checks, then an annotated git tag.

    uv run scripts/release.py VERSION

VERSION is a PEP 440 version above every earlier release tag. The release is refused
unless the working tree is clean and CHANGELOG.md has a section for VERSION with an
"Upgrading" note, which is what a service's `copier update` across it must know. Services
find releases by their tags (`make template-check`); push the tag with
`git push origin VERSION`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parent.parent
CHANGELOG = ROOT / "CHANGELOG.md"


class ReleaseError(Exception):
    pass


def git(*args: str) -> str:
    result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ReleaseError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def released() -> list[Version]:
    versions = []
    for tag in git("tag", "--list").split():
        try:
            versions.append(Version(tag))
        except InvalidVersion:
            continue
    return sorted(versions)


def changelog_section(version: str) -> str:
    """The text under ``## VERSION`` (a date or title may follow the version)."""
    text = CHANGELOG.read_text(encoding="utf-8") if CHANGELOG.is_file() else ""
    heading = re.compile(rf"^## {re.escape(version)}(?=\s|$).*$", re.MULTILINE)
    match = heading.search(text)
    if match is None:
        raise ReleaseError(f"CHANGELOG.md has no '## {version}' section")
    following = re.compile(r"^## ", re.MULTILINE).search(text, match.end())
    return text[match.end() : following.start() if following else len(text)]


def release(version_text: str) -> str:
    try:
        version = Version(version_text)
    except InvalidVersion:
        raise ReleaseError(f"{version_text!r} is not a PEP 440 version") from None
    if str(version) != version_text:
        raise ReleaseError(f"write the version in its normal form: {version}")
    earlier = released()
    if earlier and version <= earlier[-1]:
        raise ReleaseError(f"{version} is not above the latest release, {earlier[-1]}")
    if git("status", "--porcelain"):
        raise ReleaseError("the working tree has uncommitted changes")
    section = changelog_section(version_text)
    upgrading = re.search(r"^### Upgrading\s*\n(?P<note>.*?)(?=^### |\Z)", section, re.M | re.S)
    if upgrading is None or not upgrading["note"].strip():
        raise ReleaseError(
            f"the '## {version}' section of CHANGELOG.md needs an '### Upgrading' note: "
            "what a service updating across this release must do (or that it needs nothing)"
        )
    git("tag", "-a", version_text, "-m", f"Release {version_text}")
    return version_text


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        tag = release(argv[0])
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Tagged {tag}. Publish it with: git push origin {tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
