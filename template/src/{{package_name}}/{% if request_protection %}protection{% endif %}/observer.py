"""What the protection slice reports as it decides: metrics when the service has them."""

from typing import Literal, Protocol

# Why a request was refused: the metric label, the log field and the runbook's term.
Reason = Literal[
    "rate_limit",
    "concurrency",
    "deny_rule",
    "anomaly",
    "method",
    "url_length",
    "query_parameters",
    "headers",
    "content_type",
    "json_depth",
    "json_array",
    "slow_body",
    "private_path",
    "limiter_outage",
]
REASONS: tuple[Reason, ...] = Reason.__args__  # type: ignore[attr-defined]


class ProtectionObserver(Protocol):
    def refused(self, reason: Reason) -> None: ...

    def anomaly(self, rule: str) -> None: ...

    def limiter_failed(self) -> None: ...

    def limiter_bypassed(self, policy: str, *, allowed: bool) -> None: ...

    def slow_connection_closed(self) -> None: ...


class QuietObserver:
    """Reports nothing: a service without the metrics slice still logs every refusal."""

    def refused(self, reason: Reason) -> None:
        pass

    def anomaly(self, rule: str) -> None:
        pass

    def limiter_failed(self) -> None:
        pass

    def limiter_bypassed(self, policy: str, *, allowed: bool) -> None:
        pass

    def slow_connection_closed(self) -> None:
        pass
