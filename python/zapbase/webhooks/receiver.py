"""A webhook receiver that verifies every delivery: the demo's, the benchmarks' and the
tests' stand-in for a tenant's system (and a worked example of verifying in Python).

    receiver = Receiver()
    receiver.secrets["crm"] = "whsec_..."            # from create_webhook_endpoint
    # POST http://127.0.0.1:<port>/crm  ->  receiver.received["crm"]

`answers[name]` scripts the reply of an endpoint: a status code and body, or `HANG` to
keep the connection open without answering. While `hold` is an unset event, every request
waits for it before answering (what is in flight at a given moment, e.g. a database restart).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import uvicorn
from fastapi import FastAPI, Request, Response

from zapbase.webhooks.signing import InvalidSignature, verify

__all__ = ["HANG", "Delivery", "Receiver"]

HANG = "hang"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One POST as received: its webhook-id, event type, body and whether it verified."""

    webhook_id: str
    type: str
    body: dict[str, Any]
    verified: bool
    signatures: int


@dataclass
class Receiver:
    secrets: dict[str, str] = field(default_factory=dict)
    answers: dict[str, tuple[int, bytes] | str] = field(default_factory=dict)
    received: dict[str, list[Delivery]] = field(default_factory=dict)
    hold: anyio.Event | None = None

    def ids(self, name: str) -> Counter[str]:
        """How many times each webhook-id reached `name` (duplicates show as counts > 1)."""
        return Counter(d.webhook_id for d in self.received.get(name, []))

    @asynccontextmanager
    async def serving(self, port: int, host: str = "127.0.0.1") -> AsyncIterator[str]:
        """Serve on host:port for the block; yields the base URL."""
        config = uvicorn.Config(self.app(), host=host, port=port, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        async with anyio.create_task_group() as tg:
            tg.start_soon(server.serve)
            while not server.started:
                await anyio.sleep(0.01)
            try:
                yield f"http://{host}:{port}"
            finally:
                server.should_exit = True
                server.force_exit = True  # hanging requests are the point of some tests

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/{name}")
        async def receive(name: str, request: Request) -> Response:
            raw = await request.body()
            secret = self.secrets.get(name)
            try:
                verified = secret is not None and verify(secret, request.headers, raw)
            except InvalidSignature:
                verified = False
            body = json.loads(raw)
            signatures = len(request.headers.get("webhook-signature", "").split())
            delivery = Delivery(request.headers.get("webhook-id", ""), body.get("type", ""), body, verified,
                                signatures)
            self.received.setdefault(name, []).append(delivery)
            if self.hold is not None:
                await self.hold.wait()
            answer = self.answers.get(name, (204, b""))
            if answer == HANG:
                await anyio.sleep_forever()
            status, content = answer if isinstance(answer, tuple) else (500, b"")
            if not verified and answer == (204, b""):
                return Response(status_code=401, content=b"bad signature")
            return Response(status_code=status, content=content)

        return app
