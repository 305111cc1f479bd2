"""Helpers of the sender / processor / runner tests."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from support import Db, Row

WORKER_URL = "http://worker"
SIMULATOR_URL = "http://simulator"
MARIA = "5511988887777"
TENANT = "00000000-0000-4000-b000-000000000001"
NUMBER = "00000000-0000-4000-9000-000000000001"
BOT = "00000000-0000-4000-e000-000000000001"
TEAM = "00000000-0000-4000-d000-000000000001"


def text(body: str) -> dict[str, Any]:
    return {"type": "text", "text": {"body": body}}


def conversation_of(db: Db, wa_id: str) -> uuid.UUID:
    value: uuid.UUID = db.value(
        "select c.id from public.conversations c join public.contacts k on k.id = c.contact_id"
        " where k.wa_id = %s and c.status in ('open', 'waiting', 'pending')",
        (wa_id,),
    )
    return value


def queue(
    db: Db, conversation_id: uuid.UUID, message: dict[str, Any], *, reply_to: uuid.UUID | None = None
) -> uuid.UUID:
    """A bot reply queued the way the processor queues it (service role)."""
    with db.as_service() as s:
        message_id: uuid.UUID = s.value(
            "select id from public.whatsapp_queue_reply(%s, %s::jsonb, 'bot', %s, null)",
            (conversation_id, json.dumps(message), reply_to),
        )
    return message_id


def row(db: Db, message_id: uuid.UUID) -> Row:
    rows = db.sql("select * from public.messages where id = %s", (message_id,))
    assert len(rows) == 1
    return rows[0]


def outbound(db: Db, conversation_id: uuid.UUID) -> list[Row]:
    return db.sql(
        "select * from public.messages where conversation_id = %s and direction = 'outbound'"
        " order by created_at, id",
        (conversation_id,),
    )


def make_due(db: Db, message_id: uuid.UUID) -> None:
    """Time passes: the backoff of a requeued row (or the lease of a claimed one) is over."""
    db.sql(
        "update public.messages set next_attempt_at = now() - interval '1 second',"
        " lease_until = case when lease_until is not null then now() - interval '1 second' end"
        " where id = %s",
        (message_id,),
    )


async def drain(run_once: Callable[[], Awaitable[int]], *, rounds: int = 50) -> int:
    """Run a loop's rounds until one claims nothing; total claimed."""
    total = 0
    for _ in range(rounds):
        claimed = await run_once()
        if not claimed:
            return total
        total += claimed
    raise AssertionError(f"still claiming after {rounds} rounds")


async def eventually(check: Callable[[], bool], *, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await anyio.sleep(0.02)
