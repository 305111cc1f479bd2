"""The webhook deliverer: claims due deliveries and POSTs them, signed, to tenants' endpoints.

Each round claims up to `ROUND_FACTOR` x `concurrency` rows with `webhooks_claim` (SKIP
LOCKED, leased), sends them `concurrency` at a time (the next POST starts as soon as one
ends, so the claim's and the record's round trips are paid once for several POSTs) and
records the round's attempts in one `webhooks_record` call, which decides: 2xx succeeded;
timeout, connection error, 429, 5xx retried on the schedule; the rest final. Guarantees:

* no redirects, 15 s for the whole exchange (a receiver that trickles bytes is cut off),
  at most `BODY_CAP` bytes of the answer read and 4 KB kept;
* private, loopback and link-local addresses and plain http are refused outside local
  mode (`zapbase.webhooks.guard`);
* once the receivers answered, recording the outcomes is shielded from cancellation and waits
  out a database restart (for the rest of the lease); the claim names each attempt, so a round
  recorded again after a lost reply logs nothing twice. A deliverer killed before that leaves
  the lease to expire and the row is sent again with the same webhook-id (at least once:
  receivers dedupe by webhook-id). A succeeded row is never claimed again.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import anyio
import httpx
from psycopg.types.json import Jsonb

from zapbase.db.pool import Pool
from zapbase.webhooks.guard import RefusedTarget, resolve_target
from zapbase.webhooks.signing import sign_headers
from zapbase.worker.loop import QueueLoop, record_outcomes

__all__ = ["BODY_CAP", "TIMEOUT_S", "Deliverer", "DeliveryRow", "Outcome", "post"]

_logger = logging.getLogger(__name__)

TIMEOUT_S = 15.0
KEPT_BYTES = 4096
BODY_CAP = 64 * 1024  # read no further than this, whatever the receiver sends
ROUND_FACTOR = 4  # rows claimed per round, per POST in flight
USER_AGENT = "Zapbase-Webhooks/1"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryRow:
    """One claimed row of `webhooks_claim`."""

    delivery_id: uuid.UUID
    tenant_id: uuid.UUID
    endpoint_id: uuid.UUID
    url: str
    event_id: uuid.UUID
    event_type: str
    attempt: int
    attempt_id: uuid.UUID
    body: Mapping[str, Any]
    secrets: list[str]

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> DeliveryRow:
        return cls(**{name: row[name] for name in cls.__slots__})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one attempt produced: an HTTP status with the start of the answer, or an error."""

    status_code: int | None
    duration_ms: int
    response_body: str | None = None
    error: str | None = None
    retryable: bool | None = None  # None: the database decides from the status code


async def post(client: httpx.AsyncClient, row: DeliveryRow, *, local_mode: bool,
               timeout: float = TIMEOUT_S) -> Outcome:  # fmt: skip
    """One signed attempt; never raises for the receiver's faults."""
    started = time.perf_counter()

    def took() -> int:
        return round((time.perf_counter() - started) * 1000)

    try:
        target = await resolve_target(row.url, local_mode=local_mode)
    except RefusedTarget as exc:
        return Outcome(None, took(), error=str(exc), retryable=False)
    if not row.secrets:
        return Outcome(None, took(), error="the endpoint has no signing secret", retryable=False)
    body = json.dumps(row.body, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {
        **sign_headers(row.secrets, str(row.event_id), body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "host": target.host,
    }
    extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else {}
    try:
        with anyio.fail_after(timeout):
            async with client.stream("POST", target.url, content=body, headers=headers,
                                   extensions=extensions, follow_redirects=False) as response:  # fmt: skip
                kept = bytearray()
                async for chunk in response.aiter_raw():
                    kept += chunk
                    if len(kept) >= BODY_CAP:
                        break
    except TimeoutError:
        return Outcome(None, took(), error=f"timed out after {timeout:.0f} s")
    except httpx.HTTPError as exc:
        return Outcome(None, took(), error=f"{type(exc).__name__}: {exc}".rstrip(": "))
    # whatever bytes came back, stored as text Postgres accepts (no NUL)
    text = bytes(kept[:KEPT_BYTES]).decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    error = None
    if response.is_redirect:
        location = response.headers.get("location")
        error = f"redirects are not followed (HTTP {response.status_code} to {location})"
    return Outcome(response.status_code, took(), response_body=text, error=error)


class Deliverer(QueueLoop):
    """The webhook loop of one replica.

    **Parameters**

    * **pool** - service-role connections.
    * **client** - the HTTP client (no shared auth headers; its own timeout is a backstop).
    * **worker_id** - this replica's name in `leased_by`.
    * **concurrency** - POSTs in flight at once (a round claims `ROUND_FACTOR` times as many).
    * **local_mode** - allow http and private addresses (development and tests only).
    * **timeout** - for the whole exchange with the receiver (15 s).
    * **lease_seconds**, **poll_interval** - the claim's lease (well above the 15 s timeout)
      and the poll when no NOTIFY arrives (retries become due silently).
    """

    def __init__(
        self,
        *,
        pool: Pool,
        client: httpx.AsyncClient,
        worker_id: str,
        concurrency: int = 8,
        local_mode: bool = False,
        timeout: float = TIMEOUT_S,
        lease_seconds: int = 60,
        poll_interval: float = 2.0,
    ) -> None:
        super().__init__(poll_interval=poll_interval)
        self._pool = pool
        self._client = client
        self.worker_id = worker_id
        self._concurrency = concurrency
        self._local_mode = local_mode
        self._timeout = timeout
        self._lease_seconds = lease_seconds

    async def run_once(self) -> int:
        claimed_at = anyio.current_time()
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "select * from public.webhooks_claim(%s, %s, %s)",
                (self.worker_id, ROUND_FACTOR * self._concurrency, self._lease_seconds),
            )
            rows = [DeliveryRow.from_row(row) for row in await cur.fetchall()]
        if rows:
            await self.deliver(rows, claimed_at)
        return len(rows)

    async def deliver(self, rows: list[DeliveryRow], claimed_at: float) -> dict[uuid.UUID, str]:
        """Send rows claimed at `claimed_at` (anyio clock) and record their attempts in one call;
        returns each delivery's new status ('deleted': its endpoint was removed while in flight).
        A row whose lease would end before its POST could (its round's receivers hung) is left
        for its lease to expire: no POST outlives its lease, so no other worker sends it too."""
        outcomes: dict[uuid.UUID, Outcome] = {}
        slots = anyio.Semaphore(self._concurrency)

        async def send(row: DeliveryRow) -> None:
            try:
                async with slots:
                    if anyio.current_time() - claimed_at + self._timeout >= self._lease_seconds:
                        return
                    outcomes[row.delivery_id] = await post(self._client, row, local_mode=self._local_mode,
                                                           timeout=self._timeout)  # fmt: skip
            except Exception:
                # one bad row must not cancel its siblings; its lease brings it back
                _logger.exception("webhook delivery %s failed unexpectedly", row.delivery_id)

        async with anyio.create_task_group() as tg:
            for row in rows:
                tg.start_soon(send, row)
        sent = [row for row in rows if row.delivery_id in outcomes]
        if not sent:
            return {}
        batch = [{"delivery_id": str(row.delivery_id), "attempt_id": str(row.attempt_id),
                  "attempt": row.attempt, **asdict(outcomes[row.delivery_id])} for row in sent]  # fmt: skip
        statuses = await record_outcomes(
            self._pool, "select * from public.webhooks_record(%s)", (Jsonb(batch),),
            within=self._lease_seconds - (anyio.current_time() - claimed_at),
        )  # fmt: skip
        result = {row["delivery_id"]: str(row["status"]) for row in statuses}
        for row in sent:
            status, outcome = result.get(row.delivery_id, "unknown"), outcomes[row.delivery_id]
            if status == "deleted":
                _logger.info("webhook delivery %s was deleted while being sent", row.delivery_id)
            elif status != "succeeded":
                _logger.warning("webhook %s to %s (attempt %s): %s → %s", row.event_type, row.url,
                                row.attempt, outcome.error or f"HTTP {outcome.status_code}", status)
        return result
