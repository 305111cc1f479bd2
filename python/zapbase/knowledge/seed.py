"""The demo tenant's knowledge base: seed/knowledge/*.md ingested for `loja-demo`.

Idempotent: each file is registered by content hash, so a second run finds every file
`unchanged` and calls no embedder; an edited file replaces its previous version (its
origin, the path relative to the project, is the same on every checkout).

    results = ingest_seed_knowledge(target.url, settings.zapbase_project_dir)
"""

from __future__ import annotations

from pathlib import Path

import anyio

from zapbase.db.pool import Connect, borrow, connect
from zapbase.knowledge.embedders import Embedder, select_embedder
from zapbase.knowledge.parsers import MEDIA_TYPES
from zapbase.knowledge.sources import TenantNotFound, resolve_tenant
from zapbase.knowledge.store import IngestResult, KnowledgeService

__all__ = [
    "DEMO_TENANT",
    "SEED_KNOWLEDGE_DIR",
    "aingest_seed_knowledge",
    "ingest_seed_knowledge",
    "seed_files",
]

DEMO_TENANT = "loja-demo"
SEED_KNOWLEDGE_DIR = Path("seed") / "knowledge"


def seed_files(project_dir: Path) -> list[Path]:
    folder = project_dir / SEED_KNOWLEDGE_DIR
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MEDIA_TYPES)


async def aingest_seed_knowledge(
    connect: Connect, project_dir: Path, *, tenant: str = DEMO_TENANT, embedder: Embedder | None = None
) -> list[IngestResult]:
    """Ingest every seed knowledge file for `tenant` (slug or id), tenant-wide (all bots).
    Raises TenantNotFound when the seed's demo tenant is missing."""
    tenant_id = await resolve_tenant(connect, tenant)
    service = KnowledgeService(connect=connect, embedder=embedder or select_embedder())
    results = []
    for path in seed_files(project_dir):
        origin = path.relative_to(project_dir).as_posix()
        results.append(await service.add_file(tenant_id, path, origin=origin))
    return results


def ingest_seed_knowledge(
    url: str, project_dir: Path, *, tenant: str = DEMO_TENANT, embedder: Embedder | None = None
) -> list[IngestResult] | None:
    """`aingest_seed_knowledge` for synchronous callers (`zapbase setup`, `up`, `demo`), over
    `url` as the service role; None where the demo tenant does not exist (a real project)."""

    async def run() -> list[IngestResult] | None:
        async with await connect(url) as conn:
            try:
                return await aingest_seed_knowledge(
                    borrow(conn), project_dir, tenant=tenant, embedder=embedder
                )
            except TenantNotFound:
                return None

    return anyio.run(run)
