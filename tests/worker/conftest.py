"""Fixtures of the worker tests: the real database (`db`), the simulator in-process (Graph
API and phones), and the worker's own webhook route in between, all over ASGI transports."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from loop_support import MARIA, SIMULATOR_URL, WORKER_URL

from support import Db
from zapbase.bot import AIResponder, ai_responder
from zapbase.db.pool import Pool, open_pool
from zapbase.flows.engine import FlowEngine
from zapbase.settings import Settings
from zapbase.simulator import DEMO_NUMBER, SimulatedUser, Simulator, SimulatorConfig
from zapbase.simulator import create_app as create_simulator
from zapbase.standins.orders import OrdersStandIn
from zapbase.storage import LocalStorage
from zapbase.whatsapp import GraphAPI
from zapbase.worker.http import create_app, webhook_path
from zapbase.worker.metrics import Metrics

# -- loops (sender, processor, runner) -----------------------------------------------------


@pytest.fixture
def loop_settings(db: Db, tmp_path: Path) -> Settings:
    # No provider keys whatever the environment holds: the bot answers offline, never the network.
    return Settings(
        database_url=db.url, zapbase_media_dir=tmp_path / "media", anthropic_api_key=None, openai_api_key=None
    )


@pytest.fixture
async def pool(db: Db, anyio_backend: str) -> AsyncIterator[Pool]:
    async with open_pool(db.url, 8) as pool:
        yield pool


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def sim() -> Simulator:
    url = WORKER_URL + webhook_path(DEMO_NUMBER.phone_number_id)  # the demo number's own app
    return Simulator(SimulatorConfig(numbers=(DEMO_NUMBER,), webhook_url=url))


@pytest.fixture
async def graph_api(sim: Simulator) -> AsyncIterator[GraphAPI]:
    transport = httpx.ASGITransport(app=create_simulator(simulator=sim))
    async with httpx.AsyncClient(transport=transport, base_url=SIMULATOR_URL) as http:
        yield GraphAPI(http, base_url=SIMULATOR_URL)


@pytest.fixture
async def worker_http(
    loop_settings: Settings, pool: Pool, metrics: Metrics
) -> AsyncIterator[httpx.AsyncClient]:
    """The worker's real webhook route: what the simulated phones post to."""
    app = create_app(loop_settings, pool, metrics)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=WORKER_URL) as http:
        yield http


@pytest.fixture
def maria(sim: Simulator, worker_http: httpx.AsyncClient) -> SimulatedUser:
    return SimulatedUser(sim, worker_http, wa_id=MARIA, name="Maria Silva")


@pytest.fixture
def media_storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "media")


@pytest.fixture
async def offline_responder(
    loop_settings: Settings, pool: Pool, graph_api: GraphAPI, media_storage: LocalStorage
) -> AsyncIterator[AIResponder]:
    """The AI bot as `zapbase up` builds it without keys: the local provider answers."""
    async with ai_responder(loop_settings, pool=pool, api=graph_api, media=media_storage) as responder:
        yield responder


@pytest.fixture
def orders() -> OrdersStandIn:
    """The shop's order API the flows' http blocks call (http://orders.test in local mode)."""
    return OrdersStandIn()


@pytest.fixture
async def flow_engine(orders: OrdersStandIn, offline_responder: AIResponder) -> AsyncIterator[FlowEngine]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=orders.app)) as http:
        yield FlowEngine(http=http, local_mode=True, asker=offline_responder,
                         classifier=offline_responder.intents)
