"""Schedules and jobs: cron arithmetic, the minute tick, one job_runs row per run, and the
jobs that keep conversations, AI memory and history tidy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from support import Db
from whatsapp_db.webhooks import OWNER, TENANT, body, change, ingest, text


def at(text_: str) -> datetime:
    return datetime.fromisoformat(text_).replace(tzinfo=UTC)


@pytest.mark.parametrize(("cron", "after", "expected"), [
    ("* * * * *", "2026-03-01 10:00:30", "2026-03-01 10:01:00"),
    ("*/5 * * * *", "2026-03-01 10:04:00", "2026-03-01 10:05:00"),
    ("*/5 * * * *", "2026-03-01 10:05:00", "2026-03-01 10:10:00"),
    ("0 3 * * *", "2026-03-01 03:00:00", "2026-03-02 03:00:00"),
    ("15,45 8-9 * * *", "2026-03-01 09:50:00", "2026-03-02 08:15:00"),
    ("0 9 * * 1-5", "2026-03-06 10:00:00", "2026-03-09 09:00:00"),  # Friday after 9 -> Monday
    ("0 0 * * 7", "2026-03-02 00:00:00", "2026-03-08 00:00:00"),  # 7 is Sunday too
    ("0 0 1 * 1", "2026-03-02 00:00:00", "2026-03-09 00:00:00"),  # day 1 OR Monday
    ("30 2 29 2 *", "2026-03-01 00:00:00", "2028-02-29 02:30:00"),
    ("10/20 * * * *", "2026-03-01 10:31:00", "2026-03-01 10:50:00"),
    ("59 23 31 12 *", "2026-12-31 23:59:00", "2027-12-31 23:59:00"),
])
def test_cron_next_follows_cron_rules(db: Db, cron: str, after: str, expected: str) -> None:
    assert db.value("select private.cron_next(%s, %s)", (cron, at(after))) == at(expected)


@pytest.mark.parametrize("cron", ["* * * *", "60 * * * *", "* 24 * * *", "0 0 31 2 *", "a * * * *",
                                  "5-1 * * * *"])
def test_bad_cron_expressions_are_refused(db: Db, cron: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        db.sql("update public.job_schedules set cron = %s where name = 'ai_cache_purge'", (cron,))


def test_every_job_is_registered_with_its_next_run(db: Db) -> None:
    rows = {r["name"]: r for r in db.sql("select * from public.job_schedules")}
    assert {"budget_period_reset", "ai_reservations_expire", "ai_cache_purge", "tts_cache_evict",
            "conversations_expire_idle", "session_context_cleanup", "whatsapp_retention",
            "events_retention"} <= set(rows)
    assert all(r["next_run_at"] is not None for r in rows.values())  # stored when registered
    assert rows["ai_cache_purge"]["next_run_at"].minute == 17
    assert rows["tts_cache_evict"]["runner"] == "worker"
    for r in rows.values():  # the function exists with the job signature
        if r["runner"] == "database":
            function = r["function_name"] + "(timestamptz)"
            assert db.value("select to_regprocedure(%s) is not null", (function,))


def test_the_tick_runs_due_jobs_once_records_each_run_and_moves_the_schedule(db: Db) -> None:
    db.sql("update public.job_schedules set enabled = false where name <> 'ai_cache_purge'")
    db.sql("update public.job_schedules set next_run_at = now() - interval '1 minute'")
    with db.as_service() as s:
        assert s.value("select private.run_due_jobs()") == 1
        assert s.value("select private.run_due_jobs()") == 0  # not due any more
    run = db.sql("select * from public.job_runs where job_name = 'ai_cache_purge'")
    assert [(r["status"], r["rows_affected"]) for r in run] == [("succeeded", 0)]
    schedule = db.sql("select * from public.job_schedules where name = 'ai_cache_purge'")[0]
    assert schedule["last_status"] == "succeeded" and schedule["next_run_at"] > datetime.now(UTC)
    assert schedule["next_run_at"].minute == 17


def test_a_failing_job_is_recorded_and_the_others_still_run(db: Db) -> None:
    db.sql("""create function private.job_broken(as_of timestamptz) returns integer language plpgsql
              as $$ begin raise exception 'disk on fire'; end $$""")
    db.sql("insert into public.job_schedules (name, description, cron, function_name)"
           " values ('broken', 'Fails.', '* * * * *', 'private.job_broken')")
    db.sql("update public.job_schedules set next_run_at = now() - interval '1 minute'"
           " where name in ('broken', 'session_context_cleanup')")
    db.sql("update public.job_schedules set enabled = false"
           " where name not in ('broken', 'session_context_cleanup')")
    with db.as_service() as s:
        assert s.value("select private.run_due_jobs()") == 2
    runs = {r["job_name"]: r for r in db.sql("select * from public.job_runs")}
    assert (runs["broken"]["status"], runs["broken"]["error"]) == ("failed", "disk on fire")
    assert runs["session_context_cleanup"]["status"] == "succeeded"
    assert db.value("select last_error from public.job_schedules where name = 'broken'") == "disk on fire"


def test_jobs_are_for_the_service_role_only(db: Db) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(OWNER) as s:
        s.all("select private.run_due_jobs()")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(OWNER) as s:
        s.all("select * from public.job_schedules")
    with db.as_user(OWNER) as s:  # but admins see their tenant's runs
        assert s.value("select count(*) from public.job_runs") == 0


def test_a_worker_job_is_handed_out_once_and_not_run_by_the_database(db: Db) -> None:
    db.sql("update public.job_schedules set next_run_at = now() + interval '1 hour' where runner = 'worker'")
    db.sql("update public.job_schedules set next_run_at = now() - interval '1 minute'"
           " where name = 'tts_cache_evict'")
    with db.as_service() as s:
        claimed = s.all("select private.claim_worker_jobs() as name")
        assert [r["name"] for r in claimed] == ["tts_cache_evict"]
        assert s.all("select private.claim_worker_jobs()") == []
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            s.all("select private.run_job('tts_cache_evict')")


def test_idle_conversations_expire_with_their_memory_and_an_event(db: Db) -> None:
    ingest(db, body(change(messages=[text("oi", "5511911112222", at=-5 * 3600)])))  # 5 h ago
    ingest(db, body(change(messages=[text("oi", "5511933334444", at=-60)])))  # a minute ago
    idle = db.value("select c.id from public.conversations c join public.contacts k on k.id = c.contact_id"
                    " where k.wa_id = '5511911112222'")
    assert db.value("select count(*) from public.session_context") == 2
    with db.as_service() as s:
        assert s.value("select private.run_job('conversations_expire_idle')") == 1
        assert s.value("select private.run_job('conversations_expire_idle')") == 0
    conv = db.sql("select status, close_reason, closed_at, last_message_at from public.conversations"
                  " where id = %s", (idle,))[0]
    assert (conv["status"], conv["close_reason"]) == ("expired", "idle")
    assert conv["closed_at"] == conv["last_message_at"] + timedelta(hours=4)
    assert db.value("select count(*) from public.session_context where conversation_id = %s", (idle,)) == 0
    assert db.value("select count(*) from public.events where subject_id = %s"
                    " and type = 'conversation.expired'", (idle,)) == 1
    # the customer writes again: a new conversation, the expired one stays closed
    ingest(db, body(change(messages=[text("voltei", "5511911112222")])))
    assert db.value("select count(*) from public.conversations c join public.contacts k"
                    " on k.id = c.contact_id where k.wa_id = '5511911112222'") == 2


def test_expired_ai_memory_is_cleaned(db: Db) -> None:
    ingest(db, body(change(messages=[text("oi")])))
    db.sql("update public.session_context set ttl_expires_at = now() - interval '1 second'")
    with db.as_service() as s:
        assert s.value("select private.run_job('session_context_cleanup')") == 1


def test_retention_follows_the_plan_and_the_tenants_shorter_setting(db: Db) -> None:
    ingest(db, body(change(messages=[text("oi")])))
    db.sql("update public.events set created_at = created_at - interval '100 days'"
           " where type = 'contact.created'")
    db.sql("update public.events set created_at = created_at - interval '20 days'"
           " where type = 'conversation.created'")
    db.sql("update public.inbound_events set received_at = received_at - interval '40 days'")
    with db.as_service() as s:
        assert s.value("select private.run_job('events_retention')") == 1  # plan: 90 days
        assert s.value("select private.run_job('whatsapp_retention')") == 1  # plan: 30 days
    db.sql("update public.tenants set settings = settings || '{\"retention_days\": {\"events\": 10}}'"
           " where id = %s", (TENANT,))
    with db.as_service() as s:
        assert s.value("select private.run_job('events_retention')") == 1
    assert [r["type"] for r in db.sql("select type from public.events where tenant_id = %s", (TENANT,))] == [
        "message.received"]
