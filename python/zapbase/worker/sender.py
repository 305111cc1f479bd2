"""The outbound sender: claims queued messages and sends them through the Graph API.

Each round claims up to `concurrency` rows with `whatsapp_claim_outbound` (per-number
throughput and one message in flight per contact are enforced there, under a lease),
sends them all at once and records each outcome as it comes: `whatsapp_mark_sent_many` with the
wamids (the answers that arrive while a recording is under way are recorded together by the
next one, so no wamid waits for more than one recording), or `whatsapp_mark_send_failed` with
Meta's code and the retry decision of `zapbase.whatsapp.errors`. Guarantees:

* a row whose wamid is recorded is `sent` and is never claimed again;
* a row claimed by a replica that dies returns to the queue when its lease expires
  (the HTTP timeout is far below the lease, so a live sender records before that);
* once Meta accepted a message, recording the wamid is shielded from cancellation and
  retried while the database is unreachable, for as long as the lease lasts.

The Cloud API has no idempotency key, so a send whose outcome is unknown (the sender died
after Meta accepted it, or got no answer) is recognised by its status webhooks instead:
each send carries its row id as `biz_opaque_callback_data`, and a status naming a row
still unsent records that wamid on it (SQL `private.adopt_unrecorded_send`). A row is only
sent again once a status could have come: after its lease, or after `UNKNOWN_OUTCOME_GRACE_S`
when the Graph API gave no answer.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import psycopg
from psycopg.types.json import Jsonb

from zapbase.db.pool import Connection, Pool
from zapbase.whatsapp import messages
from zapbase.whatsapp.api import GraphAPI
from zapbase.whatsapp.errors import (
    ErrorKind,
    GraphTransportError,
    MessageValidationError,
    TokenExpired,
    WhatsAppError,
)
from zapbase.whatsapp.messages import MediaSource, MediaType, Recipient
from zapbase.worker.loop import QueueLoop
from zapbase.worker.metrics import Metrics

__all__ = ["UNKNOWN_OUTCOME_GRACE_S", "OutboundRow", "Sender", "graph_body"]

_logger = logging.getLogger(__name__)

_MEDIA_TYPES = frozenset(t.value for t in MediaType)
# Kinds whose failure needs the tenant to act (renew a token, fix the account): alert them.
_ALERT_KINDS = frozenset({ErrorKind.AUTH, ErrorKind.ACCOUNT})
# A send that may have reached Meta waits this long before it is sent again, so that its
# `sent` status (Meta posts it within seconds) can name the row first.
UNKNOWN_OUTCOME_GRACE_S = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboundRow:
    """One claimed row of `whatsapp_claim_outbound`."""

    message_id: uuid.UUID
    tenant_id: uuid.UUID
    conversation_id: uuid.UUID
    whatsapp_number_id: uuid.UUID
    phone_number_id: str
    access_token: str | None
    to_wa_id: str | None
    to_user_id: str | None
    payload: Mapping[str, Any]
    reply_to_wamid: str | None
    attempts: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> OutboundRow:
        return cls(**{name: row[name] for name in cls.__slots__})


def _recipient(row: OutboundRow) -> Recipient:
    # Users known only by username (2026 BSUIDs) have no wa_id: address them by user id.
    if row.to_wa_id:
        return Recipient.phone(row.to_wa_id)
    if row.to_user_id:
        return Recipient.user_id(row.to_user_id)
    raise MessageValidationError("to", "wa_id or user_id", "the contact has neither a wa_id nor a user id")


def graph_body(row: OutboundRow) -> dict[str, Any]:
    """The full Graph API body of a stored payload, checked against Meta's limits where a
    builder exists (text, template, media, reaction); other types go through as stored.
    It carries the row's id as `biz_opaque_callback_data`, which Meta echoes in every status
    webhook: a status then names its row even when the sender died before storing the wamid."""
    body = _message_body(row)
    body["biz_opaque_callback_data"] = str(row.message_id)
    return body


def _message_body(row: OutboundRow) -> dict[str, Any]:
    payload = row.payload
    kind = payload.get("type")
    obj = payload.get(kind) if isinstance(kind, str) else None
    if not isinstance(kind, str) or obj is None:
        raise MessageValidationError("type", "a type and its object", f"bad stored payload type {kind!r}")
    to = _recipient(row)
    reply_to = row.reply_to_wamid
    if kind == "text":
        return messages.text_message(
            to, obj["body"], preview_url=bool(obj.get("preview_url")), reply_to=reply_to
        )
    if kind == "template":
        return messages.template_message(
            to, obj["name"], obj["language"]["code"], obj.get("components") or (), reply_to=reply_to
        )
    if kind == "reaction":
        return messages.reaction_message(to, obj["message_id"], obj.get("emoji", ""))
    if kind in _MEDIA_TYPES:
        source = MediaSource.by_id(obj["id"]) if "id" in obj else MediaSource.by_link(obj["link"])
        return messages.media_message(
            to,
            MediaType(kind),
            source,
            caption=obj.get("caption"),
            filename=obj.get("filename"),
            voice=bool(obj.get("voice")),
            reply_to=reply_to,
        )
    # interactive (buttons, lists, CTA URLs, media headers), location, contacts: as queued.
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        to.field: to.value,
        "type": kind,
        kind: obj,
    }
    if reply_to:
        body["context"] = {"message_id": reply_to}
    return body


class Sender(QueueLoop):
    """The outbound loop of one replica.

    **Parameters**

    * **pool** - service-role connections.
    * **api** - Graph API client (its httpx timeout must stay well below `lease_seconds`).
    * **metrics** - where send latency, sends and failures are counted.
    * **worker_id** - this replica's name in `leased_by`.
    * **concurrency** - rows claimed per round, all sent at once: a claimed row never waits
      for a free slot while its lease runs out.
    * **lease_seconds**, **poll_interval** - the claim's lease, and the poll when no NOTIFY
      arrives.
    """

    def __init__(
        self,
        *,
        pool: Pool,
        api: GraphAPI,
        metrics: Metrics,
        worker_id: str,
        concurrency: int = 16,
        lease_seconds: int = 60,
        poll_interval: float = 2.0,
    ) -> None:
        super().__init__(poll_interval=poll_interval)
        self._pool = pool
        self._api = api
        self._metrics = metrics
        self.worker_id = worker_id
        self._batch_size = concurrency
        self._lease_seconds = lease_seconds

    async def run_once(self) -> int:
        """One round: claim rows, send them, record every outcome. Returns rows claimed."""
        rows = await self.claim()
        if rows:
            recorder = _SentRecorder(self._record_sent)
            async with anyio.create_task_group() as tg:
                for row in rows:
                    tg.start_soon(self._send_guarded, row, recorder)
        return len(rows)

    async def claim(self) -> list[OutboundRow]:
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "select * from public.whatsapp_claim_outbound(%s, %s, %s)",
                (self.worker_id, self._batch_size, self._lease_seconds),
            )
            return [OutboundRow.from_row(row) for row in await cur.fetchall()]

    async def _send_guarded(self, row: OutboundRow, recorder: _SentRecorder) -> None:
        try:
            await self.send(row, recorder)
        except Exception:
            # One bad row must not cancel its siblings mid-send; its lease brings it back.
            _logger.exception("sending message %s failed unexpectedly", row.message_id)

    async def send(self, row: OutboundRow, recorder: _SentRecorder | None = None) -> None:
        """Send one claimed row and record the outcome (its wamid through `recorder`, which
        groups the wamids of one round that arrive together; alone without one)."""
        try:
            body = graph_body(row)
        except (MessageValidationError, KeyError, TypeError) as exc:
            await self._record_failure(row, code=None, title="invalid stored payload", details=str(exc))
            return
        if not row.access_token:
            await self._record_failure(
                row,
                code=None,
                title="the number has no access token in Vault",
                details="set it with public.set_whatsapp_number_secret(number, 'access_token', ...)",
            )
            return
        started = time.perf_counter()
        try:
            sent = await self._api.send(row.phone_number_id, body, token=row.access_token)
        except MessageValidationError as exc:
            await self._record_failure(row, code=None, title="invalid message", details=str(exc))
            return
        except WhatsAppError as exc:
            self._metrics.send_latency.observe(time.perf_counter() - started)
            await self._record_error(row, exc)
            return
        self._metrics.send_latency.observe(time.perf_counter() - started)
        # Meta accepted it: the wamid must be stored even if shutdown cancels us now,
        # or the expired lease would send the message a second time.
        with anyio.CancelScope(shield=True):
            await (recorder or _SentRecorder(self._record_sent)).record(row, sent.wamid)
        self._metrics.sent.inc()
        _logger.info("sent %s %s as %s", row.payload.get("type"), row.message_id, sent.wamid)

    async def _record_sent(self, sent: list[tuple[OutboundRow, str]]) -> set[uuid.UUID]:
        """Store the wamids in one transaction, retried while the database is unreachable (a
        restart, a failover) for as long as the lease lasts; whatsapp_mark_sent_many is
        idempotent. Returns the rows recorded."""
        deadline = time.monotonic() + self._lease_seconds
        delay = 0.1
        ids = [row.message_id for row, _ in sent]
        wamids = [wamid for _, wamid in sent]
        while True:
            try:
                async with self._pool.connection() as conn:
                    cur = await conn.execute(
                        "select public.whatsapp_mark_sent_many(%s::uuid[], %s::text[]) as id", (ids, wamids)
                    )
                    return {row["id"] for row in await cur.fetchall()}
            except psycopg.OperationalError as exc:  # PoolTimeout included
                if time.monotonic() + delay >= deadline:
                    raise
                _logger.warning("recording wamids %s failed, retrying: %s", ", ".join(wamids), exc)
                await anyio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _record_error(self, row: OutboundRow, exc: WhatsAppError) -> None:
        retry_after = exc.backoff(row.attempts - 1)
        if retry_after is not None and _outcome_unknown(exc):
            retry_after = max(retry_after, UNKNOWN_OUTCOME_GRACE_S)
        try:
            async with self._pool.connection() as conn, conn.transaction():
                if exc.kind in _ALERT_KINDS:
                    await _raise_alert(conn, row, exc)
                status = await _mark_failed(
                    conn,
                    row,
                    code=exc.code,
                    title=exc.title,
                    details=exc.details or str(exc),
                    retryable=exc.retryable,
                    retry_after=retry_after,
                )
        except psycopg.errors.NoDataFound:  # Meta had accepted it: its status recorded the wamid
            _logger.info("send of %s got no answer, but its status webhook came first", row.message_id)
            return
        self._metrics.send_failures.labels(
            code=str(exc.code if exc.code is not None else exc.http_status or "none"),
            retryable=str(exc.retryable).lower(),
        ).inc()
        _logger.warning(
            "send of %s failed (attempt %s): %s → %s%s",
            row.message_id,
            row.attempts,
            exc,
            status,
            f" in {retry_after:.0f}s" if status == "queued" and retry_after is not None else "",
        )

    async def _record_failure(self, row: OutboundRow, *, code: int | None, title: str, details: str) -> None:
        async with self._pool.connection() as conn:
            await _mark_failed(conn, row, code=code, title=title, details=details, retryable=False)
        self._metrics.send_failures.labels(code="invalid", retryable="false").inc()
        _logger.warning("message %s cannot be sent: %s: %s", row.message_id, title, details)


@dataclass(slots=True)
class _Group:
    """Wamids waiting to be recorded together, and how their recording ended."""

    sent: list[tuple[OutboundRow, str]] = field(default_factory=list)
    recorded: set[uuid.UUID] = field(default_factory=set)
    error: BaseException | None = None
    done: bool = False


class _SentRecorder:
    """Records the wamids of one round as their answers come: the first at once, and those
    that arrive while a recording is under way together in the next one."""

    def __init__(self, record: Callable[[list[tuple[OutboundRow, str]]], Awaitable[set[uuid.UUID]]]) -> None:
        self._record = record
        self._lock = anyio.Lock()
        self._waiting = _Group()

    async def record(self, row: OutboundRow, wamid: str) -> None:
        group = self._waiting
        group.sent.append((row, wamid))
        async with self._lock:
            if not group.done:  # nobody took it while this waited: record it and those with it
                self._waiting = _Group()
                try:
                    group.recorded = await self._record(group.sent)
                except BaseException as exc:
                    group.error = exc
                    raise
                finally:
                    group.done = True
        if group.error is not None:
            raise group.error
        if row.message_id not in group.recorded:
            raise LookupError(f"outbound message {row.message_id} not found")


def _outcome_unknown(exc: WhatsAppError) -> bool:
    """No answer, though the request may have reached Meta (a refused connection did not)."""
    return isinstance(exc, GraphTransportError) and not isinstance(
        exc.__cause__, httpx.ConnectError | httpx.ConnectTimeout
    )


async def _mark_failed(
    conn: Connection,
    row: OutboundRow,
    *,
    code: int | None,
    title: str,
    details: str | None,
    retryable: bool,
    retry_after: float | None = None,
) -> str:
    cur = await conn.execute(
        "select public.whatsapp_mark_send_failed(%s, %s::int, %s, %s, %s, %s::numeric) as status",
        (row.message_id, code, title, details, retryable, retry_after),
    )
    result = await cur.fetchone()
    return str(result["status"]) if result else "unknown"


async def _raise_alert(conn: Connection, row: OutboundRow, exc: WhatsAppError) -> None:
    """The tenant's alert; SQL keeps it to one per number, code and day."""
    if isinstance(exc, TokenExpired):
        title = "WhatsApp: o token de acesso do número expirou"
        message = ("Os envios deste número estão falhando com o erro 190. Gere um novo token no "
                   "Meta Business e salve-o em set_whatsapp_number_secret.")  # fmt: skip
    else:
        title = f"WhatsApp: {exc.title}"
        message = f"Os envios deste número estão falhando: {exc}"
    error = {"code": exc.code, "title": exc.title, "fbtrace_id": exc.fbtrace_id}
    await conn.execute(
        "select public.whatsapp_alert_send_failure(%s, %s, %s, %s)",
        (row.message_id, Jsonb(error), title, message),
    )
