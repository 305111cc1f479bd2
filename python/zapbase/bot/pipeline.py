"""`AIResponder`: the bot route of the inbound processor.

For each customer message of a conversation in bot mode it reads what it needs (each read
gives its connection back before a provider is called) and returns a `Reply`: the
processor writes replies, handoff and "processed" in one transaction. Provider calls
settle in the usage log on their own, since a provider bills them whatever happens next:

    no active bot ─────────────────────────────► handoff, no text
    daily cap (contact / tenant) used up ──────► handoff notice + handoff
    voice note ─► transcribed (budgeted) ─► stored on the message, answered as text;
                  no transcriber / it failed ─► "send text, please"; budget refused ─► as below
    handoff keyword, asking for a person, "yes" to the bot's offer of one
                                            ───► handoff notice (away message outside
                                                 the bot's business hours) + handoff
    a ticket protocol quoted ──────────────────► its status (the customer's own tickets only)
    asking to open a ticket ───────────────────► ticket opened, its protocol
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

from zapbase.ai.types import AttemptStatus, ChatMessage, ChatRequest, GatewayResponse, Refusal
from zapbase.bot.config import Bot, daily_cap_reached, find_bot, load_policy
from zapbase.bot.gateways import Gateways
from zapbase.bot.intents import IntentClassifier
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
    TICKET_OPENED,
    TICKET_REQUESTS,
    accepts_offer,
    find_protocol,
    greeting_only,
    is_open,
    matches_keyword,
)
from zapbase.bot.tickets import open_ticket, ticket_status
from zapbase.bot.voice import Listener, Speaker
from zapbase.db.pool import Connect, Connection
from zapbase.errors import ZapbaseError
from zapbase.storage import ObjectStore
from zapbase.whatsapp.inbound import InboundMessage, Outgoing, Reply

__all__ = ["FLOW_FEATURE", "AIResponder", "AskFailed"]

_logger = logging.getLogger(__name__)

_TEXT_MAX = 4096  # WhatsApp's limit for a text body
FLOW_FEATURE = "flow"  # ai_usage.feature of flows' AI blocks


class AskFailed(ZapbaseError):
    """A flow's AI block got no answer (budget refusal, providers failed, empty answer)."""
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
        connect: lends connections for the reads, each given back before a provider is called.
        gateways: the provider chain over the Postgres ledger (budgets, usage, cache), on
            the tenant's own keys when it has them.
        knowledge: passages for bots with knowledge_enabled.
        summarizer: keeps the rolling summary of long conversations.
        media: where the processor stored the voice notes.
        listener: transcribes voice notes; None: the bot asks for text instead.
        speaker: voice notes of replies; None: text only.
        clock: now, for business hours and daily caps.

    `intents` classifies customer messages on the same gateways (the flow engine's classifier).
    """

    def __init__(
        self,
        *,
        connect: Connect,
        gateways: Gateways,
        knowledge: Knowledge,
        summarizer: Summarizer,
        media: ObjectStore,
        listener: Listener | None = None,
        speaker: Speaker | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._connect = connect
        self._gateways = gateways
        self._knowledge = knowledge
        self._summarizer = summarizer
        self._media = media
        self._listener = listener
        self._speaker = speaker
        self._clock = clock
        self.intents = IntentClassifier(connect=connect, gateways=gateways)

    @property
    def gateways(self) -> Gateways:
        """The tenants' gateways, shared with the worker's other AI features (chat search, insights)."""
        return self._gateways

    @property
    def listener(self) -> Listener | None:
        """The transcriber of voice notes, shared with the coaching worker (call recordings)."""
        return self._listener

    async def respond(self, message: InboundMessage) -> Reply:
        async with self._connect() as conn:
            bot = await find_bot(conn, message)
            scope = await daily_cap_reached(conn, bot, message, self._clock()) if bot is not None else None
        if bot is None:
            _logger.info("conversation %s: no active bot, handed to humans", message.conversation_id)
            return Reply(handoff="no active bot for this WhatsApp number")
        if scope is not None:
            return self._hand_off(message, bot, DAILY_CAP_REASON.format(scope=scope))
        text = message.content
        if message.type == "audio":
            heard = await self._listen(message, bot)
            if isinstance(heard, Refusal):
                return _give_up(message, bot, f"AI budget refused the transcription: {heard.reason}")
            text = heard
        async with self._connect() as conn:
            memory = await read_memory(conn, message.tenant_id, message.conversation_id)
            first = await _first_message(conn, message)
        if (reason := _wants_person(bot, message, text, memory)) is not None:
            return self._hand_off(message, bot, reason)
        welcome = Reply()
        if first and bot.welcome_message:
            welcome = _text(bot.welcome_message)
            if text and greeting_only(text):
                return welcome
        if not text:
            return welcome.then(_text(CANNOT_LISTEN if message.type == "audio" else MEDIA_ONLY))
        if (desk := await self._support_desk(message, text)) is not None:
            return welcome.then(desk)
        return welcome.then(await self._answer(message, bot, text, memory))

    async def _support_desk(self, message: InboundMessage, text: str) -> Reply | None:
        """A quoted protocol gets its status; a request for a ticket gets one, with its protocol."""
        protocol = find_protocol(text)
        if protocol is None and matches_keyword([text], TICKET_REQUESTS) is None:
            return None
        async with self._connect() as conn:
            if protocol is not None:
                return _text(await ticket_status(conn, message.conversation_id, protocol))
            opened = await open_ticket(conn, message.conversation_id, text)
        _logger.info("conversation %s: ticket %s opened by the bot", message.conversation_id, opened)
        return _text(TICKET_OPENED.format(protocol=opened))

    async def ask(self, message: InboundMessage, prompt: str) -> str:
        """A flow's AI block: the model's answer to `prompt` with the conversation's bot's
        instructions and gateway policy (budget, usage log, cache and fallback as for replies);
        raises AskFailed when the budget refuses or the providers fail."""
        async with self._connect() as conn:
            bot = await find_bot(conn, message)
            policy = await load_policy(conn, message.tenant_id, bot.model_policy_id if bot else None)
            gateway = await self._gateways.for_tenant(conn, message.tenant_id)
        account = accounting(bot, message) if bot is not None else {
            "tenant_id": str(message.tenant_id), "conversation_id": str(message.conversation_id),
            "message_id": str(message.message_id), "request_id": message.wamid}  # fmt: skip
        request = ChatRequest(messages=(ChatMessage(role="user", content=prompt),),
                              system=bot.system_prompt.strip() if bot else "", feature=FLOW_FEATURE,
                              max_tokens=bot.max_tokens if bot else 600, **account)  # fmt: skip
        response = await gateway.chat(request, policy)
        if response.result is None or not response.result.text.strip():
            raise AskFailed(_failure_reason(response))
        return response.result.text.strip()[:_TEXT_MAX]

    async def _answer(self, message: InboundMessage, bot: Bot, text: str, memory: Memory) -> Reply:
        """The model's reply from knowledge and memory; its voice note when the bot speaks."""
        async with self._connect() as conn:
            policy = await load_policy(conn, message.tenant_id, bot.model_policy_id)
            gateway = await self._gateways.for_tenant(conn, message.tenant_id)
        knowledge = await self._knowledge.passages(bot, message, text) if bot.knowledge_enabled else ()
        history = memory.history(message.message_id, bot.memory_turns)
        memory = await self._summarizer.refresh(memory, gateway, policy, accounting(bot, message))
        request = build_request(bot=bot, message=message, text=text, history=history, summary=memory.summary,
                                knowledge=knowledge, intent=memory.intent)  # fmt: skip
        response = await gateway.chat(request, policy)
        if response.result is None or not response.result.text.strip():
            return _give_up(message, bot, _failure_reason(response))
        reply = response.result.text.strip()[:_TEXT_MAX]
        answer = Reply(messages=(Outgoing(body={"type": "text", "text": {"body": reply}},
                                          ai=_ai_figures(response)),))  # fmt: skip
        if self._speaker is not None and (
            bot.tts_mode == "always" or (bot.tts_mode == "on_voice" and message.is_voice)
        ):
            media_id = await self._speaker.media_id(message, bot, reply)
            if media_id is not None:
                voice = Outgoing(body={"type": "audio", "audio": {"id": media_id, "voice": True}})
                answer = answer.then(Reply(messages=(voice,)))
        return answer

    async def _listen(self, message: InboundMessage, bot: Bot) -> str | Refusal | None:
        """The voice note's transcript (stored earlier by a try that then failed, or new)."""
        async with self._connect() as conn:
            row = await (await conn.execute(_TRANSCRIPT, (message.message_id,))).fetchone()
        if row is not None and row["transcription"]:
            return str(row["transcription"])
        if self._listener is None or message.media_storage_path is None:
            return None
        audio = await self._media.get(message.media_storage_path)
        return await self._listener.transcribe(message, audio, bot.id)

    def _hand_off(self, message: InboundMessage, bot: Bot, reason: str) -> Reply:
        """A person takes over: say so (or, outside business hours, when they will)."""
        open_now = is_open(bot.business_hours, bot.local_time(self._clock()))
        _logger.info("conversation %s handed to humans: %s", message.conversation_id, reason)
        return _text(HANDOFF_NOTICE if open_now else bot.away_message or AWAY_FALLBACK).then(
            Reply(handoff=reason)
        )


async def _first_message(conn: Connection, message: InboundMessage) -> bool:
    row = await (await conn.execute(_SEEN_BEFORE, {"id": message.message_id})).fetchone()
    return not (row and row["seen"])


def _text(text: str) -> Reply:
    return Reply(messages=(Outgoing(body={"type": "text", "text": {"body": text[:_TEXT_MAX]}}),))


def _give_up(message: InboundMessage, bot: Bot, reason: str) -> Reply:
    """The AI cannot answer (budget, providers): the bot's fallback text, then a person."""
    _logger.warning("conversation %s handed to humans: %s", message.conversation_id, reason)
    return _text(bot.fallback_message).then(Reply(handoff=reason))


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
