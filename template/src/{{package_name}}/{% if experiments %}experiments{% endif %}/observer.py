"""What the experiments slice reports as it records: metrics when the service has them."""

from collections.abc import Iterable, Mapping
from typing import Protocol


class ExperimentsObserver(Protocol):
    def known(self, arms: Mapping[str, Iterable[str]], metrics: Iterable[str]) -> None: ...

    def exposed(self, experiment: str, arm: str, count: int) -> None: ...

    def dropped(self, experiment: str, count: int) -> None: ...

    def event(self, metric: str) -> None: ...

    def event_dropped(self, metric: str, count: int) -> None: ...

    def flushed(self, seconds: float) -> None: ...

    def sample_ratio(self, experiment: str, p_value: float) -> None: ...


class QuietObserver:
    """Reports nothing: without the metrics slice, drops and mismatches are still logged."""

    def known(self, arms: Mapping[str, Iterable[str]], metrics: Iterable[str]) -> None:
        pass

    def exposed(self, experiment: str, arm: str, count: int) -> None:
        pass

    def dropped(self, experiment: str, count: int) -> None:
        pass

    def event(self, metric: str) -> None:
        pass

    def event_dropped(self, metric: str, count: int) -> None:
        pass

    def flushed(self, seconds: float) -> None:
        pass

    def sample_ratio(self, experiment: str, p_value: float) -> None:
        pass
