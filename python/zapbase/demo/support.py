"""The support desk chapter: a ticket opened by the bot, its SLA, events and alerts."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb
from rich.console import Console
from rich.table import Table

from zapbase.db.pool import Connection
from zapbase.demo.common import (
    AGENT,
    REPLY_TIMEOUT_S,
    Line,
    cell,
    live_conversation,
    next_reply,
    settle,
    shown,
)

if TYPE_CHECKING:
    from zapbase.local_stack import LocalStack


@dataclass(frozen=True, slots=True)
class SupportChapter:
    """The support desk: tickets with their SLA, SLA events and the alerts they raised."""

    lines: list[Line]
    tickets: list[dict[str, Any]]
    sla_events: list[dict[str, Any]]
    alerts: list[dict[str, Any]]


_SLA_POLICY_SQL = """
insert into public.sla_policies (tenant_id, name, first_response_minutes, next_response_minutes,
                                 resolution_minutes)
values ('00000000-0000-4000-b000-000000000001', 'Padrão', 30, 60, 240)
on conflict (tenant_id, priority, category) do nothing
"""
_AS_AGENT_SQL = "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)"
_TICKETS_SQL = """
select t.protocol, t.status, t.priority, t.source, t.first_response_at is not null as answered,
       t.first_response_due_at, t.resolution_due_at, t.resolved_at
  from public.tickets t where t.conversation_id = %s order by t.created_at
"""
_SLA_EVENTS_SQL = """
select t.protocol, e.metric, e.kind, e.due_at, e.occurred_at
  from public.sla_events e join public.tickets t on t.tenant_id = e.tenant_id and t.id = e.ticket_id
 where t.conversation_id = %s order by e.occurred_at, e.created_at
"""
_ALERTS_SQL = """
select a.type, a.priority, a.title from public.alerts a
 where a.type like 'ticket.sla_%%' and a.payload ->> 'ticket_id' in
       (select t.id::text from public.tickets t where t.conversation_id = %s)
 order by a.created_at
"""


async def support_chapter(stack: LocalStack, conn: Connection, wa_id: str) -> SupportChapter:
    """A customer opens a ticket through the bot and gets its protocol, asks its status by
    protocol; an agent answers and resolves it within the SLA; a second, urgent ticket is left
    alone and the breach job (run as of two hours later) records the breach and alerts."""
    user = stack.user(wa_id, "João Pereira")
    started = time.perf_counter()
    lines: list[Line] = []

    async def say(text: str) -> uuid.UUID:
        """Send, then note every reply of the turn."""
        seen = len(user.inbox)
        delivery = await user.send_text(text)
        lines.append(Line(time.perf_counter() - started, delivery.wamid, text, False))
        await next_reply(user, seen)
        conversation_id = await live_conversation(conn, wa_id)
        await settle(conn, conversation_id, timeout=REPLY_TIMEOUT_S)
        for reply in user.inbox[seen:]:
            lines.append(Line(time.perf_counter() - started, reply.wamid, shown(reply), True))
        return conversation_id

    await conn.execute(_SLA_POLICY_SQL)
    conversation_id = await say("Quero abrir um chamado: o certificado A1 não instala no computador novo")
    row = await (await conn.execute(_TICKETS_SQL, (conversation_id,))).fetchone()
    protocol = str(row["protocol"]) if row else "?"
    await say(f"Qual a situação do {protocol}?")
    seen = len(user.inbox)
    async with conn.transaction():  # the agent works it, through the same RPCs and grants as the inbox
        await conn.execute(_AS_AGENT_SQL, (json.dumps({"sub": AGENT, "role": "authenticated"}),))
        text = {"type": "text", "text": {"body": "Oi João! Reinstale a cadeia de certificados: pronto?"}}
        await conn.execute("select public.send_message(%s, %s)", (conversation_id, Jsonb(text)))
        await conn.execute("update public.tickets set status = 'resolved' where protocol = %s", (protocol,))
        urgent = "select public.create_ticket(%s, 'Emissão de NF-e parada', priority => 'critical')"
        await conn.execute(urgent, (conversation_id,))
    reply = await next_reply(user, seen)
    lines.append(Line(time.perf_counter() - started, reply.wamid, shown(reply), True))
    await conn.execute("select private.run_job('sla_breach_alert', now() + interval '2 hours')")
    return SupportChapter(
        lines,
        await (await conn.execute(_TICKETS_SQL, (conversation_id,))).fetchall(),
        await (await conn.execute(_SLA_EVENTS_SQL, (conversation_id,))).fetchall(),
        await (await conn.execute(_ALERTS_SQL, (conversation_id,))).fetchall(),
    )


def render_support(out: Console, chapter: SupportChapter) -> None:
    transcript = Table(title="Support desk: João Pereira ⇄ Loja Demo (bot, then agent Bruno Lima)")
    for column in ("t", "from", "message"):
        transcript.add_column(column)
    for line in chapter.lines:
        transcript.add_row(f"+{line.at:.1f}s", "Loja Demo" if line.outbound else "João Pereira", line.text)
    out.print(transcript)
    for title, rows in (
        ("public.tickets", chapter.tickets),
        ("public.sla_events", chapter.sla_events),
        ("public.alerts (SLA)", chapter.alerts),
    ):
        table = Table(title=title)
        for key in rows[0] if rows else ():
            table.add_column(key)
        for r in rows:
            table.add_row(*(cell(k, v) for k, v in r.items()))
        out.print(table)
