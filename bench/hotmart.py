"""Hotmart events per second through hotmart_ingest, divided by whatsapp_ingest of one text
message per webhook, both with one client on the same server in the same run.

Each Hotmart event is a PURCHASE_APPROVED of a new transaction by one of 200 buyers (new
contacts first, then known ones matched by CPF): raw event, product, offer, contact,
transaction, enrollment, LTV trigger and the purchase.approved event. The WhatsApp side is
bench/ingest.py's webhook: one new text message from one of 200 contacts.
"""

from __future__ import annotations

import json
import time
import uuid

import psycopg

from harness import Context, Measure, throughput
from ingest import as_worker, ingest_one

SECONDS = 3.0
TENANT = "00000000-0000-4000-b000-000000000001"  # seed: Loja Demo
BUYERS = 200
INGEST = "select public.hotmart_ingest(%s, %s::jsonb)"


def purchase(i: int) -> str:
    buyer = i % BUYERS
    now_ms = int(time.time() * 1000)
    return json.dumps({
        "id": str(uuid.uuid4()), "event": "PURCHASE_APPROVED", "version": "2.0.0", "creation_date": now_ms,
        "data": {
            "product": {"id": 4774438 + i % 3, "name": "Método Fluência em 90 Dias",
                        "warranty_date": "2026-12-31T00:00:00Z"},
            "buyer": {"name": f"Aluno {buyer}", "email": f"aluno{buyer}@example.com.br",
                      "document": f"{buyer:011d}", "document_type": "CPF",
                      "checkout_phone": f"119{buyer:08d}"},
            "purchase": {"transaction": f"HPBENCH{i:010d}", "status": "APPROVED", "approved_date": now_ms,
                         "order_date": now_ms - 60_000, "price": {"value": 497, "currency_value": "BRL"},
                         "offer": {"code": "k2pasun0"},
                         "payment": {"type": "CREDIT_CARD", "installments_number": 12}},
        },
    })


def measure(ctx: Context) -> list[Measure]:
    url = ctx.fresh_db()
    with psycopg.connect(url, autocommit=True) as conn:
        integration = conn.execute(
            "insert into public.integrations (tenant_id, type, provider, name, status)"
            " values (%s, 'payments', 'hotmart', 'Hotmart', 'active') returning id", (TENANT,)).fetchone()
    assert integration is not None

    def ingest_purchase(conn: psycopg.Connection[tuple[object, ...]], i: int) -> None:
        conn.execute(INGEST, (integration[0], purchase(i))).fetchone()

    baseline = "whatsapp_ingest, one text message per webhook, 1 client"
    return [
        Measure(baseline, throughput(url, ingest_one, 1, SECONDS, setup=as_worker), "messages/s"),
        Measure("hotmart_ingest, PURCHASE_APPROVED of a new transaction, 1 client",
                throughput(url, ingest_purchase, 1, SECONDS, setup=as_worker), "events/s", baseline=baseline),
    ]
