"""Intents as the frontend sees them (members read, managers write), intent triggers of flows,
and the worker's classification RPCs: service role only, cached, thresholded."""

from __future__ import annotations

import json

import psycopg
import pytest
from flow_support import AGENT, OWNER, TENANT, create_flow, graph

from support import Db

SAY = graph({"id": "start", "type": "start"}, {"id": "bye", "type": "end", "text": "Tchau"},
            edges=[("start", "bye")])  # fmt: skip


def add_intent(db: Db, user: str, name: str, **columns: object) -> None:
    values = {"tenant_id": TENANT, "name": name, "description": "O cliente quer rastrear o pedido", **columns}
    with db.as_user(user) as s:
        s.all(f"insert into public.intents ({', '.join(values)}) values ({', '.join(['%s'] * len(values))})",
              list(values.values()))  # fmt: skip


def inbound(db: Db, text: str, *, kind: str = "text") -> str:
    """A customer message as ingest stores it (service role), in the demo conversation."""
    conversation, _ = db.create_conversation()
    return str(db.value(
        "insert into public.messages (tenant_id, conversation_id, contact_id, whatsapp_number_id, direction,"
        " sender_type, type, content, status)"
        " select c.tenant_id, c.id, c.contact_id, c.whatsapp_number_id, 'inbound', 'contact', %s, %s,"
        " 'received' from public.conversations c where c.id = %s returning id", (kind, text, conversation)))


def test_members_read_intents_and_managers_write_them(db: Db) -> None:
    add_intent(db, OWNER, "rastrear_pedido", examples=["cadê meu pedido?"])
    with db.as_user(AGENT) as s:
        assert [r["name"] for r in s.all("select name from public.intents")] == ["rastrear_pedido"]
        assert s.rowcount("update public.intents set active = false") == 0
        assert s.rowcount("delete from public.intents") == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"):
        add_intent(db, AGENT, "reclamacao")
    with pytest.raises(psycopg.errors.CheckViolation):
        add_intent(db, OWNER, "Rastrear Pedido")  # names are identifiers the model answers with
    with db.as_user(OWNER) as s:
        assert s.rowcount("update public.intents set active = false") == 1


def test_intent_triggers_name_an_intent(db: Db) -> None:
    create_flow(db, "Rastreio", SAY, triggers=(("intent", "rastrear_pedido"),))
    with pytest.raises(psycopg.errors.CheckViolation):
        create_flow(db, "Outro", SAY, triggers=(("intent", "Rastrear pedido!"),))


def test_the_classification_rpcs_are_the_workers(db: Db) -> None:
    message = inbound(db, "cadê meu pedido?")
    for call in ("select public.intent_begin(%s)",
                 "select public.intent_record(%s, repeat('a', 64), null, 0.5)"):  # fmt: skip
        with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(OWNER) as s:
            s.all(call, (message,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(OWNER) as s:
        s.all("select * from public.intent_cache")


def test_begin_asks_only_with_active_intents_and_text(db: Db) -> None:
    message, again = inbound(db, "Cadê meu pedido?"), inbound(db, "cade   meu pedido")
    emoji, image = inbound(db, "👍 !!"), inbound(db, "x", kind="image")
    with db.as_service() as s:
        assert s.value("select public.intent_begin(%s)", (message,)) is None  # no intent: no cost
    add_intent(db, OWNER, "rastrear_pedido", examples=["onde está meu pedido"])
    add_intent(db, OWNER, "cancelar", description="O cliente quer cancelar", active=False)
    with db.as_service() as s:
        job = s.value("select public.intent_begin(%s)", (message,))
        assert [i["name"] for i in job["intents"]] == ["rastrear_pedido"]
        assert job["model"] == "gpt-4o-mini"  # the cheapest priced model of the default chain
        assert s.value("select public.intent_begin(%s)", (emoji,)) is None
        assert s.value("select public.intent_begin(%s)", (image,)) is None
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not an active intent"), \
            db.as_service() as s:
        s.all("select public.intent_record(%s, %s, 'cancelar', 0.9)", (message, job["key"]))
    with db.as_service() as s:
        assert s.value("select public.intent_record(%s, %s, 'rastrear_pedido', 0.9)",
                       (message, job["key"])) == "rastrear_pedido"  # fmt: skip
        # classified: a retry asks nothing; the same folded text elsewhere reuses the answer
        assert s.value("select public.intent_begin(%s)", (message,)) is None
        assert s.value("select public.intent_begin(%s)", (again,)) is None
        assert s.value("select intent from public.messages where id = %s", (again,)) == "rastrear_pedido"
    events = db.sql("select payload from public.events where type = 'message.intent_detected'")
    assert [json.dumps(e["payload"]["intent"]) for e in events] == ['"rastrear_pedido"'] * 2


def test_a_garbage_threshold_setting_falls_back_to_the_default(db: Db) -> None:
    add_intent(db, OWNER, "rastrear_pedido")
    db.sql("update public.tenants set settings = settings || %s where id = %s",
           (json.dumps({"intent_threshold": "alto"}), TENANT))  # fmt: skip
    message, later = inbound(db, "cadê meu pedido?"), inbound(db, "meu pedido, cadê?")
    with db.as_service() as s:
        key = s.value("select public.intent_begin(%s)", (message,))["key"]
        assert s.value("select public.intent_record(%s, %s, 'rastrear_pedido', 0.59)", (message, key)) is None
    with db.as_service() as s:
        key = s.value("select public.intent_begin(%s)", (later,))["key"]
        assert s.value("select public.intent_record(%s, %s, 'rastrear_pedido', 0.6)", (later, key)) == (
            "rastrear_pedido")
