"""The commerce module in SQL: its jobs (stalled progress, guarantees about to end, purchase
anniversaries), the first-access origin KPI, an event whose application fails, and who may
read and write what."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from hotmart_corpus import OWNER, TENANT, create_integration, dated, event, events_of

from support import Db

AGENT = "00000000-0000-4000-a000-000000000002"  # seed: the demo tenant's agent


def ingest(db: Db, integration: str, body: dict[str, Any]) -> dict[str, Any]:
    with db.as_service() as s:
        result: dict[str, Any] = s.value("select public.hotmart_ingest(%s, %s::jsonb)",
                                         (integration, json.dumps(body)))
    return result


def run_job(db: Db, name: str, days: float) -> int:
    with db.as_service() as s:
        ran: int = s.value(f"select private.run_job(%s, now() + interval '{float(days)} days')", (name,))
    return ran


@pytest.fixture
def integration(db: Db) -> str:
    integration = create_integration(db)
    db.sql("insert into public.products (tenant_id, name, hotmart_product_id, monitoring_enabled)"
           " values (%s, 'Método Fluência em 90 Dias', '4774438', true)", (TENANT,))
    return integration


def test_a_student_without_a_lesson_for_the_tenants_days_stalls_once(db: Db, integration: str) -> None:
    db.sql("""update public.tenants set settings = settings || '{"commerce": {"stalled_days": 5}}'
              where id = %s""", (TENANT,))
    db.sql("insert into public.course_modules (tenant_id, product_id, hotmart_module_id)"
           " select tenant_id, id, unnest(array['Zq4x8Jb1Ok', 'Yt7w2Lm9Pa']) from public.products")
    ingest(db, integration, dated(event("purchase_approved"), 0))
    assert run_job(db, "commerce_progress_stalled", 4.9) == 0
    assert run_job(db, "commerce_progress_stalled", 5.1) == 1
    assert run_job(db, "commerce_progress_stalled", 30) == 0  # once per stall
    stalled = events_of(db, "progress.stalled")
    assert len(stalled) == 1 and stalled[0]["progress_pct"] == 0
    assert db.value("select tags from public.contacts where cpf = '39053344705'") == ["churn_risk"]
    # a module of two completed: active again, no longer at risk, a new deadline from that day
    ingest(db, integration, dated(event("club_module_completed"), 1))
    assert db.value("select tags from public.contacts where cpf = '39053344705'") == []
    assert db.value("select progress_pct from public.enrollments") == 50
    assert run_job(db, "commerce_progress_stalled", 5.9) == 0
    assert run_job(db, "commerce_progress_stalled", 6.1) == 1


def test_students_of_unmonitored_products_and_blocked_ones_do_not_stall(db: Db, integration: str) -> None:
    ingest(db, integration, dated(event("purchase_approved"), 0))
    db.sql("update public.products set monitoring_enabled = false")
    assert run_job(db, "commerce_progress_stalled", 8) == 0
    db.sql("update public.products set monitoring_enabled = true")
    ingest(db, integration, dated(event("purchase_refunded"), 0.1))
    assert run_job(db, "commerce_progress_stalled", 8) == 0


def test_a_guarantee_ending_with_little_progress_is_a_refund_risk(db: Db, integration: str) -> None:
    ingest(db, integration, dated(event("purchase_approved"), 0))  # guarantee: 7 days
    assert run_job(db, "commerce_warranty_ending", 4.9) == 0  # notice 2 days before the end
    assert run_job(db, "commerce_warranty_ending", 5.1) == 1
    assert run_job(db, "commerce_warranty_ending", 5.5) == 0
    risk = events_of(db, "warranty.ending")
    assert len(risk) == 1 and risk[0]["progress_pct"] == 0 and risk[0]["code"] == "HP17647701000001"


def test_a_student_far_enough_in_the_course_is_no_refund_risk(db: Db, integration: str) -> None:
    ingest(db, integration, dated(event("purchase_approved"), 0))
    ingest(db, integration, dated(event("club_module_completed"), 0.5))  # the only module known: 100 %
    assert run_job(db, "commerce_warranty_ending", 5.1) == 0
    assert events_of(db, "warranty.ending") == []


def test_a_refunded_purchase_has_no_guarantee_notice_nor_anniversary(db: Db, integration: str) -> None:
    ingest(db, integration, dated(event("purchase_approved"), 0))
    ingest(db, integration, dated(event("purchase_refunded"), 1))
    assert run_job(db, "commerce_warranty_ending", 5.1) == 0
    assert run_job(db, "commerce_purchase_anniversary", 366) == 0


def test_a_paid_purchase_has_an_anniversary_every_year(db: Db, integration: str) -> None:
    ingest(db, integration, dated(event("purchase_approved"), -365 * 2 - 1))  # two years and a day ago
    assert run_job(db, "commerce_purchase_anniversary", 0) == 1  # the first year (late: once)
    assert run_job(db, "commerce_purchase_anniversary", 0) == 1  # the second
    assert run_job(db, "commerce_purchase_anniversary", 0) == 0
    assert [e["years"] for e in events_of(db, "purchase.anniversary")] == [1, 2]


def test_first_access_after_a_whatsapp_message_counts_for_whatsapp(db: Db, integration: str) -> None:
    ingest(db, integration, dated(event("purchase_approved"), -1))
    conversation, _ = db.create_conversation(wa_id="5511987654321", text="Oi, comprei o curso!")
    contact = db.value("select id from public.contacts where cpf = '39053344705'")
    db.sql("insert into public.messages (tenant_id, conversation_id, contact_id, direction, sender_type,"
           " type, content, status, delivered_at) values (%s, %s, %s, 'outbound', 'bot', 'text',"
           " 'Seu acesso: https://hotmart.com/club', 'delivered', now() - interval '1 hour')",
           (TENANT, conversation, contact))
    ingest(db, integration, dated(event("club_first_access"), 0))
    assert db.value("select first_access_origin from public.enrollments") == "whatsapp"
    assert events_of(db, "enrollment.first_access")[0]["origin"] == "whatsapp"
    ingest(db, integration, dated(event("club_first_access", id="again"), 0.5))  # only the first counts
    assert len(events_of(db, "enrollment.first_access")) == 1


def test_an_event_that_fails_to_apply_is_kept_with_its_error(db: Db, integration: str) -> None:
    # a constraint tighter than what ingest expects: applying raises half-way through
    db.sql("alter table public.offers drop constraint offers_hotmart_offer_code_check,"
           " add constraint offers_hotmart_offer_code_check check (length(hotmart_offer_code) <= 5)")
    too_long = event("purchase_approved")
    result = ingest(db, integration, too_long)
    assert result["status"] == "failed" and "offers_hotmart_offer_code_check" in result["error"]
    row = db.sql("select status, reason, payload from public.hotmart_events")[0]
    assert row["status"] == "failed" and row["payload"]["id"] == too_long["id"]
    assert db.value("select count(*) from public.transactions") == 0  # nothing half applied


def test_ingest_is_for_the_service_role_only(db: Db, integration: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(OWNER) as s:
        s.all("select public.hotmart_ingest(%s, '{}')", (integration,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(OWNER) as s:
        s.all("select public.hotmart_webhook_secret(%s)", (integration,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_anon() as s:
        s.all("select public.hotmart_reject(%s)", (integration,))


def test_members_read_managers_edit_the_catalogue_agents_resolve_conflicts(db: Db, integration: str) -> None:
    ingest(db, integration, event("purchase_approved"))
    db.sql("insert into public.contact_conflicts (tenant_id, reason) values (%s, 'teste')", (TENANT,))
    with db.as_user(AGENT) as s:
        assert s.value("select count(*) from public.transactions") == 1
        assert s.value("select count(*) from public.hotmart_events") == 0  # raw events: admins
        assert s.rowcount("update public.products set name = 'Outro nome'") == 0
        resolved = "update public.contact_conflicts set status = 'resolved', note = 'mesma pessoa'"
        assert s.rowcount(resolved) == 1
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            s.all("update public.transactions set value = 0")
    with db.as_user(OWNER) as s:
        assert s.rowcount("update public.products set monitoring_enabled = false") == 1
        assert s.value("select count(*) from public.hotmart_events") == 1


def test_a_message_delivered_in_the_second_of_the_purchase_counts(db: Db, integration: str) -> None:
    """Meta's status times are whole seconds: a message delivered within the purchase's
    second looks earlier than the purchase, and still counts."""
    body = dated(event("purchase_approved"), -0.01)
    body["data"]["purchase"]["approved_date"] = body["creation_date"] // 1000 * 1000 + 730
    ingest(db, integration, body)
    conversation, _ = db.create_conversation(wa_id="5511987654321", text="Chegou o acesso?")
    db.sql("insert into public.messages (tenant_id, conversation_id, contact_id, direction, sender_type,"
           " type, content, status, delivered_at)"
           " select c.tenant_id, c.id, c.contact_id, 'outbound', 'system', 'text', 'Seu acesso', 'delivered',"
           " to_timestamp(%s / 1000) from public.conversations c where c.id = %s",
           (body["creation_date"] // 1000 * 1000, conversation))
    ingest(db, integration, dated(event("club_first_access"), 0))
    assert db.value("select first_access_origin from public.enrollments") == "whatsapp"


def test_raw_events_are_kept_for_the_plans_retention(db: Db, integration: str) -> None:
    ingest(db, integration, event("purchase_approved"))
    ingest(db, integration, event("club_first_access"))
    db.sql("update public.hotmart_events set received_at = received_at - interval '400 days'"
           " where event = 'PURCHASE_APPROVED'")
    assert run_job(db, "commerce_hotmart_retention", 0) == 1
    assert [r["event"] for r in db.sql("select event from public.hotmart_events")] == ["CLUB_FIRST_ACCESS"]
    assert db.value("select count(*) from public.transactions") == 1  # what it did stays
