"""`zapbase demo`: the scripted conversation and every chapter, then the rows printed."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from rich.console import Console
from rich.table import Table

from zapbase.db.pool import connect
from zapbase.demo.automation import AutomationChapter, automation_chapter, render_automation
from zapbase.demo.campaign import CampaignRun, campaign_chapter, render_campaign
from zapbase.demo.coaching import CoachingChapter, coaching_chapter, render_coaching
from zapbase.demo.common import (
    CONVERSATION_SQL,
    CUSTOMER,
    REPLY_TIMEOUT_S,
    VOICE_NOTE,
    Line,
    cell,
    live_conversation,
    new_customer,
    next_reply,
    queue_menu,
    settled,
    shown,
)
from zapbase.demo.flow import FlowChapter, flow_chapter, render_flow
from zapbase.demo.hotmart import hotmart_chapter, render_hotmart
from zapbase.demo.inbox import InboxChapter, inbox_chapter, render_inbox
from zapbase.demo.support import SupportChapter, render_support, support_chapter
from zapbase.demo.webhooks import WebhookReport, demo_hooks
from zapbase.errors import ZapbaseError
from zapbase.simulator import DEMO_NUMBER, ReceivedMessage, WebhookDelivery

if TYPE_CHECKING:
    from zapbase.local_stack import LocalStack


_MESSAGES_SQL = """
select m.created_at, m.direction, m.sender_type, m.type, m.content, m.status, m.wamid, m.media_storage_path,
       m.media_size, m.attempts, m.error_code, m.error_details, m.ai_model
  from public.messages m where m.conversation_id = %s order by m.created_at, m.id
"""
_EVENTS_SQL = """
select e.id, e.created_at, e.type, e.subject_table, e.payload ->> 'status' as status
  from public.conversations c
  join public.events e on e.tenant_id = c.tenant_id
   and (e.subject_id in (c.id, c.contact_id) or e.payload ->> 'conversation_id' = c.id::text)
 where c.id = %s
 order by e.created_at
"""
_USAGE_SQL = """
select u.feature, u.model, u.outcome, u.input_tokens, u.output_tokens, u.cost_usd
  from public.ai_usage u where u.conversation_id = %s order by u.created_at, u.attempt
"""


@dataclass(frozen=True, slots=True)
class DemoResult:
    wa_id: str
    lines: list[Line]
    conversation: dict[str, Any]
    messages: list[dict[str, Any]]
    usage: list[dict[str, Any]]
    events: list[dict[str, Any]]
    typing_indicators: int
    campaign: CampaignRun
    automation: AutomationChapter
    support: SupportChapter
    webhooks: WebhookReport
    flow: FlowChapter
    commerce: list[dict[str, Any]]
    inbox: InboxChapter
    coaching: CoachingChapter


async def demo_script(stack: LocalStack, db_url: str, *, wa_id: str) -> DemoResult:
    """A new customer of Loja Demo asks about delivery (the bot welcomes her and answers from
    the knowledge base), sends a voice note, gets a menu (queued by this script as a system
    message) and taps its button; returns what the phone saw and the rows."""
    user = stack.user(wa_id, CUSTOMER)
    started = time.perf_counter()
    lines: list[Line] = []

    def note(message: ReceivedMessage | WebhookDelivery, text: str) -> None:
        outbound = isinstance(message, ReceivedMessage)
        lines.append(Line(time.perf_counter() - started, message.wamid, text, outbound))

    async with await connect(db_url) as conn, demo_hooks(conn) as hooks:
        inbox = await inbox_chapter(stack, conn, wa_id=new_customer())

        async def customer(text: str, action: Awaitable[WebhookDelivery]) -> uuid.UUID:
            """Send, then wait for every reply of the turn (the bot may send several)."""
            seen = len(user.inbox)
            delivery = await action
            if not delivery.accepted:
                raise ZapbaseError(f"the worker refused the webhook: HTTP {delivery.status_code}")
            note(delivery, text)
            await next_reply(user, seen)
            conversation_id = await live_conversation(conn, wa_id)
            with anyio.move_on_after(REPLY_TIMEOUT_S):
                while True:
                    for reply in user.inbox[seen:]:
                        note(reply, shown(reply))
                    seen = len(user.inbox)
                    if await settled(conn, conversation_id):
                        break
                    await anyio.sleep(0.05)
            for reply in user.inbox[seen:]:
                note(reply, shown(reply))
            return conversation_id

        for question in ("Oi! Qual o prazo de entrega para o Nordeste?", "E o frete é grátis?"):
            await customer(question, user.send_text(question))
        conversation_id = await customer(
            f"🎤 nota de voz ({len(VOICE_NOTE)} bytes)", user.send_voice_note(VOICE_NOTE)
        )
        seen = len(user.inbox)
        await queue_menu(conn, conversation_id)
        menu = await next_reply(user, seen)
        note(menu, shown(menu))
        await customer("👆 Falar com atendente", user.press_button(menu, "atendente"))
        automation = await automation_chapter(conn, user, conversation_id, note)
        conversation = await (await conn.execute(CONVERSATION_SQL, (conversation_id,))).fetchone()
        messages = await (await conn.execute(_MESSAGES_SQL, (conversation_id,))).fetchall()
        usage = await (await conn.execute(_USAGE_SQL, (conversation_id,))).fetchall()
        events = await (await conn.execute(_EVENTS_SQL, (conversation_id,))).fetchall()
        webhooks = await hooks.report(conn, [str(e["id"]) for e in events])
        support = await support_chapter(stack, conn, f"{wa_id[:-1]}{(int(wa_id[-1]) + 1) % 10}")
        flow = await flow_chapter(stack, conn, wa_id=new_customer())
        commerce = await hotmart_chapter(stack.webhooks, stack.runner.http_url, conn, wa_id, conversation_id)
    ours = {line.wamid for line in lines}
    typing = sum(1 for r in stack.simulator.reads if r.typing_indicator and r.message_id in ours)
    campaign = await campaign_chapter(stack, db_url)
    async with await connect(db_url) as conn:  # last: it connects the tenant to the AI stand-in meanwhile
        coaching = await coaching_chapter(stack, conn)
    return DemoResult(
        wa_id,
        lines,
        conversation or {},
        messages,
        usage,
        events,
        typing,
        campaign,
        automation,
        support,
        webhooks,
        flow,
        commerce,
        inbox,
        coaching,
    )


def render_demo(out: Console, result: DemoResult, *, elapsed: float) -> None:
    senders = {m["wamid"]: m["sender_type"] for m in result.messages}
    statuses = {m["wamid"]: m["status"] for m in result.messages}
    transcript = Table(
        title=f"Transcript: {CUSTOMER} (+{result.wa_id}) ⇄ Loja Demo (+{DEMO_NUMBER.display_phone_number})"
    )
    for column in ("t", "from", "message", "status"):
        transcript.add_column(column)
    for line in result.lines:
        who = f"Loja Demo ({senders.get(line.wamid, '?')})" if line.outbound else CUSTOMER
        transcript.add_row(f"+{line.at:.1f}s", who, line.text, statuses.get(line.wamid, "?"))
    out.print(transcript)
    conv = result.conversation
    table = Table(title="public.conversations")
    for key in conv:
        table.add_column(key)
    table.add_row(*(cell(key, value) for key, value in conv.items()))
    out.print(table)
    rows = Table(title="public.messages")
    for column in ("t", "direction", "sender", "type", "content", "status", "wamid", "ai", "media / error"):
        rows.add_column(column, overflow="fold")
    start = result.messages[0]["created_at"] if result.messages else None
    for m in result.messages:
        if m["media_storage_path"]:  # the key ends in the message id: enough to find the file
            extra = f"…/{str(m['media_storage_path']).rsplit('/', 1)[-1]} ({m['media_size']} B)"
        else:
            extra = f"{m['error_code'] or ''} {m['error_details'] or ''}".strip()
        rows.add_row(
            f"+{(m['created_at'] - start).total_seconds():.1f}s",
            m["direction"],
            m["sender_type"],
            m["type"],
            cell("content", m["content"]),
            m["status"],
            cell("wamid", m["wamid"]),
            cell("ai", m["ai_model"]),
            extra,
        )
    out.print(rows)
    usage = Table(title="public.ai_usage (this conversation)")
    for column in ("feature", "model", "outcome", "tokens in / out", "cost USD"):
        usage.add_column(column)
    for u in result.usage:
        tokens = f"{u['input_tokens']} / {u['output_tokens']}"
        usage.add_row(u["feature"], u["model"], u["outcome"], tokens, f"{u['cost_usd']:.6f}")
    out.print(usage)
    feed = Table(title="public.events (the outbox: what webhooks and automations hear)")
    for column in ("t", "type", "subject", "status", "webhook"):
        feed.add_column(column)
    hooks = result.webhooks
    for e in result.events:
        at = f"+{(e['created_at'] - start).total_seconds():.1f}s" if start else ""
        signed = "delivered, signature ok" if str(e["id"]) in hooks.verified else "not verified"
        feed.add_row(at, e["type"], e["subject_table"], e["status"] or "", signed)
    out.print(feed)
    out.print(
        f"webhooks: {hooks.delivered} of {hooks.events} events delivered to a local receiver, "
        f"{len(hooks.verified)} signatures verified with zapbase.webhooks, {hooks.duplicates} duplicates."
    )
    render_support(out, result.support)
    render_automation(out, result.automation)
    render_hotmart(out, result.commerce)
    inbound = sum(1 for m in result.messages if m["direction"] == "inbound")
    delivered = sum(1 for m in result.messages if m["direction"] == "outbound" and m["status"] == "delivered")
    render_campaign(out, result.campaign)
    render_flow(out, result.flow)
    render_inbox(out, result.inbox)
    render_coaching(out, result.coaching)
    out.print(
        f"[bold green]done[/] in {elapsed:.1f} s: {inbound} customer messages processed, {delivered} replies "
        f"delivered, {result.typing_indicators} typing indicators shown; conversation is "
        f"[bold]{conv.get('mode')}[/] / {conv.get('status')} (team {conv.get('team')})."
    )
