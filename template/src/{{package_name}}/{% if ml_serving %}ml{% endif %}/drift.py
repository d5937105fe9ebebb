"""Input drift: each feature's population stability index (PSI) against training.

At registration each numeric feature's training values are cut into ten bins of equal
count (deciles), and the share of training rows in each bin is kept with the version.
While serving, the version's last ``drift_window`` inputs fall into the same bins, and

    PSI = sum over bins of (actual - expected) * ln(actual / expected)

says how far apart the two distributions are. The usual reading, and the alerts': under
0.1 no change worth a look, 0.1 to 0.25 a shift to watch, above 0.25 the model sees data
it was not trained on. Empty bins count as a share of 0.0001 (the logarithm of zero is
not defined). String features have no bins and no PSI.
"""

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel

from .signature import Signature

WARN_PSI = 0.1
ACT_PSI = 0.25
BINS = 10
_FLOOR = 1e-4


class FeatureBins(BaseModel):
    # The cut points between bins (at most BINS - 1; fewer when values repeat).
    edges: list[float]
    # The share of training rows in each of the len(edges) + 1 bins.
    expected: list[float]


class TrainingProfile(BaseModel):
    rows: int
    features: dict[str, FeatureBins]


def fingerprint(signature: Signature, rows: NDArray[Any]) -> str:
    """SHA-256 of the training data with its feature names: same data, same print."""
    digest = hashlib.sha256()
    digest.update(",".join(feature.name for feature in signature.features).encode())
    digest.update(np.ascontiguousarray(rows).astype(str).tobytes())
    return digest.hexdigest()


def _shares(values: NDArray[np.float64], edges: NDArray[np.float64]) -> NDArray[np.float64]:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return np.asarray(counts / max(len(values), 1), dtype=np.float64)


def profile(signature: Signature, rows: NDArray[Any]) -> TrainingProfile:
    features = {}
    for column, feature in enumerate(signature.features):
        if feature.type != "number":
            continue
        values = np.asarray(rows[:, column], dtype=np.float64)
        edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1]))
        features[feature.name] = FeatureBins(
            edges=[float(edge) for edge in edges], expected=_shares(values, edges).tolist()
        )
    return TrainingProfile(rows=len(rows), features=features)


def psi(expected: Sequence[float], actual: Sequence[float] | NDArray[np.float64]) -> float:
    e = np.maximum(np.asarray(expected, dtype=np.float64), _FLOOR)
    a = np.maximum(np.asarray(actual, dtype=np.float64), _FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


class DriftWindow:
    """The last ``size`` inputs of one served version, and their PSI per feature."""

    def __init__(self, signature: Signature, training: TrainingProfile, size: int) -> None:
        self._columns = [
            (column, feature.name, training.features[feature.name])
            for column, feature in enumerate(signature.features)
            if feature.name in training.features
        ]
        self._values = np.zeros((size, len(self._columns)), dtype=np.float64)
        self._next = 0
        self.count = 0

    @property
    def features(self) -> list[str]:
        return [name for _, name, _ in self._columns]

    def add(self, rows: NDArray[Any]) -> None:
        if not self._columns:
            return
        size = len(self._values)
        taken = np.asarray(rows[-size:, [column for column, _, _ in self._columns]], float)
        end = self._next + len(taken)
        if end <= size:
            self._values[self._next : end] = taken
        else:
            split = size - self._next
            self._values[self._next :] = taken[:split]
            self._values[: end - size] = taken[split:]
        self._next = end % size
        self.count = min(size, self.count + len(taken))

    def psi(self) -> dict[str, float]:
        """Each numeric feature's PSI over the window's inputs."""
        values = self._values[: self.count]
        return {
            name: psi(bins.expected, _shares(values[:, index], np.asarray(bins.edges)))
            for index, (_, name, bins) in enumerate(self._columns)
        }
