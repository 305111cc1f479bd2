"""Shared helpers of the WhatsApp I/O tests (imported by conftest.py and the tests)."""

from __future__ import annotations

from fastapi import FastAPI, Request, Response

from zapbase.simulator import SimNumber
from zapbase.whatsapp.signature import HEADER, verify

SIMULATOR_URL = "http://simulator"
WEBHOOK_URL = "http://worker/webhooks/whatsapp"
APP_SECRET = "test-app-secret"
SECOND_NUMBER = SimNumber(
    phone_number_id="200000000000002",
    display_phone_number="5521988880000",
    access_token="second-number-token",
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_767_225_600.0  # 2026-01-01T00:00:00Z

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class WebhookReceiver:
    """Stands in for the worker's webhook route: checks the signature over the raw bytes."""

    def __init__(self, secret: str) -> None:
        self.bodies: list[bytes] = []
        self.app = FastAPI()

        @self.app.post("/webhooks/whatsapp")
        async def receive(request: Request) -> Response:
            body = await request.body()
            if not verify(body, request.headers.get(HEADER), [secret]):
                return Response(status_code=401)
            self.bodies.append(body)
            return Response(status_code=200)
