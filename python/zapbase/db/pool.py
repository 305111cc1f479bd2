"""The worker's connections: a pool of service-role sessions.

Each connection runs `set role service_role` once (the worker acts as Supabase's service
role, never as the table owner), learns pgvector's type (vectors travel in binary as
`pgvector.Vector`) and disables server-side prepared statements, so the same code runs
behind Supavisor. LISTEN needs a session, so point DATABASE_URL at a direct
connection or Supavisor's session mode (port 5432), not its transaction mode.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import psycopg
from pgvector.psycopg.vector import register_vector_info
from psycopg.rows import dict_row
from psycopg.types import TypeInfo
from psycopg_pool import AsyncConnectionPool

from zapbase.db.target import DatabaseTarget
from zapbase.errors import DatabaseError
from zapbase.settings import Settings

Row = dict[str, Any]
Connection = psycopg.AsyncConnection[Row]
Pool = AsyncConnectionPool[Connection]
# Anything that lends a connection: a pool's `connection` method, or `borrow(conn)`.
Connect = Callable[[], AbstractAsyncContextManager[Connection]]

WORKER_ROLE = "service_role"


def worker_url(settings: Settings) -> str:
    """The database the worker talks to: DATABASE_URL, else the embedded server."""
    return DatabaseTarget.from_settings(settings).url


async def _as_service_role(conn: Connection) -> None:
    await conn.execute(f"set role {WORKER_ROLE}")
    # Absent before the migrations created the extension: nothing to adapt yet.
    if (vector := await TypeInfo.fetch(conn, "extensions.vector")) is not None:
        register_vector_info(conn, vector)


async def connect(url: str) -> Connection:
    """One service-role session outside the pool (LISTEN, the CLI, scripts)."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            url, row_factory=dict_row, prepare_threshold=None, autocommit=True, connect_timeout=10
        )
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to the database: {exc}".strip()) from exc
    await _as_service_role(conn)
    return conn


def borrow(conn: Connection) -> Connect:
    """A `Connect` that lends the same caller-owned connection every time."""

    @asynccontextmanager
    async def lend() -> AsyncIterator[Connection]:
        yield conn

    return lend


@asynccontextmanager
async def transaction(connect: Connect) -> AsyncIterator[Connection]:
    """A lent connection inside one transaction."""
    async with connect() as conn, conn.transaction():
        yield conn


# A session back in the pool this recently is trusted as is; an older one is pinged first.
TRUSTED_IDLE_S = 1.0
_returned_at: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()


async def _stamp_return(conn: Connection) -> None:
    _returned_at[conn] = time.monotonic()


async def _check_if_idle(conn: Connection) -> None:
    if time.monotonic() - _returned_at.get(conn, 0.0) >= TRUSTED_IDLE_S:
        await AsyncConnectionPool.check_connection(conn)


def open_pool(url: str, size: int) -> Pool:
    """A pool of autocommit service-role sessions; open it with `async with`. A session idle
    for a second or more is pinged before it is lent: after a database restart every idle
    session is dead, and unchecked each would fail one message. Sessions reused within the
    second (a burst of webhooks) cost no extra round trip."""
    return AsyncConnectionPool(
        url,
        min_size=1,
        max_size=size,
        open=False,
        kwargs={"row_factory": dict_row, "prepare_threshold": None, "autocommit": True},
        configure=_as_service_role,
        check=_check_if_idle,
        reset=_stamp_return,
        connection_class=psycopg.AsyncConnection[Row],
    )
