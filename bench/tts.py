"""TTS voice notes: a cache hit against a synthesis, side by side, through SpeechService.

Both paths run as the worker runs them: authenticator working as service_role, no
server-side prepared statements, the tenant's tts_cache in Postgres and the audio in a
local object store. The provider is the OpenAI wire-format stand-in in zero-latency
mode, so the synthesis figure is Zapbase's own overhead (budget reservation, the
stand-in's Ogg rendering over ASGI, settlement, audio write, cache store): a real tts-1
call adds ~350 ms plus ~2 ms a character on top of it. A hit costs one lookup that
also settles the hit in ai_usage, plus one object read.

Each round synthesises a new text, then asks for the same text with other whitespace
(a hit), so both figures share the machine's state of the moment.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from pathlib import Path

import anyio
import httpx

from harness import Context, Measure, median, percentile
from zapbase.db.pool import borrow, connect
from zapbase.standins.speech import ZERO_LATENCY, SpeechStandIn
from zapbase.storage import LocalStorage
from zapbase.tts.providers import OpenAISpeech
from zapbase.tts.service import SpeechService

TENANT = uuid.UUID("00000000-0000-4000-b000-000000000001")  # seed: Loja Demo
ROUNDS = 300
WARMUP = 20
SYNTHESIS = "tts synthesis p50 (zero-latency provider)"


async def _rounds(url: str, store_dir: Path) -> tuple[list[float], list[float]]:
    standin = SpeechStandIn(latency=ZERO_LATENCY)
    async with (
        await connect(url) as conn,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=standin.app)) as http,
    ):
        provider = OpenAISpeech(api_key="sk-standin", client=http, base_url="http://tts.bench", voice="nova")
        service = SpeechService(connect=borrow(conn), provider=provider, store=LocalStorage(store_dir))
        misses: list[float] = []
        hits: list[float] = []
        for n in range(WARMUP + ROUNDS):
            text = f"Olá! Seu pedido {n:05d} saiu para entrega e chega em até 2 dias úteis."
            began = time.perf_counter()
            made = await service.voice_note(TENANT, text)
            synthesised = time.perf_counter()
            again = await service.voice_note(TENANT, "  " + text.replace(" ", "\n", 3))
            done = time.perf_counter()
            assert not made.cached and again.cached, (made.cached, again.cached)
            if n >= WARMUP:
                misses.append((synthesised - began) * 1000)
                hits.append((done - synthesised) * 1000)
        assert len(standin.requests) == WARMUP + ROUNDS  # every hit skipped the provider
    return misses, hits


def measure(ctx: Context) -> list[Measure]:
    url = ctx.fresh_db()
    with tempfile.TemporaryDirectory(prefix="zapbase-tts-bench-") as tmp:
        misses, hits = anyio.run(_rounds, url, Path(tmp))
    print(f"tts: cache hit p50 {median(hits):.2f} ms vs synthesis p50 {median(misses):.2f} ms:"
          f" the hit takes {median(hits) / median(misses):.2f}× the time of a zero-latency synthesis")
    return [
        Measure(SYNTHESIS, median(misses), "ms", goal="our overhead around the provider call"),
        Measure("tts synthesis p95 (zero-latency provider)", percentile(misses, 95), "ms"),
        Measure("tts cache hit p50", median(hits), "ms", baseline=SYNTHESIS, goal="< 1 × synthesis"),
        Measure("tts cache hit p95", percentile(hits, 95), "ms"),
    ]
