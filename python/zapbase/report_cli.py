"""`zapbase report`: a tenant's main figures from the analytics rollups.

    zapbase report --tenant <id> --days 30              figures, daily volumes, ranking, AI cost
    zapbase report --tenant <id> --days 30 --png f.png  and a chart of daily volumes and FRT

Talks to the database `zapbase db` uses as the worker does (role `service_role`). It only
reads: the dashboard RPCs compute the days not rolled up yet (today) from the facts, so the
report shows the day so far.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer
from rich.console import Console
from rich.table import Table

from zapbase.db.pool import connect
from zapbase.db.target import DatabaseTarget
from zapbase.errors import ZapbaseError
from zapbase.settings import Settings

__all__ = ["report"]

console = Console()


async def _read(url: str, tenant: str, days: int) -> dict[str, Any]:
    async with await connect(url) as conn:
        cur = await conn.execute(
            "select t.name, (now() at time zone t.timezone)::date as today"
            " from public.tenants t where t.id = %s",
            (tenant,),
        )
        head = await cur.fetchone()
        if head is None:
            raise ZapbaseError(f"no tenant {tenant}")
        today: date = head["today"]
        first = today - timedelta(days=days - 1)
        period = (tenant, first, today)
        out: dict[str, Any] = {"tenant": head["name"], "first": first, "today": today}
        for key, query in (
            ("summary", "select public.analytics_summary(%s, %s, %s) as s"),
            ("volumes", "select * from public.analytics_volumes(%s, %s, %s)"),
            ("ranking", "select * from public.analytics_agent_leaderboard(%s, %s, %s) limit 5"),
            ("costs", "select * from public.analytics_ai_costs(%s, %s, %s) limit 5"),
        ):
            cur = await conn.execute(query, period)
            out[key] = await cur.fetchall()
        out["summary"] = out["summary"][0]["s"]
        return out


def _duration(seconds: Any) -> str:
    if seconds is None:
        return "-"
    value = float(seconds)
    return f"{value / 60:.1f} min" if value >= 90 else f"{value:.0f} s"


def _percent(value: Any) -> str:
    return "-" if value is None else f"{float(value) * 100:.1f}%"


def _print(data: dict[str, Any]) -> None:
    s = data["summary"]
    figures = Table(title=f"{data['tenant']}: {data['first']} to {data['today']}")
    figures.add_column("figure")
    figures.add_column("value", justify="right")
    by_status = ", ".join(f"{k} {v}" for k, v in sorted(s["conversations_by_status"].items())) or "-"
    for label, value in (
        ("conversations new", s["conversations_new"]),
        ("conversations resolved", s["conversations_resolved"]),
        ("conversations by status now", by_status),
        ("messages in / out", f"{s['messages_in']} / {s['messages_out']}"),
        (
            "first response p50 / p90",
            f"{_duration(s['frt_p50_seconds'])} / {_duration(s['frt_p90_seconds'])}",
        ),
        ("first response average", _duration(s["frt_avg_seconds"])),
        ("resolution average", _duration(s["resolution_avg_seconds"])),
        ("queue wait average", _duration(s["queue_wait_avg_seconds"])),
        ("handoff rate", _percent(s["handoff_rate"])),
        ("bot containment", _percent(s["bot_containment_rate"])),
        ("flow completions", s["flow_completions"]),
        ("CSAT", "-" if s["csat_avg"] is None else f"{s['csat_avg']} ({s['csat_count']} answers)"),
        ("AI cost", f"R$ {float(s['ai_cost_brl']):.2f} ({s['ai_calls']} calls)"),
    ):
        figures.add_row(label, str(value))
    console.print(figures)
    daily = Table(title="Daily volumes")
    for column in ("day", "new", "resolved", "in", "out", "FRT avg", "AI R$"):
        daily.add_column(column, justify="right")
    for v in data["volumes"]:
        if v["conversations_new"] or v["messages_in"] or v["messages_out"] or v["conversations_resolved"]:
            daily.add_row(
                str(v["day"]),
                str(v["conversations_new"]),
                str(v["conversations_resolved"]),
                str(v["messages_in"]),
                str(v["messages_out"]),
                _duration(v["frt_avg_seconds"]),
                f"{float(v['ai_cost_brl']):.2f}",
            )
    console.print(daily)
    ranking = Table(title="Agents")
    for column in ("#", "agent", "resolved", "messages", "FRT avg", "CSAT"):
        ranking.add_column(column)
    for r in data["ranking"]:
        ranking.add_row(
            str(r["rank"]),
            r["name"] or "-",
            str(r["conversations_resolved"]),
            str(r["messages_out"]),
            _duration(r["frt_avg_seconds"]),
            "-" if r["csat_avg"] is None else str(r["csat_avg"]),
        )
    console.print(ranking)
    costs = Table(title="AI cost per bot and feature")
    for column in ("bot", "feature", "calls", "R$"):
        costs.add_column(column)
    for c in data["costs"]:
        costs.add_row(c["bot_name"] or "-", c["feature"], str(c["calls"]), f"{float(c['cost_brl']):.4f}")
    console.print(costs)


def _chart(data: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ZapbaseError("the chart needs matplotlib: pip install 'zapbase[charts]'") from None
    volumes = data["volumes"]
    days = [v["day"] for v in volumes]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    top.bar(days, [v["messages_in"] for v in volumes], label="messages in", color="#25D366")
    top.bar(
        days,
        [v["messages_out"] for v in volumes],
        bottom=[v["messages_in"] for v in volumes],
        label="messages out",
        color="#128C7E",
    )
    top.plot(
        days, [v["conversations_new"] for v in volumes], "o-", color="#075E54", label="conversations new"
    )
    top.set_title(f"{data['tenant']}: daily volumes")
    top.legend(loc="upper left")
    bottom.plot(
        days,
        [None if v["frt_avg_seconds"] is None else float(v["frt_avg_seconds"]) / 60 for v in volumes],
        "o-",
        color="#d35400",
    )
    bottom.set_ylabel("first response (min)")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(
    tenant: Annotated[str, typer.Option(help="The tenant's id.")],
    days: Annotated[
        int, typer.Option(min=1, max=366, help="How many days, ending today (tenant time zone).")
    ] = 30,
    png: Annotated[
        Path | None, typer.Option(help="Also write a chart of daily volumes and FRT (PNG).")
    ] = None,
) -> None:
    """A tenant's main figures: volumes, first response p50/p90, resolution, containment, ranking, AI cost."""
    try:
        data = anyio.run(_read, DatabaseTarget.from_settings(Settings()).url, tenant, days)
        _print(data)
        if png is not None:
            _chart(data, png)
            console.print(f"chart written to {png}")
    except ZapbaseError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
