"""`zapbase templates`: WhatsApp message templates at Meta from the command line.

    zapbase templates sync      push pending creates / deletes, then list every WABA's
                                templates at the Graph API (all pages) and apply them

Talks to the database `zapbase db` uses and to the Graph API of the settings
(`GRAPH_API_BASE_URL`: Meta, or the simulator), as the worker's campaign loop does.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import typer
from rich.console import Console
from rich.table import Table

from zapbase.db.pool import open_pool
from zapbase.db.target import DatabaseTarget
from zapbase.errors import ZapbaseError
from zapbase.settings import GRAPH_CONNECT_TIMEOUT_S, GRAPH_TIMEOUT_S, Settings
from zapbase.whatsapp.api import GraphAPI
from zapbase.worker.campaigns import push_templates, sync_templates

__all__ = ["templates_app"]

templates_app = typer.Typer(help="WhatsApp message templates at Meta: sync them.", no_args_is_help=True)
console = Console()

_SYNCS = """
select t.slug, s.waba_id, s.status, s.template_count, coalesce(s.error, '') as error, s.last_synced_at
  from public.template_syncs s join public.tenants t on t.id = s.tenant_id
 order by t.slug, s.waba_id
"""


async def _sync(url: str, settings: Settings) -> list[dict[str, Any]]:
    timeout = httpx.Timeout(GRAPH_TIMEOUT_S, connect=GRAPH_CONNECT_TIMEOUT_S)
    async with open_pool(url, 2) as pool, httpx.AsyncClient(timeout=timeout) as http:
        api = GraphAPI(http, base_url=settings.graph_api_base_url, version=settings.graph_api_version)
        while await push_templates(pool, api):
            pass
        async with pool.connection() as conn:
            # the scheduled job's own request, so the run shows in job_runs too
            await conn.execute("select private.run_job('templates_sync')")
        while await sync_templates(pool, api):
            pass
        async with pool.connection() as conn:
            cur = await conn.execute(_SYNCS)
            return await cur.fetchall()


@templates_app.command("sync")
def templates_sync() -> None:
    """Sync every WABA's templates with Meta now (what the templates_sync job requests)."""
    settings = Settings()
    try:
        rows = anyio.run(_sync, DatabaseTarget.from_settings(settings).url, settings)
    except ZapbaseError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    table = Table(title="Template syncs")
    for column in ("tenant", "WABA", "status", "templates", "last synced (UTC)", "error"):
        table.add_column(column)
    for r in rows:
        synced = r["last_synced_at"].strftime("%Y-%m-%d %H:%M") if r["last_synced_at"] else "-"
        table.add_row(r["slug"], r["waba_id"], r["status"], str(r["template_count"] or 0), synced, r["error"])
    console.print(table)
    if any(r["status"] == "failed" for r in rows):
        raise typer.Exit(1)
