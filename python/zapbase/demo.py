"""The demo tenant's conversation, scripted (`zapbase demo`) or typed (`zapbase chat`),
played against a local stack: the simulator as the customer's phone, the worker, the
database. Nothing leaves localhost."""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import httpx
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from rich.console import Console
from rich.table import Table

from zapbase.db.embedded import free_port
from zapbase.db.pool import Connection, connect
from zapbase.errors import ZapbaseError
from zapbase.hotmart import HOTTOK_HEADER, hotmart_path
from zapbase.simulator import (
    DEMO_NUMBER,
    ReceivedMessage,
    SimulatedUser,
    WebhookDelivery,
)
from zapbase.webhooks.receiver import Receiver

if TYPE_CHECKING:
    from zapbase.local_stack import LocalStack

__all__ = [
    "automation_chapter", "campaign_chapter", "chat_session", "demo_script", "hotmart_chapter",
    "inbox_chapter", "new_customer",
    "render_demo",
]


# -- the scripted demo ----------------------------------------------------------------------

CUSTOMER = "Maria Silva"
REPLY_TIMEOUT_S = 30.0
# A few KB that start like an Ogg page: the pipeline stores bytes, it does not decode them.
VOICE_NOTE = b"OggS\x00\x02" + bytes(range(256)) * 16
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
_SETTLED_SQL = """
select not exists (select 1 from public.messages m where m.conversation_id = %s
                    and m.status in ('received', 'processing', 'queued', 'sending', 'sent')) as settled
"""
_CONVERSATION_SQL = """
select c.id, c.status, c.mode, b.name as bot, t.name as team, c.handoff_reason, c.inbound_count,
       c.outbound_count, c.window_expires_at
  from public.conversations c
  left join public.teams t on t.tenant_id = c.tenant_id and t.id = c.team_id
  left join public.bots b on b.tenant_id = c.tenant_id and b.id = c.bot_id
 where c.id = %s
"""
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
class Line:
    at: float
    wamid: str
    text: str
    outbound: bool


@dataclass(frozen=True, slots=True)
class SupportChapter:
    """The support desk: tickets with their SLA, SLA events and the alerts they raised."""

    lines: list[Line]
    tickets: list[dict[str, Any]]
    sla_events: list[dict[str, Any]]
    alerts: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class AutomationChapter:
    """The apology rule, its approved suggestion and its execution log."""

    rule: dict[str, Any]
    suggestion: dict[str, Any]
    log: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class WebhookReport:
    """What the local receiver got of the conversation's events."""

    events: int
    delivered: int
    verified: frozenset[str]  # webhook-ids (event ids) whose signature checked out
    duplicates: int


@dataclass(frozen=True, slots=True)
class FlowChapter:
    """The order-tracking flow as a second customer lived it, its step log and analytics."""

    wa_id: str
    lines: list[Line]
    steps: list[dict[str, Any]]
    stats: list[dict[str, Any]]
    conversation: dict[str, Any]


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


async def _next_reply(user: SimulatedUser, seen: int) -> ReceivedMessage:
    try:
        with anyio.fail_after(REPLY_TIMEOUT_S):
            while len(user.inbox) <= seen:
                await anyio.sleep(0.05)
    except TimeoutError:
        raise ZapbaseError(f"no reply within {REPLY_TIMEOUT_S:.0f} s; rerun with --verbose to see the "
                           "worker's logs") from None  # fmt: skip
    return user.inbox[seen]


def _shown(message: ReceivedMessage, *, numbered: bool = False, rows: bool = False) -> str:
    action = message.content.get("action", {})
    buttons = [b["reply"]["title"] for b in action.get("buttons", []) if "reply" in b]
    if rows:  # a list message's rows
        buttons += [r["title"] for section in action.get("sections", []) for r in section.get("rows", [])]
    titles = "  ".join(f"[{f'{n} ' if numbered else ''}{title}]" for n, title in enumerate(buttons, 1))
    text = message.text or f"[{message.type}]"
    return f"{text}\n{titles}" if titles else text


async def _live_conversation(conn: Connection, wa_id: str) -> uuid.UUID:
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


async def _queue_menu(conn: Connection, conversation_id: uuid.UUID) -> None:
    # What an agent or a campaign could send; the default bot answers only with text.
    await conn.execute(
        "select public.whatsapp_queue_reply(%s, %s, 'system', null, null)", (conversation_id, Jsonb(MENU))
    )


async def _settled(conn: Connection, conversation_id: uuid.UUID) -> bool:
    """Nothing of the conversation is in a queue or short of `delivered`."""
    row = await (await conn.execute(_SETTLED_SQL, (conversation_id,))).fetchone()
    return bool(row and row["settled"])


async def _settle(conn: Connection, conversation_id: uuid.UUID, timeout: float) -> None:
    with anyio.move_on_after(timeout):
        while not await _settled(conn, conversation_id):
            await anyio.sleep(0.05)


# -- the webhook chapter: the conversation's events, signed, to a receiver on localhost ---------

_DEMO_OWNER_SQL = """
select m.tenant_id, m.user_id from public.whatsapp_numbers n
  join public.members m on m.tenant_id = n.tenant_id and m.role = 'owner' and m.status = 'active'
 where n.phone_number_id = %s order by m.created_at limit 1
"""
_UNSETTLED_SQL = """
select count(*) as n from public.webhook_deliveries
 where endpoint_id = %s and status in ('pending', 'sending')
"""


class DemoHooks:
    """A local receiver verifying every signature (`zapbase.webhooks.receiver`), subscribed to
    every event of the demo tenant by its owner, for the length of the demo."""

    NAME = "demo"

    def __init__(self, receiver: Receiver, endpoint_id: str) -> None:
        self.receiver = receiver
        self.endpoint_id = endpoint_id

    async def report(self, conn: Connection, event_ids: list[str]) -> WebhookReport:
        """Wait until the deliverer has finished with the endpoint, then count."""
        with anyio.move_on_after(REPLY_TIMEOUT_S):
            while True:
                row = await (await conn.execute(_UNSETTLED_SQL, (self.endpoint_id,))).fetchone()
                if not (row and row["n"]):
                    break
                await anyio.sleep(0.05)
        ours = set(event_ids)
        got = [d for d in self.receiver.received.get(self.NAME, []) if d.webhook_id in ours]
        ids = {d.webhook_id for d in got}
        return WebhookReport(len(ours), len(ids), frozenset(d.webhook_id for d in got if d.verified),
                             len(got) - len(ids))


@contextlib.asynccontextmanager
async def demo_hooks(conn: Connection) -> AsyncIterator[DemoHooks]:
    """Serve the receiver and register it as the demo tenant's owner would (the database lets
    this one http://localhost URL in); the endpoint is deleted afterwards."""
    receiver = Receiver()
    async with receiver.serving(free_port()) as base:
        owner = await (await conn.execute(_DEMO_OWNER_SQL, (DEMO_NUMBER.phone_number_id,))).fetchone()
        if owner is None:
            raise ZapbaseError("the demo tenant is missing: run `zapbase setup` on the local database")
        claims = json.dumps({"sub": str(owner["user_id"]), "role": "authenticated"})
        async with conn.transaction():
            await conn.execute(
                "select set_config('request.jwt.claims', %s, true),"
                " set_config('zapbase.webhooks_allow_http', 'on', true)", (claims,))  # fmt: skip
            cur = await conn.execute(
                "select public.create_webhook_endpoint(%s, 'Demo receiver', %s, '{*}') as e",
                (owner["tenant_id"], f"{base}/{DemoHooks.NAME}"))  # fmt: skip
            created = (await cur.fetchone() or {})["e"]
        receiver.secrets[DemoHooks.NAME] = created["secret"]
        try:
            yield DemoHooks(receiver, created["id"])
        finally:
            with anyio.CancelScope(shield=True):
                await conn.execute("delete from public.webhook_endpoints where id = %s", (created["id"],))


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
            await _next_reply(user, seen)
            conversation_id = await _live_conversation(conn, wa_id)
            with anyio.move_on_after(REPLY_TIMEOUT_S):
                while True:
                    for reply in user.inbox[seen:]:
                        note(reply, _shown(reply))
                    seen = len(user.inbox)
                    if await _settled(conn, conversation_id):
                        break
                    await anyio.sleep(0.05)
            for reply in user.inbox[seen:]:
                note(reply, _shown(reply))
            return conversation_id

        for question in ("Oi! Qual o prazo de entrega para o Nordeste?", "E o frete é grátis?"):
            await customer(question, user.send_text(question))
        conversation_id = await customer(
            f"🎤 nota de voz ({len(VOICE_NOTE)} bytes)", user.send_voice_note(VOICE_NOTE)
        )
        seen = len(user.inbox)
        await _queue_menu(conn, conversation_id)
        menu = await _next_reply(user, seen)
        note(menu, _shown(menu))
        await customer("👆 Falar com atendente", user.press_button(menu, "atendente"))
        automation = await automation_chapter(conn, user, conversation_id, note)
        conversation = await (await conn.execute(_CONVERSATION_SQL, (conversation_id,))).fetchone()
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
    return DemoResult(wa_id, lines, conversation or {}, messages, usage, events, typing, campaign,
                      automation, support, webhooks, flow, commerce, inbox)


# -- the support desk chapter ---------------------------------------------------------------

AGENT = "00000000-0000-4000-a000-000000000002"  # seed: Bruno Lima, agent of Loja Demo
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
        await _next_reply(user, seen)
        conversation_id = await _live_conversation(conn, wa_id)
        await _settle(conn, conversation_id, timeout=REPLY_TIMEOUT_S)
        for reply in user.inbox[seen:]:
            lines.append(Line(time.perf_counter() - started, reply.wamid, _shown(reply), True))
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
    reply = await _next_reply(user, seen)
    lines.append(Line(time.perf_counter() - started, reply.wamid, _shown(reply), True))
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
    for title, rows in (("public.tickets", chapter.tickets), ("public.sla_events", chapter.sla_events),
                        ("public.alerts (SLA)", chapter.alerts)):
        table = Table(title=title)
        for key in rows[0] if rows else ():
            table.add_column(key)
        for r in rows:
            table.add_row(*(_cell(k, v) for k, v in r.items()))
        out.print(table)


# -- automation: a suggestion approved by a person ---------------------------------------------

APOLOGY_RULE = "Cliente esperando 10 min sem resposta → pedir desculpas"
WAIT_TEXT = "Alguém aí? Ainda estou esperando."
_RULE_SQL = """
insert into public.automation_rules (tenant_id, name, trigger_type, wait_minutes, mode, actions, conditions)
select c.tenant_id, %(name)s, 'no_agent_reply', 10, 'suggest',
       '[{"type": "send_template", "template": "desculpe_demora", "language": "pt_BR",
          "variables": ["{{contact.display_name|cliente}}"]}]',
       '{"field": "conversation.mode", "op": "eq", "value": "human"}'
  from public.conversations c
 where c.id = %(conversation)s
   and not exists (select 1 from public.automation_rules r
                    where r.tenant_id = c.tenant_id and r.name = %(name)s)
returning id
"""
_LOG_SQL = """
select e.status, e.trigger_type, r.name as rule, e.rule_version, e.condition_results, a ->> 'type' as action,
       a ->> 'outcome' as outcome, m.wamid, m.status as message_status, d.status as decision,
       mb.display_name as decided_by
  from public.automation_executions e
  join public.automation_rules r on r.id = e.rule_id
  left join public.dispatch_queue d on d.execution_id = e.id
  left join public.members mb on mb.id = d.decided_by
  cross join lateral jsonb_array_elements(e.action_results) a
  left join public.messages m on m.id = (a ->> 'message_id')::uuid
 where e.conversation_id = %s
 order by e.created_at
"""
Note = Callable[[ReceivedMessage | WebhookDelivery, str], None]


async def automation_chapter(
    conn: Connection, user: SimulatedUser, conversation_id: uuid.UUID, note: Note
) -> AutomationChapter:
    """Loja Demo's suggest-mode rule "customer waiting 10 minutes without an agent reply → send
    the apology template": the customer writes again and nobody answers; the minute job, run
    as if 11 minutes had passed, puts the apology in the approval queue; the owner approves
    it; the sender delivers it to the phone; the execution log shows it with its wamid."""
    await _as_manager(conn, _RULE_SQL, {"name": APOLOGY_RULE, "conversation": conversation_id})
    delivery = await user.send_text(WAIT_TEXT)
    note(delivery, WAIT_TEXT)
    await _settle(conn, conversation_id, REPLY_TIMEOUT_S)
    seen = len(user.inbox)
    await conn.execute("select private.job_automation_rules(now() + interval '11 minutes')")
    cur = await conn.execute(
        "select * from public.dispatch_queue where conversation_id = %s and status = 'pending'",
        (conversation_id,),
    )
    pending = await cur.fetchone()
    if pending is None:
        raise ZapbaseError("the apology rule made no suggestion")
    suggestion = await _as_manager(conn, "select * from public.approve_dispatch(array[%s]::uuid[])",
                                   (pending["id"],)) or {}
    apology = await _next_reply(user, seen)
    note(apology, _shown(apology))
    await _settle(conn, conversation_id, REPLY_TIMEOUT_S)
    cur = await conn.execute("select * from public.automation_rules where name = %s", (APOLOGY_RULE,))
    rule = await cur.fetchone()
    log = await (await conn.execute(_LOG_SQL, (conversation_id,))).fetchall()
    return AutomationChapter(rule or {}, suggestion, log)
# -- the flow chapter -------------------------------------------------------------------------

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
        await _next_reply(user, seen)
        await _settle(conn, await _live_conversation(conn, wa_id), REPLY_TIMEOUT_S)
        replies = user.inbox[seen:]
        at = time.perf_counter() - started
        lines.extend(Line(at, r.wamid, _shown(r, rows=True), True) for r in replies)
        return replies

    await turn("rastreio", user.send_text("rastreio"))
    await turn("123.456.789-00", user.send_text("123.456.789-00"))
    menu = (await turn("529.982.247-25", user.send_text("529.982.247-25")))[-1]
    await turn("👆 Falar com atendente", user.choose_row(menu, "agent"))
    conversation_id = await _live_conversation(conn, wa_id)
    steps = await (await conn.execute(_FLOW_STEPS_SQL, (conversation_id,))).fetchall()
    stats = await (await conn.execute(_FLOW_STATS_SQL)).fetchall()
    conversation = await (await conn.execute(_CONVERSATION_SQL, (conversation_id,))).fetchone()
    return FlowChapter(wa_id, lines, steps, stats, conversation or {})


def _render_flow(out: Console, chapter: FlowChapter) -> None:
    transcript = Table(title=f"Flow \"Rastreio de pedidos\": {FLOW_CUSTOMER} (+{chapter.wa_id}) ⇄ Loja Demo")
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
    table.add_row(*(_cell(key, value) for key, value in conv.items()))
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
            _cell("content", m["content"]),
            m["status"],
            _cell("wamid", m["wamid"]),
            _cell("ai", m["ai_model"]),
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
    _render_hotmart(out, result.commerce)
    inbound = sum(1 for m in result.messages if m["direction"] == "inbound")
    delivered = sum(1 for m in result.messages if m["direction"] == "outbound" and m["status"] == "delivered")
    _render_campaign(out, result.campaign)
    _render_flow(out, result.flow)
    _render_inbox(out, result.inbox)
    out.print(
        f"[bold green]done[/] in {elapsed:.1f} s: {inbound} customer messages processed, {delivered} replies "
        f"delivered, {result.typing_indicators} typing indicators shown; conversation is "
        f"[bold]{conv.get('mode')}[/] / {conv.get('status')} (team {conv.get('team')})."
    )


# -- the campaign chapter -------------------------------------------------------------------

DEMO_OWNER = "00000000-0000-4000-a000-000000000001"  # seed: Ana Souza, owner of Loja Demo
DEMO_NUMBER_ID = "00000000-0000-4000-9000-000000000001"
OFFER = [
    {"type": "BODY", "text": "Olá {{1}}! Em {{2}} o frete é grátis até domingo. Quer aproveitar?",
     "example": {"body_text": [["Ana", "Recife"]]}},
    {"type": "FOOTER", "text": "Responda SAIR para não receber ofertas"},
    {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Quero!"}]},
]  # fmt: skip
OFFER_VARIABLES = {
    "body": {"1": {"field": "first_name"}, "2": {"attribute": "cidade", "default": "sua cidade"}},
}
_RECIPIENTS_SQL = """
select k.name, r.wa_id, r.status, r.skip_reason, r.error_code, r.replied_at is not null as replied
  from public.campaign_recipients r join public.contacts k on k.id = r.contact_id
 where r.campaign_id = %s order by r.wa_id
"""


@dataclass(frozen=True, slots=True)
class CampaignRun:
    template: dict[str, Any]
    dry_run: dict[str, Any]
    campaign: dict[str, Any]
    recipients: list[dict[str, Any]]
    events: list[str]
    received: dict[str, str]  # number → the first name the phone showed


async def _as_manager(
    conn: psycopg.AsyncConnection[dict[str, Any]], query: str, params: Any = (), *, user: str = DEMO_OWNER
) -> Any:
    """One request of the demo tenant's owner (or `user`), as PostgREST makes it (role
    authenticated, JWT claims)."""
    async with conn.transaction():
        await conn.execute(
            "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
            (json.dumps({"sub": user, "role": "authenticated"}),),
        )
        cur = await conn.execute(query, params)
        return await cur.fetchone()


async def _until(conn: psycopg.AsyncConnection[dict[str, Any]], query: str, params: Any, what: str) -> None:
    with anyio.move_on_after(REPLY_TIMEOUT_S) as waited:
        while not (await (await conn.execute(query, params)).fetchone() or {}).get("done"):
            await anyio.sleep(0.1)
    if waited.cancelled_caught:
        raise ZapbaseError(f"the campaign chapter timed out waiting for {what}")


async def campaign_chapter(stack: LocalStack, db_url: str) -> CampaignRun:
    """Ana (the owner) creates a template (the worker submits it to the simulator's "Meta"),
    adds four customers (three consented), dry-runs and starts a campaign; the worker paces
    it out, the phones receive it and one customer answers; returns the rows."""
    tag = f"oferta_{secrets.token_hex(3)}"
    people = [("Joana Lima", "Recife", True), ("Paulo Reis", "Olinda", True), ("Rita Melo", None, True),
              ("Caio Nunes", "Recife", False)]  # fmt: skip
    async with await psycopg.AsyncConnection.connect(db_url, row_factory=dict_row, autocommit=True) as conn:
        template = await _as_manager(
            conn, "select id, name, status, sync_status"
            " from public.create_message_template(%s, %s, 'MARKETING', %s)",
            (DEMO_NUMBER_ID, tag, Jsonb(OFFER)))
        await _until(conn, "select status = 'APPROVED' as done from public.message_templates where id = %s",
                     (template["id"],), "Meta's approval of the template")
        phones: dict[str, str] = {}
        tag_id = (await _as_manager(conn, "insert into public.tags (tenant_id, name) select tenant_id, %s"
                                    " from public.whatsapp_numbers where id = %s returning id",
                                    (tag, DEMO_NUMBER_ID)))["id"]  # fmt: skip
        for name, city, consented in people:
            wa_id = new_customer()
            phones[wa_id] = name
            contact = await _as_manager(
                conn, "insert into public.contacts (tenant_id, wa_id, name, attributes)"
                " select tenant_id, %s, %s, %s from public.whatsapp_numbers where id = %s"
                " returning id, tenant_id",
                (wa_id, name, Jsonb({"cidade": city} if city else {}), DEMO_NUMBER_ID))
            await _as_manager(conn, "insert into public.contact_tags (tenant_id, contact_id, tag_id)"
                              " values (%s, %s, %s) returning id",
                              (contact["tenant_id"], contact["id"], tag_id))  # fmt: skip
            if consented:
                await _as_manager(conn, "select public.record_contact_consent(%s, 'consent_given', %s)",
                                  (contact["id"], "Aceitou ofertas no cadastro da loja (formulário)"))
        campaign = await _as_manager(
            conn, "insert into public.campaigns (tenant_id, name, whatsapp_number_id, template_id, audience,"
            " variables, rate_per_minute) select tenant_id, 'Frete grátis no Nordeste', id, %s, %s, %s, 120"
            " from public.whatsapp_numbers where id = %s returning id",
            (template["id"], Jsonb({"tags_any": [tag]}), Jsonb(OFFER_VARIABLES), DEMO_NUMBER_ID))
        dry_run = (await _as_manager(conn, "select public.campaign_dry_run(%s) as d", (campaign["id"],)))["d"]
        await _as_manager(conn, "select id from public.start_campaign(%s)", (campaign["id"],))
        await _until(conn, "select count(*) = 3 as done from public.campaign_recipients"
                     " where campaign_id = %s"
                     " and status in ('delivered', 'read')", (campaign["id"],), "the campaign's deliveries")
        first = next(wa for wa, name in phones.items() if name == "Joana Lima")
        await stack.user(first, "Joana Lima").send_text("Quero! Como faço o pedido?")
        await _until(conn, "select replied_count = 1 as done from public.campaigns where id = %s",
                     (campaign["id"],), "the reply to be counted")
        cur = await conn.execute("select * from public.campaigns where id = %s", (campaign["id"],))
        row = await cur.fetchone()
        recipients = await (await conn.execute(_RECIPIENTS_SQL, (campaign["id"],))).fetchall()
        events = await (await conn.execute(
            "select type from public.events where subject_id = %s or payload ->> 'campaign_id' = %s::text"
            " order by created_at", (campaign["id"], campaign["id"]))).fetchall()
    texts = {m.wa_id or "": m.body["template"]["components"][0]["parameters"][0]["text"]
             for m in stack.simulator.inbox if m.type == "template" and m.wa_id in phones}
    return CampaignRun(template, dry_run, row or {}, recipients, [e["type"] for e in events], texts)


def _render_campaign(out: Console, run: CampaignRun) -> None:
    c = run.campaign
    out.print(f"[bold]Campaign[/] {c.get('name')!r} with template {run.template['name']} "
              f"(sync {run.template['sync_status']} → approved by the simulator's Meta); "
              f"dry run: {run.dry_run}")
    table = Table(title="public.campaign_recipients")
    for column in ("contact", "number", "status", "skipped because", "replied", "first name on the phone"):
        table.add_column(column)
    for r in run.recipients:
        replied = "yes" if r["replied"] else ""
        table.add_row(r["name"], f"+{r['wa_id']}", r["status"], r["skip_reason"] or "", replied,
                      run.received.get(r["wa_id"], ""))
    out.print(table)
    counters = ("total", "sent", "delivered", "read", "failed", "skipped", "replied")
    shown = ", ".join(f"{k} {c.get(k + '_count')}" for k in counters)
    out.print(f"campaign [bold]{c.get('status')}[/]: {shown}")
    out.print("events: " + " → ".join(dict.fromkeys(run.events)))


def render_automation(out: Console, chapter: AutomationChapter) -> None:
    rule = chapter.rule
    out.print(f"[bold]Automation rule[/] “{rule.get('name')}” (v{rule.get('version')}, {rule.get('mode')}, "
              f"trigger {rule.get('trigger_type')} {rule.get('wait_minutes')} min)", highlight=False)
    queue = Table(title="public.dispatch_queue (the approval queue)")
    for column in ("status", "preview", "decided at", "outcome"):
        queue.add_column(column, overflow="fold")
    s = chapter.suggestion
    queue.add_row(s.get("status", "-"), _cell("preview", s.get("preview")), _cell("at", s.get("decided_at")),
                  _cell("outcome", s.get("outcome")))
    out.print(queue)
    log = Table(title="public.automation_executions (the execution log)")
    for column in ("rule", "version", "trigger", "conditions", "decision", "by", "action", "outcome", "wamid",
                   "message"):
        log.add_column(column, overflow="fold")
    for e in chapter.log:
        conditions = " ".join(
            f"{c['field']} {c['op']} {c['value']} → {c['result']}" for c in e["condition_results"]
        )
        log.add_row(_cell("rule", e["rule"]), str(e["rule_version"]), e["trigger_type"], conditions,
                    _cell("decision", e["decision"]), _cell("by", e["decided_by"]), e["action"], e["outcome"],
                    _cell("wamid", e["wamid"]), _cell("status", e["message_status"]))
    out.print(log)
# -- the Hotmart chapter --------------------------------------------------------------------

DEMO_HOTMART = "00000000-0000-4000-8600-000000000001"  # seed: Loja Demo's Hotmart integration
DEMO_HOTTOK = "zapbase-demo-hottok"  # seed: its hottok, in the local Vault
ACCESS_MESSAGE = "Parabéns pela compra! Seu acesso ao Método Fluência: https://hotmart.com/pt-br/club"
_STUDENT_SQL = """
select t.status as transaction, c.ltv, c.tags, e.access_status as access, e.progress_pct as progress,
       e.first_access_origin as origin,
       (select string_agg(v.type, ', ' order by v.created_at) from public.events v
         where v.tenant_id = t.tenant_id and v.created_at >= %s
           and v.type ~ '^(purchase|enrollment|progress)[.]') as events
  from public.transactions t
  join public.contacts c on c.id = t.contact_id
  left join public.enrollments e on e.tenant_id = t.tenant_id and e.contact_id = t.contact_id
   and e.product_id = t.product_id
 where t.tenant_id = '00000000-0000-4000-b000-000000000001' and t.code = %s
"""


async def hotmart_chapter(
    http: httpx.AsyncClient, worker_url: str, conn: Connection, wa_id: str, conversation_id: uuid.UUID,
    *, settle_s: float = REPLY_TIMEOUT_S,
) -> list[dict[str, Any]]:
    """The customer of the conversation buys a course on Hotmart (her phone matches her
    contact), gets her access link on WhatsApp, opens the course (origin KPI: whatsapp once
    that message was delivered, within `settle_s`), completes a module, asks for a refund and
    gets it: each webhook goes through the worker's route (after one with a wrong hottok,
    refused); returns, per step, the answer and the rows."""
    code = f"HPDEMO{secrets.randbelow(10**10):010d}"
    product = {"id": 4774438, "name": "Método Fluência em 90 Dias"}
    buyer = {"name": CUSTOMER, "email": f"{wa_id}@example.com.br", "checkout_phone": wa_id[2:]}
    purchase = {"transaction": code, "price": {"value": 497, "currency_value": "BRL"},
                "offer": {"code": "k2pasun0"}, "payment": {"type": "PIX", "installments_number": 1}}
    club = {"product": product, "user": {"name": CUSTOMER, "email": buyer["email"]}}
    def sale(status: str) -> dict[str, Any]:
        return {"product": product, "buyer": buyer, "purchase": {**purchase, "status": status}}

    steps: list[tuple[str, dict[str, Any]]] = [
        ("PURCHASE_APPROVED", sale("APPROVED")),
        ("CLUB_FIRST_ACCESS", club),
        ("CLUB_MODULE_COMPLETED", {**club, "module": {"id": "Zq4x8Jb1Ok", "name": "Destravando a fala"}}),
        ("PURCHASE_PROTEST", sale("DISPUTE")),
        ("PURCHASE_REFUNDED", sale("REFUNDED")),
    ]
    url = worker_url + hotmart_path(DEMO_HOTMART)
    started = await (await conn.execute("select now() as at")).fetchone()
    rows: list[dict[str, Any]] = []
    for n, (name, data) in enumerate(steps):
        body = {"id": str(uuid.uuid4()), "event": name, "version": "2.0.0",
                "creation_date": int(time.time() * 1000), "data": data}
        if n == 0:
            refused = await http.post(url, json=body, headers={HOTTOK_HEADER: "not-the-hottok"})
            rows.append({"step": f"{name} (wrong hottok)", "http": refused.status_code})
        answer = await http.post(url, json=body, headers={HOTTOK_HEADER: DEMO_HOTTOK})
        if n == 0:  # what the customer success team sends on purchase.approved
            await conn.execute("select public.whatsapp_queue_reply(%s, %s, 'system', null, null)", (
                conversation_id, Jsonb({"type": "text", "text": {"body": ACCESS_MESSAGE}})))
            await _settle(conn, conversation_id, timeout=settle_s)
        cur = await conn.execute(_STUDENT_SQL, (started["at"] if started else None, code))
        state = await cur.fetchone()
        rows.append({"step": name, "http": answer.status_code, **(state or {})})
    return rows


def _render_hotmart(out: Console, rows: list[dict[str, Any]]) -> None:
    table = Table(title="Hotmart → commerce: she buys a course (POST /webhooks/hotmart/<integration>)")
    for column in ("event", "HTTP", "transaction", "LTV", "tags", "access", "%", "first access"):
        table.add_column(column)
    for r in rows:
        tags = ", ".join(r.get("tags") or []) or "-"
        ltv, progress = (f"{r[k]:.0f}" if r.get(k) is not None else "-" for k in ("ltv", "progress"))
        table.add_row(r["step"], str(r["http"]), _cell("", r.get("transaction")), ltv, tags,
                      _cell("", r.get("access")), progress, _cell("", r.get("origin")))
    out.print(table)
    if rows and rows[-1].get("events"):
        out.print(f"commerce events: {rows[-1]['events']}")


def _cell(key: str, value: object) -> str:
    if value is None:
        return "-"
    text = str(value).replace("\n", " ")
    if key == "wamid":
        return "…" + text[-12:]
    if key == "id":
        return text[:8] + "…"
    return text if len(text) <= 60 else text[:59] + "…"


# -- chat ---------------------------------------------------------------------------------


def _read_line() -> str | None:
    try:
        return input()
    except EOFError:
        return None


async def _print_replies(out: Console, user: SimulatedUser) -> None:
    shown = 0
    while True:
        for message in user.inbox[shown:]:
            out.print(
                f"[bold green]Loja Demo ›[/] {_shown(message, numbered=True)}", highlight=False, markup=True
            )
        shown = len(user.inbox)
        await anyio.sleep(0.1)


async def chat_session(out: Console, stack: LocalStack, db_url: str, *, wa_id: str, name: str) -> None:
    """Read lines from the terminal and send them as `name` (+wa_id); print every reply."""
    user = stack.user(wa_id, name)
    out.print(
        f"You are {name} (+{wa_id}) writing to Loja Demo. Type a message; [bold]/voz[/] sends a voice "
        "note, [bold]/menu[/] has the store send a button menu, [bold]/botao N[/] taps its button N, "
        "[bold]/sair[/] (or Ctrl-D) leaves."
    )
    async with await connect(db_url) as conn, anyio.create_task_group() as tg:
        tg.start_soon(_print_replies, out, user)
        while True:
            line = await anyio.to_thread.run_sync(_read_line, abandon_on_cancel=True)
            text = (line or "").strip()
            if line is None or text in ("/sair", "/quit"):
                break
            if not text:
                continue
            if text == "/menu":
                try:
                    await _queue_menu(conn, await _live_conversation(conn, user.wa_id))
                except ZapbaseError as exc:
                    out.print(f"[red]{exc}[/] (write something first)")
                continue
            if text == "/voz":
                delivery = await user.send_voice_note(VOICE_NOTE)
            elif text.startswith("/botao"):
                menus = [m for m in user.inbox if m.content.get("action", {}).get("buttons")]
                buttons = menus[-1].content["action"]["buttons"] if menus else []
                choice = text.removeprefix("/botao").strip()
                if not choice.isdigit() or not 1 <= int(choice) <= len(buttons):
                    out.print(f"no button {choice!r}: the last menu has {len(buttons)} (try /menu)")
                    continue
                delivery = await user.press_button(menus[-1], buttons[int(choice) - 1]["reply"]["id"])
            else:
                delivery = await user.send_text(text[:4096])
            if not delivery.accepted:
                out.print(f"[red]the worker refused the webhook: HTTP {delivery.status_code}[/]")
        if user.inbox or line is None:
            # Input ended (a pipe, Ctrl-D): let the replies in flight arrive and print.
            with contextlib.suppress(ZapbaseError):
                await _settle(conn, await _live_conversation(conn, user.wa_id), timeout=10)
            await anyio.sleep(0.2)
        tg.cancel_scope.cancel()


# -- the inbox chapter: a support team at work ---------------------------------------------------

INBOX_CUSTOMER = "Carla Mendes"
DEMO_TENANT = "00000000-0000-4000-b000-000000000001"
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
        await _next_reply(user, seen)
        await _settle(conn, await _live_conversation(conn, wa_id), REPLY_TIMEOUT_S)
        replies = user.inbox[seen:]
        at = time.perf_counter() - started
        lines.extend(Line(at, r.wamid, _shown(r, rows=True), True) for r in replies)
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
        await _as_manager(conn, "select status from public.set_presence(%s, 'online')", (DEMO_TENANT,),
                          user=agent)  # fmt: skip
    try:
        ask = "Quero falar com um atendente, por favor"
        await say(ask, user.send_text(ask))
        conversation_id = await _live_conversation(conn, wa_id)
        await _until(conn, _ASSIGNED_SQL, (conversation_id,), "the queue to assign the conversation")
        seen = len(user.inbox)
        transfer = "select id from public.transfer_conversation(%s, %s, %s, %s)"
        note = "Quer o plano anual com desconto"
        await _as_manager(conn, transfer, (conversation_id, ana, team, note), user=AGENT)
        await arrived(seen)  # Ana's greeting
        await _as_manager(conn, "select id from public.add_note(%s, %s)",
                          (conversation_id, "Cliente antiga: ofereci 10% no anual"))  # fmt: skip
        seen = len(user.inbox)
        answer = {"type": "text", "text": {"body": "O plano anual sai com 10% de desconto. Fechado?"}}
        await _as_manager(conn, "select id from public.send_message(%s, %s)",
                          (conversation_id, Jsonb(answer)))  # fmt: skip
        await arrived(seen)
        thanks = await user.send_text("Fechado, obrigada!")  # to a person now: the bot stays quiet
        lines.append(Line(time.perf_counter() - started, thanks.wamid, "Fechado, obrigada!", False))
        await _settle(conn, conversation_id, REPLY_TIMEOUT_S)
        seen = len(user.inbox)
        await _as_manager(conn, "select status from public.resolve_conversation(%s)", (conversation_id,))
        survey = (await arrived(seen))[-1]
        seen = len(user.inbox)
        delivery = await user.choose_row(survey, "csat:5")
        lines.append(Line(time.perf_counter() - started, delivery.wamid, "👆 5 - Excelente", False))
        await _until(conn, _CSAT_SQL, (conversation_id,), "the CSAT answer")
    finally:
        for agent in (AGENT, DEMO_OWNER):  # the rest of the demo waits in the queue for nobody
            await _as_manager(conn, "select status from public.set_presence(%s, 'offline')", (DEMO_TENANT,),
                              user=agent)  # fmt: skip
    return InboxChapter(
        wa_id,
        lines,
        await (await conn.execute(_TIMELINE_SQL, (conversation_id,))).fetchall(),
        [r["type"] for r in await (await conn.execute(_INBOX_EVENTS_SQL, (conversation_id,))).fetchall()],
        await (await conn.execute(_METRICS_SQL, (conversation_id,))).fetchone() or {},
    )


def _render_inbox(out: Console, chapter: InboxChapter) -> None:
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
    metrics.add_row(*(_cell(k, v) for k, v in chapter.metrics.items()))
    out.print(metrics)


def new_customer() -> str:
    # A new number per run: an earlier run's conversation (maybe handed to humans) stays apart.
    return f"55119{secrets.randbelow(10**8):08d}"


