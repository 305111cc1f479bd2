"""Helpers of the commerce tests: a Hotmart integration of the demo tenant made the way an
admin makes it, and the corpus of Hotmart events (postback v2 JSON in hotmart_events/)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

from support import Db

TENANT = "00000000-0000-4000-b000-000000000001"  # seed: Loja Demo
OWNER = "00000000-0000-4000-a000-000000000001"
HOTTOK = "hottok-da-loja-demo-7c1f"
CORPUS = Path(__file__).parent / "hotmart_events"
DAY_MS = 86_400_000


def create_integration(db: Db, hottok: str = HOTTOK, name: str = "Hotmart") -> str:
    """The demo tenant's Hotmart integration, its hottok stored by the owner through the RPC."""
    with db.as_user(OWNER) as s:
        integration = str(s.value(
            "insert into public.integrations (tenant_id, type, provider, name, status)"
            " values (%s, 'payments', 'hotmart', %s, 'active') returning id", (TENANT, name)))
        s.value("select public.set_integration_secret(%s, %s)", (integration, hottok))
    return integration


def event(name: str, **changes: Any) -> dict[str, Any]:
    """A corpus event with `changes`: paths with `__` between keys
    (`data__purchase__transaction="HP1"`, `id="..."`); `None` removes the key."""
    body: dict[str, Any] = json.loads((CORPUS / f"{name}.json").read_text())
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = body
        for key in parents:
            node = node.setdefault(key, {})
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    return body


def now_ms(days: float = 0) -> int:
    return int(time.time() * 1000 + days * DAY_MS)


def dated(body: dict[str, Any], days: float) -> dict[str, Any]:
    """The event as if sent `days` from now (negative: in the past): its time, and for a
    purchase its order, approval and guarantee dates (guarantee: 7 days after approval)."""
    body = copy.deepcopy(body)
    key = "creationDate" if "creationDate" in body else "creation_date"
    body[key] = now_ms(days)
    purchase = body.get("data", {}).get("purchase")
    if isinstance(purchase, dict):
        purchase["order_date"] = now_ms(days) - 300_000
        if purchase.get("approved_date") is not None:
            purchase["approved_date"] = now_ms(days)
        product = body["data"].get("product", {})
        if "warranty_date" in product:
            ends = time.gmtime(now_ms(days + 7) / 1000)
            product["warranty_date"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", ends)
    return body


def events_of(db: Db, type_: str) -> list[dict[str, Any]]:
    return [r["payload"] for r in db.sql(
        "select payload from public.events where tenant_id = %s and type = %s order by created_at",
        (TENANT, type_))]
