"""The worker's HTTP API: Meta's webhook (handshake and signed notifications), health, metrics.

The twin of `edge/whatsapp-webhook/handler.ts`, with the same checks and status codes: the
route only verifies the request and hands the body to `whatsapp_receive` (DESIGN.md "Data
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
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from psycopg import errors as pg_errors
from starlette.requests import ClientDisconnect

from zapbase.db.pool import Pool
from zapbase.hotmart import Hottoks, hotmart_router
from zapbase.settings import Settings
from zapbase.whatsapp.cleaning import jsonb_safe, mark_cleaned, may_need_cleaning
from zapbase.whatsapp.signature import HEADER, verify
from zapbase.worker.metrics import Metrics

__all__ = ["MAX_BODY_BYTES", "WEBHOOK_PATH", "App", "WebhookApps", "create_app", "webhook_path"]

_logger = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/whatsapp"
# Meta: webhook payloads can be up to 3 MB.
MAX_BODY_BYTES = 3 * 1024 * 1024
SECRETS_TTL_S = 45.0
# A signature miss may mean a number was just added or its secret rotated: reload then,
# but at most this often, so unsigned junk cannot turn into database load.
MISS_REFRESH_S = 5.0
READY_TIMEOUT_S = 2.0

_APP_SQL = "select app_secret, verify_token from public.whatsapp_webhook_app(%s)"
_RECEIVE_SQL = "select public.whatsapp_receive(%s::jsonb, %s) as result"
_QUEUE_DEPTH_SQL = """
select (select count(*) from public.messages where status in ('received', 'processing')) as inbound,
       (select count(*) from public.messages where status in ('queued', 'sending')) as outbound,
       (select count(*) from public.inbound_backlog) as backlog
"""

_QUARANTINE_WHY = (
    "A correctly signed body that is not a JSON object (bad UTF-8, bad JSON, an array) can never "
    "become valid by being sent again, and Meta retries every non-200 for up to 7 days. It is kept "
    "in `inbound_events` (status quarantined) through `whatsapp_quarantine_raw` and answered 200, so "
    "nothing is lost and Meta stops resending it. Strings of valid JSON that PostgreSQL refuses "
    "(`\\u0000`, lone surrogates) are replaced by U+FFFD and the rest is applied; the events record "
    "it (`inbound_events.cleaned`, with the SHA-256 of the body as received)."
)


def webhook_path(phone_number_id: str | None = None) -> str:
    """The callback URL path of the platform's Meta app, or of the tenant's own app that
    the number `phone_number_id` lives under."""
    return WEBHOOK_PATH if phone_number_id is None else f"{WEBHOOK_PATH}/{phone_number_id}"


@dataclass(frozen=True, slots=True)
class App:
    """A Meta app's webhook credentials: app secrets (signatures) and verify tokens (handshake)."""

    app_secrets: tuple[str, ...]
    verify_tokens: tuple[str, ...]
    loaded_at: float


_NO_APP = App((), (), float("-inf"))


class WebhookApps:
    """The Meta apps whose webhooks the route accepts, and what each may speak for.

    `WEBHOOK_PATH` is the platform's app: the secrets and token in settings; its signature
    covers the numbers with no app secret of their own. `WEBHOOK_PATH/<phone_number_id>` is
    a tenant's own app, named by one of its numbers: that number's app secret and verify
    token in Vault (`whatsapp_webhook_app`); its signature covers that tenant's numbers
    under the same app (`private.webhook_covers` decides, in SQL, for the edge function
    too). Tenant apps are cached for `ttl_s` so that a webhook costs one round trip.

    **Parameters**

    * **pool** - service-role connections.
    * **settings** - `whatsapp_app_secrets` and `whatsapp_verify_token`: the platform's app.
    * **ttl_s** - age after which a tenant app is read again.
    * **miss_refresh_s** - least time between two reads of one app caused by a failed check
      (a secret just set or rotated), so unsigned junk cannot turn into database load.
    * **max_cached** - tenant apps kept at most (the oldest read is dropped first).
    * **clock** - monotonic seconds (injected by tests).
    """

    def __init__(
        self, pool: Pool, settings: Settings, *, ttl_s: float = SECRETS_TTL_S,
        miss_refresh_s: float = MISS_REFRESH_S, max_cached: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        token = settings.whatsapp_verify_token
        self.platform = App(
            app_secrets=_unique(s.get_secret_value() for s in settings.whatsapp_app_secrets),
            verify_tokens=_unique([token.get_secret_value()] if token is not None else []),
            loaded_at=float("inf"),
        )
        self._ttl_s = ttl_s
        self._miss_refresh_s = miss_refresh_s
        self._max_cached = max_cached
        self._clock = clock
        self._apps: dict[str, App] = {}
        self._lock = asyncio.Lock()

    async def tenant_app(self, phone_number_id: str) -> App:
        """The app of the number `phone_number_id` (no secrets when the number is unknown or
        disabled), read again when older than the TTL. Raises `psycopg.Error` only when the
        database fails and the app was never read."""
        app = self._apps.get(phone_number_id)
        if app is not None and self._clock() - app.loaded_at < self._ttl_s:
            return app
        return await self._read(phone_number_id, fresher_than=self._ttl_s)

    async def after_miss(self, phone_number_id: str, seen: App) -> App | None:
        """The app read again after a failed check against `seen`, or None when it was read
        too recently or nothing changed."""
        if self._clock() - seen.loaded_at < self._miss_refresh_s:
            return None
        app = await self._read(phone_number_id, fresher_than=self._miss_refresh_s)
        unchanged = (app.app_secrets, app.verify_tokens) == (seen.app_secrets, seen.verify_tokens)
        return None if unchanged else app

    async def _read(self, phone_number_id: str, *, fresher_than: float) -> App:
        if not (phone_number_id.isdigit() and len(phone_number_id) <= 30):
            return _NO_APP  # cannot be a number's id: no database work for it
        async with self._lock:
            cached = self._apps.get(phone_number_id)
            # Another request may have read it while this one waited for the lock.
            if cached is not None and self._clock() - cached.loaded_at < fresher_than:
                return cached
            try:
                async with self._pool.connection() as conn:
                    cur = await conn.execute(_APP_SQL, (phone_number_id,))
                    row = await cur.fetchone()
            except psycopg.Error:
                if cached is None:
                    raise
                # Keep answering with what we knew: ingest fails anyway while the database is down.
                _logger.warning("webhook app %s: read failed, keeping the previous one", phone_number_id,
                                exc_info=True)
                return cached
            app = App(
                app_secrets=_unique([row["app_secret"]] if row else []),
                verify_tokens=_unique([row["verify_token"]] if row else []),
                loaded_at=self._clock(),
            )
            self._apps.pop(phone_number_id, None)
            if len(self._apps) >= self._max_cached:
                del self._apps[next(iter(self._apps))]
            self._apps[phone_number_id] = app
            return app


def _unique(secrets: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(s for s in secrets if s))


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
    """(why the body is not a JSON object, or None; the body as text for whatsapp_receive).
    Strings jsonb refuses are cleaned (see zapbase.whatsapp.cleaning)."""
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
    if may_need_cleaning(text):
        cleaned, strings = jsonb_safe(payload)
        if strings:
            _logger.warning("webhook: %d string(s) PostgreSQL refuses replaced by U+FFFD", strings)
            return None, json.dumps(mark_cleaned(cleaned, strings, body))
    return None, text


def _plain(text: str, status: int) -> PlainTextResponse:
    return PlainTextResponse(text, status_code=status)


def _text_responses(codes: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    plain = {"text/plain": {"schema": {"type": "string"}}}
    return {code: {"description": text, "content": plain} for code, text in codes.items()}


def create_app(
    settings: Settings, pool: Pool, metrics: Metrics, *, apps: WebhookApps | None = None,
    hottoks: Hottoks | None = None,
) -> FastAPI:
    """The worker's FastAPI app over an open service-role `pool`; `apps` and `hottoks`
    replace the default caches of Meta apps and Hotmart hottoks (tests pass ones with a fake clock)."""
    app = FastAPI(
        title="Zapbase worker",
        version="0.1.0",
        description=(
            "WhatsApp Cloud API webhook (Meta's callback URL), Hotmart's webhook (one URL per tenant "
            "integration), health checks and Prometheus metrics "
            "of one Zapbase worker process. Business data goes through PostgREST, not here."
        ),
    )
    app.include_router(_webhook_router(apps or WebhookApps(pool, settings), pool, metrics))
    app.include_router(hotmart_router(
        pool, hottoks, lambda outcome: metrics.hotmart_webhooks.labels(outcome).inc()))
    app.include_router(_operations_router(pool, metrics))
    return app


_APP_PATH = "/{phone_number_id}"
_APP_PARAMETER = (
    "A tenant's own Meta app: the `phone_number_id` of one of its numbers, whose app secret and "
    "verify token (in Vault) authenticate the app. Without it, the platform's app (settings)."
)
_HANDSHAKE_DOC = (
    "Meta calls this when the callback URL or verify token is set in the App Dashboard. When "
    "`hub.mode` is `subscribe` and `hub.verify_token` is the token of the app this URL belongs to "
    "(the platform's, or the tenant app's named by the path), `hub.challenge` is echoed as the body. "
    "GET carries no signature, so none is checked."
)
_NOTIFICATION_DOC = (
    "Messages, statuses and account events from Meta. `X-Hub-Signature-256` must be the HMAC-SHA256 "
    "of the raw body under the app secret of the app this URL belongs to (the platform's, or the "
    "tenant app's named by the path). The body goes to `whatsapp_receive`, which applies it at once "
    "to the numbers that app speaks for (a change for any other number is kept apart, never applied) "
    "or, during a burst that keeps every ingest slot busy, keeps it durably in `inbound_backlog` for "
    "the worker to apply right after, in arrival order. 200 is answered only after the commit, so "
    "nothing acknowledged is lost, and a 500 makes Meta deliver it again (ingest is idempotent).\n\n"
    + _QUARANTINE_WHY
)

HubMode = Annotated[str | None, Query(alias="hub.mode", description="Always `subscribe`.")]
HubToken = Annotated[str | None, Query(alias="hub.verify_token", description="Verify token.")]
HubChallenge = Annotated[str | None, Query(alias="hub.challenge", description="Echoed if valid.")]
AppNumber = Annotated[str, PathParam(description=_APP_PARAMETER)]


def _webhook_router(apps: WebhookApps, pool: Pool, metrics: Metrics) -> APIRouter:
    router = APIRouter(prefix=WEBHOOK_PATH, tags=["whatsapp"])
    handshake_responses = _text_responses({
        200: "The challenge, echoed",
        403: "Wrong mode or verify token (or no such app)",
        500: "The app's verify token could not be read from the database",
    })
    notification_responses = _text_responses({
        200: "Applied or backlogged: `EVENT_RECEIVED`, or `QUARANTINED` for a signed body that is not "
             "a JSON object",
        401: "Missing or invalid signature (or no such app); nothing stored",
        413: "Body over 3 MB; nothing stored",
        500: "Database failure, or the platform's app has no secret configured; Meta retries",
    })
    notification_extra: dict[str, Any] = {
        "parameters": [{
            "name": HEADER, "in": "header", "required": True, "schema": {"type": "string"},
            "description": "`sha256=` + lowercase hex HMAC-SHA256 of the raw body.",
        }],
        "requestBody": {
            "required": True,
            "description": "Meta's notification, signed byte for byte (escaped unicode); at most 3 MB.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
    }

    @router.get("", summary="Webhook verification handshake (the platform's app)", description=_HANDSHAKE_DOC,
                response_class=PlainTextResponse, responses=handshake_responses)
    async def platform_handshake(
        mode: HubMode = None, token: HubToken = None, challenge: HubChallenge = None
    ) -> Response:
        return await handshake(None, mode, token, challenge)

    @router.get(_APP_PATH, summary="Webhook verification handshake (a tenant's own app)",
                description=_HANDSHAKE_DOC, response_class=PlainTextResponse, responses=handshake_responses)
    async def tenant_handshake(
        phone_number_id: AppNumber, mode: HubMode = None, token: HubToken = None,
        challenge: HubChallenge = None,
    ) -> Response:
        return await handshake(phone_number_id, mode, token, challenge)

    @router.post("", summary="Receive WhatsApp webhook notifications (the platform's app)",
                 description=_NOTIFICATION_DOC, response_class=PlainTextResponse,
                 responses=notification_responses, openapi_extra=notification_extra)
    async def platform_notification(request: Request) -> Response:
        return await notification(request, None)

    @router.post(_APP_PATH, summary="Receive WhatsApp webhook notifications (a tenant's own app)",
                 description=_NOTIFICATION_DOC, response_class=PlainTextResponse,
                 responses=notification_responses, openapi_extra=notification_extra)
    async def tenant_notification(request: Request, phone_number_id: AppNumber) -> Response:
        return await notification(request, phone_number_id)

    async def handshake(
        signer: str | None, mode: str | None, token: str | None, challenge: str | None
    ) -> Response:
        if mode != "subscribe" or not token:
            return _plain("forbidden", 403)
        if signer is None:
            matched = _token_matches(token, apps.platform.verify_tokens)
        else:
            try:
                known = await apps.tenant_app(signer)
            except psycopg.Error:
                _logger.exception("webhook handshake: cannot read the app of %s", signer)
                return _plain("verify tokens unavailable", 500)
            matched = _token_matches(token, known.verify_tokens)
            if not matched:
                fresh = await apps.after_miss(signer, known)
                matched = fresh is not None and _token_matches(token, fresh.verify_tokens)
        if not matched:
            _logger.warning("webhook handshake refused: not the app's verify token")
            return _plain("forbidden", 403)
        return _plain(challenge or "", 200)

    async def notification(request: Request, signer: str | None) -> Response:
        started = time.perf_counter()
        outcome, response = await receive(request, signer)
        metrics.webhooks.labels(outcome).inc()
        metrics.webhook_latency.observe(time.perf_counter() - started)
        return response

    async def signed_by_app(body: bytes, signature: str | None, signer: str | None) -> str | None:
        """None when the app `signer` names signed `body`, else the outcome that refuses it."""
        if signer is None:
            if not apps.platform.app_secrets:
                # A configuration error, not the sender's: 500 makes Meta retry until it is fixed.
                _logger.error("webhook: the platform's app has no secret (WHATSAPP_APP_SECRETS)")
                return "not_configured"
            return None if verify(body, signature, apps.platform.app_secrets) else "bad_signature"
        known = await apps.tenant_app(signer)
        if verify(body, signature, known.app_secrets):
            return None
        fresh = await apps.after_miss(signer, known)
        return None if fresh is not None and verify(body, signature, fresh.app_secrets) else "bad_signature"

    async def receive(request: Request, signer: str | None) -> tuple[str, Response]:
        try:
            body = await _read_limited(request, MAX_BODY_BYTES)
        except ClientDisconnect:
            return "disconnected", _plain("client disconnected", 400)
        if body is None:
            return "too_large", _plain("payload too large", 413)
        try:
            refused = await signed_by_app(body, request.headers.get(HEADER), signer)
        except psycopg.Error:
            _logger.exception("webhook: cannot read the app of %s", signer)
            return "error", _plain("ingest failed", 500)
        if refused == "not_configured":
            return refused, _plain("webhook not configured", 500)
        if refused is not None:
            return refused, _plain("invalid signature", 401)

        problem, text = _object_problem(body)
        if problem is not None:
            return await quarantine(body, problem)
        try:
            async with pool.connection() as conn:
                cur = await conn.execute(_RECEIVE_SQL, (text, signer))
                row = await cur.fetchone()
        except (psycopg.DataError, pg_errors.ProgramLimitExceeded) as exc:
            # Anything else PostgreSQL refuses in the JSON would fail on every redelivery:
            # quarantined like bad JSON.
            return await quarantine(body, f"PostgreSQL refused the JSON ({exc.sqlstate}): {exc}")
        except psycopg.Error:
            _logger.exception("webhook: whatsapp_receive failed")
            return "error", _plain("ingest failed", 500)
        result: dict[str, Any] = row["result"] if row else {}
        if result.get("backlogged"):
            return "backlogged", _plain("EVENT_RECEIVED", 200)
        metrics.ingested_messages.inc(result.get("messages", 0))
        metrics.duplicates.inc(result.get("duplicate_events", 0) + result.get("duplicate_messages", 0))
        metrics.quarantined.inc(result.get("quarantined", 0) + result.get("refused", 0))
        metrics.statuses.inc(result.get("statuses", 0))
        if result.get("unroutable", 0):
            _logger.warning("webhook: %s change(s) for an unknown phone_number_id", result["unroutable"])
        if result.get("refused", 0):
            _logger.warning("webhook: %s change(s) for numbers the app of %s does not speak for",
                            result["refused"], signer or "the platform")
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
            "sending; backlog: webhook bodies acknowledged, not applied yet); they are left out "
            "when the database cannot be reached."
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
                metrics.queue_depth.labels("backlog").set(row["backlog"])
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
