"""AI gateway: typed requests, provider clients, error classification and the fallback chain.

The database side (budgets, usage log, response cache) plugs in through `Ledger`;
`PostgresLedger` is the production one (two round trips a reply). JSON answers validated
against a schema: `Gateway.complete_json` (see zapbase.ai.structured for the API).
"""

from __future__ import annotations

from zapbase.ai.chain import LOCAL_LINK, Gateway, Ledger, cache_key
from zapbase.ai.errors import (
    AuthFailed,
    BadRequest,
    ConnectionFailed,
    ContextTooLong,
    Decision,
    Overloaded,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    RefusedEndpoint,
    ServerError,
    SpendLimitExceeded,
    ZapbaseError,
)
from zapbase.ai.ledger import PostgresLedger
from zapbase.ai.providers import (
    AnthropicProvider,
    LocalProvider,
    OpenAICompatProvider,
    build_providers,
    tenant_providers,
)
from zapbase.ai.structured import JsonResult, JsonStatus
from zapbase.ai.types import (
    Alert,
    Attempt,
    AttemptStatus,
    ChatMessage,
    ChatRequest,
    ChatResult,
    EmbeddingRequest,
    EmbeddingResult,
    Failure,
    GatewayPolicy,
    GatewayResponse,
    Link,
    Outcome,
    Provider,
    Refusal,
    Reservation,
    StructuredOutput,
    Success,
    Transcriber,
    TranscriptionRequest,
    TranscriptionResult,
    Usage,
)

__all__ = [
    "LOCAL_LINK",
    "Alert",
    "AnthropicProvider",
    "Attempt",
    "AttemptStatus",
    "AuthFailed",
    "BadRequest",
    "ChatMessage",
    "ChatRequest",
    "ChatResult",
    "ConnectionFailed",
    "ContextTooLong",
    "Decision",
    "EmbeddingRequest",
    "EmbeddingResult",
    "Failure",
    "Gateway",
    "GatewayPolicy",
    "GatewayResponse",
    "JsonResult",
    "JsonStatus",
    "Ledger",
    "Link",
    "LocalProvider",
    "OpenAICompatProvider",
    "Outcome",
    "Overloaded",
    "PostgresLedger",
    "Provider",
    "ProviderError",
    "ProviderTimeout",
    "RateLimited",
    "Refusal",
    "RefusedEndpoint",
    "Reservation",
    "ServerError",
    "SpendLimitExceeded",
    "StructuredOutput",
    "Success",
    "Transcriber",
    "TranscriptionRequest",
    "TranscriptionResult",
    "Usage",
    "ZapbaseError",
    "build_providers",
    "cache_key",
    "tenant_providers",
]
