"""Plan limits with clear errors (seed 001 max_agents, max_departments, max_contacts,
monthly_message_limit), and what customers bring never refused; platform admins read the
inbox tables of every tenant."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from inbox_support import AGENT, TENANT, customer, handoff, new_team, presence

from support import Db


def plan(db: Db, **limits: int) -> None:
    sets = ", ".join(f"{k} = {int(v)}" for k, v in limits.items())
    db.sql(
        f"update public.plans set {sets} where id = (select plan_id from public.tenants where id = %s)",
        (TENANT,),
    )


def test_members_teams_contacts_and_monthly_messages_stop_at_the_plan(db: Db) -> None:
    members = db.value("select count(*) from public.members where tenant_id = %s", (TENANT,))
    teams = db.value("select count(*) from public.teams where tenant_id = %s", (TENANT,))
    plan(db, max_members=members, max_teams=teams)
    with pytest.raises(psycopg.errors.CheckViolation, match=f"your plan allows {members} members"):
        db.add_member(uuid.UUID(TENANT), "agent")
    with pytest.raises(psycopg.errors.CheckViolation, match=f"your plan allows {teams} teams"):
        new_team(db, "Extra")

    presence(db, AGENT, "online")
    conv = str(handoff(db, customer(db))["id"])
    contacts = db.value("select count(*) from public.contacts where tenant_id = %s", (TENANT,))
    sent = db.value(
        "select count(*) from public.messages where tenant_id = %s and direction = 'outbound'", (TENANT,)
    )
    plan(db, max_contacts=contacts, monthly_message_limit=sent)
    with (
        pytest.raises(psycopg.errors.CheckViolation, match=f"your plan allows {contacts} contacts"),
        db.as_user(AGENT) as s,
    ):
        s.all("insert into public.contacts (tenant_id, wa_id) values (%s, '5511911112222')", (TENANT,))
    with (
        pytest.raises(
            psycopg.errors.CheckViolation, match=f"your plan allows {sent} messages sent this month"
        ),
        db.as_user(AGENT) as s,
    ):
        s.all('select public.send_message(%s, \'{"type": "text", "text": {"body": "Oi"}}\')', (conv,))
    # a customer writing is never refused: contact and conversation are made past the limit
    customer(db, "Oi de novo")
    assert db.value("select count(*) from public.contacts where tenant_id = %s", (TENANT,)) == contacts + 1


def test_platform_admins_read_presence_and_metrics_of_every_tenant(db: Db) -> None:
    presence(db, AGENT, "online")
    handoff(db, customer(db))
    operator = db.create_user("operacao@zapbase.dev")
    db.sql("insert into public.platform_admins (user_id) values (%s)", (operator,))
    with db.as_user(operator) as s:
        assert s.value("select count(*) from public.agent_presence where tenant_id = %s", (TENANT,)) >= 2
        assert (
            s.value("select count(*) from public.conversation_metrics where tenant_id = %s", (TENANT,)) == 1
        )
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            s.all("select public.set_presence(%s, 'online')", (TENANT,))
