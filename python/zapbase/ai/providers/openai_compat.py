"""OpenAI-compatible HTTP APIs (OpenAI, Groq, Gemini, OpenRouter, vLLM...) over plain httpx.

A tenant's provider (an `llm` integration with its own base URL) is built with
`tenant_url=True`: every request's URL goes through the webhook deliverer's address guard
(`zapbase.webhooks.guard`: https only, the host resolved and refused when private, loopback
or link-local, the request pinned to the checked address), so a tenant cannot make the
worker call into its own network. A refused URL is `RefusedEndpoint` (alert, next link).

Structured output (`ChatRequest.json_schema`): `json_mode` "json_schema" sends
`response_format: {"type": "json_schema", "json_schema": {"name", "schema"}}`, "json_object"
sends `{"type": "json_object"}` with the schema in the system prompt, "prompt" only the
prompt. Validation is zapbase.ai.structured's, whatever the mode.

Usage normalisation: OpenAI's `usage.prompt_tokens` INCLUDES the cached prompt tokens
reported in `usage.prompt_tokens_details.cached_tokens`. Zapbase follows Anthropic's
convention (input excludes cache reads), so `input_tokens = prompt_tokens - cached` and
`cache_read_tokens = cached`. OpenAI caches automatically and bills no cache writes, so
`cache_write_tokens` is always 0 here.

Docs: https://platform.openai.com/docs/api-reference/chat,
https://platform.openai.com/docs/api-reference/embeddings,
https://platform.openai.com/docs/api-reference/audio/createTranscription,
https://platform.openai.com/docs/guides/error-codes
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from zapbase.ai.errors import RefusedEndpoint, ServerError, openai_error, transport_error
from zapbase.ai.types import (
    ChatRequest,
    ChatResult,
    EmbeddingRequest,
    EmbeddingResult,
    TranscriptionRequest,
    TranscriptionResult,
    Usage,
    knowledge_block,
    schema_block,
)
from zapbase.webhooks.guard import RefusedTarget, resolve_target

__all__ = ["OpenAICompatProvider"]

_logger = logging.getLogger(__name__)

_Wire = TypeVar("_Wire", bound=BaseModel)

# finish_reason → the Anthropic-style stop reasons used across ChatResult.
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens"}


class _PromptDetails(BaseModel):
    cached_tokens: int | None = 0


class _ChatUsage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    prompt_tokens_details: _PromptDetails | None = None


class _ChoiceMessage(BaseModel):
    content: str | None = None


class _Choice(BaseModel):
    message: _ChoiceMessage
    finish_reason: str | None = None


class _Completion(BaseModel):
    id: str | None = None
    model: str
    choices: list[_Choice]
    usage: _ChatUsage | None = None


class _EmbeddingItem(BaseModel):
    index: int
    embedding: list[float]


class _EmbeddingUsage(BaseModel):
    prompt_tokens: int = 0


class _Embeddings(BaseModel):
    model: str
    data: list[_EmbeddingItem]
    usage: _EmbeddingUsage | None = None


class _Transcription(BaseModel):
    text: str
    duration: float | None = None


class OpenAICompatProvider:
    """Chat, embeddings and transcription against `{base_url}{api_path}/...`.

    Parameters:
        api_key: bearer token.
        base_url: `https://api.openai.com`, `https://api.groq.com/openai`, or a stand-in.
        api_path: what comes between base_url and `/chat/completions`: "/v1", or "" for a
            base URL given the way OpenAI's SDKs take it
            (`https://generativelanguage.googleapis.com/v1beta/openai`).
        tenant_url: the base URL is a tenant's: check and pin every request's address
            (see the module docstring); `local_mode` lets it call http:// and private
            addresses (development and tests only).
        name: provider name used in policies and usage logs ("openai", "groq"...).
        timeout: per-request HTTP timeout in seconds.
        client: injected `httpx.AsyncClient` (e.g. with `httpx.ASGITransport`);
            when given, the caller closes it.
        transcription_model: "whisper-1" on OpenAI, "whisper-large-v3" on Groq.
        embedding_model: a model that honours the `dimensions` parameter.
        max_tokens_field: "max_completion_tokens" (OpenAI's current name, also taken by
            Groq and vLLM; OpenAI reasoning models reject `max_tokens`) or "max_tokens"
            for servers that only know the old name.
    """

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str = "https://api.openai.com",
        api_path: str = "/v1",
        tenant_url: bool = False,
        local_mode: bool = False,
        name: str = "openai",
        timeout: float = 30.0,
        client: httpx.AsyncClient | None = None,
        transcription_model: str = "whisper-1",
        embedding_model: str = "text-embedding-3-small",
        max_tokens_field: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens",
    ) -> None:
        self._name = name
        self._base_url = base_url.rstrip("/") + api_path
        self._tenant_url = tenant_url
        self._local_mode = local_mode
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._owns_client = client is None
        self._http = client or httpx.AsyncClient(timeout=timeout)
        self._timeout = timeout
        self._transcription_model = transcription_model
        self._embedding_model = embedding_model
        self._max_tokens_field = max_tokens_field

    @property
    def name(self) -> str:
        return self._name

    async def aclose(self) -> None:
        if self._owns_client:
            await self._http.aclose()

    async def chat(self, request: ChatRequest, model: str) -> ChatResult:
        parts = (request.system, knowledge_block(request), schema_block(request))
        system = "\n\n".join(part for part in parts if part)
        messages = [{"role": "system", "content": system}] if system else []
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            self._max_tokens_field: request.max_tokens,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.json_schema is not None and request.json_mode != "prompt":
            body["response_format"] = _response_format(request)
        started = time.perf_counter()
        response = await self._post("/chat/completions", model, json=body)
        completion = self._parse(_Completion, response, model)
        if not completion.choices:
            raise ServerError("completion without choices", provider=self._name, model=model)
        choice = completion.choices[0]
        usage = completion.usage or _ChatUsage()
        cached = (usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens) or 0
        return ChatResult(
            text=choice.message.content or "",
            provider=self._name,
            model=completion.model,
            usage=Usage(
                input_tokens=max(0, usage.prompt_tokens - cached),
                output_tokens=usage.completion_tokens,
                cache_read_tokens=cached,
            ),
            latency_ms=_elapsed_ms(started),
            request_id=response.headers.get("x-request-id") or completion.id,
            stop_reason=_STOP_REASONS.get(choice.finish_reason or "", choice.finish_reason),
        )

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        model = self._embedding_model
        body = {
            "model": model,
            "input": list(request.texts),
            "dimensions": request.dimensions,
            "encoding_format": "float",
        }
        started = time.perf_counter()
        response = await self._post("/embeddings", model, json=body)
        parsed = self._parse(_Embeddings, response, model)
        vectors = tuple(tuple(item.embedding) for item in sorted(parsed.data, key=lambda i: i.index))
        if len(vectors) != len(request.texts) or any(len(v) != request.dimensions for v in vectors):
            # pgvector columns have a fixed width: a server ignoring `dimensions` is an error.
            raise ServerError(
                f"expected {len(request.texts)} vectors of {request.dimensions} dimensions",
                provider=self._name,
                model=model,
            )
        return EmbeddingResult(
            vectors=vectors,
            dimensions=request.dimensions,
            tokens=parsed.usage.prompt_tokens if parsed.usage else 0,
            provider=self._name,
            model=parsed.model,
            latency_ms=_elapsed_ms(started),
            request_id=response.headers.get("x-request-id"),
        )

    async def transcribe(self, request: TranscriptionRequest) -> TranscriptionResult:
        model = self._transcription_model
        mime = request.mime.split(";")[0].strip()
        # Whisper infers the container from the file name's extension.
        files = {"file": (f"audio.{mime.rsplit('/', 1)[-1]}", request.audio, mime)}
        data = {"model": model, "response_format": "verbose_json"}
        if request.language:
            data["language"] = request.language
        started = time.perf_counter()
        response = await self._post("/audio/transcriptions", model, files=files, data=data)
        parsed = self._parse(_Transcription, response, model)
        return TranscriptionResult(
            text=parsed.text.strip(),
            provider=self._name,
            model=model,
            seconds=parsed.duration if parsed.duration is not None else request.seconds,
            latency_ms=_elapsed_ms(started),
            request_id=response.headers.get("x-request-id"),
        )

    async def _post(self, path: str, model: str, **kwargs: Any) -> httpx.Response:
        url: str | httpx.URL = self._base_url + path
        headers = self._headers
        if self._tenant_url:
            try:
                target = await resolve_target(str(url), local_mode=self._local_mode)
            except RefusedTarget as exc:
                raise RefusedEndpoint(str(exc), provider=self._name, model=model) from None
            url, headers = target.url, {**headers, "host": target.host}
            if target.sni_hostname:
                kwargs["extensions"] = {"sni_hostname": target.sni_hostname}
        try:
            response = await self._http.post(url, headers=headers, timeout=self._timeout, **kwargs)
        except httpx.TransportError as exc:
            raise transport_error(exc, provider=self._name, model=model) from exc
        if response.status_code >= 400:
            error = openai_error(response, provider=self._name, model=model)
            _logger.warning("%s %s on %s: %s", self._name, response.status_code, model, error.code)
            raise error
        return response

    def _parse(self, wire: type[_Wire], response: httpx.Response, model: str) -> _Wire:
        try:
            return wire.model_validate_json(response.content)
        except ValidationError as exc:
            raise ServerError(
                f"malformed {wire.__name__.strip('_').lower()} body: {exc.error_count()} errors",
                provider=self._name,
                model=model,
                status_code=response.status_code,
            ) from exc


def _response_format(request: ChatRequest) -> dict[str, Any]:
    if request.json_mode == "json_object":
        return {"type": "json_object"}
    return {
        "type": "json_schema",
        "json_schema": {"name": request.schema_name, "schema": dict(request.json_schema or {})},
    }


def _elapsed_ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
