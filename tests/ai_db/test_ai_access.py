"""Who sees and changes what: tenant admins read usage, budgets and alerts and edit budgets
within their plan; agents see none of it; only the service role runs the Ledger."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import psycopg
import pytest
from ai_support import AGENT, OWNER, TENANT, Ledger, plan_window

from support import Db

LEDGER_CALLS = [
    "select public.ai_reserve(tenant_id => %s, feature => 'reply', model => 'openai/gpt-4o-mini')",
    "select public.ai_begin(tenant_id => %s, feature => 'reply')",
    "select public.ai_record_usage(tenant_id => %s, feature => 'reply', model => 'openai/gpt-4o-mini')",
    "select public.ai_cache_get(%s, repeat('ab', 32))",
    "select public.ai_settle(reservation_id => %s)",
    "select private.job_budget_period_reset()",
]


@pytest.fixture
def spent(db: Db, ledger: Ledger) -> Db:
    """Real time here: budget_status and the cache view compare with now()."""
    db.sql("update public.budgets set brl_limit = 0.01 where tenant_id = %s", (TENANT,))
    ledger.spend(3000, datetime.now(UTC))  # gpt-4o-mini at list price: R$ 0.0099, 99 %: alerts 80, 90
    ledger.call(
        "ai_cache_put", tenant_id=TENANT, cache_key="ab" * 32, model="openai/gpt-4o-mini", response_text="oi"
    )
    return db


def test_admin_reads_usage_budgets_alerts_and_cache(spent: Db) -> None:
    with spent.as_user(OWNER) as s:
        assert s.value("select count(*) from public.ai_usage") == 1
        assert s.value("select count(*) from public.budget_reservations") == 1
        assert s.value("select used_pct from public.budget_status where kind = 'plan'") == Decimal("99.00")
        assert s.value("select count(*) from public.alerts where type = 'budget.threshold'") == 2
        assert s.value("select count(*) from public.response_cache") == 1
        assert s.value("select entries from public.ai_cache_performance") == 1


def test_agent_sees_none_of_it(spent: Db) -> None:
    with spent.as_user(AGENT) as s:
        for table in (
            "ai_usage",
            "budgets",
            "budget_reservations",
            "response_cache",
            "pricing_overrides",
            "alerts",
            "budget_status",
            "ai_cache_performance",
        ):
            assert s.value(f"select count(*) from public.{table}") == 0, table
        assert s.rowcount("update public.budgets set brl_limit = 1000") == 0
        # the model catalogue and the platform policy are not tenant data
        assert s.value("select count(*) from public.ai_models") > 0
        assert s.value("select count(*) from public.gateway_policies") == 1


def test_agent_cannot_add_a_budget(db: Db) -> None:
    with (
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="budgets are managed by tenant admins"),
        db.as_user(AGENT) as s,
    ):
        s.all("insert into public.budgets (tenant_id, brl_limit) values (%s, 1)", (TENANT,))


def test_admin_lowers_limits_within_the_plan_and_adds_windows(db: Db) -> None:
    with db.as_user(OWNER) as s:
        assert s.rowcount("update public.budgets set brl_limit = 120 where kind = 'plan'") == 1
        daily = s.value(
            "insert into public.budgets (tenant_id, name, period, brl_limit)"
            " values (%s, 'Diário', 'daily', 10) returning id",
            (TENANT,),
        )
        assert (
            s.rowcount("update public.budgets set notify_thresholds = '{50,100}' where id = %s", (daily,))
            == 1
        )
    window = plan_window(db)
    assert (window["brl_limit"], window["inherits_from_plan"]) == (Decimal("120.0000"), False)
    audit = db.sql(
        "select actor_id, action from public.audit_log where resource_type = 'budgets'"
        " and actor_id is not null order by created_at"
    )
    assert sorted(a["action"] for a in audit) == ["insert", "update", "update"]  # one transaction: same time

    with db.as_user(OWNER) as s:  # back to the plan
        s.all("update public.budgets set inherits_from_plan = true where kind = 'plan'")
        assert s.rowcount("delete from public.budgets where kind = 'plan'") == 0
        assert s.rowcount("delete from public.budgets where id = %s", (daily,)) == 1
    assert plan_window(db)["brl_limit"] == Decimal("500.0000")


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        (
            "update public.budgets set brl_limit = 501 where kind = 'plan'",
            "the BRL limit cannot exceed your plan's R\\$ 500",
        ),
        ("update public.budgets set brl_limit = null where kind = 'plan'", "the BRL limit cannot exceed"),
        (
            "insert into public.budgets (tenant_id, brl_limit)"
            " values ('00000000-0000-4000-b000-000000000001', 9000)",
            "the BRL limit cannot exceed",
        ),
        (
            "update public.budgets set period = 'daily' where kind = 'plan'",
            "the plan budget follows your plan",
        ),
        (
            "update public.budgets set pause_at_limit = false where kind = 'plan'",
            "the plan budget follows your plan",
        ),
        (
            "update public.budgets set is_active = false where kind = 'plan'",
            "the plan budget follows your plan",
        ),
    ],
)
def test_admin_cannot_extend_spending_beyond_the_plan(db: Db, statement: str, message: str) -> None:
    with pytest.raises(psycopg.Error, match=message), db.as_user(OWNER) as s:
        s.all(statement)
    assert plan_window(db)["brl_limit"] == Decimal("500.0000")


def test_admin_pauses_and_resumes_ai(db: Db, ledger: Ledger) -> None:
    with db.as_user(OWNER) as s:
        s.all("update public.budgets set paused_reason = 'manual' where kind = 'plan'")
    assert ledger.reserve()["reason"] == "paused"
    assert plan_window(db)["paused_at"] is not None
    with db.as_user(OWNER) as s:
        s.all("update public.budgets set paused_reason = null where kind = 'plan'")
    assert ledger.reserve()["status"] == "reserved"


def test_admin_policy_chain_must_name_registry_models(db: Db) -> None:
    with db.as_user(OWNER) as s:
        s.all(
            "insert into public.gateway_policies (tenant_id, name, chain)"
            " values (%s, 'Barato', '{openai/gpt-4o-mini}')",
            (TENANT,),
        )
    with (
        pytest.raises(psycopg.errors.ForeignKeyViolation, match="unknown models in the chain: acme/x"),
        db.as_user(OWNER) as s,
    ):
        s.all(
            "insert into public.gateway_policies (tenant_id, name, chain) values (%s, 'X', '{acme/x}')",
            (TENANT,),
        )
    with db.as_user(OWNER) as s:  # the platform policy is read-only for tenants
        assert (
            s.rowcount("update public.gateway_policies set cache_ttl_seconds = 1 where tenant_id is null")
            == 0
        )


@pytest.mark.parametrize("statement", LEDGER_CALLS)
def test_only_the_service_role_runs_the_ledger(db: Db, statement: str) -> None:
    argument = TENANT if "%s" in statement else None
    for session in (lambda: db.as_user(OWNER), db.as_anon):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), session() as s:
            s.all(statement, (argument,) if argument else None)


def test_nobody_but_the_service_role_writes_usage(db: Db) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(OWNER) as s:
        s.all(
            "insert into public.ai_usage (tenant_id, model_id, provider, model, api_type, feature, outcome)"
            " select %s, id, provider, gateway_id, api_type, 'reply', 'success'"
            " from public.ai_models limit 1",
            (TENANT,),
        )
