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


# Heads of texts shorter than 24 bytes, most targeting keys: one byte each, looked up.
_SHORT_TEXT_HEADS = [_cbor_head(3, length) for length in range(24)]


def _cbor_text(value: str) -> bytes:
    encoded = value.encode("utf-8")
    length = len(encoded)
    head = _SHORT_TEXT_HEADS[length] if length < 24 else _cbor_head(3, length)
    return head + encoded


def hash_prefix(flag_key: str) -> bytes:
    """The CBOR bytes before the targeting key: the same for every evaluation of a flag."""
    return _cbor_head(4, 2) + _cbor_text(flag_key)


def bucket_hash(flag_key: str | bytes, targeting_key: str) -> int:
    """The unsigned 32-bit hash of CBOR ``[flag_key, targeting_key]``.

    ``flag_key`` may be given as its ``hash_prefix``, which a compiled flag keeps.
    """
    prefix = hash_prefix(flag_key) if isinstance(flag_key, str) else flag_key
    return mmh3.hash(prefix + _cbor_text(targeting_key), seed=0, signed=False)


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
