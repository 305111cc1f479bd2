"""The `AIResponder` a worker runs, built from Settings.

    async with ai_responder(settings, pool=pool, api=api, media=storage) as responder:
        processor = Processor(..., responder=responder)

Each provider is there only when its key is: Anthropic and OpenAI-compatible chat
(`build_providers`), OpenAI transcription, OpenAI TTS (tts-1, tts-1-hd) and embeddings of
OpenAI-embedded knowledge. A tenant with its own keys (an active `llm` integration, the
secret in Vault; Groq, Gemini, OpenRouter or its own server at a base URL, behind the
address guard unless `zapbase_webhooks_local_mode`) chats on them (`tenant_providers`);
transcription, speech and embeddings use the platform's.
With no key at all the bot still answers, offline: the local provider quotes the knowledge
base, voice notes get a request for text, and replies are spoken by espeak-ng when it is
installed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx

from zapbase.ai.chain import Gateway
from zapbase.ai.ledger import PostgresLedger
from zapbase.ai.providers import OpenAICompatProvider, build_providers, tenant_providers
from zapbase.ai.types import Provider
from zapbase.bot.gateways import Gateways
from zapbase.bot.knowledge import Knowledge
from zapbase.bot.memory import Summarizer
from zapbase.bot.pipeline import AIResponder
from zapbase.bot.voice import Listener, Speaker
from zapbase.db.pool import Pool
from zapbase.knowledge.embedders import OpenAIEmbedder
from zapbase.settings import Settings
from zapbase.storage import ObjectStore
from zapbase.tts.espeak import EspeakSpeech
from zapbase.tts.providers import OpenAISpeech
from zapbase.tts.service import SpeechService
from zapbase.whatsapp.api import GraphAPI

__all__ = ["ai_responder"]

_OPENAI_TTS_MODELS = ("tts-1", "tts-1-hd")


def _speaker(
    settings: Settings, pool: Pool, api: GraphAPI, http: httpx.AsyncClient, store: ObjectStore
) -> Speaker | None:
    bucket = settings.zapbase_media_bucket
    services: dict[str, SpeechService] = {}
    if settings.openai_api_key is not None:
        for model in _OPENAI_TTS_MODELS:
            provider = OpenAISpeech(api_key=settings.openai_api_key.get_secret_value(), client=http,
                                    base_url=settings.openai_base_url, model=model)  # fmt: skip
            services[f"openai/{model}"] = SpeechService(
                connect=pool.connection, provider=provider, store=store, bucket=bucket
            )
    if (espeak := EspeakSpeech.detect()) is not None:
        services["espeak/espeak-ng"] = SpeechService(
            connect=pool.connection, provider=espeak, store=store, bucket=bucket
        )
    if not services:
        return None
    return Speaker(services=services, default=next(iter(services)), api=api)


@asynccontextmanager
async def ai_responder(
    settings: Settings, *, pool: Pool, api: GraphAPI, media: ObjectStore
) -> AsyncIterator[AIResponder]:
    """The responder and its provider clients, closed on exit."""
    openai_key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    anthropic_key = settings.anthropic_api_key.get_secret_value() if settings.anthropic_api_key else None

    def platform_providers() -> dict[str, Provider]:
        return build_providers(
            anthropic_api_key=anthropic_key, anthropic_base_url=settings.anthropic_base_url,
            openai_api_key=openai_key, openai_base_url=settings.openai_base_url,
        )  # fmt: skip

    def providers_for(credentials: Mapping[str, Mapping[str, Any]]) -> dict[str, Provider]:
        """The tenant's providers; anthropic and openai keep the platform's key where it has none."""
        own = tenant_providers(
            credentials, anthropic_base_url=settings.anthropic_base_url,
            openai_base_url=settings.openai_base_url, local_mode=settings.zapbase_webhooks_local_mode,
        )  # fmt: skip
        return {**platform_providers(), **own}

    providers = platform_providers()
    ledger = PostgresLedger(pool)
    gateways = Gateways(platform=Gateway(providers, ledger), ledger=ledger, providers_for=providers_for)
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0)) as http:
            listener: Listener | None = None
            embedder: Callable[..., OpenAIEmbedder] | None = None
            if openai_key is not None:
                model, base_url = settings.openai_transcription_model, settings.openai_base_url
                transcriber = OpenAICompatProvider(api_key=openai_key, base_url=base_url, client=http,
                                                   transcription_model=model)  # fmt: skip
                listener = Listener(transcriber=transcriber, model=model, connect=pool.connection)
                embedder = partial(OpenAIEmbedder, api_key=openai_key, client=http, base_url=base_url)
            yield AIResponder(
                connect=pool.connection,
                gateways=gateways,
                knowledge=Knowledge(connect=pool.connection, openai=embedder),
                summarizer=Summarizer(connect=pool.connection, threshold=settings.zapbase_summary_after),
                media=media,
                listener=listener,
                speaker=_speaker(settings, pool, api, http, media),
            )
    finally:
        await gateways.aclose()
        for provider in providers.values():
            await provider.aclose()
