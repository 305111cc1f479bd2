"""Provider clients: usage mapping from literal wire payloads, error mapping, audio, embeddings."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import httpx2
import pytest

from zapbase.ai import (
    AnthropicProvider,
    AuthFailed,
    BadRequest,
    ChatResult,
    ConnectionFailed,
    ContextTooLong,
    EmbeddingRequest,
    OpenAICompatProvider,
    Overloaded,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    ServerError,
    SpendLimitExceeded,
    TranscriptionRequest,
    Usage,
)
from zapbase.standins.ai import AnthropicStandIn, Fault, FaultKind, OpenAIStandIn

from .support import KNOWLEDGE, ask

pytestmark = pytest.mark.anyio

# Shaped like https://docs.anthropic.com/en/api/messages responses.
ANTHROPIC_MESSAGE = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [{"type": "text", "text": "Olá! "}, {"type": "text", "text": "Claro."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 25,
        "output_tokens": 310,
        "cache_creation_input_tokens": 1800,
        "cache_read_input_tokens": 12000,
    },
}
# Shaped like https://platform.openai.com/docs/api-reference/chat/object.
OPENAI_COMPLETION = {
    "id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
    "object": "chat.completion",
    "created": 1741570283,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Claro!", "refusal": None},
            "logprobs": None,
            "finish_reason": "length",
        }
    ],
    "usage": {
        "prompt_tokens": 2006,
        "completion_tokens": 300,
        "total_tokens": 2306,
        "prompt_tokens_details": {"cached_tokens": 1920, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}


Handler = Callable[[Any], Any]


@pytest.fixture
async def anthropic_with() -> AsyncIterator[Callable[[Handler], AnthropicProvider]]:
    """An AnthropicProvider whose HTTP is answered by `handler` (httpx2.MockTransport)."""
    clients: list[httpx2.AsyncClient] = []

    def make(handler: Handler) -> AnthropicProvider:
        clients.append(httpx2.AsyncClient(transport=httpx2.MockTransport(handler)))
        return AnthropicProvider(api_key="k", base_url="http://anthropic.test", client=clients[-1])

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def openai_with() -> AsyncIterator[Callable[[Handler], OpenAICompatProvider]]:
    """An OpenAICompatProvider whose HTTP is answered by `handler` (httpx.MockTransport)."""
    clients: list[httpx.AsyncClient] = []

    def make(handler: Handler) -> OpenAICompatProvider:
        clients.append(httpx.AsyncClient(transport=httpx.MockTransport(handler)))
        return OpenAICompatProvider(api_key="k", base_url="http://openai.test", client=clients[-1])

    yield make
    for client in clients:
        await client.aclose()


async def test_anthropic_usage_keeps_cache_reads_and_writes_apart(
    anthropic_with: Callable[[Handler], AnthropicProvider],
) -> None:
    provider = anthropic_with(
        lambda request: httpx2.Response(200, json=ANTHROPIC_MESSAGE, headers={"request-id": "req_1"})
    )

    result = await provider.chat(ask("Oi"), "claude-sonnet-4-6")

    assert result.text == "Olá! Claro."
    assert result.usage == Usage(
        input_tokens=25, output_tokens=310, cache_read_tokens=12000, cache_write_tokens=1800
    )
    assert (result.request_id, result.stop_reason) == ("req_1", "end_turn")


async def test_openai_usage_excludes_cached_tokens_from_input(
    openai_with: Callable[[Handler], OpenAICompatProvider],
) -> None:
    provider = openai_with(
        lambda request: httpx.Response(200, json=OPENAI_COMPLETION, headers={"x-request-id": "r1"})
    )

    result = await provider.chat(ask("Oi"), "gpt-4o")

    assert result.usage == Usage(input_tokens=86, output_tokens=300, cache_read_tokens=1920)
    assert result.usage.total_tokens == 2306
    assert (result.model, result.request_id, result.stop_reason) == ("gpt-4o-2024-08-06", "r1", "max_tokens")


async def test_openai_usage_without_cache_details_as_groq_sends_it(
    openai_with: Callable[[Handler], OpenAICompatProvider],
) -> None:
    body = {**OPENAI_COMPLETION, "usage": {"prompt_tokens": 50, "completion_tokens": 7}}
    provider = openai_with(lambda request: httpx.Response(200, json=body))

    result = await provider.chat(ask("Oi"), "llama-3.3-70b-versatile")

    assert result.usage == Usage(input_tokens=50, output_tokens=7)


@pytest.mark.parametrize(
    ("kind", "error", "status"),
    [
        (FaultKind.RATE_LIMIT, RateLimited, 429),
        (FaultKind.SPEND_LIMIT, SpendLimitExceeded, 429),
        (FaultKind.OVERLOADED, Overloaded, 529),
        (FaultKind.SERVER_ERROR, ServerError, 500),
        (FaultKind.CONTEXT_TOO_LONG, ContextTooLong, 400),
        (FaultKind.AUTH, AuthFailed, 401),
    ],
)
async def test_anthropic_errors_map_to_provider_errors(
    anthropic_provider: AnthropicProvider,
    anthropic_fake: AnthropicStandIn,
    kind: FaultKind,
    error: type[ProviderError],
    status: int,
) -> None:
    anthropic_fake.push(Fault(kind=kind, retry_after=7))

    with pytest.raises(error) as caught:
        await anthropic_provider.chat(ask("Oi"), "claude-sonnet-4-6")

    assert caught.value.status_code == status
    assert caught.value.retry_after == 7
    assert caught.value.request_id is not None and caught.value.request_id.startswith("req_")
    assert len(anthropic_fake.calls) == 1  # the SDK's own retries are off


async def test_anthropic_low_credit_balance_is_a_spend_limit(
    anthropic_with: Callable[[Handler], AnthropicProvider],
) -> None:
    body = {
        "type": "error",
        "error": {
            "type": "invalid_request_error",
            "message": "Your credit balance is too low to access the Anthropic API.",
        },
    }
    provider = anthropic_with(lambda request: httpx2.Response(400, json=body))

    with pytest.raises(SpendLimitExceeded):
        await provider.chat(ask("Oi"), "claude-sonnet-4-6")


async def test_anthropic_connection_errors_map_to_connection_failed(
    anthropic_with: Callable[[Handler], AnthropicProvider],
) -> None:
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    provider = anthropic_with(refuse)

    with pytest.raises(ConnectionFailed):
        await provider.chat(ask("Oi"), "claude-sonnet-4-6")


async def test_anthropic_request_carries_prompt_cache_and_knowledge(
    anthropic_provider: AnthropicProvider, anthropic_fake: AnthropicStandIn
) -> None:
    await anthropic_provider.chat(ask("Oi", knowledge=KNOWLEDGE, temperature=0.3), "claude-sonnet-4-6")

    call = anthropic_fake.calls[-1]
    system = call.body["system"]
    assert system[0]["cache_control"] == {"type": "ephemeral"}
    assert KNOWLEDGE[0] in system[1]["text"]
    assert "temperature" not in call.body  # API 2026-10-21 rejects sampling parameters
    assert call.headers["anthropic-version"] and call.headers["authorization"] == "Bearer sk-ant-test"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (
            429,
            {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"},
            RateLimited,
        ),
        (
            429,
            {
                "message": "You exceeded your current quota",
                "type": "insufficient_quota",
                "code": "insufficient_quota",
            },
            SpendLimitExceeded,
        ),
        (
            400,
            {
                "message": "maximum context length is 8192 tokens",
                "type": "invalid_request_error",
                "code": "context_length_exceeded",
            },
            ContextTooLong,
        ),
        (
            401,
            {
                "message": "Incorrect API key provided",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            },
            AuthFailed,
        ),
        (
            404,
            {
                "message": "The model `gpt-9` does not exist",
                "type": "invalid_request_error",
                "code": "model_not_found",
            },
            BadRequest,
        ),
        (503, {"message": "The server is overloaded", "type": "server_error", "code": None}, ServerError),
    ],
)
async def test_openai_error_bodies_map_to_provider_errors(
    status: int,
    body: dict[str, Any],
    error: type[ProviderError],
    openai_with: Callable[[Handler], OpenAICompatProvider],
) -> None:
    provider = openai_with(
        lambda request: httpx.Response(
            status, json={"error": {**body, "param": None}}, headers={"retry-after-ms": "1500"}
        )
    )

    with pytest.raises(error) as caught:
        await provider.chat(ask("Oi"), "gpt-4o-mini")

    assert caught.value.retry_after == 1.5
    assert caught.value.provider == "openai"


async def test_openai_non_json_gateway_error_is_a_server_error(
    openai_with: Callable[[Handler], OpenAICompatProvider],
) -> None:
    provider = openai_with(lambda request: httpx.Response(502, text="<html>Bad Gateway</html>"))

    with pytest.raises(ServerError, match="Bad Gateway"):
        await provider.chat(ask("Oi"), "gpt-4o-mini")


async def test_openai_malformed_success_body_is_a_server_error(
    openai_with: Callable[[Handler], OpenAICompatProvider],
) -> None:
    provider = openai_with(lambda request: httpx.Response(200, json={"object": "chat.completion"}))

    with pytest.raises(ServerError, match="malformed"):
        await provider.chat(ask("Oi"), "gpt-4o-mini")


@pytest.mark.parametrize(
    ("exc", "error"), [(httpx.ReadTimeout, ProviderTimeout), (httpx.ConnectError, ConnectionFailed)]
)
async def test_openai_transport_errors(
    exc: type[httpx.TransportError],
    error: type[ProviderError],
    openai_with: Callable[[Handler], OpenAICompatProvider],
) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc("boom", request=request)

    with pytest.raises(error):
        await openai_with(fail).chat(ask("Oi"), "gpt-4o-mini")


async def test_openai_request_has_system_knowledge_and_temperature(
    openai_provider: OpenAICompatProvider, openai_fake: OpenAIStandIn
) -> None:
    await openai_provider.chat(ask("Oi", knowledge=KNOWLEDGE, temperature=0.2), "gpt-4o-mini")

    body = openai_fake.calls[-1].body
    assert body["messages"][0]["role"] == "system"
    assert KNOWLEDGE[1] in body["messages"][0]["content"]
    assert body["messages"][1] == {"role": "user", "content": "Oi"}
    assert (body["temperature"], body["max_completion_tokens"]) == (0.2, 1024)


async def test_transcription_through_the_openai_stand_in(
    openai_provider: OpenAICompatProvider, openai_fake: OpenAIStandIn
) -> None:
    audio = b"OggS" + bytes(11_996)

    result = await openai_provider.transcribe(
        TranscriptionRequest(audio=audio, mime="audio/ogg; codecs=opus", seconds=2.5)
    )

    assert result.text == "Olá, gostaria de saber o horário de atendimento."
    assert result.seconds == 3.0  # verbose_json duration wins over WhatsApp's estimate
    assert (result.provider, result.model) == ("openai", "whisper-1")
    call = openai_fake.calls_to("/v1/audio/transcriptions")[0]
    assert call.body == {
        "model": "whisper-1",
        "response_format": "verbose_json",
        "language": "pt",
        "filename": "audio.ogg",
        "content_type": "audio/ogg",
        "bytes": 12_000,
    }


async def test_transcription_uses_the_configured_model(openai_fake: OpenAIStandIn) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=openai_fake.app)) as http:
        groq = OpenAICompatProvider(
            api_key="sk-test",
            base_url="http://groq.test",
            name="groq",
            client=http,
            transcription_model="whisper-large-v3",
        )
        result = await groq.transcribe(TranscriptionRequest(audio=b"x" * 400))

    assert (result.provider, result.model) == ("groq", "whisper-large-v3")
    assert openai_fake.calls[-1].body["model"] == "whisper-large-v3"


async def test_embeddings_through_the_openai_stand_in(
    openai_provider: OpenAICompatProvider, openai_fake: OpenAIStandIn
) -> None:
    texts = ("Qual o horário de atendimento?", "horário de atendimento", "Aceitam Pix?")

    result = await openai_provider.embed(EmbeddingRequest(texts=texts))

    assert result.dimensions == 384 and len(result.vectors) == 3
    assert all(len(v) == 384 for v in result.vectors)
    assert openai_fake.calls[-1].body["dimensions"] == 384
    assert result.tokens > 0

    def dot(a: tuple[float, ...], b: tuple[float, ...]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert dot(result.vectors[0], result.vectors[1]) > dot(result.vectors[0], result.vectors[2])


async def test_embeddings_of_the_wrong_width_are_rejected(
    openai_with: Callable[[Handler], OpenAICompatProvider],
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        texts = json.loads(request.content)["input"]
        data = [{"object": "embedding", "index": i, "embedding": [0.1] * 1536} for i, _ in enumerate(texts)]
        return httpx.Response(200, json={"object": "list", "data": data, "model": "m"})

    with pytest.raises(ServerError, match="384"):
        await openai_with(handler).embed(EmbeddingRequest(texts=("a",)))


def test_chat_result_round_trips_through_a_dict() -> None:
    result = ChatResult(
        text="Oi",
        provider="anthropic",
        model="m",
        usage=Usage(input_tokens=1, cache_read_tokens=2),
        latency_ms=5,
        request_id="req_1",
        stop_reason="end_turn",
    )

    assert ChatResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


async def test_openai_compat_can_send_the_legacy_max_tokens_field(openai_fake: OpenAIStandIn) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=openai_fake.app)) as http:
        legacy = OpenAICompatProvider(
            api_key="sk-test", base_url="http://vllm.test", client=http, max_tokens_field="max_tokens"
        )
        await legacy.chat(ask("Oi", max_tokens=64), "qwen")

    body = openai_fake.calls[-1].body
    assert body["max_tokens"] == 64 and "max_completion_tokens" not in body
