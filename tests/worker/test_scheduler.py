"""The worker's scheduler: one leader across replicas ticks the job registry; when the
leader goes away another takes over; worker jobs run their Python handler."""

from __future__ import annotations

import anyio
import pytest

from support import Db
from zapbase.worker.scheduler import Scheduler

pytestmark = pytest.mark.anyio


async def _until(condition: object, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not condition():  # type: ignore[operator]
            await anyio.sleep(0.05)


async def test_one_leader_runs_due_jobs_and_another_takes_over(db: Db) -> None:
    db.sql("update public.job_schedules set enabled = false where name <> 'session_context_cleanup'")
    db.sql("update public.job_schedules set next_run_at = now() - interval '1 minute'")
    evicted: list[str] = []

    async def evict() -> None:
        evicted.append("tts")

    db.sql("update public.job_schedules set enabled = true where name = 'tts_cache_evict'")
    db.sql("update public.job_schedules set next_run_at = now() - interval '1 minute'")
    first = Scheduler(url=db.url, worker_jobs={"tts_cache_evict": evict}, interval=0.1)
    second = Scheduler(url=db.url, worker_jobs={"tts_cache_evict": evict}, interval=0.1)
    async with anyio.create_task_group() as tg:
        tg.start_soon(first.run)
        await _until(lambda: first.is_leader)
        tg.start_soon(second.run)
        await _until(lambda: db.value("select count(*) from public.job_runs") >= 1)
        await anyio.sleep(0.5)
        assert not second.is_leader
        runs = db.sql("select job_name from public.job_runs")
        assert [r["job_name"] for r in runs] == ["session_context_cleanup"]  # once, though both tick
        assert evicted == ["tts"]
        first.stop()
        await _until(lambda: second.is_leader)
        second.stop()
