"""Hotmart's webhook (postback v2), one URL per tenant integration:
`POST /webhooks/hotmart/<integration id>`.

    X-HOTMART-HOTTOK ─► compared in constant time with the integration's hottok (Vault,
                        `hotmart_webhook_secret`, cached) ─► wrong: `hotmart_reject` counts it, 401
    body             ─► not a JSON object: `hotmart_quarantine_raw`, 200
                     ─► `hotmart_ingest(integration, payload)`: stored (idempotent by event id),
                        applied in SQL, 200

Hotmart deactivates a URL that keeps failing, so anything that came with the right hottok is
answered 200 once stored (a failure to apply is kept on the event, see hotmart_ingest); only a
database that cannot store it gets a 500, which Hotmart retries. The twin of
`edge/hotmart-webhook/handler.ts`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import PlainTextResponse, Response
from psycopg import errors as pg_errors
from starlette.requests import ClientDisconnect

from zapbase.db.pool import Pool
from zapbase.whatsapp.cleaning import jsonb_safe, may_need_cleaning

__all__ = ["HOTMART_PATH", "HOTTOK_HEADER", "MAX_BODY_BYTES", "Hottoks", "hotmart_path", "hotmart_router"]

_logger = logging.getLogger(__name__)

HOTMART_PATH = "/webhooks/hotmart"
HOTTOK_HEADER = "X-HOTMART-HOTTOK"
# Postback bodies are a few KB; anything this large is not Hotmart's.
MAX_BODY_BYTES = 1024 * 1024
HOTTOK_TTL_S = 45.0
# A wrong hottok may mean it was just rotated: read again then, but at most this often.
MISS_REFRESH_S = 5.0

_SECRET_SQL = "select public.hotmart_webhook_secret(%s) as hottok"  # noqa: S105 - a query, not a secret
_REJECT_SQL = "select public.hotmart_reject(%s)"
_INGEST_SQL = "select public.hotmart_ingest(%s, %s::jsonb) as result"
_QUARANTINE_SQL = "select public.hotmart_quarantine_raw(%s, %s, %s)"

Outcome = Callable[[str], None]


def hotmart_path(integration_id: uuid.UUID | str) -> str:
    """The callback URL path of a tenant's Hotmart integration."""
    return f"{HOTMART_PATH}/{integration_id}"


@dataclass(frozen=True, slots=True)
class _Hottok:
    value: str | None
    loaded_at: float


class Hottoks:
    """The hottok of each Hotmart integration, read from Vault and kept `ttl_s`, so that an
    event costs one round trip; read again after a miss at most every `miss_refresh_s`.
    `clock` is monotonic seconds (injected by tests)."""

    def __init__(
        self, pool: Pool, *, ttl_s: float = HOTTOK_TTL_S, miss_refresh_s: float = MISS_REFRESH_S,
        max_cached: int = 10_000, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._ttl_s = ttl_s
        self._miss_refresh_s = miss_refresh_s
        self._max_cached = max_cached
        self._clock = clock
        self._known: dict[uuid.UUID, _Hottok] = {}
        self._lock = asyncio.Lock()

    async def matches(self, integration_id: uuid.UUID, given: str) -> bool:
        """Whether `given` is the integration's hottok (constant-time comparison). Raises
        `psycopg.Error` when the database fails and the hottok was never read."""
        known = self._known.get(integration_id)
        if known is None or self._clock() - known.loaded_at >= self._ttl_s:
            known = await self._read(integration_id, fresher_than=self._ttl_s)
        if _same(given, known.value):
            return True
        if self._clock() - known.loaded_at < self._miss_refresh_s:
            return False
        fresh = await self._read(integration_id, fresher_than=self._miss_refresh_s)
        return fresh.value != known.value and _same(given, fresh.value)

    async def _read(self, integration_id: uuid.UUID, *, fresher_than: float) -> _Hottok:
        async with self._lock:
            cached = self._known.get(integration_id)
            if cached is not None and self._clock() - cached.loaded_at < fresher_than:
                return cached  # read by another request while this one waited
            try:
                async with self._pool.connection() as conn:
                    row = await (await conn.execute(_SECRET_SQL, (integration_id,))).fetchone()
            except psycopg.Error:
                if cached is None:
                    raise
                _logger.warning("hotmart %s: hottok read failed, keeping the previous one", integration_id,
                                exc_info=True)
                return cached
            known = _Hottok(row["hottok"] if row else None, self._clock())
            self._known.pop(integration_id, None)
            if len(self._known) >= self._max_cached:
                del self._known[next(iter(self._known))]
            self._known[integration_id] = known
            return known


def _same(given: str, expected: str | None) -> bool:
    # compare_digest takes as long for any given value of one length: nothing about the
    # hottok leaks through timing. No hottok configured matches nothing.
    return bool(expected) and hmac.compare_digest(given.encode(), (expected or "").encode())


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_body(body: bytes) -> tuple[dict[str, Any] | None, str]:
    """(the payload, jsonb-safe; or None, with why it is not a JSON object)."""
    try:
        text = body.decode("utf-8")
        payload = json.loads(text, parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, f"not JSON: {exc}"
    if not isinstance(payload, dict):
        return None, "JSON is not an object"
    if may_need_cleaning(text):
        payload, _ = jsonb_safe(payload)
    return payload, ""


async def _read_limited(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _plain(text: str, status: int) -> PlainTextResponse:
    return PlainTextResponse(text, status_code=status)


_DOC = (
    "Hotmart's postback v2 for one tenant integration (provider `hotmart`; its hottok stored with "
    "`set_integration_secret`). `X-HOTMART-HOTTOK` must equal that hottok (compared in constant "
    "time); a wrong one is only counted (`hotmart_rejections`) and answered 401. The event is stored "
    "by `hotmart_ingest` (a redelivered event id changes nothing) and applied in SQL: purchases, "
    "subscriptions and Hotmart Club progress. A body that is not a JSON object is kept "
    "(`hotmart_events`, status quarantined) and answered 200, as is an event whose application "
    "failed (status failed, with the error), because Hotmart deactivates URLs that keep failing."
)
_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "content": {"text/plain": {"schema": {"type": "string"}}}}
    for code, text in {
        200: "Stored: `OK` (applied, stored, failed, duplicate) or `QUARANTINED`",
        401: "Wrong or missing hottok, or no such integration; only counted",
        413: "Body over 1 MB; nothing stored",
        500: "The database could not store it; Hotmart retries",
    }.items()
}


def hotmart_router(pool: Pool, hottoks: Hottoks | None = None, outcome: Outcome | None = None) -> APIRouter:
    """The route over an open service-role `pool`; `outcome` counts each call's outcome."""
    known = hottoks or Hottoks(pool)
    count = outcome or (lambda _: None)
    router = APIRouter(prefix=HOTMART_PATH, tags=["hotmart"])
    extra: dict[str, Any] = {
        "parameters": [{"name": HOTTOK_HEADER, "in": "header", "required": True, "schema": {"type": "string"},
                        "description": "The integration's hottok (Hotmart > Tools > Webhook)."}],
        "requestBody": {"required": True, "description": "Hotmart's event (postback v2 JSON).",
                        "content": {"application/json": {"schema": {"type": "object"}}}},
    }

    @router.post("/{integration_id}", summary="Receive Hotmart webhooks (postback v2)", description=_DOC,
                 response_class=PlainTextResponse, responses=_RESPONSES, openapi_extra=extra)
    async def receive(
        request: Request,
        integration_id: str = PathParam(description="id of the tenant's Hotmart integration (integrations)"),
    ) -> Response:
        result, response = await handle(request, integration_id)
        count(result)
        return response

    async def handle(request: Request, raw_id: str) -> tuple[str, Response]:
        try:
            integration_id = uuid.UUID(raw_id)
        except ValueError:
            return "bad_hottok", _plain("invalid hottok", 401)  # cannot be an integration: no database work
        try:
            body = await _read_limited(request, MAX_BODY_BYTES)
        except ClientDisconnect:
            return "disconnected", _plain("client disconnected", 400)
        if body is None:
            return "too_large", _plain("payload too large", 413)
        try:
            if not await known.matches(integration_id, request.headers.get(HOTTOK_HEADER, "")):
                async with pool.connection() as conn:
                    await conn.execute(_REJECT_SQL, (integration_id,))
                _logger.warning("hotmart %s: wrong hottok", integration_id)
                return "bad_hottok", _plain("invalid hottok", 401)
            payload, problem = parse_body(body)
            if payload is None:
                return await quarantine(integration_id, body, problem)
            async with pool.connection() as conn:
                cur = await conn.execute(_INGEST_SQL, (integration_id, json.dumps(payload)))
                row = await cur.fetchone()
        except (psycopg.DataError, pg_errors.ProgramLimitExceeded) as exc:
            # JSON that PostgreSQL refuses would fail on every retry: kept as text instead.
            return await quarantine(integration_id, body, f"PostgreSQL refused it ({exc.sqlstate}): {exc}")
        except psycopg.Error:
            _logger.exception("hotmart %s: ingest failed", integration_id)
            return "error", _plain("ingest failed", 500)
        result: dict[str, Any] = row["result"] if row else {}
        if result.get("status") == "failed":
            _logger.error("hotmart %s: event %s kept, not applied: %s", integration_id,
                          result.get("event_id"), result.get("error"))
        return str(result.get("status", "error")), _plain("OK", 200)

    async def quarantine(integration_id: uuid.UUID, body: bytes, reason: str) -> tuple[str, Response]:
        # PostgreSQL text holds neither invalid UTF-8 nor NUL: keep a readable copy.
        text = body.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        _logger.warning("hotmart %s: quarantined %d bytes: %s", integration_id, len(body), reason)
        try:
            async with pool.connection() as conn:
                await conn.execute(_QUARANTINE_SQL, (integration_id, text, reason[:2000]))
        except psycopg.Error:
            _logger.exception("hotmart %s: hotmart_quarantine_raw failed", integration_id)
            return "error", _plain("ingest failed", 500)
        return "quarantined", _plain("QUARANTINED", 200)

    return router
