"""The automation chapter: a suggestion approved by a person."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from zapbase.db.pool import Connection
from zapbase.demo.common import REPLY_TIMEOUT_S, as_manager, cell, next_reply, settle, shown
from zapbase.errors import ZapbaseError
from zapbase.simulator import ReceivedMessage, SimulatedUser, WebhookDelivery


@dataclass(frozen=True, slots=True)
class AutomationChapter:
    """The apology rule, its approved suggestion and its execution log."""

    rule: dict[str, Any]
    suggestion: dict[str, Any]
    log: list[dict[str, Any]]


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
    await as_manager(conn, _RULE_SQL, {"name": APOLOGY_RULE, "conversation": conversation_id})
    delivery = await user.send_text(WAIT_TEXT)
    note(delivery, WAIT_TEXT)
    await settle(conn, conversation_id, REPLY_TIMEOUT_S)
    seen = len(user.inbox)
    await conn.execute("select private.job_automation_rules(now() + interval '11 minutes')")
    cur = await conn.execute(
        "select * from public.dispatch_queue where conversation_id = %s and status = 'pending'",
        (conversation_id,),
    )
    pending = await cur.fetchone()
    if pending is None:
        raise ZapbaseError("the apology rule made no suggestion")
    suggestion = (
        await as_manager(conn, "select * from public.approve_dispatch(array[%s]::uuid[])", (pending["id"],))
        or {}
    )
    apology = await next_reply(user, seen)
    note(apology, shown(apology))
    await settle(conn, conversation_id, REPLY_TIMEOUT_S)
    cur = await conn.execute("select * from public.automation_rules where name = %s", (APOLOGY_RULE,))
    rule = await cur.fetchone()
    log = await (await conn.execute(_LOG_SQL, (conversation_id,))).fetchall()
    return AutomationChapter(rule or {}, suggestion, log)


def render_automation(out: Console, chapter: AutomationChapter) -> None:
    rule = chapter.rule
    out.print(
        f"[bold]Automation rule[/] “{rule.get('name')}” (v{rule.get('version')}, {rule.get('mode')}, "
        f"trigger {rule.get('trigger_type')} {rule.get('wait_minutes')} min)",
        highlight=False,
    )
    queue = Table(title="public.dispatch_queue (the approval queue)")
    for column in ("status", "preview", "decided at", "outcome"):
        queue.add_column(column, overflow="fold")
    s = chapter.suggestion
    queue.add_row(
        s.get("status", "-"),
        cell("preview", s.get("preview")),
        cell("at", s.get("decided_at")),
        cell("outcome", s.get("outcome")),
    )
    out.print(queue)
    log = Table(title="public.automation_executions (the execution log)")
    for column in (
        "rule",
        "version",
        "trigger",
        "conditions",
        "decision",
        "by",
        "action",
        "outcome",
        "wamid",
        "message",
    ):
        log.add_column(column, overflow="fold")
    for e in chapter.log:
        conditions = " ".join(
            f"{c['field']} {c['op']} {c['value']} → {c['result']}" for c in e["condition_results"]
        )
        log.add_row(
            cell("rule", e["rule"]),
            str(e["rule_version"]),
            e["trigger_type"],
            conditions,
            cell("decision", e["decision"]),
            cell("by", e["decided_by"]),
            e["action"],
            e["outcome"],
            cell("wamid", e["wamid"]),
            cell("status", e["message_status"]),
        )
    out.print(log)
