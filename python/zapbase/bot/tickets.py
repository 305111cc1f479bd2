"""The support desk from the bot's side: the status of a quoted protocol, and a ticket
opened on the customer's request (one live bot ticket per conversation, so asking twice,
or a retried message, does not open a second one). The rules live in SQL
(`public.create_ticket`, `public.ticket_status_for_customer`)."""

from __future__ import annotations

import uuid

from zapbase.db.pool import Connection

__all__ = ["open_ticket", "ticket_status"]

_TITLE_MAX = 300  # tickets.title
_LIVE_BOT_TICKET = """
select protocol from public.tickets
 where conversation_id = %(conversation)s and source = 'bot' and status not in ('resolved', 'closed')
 order by created_at limit 1
"""
_OPEN = "select protocol from public.create_ticket(%(conversation)s, %(title)s, %(text)s, source => 'bot')"
_STATUS = "select public.ticket_status_for_customer(%s, %s) as answer"


async def ticket_status(conn: Connection, conversation_id: uuid.UUID, protocol: str) -> str:
    """What the customer reads about their ticket `protocol` (never another contact's)."""
    row = await (await conn.execute(_STATUS, (conversation_id, protocol))).fetchone()
    assert row is not None
    return str(row["answer"])


async def open_ticket(conn: Connection, conversation_id: uuid.UUID, text: str) -> str:
    """The protocol of the conversation's live bot ticket, opened now from `text` if none."""
    params = {"conversation": conversation_id, "title": text.strip()[:_TITLE_MAX] or "Chamado", "text": text}
    async with conn.transaction():
        row = await (await conn.execute(_LIVE_BOT_TICKET, params)).fetchone()
        if row is None:
            row = await (await conn.execute(_OPEN, params)).fetchone()
    assert row is not None
    return str(row["protocol"])
