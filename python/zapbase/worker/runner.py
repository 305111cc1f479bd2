"""One worker process: the HTTP API (uvicorn), the webhook backlog loop, the inbound processor,
the outbound sender, the webhook deliverer, the campaign loop (pacing, templates at Meta), the
automation loop, the alert mailer (with an SMTP server configured), the chat search and coaching
insight loops (with the AI bot) and the scheduler (the leader replica ticks the job registry).

Replicas share nothing but Postgres: rows are claimed with SKIP LOCKED under leases, and
`LISTEN zapbase_backlog, zapbase_inbound, zapbase_outbound, zapbase_webhooks, zapbase_templates,
zapbase_automation, zapbase_alert_deliveries, zapbase_chat_search, zapbase_insights` wakes the loops
(a poll catches what a lost connection or a retry backoff leaves behind). On SIGTERM / SIGINT
the runner stops claiming, lets the HTTP server answer what it holds and the loops finish the
rows in hand (up to `zapbase_shutdown_grace_s`), then exits; a second signal stops at once, and
rows still leased return to their queue when the lease expires.

    runner = Runner(Settings())
    await runner.run()          # until a signal, or runner.stop()
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable, Iterator, Mapping

import anyio
import httpx
import psycopg
import uvicorn
from anyio.abc import TaskGroup
from psycopg import sql

from zapbase.bot import AIResponder, ai_responder
from zapbase.chat_search.service import ChatSearcher
from zapbase.db.pool import Pool, connect, open_pool, worker_url
from zapbase.errors import DatabaseError
from zapbase.flows.engine import FlowEngine
from zapbase.settings import GRAPH_CONNECT_TIMEOUT_S, GRAPH_TIMEOUT_S, Settings
from zapbase.storage import ObjectStore, storage_from_settings
from zapbase.whatsapp.api import GraphAPI
from zapbase.worker.alerts import AlertMailer, SmtpConfig
from zapbase.worker.automation import AUTOMATION_CHANNEL, AutomationLoop
from zapbase.worker.backlog import BACKLOG_CHANNEL, BacklogLoop
from zapbase.worker.campaigns import CampaignLoop
from zapbase.worker.chat_search import CHAT_SEARCH_CHANNEL, ChatSearchLoop
from zapbase.worker.deliverer import TIMEOUT_S, Deliverer
from zapbase.worker.http import create_app
from zapbase.worker.insights import INSIGHTS_CHANNEL, InsightLoop
from zapbase.worker.metrics import Metrics
from zapbase.worker.processor import BotResponder, Processor
from zapbase.worker.scheduler import Scheduler, worker_jobs
from zapbase.worker.sender import Sender

__all__ = [
    "ALERTS_CHANNEL",
    "INBOUND_CHANNEL",
    "OUTBOUND_CHANNEL",
    "TEMPLATES_CHANNEL",
    "WEBHOOKS_CHANNEL",
    "EmbeddedServer",
    "Runner",
    "listen",
]

_logger = logging.getLogger(__name__)

INBOUND_CHANNEL = "zapbase_inbound"
OUTBOUND_CHANNEL = "zapbase_outbound"
WEBHOOKS_CHANNEL = "zapbase_webhooks"
TEMPLATES_CHANNEL = "zapbase_templates"
ALERTS_CHANNEL = "zapbase_alert_deliveries"
# Below the send lease (Settings refuses a shorter one): a live sender records its outcome
# before the row can be claimed by another replica.
GRAPH_TIMEOUT = httpx.Timeout(GRAPH_TIMEOUT_S, connect=GRAPH_CONNECT_TIMEOUT_S)
_RECONNECT_S = (0.5, 1.0, 2.0, 5.0, 10.0)
# A database that is down or restarting (pool timeouts included): wait and retry; any
# other error is a bug and ends the process.
_DB_DOWN = psycopg.OperationalError


class EmbeddedServer(uvicorn.Server):
    """uvicorn inside a larger process: the runner owns the signals (uvicorn's own handler
    would re-raise them after its shutdown and kill the loops mid-row)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def listen(url: str, channels: Mapping[str, Callable[[], None]]) -> None:
    """Call `channels[name]()` on each NOTIFY; reconnect for ever. After each (re)connect
    every callback runs once, since notifications sent while disconnected are lost."""
    attempt = 0
    while True:
        try:
            async with await connect(url) as conn:
                for channel in channels:
                    await conn.execute(sql.SQL("listen {}").format(sql.Identifier(channel)))
                attempt = 0
                for wake in channels.values():
                    wake()
                async for notify in conn.notifies():
                    wake_one = channels.get(notify.channel)
                    if wake_one is not None:
                        wake_one()
        except (_DB_DOWN, DatabaseError) as exc:  # DatabaseError: connect() found the server down
            delay = _RECONNECT_S[min(attempt, len(_RECONNECT_S) - 1)]
            attempt += 1
            _logger.warning("LISTEN connection lost (%s); reconnecting in %.1fs", exc, delay)
            await anyio.sleep(delay)


async def _resilient(name: str, loop: Callable[[], Awaitable[None]], poll: float) -> None:
    """Run a queue loop; a database outage pauses it instead of ending the process. Its
    rounds handle their rows in task groups, so the outage may come grouped: a message
    whose failure could not be recorded stays leased and is claimed again."""
    while True:
        try:
            await loop()
            return
        except* _DB_DOWN as group:
            _logger.warning("%s: database unavailable (%s); retrying in %.1fs", name, group.exceptions[0],
                            poll)
            await anyio.sleep(poll)


class Runner:
    """Builds and runs the worker's parts on one event loop.

    **Parameters**

    * **settings** - everything configurable (database, ports, Graph URL, leases).
    * **responder** - answers bot-mode messages; the AI bot (`zapbase.bot`) from the settings by default.
    * **storage** - where inbound media go; from the settings by default.
    * **flow_http** - client of flows' http blocks; the webhook deliverer's (no redirects) by default.
    * **serve_http** - run the HTTP API (webhooks, health, metrics).
    * **handle_signals** - stop on SIGTERM / SIGINT (only from the main thread).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        responder: BotResponder | None = None,
        storage: ObjectStore | None = None,
        flow_http: httpx.AsyncClient | None = None,
        serve_http: bool = True,
        handle_signals: bool = True,
    ) -> None:
        self.settings = settings
        self.worker_id = settings.zapbase_worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.metrics = Metrics()
        self.ready = anyio.Event()
        self._responder = responder
        self._storage = storage
        self._flow_http = flow_http
        self._serve_http = serve_http
        self._handle_signals = handle_signals
        self._stop = anyio.Event()
        self._abort: anyio.CancelScope | None = None
        self.scheduler: Scheduler | None = None

    @property
    def http_url(self) -> str:
        return f"http://{self.settings.zapbase_http_host}:{self.settings.zapbase_http_port}"

    def stop(self) -> None:
        """Begin the graceful shutdown (what SIGTERM does)."""
        self._stop.set()

    def abort(self) -> None:
        """Stop now: cancel in-flight work (shielded wamid / reply writes still complete)."""
        self._stop.set()
        if self._abort is not None:
            self._abort.cancel()

    async def run(self) -> None:
        settings = self.settings
        url = worker_url(settings)
        async with (
            open_pool(url, settings.zapbase_db_pool_size) as pool,
            httpx.AsyncClient(timeout=GRAPH_TIMEOUT) as graph_http,
            httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0)) as storage_http,
            httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT_S), follow_redirects=False) as webhook_http,
            contextlib.AsyncExitStack() as stack,
        ):
            api = GraphAPI(
                graph_http, base_url=settings.graph_api_base_url, version=settings.graph_api_version
            )
            sender = Sender(
                pool=pool,
                api=api,
                metrics=self.metrics,
                worker_id=self.worker_id,
                lease_seconds=settings.zapbase_send_lease_s,
                concurrency=settings.zapbase_send_concurrency,
                poll_interval=settings.zapbase_poll_interval_s,
            )
            deliverer = Deliverer(
                pool=pool,
                client=webhook_http,
                worker_id=self.worker_id,
                concurrency=settings.zapbase_webhook_concurrency,
                local_mode=settings.zapbase_webhooks_local_mode,
                lease_seconds=settings.zapbase_webhook_lease_s,
                poll_interval=settings.zapbase_poll_interval_s,
            )
            backlog = BacklogLoop(pool=pool, metrics=self.metrics,
                                  poll_interval=settings.zapbase_poll_interval_s)
            campaigns = CampaignLoop(pool=pool, api=api)
            automation = AutomationLoop(pool=pool, poll_interval=settings.zapbase_poll_interval_s)
            smtp = SmtpConfig.from_settings(settings)
            mailer = (
                AlertMailer(pool=pool, smtp=smtp, worker_id=self.worker_id,
                            poll_interval=settings.zapbase_poll_interval_s)
                if smtp is not None else None
            )  # fmt: skip
            storage = self._storage or storage_from_settings(settings, storage_http)
            responding: contextlib.AbstractAsyncContextManager[BotResponder] = (
                contextlib.nullcontext(self._responder)
                if self._responder is not None
                else ai_responder(settings, pool=pool, api=api, media=storage)
            )
            responder = await stack.enter_async_context(responding)
            ai = responder if isinstance(responder, AIResponder) else None
            chat_search = (
                ChatSearchLoop(pool=pool, poll_interval=settings.zapbase_poll_interval_s,
                               searcher=ChatSearcher(pool=pool, gateways=ai.gateways,
                                                     worker_id=self.worker_id))
                if ai is not None else None
            )  # fmt: skip
            insights = (
                InsightLoop(pool=pool, gateways=ai.gateways, worker_id=self.worker_id, listener=ai.listener,
                            media=storage, poll_interval=settings.zapbase_poll_interval_s)
                if ai is not None else None
            )  # fmt: skip
            flows = FlowEngine(http=self._flow_http or webhook_http,
                               local_mode=settings.zapbase_webhooks_local_mode,
                               asker=ai, classifier=ai.intents if ai is not None else None)  # fmt: skip
            processor = Processor(
                pool=pool,
                api=api,
                storage=storage,
                responder=responder,
                flows=flows,
                metrics=self.metrics,
                worker_id=self.worker_id,
                bucket=settings.zapbase_media_bucket,
                lease_seconds=settings.zapbase_process_lease_s,
                concurrency=settings.zapbase_process_concurrency,
                poll_interval=settings.zapbase_poll_interval_s,
            )
            scheduler = (
                Scheduler(url=url, worker_jobs=worker_jobs(pool.connection, storage),
                          interval=settings.zapbase_scheduler_interval_s)
                if settings.zapbase_scheduler else None
            )
            self.scheduler = scheduler
            server = self._http_server(pool) if self._serve_http else None
            with anyio.CancelScope() as self._abort:
                async with anyio.create_task_group() as helpers:
                    if self._handle_signals:
                        helpers.start_soon(self._watch_signals)
                    channels = {BACKLOG_CHANNEL: backlog.wake, INBOUND_CHANNEL: processor.wake,
                                OUTBOUND_CHANNEL: sender.wake,
                                WEBHOOKS_CHANNEL: deliverer.wake,
                                TEMPLATES_CHANNEL: campaigns.wake,
                                AUTOMATION_CHANNEL: automation.wake}  # fmt: skip
                    if mailer is not None:
                        channels[ALERTS_CHANNEL] = mailer.wake
                    if chat_search is not None:
                        channels[CHAT_SEARCH_CHANNEL] = chat_search.wake
                    if insights is not None:
                        channels[INSIGHTS_CHANNEL] = insights.wake
                    helpers.start_soon(listen, url, channels)
                    await self._run_parts(backlog, processor, sender, deliverer, campaigns, automation,
                                          mailer, chat_search, insights, scheduler, server)
                    helpers.cancel_scope.cancel()
            self._abort = None
        _logger.info("worker %s stopped", self.worker_id)

    def _http_server(self, pool: Pool) -> EmbeddedServer:
        config = uvicorn.Config(
            create_app(self.settings, pool, self.metrics),
            host=self.settings.zapbase_http_host,
            port=self.settings.zapbase_http_port,
            log_level="warning",
            lifespan="off",
        )
        return EmbeddedServer(config)

    async def _run_parts(
        self,
        backlog: BacklogLoop,
        processor: Processor,
        sender: Sender,
        deliverer: Deliverer,
        campaigns: CampaignLoop,
        automation: AutomationLoop,
        mailer: AlertMailer | None,
        chat_search: ChatSearchLoop | None,
        insights: InsightLoop | None,
        scheduler: Scheduler | None,
        server: EmbeddedServer | None,
    ) -> None:
        poll = self.settings.zapbase_poll_interval_s
        done = {"backlog": anyio.Event(), "processor": anyio.Event(), "sender": anyio.Event(),
                "deliverer": anyio.Event(), "campaigns": anyio.Event(),
                "automation": anyio.Event()}  # fmt: skip

        async def part(name: str, body: Callable[[], Awaitable[None]]) -> None:
            try:
                await body()
            finally:
                done[name].set()

        async with anyio.create_task_group() as parts:
            parts.start_soon(part, "backlog", lambda: _resilient("backlog", backlog.run, poll))
            parts.start_soon(part, "processor", lambda: _resilient("processor", processor.run, poll))
            parts.start_soon(part, "sender", lambda: _resilient("sender", sender.run, poll))
            parts.start_soon(part, "deliverer", lambda: _resilient("deliverer", deliverer.run, poll))
            parts.start_soon(part, "campaigns", lambda: _resilient("campaigns", campaigns.run, poll))
            parts.start_soon(part, "automation", lambda: _resilient("automation", automation.run, poll))
            if mailer is not None:
                done["mailer"] = anyio.Event()
                parts.start_soon(part, "mailer", lambda: _resilient("alert mailer", mailer.run, poll))
            if chat_search is not None:
                done["chat_search"] = anyio.Event()
                searching = chat_search
                parts.start_soon(part, "chat_search", lambda: _resilient("chat search", searching.run, poll))
            if insights is not None:
                done["insights"] = anyio.Event()
                analysing = insights
                parts.start_soon(part, "insights", lambda: _resilient("insight loop", analysing.run, poll))
            if scheduler is not None:
                done["scheduler"] = anyio.Event()
                parts.start_soon(part, "scheduler", scheduler.run)
            if server is not None:
                done["http"] = anyio.Event()
                parts.start_soon(part, "http", server.serve)
                parts.start_soon(self._announce_ready, server)
            else:
                self.ready.set()
            loops = (backlog, processor, sender, deliverer, campaigns, automation, mailer, chat_search,
                     insights, scheduler)
            parts.start_soon(self._shutdown_when_asked, parts, done, loops, server)

    async def _announce_ready(self, server: EmbeddedServer) -> None:
        while not server.started:
            if server.should_exit:
                return
            await anyio.sleep(0.02)
        _logger.info("worker %s: HTTP API on %s", self.worker_id, self.http_url)
        self.ready.set()

    async def _shutdown_when_asked(
        self,
        parts: TaskGroup,
        done: Mapping[str, anyio.Event],
        loops: tuple[BacklogLoop, Processor, Sender, Deliverer, CampaignLoop, AutomationLoop,
                     AlertMailer | None, ChatSearchLoop | None, InsightLoop | None, Scheduler | None],
        server: EmbeddedServer | None,
    ) -> None:
        await self._stop.wait()
        _logger.info("worker %s: stopping; finishing the rows in hand", self.worker_id)
        for loop in loops:
            if loop is not None:
                loop.stop()
        if server is not None:
            server.should_exit = True
        with anyio.move_on_after(self.settings.zapbase_shutdown_grace_s) as grace:
            for event in done.values():
                await event.wait()
        if grace.cancelled_caught:
            _logger.warning("worker %s: grace period over, cancelling what is left", self.worker_id)
            if server is not None:
                server.force_exit = True
            parts.cancel_scope.cancel()

    async def _watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if self._stop.is_set():
                    _logger.warning("second %s: stopping now", signal.Signals(signum).name)
                    self.abort()
                    return
                _logger.info("%s received", signal.Signals(signum).name)
                self.stop()
