"""Outbound: agents queue messages under WhatsApp's rules, the sender's queue, status webhooks."""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from webhooks import (
    AGENT,
    INGEST_SQL,
    NUMBER,
    OWNER,
    PHONE_NUMBER_ID,
    TENANT,
    body,
    change,
    ingest,
    status,
    text,
)

from support import Db

TEXT = {"type": "text", "text": {"body": "Seu pedido saiu para entrega 🚚"}}
TEMPLATE = {
    "type": "template",
    "template": {
        "name": "retomar_atendimento",
        "language": {"code": "pt_BR"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Maria"}]}],
    },
}


def conversation_with(db: Db, wa_id: str = "5511988887777", *, at: float = 0) -> uuid.UUID:
    ingest(db, body(change(messages=[text("oi", wa_id, at=at)])))
    conv_id: uuid.UUID = db.value(
        "select c.id from public.conversations c join public.contacts k on k.id = c.contact_id"
        " where k.wa_id = %s and c.status = 'open'",
        (wa_id,),
    )
    return conv_id


def send(db: Db, user: str, conv: uuid.UUID, message: dict[str, Any]) -> dict[str, Any]:
    with db.as_user(user) as s:
        row: dict[str, Any] = s.one(
            "select * from public.send_message(%s, %s)", (conv, psycopg.types.json.Jsonb(message))
        )
    return row


def refusal(db: Db, user: str, conv: uuid.UUID, message: dict[str, Any]) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        send(db, user, conv, message)
    return caught.value


def test_an_agent_sends_text_inside_the_window_and_takes_over(db: Db) -> None:
    conv = conversation_with(db)
    row = send(db, AGENT, conv, TEXT)
    assert (row["status"], row["direction"], row["sender_type"], row["type"]) == (
        "queued",
        "outbound",
        "agent",
        "text",
    )
    assert row["content"] == "Seu pedido saiu para entrega 🚚" and row["wamid"] is None
    c = db.sql("select * from public.conversations where id = %s", (conv,))[0]
    assert c["mode"] == "human" and c["assignee_id"] is not None and c["unread_count"] == 0
    assert c["outbound_count"] == 1 and c["last_message_direction"] == "outbound"
    memory = db.value(
        "select recent_messages from public.session_context where conversation_id = %s", (conv,)
    )
    assert [m["role"] for m in memory] == ["user", "assistant"]


def test_outside_the_window_only_an_approved_template_goes(db: Db) -> None:
    conv = conversation_with(db, at=-25 * 3600)
    error = refusal(db, AGENT, conv, TEXT)
    assert "24-hour customer service window" in str(error)
    assert error.diag.message_hint is not None and "template" in error.diag.message_hint
    assert send(db, AGENT, conv, TEMPLATE)["content"] == "[template retomar_atendimento]"
    unknown = {"type": "template", "template": {"name": "promo_relampago", "language": {"code": "pt_BR"}}}
    assert 'template "promo_relampago" (pt_BR) is not approved' in str(refusal(db, AGENT, conv, unknown))


def test_blocked_and_opted_out_contacts_are_refused(db: Db) -> None:
    conv = conversation_with(db)
    db.sql("update public.contacts set is_blocked = true")
    assert "blocked" in str(refusal(db, AGENT, conv, TEXT))
    db.sql("update public.contacts set is_blocked = false")
    ingest(db, body(change(messages=[text("PARAR")])))  # the customer's own opt-out
    assert "opted out" in str(refusal(db, AGENT, conv, TEMPLATE))
    assert db.value("select opt_out_at is not null from public.contacts")


def test_bad_messages_get_clear_errors(db: Db) -> None:
    conv = conversation_with(db)
    assert 'unknown message type "fax"' in str(refusal(db, AGENT, conv, {"type": "fax", "fax": {}}))
    assert "needs its" in str(refusal(db, AGENT, conv, {"type": "image"}))
    assert "1 to 4096" in str(refusal(db, AGENT, conv, {"type": "text", "text": {"body": "x" * 4097}}))


def test_who_may_send(db: Db) -> None:
    conv = conversation_with(db)
    viewer = db.add_member(uuid.UUID(TENANT), "viewer")
    assert refusal(db, str(viewer), conv, TEXT).sqlstate == "42501"
    outsider = db.create_user()
    assert refusal(db, str(outsider), conv, TEXT).sqlstate == "P0002"  # not even told it exists

    # a tenant that restricts agents: only what is assigned to them or their teams
    db.sql("update public.tenants set restrict_agents_to_assigned = true where id = %s", (TENANT,))
    other_agent = db.add_member(uuid.UUID(TENANT), "agent")
    assert refusal(db, str(other_agent), conv, TEXT).sqlstate == "42501"
    db.sql(
        "update public.conversations set team_id = '00000000-0000-4000-d000-000000000001' where id = %s",
        (conv,),
    )
    assert send(db, AGENT, conv, TEXT)["status"] == "queued"  # AGENT serves that team
    assert send(db, OWNER, conv, TEXT)["status"] == "queued"  # managers and up: everything


def test_agents_start_a_conversation_and_reach_out_with_a_template(db: Db) -> None:
    with db.as_user(AGENT) as s:
        contact = s.value(
            "insert into public.contacts (tenant_id, wa_id, name) values (%s, '5511955551234', 'Rui')"
            " returning id",
            (TENANT,),
        )
    with db.as_user(AGENT) as s:
        conv = s.one("select * from public.start_conversation(%s)", (contact,))
    assert (
        conv["mode"] == "human" and conv["status"] == "waiting" and str(conv["whatsapp_number_id"]) == NUMBER
    )
    assert "24-hour" in str(refusal(db, AGENT, conv["id"], TEXT))
    assert send(db, AGENT, conv["id"], TEMPLATE)["status"] == "queued"
    with db.as_user(AGENT) as s:
        assert s.one("select * from public.start_conversation(%s)", (contact,))["id"] == conv["id"]


# -- the sender's queue ----------------------------------------------------------------


def claim(db: Db, batch: int = 50, lease: int = 60, worker: str = "w1") -> list[dict[str, Any]]:
    with db.as_service() as s:
        return s.all("select * from public.whatsapp_claim_outbound(%s, %s, %s)", (worker, batch, lease))


def queue_reply(db: Db, conv: uuid.UUID, body_text: str) -> uuid.UUID:
    with db.as_service() as s:
        message_id: uuid.UUID = s.value(
            "select id from public.whatsapp_queue_reply(%s, %s)",
            (conv, psycopg.types.json.Jsonb({"type": "text", "text": {"body": body_text}})),
        )
    return message_id


def test_claims_respect_the_number_throughput_and_one_message_in_flight_per_contact(db: Db) -> None:
    convs = [conversation_with(db, f"55119000000{i:02d}") for i in range(4)]
    for conv in convs:
        queue_reply(db, conv, "primeira")
        queue_reply(db, conv, "segunda")
    db.sql("update public.whatsapp_numbers set throughput_mps = 3 where id = %s", (NUMBER,))
    first = claim(db)
    assert len(first) == 3  # the number's budget for this second
    assert len({r["conversation_id"] for r in first}) == 3  # one per contact, the oldest first
    assert all(r["payload"]["text"]["body"] == "primeira" for r in first)
    assert (
        first[0]["access_token"] == "zapbase-simulator-token"
        and first[0]["phone_number_id"] == "106540352242922"
    )
    assert claim(db) == []  # budget spent (the window is one second)

    db.sql("update public.whatsapp_numbers set send_window_start = now() - interval '2 seconds'")
    second = claim(db)
    assert [r["payload"]["text"]["body"] for r in second] == [
        "primeira"
    ]  # the others still have one in flight


def test_the_senders_rate_window_is_not_audited_but_an_admins_change_is(db: Db) -> None:
    audited = ("select count(*) from public.audit_log"
               " where resource_type = 'whatsapp_numbers' and action = 'update'")
    queue_reply(db, conversation_with(db), "oi!")
    before = db.value(audited)
    assert len(claim(db)) == 1
    assert db.value(audited) == before  # the claim moved the number's send window
    with db.as_user(OWNER) as s:
        s.all("update public.whatsapp_numbers set display_name = 'Loja Demo SP' where id = %s", (NUMBER,))
    assert db.value(audited) == before + 1


def test_sent_messages_get_their_wamid_and_are_never_claimed_again(db: Db) -> None:
    conv = conversation_with(db)
    message_id = queue_reply(db, conv, "oi!")
    [row] = claim(db, lease=0)
    with db.as_service() as s:
        s.value("select public.whatsapp_mark_sent(%s, 'wamid.OUT1')", (row["message_id"],))
    sent = db.sql("select * from public.messages where id = %s", (message_id,))[0]
    assert (sent["status"], sent["wamid"], sent["lease_until"]) == ("sent", "wamid.OUT1", None)
    assert sent["attempts"] == 1 and sent["sent_at"] is not None
    assert claim(db) == []


def test_an_expired_lease_returns_the_row_to_the_queue(db: Db) -> None:
    conv = conversation_with(db)
    queue_reply(db, conv, "oi!")
    assert len(claim(db, lease=60, worker="crashed")) == 1
    db.sql("update public.whatsapp_numbers set send_window_start = null")
    assert claim(db, worker="w2") == []  # leased: nobody else takes it
    db.sql(
        "update public.messages set lease_until = now() - interval '1 second' where direction = 'outbound'"
    )
    [again] = claim(db, worker="w2")
    assert again["attempts"] == 2


def test_failures_are_retried_with_backoff_or_marked_with_metas_reason(db: Db) -> None:
    conv = conversation_with(db)
    retried = queue_reply(db, conv, "um")
    [row] = claim(db)
    with db.as_service() as s:
        assert (
            s.value(
                "select public.whatsapp_mark_send_failed(%s, 131056, '(#131056) Pair rate limit hit',"
                " null, true, 4)",
                (row["message_id"],),
            )
            == "queued"
        )
    r = db.sql(
        "select status, next_attempt_at - now() as wait, error_code from public.messages where id = %s",
        (retried,),
    )[0]
    assert r["status"] == "queued" and r["error_code"] == 131056 and 3 <= r["wait"].total_seconds() <= 5

    db.sql("update public.messages set next_attempt_at = now() - interval '1 second', max_attempts = 2")
    db.sql("update public.whatsapp_numbers set send_window_start = null")
    [row] = claim(db)
    with db.as_service() as s:
        assert (
            s.value(
                "select public.whatsapp_mark_send_failed(%s, 131047, 'Re-engagement message',"
                " 'More than 24 hours have passed since the recipient last replied', true)",
                (row["message_id"],),
            )
            == "failed"
        )  # attempts used up
    failed = db.sql("select * from public.messages where id = %s", (retried,))[0]
    assert (failed["status"], failed["error_code"], failed["error_title"]) == (
        "failed",
        131047,
        "Re-engagement message",
    )
    assert failed["error_details"].startswith("More than 24 hours") and failed["failed_at"] is not None


# -- status webhooks ------------------------------------------------------------------


def sent_message(db: Db, wamid: str) -> uuid.UUID:
    conv = conversation_with(db)
    message_id = queue_reply(db, conv, "pedido confirmado")
    claim(db)
    with db.as_service() as s:
        s.value("select public.whatsapp_mark_sent(%s, %s)", (message_id, wamid))
    return message_id


def message(db: Db, message_id: uuid.UUID) -> dict[str, Any]:
    return db.sql("select * from public.messages where id = %s", (message_id,))[0]


def test_statuses_move_a_message_forward_only(db: Db) -> None:
    message_id = sent_message(db, "wamid.S1")
    pricing = {
        "billable": False,
        "pricing_model": "PMP",
        "type": "free_customer_service",
        "category": "service",
    }
    result = ingest(
        db,
        body(
            change(
                statuses=[
                    status("wamid.S1", "read", at=20),
                    status("wamid.S1", "sent", at=5, pricing=pricing),
                ]
            )
        ),
    )
    assert result["statuses"] == 2
    m = message(db, message_id)
    assert m["status"] == "read" and m["read_at"] is not None
    assert m["delivered_at"] == m["read_at"]  # delivered skipped: read implies it
    assert m["pricing_category"] == "service" and m["pricing_model"] == "PMP"
    ingest(db, body(change(statuses=[status("wamid.S1", "delivered", at=10)])))  # late, out of order
    m = message(db, message_id)
    assert m["status"] == "read" and m["delivered_at"] < m["read_at"]
    failed = {"code": 131026, "title": "Message undeliverable", "error_data": {"details": "x"}}
    ingest(db, body(change(statuses=[status("wamid.S1", "failed", at=30, errors=[failed])])))
    assert message(db, message_id)["status"] == "read"  # a failure after read changes nothing
    assert (
        db.value("select count(*) from public.message_status_events where message_id = %s", (message_id,))
        == 4
    )


def test_a_voice_note_can_be_played(db: Db) -> None:
    message_id = sent_message(db, "wamid.V1")
    ingest(
        db,
        body(
            change(
                statuses=[
                    status("wamid.V1", "delivered"),
                    status("wamid.V1", "read", at=1),
                    status("wamid.V1", "played", at=2),
                ]
            )
        ),
    )
    m = message(db, message_id)
    assert m["status"] == "played" and m["played_at"] is not None


def test_a_failed_status_carries_metas_code_title_and_details(db: Db) -> None:
    message_id = sent_message(db, "wamid.F1")
    error = {
        "code": 131047,
        "title": "Re-engagement message",
        "message": "Re-engagement message",
        "error_data": {"details": "Message failed to send because more than 24 hours have passed"},
    }
    ingest(db, body(change(statuses=[status("wamid.F1", "failed", errors=[error])])))
    m = message(db, message_id)
    assert (m["status"], m["error_code"], m["error_title"]) == ("failed", 131047, "Re-engagement message")
    assert m["error_details"].startswith("Message failed to send")
    ingest(db, body(change(statuses=[status("wamid.F1", "delivered", at=5)])))
    assert message(db, message_id)["status"] == "delivered"  # proof it arrived after all


def test_duplicate_statuses_count_once(db: Db) -> None:
    sent_message(db, "wamid.D1")
    st = status("wamid.D1", "delivered")
    ingest(db, body(change(statuses=[st])))
    again = ingest(db, body(change(statuses=[st, status("wamid.D1", "read", at=3)])))
    assert again["statuses"] == 1
    assert db.value("select count(*) from public.message_status_events where wamid = 'wamid.D1'") == 2


def test_statuses_for_unknown_wamids_are_kept_and_adopted_when_the_wamid_turns_up(db: Db) -> None:
    result = ingest(db, body(change(statuses=[status("wamid.EARLY", "delivered")])))
    assert result["unknown_statuses"] == 1 and result["quarantined"] == 0
    assert db.value("select message_id from public.message_status_events where wamid = 'wamid.EARLY'") is None
    # the webhook raced ahead of the sender recording the wamid
    message_id = sent_message(db, "wamid.EARLY")
    assert message(db, message_id)["status"] == "delivered"
    assert (
        db.value("select message_id from public.message_status_events where wamid = 'wamid.EARLY'")
        == message_id
    )


def test_the_wamids_of_sends_answered_together_are_recorded_in_one_call(db: Db) -> None:
    ingest(db, body(change(statuses=[status("wamid.M2", "delivered")])))  # raced ahead of its send
    ids = [queue_reply(db, conversation_with(db, f"551190000001{i}"), "pedido confirmado") for i in range(3)]
    assert len(claim(db)) == 3
    stranger = uuid.uuid4()
    mark_many = "select public.whatsapp_mark_sent_many(%s::uuid[], %s::text[]) as id"
    with db.as_service() as s:
        wamids = ["wamid.M0", "wamid.M1", "wamid.M2", "wamid.X"]
        recorded = {r["id"] for r in s.all(mark_many, ([*ids, stranger], wamids))}
        assert recorded == set(ids)  # an id naming no outbound row is left out, the rest recorded
        assert {r["id"] for r in s.all(mark_many, (ids[:1], ["wamid.M0"]))} == {ids[0]}  # idempotent
    with db.as_service() as s, pytest.raises(psycopg.errors.InvalidParameterValue, match="one wamid per"):
        s.all(mark_many, (ids, ["wamid.M0"]))
    assert [(message(db, i)["status"], message(db, i)["wamid"]) for i in ids] == [
        ("sent", "wamid.M0"), ("sent", "wamid.M1"), ("delivered", "wamid.M2")
    ]
    assert db.value("select count(*) from public.message_status_events where message_id is null") == 0
    assert claim(db) == []


def test_a_contact_with_a_long_queue_does_not_hide_the_contacts_queued_after_it(db: Db) -> None:
    busy = conversation_with(db, "5511900000021")
    first = queue_reply(db, busy, "1")
    for n in range(2, 30):
        queue_reply(db, busy, str(n))
    later = queue_reply(db, conversation_with(db, "5511900000022"), "depois")
    assert [r["message_id"] for r in claim(db, batch=1)] == [first]
    db.sql("update public.whatsapp_numbers set send_window_start = null")
    # the busy contact's other messages wait for the one in flight; the next contact goes
    assert [r["message_id"] for r in claim(db, batch=5)] == [later]


def test_a_claim_holding_one_number_leaves_the_others_to_concurrent_claims(db: Db) -> None:
    other = db.value(
        "insert into public.whatsapp_numbers (tenant_id, phone_number, phone_number_id)"
        " values (%s, '+5511911112222', '700000000000001') returning id",
        (TENANT,),
    )
    mine = queue_reply(db, conversation_with(db, "5511900000031"), "pelo número da loja")
    db.sql("insert into public.conversations (tenant_id, contact_id, whatsapp_number_id, window_expires_at)"
           " select tenant_id, contact_id, %s, now() + interval '1 hour' from public.conversations where id ="
           " (select conversation_id from public.messages where id = %s)", (other, mine))
    theirs = queue_reply(db, db.value("select id from public.conversations where whatsapp_number_id = %s",
                                      (other,)), "pelo outro número")
    with db.as_service() as s:  # a claim in flight, holding the number it took from
        [held] = s.all("select * from public.whatsapp_claim_outbound('w1', 1, 60)")
        [taken] = claim(db, worker="w2")
    assert {held["message_id"], taken["message_id"]} == {mine, theirs}


def overlapping(db: Db, first: tuple[str, Any], second: tuple[str, Any]) -> None:
    """Run `first` as the service role and, before it commits, `second` on another
    connection; commit `first` once `second` finished or waits for a lock, then let
    `second` finish."""
    errors: list[BaseException] = []

    def run_second() -> None:
        try:
            with db.as_service() as s:
                s.all(*second)
        except BaseException as exc:  # reported by the caller's assertion
            errors.append(exc)

    with db.as_service() as s:
        s.all(*first)
        thread = threading.Thread(target=run_second)
        thread.start()
        deadline = time.monotonic() + 10
        while thread.is_alive() and time.monotonic() < deadline:
            if db.value("select count(*) from pg_locks where not granted"):
                break
            time.sleep(0.01)
    thread.join(10)
    assert not thread.is_alive() and not errors, errors


@pytest.mark.parametrize("first", ["the status webhook", "the sender"])
def test_a_status_arriving_while_the_sender_records_the_wamid_is_applied(db: Db, first: str) -> None:
    # Meta answers the send and posts `delivered` at once: the webhook and
    # whatsapp_mark_sent run at the same time, each before the other commits.
    message_id = queue_reply(db, conversation_with(db), "pedido confirmado")
    claim(db)
    delivered = body(change(statuses=[status("wamid.RACE", "delivered")]))
    webhook = (INGEST_SQL, (json.dumps(delivered), PHONE_NUMBER_ID))
    mark_sent = ("select public.whatsapp_mark_sent(%s, 'wamid.RACE')", (message_id,))
    overlapping(db, *((webhook, mark_sent) if first == "the status webhook" else (mark_sent, webhook)))
    assert message(db, message_id)["status"] == "delivered"
    assert db.value("select count(*) from public.message_status_events where message_id is null") == 0


def test_a_status_naming_an_unrecorded_send_records_its_wamid_so_it_is_not_sent_again(db: Db) -> None:
    conv = conversation_with(db)
    message_id = queue_reply(db, conv, "pedido confirmado")
    [row] = claim(db, lease=60, worker="killed")  # Meta accepts it, then the sender dies
    result = ingest(
        db, body(change(statuses=[status("wamid.LOST", "sent", biz_opaque_callback_data=str(message_id))]))
    )
    assert (result["statuses"], result["unknown_statuses"]) == (1, 0)
    m = message(db, row["message_id"])
    assert (m["status"], m["wamid"], m["lease_until"], m["sent_at"] is not None) == (
        "sent",
        "wamid.LOST",
        None,
        True,
    )
    assert (
        db.value("select message_id from public.message_status_events where wamid = 'wamid.LOST'")
        == message_id
    )
    db.sql("update public.whatsapp_numbers set send_window_start = null")
    assert claim(db, worker="w2") == []  # never sent a second time
    # the sender was only slow: recording the same wamid later changes nothing
    with db.as_service() as s:
        s.value("select public.whatsapp_mark_sent(%s, 'wamid.LOST')", (message_id,))
    ingest(
        db,
        body(
            change(
                statuses=[status("wamid.LOST", "delivered", at=2, biz_opaque_callback_data=str(message_id))]
            )
        ),
    )
    assert message(db, message_id)["status"] == "delivered"


def test_a_send_that_timed_out_and_waits_for_its_retry_is_recognised_too(db: Db) -> None:
    conv = conversation_with(db)
    message_id = queue_reply(db, conv, "um")
    claim(db)
    with db.as_service() as s:
        s.value(
            "select public.whatsapp_mark_send_failed(%s, null, 'timed out', null, true, 30)", (message_id,)
        )
    ingest(
        db,
        body(change(statuses=[status("wamid.LATE", "delivered", biz_opaque_callback_data=str(message_id))])),
    )
    m = message(db, message_id)
    assert (m["status"], m["wamid"], m["next_attempt_at"], m["error_title"]) == (
        "delivered",
        "wamid.LATE",
        None,
        None,
    )


def test_callback_data_adopts_only_an_unsent_row_of_the_same_tenant(db: Db) -> None:
    db.sql((Path(__file__).parents[1] / "fixtures" / "other_tenant.sql").read_text())  # tenant B
    other_tenant_row = db.value(
        "select (public.whatsapp_queue_reply(c.id, %s)).id from public.conversations c"
        " where c.tenant_id <> %s",
        (psycopg.types.json.Jsonb({"type": "text", "text": {"body": "b"}}), TENANT),
    )
    sent = sent_message(db, "wamid.KNOWN")
    statuses = [
        status("wamid.X1", "sent", biz_opaque_callback_data=str(other_tenant_row)),  # tenant B's row
        status("wamid.X2", "sent", biz_opaque_callback_data=str(sent)),  # sent before, as wamid.KNOWN
        status("wamid.X3", "sent", biz_opaque_callback_data="campanha-42"),  # another app's data
        status("wamid.X4", "sent", biz_opaque_callback_data=str(uuid.uuid4())),
    ]
    result = ingest(db, body(change(statuses=statuses)))
    assert (result["unknown_statuses"], result["quarantined"]) == (4, 0)
    b_row = message(db, other_tenant_row)
    assert (b_row["status"], b_row["wamid"]) == ("sending", None)  # claimed with ours, still unsent
    assert message(db, sent)["wamid"] == "wamid.KNOWN"
    assert (
        db.value(
            "select count(*) from public.message_status_events where wamid like 'wamid.X%%'"
            " and message_id is null"
        )
        == 4
    )


# -- the processor's queue --------------------------------------------------------------


def claim_inbound(db: Db, worker: str = "p1", batch: int = 20) -> list[dict[str, Any]]:
    with db.as_service() as s:
        return s.all("select * from public.whatsapp_claim_inbound(%s, %s, 120)", (worker, batch))


def test_inbound_claims_take_the_oldest_message_of_each_conversation(db: Db) -> None:
    ingest(
        db,
        body(
            change(
                messages=[
                    text("1", "5511900000001", at=-3),
                    text("2", "5511900000001", at=-2),
                    text("a", "5511900000002", at=-1),
                ]
            )
        ),
    )
    first = claim_inbound(db)
    assert sorted(r["content"] for r in first) == ["1", "a"]
    assert all(r["conversation_mode"] == "bot" and r["phone_number_id"] == "106540352242922" for r in first)
    assert claim_inbound(db, "p2") == []  # each conversation has one in flight
    with db.as_service() as s:
        for r in first:
            s.value("select public.whatsapp_finish_inbound(%s)", (r["message_id"],))
    assert [r["content"] for r in claim_inbound(db, "p2")] == ["2"]


# -- who reads what ---------------------------------------------------------------------


def test_members_read_the_inbox_but_no_frontend_reads_number_secrets(db: Db) -> None:
    conversation_with(db)
    with db.as_user(AGENT) as s:
        assert s.value("select count(*) from public.messages") == 1
        assert s.value("select phone_number_id from public.whatsapp_numbers") == "106540352242922"
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(OWNER) as s:
        s.value("select access_token_secret_id from public.whatsapp_numbers")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(AGENT) as s:
        s.value("select public.set_whatsapp_number_secret(%s, 'access_token', 'EAAG-new-token')", (NUMBER,))
    with db.as_user(OWNER) as s:
        secret_id = s.value(
            "select public.set_whatsapp_number_secret(%s, 'access_token', 'EAAG-new-token')", (NUMBER,)
        )
    assert (
        db.value("select decrypted_secret from vault.decrypted_secrets where id = %s", (secret_id,))
        == "EAAG-new-token"
    )


def test_the_ai_memory_keeps_the_last_messages_and_counts_what_fell_out(db: Db) -> None:
    conv = conversation_with(db)
    db.sql("update public.session_context set max_messages = 3")
    for i in range(4):
        ingest(db, body(change(messages=[text(f"msg {i}", at=i + 1)])))
    ctx = db.sql("select * from public.session_context where conversation_id = %s", (conv,))[0]
    assert [m["content"] for m in ctx["recent_messages"]] == ["msg 1", "msg 2", "msg 3"]
    assert ctx["pending_summary"] == 2
    assert ctx["ttl_expires_at"] > ctx["updated_at"]
