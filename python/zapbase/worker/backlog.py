"""The backlog loop: applies webhook bodies the route acknowledged during a burst
(`whatsapp_receive` kept them in `inbound_backlog`), in arrival order, a batch per round
through `whatsapp_apply_backlog`.

`NOTIFY zapbase_backlog` (sent when a body is backlogged) wakes it. A number's bodies are
applied by one round at a time, in order (the SQL locks the number; other rounds skip it), so
replicas share a burst across numbers; the schedule's `inbound_backlog` job applies what no
worker applied within a minute.
"""

from __future__ import annotations

import logging

from zapbase.db.pool import Pool
from zapbase.worker.loop import QueueLoop
from zapbase.worker.metrics import Metrics

__all__ = ["BACKLOG_CHANNEL", "BacklogLoop"]

BACKLOG_CHANNEL = "zapbase_backlog"

_logger = logging.getLogger(__name__)

_APPLY = "select public.whatsapp_apply_backlog(%s) as result"


class BacklogLoop(QueueLoop):
    """Applies the backlog until it is empty, then waits for the next NOTIFY.

    **Parameters**

    * **pool** - service-role connections.
    * **metrics** - counts the inbound messages applied, as the route does for the bodies it applies.
    * **batch_size** - bodies per transaction: fewer commits, but each holds its rows (and
      hides its messages from the processor) until the whole batch is applied.
    * **poll_interval** - seconds between rounds when no NOTIFY arrives (a body that failed to
      apply is retried once its backoff is over).
    """

    def __init__(
        self, *, pool: Pool, metrics: Metrics, batch_size: int = 20, poll_interval: float = 2.0
    ) -> None:
        super().__init__(poll_interval=poll_interval)
        self._pool = pool
        self._metrics = metrics
        self._batch_size = batch_size

    async def run_once(self) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute(_APPLY, (self._batch_size,))
            row = await cur.fetchone()
        result = row["result"] if row else {}
        self._metrics.ingested_messages.inc(result.get("messages", 0))
        if result.get("stalled"):
            _logger.warning("backlog: a body failed to apply and holds back its number until its retry"
                            " (inbound_backlog.last_error says why)")
        return int(result.get("applied", 0))
