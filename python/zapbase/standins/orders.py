"""A shop's order API stand-in, what the demo's order-tracking flow calls from its http
block (and the tests, to drive every outcome): orders by CPF, a scripted fault.

    stand_in = OrdersStandIn()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=stand_in.app))
    # GET /orders?cpf=52998224725 -> {"found": true, "order": {"id": "PED-1042", "status": ..., "eta": ...}}
    stand_in.fail_next = "garbage"   # or "error" (HTTP 500), "slow" (sleeps past any flow timeout)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import anyio
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

__all__ = ["DEMO_ORDERS", "OrdersStandIn"]

DEMO_ORDERS: Mapping[str, Mapping[str, str]] = {
    "52998224725": {"id": "PED-1042", "status": "em transporte", "eta": "05/12"},
    "11144477735": {"id": "PED-0977", "status": "entregue", "eta": "28/11"},
}


@dataclass
class OrdersStandIn:
    """The stand-in's state: its orders, the requests it saw, a fault for the next one."""

    orders: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: dict(DEMO_ORDERS))
    fail_next: str | None = None
    requests: list[tuple[str, Mapping[str, str]]] = field(default_factory=list)

    @property
    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/orders")
        async def orders(request: Request, cpf: str = "") -> Response:
            self.requests.append((str(request.url), dict(request.headers)))
            fault, self.fail_next = self.fail_next, None
            if fault == "error":
                return JSONResponse({"error": "internal"}, status_code=500)
            if fault == "garbage":
                return Response(b"<html>oops</html>", media_type="text/html")
            if fault == "slow":
                await anyio.sleep(30)
            order = self.orders.get(cpf)
            return JSONResponse({"found": order is not None, "order": order})

        return app
