"""Who a message is from: username (BSUID) users keep one contact across numbers, contacts
that turn out to be one person never block their messages, and over-long optional fields are
cut instead of costing the message."""

from __future__ import annotations

from webhooks import body, change, ingest, message_row, now, profile, text, wamid

from support import Db

BSUID = "BR.13491208655302741918"
OLD = "5531955554444"
NEW = "5531966665555"


def _from(sender: str | None, user_id: str | None, words: str) -> dict[str, object]:
    m: dict[str, object] = {"id": wamid(), "timestamp": now(), "type": "text", "text": {"body": words}}
    if sender:
        m["from"] = sender
    if user_id:
        m["from_user_id"] = user_id
    return m


def _landed(db: Db, *messages: dict[str, object]) -> None:
    for m in messages:
        message_row(db, str(m["id"]))


def test_a_username_user_writing_from_a_new_number_keeps_their_contact(db: Db) -> None:
    first = _from(OLD, BSUID, "oi")
    ingest(db, body(change(messages=[first], contacts=[{"profile": {"name": "Lia"}, "wa_id": OLD,
                                                        "user_id": BSUID}])))
    moved = _from(NEW, BSUID, "troquei de chip")
    later = _from(NEW, BSUID, "e continuo aqui")
    for m in (moved, later):  # was quarantined for good (contacts_tenant_id_user_id_key)
        result = ingest(db, body(change(messages=[m])))
        assert result["messages"] == 1 and result["quarantined"] == 0
    _landed(db, first, moved, later)
    contacts = db.sql("select wa_id, user_id, attributes from public.contacts")
    assert len(contacts) == 1
    assert (contacts[0]["wa_id"], contacts[0]["user_id"]) == (NEW, BSUID)
    assert contacts[0]["attributes"]["previous_wa_ids"] == [OLD]


def test_a_message_linking_a_phone_contact_and_a_username_contact_lands(db: Db) -> None:
    ingest(db, body(change(messages=[text("só número", OLD)])))
    ingest(db, body(change(messages=[_from(None, BSUID, "só nome de usuário")])))
    both = _from(OLD, BSUID, "agora os dois")
    again = _from(OLD, BSUID, "de novo")
    for m in (both, again):
        result = ingest(db, body(change(messages=[m])))
        assert result["messages"] == 1 and result["quarantined"] == 0
    _landed(db, both, again)
    # not merged silently: the message goes to the BSUID's contact, the phone one stays
    owner = db.value("select c.user_id from public.messages m join public.contacts c on c.id = m.contact_id"
                     " where m.wamid = %s", (both["id"],))
    assert owner == BSUID and db.value("select count(*) from public.contacts") == 2


def test_over_long_optional_fields_are_cut_not_refused(db: Db) -> None:
    long_name = "Ana " + "a" * 400
    m = text("oi", OLD)
    m["from_user_id"] = "U" * 500  # not a BSUID: ignored, the phone still identifies the sender
    media = {"id": "M" * 300, "mime_type": "image/" + "x" * 300, "sha256": "s" * 300, "caption": "foto"}
    image = {"from": OLD, "id": wamid(), "timestamp": now(), "type": "image", "image": media,
             "context": {"id": "w" * 300, "forwarded": "sim"}}
    tap = {"from": OLD, "id": wamid(), "timestamp": now(), "type": "interactive",
           "interactive": {"type": "button_reply", "button_reply": {"id": "b" * 400, "title": "Ok"}}}
    contacts = [profile(OLD, long_name, user_id="U" * 500)]
    contacts[0]["profile"]["username"] = "u" * 200
    result = ingest(db, body(change(messages=[m, image, tap], contacts=contacts)))
    assert result["messages"] == 3 and result["quarantined"] == 0
    contact = db.sql("select profile_name, username, user_id from public.contacts")[0]
    assert contact == {"profile_name": long_name[:256], "username": "u" * 120, "user_id": None}
    row = message_row(db, image["id"])
    assert (len(row["media_id"]), len(row["media_mime_type"]), len(row["reply_to_wamid"])) == (200, 200, 200)
    assert row["payload"]["image"]["id"] == "M" * 300 and not row["forwarded"]
    assert message_row(db, tap["id"])["interactive_reply_id"] == "b" * 256
