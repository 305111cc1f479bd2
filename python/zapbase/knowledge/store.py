"""Knowledge ingestion against Postgres: the worker's half of knowledge search.

    service = KnowledgeService(connect=pool.connection, embedder=HashingEmbedder())
    result = await service.add_file(tenant_id, Path("trocas.md"))   # created | unchanged | ...
    matches = await service.search(tenant_id, "posso trocar um produto?")

One ingestion: parse → chunk → register the source by content hash
(`knowledge_upsert_source`: the same bytes in the same scope with the same embedder are
`unchanged`, and nothing else happens) → embed the chunks that no source of the tenant
has embedded with this model yet → settle that cost (`ai_record_usage`, feature
`knowledge.ingest`) → `knowledge_insert_chunks` → `knowledge_mark_ready`. A failure after
registration leaves the source `failed`, with its error and no chunks.

Another embedder is another model: adding a file again re-embeds it (`replaced`), and
`reembed()` moves every chunk already stored to this embedder (`knowledge_chunks_to_embed`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.to_thread
from psycopg.types.json import Jsonb

from zapbase.db.pool import Connect, Connection, transaction
from zapbase.errors import ZapbaseError
from zapbase.knowledge.chunking import (
    DEFAULT_CHUNKING,
    Chunk,
    ChunkingOptions,
    chunk_document,
    embedding_text,
)
from zapbase.knowledge.embedders import Embedder, MeteredEmbedder
from zapbase.knowledge.parsers import DocumentError, media_type_for, parse_bytes
from zapbase.knowledge.search import Match, search_knowledge

__all__ = ["INGEST_FEATURE", "Action", "IngestResult", "KnowledgeService", "ReembedResult"]

_logger = logging.getLogger(__name__)

INGEST_FEATURE = "knowledge.ingest"
Action = Literal["created", "replaced", "unchanged", "in_progress", "failed"]
_TEXT_TYPES = frozenset({"text/markdown", "text/plain", "text/html"})

_UPSERT = (
    "select * from public.knowledge_upsert_source(tenant_id => %(tenant)s, content_hash => %(hash)s,"
    " title => %(title)s, kind => 'file', origin => %(origin)s, mime_type => %(mime)s, bot_id => %(bot)s,"
    " embedding_model => %(model)s, metadata => %(meta)s)"
)
_COUNT = "select chunk_count from public.knowledge_sources where tenant_id = %s and id = %s"
# Vectors the tenant already paid for, by the hash of what was embedded (path + text).
_REUSABLE = (
    "select distinct on (c.content_hash) c.content_hash, c.embedding::text as embedding"
    " from public.document_chunks c"
    " where c.tenant_id = %s and c.embedding_model = %s and c.content_hash = any(%s)"
)
_INSERT = "select public.knowledge_insert_chunks(%s, %s, %s)"
_READY = "select 1 from public.knowledge_mark_ready(%s, %s)"
_FAILED = "select 1 from public.knowledge_mark_failed(%s, %s, %s)"
_CLAIM = "select * from public.knowledge_claim_sources(max_sources => %s)"
_ADOPT = "update public.knowledge_sources set embedding_model = %s where tenant_id = %s and id = %s"
_TO_EMBED = (
    "select * from public.knowledge_chunks_to_embed(embedding_model => %s, tenant_id => %s, max_chunks => %s)"
)
_SET = "select public.knowledge_set_embeddings(%s, %s, %s) as updated"


@dataclass(frozen=True, slots=True, kw_only=True)
class IngestResult:
    """What one ingestion did. `embedded` chunks went to the embedder (`tokens`,
    `cost_usd`); the others reused vectors the tenant already had."""

    origin: str
    title: str
    action: Action
    source_id: uuid.UUID | None
    chunks: int = 0
    embedded: int = 0
    tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    error: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ReembedResult:
    chunks: int
    tokens: int
    cost_usd: Decimal


def _parse(data: bytes, media_type: str, options: ChunkingOptions) -> tuple[str | None, list[Chunk]]:
    document = parse_bytes(data, media_type=media_type)
    return document.title, chunk_document(document, options)


def _token_estimate(text: str) -> int:
    return max(1, -(-len(text) // 4))


class KnowledgeService:
    """Ingests, re-embeds and searches the knowledge of one embedder.

    Parameters:
        connect: lends connections (a pool's `connection`, or `borrow(conn)`).
        embedder: writes the vectors; searches embed the query with it too.
        gateway_id: the `ai_models` row that prices its calls (default `provider/model`).
        batch_size: texts per embedding request, chunks per insert.
    """

    def __init__(
        self,
        *,
        connect: Connect,
        embedder: Embedder,
        chunking: ChunkingOptions = DEFAULT_CHUNKING,
        gateway_id: str | None = None,
        batch_size: int = 128,
    ) -> None:
        self._connect = connect
        self._embedder = MeteredEmbedder(
            connect=connect, embedder=embedder, gateway_id=gateway_id, batch_size=batch_size
        )
        self._model = embedder.name
        self._chunking = chunking
        self._batch = batch_size

    async def add_file(
        self, tenant_id: uuid.UUID, path: Path, *, bot_id: uuid.UUID | None = None, origin: str | None = None
    ) -> IngestResult:
        """Ingest a .md/.txt/.html/.pdf file; `origin` defaults to its absolute path."""
        data = await anyio.Path(path).read_bytes()
        return await self.add_document(
            tenant_id,
            data,
            media_type=media_type_for(path),
            origin=origin or str(path.resolve()),
            title=path.stem,
            bot_id=bot_id,
            metadata={"file_name": path.name},
        )

    async def add_document(
        self,
        tenant_id: uuid.UUID,
        data: bytes,
        *,
        media_type: str,
        origin: str,
        title: str,
        bot_id: uuid.UUID | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> IngestResult:
        """Ingest one document's bytes; `title` serves when the document names none."""
        problem: str | None = None
        chunks: list[Chunk] = []
        try:
            # PDFs can take a while: keep the event loop free
            found, chunks = await anyio.to_thread.run_sync(partial(_parse, data, media_type, self._chunking))
            title = found or title
        except DocumentError as exc:
            problem = str(exc)
        title = title.strip()[:300] or "Sem título"
        params = {
            "tenant": tenant_id,
            "hash": hashlib.sha256(data).hexdigest(),
            "title": title,
            "origin": origin,
            "mime": media_type,
            "bot": bot_id,
            "model": self._model,
            "meta": Jsonb({**(metadata or {}), "bytes": len(data)}),
        }
        async with transaction(self._connect) as conn:
            # read before the upsert: a replaced source loses its chunks there
            reusable = await self._reusable(conn, tenant_id, chunks)
            row = await (await conn.execute(_UPSERT, params)).fetchone()
            assert row is not None
            source_id: uuid.UUID = row["source_id"]
            action: Action = row["action"]
            if action in ("unchanged", "in_progress"):
                count = await (await conn.execute(_COUNT, (tenant_id, source_id))).fetchone()
                stored = count["chunk_count"] if count else 0
                return IngestResult(
                    origin=origin, title=title, action=action, source_id=source_id, chunks=stored
                )
        if problem is not None:
            return await self._failed(tenant_id, source_id, origin, title, problem)
        return await self._fill(tenant_id, source_id, chunks, reusable, origin, title, action, bot_id)

    async def process_pending(self, max_sources: int = 5) -> list[IngestResult]:
        """Ingest texts and FAQs typed in the app (pending) and sources a dead worker
        left processing; `knowledge_claim_sources` hands each to one worker only."""
        async with transaction(self._connect) as conn:
            claimed = await (await conn.execute(_CLAIM, (max_sources,))).fetchall()
        results: list[IngestResult] = []
        for src in claimed:
            tenant_id, source_id, title = src["tenant_id"], src["id"], src["title"]
            origin = src["origin"] or f"{src['kind']}:{source_id}"
            if src["content"] is None:
                # a file's bytes are with whoever added it: only they can try again
                error = "the ingestion of this file was interrupted: add the file again"
                results.append(await self._failed(tenant_id, source_id, origin, title, error))
                continue
            media_type = src["mime_type"] if src["mime_type"] in _TEXT_TYPES else "text/markdown"
            try:
                _, chunks = await anyio.to_thread.run_sync(
                    partial(_parse, src["content"].encode(), media_type, self._chunking)
                )
            except DocumentError as exc:
                results.append(await self._failed(tenant_id, source_id, origin, title, str(exc)))
                continue
            async with transaction(self._connect) as conn:
                await conn.execute(_ADOPT, (self._model, tenant_id, source_id))
                reusable = await self._reusable(conn, tenant_id, chunks)
            action: Action = "created" if src["processed_at"] is None else "replaced"
            results.append(
                await self._fill(tenant_id, source_id, chunks, reusable, origin, title, action, src["bot_id"])
            )
        return results

    async def reembed(self, tenant_id: uuid.UUID | None = None) -> ReembedResult:
        """Embed with this embedder every stored chunk that another one wrote (every
        tenant's when `tenant_id` is None), each tenant's cost settled separately."""
        chunks = tokens = 0
        cost = Decimal(0)
        while True:
            async with transaction(self._connect) as conn:
                cur = await conn.execute(_TO_EMBED, (self._model, tenant_id, self._batch))
                rows = await cur.fetchall()
            if not rows:
                return ReembedResult(chunks=chunks, tokens=tokens, cost_usd=cost)
            by_tenant: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
            for row in rows:
                by_tenant[row["chunk_tenant_id"]].append(row)
            for tenant, group in by_tenant.items():
                embedded = await self._embedder.embed(
                    tenant,
                    [embedding_text(r["heading_path"], r["content"]) for r in group],
                    feature=INGEST_FEATURE,
                    metadata={"reembed_from": group[0]["current_model"]},
                )
                body = json.dumps(
                    [{"chunk_id": str(r["chunk_id"]), "embedding": v}
                     for r, v in zip(group, embedded.vectors, strict=True)]
                )  # fmt: skip
                async with transaction(self._connect) as conn:
                    done = await (await conn.execute(_SET, (tenant, self._model, body))).fetchone()
                updated = done["updated"] if done else 0
                chunks, tokens, cost = chunks + updated, tokens + embedded.tokens, cost + embedded.cost_usd
                if updated == 0:
                    # the chunks vanished meanwhile (source removed): do not spin on them
                    _logger.warning("re-embedding: %d chunks of tenant %s were gone", len(group), tenant)
                    return ReembedResult(chunks=chunks, tokens=tokens, cost_usd=cost)

    async def search(
        self, tenant_id: uuid.UUID, query: str, *, bot_id: uuid.UUID | None = None, limit: int = 5
    ) -> list[Match]:
        """Hybrid search with this embedder's vectors (see `search_knowledge`)."""
        return await search_knowledge(
            self._connect, self._embedder, tenant_id, query, bot_id=bot_id, limit=limit
        )

    # -- internals ---------------------------------------------------------------------

    async def _reusable(self, conn: Connection, tenant_id: uuid.UUID, chunks: list[Chunk]) -> dict[str, str]:
        if not chunks:
            return {}
        cur = await conn.execute(_REUSABLE, (tenant_id, self._model, [c.sha256 for c in chunks]))
        return {r["content_hash"]: r["embedding"] for r in await cur.fetchall()}

    async def _fill(
        self,
        tenant_id: uuid.UUID,
        source_id: uuid.UUID,
        chunks: list[Chunk],
        reusable: dict[str, str],
        origin: str,
        title: str,
        action: Action,
        bot_id: uuid.UUID | None,
    ) -> IngestResult:
        """Embed, settle, store and close a source registered as processing."""
        todo = [c for c in chunks if c.sha256 not in reusable]
        try:
            embedded = await self._embedder.embed(
                tenant_id,
                [c.embedding_text for c in todo],
                feature=INGEST_FEATURE,
                bot_id=bot_id,
                metadata={"source_id": str(source_id)},
            )
            vectors: dict[str, Any] = dict(reusable)
            vectors.update(zip((c.sha256 for c in todo), embedded.vectors, strict=True))
            for start in range(0, len(chunks), self._batch):
                batch = chunks[start : start + self._batch]
                payload = [self._chunk_json(c, vectors[c.sha256]) for c in batch]
                async with transaction(self._connect) as conn:
                    await conn.execute(_INSERT, (tenant_id, source_id, json.dumps(payload)))
            async with transaction(self._connect) as conn:
                await conn.execute(_READY, (tenant_id, source_id))
        except ZapbaseError as exc:  # provider, registry: expected, reported per source
            return await self._failed(tenant_id, source_id, origin, title, str(exc))
        except Exception as exc:
            await self._failed(tenant_id, source_id, origin, title, f"{type(exc).__name__}: {exc}")
            raise
        return IngestResult(
            origin=origin,
            title=title,
            action=action,
            source_id=source_id,
            chunks=len(chunks),
            embedded=len(todo),
            tokens=embedded.tokens,
            cost_usd=embedded.cost_usd,
        )

    def _chunk_json(self, chunk: Chunk, vector: Any) -> dict[str, Any]:
        return {
            "position": chunk.position,
            "heading_path": list(chunk.heading_path),
            "content": chunk.text,
            "content_hash": chunk.sha256,
            "token_count": _token_estimate(chunk.embedding_text),
            "embedding": vector,  # a list of floats, or pgvector text when reused
            "embedding_model": self._model,
        }

    async def _failed(
        self, tenant_id: uuid.UUID, source_id: uuid.UUID, origin: str, title: str, error: str
    ) -> IngestResult:
        _logger.warning("knowledge source %s (%s) failed: %s", source_id, origin, error)
        async with transaction(self._connect) as conn:
            await conn.execute(_FAILED, (tenant_id, source_id, error))
        return IngestResult(origin=origin, title=title, action="failed", source_id=source_id, error=error)
