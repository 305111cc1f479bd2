"""SLA: business time over calendars, deadlines stored and recomputed, the pause while
waiting for the customer, responses met by messages, and the breach job's warnings,
breaches and alerts (through the job entry point)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from support import Db

TENANT = "00000000-0000-4000-b000-000000000001"  # seed: Loja Demo
MANAGER = "00000000-0000-4000-a000-000000000001"  # its owner
AGENT = "00000000-0000-4000-a000-000000000002"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def calendar(db: Db) -> str:
    """Mon-Fri 08:00-12:00 and 13:00-18:00 in São Paulo (UTC-3), Christmas off."""
    with db.as_user(MANAGER) as s:
        cal = s.value(
            "insert into public.business_calendars (tenant_id, name) values (%s, 'Comercial') returning id",
            (TENANT,),
        )
        for day in range(1, 6):
            s.all(
                "insert into public.business_calendar_hours"
                " (tenant_id, calendar_id, weekday, starts_at, ends_at)"
                " values (%(t)s, %(c)s, %(d)s, '08:00', '12:00'), (%(t)s, %(c)s, %(d)s, '13:00', '18:00')",
                {"t": TENANT, "c": cal, "d": day},
            )
        s.all(
            "insert into public.business_calendar_holidays (tenant_id, calendar_id, day, name)"
            " values (%s, %s, '2026-12-25', 'Natal')",
            (TENANT, cal),
        )
    return str(cal)


def policy(db: Db, **minutes: Any) -> str:
    with db.as_user(MANAGER) as s:
        return str(
            s.value(
                "insert into public.sla_policies (tenant_id, name, priority, calendar_id,"
                " first_response_minutes, next_response_minutes, resolution_minutes)"
                " values (%(t)s, 'Padrão', %(p)s, %(c)s, %(f)s, %(n)s, %(r)s)"
                " returning id",
                {
                    "t": TENANT,
                    "p": minutes.get("priority"),
                    "c": minutes.get("calendar"),
                    "f": minutes.get("first"),
                    "n": minutes.get("next"),
                    "r": minutes.get("resolution"),
                },
            )
        )


def ticket(db: Db, wa_id: str = "5511977776666", priority: str = "medium") -> dict[str, Any]:
    conversation, _ = db.create_conversation(wa_id)
    with db.as_user(AGENT) as s:
        return s.one(
            "select * from public.create_ticket(%s, 'Erro no PIX', priority => %s)", (conversation, priority)
        )


def run_job(db: Db, after: timedelta) -> int:
    with db.as_service() as s:
        return int(s.value("select private.run_job('sla_breach_alert', now() + %s)", (after,)))


@pytest.mark.parametrize(
    ("start", "seconds", "expected"),
    [
        ("2026-12-28 10:00", 5 * 3600, "2026-12-28 17:00"),  # Mon 07:00 local: 08-12, then 13-14
        (
            "2026-12-24 20:30",
            2 * 3600,
            "2026-12-28 12:30",
        ),  # Thu 17:30: 30 min, Christmas, weekend, Mon 09:30
        ("2026-12-28 15:30", 0, "2026-12-28 16:00"),  # Mon 12:30 local (lunch): the clock starts at 13:00
        ("2026-12-28 15:30", 60, "2026-12-28 16:01"),
    ],
)
def test_business_time_skips_lunch_nights_weekends_and_holidays(
    db: Db, start: str, seconds: int, expected: str
) -> None:
    cal = calendar(db)
    assert db.value("select private.business_add(%s, %s, %s)", (cal, utc(start), seconds)) == utc(expected)


def test_business_seconds_is_the_inverse(db: Db) -> None:
    cal = calendar(db)
    assert (
        db.value(
            "select private.business_seconds(%s, %s, %s)",
            (cal, utc("2026-12-24 20:30"), utc("2026-12-28 12:30")),
        )
        == 7200
    )
    assert (
        db.value(
            "select private.business_seconds(null, %s, %s)",
            (utc("2026-12-24 20:30"), utc("2026-12-24 21:30")),
        )
        == 3600
    )


def test_calendar_intervals_of_a_day_never_overlap(db: Db) -> None:
    cal = calendar(db)
    with pytest.raises(psycopg.errors.ExclusionViolation), db.as_user(MANAGER) as s:
        s.all(
            "insert into public.business_calendar_hours (tenant_id, calendar_id, weekday, starts_at, ends_at)"
            " values (%s, %s, 1, '11:00', '14:00')",
            (TENANT, cal),
        )


def test_deadlines_are_stored_from_the_most_specific_policy(db: Db) -> None:
    policy(db, first=60, resolution=600)
    policy(db, priority="critical", first=10, resolution=60)
    normal, urgent = ticket(db), ticket(db, "5511966665555", "critical")
    assert urgent["first_response_due_at"] - urgent["sla_started_at"] == timedelta(minutes=10)
    assert urgent["first_response_warn_at"] - urgent["sla_started_at"] == timedelta(minutes=8)
    assert urgent["sla_due_at"] == urgent["first_response_due_at"]
    assert urgent["sla_next_check_at"] == urgent["first_response_warn_at"]
    assert normal["resolution_due_at"] - normal["sla_started_at"] == timedelta(minutes=600)
    with db.as_user(AGENT) as s:  # a change of priority recomputes
        row = s.one(
            "update public.tickets set priority = 'critical' where id = %s returning *", (normal["id"],)
        )
    assert row["resolution_due_at"] - row["sla_started_at"] == timedelta(minutes=60)


def test_waiting_for_the_customer_pauses_the_clock(db: Db) -> None:
    policy(db, resolution=60)
    t = ticket(db)
    with db.as_user(AGENT) as s:
        s.all("update public.tickets set status = 'waiting_client' where id = %s", (t["id"],))
    assert db.value("select sla_next_check_at from public.tickets where id = %s", (t["id"],)) is None
    db.sql(
        "update public.tickets set sla_paused_at = sla_paused_at - interval '30 minutes' where id = %s",
        (t["id"],),
    )
    with db.as_user(AGENT) as s:
        row = s.one("update public.tickets set status = 'in_progress' where id = %s returning *", (t["id"],))
    assert row["sla_paused_seconds"] == pytest.approx(1800, abs=2)
    assert row["resolution_due_at"] - row["sla_started_at"] == pytest.approx(
        timedelta(minutes=90), abs=timedelta(seconds=2)
    )


def test_messages_meet_the_first_and_next_responses(db: Db) -> None:
    policy(db, first=30, next=15)
    t = ticket(db)
    with db.as_user(AGENT) as s:
        s.all(
            'select public.send_message(%s, \'{"type": "text", "text": {"body": "Vou verificar"}}\')',
            (t["conversation_id"],),
        )
    db.create_conversation("5511977776666", text="Ainda não funcionou")
    row = db.sql("select * from public.tickets where id = %s", (t["id"],))[0]
    assert row["first_response_at"] is not None and row["first_response_due_at"] is None
    assert row["next_response_cycle"] == 1
    assert row["next_response_due_at"] - row["awaiting_reply_since"] == timedelta(minutes=15)
    with db.as_user(AGENT) as s:
        s.all(
            'select public.send_message(%s, \'{"type": "text", "text": {"body": "Resolvido?"}}\')',
            (t["conversation_id"],),
        )
    met = db.sql(
        "select metric, cycle, occurred_at <= due_at as on_time from public.sla_events"
        " where ticket_id = %s and kind = 'met' order by metric",
        (t["id"],),
    )
    assert met == [
        {"metric": "first_response", "cycle": 0, "on_time": True},
        {"metric": "next_response", "cycle": 1, "on_time": True},
    ]
    assert db.value("select count(*) from public.events where type = 'ticket.sla_met'") == 2


def test_the_job_warns_then_breaches_once_with_alerts(db: Db) -> None:
    policy(db, first=10, resolution=120)
    t = ticket(db)
    assert run_job(db, timedelta(minutes=5)) == 0
    assert run_job(db, timedelta(minutes=9)) == 1  # 80 % of 10 min
    assert run_job(db, timedelta(minutes=9, seconds=30)) == 0
    assert run_job(db, timedelta(minutes=11)) == 1
    assert run_job(db, timedelta(minutes=11)) == 0
    events = db.sql(
        "select metric, kind from public.sla_events where ticket_id = %s order by occurred_at", (t["id"],)
    )
    assert events == [
        {"metric": "first_response", "kind": "warning"},
        {"metric": "first_response", "kind": "breach"},
    ]
    alerts = db.sql(
        "select type, priority, title from public.alerts where tenant_id = %s order by created_at", (TENANT,)
    )
    assert [(a["type"], a["priority"]) for a in alerts] == [
        ("ticket.sla_warning", "medium"),
        ("ticket.sla_breach", "high"),
    ]
    assert t["protocol"] in alerts[1]["title"]
    assert db.value("select count(*) from public.events where type = 'ticket.sla_breached'") == 1
    # next look: the resolution warning (96 min)
    row = db.sql(
        "select sla_next_check_at, resolution_warn_at from public.tickets where id = %s", (t["id"],)
    )[0]
    assert row["sla_next_check_at"] == row["resolution_warn_at"]
    assert (
        db.value(
            "select status from public.job_runs where job_name = 'sla_breach_alert'"
            " order by started_at desc limit 1"
        )
        == "succeeded"
    )


def test_a_policy_change_is_recorded_and_reapplied(db: Db) -> None:
    pid = policy(db, first=60)
    t = ticket(db)
    with db.as_user(MANAGER) as s:
        s.all("update public.sla_policies set first_response_minutes = 5 where id = %s", (pid,))
    row = db.sql("select * from public.tickets where id = %s", (t["id"],))[0]
    assert row["first_response_due_at"] - row["sla_started_at"] == timedelta(minutes=5)
    change = db.value(
        "select changes from public.audit_log where resource_type = 'sla_policies' and action = 'update'"
    )
    assert change["first_response_minutes"] == {"old": 60, "new": 5}
    assert db.value("select count(*) from public.events where type = 'sla_policy.changed'") == 2


def test_calendar_edits_move_the_deadlines_of_open_tickets(db: Db) -> None:
    cal = calendar(db)
    policy(db, calendar=cal, first=60)
    t = ticket(db)

    def due() -> tuple[datetime, datetime]:
        row = db.sql("select * from public.tickets where id = %s", (t["id"],))[0]
        expected = db.value("select private.business_add(%s, %s, 3600)", (cal, row["sla_started_at"]))
        return row["first_response_due_at"], expected

    before, _ = due()
    started = t["sla_started_at"].astimezone(UTC) - timedelta(hours=3)  # São Paulo's day
    with db.as_user(MANAGER) as s:  # the next ten days off: the deadline jumps past them
        s.all(
            "insert into public.business_calendar_holidays (tenant_id, calendar_id, day, name)"
            " select %s, %s, d::date, 'Recesso' from generate_series(%s::date, %s::date + 9, '1 day') d",
            (TENANT, cal, started.date(), started.date()),
        )
    holidays, expected = due()
    assert holidays == expected and holidays - before > timedelta(days=9)
    with db.as_user(MANAGER) as s:  # back to normal days, open from 08:00 to 09:00 only
        s.all(
            "delete from public.business_calendar_hours where calendar_id = %s and starts_at = '13:00'",
            (cal,),
        )
        s.all("update public.business_calendar_hours set ends_at = '09:00' where calendar_id = %s", (cal,))
        s.all(
            "delete from public.business_calendar_holidays where calendar_id = %s and name = 'Recesso'",
            (cal,),
        )
    reopened, expected = due()
    assert reopened == expected and reopened < holidays
    with db.as_user(MANAGER) as s:
        s.all("update public.business_calendars set timezone = 'Asia/Tokyo' where id = %s", (cal,))
    moved, expected = due()  # 09:00 in Tokyo is never 09:00 in São Paulo
    assert moved == expected and moved != reopened


def test_sla_events_are_append_only(db: Db) -> None:
    policy(db, first=1)
    t = ticket(db)
    run_job(db, timedelta(minutes=2))
    for statement in ("update public.sla_events set kind = 'met'", "delete from public.sla_events"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            db.sql(statement)
    assert db.value("select count(*) from public.sla_events where ticket_id = %s", (t["id"],)) == 1
