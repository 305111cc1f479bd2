"""Dashboards over rollups: a period reads the rollups of its rolled-up days and the facts of
the others (today, dirty days), so every RPC answers the same before and after the job; a
late fact shows at once and the job keeps it; FRT percentiles are the exact percentile_cont
of the raw first responses; the ranking flag scopes agents on rolled-up days too."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest

from inbox_db.inbox_support import (
    AGENT,
    OWNER,
    TEAM,
    TENANT,
    customer,
    handoff,
    member_id,
    new_agent,
    presence,
)
from support import Db

# first response times (seconds) of the served conversations: duplicates and a long tail, an
# even count, so p50 and p90 fall between two values
_FRT = (30, 45, 45, 120, 600, 61, 7, 3600)
_DASHBOARD = {
    "summary": "select public.analytics_summary(%(t)s, %(lo)s, %(hi)s) as s",
    "volumes": "select * from public.analytics_volumes(%(t)s, %(lo)s, %(hi)s)",
    "leaderboard": "select * from public.analytics_agent_leaderboard(%(t)s, %(lo)s, %(hi)s)",
    "ai_costs": "select * from public.analytics_ai_costs(%(t)s, %(lo)s, %(hi)s) order by bot_id, feature",
}


def today(db: Db) -> date:
    day: date = db.value(
        "select (now() at time zone timezone)::date from public.tenants where id = %s", (TENANT,)
    )
    return day


def shift(db: Db, conv: str, days: int) -> None:
    """Moves a conversation's facts `days` back in time (as a backfill or an import would)."""
    back = timedelta(days=days)
    db.sql(
        "update public.conversations set created_at = created_at - %(b)s,"
        " first_message_at = first_message_at - %(b)s, last_message_at = last_message_at - %(b)s,"
        " handoff_at = handoff_at - %(b)s,"
        " assigned_at = assigned_at - %(b)s, resolved_at = resolved_at - %(b)s,"
        " csat_answered_at = csat_answered_at - %(b)s where id = %(c)s",
        {"b": back, "c": conv},
    )
    db.sql(
        "update public.conversation_metrics set needs_human_at = needs_human_at - %(b)s,"
        " first_response_at = first_response_at - %(b)s where conversation_id = %(c)s",
        {"b": back, "c": conv},
    )
    db.sql("update public.messages set created_at = created_at - %s where conversation_id = %s", (back, conv))


def ai_call(db: Db, conv: str, feature: str, brl: str, at_day: date) -> None:
    db.sql(
        "insert into public.ai_usage (tenant_id, conversation_id, bot_id, model_id, provider, model,"
        " api_type, feature, outcome, input_tokens, output_tokens, cost_brl, created_at)"
        " select %(t)s, %(c)s, (select id from public.bots where tenant_id = %(t)s order by id limit 1),"
        " (select id from public.ai_models order by id limit 1), 'openai', 'gpt', 'chat', %(f)s, 'success',"
        " 900, 120, %(brl)s, (%(d)s::date + time '11:00') at time zone 'America/Sao_Paulo'",
        {"t": TENANT, "c": conv, "f": feature, "brl": brl, "d": at_day},
    )


def history(db: Db) -> tuple[date, date, str]:
    """Three days of service: conversations handed to the team and served by Bruno or Carla
    (first responses of _FRT), some resolved and rated, bot-only ones, AI calls on two features.
    Returns the period (two days back to today) and Carla's user id."""
    presence(db, AGENT, "online")
    carla = new_agent(db, "Carla", TEAM, capacity=20)
    presence(db, carla, "online")
    db.sql("update public.members set max_concurrent_conversations = 20 where tenant_id = %s", (TENANT,))
    day = today(db)
    for i, seconds in enumerate(_FRT):
        conv = str(handoff(db, customer(db))["id"])
        agent = AGENT if i % 2 else carla
        current = db.value("select assignee_id from public.conversations where id = %s", (conv,))
        if str(current) != member_id(db, agent):  # the assigner may have picked the other one
            move = "assign_conversation" if current is None else "transfer_conversation"
            with db.as_user(OWNER) as s:
                s.all(f"select public.{move}(%s, %s)", (conv, member_id(db, agent)))
        with db.as_user(agent) as s:
            s.all(
                'select public.send_message(%s, \'{"type": "text", "text": {"body": "Olá!"}}\')',
                (conv,),
            )
            if i % 3 == 0:
                s.all("select public.resolve_conversation(%s, false)", (conv,))
        db.sql(
            "update public.conversation_metrics set first_response_seconds = %s where conversation_id = %s",
            (seconds, conv),
        )
        if i % 4 == 0:
            db.sql(
                "update public.conversations set csat = %s, csat_answered_at = now() where id = %s",
                (1 + i % 5, conv),
            )
        ai_call(db, conv, "bot.reply" if i % 2 else "summary", f"0.0{i + 1}", day)
        shift(db, conv, i % 3)
    for i in range(3):  # the bot resolves these alone
        bot_conv = customer(db, "Qual o horário?")
        db.sql("update public.conversations set status = 'resolved' where id = %s", (bot_conv,))
        shift(db, bot_conv, i)
    # AI calls of the past days are recorded on their day (ai_usage is append-only)
    for i, conv in enumerate(db.sql("select id from public.conversations where tenant_id = %s", (TENANT,))):
        ai_call(db, str(conv["id"]), "bot.reply", "0.0123456789", day - timedelta(days=i % 3))
    return day - timedelta(days=2), day, str(carla)


def dashboards(db: Db, user: Any, lo: date, hi: date) -> dict[str, Any]:
    with db.as_user(user) as s:
        return {name: s.all(sql, {"t": TENANT, "lo": lo, "hi": hi}) for name, sql in _DASHBOARD.items()}


def clean(db: Db, day: date) -> bool:
    return bool(
        db.value(
            "select exists (select from public.analytics_days"
            " where tenant_id = %s and day = %s and not dirty)",
            (TENANT, day),
        )
    )


def test_every_dashboard_reads_the_same_before_and_after_the_rollup(db: Db) -> None:
    lo, hi, _ = history(db)
    past = [lo, lo + timedelta(days=1)]
    assert not any(clean(db, d) for d in past)  # nothing rolled up yet: all from the facts
    before = dashboards(db, OWNER, lo, hi)
    summary = before["summary"][0]["s"]
    raw = db.sql(
        "select percentile_cont(0.5) within group (order by first_response_seconds) as p50,"
        " percentile_cont(0.9) within group (order by first_response_seconds) as p90"
        " from public.conversation_metrics where tenant_id = %s and first_response_at >= %s",
        (TENANT, lo - timedelta(days=1)),
    )[0]
    assert (summary["frt_p50_seconds"], summary["frt_p90_seconds"]) == (raw["p50"], raw["p90"])
    assert summary["conversations_new"] == len(_FRT) + 3 and summary["bot_contained"] >= 3
    assert sum(r["calls"] for r in before["ai_costs"]) == summary["ai_calls"] > len(_FRT)
    assert all(v["messages_in"] > 0 for v in before["volumes"])  # each day has its facts

    db.value("select private.run_job('analytics_rollup')")
    assert all(clean(db, d) for d in past) and not clean(db, hi)  # today stays live
    assert db.value(
        "select count(*) from public.analytics_daily_tenant where tenant_id = %s and day = any(%s)",
        (TENANT, past),
    ) == len(past)
    assert dashboards(db, OWNER, lo, hi) == before

    # the rolled-up days are read from the rollups, not recomputed
    db.sql(
        "update public.analytics_daily set messages_in = messages_in + 1000"
        " where tenant_id = %s and day = %s and member_id is not null",
        (TENANT, lo),
    )
    tampered = dashboards(db, OWNER, lo, hi)["summary"][0]["s"]
    changed_rows = db.value(
        "select count(*) from public.analytics_daily"
        " where tenant_id = %s and day = %s and member_id is not null",
        (TENANT, lo),
    )
    assert tampered["messages_in"] == summary["messages_in"] + 1000 * changed_rows > summary["messages_in"]


def test_a_late_fact_shows_at_once_and_the_job_keeps_it(db: Db) -> None:
    lo, hi, _ = history(db)
    db.value("select private.run_job('analytics_rollup')")
    rolled = dashboards(db, OWNER, lo, hi)
    yesterday = hi - timedelta(days=1)
    conv = db.value(
        "select c.id from public.conversations c"
        " join public.conversation_metrics m on m.conversation_id = c.id"
        " where c.tenant_id = %s and (c.created_at at time zone 'America/Sao_Paulo')::date = %s"
        " order by c.id limit 1",
        (TENANT, yesterday),
    )
    # a message of yesterday arrives today, a first response of yesterday is corrected,
    # an AI call of yesterday is recorded late
    db.sql(
        "insert into public.messages (tenant_id, conversation_id, contact_id, whatsapp_number_id, direction,"
        " sender_type, type, content, status, created_at)"
        " select tenant_id, id, contact_id, whatsapp_number_id, 'inbound', 'contact', 'text', 'atrasada',"
        " 'received', (%s::date + time '12:00') at time zone 'America/Sao_Paulo' from public.conversations"
        " where id = %s",
        (yesterday, conv),
    )
    db.sql(
        "update public.conversation_metrics set first_response_seconds = 9000, first_response_at ="
        " (%s::date + time '12:30') at time zone 'America/Sao_Paulo' where conversation_id = %s",
        (yesterday, conv),
    )
    ai_call(db, conv, "intent", "0.5", yesterday)
    assert not clean(db, yesterday)
    late = dashboards(db, OWNER, lo, hi)
    summary, before = late["summary"][0]["s"], rolled["summary"][0]["s"]
    assert summary["messages_in"] == before["messages_in"] + 1
    assert summary["frt_p90_seconds"] > before["frt_p90_seconds"]
    assert {r["feature"] for r in late["ai_costs"]} == {r["feature"] for r in rolled["ai_costs"]} | {"intent"}
    assert [v["messages_in"] for v in late["volumes"]] == [
        v["messages_in"] + (v["day"] == yesterday) for v in rolled["volumes"]
    ]
    db.value("select private.run_job('analytics_rollup')")
    assert clean(db, yesterday)
    assert dashboards(db, OWNER, lo, hi) == late


@pytest.mark.parametrize("visible", [False, True])
def test_the_ranking_flag_scopes_agents_on_rolled_up_days(db: Db, visible: bool) -> None:
    lo, hi, carla = history(db)
    db.sql(
        "update public.tenants set feature_flags = feature_flags"
        " || jsonb_build_object('ranking_visibility', %s::boolean) where id = %s",
        (visible, TENANT),
    )
    period = {"t": TENANT, "lo": lo, "hi": hi}
    board = _DASHBOARD["leaderboard"]

    def seen() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        with db.as_user(carla) as s:
            mine = s.all(board, period)
        with db.as_user(OWNER) as s:
            everyone = s.all(board, period)
        return mine, everyone

    live_mine, live_all = seen()
    db.value("select private.run_job('analytics_rollup')")
    assert clean(db, lo)
    mine, everyone = seen()
    assert (mine, everyone) == (live_mine, live_all)
    assert {str(r["member_id"]) for r in everyone} >= {member_id(db, AGENT), member_id(db, carla)}
    expected = everyone if visible else [r for r in everyone if str(r["member_id"]) == member_id(db, carla)]
    assert mine == expected and len(mine) == (len(everyone) if visible else 1)


def test_frt_percentiles_are_percentile_cont_of_the_raw_first_responses(db: Db) -> None:
    """Any window, before and after the rollup: p50 and p90 equal percentile_cont over the
    conversations' first responses, interpolation included (the daily histograms are exact)."""
    day = today(db)
    db.sql(
        "with c as (insert into public.contacts (tenant_id, wa_id)"
        "  select %(t)s, (5511400000000 + g)::text from generate_series(1, 240) g returning id, wa_id),"
        " v as (insert into public.conversations (tenant_id, contact_id, status, created_at)"
        "  select %(t)s, c.id, 'open', (%(d)s::date - (c.wa_id::bigint %% 6)::integer + time '10:00')"
        "   at time zone 'America/Sao_Paulo' from c returning id, created_at, contact_id)"
        " insert into public.conversation_metrics (tenant_id, conversation_id, needs_human_at,"
        "  first_response_at, first_response_seconds)"
        " select %(t)s, v.id, v.created_at, v.created_at + interval '1 hour',"
        "  (w.wa_id::bigint %% 1000) * (w.wa_id::bigint %% 1000) * 31 %% 613"
        " from v join c w on w.id = v.contact_id",
        {"t": TENANT, "d": day},
    )

    def both(lo: date, hi: date) -> tuple[Any, Any]:
        with db.as_user(OWNER) as s:
            summary = s.value("select public.analytics_summary(%s, %s, %s)", (TENANT, lo, hi))
        raw = db.value(
            "select percentile_cont(array[0.5, 0.9]) within group (order by m.first_response_seconds)"
            " from public.conversation_metrics m join public.tenants t on t.id = m.tenant_id"
            " where m.tenant_id = %s"
            " and (m.first_response_at at time zone t.timezone)::date between %s and %s",
            (TENANT, lo, hi),
        )
        return [summary["frt_p50_seconds"], summary["frt_p90_seconds"]], raw

    windows = [(day - timedelta(days=5), day), (day - timedelta(days=4), day - timedelta(days=2)), (day, day)]
    for lo, hi in windows:
        mine, raw = both(lo, hi)
        assert mine == raw and raw[0] is not None
    db.value("select private.run_job('analytics_rollup')")
    assert all(clean(db, day - timedelta(days=k)) for k in range(1, 6))
    for lo, hi in windows:
        mine, raw = both(lo, hi)
        assert mine == raw
