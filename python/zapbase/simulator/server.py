"""Run the simulator as a real HTTP server (uvicorn), for the demo and manual tests."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import uvicorn

from zapbase.simulator.app import create_app
from zapbase.simulator.state import DEMO_APP_SECRET, DEMO_NUMBER, SimNumber, SimulatorConfig

__all__ = ["run", "serve"]

_logger = logging.getLogger(__name__)


async def run(
    config: SimulatorConfig, *, host: str = "127.0.0.1", port: int = 8787, log_level: str = "info"
) -> None:
    """Serve inside the running event loop (e.g. next to the worker in one demo process)."""
    server = uvicorn.Server(uvicorn.Config(create_app(config), host=host, port=port, log_level=log_level))
    _logger.info(
        "WhatsApp simulator (local stand-in, not Meta) on http://%s:%s, webhooks → %s",
        host,
        port,
        config.webhook_url or "nowhere",
    )
    await server.serve()


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 8787,
    webhook_url: str | None = None,
    app_secret: str = DEMO_APP_SECRET,
    numbers: Sequence[SimNumber] = (DEMO_NUMBER,),
    enforce_window: bool = False,
    auto_statuses: bool = False,
    log_level: str = "info",
) -> None:
    """Blocking entry point for the `zapbase simulator` CLI command.

    Point the worker's Graph base URL at `http://{host}:{port}` and its app secret at
    `app_secret`; simulated users' webhooks go to `webhook_url`.
    """
    config = SimulatorConfig(
        numbers=tuple(numbers),
        app_secret=app_secret,
        webhook_url=webhook_url,
        enforce_window=enforce_window,
        auto_statuses=auto_statuses,
    )
    uvicorn.run(create_app(config), host=host, port=port, log_level=log_level)
