"""Bots: members read them, managers write them, within the plan's max_bots, pointing only
at their own tenant's gateway policies."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from ai_support import AGENT, OWNER, TENANT, Ledger, new_tenant

from support import Db

DEMO_BOT = "00000000-0000-4000-e000-000000000001"
POLICY_B = "bbbbbbbb-0000-4000-f000-000000000001"  # fixtures/other_tenant.sql
FIXTURE_B = Path(__file__).parent.parent / "fixtures" / "other_tenant.sql"


def test_seed_bot_speaks_portuguese_and_hands_off(db: Db) -> None:
    bot = db.sql("select * from public.bots where id = %s", (DEMO_BOT,))[0]
    assert {"atendente", "humano", "pessoa"} <= set(bot["handoff_keywords"])
    assert bot["system_prompt"].startswith("Você é a assistente virtual da Loja Demo")
    assert (bot["type"], bot["tts_mode"], bot["memory_turns"], bot["model_policy_id"]) == (
        "support",
        "on_voice",
        10,
        None,
    )


def test_agents_read_bots_and_managers_write_them(db: Db) -> None:
    manager = db.add_member(TENANT, "manager")
    with db.as_user(AGENT) as s:
        assert s.value("select name from public.bots") == "Assistente Loja Demo"
        assert s.rowcount("update public.bots set temperature = 1") == 0
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="bots are managed by tenant managers"),
        db.as_user(AGENT) as s,
    ):
        s.all("insert into public.bots (tenant_id, name) values (%s, 'Pirata')", (TENANT,))

    with db.as_user(manager) as s:
        sdr = s.value(
            "insert into public.bots (tenant_id, name, type, system_prompt, handoff_keywords)"
            " values (%s, 'SDR', 'sdr', 'Qualifique o lead.', '{vendedor}') returning id",
            (TENANT,),
        )
        assert (
            s.rowcount("update public.bots set max_replies_per_contact_per_day = 5 where id = %s", (sdr,))
            == 1
        )
        assert s.rowcount("delete from public.bots where id = %s", (sdr,)) == 1
    actions = db.sql(
        "select action from public.audit_log where resource_type = 'bots' and actor_id = %s"
        " order by created_at",
        (manager,),
    )
    assert [a["action"] for a in actions] == ["insert", "update", "delete"]


def test_plan_limits_active_bots(db: Db) -> None:
    tenant, owner = new_tenant(db, plan="starter")  # max_bots = 2
    with db.as_user(owner) as s:
        for name in ("Um", "Dois"):
            s.all("insert into public.bots (tenant_id, name) values (%s, %s)", (tenant, name))
    with (
        pytest.raises(psycopg.errors.CheckViolation, match="your plan allows 2 active bots"),
        db.as_user(owner) as s,
    ):
        s.all("insert into public.bots (tenant_id, name) values (%s, 'Três')", (tenant,))
    with db.as_user(owner) as s:  # an inactive one may wait on the shelf
        s.all("insert into public.bots (tenant_id, name, is_active) values (%s, 'Três', false)", (tenant,))
    with pytest.raises(psycopg.errors.CheckViolation), db.as_user(owner) as s:
        s.all("update public.bots set is_active = true where name = 'Três'")


def test_bot_policy_must_belong_to_the_tenant(db: Db) -> None:
    db.sql(FIXTURE_B.read_text())
    with pytest.raises(psycopg.errors.ForeignKeyViolation), db.as_user(OWNER) as s:
        s.all("update public.bots set model_policy_id = %s where id = %s", (POLICY_B, DEMO_BOT))
    with db.as_user(OWNER) as s:
        own = s.value(
            "insert into public.gateway_policies (tenant_id, name, chain)"
            " values (%s, 'Sonnet', '{anthropic/claude-sonnet-4}') returning id",
            (TENANT,),
        )
        s.all("update public.bots set model_policy_id = %s where id = %s", (own, DEMO_BOT))
        s.all("delete from public.gateway_policies where id = %s", (own,))
    assert db.value("select model_policy_id from public.bots where id = %s", (DEMO_BOT,)) is None


def test_tts_model_must_be_a_tts_model(db: Db) -> None:
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="unknown TTS model"), db.as_user(OWNER) as s:
        s.all("update public.bots set tts_model = 'openai/gpt-4o-mini' where id = %s", (DEMO_BOT,))


def test_usage_names_a_bot_of_the_same_tenant(db: Db, ledger: Ledger) -> None:
    db.sql(FIXTURE_B.read_text())
    bot_b = db.value("select id from public.bots where tenant_id = 'bbbbbbbb-0000-4000-b000-000000000001'")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        ledger.reserve(bot_id=bot_b)
    reserved = ledger.reserve(bot_id=DEMO_BOT, estimated_output_tokens=100)
    ledger.settle(reserved["reservation_id"], output_tokens=90)
    assert db.value("select bot_id::text from public.ai_usage where tenant_id = %s", (TENANT,)) == DEMO_BOT
