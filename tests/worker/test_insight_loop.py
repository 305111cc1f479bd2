"""The insight loop over the real gateway, ledger and database, with the OpenAI wire stand-in
answering: a good answer is stored with evidence-backed scores, model, prompt version and
cost; garbage is invalid_output and an answer without evidence gives insufficient_evidence
(never zeros); a budget refusal and failing providers are statuses."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import Db
from zapbase.ai import Gateway, OpenAICompatProvider, PostgresLedger
from zapbase.bot.gateways import Gateways
from zapbase.coaching import FEATURE, PROMPT_VERSION
from zapbase.db.pool import Pool
from zapbase.standins.ai import Fault, FaultKind, OpenAIStandIn, Reply
from zapbase.worker.insights import InsightLoop

sys.path.insert(0, str(Path(__file__).parents[1] / "coaching_db"))
from coaching_support import CONTENT, TRANSCRIPT, call, playbook

pytestmark = pytest.mark.anyio


@pytest.fixture
def gpt() -> OpenAIStandIn:
    return OpenAIStandIn(api_key="sk-test")


@pytest.fixture
async def loop(pool: Pool, gpt: OpenAIStandIn) -> AsyncIterator[InsightLoop]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gpt.app)) as http:
        openai = OpenAICompatProvider(api_key="sk-test", base_url="http://openai.test", client=http)
        ledger = PostgresLedger(pool)
        gateways = Gateways(platform=Gateway({"openai": openai}, ledger), ledger=ledger)
        yield InsightLoop(pool=pool, gateways=gateways, worker_id="test-insights")


def lines(db: Db, call_id: Any) -> dict[int, str]:
    return {
        r["position"]: str(r["id"])
        for r in db.sql("select id, position from public.coaching_call_lines where call_id = %s", (call_id,))
    }


def insight(db: Db, call_id: Any) -> dict[str, Any]:
    rows = db.sql(
        "select * from public.conversation_insights where call_id = %s order by created_at desc", (call_id,)
    )
    return rows[0]


def good_answer(ids: dict[int, str]) -> str:
    return (
        "```json\n"
        + json.dumps(
            {
                "summary": "Carla perde pedidos pela demora; decisão com o financeiro até o fim do mês.",
                "sentiment": "positive",
                "methodology": {
                    "situation": {
                        "score": 7,
                        "evidence": [{"message_id": ids[1], "quote": "qual seu principal desafio hoje"}],
                    },
                    "pain": {
                        "score": 9,
                        "evidence": [{"message_id": ids[2], "quote": "Perdemos muitos pedidos"}],
                    },
                    "critical_event": {
                        "score": 6,
                        "evidence": [{"message_id": ids[4], "quote": "até o fim do mês"}],
                    },
                    "decision": {
                        "score": 8,
                        "evidence": [{"message_id": ids[4], "quote": "junto com o diretor financeiro"}],
                    },
                },
                "playbook": [
                    {"question": q, "covered": True, "evidence": [{"message_id": ids[n], "quote": quote}]}
                    for q, n, quote in (
                        ("Qual seu principal desafio?", 1, "principal desafio"),
                        ("Quem decide a compra?", 3, "Quem decide a compra"),
                    )
                ],
                "key_moments": [{"message_id": ids[4], "quote": "até o fim do mês", "note": "prazo"}],
                "suggested_actions": ["Enviar proposta ao diretor financeiro"],
            },
            ensure_ascii=False,
        )
        + "\n```"
    )


async def test_a_good_answer_is_stored_with_evidence_model_and_cost(
    db: Db, loop: InsightLoop, gpt: OpenAIStandIn
) -> None:
    playbook(db)
    row = call(db)
    gpt.push(Reply(text=good_answer(lines(db, row["id"]))))
    assert await loop.run_once() == 1
    stored = insight(db, row["id"])
    assert stored["status"] == "done" and stored["sentiment"] == "positive"
    scores = stored["methodology_scores"]
    assert {d: s["status"] for d, s in scores.items()} == {
        "situation": "scored",
        "pain": "scored",
        "impact": "insufficient_evidence",
        "critical_event": "scored",
        "decision": "scored",
    }
    assert stored["playbook_score"] == Decimal("66.67")
    assert stored["model"] == "openai/gpt-4o-mini" and stored["prompt_version"] == PROMPT_VERSION
    assert stored["cost_usd"] > 0 and stored["tokens"] > 0
    usage = db.sql(
        "select feature, request_id from public.ai_usage where request_id = %s", (f"insight:{stored['id']}",)
    )
    assert usage == [{"feature": FEATURE, "request_id": f"insight:{stored['id']}"}]
    prompt = gpt.calls_to("/v1/chat/completions")[-1].body["messages"][-1]["content"]
    assert f"[{lines(db, row['id'])[2]}] Cliente: Perdemos muitos pedidos" in prompt
    assert CONTENT["sections"][1]["questions"][0] in prompt
    assert await loop.run_once() == 0  # nothing left, nothing analysed twice


async def test_garbage_is_invalid_output_and_nothing_is_scored(
    db: Db, loop: InsightLoop, gpt: OpenAIStandIn
) -> None:
    row = call(db)
    gpt.push(Reply(text="Claro! A conversa foi ótima, nota 10 em tudo."))  # asked again: garbage again
    await loop.run_once()
    stored = insight(db, row["id"])
    assert stored["status"] == "invalid_output" and "not JSON" in stored["error"]
    assert stored["methodology_scores"] is None and stored["methodology_score"] is None
    assert len(gpt.calls_to("/v1/chat/completions")) == 2
    row2 = call(db, TRANSCRIPT + "Cliente: Ok.")
    outside = {"summary": "x", "sentiment": "happy", "methodology": {"budget": {"score": 3, "evidence": []}}}
    gpt.push(Reply(text=json.dumps(outside)), Reply(text=json.dumps(outside)))
    await loop.run_once()
    error = insight(db, row2["id"])["error"]
    assert "$.sentiment" in error and "budget" in error  # not a sentiment, not a SPICED dimension


async def test_an_answer_without_evidence_scores_nothing(
    db: Db, loop: InsightLoop, gpt: OpenAIStandIn
) -> None:
    row = call(db)
    dims = ("situation", "pain", "impact", "critical_event", "decision")
    gpt.push(
        Reply(
            text=json.dumps(
                {
                    "summary": "Boa conversa.",
                    "sentiment": "neutral",
                    "methodology": {d: {"score": 8, "evidence": []} for d in dims},
                }
            )
        )
    )
    await loop.run_once()
    stored = insight(db, row["id"])
    assert stored["status"] == "done" and stored["methodology_score"] is None
    assert all(s == {"status": "insufficient_evidence"} for s in stored["methodology_scores"].values())


async def test_budget_refusals_and_failures_are_statuses(
    db: Db, loop: InsightLoop, gpt: OpenAIStandIn
) -> None:
    db.sql("update public.budgets set paused_reason = 'manual', paused_at = now()")
    row = call(db)
    await loop.run_once()
    assert insight(db, row["id"])["status"] == "refused"
    assert gpt.calls_to("/v1/chat/completions") == []
    db.sql("update public.budgets set paused_reason = null, paused_at = null")
    gpt.push(Fault(kind=FaultKind.SERVER_ERROR))
    with db.as_service() as s:
        s.all("select public.request_insight(call_id => %s)", (row["id"],))
    await loop.run_once()
    failed = insight(db, row["id"])
    assert failed["status"] == "failed" and failed["error"] == "no provider answered: server_error"
