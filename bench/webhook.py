"""Signed WhatsApp webhooks through the worker's real HTTP app, served by uvicorn on localhost.

Each server runs in a process of its own (`python bench/webhook.py serve <kind> <db url>`)
so that the load generator, httpx in this process, does not share its GIL. Every request is
a distinct Meta-shaped text message (new wamid, 1000 rotating users of the seed's demo
number) signed with the number's app secret, so each one is a real `whatsapp_receive` that
stores an event and a message and creates or updates a contact and a conversation, at once
or, during a burst, through the backlog: the server process runs the worker's backlog loop
too, as a worker does, and every run ends by waiting for the backlog to drain and checking
that each 200 became one stored message (the drain time is reported).

Throughput: closed loop, CONNECTIONS requests in flight, against a hello-world FastAPI POST
served the same way that receives the same bodies (goal: ratio >= 0.35), and against the same
whatsapp_ingest calls made straight over SQL (what HTTP costs on top). Latency: open loop at
RATE requests/s, each request timed from the moment it was due, so a slow server cannot hide
its queueing (goal: p99 <= 100 ms). The load generator shares the machine: its CPU time per
request is printed too.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import psycopg
import uvicorn
from fastapi import FastAPI

from harness import Context, Measure, median, percentile, throughput
from zapbase.db.pool import open_pool
from zapbase.settings import Settings
from zapbase.simulator import DEMO_APP_SECRET, DEMO_NUMBER, webhooks
from zapbase.whatsapp.signature import HEADER, sign
from zapbase.worker.backlog import BACKLOG_CHANNEL, BacklogLoop
from zapbase.worker.http import create_app, webhook_path
from zapbase.worker.metrics import Metrics
from zapbase.worker.runner import listen

CONNECTIONS = 8
PACED_CONNECTIONS = 32
SECONDS = 5.0
RATE = 320.0
PACED_SECONDS = 10.0
WARM_UP_SECONDS = 1.0
USERS = 1000
TIMEOUT = httpx.Timeout(30.0).as_dict()
HELLO = "hello-world FastAPI POST on uvicorn"
DEMO_PATH = webhook_path(DEMO_NUMBER.phone_number_id)  # the demo number's own app
WEBHOOK = "signed webhook POST → whatsapp_receive on uvicorn"
DIRECT = "whatsapp_ingest over SQL, no HTTP"

Body = Callable[[], tuple[bytes, dict[str, str]]]


def signed_bodies() -> Body:
    """A maker of distinct signed webhook bodies: one new text message each."""
    numbers = itertools.count()

    def make() -> tuple[bytes, dict[str, str]]:
        n = next(numbers)
        wa_id = f"55119{n % USERS:08d}"
        message = webhooks.inbound_message(
            wa_id=wa_id, wamid=f"wamid.BENCH{time.time_ns()}{n:09d}", timestamp=int(time.time()),
            kind="text", content={"body": f"Olá! Pedido nº {n}: quando chega?"},
        )
        value = webhooks.inbound_value(wa_id=wa_id, name=f"Cliente {n % USERS}", message=message)
        body = webhooks.encode(webhooks.notification(DEMO_NUMBER, value))
        return body, {"Content-Type": "application/json", HEADER: sign(body, DEMO_APP_SECRET)}

    return make


class Connections:
    """Keep-alive connections to one server, each an httpx transport of one connection.

    The client shares the two cores with the server and PostgreSQL, so it should spend as
    little as it can: httpx's transport layer alone costs about a third less CPU per request
    than `AsyncClient` (URL merging, cookies, auth and hooks it would not use), and one
    transport per connection avoids the shared pool's cost, which grows with its size.
    A request waits (first come, first served) for an idle connection.
    """

    def __init__(self, base: str, count: int) -> None:
        self._base = base
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self._all = [httpx.AsyncHTTPTransport(limits=limits) for _ in range(count)]
        self._idle: asyncio.Queue[httpx.AsyncHTTPTransport] = asyncio.Queue()
        for transport in self._all:
            self._idle.put_nowait(transport)
        self.failures: list[int] = []
        self.sent = 0

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        request = httpx.Request("POST", self._base + path, content=body, headers=headers,
                                extensions={"timeout": TIMEOUT})
        transport = await self._idle.get()
        try:
            response = await transport.handle_async_request(request)
            await response.aread()
            await response.aclose()
        finally:
            self._idle.put_nowait(transport)
        self.sent += 1
        if response.status_code != 200:
            self.failures.append(response.status_code)

    async def close(self, path: str) -> None:
        for transport in self._all:
            await transport.aclose()
        if self.failures:
            raise RuntimeError(f"{path}: {len(self.failures)} requests failed, e.g. HTTP {self.failures[0]}")


@dataclass
class Run:
    per_second: float
    sent: int
    client_cpu_s: float  # CPU time of this process (the load generator) per request


async def closed_loop(base: str, path: str, seconds: float) -> Run:
    """Requests/s with CONNECTIONS requests always in flight."""
    make = signed_bodies()
    conns = Connections(base, CONNECTIONS)
    done = 0
    measuring = stop = False

    async def client() -> None:
        nonlocal done
        while not stop:
            await conns.post(path, *make())
            done += measuring

    tasks = [asyncio.create_task(client()) for _ in range(CONNECTIONS)]
    await asyncio.sleep(WARM_UP_SECONDS)
    measuring = True
    began, cpu = time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    counted, elapsed, cpu = done, time.perf_counter() - began, time.process_time() - cpu
    stop = True
    await asyncio.gather(*tasks)
    await conns.close(path)
    return Run(counted / elapsed, conns.sent, cpu / max(counted, 1))


async def open_loop(base: str, path: str, rate: float, seconds: float) -> tuple[list[float], int]:
    """(latencies in s of requests started at a fixed `rate`, timed from when each was due;
    requests sent)."""
    make = signed_bodies()
    conns = Connections(base, PACED_CONNECTIONS)
    latencies: list[float] = []

    async def one(due: float, keep: bool) -> None:
        await conns.post(path, *make())
        if keep:
            latencies.append(time.perf_counter() - due)

    warm = int(rate * WARM_UP_SECONDS)
    tasks = []
    start = time.perf_counter()
    for i in range(warm + int(rate * seconds)):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(due, i >= warm)))
    await asyncio.gather(*tasks)
    await conns.close(path)
    return latencies, conns.sent


@contextmanager
def serving(kind: str, db_url: str) -> Iterator[str]:
    """A uvicorn server process for `kind` (hello | worker); yields its base URL."""
    here = Path(__file__).resolve()
    proc = subprocess.Popen(
        [sys.executable, str(here), "serve", kind, db_url],
        stdout=subprocess.PIPE, text=True, cwd=here.parent.parent,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("port "):
            raise RuntimeError(f"bench server {kind} did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def ingest_directly(url: str, clients: int) -> float:
    """whatsapp_ingest calls/s over SQL, as the route makes them but without HTTP."""
    make = signed_bodies()

    def ingest(conn: psycopg.Connection[tuple[object, ...]], i: int) -> None:
        signer = DEMO_NUMBER.phone_number_id
        conn.execute("select public.whatsapp_ingest(%s::jsonb, %s)", (make()[0].decode(), signer))

    def as_worker(conn: psycopg.Connection[tuple[object, ...]]) -> None:
        conn.execute("set role service_role")

    return throughput(url, ingest, clients, SECONDS, setup=as_worker)


def drain_and_check(url: str, sent: int) -> float:
    """Seconds until the backlog is applied after the load; then every 200 must have meant one
    stored message."""
    began = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        while conn.execute("select exists (select 1 from public.inbound_backlog)").fetchone() != (False,):
            if time.perf_counter() - began > 120:
                raise RuntimeError("the backlog did not drain within 2 minutes")
            time.sleep(0.05)
        drained = time.perf_counter() - began
        row = conn.execute("select count(*) from public.messages where direction = 'inbound'").fetchone()
    if row is None or row[0] != sent:
        raise RuntimeError(f"{sent} webhooks answered 200 but {row} inbound messages are stored")
    return drained


def measure(ctx: Context) -> list[Measure]:
    # Each webhook phase starts from the seeded database: ingest costs more as tables grow.
    direct = ingest_directly(ctx.fresh_db(), CONNECTIONS)
    with serving("hello", "") as base:
        hello = asyncio.run(closed_loop(base, "/hello", SECONDS))
        hello_lat, _ = asyncio.run(open_loop(base, "/hello", RATE, PACED_SECONDS))
    url = ctx.fresh_db()
    with serving("worker", url) as base:
        webhook = asyncio.run(closed_loop(base, DEMO_PATH, SECONDS))
        closed_drain = drain_and_check(url, webhook.sent)
    url = ctx.fresh_db()
    with serving("worker", url) as base:
        webhook_lat, paced_sent = asyncio.run(open_loop(base, DEMO_PATH, RATE, PACED_SECONDS))
        paced_drain = drain_and_check(url, paced_sent)
    ms = 1000.0
    paced = f"at {RATE:.0f} req/s (paced)"
    hello_name = f"{HELLO}, {CONNECTIONS} conns"
    return [
        Measure(hello_name, hello.per_second, "req/s"),
        Measure(f"{WEBHOOK}, {CONNECTIONS} conns", webhook.per_second, "req/s",
                baseline=hello_name, goal=">= 0.35 ×"),
        Measure(f"{DIRECT}, {CONNECTIONS} clients", direct, "calls/s"),
        Measure(f"{WEBHOOK} (vs SQL alone)", webhook.per_second, "req/s",
                baseline=f"{DIRECT}, {CONNECTIONS} clients"),
        Measure("load generator CPU per hello request", hello.client_cpu_s * ms, "ms"),
        Measure("load generator CPU per webhook request", webhook.client_cpu_s * ms, "ms"),
        Measure(f"hello p50 {paced}", median(hello_lat) * ms, "ms"),
        Measure(f"hello p99 {paced}", percentile(hello_lat, 99) * ms, "ms"),
        Measure(f"webhook p50 {paced}", median(webhook_lat) * ms, "ms", baseline=f"hello p50 {paced}"),
        Measure(f"webhook p99 {paced}", percentile(webhook_lat, 99) * ms, "ms",
                baseline=f"hello p99 {paced}", goal="<= 100 ms"),
        Measure(f"backlog applied after the {CONNECTIONS}-conn run ({webhook.sent:,} bodies)",
                closed_drain, "s"),
        Measure(f"backlog applied after the paced run ({paced_sent:,} bodies)", paced_drain, "s"),
    ]


# -- the server processes ----------------------------------------------------------------------


def _hello_app() -> FastAPI:
    app = FastAPI()

    @app.post("/hello")
    async def hello() -> dict[str, str]:
        return {"message": "Hello World"}

    return app


async def _serve(kind: str, db_url: str) -> None:
    # An explicit IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
    # and without it every response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    settings = Settings(database_url=db_url)

    async def run(app: FastAPI) -> None:
        config = uvicorn.Config(app, log_level="warning", access_log=False)
        server = uvicorn.Server(config)
        print(f"port {sock.getsockname()[1]}", flush=True)
        await server.serve(sockets=[sock])

    if kind == "hello":
        await run(_hello_app())
        return
    async with open_pool(db_url, settings.zapbase_db_pool_size) as pool, anyio.create_task_group() as tg:
        # the worker's backlog loop beside its HTTP API, as in one worker process
        backlog = BacklogLoop(pool=pool, metrics=Metrics())
        tg.start_soon(listen, db_url, {BACKLOG_CHANNEL: backlog.wake})
        tg.start_soon(backlog.run)
        await run(create_app(settings, pool, Metrics()))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "serve":
        asyncio.run(_serve(sys.argv[2], sys.argv[3]))
    else:
        sys.exit("usage: webhook.py serve hello|worker <database url>")
