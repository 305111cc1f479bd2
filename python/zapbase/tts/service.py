"""Voice notes for a tenant: the shared cache first, then a budgeted synthesis.

    service = SpeechService(connect=pool.connection, provider=OpenAISpeech(...), store=store)
    note = await service.voice_note(tenant_id, "Seu pedido saiu para entrega.", number_id=number)
    if note.whatsapp_media_id: send it; else upload note.audio and call service.remember_upload

Every answer is settled in the ai module's ledger (`ai_usage`, api type tts, characters):
  hit    `ai_record_usage(outcome => 'cache_hit')` in the transaction of the lookup: cost 0,
         saved = what the cached audio cost (the same figure `tts_cache` adds up);
  miss   `ai_reserve` BEFORE the provider is called, so a tenant over budget (or paused,
         suspended, without a budget) is refused and nothing is synthesised; then
         `ai_settle` with the characters billed, or the error, or a release.
A hit is served without a budget check, as the chat gateway serves its cache hits: it
costs nothing. Free local voices missing from `ai_models` run unmetered (see metering).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Unpack

import anyio

from zapbase.ai.errors import ProviderError
from zapbase.ai.metering import Meter
from zapbase.db.pool import Connect, transaction
from zapbase.errors import ZapbaseError
from zapbase.storage import DEFAULT_BUCKET, ObjectStore
from zapbase.tts.cache import PostgresSpeechCache
from zapbase.tts.cache_key import SpeechSpec, speech_cache_key
from zapbase.tts.providers import Audio, SpeechOptions, SpeechProvider

__all__ = ["TTS_FEATURE", "CallContext", "SpeechRefused", "SpeechService", "VoiceNote"]

TTS_FEATURE = "tts"

_RESERVE = (
    "select public.ai_reserve(tenant_id => %(tenant)s, feature => %(feature)s, model => %(model)s,"
    " estimated_characters => %(characters)s, conversation_id => %(conversation_id)s,"
    " message_id => %(message_id)s, bot_id => %(bot_id)s, request_id => %(request_id)s,"
    " phone => %(phone)s, cache_key => %(key)s, hold_seconds => %(hold)s) as result"
)
_SETTLE = (
    "select (r ->> 'usage_id')::uuid as usage_id, coalesce((r ->> 'cost_usd')::numeric, 0) as cost_usd"
    " from public.ai_settle(reservation_id => %(reservation)s, outcome => %(outcome)s,"
    " characters => %(characters)s, latency_ms => %(latency)s, error_code => %(error_code)s,"
    " error_message => %(error_message)s) r"
)


class SpeechRefused(ZapbaseError):
    """The ledger refused the synthesis (budget limit, paused, no budget, ...)."""

    def __init__(self, reason: str, message: str, budget_id: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.budget_id = budget_id


@dataclass(frozen=True, slots=True, kw_only=True)
class CallContext:
    """Who the audio is for, written on the usage row."""

    conversation_id: uuid.UUID | None = None
    message_id: uuid.UUID | None = None
    bot_id: uuid.UUID | None = None
    request_id: str | None = None
    phone: str | None = None  # hashed by the ledger, never stored

    def params(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
            "bot_id": self.bot_id,
            "request_id": self.request_id,
            "phone": self.phone,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class VoiceNote:
    """The audio and what it cost. `whatsapp_media_id`: a hit already uploaded from the
    number asked about and valid for a while yet; send it instead of uploading again."""

    audio: Audio
    spec: SpeechSpec
    cache_key: str
    cached: bool
    whatsapp_media_id: str | None
    usage_id: uuid.UUID | None
    cost_usd: Decimal
    saved_usd: Decimal


class SpeechService:
    """Speech of one provider for any tenant, through that tenant's `tts_cache`.

    Parameters:
        connect: lends connections (a pool's `connection`, or `borrow(conn)`).
        provider: renders the audio on a miss.
        store: keeps the audio bytes (the object store inbound media go to).
        bucket: first segment of the audio's keys.
        gateway_id: the `ai_models` row pricing it (default `provider/model`, e.g. openai/tts-1).
        hold_seconds: how long a reservation holds budget while the provider works.
    """

    def __init__(
        self,
        *,
        connect: Connect,
        provider: SpeechProvider,
        store: ObjectStore,
        bucket: str = DEFAULT_BUCKET,
        gateway_id: str | None = None,
        feature: str = TTS_FEATURE,
        hold_seconds: int = 120,
    ) -> None:
        self._connect = connect
        self._provider = provider
        self._store = store
        self._bucket = bucket
        self._gateway_id = gateway_id
        self._feature = feature
        self._hold = hold_seconds
        self._meters: dict[str, Meter] = {}

    def cache(self, tenant_id: uuid.UUID) -> PostgresSpeechCache:
        return PostgresSpeechCache(
            connect=self._connect, tenant_id=tenant_id, store=self._store, bucket=self._bucket
        )

    def _meter(self, spec: SpeechSpec) -> Meter:
        gateway_id = self._gateway_id or f"{spec.provider}/{spec.model}"
        if gateway_id not in self._meters:
            self._meters[gateway_id] = Meter(provider=spec.provider, model=spec.model, gateway_id=gateway_id)
        return self._meters[gateway_id]

    async def voice_note(
        self,
        tenant_id: uuid.UUID,
        text: str,
        voice: str | None = None,
        *,
        number_id: uuid.UUID | None = None,
        context: CallContext | None = None,
        **options: Unpack[SpeechOptions],
    ) -> VoiceNote:
        """Audio for `text`, cached or synthesised; raises SpeechRefused (nothing
        synthesised) when the budget refuses, ProviderError when the provider fails."""
        spec = self._provider.spec_for(text, voice, **options)
        key = speech_cache_key(spec)
        meter = self._meter(spec)
        cache = self.cache(tenant_id)
        ctx = (context or CallContext()).params()
        async with transaction(self._connect) as conn:
            hit = await cache.lookup_in(conn, key, number_id)
            if hit is not None:
                recorded = await meter.record(
                    conn,
                    tenant_id=tenant_id,
                    feature=self._feature,
                    outcome="cache_hit",
                    characters=hit.characters,
                    saved_usd=hit.cost_usd,
                    cache_key=key,
                    context=ctx,
                    metadata={"tts_cache_id": str(hit.cache_id), "voice": spec.voice},
                )
        if hit is not None and (audio := await cache.load(hit)) is not None:
            return VoiceNote(
                audio=audio, spec=spec, cache_key=key, cached=True, whatsapp_media_id=hit.whatsapp_media_id,
                usage_id=recorded.usage_id, cost_usd=Decimal(0), saved_usd=recorded.saved_usd,
            )  # fmt: skip
        return await self._synthesize(tenant_id, spec, key, meter, cache, ctx)

    async def _synthesize(
        self,
        tenant_id: uuid.UUID,
        spec: SpeechSpec,
        key: str,
        meter: Meter,
        cache: PostgresSpeechCache,
        ctx: dict[str, Any],
    ) -> VoiceNote:
        reservation: str | None = None
        async with transaction(self._connect) as conn:
            if await meter.metered(conn):
                params = {"tenant": tenant_id, "feature": self._feature, "model": meter.gateway_id,
                          "characters": spec.characters, "key": key, "hold": self._hold, **ctx}  # fmt: skip
                row = await (await conn.execute(_RESERVE, params)).fetchone()
                answer = row["result"] if row else {}
                if answer.get("status") != "reserved":
                    raise SpeechRefused(
                        str(answer.get("reason", "refused")),
                        str(answer.get("message", "the AI budget refused this synthesis")),
                        answer.get("budget_id"),
                    )
                reservation = answer["reservation_id"]
        began = time.perf_counter()
        try:
            audio = await self._provider.render(spec)
        except ProviderError as exc:
            await self._settle(reservation, "failure", 0, began, exc.code, exc.message)
            raise
        except BaseException:
            with anyio.CancelScope(shield=True):  # give the hold back even when cancelled
                await self._settle(reservation, "cancelled", 0, began)
            raise
        usage_id, cost = await self._settle(reservation, "success", audio.characters, began)
        await cache.put(key, spec, audio, cost_usd=cost)
        return VoiceNote(
            audio=audio, spec=spec, cache_key=key, cached=False, whatsapp_media_id=None,
            usage_id=usage_id, cost_usd=cost, saved_usd=Decimal(0),
        )  # fmt: skip

    async def _settle(
        self,
        reservation: str | None,
        outcome: str,
        characters: int,
        began: float,
        error_code: str | None = None,
        error_message: str | None = None,
    ) -> tuple[uuid.UUID | None, Decimal]:
        """ai_settle: (usage id, cost) of the call; nothing for an unmetered engine."""
        if reservation is None:
            return None, Decimal(0)
        params = {
            "reservation": reservation,
            "outcome": outcome,
            "characters": characters,
            "latency": round((time.perf_counter() - began) * 1000),
            "error_code": error_code,
            "error_message": error_message,
        }
        async with transaction(self._connect) as conn:
            row = await (await conn.execute(_SETTLE, params)).fetchone()
        assert row is not None
        return row["usage_id"], row["cost_usd"]

    async def remember_upload(
        self, tenant_id: uuid.UUID, cache_key: str, number_id: uuid.UUID, media_id: str
    ) -> bool:
        """Keep the WhatsApp media id of an upload of this audio from `number_id`."""
        return await self.cache(tenant_id).remember_upload(cache_key, number_id, media_id)
