"""The automation loop: evaluates queued events against their tenant's automation rules.

The database does the work (`public.automation_run`: claims queued events SKIP LOCKED,
evaluates each against the rules of its own tenant, logs matches, queues suggestions or
runs the actions); this loop only calls it when `NOTIFY zapbase_automation` says events
arrived, and polls as a fallback. The minute job `automation_rules` consumes whatever no
worker took, and runs the time-triggered rules.
"""

from __future__ import annotations

from zapbase.db.pool import Pool
from zapbase.worker.loop import QueueLoop

__all__ = ["AUTOMATION_CHANNEL", "AutomationLoop"]

AUTOMATION_CHANNEL = "zapbase_automation"


class AutomationLoop(QueueLoop):
    """Rounds of `automation_run` until `stop()`.

    **Parameters**

    * **pool** - service-role connections.
    * **batch_size** - events evaluated per round (one transaction).
    * **poll_interval** - seconds between rounds when no NOTIFY arrives.
    """

    def __init__(self, *, pool: Pool, batch_size: int = 200, poll_interval: float = 2.0) -> None:
        super().__init__(poll_interval=poll_interval)
        self._pool = pool
        self._batch_size = batch_size

    async def run_once(self) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute("select public.automation_run(%s) as claimed", (self._batch_size,))
            row = await cur.fetchone()
        return int(row["claimed"]) if row else 0
