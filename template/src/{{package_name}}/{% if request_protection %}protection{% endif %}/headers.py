"""Security headers for every answer: success, problem, 404 and the docs pages alike.

API answers get a Content-Security-Policy that allows nothing (JSON needs nothing); the
docs pages get one that admits their own scripts by hash, computed from the page the
first time it is served, so they work without ``'unsafe-inline'`` scripts.
"""

import re

from ..core.content_security import source_hash
from .settings import HeaderSettings

_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)

# Swagger UI and ReDoc style elements from script (inline styles cannot be hashed), load
# images as data: URLs and run ReDoc's search in a worker made from a blob.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self'{hashes}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'none'"
)


class SecurityHeaders:
    def __init__(self, settings: HeaderSettings) -> None:
        self.settings = settings
        self.common: list[tuple[bytes, bytes]] = [
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-resource-policy", b"same-origin"),
            (b"x-frame-options", b"DENY"),
        ]
        self.api_policy = settings.content_security_policy.encode("latin-1")
        self.hsts = f"max-age={settings.hsts_max_age_seconds}; includeSubDomains".encode()

    def for_response(
        self, scheme: str, existing: list[tuple[bytes, bytes]], policy: bytes | None
    ) -> list[tuple[bytes, bytes]]:
        """``existing`` headers plus the security ones the response does not set."""
        present = {name.lower() for name, _ in existing}
        added = [header for header in self.common if header[0] not in present]
        if b"content-security-policy" not in present:
            added.append((b"content-security-policy", policy or self.api_policy))
        hsts = self.settings.hsts
        if (hsts or (hsts is None and scheme in {"https", "wss"})) and (
            b"strict-transport-security" not in present
        ):
            added.append((b"strict-transport-security", self.hsts))
        return [*existing, *added]


def docs_policy(page: bytes) -> bytes:
    """The Content-Security-Policy of a docs page: its inline scripts by their hash."""
    hashes = "".join(f" {source_hash(script)}" for script in _INLINE_SCRIPT.findall(page))
    return DOCS_POLICY.format(hashes=hashes).encode("latin-1")
