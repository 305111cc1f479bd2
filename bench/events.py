"""The outbox's cost on the hottest write path: whatsapp_ingest with the event triggers
(message.received, plus contact / conversation created for new customers) divided by the
same ingest in a clone whose event triggers are disabled. Goal: ratio >= 0.9.
"""

from __future__ import annotations

import psycopg

from harness import Context, Measure, throughput
from ingest import SECONDS, as_worker, ingest_one

EMIT_TRIGGERS = {
    "messages": ("_500_emit", "_500_emit_status"),
    "conversations": ("_500_emit", "_500_emit_change"),
    "contacts": ("_500_emit", "_500_emit_change"),
}


def without_outbox(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for table, triggers in EMIT_TRIGGERS.items():
            for trigger in triggers:
                conn.execute(f"alter table public.{table} disable trigger {trigger}")


def measure(ctx: Context) -> list[Measure]:
    measures = []
    for clients in (1, 4):
        bare = ctx.fresh_db()
        without_outbox(bare)
        # measured alternately so that drift of the shared machine hits both alike
        with_outbox = throughput(ctx.fresh_db(), ingest_one, clients, 3 * SECONDS, setup=as_worker)
        plain = throughput(bare, ingest_one, clients, 3 * SECONDS, setup=as_worker)
        measures += [
            Measure(f"ingest without outbox, {clients} client(s)", plain, "messages/s"),
            Measure(f"ingest with outbox, {clients} client(s)", with_outbox, "messages/s",
                    baseline=f"ingest without outbox, {clients} client(s)", goal=">= 0.9"),
        ]
    return measures
