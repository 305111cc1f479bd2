"""The inbox chapter: a support team at work."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb
from rich.console import Console
from rich.table import Table

from zapbase.db.pool import Connection
from zapbase.demo.common import (
    AGENT,
    DEMO_OWNER,
    DEMO_TENANT,
    REPLY_TIMEOUT_S,
    Line,
    as_manager,
    cell,
    live_conversation,
    next_reply,
    settle,
    shown,
    until,
)
from zapbase.simulator import ReceivedMessage, WebhookDelivery

if TYPE_CHECKING:
    from zapbase.local_stack import LocalStack


INBOX_CUSTOMER = "Carla Mendes"
_INBOX_SETUP_SQL = """
with team as (
  insert into public.teams (tenant_id, name, assignment_strategy)
  values (%(tenant)s, 'Vendas', 'round_robin')
  on conflict (tenant_id, name) do update set is_active = true
  returning id),
owner as (select m.id from public.members m where m.tenant_id = %(tenant)s and m.user_id = %(owner)s),
serves as (
  insert into public.team_members (tenant_id, team_id, member_id)
  select %(tenant)s, team.id, owner.id from team, owner
  on conflict do nothing)
insert into public.agent_greetings (tenant_id, member_id, message_template)
select %(tenant)s, owner.id,
       'Olá {{contact_name}}! Aqui é {{agent_name}}, da equipe {{agent_department}}. Vou cuidar disso.'
  from owner
on conflict (tenant_id, member_id) do nothing
"""
_TEAM_SQL = "select id from public.teams where tenant_id = %s and name = 'Vendas'"
_OWNER_MEMBER_SQL = "select id from public.members where tenant_id = %s and user_id = %s"
_ASSIGNED_SQL = "select assignee_id is not null as done from public.conversations where id = %s"
_CSAT_SQL = "select csat is not null as done from public.conversations where id = %s"
_TIMELINE_SQL = """
select m.created_at, m.direction, m.sender_type, coalesce(mb.display_name, '') as member, m.type,
       coalesce(m.content, m.payload #>> '{interactive,body,text}', m.interactive_reply_id, '') as content,
       m.status
  from public.messages m left join public.members mb on mb.id = m.sender_member_id
 where m.conversation_id = %s order by m.created_at, m.id
"""
_INBOX_EVENTS_SQL = """
select e.type from public.events e where e.subject_id = %s and e.type like 'conversation.%%'
 order by e.created_at, e.id
"""
_METRICS_SQL = """
select x.first_response_seconds, x.avg_response_seconds, x.response_count, x.queue_wait_seconds,
       x.queue_entries, x.assignments, x.transfers, x.resolution_seconds, c.status, c.csat,
       mb.display_name as assignee, t.name as team
  from public.conversation_metrics x
  join public.conversations c on c.id = x.conversation_id
  left join public.members mb on mb.id = c.assignee_id
  left join public.teams t on t.id = c.team_id
 where x.conversation_id = %s
"""


@dataclass(frozen=True, slots=True)
class InboxChapter:
    """A handoff assigned by the queue, a transfer with a note, the greeting, an internal note,
    a resolve and the customer's CSAT answer: the phone's lines, the timeline, the metrics."""

    wa_id: str
    lines: list[Line]
    timeline: list[dict[str, Any]]
    events: list[str]
    metrics: dict[str, Any]


async def inbox_chapter(stack: LocalStack, conn: Connection, *, wa_id: str) -> InboxChapter:
    """Bruno (Atendimento) and Ana (Vendas) go online; a customer asks for a person and the
    queue gives her to Bruno; Bruno transfers her to Ana with a note, Ana's greeting goes out,
    Ana writes a note for the team, answers and resolves; the customer taps 5 in the survey."""
    user = stack.user(wa_id, INBOX_CUSTOMER)
    started = time.perf_counter()
    lines: list[Line] = []

    async def arrived(seen: int) -> list[ReceivedMessage]:
        await next_reply(user, seen)
        await settle(conn, await live_conversation(conn, wa_id), REPLY_TIMEOUT_S)
        replies = user.inbox[seen:]
        at = time.perf_counter() - started
        lines.extend(Line(at, r.wamid, shown(r, rows=True), True) for r in replies)
        return replies

    async def say(text: str, action: Awaitable[WebhookDelivery]) -> list[ReceivedMessage]:
        seen = len(user.inbox)
        delivery = await action
        lines.append(Line(time.perf_counter() - started, delivery.wamid, text, False))
        return await arrived(seen)

    await conn.execute(_INBOX_SETUP_SQL, {"tenant": DEMO_TENANT, "owner": DEMO_OWNER})
    team = (await (await conn.execute(_TEAM_SQL, (DEMO_TENANT,))).fetchone() or {})["id"]
    ana = (await (await conn.execute(_OWNER_MEMBER_SQL, (DEMO_TENANT, DEMO_OWNER))).fetchone() or {})["id"]
    for agent in (AGENT, DEMO_OWNER):
        await as_manager(conn, "select status from public.set_presence(%s, 'online')", (DEMO_TENANT,),
                          user=agent)  # fmt: skip
    try:
        ask = "Quero falar com um atendente, por favor"
        await say(ask, user.send_text(ask))
        conversation_id = await live_conversation(conn, wa_id)
        await until(conn, _ASSIGNED_SQL, (conversation_id,), "the queue to assign the conversation")
        seen = len(user.inbox)
        transfer = "select id from public.transfer_conversation(%s, %s, %s, %s)"
        note = "Quer o plano anual com desconto"
        await as_manager(conn, transfer, (conversation_id, ana, team, note), user=AGENT)
        await arrived(seen)  # Ana's greeting
        await as_manager(conn, "select id from public.add_note(%s, %s)",
                          (conversation_id, "Cliente antiga: ofereci 10% no anual"))  # fmt: skip
        seen = len(user.inbox)
        answer = {"type": "text", "text": {"body": "O plano anual sai com 10% de desconto. Fechado?"}}
        await as_manager(conn, "select id from public.send_message(%s, %s)",
                          (conversation_id, Jsonb(answer)))  # fmt: skip
        await arrived(seen)
        thanks = await user.send_text("Fechado, obrigada!")  # to a person now: the bot stays quiet
        lines.append(Line(time.perf_counter() - started, thanks.wamid, "Fechado, obrigada!", False))
        await settle(conn, conversation_id, REPLY_TIMEOUT_S)
        seen = len(user.inbox)
        await as_manager(conn, "select status from public.resolve_conversation(%s)", (conversation_id,))
        survey = (await arrived(seen))[-1]
        seen = len(user.inbox)
        delivery = await user.choose_row(survey, "csat:5")
        lines.append(Line(time.perf_counter() - started, delivery.wamid, "👆 5 - Excelente", False))
        await until(conn, _CSAT_SQL, (conversation_id,), "the CSAT answer")
    finally:
        for agent in (AGENT, DEMO_OWNER):  # the rest of the demo waits in the queue for nobody
            await as_manager(conn, "select status from public.set_presence(%s, 'offline')", (DEMO_TENANT,),
                              user=agent)  # fmt: skip
    return InboxChapter(
        wa_id,
        lines,
        await (await conn.execute(_TIMELINE_SQL, (conversation_id,))).fetchall(),
        [r["type"] for r in await (await conn.execute(_INBOX_EVENTS_SQL, (conversation_id,))).fetchall()],
        await (await conn.execute(_METRICS_SQL, (conversation_id,))).fetchone() or {},
    )


def render_inbox(out: Console, chapter: InboxChapter) -> None:
    transcript = Table(title=f"Inbox: {INBOX_CUSTOMER} (+{chapter.wa_id}) ⇄ Loja Demo (queue, transfer)")
    for column in ("t", "from", "message"):
        transcript.add_column(column)
    for line in chapter.lines:
        transcript.add_row(f"+{line.at:.1f}s", "Loja Demo" if line.outbound else INBOX_CUSTOMER, line.text)
    out.print(transcript)
    timeline = Table(title="the timeline agents see (internal lines never reach WhatsApp)")
    for column in ("t", "direction", "sender", "member", "type", "content", "status"):
        timeline.add_column(column, overflow="fold")
    start = chapter.timeline[0]["created_at"] if chapter.timeline else None
    for m in chapter.timeline:
        at = f"+{(m['created_at'] - start).total_seconds():.1f}s"
        columns = ("direction", "sender_type", "member", "type", "content", "status")
        timeline.add_row(at, *(m[k] for k in columns))
    out.print(timeline)
    out.print("events: " + " → ".join(chapter.events))
    metrics = Table(title="public.conversation_metrics")
    for key in chapter.metrics:
        metrics.add_column(key)
    metrics.add_row(*(cell(k, v) for k, v in chapter.metrics.items()))
    out.print(metrics)
