"""Automation rules: validated when saved, evaluated from the outbox per tenant, suggestions
approved or rejected in the dispatch queue, every match in the execution log, loop guard,
caps and quiet hours, dry run."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from flows_db.flow_support import create_flow, graph
from support import Db
from whatsapp_db.webhooks import AGENT, OWNER, TENANT, body, change, ingest, text

TEAM = "00000000-0000-4000-d000-000000000001"
AGENT_MEMBER = "00000000-0000-4000-c000-000000000002"
APOLOGY = {"type": "send_template", "template": "desculpe_demora", "language": "pt_BR",
           "variables": ["{{contact.display_name|cliente}}"]}


def save_rule(db: Db, user: str = OWNER, **fields: Any) -> dict[str, Any]:
    row = {"tenant_id": TENANT, "name": "regra", "event_type": "message.received", "conditions": {},
           "actions": [{"type": "add_tag", "tag": "lead"}], "mode": "automatic", **fields}
    if row.get("trigger_type", "event") != "event":
        row["event_type"] = None
    cols = ", ".join(row)
    values = [Jsonb(v) if isinstance(v, dict | list) else v for v in row.values()]
    with db.as_user(user) as s:
        return s.one(f"insert into public.automation_rules ({cols}) values"
                     f" ({', '.join(['%s'] * len(row))}) returning *", values)


def refused(db: Db, **fields: Any) -> str:
    with pytest.raises(psycopg.Error) as caught:
        save_rule(db, **fields)
    return str(caught.value)


def run(db: Db) -> int:
    total = 0
    while True:
        with db.as_service() as s:
            claimed = int(s.value("select public.automation_run(500)"))
        total += claimed
        if not claimed:
            return total


def job(db: Db, minutes_ahead: int = 0) -> int:
    return int(db.value("select private.job_automation_rules(now() + make_interval(mins => %s))",
                        (minutes_ahead,)))


def customer(db: Db, words: str, wa_id: str = "5511988887777") -> tuple[str, str]:
    """A customer message through ingest: (conversation id, contact id)."""
    message_id = ingest(db, body(change(messages=[text(words, wa_id)])))["inbound_message_ids"][0]
    row = db.sql("select conversation_id, contact_id from public.messages where id = %s", (message_id,))[0]
    return str(row["conversation_id"]), str(row["contact_id"])


def executions(db: Db, rule_id: Any) -> list[dict[str, Any]]:
    return db.sql("select * from public.automation_executions where rule_id = %s order by created_at",
                  (rule_id,))


# -- saving ------------------------------------------------------------------------------------


def test_rules_with_unknown_fields_bad_operators_or_unusable_actions_are_refused_when_saved(db: Db) -> None:
    assert 'unknown field "contact.nmae" in conditions.all[1]' in refused(db, conditions={"all": [
        {"field": "contact.name", "op": "eq", "value": "Ana"},
        {"field": "contact.nmae", "op": "eq", "value": "Ana"}]})
    assert 'operator "gt" does not apply to contact.tags' in refused(
        db, conditions={"field": "contact.tags", "op": "gt", "value": 3})
    assert "eq of a number field needs a number value" in refused(
        db, conditions={"field": "contact.ltv", "op": "eq", "value": "muito"})
    assert 'template "promo_secreta" (pt_BR) is not an approved template' in refused(
        db, actions=[{"type": "send_template", "template": "promo_secreta"}])
    assert "has 1 body variables, the action gives 0" in refused(
        db, actions=[{"type": "send_template", "template": "desculpe_demora"}])
    assert "flow_id must name a published flow of this tenant" in refused(
        db, actions=[{"type": "start_flow", "flow_id": "x"}])
    assert ".title must be a text of 1 to 300 characters" in refused(db, actions=[{"type": "create_ticket"}])
    assert ".priority must be low, medium, high or critical" in refused(
        db, actions=[{"type": "create_ticket", "title": "Chamado", "priority": "altissima"}])
    assert ".score must be a whole number from 0 to 100" in refused(
        db, actions=[{"type": "create_lead", "score": 150}])
    other = db.create_tenant(db.create_user(), "Outra")
    other_team = db.value("insert into public.teams (tenant_id, name) values (%s, 'Deles') returning id",
                          (other,))
    assert "team_id must name an active team of this tenant" in refused(
        db, actions=[{"type": "assign_team", "team_id": str(other_team)}])
    assert 'unknown action type "send_pigeon"' in refused(db, actions=[{"type": "send_pigeon"}])
    # the catalogue decides which events exist
    assert "automation_rules_event_type_fkey" in refused(db, event_type="message.teleported")
    # agents read rules but do not write them
    with pytest.raises(psycopg.Error, match="automation rules are managed by tenant managers"):
        save_rule(db, AGENT)
    good = save_rule(db, conditions={"any": [
        {"field": "contact.attributes.plano", "op": "eq", "value": "ouro"},
        {"field": "event.payload.content", "op": "contains", "value": "preço"}]})
    assert good["version"] == 1
    with db.as_user(OWNER) as s:
        assert s.value("update public.automation_rules set actions = %s where id = %s returning version",
                       (Jsonb([{"type": "add_tag", "tag": "vip"}]), good["id"])) == 2
        assert s.value("update public.automation_rules set name = 'outro' where id = %s returning version",
                       (good["id"],)) == 2


# -- event rules --------------------------------------------------------------------------------


def test_an_automatic_event_rule_acts_and_logs_each_condition_and_action(db: Db) -> None:
    rule = save_rule(db, conditions={"all": [
        {"field": "event.payload.content", "op": "contains", "value": "PREÇO"},
        {"field": "conversation.window_open", "op": "eq", "value": True}]},
        actions=[{"type": "add_tag", "tag": "interessado"}, {"type": "set_priority", "priority": "high"},
                 {"type": "set_attribute", "key": "origem", "value": "whatsapp"}])
    conv, contact = customer(db, "Qual o preço do frete?")
    customer(db, "obrigada")
    assert run(db) == 2
    [logged] = executions(db, rule["id"])
    assert (logged["status"], logged["rule_version"]) == ("succeeded", 1)
    assert logged["event_type"] == "message.received"
    assert [c["result"] for c in logged["condition_results"]] == [True, True]
    assert logged["condition_results"][0]["actual"] == "Qual o preço do frete?"
    assert [(a["type"], a["outcome"]) for a in logged["action_results"]] == [
        ("add_tag", "ok"), ("set_priority", "ok"), ("set_attribute", "ok")]
    state = db.sql("select k.tags, k.attributes, c.priority from public.contacts k"
                   " join public.conversations c"
                   " on c.contact_id = k.id where k.id = %s", (contact,))[0]
    assert (state["tags"], state["attributes"]["origem"]) == (["interessado"], "whatsapp")
    assert state["priority"] == "high"
    # the effects carry their cause and depth
    caused = db.sql("select depth, cause_event_id from public.events where subject_id = %s"
                    " and type = 'contact.updated'", (contact,))
    assert caused and all(e["depth"] == 1 and e["cause_event_id"] == logged["event_id"] for e in caused)
    assert str(logged["conversation_id"]) == conv
    # evaluating the same event again acts once
    db.sql("insert into public.automation_queue (tenant_id, event_id, event_created_at)"
           " values (%s, %s, %s)", (TENANT, logged["event_id"], logged["event_created_at"]))
    run(db)
    assert len(executions(db, rule["id"])) == 1


def test_priority_and_stop_after_decide_which_rules_run(db: Db) -> None:
    low = save_rule(db, name="depois", priority=50, actions=[{"type": "add_tag", "tag": "b"}])
    first = save_rule(db, name="primeiro", priority=10, stop_after=True,
                      actions=[{"type": "add_tag", "tag": "a"}])
    customer(db, "oi")
    run(db)
    assert len(executions(db, first["id"])) == 1 and executions(db, low["id"]) == []


def test_a_rule_never_reacts_to_its_own_effects_and_loops_stop_at_depth_3(db: Db) -> None:
    lonely = save_rule(db, name="sozinha", event_type="contact.updated",
                       actions=[{"type": "set_attribute", "key": "n", "value": "x"}])
    _, contact = customer(db, "oi")
    db.sql("update public.contacts set name = 'Joana' where id = %s", (contact,))
    run(db)
    assert len(executions(db, lonely["id"])) == 1  # its own contact.updated was not evaluated by it
    with db.as_user(OWNER) as s:
        s.all("update public.automation_rules set is_active = false where id = %s", (lonely["id"],))
    ping = save_rule(db, name="ping", event_type="contact.updated",
                     conditions={"field": "contact.tags", "op": "not_contains", "value": "ping"},
                     actions=[{"type": "remove_tag", "tag": "pong"}, {"type": "add_tag", "tag": "ping"}])
    pong = save_rule(db, name="pong", event_type="contact.updated",
                     conditions={"field": "contact.tags", "op": "not_contains", "value": "pong"},
                     actions=[{"type": "remove_tag", "tag": "ping"}, {"type": "add_tag", "tag": "pong"}])
    db.sql("update public.contacts set name = 'Joana Souza' where id = %s", (contact,))
    run(db)
    assert db.value("select count(*) from public.automation_queue") == 0  # it ends
    logged = executions(db, ping["id"]) + executions(db, pong["id"])
    stopped = [e for e in logged if e["status"] == "stopped"]
    assert stopped and all(e["event_depth"] == 4 and "loop guard" in e["error"] for e in stopped)
    assert max(e["event_depth"] for e in logged if e["status"] == "succeeded") == 3


def test_caps_quiet_hours_and_the_24h_window_are_logged_not_dropped(db: Db) -> None:
    once = save_rule(db, name="uma vez", max_per_contact=1, actions=[{"type": "add_tag", "tag": "visto"}])
    hello = save_rule(db, name="texto", priority=200,
                      actions=[{"type": "send_text", "text": "Oi {{contact.display_name|cliente}}!"}])
    with db.as_user(OWNER) as s:
        s.all("insert into public.automation_settings (tenant_id, max_messages_per_contact_per_day)"
              " values (%s, 1)", (TENANT,))
    customer(db, "primeira")
    customer(db, "segunda")
    run(db)
    assert [e["status"] for e in executions(db, once["id"])] == ["succeeded", "capped"]
    sent = executions(db, hello["id"])
    assert [e["status"] for e in sent] == ["succeeded", "failed"]
    assert sent[1]["action_results"][0]["error"] == (
        "daily cap reached: 1 automated messages to this contact today")
    message = db.sql("select content, sender_type from public.messages where id = %s",
                     (sent[0]["action_results"][0]["message_id"],))[0]
    assert (message["content"], message["sender_type"]) == ("Oi cliente!", "system")
    # quiet hours all day long: nothing is sent, and the log says why
    db.sql("update public.automation_settings set max_messages_per_contact_per_day = 10,"
           " quiet_hours_start = '00:00', quiet_hours_end = '23:59:59.999'")
    customer(db, "terceira")
    run(db)
    assert executions(db, hello["id"])[2]["action_results"][0]["error"].startswith("quiet hours 00:00–23:59")
    # outside the 24 h window a text cannot go: the error of the outbound queue is logged
    db.sql("update public.automation_settings set quiet_hours_start = null, quiet_hours_end = null")
    db.sql("update public.conversations set window_expires_at = now() - interval '1 minute'")
    db.sql("select private.emit(%s, 'message.received', 'conversations', id, '{}') from public.conversations"
           " where tenant_id = %s", (TENANT, TENANT))
    run(db)
    assert "24-hour customer service window" in executions(db, hello["id"])[3]["action_results"][0]["error"]


def test_rules_only_ever_see_their_own_tenants_events_and_rows(db: Db) -> None:
    ours = save_rule(db, name="nossa", conditions={"field": "contact.id", "op": "exists"})
    _, contact = customer(db, "oi")
    stranger = db.create_user()
    other = db.create_tenant(stranger, "Outra")
    theirs = save_rule(db, stranger, tenant_id=other, name="deles",
                       conditions={"field": "event.type", "op": "eq", "value": "message.received"})
    # an event of the other tenant naming our contact and conversation in its payload
    db.sql("select private.emit(%s, 'message.received', null, null,"
           " jsonb_build_object('contact_id', %s::text))",
           (other, contact))
    run(db)
    assert [str(e["tenant_id"]) for e in executions(db, ours["id"])] == [TENANT]
    [logged] = executions(db, theirs["id"])
    assert logged["contact_id"] is None and logged["conversation_id"] is None
    assert logged["action_results"][0]["error"] == "this subject has no contact to tag"
    assert db.value("select tags from public.contacts where id = %s", (contact,)) == ["lead"]
    with db.as_user(stranger) as s:
        assert s.all("select id from public.automation_executions where tenant_id = %s", (TENANT,)) == []
        assert s.all("select id from public.automation_rules where tenant_id = %s", (TENANT,)) == []


# -- time rules, the approval queue ----------------------------------------------------------------


def waiting_customer(db: Db) -> tuple[str, str]:
    conv, contact = customer(db, "Preciso de ajuda com meu pedido", "5511977770000")
    db.sql("update public.contacts set name = 'Joana' where id = %s", (contact,))
    with db.as_service() as s:
        s.all("select public.handoff_conversation(%s, 'pediu humano')", (conv,))
    return conv, contact


def test_a_suggestion_waits_is_approved_by_a_manager_sent_and_logged_with_its_wamid(db: Db) -> None:
    rule = save_rule(db, name="desculpas", trigger_type="no_agent_reply", wait_minutes=10, mode="suggest",
                     actions=[APOLOGY])
    conv, contact = waiting_customer(db)
    assert job(db, 5) == 0  # only five minutes
    assert job(db, 11) == 1
    assert job(db, 12) == 0  # the same wait suggests once
    with db.as_user(AGENT) as s:
        [pending] = s.all("select * from public.dispatch_queue")
        assert pending["status"] == "pending"
        assert pending["preview"] == (
            "Olá Joana, desculpe a demora! Uma pessoa da nossa equipe já vai responder você.")
        with pytest.raises(psycopg.Error, match="requires the manager role or being one of the tenant's"):
            s.all("select * from public.approve_dispatch(%s)", ([pending["id"]],))
    with db.as_user(OWNER) as s:
        [approved] = s.all("select * from public.approve_dispatch(%s)", ([pending["id"]],))
        assert (approved["status"], approved["outcome"]) == ("approved", "succeeded")
        assert str(approved["decided_by"]) == "00000000-0000-4000-c000-000000000001"
    with db.as_user(OWNER) as s, pytest.raises(psycopg.Error, match="already approved"):
        s.all("select * from public.approve_dispatch(%s)", ([pending["id"]],))
    [logged] = executions(db, rule["id"])
    message_id = logged["action_results"][0]["message_id"]
    with db.as_service() as s:
        s.all("select public.whatsapp_mark_sent(%s, 'wamid.DESCULPA')", (message_id,))
    sent = db.sql("select m.payload, m.wamid, m.conversation_id from public.messages m where m.id = %s",
                  (message_id,))[0]
    assert sent["wamid"] == "wamid.DESCULPA" and str(sent["conversation_id"]) == conv
    assert sent["payload"]["template"]["components"][0]["parameters"] == [{"type": "text", "text": "Joana"}]
    with db.as_user(AGENT) as s:  # the log is the tenant's to read
        row = s.one("select e.status, e.trigger_type, m.wamid from public.automation_executions e"
                    " join public.messages m on m.id = (e.action_results -> 0 ->> 'message_id')::uuid")
    assert row == {"status": "succeeded", "trigger_type": "no_agent_reply", "wamid": "wamid.DESCULPA"}
    assert job(db, 30) == 0  # the customer got an answer: no longer waiting
    assert str(logged["contact_id"]) == contact
    # approvers' screens hear the queue through Realtime
    assert db.value("select count(*) from pg_publication_tables where pubname = 'supabase_realtime'"
                    " and tablename = 'dispatch_queue'") == 1


def test_suggestions_are_rejected_with_a_reason_in_bulk_by_approver_agents_or_expire(db: Db) -> None:
    save_rule(db, name="desculpas", trigger_type="no_agent_reply", wait_minutes=10, mode="suggest",
              actions=[APOLOGY], approval_ttl_minutes=60)
    waiting_customer(db)
    customer(db, "alguém?", "5511966660000")
    with db.as_service() as s:
        s.all("select public.handoff_conversation(id) from public.conversations where status <> 'resolved'")
    assert job(db, 11) == 2
    ids = [r["id"] for r in db.sql("select id from public.dispatch_queue order by created_at")]
    with db.as_user(OWNER) as s:
        s.all("insert into public.automation_settings (tenant_id, approver_member_ids) values (%s, %s)",
              (TENANT, [AGENT_MEMBER]))
    with db.as_user(AGENT) as s, pytest.raises(psycopg.Error, match="say why"):
        s.all("select * from public.reject_dispatch(%s, '')", (ids,))
    with db.as_user(AGENT) as s, pytest.raises(psycopg.Error, match="suggestion not found"):  # all or none
        s.all("select * from public.reject_dispatch(%s, 'não')", ([*ids, uuid.uuid4()],))
    with db.as_user(AGENT) as s:
        rejected = s.all("select * from public.reject_dispatch(%s, 'cliente já foi atendido por telefone')",
                         (ids,))
    assert [(r["status"], str(r["decided_by"])) for r in rejected] == [("rejected", AGENT_MEMBER)] * 2
    assert {e["status"] for e in db.sql("select status from public.automation_executions")} == {"rejected"}
    assert db.value("select count(*) from public.messages"
                    " where sender_type = 'system' and direction = 'outbound'") == 0
    assert job(db, 20) == 0  # the same wait is not suggested again
    # an agent answers, the customer writes again: a new wait, which expires unattended
    conv = db.value("select conversation_id from public.messages where content = 'alguém?'")
    with db.as_user(AGENT) as s:
        s.all("select public.send_message(%s, %s)", (conv, Jsonb({"type": "text", "text": {"body": "Oi!"}})))
    customer(db, "e agora?", "5511966660000")
    assert job(db, 11) == 1
    assert job(db, 11 + 61) == 1
    assert db.value("select status from public.dispatch_queue where status not in ('rejected')") == "expired"


def test_date_attribute_rules_reach_contacts_before_a_date_once_a_day(db: Db) -> None:
    rule = save_rule(db, name="certificado", trigger_type="date_attribute",
                     date_attribute="certificado_expira", date_offset_days=-30, mode="automatic",
                     actions=[{"type": "add_tag", "tag": "renovar"}])
    _, contact = customer(db, "oi")
    db.sql("update public.contacts set attributes = jsonb_build_object('certificado_expira',"
           " to_char((now() at time zone 'America/Sao_Paulo')::date + 30, 'YYYY-MM-DD')) where id = %s",
           (contact,))
    assert job(db) == 1
    assert job(db) == 0
    assert executions(db, rule["id"])[0]["status"] == "succeeded"
    assert db.value("select tags from public.contacts where id = %s", (contact,)) == ["renovar"]


# -- dry run, webhooks ------------------------------------------------------------------------------


def test_a_dry_run_shows_what_a_rule_would_do_without_acting(db: Db) -> None:
    customer(db, "quero o preço")
    customer(db, "obrigado")
    rule = save_rule(db, is_active=False, conditions={"field": "event.payload.content", "op": "contains",
                                                      "value": "preço"},
                     actions=[{"type": "send_text",
                               "text": "Olá {{contact.profile_name|}}! Segue a tabela."}])
    with db.as_user(OWNER) as s:
        rows = s.all("select * from public.dry_run_automation_rule(%s)", (rule["id"],))
    assert [r["matched"] for r in rows] == [False, True]
    assert rows[1]["conditions"][0]["actual"] == "quero o preço"
    assert rows[1]["actions"][0]["preview"] == "Olá ! Segue a tabela."
    assert db.value("select count(*) from public.automation_executions") == 0
    assert db.value("select count(*) from public.messages where direction = 'outbound'") == 0
    stranger = db.create_user()
    with db.as_user(stranger) as s, pytest.raises(psycopg.Error, match="automation rule not found"):
        s.all("select * from public.dry_run_automation_rule(%s)", (rule["id"],))


def test_a_webhook_action_goes_through_the_signed_delivery_queue(db: Db) -> None:
    with db.as_user(OWNER) as s:
        endpoint = s.value("select public.create_webhook_endpoint(%s, 'CRM', 'https://crm.example.com/hook',"
                           " '{conversation.resolved}')", (TENANT,))["id"]
    rule = save_rule(db, actions=[{"type": "call_webhook", "endpoint_id": endpoint,
                                   "data": {"lista": "leads"}}])
    customer(db, "oi")
    run(db)
    [logged] = executions(db, rule["id"])
    delivery = logged["action_results"][0]["delivery_id"]
    row = db.sql("select d.endpoint_id, d.status, e.type, e.payload, e.depth from public.webhook_deliveries d"
                 " join public.events e on e.id = d.event_id where d.id = %s", (delivery,))[0]
    assert (str(row["endpoint_id"]), row["status"]) == (endpoint, "pending")
    assert row["type"] == "automation.webhook"
    assert row["payload"]["data"] == {"lista": "leads"} and row["depth"] == 1
    with db.as_user(OWNER) as s:
        s.all("update public.webhook_endpoints set enabled = false where id = %s", (endpoint,))
    customer(db, "oi de novo")
    run(db)
    assert executions(db, rule["id"])[1]["action_results"][0]["error"] == (
        "the webhook endpoint is disabled or was deleted")


# -- flows, tickets and leads ---------------------------------------------------------------------


def flow(db: Db, publish: bool = True) -> str:
    body = graph({"id": "start", "type": "start"}, {"id": "oi", "type": "message", "text": "Olá!"},
                 {"id": "fim", "type": "end"}, edges=[("start", "oi"), ("oi", "fim")])
    return str(create_flow(db, f"Boas-vindas {uuid.uuid4()}", body, publish=publish)[0])


def test_start_flow_needs_a_published_flow_of_the_tenant_and_starts_it_when_approved(db: Db) -> None:
    draft = flow(db, publish=False)
    assert "flow_id must name a published flow of this tenant" in refused(
        db, actions=[{"type": "start_flow", "flow_id": draft}])
    other = db.create_tenant(db.create_user(), "Outra")
    theirs = db.value("insert into public.flows (tenant_id, name) values (%s, 'Deles') returning id",
                      (other,))
    assert "flow_id must name a published flow of this tenant" in refused(
        db, actions=[{"type": "start_flow", "flow_id": str(theirs)}])
    welcome = flow(db)
    automatic = save_rule(db, name="boas-vindas", actions=[{"type": "start_flow", "flow_id": welcome}],
                          conditions={"field": "event.payload.content", "op": "contains", "value": "menu"})
    conv, _ = customer(db, "quero o menu")
    run(db)
    [logged] = executions(db, automatic["id"])
    assert logged["status"] == "succeeded"
    started = db.sql("select * from public.flow_executions where id = %s",
                     (logged["action_results"][0]["flow_execution_id"],))[0]
    assert (str(started["flow_id"]), str(started["conversation_id"])) == (welcome, conv)
    assert (started["started_by"], started["status"]) == ("automation", "active")
    # suggest mode: nothing starts until a person approves
    suggested = save_rule(db, name="sugerida", mode="suggest",
                          actions=[{"type": "start_flow", "flow_id": welcome}],
                          conditions={"field": "event.payload.content", "op": "contains", "value": "ajuda"})
    customer(db, "ajuda", "5511955550000")
    run(db)
    count = "select count(*) from public.flow_executions"
    assert db.value(count) == 1
    [pending] = db.sql("select id from public.dispatch_queue where rule_id = %s", (suggested["id"],))
    with db.as_user(OWNER) as s:
        [approved] = s.all("select * from public.approve_dispatch(%s)", ([pending["id"]],))
    assert approved["outcome"] == "succeeded" and db.value(count) == 2
    approved_exec = executions(db, suggested["id"])[0]["action_results"][0]["flow_execution_id"]
    assert db.value("select started_by from public.flow_executions where id = %s",
                    (approved_exec,)) == "automation"


def test_rules_open_tickets_and_leads_with_their_ids_in_the_log(db: Db) -> None:
    rule = save_rule(db, mode="suggest",
                     conditions={"field": "event.payload.content", "op": "contains", "value": "pix"},
                     actions=[{"type": "create_ticket", "title": "PIX não caiu", "priority": "high",
                               "category": "PIX"},
                              {"type": "create_lead", "interest": "plano anual", "score": 40}])
    conv, contact = customer(db, "Meu pix não caiu")
    run(db)
    assert db.value("select count(*) from public.tickets") == 0
    # an approver agent who does not work this conversation approves: the automation acts
    with db.as_user(OWNER) as s:
        s.all("insert into public.automation_settings (tenant_id, approver_member_ids) values (%s, %s)",
              (TENANT, [AGENT_MEMBER]))
    with db.as_user(AGENT) as s:
        [approved] = s.all(
            "select * from public.approve_dispatch(array(select id from public.dispatch_queue))")
    assert approved["outcome"] == "succeeded"
    [logged] = executions(db, rule["id"])
    ticket_result, lead_result = logged["action_results"]
    ticket = db.sql("select * from public.tickets where id = %s", (ticket_result["ticket_id"],))[0]
    assert (ticket["title"], ticket["priority"], ticket["category"], ticket["source"]) == (
        "PIX não caiu", "high", "PIX", "automation")
    assert str(ticket["conversation_id"]) == conv and ticket_result["protocol"] == ticket["protocol"]
    lead = db.sql("select * from public.leads where id = %s", (lead_result["lead_id"],))[0]
    assert (str(lead["contact_id"]), lead["source"], lead["source_ref"]) == (
        contact, "automation", str(rule["id"]))
    assert (lead["interest"], lead["score"]) == ("plano anual", 40)


def test_template_variables_are_filled_by_the_one_template_renderer(db: Db) -> None:
    conv, contact = customer(db, "oi")
    db.sql("update public.contacts set name = 'Joana Silva',"
           " attributes = attributes || '{\"plano\": \"ouro\"}'"
           " where id = %s", (contact,))
    status = db.value("select status from public.conversations where id = %s", (conv,))

    def resolved(variable: Any) -> dict[str, Any]:
        rule = save_rule(db, name=str(uuid.uuid4()), is_active=False,
                         actions=[{**APOLOGY, "variables": [variable]}])
        with db.as_user(OWNER) as s:
            [row] = s.all("select * from public.dry_run_automation_rule(%s, 1)", (rule["id"],))
        action: dict[str, Any] = row["actions"][0]
        return action

    def greeting(variable: Any) -> str:
        return str(resolved(variable)["preview"]).split(",")[0]

    assert greeting("{{contact.first_name}}") == "Olá Joana"
    assert greeting("{{contact.display_name|cliente}}") == "Olá Joana Silva"
    assert greeting("{{contact.attributes.plano|básico}}") == "Olá ouro"
    assert greeting({"attribute": "cidade", "default": "cliente"}) == "Olá cliente"
    assert greeting("{{contact.name}} ({{conversation.status}})") == f"Olá Joana Silva ({status})"
    assert resolved("{{contact.attributes.cidade}}")["problem"] == (
        "no value for this subject and no default: body.1")
    assert resolved("{{contact.first_name}}")["message"]["template"]["components"] == [
        {"type": "body", "parameters": [{"type": "text", "text": "Joana"}]}]
    assert ".variables must be an array of texts" in refused(
        db, actions=[{**APOLOGY, "variables": [{"x": 1}]}])
