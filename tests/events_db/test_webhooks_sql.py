"""Webhook endpoints and deliveries through SQL as the roles that use them: admins create
and re-key endpoints (secrets never readable), events fan out to deliveries, the retry
schedule, the 5-day disable with an alert, replay."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from support import Db
from whatsapp_db.webhooks import AGENT, OWNER, TENANT, body, change, ingest, text

URL = "https://hooks.example.com/zapbase"


def create(db: Db, types: list[str], url: str = URL, user: str = OWNER) -> dict[str, Any]:
    with db.as_user(user) as s:
        created: dict[str, Any] = s.value("select public.create_webhook_endpoint(%s, 'CRM', %s, %s)",
                                          (TENANT, url, types))
    return created


def claim(db: Db, batch: int = 10) -> list[dict[str, Any]]:
    with db.as_service() as s:
        return s.all("select * from public.webhooks_claim('test', %s, 60)", (batch,))


def record(db: Db, row: dict[str, Any], status_code: int | None, error: str | None = None) -> str:
    outcome = {"delivery_id": str(row["delivery_id"]), "attempt_id": str(row["attempt_id"]),
               "attempt": row["attempt"], "status_code": status_code, "duration_ms": 12,
               "response_body": "ok", "error": error}
    with db.as_service() as s:
        result: str = s.value("select status from public.webhooks_record(%s)", (Jsonb([outcome]),))
    return result


def test_an_admin_creates_an_endpoint_and_sees_its_secret_once(db: Db) -> None:
    created = create(db, ["message.*", "conversation.created"])
    assert created["secret"].startswith("whsec_") and len(created["secret"]) > 40
    with db.as_user(OWNER) as s:
        row = s.one("select id, url, enabled from public.webhook_endpoints")
        assert str(row["id"]) == created["id"] and row["enabled"]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            s.all("select secret_id from public.webhook_endpoints")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(OWNER) as s:
        s.all("update public.webhook_endpoints set secret_id = gen_random_uuid()")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(AGENT) as s:
        s.all("select public.create_webhook_endpoint(%s, 'x', %s, '{*}')", (TENANT, URL))
    with db.as_user(AGENT) as s:
        assert s.value("select count(*) from public.webhook_endpoints") == 0


@pytest.mark.parametrize(("url", "types", "message"), [
    ("http://hooks.example.com/x", ["*"], "must use https://"),
    ("https://hooks.example.com/x", ["message.nope"], 'unknown event type "message.nope"'),
    ("ftp://hooks.example.com/x", ["*"], "must use https://"),
])
def test_bad_endpoints_are_refused(db: Db, url: str, types: list[str], message: str) -> None:
    with pytest.raises(psycopg.Error) as caught:
        create(db, types, url)
    assert message in str(caught.value)


def test_events_fan_out_to_subscribed_endpoints_once_each(db: Db) -> None:
    everything = create(db, ["*"])
    messages = create(db, ["message.*"])
    ingest(db, body(change(messages=[text("oi")])))
    rows = claim(db)
    by_endpoint: dict[str, list[str]] = {}
    for row in rows:
        by_endpoint.setdefault(str(row["endpoint_id"]), []).append(row["event_type"])
    assert sorted(by_endpoint[everything["id"]]) == [
        "contact.created", "conversation.created", "message.received"]
    assert by_endpoint[messages["id"]] == ["message.received"]
    received = next(r for r in rows if r["event_type"] == "message.received")
    assert received["body"]["type"] == "message.received" and received["body"]["data"]["content"] == "oi"
    assert received["body"]["id"] == str(received["event_id"])
    assert received["secrets"] == [messages["secret"] if str(received["endpoint_id"]) == messages["id"]
                                   else everything["secret"]]
    assert claim(db) == []  # leased


def test_retry_schedule_final_4xx_and_success(db: Db) -> None:
    create(db, ["message.received"])
    ingest(db, body(change(messages=[text("oi")])))
    row = claim(db)[0]
    assert record(db, row, 503) == "pending"
    delivery = db.sql("select * from public.webhook_deliveries")[0]
    assert delivery["last_error"] == "HTTP 503"
    assert 4 <= (delivery["next_attempt_at"] - delivery["updated_at"]).total_seconds() <= 6  # 5 s
    db.sql("update public.webhook_deliveries set next_attempt_at = now()")
    row = claim(db)[0]
    assert (row["attempt"], record(db, row, None, "timed out after 15 s")) == (2, "pending")
    db.sql("update public.webhook_deliveries set next_attempt_at = now()")
    assert record(db, claim(db)[0], 410) == "failed"
    attempts = db.sql("select attempt, status_code, error from public.webhook_attempts order by attempt")
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 503), (2, None), (3, 410)]
    # an admin replays it: same webhook-id, a fresh schedule
    delivery_id = db.value("select id from public.webhook_deliveries")
    with db.as_user(OWNER) as s:
        replayed = s.one("select * from public.replay_webhook_delivery(%s)", (delivery_id,))
        assert replayed["status"] == "pending"
    row = claim(db)[0]
    assert (row["attempt"], record(db, row, 200)) == (1, "succeeded")
    assert claim(db) == []
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(AGENT) as s:
        s.all("select public.replay_webhook_delivery(%s)", (delivery_id,))


def test_eight_attempts_then_failed(db: Db) -> None:
    create(db, ["message.received"])
    ingest(db, body(change(messages=[text("oi")])))
    statuses = []
    for _ in range(8):
        db.sql("update public.webhook_deliveries set next_attempt_at = now()")
        statuses.append(record(db, claim(db)[0], 500))
    assert statuses == ["pending"] * 7 + ["failed"]


def test_a_late_result_of_an_expired_lease_is_logged_but_changes_nothing(db: Db) -> None:
    create(db, ["message.received"])
    ingest(db, body(change(messages=[text("oi")])))
    first = claim(db)[0]
    db.sql("update public.webhook_deliveries set lease_until = now() - interval '1 second'")
    second = claim(db)[0]  # the lease expired: another worker took it
    assert record(db, second, 200) == "succeeded"
    assert record(db, first, 500) == "succeeded"
    assert db.value("select count(*) from public.webhook_attempts") == 2


def test_an_attempt_recorded_again_after_a_lost_reply_is_logged_once(db: Db) -> None:
    create(db, ["message.received"])
    ingest(db, body(change(messages=[text("oi")])))
    row = claim(db)[0]
    assert record(db, row, 503) == "pending"
    assert record(db, row, 503) == "pending"  # the same round again: the first reply was lost
    assert db.value("select count(*) from public.webhook_attempts") == 1
    assert db.value("select next_attempt_at > now() from public.webhook_deliveries")  # scheduled once


def test_an_endpoint_deleted_while_its_round_is_recorded_does_not_deadlock(db: Db) -> None:
    # An admin deletes the endpoint (PostgREST DELETE: the endpoint row, then its deliveries by
    # cascade) while the deliverer records a round that touches the same rows.
    endpoint = create(db, ["*"])
    ingest(db, body(change(messages=[text("oi")])))
    rows = claim(db)
    outcomes = Jsonb([{"delivery_id": str(r["delivery_id"]), "attempt_id": str(r["attempt_id"]),
                       "attempt": r["attempt"], "status_code": 200, "duration_ms": 5} for r in rows])
    results: list[Any] = []

    def deliverer() -> None:
        try:
            with db.as_service() as s:
                results.extend(s.all("select status from public.webhooks_record(%s)", (outcomes,)))
        except BaseException as exc:  # reported by the assertion below
            results.append(exc)

    with db.as_user(OWNER) as s:
        s.all("select 1 from public.webhook_endpoints where id = %s for update", (endpoint["id"],))
        thread = threading.Thread(target=deliverer)
        thread.start()
        deadline = time.monotonic() + 10
        while not db.value("select count(*) from pg_locks where not granted") and time.monotonic() < deadline:
            time.sleep(0.01)
        s.all("delete from public.webhook_endpoints where id = %s", (endpoint["id"],))
    thread.join(10)
    assert [r["status"] for r in results] == ["deleted"] * len(rows)
    assert db.value("select count(*) from public.webhook_attempts") == 0


def test_an_endpoint_failing_for_five_days_is_disabled_with_an_alert(db: Db) -> None:
    endpoint = create(db, ["message.received"])
    ingest(db, body(change(messages=[text("oi")])))
    db.sql("update public.webhook_endpoints set failing_since = now() - interval '5 days 1 minute'")
    record(db, claim(db)[0], 500)
    row = db.sql("select enabled, disabled_reason from public.webhook_endpoints")[0]
    assert not row["enabled"] and row["disabled_reason"].startswith("failing since")
    alert = db.sql("select type, payload from public.alerts where type = 'webhook.endpoint_disabled'")
    assert alert and alert[0]["payload"]["endpoint_id"] == endpoint["id"]
    assert claim(db) == []  # a disabled endpoint gets nothing
    with db.as_user(OWNER) as s:  # re-enabled: healthy again, and the pending retry goes out
        s.all("update public.webhook_endpoints set enabled = true")
    row = db.sql("select disabled_reason, failing_since from public.webhook_endpoints")[0]
    assert row == {"disabled_reason": None, "failing_since": None}


def test_rotation_signs_with_both_secrets_during_the_overlap(db: Db) -> None:
    endpoint = create(db, ["message.received"])
    with db.as_user(OWNER) as s:
        new = s.value("select public.rotate_webhook_secret(%s, interval '1 hour')", (endpoint["id"],))
    ingest(db, body(change(messages=[text("oi")])))
    assert claim(db)[0]["secrets"] == [new, endpoint["secret"]]
    db.sql("update public.webhook_endpoints set previous_secret_expires_at = now() - interval '1 second'")
    db.sql("update public.webhook_deliveries set status = 'pending', next_attempt_at = now()")
    assert claim(db)[0]["secrets"] == [new]


def test_deliveries_and_attempts_are_visible_to_admins_only(db: Db) -> None:
    create(db, ["message.received"])
    ingest(db, body(change(messages=[text("oi")])))
    record(db, claim(db)[0], 500)
    with db.as_user(OWNER) as s:
        assert s.value("select count(*) from public.webhook_deliveries") == 1
        assert s.value("select response_body from public.webhook_attempts") == "ok"
    with db.as_user(AGENT) as s:
        assert s.value("select count(*) from public.webhook_attempts") == 0
