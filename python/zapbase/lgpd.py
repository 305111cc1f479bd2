"""LGPD on the storage side: the media files that anonymisation and retention queued in
`storage_deletions` (SQL cannot reach the object store) are deleted here, by the worker
job `lgpd_storage_purge`.

One transaction: the rows are locked while their objects are deleted, then the deleted
ones go and the failures stay (with the error) for the next run.

    deleted = await purge_storage(pool.connection, store)
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from psycopg.types.json import Jsonb

from zapbase.db.pool import Connect, transaction
from zapbase.storage import ObjectStore, StorageError

__all__ = ["purge_storage"]

_logger = logging.getLogger(__name__)

_CLAIM = "select id, storage_key from private.job_lgpd_storage_purge(%s)"
_DONE = "select private.lgpd_storage_purged(%s::uuid[], %s, %s)"


async def purge_storage(connect: Connect, store: ObjectStore, *, batch_size: int = 500) -> int:
    """Delete one batch of queued objects; returns how many are gone."""
    started = datetime.now(UTC)
    async with transaction(connect) as conn:
        cur = await conn.execute(_CLAIM, (batch_size,))
        deleted: list[object] = []
        failed: dict[str, str] = {}
        for row in await cur.fetchall():
            try:
                await store.delete(str(row["storage_key"]))
            except StorageError as exc:
                _logger.warning("lgpd: could not delete %s: %s", row["storage_key"], exc)
                failed[str(row["id"])] = str(exc)
            else:
                deleted.append(row["id"])
        await conn.execute(_DONE, (deleted, Jsonb(failed), started))
    return len(deleted)
