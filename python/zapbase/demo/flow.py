"""The flow chapter: the order-tracking flow as a second customer lives it."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from zapbase.db.pool import Connection
from zapbase.demo.common import (
    CONVERSATION_SQL,
    REPLY_TIMEOUT_S,
    Line,
    live_conversation,
    next_reply,
    settle,
    shown,
)
from zapbase.simulator import ReceivedMessage, WebhookDelivery

if TYPE_CHECKING:
    from zapbase.local_stack import LocalStack


@dataclass(frozen=True, slots=True)
class FlowChapter:
    """The order-tracking flow as a second customer lived it, its step log and analytics."""

    wa_id: str
    lines: list[Line]
    steps: list[dict[str, Any]]
    stats: list[dict[str, Any]]
    conversation: dict[str, Any]


FLOW_CUSTOMER = "João Pereira"
_FLOW_STEPS_SQL = """
select s.block_id, s.block_type, s.input, s.outcome
  from public.flow_steps s
  join public.flow_executions e on e.tenant_id = s.tenant_id and e.id = s.execution_id
 where e.conversation_id = %s order by s.seq
"""
_FLOW_STATS_SQL = """
select s.block_id, s.block_type, s.visits, s.executions_reached, s.drop_offs, s.completion_rate
  from public.flow_block_stats s join public.flows f on f.tenant_id = s.tenant_id and f.id = s.flow_id
 where f.name = 'Rastreio de pedidos' order by s.visits desc, s.block_id
"""


async def flow_chapter(stack: LocalStack, conn: Connection, *, wa_id: str) -> FlowChapter:
    """A customer tracks an order with the demo tenant's published flow: "rastreio" starts it,
    a wrong CPF is asked again, the right one is looked up over http in the shop's order API
    (the local stand-in), the next steps come as a list, "Falar com atendente" hands off."""
    user = stack.user(wa_id, FLOW_CUSTOMER)
    started = time.perf_counter()
    lines: list[Line] = []

    async def turn(text: str, action: Awaitable[WebhookDelivery]) -> list[ReceivedMessage]:
        seen = len(user.inbox)
        delivery = await action
        lines.append(Line(time.perf_counter() - started, delivery.wamid, text, False))
        await next_reply(user, seen)
        await settle(conn, await live_conversation(conn, wa_id), REPLY_TIMEOUT_S)
        replies = user.inbox[seen:]
        at = time.perf_counter() - started
        lines.extend(Line(at, r.wamid, shown(r, rows=True), True) for r in replies)
        return replies

    await turn("rastreio", user.send_text("rastreio"))
    await turn("123.456.789-00", user.send_text("123.456.789-00"))
    menu = (await turn("529.982.247-25", user.send_text("529.982.247-25")))[-1]
    await turn("👆 Falar com atendente", user.choose_row(menu, "agent"))
    conversation_id = await live_conversation(conn, wa_id)
    steps = await (await conn.execute(_FLOW_STEPS_SQL, (conversation_id,))).fetchall()
    stats = await (await conn.execute(_FLOW_STATS_SQL)).fetchall()
    conversation = await (await conn.execute(CONVERSATION_SQL, (conversation_id,))).fetchone()
    return FlowChapter(wa_id, lines, steps, stats, conversation or {})


def render_flow(out: Console, chapter: FlowChapter) -> None:
    transcript = Table(title=f'Flow "Rastreio de pedidos": {FLOW_CUSTOMER} (+{chapter.wa_id}) ⇄ Loja Demo')
    for column in ("t", "from", "message"):
        transcript.add_column(column)
    for line in chapter.lines:
        who = "Loja Demo (flow)" if line.outbound else FLOW_CUSTOMER
        transcript.add_row(f"+{line.at:.1f}s", who, line.text)
    out.print(transcript)
    steps = Table(title="public.flow_steps (this execution; inputs masked)")
    for column in ("block", "type", "input", "outcome"):
        steps.add_column(column)
    for s in chapter.steps:
        steps.add_row(s["block_id"], s["block_type"], s["input"] or "", s["outcome"])
    out.print(steps)
    stats = Table(title="public.flow_block_stats (what managers read)")
    for column in ("block", "type", "visits", "executions", "drop-offs", "completion rate"):
        stats.add_column(column)
    for r in chapter.stats:
        stats.add_row(r["block_id"], r["block_type"], str(r["visits"]), str(r["executions_reached"]),
                      str(r["drop_offs"]), f"{r['completion_rate']:.0%}")  # fmt: skip
    out.print(stats)
    conv = chapter.conversation
    out.print(f"flow conversation is [bold]{conv.get('mode')}[/] / {conv.get('status')} "
              f"(team {conv.get('team')}, reason: {conv.get('handoff_reason')}).")  # fmt: skip
