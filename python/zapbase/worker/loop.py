"""What the processor and the sender share: a loop over a Postgres queue."""

from __future__ import annotations

import abc

import anyio


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
