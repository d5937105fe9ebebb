"""The questionnaire as a user meets it at the prompt."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from matrix import REPO_ROOT

# The prompt puts its mark ("🎤 ", three columns) before the help, and cuts what does not
# fit the terminal: 70 characters leave room on an 80-column one.
MAX_HELP = 70


def _asked_questions() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load((REPO_ROOT / "copier.yml").read_text(encoding="utf-8"))
    return {
        name: spec
        for name, spec in config.items()
        if not name.startswith("_") and isinstance(spec, dict) and spec.get("when") is not False
    }


@pytest.mark.parametrize("question", list(_asked_questions()))
def test_help_is_one_short_line(question: str) -> None:
    help_text = _asked_questions()[question].get("help")
    assert isinstance(help_text, str) and help_text.strip(), f"{question} has no help"
    assert "\n" not in help_text.strip(), f"{question}'s help spans lines: {help_text!r}"
    assert len(help_text) <= MAX_HELP, (
        f"{question}'s help has {len(help_text)} characters (at most {MAX_HELP}): {help_text!r}"
    )
