"""The automation loop: woken by the NOTIFY its queue sends, it evaluates new events against
the tenant's rules long before its poll; stopping leaves nothing half done."""

from __future__ import annotations

import time

import anyio
import pytest
from loop_support import MARIA, TENANT, eventually
from psycopg.types.json import Jsonb

from support import Db
from zapbase.db.pool import Pool
from zapbase.simulator import SimulatedUser
from zapbase.worker.automation import AUTOMATION_CHANNEL, AutomationLoop
from zapbase.worker.runner import listen


@pytest.mark.anyio
async def test_notify_wakes_the_automation_loop_which_runs_the_rules(
    db: Db, maria: SimulatedUser, pool: Pool
) -> None:
    db.sql("insert into public.automation_rules (tenant_id, name, event_type, mode, actions)"
           " values (%s, 'marcar', 'message.received', 'automatic', %s)",
           (TENANT, Jsonb([{"type": "add_tag", "tag": "falou_conosco"}])))
    loop = AutomationLoop(pool=pool, poll_interval=60)
    listening = anyio.Event()

    def wake() -> None:
        listening.set()  # the first call comes right after LISTEN (catch-up)
        loop.wake()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listen, db.url, {AUTOMATION_CHANNEL: wake})
        await listening.wait()
        tg.start_soon(loop.run)
        await anyio.sleep(0.2)  # the first round found nothing: the loop sleeps for 60 s
        sent_at = time.monotonic()
        await maria.send_text("Oi")
        await eventually(lambda: db.value("select count(*) from public.automation_executions") == 1,
                         timeout=5, what="the NOTIFY-woken evaluation")
        assert time.monotonic() - sent_at < 5
        loop.stop()
        tg.cancel_scope.cancel()
    assert db.value("select tags from public.contacts where wa_id = %s", (MARIA,)) == ["falou_conosco"]
    assert db.value("select count(*) from public.automation_queue") == 0
