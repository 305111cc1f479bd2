"""The chat request of one reply: the bot's instructions, knowledge, memory, the message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypedDict

from zapbase.ai.types import ChatMessage, ChatRequest
from zapbase.bot.config import Bot
from zapbase.knowledge.search import Match
from zapbase.whatsapp.inbound import InboundMessage

__all__ = ["REPLY_FEATURE", "Accounting", "accounting", "build_request", "passages"]

REPLY_FEATURE = "reply"


def passages(matches: Sequence[Match]) -> tuple[str, ...]:
    """Knowledge chunks as the model reads them: where in the document, then the text."""
    return tuple(
        f"{' › '.join(m.heading_path)}: {m.content.strip()}" if m.heading_path else m.content.strip()
        for m in matches
    )


class Accounting(TypedDict):
    """What the ledger writes on every usage row of a message's calls."""

    tenant_id: str
    conversation_id: str
    message_id: str
    bot_id: str
    request_id: str | None
    phone: str | None


def accounting(bot: Bot, message: InboundMessage) -> Accounting:
    return {
        "tenant_id": str(message.tenant_id),
        "conversation_id": str(message.conversation_id),
        "message_id": str(message.message_id),
        "bot_id": str(bot.id),
        "request_id": message.wamid,
        "phone": f"+{message.wa_id}" if message.wa_id else None,
    }


def build_request(
    *,
    bot: Bot,
    message: InboundMessage,
    text: str,
    history: Sequence[ChatMessage],
    summary: str | None,
    knowledge: Sequence[str],
    intent: str | None = None,
) -> ChatRequest:
    """System prompt, then the formatter's rules (followed in the same call rather than a
    second pass: half the cost and latency of a rewrite), then the rolling summary and the
    customer's classified intent (`Memory.intent`); the knowledge travels apart (each
    provider places it); the turns end with `text`."""
    system = [bot.system_prompt.strip()]
    if bot.formatter_prompt:
        system.append(f"Como escrever a resposta: {bot.formatter_prompt.strip()}")
    if summary:
        system.append(f"Resumo da conversa até aqui:\n{summary.strip()}")
    if intent:
        system.append(f"Intenção do cliente, segundo o classificador: {intent}")
    turns = [*history]
    if turns and turns[-1].role == "user":
        # the customer wrote twice in a row: one turn, as the providers want them alternating
        turns[-1] = ChatMessage(role="user", content=f"{turns[-1].content}\n{text}")
    else:
        turns.append(ChatMessage(role="user", content=text))
    return ChatRequest(
        messages=tuple(turns),
        system="\n\n".join(part for part in system if part),
        max_tokens=bot.max_tokens,
        temperature=bot.temperature,
        knowledge=tuple(knowledge),
        feature=REPLY_FEATURE,
        **accounting(bot, message),
    )
