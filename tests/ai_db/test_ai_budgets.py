"""Budget windows: inheritance from the plan, thresholds once per period with alerts and
NOTIFY, periods in the tenant time zone (rolled by the job and lazily), modes, refusals,
reservation expiry, idempotent settlement."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from ai_support import (
    DEC_START,
    MID_NOV,
    NOV_START,
    TENANT,
    Ledger,
    new_tenant,
    pin_november,
    plan_window,
    set_round_prices,
    utc,
)

from support import Db


@pytest.fixture
def tight(db: Db) -> Db:
    """Loja Demo with R$ 1.00 a month (1 output token = R$ 0.0001) in November 2026."""
    set_round_prices(db)
    db.sql("update public.budgets set brl_limit = 1 where tenant_id = %s and kind = 'plan'", (TENANT,))
    db.sql(
        "update public.tenants set notification_emails = '{alertas@lojademo.com.br}' where id = %s",
        (TENANT,),
    )
    pin_november(db)
    return db


def add_window(db: Db, **columns: Any) -> str:
    columns.setdefault("tenant_id", TENANT)
    names = ", ".join(columns)
    values = ", ".join(f"%({c})s" for c in columns)
    window_id: str = db.value(f"insert into public.budgets ({names}) values ({values}) returning id", columns)
    db.sql(
        "update public.budgets set period_start = %s, period_end = %s where id = %s",
        (NOV_START, DEC_START, window_id),
    )
    return window_id


# -- the plan window -------------------------------------------------------------------


def test_every_tenant_gets_a_plan_window_that_follows_its_plan(db: Db) -> None:
    tenant, _ = new_tenant(db, plan="free")
    window = plan_window(db, tenant)
    assert (window["mode"], window["period"], window["token_limit"], window["brl_limit"]) == (
        "both",
        "monthly",
        200000,
        Decimal("10.0000"),
    )
    assert window["inherits_from_plan"]

    db.sql(
        "update public.tenants set plan_id = (select id from public.plans where code = 'starter')"
        " where id = %s",
        (tenant,),
    )
    window = plan_window(db, tenant)
    assert (window["mode"], window["token_limit"], window["brl_limit"]) == ("brl", None, Decimal("100.0000"))

    # an override survives plan edits but is clamped to the new cap
    db.sql("update public.budgets set brl_limit = 80 where id = %s", (window["id"],))
    assert not plan_window(db, tenant)["inherits_from_plan"]
    db.sql("update public.plans set budget_brl_limit = 50 where code = 'starter'")
    assert plan_window(db, tenant)["brl_limit"] == Decimal("50.0000")


def test_monthly_period_starts_at_local_midnight(db: Db) -> None:
    rows = db.sql(
        "select p, tz, (private.budget_window(p, tz, t)).* from (values"
        " ('monthly', 'America/Sao_Paulo', timestamptz '2026-12-01 02:59:59+00'),"
        " ('monthly', 'America/Sao_Paulo', timestamptz '2026-12-01 03:00:00+00'),"
        " ('weekly', 'America/Sao_Paulo', timestamptz '2026-11-22 13:00:00+00'),"
        " ('daily', 'America/Sao_Paulo', timestamptz '2026-11-22 01:00:00+00'),"
        " ('monthly', 'America/New_York', timestamptz '2026-03-20 12:00:00+00')) v(p, tz, t)"
    )
    bounds = [(r["period_start"].isoformat(), r["period_end"].isoformat()) for r in rows]
    assert bounds == [
        ("2026-11-01T03:00:00+00:00", "2026-12-01T03:00:00+00:00"),
        ("2026-12-01T03:00:00+00:00", "2027-01-01T03:00:00+00:00"),
        ("2026-11-16T03:00:00+00:00", "2026-11-23T03:00:00+00:00"),  # Monday to Monday
        ("2026-11-21T03:00:00+00:00", "2026-11-22T03:00:00+00:00"),  # 22:00 of the 21st locally
        ("2026-03-01T05:00:00+00:00", "2026-04-01T04:00:00+00:00"),  # across the DST change
    ]


# -- thresholds ------------------------------------------------------------------------


def test_thresholds_fire_once_each_per_period_with_alerts_and_notify(tight: Db, ledger: Ledger) -> None:
    listener = psycopg.connect(tight.url, autocommit=True)
    listener.execute("listen zapbase_alerts")

    def fired(result: dict[str, Any]) -> list[int]:
        return [a["threshold"] for a in result["alerts"]]

    def notified() -> list[int]:
        return [json.loads(n.payload)["threshold"] for n in listener.notifies(timeout=0.5)]

    assert fired(ledger.spend(8500, MID_NOV)) == [80]  # 85 %
    assert notified() == [80]
    assert fired(ledger.spend(200, MID_NOV)) == []  # 87 %: nothing new
    assert notified() == []
    assert fired(ledger.spend(500, MID_NOV)) == [90]  # 92 %
    # the estimate fits (92.5 %), the answer is longer: 101 %
    assert fired(ledger.spend(900, MID_NOV, estimate=50)) == [100]
    assert notified() == [90, 100]

    window = plan_window(tight)
    assert window["used_brl"] == Decimal("1.01")
    assert window["notified_thresholds"] == [80, 90, 100]
    assert window["paused_reason"] == "limit"
    refused = ledger.reserve(estimated_output_tokens=1, as_of=MID_NOV)
    assert (refused["status"], refused["reason"]) == ("refused", "paused")

    alerts = tight.sql(
        "select * from public.alerts where tenant_id = %s order by created_at, title", (TENANT,)
    )
    assert [(a["type"], a["priority"], a["payload"]["threshold"]) for a in alerts] == [
        ("budget.threshold", "medium", 80),
        ("budget.threshold", "high", 90),
        ("budget.threshold", "critical", 100),
    ]
    assert alerts[0]["title"] == "Orçamento de IA em 80%"
    assert alerts[0]["message"] == (
        "Orçamento do plano: R$ 0,85 de R$ 1,00 usados no período de 01/11/2026 a 30/11/2026."
    )
    assert "pausadas" in alerts[2]["message"]
    mails = tight.sql("select alert_id, email, status from public.alert_deliveries where channel = 'email'")
    assert sorted((str(m["alert_id"]), m["email"], m["status"]) for m in mails) == sorted(
        (str(a["id"]), "alertas@lojademo.com.br", "pending") for a in alerts)
    assert alerts[0]["dedupe_key"] == f"budget:{window['id']}:2026-11-01T03:00Z:80"
    assert all(a["delivered_at"] is None for a in alerts)

    # December (local): the window rolls on first use, and 80 % fires again, once
    december = DEC_START + timedelta(hours=1)
    assert fired(ledger.spend(8100, december)) == [80]
    assert notified() == [80]
    window = plan_window(tight)
    assert (window["used_brl"], window["notified_thresholds"], window["paused_reason"]) == (
        Decimal("0.81"),
        [80],
        None,
    )
    assert tight.value("select count(*) from public.alerts where tenant_id = %s", (TENANT,)) == 4
    listener.close()


def test_soft_window_alerts_at_100_but_never_refuses_or_pauses(tight: Db, ledger: Ledger) -> None:
    tight.sql("update public.budgets set pause_at_limit = false where tenant_id = %s", (TENANT,))
    assert [a["threshold"] for a in ledger.spend(12000, MID_NOV)["alerts"]] == [80, 90, 100]
    assert ledger.reserve(estimated_output_tokens=5000, as_of=MID_NOV)["status"] == "reserved"
    assert plan_window(tight)["paused_reason"] is None


# -- periods ---------------------------------------------------------------------------


def test_period_rolls_at_sao_paulo_midnight_not_utc(tight: Db, ledger: Ledger) -> None:
    ledger.spend(6000, MID_NOV)
    # 23:59:59 of 30 November in São Paulo is already December in UTC: still November
    before = ledger.reserve(estimated_output_tokens=100, as_of=DEC_START - timedelta(seconds=1))
    assert before["status"] == "reserved"
    window = plan_window(tight)
    assert (window["period_start"], window["used_brl"]) == (NOV_START, Decimal("0.6"))

    after = ledger.reserve(estimated_output_tokens=100, as_of=DEC_START)
    assert after["status"] == "reserved"
    window = plan_window(tight)
    assert (window["period_start"], window["period_end"]) == (DEC_START, utc(2027, 1, 1, 3, 0))
    assert (window["used_brl"], window["last_reset_at"]) == (0, DEC_START)
    # the November call still in flight keeps its reservation in the new period
    assert window["reserved_brl"] == Decimal("0.02")


def test_reset_job_rolls_ended_periods_and_records_its_run(tight: Db) -> None:
    ledger = Ledger(tight)
    ledger.spend(9500, MID_NOV)
    assert plan_window(tight)["paused_reason"] is None  # 95 %
    tight.sql("update public.budgets set paused_reason = 'manual' where tenant_id = %s", (TENANT,))

    with tight.as_service() as s:
        reset = "select private.run_job('budget_period_reset', %s)"
        assert s.value(reset, (DEC_START - timedelta(seconds=1),)) == 0
        rolled = s.value(reset, (DEC_START,))
    assert rolled >= 1
    window = plan_window(tight)
    assert (window["period_start"], window["used_brl"], window["notified_thresholds"]) == (DEC_START, 0, [])
    assert window["paused_reason"] == "manual"  # only the limit pause ends with the period
    runs = tight.sql(
        "select * from public.job_runs where job_name = 'budget_period_reset' order by started_at"
    )
    assert [(r["status"], r["rows_affected"]) for r in runs] == [("succeeded", 0), ("succeeded", rolled)]


# -- modes and refusals ----------------------------------------------------------------


def test_tokens_mode_limits_tokens_only(db: Db, ledger: Ledger) -> None:
    set_round_prices(db)
    pin_november(db)
    add_window(db, name="Tokens", mode="tokens", token_limit=1000, brl_limit=Decimal("0.0001"))
    assert ledger.reserve(estimated_output_tokens=900, as_of=MID_NOV)["status"] == "reserved"
    refused = ledger.reserve(estimated_output_tokens=200, as_of=MID_NOV)
    assert (refused["status"], refused["reason"]) == ("refused", "limit")
    assert ledger.reserve(estimated_output_tokens=100, as_of=MID_NOV)["status"] == "reserved"


def test_brl_mode_limits_money_only(db: Db, ledger: Ledger) -> None:
    set_round_prices(db)
    pin_november(db)
    add_window(db, name="Reais", mode="brl", token_limit=1, brl_limit=Decimal("0.5"))
    assert ledger.reserve(estimated_output_tokens=5000, as_of=MID_NOV)["status"] == "reserved"
    assert ledger.reserve(estimated_output_tokens=1, as_of=MID_NOV)["reason"] == "limit"


@pytest.mark.parametrize(
    ("input_tokens", "output_tokens", "expected"),
    [
        (0, 2000, "reserved"),
        (0, 4000, "limit"),  # R$ 0.40: money passes, tokens would not
        (6000, 0, "limit"),  # free input tokens: tokens pass, money would not
    ],
)
def test_both_mode_refuses_when_either_limit_would_pass(
    db: Db, ledger: Ledger, input_tokens: int, output_tokens: int, expected: str
) -> None:
    set_round_prices(db)  # input tokens of gpt-4o-mini cost 0 for this tenant
    pin_november(db)
    add_window(db, name="Ambos", mode="both", token_limit=5000, brl_limit=Decimal("0.3"))
    result = ledger.reserve(
        estimated_input_tokens=input_tokens, estimated_output_tokens=output_tokens, as_of=MID_NOV
    )
    assert result.get("reason", result["status"]) == expected


def test_every_active_window_is_enforced(tight: Db, ledger: Ledger) -> None:
    daily = add_window(tight, name="Diário", period="daily", brl_limit=Decimal("0.2"))
    tight.sql(
        "update public.budgets set period_start = %s, period_end = %s where id = %s",
        (utc(2026, 11, 15, 3), utc(2026, 11, 16, 3), daily),
    )
    refused = ledger.reserve(estimated_output_tokens=2500, as_of=MID_NOV)
    assert (refused["reason"], refused["budget_id"]) == ("limit", str(daily))
    ledger.spend(1500, MID_NOV)
    assert ledger.reserve(estimated_output_tokens=1000, as_of=MID_NOV)["reason"] == "limit"
    # the next local day the daily window has room again; the monthly one still counts
    tomorrow = utc(2026, 11, 16, 12)
    assert ledger.reserve(estimated_output_tokens=1500, as_of=tomorrow)["status"] == "reserved"
    window = plan_window(tight)
    assert (window["used_brl"], window["reserved_brl"]) == (Decimal("0.15"), Decimal("0.15"))


def test_an_ended_trial_on_a_free_plan_gets_no_ai_on_the_platforms_keys(db: Db, ledger: Ledger) -> None:
    tenant, owner = new_tenant(db, plan="free")
    ended = db.value("select trial_ends_at from public.tenants where id = %s", (tenant,))
    assert ledger.reserve(tenant_id=tenant, as_of=ended - timedelta(minutes=1))["status"] == "reserved"
    refused = ledger.reserve(tenant_id=tenant, as_of=ended)
    assert refused["reason"] == "trial_ended"
    assert "subscribe to a paid plan, or connect your own openai key" in refused["message"]

    # its own OpenAI key: chat on OpenAI goes on; what runs on the platform's keys does not
    with db.as_user(owner) as s:
        key = s.value("insert into public.integrations (tenant_id, type, provider, name, status)"
                      " values (%s, 'llm', 'openai', 'OpenAI da loja', 'active') returning id", (tenant,))
        s.all("select public.set_integration_secret(%s, 'sk-da-loja')", (key,))
    assert ledger.reserve(tenant_id=tenant, as_of=ended)["status"] == "reserved"
    for model in ("anthropic/claude-haiku-4-5", "openai/tts-1", "openai/whisper-1"):
        assert ledger.reserve(tenant_id=tenant, model=model, as_of=ended)["reason"] == "trial_ended", model

    # billing moves it to a paid plan
    with db.as_service() as s:
        s.all("update public.tenants set plan_id = (select id from public.plans where code = 'starter')"
              " where id = %s", (tenant,))
    paid = ledger.reserve(tenant_id=tenant, model="anthropic/claude-haiku-4-5", as_of=ended)
    assert paid["status"] == "reserved"


def test_refusal_reasons(db: Db, ledger: Ledger) -> None:
    unknown = ledger.reserve(model="openai/gpt-9", as_of=MID_NOV)
    assert (unknown["status"], unknown["reason"]) == ("refused", "unknown_model")

    db.sql("update public.ai_models set is_active = false where gateway_id = 'openai/gpt-4.1-mini'")
    assert ledger.reserve(model="openai/gpt-4.1-mini", as_of=MID_NOV)["reason"] == "unknown_model"

    db.sql("insert into public.plans (code, name, budget_mode) values ('sem_ia', 'Sem IA', 'brl')")
    no_ai, _ = new_tenant(db, plan="sem_ia")
    assert ledger.reserve(tenant_id=no_ai, as_of=MID_NOV)["reason"] == "no_budget"

    db.sql("update public.budgets set is_active = false where tenant_id = %s", (TENANT,))
    assert ledger.reserve(as_of=MID_NOV)["reason"] == "no_budget"
    db.sql(
        "update public.budgets set is_active = true, paused_reason = 'manual' where tenant_id = %s", (TENANT,)
    )
    paused = ledger.reserve(as_of=MID_NOV)
    assert (paused["reason"], paused["message"]) == (
        "paused",
        'budget "Orçamento do plano" was paused by an admin',
    )

    db.sql("update public.tenants set status = 'suspended' where id = %s", (TENANT,))
    assert ledger.reserve(as_of=MID_NOV)["reason"] == "tenant_inactive"


# -- reservations ----------------------------------------------------------------------


def test_abandoned_reservations_expire_and_stop_holding_budget(tight: Db, ledger: Ledger) -> None:
    first = ledger.reserve(estimated_output_tokens=6000, hold_seconds=60, as_of=MID_NOV)
    assert (
        ledger.reserve(estimated_output_tokens=6000, as_of=MID_NOV + timedelta(seconds=59))["reason"]
        == "limit"
    )
    # a minute later the first no longer counts: the same reservation now fits
    second = ledger.reserve(
        estimated_output_tokens=6000, hold_seconds=60, as_of=MID_NOV + timedelta(seconds=61)
    )
    assert second["status"] == "reserved"
    assert (
        tight.value("select status from public.budget_reservations where id = %s", (first["reservation_id"],))
        == "expired"
    )
    assert plan_window(tight)["reserved_brl"] == Decimal("0.6")

    # the job releases what nobody touched
    with tight.as_service() as s:
        expire = "select private.run_job('ai_reservations_expire', %s)"
        assert s.value(expire, (MID_NOV + timedelta(minutes=5),)) == 1
    assert plan_window(tight)["reserved_brl"] == 0
    assert (
        tight.value("select rows_affected from public.job_runs where job_name = 'ai_reservations_expire'")
        == 1
    )

    # a late answer is still charged, and releases nothing twice
    late = ledger.settle(first["reservation_id"], output_tokens=3000, as_of=MID_NOV + timedelta(minutes=6))
    assert late["status"] == "settled"
    window = plan_window(tight)
    assert (window["used_brl"], window["reserved_brl"], window["reserved_tokens"]) == (Decimal("0.3"), 0, 0)


def test_settle_is_idempotent(tight: Db, ledger: Ledger) -> None:
    reserved = ledger.reserve(estimated_output_tokens=1000, as_of=MID_NOV)
    first = ledger.settle(reserved["reservation_id"], output_tokens=1200, as_of=MID_NOV)
    again = ledger.settle(reserved["reservation_id"], output_tokens=99999, as_of=MID_NOV)
    assert first["status"] == "settled"
    assert again["status"] == "already_settled"
    assert (again["usage_id"], again["cost_brl"]) == (first["usage_id"], first["cost_brl"])
    assert (
        tight.value(
            "select count(*) from public.ai_usage where reservation_id = %s", (reserved["reservation_id"],)
        )
        == 1
    )
    window = plan_window(tight)
    assert (window["used_brl"], window["used_tokens"], window["reserved_brl"]) == (Decimal("0.12"), 1200, 0)


def test_cancelled_call_releases_without_usage(tight: Db, ledger: Ledger) -> None:
    reserved = ledger.reserve(estimated_output_tokens=1000, as_of=MID_NOV)
    assert (
        ledger.settle(reserved["reservation_id"], outcome="cancelled", as_of=MID_NOV)["status"] == "released"
    )
    assert plan_window(tight)["reserved_brl"] == 0
    assert tight.value("select count(*) from public.ai_usage") == 0
    assert ledger.settle(reserved["reservation_id"], as_of=MID_NOV)["status"] == "already_settled"


def test_fallback_attempts_are_logged_and_charged(tight: Db, ledger: Ledger) -> None:
    reserved = ledger.reserve(
        model="anthropic/claude-haiku-4-5",
        estimated_output_tokens=500,
        as_of=MID_NOV,
        conversation_id=tight.create_conversation()[0],
        request_id="req-1",
        phone="+55 11 98888-7777",
    )
    result = ledger.settle(
        reserved["reservation_id"],
        model="openai/gpt-4o-mini",
        output_tokens=400,
        latency_ms=800,
        failed_attempts=[
            {"model": "anthropic/claude-haiku-4-5", "error_code": "overloaded_error", "latency_ms": 20000},
            {
                "model": "anthropic/claude-haiku-4-5",
                "error_code": "timeout",
                "latency_ms": 20000,
                "input_tokens": 10,
            },
        ],
        as_of=MID_NOV,
    )
    rows = tight.sql(
        "select * from public.ai_usage where reservation_id = %s order by attempt",
        (reserved["reservation_id"],),
    )
    assert [(r["attempt"], r["outcome"], r["model"], r["error_code"]) for r in rows] == [
        (1, "failure", "anthropic/claude-haiku-4-5", "overloaded_error"),
        (2, "failure", "anthropic/claude-haiku-4-5", "timeout"),
        (3, "success", "openai/gpt-4o-mini", None),
    ]
    assert rows[2]["fallback_from"] == "anthropic/claude-haiku-4-5"
    assert {r["request_id"] for r in rows} == {"req-1"}
    assert rows[0]["phone_hash"] == tight.value("select private.phone_hash('5511988887777')")
    # billed: 10 input tokens of Haiku (USD 1/M × 5) + 400 output tokens at R$ 0.0001
    assert Decimal(str(result["cost_brl"])) == Decimal("0.04005")
    assert plan_window(tight)["used_brl"] == Decimal("0.04005")


def test_usage_without_reservation(tight: Db, ledger: Ledger) -> None:
    # a TTS cache hit: free, logged as cached with the cost it avoided
    hit = ledger.record(
        feature="tts", model="openai/tts-1", outcome="cache_hit", characters=1000, as_of=MID_NOV
    )
    assert (hit["cost_usd"], hit["saved_usd"]) == (0, 0.015)
    assert plan_window(tight)["used_brl"] == 0
    # embeddings made at ingestion are charged without a limit check (they already happened)
    ledger.record(feature="knowledge.ingest", model="openai/gpt-4o-mini", output_tokens=12000, as_of=MID_NOV)
    window = plan_window(tight)
    assert (window["used_brl"], window["paused_reason"]) == (Decimal("1.2"), "limit")
