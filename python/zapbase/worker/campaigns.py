"""The campaign loop: releases campaign messages at their pace and keeps templates in step with Meta.

Every round (about once a second, sooner on NOTIFY zapbase_templates):

* `campaign_release` queues what each running campaign may send now (rate per minute,
  the tier's 24 h unique-recipient limit, the pair limit, the sending window); the
  sender then sends them like any other outbound message;
* templates a manager created or deleted are submitted to Meta
  (`templates_claim_pushes` → POST / DELETE → `templates_record_push`);
* requested syncs list every page of the WABA's templates and apply them at once
  (`templates_claim_syncs` → GET … → `templates_apply_sync`).

SQL decides everything; this loop only does the HTTP. A replica that dies mid-round loses
nothing: queued messages are rows, template claims expire (5 min) and syncs (10 min).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from psycopg.types.json import Jsonb

from zapbase.db.pool import Pool
from zapbase.whatsapp.api import GraphAPI
from zapbase.whatsapp.errors import WhatsAppError
from zapbase.worker.loop import QueueLoop

__all__ = ["CampaignLoop", "push_templates", "sync_templates"]

_logger = logging.getLogger(__name__)


async def push_templates(pool: Pool, api: GraphAPI, *, batch_size: int = 10) -> int:
    """Create or delete at Meta the templates managers asked for; returns how many were tried."""
    async with pool.connection() as conn:
        cur = await conn.execute("select * from public.templates_claim_pushes(%s)", (batch_size,))
        claimed = await cur.fetchall()
    for row in claimed:
        meta_id, status, error = None, None, None
        try:
            if not row["access_token"] or not row["waba_id"]:
                raise WhatsAppError("no number of this WABA has an access token in Vault")
            if row["action"] == "create":
                answer = await api.create_template(
                    row["waba_id"], _create_body(row), token=row["access_token"]
                )
                meta_id, status = str(answer["id"]), _opt_str(answer.get("status"))
            else:
                await api.delete_template(
                    row["waba_id"],
                    row["name"],
                    template_id=row["meta_template_id"],
                    token=row["access_token"],
                )
        except WhatsAppError as exc:
            error = str(exc)
            _logger.warning("template %s %s failed: %s", row["action"], row["name"], exc)
        async with pool.connection() as conn:
            await conn.execute(
                "select public.templates_record_push(%s, %s, %s, %s)",
                (row["template_id"], meta_id, status, error),
            )
    return len(claimed)


async def sync_templates(pool: Pool, api: GraphAPI, *, batch_size: int = 5) -> int:
    """List the templates of every WABA whose sync was requested; returns how many WABAs."""
    async with pool.connection() as conn:
        cur = await conn.execute("select * from public.templates_claim_syncs(%s)", (batch_size,))
        claimed = await cur.fetchall()
    for row in claimed:
        templates: list[Mapping[str, Any]] = []
        error = None
        try:
            if not row["access_token"]:
                raise WhatsAppError("no number of this WABA has an access token in Vault")
            templates = await api.list_templates(row["waba_id"], token=row["access_token"])
        except WhatsAppError as exc:
            error = str(exc)
            _logger.warning("template sync of WABA %s failed: %s", row["waba_id"], exc)
        async with pool.connection() as conn:
            await conn.execute(
                "select public.templates_apply_sync(%s, %s, %s, %s)",
                (row["tenant_id"], row["waba_id"], Jsonb(templates), error),
            )
        _logger.info("WABA %s: %s template(s) synced", row["waba_id"], len(templates))
    return len(claimed)


def _create_body(row: Mapping[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": row["name"],
        "language": row["language"],
        "category": row["category"],
        "components": row["components"],
    }
    if row["parameter_format"] == "named":
        body["parameter_format"] = "NAMED"
    return body


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


class CampaignLoop(QueueLoop):
    """Campaign pacing and template pushes / syncs of one replica.

    **Parameters**

    * **pool** - service-role connections.
    * **api** - Graph API client (the template endpoints of the WABA).
    * **poll_interval** - seconds between rounds: the pacing resolution (1 s keeps a
      600 / minute campaign within a message or two of its rate).
    """

    def __init__(self, *, pool: Pool, api: GraphAPI, poll_interval: float = 1.0) -> None:
        super().__init__(poll_interval=poll_interval)
        self._pool = pool
        self._api = api

    async def release(self) -> int:
        async with self._pool.connection() as conn:
            cur = await conn.execute("select public.campaign_release() as released")
            row = await cur.fetchone()
        return int(row["released"]) if row else 0

    async def run_once(self) -> int:
        released = await self.release()
        await push_templates(self._pool, self._api)
        await sync_templates(self._pool, self._api)
        if released:
            _logger.debug("released %s campaign message(s)", released)
        return 0  # released rows are the sender's; pacing waits for the next tick either way
