"""whatsapp_receive and the backlog: a body is applied at once while the database keeps up;
during a burst (every ingest slot busy) it is kept durably and applied right after by
whatsapp_apply_backlog, in arrival order, with nothing lost."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import psycopg
from webhooks import NUMBER, PHONE_NUMBER_ID, body, change, message_row, text

from support import Db

RECEIVE_SQL = "select public.whatsapp_receive(%s::jsonb, %s)"
APPLY_SQL = "select public.whatsapp_apply_backlog(%s)"
SLOTS = 2  # private.ingest_slot


def receive(db: Db, payload: dict[str, object], signer: str | None = PHONE_NUMBER_ID) -> dict[str, object]:
    """whatsapp_receive as the webhook route calls it: the service role, one request."""
    with db.as_service() as s:
        result: dict[str, object] = s.value(RECEIVE_SQL, (json.dumps(payload), signer))
    return result


def apply_backlog(db: Db, batch_size: int = 20, lock_timeout: str = "0") -> dict[str, object]:
    with db.as_service() as s:
        s.value("select set_config('lock_timeout', %s, true)", (lock_timeout,))
        result: dict[str, object] = s.value(APPLY_SQL, (batch_size,))
    return result


@contextmanager
def busy_ingest(db: Db) -> Iterator[None]:
    """Every ingest slot held, as by concurrent webhooks still being applied."""
    with db.connect() as other:
        other.execute("select pg_advisory_lock(205, s) from generate_series(1, %s) s", (SLOTS,))
        try:
            yield
        finally:
            other.execute("select pg_advisory_unlock_all()")


def backlog(db: Db) -> list[dict[str, object]]:
    return db.sql("select * from public.inbound_backlog order by id")


def test_an_idle_database_applies_the_body_at_once(db: Db) -> None:
    m = text("Oi, tudo bem?")
    result = receive(db, body(change(messages=[m])))
    assert result["backlogged"] is False and result["messages"] == 1
    assert message_row(db, m["id"])["status"] == "received"
    assert backlog(db) == []


def test_a_burst_is_backlogged_then_applied_in_arrival_order(db: Db) -> None:
    first, second, third = text("primeira"), text("segunda"), text("terceira")
    with psycopg.connect(db.url, autocommit=True) as listener:
        listener.execute("listen zapbase_backlog")
        with busy_ingest(db):
            kept = receive(db, body(change(messages=[first])))
        notices = list(listener.notifies(timeout=2, stop_after=1))
    assert kept["backlogged"] is True and [n.channel for n in notices] == ["zapbase_backlog"]
    assert db.value("select count(*) from public.messages") == 0
    [row] = backlog(db)
    assert row["id"] == kept["backlog_id"] and row["signer"] == PHONE_NUMBER_ID

    # the slots are free again, but an earlier body still waits: later ones queue behind it
    assert receive(db, body(change(messages=[second])))["backlogged"] is True
    assert receive(db, body(change(messages=[third])))["backlogged"] is True

    assert apply_backlog(db, batch_size=2) == {"applied": 2, "messages": 2, "stalled": False}
    assert apply_backlog(db) == {"applied": 1, "messages": 1, "stalled": False}
    assert backlog(db) == []
    order = [r["content"] for r in db.sql("select content from public.messages order by created_at")]
    assert order == ["primeira", "segunda", "terceira"]
    assert db.value("select message_count from public.conversations where whatsapp_number_id = %s",
                    (NUMBER,)) == 3
    # applied as the route would have: the same event rows, and the next body goes straight in
    assert db.value("select count(*) from public.inbound_events where status = 'applied'") == 3
    assert receive(db, body(change(messages=[text("quarta")])))["backlogged"] is False


def test_a_backlogged_body_keeps_its_signer(db: Db) -> None:
    """Applied later, a body is still held to the app that signed it: the platform's app
    does not speak for a number under the tenant's own app."""
    m = text("assinado por outro app")
    with busy_ingest(db):
        receive(db, body(change(messages=[m])), signer=None)
    assert apply_backlog(db)["applied"] == 1
    assert db.value("select count(*) from public.messages") == 0
    assert db.value("select count(*) from public.inbound_events where status = 'quarantined'") == 1


def test_a_number_another_round_holds_is_skipped_and_other_numbers_apply(db: Db) -> None:
    other = "111222333444555"  # a number Zapbase does not know: applied as unroutable
    with busy_ingest(db):
        receive(db, body(change(messages=[text("Olá")])))
        receive(db, body(change(messages=[text("Oi")], phone_number_id=other)))
    with db.connect() as round_in_flight:
        round_in_flight.execute("select pg_advisory_lock(hashtextextended(%s, 0))",
                                (f"inbound_backlog:{PHONE_NUMBER_ID}",))
        assert apply_backlog(db) == {"applied": 1, "messages": 0, "stalled": False}
    assert [r["route_key"] for r in backlog(db)] == [PHONE_NUMBER_ID]
    assert db.value("select count(*) from public.inbound_events where status = 'unroutable'") == 1
    assert apply_backlog(db) == {"applied": 1, "messages": 1, "stalled": False}


def retry_now(db: Db) -> None:
    """The failed body's backoff is over."""
    db.sql("update public.inbound_backlog set retry_at = now() where retry_at is not null")


def test_a_body_that_fails_to_apply_holds_back_its_number_then_is_quarantined(db: Db) -> None:
    """A lock timeout (here: the number row held) stops the body and its number's later bodies
    until a backoff is over, so they keep their order; once the lock is gone both apply. A
    body failing every time is kept in quarantine with the error after five attempts, and
    the backlog moves on."""
    first, second = text("primeira"), text("segunda")
    with busy_ingest(db):
        receive(db, body(change(messages=[first])))
        receive(db, body(change(messages=[second])))
    with db.connect() as holder:
        holder.execute("select 1 from public.whatsapp_numbers where id = %s for update", (NUMBER,))
        assert apply_backlog(db, lock_timeout="100ms") == {"applied": 0, "messages": 0, "stalled": True}
    [held, waiting] = backlog(db)
    assert held["attempts"] == 1 and "lock" in str(held["last_error"]) and waiting["attempts"] == 0
    assert held["retry_at"] > held["received_at"]
    assert apply_backlog(db)["applied"] == 0  # backing off: the number waits, in order
    retry_now(db)
    assert apply_backlog(db) == {"applied": 2, "messages": 2, "stalled": False}
    assert [r["content"] for r in db.sql("select content from public.messages order by created_at")] == [
        "primeira", "segunda"]

    stuck = text("sempre falha")
    with busy_ingest(db):
        receive(db, body(change(messages=[stuck])))
        receive(db, body(change(messages=[text("depois")])))
    with db.connect() as holder:
        holder.execute("select 1 from public.whatsapp_numbers where id = %s for update", (NUMBER,))
        for _ in range(4):
            assert apply_backlog(db, lock_timeout="100ms")["stalled"] is True
            retry_now(db)
        assert apply_backlog(db, lock_timeout="100ms") == {"applied": 1, "messages": 0, "stalled": True}
    kept = db.sql("select reason from public.inbound_events where raw_body like %s", (f"%{stuck['id']}%",))
    assert len(kept) == 1 and "not applied after 5 attempts" in str(kept[0]["reason"])
    retry_now(db)
    assert apply_backlog(db) == {"applied": 1, "messages": 1, "stalled": False}


def test_the_schedule_applies_a_backlog_no_worker_applied(db: Db) -> None:
    with busy_ingest(db):
        receive(db, body(change(messages=[text("Olá")])))
    assert db.value("select private.job_inbound_backlog(now())") == 0  # fresh: the worker's
    assert db.value("select private.job_inbound_backlog(now() + %s)", (timedelta(minutes=2),)) == 1
    assert backlog(db) == [] and db.value("select count(*) from public.messages") == 1
