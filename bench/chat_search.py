"""Chat search's SQL checker: time per query over the 200-query corpus (valid and hostile,
tests/fixtures/chat_search_corpus.json), side by side with sqlglot's bare parse of the same
text (the floor any parser-based check pays). No database: the checker alone. A hostile
query accepted fails the run.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import sqlglot
from sqlglot.errors import SqlglotError

from harness import Context, Measure, percentile
from zapbase.chat_search.checker import SqlRefused, check_sql
from zapbase.chat_search.views import VIEWS

ROUNDS = 20
CORPUS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "chat_search_corpus.json"


def _parse(sql: str) -> None:
    with contextlib.suppress(SqlglotError):
        sqlglot.parse(sql, read="postgres")


def _check(sql: str) -> bool:
    try:
        check_sql(sql, views=VIEWS, max_rows=200)
    except SqlRefused:
        return False
    return True


def measure(ctx: Context) -> list[Measure]:
    corpus = json.loads(CORPUS.read_text())
    queries = corpus["valid"] + corpus["hostile"]
    accepted = [q for q in corpus["hostile"] if _check(q)]
    refused_valid = [q for q in corpus["valid"] if not _check(q)]
    assert not accepted, f"hostile queries accepted: {accepted}"
    checked: list[float] = []
    parsed: list[float] = []
    for _ in range(ROUNDS):
        for sql in queries:
            started = time.perf_counter()
            _parse(sql)
            parsed.append(time.perf_counter() - started)
            started = time.perf_counter()
            _check(sql)
            checked.append(time.perf_counter() - started)
    n, hostile, valid = len(queries), len(corpus["hostile"]), len(corpus["valid"])
    return [
        Measure(f"sqlglot parse p50 ({n} queries)", percentile(parsed, 50) * 1000, "ms"),
        Measure(f"chat search SQL check p50 ({n} queries)", percentile(checked, 50) * 1000, "ms",
                baseline=f"sqlglot parse p50 ({n} queries)", goal="≤ 5 ms"),
        Measure("chat search SQL check p99", percentile(checked, 99) * 1000, "ms"),
        Measure(f"hostile queries accepted (of {hostile})", len(accepted), "queries", goal="0"),
        Measure(f"valid queries refused (of {valid})", len(refused_valid), "queries", goal="0"),
    ]
