"""What the model serving slice reports as it serves: metrics when the service has them."""

from collections.abc import Iterable, Sequence
from typing import Protocol

from .formats import Output


class ServingObserver(Protocol):
    def model(self, model: str) -> None: ...

    def known(
        self, model: str, version: int, classes: Sequence[str], features: Iterable[str]
    ) -> None: ...

    def serving(self, model: str, alias: str, version: int | None) -> None: ...

    def loaded(self, model: str, outcome: str, seconds: float) -> None: ...

    def predicted(
        self, model: str, version: int, role: str, outputs: Sequence[Output], seconds: float
    ) -> None: ...

    def failed(self, model: str, version: int, role: str, rows: int) -> None: ...

    def batch(self, model: str, requests: int, rows: int, seconds: float) -> None: ...

    def drift(self, model: str, version: int, psi: dict[str, float]) -> None: ...

    def compared(self, model: str, served: str, compared: str, agreed: bool) -> None: ...

    def dropped(self, model: str, what: str, count: int) -> None: ...


class QuietObserver:
    """Reports nothing: without the metrics slice, failures are still logged."""

    def model(self, model: str) -> None:
        pass

    def known(
        self, model: str, version: int, classes: Sequence[str], features: Iterable[str]
    ) -> None:
        pass

    def serving(self, model: str, alias: str, version: int | None) -> None:
        pass

    def loaded(self, model: str, outcome: str, seconds: float) -> None:
        pass

    def predicted(
        self, model: str, version: int, role: str, outputs: Sequence[Output], seconds: float
    ) -> None:
        pass

    def failed(self, model: str, version: int, role: str, rows: int) -> None:
        pass

    def batch(self, model: str, requests: int, rows: int, seconds: float) -> None:
        pass

    def drift(self, model: str, version: int, psi: dict[str, float]) -> None:
        pass

    def compared(self, model: str, served: str, compared: str, agreed: bool) -> None:
        pass

    def dropped(self, model: str, what: str, count: int) -> None:
        pass
