"""Exact response cache: put/get with hit counters and cost saved, TTL, tenant isolation,
and the two-round-trip pair ai_begin / ai_finish that the worker uses per reply."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from ai_support import MID_NOV, TENANT, TENANT_B, Ledger, pin_november, plan_window

from support import Db

FIXTURE_B = Path(__file__).parent.parent / "fixtures" / "other_tenant.sql"


def key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_put_then_get_counts_hits_and_savings_until_the_ttl(db: Db, ledger: Ledger) -> None:
    stored = ledger.call(
        "ai_cache_put",
        tenant_id=TENANT,
        cache_key=key("oi"),
        model="anthropic/claude-sonnet-4",
        response={"content": [{"type": "text", "text": "Olá!"}]},
        input_tokens=1000,
        output_tokens=100,
        ttl_seconds=600,
        as_of=MID_NOV,
    )
    assert stored["expires_at"].startswith("2026-11-15T12:10:00")

    for expected_hits in (1, 2):
        hit = ledger.call(
            "ai_cache_get", tenant_id=TENANT, cache_key=key("oi"), as_of=MID_NOV + timedelta(minutes=9)
        )
        assert (hit["status"], hit["hits"], hit["model"]) == (
            "hit",
            expected_hits,
            "anthropic/claude-sonnet-4",
        )
        assert hit["response"]["content"][0]["text"] == "Olá!"
    entry = db.sql("select * from public.response_cache where cache_key = %s", (key("oi"),))[0]
    # the original call: 1000 × 3 + 100 × 15 = USD 0.0045, R$ 0.02475; saved twice
    assert (entry["cost_usd"], entry["saved_usd"], entry["saved_brl"]) == (
        Decimal("0.0045"),
        Decimal("0.009"),
        Decimal("0.0495"),
    )
    assert entry["last_hit_at"] == MID_NOV + timedelta(minutes=9)

    assert (
        ledger.call(
            "ai_cache_get", tenant_id=TENANT, cache_key=key("oi"), as_of=MID_NOV + timedelta(minutes=10)
        )
        is None
    )
    assert ledger.call("ai_cache_get", tenant_id=TENANT, cache_key=key("outro"), as_of=MID_NOV) is None

    with db.as_service() as s:
        assert s.value("select private.job_ai_cache_purge(%s)", (MID_NOV + timedelta(minutes=10),)) == 1
    assert db.value("select count(*) from public.response_cache") == 0


def test_cache_is_per_tenant(db: Db, ledger: Ledger) -> None:
    db.sql(FIXTURE_B.read_text())  # tenant B caches repeat('cd', 32)
    assert ledger.call("ai_cache_get", tenant_id=TENANT, cache_key="cd" * 32) is None
    assert ledger.call("ai_cache_get", tenant_id=TENANT_B, cache_key="cd" * 32)["status"] == "hit"


def test_a_reply_is_two_round_trips_and_the_second_identical_one_is_a_cache_hit(
    db: Db, ledger: Ledger
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)  # real time: the view counts the last 30 days
    request = key("claude-haiku|sistema|oi, qual o prazo de entrega?|t=0.3")
    first = ledger.call(
        "ai_begin",
        tenant_id=TENANT,
        feature="reply",
        cache_key=request,
        estimated_input_tokens=1200,
        estimated_output_tokens=300,
        request_id="wamid.1",
        as_of=now,
    )
    assert first["status"] == "reserved"
    assert first["model"] == "anthropic/claude-haiku-4-5"  # head of the platform default chain
    assert first["policy"]["chain"] == [
        "anthropic/claude-haiku-4-5",
        "openai/gpt-4o-mini",
        "local/local-chat",
    ]
    assert first["policy"]["cache_ttl_seconds"] == 3600
    finished = ledger.call(
        "ai_finish",
        reservation_id=first["reservation_id"],
        input_tokens=1100,
        output_tokens=250,
        cache_read_tokens=4000,
        latency_ms=850,
        response_text="Entregamos em até 5 dias úteis.",
        as_of=now,
    )
    assert finished["status"] == "settled"
    assert datetime.fromisoformat(finished["cache"]["expires_at"]) == now + timedelta(hours=1)

    second = ledger.call(
        "ai_begin",
        tenant_id=TENANT,
        feature="reply",
        cache_key=request,
        estimated_input_tokens=1200,
        estimated_output_tokens=300,
        request_id="wamid.2",
        as_of=now + timedelta(minutes=5),
    )
    assert second["status"] == "hit"
    assert second["response_text"] == "Entregamos em até 5 dias úteis."
    # 1100 × 1 + 250 × 5 + 4000 × 0.10 = USD 0.00275 avoided
    assert Decimal(str(second["saved_usd"])) == Decimal("0.00275")

    rows = db.sql(
        "select request_id, outcome, cached, cost_usd, saved_usd from public.ai_usage order by created_at"
    )
    assert [(r["request_id"], r["outcome"], r["cached"], r["cost_usd"], r["saved_usd"]) for r in rows] == [
        ("wamid.1", "success", False, Decimal("0.00275"), 0),
        ("wamid.2", "cache_hit", True, 0, Decimal("0.00275")),
    ]
    window = plan_window(db)
    assert (window["used_usd"], window["reserved_brl"]) == (Decimal("0.00275"), 0)

    perf = db.sql("select * from public.ai_cache_performance where tenant_id = %s", (TENANT,))[0]
    assert (perf["entries"], perf["hits_30d"], perf["misses_30d"], perf["hit_rate_30d"]) == (
        1,
        1,
        1,
        Decimal("0.5"),
    )


def test_no_cache_when_the_policy_ttl_is_zero_or_the_call_failed(db: Db, ledger: Ledger) -> None:
    pin_november(db)
    policy = db.value(
        "insert into public.gateway_policies (tenant_id, name, chain, cache_ttl_seconds)"
        " values (%s, 'Sem cache', '{openai/gpt-4o-mini}', 0) returning id",
        (TENANT,),
    )
    begun = ledger.call(
        "ai_begin",
        tenant_id=TENANT,
        feature="reply",
        cache_key=key("a"),
        policy_id=policy,
        estimated_output_tokens=100,
        as_of=MID_NOV,
    )
    assert (begun["model"], begun["policy"]["name"]) == ("openai/gpt-4o-mini", "Sem cache")
    done = ledger.call(
        "ai_finish",
        reservation_id=begun["reservation_id"],
        output_tokens=80,
        response_text="ok",
        as_of=MID_NOV,
    )
    assert done["cache"] is None

    begun = ledger.call(
        "ai_begin",
        tenant_id=TENANT,
        feature="reply",
        cache_key=key("b"),
        estimated_output_tokens=100,
        as_of=MID_NOV,
    )
    failed = ledger.call(
        "ai_finish",
        reservation_id=begun["reservation_id"],
        outcome="failure",
        error_code="overloaded_error",
        response_text="parcial",
        as_of=MID_NOV,
    )
    assert (failed["status"], failed["cache"]) == ("settled", None)
    assert db.value("select count(*) from public.response_cache") == 0


def test_tenant_default_policy_beats_the_platform_default(db: Db, ledger: Ledger) -> None:
    db.sql(
        "insert into public.gateway_policies (tenant_id, name, chain, is_default)"
        " values (%s, 'Groq primeiro', '{groq/llama-3.3-70b-versatile, local/local-chat}', true)",
        (TENANT,),
    )
    begun = ledger.call("ai_begin", tenant_id=TENANT, feature="reply", estimated_output_tokens=10)
    assert (begun["model"], begun["policy"]["name"]) == ("groq/llama-3.3-70b-versatile", "Groq primeiro")
    # an inactive head of the chain is skipped
    db.sql("update public.ai_models set is_active = false where gateway_id = 'groq/llama-3.3-70b-versatile'")
    assert ledger.call("ai_begin", tenant_id=TENANT, feature="reply")["model"] == "local/local-chat"
