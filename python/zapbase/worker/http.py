"""The worker's HTTP API: Meta's webhook (handshake and signed notifications), health, metrics.

The twin of `edge/whatsapp-webhook/handler.ts`, with the same checks and status codes: the
route only verifies the request and hands the body to `whatsapp_ingest` (DESIGN.md "Data
flow of one message"). `create_app(settings, pool, metrics)` builds it over an open pool the
caller owns (`async with open_pool(...) as pool`), so nothing lives at module level.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg import errors as pg_errors
from starlette.requests import ClientDisconnect

from zapbase.settings import Settings
from zapbase.whatsapp.signature import HEADER, verify
from zapbase.worker.database import Pool
from zapbase.worker.metrics import Metrics

__all__ = ["MAX_BODY_BYTES", "WEBHOOK_PATH", "SecretSet", "WebhookSecrets", "create_app"]

_logger = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/whatsapp"
# Meta: webhook payloads can be up to 3 MB.
MAX_BODY_BYTES = 3 * 1024 * 1024
SECRETS_TTL_S = 45.0
# A signature miss may mean a number was just added or its secret rotated: reload then,
# but at most this often, so unsigned junk cannot turn into database load.
MISS_REFRESH_S = 5.0
READY_TIMEOUT_S = 2.0

_QUEUE_DEPTH_SQL = """
select (select count(*) from public.messages where status in ('received', 'processing')) as inbound,
       (select count(*) from public.messages where status in ('queued', 'sending')) as outbound
"""

_QUARANTINE_WHY = (
    "A correctly signed body that is not a JSON object (bad UTF-8, bad JSON, an array, JSON that "
    "PostgreSQL refuses) can never become valid by being sent again, and Meta retries every non-200 "
    "for up to 7 days. It is kept in `inbound_events` (status quarantined) through "
    "`whatsapp_quarantine_raw` and answered 200, so nothing is lost and Meta stops resending it."
)


@dataclass(frozen=True, slots=True)
class SecretSet:
    """The secrets in force: app secrets (signatures) and verify tokens (handshake)."""

    app_secrets: tuple[str, ...]
    verify_tokens: tuple[str, ...]
    loaded_at: float


class WebhookSecrets:
    """Settings' secrets plus the active numbers' (Vault, `whatsapp_webhook_secrets()`),
    cached for `ttl_s` so that a webhook costs one database round trip.

    **Parameters**

    * **pool** - service-role connections.
    * **settings** - `whatsapp_app_secrets` and `whatsapp_verify_token` always count.
    * **ttl_s** - age after which the next request reloads them.
    * **miss_refresh_s** - least time between two reloads caused by a failed check.
    * **clock** - monotonic seconds (injected by tests).
    """

    def __init__(
        self, pool: Pool, settings: Settings, *, ttl_s: float = SECRETS_TTL_S,
        miss_refresh_s: float = MISS_REFRESH_S, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._static_secrets = tuple(s.get_secret_value() for s in settings.whatsapp_app_secrets)
        token = settings.whatsapp_verify_token
        self._static_tokens = (token.get_secret_value(),) if token is not None else ()
        self._ttl_s = ttl_s
        self._miss_refresh_s = miss_refresh_s
        self._clock = clock
        self._snapshot: SecretSet | None = None
        self._last_attempt = float("-inf")
        self._lock = asyncio.Lock()

    async def current(self) -> SecretSet:
        """The cached secrets, reloaded when older than the TTL. Raises `psycopg.Error` only
        when the database fails and nothing was ever loaded."""
        snapshot = self._snapshot
        if snapshot is not None and self._clock() - snapshot.loaded_at < self._ttl_s:
            return snapshot
        return await self._reload(fresher_than=self._ttl_s)

    async def after_miss(self, seen: SecretSet) -> SecretSet | None:
        """Newer secrets after a failed check against `seen`, or None when there is nothing
        newer or the last reload attempt was too recent."""
        if self._clock() - self._last_attempt < self._miss_refresh_s:
            return None
        reloaded = await self._reload(fresher_than=self._miss_refresh_s)
        return None if reloaded is seen else reloaded

    async def _reload(self, *, fresher_than: float) -> SecretSet:
        async with self._lock:
            snapshot = self._snapshot
            # Another request may have reloaded while this one waited for the lock.
            if snapshot is not None and self._clock() - snapshot.loaded_at < fresher_than:
                return snapshot
            self._last_attempt = self._clock()
            try:
                async with self._pool.connection() as conn:
                    cur = await conn.execute("select kind, secret from public.whatsapp_webhook_secrets()")
                    rows = await cur.fetchall()
            except psycopg.Error:
                if snapshot is None:
                    raise
                # Keep answering with what we knew: ingest fails anyway while the database is down.
                _logger.warning("webhook secrets: reload failed, keeping the previous ones", exc_info=True)
                return snapshot
            stored = [(row["kind"], row["secret"]) for row in rows if row["secret"]]
            self._snapshot = SecretSet(
                app_secrets=_unique(self._static_secrets, (s for k, s in stored if k == "app_secret")),
                verify_tokens=_unique(self._static_tokens, (s for k, s in stored if k == "verify_token")),
                loaded_at=self._clock(),
            )
            return self._snapshot


def _unique(first: Iterable[str], second: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s for s in (*first, *second) if s))


def _token_matches(token: str, tokens: Iterable[str]) -> bool:
    given = token.encode()
    matched = False
    for expected in tokens:
        # Every token is compared, so the time taken does not tell which one matched.
        matched |= hmac.compare_digest(given, expected.encode())
    return matched


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it exceeds `limit` bytes (declared or while streaming)."""
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


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _object_problem(body: bytes) -> tuple[str | None, str]:
    """(why the body is not a JSON object, or None; the body as text)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8: {exc}", ""
    try:
        payload = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        return f"not JSON: {exc}", text
    if not isinstance(payload, dict):
        return "JSON is not an object", text
    return None, text


def _plain(text: str, status: int) -> PlainTextResponse:
    return PlainTextResponse(text, status_code=status)


def _text_responses(codes: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    plain = {"text/plain": {"schema": {"type": "string"}}}
    return {code: {"description": text, "content": plain} for code, text in codes.items()}


def create_app(
    settings: Settings, pool: Pool, metrics: Metrics, *, secrets: WebhookSecrets | None = None
) -> FastAPI:
    """The worker's FastAPI app over an open service-role `pool`; `secrets` replaces the
    default cache (tests pass one with a fake clock)."""
    app = FastAPI(
        title="Zapbase worker",
        version="0.1.0",
        description=(
            "WhatsApp Cloud API webhook (Meta's callback URL), health checks and Prometheus metrics "
            "of one Zapbase worker process. Business data goes through PostgREST, not here."
        ),
    )
    app.include_router(_webhook_router(secrets or WebhookSecrets(pool, settings), pool, metrics))
    app.include_router(_operations_router(pool, metrics))
    return app


def _webhook_router(cache: WebhookSecrets, pool: Pool, metrics: Metrics) -> APIRouter:
    router = APIRouter(prefix=WEBHOOK_PATH, tags=["whatsapp"])

    @router.get(
        "",
        summary="Webhook verification handshake",
        description=(
            "Meta calls this when the callback URL or verify token is set in the App Dashboard. "
            "When `hub.mode` is `subscribe` and `hub.verify_token` matches a configured token "
            "(settings or an active number's), `hub.challenge` is echoed as the body. GET carries "
            "no signature, so none is checked."
        ),
        response_class=PlainTextResponse,
        responses=_text_responses({
            200: "The challenge, echoed",
            403: "Wrong mode or verify token",
            500: "The verify tokens could not be read from the database",
        }),
    )
    async def handshake(
        mode: Annotated[str | None, Query(alias="hub.mode", description="Always `subscribe`.")] = None,
        token: Annotated[str | None, Query(alias="hub.verify_token", description="Verify token.")] = None,
        challenge: Annotated[str | None, Query(alias="hub.challenge", description="Echoed if valid.")] = None,
    ) -> Response:
        if mode != "subscribe" or not token:
            return _plain("forbidden", 403)
        try:
            known = await cache.current()
        except psycopg.Error:
            _logger.exception("webhook handshake: cannot load the verify tokens")
            return _plain("verify tokens unavailable", 500)
        if not _token_matches(token, known.verify_tokens):
            fresh = await cache.after_miss(known)
            if fresh is None or not _token_matches(token, fresh.verify_tokens):
                _logger.warning("webhook handshake refused: unknown verify token")
                return _plain("forbidden", 403)
        return _plain(challenge or "", 200)

    @router.post(
        "",
        summary="Receive WhatsApp webhook notifications",
        description=(
            "Messages, statuses and account events from Meta. `X-Hub-Signature-256` must be the "
            "HMAC-SHA256 of the raw body under one app secret (settings or an active number's); "
            "the body is then applied by `whatsapp_ingest` and 200 is answered only after the "
            "commit, so a 500 makes Meta deliver it again (ingest is idempotent).\n\n" + _QUARANTINE_WHY
        ),
        response_class=PlainTextResponse,
        responses=_text_responses({
            200: "Stored: `EVENT_RECEIVED`, or `QUARANTINED` for a signed body that is not a JSON object",
            401: "Missing or invalid signature; nothing stored",
            413: "Body over 3 MB; nothing stored",
            500: "Database failure or no app secret configured; Meta retries",
        }),
        openapi_extra={
            "parameters": [{
                "name": HEADER, "in": "header", "required": True, "schema": {"type": "string"},
                "description": "`sha256=` + lowercase hex HMAC-SHA256 of the raw body.",
            }],
            "requestBody": {
                "required": True,
                "description": "Meta's notification, signed byte for byte (escaped unicode); at most 3 MB.",
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
        },
    )
    async def notification(request: Request) -> Response:
        started = time.perf_counter()
        outcome, response = await receive(request)
        metrics.webhooks.labels(outcome).inc()
        metrics.webhook_latency.observe(time.perf_counter() - started)
        return response

    async def receive(request: Request) -> tuple[str, Response]:
        try:
            body = await _read_limited(request, MAX_BODY_BYTES)
        except ClientDisconnect:
            return "disconnected", _plain("client disconnected", 400)
        if body is None:
            return "too_large", _plain("payload too large", 413)
        try:
            known = await cache.current()
        except psycopg.Error:
            _logger.exception("webhook: cannot load the app secrets")
            return "error", _plain("ingest failed", 500)
        signature = request.headers.get(HEADER)
        if not verify(body, signature, known.app_secrets):
            fresh = await cache.after_miss(known)
            if not (fresh or known).app_secrets:
                # A configuration error, not the sender's: 500 makes Meta retry until it is fixed.
                _logger.error("webhook: no app secret configured (settings or active numbers)")
                return "not_configured", _plain("webhook not configured", 500)
            if fresh is None or not verify(body, signature, fresh.app_secrets):
                return "bad_signature", _plain("invalid signature", 401)

        problem, text = _object_problem(body)
        if problem is not None:
            return await quarantine(body, problem)
        try:
            async with pool.connection() as conn:
                cur = await conn.execute("select public.whatsapp_ingest(%s::jsonb) as result", (text,))
                row = await cur.fetchone()
        except (psycopg.DataError, pg_errors.ProgramLimitExceeded) as exc:
            # PostgreSQL's JSON is stricter than Python's (\u0000, lone surrogates): the same
            # bytes would fail on every redelivery, so they are quarantined like bad JSON.
            return await quarantine(body, f"PostgreSQL refused the JSON ({exc.sqlstate}): {exc}")
        except psycopg.Error:
            _logger.exception("webhook: whatsapp_ingest failed")
            return "error", _plain("ingest failed", 500)
        result: dict[str, Any] = row["result"] if row else {}
        metrics.ingested_messages.inc(result.get("messages", 0))
        metrics.duplicates.inc(result.get("duplicate_events", 0) + result.get("duplicate_messages", 0))
        metrics.quarantined.inc(result.get("quarantined", 0))
        metrics.statuses.inc(result.get("statuses", 0))
        if result.get("unroutable", 0):
            _logger.warning("webhook: %s change(s) for an unknown phone_number_id", result["unroutable"])
        fresh_events = result.get("events", 0) > 0 or result.get("duplicate_events", 0) == 0
        return "ingested" if fresh_events else "duplicate", _plain("EVENT_RECEIVED", 200)

    async def quarantine(body: bytes, reason: str) -> tuple[str, Response]:
        # PostgreSQL text holds neither invalid UTF-8 nor NUL: keep a readable copy.
        text = body.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
        _logger.warning("webhook: quarantined %d bytes: %s", len(body), reason)
        try:
            async with pool.connection() as conn:
                await conn.execute("select public.whatsapp_quarantine_raw(%s, %s)", (text, reason[:2000]))
        except psycopg.Error:
            _logger.exception("webhook: whatsapp_quarantine_raw failed")
            return "error", _plain("ingest failed", 500)
        metrics.quarantined.inc()
        return "quarantined", _plain("QUARANTINED", 200)

    return router


def _operations_router(pool: Pool, metrics: Metrics) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get(
        "/healthz",
        summary="Liveness",
        description="200 while the process serves requests; touches nothing else.",
        responses={200: {"description": "Alive"}},
    )
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get(
        "/readyz",
        summary="Readiness",
        description="200 when a pooled connection answers `select 1` within 2 s, else 503.",
        responses={200: {"description": "Database reachable"}, 503: {"description": "Database unreachable"}},
    )
    async def readyz() -> JSONResponse:
        try:
            async with pool.connection(timeout=READY_TIMEOUT_S) as conn:
                await conn.execute("select 1")
        except psycopg.Error as exc:
            _logger.warning("readyz: database unreachable: %s", exc)
            return JSONResponse({"status": "unavailable", "detail": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ready"})

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        description=(
            "This process's metrics in the Prometheus text format. The queue depth gauges are "
            "counted on each scrape (inbound: received or processing; outbound: queued or "
            "sending); they are left out when the database cannot be reached."
        ),
        response_class=PlainTextResponse,
        responses={200: {"description": "Prometheus exposition", "content": {CONTENT_TYPE_LATEST: {}}}},
    )
    async def scrape() -> Response:
        try:
            async with pool.connection(timeout=READY_TIMEOUT_S) as conn:
                cur = await conn.execute(_QUEUE_DEPTH_SQL)
                row = await cur.fetchone()
        except psycopg.Error as exc:
            _logger.warning("metrics: queue depth unavailable: %s", exc)
            # No stale depth: an absent series is better than a wrong one.
            metrics.queue_depth.clear()
        else:
            if row is not None:
                metrics.queue_depth.labels("inbound").set(row["inbound"])
                metrics.queue_depth.labels("outbound").set(row["outbound"])
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
