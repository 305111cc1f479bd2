"""Typed requests, results and provider protocols of the AI gateway.

Every provider speaks its own wire format; these frozen dataclasses are the one shape
the rest of Zapbase sees. Token counts follow Anthropic's convention everywhere:
`input_tokens` EXCLUDES tokens read from or written to the prompt cache, so billed
input = input_tokens + cache_read_tokens + cache_write_tokens (each at its own price).
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from zapbase.ai.errors import Decision, ProviderError

__all__ = [
    "Alert",
    "Attempt",
    "AttemptStatus",
    "ChatMessage",
    "ChatRequest",
    "ChatResult",
    "EmbeddingRequest",
    "EmbeddingResult",
    "Failure",
    "GatewayPolicy",
    "GatewayResponse",
    "Link",
    "Outcome",
    "Provider",
    "Refusal",
    "Reservation",
    "Role",
    "StructuredOutput",
    "Success",
    "Transcriber",
    "TranscriptionRequest",
    "TranscriptionResult",
    "Usage",
    "knowledge_block",
    "schema_block",
]

Role = Literal["user", "assistant"]
# How a model is asked for JSON (ai_models.capabilities.structured_output; see zapbase.ai.structured).
StructuredOutput = Literal["json_schema", "json_object", "prompt"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatMessage:
    role: Role
    content: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatRequest:
    """One chat completion asked of the gateway.

    Parameters:
        messages: the conversation, oldest first, ending with the user's turn.
        system: the bot's instructions (tenant prompt).
        model: the model the caller asks for; None means the policy's first link. The
            chain starts at the first link serving this model, and it is part of the
            cache key.
        temperature: honoured by OpenAI-compatible providers only; Anthropic's API
            version 2026-10-21 rejects sampling parameters.
        knowledge: RAG passages; every provider sees them (remote ones appended to the
            system prompt, the local one answers from them).
        feature, tenant_id, conversation_id, message_id, bot_id, request_id, phone:
            accounting metadata the ledger writes on every `ai_usage` row of the reply
            (ids as uuid strings; request_id e.g. the inbound wamid; phone in E.164,
            stored only as its hash); never part of the cache key.
        json_schema, schema_name: ask for a JSON answer valid against this JSON schema
            (use `Gateway.complete_json`, which validates it); such a request skips the
            response cache and the local answerer.
        json_mode: how the provider is asked for it; the gateway sets it from each link.
    """

    messages: tuple[ChatMessage, ...]
    system: str = ""
    model: str | None = None
    max_tokens: int = 1024
    temperature: float | None = None
    knowledge: tuple[str, ...] = ()
    feature: str = "reply"
    tenant_id: str | None = None
    conversation_id: str | None = None
    message_id: str | None = None
    bot_id: str | None = None
    request_id: str | None = None
    phone: str | None = None
    json_schema: Mapping[str, Any] | None = None
    schema_name: str = "answer"
    json_mode: StructuredOutput = "prompt"

    def __post_init__(self) -> None:
        if not self.messages:
            raise ValueError("a chat request needs at least one message")
        if self.max_tokens < 1:
            raise ValueError("max_tokens must be positive")

    @property
    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Normalised token usage; `input_tokens` excludes cache reads and writes."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens


@dataclass(frozen=True, slots=True, kw_only=True)
class ChatResult:
    text: str
    provider: str
    model: str
    usage: Usage
    latency_ms: int
    request_id: str | None = None
    stop_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, e.g. for a `response_cache` row."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ChatResult:
        return cls(**{**data, "usage": Usage(**data["usage"])})


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptionRequest:
    """A voice note to transcribe; `seconds` is the duration WhatsApp reported, if any."""

    audio: bytes
    mime: str = "audio/ogg"
    seconds: float | None = None
    language: str | None = "pt"
    tenant_id: str | None = None
    conversation_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscriptionResult:
    text: str
    provider: str
    model: str
    seconds: float | None
    latency_ms: int
    request_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddingRequest:
    texts: tuple[str, ...]
    dimensions: int = 384
    tenant_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbeddingResult:
    vectors: tuple[tuple[float, ...], ...]
    dimensions: int
    tokens: int
    provider: str
    model: str
    latency_ms: int
    request_id: str | None = None


class Provider(Protocol):
    """A chat provider. Raises only `zapbase.ai.errors.ProviderError` subclasses."""

    @property
    def name(self) -> str: ...

    async def chat(self, request: ChatRequest, model: str) -> ChatResult: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Transcriber(Protocol):
    """Optional capability: speech to text."""

    @property
    def name(self) -> str: ...

    async def transcribe(self, request: TranscriptionRequest) -> TranscriptionResult: ...


def knowledge_block(request: ChatRequest) -> str:
    """The RAG passages as a pt-BR block for a remote model's system prompt ("" if none)."""
    if not request.knowledge:
        return ""
    passages = "\n".join(f"- {passage}" for passage in request.knowledge)
    return (
        "Base de conhecimento (responda apenas com base nestes trechos; se não houver "
        f"resposta, ofereça um atendente humano):\n{passages}"
    )


def schema_block(request: ChatRequest) -> str:
    """The JSON instruction of a structured request for the system prompt ("" if none); the
    schema itself is written out unless the provider receives it in `response_format`."""
    if request.json_schema is None:
        return ""
    text = "Answer with one JSON object only: no prose, no code fence."
    if request.json_mode != "json_schema":
        schema = json.dumps(request.json_schema, ensure_ascii=False, separators=(",", ":"))
        text += f" It must be valid against this JSON schema:\n{schema}"
    return text


# Gateway: policy, ledger exchange and response --------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Link:
    """One step of a fallback chain: a provider name, a model, its context window.

    `gateway_id` is the model's `ai_models.gateway_id`, the name the ledger prices and
    logs it under; it defaults to "provider/model", the registry's convention, and must
    be given where the registry uses an alias (anthropic/claude-sonnet-4).
    """

    provider: str
    model: str
    context_window: int
    gateway_id: str = ""
    structured_output: StructuredOutput = "prompt"

    def __post_init__(self) -> None:
        if not self.gateway_id:
            object.__setattr__(self, "gateway_id", f"{self.provider}/{self.model}")


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayPolicy:
    """A row of `gateway_policies`: the chain and its knobs (cache off when ttl is 0).

    `id` names the row for the ledger (None: the tenant's default policy). The cache is
    used only when both this ttl and the row's `cache_ttl_seconds` are positive; the
    row's ttl is the one entries are stored with.
    """

    links: tuple[Link, ...]
    timeout_seconds: float = 30.0
    cooldown_seconds: float = 30.0
    cache_ttl_seconds: int = 0
    id: str | None = None

    def __post_init__(self) -> None:
        if not self.links:
            raise ValueError("a gateway policy needs at least one link")


@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    """Budget the ledger holds for one reply, taken for its first link; every attempt of
    the reply's walk down the chain is settled against it. `id` is the ledger's handle."""

    id: str
    link: Link


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """The ledger will not fund this reply.

    `reason` is the database's: paused, limit, no_budget, tenant_inactive,
    trial_ended or unknown_model; `message` says which budget and why, for logs and admins.
    """

    reason: str
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Success:
    """An attempt that answered."""

    link: Link
    result: ChatResult


@dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """A failed attempt; `error_code` is `ProviderError.code` (e.g. "rate_limited")."""

    link: Link
    error_code: str
    message: str
    decision: Decision
    status_code: int | None
    request_id: str | None
    latency_ms: int

    @classmethod
    def from_error(cls, error: ProviderError, *, link: Link, latency_ms: int) -> Failure:
        return cls(
            link=link,
            error_code=error.code,
            message=error.message,
            decision=error.decision,
            status_code=error.status_code,
            request_id=error.request_id,
            latency_ms=latency_ms,
        )


Outcome = Success | Failure


class AttemptStatus(enum.StrEnum):
    OK = "ok"
    CACHED = "cached"
    FAILED = "failed"
    REFUSED = "refused"
    COOLING_DOWN = "cooling_down"
    UNAVAILABLE = "unavailable"
    WINDOW_TOO_SMALL = "window_too_small"


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    link: Link
    status: AttemptStatus
    fallback_from: Link | None = None
    error_code: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """Something an admin must act on (spend limit hit, key rejected)."""

    kind: str
    provider: str
    model: str
    message: str
    tenant_id: str | None
    conversation_id: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayResponse:
    result: ChatResult | None
    attempts: tuple[Attempt, ...]
    alerts: tuple[Alert, ...] = ()
    cached: bool = False
    error: ProviderError | None = None
    refusal: Refusal | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None
