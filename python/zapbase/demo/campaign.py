"""The campaign chapter: a template approved by the simulator's Meta, a paced campaign, a reply."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from rich.console import Console
from rich.table import Table

from zapbase.demo.common import DEMO_NUMBER_ID, as_manager, new_customer, until

if TYPE_CHECKING:
    from zapbase.local_stack import LocalStack


OFFER = [
    {"type": "BODY", "text": "Olá {{1}}! Em {{2}} o frete é grátis até domingo. Quer aproveitar?",
     "example": {"body_text": [["Ana", "Recife"]]}},
    {"type": "FOOTER", "text": "Responda SAIR para não receber ofertas"},
    {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Quero!"}]},
]  # fmt: skip
OFFER_VARIABLES = {
    "body": {"1": {"field": "first_name"}, "2": {"attribute": "cidade", "default": "sua cidade"}},
}
_RECIPIENTS_SQL = """
select k.name, r.wa_id, r.status, r.skip_reason, r.error_code, r.replied_at is not null as replied
  from public.campaign_recipients r join public.contacts k on k.id = r.contact_id
 where r.campaign_id = %s order by r.wa_id
"""


@dataclass(frozen=True, slots=True)
class CampaignRun:
    template: dict[str, Any]
    dry_run: dict[str, Any]
    campaign: dict[str, Any]
    recipients: list[dict[str, Any]]
    events: list[str]
    received: dict[str, str]  # number → the first name the phone showed


async def campaign_chapter(stack: LocalStack, db_url: str) -> CampaignRun:
    """Ana (the owner) creates a template (the worker submits it to the simulator's "Meta"),
    adds four customers (three consented), dry-runs and starts a campaign; the worker paces
    it out, the phones receive it and one customer answers; returns the rows."""
    tag = f"oferta_{secrets.token_hex(3)}"
    people = [("Joana Lima", "Recife", True), ("Paulo Reis", "Olinda", True), ("Rita Melo", None, True),
              ("Caio Nunes", "Recife", False)]  # fmt: skip
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row, autocommit=True) as conn:
        template = await as_manager(
            conn,
            "select id, name, status, sync_status"
            " from public.create_message_template(%s, %s, 'MARKETING', %s)",
            (DEMO_NUMBER_ID, tag, Jsonb(OFFER)),
        )
        await until(
            conn,
            "select status = 'APPROVED' as done from public.message_templates where id = %s",
            (template["id"],),
            "Meta's approval of the template",
        )
        phones: dict[str, str] = {}
        tag_id = (await as_manager(conn, "insert into public.tags (tenant_id, name) select tenant_id, %s"
                                    " from public.whatsapp_numbers where id = %s returning id",
                                    (tag, DEMO_NUMBER_ID)))["id"]  # fmt: skip
        for name, city, consented in people:
            wa_id = new_customer()
            phones[wa_id] = name
            contact = await as_manager(
                conn,
                "insert into public.contacts (tenant_id, wa_id, name, attributes)"
                " select tenant_id, %s, %s, %s from public.whatsapp_numbers where id = %s"
                " returning id, tenant_id",
                (wa_id, name, Jsonb({"cidade": city} if city else {}), DEMO_NUMBER_ID),
            )
            await as_manager(conn, "insert into public.contact_tags (tenant_id, contact_id, tag_id)"
                              " values (%s, %s, %s) returning id",
                              (contact["tenant_id"], contact["id"], tag_id))  # fmt: skip
            if consented:
                await as_manager(
                    conn,
                    "select public.record_contact_consent(%s, 'consent_given', %s)",
                    (contact["id"], "Aceitou ofertas no cadastro da loja (formulário)"),
                )
        campaign = await as_manager(
            conn,
            "insert into public.campaigns (tenant_id, name, whatsapp_number_id, template_id, audience,"
            " variables, rate_per_minute) select tenant_id, 'Frete grátis no Nordeste', id, %s, %s, %s, 120"
            " from public.whatsapp_numbers where id = %s returning id",
            (template["id"], Jsonb({"tags_any": [tag]}), Jsonb(OFFER_VARIABLES), DEMO_NUMBER_ID),
        )
        dry_run = (await as_manager(conn, "select public.campaign_dry_run(%s) as d", (campaign["id"],)))["d"]
        await as_manager(conn, "select id from public.start_campaign(%s)", (campaign["id"],))
        await until(
            conn,
            "select count(*) = 3 as done from public.campaign_recipients"
            " where campaign_id = %s"
            " and status in ('delivered', 'read')",
            (campaign["id"],),
            "the campaign's deliveries",
        )
        first = next(wa for wa, name in phones.items() if name == "Joana Lima")
        await stack.user(first, "Joana Lima").send_text("Quero! Como faço o pedido?")
        await until(
            conn,
            "select replied_count = 1 as done from public.campaigns where id = %s",
            (campaign["id"],),
            "the reply to be counted",
        )
        cur = await conn.execute("select * from public.campaigns where id = %s", (campaign["id"],))
        row = await cur.fetchone()
        recipients = await (await conn.execute(_RECIPIENTS_SQL, (campaign["id"],))).fetchall()
        events = await (
            await conn.execute(
                "select type from public.events where subject_id = %s or payload ->> 'campaign_id' = %s::text"
                " order by created_at",
                (campaign["id"], campaign["id"]),
            )
        ).fetchall()
    texts = {
        m.wa_id or "": m.body["template"]["components"][0]["parameters"][0]["text"]
        for m in stack.simulator.inbox
        if m.type == "template" and m.wa_id in phones
    }
    return CampaignRun(template, dry_run, row or {}, recipients, [e["type"] for e in events], texts)


def render_campaign(out: Console, run: CampaignRun) -> None:
    c = run.campaign
    out.print(
        f"[bold]Campaign[/] {c.get('name')!r} with template {run.template['name']} "
        f"(sync {run.template['sync_status']} → approved by the simulator's Meta); "
        f"dry run: {run.dry_run}"
    )
    table = Table(title="public.campaign_recipients")
    for column in ("contact", "number", "status", "skipped because", "replied", "first name on the phone"):
        table.add_column(column)
    for r in run.recipients:
        replied = "yes" if r["replied"] else ""
        table.add_row(
            r["name"],
            f"+{r['wa_id']}",
            r["status"],
            r["skip_reason"] or "",
            replied,
            run.received.get(r["wa_id"], ""),
        )
    out.print(table)
    counters = ("total", "sent", "delivered", "read", "failed", "skipped", "replied")
    shown = ", ".join(f"{k} {c.get(k + '_count')}" for k in counters)
    out.print(f"campaign [bold]{c.get('status')}[/]: {shown}")
    out.print("events: " + " → ".join(dict.fromkeys(run.events)))
