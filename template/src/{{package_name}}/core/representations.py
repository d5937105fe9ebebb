"""Rendered JSON bodies with their entity tags, answered as 200 or 304.

A read that renders its body once (``Representation.of``) can hand the same bytes to a
cache, to the response and to the ETag: a cached body is sent as stored, without being
validated and rendered again per request.
"""

import hashlib
from dataclasses import dataclass
from typing import Self

from fastapi import Response, status
from pydantic import BaseModel

from .etags import if_none_match_hits

JSON = "application/json"


def content_etag(body: bytes) -> str:
    """A strong ETag naming exactly these bytes (RFC 9110 section 8.8.3)."""
    return f'"{hashlib.blake2b(body, digest_size=16).hexdigest()}"'


@dataclass(frozen=True, slots=True)
class Representation:
    """A JSON body and the strong ETag that names it."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, model: BaseModel, *, etag: str | None = None) -> Self:
        """``model`` rendered as the API sends it; tagged by ``etag`` or by its content."""
        body = model.model_dump_json().encode()
        return cls(body, etag or content_etag(body))

    def respond(self, if_none_match: str | None) -> Response:
        """200 with the body, or 304 without it when the client holds this version."""
        if if_none_match_hits(if_none_match, self.etag):
            return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": self.etag})
        return Response(self.body, media_type=JSON, headers={"ETag": self.etag})
