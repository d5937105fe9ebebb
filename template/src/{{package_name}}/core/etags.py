"""Entity tags for conditional requests (RFC 9110 section 13).

Versioned resources use their version number as a strong ETag; ``If-Match`` guards writes
against lost updates (412 on mismatch) and ``If-None-Match`` lets readers revalidate (304).
"""


def etag_for(version: int) -> str:
    return f'"{version}"'


def _tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def if_match_allows(header: str | None, current: str) -> bool:
    """Strong comparison: a weak tag never satisfies If-Match."""
    if header is None:
        return True
    tags = _tags(header)
    return "*" in tags or current in tags


def if_none_match_hits(header: str | None, current: str) -> bool:
    """Weak comparison: ``W/"3"`` and ``"3"`` name the same representation here."""
    if header is None:
        return False
    tags = [tag.removeprefix("W/") for tag in _tags(header)]
    return "*" in tags or current in tags
