"""Trace exemplars for histograms, whether one process serves or several.

prometheus_client keeps exemplars only in single-process mode: its multiprocess values
drop them. This store keeps the latest exemplar per bucket in the process that observed
it, and the exposition attaches them to the buckets (aggregated over all workers in
multiprocess mode). A scrape so shows the exemplars of the worker that answered it; they
are samples, and one per bucket is enough to jump from a slow bucket to one of its traces.
"""

import math
import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Exemplar

# (label values, bucket upper bound)
BucketKey = tuple[tuple[str, ...], float]


class ExemplarStore:
    """The latest exemplar per (label values, bucket) of one histogram."""

    def __init__(self, metric: str, label_names: Sequence[str], buckets: Sequence[float]) -> None:
        self.metric = metric
        self._label_names = tuple(label_names)
        self._bounds = [*buckets, math.inf]
        self._latest: dict[BucketKey, Exemplar] = {}

    def record(self, label_values: tuple[str, ...], value: float, labels: dict[str, str]) -> None:
        # Buckets are inclusive upper bounds: a value equal to a bound belongs to it.
        bound = self._bounds[bisect_left(self._bounds, value)]
        self._latest[label_values, bound] = Exemplar(labels, value, time.time())

    def attach(self, family: Metric) -> None:
        bucket = f"{self.metric}_bucket"
        samples = []
        for sample in family.samples:
            if sample.name == bucket:
                values = tuple(sample.labels[name] for name in self._label_names)
                # `le` is rendered as text ("0.05", "+Inf"); float() reads both.
                exemplar = self._latest.get((values, float(sample.labels["le"])))
                if exemplar is not None:
                    sample = sample._replace(exemplar=exemplar)
            samples.append(sample)
        family.samples = samples


class ExemplarCollector(Collector):
    """Passes on another collector's metrics with the stores' exemplars attached."""

    def __init__(self, source: Collector, stores: Iterable[ExemplarStore]) -> None:
        self._source = source
        self._stores = {store.metric: store for store in stores}

    def collect(self) -> Iterable[Metric]:
        for family in self._source.collect():
            store = self._stores.get(family.name)
            if store is not None:
                store.attach(family)
            yield family
