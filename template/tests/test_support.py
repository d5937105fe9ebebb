"""The suite's own helpers: when a missing server fails the run, ports nothing listens on."""

import socket

import pytest

from .support import closed_port, running_in_ci, unavailable


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


def test_a_closed_port_refuses_connections_and_stays_taken() -> None:
    port = closed_port()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    # A server started meanwhile (uvicorn asks for address reuse too) cannot be given it.
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError, match="in use"):
            server.bind(("127.0.0.1", port))
