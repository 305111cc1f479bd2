"""The runner when PostgreSQL drops the worker's sessions in the middle of a round (a restart):
the worker lives on, and the message in hand comes back when its lease runs out."""

from __future__ import annotations

import anyio
import pytest
from loop_support import eventually, text

from support import Db
from zapbase.db.pool import TRUSTED_IDLE_S
from zapbase.local_stack import local_stack
from zapbase.settings import Settings
from zapbase.whatsapp.inbound import InboundMessage, Outgoing, Reply

REPLY = "Pronto, já verifiquei."
# Every other session of the test's database: the worker's pool, its LISTEN and scheduler.
_CUT = """
select count(pg_terminate_backend(a.pid)) as cut from pg_stat_activity a
 where a.datname = current_database() and a.pid <> pg_backend_pid()
"""


class Severing:
    """Answers every message; the first time it first has the server end every session of the
    worker, then fails, as a model call does when the database restarts while it runs. The
    processor then records that failure on a session the pool trusts (returned just now)."""

    def __init__(self, db: Db) -> None:
        self._db = db
        self.cut = 0

    async def respond(self, message: InboundMessage) -> Reply:
        if not self.cut:
            [row] = await anyio.to_thread.run_sync(self._db.sql, _CUT)
            self.cut = int(row["cut"])
            raise RuntimeError("the model call failed while the database restarted")
        return Reply(messages=(Outgoing(body=text(REPLY)),))


@pytest.mark.anyio
async def test_the_worker_answers_on_after_the_database_drops_its_sessions_mid_round(
    db: Db, loop_settings: Settings
) -> None:
    severing = Severing(db)
    async with local_stack(loop_settings, responder=severing) as stack:
        first = stack.user("5511977775555", "Rita")
        cut_short = await first.send_text("Oi, meu pedido atrasou")
        await eventually(lambda: severing.cut > 0, what="the sessions cut during the first answer")
        await anyio.sleep(TRUSTED_IDLE_S)  # sessions idle this long are checked before they are lent

        # the worker is still up: another customer gets their answer
        second = stack.user("5511977774444", "Caio")
        await second.send_text("Vocês abrem sábado?")
        await eventually(lambda: [m.text for m in second.inbox] == [REPLY], timeout=20,
                         what="the answer after the outage")  # fmt: skip
        assert not stack.stopped.is_set()

    # The message in hand when the sessions died was not lost: still claimed, under a lease
    # that runs out (then any replica claims it again); it got no reply yet.
    [row] = db.sql("select status, lease_until > now() as leased from public.messages where wamid = %s",
                   (cut_short.wamid,))  # fmt: skip
    assert row == {"status": "processing", "leased": True}
    assert first.inbox == []
