"""The inbound processor: claims received messages and decides what happens to each.

For every message claimed with `whatsapp_claim_inbound` (the oldest unprocessed message
of each conversation, leased):

1. media (voice notes, images, documents) are downloaded from the Graph API into
   `MediaStorage` and the row gets `media_storage_path` / `media_size`;
2. by conversation mode: **human** - nothing (agents answer from the inbox and read
   receipts are theirs to give); **flow** - not built yet, the message is marked
   ignored with a log line; **bot** - the message is marked read with the typing
   indicator and handed to a `BotResponder`;
3. the responder's writes and `whatsapp_finish_inbound` commit in one transaction, so a
   crash leaves either both or neither (a retry never queues a second reply).

A failure puts the message back under a short lease (retried when it expires) until its
third attempt, then marks it failed with the reason.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from zapbase.whatsapp.api import GraphAPI
from zapbase.whatsapp.errors import WhatsAppError
from zapbase.worker.database import Connection, Pool
from zapbase.worker.loop import QueueLoop
from zapbase.worker.metrics import Metrics
from zapbase.worker.storage import MediaStorage, media_key

__all__ = ["MAX_ATTEMPTS", "BotResponder", "InboundMessage", "Processor"]

_logger = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
# Seconds before a failed message is claimed again: attempt 1 → 2 s, attempt 2 → 8 s.
_RETRY_BASE_S = 2
_MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundMessage:
    """One claimed row of `whatsapp_claim_inbound`, plus where its media was stored."""

    message_id: uuid.UUID
    tenant_id: uuid.UUID
    conversation_id: uuid.UUID
    contact_id: uuid.UUID
    whatsapp_number_id: uuid.UUID | None
    phone_number_id: str | None
    access_token: str | None
    wamid: str | None
    type: str
    content: str | None
    payload: Mapping[str, Any]
    media_id: str | None
    media_mime_type: str | None
    is_voice: bool
    interactive_reply_id: str | None
    conversation_mode: str
    bot_id: uuid.UUID | None
    wa_id: str | None
    user_id: str | None
    profile_name: str | None
    attempts: int
    media_storage_path: str | None = None
    media_size: int | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> InboundMessage:
        names = [f.name for f in dataclasses.fields(cls) if f.name in row]
        return cls(**{name: row[name] for name in names})


class BotResponder(Protocol):
    """Answers a customer message of a conversation in bot mode.

    `conn` is inside the transaction that also marks the message processed: queue replies
    with `whatsapp_queue_reply`, hand off with `handoff_conversation`; raising rolls all
    of it back and the message is retried. `zapbase.bot.AIResponder` is the one the worker runs.
    """

    async def respond(self, message: InboundMessage, conn: Connection) -> None: ...


class Processor(QueueLoop):
    """The inbound loop of one replica.

    **Parameters**

    * **pool** - service-role connections.
    * **api** - Graph API client (media downloads, read receipts).
    * **storage** - where downloaded media go.
    * **responder** - answers messages of conversations in bot mode.
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
        storage: MediaStorage,
        responder: BotResponder,
        metrics: Metrics,
        worker_id: str,
        bucket: str = "whatsapp-media",
        concurrency: int = 8,
        lease_seconds: int = 120,
        poll_interval: float = 2.0,
    ) -> None:
        super().__init__(poll_interval=poll_interval)
        self._pool = pool
        self._api = api
        self._storage = storage
        self._responder = responder
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
        if mode == "bot":
            await self._mark_read(message)
            # Shielded: once the responder ran, its replies and "processed" commit together.
            with anyio.CancelScope(shield=True):
                async with self._pool.connection() as conn, conn.transaction():
                    await self._responder.respond(message, conn)
                    await self._finish(conn, message, "processed", media_problem)
        elif mode == "flow":
            _logger.warning(
                "conversation %s is in flow mode, which this worker does not run yet: message %s ignored",
                message.conversation_id,
                message.message_id,
            )
            async with self._pool.connection() as conn:
                await self._finish(conn, message, "ignored", "flow mode is not implemented yet")
        else:
            async with self._pool.connection() as conn:
                await self._finish(conn, message, "processed", media_problem)
        self._metrics.processed.labels(mode=mode, outcome="processed").inc()

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

    @staticmethod
    async def _finish(conn: Connection, message: InboundMessage, status: str, error: str | None) -> None:
        await conn.execute(
            "select public.whatsapp_finish_inbound(%s, %s, %s)", (message.message_id, status, error)
        )

    async def _record_failure(self, message: InboundMessage, exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        async with self._pool.connection() as conn:
            if message.attempts >= MAX_ATTEMPTS:
                await self._finish(conn, message, "failed", reason)
                outcome = "failed"
            else:
                # Still ours (leased_by): shorten the lease so the claim takes it again soon.
                await conn.execute(
                    """
                    update public.messages
                       set lease_until = now() + make_interval(secs => %s), error_details = %s
                     where id = %s and status = 'processing' and leased_by = %s
                    """,
                    (_RETRY_BASE_S ** (2 * message.attempts - 1), reason, message.message_id, self.worker_id),
                )
                outcome = "retry"
        self._metrics.processed.labels(mode=message.conversation_mode, outcome=outcome).inc()
