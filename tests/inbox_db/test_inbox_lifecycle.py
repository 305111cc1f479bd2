"""The conversation's life with agents: transfer with a note, resolve with the CSAT survey
answered through ingest, reopen, snooze, close, returns to the queue (agent offline past the
grace period, return timer with an alert), each an event and a line in the timeline; the
agent's tools (greeting, quick replies, internal notes, tags, attributes) and the metrics."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from inbox_support import (
    AGENT,
    OWNER,
    TEAM,
    TENANT,
    assignee,
    conversation,
    customer,
    events,
    handoff,
    load,
    member_id,
    new_agent,
    new_team,
    presence,
    timeline,
)

from support import Db

NUMBER_ID = "106540352242922"


def reply_to_survey(db: Db, wa_id: str, row_id: str) -> dict[str, object]:
    """The customer taps a row of the survey list (a Meta interactive list_reply webhook)."""
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "5511999990000",
                                "phone_number_id": NUMBER_ID,
                            },
                            "messages": [
                                {
                                    "from": wa_id,
                                    "id": f"wamid.{uuid.uuid4().hex}",
                                    "type": "interactive",
                                    "timestamp": str(int(datetime.now(UTC).timestamp())),
                                    "interactive": {
                                        "type": "list_reply",
                                        "list_reply": {"id": row_id, "title": "5 - Excelente"},
                                    },
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    with db.as_service() as s:
        result: dict[str, object] = s.value(
            "select public.whatsapp_ingest(%s::jsonb, %s)", (json.dumps(body), NUMBER_ID)
        )
    return result


def wa_id_of(db: Db, conv: str) -> str:
    return str(
        db.value(
            "select k.wa_id from public.conversations c join public.contacts k on k.id = c.contact_id"
            " where c.id = %s",
            (conv,),
        )
    )


def test_transfer_resolve_and_the_csat_answer_through_ingest(db: Db) -> None:
    sales = new_team(db, "Vendas")
    ana = new_agent(db, "Ana", sales)
    presence(db, AGENT, "online")
    presence(db, ana, "online")
    conv = str(handoff(db, customer(db))["id"])
    assert assignee(db, conv) == member_id(db, AGENT)
    with db.as_user(AGENT) as s:
        s.all(
            "select public.transfer_conversation(%s, %s, %s, 'Quer comprar o plano anual')",
            (conv, member_id(db, ana), sales),
        )
    assert (assignee(db, conv), str(conversation(db, conv)["team_id"])) == (member_id(db, ana), sales)
    assert (load(db, AGENT), load(db, ana)) == (0, 1)
    lines = timeline(db, conv)
    assert {"sender_type": "agent", "type": "note", "content": "Quer comprar o plano anual"} in [
        {k: line[k] for k in ("sender_type", "type", "content")} for line in lines
    ]
    assert any((line["content"] or "").startswith("Conversa transferida para Ana") for line in lines)
    transferred = events(db, conv, "conversation.transferred")[0]["payload"]
    assert (
        transferred["to_member_id"] == member_id(db, ana)
        and transferred["note"] == "Quer comprar o plano anual"
    )

    with db.as_user(ana) as s:
        resolved = s.one("select * from public.resolve_conversation(%s)", (conv,))
    assert resolved["status"] == "resolved" and resolved["csat_requested_at"] is not None
    survey = db.sql(
        "select payload from public.messages where conversation_id = %s and type = 'interactive'", (conv,)
    )[0]["payload"]
    assert [r["id"] for r in survey["interactive"]["action"]["sections"][0]["rows"]] == [
        "csat:5",
        "csat:4",
        "csat:3",
        "csat:2",
        "csat:1",
    ]
    # the agent cannot write the rating; the customer's answer lands on this conversation
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(ana) as s:
        s.all("update public.conversations set csat = 5 where id = %s", (conv,))
    reply_to_survey(db, wa_id_of(db, conv), "csat:4")
    after = conversation(db, conv)
    assert (after["csat"], after["status"]) == (4, "resolved")
    assert (
        db.value("select count(*) from public.conversations where contact_id = %s", (after["contact_id"],))
        == 1
    ), "the answer opened no new conversation"
    assert (
        db.value(
            "select status from public.messages where conversation_id = %s and direction = 'inbound'"
            " and interactive_reply_id = 'csat:4'",
            (conv,),
        )
        == "processed"
    )
    assert events(db, conv, "conversation.csat_received")[0]["payload"]["csat"] == 4
    reply_to_survey(db, wa_id_of(db, conv), "csat:1")  # a second tap changes nothing
    assert conversation(db, conv)["csat"] == 4


def test_reopen_snooze_close(db: Db) -> None:
    presence(db, AGENT, "online")
    conv = str(handoff(db, customer(db))["id"])
    with db.as_user(AGENT) as s:
        s.all("select public.resolve_conversation(%s, false)", (conv,))
        reopened = s.one("select * from public.reopen_conversation(%s)", (conv,))
    assert (reopened["status"], str(reopened["assignee_id"])) == ("open", member_id(db, AGENT))
    until = datetime.now(UTC) + timedelta(hours=2)
    with db.as_user(AGENT) as s:
        snoozed = s.one("select * from public.snooze_conversation(%s, %s)", (conv, until))
    assert snoozed["status"] == "waiting" and snoozed["snoozed_until"] is not None
    db.sql(
        "update public.conversations set snoozed_until = now() - interval '1 second' where id = %s", (conv,)
    )
    db.value("select private.run_job('inbox_housekeeping')")
    assert (conversation(db, conv)["status"], conversation(db, conv)["snoozed_until"]) == ("open", None)
    with db.as_user(AGENT) as s:
        s.all("select public.close_conversation(%s, 'spam')", (conv,))
    with pytest.raises(psycopg.Error, match="already closed"), db.as_user(AGENT) as s:
        s.all("select public.close_conversation(%s)", (conv,))
    kinds = [e["type"] for e in events(db, conv)]
    for kind in (
        "conversation.resolved",
        "conversation.reopened",
        "conversation.snoozed",
        "conversation.unsnoozed",
        "conversation.closed",
    ):
        assert kind in kinds
    assert [line["payload"].get("action") for line in timeline(db, conv)][-5:] == [
        "resolved",
        "reopened",
        "snoozed",
        "unsnoozed",
        "closed",
    ]


def test_offline_agents_conversations_return_after_the_grace_period(db: Db) -> None:
    ana = new_agent(db, "Ana", TEAM)
    presence(db, AGENT, "online")
    conv = str(handoff(db, customer(db))["id"])
    presence(db, AGENT, "offline")
    db.value("select private.run_job('inbox_housekeeping')")
    assert assignee(db, conv) == member_id(db, AGENT)  # inside the grace period: kept
    db.sql(
        "update public.agent_presence set offline_since = now() - interval '11 minutes' where member_id = %s",
        (member_id(db, AGENT),),
    )
    presence(db, ana, "online")
    db.value("select private.run_job('inbox_housekeeping')")
    assert assignee(db, conv) == member_id(db, ana)  # returned, and drained to Ana at commit
    assert events(db, conv, "conversation.returned")[0]["payload"]["reason"] == "agent_offline"


def test_return_timer_sends_it_back_and_alerts_the_managers(db: Db) -> None:
    db.sql("update public.teams set return_after = interval '5 minutes' where id = %s", (TEAM,))
    presence(db, AGENT, "online")
    conv = str(handoff(db, customer(db))["id"])
    db.create_conversation(wa_id_of(db, conv), "Alô? Tem alguém aí?")  # an inbound message nobody answers
    db.sql(
        "update public.conversation_metrics set awaiting_reply_since = now() - interval '6 minutes'"
        " where conversation_id = %s",
        (conv,),
    )
    presence(db, AGENT, "busy")  # so it stays in the queue after returning
    db.value("select private.run_job('inbox_housekeeping')")
    assert assignee(db, conv) is None and conversation(db, conv)["status"] == "pending"
    alert = db.sql("select type, payload from public.alerts where type = 'inbox.return_timer'")[0]
    assert alert["payload"]["conversation_id"] == conv
    with db.as_user(OWNER) as s:  # managers see it
        assert s.value("select count(*) from public.alerts where type = 'inbox.return_timer'") == 1


def test_greeting_on_takeover_with_placeholders_inside_the_window_only(db: Db) -> None:
    db.sql(
        "insert into public.agent_greetings (tenant_id, member_id, message_template) values (%s, %s, %s)",
        (TENANT, member_id(db, AGENT), "Olá {{contact_name}}, sou {{agent_name}} do {{agent_department}}."),
    )
    db.sql("update public.contacts set name = 'Carla' where wa_id = '5511944443333'")
    presence(db, AGENT, "online")
    conv, _ = db.create_conversation("5511944443333", "Oi")
    db.sql("update public.contacts set name = 'Carla' where wa_id = '5511944443333'")
    handoff(db, conv)
    sent = db.sql(
        "select content, sender_type, sender_member_id from public.messages where conversation_id = %s"
        " and direction = 'outbound'",
        (conv,),
    )
    assert sent == [
        {
            "content": "Olá Carla, sou Bruno Lima do Atendimento.",
            "sender_type": "system",
            "sender_member_id": uuid.UUID(member_id(db, AGENT)),
        }
    ]
    # outside the 24 h window no greeting (and the assignment still happens)
    late = customer(db)
    db.sql(
        "update public.conversations set window_expires_at = now() - interval '1 minute' where id = %s",
        (late,),
    )
    db.sql("update public.members set max_concurrent_conversations = 9 where user_id = %s", (AGENT,))
    handoff(db, late)
    assert assignee(db, late) == member_id(db, AGENT)
    assert (
        db.value(
            "select count(*) from public.messages where conversation_id = %s and direction = 'outbound'",
            (late,),
        )
        == 0
    )


def test_quick_replies_notes_tags_and_attributes(db: Db) -> None:
    presence(db, AGENT, "online")
    conv = str(handoff(db, customer(db))["id"])
    db.sql(
        "insert into public.quick_replies (tenant_id, shortcut, title, content) values"
        " (%s, '/pix', 'PIX', 'Nossa chave PIX é o CNPJ, {{agent_name}}.')",
        (TENANT,),
    )
    with db.as_user(AGENT) as s:
        sent = s.one("select * from public.send_quick_reply(%s, '/pix')", (conv,))
        note = s.one("select * from public.add_note(%s, 'Cliente pediu 2ª via do boleto')", (conv,))
    assert sent["content"] == "Nossa chave PIX é o CNPJ, Bruno Lima." and sent["status"] == "queued"
    assert (
        db.value(
            "select usage_count from public.quick_replies where shortcut = '/pix' and tenant_id = %s",
            (TENANT,),
        )
        == 1
    )
    # a note: never queued for WhatsApp, never in the AI memory
    assert (note["direction"], note["status"], note["type"]) == ("internal", "processed", "note")
    memory = json.dumps(
        db.value("select recent_messages from public.session_context where conversation_id = %s", (conv,))
    )
    assert "boleto" not in memory and "CNPJ" in memory
    with db.connect() as conn:  # the sender's claim never sees it
        conn.execute("select public.whatsapp_claim_outbound('w1', 50)")
    assert db.value("select status from public.messages where id = %s", (note["id"],)) == "processed"

    contact = str(conversation(db, conv)["contact_id"])
    vip = db.value("insert into public.tags (tenant_id, name) values (%s, 'vip') returning id", (TENANT,))
    with db.as_user(AGENT) as s:
        s.all(
            "insert into public.contact_tags (tenant_id, contact_id, tag_id) values (%s, %s, %s)",
            (TENANT, contact, vip),
        )
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(AGENT) as s:
        s.all("update public.contacts set tags = '{inventada}' where id = %s", (contact,))
    assert db.value("select tags from public.contacts where id = %s", (contact,)) == ["vip"]
    db.sql("update public.tags set name = 'cliente-vip' where id = %s", (vip,))
    assert db.value("select tags from public.contacts where id = %s", (contact,)) == ["cliente-vip"]

    db.sql(
        "insert into public.contact_attribute_definitions (tenant_id, key, label, type, options)"
        " values (%s, 'plano', 'Plano', 'list', '{basico,pro}')",
        (TENANT,),
    )
    with db.as_user(AGENT) as s:
        s.all('update public.contacts set attributes = \'{"plano": "pro"}\' where id = %s', (contact,))
    with (
        pytest.raises(psycopg.Error, match=r'attribute "plano" \(Plano\) must be one of basico, pro'),
        db.as_user(AGENT) as s,
    ):
        s.all('update public.contacts set attributes = \'{"plano": "ouro"}\' where id = %s', (contact,))


def test_metrics_are_kept_as_facts(db: Db) -> None:
    presence(db, AGENT, "busy")
    conv = str(handoff(db, customer(db))["id"])
    db.sql("update public.conversations set queued_at = now() - interval '90 seconds' where id = %s", (conv,))
    presence(db, AGENT, "online")
    db.create_conversation(wa_id_of(db, conv), "Ainda aí?")
    db.sql(
        "update public.conversation_metrics set awaiting_reply_since = now() - interval '30 seconds',"
        " needs_human_at = now() - interval '100 seconds' where conversation_id = %s",
        (conv,),
    )
    with db.as_user(AGENT) as s:
        s.all('select public.send_message(%s, \'{"type": "text", "text": {"body": "Sim!"}}\')', (conv,))
        s.all("select public.resolve_conversation(%s, false)", (conv,))
    m = db.sql("select * from public.conversation_metrics where conversation_id = %s", (conv,))[0]
    assert 85 <= m["queue_wait_seconds"] <= 120
    assert 95 <= m["first_response_seconds"] <= 130
    assert m["response_count"] == 1 and 25 <= m["avg_response_seconds"] <= 60
    assert m["resolution_seconds"] is not None and m["assignments"] == 1 and m["queue_entries"] == 1
    assert m["awaiting_reply_since"] is None
    documented = db.value(
        "select count(*) from pg_description d join pg_attribute a on a.attrelid = d.objoid"
        " and a.attnum = d.objsubid where d.objoid = 'public.conversation_metrics'::regclass"
    )
    assert documented >= 14
