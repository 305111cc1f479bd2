"""Flows: one interpreter step without I/O, and a flow turn through the processor against a
bot turn.

Interpreter: each round plays the demo tenant's order-tracking flow's typed turns in memory
(start; a wrong CPF; a right one, the http block answered with a canned order; a list
choice) and divides each turn's time by the blocks it ran. No database, no network.

Processor: a new customer's first message, ingested as the webhook ingests it, then the time
of `Processor.run_once` (claim, the turn, replies and state committed). Flow: "rastreio"
starts the demo flow (greeting and the CPF question). Bot: a question the AI bot answers on
a zero-latency OpenAI stand-in (gateway, ledger, knowledge search, memory; a welcome too).
The two alternate on one database, so both see the same load; the flow turn is divided by
the bot turn.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path

import anyio
import httpx

from harness import Context, Measure, percentile
from zapbase.ai import Gateway, OpenAICompatProvider, PostgresLedger
from zapbase.bot import AIResponder
from zapbase.bot.gateways import Gateways
from zapbase.bot.knowledge import Knowledge
from zapbase.bot.memory import Summarizer
from zapbase.db.pool import Pool, open_pool
from zapbase.flows.engine import FlowEngine
from zapbase.flows.graph import Graph
from zapbase.flows.interpreter import Answer, Done, EffectResult, Input, Limits, Start, State, Turn
from zapbase.simulator import DEMO_NUMBER, Simulator, SimulatorConfig
from zapbase.simulator import create_app as create_simulator
from zapbase.standins.ai import OpenAIStandIn
from zapbase.storage import LocalStorage
from zapbase.whatsapp import GraphAPI
from zapbase.worker.metrics import Metrics
from zapbase.worker.processor import Processor

ROUNDS = 2000
TURNS = 150
BOT_TURN = "bot turn through the processor p50 (zero-latency provider)"
SEED = Path(__file__).resolve().parents[1] / "seed" / "40_demo_flow.sql"
ORDER = {"found": True, "order": {"id": "PED-1042", "status": "em transporte", "eta": "05/12"}}


def _graph() -> Graph:
    text = SEED.read_text()
    return Graph.from_json(json.loads(text.split("$graph$")[1]))


def measure(ctx: Context) -> list[Measure]:
    graph, limits, context = _graph(), Limits(), {"contact.name": "Maria", "contact.wa_id": "5511988887777"}
    per_step: list[float] = []
    for _ in range(ROUNDS):
        state = State()
        for event in (Start(), Answer(Input(text="123")), Answer(Input(text="529.982.247-25")),
                      Answer(Input(text=None, reply_id="done"))):  # fmt: skip
            started = time.perf_counter()
            turn = Turn(graph, state, limits=limits, context=context)
            effect = turn.feed(event)
            while effect is not None:
                effect = turn.feed(Done(EffectResult(ok=True, value=ORDER)))
            per_step.append((time.perf_counter() - started) / max(len(turn.steps), 1))
            state = turn.state
        assert state.status == "completed", state  # the round really played the flow to its end
    flow_turn, bot_turn = anyio.run(_turns, ctx.fresh_db())
    return [Measure("flow interpreter step p50 (no I/O)", percentile(per_step, 50) * 1000, "ms",
                    goal="≤ 0.2 ms"),
            Measure(BOT_TURN, bot_turn * 1000, "ms"),
            Measure("flow turn through the processor p50", flow_turn * 1000, "ms",
                    baseline=BOT_TURN)]  # fmt: skip


async def _ingest(pool: Pool, wa_id: str, text: str) -> None:
    """A customer's text message to the demo number, as the webhook ingests it."""
    payload = {"object": "whatsapp_business_account", "entry": [{"id": "bench", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": DEMO_NUMBER.display_phone_number,
                         "phone_number_id": DEMO_NUMBER.phone_number_id},
            "messages": [{"from": wa_id, "id": f"wamid.{uuid.uuid4().hex}", "type": "text",
                          "timestamp": str(int(time.time())), "text": {"body": text}}]}}]}]}  # fmt: skip
    async with pool.connection() as conn:
        await conn.execute("select public.whatsapp_ingest(%s::jsonb, %s)",
                           (json.dumps(payload), DEMO_NUMBER.phone_number_id))  # fmt: skip


async def _turns(url: str) -> tuple[float, float]:
    """p50 seconds of a flow turn and of a bot turn, alternated."""
    gpt = OpenAIStandIn(api_key="sk-bench", reply_text="O prazo é de 4 a 7 dias úteis.", latency_ms=0)
    simulator = Simulator(SimulatorConfig(numbers=(DEMO_NUMBER,), webhook_url="http://worker/unused"))
    with tempfile.TemporaryDirectory(prefix="zapbase-bench-") as media_dir:
        return await _alternate(url, gpt, simulator, LocalStorage(Path(media_dir)))


async def _alternate(
    url: str, gpt: OpenAIStandIn, simulator: Simulator, media: LocalStorage
) -> tuple[float, float]:
    async with (
        open_pool(url, 4) as pool,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=gpt.app)) as gpt_http,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=create_simulator(simulator=simulator)),
                          base_url="http://simulator") as graph_http,
    ):  # fmt: skip
        async with pool.connection() as conn:  # every turn answered, however many in a day
            await conn.execute("update public.bots set max_replies_per_contact_per_day = null,"
                               " max_replies_per_tenant_per_day = null, business_hours = '{}'")  # fmt: skip
        ledger = PostgresLedger(pool)
        openai = OpenAICompatProvider(api_key="sk-bench", base_url="http://openai.test", client=gpt_http)
        gateways = Gateways(platform=Gateway({"openai": openai}, ledger), ledger=ledger)
        responder = AIResponder(connect=pool.connection, gateways=gateways, media=media,
                                knowledge=Knowledge(connect=pool.connection),
                                summarizer=Summarizer(connect=pool.connection, threshold=20))  # fmt: skip
        processor = Processor(
            pool=pool, api=GraphAPI(graph_http, base_url="http://simulator"), storage=media,
            responder=responder, metrics=Metrics(), worker_id="bench",
            flows=FlowEngine(http=gpt_http, asker=responder, classifier=responder.intents),
        )  # fmt: skip
        timings: dict[str, list[float]] = {"flow": [], "bot": []}
        for i in range(TURNS):
            for kind, text in (("flow", "rastreio"), ("bot", f"Qual o prazo de entrega para o CEP {i:05d}?")):
                await _ingest(pool, f"55119{i:04d}{'01' if kind == 'flow' else '02'}00", text)
                started = time.perf_counter()
                assert await processor.run_once() == 1
                timings[kind].append(time.perf_counter() - started)
        async with pool.connection() as conn:  # both really answered: the flow asked, the model spoke
            cur = await conn.execute(
                "select count(*) filter (where m.content like 'Qual é o CPF%%') as flow,"
                " count(*) filter (where m.ai_model = 'openai/gpt-4o-mini') as bot"
                " from public.messages m where m.direction = 'outbound'")
            row = await cur.fetchone()
        assert row is not None and (row["flow"], row["bot"]) == (TURNS, TURNS), row
    return percentile(timings["flow"], 50), percentile(timings["bot"], 50)
