"""Helpers for the AI gateway's SQL half: the worker's Ledger calls, made the way the worker
makes them (service role, one call per transaction, named arguments), with time under
the test's control through `as_of`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from support import Db

TENANT = "00000000-0000-4000-b000-000000000001"  # seed: Loja Demo (plan pro: R$ 500 a month)
OWNER = "00000000-0000-4000-a000-000000000001"  # seed: Ana, owner
AGENT = "00000000-0000-4000-a000-000000000002"  # seed: Bruno, agent
TENANT_B = "bbbbbbbb-0000-4000-b000-000000000001"  # fixtures/other_tenant.sql

# A November 2026 in São Paulo (UTC-3): local midnight of the 1st is 03:00 UTC.
NOV_START = datetime(2026, 11, 1, 3, 0, tzinfo=UTC)
DEC_START = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
MID_NOV = datetime(2026, 11, 15, 12, 0, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


class Ledger:
    """The worker's view of the database: every call is one service-role request."""

    def __init__(self, db: Db) -> None:
        self.db = db

    def call(self, function: str, **args: Any) -> Any:
        named = ", ".join(f"{name} => %({name})s" for name in args)
        params = {k: Jsonb(v) if isinstance(v, (dict, list)) else v for k, v in args.items()}
        with self.db.as_service() as s:
            return s.value(f"select public.{function}({named})", params)

    def reserve(self, **args: Any) -> dict[str, Any]:
        args.setdefault("tenant_id", TENANT)
        args.setdefault("feature", "reply")
        args.setdefault("model", "openai/gpt-4o-mini")
        result: dict[str, Any] = self.call("ai_reserve", **args)
        return result

    def settle(self, reservation_id: str, **args: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.call("ai_settle", reservation_id=reservation_id, **args)
        return result

    def record(self, **args: Any) -> dict[str, Any]:
        args.setdefault("tenant_id", TENANT)
        args.setdefault("feature", "reply")
        result: dict[str, Any] = self.call("ai_record_usage", **args)
        return result

    def spend(
        self, output_tokens: int, as_of: datetime, estimate: int | None = None, **args: Any
    ) -> dict[str, Any]:
        """Reserve then settle one call that produced `output_tokens`."""
        reserved = self.reserve(
            estimated_output_tokens=estimate if estimate is not None else output_tokens, as_of=as_of, **args
        )
        assert reserved["status"] == "reserved", reserved
        return self.settle(reserved["reservation_id"], output_tokens=output_tokens, as_of=as_of)


def plan_window(db: Db, tenant: str = TENANT) -> dict[str, Any]:
    return db.sql("select * from public.budgets where tenant_id = %s and kind = 'plan'", (tenant,))[0]


def set_round_prices(db: Db, tenant: str = TENANT) -> None:
    """Make money easy to read: USD 20 per million output tokens of gpt-4o-mini for this
    tenant and USD 1 = R$ 5 from November 2026, so one output token costs R$ 0.0001."""
    db.sql(
        "insert into public.pricing_overrides (tenant_id, model_id, output_usd_per_mtok, input_usd_per_mtok)"
        " select %s, id, 20, 0 from public.ai_models where gateway_id = 'openai/gpt-4o-mini'",
        (tenant,),
    )
    db.sql("insert into public.fx_rates (rate_date, rate) values ('2026-11-01', 5) on conflict do nothing")


def pin_november(db: Db, tenant: str = TENANT) -> None:
    """Put the tenant's windows in November 2026 (São Paulo), whatever today is."""
    db.sql(
        "update public.budgets set period_start = %s, period_end = %s where tenant_id = %s",
        (NOV_START, DEC_START, tenant),
    )


def new_tenant(db: Db, plan: str = "pro", name: str | None = None) -> tuple[str, uuid.UUID]:
    owner = db.create_user()
    tenant = db.create_tenant(owner, name or f"Loja {uuid.uuid4().hex[:6]}", plan=plan)
    return str(tenant), owner


def dec(value: str) -> Decimal:
    return Decimal(value)
