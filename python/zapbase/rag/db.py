"""How the worker's knowledge and TTS services reach Postgres: as the service role.

They log in as `authenticator` (like PostgREST) and take the role `service_role` inside
each transaction (`set_config(..., true)`), never for the session: behind Supavisor in
transaction mode a session setting would stay on a server connection that the pooler
hands to somebody else. For the same reason there are no server-side prepared
statements (`prepare_threshold=None`).

    conn = await connect_worker(url)
    service = KnowledgeService(connect=borrow(conn), embedder=embedder)

`Connect` is anything that lends a connection as an async context manager: a
psycopg_pool pool's `connection` method (the worker's), or `borrow(conn)` for one
connection owned by the caller. `service_transaction` sets the role either way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import DictRow, dict_row

from zapbase.errors import DatabaseError

__all__ = [
    "WORKER_ROLE",
    "Connect",
    "Connection",
    "borrow",
    "connect_worker",
    "service_transaction",
    "worker_conninfo",
]

WORKER_ROLE = "service_role"
LOGIN_ROLE = "authenticator"

Connection = psycopg.AsyncConnection[DictRow]
Connect = Callable[[], AbstractAsyncContextManager[Connection]]

_AS_SERVICE = (
    "select set_config('role', 'service_role', true),"
    " set_config('request.jwt.claims', '{\"role\": \"service_role\"}', true)"
)


def worker_conninfo(url: str) -> str:
    """`url` with the login role swapped for `authenticator`. The password only goes
    along when the URL already names that role (it belongs to the role it was given for)."""
    params: dict[str, Any] = conninfo_to_dict(url)
    if params.get("user") != LOGIN_ROLE:
        params["user"] = LOGIN_ROLE
        params.pop("password", None)
    return make_conninfo("", **params)


async def connect_worker(url: str) -> Connection:
    """One autocommit connection as `authenticator`; use it through `service_transaction`."""
    try:
        conn = await psycopg.AsyncConnection.connect(
            worker_conninfo(url), autocommit=True, row_factory=dict_row, prepare_threshold=None,
            connect_timeout=10,
        )
    except psycopg.OperationalError as exc:
        raise DatabaseError(
            f"cannot connect to the database as {LOGIN_ROLE}: {exc}".strip()
            + f" (on a hosted database, give the URL of {LOGIN_ROLE} with its password)"
        ) from exc
    return conn


def borrow(conn: Connection) -> Connect:
    """A `Connect` that lends the same caller-owned connection every time."""

    @asynccontextmanager
    async def lend() -> AsyncIterator[Connection]:
        yield conn

    return lend


@asynccontextmanager
async def service_transaction(connect: Connect) -> AsyncIterator[Connection]:
    """A connection inside one transaction whose role is `service_role`."""
    async with connect() as conn, conn.transaction():
        await conn.execute(_AS_SERVICE)
        yield conn
