"""Webhook dispatch: deliveries per second from the outbox to a local receiver through the
deliverer (claim, sign, POST, record; 8 at a time) divided by the same POSTs sent by a bare
httpx loop with 8 concurrent tasks (goal >= 0.7). Then 10,000 events fanned out to 3
endpoints, counted at the receiver by webhook-id: 0 lost, 0 duplicates.

The receiver verifies every signature in both runs, in the same process.
"""

from __future__ import annotations

import json
import time

import anyio
import httpx
import psycopg

from harness import Context, Measure
from zapbase.db.embedded import SUPERUSER, free_port
from zapbase.db.pool import open_pool
from zapbase.webhooks.receiver import Receiver
from zapbase.webhooks.signing import sign_headers
from zapbase.worker.deliverer import Deliverer

TENANT = "00000000-0000-4000-b000-000000000001"  # seed: Loja Demo
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # noqa: S105 - the bench's own receiver
DISPATCH = 3000
FANOUT = 10_000
CONCURRENCY = 8


def prepare(url: str, base: str, names: list[str]) -> None:
    dbname = url.rsplit("/", 1)[1]
    with psycopg.connect(url.replace("postgres:postgres@", f"{SUPERUSER}@", 1), autocommit=True) as conn:
        conn.execute(f"alter database {dbname} set zapbase.webhooks_allow_http = 'on'")
    with psycopg.connect(url, autocommit=True) as conn:
        for name in names:
            endpoint = conn.execute("insert into public.webhook_endpoints (tenant_id, name, url, event_types)"
                                    " values (%s, %s, %s, '{alert.created}') returning id",
                                    (TENANT, name, f"{base}/{name}")).fetchone()
            assert endpoint is not None
            # the secret named for its endpoint, as create_webhook_endpoint stores it (claims check the name)
            conn.execute("update public.webhook_endpoints"
                         " set secret_id = private.vault_store('webhook_endpoint:' || id, %s) where id = %s",
                         (SECRET, endpoint[0]))


def emit(url: str, count: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("select private.emit(%s, 'alert.created', 'alerts', gen_random_uuid(),"
                     " jsonb_build_object('n', n, 'title', 'Orçamento de IA em 80%%'))"
                     " from generate_series(1, %s) n", (TENANT, count))


async def drain(url: str) -> float:
    """Run the deliverer until the queue is empty; returns seconds taken."""
    async with open_pool(url, 4) as pool, httpx.AsyncClient() as http:
        deliverer = Deliverer(pool=pool, client=http, worker_id="bench", concurrency=CONCURRENCY,
                              local_mode=True)
        began = time.perf_counter()
        while await deliverer.run_once():
            pass
        return time.perf_counter() - began


async def bare(base: str, count: int) -> float:
    """The same signed POSTs by a bare loop of 8 tasks; returns seconds taken."""
    payloads = [json.dumps({"id": f"bare-{n}", "type": "alert.created", "data": {"n": n}}).encode()
                for n in range(count)]
    queue = iter(payloads)
    async with httpx.AsyncClient() as http:

        async def worker() -> None:
            for body in queue:
                headers = sign_headers([SECRET], json.loads(body)["id"], body)
                response = await http.post(f"{base}/bare", content=body,
                                           headers={**headers, "content-type": "application/json"})
                response.raise_for_status()

        began = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(CONCURRENCY):
                tg.start_soon(worker)
        return time.perf_counter() - began


async def run(ctx: Context) -> list[Measure]:
    receiver = Receiver(secrets={name: SECRET for name in ("bare", "one", "a", "b", "c")})
    async with receiver.serving(free_port()) as base:
        url = ctx.fresh_db()
        prepare(url, base, ["one"])
        emit(url, DISPATCH)
        bare_s = await bare(base, DISPATCH)
        deliverer_s = await drain(url)
        assert len(receiver.received["one"]) == DISPATCH and all(d.verified for d in receiver.received["one"])

        url = ctx.fresh_db()
        prepare(url, base, ["a", "b", "c"])
        emit(url, FANOUT)
        fanout_s = await drain(url)
    lost = sum(FANOUT - len(receiver.ids(name)) for name in ("a", "b", "c"))
    duplicates = sum(n - 1 for name in ("a", "b", "c") for n in receiver.ids(name).values())
    unverified = sum(not d.verified for name in ("a", "b", "c") for d in receiver.received.get(name, []))
    return [
        Measure(f"bare httpx POSTs, {CONCURRENCY} concurrent", DISPATCH / bare_s, "POSTs/s"),
        Measure(f"webhook dispatch, {CONCURRENCY} concurrent", DISPATCH / deliverer_s, "deliveries/s",
                baseline=f"bare httpx POSTs, {CONCURRENCY} concurrent", goal=">= 0.7"),
        Measure(f"fan-out {FANOUT:,} events x 3 endpoints", 3 * FANOUT / fanout_s, "deliveries/s"),
        Measure("fan-out: lost at the receiver", lost, "deliveries", goal="0"),
        Measure("fan-out: duplicates at the receiver", duplicates, "deliveries", goal="0"),
        Measure("fan-out: bad signatures", unverified, "deliveries", goal="0"),
    ]


def measure(ctx: Context) -> list[Measure]:
    return anyio.run(run, ctx)
