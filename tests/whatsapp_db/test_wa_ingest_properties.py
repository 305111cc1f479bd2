"""Property-based ingest: Meta-shaped webhook bodies, generated and mutated (missing, extra and
wrong-typed fields, huge strings, unicode edge cases, duplicate ids, mixed batches), go through
`whatsapp_ingest` the way the webhook route sends them (cleaned by `jsonb_safe`). It never
raises, and after every body the invariants hold: no orphan row, no duplicate wamid, no
status regression, every refused item kept in inbound_events with a reason, counters
consistent with the rows, no stamp past receipt.

Small by default; `ZAPBASE_FUZZ_EXAMPLES=10000 make fuzz` for a long run.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from webhooks import INGEST_SQL, PHONE_NUMBER_ID, TENANT, WABA_ID, body, change, ingest, text

from support import Db
from zapbase.whatsapp.cleaning import jsonb_safe

EXAMPLES = int(os.environ.get("ZAPBASE_FUZZ_EXAMPLES", "40"))
SENDERS = ["5511988887777", "5521977776666", "5531955554444", "5541944443333"]
BSUIDS = ["BR.13491208655302741918", "US.1", "BR.2"]
OUTBOUND = ["wamid.OUT.0", "wamid.OUT.1", "wamid.OUT.2"]
Json = dict[str, Any]

odd = st.one_of(st.none(), st.integers(), st.booleans(), st.lists(st.integers(), max_size=2),
                st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
                st.floats(allow_nan=False, allow_infinity=False))
words = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["Olá 😀👍🏽 👨‍👩‍👧", "مرحبا، أريد", "e\u0301", "\ufffd", "\u0000nul", "\ud800lone",
                     "x" * 5000, "\u202eRTL", "💩" * 300]),
)
stamps = st.one_of(
    st.integers(-3 * 86400, 600).map(lambda d: str(int(time.time()) + d)),
    st.sampled_from(["999999999999", "0", "", "abc", "17644000001234"]), odd,
)
wamids = st.one_of(st.sampled_from([f"wamid.IN.{n}" for n in range(12)] + OUTBOUND),
                   st.text(min_size=1, max_size=8).map("wamid.".__add__), st.just("w" * 300))

reply = st.fixed_dictionaries({"id": words, "title": words})
TYPE_OBJECTS: dict[str, st.SearchStrategy[Any]] = {
    "text": st.fixed_dictionaries({"body": words}),
    "image": st.fixed_dictionaries({"id": words, "mime_type": words}, optional={"caption": words}),
    "audio": st.fixed_dictionaries({"id": words, "voice": st.one_of(st.booleans(), odd)}),
    "document": st.fixed_dictionaries({"id": words, "filename": words}),
    "location": st.fixed_dictionaries({"latitude": st.floats(-90, 90), "longitude": odd}),
    "contacts": st.lists(st.fixed_dictionaries({"name": st.fixed_dictionaries({"formatted_name": words})}),
                         max_size=2),
    "interactive": st.fixed_dictionaries({"type": st.just("button_reply"), "button_reply": reply}),
    "reaction": st.fixed_dictionaries({"message_id": wamids}, optional={"emoji": words}),
    "system": st.fixed_dictionaries({"type": st.just("user_changed_number"), "body": words,
                                     "wa_id": st.sampled_from(SENDERS)}),
    "unsupported": st.fixed_dictionaries({"type": words}),
    "hologram": odd,
}


@st.composite
def mutated(draw: st.DrawFn, value: Json) -> Any:
    """`value` as Meta sent it, or with a key dropped, retyped or added."""
    how = draw(st.sampled_from(["keep", "keep", "keep", "drop", "retype", "extra", "replace"]))
    keys = sorted(value)
    if how == "drop" and keys:
        return {k: v for k, v in value.items() if k != draw(st.sampled_from(keys))}
    if how == "retype" and keys:
        return {**value, draw(st.sampled_from(keys)): draw(odd)}
    if how == "extra":
        return {**value, draw(st.text(max_size=8)): draw(st.one_of(odd, words))}
    if how == "replace":
        return draw(st.one_of(odd, words))
    return value


@st.composite
def messages(draw: st.DrawFn) -> Any:
    type_ = draw(st.sampled_from(sorted(TYPE_OBJECTS)))
    m: Json = {"id": draw(wamids), "timestamp": draw(stamps), "type": type_, type_: draw(TYPE_OBJECTS[type_])}
    sender = draw(st.sampled_from(["phone", "phone", "bsuid", "both"]))
    if sender != "bsuid":
        m["from"] = draw(st.sampled_from(SENDERS))
    if sender != "phone":
        m["from_user_id"] = draw(st.one_of(st.sampled_from(BSUIDS), st.just("U" * 200)))
    if draw(st.booleans()):
        m["context"] = draw(st.fixed_dictionaries({}, optional={"id": wamids, "forwarded": odd}))
    if draw(st.integers(0, 9)) == 0:
        m["referral"] = {"source_id": draw(words), "ctwa_clid": draw(words)}
    return draw(mutated(m))


@st.composite
def statuses(draw: st.DrawFn) -> Any:
    status = draw(st.sampled_from(["sent", "delivered", "read", "played", "failed", "deleted", "teleported"]))
    st_: Json = {"id": draw(st.one_of(st.sampled_from(OUTBOUND), wamids)), "timestamp": draw(stamps),
                 "status": status, "recipient_id": draw(st.sampled_from(SENDERS))}
    if draw(st.booleans()):
        st_["errors"] = draw(st.lists(st.one_of(odd, st.fixed_dictionaries(
            {"code": st.one_of(st.integers(), words), "title": words})), max_size=2))
    if draw(st.booleans()):
        st_["pricing"] = {"category": draw(words), "pricing_model": draw(words)}
    return draw(mutated(st_))


@st.composite
def changes(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["messages"] * 6 + ["template", "other"]))
    if kind == "template":
        return draw(mutated({"field": "message_template_status_update", "value": {
            "event": draw(st.one_of(st.sampled_from(["APPROVED", "REJECTED", "PAUSED"]), odd)),
            "message_template_name": "retomar_atendimento", "message_template_language": "pt_BR",
            "reason": draw(words)}}))
    if kind == "other":
        return {"field": draw(st.one_of(words, odd)), "value": draw(st.one_of(odd, words))}
    profile = st.fixed_dictionaries({"name": words}, optional={"username": words})
    contact = st.fixed_dictionaries({"wa_id": st.sampled_from(SENDERS), "profile": profile},
                                    optional={"user_id": st.sampled_from(BSUIDS)})
    error = st.fixed_dictionaries({}, optional={"code": st.one_of(st.integers(), words), "title": words,
                                                "message": odd})
    value = change(
        messages=draw(st.lists(messages(), max_size=6)), statuses=draw(st.lists(statuses(), max_size=4)),
        contacts=draw(st.lists(contact, max_size=3)),
        errors=draw(st.one_of(st.none(), st.lists(st.one_of(odd, words, error), max_size=3))),
        phone_number_id=draw(st.sampled_from([PHONE_NUMBER_ID] * 5 + ["999999999999"])),
    )
    return draw(mutated(value))


@st.composite
def bodies(draw: st.DrawFn) -> Any:
    entry = st.fixed_dictionaries({"id": st.just(WABA_ID),
                                   "changes": st.lists(changes(), min_size=1, max_size=3)})
    entries = draw(st.lists(st.one_of(entry, odd), min_size=1, max_size=3))
    if draw(st.integers(0, 19)) == 0:
        return draw(mutated({"object": "whatsapp_business_account", "entry": entries}))
    return {"object": "whatsapp_business_account", "entry": entries}


def raw_quarantines(payload: Any) -> int:
    """How many pieces of `payload` whatsapp_ingest keeps raw (not an entry / change object)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("entry"), list):
        return 1
    count = 0
    for entry in payload["entry"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes"), list):
            count += 1
        else:
            count += sum(not isinstance(c, dict) for c in entry["changes"])
    return count


STATE_SQL = """
select
  (select coalesce(sum(jsonb_array_length(quarantined)), 0) from public.inbound_events) as kept,
  (select count(*) from public.messages where direction = 'inbound' and sender_type = 'contact') as turns,
  (select coalesce(jsonb_object_agg(wamid, private.outbound_rank(status)), '{}')
     from public.messages where direction = 'outbound') as ranks
"""

INVARIANTS_SQL = """
select
  (select count(*) from public.messages m join public.conversations c on c.id = m.conversation_id
    where c.contact_id <> m.contact_id) as message_in_foreign_conversation,
  (select count(*) from public.conversations c
    where not exists (select 1 from public.messages m where m.conversation_id = c.id)) as empty_conversations,
  (select count(*) from public.contacts k
    where not exists (select 1 from public.conversations c where c.contact_id = k.id)) as lone_contacts,
  (select count(*) - count(distinct (tenant_id, wamid)) from public.messages where wamid is not null)
    as duplicate_wamids,
  (select count(*) from public.conversations c
    where c.message_count <> (select count(*) from public.messages m where m.conversation_id = c.id)
       or c.inbound_count + c.outbound_count <> c.message_count) as conversation_counts_off,
  (select count(*) from public.contacts k
    where k.total_messages <> (select count(*) from public.messages m where m.contact_id = k.id))
    as contact_counts_off,
  (select count(*) from public.session_context s
    where jsonb_array_length(s.recent_messages) > s.max_messages) as memory_over_limit,
  (select count(*) from public.inbound_events e, jsonb_array_elements(e.quarantined) q
    where coalesce(q ->> 'reason', '') = '' or not (q ? 'item')) as kept_without_reason,
  (select count(*) from public.inbound_events
    where (status = 'partial') <> (jsonb_array_length(quarantined) > 0)
       or (status = 'quarantined' and coalesce(reason, '') = '')) as events_inconsistent,
  (select count(*) from public.messages
    where wa_timestamp > now() + interval '5 minutes') as stamps_past_receipt,
  (select count(*) from public.conversations
    where window_expires_at > now() + interval '24 hours') as windows_past_receipt,
  (select count(*) from public.messages m join public.contacts k on k.id = m.contact_id
    where k.tenant_id <> %(tenant)s) as other_tenant_rows
"""


def _prepare_outbound(db: Db) -> None:
    """Three sent messages of the demo number, for statuses to move (or try to move back)."""
    ingest(db, body(change(messages=[text("oi", SENDERS[0])])))
    conversation = db.value("select id from public.conversations")
    for wamid in OUTBOUND:
        with db.as_service() as s:
            queued = s.value("select id from public.whatsapp_queue_reply(%s, %s)",
                             (conversation, json.dumps({"type": "text", "text": {"body": "olá"}})))
            s.value("select public.whatsapp_mark_sent(%s, %s)", (queued, wamid))


def test_ingest_never_raises_and_keeps_its_invariants(db: Db) -> None:
    _prepare_outbound(db)

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=EXAMPLES <= 100,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(bodies())
    def ingest_one(generated: Any) -> None:
        payload, _ = jsonb_safe(generated)  # what the webhook route sends
        before = db.sql(STATE_SQL)[0]
        with db.as_service() as s:
            result: Json = s.value(INGEST_SQL, (json.dumps(payload), PHONE_NUMBER_ID))
        after = db.sql(STATE_SQL)[0]

        assert result["quarantined"] == after["kept"] - before["kept"] + raw_quarantines(payload)
        assert result.get("messages", 0) == after["turns"] - before["turns"]
        new_ids = result["inbound_message_ids"]
        if new_ids:
            assert db.value("select count(*) from public.messages where id = any(%s::uuid[])"
                            " and status = 'received'", (new_ids,)) == len(new_ids)
        regressions = {w: (r, after["ranks"][w]) for w, r in before["ranks"].items() if after["ranks"][w] < r}
        assert regressions == {}
        broken = {k: v for k, v in db.sql(INVARIANTS_SQL, {"tenant": TENANT})[0].items() if v}
        # the database keeps what a failing body did: show the body (a replay is not clean)
        assert broken == {}, json.dumps(payload, ensure_ascii=False)[:4000]

    ingest_one()
    # the generated bodies are not all refused: valid messages did land along the way
    assert db.value("select count(*) from public.messages where direction = 'inbound'") > 1


def test_a_backlogged_body_applies_as_it_would_have_at_once(db: Db) -> None:
    """During a burst the bodies wait in the backlog: applied later, in order, they leave what
    they would have left applied at once (measured in a rolled-back transaction first), and
    none is lost or stalls the backlog."""
    _prepare_outbound(db)

    @settings(max_examples=EXAMPLES // 2, deadline=None, database=None, derandomize=EXAMPLES <= 100,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.lists(bodies(), min_size=1, max_size=4))
    def burst(generated: list[Any]) -> None:
        payloads = [json.dumps(jsonb_safe(g)[0]) for g in generated]
        before = db.sql(STATE_SQL)[0]
        with db.connect("authenticator") as conn:
            conn.execute("set role service_role")
            results = [conn.execute(INGEST_SQL + " as result", (p, PHONE_NUMBER_ID)).fetchall()[0]["result"]
                       for p in payloads]
            conn.rollback()
        at_once = sum(r.get("messages", 0) for r in results)
        with db.connect() as in_flight, db.as_service() as s:
            in_flight.execute("select pg_advisory_lock(205, 1), pg_advisory_lock(205, 2)")  # the ingest slots
            for p in payloads:
                result = s.value("select public.whatsapp_receive(%s::jsonb, %s)", (p, PHONE_NUMBER_ID))
                assert result["backlogged"] is True
        with db.as_service() as s:
            applied = s.value("select public.whatsapp_apply_backlog(100)")
        assert applied == {"applied": len(payloads), "messages": at_once, "stalled": False}
        assert db.value("select count(*) from public.inbound_backlog") == 0
        assert db.sql(STATE_SQL)[0]["turns"] - before["turns"] == at_once
        broken = {k: v for k, v in db.sql(INVARIANTS_SQL, {"tenant": TENANT})[0].items() if v}
        assert broken == {}, json.dumps(payloads, ensure_ascii=False)[:4000]

    burst()
