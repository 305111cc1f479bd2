"""SLA deadlines in business time: 10,000 tickets recomputed (a priority change: the
policy chosen again and six deadlines walked through a calendar of two intervals a day and
holidays) divided by the same tickets updated with a fixed deadline (no recompute). And the
breach job over 1 M tickets: the EXPLAIN of its scan (an index range scan of
tickets_sla_check_idx) and its time.
"""

from __future__ import annotations

import os
import time
from statistics import median
from typing import Any

import psycopg

from harness import Context, Measure

TENANT = "00000000-0000-4000-b000-000000000001"  # seed: Loja Demo
TICKETS = 10_000
JOB_ROWS = int(os.environ.get("ZAPBASE_BENCH_SLA_ROWS", "1000000"))
ROUNDS = 3

SETUP = """
insert into public.business_calendars (id, tenant_id, name)
values ('00000000-0000-4000-5000-000000000001', %(t)s, 'Comercial');
insert into public.business_calendar_hours (tenant_id, calendar_id, weekday, starts_at, ends_at)
select %(t)s, '00000000-0000-4000-5000-000000000001', d, h.s, h.e
  from generate_series(1, 5) d, (values (time '08:00', time '12:00'), (time '13:00', time '18:00')) h(s, e);
insert into public.business_calendar_holidays (tenant_id, calendar_id, day)
select %(t)s, '00000000-0000-4000-5000-000000000001', d::date
  from generate_series(now(), now() + interval '1 year', interval '17 days') d;
insert into public.sla_policies (tenant_id, name, priority, calendar_id, first_response_minutes,
                                 next_response_minutes, resolution_minutes)
select %(t)s, p, p, '00000000-0000-4000-5000-000000000001', 240, 120, 2880
  from unnest(array['medium', 'high']) p;
insert into public.contacts (id, tenant_id, wa_id)
select ('00000000-0000-4000-8888-' || lpad(i::text, 12, '0'))::uuid, %(t)s, (5511900000000 + i)::text
  from generate_series(1, %(n)s) i;
insert into public.conversations (id, tenant_id, contact_id, status)
select ('00000000-0000-4000-7777-' || lpad(i::text, 12, '0'))::uuid, %(t)s,
       ('00000000-0000-4000-8888-' || lpad(i::text, 12, '0'))::uuid, 'open'
  from generate_series(1, %(n)s) i;
insert into public.tickets (tenant_id, protocol, conversation_id, contact_id, title, priority)
select %(t)s, 'BR-20261203-' || lpad(i::text, 6, '0'),
       ('00000000-0000-4000-7777-' || lpad(i::text, 12, '0'))::uuid,
       ('00000000-0000-4000-8888-' || lpad(i::text, 12, '0'))::uuid, 'Chamado ' || i, 'medium'
  from generate_series(1, %(n)s) i;
"""
RECOMPUTE = (
    "update public.tickets set priority = case priority when 'medium' then 'high' else 'medium' end"
    " where tenant_id = %s"
)
FIXED = "update public.tickets set resolution_due_at = now() + interval '2 days' where tenant_id = %s"
# The job's scan (private.job_sla_breach_alert), as it runs
JOB_SCAN = (
    "select * from public.tickets t where t.sla_next_check_at <= now() order by t.sla_next_check_at"
    " limit 10000 for update skip locked"
)
MANY = """
insert into public.contacts (id, tenant_id, wa_id)
values ('00000000-0000-4000-8888-000000000001', %(t)s, '5511900000001');
insert into public.conversations (id, tenant_id, contact_id, status)
values ('00000000-0000-4000-7777-000000000001', %(t)s, '00000000-0000-4000-8888-000000000001', 'open');
-- rows placed as a restore would: the stored deadlines are given, no trigger computes them
alter table public.tickets disable trigger _200_prepare, disable trigger _500_emit;
insert into public.tickets (tenant_id, protocol, conversation_id, contact_id, title, sla_next_check_at)
select %(t)s,
       'BR-' || to_char(date '2020-01-01' + i / 10000, 'YYYYMMDD') || '-' || lpad((i %% 10000)::text, 4, '0'),
       '00000000-0000-4000-7777-000000000001', '00000000-0000-4000-8888-000000000001', 'Chamado',
       case when i %% 5 = 0 then null else now() + make_interval(mins => (i %% 525600) - 60) end
  from generate_series(1, %(n)s) i;
alter table public.tickets enable trigger _200_prepare, enable trigger _500_emit;
analyze public.tickets;
"""


def timed(conn: psycopg.Connection[Any], sql: str) -> float:
    started = time.perf_counter()
    with conn.transaction():
        conn.execute(sql, (TENANT,))
    return time.perf_counter() - started


def measure(ctx: Context) -> list[Measure]:
    with psycopg.connect(ctx.fresh_db(), autocommit=True) as conn:
        for statement in SETUP.split(";\n")[:-1]:  # one at a time: statements with parameters
            conn.execute(statement, {"t": TENANT, "n": TICKETS})
        conn.execute("analyze")
        recompute, fixed = [], []
        for _ in range(ROUNDS):  # alternated: drift of the shared machine hits both alike
            recompute.append(timed(conn, RECOMPUTE))
            fixed.append(timed(conn, FIXED))

    with psycopg.connect(ctx.fresh_db(), autocommit=True) as conn:
        for statement in MANY.split(";\n")[:-1]:
            conn.execute(statement, {"t": TENANT, "n": JOB_ROWS})
        plan = "\n".join(r[0] for r in conn.execute("explain (analyze, costs off, timing off) " + JOB_SCAN))
        started = time.perf_counter()
        due = conn.execute("select private.job_sla_breach_alert(now())").fetchone()
        job_seconds = time.perf_counter() - started
    print(f"sla: the breach job's scan over {JOB_ROWS:,} tickets:\n{plan}")
    print(f"sla: one run of the breach job recorded {due[0] if due else 0} SLA events")
    return [
        Measure(f"tickets updated with a fixed deadline ({TICKETS:,})", TICKETS / median(fixed), "tickets/s"),
        Measure(
            f"tickets' SLA recomputed in business time ({TICKETS:,})",
            TICKETS / median(recompute),
            "tickets/s",
            baseline=f"tickets updated with a fixed deadline ({TICKETS:,})",
            goal="deadlines stored: paid on change only",
        ),
        Measure(
            f"breach job, one run over {JOB_ROWS:,} tickets",
            job_seconds * 1000,
            "ms",
            goal="index range scan of tickets_sla_check_idx",
        ),
    ]
