"""Automation rules: 10,000 queued message.received events of one tenant evaluated against its
50 active rules by automation_run (batches of 200, as the worker loop calls it), in events/s,
divided by the bare read of the same queued events with their event rows in the same batches.
A second tenant with 50 rules of its own has 1,000 events in the same queue: afterwards no
execution may join a rule of one tenant to an event of another (checked; the bench fails).
"""

from __future__ import annotations

import json
import time

import psycopg

from harness import Context, Measure

TENANT = "00000000-0000-4000-b000-000000000001"  # seed: Loja Demo
OTHER = "00000000-0000-4000-b000-0000000000b2"
EVENTS = 10_000
OTHER_EVENTS = 1_000
RULES = 50
CONTACTS = 100
BATCH = 200

_TENANT_SQL = """
insert into public.tenants (id, slug, name, status, plan_id)
select %(t)s, 'bench-outra', 'Outra', 'active', p.id from public.plans p where p.code = 'pro';
"""
_SUBJECTS_SQL = """
with k as (
  insert into public.contacts (tenant_id, wa_id, name, tags, attributes)
  select %(t)s, (5511900000000 + g)::text, 'Cliente ' || g,
         case when g %% 10 = 0 then '{vip}' else '{}' end::text[],
         jsonb_build_object('plano', case when g %% 3 = 0 then 'ouro' else 'prata' end)
    from generate_series(1, %(n)s) g
  returning id, tenant_id
)
insert into public.conversations (tenant_id, contact_id, mode, status)
select k.tenant_id, k.id, 'human', 'open' from k
"""
_EMIT_SQL = """
select count(private.emit(c.tenant_id, 'message.received', 'messages', gen_random_uuid(),
         jsonb_build_object('conversation_id', c.id, 'contact_id', c.contact_id, 'direction', 'inbound',
                            'type', 'text',
                            'content', case when g %% 20 = 0 then 'quero saber o preço' else 'oi' end)))
  from generate_series(1, %(n)s) g
  join lateral (select * from public.conversations c where c.tenant_id = %(t)s
                 order by c.id offset (g %% %(contacts)s) limit 1) c on true
"""
_READ_SQL = """
select q.created_at as queued_at, e.* from public.automation_queue q
  join public.events e
    on e.tenant_id = q.tenant_id and e.created_at = q.event_created_at and e.id = q.event_id
 where q.created_at > %s order by q.created_at limit %s
"""
_CROSSED_SQL = """
select count(*) from public.automation_executions x
  join public.automation_rules r on r.id = x.rule_id
  left join public.events e on e.id = x.event_id
 where r.tenant_id <> x.tenant_id or e.tenant_id <> x.tenant_id
    or x.contact_id is not null and not exists (select 1 from public.contacts k
                                                 where k.id = x.contact_id and k.tenant_id = x.tenant_id)
"""


def rules(tenant: str) -> list[tuple[object, ...]]:
    """Mostly conditions that fail late (3 to 5 leaves each), a few that match and act."""
    made = []
    for i in range(RULES):
        leaves = [{"field": "conversation.status", "op": "in", "value": ["open", "pending"]},
                  {"field": "contact.attributes.plano", "op": "eq", "value": "ouro"},
                  {"field": "event.payload.content", "op": "contains", "value": f"produto {i}"}]
        if i % 10 == 0:  # 5 rules that match a share of the events
            leaves[2] = {"field": "event.payload.content", "op": "contains", "value": "preço"}
        if i % 2:
            leaves.append({"any": [{"field": "contact.tags", "op": "contains", "value": "vip"},
                                   {"field": "contact.ltv", "op": "gt", "value": 1000}]})
        actions = [{"type": "add_tag", "tag": f"regra_{i}"}, {"type": "set_priority", "priority": "high"}]
        made.append((tenant, f"regra {i}", i, json.dumps({"all": leaves}), json.dumps(actions)))
    return made


def prepare(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_TENANT_SQL, {"t": OTHER})
        for tenant in (TENANT, OTHER):
            conn.execute(_SUBJECTS_SQL, {"t": tenant, "n": CONTACTS})
            with conn.cursor() as cur:
                cur.executemany("insert into public.automation_rules (tenant_id, name, event_type, priority,"
                                " conditions, actions, mode)"
                                " values (%s, %s, 'message.received', %s, %s, %s, 'automatic')",
                                rules(tenant))
        with conn.transaction():  # one tenant's events interleaved with the other's
            for _ in range(10):
                conn.execute(_EMIT_SQL, {"t": TENANT, "n": EVENTS // 10, "contacts": CONTACTS})
                conn.execute(_EMIT_SQL, {"t": OTHER, "n": OTHER_EVENTS // 10, "contacts": CONTACTS})


def bare_read(url: str) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set role service_role")
        after: object = "-infinity"
        started, read = time.perf_counter(), 0
        while rows := conn.execute(_READ_SQL, (after, BATCH)).fetchall():
            read += len(rows)
            after = rows[-1][0]
        return read / (time.perf_counter() - started)


def evaluate(url: str) -> float:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("set role service_role")
        started, claimed = time.perf_counter(), 0
        while batch := int(conn.execute("select public.automation_run(%s)", (BATCH,)).fetchone()[0]):  # type: ignore[index]
            claimed += batch
        rate = claimed / (time.perf_counter() - started)
    with psycopg.connect(url, autocommit=True) as conn:
        crossed = conn.execute(_CROSSED_SQL).fetchone()[0]  # type: ignore[index]
        left = conn.execute("select count(*) from public.automation_queue").fetchone()[0]  # type: ignore[index]
    if claimed != EVENTS + OTHER_EVENTS or crossed or left:
        raise AssertionError(f"evaluated {claimed}, {left} left in the queue, "
                             f"{crossed} executions across tenants")
    return rate


def measure(ctx: Context) -> list[Measure]:
    url = ctx.fresh_db()
    prepare(url)
    read = bare_read(url)
    rate = evaluate(url)
    bare = f"bare read of {EVENTS + OTHER_EVENTS:,} queued events (batches of {BATCH})"
    return [
        Measure(bare, read, "events/s"),
        Measure(f"automation_run over the same events, {RULES} rules per tenant", rate, "events/s",
                baseline=bare, goal="report; 0 across tenants"),
    ]
