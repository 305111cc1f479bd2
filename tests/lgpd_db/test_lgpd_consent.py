"""Consent: STOP-like words and quick replies opt the customer out, with a confirmation;
the ledger records where each change came from; retention forgets what is past it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from support import Db
from whatsapp_db.webhooks import OWNER, TENANT, body, change, ingest, msg, text

WA_ID = "5511977776666"


def contact_of(db: Db) -> str:
    return str(db.value("select id from public.contacts where wa_id = %s", (WA_ID,)))


def confirmations(db: Db) -> list[str]:
    return [r["content"] for r in db.sql(
        "select m.content from public.messages m join public.contacts c on c.id = m.contact_id"
        " where c.wa_id = %s and m.direction = 'outbound' and m.sender_type = 'system' order by m.created_at",
        (WA_ID,))]


def ledger(db: Db) -> list[tuple[str, str]]:
    return [(r["kind"], r["source"]) for r in db.sql(
        "select h.kind, h.source from public.contact_consents h join public.contacts c on c.id = h.contact_id"
        " where c.wa_id = %s order by h.recorded_at", (WA_ID,))]


@pytest.mark.parametrize("button", [{"text": "Parar promoções", "payload": "promo-off"},
                                    {"text": "Não quero mais", "payload": "STOP"}])
def test_a_template_stop_quick_reply_opts_out_with_a_confirmation(db: Db, button: dict[str, str]) -> None:
    ingest(db, body(change(messages=[text("Oi", WA_ID)])))
    ingest(db, body(change(messages=[msg("button", button, WA_ID)])))
    assert db.value("select opt_in from public.contacts where wa_id = %s", (WA_ID,)) is False
    assert ledger(db) == [("opt_out", "quick_reply")]
    assert confirmations(db) == ["Pronto! Você não receberá mais mensagens nossas por aqui. "
                                 "Se mudar de ideia, é só responder VOLTAR A RECEBER."]
    ingest(db, body(change(messages=[text("STOP", WA_ID)])))  # already out: nothing new
    assert ledger(db) == [("opt_out", "quick_reply")] and len(confirmations(db)) == 1


def test_a_stop_word_in_the_first_message_is_confirmed_in_the_tenants_words(db: Db) -> None:
    db.sql("update public.tenants set settings = settings || %s where id = %s",
           (json.dumps({"lgpd": {"opt_out_confirmation": "Ok, removido."}}), TENANT))
    ingest(db, body(change(messages=[text("Parar", WA_ID)])))
    assert ledger(db) == [("opt_out", "customer_message")]
    assert confirmations(db) == ["Ok, removido."]
    with db.as_service() as s:  # nothing else goes out
        conv = s.value("select conversation_id from public.messages where content = 'Parar'")
        with pytest.raises(Exception, match="opted out"):
            s.value("select public.whatsapp_queue_reply(%s, %s)",
                    (conv, json.dumps({"type": "text", "text": {"body": "promo"}})))


def test_a_documented_opt_out_sends_nothing(db: Db) -> None:
    ingest(db, body(change(messages=[text("Oi", WA_ID)])))
    with db.as_user(OWNER) as s:
        s.value("select public.record_contact_consent(%s, 'opt_out', %s)",
                (contact_of(db), "Pediu por telefone em 03/12, protocolo 5"))
    assert ledger(db) == [("opt_out", "documented_request")]
    assert confirmations(db) == []


def test_monthly_cleanup_applies_retention_and_pending_deletions(db: Db) -> None:
    ingest(db, body(change(messages=[text("Meu CPF é 111.444.777-35", WA_ID)])))
    contact = contact_of(db)
    old = datetime.now(UTC) - timedelta(days=70)
    db.sql("update public.messages set created_at = %s, media_storage_path = 'whatsapp-media/x/y/z.jpg'"
           " where contact_id = %s", (old, contact))
    db.sql("update public.inbound_events set received_at = %s where tenant_id = %s", (old, TENANT))
    model = db.value("select id from public.ai_models order by gateway_id limit 1")
    db.sql("""insert into public.ai_usage (tenant_id, model_id, provider, model, api_type, feature, outcome,
                                          created_at)
              values (%s, %s, 'anthropic', 'claude', 'chat', 'reply', 'success', %s),
                     (%s, %s, 'anthropic', 'claude', 'chat', 'reply', 'success', now())""",
           (TENANT, model, old, TENANT, model))
    ingest(db, body(change(messages=[text("Outro cliente", "5511955554444")])))
    db.sql("update public.contacts set lgpd_state = 'deletion_requested' where wa_id = '5511955554444'")
    with db.as_user(OWNER) as s:
        s.all("insert into public.retention_policies (tenant_id, messages_months, raw_events_months,"
              " usage_months) values (%s, 2, 2, 2)", (TENANT,))

    assert db.value("select private.run_job('lgpd_data_cleanup')") > 0
    message = db.sql("select * from public.messages where contact_id = %s", (contact,))[0]
    assert message["content"] is None and message["payload"] == {"anonymised": True}
    assert message["created_at"] == old  # the row and its time stay
    assert db.value("select count(*) from public.storage_deletions where reason = 'retention'") == 1
    assert db.value("select count(*) from public.inbound_events where received_at < %s", (old,)) == 0
    assert db.value("select count(*) from public.ai_usage where tenant_id = %s", (TENANT,)) == 1
    assert db.value("select lgpd_state from public.contacts where phone_hash is not null and name is null"
                    " and wa_id is null") == "anonymised"
    assert db.value("select status from public.job_runs where job_name = 'lgpd_data_cleanup'") == "succeeded"
