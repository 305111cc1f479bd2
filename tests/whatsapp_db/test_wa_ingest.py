"""whatsapp_ingest over a corpus of Meta-shaped webhook bodies: what each leaves in the database."""

from __future__ import annotations

import json
from datetime import timedelta

import psycopg
from webhooks import (
    NUMBER,
    OWNER,
    TENANT,
    body,
    change,
    ingest,
    message_row,
    msg,
    now,
    profile,
    text,
    wamid,
)

from support import Db

MARIA = "5511988887777"
JOAO = "5521977776666"


def test_a_text_message_creates_contact_conversation_and_message(db: Db) -> None:
    m = text("Oi! Meu CPF é 123.456.789-09, quero saber do pedido")
    result = ingest(db, body(change(messages=[m], contacts=[profile(MARIA, "Maria Silva")])))

    assert result["messages"] == 1 and result["quarantined"] == 0
    row = message_row(db, m["id"])
    assert result["inbound_message_ids"] == [str(row["id"])]
    assert row["direction"] == "inbound" and row["sender_type"] == "contact" and row["status"] == "received"
    assert row["content"] == "Oi! Meu CPF é 123.456.789-09, quero saber do pedido"
    assert "123.456.789-09" not in row["content_masked"] and "***.***.***-**" in row["content_masked"]

    contact = db.sql("select * from public.contacts where wa_id = %s", (MARIA,))[0]
    assert contact["profile_name"] == "Maria Silva" and contact["phone"] == "+" + MARIA
    assert contact["phone_hash"] == db.value("select private.phone_hash(%s)", (MARIA,))
    assert contact["total_messages"] == 1 and contact["total_conversations"] == 1

    conv = db.sql("select * from public.conversations where contact_id = %s", (contact["id"],))[0]
    assert conv["status"] == "open" and conv["mode"] == "bot" and str(conv["whatsapp_number_id"]) == NUMBER
    assert conv["message_count"] == 1 and conv["unread_count"] == 1
    assert conv["window_expires_at"] - conv["last_customer_message_at"] == timedelta(hours=24)
    assert conv["last_message_preview"].startswith("Oi! Meu CPF")
    event = db.sql("select * from public.inbound_events")[0]
    assert event["status"] == "applied" and str(event["tenant_id"]) == TENANT and event["message_count"] == 1


def test_new_messages_wake_the_worker_with_notify(db: Db) -> None:
    with psycopg.connect(db.url, autocommit=True) as listener:
        listener.execute("listen zapbase_inbound")
        ingest(db, body(change(messages=[text("Olá")])))
        notices = list(listener.notifies(timeout=2, stop_after=1))
    assert [n.channel for n in notices] == ["zapbase_inbound"]


def test_a_redelivered_body_changes_nothing(db: Db) -> None:
    payload = body(change(messages=[text("Olá"), text("Tudo bem?")], contacts=[profile(MARIA, "Maria")]))
    first = ingest(db, payload)
    again = ingest(db, payload)
    assert first["messages"] == 2
    assert again["messages"] == 0 and again["duplicate_events"] == 1
    assert db.value("select count(*) from public.messages") == 2
    assert db.value("select total_messages from public.contacts where wa_id = %s", (MARIA,)) == 2
    assert db.value("select message_count from public.conversations") == 2


def test_a_known_wamid_inside_a_new_batch_is_skipped_and_the_new_one_lands(db: Db) -> None:
    old = text("primeira")
    ingest(db, body(change(messages=[old])))
    new = text("segunda")
    result = ingest(db, body(change(messages=[old, new])))
    assert result["messages"] == 1 and result["duplicate_messages"] == 1
    assert db.value("select count(*) from public.messages") == 2
    assert db.value("select message_count from public.conversations") == 2


def test_a_batch_of_several_users_in_any_order_lands_in_time_order(db: Db) -> None:
    later = text("depois", MARIA, at=-10)
    earlier = text("antes", MARIA, at=-20)
    joao = text("sou o João", JOAO, at=-15)
    result = ingest(db, body(change(messages=[later, joao, earlier],
                                    contacts=[profile(MARIA, "Maria"), profile(JOAO, "João")])))
    assert result["messages"] == 3
    assert db.value("select count(*) from public.conversations") == 2
    rows = db.sql("select m.content from public.messages m join public.contacts c on c.id = m.contact_id"
                  " where c.wa_id = %s order by m.wa_timestamp", (MARIA,))
    assert [r["content"] for r in rows] == ["antes", "depois"]
    memory = db.value("select s.recent_messages from public.session_context s"
                      " join public.conversations c on c.id = s.conversation_id"
                      " join public.contacts k on k.id = c.contact_id where k.wa_id = %s", (MARIA,))
    assert [m["content"] for m in memory] == ["antes", "depois"]
    assert db.value("select profile_name from public.contacts where wa_id = %s", (JOAO,)) == "João"


def test_every_message_type_is_kept_with_what_it_means(db: Db) -> None:
    image = msg("image", {"id": "MEDIA-IMG", "mime_type": "image/jpeg", "sha256": "abc=",
                          "caption": "a nota"})
    voice = msg("audio", {"id": "MEDIA-OGG", "mime_type": "audio/ogg; codecs=opus", "sha256": "def=",
                          "voice": True})
    video = msg("video", {"id": "MEDIA-MP4", "mime_type": "video/mp4", "sha256": "ghi="})
    document = msg("document", {"id": "MEDIA-PDF", "mime_type": "application/pdf", "sha256": "jkl=",
                                "filename": "boleto.pdf"})
    sticker = msg("sticker", {"id": "MEDIA-WEBP", "mime_type": "image/webp", "sha256": "mno=",
                              "animated": False})
    location = msg("location", {"latitude": -23.56, "longitude": -46.65, "name": "Loja Paulista",
                                "address": "Av. Paulista, 1000"})
    cards = msg("contacts", [{"name": {"formatted_name": "Ana Souza"},
                              "phones": [{"phone": "+5511911112222"}]}])
    button = msg("interactive", {"type": "button_reply",
                                 "button_reply": {"id": "track_order", "title": "Rastrear"}})
    row = msg("interactive", {"type": "list_reply",
                              "list_reply": {"id": "pix", "title": "PIX", "description": "x"}})
    flow = msg("interactive", {"type": "nfm_reply", "nfm_reply": {"name": "cadastro", "body": "Enviado",
                                                                  "response_json": "{\"cpf\": \"1\"}"}})
    quick = msg("button", {"payload": "STOP_PROMOS", "text": "Parar promoções"})
    order = msg("order", {"catalog_id": "123", "text": "quero esses",
                          "product_items": [{"product_retailer_id": "sku1", "quantity": 2,
                                             "item_price": 49.9, "currency": "BRL"}]})
    unsupported = {"from": MARIA, "id": wamid(), "timestamp": "1764400000", "type": "unsupported",
                   "errors": [{"code": 131051, "title": "Message type unknown"}],
                   "unsupported": {"type": "poll_creation"}}
    future = msg("hologram", {"id": "H1", "depth": 3})
    batch = [image, voice, video, document, sticker, location, cards, button, row, flow, quick, order,
             unsupported, future]
    result = ingest(db, body(change(messages=batch, contacts=[profile(MARIA, "Maria")])))
    assert result["messages"] == len(batch) and result["quarantined"] == 0

    got = {m["id"]: message_row(db, m["id"]) for m in batch}
    assert (got[image["id"]]["type"], got[image["id"]]["media_id"], got[image["id"]]["content"]) == \
        ("image", "MEDIA-IMG", "a nota")
    assert got[image["id"]]["media_sha256"] == "abc=" and got[image["id"]]["media_mime_type"] == "image/jpeg"
    assert got[voice["id"]]["is_voice"] and got[voice["id"]]["media_id"] == "MEDIA-OGG"
    assert not got[video["id"]]["is_voice"] and got[video["id"]]["media_id"] == "MEDIA-MP4"
    assert got[document["id"]]["media_filename"] == "boleto.pdf"
    assert got[sticker["id"]]["type"] == "sticker" and got[sticker["id"]]["media_id"] == "MEDIA-WEBP"
    assert got[location["id"]]["content"] == "Loja Paulista · Av. Paulista, 1000 · -23.56,-46.65"
    assert got[cards["id"]]["content"] == "Ana Souza"
    assert (got[button["id"]]["interactive_reply_id"], got[button["id"]]["content"]) == \
        ("track_order", "Rastrear")
    assert got[row["id"]]["interactive_reply_id"] == "pix"
    assert (got[flow["id"]]["interactive_reply_id"], got[flow["id"]]["content"]) == \
        ("flow:cadastro", "Enviado")
    assert (got[quick["id"]]["type"], got[quick["id"]]["interactive_reply_id"]) == ("button", "STOP_PROMOS")
    assert got[order["id"]]["payload"]["order"]["product_items"][0]["product_retailer_id"] == "sku1"
    assert got[unsupported["id"]]["type"] == "unsupported"
    assert got[unsupported["id"]]["payload"]["unsupported"] == {"type": "poll_creation"}
    assert got[future["id"]]["type"] == "unknown" and got[future["id"]]["payload"]["type"] == "hologram"


def test_reply_context_forwarding_and_ad_referrals(db: Db) -> None:
    first = text("qual o prazo?")
    ingest(db, body(change(messages=[first])))
    reply = text("e para o Rio?", context={"from": MARIA, "id": first["id"]})
    dangling = text("sobre aquela mensagem", context={"from": MARIA, "id": "wamid.NOT-OURS"})
    forwarded = text("olha isso", context={"forwarded": True})
    ad = {"source_url": "https://fb.me/ad", "source_id": "ad-42", "source_type": "ad", "headline": "Promo",
          "ctwa_clid": "clid-1"}
    from_ad = text("vi o anúncio", JOAO, referral=ad)
    result = ingest(db, body(change(messages=[reply, dangling, forwarded, from_ad])))
    assert result["messages"] == 4
    assert message_row(db, reply["id"])["reply_to_message_id"] == message_row(db, first["id"])["id"]
    kept = message_row(db, dangling["id"])
    assert kept["reply_to_wamid"] == "wamid.NOT-OURS" and kept["reply_to_message_id"] is None
    assert message_row(db, forwarded["id"])["forwarded"]
    assert message_row(db, from_ad["id"])["referral"]["source_id"] == "ad-42"
    assert db.value("select first_referral ->> 'ctwa_clid' from public.contacts where wa_id = %s",
                    (JOAO,)) == "clid-1"
    assert db.value("select c.referral ->> 'headline' from public.conversations c"
                    " join public.contacts k on k.id = c.contact_id where k.wa_id = %s", (JOAO,)) == "Promo"


def test_a_reaction_marks_its_message_and_removal_clears_it(db: Db) -> None:
    target = text("obrigada!")
    ingest(db, body(change(messages=[target])))
    result = ingest(db, body(change(messages=[msg("reaction", {"message_id": target["id"], "emoji": "❤️"})])))
    assert result["reactions"] == 1 and result["messages"] == 0
    assert message_row(db, target["id"])["reaction_emoji"] == "❤️"
    assert db.value("select count(*) from public.messages") == 1  # not a turn of its own
    ingest(db, body(change(messages=[msg("reaction", {"message_id": target["id"]}, at=1)])))
    assert message_row(db, target["id"])["reaction_emoji"] is None
    gone = msg("reaction", {"message_id": "wamid.GONE", "emoji": "👍"})
    unknown = ingest(db, body(change(messages=[gone])))
    assert unknown["quarantined"] == 0  # tolerated


def test_a_changed_number_waits_for_the_new_number_itself(db: Db) -> None:
    ingest(db, body(change(messages=[text("oi")], contacts=[profile(MARIA, "Maria")])))
    contact_id = db.value("select id from public.contacts where wa_id = %s", (MARIA,))
    new_number = "5511900001111"
    system = {"from": MARIA, "id": wamid(), "timestamp": now(), "type": "system",
              "system": {"body": "Maria changed from +55 11 98888-7777 to +55 11 90000-1111",
                         "wa_id": new_number, "type": "user_changed_number"}}
    result = ingest(db, body(change(messages=[system])))  # system messages carry no contacts array
    assert result["messages"] == 0 and result["quarantined"] == 0

    # a signed claim alone re-keys nothing: replies keep going to the number that wrote
    held = db.sql("select * from public.contacts where id = %s", (contact_id,))[0]
    assert (held["wa_id"], held["phone"], held["pending_wa_id"]) == (MARIA, "+" + MARIA, new_number)
    assert message_row(db, system["id"])["sender_type"] == "system"
    notes = db.sql("select content, sender_type, status from public.messages"
                   " where payload ->> 'zapbase_note' = 'number_change_pending'")
    assert len(notes) == 1 and new_number in notes[0]["content"]
    assert (notes[0]["sender_type"], notes[0]["status"]) == ("system", "ignored")
    alert = db.sql("select type, priority, payload from public.alerts where tenant_id = %s", (TENANT,))
    assert [(a["type"], a["priority"], a["payload"]["pending_wa_id"]) for a in alert] == \
        [("whatsapp.number_change", "high", new_number)]
    assert db.value("select message_count from public.conversations") == 3  # oi, Meta's notice, the note

    # the new number writes itself: the same person, the same conversation
    ingest(db, body(change(messages=[text("número novo", new_number)])))
    moved = db.sql("select * from public.contacts")
    assert len(moved) == 1 and moved[0]["id"] == contact_id
    assert (moved[0]["wa_id"], moved[0]["phone"], moved[0]["pending_wa_id"]) == \
        (new_number, "+" + new_number, None)
    assert moved[0]["phone_hash"] == db.value("select private.phone_hash(%s)", (new_number,))
    assert moved[0]["attributes"]["previous_wa_ids"] == [MARIA]
    assert db.value("select count(distinct conversation_id) from public.messages") == 1


def test_username_users_without_wa_id_are_identified_and_joined_later(db: Db) -> None:
    bsuid = "BR.13491208655302741918"
    anon_msg = {"from_user_id": bsuid, "id": wamid(), "timestamp": "1764400000", "type": "text",
                "text": {"body": "oi, sou usuário com nome"}}
    contacts = [{"profile": {"name": "Lia", "username": "lia.compras"}, "user_id": bsuid}]
    result = ingest(db, body(change(messages=[anon_msg], contacts=contacts)))
    assert result["messages"] == 1
    contact = db.sql("select * from public.contacts where user_id = %s", (bsuid,))[0]
    assert contact["wa_id"] is None and contact["username"] == "lia.compras"
    assert contact["profile_name"] == "Lia"

    both = {"from": "5531955554444", "from_user_id": bsuid, "id": wamid(), "timestamp": "1764400100",
            "type": "text", "text": {"body": "agora com número"}}
    ingest(db, body(change(messages=[both], contacts=[{**contacts[0], "wa_id": "5531955554444"}])))
    assert db.value("select count(*) from public.contacts") == 1
    assert db.value("select wa_id from public.contacts where user_id = %s", (bsuid,)) == "5531955554444"


def test_an_idle_conversation_expires_and_the_next_message_opens_a_new_one(db: Db) -> None:
    ingest(db, body(change(messages=[text("bom dia", at=-9 * 3600)])))
    ingest(db, body(change(messages=[text("ainda estão aí?", at=-6 * 3600)])))
    assert db.value("select count(*) from public.conversations") == 1  # 3 h idle: same session
    ingest(db, body(change(messages=[text("oi de novo", at=0)])))
    rows = db.sql("select status, close_reason, message_count from public.conversations order by created_at")
    assert [(r["status"], r["close_reason"], r["message_count"]) for r in rows] == \
        [("expired", "idle", 2), ("open", None, 1)]
    assert db.value("select total_conversations from public.contacts") == 2

    db.sql("update public.tenants set session_timeout = interval '30 minutes' where id = %s", (TENANT,))
    db.sql("update public.conversations set last_message_at = now() - interval '1 hour'"
           " where status = 'open'")
    ingest(db, body(change(messages=[text("e agora?")])))
    assert db.value("select count(*) from public.conversations where status = 'expired'") == 2


def test_huge_emoji_and_right_to_left_texts_are_kept_intact(db: Db) -> None:
    huge = text("é" * 60_000)
    emoji = text("Adorei 😍👍🏽 👨‍👩‍👧")
    rtl = text("مرحبا، أريد تتبع طلبي")
    result = ingest(db, body(change(messages=[huge, emoji, rtl])))
    assert result["messages"] == 3
    assert message_row(db, huge["id"])["content"] == "é" * 60_000
    assert message_row(db, emoji["id"])["content"] == "Adorei 😍👍🏽 👨‍👩‍👧"
    assert message_row(db, rtl["id"])["content"] == "مرحبا، أريد تتبع طلبي"


def test_malformed_items_are_quarantined_and_the_rest_of_the_batch_lands(db: Db) -> None:
    good = text("mensagem boa")
    no_id = {"from": MARIA, "timestamp": "1764400000", "type": "text", "text": {"body": "sem id"}}
    no_type = {"from": MARIA, "id": wamid(), "timestamp": "1764400000", "text": {"body": "sem tipo"}}
    no_object = {"from": MARIA, "id": wamid(), "timestamp": "1764400000", "type": "image"}
    no_sender = {"id": wamid(), "timestamp": "1764400000", "type": "text", "text": {"body": "de quem?"}}
    not_an_object = "lixo"
    bad_status = {"id": "wamid.X", "status": "teleported", "timestamp": "1764400000"}
    result = ingest(db, body(change(messages=[no_id, good, no_type, no_object, no_sender, not_an_object],
                                    statuses=[bad_status, {"status": "read"}])))
    assert result["messages"] == 1 and result["quarantined"] == 7
    assert message_row(db, good["id"])["content"] == "mensagem boa"
    event = db.sql("select * from public.inbound_events")[0]
    assert event["status"] == "partial"
    reasons = sorted(q["reason"] for q in event["quarantined"])
    assert reasons == sorted([
        "message without id", "message without type", "missing image object",
        "message without sender (from / from_user_id)", "message is not an object",
        'unknown status "teleported"', "status without id"])


def test_an_unknown_number_is_kept_as_unroutable(db: Db) -> None:
    result = ingest(db, body(change(messages=[text("alô?")], phone_number_id="999999999999")))
    assert result["unroutable"] == 1 and result["messages"] == 0
    event = db.sql("select * from public.inbound_events")[0]
    assert event["status"] == "unroutable" and event["tenant_id"] is None
    assert event["payload"]["change"]["value"]["messages"][0]["text"]["body"] == "alô?"
    assert db.value("select count(*) from public.messages") == 0


def test_other_fields_are_stored_and_template_updates_applied(db: Db) -> None:
    update = change(field="message_template_status_update")
    update["value"] = {"event": "REJECTED", "message_template_id": "1",
                       "message_template_name": "retomar_atendimento", "message_template_language": "pt_BR",
                       "reason": "INVALID_FORMAT"}
    quality = {"field": "phone_number_quality_update",
               "value": {"display_phone_number": "5511999990000", "event": "FLAGGED",
                         "current_limit": "TIER_1K"}}
    result = ingest(db, body(update, quality))
    assert result["events"] == 2 and result["quarantined"] == 0
    assert {r["status"] for r in db.sql("select status from public.inbound_events")} == {"stored"}
    template = db.sql("select status, rejection_reason from public.message_templates"
                      " where name = 'retomar_atendimento'")[0]
    assert template == {"status": "REJECTED", "rejection_reason": "INVALID_FORMAT"}


def test_account_errors_are_recorded_on_the_number_with_an_alert(db: Db) -> None:
    errors = [{"code": 130429, "title": "Rate limit hit", "message": "(#130429) Rate limit hit",
               "error_data": {"details": "Cloud API message throughput has been reached."}}]
    ingest(db, body(change(errors=errors)))
    ingest(db, body(change(errors=errors, messages=[text("e aí")])))  # same error again: one alert a day
    number = db.sql("select last_error, last_error_at from public.whatsapp_numbers where id = %s",
                    (NUMBER,))[0]
    assert number["last_error"]["errors"][0]["code"] == 130429 and number["last_error_at"] is not None
    alerts = db.sql("select type, title, priority from public.alerts where tenant_id = %s", (TENANT,))
    assert alerts == [{"type": "whatsapp.error", "title": "WhatsApp: Rate limit hit", "priority": "high"}]


def test_a_body_without_entries_is_quarantined_not_raised(db: Db) -> None:
    result = ingest(db, json.dumps({"object": "whatsapp_business_account", "entry": "nope"}))
    assert result["quarantined"] == 1
    event = db.sql("select status, reason, raw_body from public.inbound_events")[0]
    assert event["status"] == "quarantined" and event["reason"] == "body has no entry array"
    assert '"entry": "nope"' in event["raw_body"]


def test_the_api_roles_cannot_ingest(db: Db) -> None:
    for session in (db.as_anon, lambda: db.as_user(OWNER)):
        try:
            with session() as s:
                s.value("select public.whatsapp_ingest(%s::jsonb)", (json.dumps(body(change(messages=[]))),))
        except psycopg.errors.InsufficientPrivilege:
            continue
        raise AssertionError("an API role could call whatsapp_ingest")



def test_new_conversations_get_the_bot_of_their_number_or_go_to_the_human_queue(db: Db) -> None:
    ingest(db, body(change(messages=[text("oi", MARIA)])))
    conv = db.sql("select mode, status, bot_id from public.conversations")[0]
    assert conv["mode"] == "bot" and str(conv["bot_id"]) == "00000000-0000-4000-e000-000000000001"  # seed bot

    db.sql("update public.bots set is_active = false")
    ingest(db, body(change(messages=[text("oi", JOAO)])))
    conv = db.sql("select c.mode, c.status, c.bot_id, c.queued_at from public.conversations c"
                  " join public.contacts k on k.id = c.contact_id where k.wa_id = %s", (JOAO,))[0]
    assert (conv["mode"], conv["status"], conv["bot_id"]) == ("human", "pending", None)
    assert conv["queued_at"] is not None


def test_odd_entries_and_oversized_ids_are_kept_not_raised(db: Db) -> None:
    odd = {"object": "whatsapp_business_account" * 5,
           "entry": [1, "x", {"id": "9" * 80, "changes": ["nope", change(messages=[text("ainda chega")])]}]}
    odd["entry"][2]["changes"][1]["value"]["metadata"]["phone_number_id"] = "106540352242922"
    odd["entry"][2]["changes"][1]["field"] = "messages"
    result = ingest(db, odd)
    assert result["messages"] == 1 and result["quarantined"] == 3
    reasons = {r["reason"] for r in db.sql("select reason from public.inbound_events"
                                           " where status = 'quarantined'")}
    assert reasons == {"entry is not an object with a changes array", "change is not an object"}
