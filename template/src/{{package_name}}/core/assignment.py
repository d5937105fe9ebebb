"""Deterministic assignment of callers to arms: the engine the experiments and the model
serving's champion/challenger splits share.

The hash is GrowthBook's version 2, published and implemented in every GrowthBook SDK, so
an assignment made here can be reproduced by other tools and compared with them::

    n = fnv1a32(str(fnv1a32(seed + key))) % 10000 / 10000

FNV-1a 32-bit over the text's UTF-16 code units (JavaScript's ``charCodeAt``, which every
GrowthBook SDK follows; for ASCII text, its bytes); hashing the decimal text of the first hash again
spreads keys that differ only in their last characters. ``n`` is a position in [0, 1).

* Each arm owns a fixed range start (the cumulative weights of the arms before it);
  ``coverage`` scales every range's width from that start. Raising coverage only adds
  positions at the end of each range: nobody moves between arms, and users who were in
  stay in (GrowthBook's ``getBucketRanges``).
* The seed (the experiment key unless set) makes positions independent between
  experiments: one experiment's arms say nothing about another's.
* A namespace is a second hash of the key with the namespace's name (GrowthBook's
  ``inNamespace``, hash version 1: ``fnv1a32(key + "__" + name) % 1000 / 1000``);
  experiments taking disjoint ranges of one namespace never share a user.
"""

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193
_MASK = 0xFFFFFFFF


def fnv1a32(text: str) -> int:
    units: Iterable[int]
    if text.isascii():
        units = text.encode()
    else:
        data = text.encode("utf-16-le", "surrogatepass")
        units = struct.unpack(f"<{len(data) // 2}H", data)
    hashed = _FNV_OFFSET
    for unit in units:
        hashed = ((hashed ^ unit) * _FNV_PRIME) & _MASK
    return hashed


def position(seed: str, key: str) -> float:
    """The key's position in [0, 1) for ``seed`` (GrowthBook hash version 2)."""
    return fnv1a32(str(fnv1a32(seed + key))) % 10000 / 10000


def namespace_position(namespace: str, key: str) -> float:
    """The key's position in [0, 1) within ``namespace`` (GrowthBook's ``inNamespace``)."""
    return fnv1a32(key + "__" + namespace) % 1000 / 1000


def arm_ranges(weights: Sequence[float], coverage: float) -> list[tuple[float, float]]:
    """Each arm's [start, end) range: a fixed start, a width scaled by ``coverage``."""
    ranges = []
    start = 0.0
    for weight in weights:
        ranges.append((start, start + coverage * weight))
        start += weight
    return ranges


@dataclass(frozen=True)
class Split:
    """Arms over positions: which arm, if any, a key falls into."""

    seed: str
    arms: tuple[str, ...]
    ranges: tuple[tuple[float, float], ...]
    namespace: tuple[str, float, float] | None = None

    @classmethod
    def of(
        cls,
        seed: str,
        weights: Sequence[tuple[str, float]],
        coverage: float = 1.0,
        namespace: tuple[str, float, float] | None = None,
    ) -> "Split":
        return cls(
            seed,
            tuple(arm for arm, _ in weights),
            tuple(arm_ranges([weight for _, weight in weights], coverage)),
            namespace,
        )

    def arm(self, key: str) -> str | None:
        """The key's arm, or None when it is outside the namespace range or the coverage."""
        if self.namespace is not None:
            name, start, end = self.namespace
            if not start <= namespace_position(name, key) < end:
                return None
        where = position(self.seed, key)
        for arm, (start, end) in zip(self.arms, self.ranges, strict=True):
            if start <= where < end:
                return arm
        return None
