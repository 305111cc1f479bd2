"""Offline provider: answers in pt-BR from the request's knowledge passages.

It is the last link of every chain (a customer always gets an answer, even when every
remote provider is down or no key is configured) and the provider of the offline demo.
Deterministic and free: it picks the passage(s) sharing the most words with the user's
last message (accent- and case-insensitive, common words ignored) and quotes them, or
says it did not find the answer and offers a human. Token counts are estimated as
len(text) // 4. (Offline embeddings are the knowledge module's `HashingEmbedder`.)
"""

from __future__ import annotations

import hashlib

from zapbase.ai.types import ChatRequest, ChatResult, Usage
from zapbase.text import content_words

__all__ = [
    "FOUND_PREFIX",
    "LOCAL_MODEL",
    "NOT_FOUND_REPLY",
    "LocalProvider",
    "answer",
]

# The registry names it local/local-chat (seed/20_ai.sql), like every link: provider/model.
LOCAL_MODEL = "local-chat"
FOUND_PREFIX = "Encontrei esta informação para você:"
NOT_FOUND_REPLY = (
    "Desculpe, não encontrei essa informação na nossa base de conhecimento. "
    "Posso chamar um atendente humano para ajudar?"
)
_CLOSING = "Posso ajudar em algo mais?"
_MAX_PASSAGES = 2

class LocalProvider:
    """Knowledge-passage answerer; never raises, costs nothing."""

    def __init__(self, *, name: str = "local") -> None:
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def aclose(self) -> None:
        return None

    async def chat(self, request: ChatRequest, model: str) -> ChatResult:
        text = answer(request.last_user_text, request.knowledge)
        prompt_chars = len(request.system) + sum(len(m.content) for m in request.messages)
        prompt_chars += sum(len(p) for p in request.knowledge)
        digest = hashlib.sha256(f"{request.last_user_text}\x00{text}".encode()).hexdigest()
        return ChatResult(
            text=text,
            provider=self._name,
            model=model,
            usage=Usage(input_tokens=prompt_chars // 4, output_tokens=len(text) // 4),
            latency_ms=0,
            request_id=f"local_{digest[:16]}",
            stop_reason="end_turn",
        )


def answer(question: str, passages: tuple[str, ...]) -> str:
    """The pt-BR reply to `question` from the best-matching passages."""
    asked = set(content_words(question))
    scored = [(len(asked & set(content_words(p))), i, p) for i, p in enumerate(passages)]
    best = max((score for score, _, _ in scored), default=0)
    if best == 0:
        return NOT_FOUND_REPLY
    # Passages tied at the best score, in their given (retrieval) order.
    chosen = [p.strip() for score, _, p in scored if score == best][:_MAX_PASSAGES]
    return "\n\n".join([FOUND_PREFIX, *chosen, _CLOSING])
