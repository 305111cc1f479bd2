"""The gateway on the PostgreSQL ledger: `Gateway.chat` against the Anthropic and OpenAI
stand-ins, with budgets, the usage log and the response cache in a real database, as the
worker runs it (authenticator + service_role, autocommit, no prepared statements).
Every assertion reads rows from the database."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import httpx2
import pytest
from ai_support import TENANT, new_tenant
from psycopg import pq

from support import Db
from zapbase.ai import (
    LOCAL_LINK,
    AnthropicProvider,
    ChatMessage,
    ChatRequest,
    ChatResult,
    Gateway,
    GatewayPolicy,
    Link,
    OpenAICompatProvider,
    Overloaded,
    Refusal,
    Usage,
)
from zapbase.ai.ledger import PostgresLedger
from zapbase.db.pool import Pool, open_pool
from zapbase.standins.ai import AnthropicStandIn, Fault, FaultKind, OpenAIStandIn

pytestmark = pytest.mark.anyio

HAIKU = Link(
    provider="anthropic",
    model="claude-haiku-4-5-20251001",
    context_window=200_000,
    gateway_id="anthropic/claude-haiku-4-5",
)
MINI = Link(provider="openai", model="gpt-4o-mini", context_window=128_000)
# ttl as the platform default policy row (seed/20_ai.sql): both must allow the cache.
POLICY = GatewayPolicy(links=(HAIKU, MINI), timeout_seconds=5, cache_ttl_seconds=3600)
DEMO_BOT = "00000000-0000-4000-e000-000000000001"  # seed: the demo tenant's bot
PHONE = "+5511988887777"
FX = Decimal(5)  # USD→BRL of today in these tests
MTOK = Decimal(1_000_000)


@pytest.fixture
def priced(db: Db) -> Db:
    """Today's USD→BRL is 5, whatever the seed says, so BRL costs are round."""
    db.sql(
        "insert into public.fx_rates (rate_date, rate)"
        " values ((now() at time zone 'America/Sao_Paulo')::date, %s)"
        " on conflict (base, quote, rate_date) do update set rate = excluded.rate",
        (FX,),
    )
    return db


@pytest.fixture
async def pool(priced: Db) -> AsyncIterator[Pool]:
    # one connection: the round-trip tests trace it
    async with open_pool(priced.url, 1) as opened:
        yield opened


@pytest.fixture
def anthropic_fake() -> AnthropicStandIn:
    usage = Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=2000)
    return AnthropicStandIn(api_key="sk-ant-test", reply_text="Entregamos em até 5 dias úteis.", usage=usage)


@pytest.fixture
def openai_fake() -> OpenAIStandIn:
    usage = Usage(input_tokens=1000, output_tokens=200, cache_read_tokens=500)
    return OpenAIStandIn(api_key="sk-test", reply_text="Entrega em 3 a 7 dias úteis.", usage=usage)


@pytest.fixture
async def gateway(
    pool: Pool, anthropic_fake: AnthropicStandIn, openai_fake: OpenAIStandIn
) -> AsyncIterator[Gateway]:
    async with (
        httpx2.AsyncClient(transport=httpx2.ASGITransport(app=anthropic_fake.app)) as anthropic_http,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=openai_fake.app)) as openai_http,
    ):
        providers = {
            "anthropic": AnthropicProvider(
                api_key="sk-ant-test", base_url="http://anthropic.test", client=anthropic_http
            ),
            "openai": OpenAICompatProvider(
                api_key="sk-test", base_url="http://openai.test", client=openai_http
            ),
        }
        yield Gateway(providers, PostgresLedger(pool))


def ask(text: str, tenant: str = TENANT, **context: Any) -> ChatRequest:
    return ChatRequest(
        messages=(ChatMessage(role="user", content=text),),
        system="Você é a assistente da Loja Demo.",
        max_tokens=300,
        tenant_id=tenant,
        **context,
    )


def usage_rows(db: Db) -> list[dict[str, Any]]:
    return db.sql("select * from public.ai_usage order by created_at, attempt")


def cost_usd(gateway_id: str, usage: Usage, db: Db) -> Decimal:
    """What `usage` costs at the registry's list prices, computed here, not by the SQL."""
    model = db.sql("select * from public.ai_models where gateway_id = %s", (gateway_id,))[0]
    return (
        usage.input_tokens * model["input_usd_per_mtok"]
        + usage.output_tokens * model["output_usd_per_mtok"]
        + usage.cache_read_tokens * model["cache_read_usd_per_mtok"]
        + usage.cache_write_tokens * model["cache_write_usd_per_mtok"]
    ) / MTOK


class RoundTrips:
    """Counts the round trips really made on a connection: the ReadyForQuery messages the
    server sends back, read from libpq's protocol trace."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def count(self, work: Callable[[], Any]) -> int:
        with tempfile.TemporaryFile("w+") as trace:
            async with self.pool.connection() as conn:
                conn.pgconn.trace(trace.fileno())
                conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
            try:
                await work()
            finally:
                async with self.pool.connection() as conn:
                    conn.pgconn.untrace()  # flushes the trace
            trace.seek(0)
            return sum(1 for line in trace if line.startswith("B\t") and "\tReadyForQuery\t" in line)


async def test_fallback_logs_one_usage_row_per_attempt_with_its_cost(
    priced: Db, gateway: Gateway, anthropic_fake: AnthropicStandIn, openai_fake: OpenAIStandIn
) -> None:
    anthropic_fake.push(Fault(kind=FaultKind.OVERLOADED))
    conversation, message = priced.create_conversation()
    request = ask(
        "Qual o prazo de entrega?",
        conversation_id=conversation,
        message_id=message,
        bot_id=DEMO_BOT,
        request_id="wamid.HBgM001",
        phone=PHONE,
    )

    response = await gateway.chat(request, POLICY)

    assert response.result is not None and response.result.provider == "openai"
    rows = usage_rows(priced)
    assert [(r["attempt"], r["outcome"], r["model"], r["error_code"], r["fallback_from"]) for r in rows] == [
        (1, "failure", "anthropic/claude-haiku-4-5", "overloaded", None),
        (2, "success", "openai/gpt-4o-mini", None, "anthropic/claude-haiku-4-5"),
    ]
    failed, answer = rows
    assert failed["metadata"]["status_code"] == 529
    assert (failed["cost_usd"], failed["cost_brl"], failed["total_tokens"]) == (0, 0, 0)
    # OpenAI's prompt_tokens include the cached ones: 1000 uncached + 500 read from cache
    assert (answer["input_tokens"], answer["output_tokens"], answer["cache_read_tokens"]) == (1000, 200, 500)
    expected = cost_usd(
        "openai/gpt-4o-mini", Usage(input_tokens=1000, output_tokens=200, cache_read_tokens=500), priced
    )
    assert expected == Decimal("0.0003075")
    assert (answer["cost_usd"], answer["cost_brl"], answer["fx_rate"]) == (expected, expected * FX, FX)
    assert answer["metadata"]["provider_request_id"].startswith("req_standin")

    phone_hash = priced.value("select private.phone_hash(%s)", (PHONE,))
    context = {
        (
            str(r["tenant_id"]),
            str(r["conversation_id"]),
            str(r["message_id"]),
            str(r["bot_id"]),
            r["request_id"],
            r["phone_hash"],
            r["feature"],
            r["reservation_id"],
        )
        for r in rows
    }
    assert context == {
        (
            TENANT,
            conversation,
            request.message_id,
            DEMO_BOT,
            "wamid.HBgM001",
            phone_hash,
            "reply",
            rows[0]["reservation_id"],
        )
    }

    # one reservation, estimated on Haiku, settled; the budget holds the actual cost only
    reservation = priced.sql(
        "select r.*, m.gateway_id from public.budget_reservations r"
        " join public.ai_models m on m.id = r.model_id"
    )
    assert [(r["status"], r["gateway_id"]) for r in reservation] == [
        ("settled", "anthropic/claude-haiku-4-5")
    ]
    window = priced.sql("select * from public.budgets where tenant_id = %s and kind = 'plan'", (TENANT,))[0]
    assert (window["used_usd"], window["used_brl"], window["reserved_brl"]) == (expected, expected * FX, 0)
    assert len(openai_fake.calls) == 1


@pytest.mark.parametrize(
    ("arrange", "reason"),
    [
        ("update public.budgets set used_brl = brl_limit where tenant_id = %s", "limit"),
        ("update public.budgets set paused_reason = 'manual' where tenant_id = %s", "paused"),
        ("update public.budgets set is_active = false where tenant_id = %s", "no_budget"),
    ],
)
async def test_a_refused_reply_calls_no_provider_and_logs_nothing(
    priced: Db,
    gateway: Gateway,
    anthropic_fake: AnthropicStandIn,
    openai_fake: OpenAIStandIn,
    arrange: str,
    reason: str,
) -> None:
    priced.sql(arrange, (TENANT,))

    response = await gateway.chat(ask("Oi, tudo bem?"), POLICY)

    assert not response.ok and isinstance(response.refusal, Refusal)
    assert response.refusal.reason == reason and response.refusal.message
    assert (len(anthropic_fake.calls), len(openai_fake.calls)) == (0, 0)
    assert priced.value("select count(*) from public.ai_usage") == 0
    assert priced.value("select count(*) from public.budget_reservations") == 0
    assert priced.value("select sum(reserved_brl) from public.budgets where tenant_id = %s", (TENANT,)) == 0


async def test_a_cache_hit_is_logged_with_the_cost_it_saved_and_calls_no_provider(
    priced: Db, gateway: Gateway, anthropic_fake: AnthropicStandIn
) -> None:
    first_conversation, _ = priced.create_conversation("5511900000001")
    second_conversation, _ = priced.create_conversation("5511900000002")

    miss = await gateway.chat(ask("Qual o prazo de entrega?", conversation_id=first_conversation), POLICY)
    hit = await gateway.chat(ask("Qual o prazo de entrega?", conversation_id=second_conversation), POLICY)

    assert not miss.cached and hit.cached
    assert hit.result == miss.result and hit.result is not None
    assert len(anthropic_fake.calls) == 1
    answered, cached = usage_rows(priced)
    original = cost_usd(
        "anthropic/claude-haiku-4-5",
        Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=2000),
        priced,
    )
    assert original == Decimal("0.0017")
    assert (answered["outcome"], answered["cost_usd"], str(answered["conversation_id"])) == (
        "success",
        original,
        first_conversation,
    )
    assert (cached["outcome"], cached["cached"], cached["model"], str(cached["conversation_id"])) == (
        "cache_hit",
        True,
        "anthropic/claude-haiku-4-5",
        second_conversation,
    )
    assert (cached["cost_usd"], cached["saved_usd"], cached["saved_brl"]) == (0, original, original * FX)
    assert cached["cache_key"] == answered["cache_key"] is not None
    assert str(cached["tenant_id"]) == TENANT
    entry = priced.sql("select * from public.response_cache")[0]
    assert (entry["hits"], entry["saved_usd"], entry["response"]["text"]) == (1, original, hit.result.text)
    # the hit spent nothing: the budget holds the first call only
    assert priced.value("select used_usd from public.budgets where tenant_id = %s", (TENANT,)) == original


async def test_the_cache_is_per_tenant(
    priced: Db, gateway: Gateway, anthropic_fake: AnthropicStandIn
) -> None:
    other, _ = new_tenant(priced)

    await gateway.chat(ask("Qual o prazo de entrega?"), POLICY)
    response = await gateway.chat(ask("Qual o prazo de entrega?", tenant=other), POLICY)

    assert not response.cached and len(anthropic_fake.calls) == 2
    rows = usage_rows(priced)
    assert [(str(r["tenant_id"]), r["outcome"]) for r in rows] == [(TENANT, "success"), (other, "success")]


async def test_the_database_policy_row_decides_the_cache(
    priced: Db, gateway: Gateway, anthropic_fake: AnthropicStandIn
) -> None:
    no_cache = priced.value(
        "insert into public.gateway_policies (tenant_id, name, chain, cache_ttl_seconds)"
        " values (%s, 'Sem cache', '{anthropic/claude-haiku-4-5, openai/gpt-4o-mini}', 0) returning id::text",
        (TENANT,),
    )
    policy = GatewayPolicy(links=POLICY.links, cache_ttl_seconds=3600, id=no_cache)

    for _ in range(2):
        assert not (await gateway.chat(ask("Qual o prazo de entrega?"), policy)).cached

    assert len(anthropic_fake.calls) == 2
    assert priced.value("select count(*) from public.response_cache") == 0
    assert [r["cache_key"] for r in usage_rows(priced)] == [None, None]


async def test_a_local_answer_after_every_provider_failed_is_logged_but_not_cached(
    priced: Db, gateway: Gateway, anthropic_fake: AnthropicStandIn, openai_fake: OpenAIStandIn
) -> None:
    anthropic_fake.push(Fault(kind=FaultKind.SERVER_ERROR))
    openai_fake.push(Fault(kind=FaultKind.RATE_LIMIT))

    response = await gateway.chat(ask("Qual o prazo de entrega?"), POLICY)

    assert response.result is not None and response.result.provider == LOCAL_LINK.provider
    rows = usage_rows(priced)
    assert [(r["outcome"], r["model"], r["error_code"]) for r in rows] == [
        ("failure", "anthropic/claude-haiku-4-5", "server_error"),
        ("failure", "openai/gpt-4o-mini", "rate_limited"),
        ("success", "local/local-chat", None),
    ]
    assert rows[2]["cost_usd"] == 0 and rows[2]["fallback_from"] == "anthropic/claude-haiku-4-5"
    assert priced.value("select count(*) from public.response_cache") == 0


async def test_a_reply_costs_two_round_trips_and_a_cache_hit_one(
    priced: Db, pool: Pool, gateway: Gateway, anthropic_fake: AnthropicStandIn
) -> None:
    trips = RoundTrips(pool)

    async def reply(text: str) -> None:
        await gateway.chat(ask(text), POLICY)

    anthropic_fake.push(Fault(kind=FaultKind.OVERLOADED))
    assert await trips.count(lambda: reply("Oi")) == 2  # a fallback too
    assert await trips.count(lambda: reply("Qual o prazo de entrega?")) == 2
    assert await trips.count(lambda: reply("Qual o prazo de entrega?")) == 1
    assert [r["outcome"] for r in usage_rows(priced)] == ["failure", "success", "success", "cache_hit"]


async def test_a_stopped_chain_logs_its_failure_and_gives_the_budget_back(
    priced: Db, gateway: Gateway, anthropic_fake: AnthropicStandIn, openai_fake: OpenAIStandIn
) -> None:
    anthropic_fake.push(Fault(kind=FaultKind.SPEND_LIMIT))

    response = await gateway.chat(ask("Oi"), POLICY)

    assert not response.ok and [a.kind for a in response.alerts] == ["spend_limit_exceeded"]
    assert len(openai_fake.calls) == 0
    (row,) = usage_rows(priced)
    assert (row["outcome"], row["model"], row["error_code"], row["cost_usd"]) == (
        "failure",
        "anthropic/claude-haiku-4-5",
        "spend_limit_exceeded",
        0,
    )
    assert row["metadata"]["decision"] == "stop_and_alert"
    assert priced.value("select status from public.budget_reservations") == "settled"
    assert priced.value("select sum(reserved_brl) from public.budgets where tenant_id = %s", (TENANT,)) == 0


async def test_a_reply_that_calls_nothing_releases_its_reservation(pool: Pool, priced: Db) -> None:
    class Busy:
        name = "local"

        async def chat(self, request: ChatRequest, model: str) -> ChatResult:
            raise Overloaded("busy", provider="local", status_code=529)

        async def aclose(self) -> None:
            return None

    gateway = Gateway({"local": Busy()}, PostgresLedger(pool))
    policy = GatewayPolicy(links=(LOCAL_LINK,), cooldown_seconds=60)

    await gateway.chat(ask("Oi"), policy)  # fails: the provider cools down
    skipped = await gateway.chat(ask("Oi"), policy)

    assert [a.status.value for a in skipped.attempts] == ["cooling_down"]
    rows = priced.sql("select status from public.budget_reservations order by created_at")
    assert [r["status"] for r in rows] == ["settled", "released"]
    assert [r["model"] for r in usage_rows(priced)] == ["local/local-chat"]  # the failure only
    assert priced.value("select sum(reserved_brl) from public.budgets where tenant_id = %s", (TENANT,)) == 0
