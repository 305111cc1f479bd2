"""The inbound processor against the real database and the simulator: media stored, read
receipts, routing by conversation mode, the default bot responder, retries, replicas."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable

import anyio
import httpx
import pytest
from loop_support import BOT, MARIA, TEAM, conversation_of, drain, make_due, outbound, row, text

from support import Db
from zapbase.bot import HANDOFF_NOTICE, AIResponder, matches_keyword
from zapbase.bot.rules import CANNOT_LISTEN
from zapbase.db.pool import Pool
from zapbase.flows.engine import FlowEngine
from zapbase.simulator import SimulatedUser, Simulator
from zapbase.storage import LocalStorage, SupabaseStorage
from zapbase.whatsapp import GraphAPI
from zapbase.whatsapp.inbound import InboundMessage, Outgoing, Reply
from zapbase.worker.metrics import Metrics
from zapbase.worker.processor import BotResponder, Processor

pytestmark = pytest.mark.anyio

WELCOME = "Olá! 👋 Sou a assistente virtual da Loja Demo. Como posso ajudar?"
ProcessorFactory = Callable[..., Processor]


@pytest.fixture
def make_processor(
    pool: Pool, graph_api: GraphAPI, media_storage: LocalStorage, metrics: Metrics,
    offline_responder: AIResponder, flow_engine: FlowEngine,
) -> ProcessorFactory:  # fmt: skip
    def make(worker_id: str = "processor-a", responder: BotResponder | None = None) -> Processor:
        return Processor(
            pool=pool, api=graph_api, storage=media_storage, responder=responder or offline_responder,
            flows=flow_engine, metrics=metrics, worker_id=worker_id,
        )  # fmt: skip

    return make


def inbound(db: Db, wamid: str) -> dict[str, object]:
    [found] = db.sql("select * from public.messages where wamid = %s", (wamid,))
    return found


def processed(metrics: Metrics, mode: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "zapbase_processed_messages_total", {"mode": mode, "outcome": outcome}
    )
    return value or 0.0


async def test_bot_welcomes_the_first_message_then_answers(
    db: Db, sim: Simulator, maria: SimulatedUser, make_processor: ProcessorFactory, metrics: Metrics
) -> None:
    first = await maria.send_text("Oi! Vocês entregam em Campinas?")
    second = await maria.send_text("E qual o prazo?")

    # One message per conversation at a time, in order: two rounds.
    assert await drain(make_processor().run_once) == 2

    for delivery in (first, second):
        message = inbound(db, delivery.wamid)
        assert message["status"] == "processed" and message["error_details"] is None
    conversation = conversation_of(db, MARIA)
    replies = outbound(db, conversation)
    # The welcome, then an answer to each question (the offline model: no knowledge here).
    assert replies[0]["content"] == WELCOME and replies[0]["ai_model"] is None
    assert [r["ai_model"] for r in replies[1:]] == ["local/local-chat"] * 2
    assert all(r["sender_type"] == "bot" and r["status"] == "queued" for r in replies)
    # Read receipts with "typing…" for both, while the bot answers.
    assert [(r.message_id, r.typing_indicator) for r in sim.reads] == [
        (first.wamid, True), (second.wamid, True)
    ]  # fmt: skip
    assert processed(metrics, "bot", "processed") == 2


async def test_voice_note_is_stored_and_answered(
    db: Db, sim: Simulator, maria: SimulatedUser, make_processor: ProcessorFactory,
    media_storage: LocalStorage,
) -> None:  # fmt: skip
    audio = b"OggS\x00\x02" + bytes(range(256)) * 40
    delivery = await maria.send_voice_note(audio)

    assert await make_processor().run_once() == 1

    message = inbound(db, delivery.wamid)
    assert message["is_voice"] is True and message["status"] == "processed"
    key = str(message["media_storage_path"])
    conversation = conversation_of(db, MARIA)
    assert key == f"whatsapp-media/{message['tenant_id']}/{conversation}/{message['id']}.ogg"
    assert message["media_size"] == len(audio)
    stored = await media_storage.get(key)
    assert hashlib.sha256(stored).digest() == hashlib.sha256(audio).digest()
    assert media_storage.path_of(key).is_file()
    # No transcription provider here: the bot asks for text.
    assert [r["content"] for r in outbound(db, conversation)] == [WELCOME, CANNOT_LISTEN]


async def test_expired_media_url_is_fetched_again(
    db: Db, sim: Simulator, maria: SimulatedUser, make_processor: ProcessorFactory
) -> None:
    delivery = await maria.send_voice_note(b"OggS voice")
    media_id = str(inbound(db, delivery.wamid)["media_id"])
    sim.fail_next_download(media_id, http_status=404)  # the 5-minute URL expired

    assert await make_processor().run_once() == 1

    assert inbound(db, delivery.wamid)["media_size"] == len(b"OggS voice")


async def test_media_meta_no_longer_has_is_noted_and_still_answered(
    db: Db, sim: Simulator, maria: SimulatedUser, make_processor: ProcessorFactory
) -> None:
    delivery = await maria.send_voice_note(b"OggS voice")
    media_id = str(inbound(db, delivery.wamid)["media_id"])
    sim.fail_next_download(media_id, http_status=404, times=2)

    assert await make_processor().run_once() == 1

    message = inbound(db, delivery.wamid)
    assert message["status"] == "processed" and message["media_storage_path"] is None
    assert "media not stored" in str(message["error_details"])
    assert [r["content"] for r in outbound(db, conversation_of(db, MARIA))] == [WELCOME, CANNOT_LISTEN]


async def test_human_mode_is_left_to_the_agents(
    db: Db, sim: Simulator, maria: SimulatedUser, make_processor: ProcessorFactory, metrics: Metrics
) -> None:
    await maria.send_text("Oi")
    conversation = conversation_of(db, MARIA)
    db.sql("update public.conversations set mode = 'human' where id = %s", (conversation,))
    delivery = await maria.send_text("Quero falar com o Bruno")
    before = db.sql("select * from public.conversations where id = %s", (conversation,))
    db.sql("update public.messages set status = 'processed' where wamid <> %s", (delivery.wamid,))

    assert await make_processor().run_once() == 1

    assert inbound(db, delivery.wamid)["status"] == "processed"
    assert outbound(db, conversation) == []
    assert sim.reads == ()  # blue ticks are the agent's to give
    after = db.sql("select * from public.conversations where id = %s", (conversation,))
    assert after == before
    assert processed(metrics, "human", "processed") == 1


async def test_flow_mode_without_a_running_flow_goes_back_to_the_bot(
    db: Db, maria: SimulatedUser, make_processor: ProcessorFactory
) -> None:
    await maria.send_text("Oi")
    conversation = conversation_of(db, MARIA)
    db.sql("update public.conversations set mode = 'flow' where id = %s", (conversation,))

    assert await make_processor().run_once() == 1

    message = db.sql("select * from public.messages where conversation_id = %s and direction = 'inbound'",
                     (conversation,))  # fmt: skip
    assert [(m["status"], m["error_details"]) for m in message] == [("processed", None)]
    assert db.value("select mode from public.conversations where id = %s", (conversation,)) == "bot"
    assert [r["content"] for r in outbound(db, conversation)] == [WELCOME]


async def test_a_bot_switched_off_mid_conversation_hands_it_to_humans(
    db: Db, maria: SimulatedUser, make_processor: ProcessorFactory
) -> None:
    delivery = await maria.send_text("Oi")
    assert str(db.value("select bot_id from public.conversations")) == BOT
    db.sql("update public.bots set is_active = false")

    assert await make_processor().run_once() == 1

    conversation = db.sql("select * from public.conversations")[0]
    assert (conversation["mode"], conversation["status"]) == ("human", "pending")
    assert str(conversation["team_id"]) == TEAM
    assert conversation["handoff_reason"] == "no active bot for this WhatsApp number"
    assert outbound(db, conversation["id"]) == []
    assert inbound(db, delivery.wamid)["status"] == "processed"


async def test_a_bot_of_the_tenant_for_every_number_takes_over_a_switched_off_one(
    db: Db, maria: SimulatedUser, make_processor: ProcessorFactory
) -> None:
    await maria.send_text("Oi")
    db.sql("update public.bots set is_active = false")
    db.sql(
        "insert into public.bots (tenant_id, name, welcome_message)"
        " select tenant_id, 'Plantão', 'Oi! Plantão aqui.' from public.bots where id = %s",
        (BOT,),
    )

    assert await make_processor().run_once() == 1

    conversation = db.sql("select * from public.conversations")[0]
    assert conversation["mode"] == "bot"
    assert [r["content"] for r in outbound(db, conversation["id"])] == ["Oi! Plantão aqui."]


async def test_the_conversations_own_bot_answers(
    db: Db, maria: SimulatedUser, make_processor: ProcessorFactory
) -> None:
    other = db.value(
        "insert into public.bots (tenant_id, name, welcome_message, fallback_message)"
        " select tenant_id, 'Vendas', 'Oi! Aqui é do time de vendas.', 'Hum?' from public.bots where id = %s"
        " returning id",
        (BOT,),
    )
    await maria.send_text("Oi")
    conversation = conversation_of(db, MARIA)
    db.sql("update public.conversations set bot_id = %s where id = %s", (other, conversation))

    assert await make_processor().run_once() == 1

    assert [r["content"] for r in outbound(db, conversation)] == ["Oi! Aqui é do time de vendas."]


@pytest.mark.parametrize("text", ["Quero falar com um ATENDENTE", "posso falar com alguem?"])
async def test_a_handoff_keyword_hands_over_with_a_notice(
    db: Db, maria: SimulatedUser, make_processor: ProcessorFactory, text: str
) -> None:
    db.sql("update public.bots set business_hours = '{}'")  # humans always at work: no away message
    await maria.send_text(text)

    assert await make_processor().run_once() == 1

    conversation = db.sql("select * from public.conversations")[0]
    assert conversation["mode"] == "human"
    assert str(conversation["handoff_reason"]).startswith("handoff keyword: ")
    assert [r["content"] for r in outbound(db, conversation["id"])] == [HANDOFF_NOTICE]


def test_keywords_match_whole_words_without_case_or_accents() -> None:
    keywords = ["atendente", "falar com alguém", "humano"]
    assert matches_keyword(["Quero um Atendente!"], keywords) == "atendente"
    assert matches_keyword(["FALAR COM ALGUEM, por favor"], keywords) == "falar com alguém"
    assert matches_keyword([None, "humano"], keywords) == "humano"
    assert matches_keyword(["desumano", "atendentes"], keywords) is None
    assert matches_keyword([], keywords) is None


class Failing:
    """Breaks every time: retried, then failed, and nothing queued."""

    def __init__(self) -> None:
        self.calls = 0

    async def respond(self, message: InboundMessage) -> Reply:
        self.calls += 1
        raise RuntimeError("the model is down")


async def test_a_failing_responder_is_retried_then_fails_with_the_reason(
    db: Db, maria: SimulatedUser, make_processor: ProcessorFactory, metrics: Metrics
) -> None:
    delivery = await maria.send_text("Oi")
    message_id = inbound(db, delivery.wamid)["id"]
    responder = Failing()
    processor = make_processor(responder=responder)

    for attempt in (1, 2):
        assert await processor.run_once() == 1
        message = row(db, uuid.UUID(str(message_id)))
        assert (message["status"], message["attempts"]) == ("processing", attempt)
        assert message["error_details"] == "RuntimeError: the model is down"
        assert await processor.run_once() == 0  # backs off under its lease
        make_due(db, uuid.UUID(str(message_id)))
    assert await processor.run_once() == 1

    message = row(db, uuid.UUID(str(message_id)))
    assert (message["status"], message["attempts"]) == ("failed", 3)
    assert message["error_details"] == "RuntimeError: the model is down"
    assert responder.calls == 3
    assert outbound(db, conversation_of(db, MARIA)) == []  # every attempt rolled back
    assert processed(metrics, "bot", "retry") == 2
    assert processed(metrics, "bot", "failed") == 1


async def test_a_failed_message_does_not_block_the_next_one(
    db: Db, maria: SimulatedUser, make_processor: ProcessorFactory
) -> None:
    first = await maria.send_text("Oi")
    db.sql("update public.messages set attempts = 2 where wamid = %s", (first.wamid,))
    assert await make_processor(responder=Failing()).run_once() == 1
    assert inbound(db, first.wamid)["status"] == "failed"
    second = await maria.send_text("Alô?")

    assert await make_processor().run_once() == 1

    assert inbound(db, second.wamid)["status"] == "processed"


class Counting:
    def __init__(self) -> None:
        self.seen: list[str | None] = []

    async def respond(self, message: InboundMessage) -> Reply:
        self.seen.append(message.wamid)
        await anyio.sleep(0.01)
        return Reply()


async def test_two_replicas_never_process_the_same_message(
    db: Db, sim: Simulator, worker_http: httpx.AsyncClient, make_processor: ProcessorFactory
) -> None:
    phones = [SimulatedUser(sim, worker_http, wa_id=f"55119660000{n:02d}") for n in range(15)]
    sent = [(await phone.send_text(f"mensagem {i}")).wamid for i in range(3) for phone in phones]
    responder = Counting()
    a = make_processor("processor-a", responder=responder)
    b = make_processor("processor-b", responder=responder)

    async def replica(processor: Processor) -> None:
        idle = 0
        while idle < 3:
            idle = 0 if await processor.run_once() else idle + 1
            await anyio.sleep(0)

    async with anyio.create_task_group() as tg:
        tg.start_soon(replica, a)
        tg.start_soon(replica, b)

    assert sorted(responder.seen, key=str) == sorted(sent)
    statuses = db.sql("select status, attempts from public.messages where direction = 'inbound'")
    assert [(s["status"], s["attempts"]) for s in statuses] == [("processed", 1)] * 45


class Answers:
    """Answers every message with one text."""

    def __init__(self, body: str) -> None:
        self._body = body

    async def respond(self, message: InboundMessage) -> Reply:
        return Reply(messages=(Outgoing(body=text(self._body)),))


class Overtaken:
    """Answers only after its lease ran out and another replica claimed and answered the message."""

    def __init__(self, db: Db, other: Processor) -> None:
        self._db = db
        self._other = other

    async def respond(self, message: InboundMessage) -> Reply:
        make_due(self._db, message.message_id)
        assert await self._other.run_once() == 1
        return Reply(messages=(Outgoing(body=text("resposta atrasada")),))


async def test_a_reply_whose_lease_ran_out_is_dropped_not_sent_twice(
    db: Db, maria: SimulatedUser, make_processor: ProcessorFactory, metrics: Metrics
) -> None:
    delivery = await maria.send_text("Oi")
    other = make_processor("processor-b", responder=Answers("resposta em dia"))
    late = make_processor("processor-a", responder=Overtaken(db, other))

    assert await late.run_once() == 1

    assert [r["content"] for r in outbound(db, conversation_of(db, MARIA))] == ["resposta em dia"]
    message = inbound(db, delivery.wamid)
    assert (message["status"], message["attempts"], message["error_details"]) == ("processed", 2, None)
    assert processed(metrics, "bot", "processed") == 1 and processed(metrics, "bot", "retry") == 0


async def test_supabase_storage_uploads_with_the_service_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "GET":
            return httpx.Response(200, content=b"stored bytes")
        return httpx.Response(200, json={"Key": "whatsapp-media/a/b.ogg"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
        storage = SupabaseStorage(http, url="https://abc.supabase.co/", service_key="service-key")
        await storage.put("whatsapp-media/t 1/c/m.ogg", b"voice", "audio/ogg; codecs=opus")
        assert await storage.get("whatsapp-media/t 1/c/m.ogg") == b"stored bytes"

    upload = seen[0]
    assert upload.method == "POST"
    assert str(upload.url) == "https://abc.supabase.co/storage/v1/object/whatsapp-media/t%201/c/m.ogg"
    assert upload.headers["authorization"] == "Bearer service-key"
    assert upload.headers["apikey"] == "service-key"
    assert upload.headers["x-upsert"] == "true"
    assert upload.headers["content-type"] == "audio/ogg; codecs=opus"
    assert upload.content == b"voice"
