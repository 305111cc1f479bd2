"""`AIResponder`: the bot route of the inbound processor.

For each customer message of a conversation in bot mode, inside the processor's
transaction (replies, handoff and "processed" commit together; provider calls settle in
the usage log on their own, since a provider bills them whatever happens next):

    no active bot ─────────────────────────────► handoff, no text
    daily cap (contact / tenant) used up ──────► handoff notice + handoff
    voice note ─► transcribed (budgeted) ─► stored on the message, answered as text;
                  no transcriber / it failed ─► "send text, please"; budget refused ─► as below
    handoff keyword, asking for a person, "yes" to the bot's offer of one
                                            ───► handoff notice (away message outside
                                                 the bot's business hours) + handoff
    first message of the conversation ─────────► welcome message (and nothing else
                                                 when it is only a greeting)
    memory (rolling summary past a threshold) + knowledge + message ─► Gateway.chat
        answer ─► queued with its AI figures (+ voice note per tts_mode)
        budget refusal / chain failed ─► fallback message + handoff: never silence

Voice replies go IN ADDITION to the text, right after it: the text is what the agents'
inbox, the AI memory and search read, it arrives even when synthesis or the upload
fails, and a customer in a quiet room can read it; the voice note is the courtesy to
someone who speaks to us.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb

from zapbase.ai.types import AttemptStatus, GatewayResponse, Refusal
from zapbase.bot.config import Bot, daily_cap_reached, find_bot, load_policy
from zapbase.bot.gateways import Gateways
from zapbase.bot.knowledge import Knowledge
from zapbase.bot.memory import Memory, Summarizer, read_memory
from zapbase.bot.prompt import accounting, build_request
from zapbase.bot.rules import (
    AWAY_FALLBACK,
    CANNOT_LISTEN,
    DAILY_CAP_REASON,
    HANDOFF_NOTICE,
    HUMAN_REQUESTS,
    MEDIA_ONLY,
    accepts_offer,
    greeting_only,
    is_open,
    matches_keyword,
)
from zapbase.bot.voice import Listener, Speaker
from zapbase.worker.database import Connection
from zapbase.worker.processor import InboundMessage
from zapbase.worker.storage import MediaStorage

__all__ = ["AIResponder"]

_logger = logging.getLogger(__name__)

_TEXT_MAX = 4096  # WhatsApp's limit for a text body
_QUEUE = "select public.whatsapp_queue_reply(%s, %s, 'bot', null, %s)"
_HANDOFF = "select public.handoff_conversation(%s, %s, null)"
_SEEN_BEFORE = """
select exists (
  select 1 from public.messages m, public.messages me
   where me.id = %(id)s and m.tenant_id = me.tenant_id and m.conversation_id = me.conversation_id
     and m.direction = 'inbound' and m.sender_type = 'contact'
     and (m.created_at, m.id) < (me.created_at, me.id)) as seen
"""
_TRANSCRIPT = "select transcription from public.messages where id = %s"


class AIResponder:
    """Answers bot-mode messages with the AI gateway (implements `BotResponder`).

    Parameters:
        gateways: the provider chain over the Postgres ledger (budgets, usage, cache), on
            the tenant's own keys when it has them.
        knowledge: passages for bots with rag_enabled.
        summarizer: keeps the rolling summary of long conversations.
        media: where the processor stored the voice notes.
        listener: transcribes voice notes; None: the bot asks for text instead.
        speaker: voice notes of replies; None: text only.
        clock: now, for business hours and daily caps.
    """

    def __init__(
        self,
        *,
        gateways: Gateways,
        knowledge: Knowledge,
        summarizer: Summarizer,
        media: MediaStorage,
        listener: Listener | None = None,
        speaker: Speaker | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._gateways = gateways
        self._knowledge = knowledge
        self._summarizer = summarizer
        self._media = media
        self._listener = listener
        self._speaker = speaker
        self._clock = clock

    async def respond(self, message: InboundMessage, conn: Connection) -> None:
        bot = await find_bot(conn, message)
        if bot is None:
            await conn.execute(_HANDOFF, (message.conversation_id, "no active bot for this WhatsApp number"))
            _logger.info("conversation %s: no active bot, handed to humans", message.conversation_id)
            return
        if (scope := await daily_cap_reached(conn, bot, message, self._clock())) is not None:
            await self._hand_off(conn, message, bot, DAILY_CAP_REASON.format(scope=scope))
            return
        text = message.content
        if message.type == "audio":
            heard = await self._listen(conn, message, bot)
            if isinstance(heard, Refusal):
                await self._give_up(
                    conn, message, bot, f"AI budget refused the transcription: {heard.reason}"
                )
                return
            text = heard
        memory = await read_memory(conn, message.tenant_id, message.conversation_id)
        if (reason := _wants_person(bot, message, text, memory)) is not None:
            await self._hand_off(conn, message, bot, reason)
            return
        if await self._first_message(conn, message) and bot.welcome_message:
            await self._queue_text(conn, message, bot.welcome_message)
            if text and greeting_only(text):
                return
        if not text:
            await self._queue_text(conn, message, CANNOT_LISTEN if message.type == "audio" else MEDIA_ONLY)
            return
        await self._answer(conn, message, bot, text, memory)

    async def _answer(
        self, conn: Connection, message: InboundMessage, bot: Bot, text: str, memory: Memory
    ) -> None:
        """The model's reply from knowledge and memory; its voice note when the bot speaks."""
        policy = await load_policy(conn, message.tenant_id, bot.model_policy_id)
        knowledge = await self._knowledge.passages(conn, bot, message, text) if bot.rag_enabled else ()
        history = memory.history(message.message_id, bot.memory_turns)
        gateway = await self._gateways.for_tenant(conn, message.tenant_id)
        memory = await self._summarizer.refresh(conn, memory, gateway, policy, accounting(bot, message))
        request = build_request(bot=bot, message=message, text=text, history=history,
                                summary=memory.summary, knowledge=knowledge)  # fmt: skip
        response = await gateway.chat(request, policy)
        if response.result is None or not response.result.text.strip():
            await self._give_up(conn, message, bot, _failure_reason(response))
            return
        reply = response.result.text.strip()[:_TEXT_MAX]
        await self._queue(conn, message, {"type": "text", "text": {"body": reply}}, _ai_figures(response))
        if self._speaker is not None and (
            bot.tts_mode == "always" or (bot.tts_mode == "on_voice" and message.is_voice)
        ):
            media_id = await self._speaker.media_id(message, bot, reply)
            if media_id is not None:
                await self._queue(conn, message, {"type": "audio", "audio": {"id": media_id, "voice": True}})

    async def _listen(self, conn: Connection, message: InboundMessage, bot: Bot) -> str | Refusal | None:
        """The voice note's transcript (stored earlier by a try that then failed, or new)."""
        row = await (await conn.execute(_TRANSCRIPT, (message.message_id,))).fetchone()
        if row is not None and row["transcription"]:
            return str(row["transcription"])
        if self._listener is None or message.media_storage_path is None:
            return None
        audio = await self._media.get(message.media_storage_path)
        return await self._listener.transcribe(message, audio, bot.id)

    async def _first_message(self, conn: Connection, message: InboundMessage) -> bool:
        row = await (await conn.execute(_SEEN_BEFORE, {"id": message.message_id})).fetchone()
        return not (row and row["seen"])

    async def _queue(
        self,
        conn: Connection,
        message: InboundMessage,
        body: dict[str, Any],
        ai: dict[str, Any] | None = None,
    ) -> None:
        await conn.execute(_QUEUE, (message.conversation_id, Jsonb(body), Jsonb(ai) if ai else None))

    async def _queue_text(self, conn: Connection, message: InboundMessage, text: str) -> None:
        await self._queue(conn, message, {"type": "text", "text": {"body": text[:_TEXT_MAX]}})

    async def _hand_off(self, conn: Connection, message: InboundMessage, bot: Bot, reason: str) -> None:
        """A person takes over: say so (or, outside business hours, when they will)."""
        open_now = is_open(bot.business_hours, bot.local_time(self._clock()))
        await self._queue_text(
            conn, message, HANDOFF_NOTICE if open_now else bot.away_message or AWAY_FALLBACK
        )
        await conn.execute(_HANDOFF, (message.conversation_id, reason))
        _logger.info("conversation %s handed to humans: %s", message.conversation_id, reason)

    async def _give_up(self, conn: Connection, message: InboundMessage, bot: Bot, reason: str) -> None:
        """The AI cannot answer (budget, providers): the bot's fallback text, then a person."""
        await self._queue_text(conn, message, bot.fallback_message)
        await conn.execute(_HANDOFF, (message.conversation_id, reason))
        _logger.warning("conversation %s handed to humans: %s", message.conversation_id, reason)


def _wants_person(bot: Bot, message: InboundMessage, text: str | None, memory: Memory) -> str | None:
    """Why the customer goes to a person (a keyword, a tapped button naming one, a "yes"
    to the bot's offer of one), or None."""
    keywords = [*bot.handoff_keywords, *HUMAN_REQUESTS]
    if (keyword := matches_keyword([text, message.interactive_reply_id], keywords)) is not None:
        return f"handoff keyword: {keyword}"
    if text and accepts_offer(text, memory.last_bot_turn(message.message_id)):
        return "accepted the bot's offer of a person"
    return None


def _failure_reason(response: GatewayResponse) -> str:
    if response.refusal is not None:
        return f"AI budget refused the reply: {response.refusal.reason}"
    if response.error is not None:
        return f"AI providers failed: {response.error.code}"
    return "AI answered with an empty reply"


def _ai_figures(response: GatewayResponse) -> dict[str, Any]:
    """What `whatsapp_queue_reply` keeps on the message: the model that answered (its
    gateway id, as the usage log names it), tokens and latency."""
    result = response.result
    assert result is not None
    answered = next(a for a in response.attempts if a.status in (AttemptStatus.OK, AttemptStatus.CACHED))
    return {
        "model": answered.link.gateway_id,
        "input_tokens": result.usage.input_tokens
        + result.usage.cache_read_tokens
        + result.usage.cache_write_tokens,
        "output_tokens": result.usage.output_tokens,
        "latency_ms": result.latency_ms,
    }
