"""Inbound messages per second through whatsapp_ingest (one webhook, one text message, as
Meta usually delivers them), with 1 and 4 clients, divided by the plain 1-row INSERT rate
of the same clients on the same server. Goal: ratio >= 0.8.

Each webhook is a new message from one of 200 contacts, so the mix has new contacts,
open conversations, the 24 h window refresh, counters and the AI memory trigger.
"""

from __future__ import annotations

import json
import time

import psycopg

from harness import Context, Measure, throughput

SECONDS = 3.0
BATCH = 10  # Meta batches up to 1 000 updates per POST under load
PHONE_NUMBER_ID = "106540352242922"  # seed: Loja Demo
CONTACTS = 200
# signed by the demo number's own Meta app, as the simulator signs it
INGEST = "select public.whatsapp_ingest(%s::jsonb, '" + PHONE_NUMBER_ID + "')"


def webhook(i: int, size: int = 1) -> str:
    """A webhook carrying `size` text messages (message numbers i*size ... i*size+size-1)."""
    messages, contacts = [], []
    for n in range(i * size, i * size + size):
        sender = f"55119{n % CONTACTS:08d}"
        contacts.append({"profile": {"name": f"Cliente {n % CONTACTS}"}, "wa_id": sender})
        messages.append({"from": sender, "id": f"wamid.bench.{size}.{n}", "type": "text",
                         "timestamp": str(int(time.time())),
                         "text": {"body": f"Olá, qual o prazo de entrega do pedido {n}?"}})
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "5511999990000", "phone_number_id": PHONE_NUMBER_ID},
             "contacts": contacts, "messages": messages}
    change = {"field": "messages", "value": value}
    return json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "102290129340398", "changes": [change]}]})


def ingest_one(conn: psycopg.Connection[tuple[object, ...]], i: int) -> None:
    conn.execute(INGEST, (webhook(i),)).fetchone()


def ingest_batch(conn: psycopg.Connection[tuple[object, ...]], i: int) -> None:
    conn.execute(INGEST, (webhook(i, BATCH),)).fetchone()


def as_worker(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute("set role service_role")


def measure(ctx: Context) -> list[Measure]:
    url = ctx.fresh_db()
    measures = [
        Measure(f"whatsapp_ingest, {clients} client(s)",
                throughput(url, ingest_one, clients, SECONDS, setup=as_worker), "messages/s",
                baseline=f"plain 1-row INSERT, {clients} client(s)", goal=">= 0.8")
        for clients in (1, 4)
    ]
    batched = throughput(url, ingest_batch, 4, SECONDS, setup=as_worker) * BATCH
    measures.append(Measure(f"whatsapp_ingest, {BATCH} messages per webhook, 4 client(s)", batched,
                            "messages/s", baseline="plain 1-row INSERT, 4 client(s)"))
    return measures
