"""The AI bot through the inbound processor, end to end: the customer writes on the simulated
phone, the worker's webhook ingests, the processor claims and the AIResponder answers with
the providers' wire stand-ins (Anthropic, OpenAI chat / transcription / TTS) over the real
ledger, knowledge base and AI memory; the sender delivers what was queued."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import httpx
import httpx2
import pytest
import uvicorn
from fastapi import FastAPI
from loop_support import BOT, MARIA, TENANT, conversation_of, drain, outbound
from pydantic import SecretStr

from support import Db, Row
from zapbase.ai import AnthropicProvider, Gateway, OpenAICompatProvider, PostgresLedger, tenant_providers
from zapbase.ai.providers.local import FOUND_PREFIX
from zapbase.ai.types import ChatRequest, ChatResult, Provider, Usage
from zapbase.bot import HANDOFF_NOTICE, AIResponder, ai_responder
from zapbase.bot.gateways import Gateways
from zapbase.bot.knowledge import Knowledge
from zapbase.bot.memory import Summarizer
from zapbase.bot.rules import (
    CANNOT_LISTEN,
    TICKET_OPENED,
    accepts_offer,
    find_protocol,
    greeting_only,
    is_open,
)
from zapbase.bot.voice import Listener, Speaker
from zapbase.db.embedded import free_port
from zapbase.db.pool import Pool, open_pool
from zapbase.flows.engine import FlowEngine
from zapbase.knowledge.embedders import HashingEmbedder
from zapbase.knowledge.seed import aingest_seed_knowledge
from zapbase.settings import Settings, find_project_dir
from zapbase.simulator import SimulatedUser, Simulator
from zapbase.standins.ai import AnthropicStandIn, Fault, FaultKind, OpenAIStandIn, Reply
from zapbase.standins.speech import ZERO_LATENCY, SpeechStandIn, ogg_opus_silence
from zapbase.storage import LocalStorage
from zapbase.tts.providers import OpenAISpeech
from zapbase.tts.service import SpeechService
from zapbase.whatsapp import GraphAPI
from zapbase.worker.metrics import Metrics
from zapbase.worker.processor import Processor
from zapbase.worker.runner import EmbeddedServer
from zapbase.worker.sender import Sender

pytestmark = pytest.mark.anyio

PROJECT = find_project_dir(Path(__file__).parent)
WELCOME = "Olá! 👋 Sou a assistente virtual da Loja Demo. Como posso ajudar?"
FALLBACK = (
    'Desculpe, não entendi. Pode reformular? Se preferir, digite "atendente" para falar com uma pessoa.'
)
CLAUDE = "Para o Nordeste, o prazo é de 4 a 7 dias úteis após o despacho."
TRANSCRIPT = "Qual o prazo de entrega para o Nordeste?"
SUMMARY_AFTER = 2
TENANT_KEY = "sk-loja-demo-own-key"


@pytest.fixture(autouse=True)
def always_open(db: Db) -> None:
    """Humans at work all day, so the handoff text does not depend on the test's hour."""
    db.sql("update public.bots set business_hours = '{}'")


@pytest.fixture
def claude() -> AnthropicStandIn:
    return AnthropicStandIn(api_key="sk-ant-test", reply_text=CLAUDE)


@pytest.fixture
def gpt() -> OpenAIStandIn:
    return OpenAIStandIn(api_key="sk-test", reply_text="Resposta do GPT.", transcript_text=TRANSCRIPT,
                         transcript_seconds=3.0)  # fmt: skip


@pytest.fixture
def tenant_gpt() -> OpenAIStandIn:
    """The OpenAI account of a tenant that brought its own key."""
    return OpenAIStandIn(api_key=TENANT_KEY, reply_text="Resposta na conta da própria loja.")


@pytest.fixture
def voice() -> SpeechStandIn:
    return SpeechStandIn(latency=ZERO_LATENCY)


@pytest.fixture
async def responder(
    pool: Pool, graph_api: GraphAPI, media_storage: LocalStorage, tmp_path: Path,
    claude: AnthropicStandIn, gpt: OpenAIStandIn, voice: SpeechStandIn, tenant_gpt: OpenAIStandIn,
) -> AsyncIterator[AIResponder]:  # fmt: skip
    """Every capability on, each provider a stand-in reached in-process."""
    async with (
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=claude.app)) as claude_http,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=gpt.app)) as gpt_http,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=voice.app)) as voice_http,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=tenant_gpt.app)) as tenant_http,
    ):
        anthropic = AnthropicProvider(api_key="sk-ant-test", base_url="http://anthropic.test",
                                      client=claude_http)  # fmt: skip
        openai = OpenAICompatProvider(api_key="sk-test", base_url="http://openai.test", client=gpt_http)
        ledger = PostgresLedger(pool)
        gateway = Gateway({"anthropic": anthropic, "openai": openai}, ledger)

        def providers_for(keys: Mapping[str, Mapping[str, Any]]) -> dict[str, Provider]:
            # the tenant's own OpenAI account; nothing else (so its chain skips Anthropic)
            return tenant_providers(keys, openai_base_url="http://openai.test", client=tenant_http)

        speech = SpeechService(
            connect=pool.connection, store=media_storage,
            provider=OpenAISpeech(api_key="sk-standin", client=voice_http, base_url="http://tts.test"),
        )  # fmt: skip
        gateways = Gateways(platform=gateway, ledger=ledger, providers_for=providers_for)
        yield AIResponder(
            connect=pool.connection,
            gateways=gateways,
            knowledge=Knowledge(connect=pool.connection),
            summarizer=Summarizer(connect=pool.connection, threshold=SUMMARY_AFTER),
            media=media_storage,
            listener=Listener(transcriber=openai, model="whisper-1", connect=pool.connection),
            speaker=Speaker(services={"openai/tts-1": speech}, default="openai/tts-1", api=graph_api),
        )


@pytest.fixture
async def knowledge(db: Db, pool: Pool) -> None:
    """The demo tenant's seed knowledge base, as `zapbase setup` ingests it."""
    await aingest_seed_knowledge(pool.connection, PROJECT, embedder=HashingEmbedder())


def processor(pool: Pool, api: GraphAPI, storage: LocalStorage, responder: AIResponder) -> Processor:
    # no flow exists in these tests: its engine never calls out
    flows = FlowEngine(http=httpx.AsyncClient(), asker=responder)
    return Processor(pool=pool, api=api, storage=storage, responder=responder, flows=flows,
                     metrics=Metrics(), worker_id="p")  # fmt: skip


@pytest.fixture
def run(
    pool: Pool, graph_api: GraphAPI, media_storage: LocalStorage, responder: AIResponder
) -> Processor:
    return processor(pool, graph_api, media_storage, responder)


def inbound_id(db: Db, wamid: str) -> uuid.UUID:
    value: uuid.UUID = db.value("select id from public.messages where wamid = %s", (wamid,))
    return value


def conversation(db: Db) -> Row:
    [row] = db.sql("select * from public.conversations")
    return row


def usage(db: Db) -> list[Row]:
    return db.sql(
        "select u.*, m.api_type from public.ai_usage u join public.ai_models m on m.id = u.model_id"
        " order by u.created_at, u.attempt"
    )


def user_turns(call_body: dict[str, object]) -> list[tuple[str, str]]:
    messages = call_body["messages"]
    assert isinstance(messages, list)
    return [(m["role"], m["content"] if isinstance(m["content"], str) else m["content"][0]["text"])
            for m in messages]  # fmt: skip


async def test_a_delivery_question_is_answered_from_the_knowledge_base(
    db: Db, maria: SimulatedUser, run: Processor, claude: AnthropicStandIn, knowledge: None
) -> None:
    delivery = await maria.send_text("Oi! Qual o prazo de entrega para o Nordeste?")

    assert await run.run_once() == 1

    message_id = inbound_id(db, delivery.wamid)
    replies = outbound(db, conversation_of(db, MARIA))
    assert [r["content"] for r in replies] == [WELCOME, CLAUDE]
    answer = replies[1]
    assert (answer["ai_model"], answer["sender_type"], answer["status"]) == (
        "anthropic/claude-haiku-4-5", "bot", "queued"
    )  # fmt: skip
    assert answer["ai_input_tokens"] > 0 and answer["ai_output_tokens"] > 0 and answer["ai_latency_ms"] >= 0
    # The model saw the bot's prompt, the passage with the answer and the question.
    [call] = claude.calls_to("/v1/messages")
    system = " ".join(block["text"] for block in call.body["system"])
    assert "assistente virtual da Loja Demo" in system
    assert "Entrega › Prazos" in system and "Capitais do Centro-Oeste e Nordeste | 4 a 7 dias úteis" in system
    assert user_turns(call.body) == [("user", "Oi! Qual o prazo de entrega para o Nordeste?")]
    # One usage row for the reply, tied to the conversation and the customer's message.
    [reply] = [u for u in usage(db) if u["feature"] == "reply"]
    assert (reply["model"], reply["outcome"], reply["api_type"]) == (
        "anthropic/claude-haiku-4-5",
        "success",
        "chat",
    )
    assert (reply["conversation_id"], reply["message_id"], str(reply["bot_id"])) == (
        conversation_of(db, MARIA), message_id, BOT
    )  # fmt: skip
    assert reply["input_tokens"] == answer["ai_input_tokens"] and reply["cost_usd"] > 0
    # Besides ingestion: the question embedded for the search, and the reply.
    assert [u["feature"] for u in usage(db) if u["feature"] != "knowledge.ingest"] == [
        "knowledge.search",
        "reply",
    ]


async def test_the_customers_classified_intent_reaches_the_prompt(
    db: Db, maria: SimulatedUser, run: Processor, claude: AnthropicStandIn
) -> None:
    db.sql("insert into public.intents (tenant_id, name, description) values"
           " (%s, 'prazo_entrega', 'Quer saber quando o pedido chega')", (TENANT,))
    await maria.send_text("Cadê meu pedido?")
    # what the classifier leaves before the bot answers
    db.sql("update public.conversations set last_intent = 'prazo_entrega'")
    assert await run.run_once() == 1
    [call] = claude.calls_to("/v1/messages")
    system = " ".join(block["text"] for block in call.body["system"])
    intent = "prazo_entrega: Quer saber quando o pedido chega"
    assert f"Intenção do cliente, segundo o classificador: {intent}" in system


async def test_a_failing_provider_falls_back_to_the_next_one(
    db: Db, maria: SimulatedUser, run: Processor, claude: AnthropicStandIn, gpt: OpenAIStandIn
) -> None:
    claude.push(Fault(kind=FaultKind.OVERLOADED))
    await maria.send_text("Vocês vendem vale-presente?")

    assert await run.run_once() == 1

    answer = outbound(db, conversation_of(db, MARIA))[-1]
    assert (answer["content"], answer["ai_model"]) == ("Resposta do GPT.", "openai/gpt-4o-mini")
    rows = usage(db)
    assert [(u["model"], u["outcome"], u["error_code"]) for u in rows] == [
        ("anthropic/claude-haiku-4-5", "failure", "overloaded"), ("openai/gpt-4o-mini", "success", None)
    ]  # fmt: skip
    assert conversation(db)["mode"] == "bot"


async def test_a_tenant_with_its_own_key_is_answered_on_its_own_account(
    db: Db, maria: SimulatedUser, run: Processor, claude: AnthropicStandIn, tenant_gpt: OpenAIStandIn
) -> None:
    owner = db.value("select user_id from public.members where tenant_id = %s and role = 'owner'", (TENANT,))
    with db.as_user(owner) as s:  # as the tenant's admin screen does it
        key = s.value(
            "insert into public.integrations (tenant_id, type, provider, name, status)"
            " values (%s, 'llm', 'openai', 'Conta OpenAI da loja', 'active') returning id",
            (TENANT,),
        )
        s.all("select public.set_integration_secret(%s, %s)", (key, TENANT_KEY))
    await maria.send_text("Vocês vendem vale-presente?")

    assert await run.run_once() == 1

    answer = outbound(db, conversation_of(db, MARIA))[-1]
    assert (answer["content"], answer["ai_model"]) == (
        "Resposta na conta da própria loja.", "openai/gpt-4o-mini"
    )  # fmt: skip
    [call] = tenant_gpt.calls_to("/v1/chat/completions")
    assert call.headers["authorization"] == f"Bearer {TENANT_KEY}"
    assert claude.calls_to("/v1/messages") == []  # the platform's account was not used
    # still the tenant's budget and usage log
    assert [(u["model"], u["outcome"]) for u in usage(db)] == [("openai/gpt-4o-mini", "success")]


async def test_a_budget_refusal_sends_the_fallback_and_hands_off(
    db: Db, maria: SimulatedUser, run: Processor, claude: AnthropicStandIn
) -> None:
    db.sql("update public.budgets set paused_reason = 'manual' where tenant_id = %s", (TENANT,))
    await maria.send_text("Vocês vendem vale-presente?")

    assert await run.run_once() == 1

    assert [r["content"] for r in outbound(db, conversation_of(db, MARIA))] == [WELCOME, FALLBACK]
    conv = conversation(db)
    assert (conv["mode"], conv["status"]) == ("human", "pending")
    assert conv["handoff_reason"] == "AI budget refused the reply: paused"
    assert claude.calls_to("/v1/messages") == []  # nothing was spent


async def test_a_chain_that_stops_sends_the_fallback_and_hands_off(
    db: Db, maria: SimulatedUser, run: Processor, claude: AnthropicStandIn, gpt: OpenAIStandIn
) -> None:
    claude.push(Fault(kind=FaultKind.SPEND_LIMIT))  # stop and alert: no fallback after it
    await maria.send_text("Vocês vendem vale-presente?")

    assert await run.run_once() == 1

    assert outbound(db, conversation_of(db, MARIA))[-1]["content"] == FALLBACK
    assert conversation(db)["handoff_reason"] == "AI providers failed: spend_limit_exceeded"
    assert gpt.calls_to("/v1/chat/completions") == []
    assert [u["outcome"] for u in usage(db)] == ["failure"]


@pytest.mark.parametrize(
    ("text", "keyword"),
    [("Quero falar com um ATENDENTE", "atendente"), ("dá pra falar com uma pessoa de verdade?", "pessoa")],
)
async def test_a_handoff_keyword_hands_over_without_calling_a_model(
    db: Db, maria: SimulatedUser, run: Processor, claude: AnthropicStandIn, text: str, keyword: str
) -> None:
    await maria.send_text(text)

    assert await run.run_once() == 1

    assert [r["content"] for r in outbound(db, conversation_of(db, MARIA))] == [HANDOFF_NOTICE]
    conv = conversation(db)
    assert (conv["mode"], conv["handoff_reason"]) == ("human", f"handoff keyword: {keyword}")
    assert not claude.calls  # no model was called


async def test_a_customer_who_opts_out_gets_no_bot_answer_and_costs_no_ai(
    db: Db, maria: SimulatedUser, run: Processor, claude: AnthropicStandIn
) -> None:
    await maria.send_text("PARAR")

    assert await run.run_once() == 1

    # the only answer is the LGPD confirmation of the opt-out, never the bot's
    assert [r["sender_type"] for r in outbound(db, conversation_of(db, MARIA))] == ["system"]
    [row] = db.sql("select status, error_details from public.messages where direction = 'inbound'")
    assert (row["status"], row["error_details"]) == ("ignored", "the contact may not be messaged")
    assert not claude.calls and usage(db) == []
    assert await run.run_once() == 0  # settled, not retried


async def test_outside_business_hours_the_handoff_says_when_people_are_back(
    db: Db, maria: SimulatedUser, run: Processor
) -> None:
    today = datetime.now(ZoneInfo("America/Sao_Paulo")).date().isoformat()
    db.sql("update public.bots set business_hours = jsonb_build_object('holidays', array[%s])", (today,))
    away = db.value("select away_message from public.bots where id = %s", (BOT,))
    await maria.send_text("Quero falar com um humano")

    assert await run.run_once() == 1

    assert [r["content"] for r in outbound(db, conversation_of(db, MARIA))] == [away]
    assert conversation(db)["mode"] == "human"


async def test_yes_to_the_offer_of_a_person_hands_over(
    db: Db, maria: SimulatedUser, run: Processor, claude: AnthropicStandIn
) -> None:
    claude.push(Reply(text="Não sei responder isso. Posso chamar um atendente humano?"))
    await maria.send_text("Vocês consertam relógios?")
    assert await run.run_once() == 1
    await maria.send_text("Sim, por favor")

    assert await run.run_once() == 1

    assert outbound(db, conversation_of(db, MARIA))[-1]["content"] == HANDOFF_NOTICE
    assert conversation(db)["handoff_reason"] == "accepted the bot's offer of a person"
    assert len(claude.calls_to("/v1/messages")) == 1


async def test_the_daily_cap_of_a_contact_hands_over_instead_of_going_silent(
    db: Db, maria: SimulatedUser, run: Processor, claude: AnthropicStandIn
) -> None:
    db.sql("update public.bots set max_replies_per_contact_per_day = 2 where id = %s", (BOT,))
    await maria.send_text("Oi! Vocês vendem vale-presente?")  # welcome + answer: 2 replies
    assert await run.run_once() == 1
    await maria.send_text("E cartão de presente?")

    assert await run.run_once() == 1

    assert [r["content"] for r in outbound(db, conversation_of(db, MARIA))] == [
        WELCOME,
        CLAUDE,
        HANDOFF_NOTICE,
    ]
    conv = conversation(db)
    assert (conv["mode"], conv["handoff_reason"]) == ("human", "daily bot reply cap reached (contact)")
    assert len(claude.calls_to("/v1/messages")) == 1


async def test_previous_turns_reach_the_model(
    db: Db, maria: SimulatedUser, run: Processor, claude: AnthropicStandIn
) -> None:
    claude.push(Reply(text="Temos sim, a partir de R$ 50."))
    await maria.send_text("Vocês vendem vale-presente?")
    assert await run.run_once() == 1
    await maria.send_text("E ele vale na loja física?")

    assert await run.run_once() == 1

    first, second = claude.calls_to("/v1/messages")
    assert user_turns(second.body) == [
        ("user", "Vocês vendem vale-presente?"),
        ("assistant", f"{WELCOME}\nTemos sim, a partir de R$ 50."),
        ("user", "E ele vale na loja física?"),
    ]
    assert user_turns(first.body) == [("user", "Vocês vendem vale-presente?")]


async def test_turns_that_leave_the_memory_are_summarised(
    db: Db, maria: SimulatedUser, run: Processor, claude: AnthropicStandIn
) -> None:
    first = await maria.send_text("Meu pedido 123 ainda não chegou em Recife.")
    conv_id = conversation_of(db, MARIA)
    db.sql("update public.session_context set max_messages = 2 where conversation_id = %s", (conv_id,))
    claude.push(Reply(text="Vou verificar o pedido 123."))
    assert await run.run_once() == 1  # welcome + answer push the first turn out
    second = await maria.send_text("Alguma novidade?")  # ... and this one the welcome: 2 pending
    claude.push(Reply(text="Cliente aguarda o pedido 123 em Recife."), Reply(text="Ainda em trânsito."))

    assert await run.run_once() == 1

    [memory] = db.sql("select * from public.session_context where conversation_id = %s", (conv_id,))
    assert memory["summary"] == "Cliente aguarda o pedido 123 em Recife."
    welcome_at = db.value(
        "select created_at from public.messages where conversation_id = %s and content = %s",
        (conv_id, WELCOME),
    )
    assert memory["summarized_until"] == welcome_at
    assert memory["pending_summary"] == 1  # the answer just queued pushed one more out
    summary_call, reply_call = claude.calls_to("/v1/messages")[1:]
    assert "Cliente: Meu pedido 123 ainda não chegou em Recife." in user_turns(summary_call.body)[0][1]
    assert f"Assistente: {WELCOME}" in user_turns(summary_call.body)[0][1]
    assert "Cliente aguarda o pedido 123 em Recife." in " ".join(b["text"] for b in reply_call.body["system"])
    [summary] = [u for u in usage(db) if u["feature"] == "summary"]
    assert (summary["message_id"], summary["outcome"]) == (inbound_id(db, second.wamid), "success")
    assert summary["cost_usd"] > 0
    assert inbound_id(db, first.wamid) != summary["message_id"]
    assert outbound(db, conv_id)[-1]["content"] == "Ainda em trânsito."


async def test_a_voice_note_is_transcribed_answered_and_spoken_back(
    db: Db, sim: Simulator, maria: SimulatedUser, run: Processor, claude: AnthropicStandIn,
    gpt: OpenAIStandIn, voice: SpeechStandIn, pool: Pool, graph_api: GraphAPI,
) -> None:  # fmt: skip
    delivery = await maria.send_voice_note(ogg_opus_silence(3.0))

    assert await run.run_once() == 1

    message_id = inbound_id(db, delivery.wamid)
    assert db.value("select transcription from public.messages where id = %s", (message_id,)) == TRANSCRIPT
    [call] = gpt.calls_to("/v1/audio/transcriptions")
    assert (call.body["model"], call.body["language"], call.body["filename"]) == (
        "whisper-1",
        "pt",
        "audio.ogg",
    )
    assert user_turns(claude.calls_to("/v1/messages")[0].body)[-1] == ("user", TRANSCRIPT)
    [heard] = [u for u in usage(db) if u["feature"] == "transcription"]
    assert (heard["api_type"], heard["model"], heard["audio_seconds"]) == (
        "transcription", "openai/whisper-1", Decimal("3.000")
    )  # fmt: skip
    assert heard["message_id"] == message_id and heard["cost_usd"] == Decimal("0.0003")  # 3 s at $0.006/min
    # tts_mode on_voice: the text answer, then the same answer as a voice note.
    replies = outbound(db, conversation_of(db, MARIA))
    assert [r["type"] for r in replies] == ["text", "text", "audio"]
    assert replies[1]["content"] == CLAUDE
    audio = replies[2]["payload"]["audio"]
    assert audio["voice"] is True and sim.media(audio["id"]) is not None
    [spoken] = voice.requests
    assert (spoken.body["input"], spoken.body["voice"], spoken.body["model"]) == (CLAUDE, "nova", "tts-1")
    assert [u["feature"] for u in usage(db) if u["api_type"] == "tts"] == ["tts"]

    # The sender delivers all three; the simulator takes the upload as a voice note.
    sender = Sender(pool=pool, api=graph_api, metrics=Metrics(), worker_id="s")
    assert await drain(sender.run_once) == 3
    assert [m.type for m in sim.messages_to(MARIA)] == ["text", "text", "audio"]


async def test_the_same_spoken_answer_is_uploaded_once_per_number(
    db: Db, maria: SimulatedUser, run: Processor, voice: SpeechStandIn
) -> None:
    await maria.send_voice_note(ogg_opus_silence(2.0))
    assert await run.run_once() == 1
    await maria.send_voice_note(ogg_opus_silence(2.0))

    assert await run.run_once() == 1

    audios = [
        r["payload"]["audio"]["id"] for r in outbound(db, conversation_of(db, MARIA)) if r["type"] == "audio"
    ]
    assert len(audios) == 2 and audios[0] == audios[1]
    assert len(voice.requests) == 1  # the second came from the TTS cache, with its media id
    tts = [u["outcome"] for u in usage(db) if u["api_type"] == "tts"]
    assert tts == ["success", "cache_hit"]


async def test_without_a_transcriber_the_bot_asks_for_text(
    db: Db, maria: SimulatedUser, pool: Pool, graph_api: GraphAPI, media_storage: LocalStorage,
    offline_responder: AIResponder,
) -> None:  # fmt: skip
    await maria.send_voice_note(ogg_opus_silence(1.0))

    assert await processor(pool, graph_api, media_storage, offline_responder).run_once() == 1

    assert [r["content"] for r in outbound(db, conversation_of(db, MARIA))] == [WELCOME, CANNOT_LISTEN]
    assert conversation(db)["mode"] == "bot"


async def test_offline_the_local_provider_answers_from_the_knowledge(
    db: Db, maria: SimulatedUser, pool: Pool, graph_api: GraphAPI, media_storage: LocalStorage,
    offline_responder: AIResponder, knowledge: None,
) -> None:  # fmt: skip
    delivery = await maria.send_text("Qual o prazo de entrega para o Nordeste?")

    assert await processor(pool, graph_api, media_storage, offline_responder).run_once() == 1

    answer = outbound(db, conversation_of(db, MARIA))[-1]
    assert str(answer["content"]).startswith(FOUND_PREFIX)
    assert "Capitais do Centro-Oeste e Nordeste | 4 a 7 dias úteis" in answer["content"]
    assert answer["ai_model"] == "local/local-chat"
    [reply] = [u for u in usage(db) if u["feature"] == "reply"]
    assert (reply["model"], reply["outcome"], reply["cost_usd"]) == ("local/local-chat", "success", 0)
    assert (reply["conversation_id"], reply["message_id"]) == (
        conversation_of(db, MARIA), inbound_id(db, delivery.wamid)
    )  # fmt: skip


async def test_the_customer_opens_a_ticket_and_asks_its_status_by_protocol(
    db: Db, maria: SimulatedUser, run: Processor, claude: AnthropicStandIn
) -> None:
    await maria.send_text("Quero abrir um chamado: o certificado não instala")
    assert await run.run_once() == 1
    [ticket] = db.sql("select * from public.tickets")
    assert (ticket["source"], ticket["title"]) == ("bot", "Quero abrir um chamado: o certificado não instala")
    await maria.send_text("Preciso abrir chamado de novo?")  # the live one is the answer
    assert await run.run_once() == 1
    protocol = ticket["protocol"]
    await maria.send_text(f"Qual a situação do {protocol.lower().replace('-', ' ')}?")
    assert await run.run_once() == 1
    await maria.send_text("E o BR-19990101-0001?")
    assert await run.run_once() == 1
    replies = [r["content"] for r in outbound(db, conversation_of(db, MARIA))]
    opened = TICKET_OPENED.format(protocol=protocol)
    assert replies == [
        WELCOME, opened, opened,
        f"Chamado {protocol} (Quero abrir um chamado: o certificado não instala):"
        " aberto, aguardando atendimento.",
        "Não encontrei nenhum chamado seu com o protocolo BR-19990101-0001. Confira o número, por favor.",
    ]  # fmt: skip
    assert db.value("select count(*) from public.tickets") == 1
    assert not claude.calls  # the desk answers without a model


def test_business_hours_and_what_the_customer_means() -> None:
    tz = ZoneInfo("America/Sao_Paulo")
    hours = {"mon": [["09:00", "18:00"]], "sat": [["09:00", "13:00"]], "holidays": ["2026-12-28"]}
    assert is_open(hours, datetime(2026, 12, 21, 9, 0, tzinfo=tz))  # Monday, opening
    assert not is_open(hours, datetime(2026, 12, 21, 18, 0, tzinfo=tz))  # closing time
    assert not is_open(hours, datetime(2026, 12, 22, 10, 0, tzinfo=tz))  # Tuesday: not listed
    assert not is_open(hours, datetime(2026, 12, 28, 10, 0, tzinfo=tz))  # a Monday holiday
    assert is_open({}, datetime(2026, 12, 27, 3, 0, tzinfo=tz))  # {} is always open
    assert greeting_only("Olá, bom dia!") and not greeting_only("Bom dia, qual o frete?")
    offer = "Não encontrei. Posso chamar um atendente humano para ajudar?"
    assert accepts_offer("Sim!", offer) and accepts_offer("pode sim", offer)
    assert not accepts_offer("Sim", "Seu pedido saiu para entrega.") and not accepts_offer("talvez", offer)
    assert find_protocol("status do br20261203-0042?") == "BR-20261203-0042"
    assert find_protocol("meu CPF 12345678901") is None


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """`app` on a free local port, as a remote API would be."""
    port = free_port()
    server = EmbeddedServer(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        while not server.started:
            await anyio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
        server.should_exit = True


async def test_keys_in_the_settings_bring_the_remote_providers(
    db: Db, maria: SimulatedUser, loop_settings: Settings, pool: Pool, graph_api: GraphAPI,
    media_storage: LocalStorage, claude: AnthropicStandIn, gpt: OpenAIStandIn,
) -> None:  # fmt: skip
    db.sql("update public.bots set tts_mode = 'never'")
    await maria.send_text("Vocês vendem vale-presente?")
    async with serving(claude.app) as anthropic_url, serving(gpt.app) as openai_url:
        settings = loop_settings.model_copy(update={
            "anthropic_api_key": SecretStr("sk-ant-test"), "anthropic_base_url": anthropic_url,
            "openai_api_key": SecretStr("sk-test"), "openai_base_url": openai_url,
        })  # fmt: skip
        async with ai_responder(settings, pool=pool, api=graph_api, media=media_storage) as responder:
            run = processor(pool, graph_api, media_storage, responder)
            assert await run.run_once() == 1
            await maria.send_voice_note(ogg_opus_silence(3.0))
            assert await run.run_once() == 1

    replies = outbound(db, conversation_of(db, MARIA))
    assert [(r["content"], r["ai_model"]) for r in replies] == [
        (WELCOME, None), (CLAUDE, "anthropic/claude-haiku-4-5"), (CLAUDE, "anthropic/claude-haiku-4-5")
    ]  # fmt: skip
    assert len(gpt.calls_to("/v1/audio/transcriptions")) == 1
    assert user_turns(claude.calls_to("/v1/messages")[-1].body)[-1] == ("user", TRANSCRIPT)


class Gate:
    """A chat provider whose calls all wait until `expected` of them are in flight at once."""

    name = "anthropic"

    def __init__(self, expected: int) -> None:
        self._expected = expected
        self.in_flight = 0
        self._all_in = anyio.Event()

    async def chat(self, request: ChatRequest, model: str) -> ChatResult:
        self.in_flight += 1
        if self.in_flight == self._expected:
            self._all_in.set()
        await self._all_in.wait()
        return ChatResult(text=f"Resposta a: {request.last_user_text}", provider=self.name, model=model,
                          usage=Usage(input_tokens=10, output_tokens=5), latency_ms=1)  # fmt: skip

    async def aclose(self) -> None:
        return None


async def test_replies_waiting_on_a_provider_hold_no_connection(
    db: Db, sim: Simulator, worker_http: httpx.AsyncClient, graph_api: GraphAPI, media_storage: LocalStorage
) -> None:
    """Four replies wait on the provider at the same time with a pool of two connections, one of
    them taken by other work meanwhile: a reply that held its connection across the call would
    leave the others no connection to reach the provider, and the gate would never open."""
    replies = 4
    phones = [SimulatedUser(sim, worker_http, wa_id=f"55119550000{n:02d}") for n in range(replies)]
    for n, phone in enumerate(phones):
        await phone.send_text(f"Pergunta número {n}: vocês abrem no feriado {n}?")
    gate = Gate(replies)
    async with open_pool(db.url, 2) as small:
        ledger = PostgresLedger(small)
        gateway = Gateway({"anthropic": gate}, ledger)
        responder = AIResponder(
            connect=small.connection, gateways=Gateways(platform=gateway, ledger=ledger),
            knowledge=Knowledge(connect=small.connection),
            summarizer=Summarizer(connect=small.connection, threshold=100), media=media_storage,
        )  # fmt: skip
        busy = anyio.Event()

        async def other_work() -> None:
            async with small.connection() as conn:
                busy.set()
                while gate.in_flight < replies:
                    await conn.execute("select 1")
                    await anyio.sleep(0.01)

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(other_work)
                await busy.wait()
                assert await processor(small, graph_api, media_storage, responder).run_once() == replies

    assert gate.in_flight == replies
    for n, phone in enumerate(phones):
        answered = [r["content"] for r in outbound(db, conversation_of(db, phone.wa_id))]
        assert answered == [WELCOME, f"Resposta a: Pergunta número {n}: vocês abrem no feriado {n}?"]
    statuses = db.sql("select status from public.messages where direction = 'inbound'")
    assert [s["status"] for s in statuses] == ["processed"] * replies
