"""The outbox: every change others react to leaves one event in its own transaction,
admins read their tenant's feed, nobody writes events directly."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from support import Db
from whatsapp_db.webhooks import AGENT, OWNER, TENANT, body, change, ingest, status, text


def events(db: Db, subject_id: Any = None) -> list[dict[str, Any]]:
    return db.sql(
        "select type, subject_table, subject_id, payload, actor_id, actor_role, depth from public.events"
        " where tenant_id = %s and (%s::uuid is null or subject_id = %s::uuid) order by created_at",
        (TENANT, subject_id, subject_id))


def types(db: Db, subject_id: Any = None) -> list[str]:
    return [e["type"] for e in events(db, subject_id)]


def test_an_inbound_message_emits_contact_conversation_and_message_events(db: Db) -> None:
    result = ingest(db, body(change(messages=[text("Oi, quero comprar", "5511977776666")])))
    message_id = result["inbound_message_ids"][0]
    assert types(db) == ["contact.created", "conversation.created", "message.received"]
    received = events(db, message_id)[0]
    assert received["payload"]["content"] == "Oi, quero comprar"
    assert (received["actor_id"], received["actor_role"], received["depth"]) == (None, "service_role", 0)
    # the same webhook again: nothing new happened, so nothing is emitted
    ingest(db, body(change(messages=[text("Oi de novo", "5511977776666")])))
    assert types(db).count("contact.created") == 1
    assert types(db).count("message.received") == 2


def test_outbound_statuses_emit_sent_and_status_changes_with_metas_error(db: Db) -> None:
    result = ingest(db, body(change(messages=[text("oi")])))
    conv = db.value("select conversation_id from public.messages where id = %s",
                    (result["inbound_message_ids"][0],))
    with db.as_user(AGENT) as s:
        sent = s.one("select * from public.send_message(%s, %s)",
                     (conv, Jsonb({"type": "text", "text": {"body": "Olá!"}})))
    with db.as_service() as s:
        s.all("select public.whatsapp_mark_sent(%s, 'wamid.OUT1')", (sent["id"],))
    error = {"code": 131049, "title": "Meta chose not to deliver.",
             "error_data": {"details": "healthy ecosystem"}}
    ingest(db, body(change(statuses=[status("wamid.OUT1", "failed", at=2, errors=[error])])))
    with db.as_user(AGENT) as s:
        second = s.one("select * from public.send_message(%s, %s)",
                       (conv, Jsonb({"type": "text", "text": {"body": "?"}})))
    with db.as_service() as s:
        s.all("select public.whatsapp_mark_sent(%s, 'wamid.OUT2')", (second["id"],))
    ingest(db, body(change(statuses=[status("wamid.OUT2", "delivered", at=1),
                                     status("wamid.OUT2", "read", at=2)])))
    emitted = events(db, sent["id"])
    assert [(e["type"], e["payload"]["status"]) for e in emitted] == [
        ("message.sent", "sent"), ("message.status_changed", "failed")]
    assert emitted[1]["payload"]["error"] == {"code": 131049, "title": "Meta chose not to deliver.",
                                              "details": "healthy ecosystem"}
    assert [e["payload"]["status"] for e in events(db, second["id"])] == ["sent", "delivered", "read"]
    # the agent's own change of the conversation (takeover) names the agent as actor
    assigned = [e for e in events(db, conv) if e["type"] == "conversation.assigned"]
    assert len(assigned) == 1 and str(assigned[0]["actor_id"]) == AGENT


def test_handoff_resolution_and_contact_consent_emit_their_events(db: Db) -> None:
    result = ingest(db, body(change(messages=[text("quero falar com humano", "5511966665555")])))
    conv, contact = db.sql("select conversation_id, contact_id from public.messages where id = %s",
                           (result["inbound_message_ids"][0],))[0].values()
    with db.as_service() as s:
        s.all("select public.handoff_conversation(%s, 'pediu humano')", (conv,))
    with db.as_user(AGENT) as s:
        s.all("update public.conversations set status = 'resolved' where id = %s", (conv,))
    with db.as_user(OWNER) as s:  # the customer's request, recorded by a manager
        s.all("select public.record_contact_consent(%s, 'opt_out', 'Pediu por telefone')", (contact,))
    vip = db.value("insert into public.tags (tenant_id, name) values (%s, 'vip') returning id", (TENANT,))
    with db.as_user(AGENT) as s:  # tags are a relation; contacts.tags mirrors it
        s.all("update public.contacts set name = 'Joana' where id = %s", (contact,))
        s.all("insert into public.contact_tags (tenant_id, contact_id, tag_id) values (%s, %s, %s)",
              (TENANT, contact, vip))
    with db.as_user(OWNER) as s:
        s.all("select public.record_contact_consent(%s, 'opt_in', 'Pediu para voltar')", (contact,))
    assert types(db, conv) == ["conversation.created", "conversation.handed_off", "conversation.queued",
                               "conversation.resolved"]
    handed = events(db, conv)[1]["payload"]
    assert (handed["reason"], handed["previous_mode"]) == ("pediu humano", "bot")
    contact_events = events(db, contact)
    assert [e["type"] for e in contact_events] == [
        "contact.created", "contact.opted_out", "contact.updated", "contact.updated", "contact.opted_in"]
    assert [e["payload"]["changed"] for e in contact_events[2:4]] == [["name"], ["tags"]]


def test_alerts_and_budget_thresholds_are_events(db: Db) -> None:
    db.sql("update public.budgets set brl_limit = 1, notify_thresholds = '{50,80}' where tenant_id = %s"
           " and kind = 'plan'", (TENANT,))
    budget = db.value("select id from public.budgets where tenant_id = %s and kind = 'plan'", (TENANT,))
    db.sql("update public.budgets set used_brl = 0.9 where id = %s", (budget,))
    db.sql("select private.budget_fire_thresholds(%s, now())", (TENANT,))  # what ai_settle does
    emitted = events(db, budget)
    assert [(e["type"], e["payload"]["threshold"]) for e in emitted] == [
        ("budget.threshold_reached", 50), ("budget.threshold_reached", 80)]
    alerts = [e for e in events(db) if e["type"] == "alert.created"]
    assert [a["payload"]["payload"]["threshold"] for a in alerts] == [50, 80]


def test_admins_read_the_feed_agents_and_other_tenants_do_not(db: Db) -> None:
    ingest(db, body(change(messages=[text("oi")])))
    with db.as_user(OWNER) as s:
        assert s.value("select count(*) from public.events") == 3
        assert s.value("select count(*) from public.event_types where type = 'message.received'") == 1
    with db.as_user(AGENT) as s:
        assert s.value("select count(*) from public.events") == 0
        assert s.value("select count(*) from public.event_types") > 10  # the catalogue is for every member
    stranger = db.create_user()
    other = db.create_tenant(stranger, "Outra")
    assert other
    with db.as_user(stranger) as s:
        assert s.value("select count(*) from public.events where tenant_id = %s", (TENANT,)) == 0


@pytest.mark.parametrize("who", ["owner", "service"])
def test_nobody_writes_events_directly(db: Db, who: str) -> None:
    session = db.as_user(OWNER) if who == "owner" else db.as_service()
    with pytest.raises(psycopg.errors.InsufficientPrivilege), session as s:
        s.all("insert into public.events (tenant_id, type, actor_role) values (%s, 'message.received', 'x')",
              (TENANT,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(OWNER) as s:
        s.all("select private.emit(%s, 'message.received', null, null, '{}')", (TENANT,))


def test_an_automated_change_carries_its_cause_and_depth(db: Db) -> None:
    ingest(db, body(change(messages=[text("oi")])))
    cause = db.sql("select id, depth from public.events where type = 'message.received'")[0]
    with db.connect() as conn:
        conn.execute("select private.set_event_cause(%s, %s)", (cause["id"], cause["depth"]))
        conn.execute("insert into public.alerts (tenant_id, type, title) values (%s, 'test.rule', 'Regra')",
                     (TENANT,))
    alert = db.sql("select cause_event_id, depth from public.events where type = 'alert.created'")[0]
    assert (alert["cause_event_id"], alert["depth"]) == (cause["id"], 1)
    assert uuid.UUID(str(alert["cause_event_id"]))
