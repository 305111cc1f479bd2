"""Offline provider: answers in pt-BR from the request's knowledge passages.

It is the last link of every chain (a customer always gets an answer, even when every
remote provider is down or no key is configured) and the provider of the offline demo.
Deterministic and free: it picks the passage(s) sharing the most words with the user's
last message (accent- and case-insensitive, common words ignored) and quotes them, or
says it did not find the answer and offers a human. Token counts are estimated as
len(text) // 4. It also embeds text offline (`hash_embedding`), so RAG works without keys.
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata

from zapbase.ai.types import ChatRequest, ChatResult, EmbeddingRequest, EmbeddingResult, Usage

__all__ = [
    "FOUND_PREFIX",
    "LOCAL_EMBEDDING_MODEL",
    "LOCAL_MODEL",
    "NOT_FOUND_REPLY",
    "LocalProvider",
    "answer",
    "hash_embedding",
    "normalize_words",
]

# The registry names it local/local-chat (seed/20_ai.sql), like every link: provider/model.
LOCAL_MODEL = "local-chat"
LOCAL_EMBEDDING_MODEL = "local-hash"
FOUND_PREFIX = "Encontrei esta informação para você:"
NOT_FOUND_REPLY = (
    "Desculpe, não encontrei essa informação na nossa base de conhecimento. "
    "Posso chamar um atendente humano para ajudar?"
)
_CLOSING = "Posso ajudar em algo mais?"
_MAX_PASSAGES = 2

# Words too common in Portuguese questions to signal relevance (accent-free form).
_STOPWORD_TEXT = """
a o as os um uma uns umas de do da dos das em no na nos nas por pelo pela pelos pelas
para pra pro com sem sobre entre ate e ou mas que se nao sim ja mais menos muito muita
eu voce voces ele ela eles elas nos me te lhe meu minha seu sua nosso nossa isso isto
aquilo esse essa este esta aquele aquela qual quais quando onde como porque quem
ser sao estar estou esta estao tem tenho ter ha foi era vai vou pode posso quero
queria gostaria saber favor ola oi bom boa dia tarde noite obrigado obrigada ai la
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_WORD = re.compile(r"\w+")


def normalize_words(text: str) -> set[str]:
    """Content words of `text`: lower-case, accents stripped, crude plural folding."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    words: set[str] = set()
    for word in _WORD.findall(plain):
        if word in _STOPWORDS or len(word) < 2:
            continue
        # "horarios" and "horario" should meet; a light fold beats a stemmer dependency.
        words.add(word[:-1] if len(word) > 3 and word.endswith("s") else word)
    return words


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

    async def embed(self, request: EmbeddingRequest) -> EmbeddingResult:
        return EmbeddingResult(
            vectors=tuple(hash_embedding(t, request.dimensions) for t in request.texts),
            dimensions=request.dimensions,
            tokens=sum(len(t) // 4 for t in request.texts),
            provider=self._name,
            model=LOCAL_EMBEDDING_MODEL,
            latency_ms=0,
        )


def hash_embedding(text: str, dimensions: int) -> tuple[float, ...]:
    """Deterministic unit vector: signed feature hashing of the text's content words,
    so texts sharing words point in similar directions (enough for an offline RAG)."""
    vector = [0.0] * dimensions
    for word in sorted(normalize_words(text)):
        digest = hashlib.sha256(word.encode()).digest()
        index = int.from_bytes(digest[:4], "big") % dimensions
        vector[index] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        return (1.0,) + (0.0,) * (dimensions - 1)
    return tuple(v / norm for v in vector)


def answer(question: str, passages: tuple[str, ...]) -> str:
    """The pt-BR reply to `question` from the best-matching passages."""
    asked = normalize_words(question)
    scored = [(len(asked & normalize_words(p)), i, p) for i, p in enumerate(passages)]
    best = max((score for score, _, _ in scored), default=0)
    if best == 0:
        return NOT_FOUND_REPLY
    # Passages tied at the best score, in their given (retrieval) order.
    chosen = [p.strip() for score, _, p in scored if score == best][:_MAX_PASSAGES]
    return "\n\n".join([FOUND_PREFIX, *chosen, _CLOSING])
