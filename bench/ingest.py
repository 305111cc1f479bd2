"""Inbound messages per second through whatsapp_ingest (one webhook, one text message, as
Meta usually delivers them), with 1 and 4 clients, divided by

* the plain 1-row INSERT rate of the same clients on the same server (goal >= 0.8), and
* the fair baseline (goal >= 0.6): the same rows written by plain statements from the
  client, one transaction per webhook, into copies of the tables without triggers or
  policies: the webhook kept, the contact upserted, its live conversation upserted, the
  message inserted, the conversation's and the contact's counters updated.

Each webhook is a new message from one of 200 contacts, so the mix has new contacts,
open conversations, the 24 h window refresh, counters and the AI memory trigger.
"""

from __future__ import annotations

import hashlib
import json
import time

import psycopg

from harness import Context, Measure, Operation, throughput

SECONDS = 3.0
BATCH = 10  # Meta batches up to 1 000 updates per POST under load
PHONE_NUMBER_ID = "106540352242922"  # seed: Loja Demo
CONTACTS = 200
# signed by the demo number's own Meta app, as the simulator signs it
INGEST = "select public.whatsapp_ingest(%s::jsonb, '" + PHONE_NUMBER_ID + "')"


def webhook(i: int, size: int = 1, contacts: int = CONTACTS) -> str:
    """A webhook carrying `size` text messages (message numbers i*size ... i*size+size-1) from
    `contacts` senders in turn."""
    messages, senders = [], []
    for n in range(i * size, i * size + size):
        sender = f"55119{n % contacts:08d}"
        senders.append({"profile": {"name": f"Cliente {n % contacts}"}, "wa_id": sender})
        messages.append({"from": sender, "id": f"wamid.bench.{size}.{n}", "type": "text",
                         "timestamp": str(int(time.time())),
                         "text": {"body": f"Olá, qual o prazo de entrega do pedido {n}?"}})
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "5511999990000", "phone_number_id": PHONE_NUMBER_ID},
             "contacts": senders, "messages": messages}
    change = {"field": "messages", "value": value}
    return json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "102290129340398", "changes": [change]}]})


def ingest_one(conn: psycopg.Connection[tuple[object, ...]], i: int) -> None:
    conn.execute(INGEST, (webhook(i),)).fetchone()


def ingest_batch(conn: psycopg.Connection[tuple[object, ...]], i: int) -> None:
    conn.execute(INGEST, (webhook(i, BATCH),)).fetchone()


def as_worker(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute("set role service_role")


PLAIN_TABLES = ("inbound_events", "contacts", "conversations", "messages")
PLAIN_WEBHOOK = [
    "insert into plain.inbound_events (tenant_id, whatsapp_number_id, payload_hash, object, field,"
    " phone_number_id, payload, status, message_count)"
    " values (%(tenant)s, %(number)s, %(hash)s, 'whatsapp_business_account', 'messages', %(pnid)s,"
    " %(payload)s, 'applied', 1) on conflict (payload_hash) do nothing",
    "insert into plain.contacts (tenant_id, wa_id, profile_name) values (%(tenant)s, %(wa_id)s, %(name)s)"
    " on conflict (tenant_id, wa_id) do update set profile_name = excluded.profile_name returning id",
    "insert into plain.conversations (tenant_id, contact_id, whatsapp_number_id)"
    " values (%(tenant)s, %(contact)s, %(number)s) on conflict (tenant_id, contact_id, whatsapp_number_id)"
    " where status in ('open', 'waiting', 'pending') do update set updated_at = now() returning id",
    "insert into plain.messages (tenant_id, conversation_id, contact_id, whatsapp_number_id, direction,"
    " sender_type, wamid, type, content, payload, status, wa_timestamp)"
    " values (%(tenant)s, %(conversation)s, %(contact)s, %(number)s, 'inbound', 'contact', %(wamid)s, 'text',"
    " %(body)s, %(message)s, 'received', now()) on conflict (tenant_id, wamid) do nothing",
    "update plain.conversations set message_count = message_count + 1, inbound_count = inbound_count + 1,"
    " unread_count = unread_count + 1, last_message_at = now(), last_message_preview = left(%(body)s, 100),"
    " last_message_direction = 'inbound', last_customer_message_at = now(),"
    " window_expires_at = now() + interval '24 hours' where id = %(conversation)s",
    "update plain.contacts set total_messages = total_messages + 1, last_message_at = now(),"
    " last_inbound_at = now() where id = %(contact)s",
]


def plain_tables(url: str) -> dict[str, object]:
    """Copies of the tables ingest writes (columns, defaults, checks, indexes; no triggers,
    policies or foreign keys); returns the demo number's tenant and id."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create schema plain")
        for table in PLAIN_TABLES:
            conn.execute(f"create table plain.{table} (like public.{table} including all)")
        row = conn.execute("select tenant_id, id from public.whatsapp_numbers where phone_number_id = %s",
                           (PHONE_NUMBER_ID,)).fetchone()
    assert row is not None
    return {"tenant": row[0], "number": row[1], "pnid": PHONE_NUMBER_ID}


def plain_ingest(ids: dict[str, object]) -> Operation:
    def write(conn: psycopg.Connection[tuple[object, ...]], i: int) -> None:
        body = webhook(i)
        change = json.loads(body)["entry"][0]["changes"][0]["value"]
        message, contact = change["messages"][0], change["contacts"][0]
        params = {**ids, "hash": hashlib.sha256(body.encode()).hexdigest(), "payload": body,
                  "wa_id": contact["wa_id"], "name": contact["profile"]["name"], "wamid": message["id"],
                  "body": message["text"]["body"], "message": json.dumps(message)}
        insert_event, upsert_contact, upsert_conversation, *rest = PLAIN_WEBHOOK
        with conn.transaction():
            conn.execute(insert_event, params)
            params["contact"] = one(conn.execute(upsert_contact, params).fetchone())
            params["conversation"] = one(conn.execute(upsert_conversation, params).fetchone())
            for statement in rest:
                conn.execute(statement, params)

    return write


def one(row: tuple[object, ...] | None) -> object:
    assert row is not None
    return row[0]


def measure(ctx: Context) -> list[Measure]:
    url = ctx.fresh_db()
    plain = plain_ingest(plain_tables(url))
    measures = []
    for clients in (1, 4):
        fair = f"plain statements, same rows, 1 transaction per webhook, {clients} client(s)"
        ingest = throughput(url, ingest_one, clients, SECONDS, setup=as_worker)
        measures += [
            Measure(fair, throughput(url, plain, clients, SECONDS), "messages/s"),
            Measure(f"whatsapp_ingest, {clients} client(s)", ingest, "messages/s",
                    baseline=f"plain 1-row INSERT, {clients} client(s)", goal=">= 0.8"),
            Measure(f"whatsapp_ingest, {clients} client(s) (vs plain statements)", ingest, "messages/s",
                    baseline=fair, goal=">= 0.6"),
        ]
    batched = throughput(url, ingest_batch, 4, SECONDS, setup=as_worker) * BATCH
    measures.append(Measure(f"whatsapp_ingest, {BATCH} messages per webhook, 4 client(s)", batched,
                            "messages/s", baseline="plain 1-row INSERT, 4 client(s)"))
    return measures
