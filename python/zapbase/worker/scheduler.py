"""The worker's scheduler: ticks `private.run_due_jobs()` where pg_cron does not.

One replica leads: the one holding a session advisory lock on its own connection (a lost
connection releases it and another replica takes over at its next try). Each tick runs
the due database jobs, then the due worker jobs (those that need I/O, e.g. deleting the
files of evicted TTS audio) through their Python handlers. Jobs record their own runs in
`job_runs`; the schedule rows are locked SKIP LOCKED, so pg_cron ticking the same database
never runs a job twice.

    scheduler = Scheduler(url=url, worker_jobs=worker_jobs(pool.connection, storage))
    await scheduler.run()       # until scheduler.stop()
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

import anyio
import psycopg

from zapbase.db.pool import Connect, connect
from zapbase.errors import DatabaseError
from zapbase.lgpd import purge_storage
from zapbase.storage import ObjectStore
from zapbase.tts.cache import evict_tts_cache

__all__ = ["LEADER_LOCK", "Scheduler", "WorkerJob", "worker_jobs"]

_logger = logging.getLogger(__name__)

# pg_advisory_lock key of the scheduler leader ("zapbase" in ASCII, as a bigint).
LEADER_LOCK = 0x7A_61_70_62_61_73_65
WorkerJob = Callable[[], Awaitable[object]]


def worker_jobs(connect: Connect, store: ObjectStore) -> dict[str, WorkerJob]:
    """Handlers of the schedules whose runner is the worker (`store` holds media and TTS audio)."""
    return {"tts_cache_evict": lambda: evict_tts_cache(connect, store),
            "lgpd_storage_purge": lambda: purge_storage(connect, store)}


class Scheduler:
    """Leader election plus the minute tick.

    **Parameters**

    * **url** - the database (the leader keeps one session of its own for the lock).
    * **worker_jobs** - handlers of the `runner = 'worker'` schedules, by job name.
    * **interval** - seconds between ticks (jobs are due by the minute; a tick every
      15 s keeps them within a quarter of a minute of their time).
    """

    def __init__(
        self,
        *,
        url: str,
        worker_jobs: Mapping[str, WorkerJob] | None = None,
        interval: float = 15.0,
    ) -> None:
        self._url = url
        self._worker_jobs = dict(worker_jobs or {})
        self._interval = interval
        self._stopping = anyio.Event()
        self.is_leader = False

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self._lead_or_wait()
            except (psycopg.OperationalError, DatabaseError) as exc:
                self.is_leader = False
                _logger.warning("scheduler: database unavailable (%s); retrying", exc)
            await self._sleep()

    async def _lead_or_wait(self) -> None:
        async with await connect(self._url) as conn:
            while not self._stopping.is_set():
                cur = await conn.execute("select pg_try_advisory_lock(%s) as leader", (LEADER_LOCK,))
                row = await cur.fetchone()
                self.is_leader = bool(row and row["leader"])
                if self.is_leader:
                    await self.tick(conn)
                await self._sleep()

    async def tick(self, conn: psycopg.AsyncConnection[dict[str, object]]) -> int:
        """Run what is due now; returns how many jobs ran."""
        cur = await conn.execute("select private.run_due_jobs() as ran")
        row = await cur.fetchone()
        ran = int(str(row["ran"])) if row else 0
        cur = await conn.execute("select name from private.claim_worker_jobs() as name")
        for job in await cur.fetchall():
            name = str(job["name"])
            handler = self._worker_jobs.get(name)
            if handler is None:
                _logger.warning("scheduler: no handler for worker job %s; skipped", name)
                continue
            try:
                await handler()
            except Exception:
                # the job recorded its failure in job_runs when it reached SQL; keep ticking
                _logger.exception("scheduler: worker job %s failed", name)
            ran += 1
        if ran:
            _logger.info("scheduler: %s job(s) ran", ran)
        return ran

    async def _sleep(self) -> None:
        with anyio.move_on_after(self._interval):
            await self._stopping.wait()
