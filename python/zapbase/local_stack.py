"""A worker and a WhatsApp simulator wired to each other in one event loop, on free local
ports: what `zapbase up --simulator`, `zapbase demo` and `zapbase chat` run. Flows' http
blocks may call local addresses here, and the demo flow's order API (http://localhost:8788)
is the in-process stand-in `zapbase.standins.orders`. `zapbase demo` also serves an OpenAI
wire stand-in (`zapbase.standins.ai`) on a local port: the provider its coaching chapter
connects the demo tenant to, so insights and chat search run offline through the real gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
import httpx
import uvicorn

from zapbase.db.embedded import free_port
from zapbase.settings import Settings
from zapbase.simulator import DEMO_NUMBER, SimulatedUser, Simulator, SimulatorConfig, create_app
from zapbase.standins.ai import OpenAIStandIn
from zapbase.standins.orders import OrdersStandIn
from zapbase.worker.http import webhook_path
from zapbase.worker.processor import BotResponder
from zapbase.worker.runner import EmbeddedServer, Runner

__all__ = ["ORDERS_URL", "LocalStack", "local_stack"]

ORDERS_URL = "http://localhost:8788"  # the demo flow's http block (seed/40_demo_flow.sql)


@dataclass(frozen=True, slots=True)
class LocalStack:
    """A worker and a simulator wired to each other, inside one event loop."""

    runner: Runner
    simulator: Simulator
    simulator_url: str
    webhooks: httpx.AsyncClient  # posts the simulated users' webhooks
    stopped: anyio.Event  # the worker has stopped (a signal, or an error)
    ai_standin: OpenAIStandIn | None = None  # scripted OpenAI-compatible provider, if served
    ai_url: str | None = None  # its base URL (http://127.0.0.1:<port>/v1)

    def user(self, wa_id: str, name: str) -> SimulatedUser:
        return SimulatedUser(self.simulator, self.webhooks, wa_id=wa_id, name=name)


@asynccontextmanager
async def local_stack(
    settings: Settings,
    *,
    http_port: int | None = None,
    simulator_port: int | None = None,
    handle_signals: bool = False,
    responder: BotResponder | None = None,
    ai_standin: OpenAIStandIn | None = None,
) -> AsyncIterator[LocalStack]:
    """Start the simulator and a worker sending to it (free ports unless given), and
    `ai_standin` on a free port; on exit the worker stops gracefully first, then the
    simulator it sends to."""
    http_port = http_port or free_port()
    simulator_port = simulator_port or free_port()
    simulator_url = f"http://127.0.0.1:{simulator_port}"
    settings = settings.model_copy(update={
        "graph_api_base_url": simulator_url, "zapbase_http_host": "127.0.0.1", "zapbase_http_port": http_port,
        "zapbase_webhooks_local_mode": True,
    })  # fmt: skip
    simulator = Simulator(SimulatorConfig(
        numbers=(DEMO_NUMBER,), webhook_url=f"http://127.0.0.1:{http_port}{webhook_path(DEMO_NUMBER.phone_number_id)}",
        auto_statuses=True, enforce_window=True,
    ))  # fmt: skip
    # the order API answers in-process: no port to bind, nothing else reachable through it
    flow_http = httpx.AsyncClient(mounts={ORDERS_URL: httpx.ASGITransport(app=OrdersStandIn().app)},
                                  timeout=10.0, follow_redirects=False)  # fmt: skip
    runner = Runner(settings, handle_signals=handle_signals, responder=responder, flow_http=flow_http)
    worker_done = anyio.Event()

    async def run_worker() -> None:
        try:
            await runner.run()
        finally:
            worker_done.set()

    async with flow_http, httpx.AsyncClient(timeout=30.0) as webhooks, anyio.create_task_group() as tg:
        sim_server = EmbeddedServer(uvicorn.Config(
            create_app(simulator=simulator, client=webhooks), host="127.0.0.1", port=simulator_port,
            log_level="warning", lifespan="off",
        ))  # fmt: skip
        servers = [sim_server]
        ai_url = None
        if ai_standin is not None:
            ai_port = free_port()
            ai_url = f"http://127.0.0.1:{ai_port}{ai_standin.base_path}"
            servers.append(EmbeddedServer(uvicorn.Config(ai_standin.app, host="127.0.0.1", port=ai_port,
                                                         log_level="warning", lifespan="off")))  # fmt: skip
        for server in servers:
            tg.start_soon(server.serve)
        tg.start_soon(run_worker)
        with anyio.fail_after(30):
            await runner.ready.wait()
            while not all(server.started for server in servers):
                await anyio.sleep(0.02)
        try:
            yield LocalStack(runner, simulator, simulator_url, webhooks, worker_done, ai_standin, ai_url)
        finally:
            runner.stop()
            with anyio.CancelScope(shield=True):
                await worker_done.wait()
            for server in servers:
                server.should_exit = True
