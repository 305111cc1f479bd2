"""The AI gateway's own database overhead per reply: ai_begin (cache lookup + budget
reservation) and ai_finish (settlement + cache store), called the way the worker calls
them (service role, autocommit, no server-side prepared statements as behind Supavisor).

Goal: at most 2 round trips and p50 <= 2 ms per reply; budget enforcement keeps its
throughput with 8 concurrent callers, on one tenant (they queue on its budget rows)
and on 8 tenants.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from harness import Context, Measure, median, percentile, throughput

TENANT = "00000000-0000-4000-b000-000000000001"  # seed: Loja Demo
SAMPLES = 1500
SECONDS = 3.0
BASELINE_RTT = "select 1 round trip, 1 client(s)"
BASELINE_INSERT = "plain 1-row INSERT, 4 client(s)"

BEGIN = (
    "select public.ai_begin(tenant_id => %s, feature => 'reply', cache_key => %s,"
    " estimated_input_tokens => 1500, estimated_output_tokens => 400, request_id => %s,"
    " phone => '+5511988887777')"
)
FINISH = (
    "select public.ai_finish(reservation_id => %s, input_tokens => 1400, output_tokens => 320,"
    " cache_read_tokens => 2000, latency_ms => 900, response_text => 'Entregamos em até 5 dias úteis.',"
    " failed_attempts => %s)"
)


class CountingConnection:
    """Counts the statements a reply sends: each is one round trip."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn
        self.calls = 0

    def value(self, query: str, params: Any) -> Any:
        self.calls += 1
        row = self.conn.execute(query, params).fetchone()
        assert row is not None
        return row[0]


def worker_url(url: str) -> str:
    return url.replace("postgres:postgres@", "authenticator:authenticator@", 1)


def worker_setup(conn: psycopg.Connection[Any]) -> None:
    """As the worker: service role, no server-side prepared statements (Supavisor transaction mode)."""
    conn.prepare_threshold = None
    conn.execute(
        "select set_config('role', 'service_role', false),"
        " set_config('request.jwt.claims', '{\"role\": \"service_role\"}', false)"
    )


def as_worker(url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(worker_url(url), autocommit=True)
    worker_setup(conn)
    return conn


def reply(db: CountingConnection, tenant: str, n: int, cache_key: str | None = None) -> str:
    """One bot reply's gateway work: begin, (the provider call), finish."""
    key = cache_key or hashlib.sha256(f"{tenant}:{n}".encode()).hexdigest()
    begun = db.value(BEGIN, (tenant, key, f"wamid.{n}"))
    if begun["status"] == "hit":
        return "hit"
    assert begun["status"] == "reserved", begun
    db.value(FINISH, (begun["reservation_id"], Jsonb([])))
    return "settled"


def unlimited(url: str, tenants: list[str]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "update public.budgets set brl_limit = 1e9 where tenant_id = any(%s::uuid[])", (tenants,)
        )


def extra_tenants(url: str, count: int) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "insert into public.tenants (slug, name, plan_id)"
            " select 'bench-' || g, 'Bench ' || g, (select id from public.plans where code = 'pro')"
            " from generate_series(1, %s) g returning id::text",
            (count,),
        ).fetchall()
    return [r[0] for r in rows]


def timed(operation: Callable[[int], object], samples: int) -> list[float]:
    durations = []
    for i in range(samples):
        started = time.perf_counter()
        operation(i)
        durations.append((time.perf_counter() - started) * 1000)
    return durations


def measure(ctx: Context) -> list[Measure]:
    url = ctx.fresh_db()
    unlimited(url, [TENANT])
    results: list[Measure] = []

    with as_worker(url) as conn:
        db = CountingConnection(conn)
        timed(lambda i: reply(db, TENANT, -1 - i), 200)  # warm up caches and plans
        db.calls = 0
        pair = timed(lambda i: reply(db, TENANT, i), SAMPLES)
        calls_per_reply = db.calls / SAMPLES
        begin_only = timed(lambda i: db.value(BEGIN, (TENANT, None, f"b.{i}")), SAMPLES // 3)
        hot_key = hashlib.sha256(b"hot").hexdigest()
        reply(db, TENANT, 0, hot_key)
        db.calls = 0
        hits = timed(lambda i: reply(db, TENANT, i, hot_key), SAMPLES // 3)
        calls_per_hit = db.calls / (SAMPLES // 3)

    results += [
        Measure("gateway DB round trips per reply (begin + finish)", calls_per_reply, "calls", goal="<= 2"),
        Measure("gateway DB round trips per cache hit", calls_per_hit, "calls", goal="1"),
        Measure("gateway begin+finish pair p50", median(pair), "ms", goal="<= 2 ms"),
        Measure("gateway begin+finish pair p99", percentile(pair, 99), "ms"),
        Measure("gateway pairs, 1 client", 1000 / median(pair), "pairs/s", baseline=BASELINE_RTT,
                goal="pair costs ~ this many select-1 round trips: 1/ratio"),
        Measure("gateway ai_begin alone (reserve) p50", median(begin_only), "ms"),
        Measure("gateway cache hit (ai_begin) p50", median(hits), "ms"),
    ]

    # budget enforcement under concurrency: 8 callers on one tenant's budget rows, then on 8 tenants
    counter = iter(range(10**9))
    lock = threading.Lock()

    def next_n() -> int:
        with lock:
            return next(counter)

    def one_tenant(conn: psycopg.Connection[Any], i: int) -> None:
        reply(CountingConnection(conn), TENANT, 10**7 + next_n())

    tenants = extra_tenants(url, 8)
    unlimited(url, tenants)

    def many_tenants(conn: psycopg.Connection[Any], i: int) -> None:
        n = next_n()
        reply(CountingConnection(conn), tenants[n % len(tenants)], 2 * 10**7 + n)

    results += [
        Measure("budget-enforced replies, 8 clients, 1 tenant",
                throughput(worker_url(url), one_tenant, 8, SECONDS, setup=worker_setup), "replies/s",
                baseline=BASELINE_INSERT),
        Measure("budget-enforced replies, 8 clients, 8 tenants",
                throughput(worker_url(url), many_tenants, 8, SECONDS, setup=worker_setup), "replies/s",
                baseline=BASELINE_INSERT),
    ]
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select count(*) filter (where b.used_brl <> u.total) from public.budgets b"
            " join (select tenant_id, sum(cost_brl) as total from public.ai_usage group by tenant_id) u"
            " using (tenant_id)"
        ).fetchone()
    assert row is not None and row[0] == 0, "budget counters drifted from the usage log"
    return results
