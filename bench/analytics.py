"""Daily analytics: (1) the rollup of one day of BENCH_ANALYTICS_MESSAGES messages (default
1,000,000) over 200 tenants, as the job runs it (analytics_rollup: every tenant's yesterday,
one private.analytics_rollup per tenant-day, all five kinds of facts), divided by a single
`insert … select` that groups the same day's messages (joined to their conversations) by
the same dimensions over all tenants at once; (2) the dashboard RPCs as the demo tenant's
owner (authenticated, RLS) over 90 days of rollups: p95 of each, goal <= 20 ms, divided by
the same 90 days read from the facts (every day dirty, as before any rollup); and over the
90 days to today, today read from the facts (a dashboard's default window).

    BENCH_ANALYTICS_MESSAGES=20000 python bench/run.py analytics    # a quick smoke run
"""

from __future__ import annotations

import json
import os
import time
from datetime import date, timedelta
from typing import Any

import psycopg

from harness import Context, Measure, median, percentile
from inbox import script

TENANTS = 200
MESSAGES = int(os.environ.get("BENCH_ANALYTICS_MESSAGES", "1000000"))
PER_CONVERSATION = 50
TENANT = "00000000-0000-4000-b000-000000000001"  # seed: Loja Demo
OWNER = "00000000-0000-4000-a000-000000000001"
ROUNDS = 3
DASHBOARD_DAYS = 90
SAMPLES = 60

# Bulk rows are written as a restore would (the tables' triggers off while loading), in the
# shape the triggers leave them: every conversation of the day has its metrics row, half
# were handed off to a team and answered by an agent, a third resolved, AI calls on most.
_DAY_SQL = """
insert into public.tenants (slug, name, plan_id)
select 'analytics-' || g, 'Analytics ' || g, (select id from public.plans where code = 'pro')
  from generate_series(1, %(tenants)s) g;
insert into public.whatsapp_numbers (tenant_id, phone_number, phone_number_id, waba_id, display_name)
select t.id, '+55118' || lpad(n::text, 8, '0'), (800000000 + n)::text, '800', t.name
  from (select id, name, row_number() over (order by id) as n
          from public.tenants where slug like 'analytics-%%') t;
insert into public.teams (tenant_id, name)
select t.id, 'Equipe ' || g from public.tenants t, generate_series(1, 3) g where t.slug like 'analytics-%%';
insert into auth.users (id, aud, role, email)
select gen_random_uuid(), 'authenticated', 'authenticated', 'analista' || g || '@bench.example'
  from generate_series(1, %(tenants)s * 5) g;
insert into public.members (tenant_id, user_id, role)
select t.id, u.id, 'agent'
  from (select id, row_number() over (order by id) - 1 as n from public.tenants
         where slug like 'analytics-%%') t
  join (select id, row_number() over (order by id) - 1 as n from auth.users where email like 'analista%%') u
    on u.n / 5 = t.n;
create temporary table bench_tenants as
select t.id as tenant_id, n.id as number_id,
       (select array_agg(x.id order by x.id) from public.teams x where x.tenant_id = t.id) as teams,
       (select array_agg(m.id order by m.id) from public.members m where m.tenant_id = t.id) as agents
  from public.tenants t join public.whatsapp_numbers n on n.tenant_id = t.id
 where t.slug like 'analytics-%%';
alter table public.contacts disable trigger user;
alter table public.conversations disable trigger user;
alter table public.messages disable trigger user;
alter table public.conversation_metrics disable trigger user;
alter table public.ai_usage disable trigger user;
create temporary table bench_conversations as
select gen_random_uuid() as id, b.tenant_id, b.number_id, b.teams[1 + g %% 3] as team_id,
       case when g %% 2 = 0 then b.agents[1 + g %% 5] end as agent_id, g,
       %(lo)s::timestamptz + (g * 7919 %% 82800) * interval '1 second' as created_at
  from bench_tenants b cross join generate_series(0, %(per_tenant)s - 1) g;
insert into public.contacts (id, tenant_id, wa_id, name)
select id, tenant_id, (5511600000000 + g)::text, 'Cliente ' || g from bench_conversations;
insert into public.conversations (id, tenant_id, contact_id, whatsapp_number_id, status, mode, team_id,
                                  assignee_id, assigned_at, handoff_at, first_message_at, last_message_at,
                                  resolved_at, csat, csat_answered_at, created_at)
select id, tenant_id, id, number_id, case when g %% 3 = 0 then 'resolved' else 'open' end,
       case when agent_id is null then 'bot' else 'human' end, team_id, agent_id,
       case when agent_id is not null then created_at + interval '3 minutes' end,
       case when agent_id is not null then created_at + interval '2 minutes' end,
       created_at, created_at + interval '50 minutes',
       case when g %% 3 = 0 then created_at + interval '55 minutes' end,
       case when g %% 6 = 0 then 1 + g %% 5 end,
       case when g %% 6 = 0 then created_at + interval '56 minutes' end,
       created_at
  from bench_conversations;
insert into public.conversation_metrics (tenant_id, conversation_id, team_id, needs_human_at,
                                         first_response_at, first_response_seconds, queue_entries,
                                         queue_wait_seconds, resolution_seconds, response_count,
                                         response_seconds_total)
select tenant_id, id, team_id, case when agent_id is not null then created_at + interval '2 minutes' end,
       created_at + (20 + g %% 300) * interval '1 second', 20 + g %% 300,
       (agent_id is not null)::integer, case when agent_id is not null then 60 else 0 end,
       case when g %% 3 = 0 then 3300 end, %(per_conversation)s / 2, 40 * %(per_conversation)s
  from bench_conversations;
insert into public.messages (tenant_id, conversation_id, contact_id, whatsapp_number_id, direction,
                             sender_type, sender_member_id, type, content, status, created_at)
select c.tenant_id, c.id, c.id, c.number_id, case when i %% 2 = 0 then 'inbound' else 'outbound' end,
       case when i %% 2 = 0 then 'contact' when c.agent_id is null then 'bot' else 'agent' end,
       case when i %% 2 = 1 then c.agent_id end, 'text', 'mensagem ' || i,
       case when i %% 2 = 0 then 'processed' else 'delivered' end, c.created_at + i * interval '1 minute'
  from bench_conversations c cross join generate_series(0, %(per_conversation)s - 1) i;
insert into public.ai_usage (tenant_id, conversation_id, model_id, provider, model, api_type, feature,
                             outcome, input_tokens, output_tokens, cost_brl, created_at)
select c.tenant_id, c.id, m.id, m.provider, m.model, 'chat', 'bot.reply', 'success', 900, 120, 0.0042,
       c.created_at + i * interval '2 minutes'
  from bench_conversations c cross join generate_series(1, 5) i
  cross join (select id, provider, model from public.ai_models order by id limit 1) m;
alter table public.contacts enable trigger user;
alter table public.conversations enable trigger user;
alter table public.messages enable trigger user;
alter table public.conversation_metrics enable trigger user;
alter table public.ai_usage enable trigger user;
analyze
"""

# The baseline: the same day's messages read once with their conversations and grouped by
# the rollup's dimensions, for every tenant at once, into a table of the same shape.
_BASELINE_SQL = """
insert into bench_rollup (tenant_id, day, whatsapp_number_id, team_id, member_id, bot_id, messages_in,
                          messages_out)
select m.tenant_id, %(day)s, m.whatsapp_number_id, c.team_id, coalesce(m.sender_member_id, c.assignee_id),
       c.bot_id,
       count(*) filter (where m.direction = 'inbound'), count(*) filter (where m.direction = 'outbound')
  from public.messages m
  join public.conversations c on c.tenant_id = m.tenant_id and c.id = m.conversation_id
 where m.created_at >= %(lo)s and m.created_at < %(hi)s and m.direction <> 'internal'
 group by 1, 2, 3, 4, 5, 6
"""

# 90 days of rollups for every tenant: the bulk tenants' days as rows (3 teams x 5 agents a
# day, marked rolled up), the demo tenant's days from its own facts (100 conversations a day
# served by its agents, 4 messages each, AI calls on three features) through the job, as
# production gets them; the demo tenant's facts run on to today, which dashboards read live.
_HISTORY_SQL = """
insert into public.analytics_daily (tenant_id, day, whatsapp_number_id, team_id, member_id, conversations_new,
  conversations_resolved, bot_contained, handoffs, messages_in, messages_out, frt_seconds_sum, frt_count,
  resolution_seconds_sum, resolution_count, queue_wait_seconds_sum, queue_wait_count, ai_calls, ai_cost_brl,
  csat_sum, csat_count)
select t.id, d::date, null, (select x.id from public.teams x where x.tenant_id = t.id order by x.id
                              offset k %% 3 limit 1),
       coalesce(m.id, md5(t.id::text || k)::uuid),
       7, 3, 1, 2, 170, 180, 900, 6, 9000, 3, 400, 3, 30, 0.12, 8, 2
  from public.tenants t
  cross join generate_series(%(first)s::date, %(last)s::date - 1, interval '1 day') d
  cross join generate_series(0, 14) k
  left join lateral (select x.id from public.members x where x.tenant_id = t.id order by x.id
                      offset k limit 1) m on true
 where t.slug like 'analytics-%%'
on conflict do nothing;
insert into public.analytics_days (tenant_id, day, dirty, rolled_at)
select t.id, d::date, false, now()
  from public.tenants t cross join generate_series(%(first)s::date, %(last)s::date, interval '1 day') d
 where t.slug like 'analytics-%%'
on conflict (tenant_id, day) do nothing;
alter table public.contacts disable trigger user;
alter table public.conversations disable trigger user;
alter table public.conversation_metrics disable trigger user;
alter table public.messages disable trigger user;
alter table public.ai_usage disable trigger user;
create temporary table bench_history as
select gen_random_uuid() as id, g,
       (select array_agg(x.id order by x.id) from public.members x
         where x.tenant_id = %(t)s)[1 + g %% 3] as agent_id,
       (select x.id from public.teams x where x.tenant_id = %(t)s order by x.id limit 1) as team_id,
       (select x.id from public.whatsapp_numbers x
         where x.tenant_id = %(t)s order by x.id limit 1) as number_id,
       %(first)s::timestamptz + (g * 7919 %% (86400 * (%(days)s + 2))) * interval '1 second' as created_at
  from generate_series(0, 100 * (%(days)s + 2) - 1) g;
insert into public.contacts (id, tenant_id, wa_id)
select id, %(t)s, (5511500000000 + g)::text from bench_history;
insert into public.conversations (id, tenant_id, contact_id, whatsapp_number_id, status, mode, team_id,
                                  assignee_id, handoff_at, first_message_at, last_message_at, resolved_at,
                                  csat, csat_answered_at, created_at)
select id, %(t)s, id, number_id, (array['open', 'pending', 'resolved', 'closed'])[1 + g %% 4],
       case when g %% 5 = 0 then 'bot' else 'human' end, team_id, case when g %% 5 <> 0 then agent_id end,
       case when g %% 5 <> 0 then created_at + interval '1 minute' end, created_at,
       created_at + interval '40 minutes',
       case when g %% 4 >= 2 then created_at + interval '45 minutes' end,
       case when g %% 8 = 2 then 1 + g %% 5 end,
       case when g %% 8 = 2 then created_at + interval '46 minutes' end,
       created_at
  from bench_history;
insert into public.conversation_metrics (tenant_id, conversation_id, team_id, needs_human_at,
                                         first_response_at, first_response_seconds, queue_entries,
                                         queue_wait_seconds, resolution_seconds)
select %(t)s, id, team_id, created_at + interval '1 minute',
       created_at + (20 + g %% 300) * interval '1 second',
       20 + g %% 300, 1, 60, case when g %% 4 >= 2 then 2700 end
  from bench_history where g %% 5 <> 0;
insert into public.messages (tenant_id, conversation_id, contact_id, whatsapp_number_id, direction,
                             sender_type, sender_member_id, type, content, status, created_at)
select %(t)s, h.id, h.id, h.number_id, case when i %% 2 = 0 then 'inbound' else 'outbound' end,
       case when i %% 2 = 0 then 'contact' when g %% 5 = 0 then 'bot' else 'agent' end,
       case when i %% 2 = 1 and g %% 5 <> 0 then h.agent_id end, 'text', 'mensagem ' || i,
       case when i %% 2 = 0 then 'processed' else 'delivered' end, h.created_at + i * interval '5 minutes'
  from bench_history h cross join generate_series(0, 3) i;
insert into public.ai_usage (tenant_id, conversation_id, model_id, provider, model, api_type, feature,
                             outcome, input_tokens, output_tokens, cost_brl, created_at)
select %(t)s, h.id, m.id, m.provider, m.model, 'chat',
       (array['bot.reply', 'summary', 'intent'])[1 + h.g %% 3], 'success', 900, 120, 0.0042, h.created_at
  from bench_history h cross join (select id, provider, model from public.ai_models order by id limit 1) m;
alter table public.contacts enable trigger user;
alter table public.conversations enable trigger user;
alter table public.conversation_metrics enable trigger user;
alter table public.messages enable trigger user;
alter table public.ai_usage enable trigger user;
insert into public.analytics_days (tenant_id, day)
select %(t)s, d::date from generate_series(%(first)s::date, %(last)s::date, interval '1 day') d
on conflict (tenant_id, day) do update set dirty = true;
select private.job_analytics_rollup(now());
analyze
"""

DASHBOARD = {
    "analytics_summary": "select public.analytics_summary(%s, %s, %s)",
    "analytics_volumes": "select * from public.analytics_volumes(%s, %s, %s)",
    "analytics_agent_leaderboard": "select * from public.analytics_agent_leaderboard(%s, %s, %s)",
    "analytics_ai_costs": "select * from public.analytics_ai_costs(%s, %s, %s)",
}


def timed(conn: psycopg.Connection[Any], sql: str, params: Any = None) -> float:
    started = time.perf_counter()
    with conn.transaction():
        conn.execute(sql, params)
    return time.perf_counter() - started


def rollup_rounds(conn: psycopg.Connection[Any], day: date, lo: str, hi: str) -> tuple[float, float]:
    """Median seconds of the baseline and of the job, measured alternately."""
    conn.execute("create table bench_rollup (like public.analytics_daily including defaults)")
    as_of = f"{day + timedelta(days=1)} 12:00 America/Sao_Paulo"
    baseline, job = [], []
    for _ in range(ROUNDS):
        conn.execute("truncate bench_rollup")
        baseline.append(timed(conn, _BASELINE_SQL, {"day": day, "lo": lo, "hi": hi}))
        # every tenant-day dirty again: the job recomputes them all, as on its first run
        conn.execute("update public.analytics_days set dirty = true where day = %s", (day,))
        job.append(timed(conn, "select private.job_analytics_rollup(%s)", (as_of,)))
    counted = conn.execute(
        "select sum(messages_in + messages_out) from public.analytics_daily a"
        " join public.tenants t on t.id = a.tenant_id where t.slug like 'analytics-%%' and a.day = %s",
        (day,),
    ).fetchone()
    assert counted and counted[0] == MESSAGES, f"the rollup counted {counted} messages, not {MESSAGES}"
    expected = conn.execute("select count(*) from bench_rollup").fetchone()
    print(f"rollup rows: baseline {expected}, job {counted}; seconds baseline {baseline}, job {job}")
    return median(baseline), median(job)


def dashboard_p95(url: str, windows: dict[str, tuple[date, date, bool]]) -> dict[tuple[str, str], float]:
    """p95 (ms) of each RPC over each window (first day, last day, from the facts), samples of
    the windows interleaved; a window read from the facts has the demo tenant's days marked
    dirty while it is sampled, as before any rollup."""
    claims = json.dumps({"sub": OWNER, "role": "authenticated", "aud": "authenticated"})
    samples: dict[tuple[str, str], list[float]] = {(w, name): [] for w in windows for name in DASHBOARD}
    with psycopg.connect(url, autocommit=True) as admin, psycopg.connect(url, autocommit=True) as conn:
        for _ in range(SAMPLES):
            for window, (first, last, facts) in windows.items():
                admin.execute("update public.analytics_days set dirty = %s where tenant_id = %s",
                              (facts, TENANT))  # fmt: skip
                for name, sql in DASHBOARD.items():
                    started = time.perf_counter()
                    with conn.transaction():
                        conn.execute("select set_config('role', 'authenticated', true),"
                                     " set_config('request.jwt.claims', %s, true)", (claims,))  # fmt: skip
                        rows = conn.execute(sql, (TENANT, first, last)).fetchall()
                    samples[window, name].append((time.perf_counter() - started) * 1000)
                    assert rows, f"{name} returned nothing"
    return {key: percentile(s, 95) for key, s in samples.items()}


def measure(ctx: Context) -> list[Measure]:
    url = ctx.fresh_db()
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("select (now() at time zone 'America/Sao_Paulo')::date - 2").fetchone()
        assert row is not None
        day: date = row[0]
        lo, hi = f"{day} 00:00 America/Sao_Paulo", f"{day + timedelta(days=1)} 00:00 America/Sao_Paulo"
        per_tenant = MESSAGES // TENANTS // PER_CONVERSATION
        assert per_tenant * TENANTS * PER_CONVERSATION == MESSAGES, "messages: a multiple of 10,000"
        script(conn, _DAY_SQL, {"tenants": TENANTS, "per_tenant": per_tenant, "lo": lo,
                                "per_conversation": PER_CONVERSATION})  # fmt: skip
        baseline_s, job_s = rollup_rounds(conn, day, lo, hi)
        first = day - timedelta(days=DASHBOARD_DAYS - 1)
        script(conn, _HISTORY_SQL, {"t": TENANT, "first": first, "last": day, "days": DASHBOARD_DAYS})
    rolled, facts = f"{DASHBOARD_DAYS} days of rollups", f"{DASHBOARD_DAYS} days from the facts (no rollup)"
    to_today = f"{DASHBOARD_DAYS} days to today (today from the facts)"
    p95 = dashboard_p95(url, {
        rolled: (first, day, False),
        facts: (first, day, True),
        # the window a dashboard opens on: today is read from the facts
        to_today: (first + timedelta(days=2), day + timedelta(days=2), False),
    })
    label = f"{MESSAGES:,} messages / {TENANTS} tenants"
    return [
        Measure(f"one insert … select over a day ({label})", MESSAGES / baseline_s, "messages/s"),
        Measure(f"analytics rollup job of that day ({label})", MESSAGES / job_s, "messages/s",
                baseline=f"one insert … select over a day ({label})", goal="report"),
        *(m for name in DASHBOARD for m in (
            Measure(f"dashboard {name} p95, {facts}", p95[facts, name], "ms"),
            Measure(f"dashboard {name} p95, {rolled}", p95[rolled, name], "ms",
                    baseline=f"dashboard {name} p95, {facts}", goal="<= 20 ms"),
            Measure(f"dashboard {name} p95, {to_today}", p95[to_today, name], "ms",
                    baseline=f"dashboard {name} p95, {facts}", goal="report"),
        )),
    ]  # fmt: skip
