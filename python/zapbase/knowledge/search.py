"""Hybrid search over a tenant's knowledge (`match_knowledge`), as the worker runs it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from pgvector import Vector

from zapbase.db.pool import Connect, transaction
from zapbase.knowledge.embedders import MeteredEmbedder

__all__ = ["SEARCH_FEATURE", "Match", "search_knowledge"]

SEARCH_FEATURE = "knowledge.search"

_MATCH = (
    "select * from public.match_knowledge(query_text => %(q)s, query_embedding => %(v)b::extensions.vector,"
    " match_count => %(n)s, embedding_model => %(m)s, bot_id => %(bot)s, tenant_id => %(tenant)s)"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Match:
    """One row of the fused ranking; `fts_position` and `semantic_position` are the
    chunk's rank in the full-text and vector lists (None: not among that list's candidates)."""

    rank: int
    chunk_id: uuid.UUID
    source_id: uuid.UUID
    title: str
    heading_path: tuple[str, ...]
    content: str
    score: float
    fts_position: int | None
    semantic_position: int | None
    similarity: float | None


async def search_knowledge(
    connect: Connect,
    embedder: MeteredEmbedder | None,
    tenant_id: uuid.UUID,
    query: str,
    *,
    bot_id: uuid.UUID | None = None,
    limit: int = 5,
) -> list[Match]:
    """Full text plus, with an embedder, the vectors that embedder wrote (like with like:
    the query is embedded by the same model, its cost settled as `knowledge.search`)."""
    vector = None
    model = None
    if embedder is not None and query.strip():
        embedded = await embedder.embed(tenant_id, [query], feature=SEARCH_FEATURE, bot_id=bot_id)
        vector = Vector(embedded.vectors[0])
        model = embedder.embedder.name
    params = {"q": query, "v": vector, "n": limit, "m": model, "bot": bot_id, "tenant": tenant_id}
    async with transaction(connect) as conn:
        rows = await (await conn.execute(_MATCH, params)).fetchall()
    return [
        Match(
            rank=n,
            chunk_id=r["chunk_id"],
            source_id=r["source_id"],
            title=r["title"],
            heading_path=tuple(r["heading_path"]),
            content=r["content"],
            score=r["score"],
            fts_position=r["fts_position"],
            semantic_position=r["semantic_position"],
            similarity=r["similarity"],
        )
        for n, r in enumerate(rows, start=1)
    ]
