"""The inbound processor: claims received messages and decides what happens to each.

For every message claimed with `whatsapp_claim_inbound` (the oldest unprocessed message
of each conversation, leased):

1. media (voice notes, images, documents) are downloaded from the Graph API into
   `ObjectStore` and the row gets `media_storage_path` / `media_size`;
2. by conversation mode: **human** - nothing (agents answer from the inbox and read
   receipts are theirs to give); **bot** and **flow** - `FlowEngine.begin` asks SQL
   whether a flow takes the message (a running execution, a trigger - the message's intent,
   classified first through the AI gateway, is one -, an expiry, or the
   system message that wakes a flow started by an agent or a timed-out wait); if one does,
   the interpreter runs the turn (its http / AI effects hold no connection), else the
   message is marked read with the typing indicator and handed to a `BotResponder`, which
   reads what it needs in short borrows of the pool and calls the providers holding no
   connection;
3. the replies (and the flow's state, steps, actions and handoff) and
   `whatsapp_finish_inbound` commit in one short transaction,
   so a crash leaves either both or neither (a retry never queues a second reply). That
   transaction first locks the message and checks the lease is still this worker's: a
   replica that claimed it after the lease ran out answers it instead, never both.

A failure is settled by `whatsapp_fail_inbound`: back under a short lease (retried when
it expires) until the third attempt, then failed with the reason.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Protocol

import anyio
from psycopg.types.json import Jsonb

from zapbase.db.pool import Connection, Pool
from zapbase.errors import ZapbaseError
from zapbase.flows.engine import Begun, FlowEngine
from zapbase.storage import DEFAULT_BUCKET, ObjectStore, media_key
from zapbase.whatsapp.api import GraphAPI
from zapbase.whatsapp.errors import WhatsAppError
from zapbase.whatsapp.inbound import InboundMessage, Outgoing, Reply
from zapbase.worker.loop import QueueLoop
from zapbase.worker.metrics import Metrics

__all__ = ["MAX_ATTEMPTS", "BotResponder", "LeaseLost", "Processor"]

_logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
_QUEUE = "select public.whatsapp_queue_reply(%s, %s, 'bot', null, %s)"
_HANDOFF = "select public.handoff_conversation(%s, %s, null)"
# The lease is still ours: locked until commit, so no replica claims it meanwhile.
_STILL_OURS = """
select 1 from public.messages m
 where m.id = %s and m.status = 'processing' and m.leased_by = %s
   for update
"""
_MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})


class LeaseLost(ZapbaseError):
    """The message's lease ran out and another replica claimed it while this one answered."""


class BotResponder(Protocol):
    """Answers a customer message of a conversation in bot mode.

    Holds no database connection while it calls a provider; returns the `Reply`, which the
    processor writes with "processed" in one transaction. Raising writes nothing and the
    message is retried. `zapbase.bot.AIResponder` is the one the worker runs.
    """

    async def respond(self, message: InboundMessage) -> Reply: ...


class Processor(QueueLoop):
    """The inbound loop of one replica.

    **Parameters**

    * **pool** - service-role connections.
    * **api** - Graph API client (media downloads, read receipts).
    * **storage** - where downloaded media go.
    * **responder** - answers messages of conversations in bot mode.
    * **flows** - runs the flow turns of conversations in bot and flow mode.
    * **concurrency** - messages claimed per round, all handled at once (none waits for a
      slot while its lease runs out).
    * **metrics**, **worker_id**, **lease_seconds**, **poll_interval** - as for the sender.
    * **bucket** - first segment of media keys.
    """

    def __init__(
        self,
        *,
        pool: Pool,
        api: GraphAPI,
        storage: ObjectStore,
        responder: BotResponder,
        flows: FlowEngine,
        metrics: Metrics,
        worker_id: str,
        bucket: str = DEFAULT_BUCKET,
        concurrency: int = 8,
        lease_seconds: int = 120,
        poll_interval: float = 2.0,
    ) -> None:
        super().__init__(poll_interval=poll_interval)
        self._pool = pool
        self._api = api
        self._storage = storage
        self._responder = responder
        self._flows = flows
        self._metrics = metrics
        self.worker_id = worker_id
        self._bucket = bucket
        self._batch_size = concurrency
        self._lease_seconds = lease_seconds

    async def run_once(self) -> int:
        """Claim messages and handle them; returns messages claimed."""
        messages = await self.claim()
        if messages:
            async with anyio.create_task_group() as tg:
                for message in messages:
                    tg.start_soon(self._handle_guarded, message)
        return len(messages)

    async def claim(self) -> list[InboundMessage]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "select * from public.whatsapp_claim_inbound(%s, %s, %s)",
                (self.worker_id, self._batch_size, self._lease_seconds),
            )
            return [InboundMessage.from_row(row) for row in await cur.fetchall()]

    async def _handle_guarded(self, message: InboundMessage) -> None:
        try:
            await self.handle(message)
        except Exception as exc:
            # Any failure of one message is recorded on it; siblings carry on.
            _logger.exception("processing message %s failed", message.message_id)
            with anyio.CancelScope(shield=True):
                await self._record_failure(message, exc)

    async def handle(self, message: InboundMessage) -> None:
        """Store media, then act by conversation mode; raises to have the message retried."""
        message, media_problem = await self._store_media(message)
        mode = message.conversation_mode
        if mode in ("bot", "flow") and not message.may_reply:
            # e.g. the customer's own "PARAR": nothing may be sent back, so no model is asked
            async with self._pool.connection() as conn:
                await self._finish(conn, message, "ignored", "the contact may not be messaged")
        elif mode in ("bot", "flow"):
            await self._flows.classify(message)
            async with self._pool.connection() as conn:
                begun = await self._flows.begin(conn, message)
            if begun is not None:
                mode = "flow"
                await self._run_flow(message, begun, media_problem)
            elif message.type == "system":  # a wake-up for a flow that ended meanwhile
                async with self._pool.connection() as conn:
                    await self._finish(conn, message, "ignored", "no flow to run")
            else:
                mode = "bot"
                await self._mark_read(message)
                reply = await self._responder.respond(message)
                # Shielded: once the responder ran, its reply and "processed" commit together.
                with anyio.CancelScope(shield=True):
                    async with self._pool.connection() as conn, conn.transaction():
                        await self._write(conn, message, reply)
                        await self._finish(conn, message, "processed", media_problem)
        else:
            async with self._pool.connection() as conn:
                await self._finish(conn, message, "processed", media_problem)
        self._metrics.processed.labels(mode=mode, outcome="processed").inc()

    async def _run_flow(self, message: InboundMessage, begun: Begun, media_problem: str | None) -> None:
        """One flow turn: the interpreter (and its effects), then replies, state and "processed"
        in one transaction; a turn computed on a state that changed meanwhile is retried."""
        if message.type != "system":
            await self._mark_read(message)
        turn = await self._flows.run(begun, message, self._pool)
        reply = Reply(messages=tuple(Outgoing(body=body) for body in turn.messages))
        with anyio.CancelScope(shield=True):
            async with self._pool.connection() as conn, conn.transaction():
                await self._write(conn, message, reply)
                await self._flows.commit(conn, begun, turn)
                await self._finish(conn, message, "processed", media_problem)

    async def _store_media(self, message: InboundMessage) -> tuple[InboundMessage, str | None]:
        """Download the message's media into storage (once); a media Meta cannot give any
        more is noted on the message instead of failing it, so the customer still gets an answer."""
        if message.type not in _MEDIA_TYPES or not message.media_id:
            return message, None
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "select media_storage_path, media_size from public.messages where id = %s",
                (message.message_id,),
            )
            stored = await cur.fetchone()
        if stored and stored["media_storage_path"]:
            return dataclasses.replace(
                message, media_storage_path=stored["media_storage_path"], media_size=stored["media_size"]
            ), None
        obj = message.payload.get(message.type)
        url = obj.get("url") if isinstance(obj, Mapping) else None
        try:
            media = await self._api.download_media(
                message.media_id,
                url=url if isinstance(url, str) else None,
                phone_number_id=message.phone_number_id,
                token=message.access_token,
            )
        except WhatsAppError as exc:
            if exc.retryable:
                raise
            _logger.warning("media of message %s is lost: %s", message.message_id, exc)
            return message, f"media not stored: {exc}"
        mime_type = message.media_mime_type or media.mime_type
        key = media_key(
            self._bucket, message.tenant_id, message.conversation_id, message.message_id, mime_type
        )
        await self._storage.put(key, media.content, mime_type)
        async with self._pool.connection() as conn:
            await conn.execute(
                "update public.messages set media_storage_path = %s, media_size = %s where id = %s",
                (key, len(media.content), message.message_id),
            )
        _logger.info("stored %s bytes of %s as %s", len(media.content), message.message_id, key)
        return dataclasses.replace(message, media_storage_path=key, media_size=len(media.content)), None

    async def _mark_read(self, message: InboundMessage) -> None:
        """Blue ticks and "typing…" while the bot answers; cosmetic, so failures only log."""
        if not (message.wamid and message.phone_number_id and message.access_token):
            return
        try:
            await self._api.mark_read(
                message.phone_number_id, message.wamid, typing_indicator=True, token=message.access_token
            )
        except WhatsAppError as exc:
            _logger.warning("could not mark %s read: %s", message.wamid, exc)

    async def _write(self, conn: Connection, message: InboundMessage, reply: Reply) -> None:
        if await (await conn.execute(_STILL_OURS, (message.message_id, self.worker_id))).fetchone() is None:
            raise LeaseLost(f"message {message.message_id} was claimed again: its reply is dropped")
        for outgoing in reply.messages:
            ai = Jsonb(dict(outgoing.ai)) if outgoing.ai else None
            await conn.execute(_QUEUE, (message.conversation_id, Jsonb(dict(outgoing.body)), ai))
        if reply.handoff is not None:
            await conn.execute(_HANDOFF, (message.conversation_id, reply.handoff))

    @staticmethod
    async def _finish(conn: Connection, message: InboundMessage, status: str, error: str | None) -> None:
        await conn.execute(
            "select public.whatsapp_finish_inbound(%s, %s, %s)", (message.message_id, status, error)
        )

    async def _record_failure(self, message: InboundMessage, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "select public.whatsapp_fail_inbound(%s, %s, %s, %s) as outcome",
                (message.message_id, self.worker_id, reason, MAX_ATTEMPTS),
            )
            row = await cur.fetchone()
        outcome = row["outcome"] if row else None
        if outcome is not None:  # None: another replica holds the message now
            self._metrics.processed.labels(mode=message.conversation_mode, outcome=outcome).inc()
