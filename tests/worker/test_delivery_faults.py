"""The database restarts while the worker (the runner, as `zapbase up` runs it) is delivering
webhooks to a local receiver: afterwards no event is lost, no delivery the receiver
acknowledged is sent again (counted at the receiver by webhook-id), and every POST the
receiver saw is an attempt on its delivery row. On a server of its own: the other tests'
server never restarts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import anyio.to_thread
import psycopg
import pytest
from loop_support import eventually

from support import Db
from whatsapp_db.webhooks import OWNER, TENANT
from zapbase.db.embedded import SUPERUSER, EmbeddedPostgres, free_port
from zapbase.db.scratch import build_template, scratch_server
from zapbase.settings import Settings
from zapbase.webhooks.receiver import Receiver
from zapbase.worker.runner import Runner

pytestmark = pytest.mark.anyio

EVENTS = 300


@pytest.fixture
def own_server(settings: Settings) -> Iterator[tuple[EmbeddedPostgres, Db]]:
    with scratch_server() as server:
        name = build_template(server, settings, "restarts")
        with psycopg.connect(server.url(SUPERUSER, name), autocommit=True) as conn:
            conn.execute(f"alter database {name} set zapbase.webhooks_allow_http = 'on'")  # local development
        yield server, Db(server.url("postgres", name))


def unfinished(db: Db) -> int:
    count: int = db.value(
        "select count(*) from public.webhook_deliveries d join public.webhook_endpoints w"
        " on w.id = d.endpoint_id where w.name = 'crm' and d.status <> 'succeeded'")  # fmt: skip
    return count


async def test_a_database_restart_mid_delivery_loses_nothing_and_sends_no_ack_twice(
        own_server: tuple[EmbeddedPostgres, Db], tmp_path: Path) -> None:
    server, db = own_server
    rx = Receiver()
    async with rx.serving(free_port()) as base:
        for name in ("crm", "broken"):
            with db.as_user(OWNER) as s:
                created = s.value("select public.create_webhook_endpoint(%s, %s, %s, '{alert.created}')",
                                  (TENANT, name, f"{base}/{name}"))  # fmt: skip
            rx.secrets[name] = created["secret"]
        rx.answers["broken"] = (503, b"try later")
        db.sql("insert into public.alerts (tenant_id, type, title)"
               " select %s, 'test.fault', 'Alerta ' || n from generate_series(1, %s) n", (TENANT, EVENTS))
        settings = Settings(
            database_url=db.url, zapbase_media_dir=tmp_path / "media", anthropic_api_key=None,
            openai_api_key=None,
            zapbase_webhooks_local_mode=True, zapbase_webhook_lease_s=20, zapbase_poll_interval_s=0.2,
            zapbase_scheduler=False,
        )  # fmt: skip
        runner = Runner(settings, serve_http=False, handle_signals=False)
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run)
            await eventually(lambda: len(rx.received.get("crm", [])) >= 30, timeout=30, what="deliveries")
            rx.hold = anyio.Event()  # the next requests wait: the restart comes while they are in flight
            await anyio.sleep(1.0)
            await anyio.to_thread.run_sync(server.stop)  # fast shutdown: every connection is cut
            rx.hold.set()  # the receivers acknowledge what they hold while the database is down
            await anyio.sleep(2.0)
            await anyio.to_thread.run_sync(server.start)
            # until every crm row succeeded: a row left leased by the outage is sent again only
            # after its lease (20 s), which is when a duplicate would show
            await eventually(lambda: unfinished(db) == 0, timeout=90, what="every delivery acknowledged")
            await anyio.sleep(1.0)
            runner.stop()

    assert db.value("select count(*) from public.events where type = 'alert.created'") == EVENTS
    ids = rx.ids("crm")
    assert len(ids) == EVENTS and set(ids.values()) == {1}, [i for i, n in ids.items() if n > 1]
    assert all(d.verified for d in rx.received["crm"])
    # every POST the receivers saw is an attempt on its delivery row, failures included
    attempts = {r["name"]: r["n"] for r in db.sql(
        "select w.name, count(*) as n from public.webhook_attempts a join public.webhook_endpoints w"
        " on w.id = a.endpoint_id group by w.name")}  # fmt: skip
    assert attempts == {"crm": len(rx.received["crm"]), "broken": len(rx.received["broken"])}
    broken = db.sql(
        "select d.status, d.last_status_code, d.last_error, d.attempts from public.webhook_deliveries d"
        " join public.webhook_endpoints w on w.id = d.endpoint_id where w.name = 'broken'")  # fmt: skip
    assert len(broken) == EVENTS
    tried = [b for b in broken if b["attempts"]]
    assert tried and all((b["status"], b["last_status_code"], b["last_error"]) == ("pending", 503, "HTTP 503")
                         for b in tried)  # fmt: skip
