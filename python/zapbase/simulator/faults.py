"""Error answers in the shape Meta's Graph API uses, for the simulator's failure injection.

HTTP statuses: Meta answers most WhatsApp errors with HTTP 400 whatever the code, 190
(expired/invalid token) with 401, and its own outages with 5xx. For the throttling codes
(130429, 131056, 4, 80007) the simulator also answers 400 by default, because that is what
Graph does for rate limits, so clients must classify by `code` and never by status;
`fail_next_send(130429, http_status=429)` exercises the other behaviour seen in the field.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["CannedError", "bare_http_error", "meta_error", "webhook_error"]

_Entry = tuple[int, str, str | None]
# code → (HTTP status, error.message, error_data.details)
_CATALOGUE: Mapping[int, _Entry] = MappingProxyType(
    {
        0: (401, "(#0) AuthException", "We were unable to authenticate the app user"),
        4: (400, "(#4) Application request limit reached", None),
        10: (403, "(#10) Application does not have permission for this action", None),
        100: (400, "(#100) Invalid parameter", None),
        190: (401, "Error validating access token: Session has expired.", None),
        200: (403, "(#200) Permissions error", None),
        368: (400, "(#368) Temporarily blocked for policies violations", None),
        80007: (400, "(#80007) Rate limit issues", None),
        130429: (400, "(#130429) Rate limit hit", "Cloud API message throughput has been reached."),
        131000: (500, "(#131000) Something went wrong", "Something went wrong"),
        131005: (403, "(#131005) Access denied", "Permission is either not granted or removed"),
        131008: (400, "(#131008) Required parameter is missing", None),
        131009: (400, "(#131009) Parameter value is not valid", None),
        131016: (503, "(#131016) Service unavailable", "A service is temporarily unavailable."),
        131021: (400, "(#131021) Recipient cannot be sender", None),
        131026: (400, "(#131026) Message Undeliverable.", "Message Undeliverable."),
        131031: (400, "(#131031) Business Account locked", None),
        131042: (400, "(#131042) Business eligibility payment issue", None),
        131047: (
            400,
            "(#131047) Re-engagement message",
            "Message failed to send because more than 24 hours have passed since the customer "
            "last replied to this number.",
        ),
        131048: (400, "(#131048) Spam rate limit hit", None),
        131051: (400, "(#131051) Unsupported message type", None),
        131053: (400, "(#131053) Media upload error", None),
        131056: (
            400,
            "(#131056) (Business Account, Consumer Account) pair rate limit hit",
            "Message failed to send because there were too many messages sent from this phone "
            "number to the same phone number in a short period of time.",
        ),
        131057: (400, "(#131057) Business Account is in maintenance mode", None),
        132000: (400, "(#132000) Number of parameters does not match the expected number", None),
        132001: (404, "(#132001) Template name does not exist in the translation", None),
        132015: (400, "(#132015) Template is Paused", None),
        132016: (400, "(#132016) Template is Disabled", None),
    }
)
_SUBCODES: Mapping[int, int] = MappingProxyType({190: 463})


@dataclass(frozen=True, slots=True, kw_only=True)
class CannedError:
    """A canned error answer."""

    code: int | None
    http_status: int
    body: bytes
    content_type: str


def _fbtrace_id() -> str:
    return "A" + secrets.token_urlsafe(16)


def meta_error(
    code: int,
    *,
    http_status: int | None = None,
    message: str | None = None,
    details: str | None = None,
    subcode: int | None = None,
) -> CannedError:
    """Meta's `{"error": {...}}` body for `code`; unknown codes get a generic 400. The canned
    subcode (190 → 463, "session expired") goes only with the canned message."""
    status, canned, default_details = _CATALOGUE.get(code, (400, f"(#{code}) Simulated error", None))
    if subcode is None and message is None:
        subcode = _SUBCODES.get(code)
    error: dict[str, object] = {"message": message or canned, "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    details = details or default_details
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error["fbtrace_id"] = _fbtrace_id()
    return CannedError(
        code=code,
        http_status=http_status or status,
        body=json.dumps({"error": error}).encode(),
        content_type="application/json",
    )


def bare_http_error(http_status: int) -> CannedError:
    """An answer without a Graph body, as a proxy or load balancer in front of Meta gives."""
    html = f"<html><body><h1>{http_status}</h1>Simulated upstream error</body></html>"
    return CannedError(code=None, http_status=http_status, body=html.encode(), content_type="text/html")


def webhook_error(code: int) -> dict[str, object]:
    """An entry of a webhook `errors` array (failed status): code, title, message, details."""
    _, message, details = _CATALOGUE.get(code, (400, f"(#{code}) Simulated error", None))
    title = message.split(") ", 1)[-1]
    return {
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": details or title},
        "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }
