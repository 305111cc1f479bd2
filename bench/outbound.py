"""Outbound queue: jobs per second through whatsapp_claim_outbound + whatsapp_mark_sent (what
the sender does around each Graph call, with no Graph call), divided by pgbench's TPC-B-like
TPS on the same server with the same client count. Goal: >= 1.0.

The queue spans 12 numbers of 4 tenants (the demo tenant and three more, 3 numbers each, the
pro plan's limit), as a platform's queue does. A number is sent from by one claim at a time
(Meta paces each number; the claim locks it to keep its per-second budget), so one number
never needs thousands of sends a second, while a platform's sender serves many numbers at
once: the many-numbers row is the one the goal is about. The one-number row (the other
numbers disabled for it) shows the per-number ceiling: its clients mostly come back
empty-handed. Every number has Meta's highest throughput tier (1,000/s), so Meta's pacing
is not what is measured.

Each of CLIENTS clients claims 16 rows at a time (the sender's default concurrency) and
records them sent as the sender does when their Graph answers arrive together;
pgbench (`-i`, scale 1, in a database of its own) runs `-c CLIENTS` for as long, just
before. Replies are queued through whatsapp_queue_reply to open conversations, several per
contact, so one-in-flight-per-contact holds and the queue outlasts the run. The queue is
claimed as it is right after the burst, before any ANALYZE: the claim must not depend on
table statistics.
"""

from __future__ import annotations

import os
import re
import subprocess

import psycopg

from harness import Context, Measure, throughput
from inbox import script
from ingest import as_worker
from zapbase.db.embedded import bin_path

SECONDS = 5.0
CLIENTS = 4
TENANTS = 4
NUMBERS_PER_TENANT = 3
CONTACTS = 500  # per number; the demo number has ONE_NUMBER_CONTACTS more for its own row
ONE_NUMBER_CONTACTS = 1500
PER_CONTACT = 4
BATCH = 16
DEMO_TENANT = "00000000-0000-4000-b000-000000000001"
DEMO_NUMBER = "00000000-0000-4000-9000-000000000001"
PGBENCH = f"pgbench TPC-B-like, {CLIENTS} clients"
PAYLOAD = '{"type": "text", "text": {"body": "Seu pedido sai hoje."}}'

# Tenants, their numbers (with an access token in Vault, as the sender reads it) and open
# conversations, written as a restore would (the contacts' and conversations' triggers off
# while loading, as bench/analytics.py and bench/inbox.py load theirs); the replies themselves
# go through whatsapp_queue_reply with every trigger on.
_SEED_SQL = """
insert into public.tenants (slug, name, plan_id)
select 'envio-' || g, 'Envio ' || g, (select id from public.plans where code = 'pro')
  from generate_series(2, %(tenants)s) g;
insert into public.whatsapp_numbers (tenant_id, phone_number, phone_number_id, waba_id, display_name)
select t.id, '+55117' || lpad((t.n * 10 + g)::text, 8, '0'), (700000000 + t.n * 10 + g)::text, '700', t.name
  from (select id, name, row_number() over (order by id) as n,
               (select count(*) from public.whatsapp_numbers x where x.tenant_id = t.id) as has
          from public.tenants t where slug like 'envio-%%' or id = %(demo)s) t,
       generate_series(1, %(per_tenant)s - t.has) g;
select public.set_whatsapp_number_secret(n.id, 'access_token', 'token-' || n.phone_number_id)
  from public.whatsapp_numbers n where n.access_token_secret_id is null;
-- Meta's highest tier; the demo number's own row gets a backlog of its own
update public.whatsapp_numbers set throughput_mps = 1000;
create temporary table bench_conversations as
select gen_random_uuid() as id, n.tenant_id, n.id as number_id,
       (5511700000000 + row_number() over ())::text as wa_id
  from public.whatsapp_numbers n,
       generate_series(1, %(contacts)s + case when n.id = %(demo_number)s then %(one_number)s else 0 end);
alter table public.contacts disable trigger user;
alter table public.conversations disable trigger user;
insert into public.contacts (id, tenant_id, wa_id, profile_name)
select id, tenant_id, wa_id, 'Cliente ' || wa_id from bench_conversations;
insert into public.conversations (id, tenant_id, contact_id, whatsapp_number_id, last_customer_message_at,
                                  window_expires_at)
select id, tenant_id, id, number_id, now(), now() + interval '24 hours' from bench_conversations;
alter table public.contacts enable trigger user;
alter table public.conversations enable trigger user;
"""


def queue_replies(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        script(conn, _SEED_SQL, {"tenants": TENANTS, "per_tenant": NUMBERS_PER_TENANT, "demo": DEMO_TENANT,
                                 "demo_number": DEMO_NUMBER, "contacts": CONTACTS,
                                 "one_number": ONE_NUMBER_CONTACTS})
        as_worker(conn)
        conn.execute("select public.whatsapp_queue_reply(c.id, %s::jsonb, 'bot', null, null)"
                     " from public.conversations c join public.contacts k on k.id = c.contact_id,"
                     " generate_series(1, %s) where k.wa_id like '5511700%%'", (PAYLOAD, PER_CONTACT))
        [(numbers, queued)] = conn.execute(
            "select count(distinct whatsapp_number_id), count(*) from public.messages where status = 'queued'"
        ).fetchall()
        print(f"outbound: {queued} replies queued on {numbers} numbers")


def only_demo_number(url: str, only: bool) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("update public.whatsapp_numbers"
                     " set status = case when %s then 'disabled' else 'active' end where id <> %s",
                     (only, DEMO_NUMBER))


def claim_and_mark(url: str) -> float:
    """Jobs per second of CLIENTS clients each claiming BATCH rows and recording them sent."""
    jobs, claims, empty = [0] * CLIENTS, [0] * CLIENTS, [0] * CLIENTS

    def client(conn: psycopg.Connection[tuple[object, ...]], i: int) -> None:
        index = i // 10_000_000  # throughput numbers each client's calls from index × 10⁷
        ids = [row[0] for row in conn.execute(
            "select message_id from public.whatsapp_claim_outbound(%s, %s, 60)", (f"bench-{index}", BATCH))]
        if ids:
            conn.execute("select public.whatsapp_mark_sent_many(%s::uuid[], %s::text[])",
                         (ids, [f"wamid.{message_id}" for message_id in ids]))
        jobs[index] += len(ids)
        claims[index] += 1
        empty[index] += not ids

    # claims per second, times the rows a claim brought back on average
    rate = throughput(url, client, CLIENTS, SECONDS, setup=as_worker) * sum(jobs) / max(sum(claims), 1)
    print(f"outbound: {sum(jobs)} jobs in {sum(claims)} claims, {sum(empty)} of them empty-handed")
    with psycopg.connect(url) as conn:
        [(left,)] = conn.execute("select count(*) from public.messages m join public.whatsapp_numbers n"
                                 " on n.id = m.whatsapp_number_id"
                                 " where m.status = 'queued' and n.status = 'active'").fetchall()
    assert left, "the queue ran dry: queue more replies"
    return rate


def pgbench(url: str) -> float:
    """TPS of pgbench's built-in TPC-B-like script, scale 1, CLIENTS clients, in its own database."""
    parts = re.match(r"postgresql://(\w+):(\w+)@([\w.]+):(\d+)/(\w+)", url)
    assert parts is not None, url
    user, password, host, port, dbname = parts.groups()
    env = {**os.environ, "PGPASSWORD": password}
    args = ["-h", host, "-p", port, "-U", user]
    subprocess.run([str(bin_path("pgbench")), *args, "-i", "-q", "-s", "1", dbname],
                   check=True, capture_output=True, env=env)
    out = subprocess.run([str(bin_path("pgbench")), *args, "-c", str(CLIENTS), "-j", str(CLIENTS),
                          "-T", str(int(SECONDS)), dbname],
                         check=True, capture_output=True, text=True, env=env).stdout
    found = re.search(r"tps = ([\d.]+)", out)
    assert found is not None, out
    return float(found.group(1))


def measure(ctx: Context) -> list[Measure]:
    tps = pgbench(ctx.fresh_db())
    url = ctx.fresh_db()
    queue_replies(url)
    only_demo_number(url, True)
    one = claim_and_mark(url)
    only_demo_number(url, False)
    many = claim_and_mark(url)
    numbers = TENANTS * NUMBERS_PER_TENANT
    claims = f"claim + mark-sent, {BATCH} per claim, {CLIENTS} clients"
    return [
        Measure(PGBENCH, tps, "transactions/s"),
        Measure(f"{claims}, {numbers} numbers of {TENANTS} tenants",
                many, "jobs/s", baseline=PGBENCH, goal=">= 1.0"),
        Measure(f"{claims}, one number (Meta paces per number)",
                one, "jobs/s", baseline=PGBENCH, goal="report"),
    ]
