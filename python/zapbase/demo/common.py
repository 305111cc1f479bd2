"""Shared by the demo's chapters: the seed's ids, waiting for replies and rows, requests as a member."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio
import psycopg
from psycopg.types.json import Jsonb

from zapbase.db.pool import Connection
from zapbase.errors import ZapbaseError
from zapbase.simulator import ReceivedMessage, SimulatedUser

CUSTOMER = "Maria Silva"
REPLY_TIMEOUT_S = 30.0
MENU = {
    "type": "interactive",
    "interactive": {
        "type": "button",
        "body": {"text": "Quer falar com uma pessoa da nossa equipe?"},
        "action": {"buttons": [
            {"type": "reply", "reply": {"id": "atendente", "title": "Falar com atendente"}},
            {"type": "reply", "reply": {"id": "continuar", "title": "Continuar com o bot"}},
        ]},
    },
}  # fmt: skip
CONVERSATION_SQL = """
select c.id, c.status, c.mode, b.name as bot, t.name as team, c.handoff_reason, c.inbound_count,
       c.outbound_count, c.window_expires_at
  from public.conversations c
  left join public.teams t on t.tenant_id = c.tenant_id and t.id = c.team_id
  left join public.bots b on b.tenant_id = c.tenant_id and b.id = c.bot_id
 where c.id = %s
"""
# A few KB that start like an Ogg page: the pipeline stores bytes, it does not decode them.
VOICE_NOTE = b"OggS\x00\x02" + bytes(range(256)) * 16
_SETTLED_SQL = """
select not exists (select 1 from public.messages m where m.conversation_id = %s
                    and m.status in ('received', 'processing', 'queued', 'sending', 'sent')) as settled
"""
DEMO_OWNER = "00000000-0000-4000-a000-000000000001"  # seed: Ana Souza, owner of Loja Demo
DEMO_NUMBER_ID = "00000000-0000-4000-9000-000000000001"
DEMO_TENANT = "00000000-0000-4000-b000-000000000001"
AGENT = "00000000-0000-4000-a000-000000000002"  # seed: Bruno Lima, agent of Loja Demo


@dataclass(frozen=True, slots=True)
class Line:
    at: float
    wamid: str
    text: str
    outbound: bool


async def next_reply(user: SimulatedUser, seen: int) -> ReceivedMessage:
    try:
        with anyio.fail_after(REPLY_TIMEOUT_S):
            while len(user.inbox) <= seen:
                await anyio.sleep(0.05)
    except TimeoutError:
        raise ZapbaseError(f"no reply within {REPLY_TIMEOUT_S:.0f} s; rerun with --verbose to see the "
                           "worker's logs") from None  # fmt: skip
    return user.inbox[seen]


def shown(message: ReceivedMessage, *, numbered: bool = False, rows: bool = False) -> str:
    action = message.content.get("action", {})
    buttons = [b["reply"]["title"] for b in action.get("buttons", []) if "reply" in b]
    if rows:  # a list message's rows
        buttons += [r["title"] for section in action.get("sections", []) for r in section.get("rows", [])]
    titles = "  ".join(f"[{f'{n} ' if numbered else ''}{title}]" for n, title in enumerate(buttons, 1))
    text = message.text or f"[{message.type}]"
    return f"{text}\n{titles}" if titles else text


async def live_conversation(conn: Connection, wa_id: str) -> uuid.UUID:
    cur = await conn.execute(
        "select c.id from public.conversations c join public.contacts k on k.id = c.contact_id"
        " where k.wa_id = %s order by c.created_at desc limit 1",
        (wa_id,),
    )
    row = await cur.fetchone()
    if row is None:
        raise ZapbaseError(f"no conversation was stored for +{wa_id}")
    conversation_id: uuid.UUID = row["id"]
    return conversation_id


async def queue_menu(conn: Connection, conversation_id: uuid.UUID) -> None:
    # What an agent or a campaign could send; the default bot answers only with text.
    await conn.execute(
        "select public.whatsapp_queue_reply(%s, %s, 'system', null, null)", (conversation_id, Jsonb(MENU))
    )


async def settled(conn: Connection, conversation_id: uuid.UUID) -> bool:
    """Nothing of the conversation is in a queue or short of `delivered`."""
    row = await (await conn.execute(_SETTLED_SQL, (conversation_id,))).fetchone()
    return bool(row and row["settled"])


async def settle(conn: Connection, conversation_id: uuid.UUID, timeout: float) -> None:
    with anyio.move_on_after(timeout):
        while not await settled(conn, conversation_id):
            await anyio.sleep(0.05)


@asynccontextmanager
async def acting_as(conn: psycopg.AsyncConnection[dict[str, Any]], user: str) -> AsyncIterator[None]:
    """A transaction of `user`'s requests, as PostgREST makes them (role authenticated, JWT claims)."""
    async with conn.transaction():
        await conn.execute(
            "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
            (json.dumps({"sub": user, "role": "authenticated"}),),
        )
        yield


async def as_manager(
    conn: psycopg.AsyncConnection[dict[str, Any]], query: str, params: Any = (), *, user: str = DEMO_OWNER
) -> Any:
    """One request of the demo tenant's owner (or `user`)."""
    async with acting_as(conn, user):
        cur = await conn.execute(query, params)
        return await cur.fetchone()


async def until(conn: psycopg.AsyncConnection[dict[str, Any]], query: str, params: Any, what: str) -> None:
    with anyio.move_on_after(REPLY_TIMEOUT_S) as waited:
        while not (await (await conn.execute(query, params)).fetchone() or {}).get("done"):
            await anyio.sleep(0.1)
    if waited.cancelled_caught:
        raise ZapbaseError(f"the demo timed out waiting for {what}")


def cell(key: str, value: object) -> str:
    if value is None:
        return "-"
    text = str(value).replace("\n", " ")
    if key == "wamid":
        return "…" + text[-12:]
    if key == "id":
        return text[:8] + "…"
    return text if len(text) <= 60 else text[:59] + "…"


def new_customer() -> str:
    # A new number per run: an earlier run's conversation (maybe handed to humans) stays apart.
    return f"55119{secrets.randbelow(10**8):08d}"
