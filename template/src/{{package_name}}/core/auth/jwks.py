"""An async JWKS cache.

PyJWT's own ``PyJWKClient`` fetches keys with blocking ``urllib`` calls, which would stall
the event loop; this cache fetches with httpx and lets PyJWT parse the keys. Keys are kept
for ``ttl`` seconds and refetched early when a token names an unknown ``kid`` (the IdP
rotated its keys), at most once per ``min_refetch`` seconds so forged kids cannot make the
service hammer the IdP. When the IdP is unreachable, the last good keys stay in use.
"""

import asyncio
import time

import httpx
import jwt
import structlog

logger = structlog.stdlib.get_logger(__name__)


class JwksUnavailableError(Exception):
    """No keys could be fetched, so no token can be verified right now."""


class JwksCache:
    def __init__(
        self, url: str, client: httpx.AsyncClient, *, ttl: float, min_refetch: float
    ) -> None:
        self._url = url
        self._client = client
        self._ttl = ttl
        self._min_refetch = min_refetch
        self._keys: dict[str | None, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()

    async def key_for(self, kid: str | None) -> jwt.PyJWK | None:
        """The key for ``kid``, or ``None`` when the IdP does not publish it."""
        if self._fetched_at is None or time.monotonic() - self._fetched_at >= self._ttl:
            await self._refresh()
        key = self._lookup(kid)
        if key is None and await self._refresh():
            key = self._lookup(kid)
        return key

    def _lookup(self, kid: str | None) -> jwt.PyJWK | None:
        if kid is None and len(self._keys) == 1:
            # A token without kid is unambiguous only when the IdP publishes one key.
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    async def _refresh(self) -> bool:
        """Refetch the key set unless one was tried lately; returns whether keys changed."""
        async with self._lock:
            now = time.monotonic()
            recently = self._attempted_at is not None and (
                now - self._attempted_at < self._min_refetch
            )
            if recently and self._keys:
                return False
            if recently:
                raise JwksUnavailableError("the identity provider's keys are unavailable")
            self._attempted_at = now
            try:
                response = await self._client.get(self._url, timeout=5.0)
                response.raise_for_status()
                document = response.json()
                if not isinstance(document, dict):
                    raise ValueError("the JWKS document is not a JSON object")
                key_set = jwt.PyJWKSet.from_dict(document)
            except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as exc:
                logger.warning("jwks fetch failed", url=self._url, error=repr(exc))
                if not self._keys:
                    raise JwksUnavailableError(str(exc)) from exc
                return False
            self._keys = {key.key_id: key for key in key_set.keys}
            self._fetched_at = now
            return True
