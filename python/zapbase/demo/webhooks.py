"""The webhook chapter: the conversation's events, signed, to a receiver on localhost."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio

from zapbase.db.embedded import free_port
from zapbase.db.pool import Connection
from zapbase.demo.common import REPLY_TIMEOUT_S
from zapbase.errors import ZapbaseError
from zapbase.simulator import DEMO_NUMBER
from zapbase.webhooks.receiver import Receiver


@dataclass(frozen=True, slots=True)
class WebhookReport:
    """What the local receiver got of the conversation's events."""

    events: int
    delivered: int
    verified: frozenset[str]  # webhook-ids (event ids) whose signature checked out
    duplicates: int


_DEMO_OWNER_SQL = """
select m.tenant_id, m.user_id from public.whatsapp_numbers n
  join public.members m on m.tenant_id = n.tenant_id and m.role = 'owner' and m.status = 'active'
 where n.phone_number_id = %s order by m.created_at limit 1
"""
_UNSETTLED_SQL = """
select count(*) as n from public.webhook_deliveries
 where endpoint_id = %s and status in ('pending', 'sending')
"""


class DemoHooks:
    """A local receiver verifying every signature (`zapbase.webhooks.receiver`), subscribed to
    every event of the demo tenant by its owner, for the length of the demo."""

    NAME = "demo"

    def __init__(self, receiver: Receiver, endpoint_id: str) -> None:
        self.receiver = receiver
        self.endpoint_id = endpoint_id

    async def report(self, conn: Connection, event_ids: list[str]) -> WebhookReport:
        """Wait until the deliverer has finished with the endpoint, then count."""
        with anyio.move_on_after(REPLY_TIMEOUT_S):
            while True:
                row = await (await conn.execute(_UNSETTLED_SQL, (self.endpoint_id,))).fetchone()
                if not (row and row["n"]):
                    break
                await anyio.sleep(0.05)
        ours = set(event_ids)
        got = [d for d in self.receiver.received.get(self.NAME, []) if d.webhook_id in ours]
        ids = {d.webhook_id for d in got}
        return WebhookReport(
            len(ours), len(ids), frozenset(d.webhook_id for d in got if d.verified), len(got) - len(ids)
        )


@contextlib.asynccontextmanager
async def demo_hooks(conn: Connection) -> AsyncIterator[DemoHooks]:
    """Serve the receiver and register it as the demo tenant's owner would (the database lets
    this one http://localhost URL in); the endpoint is deleted afterwards."""
    receiver = Receiver()
    async with receiver.serving(free_port()) as base:
        owner = await (await conn.execute(_DEMO_OWNER_SQL, (DEMO_NUMBER.phone_number_id,))).fetchone()
        if owner is None:
            raise ZapbaseError("the demo tenant is missing: run `zapbase setup` on the local database")
        claims = json.dumps({"sub": str(owner["user_id"]), "role": "authenticated"})
        async with conn.transaction():
            await conn.execute(
                "select set_config('request.jwt.claims', %s, true),"
                " set_config('zapbase.webhooks_allow_http', 'on', true)", (claims,))  # fmt: skip
            cur = await conn.execute(
                "select public.create_webhook_endpoint(%s, 'Demo receiver', %s, '{*}') as e",
                (owner["tenant_id"], f"{base}/{DemoHooks.NAME}"))  # fmt: skip
            created = (await cur.fetchone() or {})["e"]
        receiver.secrets[DemoHooks.NAME] = created["secret"]
        try:
            yield DemoHooks(receiver, created["id"])
        finally:
            with anyio.CancelScope(shield=True):
                await conn.execute("delete from public.webhook_endpoints where id = %s", (created["id"],))
