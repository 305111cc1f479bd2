"""`X-Hub-Signature-256` of webhook POSTs: HMAC-SHA256 of the raw body, keyed by the App Secret.

Meta signs the bytes it sends (an escaped-unicode JSON), so the digest must be computed over
the raw request body before any JSON parsing; re-serialising the parsed payload gives a
different digest. Several secrets are accepted so an App Secret can be rotated without
dropping webhooks.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

__all__ = ["HEADER", "sign", "verify"]

HEADER = "X-Hub-Signature-256"
_PREFIX = "sha256="


def sign(body: bytes, secret: str) -> str:
    """The header value Meta would send for `body`: `sha256=<lowercase hex>`."""
    if not secret:
        raise ValueError("an empty app secret would let anyone sign webhooks")
    return _PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secrets: Iterable[str]) -> bool:
    """True when `header` is a valid signature of `body` under any non-empty secret."""
    if not header or not header.startswith(_PREFIX):
        return False
    received = header[len(_PREFIX) :].encode("ascii", errors="replace")
    matched = False
    for secret in secrets:
        if not secret:
            continue
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest().encode()
        # Check every secret so the time taken does not tell which one matched.
        matched |= hmac.compare_digest(expected, received)
    return matched
