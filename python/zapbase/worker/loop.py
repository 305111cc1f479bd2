"""What the worker's loops share: a loop over a Postgres queue, and the write of an outcome
that must survive a database restart."""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from typing import Any

import anyio
import psycopg

from zapbase.db.pool import Pool, Row

_logger = logging.getLogger(__name__)

_RETRY_S = (0.2, 0.5, 1.0, 2.0, 5.0)


async def record_outcome(pool: Pool, query: str, params: Sequence[Any], *, within: float) -> Row | None:
    """Run the one write that stores what a send did (see `record_outcomes`); its first row."""
    rows = await record_outcomes(pool, query, params, within=within)
    return rows[0] if rows else None


async def record_outcomes(pool: Pool, query: str, params: Sequence[Any], *, within: float) -> list[Row]:
    """Run the one write that stores what a send did (the far side may have acted on it), shielded
    from cancellation. A database that is down or restarting (a pooled connection it cut, a pool
    timeout) is waited out with backoff for up to `within` seconds, the rest of the row's lease:
    a lost outcome would send an acknowledged row again once its lease expires. The write runs
    again after a lost reply, so it must be idempotent."""
    deadline = anyio.current_time() + within
    attempt = 0
    with anyio.CancelScope(shield=True):
        while True:
            try:
                async with pool.connection() as conn:
                    rows = await (await conn.execute(query, params)).fetchall()
                break
            except psycopg.OperationalError as exc:
                delay = _RETRY_S[min(attempt, len(_RETRY_S) - 1)]
                attempt += 1
                if anyio.current_time() + delay > deadline:
                    raise
                _logger.warning("recording an outcome: database unavailable (%s); retrying in %.1fs",
                                str(exc).strip(), delay)  # fmt: skip
                await anyio.sleep(delay)
    return rows


class QueueLoop(abc.ABC):
    """Claims rounds of work until `stop()`: woken by NOTIFY (`wake()`), polling as a
    fallback (retries become due without a NOTIFY), finishing the round in hand on stop."""

    def __init__(self, *, poll_interval: float) -> None:
        self._poll_interval = poll_interval
        self._wakeup = anyio.Event()
        self._stopping = False

    def wake(self) -> None:
        """Work arrived: claim now instead of at the next poll."""
        self._wakeup.set()

    def stop(self) -> None:
        """Finish the round in flight, then leave `run`."""
        self._stopping = True
        self._wakeup.set()

    async def run(self) -> None:
        while not self._stopping:
            self._wakeup = anyio.Event()
            # A round that found work may have unblocked more (the next message of a
            # conversation or contact): claim again at once.
            if await self.run_once() and not self._stopping:
                continue
            with anyio.move_on_after(self._poll_interval):
                await self._wakeup.wait()

    @abc.abstractmethod
    async def run_once(self) -> int:
        """One round; returns how many rows it claimed."""
