"""A customer's timestamp is believed only within reason: never more than 5 minutes after
the message was received, and it never holds the 24 h window open past receipt + 24 h."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from webhooks import body, change, ingest, message_row, status, text

from support import Db


def _window(db: Db) -> datetime:
    value: datetime = db.value("select window_expires_at from public.conversations")
    return value


def test_a_far_future_stamp_is_clamped_to_the_receive_time(db: Db) -> None:
    future = text("do ano 33658")
    future["timestamp"] = "999999999999"
    result = ingest(db, body(change(messages=[future])))
    assert result["messages"] == 1
    row = message_row(db, future["id"])  # psycopg could not even read year 33658 back
    received = datetime.now(UTC)
    assert abs(row["wa_timestamp"] - received) < timedelta(minutes=1)
    assert row["payload"]["timestamp"] == "999999999999"
    assert "receive time" in row["payload"]["zapbase_timestamp"]
    assert _window(db) <= received + timedelta(hours=24, minutes=1)


def test_a_slightly_early_clock_is_kept_but_never_extends_the_window(db: Db) -> None:
    ahead = text("relógio adiantado", at=240)
    ingest(db, body(change(messages=[ahead])))
    row = message_row(db, ahead["id"])
    assert row["wa_timestamp"] == datetime.fromtimestamp(int(ahead["timestamp"]), UTC)
    assert "zapbase_timestamp" not in row["payload"]
    assert _window(db) <= datetime.now(UTC) + timedelta(hours=24)


def test_an_old_stamp_is_kept_and_marked(db: Db) -> None:
    old = text("mensagem antiga", at=-40 * 86400)
    ingest(db, body(change(messages=[old])))
    row = message_row(db, old["id"])
    assert row["wa_timestamp"] == datetime.fromtimestamp(int(old["timestamp"]), UTC)
    assert "older than 30 days" in row["payload"]["zapbase_timestamp"]


def test_a_far_future_status_is_clamped_too(db: Db) -> None:
    st = status("wamid.UNKNOWN", "delivered")
    st["timestamp"] = "999999999999"
    ingest(db, body(change(statuses=[st])))
    occurred: datetime = db.value("select occurred_at from public.message_status_events")
    assert abs(occurred - datetime.now(UTC)) < timedelta(minutes=1)
