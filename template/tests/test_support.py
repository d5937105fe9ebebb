"""The suite's own rules: when a missing server fails the run and when it skips."""

import pytest

from .support import running_in_ci, unavailable


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "True", "yes", "YES", "Yes"])
def test_common_spellings_of_true_mean_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    assert running_in_ci()
    with pytest.raises(pytest.fail.Exception, match="PostgreSQL is unreachable"):
        unavailable("PostgreSQL", ConnectionRefusedError())


@pytest.mark.parametrize("value", ["", "0", "false", "no", "off", "truthy"])
def test_anything_else_is_a_laptop(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    assert not running_in_ci()
    with pytest.raises(pytest.skip.Exception, match="Redis is unreachable"):
        unavailable("Redis", ConnectionRefusedError())


def test_no_ci_variable_is_a_laptop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert not running_in_ci()
