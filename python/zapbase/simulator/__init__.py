"""A local WhatsApp Cloud API simulator for tests and the offline demo.

It is a stand-in, not Meta: it implements only the Graph endpoints `zapbase.whatsapp.GraphAPI`
calls (send, mark read, media upload / URL / download) with Meta's documented request
checks and error bodies, and it plays the users' phones: `SimulatedUser` posts signed
webhooks (messages and statuses) to the worker. Every answer carries the header
`X-Zapbase-Simulator`. Use it in-process::

    sim = Simulator(SimulatorConfig(webhook_url="http://worker/webhooks/whatsapp"))
    graph = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(simulator=sim)),
                              base_url="http://simulator")
    api = GraphAPI(graph, base_url="http://simulator", token=DEMO_NUMBER.access_token)

or as a server with `serve(...)` / `await run(config)`.
"""

from __future__ import annotations

from zapbase.simulator.app import create_app, simulator_of
from zapbase.simulator.faults import CannedError, bare_http_error, meta_error
from zapbase.simulator.phone import SimulatedUser, WebhookDelivery
from zapbase.simulator.server import run, serve
from zapbase.simulator.state import (
    DEMO_APP_SECRET,
    DEMO_NUMBER,
    ReadMark,
    ReceivedMessage,
    SimNumber,
    Simulator,
    SimulatorConfig,
    StoredMedia,
)

__all__ = [
    "DEMO_APP_SECRET",
    "DEMO_NUMBER",
    "CannedError",
    "ReadMark",
    "ReceivedMessage",
    "SimNumber",
    "SimulatedUser",
    "Simulator",
    "SimulatorConfig",
    "StoredMedia",
    "WebhookDelivery",
    "bare_http_error",
    "create_app",
    "meta_error",
    "run",
    "serve",
    "simulator_of",
]
