"""Daily analytics: the rollup of a tenant-day from the facts the product keeps (a customer
through ingest, a handoff, an agent answering and resolving), idempotent; late facts mark
their day dirty and the job corrects it; the dashboard RPCs as managers and agents read
them (the ranking as the tenant's ranking_visibility flag allows)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import psycopg
import pytest

from inbox_db.inbox_support import AGENT, OWNER, TENANT, customer, handoff, member_id, new_agent, presence
from support import Db
from test_db_cli import assert_clean_failure, run

_FIGURES = (
    "whatsapp_number_id, team_id, member_id, bot_id, conversations_new, conversations_resolved,"
    " bot_contained, handoffs, messages_in, messages_out, frt_seconds_sum, frt_count,"
    " resolution_seconds_sum, resolution_count,"
    " queue_wait_seconds_sum, queue_wait_count, flow_completions, ai_calls, ai_cost_brl, csat_sum, csat_count"
)


def today(db: Db) -> date:
    day: date = db.value(
        "select (now() at time zone timezone)::date from public.tenants where id = %s", (TENANT,)
    )
    return day


def rows(db: Db, day: date) -> list[dict[str, Any]]:
    return db.sql(
        f"select {_FIGURES} from public.analytics_daily where tenant_id = %s and day = %s"
        f" order by {_FIGURES}",
        (TENANT, day),
    )


def total(db: Db, day: date, column: str) -> Any:
    return db.value(
        f"select coalesce(sum({column}), 0) from public.analytics_daily where tenant_id = %s and day = %s",
        (TENANT, day),
    )


def served_day(db: Db) -> str:
    """A customer handed off to the team, answered and resolved by the agent; a second
    customer stays with the bot and is resolved by it: the conversation it resolves."""
    presence(db, AGENT, "online")
    conv = str(handoff(db, customer(db))["id"])
    with db.as_user(AGENT) as s:
        s.all(
            'select public.send_message(%s, \'{"type": "text", "text": {"body": "Oi! Sou o Bruno."}}\')',
            (conv,),
        )
        s.all("select public.resolve_conversation(%s, false)", (conv,))
    bot_conv = customer(db, "Qual o horário?")
    db.sql("update public.conversations set status = 'resolved' where id = %s", (bot_conv,))
    return conv


def test_rollup_of_a_day_is_idempotent_and_adds_up(db: Db) -> None:
    served = served_day(db)
    day = today(db)
    db.value("select private.analytics_rollup(%s, %s)", (TENANT, day))
    first = rows(db, day)
    assert db.value("select private.analytics_rollup(%s, %s)", (TENANT, day)) == len(first)
    assert rows(db, day) == first  # same rows, not twice as many
    expected_in, expected_out = db.sql(
        "select count(*) filter (where m.direction = 'inbound') as i,"
        " count(*) filter (where m.direction = 'outbound') as o"
        " from public.messages m join public.tenants t on t.id = m.tenant_id where m.tenant_id = %s"
        " and (m.created_at at time zone t.timezone)::date = %s",
        (TENANT, day),
    )[0].values()
    assert (total(db, day, "messages_in"), total(db, day, "messages_out")) == (expected_in, expected_out)
    assert total(db, day, "handoffs") >= 1 and total(db, day, "bot_contained") >= 1
    agent_line = [r for r in first if str(r["member_id"]) == member_id(db, AGENT) and r["frt_count"]]
    metrics = db.sql("select * from public.conversation_metrics where conversation_id = %s", (served,))[0]
    assert agent_line and agent_line[0]["frt_seconds_sum"] == metrics["first_response_seconds"]
    # today is not over: it stays dirty, so the job finishes it after midnight
    assert (
        db.value("select dirty from public.analytics_days where tenant_id = %s and day = %s", (TENANT, day))
        is True
    )


def test_a_late_fact_corrects_its_day_through_the_job(db: Db) -> None:
    conv = customer(db)
    day = date.fromordinal(today(db).toordinal() - 1)
    db.value("select private.run_job('analytics_rollup')")
    before = total(db, day, "messages_in")
    assert (
        db.value("select dirty from public.analytics_days where tenant_id = %s and day = %s", (TENANT, day))
        is False
    )
    # a message of yesterday arrives today (e.g. a batch replayed from inbound_events)
    db.sql(
        "insert into public.messages (tenant_id, conversation_id, contact_id, whatsapp_number_id, direction,"
        " sender_type, type, content, status, created_at)"
        " select tenant_id, id, contact_id, whatsapp_number_id, 'inbound', 'contact', 'text', 'atrasada',"
        " 'received',"
        " (%s::date + time '12:00') at time zone 'America/Sao_Paulo' from public.conversations where id = %s",
        (day, conv),
    )
    assert (
        db.value("select dirty from public.analytics_days where tenant_id = %s and day = %s", (TENANT, day))
        is True
    )
    assert (
        db.value(
            "select count(*) from public.analytics_days where tenant_id = %s and day = %s and dirty",
            (TENANT, today(db)),
        )
        == 0
    )  # today is never marked: the live day writes nothing there
    db.value("select private.run_job('analytics_rollup')")
    assert total(db, day, "messages_in") == before + 1
    assert (
        db.value("select dirty from public.analytics_days where tenant_id = %s and day = %s", (TENANT, day))
        is False
    )
    run = db.sql(
        "select status, rows_affected from public.job_runs where job_name = 'analytics_rollup'"
        " order by started_at desc limit 1"
    )[0]
    assert run["status"] == "succeeded" and run["rows_affected"] >= 1


def test_dashboard_reads_for_managers_and_the_ranking_flag_for_agents(db: Db) -> None:
    served_day(db)
    other = new_agent(db, "Carla")
    carla = member_id(db, other)
    conv = customer(db, "Outra dúvida")
    db.sql("update public.conversations set assignee_id = %s, mode = 'human' where id = %s", (carla, conv))
    day = today(db)
    db.value("select private.analytics_rollup(%s, %s)", (TENANT, day))
    with db.as_user(OWNER) as s:
        summary = s.value("select public.analytics_summary(%s, %s, %s)", (TENANT, day, day))
        volumes = s.all(
            "select * from public.analytics_volumes(%s, %s, %s)", (TENANT, day.replace(day=1), day)
        )
        board = s.all("select * from public.analytics_agent_leaderboard(%s, %s, %s)", (TENANT, day, day))
    assert summary["conversations_new"] >= 3 and summary["handoffs"] >= 1
    assert summary["frt_p50_seconds"] is not None and summary["conversations_by_status"]["resolved"] >= 2
    assert 0 < summary["bot_containment_rate"] < 1
    assert len(volumes) == day.day and volumes[-1]["messages_in"] == summary["messages_in"]
    assert {str(r["member_id"]) for r in board} >= {member_id(db, AGENT), carla}
    with db.as_user(other) as s:
        own = s.all("select * from public.analytics_agent_leaderboard(%s, %s, %s)", (TENANT, day, day))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            s.all("select public.analytics_summary(%s, %s, %s)", (TENANT, day, day))
    assert [str(r["member_id"]) for r in own] == [carla]
    db.sql(
        "update public.tenants set feature_flags = feature_flags || '{\"ranking_visibility\": true}'"
        " where id = %s",
        (TENANT,),
    )
    with db.as_user(other) as s:
        everyone = s.all("select * from public.analytics_agent_leaderboard(%s, %s, %s)", (TENANT, day, day))
    assert len(everyone) == len(board)


def test_ai_cost_per_bot_and_feature(db: Db) -> None:
    conv = customer(db)
    bot = db.value("select id from public.bots where tenant_id = %s limit 1", (TENANT,))
    model = db.value("select id from public.ai_models limit 1")
    for feature, brl in (("bot.reply", "0.30"), ("bot.reply", "0.20"), ("summary", "0.05")):
        db.sql(
            "insert into public.ai_usage (tenant_id, conversation_id, bot_id, model_id, provider, model,"
            " api_type, feature, outcome, cost_brl)"
            " values (%s, %s, %s, %s, 'openai', 'gpt', 'chat', %s, 'success', %s)",
            (TENANT, conv, bot, model, feature, brl),
        )
    day = today(db)
    db.value("select private.analytics_rollup(%s, %s)", (TENANT, day))
    with db.as_user(OWNER) as s:
        costs = s.all("select * from public.analytics_ai_costs(%s, %s, %s)", (TENANT, day, day))
        summary = s.value("select public.analytics_summary(%s, %s, %s)", (TENANT, day, day))
    mine = {(str(r["bot_id"]), r["feature"]): (r["calls"], float(r["cost_brl"])) for r in costs}
    assert mine[(str(bot), "bot.reply")] == (2, 0.5) and mine[(str(bot), "summary")] == (1, 0.05)
    assert float(summary["ai_cost_brl"]) == pytest.approx(sum(float(r["cost_brl"]) for r in costs))


def test_report_cli_prints_the_demo_day_and_draws_the_chart(db: Db, tmp_path: Path) -> None:
    served_day(db)
    chart = tmp_path / "volumes.png"
    done = run(
        "report", "--tenant", TENANT, "--days", "30", "--png", str(chart), env={"DATABASE_URL": db.url}
    )
    assert done.returncode == 0, done.stderr
    summary = db.value("select public.analytics_summary(%s, %s, %s)", (TENANT, today(db), today(db)))
    assert "messages in / out" in done.stdout
    assert f"{summary['messages_in']} / {summary['messages_out']}" in done.stdout
    assert "Bruno" in done.stdout and str(today(db)) in done.stdout
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000
    assert_clean_failure(
        run("report", "--tenant", "00000000-0000-4000-b000-00000000ffff", env={"DATABASE_URL": db.url}),
        "no tenant",
    )
