"""Campaigns. Materialisation: 100,000 recipients made by start_campaign (audience query,
skip reasons, counters) divided by a plain `insert … select` of the same rows into the same
table (goal >= 0.5). Pacing: a campaign at 600 / minute sent by the campaign loop and the
sender to the simulator for PACING_S seconds (120 by default; ZAPBASE_BENCH_PACING_S
shortens it): messages per minute at the simulator within 5 % of 600, 0 duplicates.
"""

from __future__ import annotations

import json
import os
import time

import anyio
import httpx
import psycopg

from harness import Context, Measure
from zapbase.db.pool import open_pool
from zapbase.simulator import DEMO_NUMBER, Simulator, SimulatorConfig
from zapbase.simulator import create_app as create_simulator
from zapbase.whatsapp import GraphAPI
from zapbase.worker.campaigns import CampaignLoop
from zapbase.worker.metrics import Metrics
from zapbase.worker.sender import Sender

TENANT = "00000000-0000-4000-b000-000000000001"  # seed: Loja Demo
NUMBER = "00000000-0000-4000-9000-000000000001"
OWNER_MEMBER = "00000000-0000-4000-c000-000000000001"
RECIPIENTS = 100_000
RATE = 600
PACING_S = float(os.environ.get("ZAPBASE_BENCH_PACING_S", "120"))
BODY = [{"type": "BODY", "text": "Olá {{1}}, temos novidades!", "example": {"body_text": [["Ana"]]}}]
VARIABLES = {"body": {"1": {"field": "first_name", "default": "cliente"}}}
_START = "select private.campaign_start(c) from public.campaigns c where c.id = %s"


def prepare(url: str, contacts: int) -> str:
    """Contacts with consent, an approved template; returns the template id."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "insert into public.contacts (tenant_id, wa_id, name, tags)"
            " select %s, '5511' || lpad(g::text, 9, '0'), 'Cliente ' || g, '{clientes}'"
            "   from generate_series(1, %s) g",
            (TENANT, contacts),
        )
        # Arrangement only: the history rows and the columns its trigger derives, written in
        # bulk with the tables' triggers off (one consent trigger per row would dominate).
        conn.execute("alter table public.contact_consents disable trigger user")
        conn.execute("alter table public.contacts disable trigger user")
        conn.execute(
            "insert into public.contact_consents (tenant_id, contact_id, kind, source, evidence)"
            " select tenant_id, id, 'consent_given', 'import', 'Planilha de clientes'"
            "   from public.contacts where tenant_id = %s",
            (TENANT,),
        )
        conn.execute("update public.contacts set consent = true, consent_at = now() where tenant_id = %s",
                     (TENANT,))
        conn.execute("alter table public.contacts enable trigger user")
        conn.execute("alter table public.contact_consents enable trigger user")
        row = conn.execute(
            "insert into public.message_templates"
            " (tenant_id, waba_id, name, category, status, components, sync_status)"
            " values (%s, %s, 'novidades', 'MARKETING', 'APPROVED', %s::jsonb, 'synced') returning id",
            (TENANT, DEMO_NUMBER.waba_id, json.dumps(BODY)),
        ).fetchone()
        assert row is not None
        return str(row[0])


def new_campaign(conn: psycopg.Connection[tuple[object, ...]], template_id: str, rate: int) -> str:
    row = conn.execute(
        "insert into public.campaigns (tenant_id, name, whatsapp_number_id, template_id, audience, variables,"
        " rate_per_minute) values (%s, 'Novidades', %s, %s, '{\"tags_any\": [\"clientes\"]}', %s::jsonb, %s)"
        " returning id",
        (TENANT, NUMBER, template_id, json.dumps(VARIABLES), rate),
    ).fetchone()
    assert row is not None
    return str(row[0])


def materialise(url: str) -> tuple[float, float]:
    """Seconds of the plain insert … select, then of start_campaign, for the same rows."""
    template_id = prepare(url, RECIPIENTS)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("vacuum analyze public.contacts")
        plain_campaign = new_campaign(conn, template_id, RATE)
        began = time.perf_counter()
        conn.execute(
            "insert into public.campaign_recipients (tenant_id, campaign_id, contact_id, wa_id, status)"
            " select c.tenant_id, %s, c.id, c.wa_id, 'pending' from public.contacts c where c.tenant_id = %s",
            (plain_campaign, TENANT),
        )
        plain_s = time.perf_counter() - began
        conn.execute("truncate public.campaign_recipients")
        campaign_id = new_campaign(conn, template_id, RATE)
        began = time.perf_counter()
        conn.execute(_START, (campaign_id,))
        start_s = time.perf_counter() - began
        row = conn.execute("select pending_count from public.campaigns where id = %s",
                           (campaign_id,)).fetchone()
        assert row is not None and row[0] == RECIPIENTS, row
    return plain_s, start_s


async def pace(url: str) -> tuple[int, int, float]:
    """(messages at the simulator, distinct phones, seconds) of a RATE / minute campaign."""
    template_id = prepare(url, int(RATE * PACING_S / 60) + 300)
    with psycopg.connect(url, autocommit=True) as conn:
        campaign_id = new_campaign(conn, template_id, RATE)
        conn.execute(_START, (campaign_id,))
    sim = Simulator(SimulatorConfig(numbers=(DEMO_NUMBER,)))
    transport = httpx.ASGITransport(app=create_simulator(simulator=sim))
    async with (
        open_pool(url, 6) as pool,
        httpx.AsyncClient(transport=transport, base_url="http://simulator") as http,
    ):
        api = GraphAPI(http, base_url="http://simulator")
        loop = CampaignLoop(pool=pool, api=api)
        sender = Sender(pool=pool, api=api, metrics=Metrics(), worker_id="bench", poll_interval=0.05)
        began = time.time()
        with anyio.move_on_after(PACING_S):
            async with anyio.create_task_group() as tg:
                tg.start_soon(loop.run)
                tg.start_soon(sender.run)
        ended = time.time()
    landed = [m for m in sim.inbox if began <= m.received_at <= ended]
    return len(landed), len({m.wa_id for m in landed}), ended - began


async def run(ctx: Context) -> list[Measure]:
    plain_s, start_s = materialise(ctx.fresh_db())
    sent, phones, seconds = await pace(ctx.fresh_db())
    per_minute = sent / seconds * 60
    return [
        Measure(f"plain insert … select of {RECIPIENTS:,} recipients", RECIPIENTS / plain_s, "rows/s"),
        Measure(f"start_campaign materialising {RECIPIENTS:,} recipients", RECIPIENTS / start_s, "rows/s",
                baseline=f"plain insert … select of {RECIPIENTS:,} recipients", goal=">= 0.5"),
        Measure(f"campaign pacing at {RATE}/min for {seconds:.0f} s", per_minute, "messages/min",
                goal=f"{RATE * 0.95:.0f} to {RATE * 1.05:.0f}"),
        Measure("campaign pacing: duplicates at the simulator", sent - phones, "messages", goal="0"),
    ]


def measure(ctx: Context) -> list[Measure]:
    return anyio.run(run, ctx)
