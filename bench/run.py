"""Run every benchmark in bench/ against one scratch server and print one table; logs and
the benchmarks' own notes (query plans) go to a file.

    python bench/run.py            # all of them
    python bench/run.py ingest     # only bench/ingest.py (baselines always run)
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from harness import Context, Measure
from zapbase.db.scratch import build_template, scratch_server
from zapbase.settings import Settings

HERE = Path(__file__).parent
NOT_BENCHMARKS = {"harness", "run", "baseline", "faults"}
LOG = Path(tempfile.gettempdir()) / "zapbase-bench.log"


def main(only: list[str]) -> None:
    names = ["baseline", *sorted(
        p.stem for p in HERE.glob("*.py")
        if p.stem not in NOT_BENCHMARKS and (not only or p.stem in only)
    )]
    console = Console(file=sys.stdout)  # the real stdout, before the redirection below
    if not console.is_terminal:
        console.width = 160  # a file or a pipe: rows on one line each
    measures: list[Measure] = []
    with LOG.open("w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        logging.basicConfig(stream=log, level=logging.INFO, force=True,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        logging.captureWarnings(True)
        with scratch_server() as server, console.status("building the template database") as status:
            ctx = Context(server, build_template(server, Settings()))
            for name in names:
                status.update(f"running bench/{name}.py (log: {LOG})")
                print(f"== bench/{name}.py", flush=True)
                measures += importlib.import_module(name).measure(ctx)
    console.print(table(measures))
    console.print(f"[dim]log and query plans: {LOG}[/]")


def table(measures: list[Measure]) -> Table:
    """One row per figure; each names what it is divided by, or says it is absolute."""
    by_name = {m.name: m for m in measures}
    baselines = {m.baseline for m in measures}
    table = Table(title="Zapbase benchmarks (ratios taken side by side in this run)")
    for column in ("measure", "value", "ratio", "baseline", "goal"):
        table.add_column(column, justify="right" if column in ("value", "ratio") else "left")
    for m in measures:
        if m.baseline:
            ratio, baseline = f"{m.value / by_name[m.baseline].value:.2f} ×", m.baseline
        else:
            ratio, baseline = "", "(a baseline)" if m.name in baselines else "(absolute figure)"
        table.add_row(m.name, f"{m.value:,.2f} {m.unit}", ratio, baseline, m.goal)
    return table


if __name__ == "__main__":
    main(sys.argv[1:])
