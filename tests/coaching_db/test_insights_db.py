"""Calls and insights in SQL: a call's transcript becomes citable lines and queues one
insight per transcript version; the recorder keeps only evidence the conversation backs
(no evidence: insufficient_evidence, never 0); agents see their own calls and insights."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from coaching_support import AGENT, AGENT_MEMBER, OWNER, TENANT, call, playbook

from support import Db


def claim(db: Db) -> list[dict[str, Any]]:
    with db.as_service() as s:
        return s.all("select * from public.coaching_insight_claim('test-worker')")


def record(db: Db, job: dict[str, Any], status: str, result: Any = None, error: str | None = None) -> str:
    with db.as_service() as s:
        return str(
            s.value(
                "select public.coaching_insight_record(%s, %s, %s, %s, 'openai/gpt-4o-mini', 'v1', %s)",
                (
                    job["insight_id"],
                    job["attempt"],
                    status,
                    json.dumps(result) if result is not None else None,
                    error,
                ),
            )
        )


def test_a_call_becomes_lines_and_one_insight_per_transcript_version(db: Db) -> None:
    playbook(db)
    row = call(db)
    lines = db.sql(
        "select position, speaker, text from public.coaching_call_lines where call_id = %s order by position",
        (row["id"],),
    )
    assert len(lines) == 5 and lines[1] == {
        "position": 2,
        "speaker": "Cliente",
        "text": "Perdemos muitos pedidos porque o atendimento demora dois dias.",
    }
    first = db.sql(
        "select status, methodology, seller_id from public.conversation_insights where call_id = %s",
        (row["id"],),
    )
    assert first == [{"status": "pending", "methodology": "spiced", "seller_id": row["seller_id"]}]
    with db.as_user(AGENT) as s:  # same text again: the same insight, nothing queued
        s.all(
            "update public.coaching_calls set notes = 'revisado', transcript = transcript where id = %s",
            (row["id"],),
        )
        again = s.one("select * from public.request_insight(call_id => %s)", (row["id"],))
    assert db.value("select count(*) from public.conversation_insights where call_id = %s", (row["id"],)) == 1
    with db.as_user(AGENT) as s:  # a corrected transcript is analysed again
        s.all(
            "update public.coaching_calls set transcript = transcript || 'Cliente: Fechado!' where id = %s",
            (row["id"],),
        )
    assert (
        db.value(
            "select count(*) from public.conversation_insights where call_id = %s and status = 'pending'",
            (row["id"],),
        )
        == 2
    )
    assert again["status"] == "pending"


def test_an_empty_conversation_is_recorded_as_empty_without_a_model(db: Db) -> None:
    row = call(db, "   \n\n")
    assert (
        db.value("select status from public.conversation_insights where call_id = %s", (row["id"],))
        == "empty"
    )
    assert claim(db) == []


def test_evidence_must_quote_a_line_of_that_conversation(db: Db) -> None:
    playbook(db)
    row = call(db)
    other = call(db, "Cliente: Outra conversa sobre orçamento de cem mil reais.")
    lines = {
        r["position"]: str(r["id"])
        for r in db.sql(
            "select id, position from public.coaching_call_lines where call_id = %s", (row["id"],)
        )
    }
    foreign_line = str(
        db.value("select id from public.coaching_call_lines where call_id = %s", (other["id"],))
    )
    jobs = {str(j["call_id"]): j for j in claim(db)}
    job = jobs[str(row["id"])]
    assert job["dimensions"] == ["situation", "pain", "impact", "critical_event", "decision"]
    assert job["lines"][0]["text"] == "Olá Carla, qual seu principal desafio hoje?"
    result = {
        "summary": "Carla perde pedidos pela demora no atendimento.",
        "sentiment": "positive",
        "methodology": {
            "situation": {
                "score": 7,
                "evidence": [{"message_id": lines[1], "quote": "qual seu principal desafio"}],
            },
            "pain": {"score": 9, "evidence": [{"message_id": lines[2], "quote": "PERDEMOS muitos  pedidos"}]},
            "impact": {
                "score": 8,
                "evidence": [{"message_id": lines[2], "quote": "perdemos 30% da receita"}],
            },
            "critical_event": {
                "score": 6,
                "evidence": [{"message_id": foreign_line, "quote": "cem mil reais"}],
            },
            "decision": {"score": 0, "evidence": []},
        },
        "playbook": [
            {
                "question": "Qual seu principal desafio?",
                "covered": True,
                "evidence": [{"message_id": lines[1], "quote": "qual seu principal desafio hoje"}],
            },
            {"question": "Quem decide a compra?", "covered": True, "evidence": []},
            {
                "question": "Podemos agendar a assinatura?",
                "covered": True,
                "evidence": [{"message_id": lines[5], "quote": "agendar a assinatura"}],
            },
        ],
        "key_moments": [
            {"message_id": lines[4], "quote": "até o fim do mês", "note": "prazo de decisão"},
            {"message_id": "nao-existe", "quote": "inventado", "note": "x"},
        ],
        "suggested_actions": ["Enviar proposta com ROI"],
    }
    assert record(db, job, "done", result) == "done"
    stored = db.sql("select * from public.conversation_insights where id = %s", (job["insight_id"],))[0]
    scores = stored["methodology_scores"]
    assert scores["situation"]["status"] == "scored" and scores["pain"]["score"] == 9
    # a quote that is not in the message, a message of another call, no evidence: never a 0
    assert (
        scores["impact"]
        == scores["critical_event"]
        == scores["decision"]
        == {"status": "insufficient_evidence"}
    )
    assert stored["methodology_score"] == 80  # (7 + 9) / 2 × 10
    assert stored["playbook_score"] == Decimal("66.67")
    assert [q["covered"] for q in stored["playbook_adherence"]] == [True, False, True]
    assert [m["note"] for m in stored["key_moments"]] == ["prazo de decisão"]
    assert stored["model"] == "openai/gpt-4o-mini" and stored["prompt_version"] == "v1"
    assert db.value("select count(*) from public.events where type = 'insight.completed'") == 1
    assert record(db, job, "failed", error="late") == "done"  # a stale attempt changes nothing


def test_refusals_and_garbage_are_statuses(db: Db) -> None:
    call(db)
    job = claim(db)[0]
    assert record(db, job, "refused", error="AI budget refused: limit") == "refused"
    with db.as_user(AGENT) as s:  # asked again after a refusal: a new attempt
        again = s.one("select * from public.request_insight(call_id => %s)", (job["call_id"],))
    assert again["status"] == "pending" and again["id"] != job["insight_id"]
    with pytest.raises(psycopg.errors.InvalidParameterValue), db.as_service() as s:
        s.all("select public.coaching_insight_record(%s, 1, 'great')", (again["id"],))


def test_agents_see_their_own_calls_and_insights_managers_all(db: Db) -> None:
    mine = call(db)
    theirs = call(
        db,
        as_user=OWNER,
        seller=str(
            db.value("select id from public.members where tenant_id = %s and role = 'owner'", (TENANT,))
        ),
    )
    with db.as_user(AGENT) as s:
        assert [r["id"] for r in s.all("select id from public.coaching_calls")] == [mine["id"]]
        assert s.value("select count(*) from public.conversation_insights") == 1
        assert (
            s.value("select count(*) from public.coaching_call_lines where call_id = %s", (theirs["id"],))
            == 0
        )
    with pytest.raises(psycopg.errors.NoDataFound), db.as_user(AGENT) as s:
        s.all("select public.request_insight(call_id => %s)", (theirs["id"],))
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege),
        db.as_user(AGENT) as s,
    ):  # not on someone else's name
        s.all(
            "insert into public.coaching_calls (tenant_id, seller_id, occurred_at, transcript)"
            " values (%s, %s, now(), 'x')",
            (TENANT, theirs["seller_id"]),
        )
    with db.as_user(OWNER) as s:
        assert s.value("select count(*) from public.coaching_calls") == 2
    assert mine["seller_id"] is not None and str(mine["seller_id"]) == AGENT_MEMBER


def test_a_whatsapp_conversation_is_analysed_from_its_messages(db: Db) -> None:
    conversation, message = db.create_conversation(text="Quero saber o preço do plano anual")
    with db.as_user(OWNER) as s:
        insight = s.one("select * from public.request_insight(conversation_id => %s)", (conversation,))
    assert insight["status"] == "pending" and insight["playbook_id"] is None
    job = claim(db)[0]
    assert [line["id"] for line in job["lines"]] == [message]
    assert job["lines"][0]["speaker"] == "Cliente"
