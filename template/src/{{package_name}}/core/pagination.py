"""Opaque page cursors: where the last row of a page stood in the list's order.

A cursor holds the sort key values of that row (keyset pagination). The next page starts
after it with a ``WHERE`` on those values, which the sort column's index bounds: no rows
are skipped and counted again, as an ``OFFSET`` does, and a row inserted or deleted before
the cursor shifts nothing on the pages after it. Cursors are not secret: a client that
edits one only moves its own position in the list.

A cursor is a key (JSON: the sort, the row's id) and the row's sort value as text, as it
is: JSON would spell each control character in six bytes, and a name of them would make
a cursor too long to send back.
"""

import base64
import binascii
import json
from collections.abc import Sequence

Key = str | int
_NOT_OURS = "not a cursor this API gave out"


def encode_cursor(key: Sequence[Key], value: str) -> str:
    """``key`` and ``value`` as URL-safe text without padding."""
    text = json.dumps(list(key), separators=(",", ":")) + "\n" + value
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> tuple[list[Key], str]:
    """The key and value ``cursor`` holds; ValueError for text ``encode_cursor`` did not
    make. The value is valid UTF-8 (so holds no lone surrogate); what else it may hold is
    the caller's to check."""
    try:
        data = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
        head, separator, value = data.decode().partition("\n")
        key = json.loads(head)
    # RecursionError: JSON nested deeper than the parser goes ("[[[[...").
    except (UnicodeError, binascii.Error, ValueError, RecursionError):
        raise ValueError(_NOT_OURS) from None
    if not separator or not isinstance(key, list):
        raise ValueError(_NOT_OURS)
    if not all(isinstance(part, str | int) and not isinstance(part, bool) for part in key):
        raise ValueError(_NOT_OURS)
    return key, value
