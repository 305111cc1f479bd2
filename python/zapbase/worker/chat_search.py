"""The chat search loop: claims queued searches (`chat_search_claim`, SKIP LOCKED under a
lease) and answers each through `zapbase.chat_search.ChatSearcher`.

`NOTIFY zapbase_chat_search` (sent by `chat_search_ask`) wakes it; the poll catches what a
lost connection or an expired lease leaves behind.
"""

from __future__ import annotations

from zapbase.chat_search.service import ChatSearcher
from zapbase.db.pool import Pool
from zapbase.worker.loop import QueueLoop

__all__ = ["CHAT_SEARCH_CHANNEL", "ChatSearchLoop"]

CHAT_SEARCH_CHANNEL = "zapbase_chat_search"

_CLAIM = "select * from public.chat_search_claim(%s, %s)"


class ChatSearchLoop(QueueLoop):
    """One search at a time until `stop()` (each holds an LLM call or two and a query).

    **Parameters**

    * **pool** - service-role connections.
    * **searcher** - answers a claimed search and stores the outcome; its worker id holds the lease.
    * **lease_seconds** - how long a claimed search is this worker's before another may take it.
    * **poll_interval** - seconds between rounds when no NOTIFY arrives.
    """

    def __init__(
        self, *, pool: Pool, searcher: ChatSearcher, lease_seconds: int = 120, poll_interval: float = 2.0,
    ) -> None:
        super().__init__(poll_interval=poll_interval)
        self._pool = pool
        self._searcher = searcher
        self._lease_seconds = lease_seconds

    async def run_once(self) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(_CLAIM, (self._searcher.worker_id, self._lease_seconds))
            search = await cur.fetchone()
        if search is None:
            return 0
        await self._searcher.answer(search)
        return 1
