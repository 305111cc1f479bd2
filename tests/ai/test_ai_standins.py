"""The stand-ins speak the real wire formats, including their failures."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from zapbase.ai import Usage
from zapbase.standins.ai import (
    AnthropicStandIn,
    Fault,
    FaultKind,
    OpenAIStandIn,
    Reply,
    anthropic_app,
    openai_app,
)

pytestmark = pytest.mark.anyio

ANTHROPIC_HEADERS = {"x-api-key": "sk-ant-test", "anthropic-version": "2023-06-01"}
MESSAGE = {"model": "claude-haiku-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "Oi"}]}


@pytest.fixture
async def anthropic_http(anthropic_fake: AnthropicStandIn) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=anthropic_fake.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://a.test") as http:
        yield http


@pytest.fixture
async def openai_http(openai_fake: OpenAIStandIn) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=openai_fake.app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://o.test", headers={"authorization": "Bearer sk-test"}
    ) as http:
        yield http


async def test_anthropic_message_has_the_messages_api_shape(
    anthropic_http: httpx.AsyncClient, anthropic_fake: AnthropicStandIn
) -> None:
    anthropic_fake.push(
        Reply(
            text="Oi!",
            usage=Usage(input_tokens=3, output_tokens=2, cache_read_tokens=40, cache_write_tokens=9),
        )
    )

    response = await anthropic_http.post("/v1/messages", json=MESSAGE, headers=ANTHROPIC_HEADERS)

    body = response.json()
    assert response.status_code == 200 and response.headers["request-id"].startswith("req_")
    assert body["id"].startswith("msg_")
    assert {k: body[k] for k in ("type", "role", "model", "stop_reason", "content")} == {
        "type": "message",
        "role": "assistant",
        "model": "claude-haiku-4-5",
        "stop_reason": "end_turn",
        "content": [{"type": "text", "text": "Oi!"}],
    }
    assert body["usage"] == {
        "input_tokens": 3,
        "output_tokens": 2,
        "cache_creation_input_tokens": 9,
        "cache_read_input_tokens": 40,
    }


@pytest.mark.parametrize(
    ("headers", "status", "kind"),
    [
        ({"anthropic-version": "2023-06-01"}, 401, "authentication_error"),
        ({"x-api-key": "wrong", "anthropic-version": "2023-06-01"}, 401, "authentication_error"),
        ({"x-api-key": "sk-ant-test"}, 400, "invalid_request_error"),
    ],
)
async def test_anthropic_rejects_bad_headers_in_its_error_format(
    anthropic_http: httpx.AsyncClient, headers: dict[str, str], status: int, kind: str
) -> None:
    response = await anthropic_http.post("/v1/messages", json=MESSAGE, headers=headers)

    assert response.status_code == status
    body = response.json()
    assert body["type"] == "error" and body["error"]["type"] == kind
    assert body["request_id"] == response.headers["request-id"]


async def test_anthropic_rejects_temperature_from_api_version_2026_10_21(
    anthropic_http: httpx.AsyncClient,
) -> None:
    payload = {**MESSAGE, "temperature": 1.0}
    old = await anthropic_http.post("/v1/messages", json=payload, headers=ANTHROPIC_HEADERS)
    new = await anthropic_http.post(
        "/v1/messages", json=payload, headers={**ANTHROPIC_HEADERS, "anthropic-version": "2026-10-21"}
    )

    assert old.status_code == 200
    assert new.status_code == 400
    assert new.json()["error"]["message"] == "temperature: Extra inputs are not permitted"


async def test_anthropic_invalid_body_is_an_invalid_request(
    anthropic_http: httpx.AsyncClient, anthropic_fake: AnthropicStandIn
) -> None:
    response = await anthropic_http.post(
        "/v1/messages", json={"model": "m", "messages": []}, headers=ANTHROPIC_HEADERS
    )

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert not anthropic_fake.calls


async def test_anthropic_overloaded_fault_is_a_529_with_retry_after(
    anthropic_http: httpx.AsyncClient, anthropic_fake: AnthropicStandIn
) -> None:
    anthropic_fake.push(Fault(kind=FaultKind.OVERLOADED, retry_after=2))

    response = await anthropic_http.post("/v1/messages", json=MESSAGE, headers=ANTHROPIC_HEADERS)
    after = await anthropic_http.post("/v1/messages", json=MESSAGE, headers=ANTHROPIC_HEADERS)

    assert response.status_code == 529 and response.headers["retry-after"] == "2"
    assert response.json()["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert after.status_code == 200  # the script is consumed one call at a time


async def test_reply_is_cut_at_max_tokens(
    anthropic_http: httpx.AsyncClient, anthropic_fake: AnthropicStandIn
) -> None:
    anthropic_fake.push(Reply(text="x" * 100))

    response = await anthropic_http.post(
        "/v1/messages", json={**MESSAGE, "max_tokens": 5}, headers=ANTHROPIC_HEADERS
    )

    body = response.json()
    assert body["stop_reason"] == "max_tokens" and body["content"][0]["text"] == "x" * 20


async def test_script_can_be_programmed_over_http(
    anthropic_http: httpx.AsyncClient, anthropic_fake: AnthropicStandIn
) -> None:
    programmed = await anthropic_http.post(
        "/_standin/script",
        json=[{"kind": "rate_limit", "retry_after": 1}, {"kind": "reply", "text": "Voltei"}],
    )

    assert programmed.status_code == 204
    assert list(anthropic_fake.script) == [
        Fault(kind=FaultKind.RATE_LIMIT, retry_after=1),
        Reply(text="Voltei"),
    ]


async def test_openai_chat_reports_cached_tokens_inside_prompt_tokens(
    openai_http: httpx.AsyncClient, openai_fake: OpenAIStandIn
) -> None:
    openai_fake.push(Reply(usage=Usage(input_tokens=10, output_tokens=4, cache_read_tokens=90)))

    response = await openai_http.post(
        "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Oi"}]}
    )

    body = response.json()
    assert response.headers["x-request-id"].startswith("req_")
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Resposta do GPT.",
        "refusal": None,
    }
    assert body["usage"]["prompt_tokens"] == 100
    assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 90}


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        (FaultKind.RATE_LIMIT, 429, "rate_limit_exceeded"),
        (FaultKind.SPEND_LIMIT, 429, "insufficient_quota"),
        (FaultKind.CONTEXT_TOO_LONG, 400, "context_length_exceeded"),
        (FaultKind.AUTH, 401, "invalid_api_key"),
        (FaultKind.OVERLOADED, 503, None),
    ],
)
async def test_openai_faults_use_openai_error_codes(
    openai_http: httpx.AsyncClient, openai_fake: OpenAIStandIn, kind: FaultKind, status: int, code: str | None
) -> None:
    openai_fake.push(Fault(kind=kind))

    response = await openai_http.post("/v1/embeddings", json={"model": "m", "input": "oi"})

    assert response.status_code == status
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert response.json()["error"]["code"] == code


async def test_openai_requires_a_bearer_key(openai_fake: OpenAIStandIn) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=openai_fake.app)) as http:
        response = await http.post("http://o.test/v1/embeddings", json={"model": "m", "input": "a"})

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "invalid_request_error"


async def test_openai_embeddings_default_to_the_model_width(openai_http: httpx.AsyncClient) -> None:
    response = await openai_http.post("/v1/embeddings", json={"model": "m", "input": "oi"})

    assert len(response.json()["data"][0]["embedding"]) == 1536


async def test_transcription_plain_json_format(openai_http: httpx.AsyncClient) -> None:
    response = await openai_http.post(
        "/v1/audio/transcriptions",
        files={"file": ("a.ogg", b"123", "audio/ogg")},
        data={"model": "whisper-1"},
    )

    assert response.json() == {"text": "Olá, gostaria de saber o horário de atendimento."}


async def test_simulated_latency_and_zero_latency_mode() -> None:
    slow = AnthropicStandIn(latency_ms=80)
    fast = AnthropicStandIn()
    timings = []
    for stand_in in (slow, fast):
        transport = httpx.ASGITransport(app=stand_in.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://a.test") as http:
            started = time.perf_counter()
            await http.post("/v1/messages", json=MESSAGE, headers=ANTHROPIC_HEADERS)
            timings.append(time.perf_counter() - started)

    assert timings[0] >= 0.08 > timings[1]


def test_uvicorn_factories_build_fresh_apps() -> None:
    assert isinstance(anthropic_app(), FastAPI) and anthropic_app() is not anthropic_app()
    assert isinstance(openai_app(), FastAPI)
