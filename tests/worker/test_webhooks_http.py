"""The deliverer over real HTTP to a local receiver that verifies every signature:
success, garbage answers, errors, a hanging receiver, a deliverer killed mid-send, and the
address guard outside local mode."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import psycopg
import pytest

from support import Db
from whatsapp_db.webhooks import OWNER, TENANT, body, change, ingest, text
from zapbase.db.embedded import SUPERUSER, free_port
from zapbase.db.pool import Pool
from zapbase.webhooks.receiver import HANG, Receiver
from zapbase.worker.deliverer import Deliverer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def receiver(db: Db) -> AsyncIterator[tuple[Receiver, str]]:
    dbname = db.url.rsplit("/", 1)[1]
    with psycopg.connect(db.url.replace("postgres:postgres@", f"{SUPERUSER}@", 1), autocommit=True) as conn:
        conn.execute(f"alter database {dbname} set zapbase.webhooks_allow_http = 'on'")  # local development
    receiver = Receiver()
    async with receiver.serving(free_port()) as url:
        yield receiver, url


def endpoint(db: Db, receiver: Receiver, base: str, name: str,
             types: tuple[str, ...] = ("*",)) -> dict[str, Any]:
    with db.as_user(OWNER) as s:
        created: dict[str, Any] = s.value("select public.create_webhook_endpoint(%s, %s, %s, %s)",
                                          (TENANT, name, f"{base}/{name}", list(types)))
    receiver.secrets[name] = created["secret"]
    return created


def deliverer(pool: Pool, http: httpx.AsyncClient, *, local_mode: bool = True,
              timeout: float = 15.0) -> Deliverer:
    return Deliverer(pool=pool, client=http, worker_id="test", local_mode=local_mode, timeout=timeout)


def deliveries(db: Db) -> list[dict[str, Any]]:
    return db.sql("select d.*, w.name from public.webhook_deliveries d"
                  " join public.webhook_endpoints w on w.id = d.endpoint_id order by d.created_at")


async def test_events_arrive_signed_once_and_the_ack_is_final(db: Db, pool: Pool,
                                                             receiver: tuple[Receiver, str]) -> None:
    rx, base = receiver
    endpoint(db, rx, base, "crm")
    ingest(db, body(change(messages=[text("Oi, tudo bem?")])))
    async with httpx.AsyncClient() as http:
        loop = deliverer(pool, http)
        assert await loop.run_once() == 3
        assert await loop.run_once() == 0  # acknowledged: never sent again
    got = rx.received["crm"]
    assert [d.type for d in got] == ["contact.created", "conversation.created", "message.received"]
    assert all(d.verified and d.signatures == 1 for d in got)
    assert got[2].body["data"]["content"] == "Oi, tudo bem?" and got[2].webhook_id == got[2].body["id"]
    assert {r["status"] for r in deliveries(db)} == {"succeeded"}
    assert db.value("select count(*) from public.webhook_attempts where status_code = 204") == 3


async def test_garbage_errors_and_a_hanging_receiver_are_recorded(db: Db, pool: Pool,
                                                                 receiver: tuple[Receiver, str]) -> None:
    rx, base = receiver
    for name in ("garbage", "broken", "hangs", "moved"):
        endpoint(db, rx, base, name, ("message.received",))
    rx.answers.update({"garbage": (200, b"\xff\x00<html>" * 10_000), "broken": (502, b"bad gateway"),
                       "hangs": HANG, "moved": (301, b"")})
    ingest(db, body(change(messages=[text("oi")])))
    async with httpx.AsyncClient() as http:
        with anyio.fail_after(10):
            assert await deliverer(pool, http, timeout=1.0).run_once() == 4
    rows = {r["name"]: r for r in deliveries(db)}
    assert rows["garbage"]["status"] == "succeeded"  # a 2xx is an acknowledgement, whatever the body
    stored = db.value("select response_body from public.webhook_attempts a join public.webhook_endpoints w"
                      " on w.id = a.endpoint_id where w.name = 'garbage'")
    assert len(stored) == 4096
    assert (rows["broken"]["status"], rows["broken"]["last_status_code"]) == ("pending", 502)
    assert (rows["hangs"]["status"], rows["hangs"]["last_error"]) == ("pending", "timed out after 1 s")
    assert rows["moved"]["status"] == "failed" and "redirects are not followed" in rows["moved"]["last_error"]


async def test_a_deliverer_killed_mid_send_leaves_the_row_to_its_lease(db: Db, pool: Pool,
                                                                      receiver: tuple[Receiver, str]) -> None:
    rx, base = receiver
    endpoint(db, rx, base, "slow", ("message.received",))
    rx.answers["slow"] = HANG
    ingest(db, body(change(messages=[text("oi")])))
    async with httpx.AsyncClient() as http:
        with anyio.move_on_after(1.0):  # killed while the receiver holds the request
            await deliverer(pool, http).run_once()
        assert deliveries(db)[0]["status"] == "sending"
        assert await deliverer(pool, http).run_once() == 0  # leased: nobody else sends it
        db.sql("update public.webhook_deliveries set lease_until = now() - interval '1 second'")
        rx.answers["slow"] = (200, b"ok")
        assert await deliverer(pool, http).run_once() == 1
    ids = rx.ids("slow")
    assert list(ids.values()) == [2]  # the same webhook-id both times: the receiver dedupes
    assert deliveries(db)[0]["status"] == "succeeded"


@pytest.mark.parametrize(("url", "error"), [
    ("http://127.0.0.1:9/x", "only https:// URLs"),
    ("https://127.0.0.1:9/x", "127.0.0.1: private, loopback and link-local"),
    ("https://localhost:9/x", "private, loopback and link-local"),
    ("https://169.254.169.254/latest/meta-data", "169.254.169.254: private, loopback and link-local"),
])
async def test_private_addresses_are_refused_outside_local_mode(db: Db, pool: Pool, url: str,
                                                                error: str) -> None:
    with db.connect() as conn:  # as if stored where http was allowed
        conn.execute("select set_config('zapbase.webhooks_allow_http', 'on', false)")
        conn.execute("insert into public.webhook_endpoints (tenant_id, name, url, event_types, secret_id)"
                     " values (%s, 'intranet', %s, '{*}', vault.create_secret('whsec_AAAA'))", (TENANT, url))
    ingest(db, body(change(messages=[text("oi")])))
    async with httpx.AsyncClient() as http:
        assert await deliverer(pool, http, local_mode=False).run_once() == 3
    rows = deliveries(db)
    assert {r["status"] for r in rows} == {"failed"}  # final: never retried
    assert all(error in r["last_error"] for r in rows)
