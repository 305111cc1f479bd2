"""Provider errors, keyed by what the fallback chain must do next.

Tree (the `decision` each class carries is what `zapbase.ai.chain` does with it)::

    ZapbaseError
    └── ProviderError
        ├── SpendLimitExceeded   stop_and_alert     402, or 400/429 whose message speaks of a
        │                                           spend/credit/billing/quota/usage limit,
        │                                           or OpenAI code `insufficient_quota`
        ├── RateLimited          next_provider      other 429s (cooldown, then next provider)
        ├── Overloaded           next_provider      529 / `overloaded_error`
        ├── ServerError          next_provider      other 5xx, malformed success bodies
        ├── ProviderTimeout      next_provider      408, client-side timeouts
        ├── ConnectionFailed     next_provider      DNS, refused, reset
        ├── ContextTooLong       next_larger_model  400 "prompt is too long" (Anthropic) or
        │                                           code `context_length_exceeded` (OpenAI)
        ├── AuthFailed           alert_and_next     401 / 403
        ├── RefusedEndpoint      alert_and_next     a tenant's base URL that is not https or
        │                                           resolves to a private/loopback address
        └── BadRequest           fatal              any other 4xx

`classify()` is the single place that turns an HTTP status plus the provider's error
body into one of these; both wire formats feed it. `openai_error()` reads the
OpenAI-compatible body (chat, embeddings, transcription, speech) and `transport_error()`
an httpx failure with no answer, for every provider client built on httpx.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import ClassVar

import httpx
from pydantic import BaseModel, ValidationError

from zapbase.errors import ZapbaseError

__all__ = [
    "AuthFailed",
    "BadRequest",
    "ConnectionFailed",
    "ContextTooLong",
    "Decision",
    "Overloaded",
    "ProviderError",
    "ProviderTimeout",
    "RateLimited",
    "RefusedEndpoint",
    "ServerError",
    "SpendLimitExceeded",
    "ZapbaseError",
    "classify",
    "openai_error",
    "retry_after_from_headers",
    "transport_error",
]


class Decision(enum.StrEnum):
    NEXT_PROVIDER = "next_provider"
    NEXT_LARGER_MODEL = "next_larger_model"
    STOP_AND_ALERT = "stop_and_alert"
    ALERT_AND_NEXT = "alert_and_next"
    FATAL = "fatal"


class ProviderError(ZapbaseError):
    """A provider call failed; `code` is the stable name stored in the usage log."""

    code: ClassVar[str] = "provider_error"
    decision: ClassVar[Decision] = Decision.FATAL

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        model: str | None = None,
        status_code: int | None = None,
        error_type: str | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status_code = status_code
        self.error_type = error_type
        self.retry_after = retry_after
        self.request_id = request_id

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, provider={self.provider!r}, "
            f"model={self.model!r}, status_code={self.status_code!r})"
        )


class SpendLimitExceeded(ProviderError):
    code = "spend_limit_exceeded"
    decision = Decision.STOP_AND_ALERT


class RateLimited(ProviderError):
    code = "rate_limited"
    decision = Decision.NEXT_PROVIDER


class Overloaded(ProviderError):
    code = "overloaded"
    decision = Decision.NEXT_PROVIDER


class ServerError(ProviderError):
    code = "server_error"
    decision = Decision.NEXT_PROVIDER


class ProviderTimeout(ProviderError):
    code = "timeout"
    decision = Decision.NEXT_PROVIDER


class ConnectionFailed(ProviderError):
    code = "connection_failed"
    decision = Decision.NEXT_PROVIDER


class ContextTooLong(ProviderError):
    code = "context_too_long"
    decision = Decision.NEXT_LARGER_MODEL


class AuthFailed(ProviderError):
    code = "auth_failed"
    decision = Decision.ALERT_AND_NEXT


class RefusedEndpoint(ProviderError):
    """The provider's URL is not called at all (SSRF guard): a configuration error to fix."""

    code = "refused_endpoint"
    decision = Decision.ALERT_AND_NEXT


class BadRequest(ProviderError):
    code = "bad_request"
    decision = Decision.FATAL


# "usage limit" covers Anthropic's "You have reached your specified API usage limits".
_SPEND_WORDS = re.compile(r"spend|credit|billing|quota|usage limit", re.IGNORECASE)
_CONTEXT_WORDS = re.compile(
    r"prompt is too long|context[ _]length|maximum context|context window", re.IGNORECASE
)


def classify(
    *,
    provider: str,
    model: str | None,
    status_code: int,
    message: str,
    error_type: str | None = None,
    error_code: str | None = None,
    retry_after: float | None = None,
    request_id: str | None = None,
) -> ProviderError:
    """Map an HTTP error response (status + parsed error body) to a ProviderError."""
    cls = _class_for(status_code, message, error_type, error_code)
    return cls(
        message or f"HTTP {status_code}",
        provider=provider,
        model=model,
        status_code=status_code,
        error_type=error_code or error_type,
        retry_after=retry_after,
        request_id=request_id,
    )


def _class_for(
    status: int, message: str, error_type: str | None, error_code: str | None
) -> type[ProviderError]:
    # Anthropic answers a drained credit balance with a 400, not a 429: check it first.
    if (
        status == 402
        or error_code == "insufficient_quota"
        or (status in (400, 429) and _SPEND_WORDS.search(message))
    ):
        return SpendLimitExceeded
    if status == 429:
        return RateLimited
    if status == 529 or error_type == "overloaded_error":
        return Overloaded
    if status == 408:
        return ProviderTimeout
    if status >= 500:
        return ServerError
    if status in (401, 403):
        return AuthFailed
    if status == 400 and (error_code == "context_length_exceeded" or _CONTEXT_WORDS.search(message)):
        return ContextTooLong
    return BadRequest


def retry_after_from_headers(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (HTTP-date form is ignored)."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            return max(0.0, float(raw) / scale)
        except ValueError:
            continue
    return None


class _OpenAIWireError(BaseModel):
    message: str = ""
    type: str | None = None
    code: str | int | None = None


class _OpenAIErrorBody(BaseModel):
    error: _OpenAIWireError


def openai_error(response: httpx.Response, *, provider: str, model: str) -> ProviderError:
    """The error of a failed OpenAI-compatible response (`{"error": {"message", "type",
    "code"}}`, or any other body as the message)."""
    try:
        wire = _OpenAIErrorBody.model_validate_json(response.content).error
    except ValidationError:
        wire = _OpenAIWireError(message=response.text[:500])
    return classify(
        provider=provider,
        model=model,
        status_code=response.status_code,
        message=wire.message,
        error_type=wire.type,
        error_code=None if wire.code is None else str(wire.code),
        retry_after=retry_after_from_headers(response.headers),
        request_id=response.headers.get("x-request-id"),
    )


def transport_error(exc: httpx.TransportError, *, provider: str, model: str) -> ProviderError:
    """A request that got no answer: timed out, or never connected."""
    if isinstance(exc, httpx.TimeoutException):
        return ProviderTimeout(str(exc) or "timeout", provider=provider, model=model)
    return ConnectionFailed(str(exc) or type(exc).__name__, provider=provider, model=model)
