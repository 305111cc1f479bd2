"""Pure decisions of the bot: what the customer asked for, whether humans are at work.

No I/O here: the pipeline reads the rows and the clock and asks these functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, time

from zapbase.text import content_words, fold

__all__ = [
    "AWAY_FALLBACK",
    "CANNOT_LISTEN",
    "DAILY_CAP_REASON",
    "HANDOFF_NOTICE",
    "HUMAN_REQUESTS",
    "MEDIA_ONLY",
    "TICKET_OPENED",
    "TICKET_REQUESTS",
    "accepts_offer",
    "find_protocol",
    "greeting_only",
    "is_open",
    "matches_keyword",
]

# Texts the customer reads (pt-BR).
HANDOFF_NOTICE = "Certo! Vou chamar uma pessoa da nossa equipe. Aguarde um instante, por favor."
AWAY_FALLBACK = "Nossa equipe está fora do horário de atendimento agora. Responderemos assim que possível."
CANNOT_LISTEN = (
    "Desculpe, ainda não consigo ouvir áudios por aqui. Pode escrever sua mensagem em texto, por favor?"
)
MEDIA_ONLY = (
    "Recebi seu arquivo, mas por enquanto só consigo ler mensagens de texto. "
    "Pode me contar por escrito como posso ajudar?"
)
DAILY_CAP_REASON = "daily bot reply cap reached ({scope})"
TICKET_OPENED = (
    "Registrei seu chamado com o protocolo {protocol}. Nossa equipe vai cuidar dele; "
    "para saber como está, é só me enviar esse número."
)

# Asking for a person in words no bot needs to list among its handoff keywords.
HUMAN_REQUESTS = (
    "atendente",
    "atendimento humano",
    "falar com uma pessoa",
    "falar com alguem",
    "falar com um humano",
    "pessoa de verdade",
    "ser humano",
)
# A "yes" to the bot's offer of a person ("Posso chamar um atendente humano?").
_YES = frozenset(
    {"sim", "pode", "pode sim", "quero", "claro", "ok", "sim por favor", "pode ser", "sim quero"}
)
_OFFER_WORDS = ("atendente", "humano", "pessoa da nossa equipe")
# Asking for a ticket to be opened (the bot answers with its protocol).
TICKET_REQUESTS = (
    "abrir chamado",
    "abrir um chamado",
    "abrir ticket",
    "abrir um ticket",
    "abrir protocolo",
    "abrir um protocolo",
    "registrar chamado",
    "registrar um chamado",
)
# A protocol as customers type it: BR-20261203-0001, br 20261203 0001, BR202612030001.
_PROTOCOL = re.compile(r"\bBR[\s-]?(\d{8})[\s-]?(\d{4,6})\b", re.IGNORECASE)
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def matches_keyword(texts: Sequence[str | None], keywords: Sequence[str]) -> str | None:
    """The first keyword found as whole words in any text, case- and accent-insensitively."""
    folded = [f" {fold(t)} " for t in texts if t]
    for keyword in keywords:
        wanted = fold(keyword)
        if wanted and any(f" {wanted} " in text for text in folded):
            return keyword
    return None


def find_protocol(text: str) -> str | None:
    """The first ticket protocol quoted in `text`, written the canonical way, or None."""
    found = _PROTOCOL.search(text)
    return f"BR-{found[1]}-{found[2]}" if found else None


def accepts_offer(text: str, last_bot_turn: str | None) -> bool:
    """The customer answers yes right after the bot offered to call a person."""
    if not last_bot_turn or fold(text) not in _YES:
        return False
    offered = fold(last_bot_turn)
    return "?" in last_bot_turn and any(word in offered for word in _OFFER_WORDS)


def greeting_only(text: str) -> bool:
    """ "Oi", "Bom dia!", "Olá, tudo bem?": nothing to look up, the welcome answers it."""
    return not content_words(text)


def _clock(value: str) -> time:
    # "24:00" closes a day that runs to midnight
    return time.max if value == "24:00" else time.fromisoformat(value)


def is_open(hours: Mapping[str, object], at: datetime) -> bool:
    """Whether `at` (in the tenant's time zone) falls in `bots.business_hours`:
    {"mon": [["09:00", "18:00"]], ..., "holidays": ["2026-12-25"]}; {} is always open,
    a day left out is closed, a holiday is closed all day."""
    if not hours:
        return True
    holidays = hours.get("holidays")
    if isinstance(holidays, list) and at.date().isoformat() in holidays:
        return False
    ranges = hours.get(_DAYS[at.weekday()])
    if not isinstance(ranges, list):
        return False
    now = at.time().replace(tzinfo=None)
    for pair in ranges:
        if isinstance(pair, list) and len(pair) == 2:
            start, end = _clock(str(pair[0])), _clock(str(pair[1]))
            if start <= now < end:
                return True
    return False
