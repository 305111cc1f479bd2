"""Portuguese text folding, the one used wherever words are compared: handoff keywords,
the offline answerer, the hashing embedder.

    fold("Não, OBRIGADO!")            == "nao obrigado"
    content_words("Quais os horários de vocês?") == ["horario"]
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["STOPWORDS", "content_words", "fold"]

_WORD = re.compile(r"[^\W_]+")

#: Words too common in Portuguese messages to say what one is about (accent-free form):
#: function words, and the courtesies and fillers of a customer's question.
STOPWORDS = frozenset(
    {
        "a", "o", "as", "os", "um", "uma", "uns", "umas", "de", "do", "da", "dos", "das", "em", "no",
        "na", "nos", "nas", "num", "numa", "ao", "aos", "por", "pelo", "pela", "pelos", "pelas", "para",
        "pra", "pro", "com", "sem", "sob", "sobre", "entre", "ate", "e", "ou", "mas", "que", "se",
        "nao", "sim", "ja", "mais", "menos", "muito", "muita", "mesmo", "eu", "tu", "voce", "voces",
        "ele", "ela", "eles", "elas", "me", "te", "lhe", "meu", "minha", "seu", "seus", "sua", "suas",
        "tua", "nosso", "nossa", "isso", "isto", "aquilo", "esse", "essa", "este", "esta", "aquele",
        "aquela", "qual", "quais", "quando", "onde", "como", "porque", "quem", "ser", "sao", "era",
        "foi", "estar", "estou", "estao", "tem", "tenho", "ter", "ha", "vai", "vou", "pode", "posso",
        "quero", "queria", "gostaria", "saber", "favor", "tambem", "ola", "oi", "bom", "boa", "dia",
        "tarde", "noite", "obrigado", "obrigada", "ai", "la",
    }
)  # fmt: skip


def fold(text: str) -> str:
    """Casefolded, accents stripped, punctuation to spaces, runs of spaces collapsed."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(_WORD.findall(plain))


def content_words(text: str) -> list[str]:
    """The words of `text` that carry its meaning, in order: folded, without stopwords or
    single letters, a plural `s` dropped ("horarios" meets "horario"; a light fold beats a
    stemmer dependency)."""
    return [
        word[:-1] if len(word) > 3 and word.endswith("s") else word
        for word in fold(text).split()
        if len(word) > 1 and word not in STOPWORDS
    ]
