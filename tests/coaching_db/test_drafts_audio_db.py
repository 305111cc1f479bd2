"""AI drafts of playbooks and calls uploaded as audio, in SQL: managers ask for drafts (agents
and other tenants cannot); a drafted content is checked against the playbook schema and stored
whole as a new draft playbook or not at all; a recording waits for its transcript (no empty
insight meanwhile), which then becomes lines and a queued insight; a refused or failed
transcription is a visible status its seller or a manager can retry."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from coaching_support import AGENT, AGENT_MEMBER, CONTENT, OWNER, TEAM, TENANT

from support import Db

DESCRIPTION = "Vendemos um ERP para pequenas indústrias; o comprador é o dono, o ciclo leva 30 dias."


def ask_draft(db: Db, user: Any, tenant: Any = TENANT, team: str | None = TEAM, **kw: Any) -> dict[str, Any]:
    args = {"function": "sales", "methodology": "spin", "description": DESCRIPTION, **kw}
    with db.as_user(user) as s:
        return s.one(
            "select * from public.request_playbook_draft(%s, %s, %s, %s, %s)",
            (tenant, team, args["function"], args["methodology"], args["description"]),
        )


def claim_drafts(db: Db) -> list[dict[str, Any]]:
    with db.as_service() as s:
        return s.all("select * from public.coaching_draft_claim('test-worker')")


def record_draft(
    db: Db, job: dict[str, Any], status: str, content: Any = None, error: str | None = None
) -> str:
    with db.as_service() as s:
        return str(
            s.value(
                "select public.coaching_draft_record(%s, %s, %s, %s, 'openai/gpt-4o-mini', 'd1', %s)",
                (
                    job["draft_id"],
                    job["attempt"],
                    status,
                    json.dumps(content) if content is not None else None,
                    error,
                ),
            )
        )


def audio_call(
    db: Db, path: str | None = None, *, as_user: str = AGENT, transcript: str = ""
) -> dict[str, Any]:
    with db.as_user(as_user) as s:
        return s.one(
            "insert into public.coaching_calls (tenant_id, seller_id, title, occurred_at, duration_seconds,"
            " audio_storage_path, audio_mime_type, transcript) values (%s, %s, 'Ligação gravada',"
            " now() - interval '1 hour', 95, %s, 'audio/mpeg', %s) returning *",
            (TENANT, AGENT_MEMBER, path or f"media/{TENANT}/calls/ligacao.mp3", transcript),
        )


def claim_transcriptions(db: Db) -> list[dict[str, Any]]:
    with db.as_service() as s:
        return s.all("select * from public.coaching_transcription_claim('test-worker')")


def record_transcription(
    db: Db, job: dict[str, Any], status: str, transcript: str | None = None, error: str | None = None
) -> str | None:
    with db.as_service() as s:
        value = s.value(
            "select public.coaching_transcription_record(%s, %s, %s, %s, 'openai/whisper-1', %s)",
            (job["call_id"], job["attempt"], status, transcript, error),
        )
    return None if value is None else str(value)


def test_managers_ask_for_drafts_agents_and_other_tenants_cannot(db: Db) -> None:
    manager = db.add_member(TENANT, "manager")
    draft = ask_draft(db, manager)
    assert draft["status"] == "pending" and draft["name"] == "Playbook SPIN (rascunho IA)"
    assert str(draft["requested_by"]) == str(manager) and str(draft["team_id"]) == TEAM
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        ask_draft(db, AGENT)
    stranger = db.create_user()
    db.create_tenant(stranger, "Outra Loja")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        ask_draft(db, stranger)
    with pytest.raises(psycopg.errors.NoDataFound):  # a team that is not this tenant's
        ask_draft(db, manager, team="00000000-0000-4000-d000-0000000000ff")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="methodology"):
        ask_draft(db, manager, methodology="gpct")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="describe"):
        ask_draft(db, manager, description="   ")
    with db.as_user(manager) as s:
        assert [r["id"] for r in s.all("select id from public.playbook_drafts")] == [draft["id"]]
    for outsider in (AGENT, stranger):
        with db.as_user(outsider) as s:
            assert s.value("select count(*) from public.playbook_drafts") == 0
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege),
        db.as_user(manager) as s,
    ):  # only through the RPC
        s.all(
            "insert into public.playbook_drafts (tenant_id, name, function, methodology, description)"
            " values (%s, 'x', 'sales', 'spin', 'x')",
            (TENANT,),
        )
    assert db.value("select count(*) from public.playbook_drafts") == 1


def test_a_draft_is_stored_whole_as_a_new_draft_playbook_or_not_at_all(db: Db) -> None:
    manager = db.add_member(TENANT, "manager")
    asked = ask_draft(db, manager)
    [job] = claim_drafts(db)
    assert job["dimensions"] == ["situation", "problem", "implication", "need_payoff"]
    assert job["description"] == DESCRIPTION and job["team_name"] is not None and job["attempt"] == 1
    assert record_draft(db, job, "done", CONTENT) == "done"
    stored = db.sql("select * from public.playbook_drafts where id = %s", (asked["id"],))[0]
    playbook = db.sql("select * from public.playbooks where id = %s", (stored["playbook_id"],))[0]
    assert playbook["status"] == "draft" and playbook["is_ai_generated"] and playbook["version"] == 1
    assert playbook["content"] == CONTENT and str(playbook["created_by"]) == str(manager)
    assert (playbook["methodology"], str(playbook["team_id"])) == ("spin", TEAM)
    assert stored["model"] == "openai/gpt-4o-mini" and stored["completed_at"] is not None
    assert db.value("select count(*) from public.events where type = 'playbook.drafted'") == 1
    assert record_draft(db, job, "failed", error="late") == "done"  # a stale attempt changes nothing

    ask_draft(db, manager)
    [job] = claim_drafts(db)
    half = {"sections": [{"title": "Descoberta", "questions": []}]}
    assert record_draft(db, job, "done", half) == "invalid_output"
    assert db.value("select count(*) from public.playbooks") == 1  # nothing of it stored
    error = db.value("select error from public.playbook_drafts where id = %s", (job["draft_id"],))
    assert error == "playbook content: sections[1].questions must be 1 to 30 texts of 1 to 500 characters"

    ask_draft(db, manager)
    [job] = claim_drafts(db)
    assert record_draft(db, job, "refused", error="AI budget refused: limit") == "refused"
    with pytest.raises(psycopg.errors.InvalidParameterValue), db.as_service() as s:
        s.all("select public.coaching_draft_record(%s, 1, 'great')", (job["draft_id"],))


def test_a_recording_waits_for_its_transcript_then_becomes_lines_and_an_insight(db: Db) -> None:
    row = audio_call(db)
    assert row["transcription_status"] == "pending" and row["transcript"] == ""
    assert db.value("select count(*) from public.conversation_insights where call_id = %s", (row["id"],)) == 0
    [job] = claim_transcriptions(db)
    assert job["audio_storage_path"] == row["audio_storage_path"] and job["duration_seconds"] == 95
    assert claim_transcriptions(db) == []  # leased
    transcript = "Participante: Qual seu principal desafio?\nParticipante: Perdemos pedidos: muitos."
    assert record_transcription(db, job, "done", transcript) == "done"
    call = db.sql("select * from public.coaching_calls where id = %s", (row["id"],))[0]
    assert call["transcription_status"] == "done" and call["transcribed_at"] is not None
    assert call["transcription_model"] == "openai/whisper-1"
    lines = db.sql(
        "select speaker, text from public.coaching_call_lines where call_id = %s order by position",
        (row["id"],),
    )
    assert lines == [
        {"speaker": "Participante", "text": "Qual seu principal desafio?"},
        {"speaker": "Participante", "text": "Perdemos pedidos: muitos."},
    ]
    assert db.sql("select status from public.conversation_insights where call_id = %s", (row["id"],)) == [
        {"status": "pending"}
    ]
    assert record_transcription(db, job, "failed", error="late") == "done"  # a stale attempt changes nothing

    silent = audio_call(db, f"media/{TENANT}/calls/silencio.mp3")
    [job] = claim_transcriptions(db)
    assert record_transcription(db, job, "done", "") == "done"
    assert (
        db.value("select status from public.conversation_insights where call_id = %s", (silent["id"],))
        == "empty"
    )


@pytest.mark.parametrize(
    "path",
    [
        "media/00000000-0000-4000-b000-0000000000ff/calls/x.mp3",  # another tenant's folder
        f"media/{TENANT}/../00000000-0000-4000-b000-0000000000ff/x.mp3",
        f"media/{TENANT}//x.mp3",
        f"{TENANT}/x.mp3",
    ],
)
def test_a_recording_outside_the_tenants_folder_is_refused(db: Db, path: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="tenant's folder"):
        audio_call(db, path)


def test_a_call_is_audio_or_text_not_both(db: Db) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not both"):
        audio_call(db, transcript="Cliente: oi")


def test_refused_and_failed_transcriptions_are_statuses_their_seller_or_a_manager_retries(db: Db) -> None:
    row = audio_call(db)
    [job] = claim_transcriptions(db)
    assert record_transcription(db, job, "failed", error="server_error: boom") == "failed"
    failed = db.sql("select * from public.coaching_calls where id = %s", (row["id"],))[0]
    assert (failed["transcription_status"], failed["transcription_error"]) == ("failed", "server_error: boom")
    assert failed["transcript"] == "" and failed["transcribed_at"] is None
    stranger = db.create_user()
    db.create_tenant(stranger, "Outra Loja")
    other_agent = db.add_member(TENANT, "agent")
    for outsider in (stranger, other_agent):  # neither their tenant nor their call
        with pytest.raises(psycopg.errors.NoDataFound), db.as_user(outsider) as s:
            s.all("select public.retry_call_transcription(%s)", (row["id"],))
    with db.as_user(AGENT) as s:
        again = s.one("select * from public.retry_call_transcription(%s)", (row["id"],))
    assert again["transcription_status"] == "pending" and again["transcription_error"] is None
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState), db.as_user(AGENT) as s:
        s.all("select public.retry_call_transcription(%s)", (row["id"],))  # already pending
    [job] = claim_transcriptions(db)
    assert job["attempt"] == 2
    assert record_transcription(db, job, "refused", error="AI budget refused: limit") == "refused"
    with db.as_user(OWNER) as s:  # a manager retries anyone's
        assert s.one("select * from public.retry_call_transcription(%s)", (row["id"],))[
            "transcription_status"
        ] == ("pending")
    with pytest.raises(psycopg.errors.InvalidParameterValue), db.as_service() as s:
        s.all("select public.coaching_transcription_record(%s, 2, 'invalid_output')", (row["id"],))


def test_a_deleted_call_or_a_replaced_recording_leaves_storage(db: Db) -> None:
    """The recording is personal data: when its call is deleted (a manager, through the API) or
    the call points at another file, the old object is queued for the storage purge. Not when
    the whole tenant goes (its folder goes with it)."""
    kept, replaced = audio_call(db), audio_call(db, f"media/{TENANT}/calls/primeira.mp3")
    with db.as_user(OWNER) as s:
        assert s.rowcount("delete from public.coaching_calls where id = %s", (kept["id"],)) == 1
    db.sql("update public.coaching_calls set audio_storage_path = %s where id = %s",
           (f"media/{TENANT}/calls/segunda.mp3", replaced["id"]))
    queued = db.sql("select storage_key, reason from public.storage_deletions order by storage_key")
    assert queued == [{"storage_key": kept["audio_storage_path"], "reason": "deleted"},
                      {"storage_key": f"media/{TENANT}/calls/primeira.mp3", "reason": "deleted"}]
    db.sql("delete from public.tenants where id = %s", (TENANT,))
    assert db.value("select count(*) from public.storage_deletions") == 0
