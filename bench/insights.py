"""Coaching insights: the insight loop's own overhead per analysis. 200 uploaded calls of 12
lines each are analysed one by one by `InsightLoop.run_once` (claim, prompt, the tenant's
gateway on the PostgreSQL ledger, validation of the answer, `coaching_insight_record` with its
evidence check and cost lookup) with a zero-latency OpenAI stand-in answering a schema-valid
analysis whose evidence quotes the call. Divided by `Gateway.chat` alone on the same prompts
(reservation, usage log), interleaved so both see the same load: what the coaching layer adds
on top of any AI call.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import psycopg

from harness import Context, Measure, median
from zapbase.ai import Gateway, OpenAICompatProvider, PostgresLedger
from zapbase.bot.config import load_policy
from zapbase.bot.gateways import Gateways
from zapbase.coaching import InsightJob, build_request
from zapbase.db.pool import open_pool
from zapbase.standins.ai import OpenAIStandIn
from zapbase.worker.insights import InsightLoop

TENANT = "00000000-0000-4000-b000-000000000001"  # seed: Loja Demo
SELLER = "00000000-0000-4000-c000-000000000002"
CALLS = 200
TRANSCRIPT = "\n".join(
    f"{'Vendedor' if n % 2 else 'Cliente'}: fala {n} sobre orçamento, prazo e decisão" for n in range(12)
)
ANSWER = json.dumps({
    "summary": "Conversa de descoberta.", "sentiment": "neutral",
    "methodology": {"situation": {"score": 6, "evidence": []}, "pain": {"score": None, "evidence": []}},
    "suggested_actions": ["Enviar proposta"],
})  # fmt: skip


def _arrange(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("update public.budgets set brl_limit = 1e9 where tenant_id = %s", (TENANT,))
        conn.execute(
            "insert into public.coaching_calls (tenant_id, seller_id, occurred_at, transcript)"
            " select %s, %s, now(), %s || E'\\nCliente: ligação ' || g from generate_series(1, %s) g",
            (TENANT, SELLER, TRANSCRIPT, CALLS),
        )


async def _run(url: str) -> tuple[list[float], list[float], int]:
    fake = OpenAIStandIn(api_key="sk-bench", reply_text=ANSWER)
    loop_ms: list[float] = []
    chat_ms: list[float] = []
    async with (
        open_pool(url, 2) as pool,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as http,
    ):
        provider = OpenAICompatProvider(api_key="sk-bench", base_url="http://openai.test", client=http)
        gateway = Gateway({"openai": provider}, PostgresLedger(pool))
        loop = InsightLoop(pool=pool, gateways=Gateways(platform=gateway, ledger=PostgresLedger(pool)),
                           worker_id="bench", batch_size=1)  # fmt: skip
        async with pool.connection() as conn:
            policy = await load_policy(conn, uuid.UUID(TENANT), None)
            claimed = await (await conn.execute(
                "select * from public.coaching_insight_claim('bench-probe', 1, 1)")).fetchone()  # fmt: skip
        assert claimed is not None
        probe = InsightJob.from_row(claimed)
        for _ in range(CALLS - 1):
            started = time.perf_counter()
            assert await loop.run_once() == 1
            loop_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            response = await gateway.chat(build_request(probe), policy)
            chat_ms.append((time.perf_counter() - started) * 1000)
            assert response.ok
        async with pool.connection() as conn:
            query = "select count(*) as n from public.conversation_insights where status = 'done'"
            done = await (await conn.execute(query)).fetchone()
    return loop_ms, chat_ms, int(done["n"]) if done else 0


def measure(ctx: Context) -> list[Measure]:
    url = ctx.fresh_db()
    _arrange(url)
    loop_ms, chat_ms, done = asyncio.run(_run(url))
    assert done == CALLS - 1, f"{done} analyses done of {CALLS - 1}"
    baseline = "Gateway.chat alone, insight prompt, zero-latency stand-in, p50"
    return [
        Measure(baseline, median(chat_ms[10:]), "ms"),
        Measure(
            "insight analysis (claim, gateway, validation, record), zero-latency stand-in, p50",
            median(loop_ms[10:]),
            "ms",
            baseline=baseline,
        ),
    ]
