"""Outbound queue: jobs per second through whatsapp_claim_outbound + whatsapp_mark_sent (what
the sender does around each Graph call, with no Graph call), divided by pgbench's TPC-B-like
TPS on the same server with the same client count. Goal: >= 1.0.

Each of CLIENTS clients claims 16 rows at a time (the sender's default concurrency) and
marks each sent; pgbench (`-i`, scale 1, in a database of its own) runs `-c CLIENTS` for
as long, just before. The demo number's throughput cap is lifted for the run (beyond Meta's
1,000/s in this throwaway database): it paces Meta's tier, not the database. 4,000
contacts with 4 queued replies each, so one-in-flight-per-contact holds and the queue
outlasts the run. The clients share the one number, as a number's senders do: a claim
skips a number another claim holds, so a client may come back empty-handed and claims again.
"""

from __future__ import annotations

import os
import re
import subprocess

import psycopg

from harness import Context, Measure, throughput
from ingest import PHONE_NUMBER_ID, as_worker, webhook
from zapbase.db.embedded import bin_path

SECONDS = 5.0
CLIENTS = 4
CONTACTS = 4000
PER_CONTACT = 4
BATCH = 16
PGBENCH = f"pgbench TPC-B-like, {CLIENTS} clients"
PAYLOAD = '{"type": "text", "text": {"body": "Seu pedido sai hoje."}}'


def queue_replies(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        # Meta's ceiling is 1,000/s: lifted in this throwaway database to see the queue's own
        conn.execute("alter table public.whatsapp_numbers"
                     " drop constraint whatsapp_numbers_throughput_mps_check")
        conn.execute("update public.whatsapp_numbers set throughput_mps = 1000000 where phone_number_id = %s",
                     (PHONE_NUMBER_ID,))
        as_worker(conn)
        for i in range(CONTACTS // 10):
            webhook_body = webhook(i, 10, CONTACTS).replace("55119", "55118")  # contacts of their own
            conn.execute("select public.whatsapp_ingest(%s::jsonb, %s)", (webhook_body, PHONE_NUMBER_ID))
        conn.execute("select public.whatsapp_queue_reply(c.id, %s::jsonb, 'bot', null, null)"
                     " from public.conversations c join public.contacts k on k.id = c.contact_id,"
                     " generate_series(1, %s) where k.wa_id like '55118%%'", (PAYLOAD, PER_CONTACT))
        # as autovacuum does after an insert burst this size: unanalysed, the planner walks the
        # number's whole queue for each contact's head (about 20 ms a claim instead of 0.1)
        conn.execute("analyze public.messages")
        queued = conn.execute("select count(*) from public.messages where status = 'queued'").fetchone()
        print(f"outbound: {queued} replies queued")


def claim_and_mark(url: str) -> float:
    """Jobs per second of CLIENTS clients each claiming BATCH rows and marking each sent."""
    jobs, claims, empty = [0] * CLIENTS, [0] * CLIENTS, [0] * CLIENTS

    def client(conn: psycopg.Connection[tuple[object, ...]], i: int) -> None:
        index = i // 10_000_000  # throughput numbers each client's calls from index × 10⁷
        rows = conn.execute("select message_id from public.whatsapp_claim_outbound(%s, %s, 60)",
                            (f"bench-{index}", BATCH)).fetchall()
        for (message_id,) in rows:
            conn.execute("select public.whatsapp_mark_sent(%s, %s)", (message_id, f"wamid.{message_id}"))
        jobs[index] += len(rows)
        claims[index] += 1
        empty[index] += not rows

    # claims per second, times the rows a claim brought back on average
    rate = throughput(url, client, CLIENTS, SECONDS, setup=as_worker) * sum(jobs) / max(sum(claims), 1)
    print(f"outbound: {sum(jobs)} jobs in {sum(claims)} claims, {sum(empty)} of them empty-handed")
    with psycopg.connect(url) as conn:
        [(left,)] = conn.execute("select count(*) from public.messages where status = 'queued'").fetchall()
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
    return [
        Measure(PGBENCH, tps, "transactions/s"),
        Measure(f"claim + mark-sent, {BATCH} per claim, {CONTACTS * PER_CONTACT:,} queued,"
                f" {CLIENTS} clients",
                claim_and_mark(url), "jobs/s",
                baseline=PGBENCH, goal=">= 1.0"),
    ]
