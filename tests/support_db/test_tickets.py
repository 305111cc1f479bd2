"""Tickets: protocols under concurrency, the conversation they come from, status rules,
notes and attachments, the customer's status question, events."""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from support import Db

TENANT = "00000000-0000-4000-b000-000000000001"  # seed: Loja Demo
OWNER = "00000000-0000-4000-a000-000000000001"
AGENT = "00000000-0000-4000-a000-000000000002"
TENANT_B = "bbbbbbbb-0000-4000-b000-000000000001"
OTHER_TENANT = Path(__file__).parent.parent / "fixtures" / "other_tenant.sql"


def open_ticket(db: Db, conversation: str, user: str = AGENT, **fields: Any) -> dict[str, Any]:
    with db.as_user(user) as s:
        return s.one(
            "select * from public.create_ticket(%(c)s, %(title)s, priority => %(priority)s,"
            " category => %(category)s)",
            {
                "c": conversation,
                "title": fields.get("title", "Sistema não emite NF-e"),
                "priority": fields.get("priority", "medium"),
                "category": fields.get("category"),
            },
        )


def test_an_agent_opens_a_ticket_with_a_protocol_of_the_day(db: Db) -> None:
    conversation, _ = db.create_conversation()
    ticket = open_ticket(db, conversation, category="LC_ERP")
    day = db.value("select to_char(now() at time zone 'America/Sao_Paulo', 'YYYYMMDD')")
    assert ticket["protocol"] == f"BR-{day}-0001"
    assert ticket["status"] == "open" and ticket["source"] == "agent"
    assert str(ticket["contact_id"]) == str(
        db.value("select contact_id from public.conversations where id = %s", (conversation,))
    )
    assert str(ticket["created_by"]) == AGENT
    assert open_ticket(db, conversation)["protocol"] == f"BR-{day}-0002"
    event = db.sql(
        "select payload from public.events where type = 'ticket.created' and subject_id = %s", (ticket["id"],)
    )
    assert event[0]["payload"]["protocol"] == ticket["protocol"]


def test_a_ticket_needs_a_conversation_of_its_tenant(db: Db) -> None:
    with (
        pytest.raises(psycopg.errors.NotNullViolation, match="always opened from a conversation"),
        db.as_user(AGENT) as s,
    ):
        s.all("select public.create_ticket(null, 'Sem conversa')")
    db.sql(OTHER_TENANT.read_text())
    other = db.value("select id from public.conversations where tenant_id = %s", (TENANT_B,))
    with pytest.raises(psycopg.errors.NoDataFound, match="conversation not found"), db.as_user(AGENT) as s:
        s.all("select public.create_ticket(%s, 'Conversa alheia')", (other,))


def test_fifty_concurrent_creations_get_fifty_gap_free_protocols(db: Db) -> None:
    conversation, _ = db.create_conversation()
    start = threading.Barrier(50)
    errors: list[BaseException] = []

    def create(i: int) -> None:
        try:
            with db.as_service() as s:
                start.wait()
                s.all("select public.create_ticket(%s, %s, source => 'bot')", (conversation, f"Chamado {i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    numbers = sorted(int(r["protocol"][-4:]) for r in db.sql("select protocol from public.tickets"))
    assert numbers == list(range(1, 51))


def test_a_rolled_back_ticket_gives_its_number_back(db: Db) -> None:
    conversation, _ = db.create_conversation()
    with pytest.raises(psycopg.errors.CheckViolation), db.as_service() as s:
        s.all("select public.create_ticket(%s, 'bom', source => 'flow')", (conversation,))
        s.all(
            "select public.create_ticket(%s, 'ruim', priority => 'altissima', source => 'flow')",
            (conversation,),
        )
    ticket = open_ticket(db, conversation)
    assert ticket["protocol"].endswith("-0001")


def test_status_changes_follow_the_workflow_and_reopen_counts(db: Db) -> None:
    conversation, _ = db.create_conversation()
    ticket = open_ticket(db, conversation)
    with db.as_user(AGENT) as s:
        for status in ("in_progress", "waiting_client", "resolved", "closed"):
            s.all("update public.tickets set status = %s where id = %s", (status, ticket["id"]))
    with (
        pytest.raises(psycopg.errors.InvalidParameterValue, match="cannot go from closed to waiting_client"),
        db.as_user(AGENT) as s,
    ):
        s.all("update public.tickets set status = 'waiting_client' where id = %s", (ticket["id"],))
    with db.as_user(AGENT) as s:
        row = s.one("update public.tickets set status = 'open' where id = %s returning *", (ticket["id"],))
    assert row["reopened_count"] == 1 and row["resolved_at"] is None and row["closed_at"] is None
    types = [
        r["type"]
        for r in db.sql(
            "select type from public.events where subject_id = %s order by created_at", (ticket["id"],)
        )
    ]
    assert types == ["ticket.created"] + ["ticket.status_changed"] * 4 + ["ticket.reopened"]


def test_agents_cannot_write_the_protocol_or_the_deadlines(db: Db) -> None:
    conversation, _ = db.create_conversation()
    ticket = open_ticket(db, conversation)
    for column, value in (("protocol", "BR-20200101-0001"), ("sla_due_at", "2100-01-01")):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(AGENT) as s:
            s.all(f"update public.tickets set {column} = %s where id = %s", (value, ticket["id"]))


def test_notes_are_written_as_oneself_and_attachments_stay_in_the_tenant_folder(db: Db) -> None:
    conversation, _ = db.create_conversation()
    ticket = open_ticket(db, conversation)
    with db.as_user(AGENT) as s:
        note = s.one(
            "insert into public.ticket_notes (tenant_id, ticket_id, body) values (%s, %s, %s) returning *",
            (TENANT, ticket["id"], "Cliente usa a versão 3.2"),
        )
        s.all(
            "insert into public.ticket_attachments (tenant_id, ticket_id, storage_path, file_name)"
            " values (%s, %s, %s, 'erro.png')",
            (TENANT, ticket["id"], f"{TENANT}/tickets/erro.png"),
        )
    assert str(note["author_id"]) == AGENT
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(AGENT) as s:
        s.all(
            "insert into public.ticket_notes (tenant_id, ticket_id, body, author_id)"
            " values (%s, %s, 'x', %s)",
            (TENANT, ticket["id"], OWNER),
        )
    for path in ("bbbbbbbb-0000-4000-b000-000000000001/segredo.pdf", f"{TENANT}/../outra/segredo.pdf"):
        with pytest.raises(psycopg.errors.CheckViolation), db.as_user(AGENT) as s:
            s.all(
                "insert into public.ticket_attachments (tenant_id, ticket_id, storage_path)"
                " values (%s, %s, %s)",
                (TENANT, ticket["id"], path),
            )
    assert db.value("select count(*) from public.events where type = 'ticket.note_added'") == 1


def test_the_customer_asks_only_about_their_own_tickets(db: Db) -> None:
    mine, _ = db.create_conversation("5511911112222")
    theirs, _ = db.create_conversation("5511933334444")
    ticket = open_ticket(db, mine, title="Certificado não instala")
    with db.as_service() as s:
        answer = s.value(
            "select public.ticket_status_for_customer(%s, %s)", (mine, ticket["protocol"].lower())
        )
        stranger = s.value("select public.ticket_status_for_customer(%s, %s)", (theirs, ticket["protocol"]))
    assert answer.startswith(f"Chamado {ticket['protocol']} (Certificado não instala): aberto")
    assert "Não encontrei" in stranger and "Certificado" not in stranger
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(AGENT) as s:
        s.all("select public.ticket_status_for_customer(%s, %s)", (mine, ticket["protocol"]))


def test_a_customer_reply_takes_a_waiting_ticket_back_to_work(db: Db) -> None:
    conversation, _ = db.create_conversation("5511955556666")
    ticket = open_ticket(db, conversation)
    with db.as_user(AGENT) as s:
        s.all("update public.tickets set status = 'waiting_client' where id = %s", (ticket["id"],))
    db.create_conversation("5511955556666", text="Segue o print do erro")
    assert db.value("select status from public.tickets where id = %s", (ticket["id"],)) == "in_progress"
    assert re.fullmatch(r"BR-\d{8}-\d{4}", ticket["protocol"])


def test_a_deleted_attachment_or_ticket_queues_its_file_for_the_storage_purge(db: Db) -> None:
    conversation, _ = db.create_conversation()
    tickets = [open_ticket(db, conversation), open_ticket(db, conversation)]
    with db.as_user(AGENT) as s:
        for n, ticket in enumerate(tickets):
            s.all("insert into public.ticket_attachments (tenant_id, ticket_id, storage_path)"
                  " values (%s, %s, %s)", (TENANT, ticket["id"], f"{TENANT}/tickets/anexo-{n}.pdf"))
        assert s.rowcount("delete from public.ticket_attachments where storage_path like %s",
                          ("%anexo-0.pdf",)) == 1
    db.sql("delete from public.tickets where id = %s", (tickets[1]["id"],))
    assert db.sql("select storage_key, reason from public.storage_deletions order by storage_key") == [
        {"storage_key": f"ticket-attachments/{TENANT}/tickets/anexo-{n}.pdf", "reason": "deleted"}
        for n in (0, 1)]
