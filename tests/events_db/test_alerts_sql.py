"""Alert delivery through SQL as the roles that use it: an alert fans out to e-mail rows (the
tenant's notification addresses), push rows (managers' devices) and alert.created webhook
deliveries; senders claim and record on the webhooks' schedule; delivered_at waits for every
channel; managers read the rows, agents and other tenants do not."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from support import Db
from whatsapp_db.webhooks import AGENT, OWNER, TENANT


def alert(db: Db, title: str = "Orçamento de IA em 80%") -> str:
    """An alert raised the way modules raise them (a trigger or job, as postgres)."""
    alert_id: str = db.value(
        "insert into public.alerts (tenant_id, type, priority, title, message)"
        " values (%s, 'budget.threshold', 'high', %s, 'R$ 8,00 de R$ 10,00') returning id", (TENANT, title))
    return alert_id


def claim(db: Db, channels: tuple[str, ...] = ("email",), batch: int = 10) -> list[dict[str, Any]]:
    with db.as_service() as s:
        return s.all("select * from public.alerts_claim('test', %s, %s, 60)", (list(channels), batch))


def record(db: Db, row: dict[str, Any], error: str | None = None, retryable: bool = True) -> str:
    with db.as_service() as s:
        status: str = s.value("select public.alerts_record(%s, %s, %s, %s)",
                              (row["delivery_id"], row["attempt"], error, retryable))
    return status


def delivered_at(db: Db, alert_id: str) -> Any:
    return db.value("select delivered_at from public.alerts where id = %s", (alert_id,))


@pytest.fixture
def channels(db: Db) -> dict[str, Any]:
    """Two notification addresses, the owner's phone and the agent's (agents get no push)."""
    with db.as_user(OWNER) as s:
        s.all("update public.tenants set notification_emails = %s where id = %s",
              (["alertas@lojademo.com.br", "Dona@LojaDemo.com.br"], TENANT))
        s.all("insert into public.push_tokens (tenant_id, user_id, token, platform)"
              " values (%s, %s, 'fcm-ana', 'web')", (TENANT, OWNER))
    with db.as_user(AGENT) as s:
        s.all("insert into public.push_tokens (tenant_id, user_id, token, platform)"
              " values (%s, %s, 'fcm-bruno', 'android')", (TENANT, AGENT))
    with db.as_user(OWNER) as s:
        endpoint: dict[str, Any] = s.value(
            "select public.create_webhook_endpoint(%s, 'Ops', %s, '{alert.*}')",
            (TENANT, "https://ops.lojademo.com.br/hooks"))
    return endpoint


def test_an_alert_fans_out_to_every_channel(db: Db, channels: dict[str, Any]) -> None:
    alert_id = alert(db)
    rows = db.sql("select channel, email, push_token_id, status from public.alert_deliveries"
                  " where alert_id = %s order by channel, email", (alert_id,))
    assert [(r["channel"], r["email"]) for r in rows] == [
        ("email", "alertas@lojademo.com.br"), ("email", "dona@lojademo.com.br"), ("push", None)]
    token = db.value("select token from public.push_tokens where id = %s", (rows[2]["push_token_id"],))
    assert token == "fcm-ana"
    hook = db.sql("select d.status from public.webhook_deliveries d join public.events e on e.id = d.event_id"
                  " where e.type = 'alert.created' and e.subject_id = %s", (alert_id,))
    assert [h["status"] for h in hook] == ["pending"]
    assert delivered_at(db, alert_id) is None
    mail = claim(db)
    assert sorted(m["email"] for m in mail) == ["alertas@lojademo.com.br", "dona@lojademo.com.br"]
    assert (mail[0]["title"], mail[0]["priority"], mail[0]["tenant_name"]) == (
        "Orçamento de IA em 80%", "high", "Loja Demo")
    push = claim(db, ("push",))
    assert [(p["push_token"], p["push_platform"], p["email"]) for p in push] == [("fcm-ana", "web", None)]


def test_delivered_at_waits_for_every_channel_then_is_set(db: Db, channels: dict[str, Any]) -> None:
    alert_id = alert(db)
    for row in claim(db, ("email", "push")):
        assert record(db, row) == "succeeded"
    assert delivered_at(db, alert_id) is None  # the webhook is still to go
    with db.as_service() as s:
        hook = s.one("select * from public.webhooks_claim('test', 10, 60)")
        assert hook["event_type"] == "alert.created" and hook["body"]["subject"]["id"] == str(alert_id)
        s.all("select public.webhooks_record(%s)", (Jsonb([{
            "delivery_id": str(hook["delivery_id"]), "attempt_id": str(hook["attempt_id"]),
            "attempt": hook["attempt"], "status_code": 410, "duration_ms": 5, "response_body": "gone"}]),))
    assert delivered_at(db, alert_id) is not None  # a final failure ends the channel too


def test_email_retries_follow_the_webhook_schedule_and_permanent_errors_are_final(
        db: Db, channels: dict[str, Any]) -> None:
    alert(db)
    first, second = claim(db)
    assert record(db, first, "SMTPServerDisconnected: Connection lost") == "pending"
    row = db.sql("select * from public.alert_deliveries where id = %s", (first["delivery_id"],))[0]
    assert row["last_error"] == "SMTPServerDisconnected: Connection lost" and row["attempts"] == 1
    assert 4 <= (row["next_attempt_at"] - row["updated_at"]).total_seconds() <= 6  # 5 s, as webhooks
    assert record(db, second, "550 5.1.1 mailbox unavailable", retryable=False) == "failed"
    statuses = []
    for _ in range(7):
        db.sql("update public.alert_deliveries set next_attempt_at = now() where id = %s",
               (first["delivery_id"],))
        statuses.append(record(db, claim(db)[0], "timed out"))
    assert statuses == ["pending"] * 6 + ["failed"]  # eight attempts in all


def test_a_late_result_of_an_expired_lease_changes_nothing(db: Db, channels: dict[str, Any]) -> None:
    alert(db)
    first, _ = claim(db)
    db.sql("update public.alert_deliveries set lease_until = now() - interval '1 second'"
           " where id = %s", (first["delivery_id"],))
    [second] = claim(db)  # the sender holding it died: another one takes it over
    assert (second["delivery_id"], second["attempt"]) == (first["delivery_id"], 2)
    assert record(db, second) == "succeeded"
    assert record(db, first, "timed out") == "succeeded"


def test_rows_nobody_sends_end_by_the_job_and_the_alert_settles(db: Db, channels: dict[str, Any]) -> None:
    alert_id = alert(db)
    with db.as_user(OWNER) as s:
        s.all("update public.webhook_endpoints set enabled = false")  # the webhook channel is paused
    db.sql("update public.alert_deliveries set created_at = now() - interval '28 hours'")
    assert db.value("select private.run_job('alert_deliveries')") == 3  # the last one settles the alert
    rows = db.sql("select channel, status, last_error from public.alert_deliveries order by channel")
    assert {r["status"] for r in rows} == {"failed"}
    assert rows[0]["last_error"].startswith("not sent: no SMTP sender")
    assert rows[2]["last_error"].startswith("not sent: no push sender claimed it within 27:35:05")
    assert delivered_at(db, alert_id) is not None
    job = db.sql("select last_status from public.job_schedules where name = 'alert_deliveries'")
    assert job == [{"last_status": "succeeded"}]


def test_an_alert_with_nowhere_to_go_is_delivered_as_raised(db: Db) -> None:
    alert_id = alert(db)
    assert db.value("select count(*) from public.alert_deliveries") == 0
    assert delivered_at(db, alert_id) is not None


def test_managers_read_deliveries_agents_and_other_tenants_do_not(db: Db, channels: dict[str, Any]) -> None:
    alert(db)
    with db.as_user(OWNER) as s:
        assert s.value("select count(*) from public.alert_deliveries") == 3
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(OWNER) as s:
        s.all("update public.alert_deliveries set status = 'succeeded'")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(OWNER) as s:
        s.all("select * from public.alerts_claim('me', '{email}')")
    with db.as_user(AGENT) as s:
        assert s.value("select count(*) from public.alert_deliveries") == 0
    stranger = db.create_user()
    db.create_tenant(stranger, "Outra")
    with db.as_user(stranger) as s:
        assert s.value("select count(*) from public.alert_deliveries") == 0


@pytest.mark.parametrize("emails", ["{not-an-address}", "{a@b.co,\"x y@b.co\"}", "{a@b.co,NULL}"])
def test_bad_notification_addresses_are_refused(db: Db, emails: str) -> None:
    with pytest.raises(psycopg.errors.CheckViolation), db.as_user(OWNER) as s:
        s.all("update public.tenants set notification_emails = %s where id = %s", (emails, TENANT))
