"""Purging a CDN by tag after a write, so it drops what the service's headers let it keep.

Answers carry their tags in ``Surrogate-Key`` and ``Cache-Tag`` (http.py); when a write
invalidates tags, :class:`TagPurger` posts them to the CDN's purge-by-tag API:
``POST <purge_url>`` with ``{"tags": [...]}`` and ``Authorization: Bearer <token>`` —
Cloudflare's ``/zones/<zone>/purge_cache`` takes exactly that. Another CDN (Fastly's
``POST /service/<id>/purge`` with a ``Surrogate-Key`` header, say) is a subclass
overriding :meth:`TagPurger.request`.

Purges run after the write has answered, in the background: a slow or failing CDN never
delays or fails a write. Until the purge lands, the CDN serves the old answer for at most
its ``s-maxage``; failures are logged.
"""

import asyncio
from collections.abc import Sequence

import httpx
import structlog
from pydantic import HttpUrl, SecretStr

logger = structlog.stdlib.get_logger(__name__)

TIMEOUT_SECONDS = 10.0


class TagPurger:
    """Posts invalidated tags to a CDN's purge API, one request per invalidation."""

    def __init__(self, url: HttpUrl, token: SecretStr | None) -> None:
        self._url = str(url)
        self._token = token
        self._client = httpx.AsyncClient(timeout=TIMEOUT_SECONDS)
        self._pending: set[asyncio.Task[None]] = set()

    def request(self, tags: Sequence[str]) -> httpx.Request:
        """The purge request for ``tags``; override for a CDN with another API."""
        headers = {}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        return self._client.build_request(
            "POST", self._url, json={"tags": list(tags)}, headers=headers
        )

    def purge(self, tags: Sequence[str]) -> None:
        """Starts purging ``tags``; returns at once."""
        task = asyncio.create_task(self._send(tuple(tags)), name="CDN purge")
        # Held until done: the event loop keeps only weak references to tasks.
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _send(self, tags: Sequence[str]) -> None:
        try:
            response = await self._client.send(self.request(tags))
            response.raise_for_status()
        except httpx.HTTPError as exc:
            logger.warning("CDN purge failed", tags=list(tags), error=repr(exc))
        else:
            logger.info("CDN purged", tags=list(tags))

    async def aclose(self) -> None:
        """Waits for the purges under way, then closes the client."""
        if self._pending:
            await asyncio.wait(self._pending, timeout=TIMEOUT_SECONDS)
        await self._client.aclose()
