"""The Hotmart chapter: a purchase through the signed route, the access message, the student."""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Any

import httpx
from psycopg.types.json import Jsonb
from rich.console import Console
from rich.table import Table

from zapbase.db.pool import Connection
from zapbase.demo.common import CUSTOMER, REPLY_TIMEOUT_S, cell, settle
from zapbase.hotmart import HOTTOK_HEADER, hotmart_path

DEMO_HOTMART = "00000000-0000-4000-8600-000000000001"  # seed: Loja Demo's Hotmart integration
DEMO_HOTTOK = "zapbase-demo-hottok"  # seed: its hottok, in the local Vault
ACCESS_MESSAGE = "Parabéns pela compra! Seu acesso ao Método Fluência: https://hotmart.com/pt-br/club"
_STUDENT_SQL = """
select t.status as transaction, c.ltv, c.tags, e.access_status as access, e.progress_pct as progress,
       e.first_access_origin as origin,
       (select string_agg(v.type, ', ' order by v.created_at) from public.events v
         where v.tenant_id = t.tenant_id and v.created_at >= %s
           and v.type ~ '^(purchase|enrollment|progress)[.]') as events
  from public.transactions t
  join public.contacts c on c.id = t.contact_id
  left join public.enrollments e on e.tenant_id = t.tenant_id and e.contact_id = t.contact_id
   and e.product_id = t.product_id
 where t.tenant_id = '00000000-0000-4000-b000-000000000001' and t.code = %s
"""


async def hotmart_chapter(
    http: httpx.AsyncClient,
    worker_url: str,
    conn: Connection,
    wa_id: str,
    conversation_id: uuid.UUID,
    *,
    settle_s: float = REPLY_TIMEOUT_S,
) -> list[dict[str, Any]]:
    """The customer of the conversation buys a course on Hotmart (her phone matches her
    contact), gets her access link on WhatsApp, opens the course (origin KPI: whatsapp once
    that message was delivered, within `settle_s`), completes a module, asks for a refund and
    gets it: each webhook goes through the worker's route (after one with a wrong hottok,
    refused); returns, per step, the answer and the rows."""
    code = f"HPDEMO{secrets.randbelow(10**10):010d}"
    product = {"id": 4774438, "name": "Método Fluência em 90 Dias"}
    buyer = {"name": CUSTOMER, "email": f"{wa_id}@example.com.br", "checkout_phone": wa_id[2:]}
    purchase = {
        "transaction": code,
        "price": {"value": 497, "currency_value": "BRL"},
        "offer": {"code": "k2pasun0"},
        "payment": {"type": "PIX", "installments_number": 1},
    }
    club = {"product": product, "user": {"name": CUSTOMER, "email": buyer["email"]}}

    def sale(status: str) -> dict[str, Any]:
        return {"product": product, "buyer": buyer, "purchase": {**purchase, "status": status}}

    steps: list[tuple[str, dict[str, Any]]] = [
        ("PURCHASE_APPROVED", sale("APPROVED")),
        ("CLUB_FIRST_ACCESS", club),
        ("CLUB_MODULE_COMPLETED", {**club, "module": {"id": "Zq4x8Jb1Ok", "name": "Destravando a fala"}}),
        ("PURCHASE_PROTEST", sale("DISPUTE")),
        ("PURCHASE_REFUNDED", sale("REFUNDED")),
    ]
    url = worker_url + hotmart_path(DEMO_HOTMART)
    started = await (await conn.execute("select now() as at")).fetchone()
    rows: list[dict[str, Any]] = []
    for n, (name, data) in enumerate(steps):
        body = {
            "id": str(uuid.uuid4()),
            "event": name,
            "version": "2.0.0",
            "creation_date": int(time.time() * 1000),
            "data": data,
        }
        if n == 0:
            refused = await http.post(url, json=body, headers={HOTTOK_HEADER: "not-the-hottok"})
            rows.append({"step": f"{name} (wrong hottok)", "http": refused.status_code})
        answer = await http.post(url, json=body, headers={HOTTOK_HEADER: DEMO_HOTTOK})
        if n == 0:  # what the customer success team sends on purchase.approved
            await conn.execute(
                "select public.whatsapp_queue_reply(%s, %s, 'system', null, null)",
                (conversation_id, Jsonb({"type": "text", "text": {"body": ACCESS_MESSAGE}})),
            )
            await settle(conn, conversation_id, timeout=settle_s)
        cur = await conn.execute(_STUDENT_SQL, (started["at"] if started else None, code))
        state = await cur.fetchone()
        rows.append({"step": name, "http": answer.status_code, **(state or {})})
    return rows


def render_hotmart(out: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title="Hotmart → commerce: she buys a course (POST /webhooks/hotmart/<integration>)")
    for column in ("event", "HTTP", "transaction", "LTV", "tags", "access", "%", "first access"):
        table.add_column(column)
    for r in rows:
        tags = ", ".join(r.get("tags") or []) or "-"
        ltv, progress = (f"{r[k]:.0f}" if r.get(k) is not None else "-" for k in ("ltv", "progress"))
        table.add_row(
            r["step"],
            str(r["http"]),
            cell("", r.get("transaction")),
            ltv,
            tags,
            cell("", r.get("access")),
            progress,
            cell("", r.get("origin")),
        )
    out.print(table)
    if rows and rows[-1].get("events"):
        out.print(f"commerce events: {rows[-1]['events']}")
