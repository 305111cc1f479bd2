"""Errors of the WhatsApp Cloud API client, resolved from Meta's error code.

The sender decides what to do with a failed send from `WhatsAppError.kind` (and
`retryable` / `backoff()`), never from the HTTP status or the message text: Meta
documents the codes, and answers most of them with HTTP 400 whatever they mean.

Our hierarchy (`WhatsAppError` is a `zapbase.errors.ZapbaseError`)::

    WhatsAppError                       code, subcode, title, details, fbtrace_id, http_status, raw
    ├── GraphTransportError             no answer from Graph                     TRANSIENT
    │   ├── GraphTimeout
    │   └── GraphConnectionError
    ├── UnexpectedResponse              2xx whose body is not what Meta documents UNKNOWN
    ├── ServerError                     HTTP 5xx without a known code            TRANSIENT
    ├── ThrottlingError                                                          RATE_LIMITED
    │   ├── TooManyApiCalls             4, 80007 (app / WABA call rate)
    │   ├── ThroughputLimit             130429 (messages per second of a number)
    │   └── PairRateLimit               131056 (1 msg / 6 s to one user; backoff 4^X s)
    ├── TransientError                  1, 2 (Graph unknown / service down),     TRANSIENT
    │                                   131000 generic, 131016 unavailable,
    │                                   131057 maintenance/upgrade
    ├── WindowClosed                    131047 (24 h window; only a template)    WINDOW_CLOSED
    ├── RecipientError                                                           UNDELIVERABLE
    │   ├── Undeliverable               131026 (not on WhatsApp, old client, ToS)
    │   └── RecipientRejected           131021, 131030, 131049, 131050, 131062, 130472
    ├── AuthorizationError              0, 3, 10, 200-299, 131005                AUTH (alert)
    │   └── TokenExpired                190 (HTTP 401)
    ├── AccountRestricted               368, 131031, 131042, 131045, 131048,     ACCOUNT (alert)
    │                                   131064, 130497, 133010
    └── InvalidRequest                  100, 131008, 131009, 131051              INVALID_REQUEST
        ├── MediaError                  131052, 131053
        └── TemplateError               132000-132016 (132015 paused, 132016 disabled)

    MessageValidationError(ValueError)  raised before any HTTP call when a payload
                                        breaks one of Meta's documented limits

Codes nobody listed fall back to Meta's `is_transient` flag and then to the HTTP
status (5xx → `ServerError`, else a plain `WhatsAppError` of kind UNKNOWN).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from zapbase.errors import ZapbaseError

__all__ = [
    "AccountRestricted",
    "AuthorizationError",
    "ErrorKind",
    "GraphConnectionError",
    "GraphTimeout",
    "GraphTransportError",
    "InvalidRequest",
    "MediaError",
    "MessageValidationError",
    "PairRateLimit",
    "RecipientError",
    "RecipientRejected",
    "ServerError",
    "TemplateError",
    "ThrottlingError",
    "ThroughputLimit",
    "TokenExpired",
    "TooManyApiCalls",
    "TransientError",
    "Undeliverable",
    "UnexpectedResponse",
    "WhatsAppError",
    "WindowClosed",
    "error_from_response",
    "error_from_webhook",
]

# Meta gives no cap for the 4^X pair backoff; past 15 min the message is stale anyway.
_MAX_BACKOFF_S = 900.0


class ErrorKind(enum.StrEnum):
    """What the sender should do about a failed request."""

    RATE_LIMITED = "rate_limited"  # retry after backoff()
    TRANSIENT = "transient"  # retry after backoff()
    WINDOW_CLOSED = "window_closed"  # 24 h window closed: only an approved template can go
    UNDELIVERABLE = "undeliverable"  # this recipient cannot get it: fail the message
    AUTH = "auth"  # token or permission broken: alert, pause the number
    ACCOUNT = "account"  # account blocked, restricted or unpaid: alert
    INVALID_REQUEST = "invalid_request"  # our payload or template is wrong: fail, fix
    UNKNOWN = "unknown"


_RETRYABLE_KINDS = frozenset({ErrorKind.RATE_LIMITED, ErrorKind.TRANSIENT})


class WhatsAppError(ZapbaseError):
    """A request to the Graph API failed; see the module docstring for the tree."""

    __error_codes__: ClassVar[Iterable[int]] = ()
    kind: ClassVar[ErrorKind] = ErrorKind.UNKNOWN
    # Base of the exponential backoff in seconds: wait base**attempt.
    backoff_base: ClassVar[float] = 2.0

    def __init__(
        self,
        title: str,
        *,
        code: int | None = None,
        subcode: int | None = None,
        details: str | None = None,
        fbtrace_id: str | None = None,
        http_status: int | None = None,
        is_transient: bool | None = None,
        raw: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(title)
        self.title = title
        self.code = code
        self.subcode = subcode
        self.details = details
        self.fbtrace_id = fbtrace_id
        self.http_status = http_status
        self.is_transient = is_transient
        self.raw: Mapping[str, Any] = raw if raw is not None else {}

    @property
    def retryable(self) -> bool:
        if self.kind is ErrorKind.UNKNOWN and self.is_transient is not None:
            return self.is_transient
        return self.kind in _RETRYABLE_KINDS

    def backoff(self, attempt: int) -> float | None:
        """Seconds to wait before retry number `attempt` (0-based), or None: don't retry."""
        if not self.retryable:
            return None
        return min(self.backoff_base ** max(attempt, 0), _MAX_BACKOFF_S)

    def __str__(self) -> str:
        parts = [self.title]
        if self.code is not None:
            parts.insert(0, f"[{self.code}{f'/{self.subcode}' if self.subcode else ''}]")
        if self.details and self.details != self.title:
            parts.append(f"- {self.details}")
        if self.http_status is not None:
            parts.append(f"(HTTP {self.http_status})")
        return " ".join(parts)


class GraphTransportError(WhatsAppError):
    """No HTTP answer: the message may or may not have been accepted by Meta."""

    kind = ErrorKind.TRANSIENT


class GraphTimeout(GraphTransportError):
    pass


class GraphConnectionError(GraphTransportError):
    pass


class UnexpectedResponse(WhatsAppError):
    """A success status whose body lacks what Meta documents (e.g. no wamid)."""


class ServerError(WhatsAppError):
    kind = ErrorKind.TRANSIENT


class ThrottlingError(WhatsAppError):
    kind = ErrorKind.RATE_LIMITED


class TooManyApiCalls(ThrottlingError):
    __error_codes__ = (4, 80007)


class ThroughputLimit(ThrottlingError):
    __error_codes__ = (130429,)


class PairRateLimit(ThrottlingError):
    """Too many messages to one user; Meta says retry after 4^X seconds."""

    __error_codes__ = (131056,)
    backoff_base = 4.0


class TransientError(WhatsAppError):
    __error_codes__ = (1, 2, 131000, 131016, 131057)
    kind = ErrorKind.TRANSIENT


class WindowClosed(WhatsAppError):
    """More than 24 h since the user last wrote: only a template message can go."""

    __error_codes__ = (131047,)
    kind = ErrorKind.WINDOW_CLOSED


class RecipientError(WhatsAppError):
    kind = ErrorKind.UNDELIVERABLE


class Undeliverable(RecipientError):
    __error_codes__ = (131026,)


class RecipientRejected(RecipientError):
    """Recipient is the sender, not an allowed test number, opted out of marketing,
    held back for ecosystem engagement, unreachable by user id, or in an experiment."""

    __error_codes__ = (131021, 131030, 131049, 131050, 131062, 130472)


class AuthorizationError(WhatsAppError):
    __error_codes__ = (0, 3, 10, *range(200, 300), 131005)
    kind = ErrorKind.AUTH


class TokenExpired(AuthorizationError):
    __error_codes__ = (190,)


class AccountRestricted(WhatsAppError):
    """Blocked by policy, locked, payment issue, number not registered, spam or
    template-quality limits, country restricted."""

    __error_codes__ = (368, 131031, 131042, 131045, 131048, 131064, 130497, 133010)
    kind = ErrorKind.ACCOUNT


class InvalidRequest(WhatsAppError):
    __error_codes__: ClassVar[Iterable[int]] = (100, 131008, 131009, 131051)
    kind = ErrorKind.INVALID_REQUEST


class MediaError(InvalidRequest):
    __error_codes__ = (131052, 131053)


class TemplateError(InvalidRequest):
    __error_codes__ = tuple(range(132000, 132017))


class MessageValidationError(ValueError):
    """An outbound payload breaks a documented Meta limit; raised before any HTTP call."""

    def __init__(self, field: str, limit: str, message: str) -> None:
        super().__init__(f"{field}: {message} (limit: {limit})")
        self.field = field
        self.limit = limit


def _build_code_map() -> Mapping[int, type[WhatsAppError]]:
    by_code: dict[int, type[WhatsAppError]] = {}
    pending: list[type[WhatsAppError]] = [WhatsAppError]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        # A class's own codes only, not inherited ones: a leaf must not claim its base's codes.
        for code in cls.__dict__.get("__error_codes__", ()):
            if code in by_code:
                raise RuntimeError(f"error code {code} claimed twice")
            by_code[code] = cls
    return MappingProxyType(by_code)


_BY_CODE = _build_code_map()


def _int_or_none(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _from_error_object(
    error: Mapping[str, Any], *, http_status: int | None, raw: Mapping[str, Any]
) -> WhatsAppError:
    code = _int_or_none(error.get("code"))
    error_data = error.get("error_data")
    details = _str_or_none(error_data.get("details")) if isinstance(error_data, Mapping) else None
    title = (
        _str_or_none(error.get("message"))
        or _str_or_none(error.get("title"))
        or _str_or_none(error.get("error_user_title"))
        or "WhatsApp error"
    )
    transient = error.get("is_transient")
    cls = _BY_CODE.get(code) if code is not None else None
    if cls is None:
        cls = ServerError if http_status is not None and http_status >= 500 else WhatsAppError
    return cls(
        title,
        code=code,
        subcode=_int_or_none(error.get("error_subcode")),
        details=details or _str_or_none(error.get("error_user_msg")),
        fbtrace_id=_str_or_none(error.get("fbtrace_id")),
        http_status=http_status,
        is_transient=transient if isinstance(transient, bool) else None,
        raw=raw,
    )


def error_from_response(http_status: int, body: bytes) -> WhatsAppError:
    """Parse a failed Graph response: `{"error": {"message", "type", "code", "error_subcode",
    "error_data": {"messaging_product", "details"}, "fbtrace_id"}}`."""
    try:
        parsed: object = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if isinstance(parsed, Mapping) and isinstance(parsed.get("error"), Mapping):
        return _from_error_object(parsed["error"], http_status=http_status, raw=parsed)
    text = body[:200].decode("utf-8", errors="replace").strip() or "no body"
    title = f"HTTP {http_status} without a Graph error body: {text}"
    if http_status >= 500:
        return ServerError(title, http_status=http_status)
    if http_status == 429:
        return ThrottlingError(title, http_status=http_status)
    if http_status == 401:
        return AuthorizationError(title, http_status=http_status)
    return WhatsAppError(title, http_status=http_status)


def error_from_webhook(error: Mapping[str, Any]) -> WhatsAppError:
    """Classify one entry of a webhook `errors` array (`statuses[].errors`, `value.errors`,
    `messages[].errors`): `{"code", "title", "message", "error_data": {"details"}}`."""
    return _from_error_object(error, http_status=None, raw=error)
