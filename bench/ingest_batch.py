"""Time per message of whatsapp_ingest when one webhook carries 1, 10, 100 or 1,000 text
messages, divided by the time per message of one-message webhooks measured in the same run.
Each size sends 1,000 messages of one contact per round (the worst case for a batch: every
message lands in the same contact and conversation). Goal: flat (ratio <= 1.2 at every
size): one request's work grows linearly with its items, never with their square.

Sizes are measured in interleaved rounds (1, 10, 100, 1,000, then again) on one database,
and each figure is the median of its rounds, because these machines are shared and noisy.
"""

from __future__ import annotations

import itertools
import json
import statistics
import time

import psycopg

from harness import Context, Measure
from ingest import INGEST, PHONE_NUMBER_ID

SIZES = (1, 10, 100, 1000)
MESSAGES_PER_ROUND = 1000  # per size: 1,000 one-message webhooks ... one webhook of 1,000
ROUNDS = 3

_contacts = itertools.count()
_wamids = itertools.count()


def webhook(size: int, contact: int) -> str:
    """One webhook of `size` text messages from `contact`."""
    sender = f"55219{contact:08d}"
    messages = [{"from": sender, "id": f"wamid.batch.{next(_wamids)}", "type": "text",
                 "timestamp": str(int(time.time())), "text": {"body": f"Mensagem {n} do pedido {contact}"}}
                for n in range(size)]
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "5511999990000", "phone_number_id": PHONE_NUMBER_ID},
             "contacts": [{"profile": {"name": f"Cliente {contact}"}, "wa_id": sender}], "messages": messages}
    change = {"field": "messages", "value": value}
    return json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "102290129340398", "changes": [change]}]})


def seconds_per_message(conn: psycopg.Connection[tuple[object, ...]], size: int) -> float:
    contact = next(_contacts)
    bodies = [webhook(size, contact) for _ in range(MESSAGES_PER_ROUND // size)]
    began = time.perf_counter()
    for raw in bodies:
        conn.execute(INGEST, (raw,)).fetchone()
    return (time.perf_counter() - began) / MESSAGES_PER_ROUND


def measure(ctx: Context) -> list[Measure]:
    samples: dict[int, list[float]] = {size: [] for size in SIZES}
    with psycopg.connect(ctx.fresh_db(), autocommit=True) as conn:
        conn.execute("set role service_role")
        seconds_per_message(conn, 10)  # warm-up: plans and caches
        for _ in range(ROUNDS):
            for size in SIZES:
                samples[size].append(seconds_per_message(conn, size))
    one = f"whatsapp_ingest, {SIZES[0]} message per webhook"
    return [
        Measure(one if size == 1 else f"whatsapp_ingest, {size:,} messages of one contact per webhook",
                statistics.median(samples[size]) * 1000, "ms/message",
                baseline=None if size == 1 else one, goal="" if size == 1 else "<= 1.2")
        for size in SIZES
    ]
