"""Flows through the processor: every block type, the loop guard, expiry, bad input; a
customer on the simulated phone, the real database, the worker's processor and sender."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from flow_chat import Chat, options, texts

from flows_db.flow_support import TEAM, create_flow, graph
from support import Db
from zapbase.bot import AIResponder
from zapbase.db.pool import Pool
from zapbase.flows.engine import FlowEngine
from zapbase.flows.interpreter import RETRY_HINTS
from zapbase.simulator import SimulatedUser, Simulator
from zapbase.standins.orders import OrdersStandIn
from zapbase.storage import LocalStorage
from zapbase.whatsapp import GraphAPI
from zapbase.worker.metrics import Metrics
from zapbase.worker.processor import Processor
from zapbase.worker.sender import Sender

pytestmark = pytest.mark.anyio

START = {"id": "start", "type": "start"}
END = {"id": "end", "type": "end", "text": "Até mais!"}


@pytest.fixture
async def chat(
    db: Db, sim: Simulator, maria: SimulatedUser, pool: Pool, graph_api: GraphAPI, media_storage: LocalStorage,
    offline_responder: AIResponder, flow_engine: FlowEngine,
) -> AsyncIterator[Chat]:  # fmt: skip
    processor = Processor(pool=pool, api=graph_api, storage=media_storage, responder=offline_responder,
                          flows=flow_engine, metrics=Metrics(), worker_id="p")  # fmt: skip
    yield Chat(db, sim, maria, processor, Sender(pool=pool, api=graph_api, metrics=Metrics(), worker_id="s"))


def flow(db: Db, *blocks: dict[str, Any], edges: list[Any], keyword: str = "teste", **settings: Any) -> None:
    create_flow(db, "Teste", graph(START, *blocks, edges=edges), triggers=(("keyword", keyword),), **settings)


async def test_the_demo_order_flow(db: Db, chat: Chat, orders: OrdersStandIn) -> None:
    got = await chat.say("Rastreio!")
    assert texts(got) == ["Olá, Maria Silva! Vou localizar seu pedido. 📦", "Qual é o CPF usado na compra? (só os números)"]
    conversation = chat.db.sql("select * from public.conversations")[0]
    assert conversation["mode"] == "flow"
    # a sticker, then a CPF with a wrong check digit: asked again each time
    await chat.phone.send_image(b"\x89PNG sticker-like")
    assert texts(await chat.settle()) == [RETRY_HINTS["cpf"]]
    assert texts(await chat.say("529.982.247-26")) == [RETRY_HINTS["cpf"]]
    got = await chat.say("529.982.247-25")
    assert texts(got)[0] == "Encontrei o pedido PED-1042: em transporte, previsão de entrega 05/12."
    menu = got[1]
    assert menu.content["type"] == "list" and len(options(menu)) == 5
    assert orders.requests[0][0] == "http://localhost:8788/orders?cpf=52998224725"
    got = await chat.tap(menu, "agent")
    assert texts(got) == ["Certo! Vou chamar uma pessoa da equipe de Atendimento."]
    after = chat.db.sql("select * from public.conversations")[0]
    assert (after["mode"], str(after["team_id"]), after["handoff_reason"]) == ("human", TEAM,
                                                                               "pediu atendente no rastreio")
    execution = chat.execution()
    assert (execution["status"], execution["end_reason"]) == ("completed", "handed off")
    assert execution["variables"]["cpf"] == "52998224725" and execution["variables"]["next"] == "agent"
    assert chat.steps() == [("start", "next"), ("hello", "next"), ("ask_cpf", "asked"),
                            ("ask_cpf", "retry 1"), ("ask_cpf", "retry 2"), ("ask_cpf", "next"),
                            ("lookup", "next"), ("found", "true"), ("show", "next"), ("menu", "asked"),
                            ("menu", "agent"), ("agent", "handoff")]
    # the step log keeps the CPF masked
    inputs = [r["input"] for r in db.sql("select input from public.flow_steps where input is not null")]
    assert "52998224725" not in json.dumps(inputs) and "529.982.247-25" not in json.dumps(inputs)
