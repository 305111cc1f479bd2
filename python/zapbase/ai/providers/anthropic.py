"""Anthropic Messages API through the official SDK.

The SDK's own retries are off (`max_retries=0`): the gateway's chain decides what
happens after a failure, and a retried 429 spend limit would only burn time.

SDK 2.x speaks API version 2026-10-21, which rejects sampling parameters (even
`temperature: 1.0` is a 400) and dropped them from the SDK: `ChatRequest.temperature`
is therefore not sent to Anthropic. The key travels as `Authorization: Bearer`.
Docs: https://docs.anthropic.com/en/api/messages, https://docs.anthropic.com/en/api/errors
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anthropic
import httpx2
from anthropic.types import AssistantMessageParam, TextBlock, UserMessageParam

from zapbase.ai.errors import (
    ConnectionFailed,
    ProviderError,
    ProviderTimeout,
    classify,
    retry_after_from_headers,
)
from zapbase.ai.types import ChatRequest, ChatResult, Usage, knowledge_block, schema_block

if TYPE_CHECKING:
    from anthropic.types import Message, MessageParam, TextBlockParam

__all__ = ["AnthropicProvider"]

_logger = logging.getLogger(__name__)


class AnthropicProvider:
    """Chat via `AsyncAnthropic`.

    Parameters:
        api_key: the Anthropic key (from Vault, via Settings).
        base_url: override for a proxy or the local stand-in.
        timeout: per-request HTTP timeout in seconds; the chain enforces its own too.
        client: an `httpx2.AsyncClient` (the SDK uses httpx2, not httpx), e.g. one
            with `httpx2.ASGITransport(app=stand_in.app)` to run in-process; its owner
            closes it.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout: float = 30.0,
        client: httpx2.AsyncClient | None = None,
        name: str = "anthropic",
    ) -> None:
        self._name = name
        self._owns_client = client is None
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key, base_url=base_url, timeout=timeout, max_retries=0, http_client=client
        )

    @property
    def name(self) -> str:
        return self._name

    async def aclose(self) -> None:
        # The SDK would close an injected client too; its owner closes that one.
        if self._owns_client:
            await self._client.close()

    async def chat(self, request: ChatRequest, model: str) -> ChatResult:
        started = time.perf_counter()
        try:
            raw = await self._client.messages.with_raw_response.create(
                model=model,
                max_tokens=request.max_tokens,
                system=_system_blocks(request),
                messages=_messages(request),
            )
            message: Message = await raw.parse()
        except anthropic.APIError as exc:
            raise self._map_error(exc, model) from exc
        latency_ms = round((time.perf_counter() - started) * 1000)
        return _to_result(message, provider=self._name, latency_ms=latency_ms, request_id=raw.request_id)

    def _map_error(self, exc: anthropic.APIError, model: str) -> ProviderError:
        if isinstance(exc, anthropic.APITimeoutError):
            return ProviderTimeout(str(exc), provider=self._name, model=model)
        if isinstance(exc, anthropic.APIConnectionError):
            return ConnectionFailed(str(exc), provider=self._name, model=model)
        if isinstance(exc, anthropic.APIStatusError):
            error = classify(
                provider=self._name,
                model=model,
                status_code=exc.status_code,
                message=exc.api_message or exc.message,
                error_type=exc.type,
                error_code=exc.error_code,
                retry_after=retry_after_from_headers(exc.response.headers),
                request_id=exc.request_id,
            )
            _logger.warning("anthropic %s on %s: %s (%s)", exc.status_code, model, error.code, exc.request_id)
            return error
        # A 2xx body the SDK could not validate: the provider's fault, try the next one.
        return classify(provider=self._name, model=model, status_code=502, message=str(exc))


def _system_blocks(request: ChatRequest) -> list[TextBlockParam] | anthropic.Omit:
    blocks: list[TextBlockParam] = []
    if request.system:
        # The tenant prompt repeats on every turn: mark it for prompt caching (reads
        # cost 0.1x). Prompts under the model's minimum are simply not cached.
        blocks.append({"type": "text", "text": request.system, "cache_control": {"type": "ephemeral"}})
    # Anthropic takes a JSON schema only in the prompt; zapbase.ai.structured validates the answer.
    extra = (knowledge_block(request), schema_block(request))
    blocks += [{"type": "text", "text": text} for text in extra if text]
    return blocks or anthropic.omit


def _messages(request: ChatRequest) -> list[MessageParam]:
    return [
        UserMessageParam(role="user", content=m.content)
        if m.role == "user"
        else AssistantMessageParam(role="assistant", content=m.content)
        for m in request.messages
    ]


def _to_result(message: Message, *, provider: str, latency_ms: int, request_id: str | None) -> ChatResult:
    text = "".join(block.text for block in message.content if isinstance(block, TextBlock))
    usage = message.usage
    return ChatResult(
        text=text,
        provider=provider,
        model=message.model,
        usage=Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_input_tokens or 0,
            cache_write_tokens=usage.cache_creation_input_tokens or 0,
        ),
        latency_ms=latency_ms,
        request_id=request_id or message.id,
        stop_reason=message.stop_reason,
    )
