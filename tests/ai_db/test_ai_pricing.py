"""Cost math in SQL: registry list prices × tenant overrides × the day's USD→BRL rate,
exact numerics, Anthropic token semantics (input excludes cache reads and writes)."""

from __future__ import annotations

from decimal import Decimal

from ai_support import MID_NOV, TENANT, Ledger, utc

from support import Db


def usage_row(db: Db, usage_id: str) -> dict[str, Decimal]:
    return db.sql("select * from public.ai_usage where id = %s", (usage_id,))[0]


def test_cost_with_cached_tokens_markup_and_fx_is_exact(db: Db, ledger: Ledger) -> None:
    db.sql("insert into public.fx_rates (rate_date, rate) values ('2026-03-06', 5.1234), ('2026-03-11', 6)")
    db.sql("insert into public.pricing_overrides (tenant_id, markup_pct) values (%s, 20)", (TENANT,))
    when = utc(2026, 3, 10, 15, 0)  # uses Friday 6 March's rate, not the later one
    reserved = ledger.reserve(
        model="anthropic/claude-sonnet-4",
        estimated_input_tokens=1000,
        estimated_output_tokens=500,
        as_of=when,
    )
    settled = ledger.settle(
        reserved["reservation_id"],
        input_tokens=1000,
        output_tokens=500,
        cache_read_tokens=20000,
        cache_write_tokens=3000,
        latency_ms=1234,
        as_of=when,
    )

    row = usage_row(db, settled["usage_id"])
    # list: 1000×3 + 500×15 + 20000×0.30 + 3000×3.75 = 27,750 per million = USD 0.02775
    # +20 %: USD 0.0333; × 5.1234 = R$ 0.17060922
    assert row["cost_usd"] == Decimal("0.0333")
    assert row["cost_brl"] == Decimal("0.17060922")
    assert round(row["cost_brl"], 2) == Decimal("0.17")
    assert row["fx_rate"] == Decimal("5.1234")
    assert row["total_tokens"] == 24500
    assert (row["provider"], row["model"], row["api_type"]) == (
        "anthropic",
        "anthropic/claude-sonnet-4",
        "chat",
    )
    assert row["latency_ms"] == 1234
    # the estimate was priced the same way (no cache tokens in an estimate)
    assert Decimal(str(reserved["estimated_cost_usd"])) == Decimal("0.0126")  # (3000 + 7500) × 1.2 / 1e6


def test_fixed_price_beats_markup_for_that_unit_only(db: Db, ledger: Ledger) -> None:
    db.sql("insert into public.pricing_overrides (tenant_id, markup_pct) values (%s, 20)", (TENANT,))
    db.sql(
        "insert into public.pricing_overrides (tenant_id, model_id, markup_pct, input_usd_per_mtok)"
        " select %s, id, 50, 0.20 from public.ai_models where gateway_id = 'openai/gpt-4o-mini'",
        (TENANT,),
    )
    result = ledger.record(model="openai/gpt-4o-mini", input_tokens=10000, output_tokens=1000, as_of=MID_NOV)
    # the model row wins over the tenant-wide one: input fixed 0.20, output 0.60 × 1.5
    assert usage_row(db, result["usage_id"])["cost_usd"] == Decimal("0.0029")  # 0.002 + 0.0009
    other = ledger.record(model="openai/gpt-4.1-mini", input_tokens=10000, as_of=MID_NOV)
    assert usage_row(db, other["usage_id"])["cost_usd"] == Decimal("0.0048")  # 0.40 × 1.2 × 0.01


def test_tts_by_characters_and_transcription_by_minutes(db: Db, ledger: Ledger) -> None:
    tts = ledger.record(feature="tts", model="openai/tts-1", characters=1234, as_of=MID_NOV)
    hd = ledger.record(feature="tts", model="openai/tts-1-hd", characters=1000, as_of=MID_NOV)
    whisper = ledger.record(
        feature="transcription", model="openai/whisper-1", audio_seconds=Decimal("95"), as_of=MID_NOV
    )
    assert usage_row(db, tts["usage_id"])["cost_usd"] == Decimal("0.01851")  # 1234 × 15 / 1e6
    assert usage_row(db, hd["usage_id"])["cost_usd"] == Decimal("0.03")
    row = usage_row(db, whisper["usage_id"])
    assert row["cost_usd"] == Decimal("0.0095")  # 95 s = 1.5833 min × 0.006
    assert row["api_type"] == "transcription"
    assert row["cost_brl"] == Decimal("0.05225")  # seed rate 5.50


def test_latest_rate_on_or_before_the_sao_paulo_day(db: Db, ledger: Ledger) -> None:
    db.sql("insert into public.fx_rates (rate_date, rate) values ('2026-06-01', 5), ('2026-06-02', 6)")
    # 02:00 UTC on 2 June is still 1 June in São Paulo
    early = ledger.record(model="openai/whisper-1", audio_seconds=60, as_of=utc(2026, 6, 2, 2, 0))
    late = ledger.record(model="openai/whisper-1", audio_seconds=60, as_of=utc(2026, 6, 2, 3, 0))
    assert usage_row(db, early["usage_id"])["cost_brl"] == Decimal("0.03")
    assert usage_row(db, late["usage_id"])["cost_brl"] == Decimal("0.036")


def test_local_model_is_free_but_counts_tokens(db: Db, ledger: Ledger) -> None:
    result = ledger.record(model="local/local-chat", input_tokens=700, output_tokens=300, as_of=MID_NOV)
    row = usage_row(db, result["usage_id"])
    assert (row["cost_usd"], row["total_tokens"]) == (0, 1000)
