"""Usage of embedding and speech providers, settled in the ai module's ledger (`ai_usage`).

The ledger prices a call from `ai_models` by gateway id (`provider/model`, e.g.
`openai/text-embedding-3-small`) and takes the api type (embedding, tts) from the same
row. Free engines that run inside the worker (`local` embedders, espeak) may be missing
from the registry: they then run unmetered, with a warning, instead of failing. A paid
provider missing from the registry is an error, because its cost could not be billed.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from zapbase.errors import ZapbaseError
from zapbase.rag.embedders import Embedder
from zapbase.worker.database import Connect, Connection, transaction

__all__ = ["FREE_PROVIDERS", "Meter", "MeteredEmbedder", "Recorded", "UnregisteredModel"]

_logger = logging.getLogger(__name__)

#: Engines that run on the worker's own CPU and cost nothing per call.
FREE_PROVIDERS = frozenset({"local", "espeak"})

_REGISTERED = "select exists (select 1 from public.ai_models where gateway_id = %s) as registered"
# Money leaves the JSON as numeric, whatever JSON loader the connection has.
_RECORD = (
    "select (r ->> 'usage_id')::uuid as usage_id, (r ->> 'cost_usd')::numeric as cost_usd,"
    " (r ->> 'saved_usd')::numeric as saved_usd"
    " from public.ai_record_usage(tenant_id => %(tenant_id)s, feature => %(feature)s, model => %(model)s,"
    " outcome => %(outcome)s, input_tokens => %(input_tokens)s, characters => %(characters)s,"
    " latency_ms => %(latency_ms)s, saved_usd => %(saved_usd)s, conversation_id => %(conversation_id)s,"
    " message_id => %(message_id)s, bot_id => %(bot_id)s, request_id => %(request_id)s,"
    " phone => %(phone)s, cache_key => %(cache_key)s, metadata => %(metadata)s) r"
)


class UnregisteredModel(ZapbaseError):
    """A paid model is not in `ai_models`: its usage could not be priced or billed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Recorded:
    """An `ai_usage` row written by `ai_record_usage` (or an unmetered call: no id)."""

    usage_id: uuid.UUID | None
    cost_usd: Decimal = Decimal(0)
    saved_usd: Decimal = Decimal(0)


UNMETERED = Recorded(usage_id=None)


class Meter:
    """Prices calls of one gateway model; remembers whether the registry knows it."""

    def __init__(self, *, provider: str, model: str, gateway_id: str | None = None) -> None:
        self.provider = provider
        self.gateway_id = gateway_id or f"{provider}/{model}"
        self._registered: bool | None = None

    async def metered(self, conn: Connection) -> bool:
        """True when calls are billed; False for a free engine missing from the registry."""
        if self._registered is None:
            row = await (await conn.execute(_REGISTERED, (self.gateway_id,))).fetchone()
            self._registered = bool(row and row["registered"])
            if not self._registered and self.provider in FREE_PROVIDERS:
                _logger.warning("model %s is not in ai_models: its calls run unmetered", self.gateway_id)
        if not self._registered and self.provider not in FREE_PROVIDERS:
            raise UnregisteredModel(
                f"model {self.gateway_id!r} is not in public.ai_models, so its usage cannot be billed:"
                " add it to the model registry (seed/20_ai.sql) or use another model"
            )
        return self._registered

    async def record(
        self,
        conn: Connection,
        *,
        tenant_id: uuid.UUID | str,
        feature: str,
        outcome: str = "success",
        input_tokens: int = 0,
        characters: int = 0,
        latency_ms: int | None = None,
        saved_usd: Decimal | None = None,
        cache_key: str | None = None,
        context: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Recorded:
        """`ai_record_usage` for a call that already happened (or a cache hit): charged
        to the budgets without a limit check."""
        if not await self.metered(conn):
            return UNMETERED
        params = {
            "tenant_id": tenant_id, "feature": feature, "model": self.gateway_id, "outcome": outcome,
            "input_tokens": input_tokens, "characters": characters, "latency_ms": latency_ms,
            "saved_usd": saved_usd, "cache_key": cache_key, "metadata": Jsonb(dict(metadata or {})),
            "conversation_id": None, "message_id": None, "bot_id": None, "request_id": None, "phone": None,
            **(context or {}),
        }  # fmt: skip
        row = await (await conn.execute(_RECORD, params)).fetchone()
        assert row is not None
        return Recorded(usage_id=row["usage_id"], cost_usd=row["cost_usd"], saved_usd=row["saved_usd"])


@dataclass(frozen=True, slots=True, kw_only=True)
class Embedded:
    vectors: list[list[float]]
    tokens: int
    cost_usd: Decimal


class MeteredEmbedder:
    """An embedder whose every call is settled in the ledger for the tenant it served."""

    def __init__(
        self, *, connect: Connect, embedder: Embedder, gateway_id: str | None = None, batch_size: int = 128
    ) -> None:
        self._connect = connect
        self.embedder = embedder
        self._meter = Meter(provider=embedder.provider, model=embedder.model, gateway_id=gateway_id)
        self._batch = batch_size

    async def embed(
        self,
        tenant_id: uuid.UUID,
        texts: Sequence[str],
        *,
        feature: str,
        bot_id: uuid.UUID | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Embedded:
        """Vectors of `texts`; their cost is settled as soon as they exist (the provider
        has billed them, whatever happens to them afterwards)."""
        if not texts:
            return Embedded(vectors=[], tokens=0, cost_usd=Decimal(0))
        async with transaction(self._connect) as conn:
            await self._meter.metered(conn)  # refuse an unbillable model before calling it
        vectors: list[list[float]] = []
        tokens = 0
        began = time.perf_counter()
        for start in range(0, len(texts), self._batch):
            result = await self.embedder.embed(texts[start : start + self._batch])
            vectors.extend(result.vectors)
            tokens += result.tokens
        latency = round((time.perf_counter() - began) * 1000)
        async with transaction(self._connect) as conn:
            recorded = await self._meter.record(
                conn,
                tenant_id=tenant_id,
                feature=feature,
                input_tokens=tokens,
                latency_ms=latency,
                context={"bot_id": bot_id},
                metadata={**(metadata or {}), "texts": len(texts)},
            )
        return Embedded(vectors=vectors, tokens=tokens, cost_usd=recorded.cost_usd)
