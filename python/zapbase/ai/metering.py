"""Usage of embedding and speech providers, settled in the AI ledger (`ai_usage`) beside the
chat gateway's (`zapbase.ai.ledger`).

The ledger prices a call from `ai_models` by gateway id (`provider/model`, e.g.
`openai/text-embedding-3-small`) and takes the api type (embedding, tts) from the same
row. Free engines that run inside the worker (`local` embedders, espeak) may be missing
from the registry: they then run unmetered, with a warning, instead of failing. A paid
provider missing from the registry is an error, because its cost could not be billed.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from zapbase.db.pool import Connection
from zapbase.errors import ZapbaseError

__all__ = ["FREE_PROVIDERS", "Meter", "Recorded", "UnregisteredModel"]

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
