"""Campaigns meet the rest of the product: templates tied to a product go to its buyers only,
a cancel withdraws what is still queued, and Meta's late retryable errors are retried."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from campaigns_db.campaign_support import (
    OWNER,
    TENANT,
    campaign,
    contacts,
    counters,
    recount,
    release,
    template,
)
from campaigns_db.test_campaigns_sql import recipients, sent, start, state, webhook
from support import Db


def product(db: Db, tenant_id: str = TENANT) -> str:
    return str(
        db.value(
            "insert into public.products (tenant_id, name) values (%s, 'Método Fluência em 90 Dias')"
            " returning id",
            (tenant_id,),
        )
    )


def purchase(db: Db, contact_id: str, product_id: str, status: str) -> None:
    db.sql(
        "insert into public.transactions (tenant_id, code, contact_id, product_id, status)"
        " values (%s, 'HP' || substr(md5(random()::text), 1, 10), %s, %s, %s)",
        (TENANT, contact_id, product_id, status),
    )


def coded(db: Db, count: int) -> list[str]:
    ids = contacts(db, count)
    db.sql('update public.contacts set attributes = \'{"code": "X"}\' where tenant_id = %s', (TENANT,))
    return ids


def test_a_template_tied_to_a_product_goes_to_its_buyers_only(db: Db) -> None:
    approved, complete, refunded, stranger = coded(db, 4)
    product_id = product(db)
    purchase(db, approved, product_id, "approved")
    purchase(db, complete, product_id, "complete")
    purchase(db, refunded, product_id, "refunded")
    template_id = template(db)
    with db.as_user(OWNER) as s:
        s.all("update public.message_templates set product_id = %s where id = %s", (product_id, template_id))
    campaign_id = campaign(db, template_id)
    with db.as_user(OWNER) as s:
        dry = s.value("select public.campaign_dry_run(%s)", (campaign_id,))
        previews = {
            c: s.value("select public.preview_template(%s, %s, '{}'::jsonb)", (template_id, c))
            for c in (approved, stranger)
        }
    assert dry == {"audience": 4, "would_send": 2, "skipped": {"not_a_buyer": 2}}
    assert (previews[approved]["buyer"], previews[stranger]["buyer"]) == (True, False)
    start(db, campaign_id)
    by_contact = {str(r["contact_id"]): r for r in recipients(db, campaign_id)}
    assert {c: by_contact[c]["skip_reason"] for c in (refunded, stranger)} == {
        refunded: "not_a_buyer",
        stranger: "not_a_buyer",
    }
    # refunded before the send: checked again when the message is released
    db.sql("update public.transactions set status = 'refunded' where contact_id = %s", (complete,))
    db.sql(
        "update public.campaigns set pace_anchor_at = now() - interval '1 minute' where id = %s",
        (campaign_id,),
    )
    assert release(db) == 1
    by_contact = {str(r["contact_id"]): r for r in recipients(db, campaign_id)}
    assert (by_contact[approved]["status"], by_contact[complete]["skip_reason"]) == ("queued", "not_a_buyer")
    assert counters(db, campaign_id) == recount(db, campaign_id)


def test_an_untied_template_previews_without_a_buyer_verdict(db: Db) -> None:
    (contact,) = coded(db, 1)
    with db.as_user(OWNER) as s:
        shown = s.value("select public.preview_template(%s, %s, '{}'::jsonb)", (template(db), contact))
    assert "buyer" not in shown


def test_a_template_cannot_name_another_tenants_product(db: Db) -> None:
    other = db.create_tenant(db.create_user(), "Outra")
    foreign = product(db, str(other))
    template_id = template(db)
    with pytest.raises(psycopg.errors.ForeignKeyViolation), db.as_user(OWNER) as s:
        s.all("update public.message_templates set product_id = %s where id = %s", (foreign, template_id))


def claim(db: Db, batch_size: int) -> list[dict[str, Any]]:
    with db.as_service() as s:
        return s.all("select * from public.whatsapp_claim_outbound('worker-1', %s)", (batch_size,))


def test_cancel_withdraws_what_no_worker_has_claimed_and_counters_stay_exact(db: Db) -> None:
    coded(db, 5)
    campaign_id = campaign(db, template(db), rate=6000)
    start(db, campaign_id)
    db.sql(
        "update public.campaigns set pace_anchor_at = now() - interval '1 minute' where id = %s",
        (campaign_id,),
    )
    assert release(db) == 5
    claimed = claim(db, 2)  # two are with the worker: one reaches Meta, one is in flight
    with db.as_service() as s:
        s.all("select public.whatsapp_mark_sent(%s, 'wamid.CANCEL1')", (claimed[0]["message_id"],))
    cancelled = state(db, campaign_id, "cancel")
    assert (
        cancelled["status"],
        cancelled["skipped_count"],
        cancelled["queued_count"],
        cancelled["sent_count"],
    ) == (
        "cancelled",
        3,
        1,
        1,
    )
    assert counters(db, campaign_id) == recount(db, campaign_id)
    rows = recipients(db, campaign_id)
    withdrawn = [r["message_id"] for r in rows if r["status"] == "skipped"]
    assert {r["skip_reason"] for r in rows if r["status"] == "skipped"} == {"cancelled"}
    messages = db.sql(
        "select status, error_title from public.messages where id = any(%s::uuid[])",
        ([str(m) for m in withdrawn],),
    )
    assert {(m["status"], m["error_title"]) for m in messages} == {
        ("cancelled", "campaign cancelled by a manager")
    }
    assert claim(db, 50) == []  # nothing withdrawn ever reaches a worker
    # the one in flight still follows its webhooks
    with db.as_service() as s:
        s.all("select public.whatsapp_mark_sent(%s, 'wamid.CANCEL2')", (claimed[1]["message_id"],))
    assert counters(db, campaign_id) == recount(db, campaign_id)
    assert db.value("select count(*) from public.campaign_recipients where status = 'sent'") == 2


def test_a_late_retryable_error_reopens_a_completed_campaign(db: Db) -> None:
    coded(db, 2)
    campaign_id = campaign(db, template(db), rate=6000)
    start(db, campaign_id)
    db.sql(
        "update public.campaigns set pace_anchor_at = now() - interval '1 minute' where id = %s",
        (campaign_id,),
    )
    assert release(db) == 2
    late, fine = (r["wa_id"] for r in sent(db, campaign_id))
    assert db.value("select status from public.campaigns where id = %s", (campaign_id,)) == "completed"
    webhook(db, late, "failed", errors=[{"code": 131049, "title": "ecosystem"}])
    reopened = db.sql("select * from public.campaigns where id = %s", (campaign_id,))[0]
    assert (reopened["status"], reopened["finished_at"], reopened["pending_count"]) == ("running", None, 1)
    assert counters(db, campaign_id) == recount(db, campaign_id)
    db.sql("update public.campaign_recipients set next_attempt_at = now() where wa_id = %s", (late,))
    db.sql(
        "update public.messages set created_at = now() - interval '1 minute' where sender_type = 'campaign'"
    )
    assert release(db) == 1
    again = db.sql("select message_id, wa_id from public.campaign_recipients where status = 'queued'")
    assert [r["wa_id"] for r in again] == [late]
    with db.as_service() as s:
        s.all("select public.whatsapp_mark_sent(%s, 'wamid.RETRY')", (again[0]["message_id"],))
    webhook(db, fine, "delivered")
    final = db.sql(
        "select status, sent_count, failed_count from public.campaigns where id = %s", (campaign_id,)
    )[0]
    assert final == {"status": "completed", "sent_count": 1, "failed_count": 0}
    types = [
        e["type"]
        for e in db.sql(
            "select type from public.events where subject_id = %s order by created_at", (campaign_id,)
        )
    ]
    assert types == ["campaign.started", "campaign.completed", "campaign.resumed", "campaign.completed"]
