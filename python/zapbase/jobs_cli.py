"""`zapbase jobs`: the schedules from the command line.

    zapbase jobs list                    every schedule, its next run and its last run
    zapbase jobs run conversations_expire_idle

Talks to the database `zapbase db` uses as the worker does (role `service_role`).
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio
import httpx
import typer
from rich.console import Console
from rich.table import Table

from zapbase.db.pool import borrow, connect
from zapbase.db.target import DatabaseTarget
from zapbase.errors import ZapbaseError
from zapbase.settings import Settings
from zapbase.storage import storage_from_settings
from zapbase.worker.scheduler import worker_jobs

__all__ = ["jobs_app"]

jobs_app = typer.Typer(help="Scheduled jobs: list them, run one now.", no_args_is_help=True)
console = Console()

_LIST = """
select s.name, s.cron, s.runner, s.enabled, s.next_run_at, s.last_run_at, s.last_status,
       r.rows_affected as last_rows, coalesce(s.last_error, '') as last_error
  from public.job_schedules s
  left join lateral (select j.rows_affected from public.job_runs j where j.job_name = s.name
                      order by j.started_at desc limit 1) r on true
 order by s.name
"""


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(1)


def _time(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value is not None else "-"


async def _list(url: str) -> list[dict[str, Any]]:
    async with await connect(url) as conn:
        cur = await conn.execute(_LIST)
        return await cur.fetchall()


async def _run(url: str, settings: Settings, name: str) -> dict[str, Any]:
    async with await connect(url) as conn:
        cur = await conn.execute("select runner from public.job_schedules where name = %s", (name,))
        schedule = await cur.fetchone()
        if schedule is None:
            raise ZapbaseError(f"no job named {name!r}: see `zapbase jobs list`")
        if schedule["runner"] == "worker":
            async with httpx.AsyncClient(timeout=60.0) as http:
                await worker_jobs(borrow(conn), storage_from_settings(settings, http))[name]()
        else:
            await conn.execute("select private.run_job(%s)", (name,))
        cur = await conn.execute(
            "select status, rows_affected, error, finished_at - started_at as took from public.job_runs"
            " where job_name = %s order by started_at desc limit 1", (name,))
        run = await cur.fetchone()
        if run is None:
            raise ZapbaseError(f"job {name!r} left no run in job_runs")
        return run


@jobs_app.command("list")
def jobs_list() -> None:
    """Every schedule: cron (UTC), next run, last run and its outcome."""
    try:
        rows = anyio.run(_list, DatabaseTarget.from_settings(Settings()).url)
    except ZapbaseError as exc:
        raise _fail(str(exc)) from None
    table = Table(title="Scheduled jobs (UTC)")
    for column in ("job", "cron", "runner", "next run", "last run", "last outcome"):
        table.add_column(column)
    for r in rows:
        outcome = "-" if r["last_status"] is None else f"{r['last_status']} ({r['last_rows']} rows)"
        if r["last_error"]:
            outcome = f"failed: {r['last_error']}"
        next_run = _time(r["next_run_at"]) if r["enabled"] else "disabled"
        table.add_row(r["name"], r["cron"], r["runner"], next_run, _time(r["last_run_at"]), outcome)
    console.print(table)


@jobs_app.command("run")
def jobs_run(name: Annotated[str, typer.Argument(help="Job name, as `zapbase jobs list` shows it.")]) -> None:
    """Run one job now (its run is recorded in job_runs like a scheduled one)."""
    settings = Settings()
    try:
        run = anyio.run(_run, DatabaseTarget.from_settings(settings).url, settings, name)
    except ZapbaseError as exc:
        raise _fail(str(exc)) from None
    if run["status"] != "succeeded":
        raise _fail(f"{name} failed: {run['error']}")
    console.print(f"{name}: {run['rows_affected']} row(s) in {run['took'].total_seconds():.2f}s")
