"""Error classification: HTTP status + provider error body → ProviderError class."""

from __future__ import annotations

import pytest

from zapbase.ai import (
    AuthFailed,
    BadRequest,
    ContextTooLong,
    Decision,
    Overloaded,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    RefusedEndpoint,
    ServerError,
    SpendLimitExceeded,
)
from zapbase.ai.errors import classify, retry_after_from_headers


@pytest.mark.parametrize(
    ("status", "message", "error_type", "code", "expected"),
    [
        (
            429,
            "Number of request tokens has exceeded your per-minute rate limit",
            "rate_limit_error",
            None,
            RateLimited,
        ),
        (
            429,
            "This request would exceed your organization's monthly spend limit",
            "rate_limit_error",
            None,
            SpendLimitExceeded,
        ),
        (
            429,
            "You have reached your specified API usage limits",
            "rate_limit_error",
            None,
            SpendLimitExceeded,
        ),
        (
            429,
            "You exceeded your current quota",
            "insufficient_quota",
            "insufficient_quota",
            SpendLimitExceeded,
        ),
        (402, "Payment required", None, None, SpendLimitExceeded),
        (
            400,
            "Your credit balance is too low to access the Anthropic API",
            "invalid_request_error",
            None,
            SpendLimitExceeded,
        ),
        (529, "Overloaded", "overloaded_error", None, Overloaded),
        (500, "Internal server error", "api_error", None, ServerError),
        (503, "Service unavailable", None, None, ServerError),
        (408, "Request timeout", None, None, ProviderTimeout),
        (
            400,
            "prompt is too long: 215883 tokens > 200000 maximum",
            "invalid_request_error",
            None,
            ContextTooLong,
        ),
        (
            400,
            "This model's maximum context length is 128000 tokens",
            "invalid_request_error",
            "context_length_exceeded",
            ContextTooLong,
        ),
        (401, "invalid x-api-key", "authentication_error", None, AuthFailed),
        (403, "Your API key does not have permission", "permission_error", None, AuthFailed),
        (400, "messages: roles must alternate", "invalid_request_error", None, BadRequest),
        (404, "model: claude-9", "not_found_error", None, BadRequest),
        (413, "Request exceeds the maximum allowed number of bytes", "request_too_large", None, BadRequest),
    ],
)
def test_classify_maps_status_and_body(
    status: int, message: str, error_type: str | None, code: str | None, expected: type[ProviderError]
) -> None:
    error = classify(
        provider="p", model="m", status_code=status, message=message, error_type=error_type, error_code=code
    )

    assert type(error) is expected
    assert (error.status_code, error.message, error.provider) == (status, message, "p")


@pytest.mark.parametrize(
    ("error", "decision"),
    [
        (SpendLimitExceeded, Decision.STOP_AND_ALERT),
        (RateLimited, Decision.NEXT_PROVIDER),
        (Overloaded, Decision.NEXT_PROVIDER),
        (ServerError, Decision.NEXT_PROVIDER),
        (ProviderTimeout, Decision.NEXT_PROVIDER),
        (ContextTooLong, Decision.NEXT_LARGER_MODEL),
        (AuthFailed, Decision.ALERT_AND_NEXT),
        (RefusedEndpoint, Decision.ALERT_AND_NEXT),
        (BadRequest, Decision.FATAL),
    ],
)
def test_each_error_carries_its_decision(error: type[ProviderError], decision: Decision) -> None:
    assert error("x", provider="p").decision is decision


def test_error_codes_are_unique() -> None:
    codes = [cls.code for cls in ProviderError.__subclasses__()]
    assert len(codes) == len(set(codes)) == 10


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "12"}, 12.0),
        ({"retry-after-ms": "250", "retry-after": "1"}, 0.25),
        ({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}, None),
        ({}, None),
    ],
)
def test_retry_after_from_headers(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_after_from_headers(headers) == seconds
