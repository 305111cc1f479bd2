"""What the pipeline reads before answering: the bot, its gateway policy, today's replies."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from zapbase.ai.chain import LOCAL_LINK
from zapbase.ai.types import GatewayPolicy, Link, StructuredOutput
from zapbase.db.pool import Connection
from zapbase.whatsapp.inbound import InboundMessage

__all__ = ["Bot", "daily_cap_reached", "find_bot", "load_policy"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Bot:
    """A row of `public.bots` (what the worker uses of it) and its tenant's time zone."""

    id: uuid.UUID
    name: str
    system_prompt: str
    formatter_prompt: str | None
    model_policy_id: uuid.UUID | None
    temperature: float
    max_tokens: int
    knowledge_enabled: bool
    tts_mode: str
    tts_model: str | None
    tts_voice: str | None
    handoff_keywords: Sequence[str]
    welcome_message: str | None
    fallback_message: str
    away_message: str | None
    business_hours: Mapping[str, Any]
    max_replies_per_contact_per_day: int | None
    max_replies_per_tenant_per_day: int | None
    memory_turns: int
    timezone: str

    def local_time(self, now: datetime) -> datetime:
        return now.astimezone(ZoneInfo(self.timezone))


_FIND_BOT = """
select b.id, b.name, b.system_prompt, b.formatter_prompt, b.model_policy_id,
       b.temperature::float8 as temperature, b.max_tokens, b.knowledge_enabled, b.tts_mode, b.tts_model,
       b.tts_voice, b.handoff_keywords, b.welcome_message, b.fallback_message, b.away_message,
       b.business_hours, b.max_replies_per_contact_per_day, b.max_replies_per_tenant_per_day,
       b.memory_turns, t.timezone
  from public.bots b join public.tenants t on t.id = b.tenant_id
 where b.tenant_id = %(tenant)s and b.is_active
   and (b.id = %(bot)s or cardinality(b.whatsapp_number_ids) = 0 or %(number)s = any(b.whatsapp_number_ids))
 order by b.id = %(bot)s desc nulls last, %(number)s = any(b.whatsapp_number_ids) desc nulls last,
          b.created_at, b.id
 limit 1
"""


async def find_bot(conn: Connection, message: InboundMessage) -> Bot | None:
    """The conversation's bot if active, else the tenant's active bot for the number (a bot
    naming the number wins over one that serves every number)."""
    params = {"tenant": message.tenant_id, "bot": message.bot_id, "number": message.whatsapp_number_id}
    row = await (await conn.execute(_FIND_BOT, params)).fetchone()
    return Bot(**row) if row else None


_POLICY = "select public.ai_policy(%(tenant)s, %(policy)s) as policy"


_STRUCTURED: dict[str, StructuredOutput] = {"json_schema": "json_schema", "json_object": "json_object"}


def _link(model: Mapping[str, Any]) -> Link:
    if model["provider"] == LOCAL_LINK.provider:
        return LOCAL_LINK  # reads only the last message: no window to respect
    return Link(
        provider=model["provider"],
        model=model["model"],
        gateway_id=model["gateway_id"],
        # a model without a registered window is treated as the smallest one
        context_window=model["context_window"] or 1,
        # unknown or absent: the schema goes in the prompt, which every model takes
        structured_output=_STRUCTURED.get(model.get("structured_output") or "", "prompt"),
    )


async def load_policy(conn: Connection, tenant_id: uuid.UUID, policy_id: uuid.UUID | None) -> GatewayPolicy:
    """The bot's gateway policy; the offline chain when the tenant has none at all."""
    row = await (await conn.execute(_POLICY, {"tenant": tenant_id, "policy": policy_id})).fetchone()
    policy = row["policy"] if row else None
    if policy is None or not policy["links"]:
        return GatewayPolicy(links=(LOCAL_LINK,))
    return GatewayPolicy(
        links=tuple(_link(m) for m in policy["links"]),
        timeout_seconds=policy["timeout_ms"] / 1000,
        cooldown_seconds=policy["cooldown_seconds"],
        cache_ttl_seconds=policy["cache_ttl_seconds"],
        id=str(policy["id"]),
    )


_CONTACT_REPLIES = """
select count(*) as n from public.messages m
 where m.tenant_id = %(tenant)s and m.contact_id = %(contact)s and m.direction = 'outbound'
   and m.sender_type = 'bot' and m.created_at >= %(since)s
"""
_TENANT_REPLIES = """
select count(*) as n from public.messages m
 where m.tenant_id = %(tenant)s and m.direction = 'outbound' and m.sender_type = 'bot'
   and m.created_at >= %(since)s
"""


async def daily_cap_reached(conn: Connection, bot: Bot, message: InboundMessage, now: datetime) -> str | None:
    """Which daily cap of the bot is used up ("contact" or "tenant"), counting bot replies
    since midnight in the tenant's time zone; None while both leave room."""
    since = bot.local_time(now).replace(hour=0, minute=0, second=0, microsecond=0)
    params = {"tenant": message.tenant_id, "contact": message.contact_id, "since": since}
    for scope, cap, query in (
        ("contact", bot.max_replies_per_contact_per_day, _CONTACT_REPLIES),
        ("tenant", bot.max_replies_per_tenant_per_day, _TENANT_REPLIES),
    ):
        if cap is None:
            continue
        row = await (await conn.execute(query, params)).fetchone()
        if row is not None and row["n"] >= cap:
            return scope
    return None
