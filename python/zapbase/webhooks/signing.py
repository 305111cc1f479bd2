"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

Each attempt carries `webhook-id` (the event id: the same on every retry, receivers dedupe
by it), `webhook-timestamp` (Unix seconds of this attempt) and `webhook-signature`: one
`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` per valid secret, space-separated (two
while a rotation overlaps). Secrets are `whsec_` + base64 of the key bytes.

    headers = sign_headers(["whsec_..."], msg_id, body)
    verify("whsec_...", headers, body)      # True, or raises InvalidSignature
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence

__all__ = ["InvalidSignature", "sign", "sign_headers", "verify"]

TOLERANCE_S = 300  # a receiver refuses timestamps further than this from its clock (replays)


class InvalidSignature(ValueError):
    """A delivery whose signature, timestamp or headers do not check out."""


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<signature>` of one secret over `id.timestamp.body`."""
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def sign_headers(
    secrets: Sequence[str], msg_id: str, body: bytes, *, timestamp: int | None = None
) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt, signed with every secret."""
    at = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(at),
        "webhook-signature": " ".join(sign(secret, msg_id, at, body) for secret in secrets),
    }


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> bool:
    """What a receiver does: the timestamp is recent and one of the signatures is ours."""
    try:
        msg_id, stamp, signatures = (headers["webhook-id"], headers["webhook-timestamp"],
                                     headers["webhook-signature"])  # fmt: skip
        timestamp = int(stamp)
    except (KeyError, ValueError) as exc:
        raise InvalidSignature(f"missing or malformed webhook headers: {exc}") from None
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_S:
        raise InvalidSignature("timestamp outside the tolerance window")
    expected = sign(secret, msg_id, timestamp, body)
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures.split(" ")):
        raise InvalidSignature("no matching signature")
    return True
