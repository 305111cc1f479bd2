"""Meta error bodies map to typed errors whose kind tells the sender what to do."""

from __future__ import annotations

import json

import pytest

from zapbase.errors import ZapbaseError
from zapbase.whatsapp import errors as e
from zapbase.whatsapp.errors import ErrorKind


def body(code: int, message: str = "msg", details: str | None = None, **extra: object) -> bytes:
    error: dict[str, object] = {"message": message, "type": "OAuthException", "code": code}
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error["fbtrace_id"] = "AbCdEf123"
    error.update(extra)
    return json.dumps({"error": error}).encode()


@pytest.mark.parametrize(
    ("code", "status", "cls", "kind", "retryable"),
    [
        (131047, 400, e.WindowClosed, ErrorKind.WINDOW_CLOSED, False),
        (130429, 400, e.ThroughputLimit, ErrorKind.RATE_LIMITED, True),
        (130429, 429, e.ThroughputLimit, ErrorKind.RATE_LIMITED, True),
        (131056, 400, e.PairRateLimit, ErrorKind.RATE_LIMITED, True),
        (131057, 400, e.TransientError, ErrorKind.TRANSIENT, True),
        (131016, 503, e.TransientError, ErrorKind.TRANSIENT, True),
        (131000, 500, e.TransientError, ErrorKind.TRANSIENT, True),
        (131026, 400, e.Undeliverable, ErrorKind.UNDELIVERABLE, False),
        (131050, 400, e.RecipientRejected, ErrorKind.UNDELIVERABLE, False),
        (190, 401, e.TokenExpired, ErrorKind.AUTH, False),
        (0, 401, e.AuthorizationError, ErrorKind.AUTH, False),
        (10, 403, e.AuthorizationError, ErrorKind.AUTH, False),
        (250, 403, e.AuthorizationError, ErrorKind.AUTH, False),
        (368, 400, e.AccountRestricted, ErrorKind.ACCOUNT, False),
        (100, 400, e.InvalidRequest, ErrorKind.INVALID_REQUEST, False),
        (131009, 400, e.InvalidRequest, ErrorKind.INVALID_REQUEST, False),
        (132001, 404, e.TemplateError, ErrorKind.INVALID_REQUEST, False),
        (132015, 400, e.TemplateError, ErrorKind.INVALID_REQUEST, False),
        (131053, 400, e.MediaError, ErrorKind.INVALID_REQUEST, False),
    ],
)
def test_code_resolves_class_and_decision(
    code: int, status: int, cls: type[e.WhatsAppError], kind: ErrorKind, retryable: bool
) -> None:
    error = e.error_from_response(status, body(code, details="why"))
    assert type(error) is cls
    assert error.kind is kind
    assert error.retryable is retryable
    assert (error.code, error.details, error.http_status) == (code, "why", status)
    assert error.fbtrace_id == "AbCdEf123"


def test_full_meta_body_is_parsed() -> None:
    raw = body(
        190,
        "Error validating access token: Session has expired on Tuesday.",
        error_subcode=463,
    )
    error = e.error_from_response(401, raw)
    assert isinstance(error, e.TokenExpired)
    assert isinstance(error, e.AuthorizationError)
    assert error.subcode == 463
    assert error.title.startswith("Error validating access token")
    assert error.raw == json.loads(raw)
    assert "[190/463]" in str(error)
    assert "(HTTP 401)" in str(error)


def test_pair_rate_limit_backs_off_4_to_the_x_seconds() -> None:
    error = e.error_from_response(400, body(131056))
    assert [error.backoff(x) for x in range(4)] == [1.0, 4.0, 16.0, 64.0]
    assert error.backoff(20) == 900.0


def test_non_retryable_errors_have_no_backoff() -> None:
    assert e.error_from_response(400, body(131047)).backoff(0) is None


@pytest.mark.parametrize(
    ("status", "raw", "cls", "retryable"),
    [
        (502, b"<html>Bad Gateway</html>", e.ServerError, True),
        (500, b"", e.ServerError, True),
        (429, b"slow down", e.ThrottlingError, True),
        (401, b"nope", e.AuthorizationError, False),
        (404, b"not json", e.WhatsAppError, False),
        (400, b'{"unexpected": true}', e.WhatsAppError, False),
    ],
)
def test_bodies_without_a_graph_error_fall_back_to_http_status(
    status: int, raw: bytes, cls: type[e.WhatsAppError], retryable: bool
) -> None:
    error = e.error_from_response(status, raw)
    assert type(error) is cls
    assert error.retryable is retryable
    assert error.code is None


def test_unknown_code_follows_meta_is_transient_flag() -> None:
    transient = e.error_from_response(400, body(999999, is_transient=True))
    permanent = e.error_from_response(400, body(999999, is_transient=False))
    assert type(transient) is e.WhatsAppError
    assert transient.kind is ErrorKind.UNKNOWN
    assert transient.retryable
    assert not permanent.retryable


def test_unknown_code_with_5xx_is_a_server_error() -> None:
    error = e.error_from_response(503, body(999999))
    assert isinstance(error, e.ServerError)
    assert error.retryable


def test_webhook_status_error_is_classified() -> None:
    error = e.error_from_webhook(
        {
            "code": 131047,
            "title": "Re-engagement message",
            "message": "Re-engagement message",
            "error_data": {"details": "Message failed to send because more than 24 hours..."},
        }
    )
    assert isinstance(error, e.WindowClosed)
    assert error.http_status is None
    assert error.details is not None
    assert error.details.startswith("Message failed")


def test_every_listed_code_resolves_to_the_class_that_lists_it() -> None:
    classes: list[type[e.WhatsAppError]] = [e.WhatsAppError]
    seen = 0
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        for code in cls.__dict__.get("__error_codes__", ()):
            assert type(e.error_from_response(400, body(code))) is cls
            seen += 1
    assert seen > 130  # 200-299 and 132000-132016 included


def test_transport_errors_are_retryable() -> None:
    assert e.GraphTimeout("timed out").retryable
    assert e.GraphConnectionError("refused").kind is ErrorKind.TRANSIENT
    assert not e.UnexpectedResponse("no id").retryable


def test_graph_errors_are_zapbase_errors_the_cli_reports() -> None:
    """The CLI prints any ZapbaseError's message instead of a traceback."""
    error = e.error_from_response(401, body(190, "Error validating access token"))
    assert isinstance(error, ZapbaseError) and str(error) == "[190] Error validating access token (HTTP 401)"
    assert isinstance(e.GraphTimeout("send timed out"), ZapbaseError)
