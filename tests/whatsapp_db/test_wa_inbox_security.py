"""The inbox against its own members: what an agent or viewer may not do with conversations,
consent, outbound payloads and greetings, tried the way a frontend would (PostgREST as
`authenticated` with JWT claims)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from webhooks import AGENT, OWNER, TENANT, body, change, ingest, text

from support import Db

TEAM = "00000000-0000-4000-d000-000000000001"  # seed: Atendimento, served by AGENT
AGENT_MEMBER = "00000000-0000-4000-c000-000000000002"
OWNER_MEMBER = "00000000-0000-4000-c000-000000000001"
MARIA = "5511988887777"


def conversation(db: Db, wa_id: str = MARIA) -> str:
    conv, _ = db.create_conversation(wa_id)
    return conv


def contact_of(db: Db, conv: str) -> str:
    return str(db.value("select contact_id from public.conversations where id = %s", (conv,)))


def member_id(db: Db, user: uuid.UUID | str) -> str:
    return str(db.value("select id from public.members where user_id = %s", (user,)))


def restricted_tenant(db: Db) -> None:
    db.sql("update public.tenants set restrict_agents_to_assigned = true where id = %s", (TENANT,))


def new_team(db: Db, name: str, *serving: uuid.UUID, active: bool = True) -> str:
    team = str(db.value("insert into public.teams (tenant_id, name, is_active) values (%s, %s, %s)"
                        " returning id", (TENANT, name, active)))
    for user in serving:
        db.sql("insert into public.team_members (tenant_id, team_id, member_id) values (%s, %s, %s)",
               (TENANT, team, member_id(db, user)))
    return team


def handoff(db: Db, user: uuid.UUID | str, conv: str, team: str | None) -> dict[str, Any]:
    with db.as_user(user) as s:
        row: dict[str, Any] = s.one("select * from public.handoff_conversation(%s, 'transferência', %s)",
                                    (conv, team))
    return row


def failure(call: Any, *args: Any) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        call(*args)
    return caught.value


# -- 1. handoff ------------------------------------------------------------------------


def test_a_restricted_agent_cannot_take_a_conversation_assigned_to_someone_else(db: Db) -> None:
    restricted_tenant(db)
    conv = conversation(db)
    db.sql("update public.conversations set assignee_id = %s, team_id = %s where id = %s",
           (AGENT_MEMBER, TEAM, conv))
    intruder = db.add_member(uuid.UUID(TENANT), "agent")
    own_team = new_team(db, "Vendas", intruder)
    # the attack: hand it to a team they serve, then it is "theirs" to work
    error = failure(handoff, db, intruder, conv, own_team)
    assert error.sqlstate == "42501" and "assigned to someone else" in str(error)
    assert str(db.value("select team_id from public.conversations where id = %s", (conv,))) == TEAM
    # the assigned agent hands it over; a manager may too
    assert str(handoff(db, AGENT, conv, own_team)["team_id"]) == own_team
    assert str(handoff(db, OWNER, conv, TEAM)["team_id"]) == TEAM


def test_a_handoff_goes_to_an_active_team_of_the_conversations_tenant(db: Db) -> None:
    conv = conversation(db)
    other_owner = db.create_user()
    other_tenant = db.create_tenant(other_owner, "Outra Loja")
    foreign_team = str(db.value(
        "insert into public.teams (tenant_id, name) values (%s, 'Vendas') returning id", (other_tenant,)))
    error = failure(handoff, db, AGENT, conv, foreign_team)
    assert error.sqlstate == "P0002" and "team not found" in str(error)
    paused = new_team(db, "Cobrança", active=False)
    error = failure(handoff, db, AGENT, conv, paused)
    assert error.sqlstate == "55000" and "inactive" in str(error)
    row = handoff(db, AGENT, conv, None)  # no team: the tenant's support team
    assert (row["mode"], str(row["team_id"])) == ("human", TEAM)


def test_the_worker_still_hands_off_without_a_caller(db: Db) -> None:
    conv = conversation(db)
    with db.as_service() as s:
        row = s.one("select * from public.handoff_conversation(%s, 'pediu atendente')", (conv,))
    assert row["mode"] == "human" and str(row["team_id"]) == TEAM


# -- 2. consent is the customer's ------------------------------------------------------


def test_agents_cannot_opt_a_contact_back_in_nor_back_date_consent(db: Db) -> None:
    conv = conversation(db)
    ingest(db, body(change(messages=[text("PARAR")])))
    contact = contact_of(db, conv)
    for column, value in (("opt_in", True), ("consent", True), ("consent_at", "2020-01-01T00:00:00Z"),
                          ("opt_out_at", None)):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(AGENT) as s:
            s.rowcount(f"update public.contacts set {column} = %s where id = %s", (value, contact))
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(AGENT) as s:
        s.value("insert into public.contacts (tenant_id, wa_id, consent, consent_at) values"
                " (%s, '5511955550000', true, '2020-01-01') returning id", (TENANT,))
    with db.as_user(AGENT) as s:  # what agents do edit still works
        assert s.rowcount("update public.contacts set name = 'Maria S.' where id = %s", (contact,)) == 1
    error = failure(send, db, AGENT, conv)
    assert error.sqlstate == "55000" and "opted out" in str(error)


def test_a_direct_write_of_the_flags_gets_what_the_history_says(db: Db) -> None:
    conv = conversation(db)
    ingest(db, body(change(messages=[text("Pare!")])))
    contact = contact_of(db, conv)
    with db.as_service() as s:
        s.rowcount("update public.contacts set opt_in = true, opt_out_at = null, consent = true,"
                   " consent_at = '2020-01-01' where id = %s", (contact,))
    row = db.sql("select * from public.contacts where id = %s", (contact,))[0]
    assert (row["opt_in"], row["consent"], row["consent_at"]) == (False, False, None)
    assert row["opt_out_at"] is not None


def test_the_customers_own_words_opt_out_and_back_in(db: Db) -> None:
    conv = conversation(db)
    ingest(db, body(change(messages=[text("quero parar de pagar juros")])))  # not an opt-out
    assert db.value("select opt_in from public.contacts where wa_id = %s", (MARIA,)) is True
    ingest(db, body(change(messages=[text("STOP")])))
    ingest(db, body(change(messages=[text("stop")])))  # already out: nothing new to record
    history = db.sql("select h.*, m.content from public.contact_consents h"
                     " join public.messages m on m.id = h.message_id")
    assert [(h["kind"], h["source"], h["evidence"], h["recorded_by"]) for h in history] == [
        ("opt_out", "customer_message", "STOP", None)]
    assert "opted out" in str(failure(send, db, AGENT, conv))
    ingest(db, body(change(messages=[text("START", at=1)])))
    assert db.value("select opt_in from public.contacts where wa_id = %s", (MARIA,)) is True
    assert send(db, AGENT, conv)["status"] == "queued"


def record(db: Db, user: uuid.UUID | str, contact: str, kind: str, evidence: str | None) -> dict[str, Any]:
    with db.as_user(user) as s:
        row: dict[str, Any] = s.one("select * from public.record_contact_consent(%s, %s, %s)",
                                    (contact, kind, evidence))
    return row


def test_managers_record_documented_requests_with_evidence_effective_now(db: Db) -> None:
    conv = conversation(db)
    contact = contact_of(db, conv)
    evidence = "Cliente pediu por e-mail em 12/03 para não receber mais mensagens (ticket 4711)."
    assert failure(record, db, AGENT, contact, "opt_out", evidence).sqlstate == "42501"
    viewer = db.add_member(uuid.UUID(TENANT), "viewer")
    assert failure(record, db, viewer, contact, "consent_given", evidence).sqlstate == "42501"
    outsider = db.create_user()
    assert failure(record, db, outsider, contact, "opt_out", evidence).sqlstate == "P0002"
    error = failure(record, db, OWNER, contact, "opt_out", "  ")
    assert error.sqlstate == "22023" and "evidence" in str(error)
    assert failure(record, db, OWNER, contact, "opt_in_forever", evidence).sqlstate == "22023"

    before = datetime.now(UTC)
    row = record(db, OWNER, contact, "opt_out", evidence)
    assert (row["source"], str(row["recorded_by"]), row["evidence"]) == ("documented_request", OWNER_MEMBER,
                                                                          evidence)
    assert row["occurred_at"] >= before - timedelta(seconds=1)  # never back-dated
    assert "opted out" in str(failure(send, db, AGENT, conv))
    record(db, OWNER, contact, "consent_given", "Termo de consentimento assinado na loja, arquivo 88.")
    c = db.sql("select * from public.contacts where id = %s", (contact,))[0]
    assert (c["opt_in"], c["consent"]) == (False, True) and c["consent_at"] >= before - timedelta(seconds=1)
    with db.as_user(viewer) as s:  # every member reads the history
        assert s.value("select count(*) from public.contact_consents where contact_id = %s", (contact,)) == 2
    with db.as_user(outsider) as s:
        assert s.value("select count(*) from public.contact_consents") == 0


def test_the_consent_history_is_append_only_for_everybody(db: Db) -> None:
    conv = conversation(db)
    contact = contact_of(db, conv)
    record(db, OWNER, contact, "opt_out", "Pedido por telefone em 12/03, gravação 123.")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(OWNER) as s:
        s.rowcount("update public.contact_consents set kind = 'opt_in'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(OWNER) as s:
        s.rowcount("insert into public.contact_consents (tenant_id, contact_id, kind, source, evidence)"
                   " values (%s, %s, 'opt_in', 'documented_request', 'eu quis')", (TENANT, contact))
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_service() as s:
        s.rowcount("delete from public.contact_consents")
    # not even the table's owner
    for statement in ("update public.contact_consents set occurred_at = occurred_at - interval '1 year'",
                      "delete from public.contact_consents", "truncate public.contact_consents"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            db.sql(statement)
    assert db.value("select count(*) from public.contact_consents") == 1
    # a removed member fades from the entries they recorded; a deleted contact takes its history
    db.sql("update public.contact_consents set recorded_by = null")
    with db.as_user(OWNER) as s:
        assert s.rowcount("delete from public.contacts where id = %s", (contact,)) == 1
    assert db.value("select count(*) from public.contact_consents") == 0


# -- 3. system-owned columns -------------------------------------------------------------


def test_agents_cannot_write_csat_counters_or_lifecycle_times(db: Db) -> None:
    conv = conversation(db)
    for column, value in (("csat", 5), ("csat_comment", "Ótimo!"), ("resolved_at", "2020-01-01"),
                          ("closed_at", "2020-01-01"), ("close_reason", "contact"), ("unread_count", 0),
                          ("assigned_at", "2020-01-01"), ("message_count", 0)):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(AGENT) as s:
            s.rowcount(f"update public.conversations set {column} = %s where id = %s", (value, conv))
    with db.as_user(AGENT) as s:  # what the inbox decides
        assert s.rowcount("update public.conversations set priority = 'high', tags = '{vip}',"
                          " assignee_id = %s where id = %s", (AGENT_MEMBER, conv)) == 1
    c = db.sql("select * from public.conversations where id = %s", (conv,))[0]
    assert (c["csat"], c["unread_count"], c["message_count"]) == (None, 1, 1)
    assert c["assigned_at"] is not None


def test_resolving_and_closing_set_their_times(db: Db) -> None:
    conv = conversation(db)
    before = datetime.now(UTC) - timedelta(seconds=1)
    with db.as_user(AGENT) as s:
        s.rowcount("update public.conversations set status = 'resolved' where id = %s", (conv,))
    c = db.sql("select * from public.conversations where id = %s", (conv,))[0]
    assert c["resolved_at"] >= before and c["close_reason"] == "resolved" and c["closed_at"] is None
    with db.as_user(AGENT) as s:
        s.rowcount("update public.conversations set status = 'closed' where id = %s", (conv,))
    c = db.sql("select * from public.conversations where id = %s", (conv,))[0]
    assert c["closed_at"] >= before and c["close_reason"] == "resolved"
    with db.as_user(AGENT) as s:
        s.rowcount("update public.conversations set status = 'open' where id = %s", (conv,))
    c = db.sql("select * from public.conversations where id = %s", (conv,))[0]
    assert (c["resolved_at"], c["closed_at"], c["close_reason"]) == (None, None, None)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="expire by themselves"), \
            db.as_user(AGENT) as s:
        s.rowcount("update public.conversations set status = 'expired' where id = %s", (conv,))


def test_an_agent_marks_a_conversation_read_through_the_rpc(db: Db) -> None:
    conv = conversation(db)
    ingest(db, body(change(messages=[text("alô?")])))
    assert db.value("select unread_count from public.conversations where id = %s", (conv,)) == 2
    viewer = db.add_member(uuid.UUID(TENANT), "viewer")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(viewer) as s:
        s.one("select * from public.mark_conversation_read(%s)", (conv,))
    restricted_tenant(db)
    stranger = db.add_member(uuid.UUID(TENANT), "agent")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(stranger) as s:
        s.one("select * from public.mark_conversation_read(%s)", (conv,))
    db.sql("update public.conversations set team_id = %s where id = %s", (TEAM, conv))
    with db.as_user(AGENT) as s:
        assert s.one("select * from public.mark_conversation_read(%s)", (conv,))["unread_count"] == 0


# -- 4. outbound payloads within WhatsApp's limits ---------------------------------------


def send(db: Db, user: uuid.UUID | str, conv: str, message: dict[str, Any] | None = None) -> dict[str, Any]:
    with db.as_user(user) as s:
        row: dict[str, Any] = s.one("select * from public.send_message(%s, %s)",
                                    (conv, Jsonb(message or {"type": "text", "text": {"body": "Olá!"}})))
    return row


def buttons(*titles: str, body_text: str = "Posso ajudar?", **extra: Any) -> dict[str, Any]:
    return {"type": "interactive", "interactive": {
        "type": "button", "body": {"text": body_text}, **extra,
        "action": {"buttons": [{"type": "reply", "reply": {"id": f"b{i}", "title": t}}
                               for i, t in enumerate(titles)]}}}


def menu(rows: int, *, title: str = "Opção", description: str | None = None) -> dict[str, Any]:
    return {"type": "interactive", "interactive": {
        "type": "list", "body": {"text": "Escolha"},
        "action": {"button": "Ver opções", "sections": [{"title": "Tudo", "rows": [
            {"id": f"r{i}", "title": title, **({"description": description} if description else {})}
            for i in range(rows)]}]}}}


def image(**obj: Any) -> dict[str, Any]:
    return {"type": "image", "image": obj}


TOO_BIG = [
    (image(link="https://cdn.example.com/a.jpg", junk="x" * 2_000_000), "at most 65536 (64 KB)"),
    (buttons("Sim", "Não", "Talvez", "Depois"), "1 to 3 reply buttons"),
    (buttons("Um título longo demais!"), "button reply.title has 23 characters: WhatsApp allows at most 20"),
    (buttons("Sim", "Sim"), "unique"),
    (buttons("Sim", body_text="x" * 1025), "interactive.body.text has 1025 characters"),
    (buttons("Sim", header={"type": "text", "text": "h" * 61}), "interactive.header.text has 61"),
    (buttons("Sim", footer={"text": "f" * 61}), "interactive.footer.text has 61"),
    (menu(11), "at most 10 rows in total"),
    (menu(2, title="t" * 25), "row title has 25 characters: WhatsApp allows at most 24"),
    (menu(1, description="d" * 73), "row description has 73"),
    (image(link="https://cdn.example.com/a.jpg", caption="c" * 1025), "image.caption has 1025"),
    (image(caption="sem mídia"), "needs exactly one of id"),
    (image(link="http://cdn.example.com/a.jpg"), "https:// URL"),
    (image(link="javascript:alert(1)"), "https:// URL"),
    ({"type": "audio", "audio": {"id": "123", "caption": "oi"}}, "audio takes no caption"),
    ({"type": "location", "location": {"latitude": 123.0, "longitude": -46.6}}, "latitude must be between"),
    ({"type": "location", "location": {"latitude": -23.5, "longitude": -46.6, "name": "n" * 1001}},
     "location.name has 1001"),
    ({"type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "muito obrigado"}}, "one emoji"),
    ({"type": "interactive", "interactive": {"type": "product_list", "body": {"text": "x"}}},
     "button, list, cta_url or flow"),
    ({"type": "interactive", "interactive": {"type": "flow", "body": {"text": "x"},
                                             "action": {"name": "flow", "parameters": {"flow_cta": "Ver"}}}},
     "parameters.flow_id is required"),
    ({"type": "contacts", "contacts": [{"phones": [{"phone": "+5511"}]}]}, "formatted_name is required"),
]


@pytest.mark.parametrize(("message", "limit"), TOO_BIG, ids=[limit for _, limit in TOO_BIG])
def test_outbound_messages_beyond_whatsapps_limits_are_refused(db: Db, message: dict[str, Any],
                                                               limit: str) -> None:
    conv = conversation(db)
    error = failure(send, db, AGENT, conv, message)
    assert error.sqlstate == "22023" and limit in str(error)
    assert db.value("select count(*) from public.messages where direction = 'outbound'") == 0


def test_template_parameters_and_the_workers_replies_are_checked_too(db: Db) -> None:
    conv = conversation(db)
    template = {"type": "template", "template": {"name": "retomar_atendimento", "language": {"code": "pt_BR"},
                "components": [{"type": "header", "parameters": [{"type": "text", "text": "h" * 61}]},
                               {"type": "body", "parameters": [{"type": "text", "text": "Maria"}]}]}}
    assert "template header parameter text has 61" in str(failure(send, db, AGENT, conv, template))
    template["template"]["components"][0]["parameters"][0]["text"] = "Pedido"
    template["template"]["components"][1]["parameters"][0]["text"] = "b" * 1025
    assert "template body parameter text has 1025" in str(failure(send, db, AGENT, conv, template))
    with pytest.raises(psycopg.Error, match="at most 65536") as caught, db.as_service() as s:
        s.one("select * from public.whatsapp_queue_reply(%s, %s)",
              (conv, Jsonb({"type": "text", "text": {"body": "oi"}, "extra": "y" * 70_000})))
    assert caught.value.sqlstate == "22023"


def test_messages_within_the_limits_go(db: Db) -> None:
    conv = conversation(db)
    ok = [
        buttons("Sim", "Não", "Falar com atendente", header={"type": "text", "text": "Pedido 123"},
                footer={"text": "Loja Demo"}),
        menu(10, title="t" * 24, description="d" * 72),
        {"type": "interactive", "interactive": {
            "type": "cta_url", "body": {"text": "Acompanhe seu pedido"},
            "action": {"name": "cta_url", "parameters": {"display_text": "Rastrear", "url": "https://loja.example/r/1"}}}},
        image(link="https://cdn.example.com/a.jpg", caption="Catálogo"),
        {"type": "audio", "audio": {"id": "1234567890", "voice": True}},
        {"type": "document", "document": {"id": "998877", "filename": "boleto.pdf", "caption": "Seu boleto"}},
        {"type": "location", "location": {"latitude": -23.56, "longitude": -46.65, "name": "Loja Paulista",
                                          "address": "Av. Paulista, 1000"}},
        {"type": "contacts", "contacts": [{"name": {"formatted_name": "Suporte"},
                                           "phones": [{"phone": "+551130000000"}]}]},
        {"type": "reaction", "reaction": {"message_id": "wamid.X", "emoji": "👍🏽"}},
    ]
    for message in ok:
        assert send(db, AGENT, conv, message)["status"] == "queued"


# -- 5. greetings ------------------------------------------------------------------------


def test_a_viewer_cannot_write_a_greeting_even_their_own(db: Db) -> None:
    viewer = db.add_member(uuid.UUID(TENANT), "viewer")
    mine = member_id(db, viewer)
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(viewer) as s:
        s.value("insert into public.agent_greetings (tenant_id, member_id, message_template)"
                " values (%s, %s, 'Oi, sou o visitante!') returning id", (TENANT, mine))
    db.sql("insert into public.agent_greetings (tenant_id, member_id, message_template)"
           " values (%s, %s, 'Oi!')", (TENANT, mine))  # from when they were an agent
    with db.as_user(viewer) as s:
        assert s.rowcount("update public.agent_greetings set message_template = 'Olá' where member_id = %s",
                          (mine,)) == 0
        assert s.rowcount("delete from public.agent_greetings where member_id = %s", (mine,)) == 0
    with db.as_user(AGENT) as s:  # agents write their own; managers anyone's
        s.value("insert into public.agent_greetings (tenant_id, member_id, message_template)"
                " values (%s, %s, 'Oi, sou o Bruno!') returning id", (TENANT, AGENT_MEMBER))
    with db.as_user(OWNER) as s:
        assert s.rowcount("update public.agent_greetings set is_active = false") == 2
