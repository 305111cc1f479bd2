"""The AI gateway's own overhead per reply: `Gateway.chat` on the PostgreSQL ledger
(cache lookup + budget reservation in ai_begin, settlement + usage log + cache store in
ai_finish) with a zero-latency OpenAI stand-in, called the way the worker calls it
(authenticator + service_role, autocommit, no server-side prepared statements as behind
Supavisor).

Overhead is measured per reply as the time in `Gateway.chat` minus the time spent inside
the provider, and divided by the same two SQL calls sent by hand (interleaved with it, so
both see the same load); round trips are counted from libpq's protocol trace
(ReadyForQuery messages the server sent), not from our own calls. Goals: p50 <= 2 ms and
at most 2 round trips a reply; budget enforcement keeps its throughput with 8 concurrent
callers, on one tenant (they queue on its budget rows) and on 8 tenants, both with an
in-process provider (the gateway and its ledger alone) and with the stand-in over ASGI
(which spends the caller's CPU on the stand-in's side too).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass

import httpx
import psycopg
from psycopg import pq
from psycopg.types.json import Jsonb

from harness import Context, Measure, median, percentile
from zapbase.ai import (
    ChatMessage,
    ChatRequest,
    ChatResult,
    Gateway,
    GatewayPolicy,
    Link,
    OpenAICompatProvider,
    Outcome,
    Provider,
    Refusal,
    Reservation,
    Usage,
)
from zapbase.ai.ledger import PostgresLedger
from zapbase.db.pool import Pool, open_pool
from zapbase.standins.ai import Fault, FaultKind, OpenAIStandIn

TENANT = "00000000-0000-4000-b000-000000000001"  # seed: Loja Demo
SAMPLES = 1500
CHUNK = 150
WARM_UP = 200
SECONDS = 3.0
CALLERS = 8
BASELINE_RTT = "select 1 round trip, 1 client(s)"
BASELINE_INSERT = "plain 1-row INSERT, 4 client(s)"
PAIR_ALONE = "ai_begin + ai_finish by hand, sync, p50"

MINI = Link(provider="openai", model="gpt-4o-mini", context_window=128_000)
# The platform default policy row caches for an hour too (seed/20_ai.sql).
POLICY = GatewayPolicy(links=(MINI,), timeout_seconds=5, cache_ttl_seconds=3600)
USAGE = Usage(input_tokens=1500, output_tokens=300)


@dataclass
class Stopwatch:
    seconds: float = 0.0


class TimedProvider:
    """The provider, with the time spent inside it added to a stopwatch."""

    def __init__(self, inner: Provider, watch: Stopwatch) -> None:
        self.inner = inner
        self.watch = watch
        self.name = inner.name

    async def chat(self, request: ChatRequest, model: str) -> ChatResult:
        started = time.perf_counter()
        try:
            return await self.inner.chat(request, model)
        finally:
            self.watch.seconds += time.perf_counter() - started

    async def aclose(self) -> None:
        await self.inner.aclose()


class TimedLedger:
    """The Postgres ledger, with the time spent in it added to a stopwatch."""

    def __init__(self, inner: PostgresLedger, watch: Stopwatch) -> None:
        self.inner = inner
        self.watch = watch

    async def begin(
        self, request: ChatRequest, link: Link, policy: GatewayPolicy, key: str | None
    ) -> ChatResult | Reservation | Refusal:
        started = time.perf_counter()
        try:
            return await self.inner.begin(request, link, policy, key)
        finally:
            self.watch.seconds += time.perf_counter() - started

    async def finish(self, reservation: Reservation, attempts: Sequence[Outcome], *, cache: bool) -> None:
        started = time.perf_counter()
        try:
            await self.inner.finish(reservation, attempts, cache=cache)
        finally:
            self.watch.seconds += time.perf_counter() - started


def ask(text: str, tenant: str = TENANT) -> ChatRequest:
    return ChatRequest(
        messages=(ChatMessage(role="user", content=text),),
        system="Você é a assistente da Loja Demo.",
        max_tokens=400,
        tenant_id=tenant,
        request_id="wamid.bench",
        phone="+5511988887777",
    )


def worker_pool(url: str, size: int) -> Pool:
    return open_pool(url, size)


async def round_trips(pool: Pool, work: Callable[[], Awaitable[object]], times: int) -> float:
    """Round trips per `work()`, from the protocol trace of the pool's one connection."""
    with tempfile.TemporaryFile("w+") as trace:
        async with pool.connection() as conn:
            conn.pgconn.trace(trace.fileno())
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        for _ in range(times):
            await work()
        async with pool.connection() as conn:
            conn.pgconn.untrace()  # flushes the trace
        trace.seek(0)
        ready = sum(1 for line in trace if line.startswith("B\t") and "\tReadyForQuery\t" in line)
    return ready / times


BEGIN = (
    "select public.ai_begin(tenant_id => %s, feature => 'reply', model => 'openai/gpt-4o-mini',"
    " cache_key => %s, estimated_input_tokens => 10, estimated_output_tokens => 400,"
    " request_id => 'wamid.bench',"
    " phone => '+5511988887777')"
)
FINISH = (
    "select public.ai_finish(reservation_id => %s, model => 'openai/gpt-4o-mini', input_tokens => 1500,"
    " output_tokens => 300, latency_ms => 1, response => %s)"
)


@contextmanager
def sql_pair(url: str) -> Iterator[Callable[[int], float]]:
    """ai_begin + ai_finish sent by hand on one sync connection, without the gateway: the
    floor of the overhead. Yields pair(n) -> ms."""
    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        conn.execute("set role service_role")
        response = Jsonb({"text": "Entregamos em até 5 dias úteis."})

        def pair(n: int) -> float:
            started = time.perf_counter()
            key = hashlib.sha256(f"sql {n}".encode()).hexdigest()
            begun = conn.execute(BEGIN, (TENANT, key)).fetchone()
            assert begun is not None and begun[0]["status"] == "reserved", begun
            conn.execute(FINISH, (begun[0]["reservation_id"], response)).fetchone()
            return (time.perf_counter() - started) * 1000

        yield pair


@dataclass
class Single:
    overhead: list[float]
    database: list[float]
    total: list[float]
    hit_overhead: list[float]
    pair_alone: list[float]
    trips_per_reply: float
    trips_per_fallback: float
    trips_per_hit: float


async def single_caller(url: str, pair: Callable[[int], float]) -> Single:
    """One caller; the SQL pair alone is interleaved with it, chunk by chunk, so that both
    see the same load on this shared machine."""
    provider_time, ledger_time = Stopwatch(), Stopwatch()
    async with worker_pool(url, 1) as pool, stand_in() as (fake, provider):
        gateway = Gateway(
            {"openai": TimedProvider(provider, provider_time)}, TimedLedger(PostgresLedger(pool), ledger_time)
        )

        async def reply(text: str) -> tuple[float, float, float]:
            """(overhead, database, total) of one reply, in ms."""
            provider_time.seconds = ledger_time.seconds = 0.0
            started = time.perf_counter()
            response = await gateway.chat(ask(text), POLICY)
            total = time.perf_counter() - started
            assert response.ok, response
            return ((total - provider_time.seconds) * 1000, ledger_time.seconds * 1000, total * 1000)

        for i in range(WARM_UP):  # plans of the PL/pgSQL functions, the stand-in, the SDK paths
            await reply(f"aquecimento {i}")
            pair(-1 - i)
        samples: list[tuple[float, float, float]] = []
        alone: list[float] = []
        for chunk in range(0, SAMPLES, CHUNK):
            samples += [await reply(f"pergunta {i}") for i in range(chunk, chunk + CHUNK)]
            alone += [pair(i) for i in range(chunk, chunk + CHUNK)]
        await reply("a mesma pergunta")
        hits = [(await reply("a mesma pergunta"))[0] for _ in range(SAMPLES // 3)]

        counter = iter(range(10**9))
        trips_per_reply = await round_trips(pool, lambda: reply(f"contada {next(counter)}"), 100)
        trips_per_hit = await round_trips(pool, lambda: reply("a mesma pergunta"), 100)

        async def fallback() -> None:
            # OpenAI fails, the local model answers: both attempts settle in one ai_finish
            fake.push(Fault(kind=FaultKind.SERVER_ERROR))
            response = await gateway.chat(ask(f"com falha {next(counter)}"), no_cooldown)
            assert response.ok and len(response.attempts) == 2, response

        no_cooldown = GatewayPolicy(links=(MINI,), timeout_seconds=5, cooldown_seconds=0)
        chain_log = logging.getLogger("zapbase.ai.chain")
        chain_log.disabled = True  # one "failed -> next_provider" warning per call otherwise
        try:
            trips_per_fallback = await round_trips(pool, fallback, 50)
        finally:
            chain_log.disabled = False
    return Single(
        overhead=[s[0] for s in samples],
        database=[s[1] for s in samples],
        total=[s[2] for s in samples],
        hit_overhead=hits,
        pair_alone=alone,
        trips_per_reply=trips_per_reply,
        trips_per_fallback=trips_per_fallback,
        trips_per_hit=trips_per_hit,
    )


class InstantProvider:
    """Answers at once, in-process: no stand-in HTTP server sharing the caller's CPU, so
    what is left is the gateway and its ledger."""

    name = "openai"

    async def chat(self, request: ChatRequest, model: str) -> ChatResult:
        return ChatResult(
            text="Entregamos em até 5 dias úteis.", provider=self.name, model=model, usage=USAGE, latency_ms=0
        )

    async def aclose(self) -> None:
        return None


@asynccontextmanager
async def stand_in() -> AsyncIterator[tuple[OpenAIStandIn, OpenAICompatProvider]]:
    """The zero-latency OpenAI stand-in, in-process over ASGI, and a provider talking to it."""
    fake = OpenAIStandIn(api_key="sk-bench", latency_ms=0, usage=USAGE)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=fake.app)) as http:
        yield fake, OpenAICompatProvider(api_key="sk-bench", base_url="http://openai.test", client=http)


async def concurrent_callers(url: str, tenants: list[str], topic: str, *, over_http: bool) -> float:
    """Replies per second of CALLERS concurrent callers, caller i on tenants[i % len];
    `topic` keeps the questions apart from every other run's (no cache hits)."""
    counts = [0] * CALLERS
    questions = iter(range(10**9))
    async with worker_pool(url, CALLERS) as pool, stand_in() as (_, http_provider):
        provider: Provider = http_provider if over_http else InstantProvider()
        gateway = Gateway({"openai": provider}, PostgresLedger(pool))
        deadline = 0.0

        async def caller(index: int) -> None:
            tenant = tenants[index % len(tenants)]
            while time.perf_counter() < deadline:
                response = await gateway.chat(ask(f"{topic} {next(questions)}", tenant), POLICY)
                assert response.ok and not response.cached, response
                counts[index] += 1

        deadline = time.perf_counter() + 0.5  # warm every connection
        await asyncio.gather(*(caller(i) for i in range(CALLERS)))
        counts[:] = [0] * CALLERS
        began = time.perf_counter()
        deadline = began + SECONDS
        await asyncio.gather(*(caller(i) for i in range(CALLERS)))
        elapsed = time.perf_counter() - began
    return sum(counts) / elapsed


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


def assert_no_drift(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "select count(*) filter (where b.used_brl <> u.total) from public.budgets b"
            " join (select tenant_id, sum(cost_brl) as total from public.ai_usage group by tenant_id) u"
            " using (tenant_id)"
        ).fetchone()
    assert row is not None and row[0] == 0, "budget counters drifted from the usage log"


def measure(ctx: Context) -> list[Measure]:
    url = ctx.fresh_db()
    unlimited(url, [TENANT])
    with sql_pair(url) as pair:
        single = asyncio.run(single_caller(url, pair))
    tenants = extra_tenants(url, CALLERS)
    unlimited(url, tenants)
    throughputs = {
        (over_http, len(group)): asyncio.run(
            concurrent_callers(url, group, f"{over_http} {len(group)}", over_http=over_http)
        )
        for over_http in (False, True)
        for group in ([TENANT], tenants)
    }
    assert_no_drift(url)
    overhead_p50 = median(single.overhead)
    return [
        Measure(PAIR_ALONE, median(single.pair_alone), "ms"),
        Measure(
            "gateway overhead per reply p50 (chat - provider)",
            overhead_p50,
            "ms",
            baseline=PAIR_ALONE,
            goal="<= 2 ms",
        ),
        Measure("gateway overhead per reply p99", percentile(single.overhead, 99), "ms"),
        Measure("  of which database (ai_begin + ai_finish) p50", median(single.database), "ms"),
        Measure("  of which database p99", percentile(single.database, 99), "ms"),
        Measure("gateway chat with zero-latency stand-in p50", median(single.total), "ms"),
        Measure("gateway overhead per cache hit p50", median(single.hit_overhead), "ms"),
        Measure(
            "gateway replies/s by overhead alone, 1 caller",
            1000 / overhead_p50,
            "replies/s",
            baseline=BASELINE_RTT,
            goal="1/ratio = select-1 round trips a reply costs",
        ),
        Measure("gateway DB round trips per reply", single.trips_per_reply, "trips", goal="<= 2"),
        Measure(
            "gateway DB round trips per reply with a fallback",
            single.trips_per_fallback,
            "trips",
            goal="<= 2",
        ),
        Measure("gateway DB round trips per cache hit", single.trips_per_hit, "trips", goal="1"),
        *(
            Measure(
                f"budget-enforced replies, {CALLERS} callers, {count} tenant(s), {label}",
                throughputs[over_http, count],
                "replies/s",
                baseline=BASELINE_INSERT,
            )
            for over_http, label in ((False, "in-process provider"), (True, "stand-in over ASGI"))
            for count in (1, CALLERS)
        ),
    ]
