"""The conversation's AI memory (`session_context`) as the model sees it, and its rolling summary.

A trigger keeps `recent_messages` (the last max_messages turns, oldest first) and counts
in `pending_summary` the turns that fell out since the last summary. Past a threshold,
`Summarizer` has the gateway fold those turns into `summary` (feature `summary`, billed
like any call) and resets the count.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from zapbase.ai.chain import LOCAL_LINK, Gateway
from zapbase.ai.types import ChatMessage, ChatRequest, GatewayPolicy, Role
from zapbase.bot.prompt import Accounting
from zapbase.db.pool import Connect, Connection, transaction

__all__ = ["SUMMARY_FEATURE", "Memory", "Summarizer", "read_memory"]

_logger = logging.getLogger(__name__)

SUMMARY_FEATURE = "summary"
# What outbound media leave in the memory ("[audio]"): nothing a model can read.
_PLACEHOLDER = re.compile(r"^\[[a-z_]+\]$")
_SPEAKERS = {"contact": "Cliente", "bot": "Assistente", "agent": "Atendente", "campaign": "Loja"}
_SUMMARY_SYSTEM = (
    "Você resume conversas de atendimento pelo WhatsApp para a memória de um assistente virtual. "
    "Escreva em português do Brasil, em até 6 frases, só fatos: o que o cliente quer, dados que ele "
    "informou (pedido, produto, cidade), o que já foi respondido e o que ficou pendente. "
    "Não invente nada e não inclua saudações."
)

_READ = """
select s.summary, s.summarized_until, s.pending_summary, s.recent_messages, i.name as intent,
       i.description as intent_description
  from public.conversations c
  left join public.session_context s on s.tenant_id = c.tenant_id and s.conversation_id = c.id
  left join public.intents i on i.tenant_id = c.tenant_id and i.name = c.last_intent and i.active
 where c.tenant_id = %s and c.id = %s
"""
# The turns that left recent_messages since the last summary, as the trigger saw them.
_FALLEN_OUT = """
select m.id, m.created_at, m.sender_type, coalesce(m.transcription, m.content) as text
  from public.messages m
 where m.tenant_id = %(tenant)s::uuid and m.conversation_id = %(conversation)s::uuid
   and m.created_at > coalesce(%(until)s, '-infinity'::timestamptz)
   and not (m.id = any(%(recent)s::uuid[]))
   and coalesce(m.transcription, m.content) is not null and m.sender_type <> 'system' and m.type <> 'reaction'
 order by m.created_at, m.id
 limit 200
"""
_WRITE = """
update public.session_context
   set summary = %(summary)s, summarized_until = %(until)s, pending_summary = 0, updated_at = now()
 where tenant_id = %(tenant)s::uuid and conversation_id = %(conversation)s::uuid
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class Memory:
    """A `session_context` row (empty for a conversation without one yet) and the conversation's
    intent: the one its latest classified customer message had (`conversations.last_intent`),
    as "name: description"."""

    summary: str | None = None
    summarized_until: datetime | None = None
    pending_summary: int = 0
    entries: Sequence[Mapping[str, Any]] = field(default_factory=tuple)
    intent: str | None = None

    def _before(self, current: uuid.UUID) -> list[Mapping[str, Any]]:
        # Turns after the current message (the customer wrote again meanwhile) are not history yet.
        ids = [str(e.get("message_id")) for e in self.entries]
        cut = ids.index(str(current)) if str(current) in ids else len(ids)
        return [e for e in self.entries[:cut] if str(e.get("message_id")) != str(current)]

    def history(self, current: uuid.UUID, turns: int) -> tuple[ChatMessage, ...]:
        """The last `turns` exchanges (a customer message and the answer: 2 × turns entries)
        before the current message, oldest first, as alternating chat messages that start
        with the customer (what every provider accepts)."""
        merged: list[ChatMessage] = []
        for entry in self._before(current)[-2 * turns :] if turns else []:
            role: Role = "user" if entry.get("role") == "user" else "assistant"
            text = str(entry.get("content") or "").strip()
            if not text or _PLACEHOLDER.match(text):
                continue
            if merged and merged[-1].role == role:
                merged[-1] = ChatMessage(role=role, content=f"{merged[-1].content}\n{text}")
            else:
                merged.append(ChatMessage(role=role, content=text))
        while merged and merged[0].role == "assistant":
            merged.pop(0)
        return tuple(merged)

    def last_bot_turn(self, current: uuid.UUID) -> str | None:
        for entry in reversed(self._before(current)):
            if entry.get("role") == "assistant":
                return str(entry.get("content") or "")
        return None


async def read_memory(conn: Connection, tenant_id: uuid.UUID, conversation_id: uuid.UUID) -> Memory:
    row = await (await conn.execute(_READ, (tenant_id, conversation_id))).fetchone()
    if row is None:
        return Memory()
    return Memory(
        summary=row["summary"],
        summarized_until=row["summarized_until"],
        pending_summary=row["pending_summary"] or 0,
        entries=tuple(row["recent_messages"] or ()),
        intent=f"{row['intent']}: {row['intent_description']}" if row["intent"] else None,
    )


class Summarizer:
    """Folds what fell out of the recent turns into the rolling summary.

    Parameters:
        connect: lends connections to read the turns and to write the summary, committed on
            its own (its cost is billed whatever happens to the reply).
        threshold: fallen-out turns that trigger a new summary.
    """

    def __init__(self, *, connect: Connect, threshold: int) -> None:
        self._connect = connect
        self._threshold = threshold

    async def refresh(
        self, memory: Memory, gateway: Gateway, policy: GatewayPolicy, ids: Accounting
    ) -> Memory:
        """`memory` with a new summary when enough turns are pending, else as it was: written
        through `gateway` (a local-only chain cannot summarise: skipped). `ids`: the
        accounting of the reply (`prompt.accounting`), written on the usage row."""
        if memory.pending_summary < self._threshold:
            return memory
        if not any(
            link.provider != LOCAL_LINK.provider and gateway.can_call(link.provider)
            for link in policy.links
        ):
            return memory  # the offline answerer quotes passages; it cannot summarise
        recent = [str(e["message_id"]) for e in memory.entries if e.get("message_id")]
        tenant, conversation = ids["tenant_id"], ids["conversation_id"]
        params = {"tenant": tenant, "conversation": conversation,
                  "until": memory.summarized_until, "recent": recent}  # fmt: skip
        async with self._connect() as conn:
            rows = await (await conn.execute(_FALLEN_OUT, params)).fetchall()
        if not rows:
            return memory
        transcript = "\n".join(f"{_SPEAKERS.get(r['sender_type'], 'Loja')}: {r['text']}" for r in rows)
        previous = f"Resumo anterior:\n{memory.summary}\n\n" if memory.summary else ""
        request = ChatRequest(
            system=_SUMMARY_SYSTEM,
            messages=(ChatMessage(role="user", content=f"{previous}Mensagens a resumir:\n{transcript}"),),
            max_tokens=400,
            temperature=0.0,
            feature=SUMMARY_FEATURE,
            **ids,
        )
        response = await gateway.chat(request, policy)
        result = response.result
        if result is None or result.provider == LOCAL_LINK.provider or not result.text.strip():
            why = response.refusal or response.error or "only the offline answerer replied"
            _logger.warning("conversation %s: no summary this time (%s)", conversation, why)
            return memory
        until: datetime = rows[-1]["created_at"]
        summary = result.text.strip()
        async with transaction(self._connect) as writer:
            await writer.execute(_WRITE, {"summary": summary, "until": until, "tenant": tenant,
                                          "conversation": conversation})  # fmt: skip
        return replace(memory, summary=summary, summarized_until=until, pending_summary=0)
