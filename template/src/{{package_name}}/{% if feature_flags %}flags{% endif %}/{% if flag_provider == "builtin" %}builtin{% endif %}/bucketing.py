"""Sticky percentage buckets, computed exactly as flagd's ``fractional`` operation does.

flagd (openfeature-flagd-core 2.x, used by the flagd provider's in-process mode) hashes
the canonical CBOR encoding of ``[flag key, targeting key]`` with MurmurHash3 x86 32-bit,
seed 0, and projects the unsigned hash onto the total weight. Doing the same here means
a user keeps their variant when the flags move to flagd. The flag key in the hashed value
makes buckets independent between flags; the targeting key makes them sticky; cumulative
weights make a growing first variant only ever gain users.
"""

import struct
from collections.abc import Sequence

import mmh3


def _cbor_head(major: int, length: int) -> bytes:
    if length < 24:
        return bytes([(major << 5) | length])
    for additional, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if length < 1 << (8 * struct.calcsize(fmt)):
            return bytes([(major << 5) | additional]) + struct.pack(fmt, length)
    raise OverflowError(length)


def _cbor_text(value: str) -> bytes:
    encoded = value.encode("utf-8")
    return _cbor_head(3, len(encoded)) + encoded


def bucket_hash(flag_key: str, targeting_key: str) -> int:
    """The unsigned 32-bit hash of CBOR ``[flag_key, targeting_key]``."""
    encoded = _cbor_head(4, 2) + _cbor_text(flag_key) + _cbor_text(targeting_key)
    return mmh3.hash(encoded, seed=0, signed=False)


def pick_variant(hashed: int, weights: Sequence[tuple[str, int]]) -> str | None:
    """The variant whose cumulative weight range holds the hash's bucket."""
    total = sum(weight for _, weight in weights)
    if total <= 0:
        return None
    bucket = (hashed * total) >> 32
    end = 0
    for variant, weight in weights:
        end += weight
        if bucket < end:
            return variant
    return None
