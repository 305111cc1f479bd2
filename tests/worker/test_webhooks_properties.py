"""Property-based webhook receivers: a local TCP server answers each delivery with a drawn
reply (any status line including 1xx, redirects and codes past 599, odd headers, huge and
binary bodies, chunked encoding that lies, a length that lies, garbage bytes, a hang, a
closed socket). The deliverer never leaves a row behind: every attempt is recorded on its
delivery, which ends succeeded (only for a well-formed 2xx), pending or failed with the
reason in last_error, its lease released.

Small by default; `ZAPBASE_FUZZ_EXAMPLES=10000 make fuzz` for a long run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

import anyio
import httpx
import psycopg
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import fuzz_settings, pool_on_another_thread
from support import Db
from whatsapp_db.webhooks import OWNER, TENANT
from zapbase.db.embedded import SUPERUSER
from zapbase.db.pool import open_pool
from zapbase.worker.deliverer import Deliverer

TIMEOUT_S = 0.5


@dataclass(frozen=True)
class Reply:
    """What the receiver writes back, then whether it hangs (else it closes the socket)."""

    raw: bytes
    hang: bool = False
    acknowledges: bool = False  # a well-formed 2xx


def _response(
    code: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    *,
    length: int | None = None,
    reason: bytes = b"X",
) -> bytes:
    head = b"HTTP/1.1 %d %s\r\n" % (code, reason)
    head += b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    head += b"content-length: %d\r\n" % (len(body) if length is None else length)
    return head + b"\r\n" + body


header_values = st.one_of(
    st.binary(max_size=30).filter(lambda b: b"\r" not in b and b"\n" not in b), st.just(b"x" * 70_000)
)
headers = st.lists(
    st.tuples(
        st.sampled_from(
            [b"location", b"content-type", b"x-odd", b"content-encoding", b"set-cookie", b"transfer-encoding"]
        ),
        header_values,
    ),
    max_size=3,
)


@st.composite
def replies(draw: st.DrawFn) -> Reply:
    kind = draw(
        st.sampled_from(
            [
                "status",
                "status",
                "ok",
                "redirect",
                "huge",
                "chunked",
                "short",
                "garbage",
                "hang",
                "close",
                "headers_only",
            ]
        )
    )
    body = draw(st.binary(max_size=300))
    if kind == "ok":
        return Reply(
            _response(draw(st.sampled_from([200, 201, 202, 204])), [], body if body else b""),
            acknowledges=True,
        )
    if kind == "status":
        code = draw(st.one_of(st.integers(100, 999), st.sampled_from([101, 103, 429, 500, 503])))
        return Reply(
            _response(code, draw(headers), body, reason=draw(st.sampled_from([b"OK", b"", b"\xc3\x28"])))
        )
    if kind == "redirect":
        location = draw(st.sampled_from([b"http://127.0.0.1:9/", b"https://example.com/", b"/relative", b""]))
        return Reply(
            _response(draw(st.sampled_from([301, 302, 303, 307, 308])), [(b"location", location)], b"")
        )
    if kind == "huge":
        size = draw(st.sampled_from([70_000, 1_000_000]))
        return Reply(_response(200, [], b"\x00\xff" * (size // 2)), acknowledges=True)
    if kind == "chunked":
        return Reply(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
            + draw(st.sampled_from([b"zz\r\nab\r\n", b"5\r\nab\r\n0\r\n\r\n", b"ffffffffff\r\nx"]))
        )
    if kind == "short":
        return Reply(_response(200, [], body[:5], length=len(body) + 10))
    if kind == "garbage":
        return Reply(draw(st.binary(min_size=1, max_size=500)))
    if kind == "headers_only":
        return Reply(b"HTTP/1.1 200 OK\r\ncontent-le", hang=draw(st.booleans()))
    return Reply(b"", hang=kind == "hang")


class RawReceiver:
    """Reads one request and writes back `reply` (no HTTP library on this side)."""

    def __init__(self) -> None:
        self.reply = Reply(b"")
        self.requests = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            await reader.readexactly(length)
            self.requests += 1
            writer.write(self.reply.raw)
            await writer.drain()
            if self.reply.hang:
                await asyncio.sleep(TIMEOUT_S * 4)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


async def bounded(run: Callable[[], Awaitable[int]]) -> int:
    with anyio.fail_after(TIMEOUT_S * 20):  # the deliverer's own timeout must end any exchange
        return await run()


@pytest.fixture
def portal() -> Iterator[BlockingPortal]:
    with start_blocking_portal() as portal:
        yield portal


@pool_on_another_thread
def test_every_receiver_answer_ends_on_the_delivery_row(db: Db, portal: BlockingPortal) -> None:
    dbname = db.url.rsplit("/", 1)[1]
    with psycopg.connect(db.url.replace("postgres:postgres@", f"{SUPERUSER}@", 1), autocommit=True) as conn:
        conn.execute(f"alter database {dbname} set zapbase.webhooks_allow_http = 'on'")  # local development
    receiver = RawReceiver()
    server = portal.call(asyncio.start_server, receiver.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    with db.as_user(OWNER) as s:
        s.value(
            "select public.create_webhook_endpoint(%s, 'fuzz', %s, '{alert.created}')",
            (TENANT, f"http://127.0.0.1:{port}/hook"),
        )
    stack = contextlib.ExitStack()  # the pool closes before the database is dropped
    pool = stack.enter_context(portal.wrap_async_context_manager(open_pool(db.url, 2)))
    http = stack.enter_context(portal.wrap_async_context_manager(httpx.AsyncClient()))
    loop = Deliverer(pool=pool, client=http, worker_id="fuzz", local_mode=True, timeout=TIMEOUT_S)

    @fuzz_settings()
    @given(replies())
    def deliver_one(reply: Reply) -> None:
        receiver.reply = reply
        db.sql("update public.webhook_deliveries set next_attempt_at = 'infinity' where status = 'pending'")
        db.sql(
            "insert into public.alerts (tenant_id, type, title) values (%s, 'test.fuzz', 'Alerta')", (TENANT,)
        )
        assert portal.call(bounded, loop.run_once) == 1
        row = db.sql(
            "select d.id, d.status, d.attempts, d.last_error, d.lease_until,"
            " (select count(*) from public.webhook_attempts a where a.delivery_id = d.id) as logged"
            " from public.webhook_deliveries d order by d.created_at desc limit 1"
        )[0]
        shown = repr(reply)[:500]
        assert row["status"] in ("succeeded", "pending", "failed") and row["lease_until"] is None, (
            row,
            shown,
        )
        assert row["logged"] == row["attempts"] == 1, (row, shown)
        assert (row["status"] == "succeeded") == reply.acknowledges, (row, shown)
        if row["status"] != "succeeded":
            assert row["last_error"], (row, shown)

    with stack:
        try:
            deliver_one()
        finally:
            server.close()
