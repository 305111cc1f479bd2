"""Arrange helpers of the campaign tests: contacts with consent, an approved template, a draft."""

from __future__ import annotations

import json
from typing import Any

from support import Db

TENANT = "00000000-0000-4000-b000-000000000001"  # seed: Loja Demo
NUMBER = "00000000-0000-4000-9000-000000000001"
OWNER = "00000000-0000-4000-a000-000000000001"
AGENT = "00000000-0000-4000-a000-000000000002"
WABA_ID = "102290129340398"

PROMO = [
    {"type": "HEADER", "format": "TEXT", "text": "Oferta para {{1}}", "example": {"header_text": ["Ana"]}},
    {
        "type": "BODY",
        "text": "Olá {{1}}, em {{2}} o frete é {{3}}!",
        "example": {"body_text": [["Ana", "Campinas", "grátis"]]},
    },
    {"type": "FOOTER", "text": "Responda SAIR para não receber mais"},
    {
        "type": "BUTTONS",
        "buttons": [
            {"type": "QUICK_REPLY", "text": "Quero"},
            {
                "type": "URL",
                "text": "Ver oferta",
                "url": "https://loja.example.com/o/{{1}}",
                "example": ["https://loja.example.com/o/abc"],
            },
        ],
    },
]
PROMO_VARIABLES = {
    "header": {"1": {"field": "first_name"}},
    "body": {
        "1": {"field": "first_name"},
        "2": {"attribute": "city", "default": "sua cidade"},
        "3": "grátis",
    },
    "buttons": {"1": {"attribute": "code"}},
}


def contacts(
    db: Db,
    count: int,
    *,
    prefix: str = "55119",
    tags: str = "{}",
    attributes: str = "{}",
    consent: bool = True,
) -> list[str]:
    """`count` contacts numbered from `prefix`, with LGPD consent given (as an import records it)."""
    rows = db.sql(
        "insert into public.contacts (tenant_id, wa_id, name, tags, attributes)"
        " select %s, %s || lpad(g::text, 8, '0'), 'Cliente ' || g, %s::text[], %s::jsonb"
        "   from generate_series(1, %s) g returning id",
        (TENANT, prefix, tags, attributes, count),
    )
    ids = [str(r["id"]) for r in rows]
    if consent and ids:
        db.sql(
            "insert into public.contact_consents (tenant_id, contact_id, kind, source, evidence)"
            " select %s, unnest(%s::uuid[]), 'consent_given', 'import', 'Planilha de clientes 2026'",
            (TENANT, ids),
        )
    return ids


def template(
    db: Db,
    name: str = "promo_frete",
    components: list[dict[str, Any]] | None = None,
    status: str = "APPROVED",
    category: str = "MARKETING",
) -> str:
    """A template Meta approved (as a sync brings it)."""
    return str(
        db.value(
            "insert into public.message_templates"
            " (tenant_id, waba_id, name, category, status, components, sync_status)"
            " values (%s, %s, %s, %s, %s, %s::jsonb, 'synced') returning id",
            (TENANT, WABA_ID, name, category, status, json.dumps(components or PROMO)),
        )
    )


def campaign(
    db: Db,
    template_id: str,
    *,
    audience: dict[str, Any] | None = None,
    variables: dict[str, Any] | None = None,
    rate: int = 600,
    **columns: Any,
) -> str:
    """A draft made by the owner through PostgREST (the table, under RLS)."""
    extra = "".join(f", {k}" for k in columns)
    marks = "".join(", %s" for _ in columns)
    with db.as_user(OWNER) as s:
        return str(
            s.value(
                "insert into public.campaigns (tenant_id, name, whatsapp_number_id, template_id, audience,"
                f" variables, rate_per_minute{extra})"
                f" values (%s, 'Frete grátis', %s, %s, %s::jsonb, %s::jsonb, %s{marks})"
                " returning id",
                (
                    TENANT,
                    NUMBER,
                    template_id,
                    json.dumps(audience or {}),
                    json.dumps(variables or PROMO_VARIABLES),
                    rate,
                    *columns.values(),
                ),
            )
        )


def release(db: Db) -> int:
    with db.as_service() as s:
        return int(s.value("select public.campaign_release()"))


def recount(db: Db, campaign_id: str) -> dict[str, int]:
    """The counters as a recount of the recipients says they must be."""
    row = db.sql(
        "select count(*) as total_count,"
        " count(*) filter (where status = 'pending') as pending_count,"
        " count(*) filter (where status = 'queued') as queued_count,"
        " count(*) filter (where status = 'sent') as sent_count,"
        " count(*) filter (where status = 'delivered') as delivered_count,"
        " count(*) filter (where status = 'read') as read_count,"
        " count(*) filter (where status = 'failed') as failed_count,"
        " count(*) filter (where status = 'skipped') as skipped_count,"
        " count(*) filter (where replied_at is not null) as replied_count"
        " from public.campaign_recipients where campaign_id = %s",
        (campaign_id,),
    )[0]
    return {k: int(v) for k, v in row.items()}


def counters(db: Db, campaign_id: str) -> dict[str, int]:
    row = db.sql(
        "select total_count, pending_count, queued_count, sent_count, delivered_count, read_count,"
        " failed_count,"
        " skipped_count, replied_count from public.campaigns where id = %s",
        (campaign_id,),
    )[0]
    return {k: int(v) for k, v in row.items()}
