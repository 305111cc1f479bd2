"""The coaching loop over the real gateway, ledger, listener and database, with the OpenAI wire
stand-ins answering: a good playbook draft is stored as a new AI draft with its cost; an answer
that is not the schema is invalid_output with nothing stored; a budget refusal is refused; a
recording becomes a transcript (usage row call_transcription), its lines and an analysed insight
in the same round; refused and failed transcriptions say why and succeed when retried."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from coaching_support import AGENT, AGENT_MEMBER, CONTENT, TEAM, TENANT

from support import Db
from zapbase.ai import Gateway, OpenAICompatProvider, PostgresLedger
from zapbase.bot import AIResponder
from zapbase.bot.gateways import Gateways
from zapbase.bot.knowledge import Knowledge
from zapbase.bot.memory import Summarizer
from zapbase.bot.voice import Listener
from zapbase.coaching import DRAFT_FEATURE, DRAFT_PROMPT_VERSION, MAX_RECORDING_BYTES, TRANSCRIPTION_FEATURE
from zapbase.db.pool import Pool, open_pool
from zapbase.settings import Settings
from zapbase.standins.ai import Fault, FaultKind, OpenAIStandIn, Reply
from zapbase.storage import LocalStorage
from zapbase.worker.insights import InsightLoop
from zapbase.worker.runner import Runner

pytestmark = pytest.mark.anyio

AUDIO_PATH = f"media/{TENANT}/calls/ligacao.mp3"
SPOKEN = (
    "Qual seu principal desafio hoje? Perdemos pedidos porque o atendimento demora. Quem decide a compra?"
)


@pytest.fixture
async def pool(db: Db, anyio_backend: str) -> AsyncIterator[Pool]:
    async with open_pool(db.url, 4) as pool:
        yield pool


@pytest.fixture
def gpt() -> OpenAIStandIn:
    return OpenAIStandIn(api_key="sk-test")


@pytest.fixture
def whisper() -> OpenAIStandIn:
    return OpenAIStandIn(api_key="sk-test", transcript_text=SPOKEN)


@pytest.fixture
async def media(tmp_path: Path) -> LocalStorage:
    store = LocalStorage(tmp_path / "media")
    await store.put(AUDIO_PATH, b"\x00" * 48_000, "audio/mpeg")
    return store


@pytest.fixture
async def gateways(pool: Pool, gpt: OpenAIStandIn) -> AsyncIterator[Gateways]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gpt.app)) as http:
        openai = OpenAICompatProvider(api_key="sk-test", base_url="http://openai.test", client=http)
        ledger = PostgresLedger(pool)
        yield Gateways(platform=Gateway({"openai": openai}, ledger), ledger=ledger)


@pytest.fixture
async def loop(
    pool: Pool, gateways: Gateways, whisper: OpenAIStandIn, media: LocalStorage
) -> AsyncIterator[InsightLoop]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=whisper.app)) as http:
        transcriber = OpenAICompatProvider(api_key="sk-test", base_url="http://openai.test", client=http)
        listener = Listener(transcriber=transcriber, model="whisper-1", connect=pool.connection)
        yield InsightLoop(
            pool=pool, gateways=gateways, worker_id="test-coaching", listener=listener, media=media
        )


def ask_draft(db: Db) -> dict[str, Any]:
    with db.as_user(db.add_member(TENANT, "manager")) as s:
        return s.one(
            "select * from public.request_playbook_draft(%s, %s, 'pre_sales', 'bant', %s, 'Roteiro SDR')",
            (TENANT, TEAM, "Qualificação de leads inbound de um SaaS de logística."),
        )


def draft_row(db: Db, draft_id: Any) -> dict[str, Any]:
    return db.sql("select * from public.playbook_drafts where id = %s", (draft_id,))[0]


def audio_call(db: Db) -> dict[str, Any]:
    with db.as_user(AGENT) as s:
        return s.one(
            "insert into public.coaching_calls (tenant_id, seller_id, occurred_at, duration_seconds,"
            " audio_storage_path, audio_mime_type) values (%s, %s, now(), 90, %s, 'audio/mpeg') returning *",
            (TENANT, AGENT_MEMBER, AUDIO_PATH),
        )


def call_row(db: Db, call_id: Any) -> dict[str, Any]:
    return db.sql("select * from public.coaching_calls where id = %s", (call_id,))[0]


def pause_budgets(db: Db, paused: bool) -> None:
    db.sql(
        "update public.budgets set paused_reason = case when %s then 'manual' end,"
        " paused_at = case when %s then now() end",
        (paused, paused),
    )


async def test_a_good_draft_becomes_an_ai_draft_playbook_with_its_cost(
    db: Db, loop: InsightLoop, gpt: OpenAIStandIn
) -> None:
    asked = ask_draft(db)
    gpt.push(Reply(text="```json\n" + json.dumps(CONTENT, ensure_ascii=False) + "\n```"))
    assert await loop.run_once() == 1
    stored = draft_row(db, asked["id"])
    assert stored["status"] == "done" and stored["prompt_version"] == DRAFT_PROMPT_VERSION
    assert stored["model"] == "openai/gpt-4o-mini" and stored["cost_usd"] > 0 and stored["tokens"] > 0
    playbook = db.sql("select * from public.playbooks where id = %s", (stored["playbook_id"],))[0]
    assert (playbook["name"], playbook["status"], playbook["is_ai_generated"]) == (
        "Roteiro SDR",
        "draft",
        True,
    )
    assert playbook["content"] == CONTENT and playbook["function"] == "pre_sales"
    usage = db.sql(
        "select feature from public.ai_usage where request_id = %s", (f"playbook_draft:{asked['id']}",)
    )
    assert usage == [{"feature": DRAFT_FEATURE}]
    body = gpt.calls_to("/v1/chat/completions")[-1].body
    assert "budget, authority, need, timeline" in body["messages"][-1]["content"]
    assert "SaaS de logística" in body["messages"][-1]["content"]
    assert await loop.run_once() == 0


async def test_an_answer_outside_the_content_schema_is_invalid_output_and_nothing_is_stored(
    db: Db, loop: InsightLoop, gpt: OpenAIStandIn
) -> None:
    asked = ask_draft(db)
    # half a playbook: a section without questions, twice (the gateway asks again once)
    half = json.dumps({"sections": [{"title": "Descoberta", "questions": []}], "objections": []})
    gpt.push(Reply(text=half), Reply(text=half))
    await loop.run_once()
    stored = draft_row(db, asked["id"])
    assert stored["status"] == "invalid_output" and "questions" in stored["error"]
    assert stored["playbook_id"] is None and db.value("select count(*) from public.playbooks") == 0
    assert len(gpt.calls_to("/v1/chat/completions")) == 2
    asked = ask_draft(db)
    gpt.push(Reply(text="Claro! Aqui vai um ótimo playbook: pergunte tudo."))  # not JSON, twice
    await loop.run_once()
    stored = draft_row(db, asked["id"])
    assert stored["status"] == "invalid_output" and "not JSON" in stored["error"]
    assert db.value("select count(*) from public.playbooks") == 0


async def test_budget_refusals_and_failures_of_drafts_are_statuses(
    db: Db, loop: InsightLoop, gpt: OpenAIStandIn
) -> None:
    pause_budgets(db, True)
    asked = ask_draft(db)
    await loop.run_once()
    assert draft_row(db, asked["id"])["status"] == "refused"
    assert gpt.calls_to("/v1/chat/completions") == []
    pause_budgets(db, False)
    asked = ask_draft(db)
    gpt.push(Fault(kind=FaultKind.SERVER_ERROR))
    await loop.run_once()
    failed = draft_row(db, asked["id"])
    assert failed["status"] == "failed" and failed["error"] == "no provider answered: server_error"


async def test_a_recording_is_transcribed_then_its_insight_runs_in_the_same_round(
    db: Db, loop: InsightLoop, gpt: OpenAIStandIn, whisper: OpenAIStandIn
) -> None:
    row = audio_call(db)
    await loop.run_once()
    call = call_row(db, row["id"])
    assert call["transcription_status"] == "done" and call["transcription_model"] == "openai/whisper-1"
    assert call["transcript"].splitlines() == [
        "Participante: Qual seu principal desafio hoje?",
        "Participante: Perdemos pedidos porque o atendimento demora.",
        "Participante: Quem decide a compra?",
    ]
    [upload] = whisper.calls_to("/v1/audio/transcriptions")
    assert upload.body["content_type"] == "audio/mpeg" and upload.body["bytes"] == 48_000
    usage = db.sql(
        "select feature, audio_seconds from public.ai_usage where request_id = %s",
        (f"transcription:{row['id']}",),
    )
    assert [u["feature"] for u in usage] == [TRANSCRIPTION_FEATURE] and usage[0]["audio_seconds"] > 0
    line = db.value(
        "select id from public.coaching_call_lines where call_id = %s and position = 2", (row["id"],)
    )
    prompt = gpt.calls_to("/v1/chat/completions")[0].body["messages"][-1]["content"]
    assert f"[{line}] Participante: Perdemos pedidos porque o atendimento demora." in prompt
    insight = db.sql("select status from public.conversation_insights where call_id = %s", (row["id"],))
    assert [i["status"] for i in insight] == [
        "invalid_output"
    ]  # analysed: the stand-in's default reply is no JSON


async def test_refused_and_failed_transcriptions_say_why_and_a_retry_succeeds(
    db: Db, loop: InsightLoop, whisper: OpenAIStandIn, media: LocalStorage
) -> None:
    pause_budgets(db, True)
    row = audio_call(db)
    await loop.run_once()
    refused = call_row(db, row["id"])
    assert refused["transcription_status"] == "refused" and refused["transcription_error"].startswith(
        "AI budget refused: paused"
    )
    assert whisper.calls_to("/v1/audio/transcriptions") == []
    assert db.value("select count(*) from public.conversation_insights where call_id = %s", (row["id"],)) == 0
    pause_budgets(db, False)
    whisper.push(Fault(kind=FaultKind.SERVER_ERROR))
    with db.as_user(AGENT) as s:
        s.all("select public.retry_call_transcription(%s)", (row["id"],))
    await loop.run_once()
    failed = call_row(db, row["id"])
    assert failed["transcription_status"] == "failed" and failed["transcription_error"].startswith(
        "server_error"
    )
    await media.delete(AUDIO_PATH)
    with db.as_user(AGENT) as s:
        s.all("select public.retry_call_transcription(%s)", (row["id"],))
    await loop.run_once()
    missing = call_row(db, row["id"])
    assert (
        missing["transcription_status"] == "failed" and "audio not readable" in missing["transcription_error"]
    )
    await media.put(AUDIO_PATH, b"\x00" * 8_000, "audio/mpeg")
    with db.as_user(AGENT) as s:
        s.all("select public.retry_call_transcription(%s)", (row["id"],))
    await loop.run_once()
    done = call_row(db, row["id"])
    assert done["transcription_status"] == "done" and done["transcription_attempts"] == 4
    assert done["transcription_error"] is None and "Quem decide a compra?" in done["transcript"]


async def test_a_recording_over_the_providers_limit_fails_with_what_to_do_and_costs_nothing(
    db: Db, loop: InsightLoop, whisper: OpenAIStandIn, media: LocalStorage
) -> None:
    await media.put(AUDIO_PATH, b"\x00" * (MAX_RECORDING_BYTES + 1), "audio/mpeg")
    row = audio_call(db)
    await loop.run_once()
    call = call_row(db, row["id"])
    assert call["transcription_status"] == "failed"
    assert call["transcription_error"].startswith("the recording has 25.0 MB and transcription takes up to")
    assert whisper.calls_to("/v1/audio/transcriptions") == []
    assert db.value("select count(*) from public.budget_reservations where feature = %s",
                    (TRANSCRIPTION_FEATURE,)) == 0


async def test_without_a_transcriber_a_recording_fails_with_the_reason(
    db: Db, pool: Pool, gateways: Gateways
) -> None:
    bare = InsightLoop(pool=pool, gateways=gateways, worker_id="no-audio")
    row = audio_call(db)
    assert await bare.run_once() == 1
    call = call_row(db, row["id"])
    assert (
        call["transcription_status"] == "failed"
        and "no transcription provider" in call["transcription_error"]
    )


async def test_the_worker_drafts_and_transcribes_as_soon_as_asked(
    db: Db, pool: Pool, gateways: Gateways, gpt: OpenAIStandIn, whisper: OpenAIStandIn, media: LocalStorage,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The runner gives the coaching loop the bot's listener and the media store; the NOTIFY of
    request_playbook_draft and of an uploaded recording wakes it long before its poll (60 s)."""
    settings = Settings(
        database_url=db.url, zapbase_media_dir=tmp_path, anthropic_api_key=None, openai_api_key=None,
        zapbase_poll_interval_s=60.0, zapbase_scheduler=False,
    )  # fmt: skip
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=whisper.app)) as http:
        transcriber = OpenAICompatProvider(api_key="sk-test", base_url="http://openai.test", client=http)
        responder = AIResponder(
            connect=pool.connection, gateways=gateways, knowledge=Knowledge(connect=pool.connection),
            summarizer=Summarizer(connect=pool.connection, threshold=9), media=media,
            listener=Listener(transcriber=transcriber, model="whisper-1", connect=pool.connection),
        )  # fmt: skip
        runner = Runner(settings, responder=responder, storage=media, serve_http=False, handle_signals=False)
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run)
            await runner.ready.wait()
            await anyio.sleep(0.5)  # LISTEN is up (its catch-up round found nothing)
            gpt.push(Reply(text=json.dumps(CONTENT)))
            asked = ask_draft(db)
            with anyio.fail_after(10):
                while draft_row(db, asked["id"])["status"] != "done":
                    await anyio.sleep(0.05)
            row = audio_call(db)
            with anyio.fail_after(10):
                while call_row(db, row["id"])["transcription_status"] != "done":
                    await anyio.sleep(0.05)
            runner.stop()
    assert "Quem decide a compra?" in call_row(db, row["id"])["transcript"]
