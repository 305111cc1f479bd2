"""What starts a flow, through the processor: keywords (folded, exact or contained), QR /
wa.me short codes, Click-to-WhatsApp ads, events, the number's default flow, agents and
automations (start_flow), and what a trigger does while another flow runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest
from flow_chat import Chat, texts
from loop_support import MARIA, conversation_of

from flows_db.flow_support import AGENT, OWNER, TENANT, create_flow, graph
from support import Db
from zapbase.bot import AIResponder
from zapbase.db.pool import Pool
from zapbase.flows.engine import FlowEngine
from zapbase.simulator import SimulatedUser, Simulator
from zapbase.storage import LocalStorage
from zapbase.whatsapp import GraphAPI
from zapbase.worker.metrics import Metrics
from zapbase.worker.processor import Processor
from zapbase.worker.sender import Sender

pytestmark = pytest.mark.anyio



def by_the_bot(db: Db) -> bool:
    """The last reply came from the AI bot (the offline model), not from a flow."""
    return db.value("select ai_model from public.messages where direction = 'outbound'"
                    " order by created_at desc limit 1") == "local/local-chat"


@pytest.fixture
async def chat(
    db: Db, sim: Simulator, maria: SimulatedUser, pool: Pool, graph_api: GraphAPI,
    media_storage: LocalStorage, offline_responder: AIResponder, flow_engine: FlowEngine,
) -> AsyncIterator[Chat]:  # fmt: skip
    processor = Processor(pool=pool, api=graph_api, storage=media_storage, responder=offline_responder,
                          flows=flow_engine, metrics=Metrics(), worker_id="p")  # fmt: skip
    yield Chat(db, sim, maria, processor, Sender(pool=pool, api=graph_api, metrics=Metrics(), worker_id="s"))


def saying(db: Db, name: str, *triggers: tuple[str, ...], ask: bool = False, **settings: Any) -> str:
    """A published flow that says its name (then asks something, to keep running)."""
    blocks: list[dict[str, Any]] = [{"id": "start", "type": "start"},
                                    {"id": "say", "type": "message", "text": name}]  # fmt: skip
    edges: list[Any] = [("start", "say")]
    if ask:
        blocks.append({"id": "q", "type": "question", "text": f"{name}?", "variable": "v"})
        edges += [("say", "q"), ("q", "end")]
    else:
        edges.append(("say", "end"))
    blocks.append({"id": "end", "type": "end"})
    flow_id, _ = create_flow(db, name, graph(*blocks, edges=edges), triggers=triggers, **settings)
    return str(flow_id)


async def test_keywords_are_folded_exact_or_contained(db: Db, chat: Chat) -> None:
    saying(db, "Promoções", ("keyword", "promoção"), ("keyword", "black friday", "contains"))
    assert texts(await chat.say("PROMOCAO!!")) == ["Promoções"]
    await chat.say("quero a promoção de hoje")  # exact: no; the bot answers
    assert by_the_bot(db)
    assert db.value("select count(*) from public.flow_executions") == 1
    assert texts(await chat.say("Tem desconto na Black-Friday?")) == ["Promoções"]


async def test_a_qr_code_prefilled_text_starts_its_flow(db: Db, chat: Chat) -> None:
    saying(db, "Cupom", ("qr_code", "LOJA10"))
    assert texts(await chat.say("Olá! Quero meu cupom. Código: loja10")) == ["Cupom"]
    assert chat.execution()["started_by"] == "trigger"


async def test_a_click_to_whatsapp_ad_starts_its_flow(db: Db, chat: Chat) -> None:
    saying(db, "Anúncio de verão", ("referral", "120208888777666"))
    await chat.phone.send_ad_reply("Tenho interesse!", source_id="120208888777666")
    assert texts(await chat.settle()) == ["Anúncio de verão"]
    # what ingest stored of the referral is what matched
    assert db.value("select referral ->> 'source_id' from public.messages where direction = 'inbound'") == (
        "120208888777666")


async def test_events_first_message_ever_and_new_conversation(db: Db, chat: Chat) -> None:
    saying(db, "Primeira vez", ("event", "first_message_ever"))
    saying(db, "Nova conversa", ("event", "conversation_created"))
    assert texts(await chat.say("oi")) == ["Primeira vez"]
    await chat.say("oi de novo")  # same conversation: the bot
    assert by_the_bot(db)
    db.sql("update public.conversations set status = 'closed'")
    assert texts(await chat.say("voltei")) == ["Nova conversa"]


def calendar(db: Db, name: str, *, closed_today: bool) -> str:
    """A support calendar open all day every day (UTC), or with today a holiday."""
    cal = db.value("insert into public.business_calendars (tenant_id, name, timezone) values (%s, %s, 'UTC')"
                   " returning id", (TENANT, name))  # fmt: skip
    db.sql("insert into public.business_calendar_hours (tenant_id, calendar_id, weekday, starts_at, ends_at)"
           " select %s, %s, d, '00:00', '24:00' from generate_series(0, 6) d", (TENANT, cal))  # fmt: skip
    if closed_today:
        db.sql("insert into public.business_calendar_holidays (tenant_id, calendar_id, day, name)"
               " values (%s, %s, (now() at time zone 'UTC')::date, 'Feriado')", (TENANT, cal))  # fmt: skip
    return str(cal)


async def test_outside_business_hours_by_the_numbers_or_the_tenants_calendar(db: Db, chat: Chat) -> None:
    saying(db, "Estamos fechados", ("event", "outside_business_hours"))
    await chat.say("qual o prazo de entrega?")  # no calendar: never outside
    assert by_the_bot(db)
    closed, open_ = calendar(db, "Loja", closed_today=True), calendar(db, "Plantão", closed_today=False)
    setting = "settings = settings || jsonb_build_object('business_calendar_id', %s::text)"
    db.sql(f"update public.tenants set {setting} where id = %s", (closed, TENANT))
    db.sql(f"update public.whatsapp_numbers set {setting} where tenant_id = %s", (open_, TENANT))
    await chat.say("qual o prazo de entrega?")  # the number's calendar is open: the bot
    assert by_the_bot(db)
    db.sql("update public.whatsapp_numbers set settings = settings - 'business_calendar_id'")
    assert texts(await chat.say("alguém aí?")) == ["Estamos fechados"]  # the tenant's calendar: closed
    await chat.say("qual o prazo de entrega?")  # once per closed period
    assert by_the_bot(db)
    assert db.value("select count(*) from public.flow_executions") == 1


async def test_the_default_flow_of_a_number_greets_each_new_conversation(db: Db, chat: Chat) -> None:
    saying(db, "Menu", ("default", None))
    assert texts(await chat.say("boa tarde")) == ["Menu"]
    await chat.say("qual o prazo de entrega?")  # ended: the bot takes the rest
    assert by_the_bot(db)


async def test_a_running_flow_ignores_or_yields_to_other_triggers(db: Db, chat: Chat) -> None:
    saying(db, "Cadastro", ("keyword", "cadastro"), ask=True)  # ignore (the default)
    saying(db, "Suporte", ("keyword", "suporte"), ask=True, on_trigger_while_running="interrupt")
    assert texts(await chat.say("cadastro")) == ["Cadastro", "Cadastro?"]
    assert texts(await chat.say("suporte")) == []  # the answer to "Cadastro?", not a trigger
    assert chat.execution()["variables"] == {"v": "suporte"}
    assert texts(await chat.say("suporte")) == ["Suporte", "Suporte?"]
    assert texts(await chat.say("cadastro")) == ["Cadastro", "Cadastro?"]  # Suporte yields
    statuses = [r["status"] for r in db.sql("select status from public.flow_executions order by started_at")]
    assert statuses == ["completed", "abandoned", "active"]


async def test_an_agent_starts_and_ends_a_flow(db: Db, chat: Chat) -> None:
    flow_id = saying(db, "Pesquisa", ask=True)  # no trigger: only started by hand
    await chat.say("oi")
    conversation = conversation_of(db, MARIA)
    with db.as_user(AGENT) as s:
        execution = s.one("select * from public.start_flow(%s, %s)", (conversation, flow_id))
    assert execution["started_by"] == "agent" and execution["started_by_member"] is not None
    assert texts(await chat.settle()) == ["Pesquisa", "Pesquisa?"]
    with db.as_user(AGENT) as s:
        ended = s.one("select * from public.end_flow_execution(%s, 'cliente pediu')", (execution["id"],))
    assert (ended["status"], ended["end_reason"]) == ("abandoned", "cliente pediu")
    assert db.value("select mode from public.conversations where id = %s", (conversation,)) == "bot"
    await chat.say("qual o prazo de entrega?")
    assert by_the_bot(db)
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="already ended"), \
            db.as_user(AGENT) as s:
        s.all("select public.end_flow_execution(%s)", (execution["id"],))


async def test_an_automation_starts_a_flow_with_the_service_role(db: Db, chat: Chat) -> None:
    flow_id = saying(db, "Boas-vindas")
    await chat.say("oi")
    with db.as_service() as s:
        execution = s.one("select * from public.start_flow(%s, %s)", (conversation_of(db, MARIA), flow_id))
    assert execution["started_by"] == "automation"
    assert texts(await chat.settle()) == ["Boas-vindas"]


async def test_analytics_per_block_are_for_managers(db: Db, chat: Chat) -> None:
    saying(db, "Quiz", ("keyword", "quiz"), ask=True)
    await chat.say("quiz")
    await chat.say("azul")
    await chat.say("quiz")
    db.sql("update public.flow_executions set expires_at = now() - interval '1 second'"
           " where status = 'active'")
    await chat.say("quiz")  # the expired one dropped off at q; a restart offer begins
    with db.as_user(OWNER) as s:
        rows = s.all("select s.* from public.flow_block_stats s join public.flows f on f.id = s.flow_id"
                     " where f.name = 'Quiz'")
    stats = {r["block_id"]: r for r in rows}
    assert stats["q"]["visits"] == 3 and stats["q"]["executions_reached"] == 2
    assert stats["q"]["drop_offs"] == 1 and stats["end"]["executions_reached"] == 1
    assert stats["start"]["executions_started"] == 3
    assert float(stats["start"]["completion_rate"]) == pytest.approx(1 / 3, abs=1e-4)
    with db.as_user(AGENT) as s:
        assert s.all("select * from public.flow_block_stats") == []
