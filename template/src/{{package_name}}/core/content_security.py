"""Content-Security-Policy sources, for pages that admit their own inline code by hash."""

import base64
import hashlib


def source_hash(content: bytes) -> str:
    """The CSP source that admits an inline script or style of exactly ``content``."""
    return f"'sha256-{base64.b64encode(hashlib.sha256(content).digest()).decode()}'"
