"""Batches cost linear time and bounded work: a contact, its conversation and its AI memory
are written once per batch whatever its size, and what lies past the limits of one webhook
body is kept, unapplied, with the reason."""

from __future__ import annotations

import json
import time

import pytest
from webhooks import INGEST_SQL, PHONE_NUMBER_ID, body, change, ingest, text

from support import Db

MARIA = "5511988887777"


@pytest.mark.parametrize("changes", [1, 300], ids=["one change", "a change per message"])
def test_a_batch_writes_its_contact_conversation_and_memory_once(db: Db, changes: int) -> None:
    # Rewriting one row per message makes each write walk the row's earlier versions of the
    # same transaction: 5,000 messages of one contact took 117 s.
    batch = [text(f"mensagem {n}", MARIA) for n in range(300)]
    size = len(batch) // changes
    payload = body(*(change(messages=batch[i:i + size]) for i in range(0, len(batch), size)))
    with db.as_service() as s:
        result = s.value(INGEST_SQL, (json.dumps(payload), PHONE_NUMBER_ID))
        writes = {r["relname"]: r["n_tup_upd"] for r in s.all(
            "select relname, n_tup_upd from pg_stat_xact_user_tables"
            " where relname in ('contacts', 'conversations', 'session_context')")}
    assert result["messages"] == 300
    assert all(n <= 2 for n in writes.values()), writes
    conv = db.sql("select message_count, unread_count, last_message_preview from public.conversations")[0]
    assert (conv["message_count"], conv["unread_count"]) == (300, 300)
    assert conv["last_message_preview"] == "mensagem 299"
    assert db.value("select total_messages from public.contacts") == 300
    memory = db.sql("select recent_messages, pending_summary from public.session_context")[0]
    assert [m["content"] for m in memory["recent_messages"]] == [f"mensagem {n}" for n in range(280, 300)]
    assert memory["pending_summary"] == 280


def test_many_malformed_items_are_quarantined_in_linear_time(db: Db) -> None:
    junk: list[object] = [{"id": f"x{n}"} for n in range(20_000)]
    started = time.perf_counter()
    with db.as_service() as s:  # took 109 s
        s.value("select set_config('statement_timeout', '8s', true)")
        raw = json.dumps(body(change(messages=junk)))
        result = s.value(INGEST_SQL, (raw, PHONE_NUMBER_ID))
    assert result["quarantined"] == 20_000 and time.perf_counter() - started < 8


def test_items_past_the_limit_of_one_body_are_kept_unapplied(db: Db) -> None:
    batch = [text(f"m{n}", f"55119{n % 40:08d}") for n in range(2_100)]
    result = ingest(db, body(change(messages=batch[:1_500]), change(messages=batch[1_500:])))
    assert result["messages"] == 2_000 and result["quarantined"] == 100
    kept = db.sql("select q from public.inbound_events e, jsonb_array_elements(e.quarantined) q")
    assert {k["q"]["reason"] for k in kept} == {"over the item limit of one webhook body"}
    assert sorted(k["q"]["item"]["id"] for k in kept) == sorted(m["id"] for m in batch[2_000:])


def test_changes_past_the_limit_of_one_body_are_kept_with_the_body(db: Db) -> None:
    changes = [change(messages=[text(f"m{n}", MARIA)]) for n in range(1_001)]  # Meta: one change per update
    payload = body(*changes)
    result = ingest(db, payload)
    assert result["events"] == 999 and result["messages"] == 999 and result["quarantined"] == 1
    raw = db.sql("select reason, raw_body from public.inbound_events where status = 'quarantined'")
    assert len(raw) == 1 and raw[0]["reason"].startswith("over the limit of 1000 entries and changes")
    assert json.loads(raw[0]["raw_body"]) == payload
