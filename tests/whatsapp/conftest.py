"""Fixtures for the WhatsApp I/O tests: a simulator on a fake clock, mounted in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from wa_support import (
    APP_SECRET,
    SECOND_NUMBER,
    SIMULATOR_URL,
    WEBHOOK_URL,
    FakeClock,
    WebhookReceiver,
)

from zapbase.simulator import DEMO_NUMBER, Simulator, SimulatorConfig, create_app
from zapbase.whatsapp import GraphAPI


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def simulator(clock: FakeClock) -> Simulator:
    config = SimulatorConfig(
        numbers=(DEMO_NUMBER, SECOND_NUMBER), app_secret=APP_SECRET, webhook_url=WEBHOOK_URL
    )
    return Simulator(config, clock=clock)


@pytest.fixture
async def graph_http(simulator: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(simulator=simulator))
    async with httpx.AsyncClient(transport=transport, base_url=SIMULATOR_URL) as client:
        yield client


@pytest.fixture
def api(graph_http: httpx.AsyncClient) -> GraphAPI:
    return GraphAPI(graph_http, base_url=SIMULATOR_URL, token=DEMO_NUMBER.access_token)


@pytest.fixture
def receiver() -> WebhookReceiver:
    return WebhookReceiver(APP_SECRET)


@pytest.fixture
async def webhook_http(receiver: WebhookReceiver) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=receiver.app)
    async with httpx.AsyncClient(transport=transport) as client:
        yield client
