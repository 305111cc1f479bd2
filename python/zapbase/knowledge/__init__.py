"""Knowledge-base ingestion without the database: parse → chunk → embed.

    doc = parse_file(Path("entrega.md"))          # DocumentError if unreadable
    chunks = chunk_document(doc)                   # heading paths, overlap, sha256
    embedder = select_embedder()                   # OpenAI ▸ local MiniLM ▸ hashing
    result = await embedder.embed([c.embedding_text for c in chunks])

Storing (`knowledge_sources`, `document_chunks`) and searching (`match_knowledge`) are
SQL; keep `embedder.name` with the vectors and embed queries with the same embedder.
The worker's side of that lives in `zapbase.knowledge.store` (`KnowledgeService`: ingestion,
re-embedding, search, each embedding call settled in `ai_usage`), `zapbase.knowledge.sources`
(list, remove) and `zapbase.knowledge.seed` (the demo tenant's knowledge base).
"""

from __future__ import annotations

from zapbase.knowledge.chunking import DEFAULT_CHUNKING, Chunk, ChunkingOptions, chunk_blocks, chunk_document
from zapbase.knowledge.embedders import (
    EMBEDDING_DIMS,
    Embedder,
    EmbedderUnavailable,
    Embeddings,
    HashingEmbedder,
    MiniLMEmbedder,
    OpenAIEmbedder,
    select_embedder,
)
from zapbase.knowledge.parsers import (
    MEDIA_TYPES,
    Block,
    DocumentError,
    ParsedDocument,
    media_type_for,
    parse_bytes,
    parse_file,
)

__all__ = [
    "DEFAULT_CHUNKING",
    "EMBEDDING_DIMS",
    "MEDIA_TYPES",
    "Block",
    "Chunk",
    "ChunkingOptions",
    "DocumentError",
    "Embedder",
    "EmbedderUnavailable",
    "Embeddings",
    "HashingEmbedder",
    "MiniLMEmbedder",
    "OpenAIEmbedder",
    "ParsedDocument",
    "chunk_blocks",
    "chunk_document",
    "media_type_for",
    "parse_bytes",
    "parse_file",
    "select_embedder",
]
