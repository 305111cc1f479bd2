"""Intents through the processor: the customer writes on the simulated phone, the processor
classifies the message through the AI gateway (the OpenAI wire stand-in, the real ledger) before
the flow turn, stores the intent on the message and conversation, and an intent trigger starts
its flow. Cached, thresholded, and never a crash on what the model answers."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from flow_chat import Chat, texts

from flows_db.flow_support import OWNER, TENANT, create_flow, graph
from support import Db, Row
from zapbase.ai import Gateway, OpenAICompatProvider, PostgresLedger
from zapbase.bot import AIResponder
from zapbase.bot.gateways import Gateways
from zapbase.bot.intents import IntentClassifier
from zapbase.db.pool import Pool
from zapbase.flows.engine import FlowEngine
from zapbase.simulator import SimulatedUser, Simulator
from zapbase.standins.ai import Fault, FaultKind, OpenAIStandIn, Reply
from zapbase.storage import LocalStorage
from zapbase.whatsapp import GraphAPI
from zapbase.worker.metrics import Metrics
from zapbase.worker.processor import Processor
from zapbase.worker.sender import Sender

pytestmark = pytest.mark.anyio

CHAT = "/v1/chat/completions"


def answer(intent: str, confidence: float) -> Reply:
    return Reply(text=json.dumps({"intent": intent, "confidence": confidence}))


@pytest.fixture
def gpt() -> OpenAIStandIn:
    return OpenAIStandIn(api_key="sk-test", reply_text='{"intent": "none", "confidence": 0.9}')


@pytest.fixture
async def chat(
    db: Db, sim: Simulator, maria: SimulatedUser, pool: Pool, graph_api: GraphAPI,
    media_storage: LocalStorage, offline_responder: AIResponder, gpt: OpenAIStandIn,
) -> AsyncIterator[Chat]:  # fmt: skip
    """Bot replies offline; classifications on the OpenAI stand-in (the platform's keys)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gpt.app)) as gpt_http:
        openai = OpenAICompatProvider(api_key="sk-test", base_url="http://openai.test", client=gpt_http)
        ledger = PostgresLedger(pool)
        gateways = Gateways(platform=Gateway({"openai": openai}, ledger), ledger=ledger)
        classifier = IntentClassifier(connect=pool.connection, gateways=gateways)
        flows = FlowEngine(http=gpt_http, asker=offline_responder, classifier=classifier)
        processor = Processor(pool=pool, api=graph_api, storage=media_storage, responder=offline_responder,
                              flows=flows, metrics=Metrics(), worker_id="p")  # fmt: skip
        sender = Sender(pool=pool, api=graph_api, metrics=Metrics(), worker_id="s")
        yield Chat(db, sim, maria, processor, sender)


def intents(db: Db, *rows: tuple[str, str, list[str]], active: bool = True) -> None:
    """Intents written by the tenant's owner, as the frontend writes them."""
    with db.as_user(OWNER) as s:
        for name, description, examples in rows:
            s.all("insert into public.intents (tenant_id, name, description, examples, active)"
                  " values (%s, %s, %s, %s, %s)", (TENANT, name, description, examples, active))  # fmt: skip


TRACKING = ("rastrear_pedido", "O cliente quer saber onde está o pedido", ["cadê meu pedido?"])
FOUND = "Vou localizar seu pedido."
COMPLAINT = ("reclamacao", "O cliente reclama de um produto ou atendimento", [])


def last_inbound(db: Db) -> Row:
    [row] = db.sql("select * from public.messages where direction = 'inbound' and sender_type = 'contact'"
                   " order by created_at desc limit 1")  # fmt: skip
    return row


def last_intent(db: Db) -> Any:
    return db.value("select last_intent from public.conversations where id = %s",
                    (last_inbound(db)["conversation_id"],))


def tracking_flow(db: Db) -> None:
    blocks = [{"id": "start", "type": "start"}, {"id": "say", "type": "message", "text": FOUND},
              {"id": "end", "type": "end"}]  # fmt: skip
    create_flow(db, "Rastreio", graph(*blocks, edges=[("start", "say"), ("say", "end")]),
                triggers=(("intent", "rastrear_pedido"),))  # fmt: skip


async def test_no_active_intent_costs_nothing(db: Db, chat: Chat, gpt: OpenAIStandIn) -> None:
    await chat.say("cadê meu pedido?")
    intents(db, TRACKING, active=False)
    await chat.say("cadê meu pedido?")
    assert gpt.calls_to(CHAT) == []
    assert db.value("select count(*) from public.ai_usage where feature = 'intent'") == 0
    assert last_inbound(db)["intent_confidence"] is None


async def test_an_intent_is_stored_announced_and_starts_its_flow(
    db: Db, chat: Chat, gpt: OpenAIStandIn
) -> None:
    intents(db, TRACKING, COMPLAINT)
    tracking_flow(db)
    gpt.push(answer("rastrear_pedido", 0.92))
    assert texts(await chat.say("Oi, meu pedido ainda não chegou, onde ele está?")) == [FOUND]
    message = last_inbound(db)
    assert (message["intent"], float(message["intent_confidence"])) == ("rastrear_pedido", 0.92)
    assert last_intent(db) == "rastrear_pedido"
    assert chat.execution()["started_by"] == "trigger"
    event = db.sql("select * from public.events where type = 'message.intent_detected'")
    assert [(e["subject_id"], e["payload"]["intent"]) for e in event] == [(message["id"], "rastrear_pedido")]
    # the cheapest model of the tenant's chain, budgeted and logged as every AI call
    [call] = gpt.calls_to(CHAT)
    assert call.body["model"] == "gpt-4o-mini"
    assert "rastrear_pedido: O cliente quer saber onde está o pedido" in call.body["messages"][0]["content"]
    [usage] = db.sql("select m.gateway_id, u.cost_usd, u.message_id from public.ai_usage u"
                     " join public.ai_models m on m.id = u.model_id"
                     " where u.feature = 'intent' and u.outcome = 'success'")  # fmt: skip
    assert (usage["gateway_id"], usage["message_id"]) == ("openai/gpt-4o-mini", message["id"])
    assert usage["cost_usd"] > 0
    # members read what the classifier found
    with db.as_user(OWNER) as s:
        seen = s.value("select intent from public.messages where id = %s", (message["id"],))
    assert seen == "rastrear_pedido"


async def test_the_same_folded_text_and_intents_are_asked_once(
    db: Db, chat: Chat, gpt: OpenAIStandIn
) -> None:
    intents(db, TRACKING)
    gpt.push(answer("rastrear_pedido", 0.8))
    await chat.say("Cadê meu pedido?")
    await chat.say("cade meu PEDIDO")  # same folded text: the cached answer
    assert len(gpt.calls_to(CHAT)) == 1
    assert last_inbound(db)["intent"] == "rastrear_pedido"
    with db.as_user(OWNER) as s:  # an edited intent set is asked again
        s.all("update public.intents set examples = '{onde está meu pedido?}'")
    gpt.push(answer("rastrear_pedido", 0.7))
    await chat.say("cadê meu pedido")
    assert len(gpt.calls_to(CHAT)) == 2


async def test_below_the_tenants_threshold_no_intent(db: Db, chat: Chat, gpt: OpenAIStandIn) -> None:
    intents(db, TRACKING)
    tracking_flow(db)
    gpt.push(answer("rastrear_pedido", 0.55))
    await chat.say("quero saber do meu pedido")
    message = last_inbound(db)
    assert (message["intent"], float(message["intent_confidence"])) == (None, 0.55)
    assert last_intent(db) is None and db.value("select count(*) from public.flow_executions") == 0
    assert db.value("select count(*) from public.events where type = 'message.intent_detected'") == 0
    with db.as_user(OWNER) as s:  # an admin lowers the threshold: the cached 0.55 now counts
        s.all("update public.tenants set settings = settings || '{\"intent_threshold\": 0.5}' where id = %s",
              (TENANT,))  # fmt: skip
    assert texts(await chat.say("Quero saber do meu pedido!")) == [FOUND]
    assert len(gpt.calls_to(CHAT)) == 1


@pytest.mark.parametrize("reply", [
    "Claro! A intenção é rastrear_pedido.",                        # not JSON
    '{"intent": "cancelar_pedido", "confidence": 0.99}',            # not one of the tenant's
    '{"intent": "Rastrear_Pedido", "confidence": 0.99}',
    '{"intent": "rastrear_pedido", "confidence": 7}',               # confidence out of range
    '{"intent": "rastrear_pedido", "confidence": true}',
    '["rastrear_pedido"]',
    '{"intent": "rastrear_pedido", "confidence": NaN}',             # valid to the schema: asked once
])  # fmt: skip
async def test_garbage_from_the_model_gives_no_intent_and_the_bot_answers(
    db: Db, chat: Chat, gpt: OpenAIStandIn, caplog: pytest.LogCaptureFixture, reply: str
) -> None:
    intents(db, TRACKING)
    tracking_flow(db)
    gpt.push(*[Reply(text=reply)] * (1 if "NaN" in reply else 2))  # asked again once: the same garbage
    with caplog.at_level(logging.WARNING, logger="zapbase.bot.intents"):
        replies = await chat.say("cadê meu pedido?")
    assert len(replies) >= 1 and FOUND not in texts(replies)  # the bot answered
    assert last_inbound(db)["status"] == "processed" and last_inbound(db)["intent_confidence"] is None
    assert "not classified" in caplog.text
    assert db.value("select count(*) from public.intent_cache") == 0  # asked again next time
    gpt.push(answer("rastrear_pedido", 0.9))
    assert texts(await chat.say("cadê meu pedido?")) == [FOUND]


async def test_an_invalid_answer_is_asked_again_once(db: Db, chat: Chat, gpt: OpenAIStandIn) -> None:
    intents(db, TRACKING)
    tracking_flow(db)
    gpt.push(Reply(text="rastrear_pedido"), answer("rastrear_pedido", 0.8))
    assert texts(await chat.say("cadê meu pedido?")) == [FOUND]
    retry = gpt.calls_to(CHAT)[1].body["messages"]
    assert retry[-2]["content"] == "rastrear_pedido"  # the model sees its answer and what was wrong


async def test_failing_providers_leave_the_turn_alone(db: Db, chat: Chat, gpt: OpenAIStandIn) -> None:
    intents(db, TRACKING)
    gpt.push(Fault(kind=FaultKind.SERVER_ERROR))  # no local answerer for JSON: nothing else to ask
    replies = await chat.say("cadê meu pedido?")
    assert replies and last_inbound(db)["status"] == "processed" and last_inbound(db)["intent"] is None
    outcomes = [r["outcome"] for r in db.sql("select outcome from public.ai_usage where feature = 'intent'")]
    assert outcomes == ["failure"]  # logged as every call


async def test_a_paused_budget_asks_nothing_and_the_flow_still_runs(
    db: Db, chat: Chat, gpt: OpenAIStandIn, caplog: pytest.LogCaptureFixture
) -> None:
    intents(db, TRACKING)
    blocks = [{"id": "start", "type": "start"}, {"id": "say", "type": "message", "text": FOUND},
              {"id": "end", "type": "end"}]  # fmt: skip
    create_flow(db, "Rastreio", graph(*blocks, edges=[("start", "say"), ("say", "end")]),
                triggers=(("intent", "rastrear_pedido"), ("keyword", "entrega", "contains")))  # fmt: skip
    db.sql("update public.budgets set paused_reason = 'manual' where tenant_id = %s", (TENANT,))
    with caplog.at_level(logging.WARNING, logger="zapbase.bot.intents"):
        assert texts(await chat.say("e a entrega do pedido?")) == [FOUND]  # by its keyword
    assert gpt.calls_to(CHAT) == [] and last_inbound(db)["intent_confidence"] is None
    assert "not classified: refused (paused)" in caplog.text


async def test_messages_without_text_are_not_classified(db: Db, chat: Chat, gpt: OpenAIStandIn) -> None:
    intents(db, TRACKING)
    await chat.phone.send_location(-23.56, -46.65, name="Minha casa", address="Rua Augusta, 100")
    await chat.settle()
    assert last_inbound(db)["type"] == "location" and last_inbound(db)["status"] == "processed"
    assert gpt.calls_to(CHAT) == []
