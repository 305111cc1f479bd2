"""The inbox: (1) assignments per second of 8 callers running the one assigner (the
scheduler's path, each on its own team's queue) ÷ `select 1` round trips of 8 clients;
(2) the agents' inbox list (live conversations, newest first, with the contact and the
preview of the last message the conversation keeps) as `authenticated` under RLS ÷ the
same query as the service role, on a dataset of BENCH_INBOX_MESSAGES messages (default
1,000,000) over 200 tenants. Goal for (2): <= 1.10.
"""

from __future__ import annotations

import json
import os
from typing import Any

import psycopg

from baseline import select_one
from harness import Context, Measure, throughput

SECONDS = 3.0
CALLERS = 8
TENANTS = 200
MESSAGES = int(os.environ.get("BENCH_INBOX_MESSAGES", "1000000"))
TENANT = "00000000-0000-4000-b000-000000000001"  # seed: Loja Demo
OWNER = "00000000-0000-4000-a000-000000000001"
NUMBER = "00000000-0000-4000-9000-000000000001"

# Bulk rows are written as a restore would (the tables' triggers off while loading); the
# rows are ones the triggers would have left (no counters to fix: nothing is assigned yet).
_QUEUES_SQL = """
update public.tenants set plan_id = (select id from public.plans where code = 'enterprise') where id = %(t)s;
insert into public.teams (tenant_id, name, assignment_strategy)
select %(t)s, 'Fila ' || g, 'round_robin' from generate_series(1, %(callers)s) g;
insert into auth.users (id, aud, role, email)
select gen_random_uuid(), 'authenticated', 'authenticated', 'agente' || g || '@bench.example'
  from generate_series(1, %(callers)s * 5) g;
insert into public.members (tenant_id, user_id, role, max_concurrent_conversations)
select %(t)s, u.id, 'agent', 500 from auth.users u where u.email like '%%@bench.example';
insert into public.team_members (tenant_id, team_id, member_id)
select %(t)s, t.id, m.id
  from (select id, row_number() over (order by id) - 1 as n from public.teams
         where tenant_id = %(t)s and name like 'Fila %%') t
  join (select m.id, row_number() over (order by m.id) - 1 as n from public.members m
          join auth.users u on u.id = m.user_id where u.email like '%%@bench.example') m
    on m.n %% %(callers)s = t.n;
alter table public.agent_presence disable trigger user;
alter table public.contacts disable trigger user;
alter table public.conversations disable trigger user;
alter table public.messages disable trigger user;
update public.agent_presence p set status = 'online', expires_at = now() + interval '1 day'
 where p.member_id in (select member_id from public.team_members tm join public.teams t on t.id = tm.team_id
                        where t.name like 'Fila %%');
with k as (
  insert into public.contacts (tenant_id, wa_id)
  select %(t)s, (5511800000000 + g)::text from generate_series(1, %(queued)s) g returning id, wa_id)
insert into public.conversations (tenant_id, contact_id, whatsapp_number_id, mode, status, team_id, queued_at)
select %(t)s, k.id, %(number)s, 'human', 'pending',
       (select array_agg(id order by id) from public.teams where tenant_id = %(t)s and name like 'Fila %%')
         [1 + (k.wa_id::bigint %% %(callers)s)],
       now() - interval '1 hour' + (k.wa_id::bigint - 5511800000000) * interval '1 millisecond'
  from k;
alter table public.agent_presence enable trigger user;
alter table public.contacts enable trigger user;
alter table public.conversations enable trigger user;
alter table public.messages enable trigger user;
analyze;
"""
_DATASET_SQL = """
update public.tenants set plan_id = (select id from public.plans where code = 'enterprise') where id = %(t)s;
insert into public.tenants (slug, name, plan_id)
select 'inbox-' || g, 'Inbox ' || g, (select id from public.plans where code = 'pro')
  from generate_series(2, %(tenants)s) g;
insert into public.whatsapp_numbers (tenant_id, phone_number, phone_number_id, waba_id, display_name)
select t.id, '+55119' || lpad(n::text, 8, '0'), (900000000 + n)::text, '900', t.name
  from (select id, name, row_number() over (order by id) as n
          from public.tenants where slug like 'inbox-%%') t;
alter table public.agent_presence disable trigger user;
alter table public.contacts disable trigger user;
alter table public.conversations disable trigger user;
alter table public.messages disable trigger user;
create temporary table bench_tenants as
select t.id as tenant_id, n.id as number_id, row_number() over (order by t.id) - 1 as n
  from public.tenants t join lateral (select id from public.whatsapp_numbers x where x.tenant_id = t.id
                                       order by x.created_at limit 1) n on true
 where t.slug like 'inbox-%%' or t.id = %(t)s;
create temporary table bench_contacts as
select gen_random_uuid() as id, b.tenant_id, b.number_id, g
  from generate_series(0, %(conversations)s - 1) g join bench_tenants b on b.n = g %% %(tenants)s;
insert into public.contacts (id, tenant_id, wa_id, name)
select id, tenant_id, (5511700000000 + g)::text, 'Cliente ' || g from bench_contacts;
insert into public.conversations (id, tenant_id, contact_id, whatsapp_number_id, status, mode,
                                  last_message_at, last_message_preview, created_at)
select id, tenant_id, id, number_id,
       (array['open', 'pending', 'waiting', 'resolved', 'resolved', 'closed'])[1 + g %% 6],
       case when g %% 3 = 0 then 'bot' else 'human' end,
       now() - (g %% 10000) * interval '1 minute', 'mensagem 10',
       now() - (g %% 10000) * interval '1 minute' - interval '1 hour'
  from bench_contacts;
insert into public.messages (tenant_id, conversation_id, contact_id, direction, sender_type, type, content,
                             status, created_at)
select c.tenant_id, c.id, c.id, case when i %% 2 = 0 then 'inbound' else 'outbound' end,
       case when i %% 2 = 0 then 'contact' else 'bot' end, 'text', 'mensagem ' || i, 'processed',
       now() - (c.g %% 10000) * interval '1 minute' - (10 - i) * interval '1 second'
  from bench_contacts c cross join generate_series(1, 10) i;
alter table public.agent_presence enable trigger user;
alter table public.contacts enable trigger user;
alter table public.conversations enable trigger user;
alter table public.messages enable trigger user;
analyze;
"""
INBOX_LIST = """
select c.id, c.status, c.priority, c.assignee_id, c.last_message_at, c.last_message_preview, k.name, k.wa_id
  from public.conversations c
  join public.contacts k on k.tenant_id = c.tenant_id and k.id = c.contact_id
 where c.tenant_id = %s and c.status in ('open', 'waiting', 'pending')
 order by c.last_message_at desc
 limit 50
"""


def script(conn: psycopg.Connection[tuple[object, ...]], sql: str, params: dict[str, Any]) -> None:
    for statement in sql.split(";\n"):
        if statement.strip():
            conn.execute(statement.encode(), params)


def as_role(role: str) -> Any:
    claims = json.dumps({"sub": OWNER, "role": role})

    def inbox_list(conn: psycopg.Connection[tuple[object, ...]], i: int) -> None:
        with conn.transaction():
            conn.execute(
                "select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)",
                (role, claims),
            )
            rows = conn.execute(INBOX_LIST, (TENANT,)).fetchall()
            assert rows, "the inbox list is empty"

    return inbox_list


def assign_one(conn: psycopg.Connection[tuple[object, ...]], i: int) -> None:
    team = TEAMS[i // 10_000_000]
    row = conn.execute("select private.assign_queue(%s, 1)", (team,)).fetchone()
    assert row and row[0] == 1, "the queue ran dry: raise the number of queued conversations"


TEAMS: list[str] = []


def measure(ctx: Context) -> list[Measure]:
    url = ctx.fresh_db()
    with psycopg.connect(url, autocommit=True) as conn:
        script(
            conn, _QUEUES_SQL, {"t": TENANT, "callers": CALLERS, "queued": CALLERS * 2_000, "number": NUMBER}
        )
        TEAMS[:] = [
            str(r[0])
            for r in conn.execute(
                "select id from public.teams where tenant_id = %s and name like 'Fila %%' order by name",
                (TENANT,),
            )
        ]
    select = throughput(url, select_one, CALLERS, SECONDS)
    assigned = throughput(url, assign_one, CALLERS, SECONDS)
    with psycopg.connect(url, autocommit=True) as conn:
        drift = conn.execute(
            "select count(*) from public.agent_presence p where p.open_conversations <> (select count(*)"
            " from public.conversations c where c.assignee_id = p.member_id and c.status = 'open')"
        ).fetchone()
        assert drift == (0,), "load counters drifted"

    big = ctx.fresh_db()
    conversations = MESSAGES // 10
    with psycopg.connect(big, autocommit=True) as conn:
        script(conn, _DATASET_SQL, {"t": TENANT, "tenants": TENANTS, "conversations": conversations})
    label = f"{MESSAGES:,} messages / {TENANTS} tenants"
    # measured alternately so that drift of the shared machine hits both alike
    service = throughput(big, as_role("service_role"), 1, SECONDS)
    rls = throughput(big, as_role("authenticated"), 1, SECONDS)
    service = (service + throughput(big, as_role("service_role"), 1, SECONDS)) / 2
    rls = (rls + throughput(big, as_role("authenticated"), 1, SECONDS)) / 2
    return [
        Measure(f"select 1 round trip, {CALLERS} clients", select, "queries/s"),
        Measure(f"assign_queue, {CALLERS} callers", assigned, "assignments/s",
                baseline=f"select 1 round trip, {CALLERS} clients", goal="report"),
        Measure(f"inbox list as service role ({label})", service, "queries/s"),
        Measure(f"inbox list as authenticated, RLS ({label})", rls, "queries/s",
                baseline=f"inbox list as service role ({label})", goal=">= 0.91 (<= 1.10× time)"),
    ]  # fmt: skip
