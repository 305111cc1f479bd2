"""Run every benchmark in bench/ against one scratch server and print one table.

    python bench/run.py            # all of them
    python bench/run.py ingest     # only bench/ingest.py (baselines always run)
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness import Context, Measure
from zapbase.db.scratch import build_template, scratch_server
from zapbase.settings import Settings

HERE = Path(__file__).parent
NOT_BENCHMARKS = {"harness", "run", "baseline"}


def main(only: list[str]) -> None:
    names = ["baseline", *sorted(
        p.stem for p in HERE.glob("*.py")
        if p.stem not in NOT_BENCHMARKS and (not only or p.stem in only)
    )]
    console = Console()
    measures: list[Measure] = []
    with scratch_server() as server:
        ctx = Context(server, build_template(server, Settings()))
        for name in names:
            console.print(f"[dim]running bench/{name}.py ...[/]")
            measures += importlib.import_module(name).measure(ctx)
    by_name = {m.name: m for m in measures}
    table = Table(title="Zapbase benchmarks (ratios taken side by side in this run)")
    for column in ("measure", "value", "ratio", "goal"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for m in measures:
        ratio = ""
        if m.baseline:
            ratio = f"{m.value / by_name[m.baseline].value:.2f} × [{m.baseline}]"
        table.add_row(m.name, f"{m.value:,.2f} {m.unit}", ratio, m.goal)
    console.print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
