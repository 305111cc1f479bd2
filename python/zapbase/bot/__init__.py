"""The AI bot: how a customer message in bot mode becomes a reply (see `pipeline`).

config     the bot row, its gateway policy, daily caps
rules      pure decisions: handoff keywords, business hours, greetings; pt-BR texts
memory     session_context as chat turns, rolling summary
knowledge  passages of the tenant's knowledge base, with the embedder that wrote the tenant's vectors
prompt     the chat request
tickets    the support desk: a quoted protocol's status, a ticket opened on request
voice      transcription of voice notes, spoken replies
pipeline   AIResponder, the processor's BotResponder
wiring     AIResponder from Settings
"""

from __future__ import annotations

from zapbase.bot.pipeline import AIResponder
from zapbase.bot.rules import HANDOFF_NOTICE, matches_keyword
from zapbase.bot.wiring import ai_responder

__all__ = ["HANDOFF_NOTICE", "AIResponder", "ai_responder", "matches_keyword"]
