"""CRM: one lead per person (RPC, CTWA ads at ingest, CSV import), conversion, deals on
their own pipeline's stages, appointments that never double-book and that customers answer
with reply buttons, reminders and no-shows, certificates' expiry alerts (through the job
entry point)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest

from support import Db
from whatsapp_db.webhooks import body, change, ingest, msg, text

TENANT = "00000000-0000-4000-b000-000000000001"  # seed: Loja Demo
MANAGER = "00000000-0000-4000-a000-000000000001"
AGENT = "00000000-0000-4000-a000-000000000002"
AGENT_MEMBER = "00000000-0000-4000-c000-000000000002"


def contact_of(db: Db, wa_id: str = "5511988887777") -> str:
    db.create_conversation(wa_id)
    return str(db.value("select id from public.contacts where wa_id = %s", (wa_id,)))


def run_job(db: Db, name: str, after: timedelta = timedelta(0)) -> int:
    with db.as_service() as s:
        return int(s.value("select private.run_job(%s, now() + %s)", (name, after)))


def test_one_lead_per_person_whoever_creates_it(db: Db) -> None:
    contact = contact_of(db)
    with db.as_user(AGENT) as s:
        first = s.one(
            "select * from public.create_lead(contact_id => %s, score => 40, source => 'whatsapp_bot')",
            (contact,),
        )
    with db.as_service() as s:  # a flow qualifies the same person later
        again = s.one(
            "select * from public.create_lead(contact_id => %s, interest => 'Plano anual', score => 20,"
            " source => 'flow')",
            (contact,),
        )
    assert again["id"] == first["id"] and again["score"] == 40 and again["interest"] == "Plano anual"
    assert first["phone"] == "+5511988887777"
    with db.as_user(AGENT) as s:  # the same phone without the contact is the same person
        by_phone = s.one("select * from public.create_lead(%s, null, 'Maria', '+5511988887777')", (TENANT,))
    assert by_phone["id"] == first["id"]
    with pytest.raises(psycopg.errors.UniqueViolation), db.as_user(AGENT) as s:
        s.all(
            "insert into public.leads (tenant_id, name, phone) values (%s, 'Maria', '+5511988887777')",
            (TENANT,),
        )


def test_a_click_to_whatsapp_ad_brings_a_lead_at_ingest(db: Db) -> None:
    referral = {
        "source_url": "https://fb.me/ad",
        "source_id": "120201",
        "source_type": "ad",
        "headline": "Certificado digital em 1 hora",
        "ctwa_clid": "ARAkLk",
    }
    ingest(db, body(change(messages=[text("Vi o anúncio", sender="5511944443333", referral=referral)])))
    lead = db.sql("select * from public.leads")[0]
    assert (lead["source"], lead["source_ref"], lead["interest"]) == (
        "ctwa_ad",
        "120201",
        "Certificado digital em 1 hora",
    )
    assert lead["referral"]["ctwa_clid"] == "ARAkLk" and lead["contact_id"] is not None


def test_conversion_makes_the_contact_a_client_and_keeps_the_history(db: Db) -> None:
    contact = contact_of(db)
    with db.as_user(AGENT) as s:
        lead = s.one("select * from public.create_lead(contact_id => %s)", (contact,))
        for stage in ("contacted", "qualified", "converted"):
            s.all("update public.leads set stage = %s where id = %s", (stage, lead["id"]))
    assert db.value("select is_client from public.contacts where id = %s", (contact,)) is True
    history = db.sql(
        "select from_stage, to_stage from public.lead_stage_history where lead_id = %s order by changed_at",
        (lead["id"],),
    )
    assert [h["to_stage"] for h in history] == ["new", "contacted", "qualified", "converted"]
    assert db.value("select count(*) from public.events where type = 'lead.converted'") == 1
    with (
        pytest.raises(psycopg.errors.CheckViolation, match="lost lead needs a reason"),
        db.as_user(AGENT) as s,
    ):
        s.all("update public.leads set stage = 'lost' where id = %s", (lead["id"],))


def pipeline(db: Db, name: str) -> dict[str, str]:
    with db.as_user(MANAGER) as s:
        pid = s.value(
            "insert into public.pipelines (tenant_id, name) values (%s, %s) returning id", (TENANT, name)
        )
        stages = {
            r["name"]: str(r["id"])
            for r in s.all(
                "insert into public.pipeline_stages"
                " (tenant_id, pipeline_id, name, position, kind, probability)"
                " values (%(t)s, %(p)s, 'Proposta', 1, 'open', 40), (%(t)s, %(p)s, 'Ganho', 2, 'won', null),"
                " (%(t)s, %(p)s, 'Perdido', 3, 'lost', null) returning id, name",
                {"t": TENANT, "p": pid},
            )
        }
    return {"id": str(pid), **stages}


def test_deals_stay_on_their_pipeline_and_keep_their_stage_history(db: Db) -> None:
    sales, renewals = pipeline(db, "Vendas"), pipeline(db, "Renovações")
    deal_sql = (
        "insert into public.deals (tenant_id, title, pipeline_id, stage_id, value)"
        " values (%s, 'Plano anual', %s, %s, 1200) returning *"
    )
    with (
        pytest.raises(psycopg.errors.ForeignKeyViolation, match="does not belong to the deal's pipeline"),
        db.as_user(AGENT) as s,
    ):
        s.all(deal_sql, (TENANT, sales["id"], renewals["Proposta"]))
    with db.as_user(AGENT) as s:
        deal = s.one(deal_sql, (TENANT, sales["id"], sales["Proposta"]))
    assert (deal["status"], deal["probability"], deal["currency"]) == ("open", 40, "BRL")
    with (
        pytest.raises(psycopg.errors.CheckViolation, match="lost deal needs a reason"),
        db.as_user(AGENT) as s,
    ):
        s.all("update public.deals set stage_id = %s where id = %s", (sales["Perdido"], deal["id"]))
    with db.as_user(AGENT) as s:
        won = s.one(
            "update public.deals set stage_id = %s where id = %s returning *", (sales["Ganho"], deal["id"])
        )
    assert (won["status"], won["probability"]) == ("won", 100) and won["closed_at"] is not None
    history = db.sql(
        "select stage_id, left_at from public.deal_stage_history where deal_id = %s order by entered_at",
        (deal["id"],),
    )
    assert [str(h["stage_id"]) for h in history] == [sales["Proposta"], sales["Ganho"]]
    assert history[0]["left_at"] is not None and history[1]["left_at"] is None
    assert db.value("select count(*) from public.events where type = 'deal.won'") == 1


def test_a_csv_import_goes_through_import_logs(db: Db) -> None:
    rows = [
        {"name": "Ana", "phone": "+55 11 97777-0001", "external_id": "crm-1", "score": "30"},
        {"name": "Beto", "phone": "+5511977770002", "score": "300"},
        {"name": "Ana de novo", "phone": "5511977770001", "email": "ana@example.com"},
    ]
    with db.as_user(AGENT) as s:
        log = s.one(
            "select * from public.import_leads(%s, 'leads.csv', %s::jsonb)",
            (TENANT, psycopg.types.json.Jsonb(rows)),
        )
    assert (log["kind"], log["status"], log["total_rows"], log["imported_rows"], log["failed_rows"]) == (
        "leads",
        "partial",
        3,
        2,
        1,
    )
    assert log["errors"][0]["row"] == 2 and "score" in log["errors"][0]["error"]
    leads = db.sql("select name, phone, email, external_id, source from public.leads order by name")
    assert leads == [
        {
            "name": "Ana",
            "phone": "+5511977770001",
            "email": "ana@example.com",
            "external_id": "crm-1",
            "source": "import",
        }
    ]  # the third line is Ana again: completed, not duplicated


def book(db: Db, contact: str, start: timedelta, minutes: int = 30, **extra: Any) -> dict[str, Any]:
    with db.as_user(AGENT) as s:
        return s.one(
            "insert into public.appointments"
            " (tenant_id, contact_id, type, starts_at, ends_at, assignee_id, reminder_hours)"
            " values (%s, %s, 'support', now() + %s, now() + %s, %s, %s) returning *",
            (
                TENANT,
                contact,
                start,
                start + timedelta(minutes=minutes),
                extra.get("assignee", AGENT_MEMBER),
                extra.get("reminder_hours", 24),
            ),
        )


def test_an_assignee_is_never_double_booked(db: Db) -> None:
    contact = contact_of(db)
    first = book(db, contact, timedelta(days=1))
    with pytest.raises(psycopg.errors.ExclusionViolation, match="appointments_assignee_already_booked"):
        book(db, contact, timedelta(days=1, minutes=15))
    book(db, contact, timedelta(days=1, minutes=30))  # back to back is fine
    with db.as_user(AGENT) as s:
        s.all("update public.appointments set status = 'cancelled' where id = %s", (first["id"],))
    book(db, contact, timedelta(days=1, minutes=-10))  # a cancelled slot is free again


def test_the_reminder_goes_by_template_and_the_customer_answers_with_buttons(db: Db) -> None:
    contact = contact_of(db)
    appt = book(db, contact, timedelta(hours=5), reminder_hours=6)
    later = book(db, contact, timedelta(days=3))
    assert run_job(db, "appointment_reminders") == 1
    [reminder] = db.sql("select * from public.messages where type = 'template' and direction = 'outbound'")
    template = reminder["payload"]["template"]
    assert template["name"] == "lembrete_agendamento"
    payloads = [c["parameters"][0]["payload"] for c in template["components"] if c["type"] == "button"]
    assert payloads == [f"appointment:{appt['id']}:{a}" for a in ("confirm", "reschedule", "cancel")]
    assert run_job(db, "appointment_reminders") == 0  # once
    # someone else tapping the same payload changes nothing
    stranger = {
        "type": "button",
        "button": {"text": "Cancelar", "payload": f"appointment:{appt['id']}:cancel"},
    }
    ingest(db, body(change(messages=[msg("button", stranger["button"], sender="5511900001111")])))
    assert db.value("select status from public.appointments where id = %s", (appt["id"],)) == "pending"
    ingest(
        db,
        body(
            change(
                messages=[
                    msg("button", {"text": "Confirmar", "payload": f"appointment:{appt['id']}:confirm"})
                ]
            )
        ),
    )
    row = db.sql("select status, confirmed_at from public.appointments where id = %s", (appt["id"],))[0]
    assert row["status"] == "confirmed" and row["confirmed_at"] is not None
    ingest(
        db,
        body(
            change(
                messages=[
                    msg("button", {"text": "Remarcar", "payload": f"appointment:{later['id']}:reschedule"})
                ]
            )
        ),
    )
    assert db.value("select status from public.appointments where id = %s", (later["id"],)) == "rescheduled"
    assert db.value("select count(*) from public.events where type = 'appointment.reschedule_requested'") == 1


def test_no_show_is_marked_after_the_end(db: Db) -> None:
    contact = contact_of(db)
    appt = book(db, contact, timedelta(hours=1))
    assert run_job(db, "appointment_no_show", timedelta(hours=2)) == 0
    assert run_job(db, "appointment_no_show", timedelta(hours=3)) == 1
    assert db.value("select status from public.appointments where id = %s", (appt["id"],)) == "no_show"


def service(db: Db, contact: str) -> str:
    with db.as_user(AGENT) as s:
        return str(
            s.value(
                "insert into public.services (tenant_id, contact_id, name, plan)"
                " values (%s, %s, 'Certificados', 'profissional') returning id",
                (TENANT, contact),
            )
        )


def test_a_certificate_always_belongs_to_a_service(db: Db) -> None:
    with (
        pytest.raises(psycopg.errors.NotNullViolation, match="always belongs to a service"),
        db.as_user(AGENT) as s,
    ):
        s.all(
            "insert into public.certificates (tenant_id, service_id, type, issued_at, expires_at)"
            " values (%s, null, 'e-CPF', now(), now() + interval '1 year')",
            (TENANT,),
        )


def test_expiry_alerts_at_30_and_7_days_once_each_with_a_renewal_lead(db: Db) -> None:
    contact = contact_of(db)
    with db.as_user(AGENT) as s:
        cert = s.one(
            "insert into public.certificates (tenant_id, service_id, type, issued_at, expires_at)"
            " values (%s, %s, 'e-CNPJ', now() - interval '1 year', now() + interval '20 days') returning *",
            (TENANT, service(db, contact)),
        )
        days = s.value("select days_to_expire from public.certificates_expiry where id = %s", (cert["id"],))
    assert days == 20
    assert run_job(db, "cert_expiry_alert_07d") == 0
    assert run_job(db, "cert_expiry_alert_30d") == 1
    assert run_job(db, "cert_expiry_alert_30d") == 0  # once
    lead = db.sql("select * from public.leads")[0]
    assert (lead["source"], lead["interest"], str(lead["contact_id"])) == (
        "renewal",
        "Renovação e-CNPJ",
        contact,
    )
    assert run_job(db, "cert_expiry_alert_07d", timedelta(days=14)) == 1
    assert run_job(db, "cert_expiry_alert_07d", timedelta(days=14)) == 0
    templates = db.sql("select payload from public.messages where type = 'template'")
    assert [t["payload"]["template"]["name"] for t in templates] == ["certificado_vencendo"] * 2
    alerts = db.sql(
        "select priority from public.alerts where type = 'certificate.expiring' order by created_at"
    )
    assert [a["priority"] for a in alerts] == ["medium", "high"]
    row = db.sql("select * from public.certificates where id = %s", (cert["id"],))[0]
    assert str(row["renewal_lead_id"]) == str(lead["id"]) and row["alert_error"] is None
    assert db.value("select count(*) from public.leads") == 1  # one lead per person
