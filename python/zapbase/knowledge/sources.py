"""A tenant's knowledge sources as the service role: find the tenant, list, remove."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from zapbase.db.pool import Connect, transaction
from zapbase.errors import ZapbaseError

__all__ = ["SourceInfo", "TenantNotFound", "list_sources", "remove_source", "resolve_tenant"]

_TENANT = "select id from public.tenants where slug = %s or id::text = %s"
_LIST = (
    "select id, title, kind, status, bot_id, origin, chunk_count, token_count, embedding_model, error,"
    " updated_at from public.knowledge_sources where tenant_id = %s order by created_at, id"
)
_REMOVE = "delete from public.knowledge_sources where tenant_id = %s and id = %s"


class TenantNotFound(ZapbaseError):
    """No tenant has this slug or id."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceInfo:
    id: uuid.UUID
    title: str
    kind: str
    status: str
    bot_id: uuid.UUID | None
    origin: str | None
    chunk_count: int
    token_count: int
    embedding_model: str | None
    error: str | None
    updated_at: datetime


async def resolve_tenant(connect: Connect, ref: str) -> uuid.UUID:
    """The id of the tenant whose slug (or id) is `ref`."""
    async with transaction(connect) as conn:
        row = await (await conn.execute(_TENANT, (ref, ref))).fetchone()
    if row is None:
        raise TenantNotFound(f"no tenant with slug or id {ref!r}")
    tenant_id: uuid.UUID = row["id"]
    return tenant_id


async def list_sources(connect: Connect, tenant_id: uuid.UUID) -> list[SourceInfo]:
    async with transaction(connect) as conn:
        rows = await (await conn.execute(_LIST, (tenant_id,))).fetchall()
    return [SourceInfo(**row) for row in rows]


async def remove_source(connect: Connect, tenant_id: uuid.UUID, source_id: uuid.UUID) -> bool:
    """Delete a source and (by cascade) its chunks; False when the tenant has no such source."""
    async with transaction(connect) as conn:
        cur = await conn.execute(_REMOVE, (tenant_id, source_id))
        return cur.rowcount == 1
