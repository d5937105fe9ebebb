"""Helpers the tests share that are not fixtures (those live in conftest.py)."""

import os
from typing import NoReturn

import pytest

# The spellings of "true" CI systems set CI to; compared case-insensitively.
CI_TRUE_VALUES = frozenset({"1", "true", "yes"})


def running_in_ci() -> bool:
    return os.environ.get("CI", "").lower() in CI_TRUE_VALUES


def unavailable(what: str, error: BaseException) -> NoReturn:
    """Fail under CI (a missing server is a broken pipeline), skip on a laptop."""
    message = f"{what} is unreachable: {error!r}"
    if running_in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
