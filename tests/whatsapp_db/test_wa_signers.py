"""Which numbers a webhook signature speaks for (private.webhook_covers), attacked as a tenant
would: sign up, add a number with an app secret of one's own, then post changes for another
tenant's numbers. A signature only authorises the numbers of the app that produced it; the
rest is kept apart (no tenant, never applied) and cannot block the real change later."""

from __future__ import annotations

import json
import uuid

from webhooks import NUMBER, PHONE_NUMBER_ID, TENANT, WABA_ID, body, change, ingest, msg, profile, text

from support import Db

ATTACKER_NUMBER_ID = "555000111222333"
ATTACKER_WABA = "555000999888777"
VICTIM_WA_ID = "5511988887777"
ATTACKER_SECRET = "attacker-app-secret"


def attacker_app(db: Db) -> str:
    """A tenant of the attacker's own, with a number whose app secret the attacker chose."""
    owner = db.create_user("golpe@example.com")
    tenant = db.create_tenant(owner, "Golpe")
    with db.as_user(owner) as s:
        number = s.value(
            "insert into public.whatsapp_numbers (tenant_id, phone_number, phone_number_id, waba_id)"
            " values (%s, '+5511900000000', %s, %s) returning id",
            (tenant, ATTACKER_NUMBER_ID, ATTACKER_WABA))
        s.value("select public.set_whatsapp_number_secret(%s, 'app_secret', %s)", (number, ATTACKER_SECRET))
    return ATTACKER_NUMBER_ID


def victim_state(db: Db) -> list[dict[str, object]]:
    return db.sql(
        "select (select count(*) from public.messages where tenant_id = %(t)s) as messages,"
        " (select count(*) from public.contacts where tenant_id = %(t)s) as contacts,"
        " (select count(*) from public.inbound_events where tenant_id = %(t)s) as events,"
        " (select jsonb_agg(status order by name) from public.message_templates"
        "   where tenant_id = %(t)s) as templates,"
        " (select last_error from public.whatsapp_numbers where id = %(n)s) as last_error",
        {"t": TENANT, "n": NUMBER})


def test_another_tenants_app_cannot_speak_for_a_number(db: Db) -> None:
    signer = attacker_app(db)
    before = victim_state(db)
    image = msg("image", {"id": "1", "mime_type": "image/jpeg", "url": "https://evil.example/steal"})
    result = ingest(db, body(change(messages=[text("oi"), image],
                                    contacts=[profile(VICTIM_WA_ID, "Maria")])), signer=signer)
    assert result["refused"] == 1 and result["messages"] == 0
    assert victim_state(db) == before
    kept = db.sql("select tenant_id, whatsapp_number_id, status, reason from public.inbound_events"
                  " where phone_number_id = %s", (PHONE_NUMBER_ID,))
    assert len(kept) == 1
    assert kept[0]["tenant_id"] is None and kept[0]["whatsapp_number_id"] is None
    assert kept[0]["status"] == "quarantined" and "does not cover" in kept[0]["reason"]


def test_forged_number_change_template_status_and_account_errors_are_refused(db: Db) -> None:
    signer = attacker_app(db)
    db.create_conversation()  # the victim's customer exists
    before = victim_state(db)
    moved = msg("system", {"body": "User changed number", "type": "user_changed_number",
                           "wa_id": "5599911112222"}, VICTIM_WA_ID)
    template = {"field": "message_template_status_update",
                "value": {"event": "DISABLED", "message_template_name": "retomar_atendimento",
                          "message_template_language": "pt_BR", "reason": "forged"}}
    result = ingest(db, body(change(messages=[moved]),
                             change(errors=[{"code": 131042, "title": "Pagamento recusado"}])), signer=signer)
    result_waba = ingest(db, body(template, entry_id=WABA_ID), signer=signer)
    assert result["refused"] == 2 and result_waba["refused"] == 1
    assert victim_state(db) == before
    assert db.value("select wa_id from public.contacts where tenant_id = %s", (TENANT,)) == VICTIM_WA_ID


def test_the_platform_app_does_not_speak_for_numbers_with_their_own_app(db: Db) -> None:
    result = ingest(db, body(change(messages=[text("oi")])), signer=None)
    assert result["refused"] == 1 and result["messages"] == 0


def test_an_app_speaks_for_its_tenants_numbers_under_the_same_app_only(db: Db) -> None:
    db.sql("insert into public.whatsapp_numbers (id, tenant_id, phone_number, phone_number_id, waba_id)"
           " values (gen_random_uuid(), %s, '+5511999990001', '106540352242923', %s),"
           "        (gen_random_uuid(), %s, '+5511999990002', '106540352242924', %s)",
           (TENANT, WABA_ID, TENANT, WABA_ID))
    with db.as_service() as s:
        for phone_number_id, secret in (("106540352242923", "zapbase-simulator-app-secret"),
                                        ("106540352242924", "another-app-of-the-same-tenant")):
            s.value("select public.set_whatsapp_number_secret(id, 'app_secret', %s)"
                    " from public.whatsapp_numbers where phone_number_id = %s", (secret, phone_number_id))
    same_app = ingest(db, body(change(messages=[text("oi")], phone_number_id="106540352242923")))
    other_app = ingest(db, body(change(messages=[text("oi")], phone_number_id="106540352242924")))
    assert same_app["messages"] == 1 and same_app["refused"] == 0
    assert other_app["messages"] == 0 and other_app["refused"] == 1


def test_a_refused_copy_never_blocks_the_real_change(db: Db) -> None:
    signer = attacker_app(db)
    real = body(change(messages=[text("pedido 42")]))
    assert ingest(db, real, signer=signer)["refused"] == 1
    assert ingest(db, real)["messages"] == 1


def test_a_raw_body_shaped_like_a_change_never_blocks_it(db: Db) -> None:
    real = body(change(messages=[text("pedido 43")]))
    entry = real["entry"][0]
    lookalike = db.value("select jsonb_build_array(%s::text, %s::jsonb)::text",
                         (entry["id"], json.dumps(entry["changes"][0])))
    with db.as_service() as s:
        s.value("select public.whatsapp_quarantine_raw(%s, 'not an object')", (lookalike,))
    assert ingest(db, real)["messages"] == 1


def test_webhook_app_secrets_are_per_number_and_for_the_service_role_only(db: Db) -> None:
    with db.as_service() as s:
        assert s.one("select * from public.whatsapp_webhook_app(%s)", (PHONE_NUMBER_ID,)) == {
            "app_secret": "zapbase-simulator-app-secret", "verify_token": "zapbase-simulator-verify-token"}
        assert s.all("select * from public.whatsapp_webhook_app('999')") == []
    user = db.create_user()
    try:
        with db.as_user(user) as s:
            s.all("select * from public.whatsapp_webhook_app(%s)", (PHONE_NUMBER_ID,))
    except Exception as exc:
        assert "permission denied" in str(exc)
    else:
        raise AssertionError("authenticated read an app secret")
    assert uuid.UUID(NUMBER)
