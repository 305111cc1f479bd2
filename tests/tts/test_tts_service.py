"""The speech service against the database: the tenant's tts_cache in front of the
provider, every synthesis and every hit settled in ai_usage, media ids reused per number
until they expire, and no synthesis at all when the budget refuses."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from support import Db
from zapbase.ai.errors import ServerError
from zapbase.db.pool import Connect
from zapbase.standins.ai import FaultKind
from zapbase.standins.speech import ZERO_LATENCY, SpeechStandIn
from zapbase.storage import LocalStorage
from zapbase.tts.cache import PostgresSpeechCache, evict_tts_cache
from zapbase.tts.cache_key import normalize_speech_text
from zapbase.tts.providers import OGG_OPUS, OpenAISpeech, speak
from zapbase.tts.service import CallContext, SpeechRefused, SpeechService

pytestmark = pytest.mark.anyio

TENANT = UUID("00000000-0000-4000-b000-000000000001")  # seed: Loja Demo (plan pro)
BOT = UUID("00000000-0000-4000-e000-000000000001")  # seed: its bot
NUMBER_1 = UUID("00000000-0000-4000-9000-000000000001")  # seed: Loja Demo's number
NUMBER_2 = UUID("00000000-0000-4000-f000-000000000002")
USD_PER_CHAR = Decimal(15) / 1_000_000  # seed: openai/tts-1
TEXT = "Olá!  Seu pedido\n saiu para entrega e chega amanhã. "


@pytest.fixture
def service(connect: Connect, openai_speech: OpenAISpeech, audio_store: LocalStorage) -> SpeechService:
    return SpeechService(connect=connect, provider=openai_speech, store=audio_store)


def tts_usage(db: Db) -> list[dict[str, object]]:
    return db.sql("select api_type, feature, model, outcome, characters, cost_usd, saved_usd, cache_key,"
                  " bot_id, phone_hash, reservation_id, error_code from public.ai_usage"
                  " where api_type = 'tts' order by created_at")


async def test_the_same_text_with_other_whitespace_hits_the_cache(
    db: Db, service: SpeechService, speech_standin: SpeechStandIn, audio_store: LocalStorage
) -> None:
    context = CallContext(bot_id=BOT, phone="+5511988887777")
    first = await service.voice_note(TENANT, TEXT, context=context, language="pt-BR")
    chars = len(normalize_speech_text(TEXT))
    assert not first.cached and first.audio.mime == OGG_OPUS and first.audio.characters == chars
    assert first.cost_usd == chars * USD_PER_CHAR and len(speech_standin.requests) == 1
    assert speech_standin.requests[0].body["input"] == normalize_speech_text(TEXT)

    second = await service.voice_note(TENANT, "Olá! Seu pedido saiu para entrega\te chega amanhã.",
                                      context=context, language="pt-BR")
    assert second.cached and second.cache_key == first.cache_key and len(speech_standin.requests) == 1
    assert second.audio.data == first.audio.data and second.audio.duration_s == first.audio.duration_s
    assert second.cost_usd == 0 and second.saved_usd == first.cost_usd

    synthesis, hit = tts_usage(db)
    assert (synthesis["outcome"], synthesis["characters"], synthesis["cost_usd"]) == (
        "success", chars, first.cost_usd)
    assert synthesis["reservation_id"] is not None and synthesis["model"] == "openai/tts-1"
    assert (hit["outcome"], hit["characters"], hit["cost_usd"], hit["saved_usd"]) == (
        "cache_hit", chars, 0, first.cost_usd)
    assert hit["reservation_id"] is None and hit["cache_key"] == synthesis["cache_key"] == first.cache_key
    assert {r["feature"] for r in (synthesis, hit)} == {"tts"} and hit["bot_id"] == BOT
    assert hit["phone_hash"] is not None and hit["phone_hash"] != "+5511988887777"
    row = db.sql("select hit_count, cost_usd, cost_avoided_usd, characters_avoided, storage_path, size_bytes,"
                 " format, language from public.tts_cache")[0]
    assert (row["hit_count"], row["cost_avoided_usd"]) == (1, first.cost_usd)
    assert row["characters_avoided"] == chars
    assert (row["format"], row["language"], row["size_bytes"]) == ("opus", "pt-BR", len(first.audio.data))
    assert await audio_store.get(row["storage_path"]) == first.audio.data
    assert db.value("select status from public.budget_reservations") == "settled"


async def test_another_voice_or_tenant_misses(
    db: Db, service: SpeechService, speech_standin: SpeechStandIn
) -> None:
    nova = await service.voice_note(TENANT, TEXT)
    alloy = await service.voice_note(TENANT, TEXT, "alloy")
    other = db.create_tenant(db.create_user(), "Outra Loja")
    elsewhere = await service.voice_note(other, TEXT)
    assert not (nova.cached or alloy.cached or elsewhere.cached) and nova.cache_key != alloy.cache_key
    assert [r.body["voice"] for r in speech_standin.requests] == ["nova", "alloy", "nova"]
    assert db.value("select count(*) from public.tts_cache") == 3
    assert [r["outcome"] for r in tts_usage(db)] == ["success"] * 3


async def test_media_ids_are_reused_per_number_for_thirty_days(
    db: Db, service: SpeechService, speech_standin: SpeechStandIn
) -> None:
    first = await service.voice_note(TENANT, TEXT, number_id=NUMBER_1)
    assert first.whatsapp_media_id is None  # nothing uploaded yet
    assert await service.remember_upload(TENANT, first.cache_key, NUMBER_1, "wamedia.1")
    row = db.sql("select media_uploaded_at, media_expires_at from public.tts_cache")[0]
    assert row["media_expires_at"] - row["media_uploaded_at"] == timedelta(days=30)

    same_number = await service.voice_note(TENANT, TEXT, number_id=NUMBER_1)
    other_number = await service.voice_note(TENANT, TEXT, number_id=NUMBER_2)
    assert same_number.cached and same_number.whatsapp_media_id == "wamedia.1"
    assert other_number.cached and other_number.whatsapp_media_id is None  # media ids are per number

    # 29.5 days later it expires within the one-day margin: upload again, but no synthesis
    db.sql("update public.tts_cache set media_uploaded_at = media_uploaded_at - interval '29 days 12 hours',"
           " media_expires_at = media_expires_at - interval '29 days 12 hours'")
    late = await service.voice_note(TENANT, TEXT, number_id=NUMBER_1)
    assert late.cached and late.whatsapp_media_id is None and len(speech_standin.requests) == 1
    assert await service.remember_upload(TENANT, late.cache_key, NUMBER_1, "wamedia.2")
    assert (await service.voice_note(TENANT, TEXT, number_id=NUMBER_1)).whatsapp_media_id == "wamedia.2"


@pytest.mark.parametrize("refusal", ["paused", "limit"])
async def test_a_refusing_budget_means_no_synthesis(
    db: Db, service: SpeechService, speech_standin: SpeechStandIn, refusal: str
) -> None:
    if refusal == "paused":
        db.sql("update public.budgets set paused_reason = 'manual', paused_at = now() where tenant_id = %s",
               (str(TENANT),))
    else:
        db.sql("update public.budgets set brl_limit = 0.0001, inherits_from_plan = false"
               " where tenant_id = %s", (str(TENANT),))
    with pytest.raises(SpeechRefused) as refused:
        await service.voice_note(TENANT, TEXT)
    assert refused.value.reason == refusal
    assert speech_standin.requests == []
    assert db.value("select count(*) from public.tts_cache") == 0
    assert db.value("select count(*) from public.ai_usage") == 0
    assert db.value("select count(*) from public.budget_reservations") == 0


async def test_a_provider_failure_is_settled_and_nothing_is_cached(
    db: Db, connect: Connect, audio_store: LocalStorage
) -> None:
    failing = SpeechStandIn(latency=ZERO_LATENCY, faults=[FaultKind.SERVER_ERROR])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=failing.app)) as http:
        provider = OpenAISpeech(api_key="sk-standin", client=http, base_url="http://tts.test")
        service = SpeechService(connect=connect, provider=provider, store=audio_store)
        with pytest.raises(ServerError):
            await service.voice_note(TENANT, TEXT)
    [row] = tts_usage(db)
    assert (row["outcome"], row["cost_usd"], row["error_code"]) == ("failure", 0, "server_error")
    assert db.value("select status from public.budget_reservations") == "settled"
    assert db.value("select reserved_brl from public.budgets where tenant_id = %s", (str(TENANT),)) == 0
    assert db.value("select count(*) from public.tts_cache") == 0


async def test_speak_uses_the_postgres_cache_and_eviction_deletes_the_audio(
    db: Db, connect: Connect, openai_speech: OpenAISpeech, audio_store: LocalStorage, tmp_path: Path
) -> None:
    cache = PostgresSpeechCache(connect=connect, tenant_id=TENANT, store=audio_store)
    made = await speak(openai_speech, TEXT, cache=cache)
    again = await speak(openai_speech, " ".join(TEXT.split()), cache=cache)
    assert (made.cached, again.cached) == (False, True) and again.audio.data == made.audio.data
    path = db.value("select storage_path from public.tts_cache")
    assert (tmp_path / "storage" / path).is_file()
    evicted = await evict_tts_cache(connect, audio_store, max_total_bytes=0)
    assert [e["storage_path"] for e in evicted] == [path] and evicted[0]["reason"] == "size"
    assert not (tmp_path / "storage" / path).exists()
    assert db.value("select count(*) from public.tts_cache") == 0
