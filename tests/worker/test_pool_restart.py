"""The worker's pool after the database server restarts: connections that died with the old
server are replaced before they are lent, so no message fails for a restart."""

from __future__ import annotations

import anyio
import pytest

from zapbase.db.embedded import SUPERUSER
from zapbase.db.migrate import apply_platform
from zapbase.db.pool import TRUSTED_IDLE_S, open_pool
from zapbase.db.scratch import scratch_server
from zapbase.settings import Settings


@pytest.mark.anyio
async def test_every_connection_lent_after_a_server_restart_works() -> None:
    with scratch_server() as server:
        apply_platform(server.url(SUPERUSER, "postgres"), Settings().platform_dir)
        async with open_pool(server.url(), 4) as pool:
            held = anyio.Event()

            async def borrow_one() -> None:  # four at once: the pool keeps four idle sessions
                async with pool.connection() as conn:
                    await conn.execute("select 1")
                    await held.wait()

            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(borrow_one)
                while pool.get_stats()["pool_size"] < 4:
                    await anyio.sleep(0.01)
                held.set()
            await anyio.to_thread.run_sync(server.stop)
            await anyio.to_thread.run_sync(server.start)
            # a real restart outlasts the window in which a just-returned session is trusted
            await anyio.sleep(TRUSTED_IDLE_S)
            for _ in range(4):
                async with pool.connection() as conn:
                    cur = await conn.execute("select current_user u")
                    assert await cur.fetchone() == {"u": "service_role"}
