"""A support team on the demo tenant: agents, teams, presence and queued conversations, made
the way the product makes them (members and teams by SQL like an admin's Studio, presence and
work through the RPCs as `authenticated`)."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

from support import Db

TENANT = "00000000-0000-4000-b000-000000000001"  # seed: Loja Demo (plan pro)
OWNER = "00000000-0000-4000-a000-000000000001"
AGENT = "00000000-0000-4000-a000-000000000002"  # seed: Bruno Lima, serves TEAM
TEAM = "00000000-0000-4000-d000-000000000001"  # seed: Atendimento
NUMBER = "00000000-0000-4000-9000-000000000001"

_phones = itertools.count(5511970000000)


def member_id(db: Db, user: uuid.UUID | str) -> str:
    return str(
        db.value("select id from public.members where tenant_id = %s and user_id = %s", (TENANT, user))
    )


def new_agent(db: Db, name: str, *teams: str, capacity: int = 5, role: str = "agent") -> uuid.UUID:
    user = db.add_member(uuid.UUID(TENANT), role, f"{name.lower()}-{uuid.uuid4().hex[:6]}@lojademo.com.br")
    db.sql(
        "update public.members set display_name = %s, max_concurrent_conversations = %s"
        " where tenant_id = %s and user_id = %s",
        (name, capacity, TENANT, user),
    )
    for team in teams:
        db.sql(
            "insert into public.team_members (tenant_id, team_id, member_id) values (%s, %s, %s)",
            (TENANT, team, member_id(db, user)),
        )
    return user


def new_team(db: Db, name: str, strategy: str = "round_robin", **columns: Any) -> str:
    cols = {"tenant_id": TENANT, "name": name, "assignment_strategy": strategy, **columns}
    return str(
        db.value(
            f"insert into public.teams ({', '.join(cols)}) values ({', '.join(['%s'] * len(cols))})"
            " returning id",
            tuple(cols.values()),
        )
    )


def presence(db: Db, user: uuid.UUID | str, status: str) -> dict[str, Any]:
    with db.as_user(user) as s:
        row: dict[str, Any] = s.one("select * from public.set_presence(%s, %s)", (TENANT, status))
    return row


def customer(db: Db, text: str = "Oi, preciso de ajuda") -> str:
    """A new customer writes (through ingest, with its open 24 h window): the conversation id."""
    conv, _ = db.create_conversation(str(next(_phones)), text)
    return conv


def handoff(db: Db, conv: str, team: str | None = TEAM, priority: str | None = None) -> dict[str, Any]:
    """The bot hands the conversation to a team (the worker, as the service role)."""
    if priority:
        db.sql("update public.conversations set priority = %s where id = %s", (priority, conv))
    with db.as_service() as s:  # commits: the assigner runs at commit
        s.all("select public.handoff_conversation(%s, 'pediu humano', %s)", (conv, team))
    return conversation(db, conv)


def conversation(db: Db, conv: str) -> dict[str, Any]:
    return db.sql("select * from public.conversations where id = %s", (conv,))[0]


def assignee(db: Db, conv: str) -> str | None:
    value = db.value("select assignee_id from public.conversations where id = %s", (conv,))
    return str(value) if value else None


def load(db: Db, user: uuid.UUID | str) -> int:
    return int(
        db.value(
            "select p.open_conversations from public.agent_presence p"
            " join public.members m on m.id = p.member_id where m.tenant_id = %s and m.user_id = %s",
            (TENANT, user),
        )
    )


def timeline(db: Db, conv: str) -> list[dict[str, Any]]:
    return db.sql(
        "select sender_type, type, content, payload from public.messages"
        " where conversation_id = %s and direction = 'internal' order by created_at",
        (conv,),
    )


def events(db: Db, conv: str, prefix: str = "conversation.") -> list[dict[str, Any]]:
    return db.sql(
        "select type, payload, actor_role from public.events where subject_id = %s and type like %s"
        " order by created_at",
        (conv, prefix + "%"),
    )
