"""What a cache entry holds, and how it is stored: JSON only, never pickle.

An entry is a header line of JSON (the ETag and the entry's deadlines) and the body as the
API sends it. Reading one parses the header only; the body goes to the client as stored.
Anything else found under a key (a corrupt or foreign value) reads as a miss, so a value
written into Redis by someone else is never executed, only ignored.

Values that are not representations go through pydantic: what it cannot render as JSON
is refused when stored (:class:`CacheSerializationError`), and what is read back is
validated against the type the caller expects.
"""

import json
from dataclasses import dataclass
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import PydanticSerializationError

from ..core.representations import Representation, content_etag

FORMAT = 1
SEPARATOR = b"\n"


class CacheSerializationError(TypeError):
    """A value the cache cannot store as JSON (an unknown type); nothing was stored."""


@dataclass(frozen=True, slots=True)
class Entry:
    """A cached representation and when it stops being fresh, then servable at all."""

    representation: Representation
    # Wall-clock seconds: entries are shared between processes and hosts.
    fresh_until: float
    stale_until: float

    def encode(self) -> bytes:
        header = json.dumps(
            [FORMAT, self.representation.etag, self.fresh_until, self.stale_until],
            separators=(",", ":"),
        ).encode()
        return header + SEPARATOR + self.representation.body


def decode(stored: object) -> Entry | None:
    """The entry ``stored`` holds, or None for anything that is not one."""
    if not isinstance(stored, bytes):
        return None
    header, separator, body = stored.partition(SEPARATOR)
    if not separator:
        return None
    try:
        version, etag, fresh_until, stale_until = json.loads(header)
    except (ValueError, TypeError):
        return None
    if (
        version != FORMAT
        or not isinstance(etag, str)
        or not isinstance(fresh_until, float | int)
        or not isinstance(stale_until, float | int)
    ):
        return None
    return Entry(Representation(body, etag), float(fresh_until), float(stale_until))


def represent(value: Any, adapter: TypeAdapter[Any]) -> Representation:
    """``value`` as JSON by the rules of ``adapter``; refuses types pydantic cannot render."""
    try:
        # warnings="error": a value that is not of the adapter's type is refused, not
        # rendered with a warning.
        body = adapter.dump_json(value, warnings="error")
    except PydanticSerializationError as exc:
        raise CacheSerializationError(
            f"cannot cache a {type(value).__name__}: {exc}; cache JSON-compatible values "
            "(pydantic models, dataclasses, dicts, lists, strings, numbers)"
        ) from exc
    return Representation(body, content_etag(body))
