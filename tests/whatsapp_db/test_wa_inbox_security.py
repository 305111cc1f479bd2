"""The inbox against its own members: what an agent or viewer may not do with conversations,
consent, outbound payloads and greetings, tried the way a frontend would (PostgREST as
`authenticated` with JWT claims)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb
from webhooks import AGENT, OWNER, TENANT, body, change, ingest, text

from support import Db

TEAM = "00000000-0000-4000-d000-000000000001"  # seed: Atendimento, served by AGENT
AGENT_MEMBER = "00000000-0000-4000-c000-000000000002"
OWNER_MEMBER = "00000000-0000-4000-c000-000000000001"
MARIA = "5511988887777"


def conversation(db: Db, wa_id: str = MARIA) -> str:
    conv, _ = db.create_conversation(wa_id)
    return conv


def contact_of(db: Db, conv: str) -> str:
    return str(db.value("select contact_id from public.conversations where id = %s", (conv,)))


def member_id(db: Db, user: uuid.UUID | str) -> str:
    return str(db.value("select id from public.members where user_id = %s", (user,)))


def restricted_tenant(db: Db) -> None:
    db.sql("update public.tenants set restrict_agents_to_assigned = true where id = %s", (TENANT,))


def new_team(db: Db, name: str, *serving: uuid.UUID, active: bool = True) -> str:
    team = str(db.value("insert into public.teams (tenant_id, name, is_active) values (%s, %s, %s)"
                        " returning id", (TENANT, name, active)))
    for user in serving:
        db.sql("insert into public.team_members (tenant_id, team_id, member_id) values (%s, %s, %s)",
               (TENANT, team, member_id(db, user)))
    return team


def handoff(db: Db, user: uuid.UUID | str, conv: str, team: str | None) -> dict[str, Any]:
    with db.as_user(user) as s:
        row: dict[str, Any] = s.one("select * from public.handoff_conversation(%s, 'transferência', %s)",
                                    (conv, team))
    return row


def failure(call: Any, *args: Any) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        call(*args)
    return caught.value


# -- 5. greetings ------------------------------------------------------------------------


def test_a_viewer_cannot_write_a_greeting_even_their_own(db: Db) -> None:
    viewer = db.add_member(uuid.UUID(TENANT), "viewer")
    mine = member_id(db, viewer)
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(viewer) as s:
        s.value("insert into public.agent_greetings (tenant_id, member_id, message_template)"
                " values (%s, %s, 'Oi, sou o visitante!') returning id", (TENANT, mine))
    db.sql("insert into public.agent_greetings (tenant_id, member_id, message_template)"
           " values (%s, %s, 'Oi!')", (TENANT, mine))  # from when they were an agent
    with db.as_user(viewer) as s:
        assert s.rowcount("update public.agent_greetings set message_template = 'Olá' where member_id = %s",
                          (mine,)) == 0
        assert s.rowcount("delete from public.agent_greetings where member_id = %s", (mine,)) == 0
    with db.as_user(AGENT) as s:  # agents write their own; managers anyone's
        s.value("insert into public.agent_greetings (tenant_id, member_id, message_template)"
                " values (%s, %s, 'Oi, sou o Bruno!') returning id", (TENANT, AGENT_MEMBER))
    with db.as_user(OWNER) as s:
        assert s.rowcount("update public.agent_greetings set is_active = false") == 2
