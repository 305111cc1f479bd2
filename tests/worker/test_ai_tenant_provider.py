"""A tenant's own OpenAI-compatible provider end to end: the integration, its Vault key and
its model written as the tenant's admin, the worker's per-tenant gateway built from
`ai_tenant_credentials`, a JSON answer through `complete_json`, and the tenant's budget and
usage log in PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping
from decimal import Decimal
from typing import Any

import httpx
import pytest
from loop_support import TENANT

from support import Db
from zapbase.ai import ChatMessage, ChatRequest, Gateway, JsonStatus, PostgresLedger, Usage, tenant_providers
from zapbase.ai.types import Provider
from zapbase.bot.config import load_policy
from zapbase.bot.gateways import Gateways
from zapbase.db.pool import Pool
from zapbase.standins.ai import OpenAIStandIn, Reply

pytestmark = pytest.mark.anyio

KEY = "gsk-da-loja-no-vault"
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"sentiment": {"enum": ["positive", "neutral", "negative"]}},
    "required": ["sentiment"],
}
USED = "select used_brl from public.budgets where tenant_id = %s and kind = 'plan'"
USAGE = Usage(input_tokens=1000, output_tokens=500)


@pytest.fixture
def groq() -> OpenAIStandIn:
    return OpenAIStandIn(api_key=KEY, base_path="/openai/v1", usage=USAGE)


@pytest.fixture
def connected(db: Db) -> None:
    """The tenant's admin connects its Groq-compatible server and makes it the default policy."""
    owner = db.value("select user_id from public.members where tenant_id = %s and role = 'owner'", (TENANT,))
    with db.as_user(owner) as s:
        s.all("select set_config('zapbase.webhooks_allow_http', 'on', true)")  # the stand-in speaks http
        integration = s.value(
            "insert into public.integrations (tenant_id, type, provider, name, status, config)"
            " values (%s, 'llm', 'meu-groq', 'Groq da loja', 'active', %s) returning id",
            (TENANT, json.dumps({"base_url": "http://meu-groq.test/openai/v1"})),
        )
        s.all("select public.set_integration_secret(%s, %s)", (integration, KEY))
        s.all("insert into public.ai_models (tenant_id, provider, model, gateway_id, context_window,"
              " input_usd_per_mtok, output_usd_per_mtok, capabilities) values (%s, 'meu-groq',"
              " 'llama-3.3-70b', 'meu-groq/llama-3.3-70b', 131072, 0.20, 0.60,"
              " '{\"structured_output\": \"json_object\"}')", (TENANT,))  # fmt: skip
        s.all("insert into public.gateway_policies (tenant_id, name, chain, is_default)"
              " values (%s, 'Groq da loja', '{meu-groq/llama-3.3-70b}', true)", (TENANT,))  # fmt: skip


@pytest.fixture
async def gateways(pool: Pool, groq: OpenAIStandIn) -> AsyncIterator[Gateways]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=groq.app)) as http:
        ledger = PostgresLedger(pool)

        def providers_for(credentials: Mapping[str, Mapping[str, Any]]) -> dict[str, Provider]:
            return tenant_providers(credentials, local_mode=True, client=http)

        gateways = Gateways(platform=Gateway({}, ledger), ledger=ledger, providers_for=providers_for)
        yield gateways
        await gateways.aclose()


async def ask_sentiment(pool: Pool, gateways: Gateways) -> Any:
    tenant = uuid.UUID(TENANT)
    async with pool.connection() as conn:
        gateway = await gateways.for_tenant(conn, tenant)
        policy = await load_policy(conn, tenant, None)
    said = ChatMessage(role="user", content="Cliente: adorei o atendimento!")
    request = ChatRequest(messages=(said,), system="Classifique o sentimento.", feature="insight",
                          tenant_id=TENANT)  # fmt: skip
    return await gateway.complete_json(request, policy, schema=SCHEMA, name="sentiment")


def usage(db: Db) -> list[dict[str, Any]]:
    return db.sql("select m.gateway_id, u.feature, u.outcome, u.cost_usd from public.ai_usage u"
                  " join public.ai_models m on m.id = u.model_id"
                  " where u.tenant_id = %s order by u.created_at", (TENANT,))  # fmt: skip


@pytest.mark.usefixtures("connected")
async def test_a_json_answer_from_the_tenants_provider_is_billed_to_its_budget(
    db: Db, pool: Pool, gateways: Gateways, groq: OpenAIStandIn
) -> None:
    groq.push(Reply(text='{"sentiment": "feliz"}'), Reply(text='{"sentiment": "positive"}'))
    used_before = db.value(USED, (TENANT,))

    result = await ask_sentiment(pool, gateways)

    assert result.status is JsonStatus.OK and result.value == {"sentiment": "positive"}
    first, second = groq.calls_to("/openai/v1/chat/completions")
    assert first.headers["authorization"] == f"Bearer {KEY}"  # the key from Vault
    assert first.body["model"] == "llama-3.3-70b" and first.body["response_format"] == {"type": "json_object"}
    assert "'feliz' is not one of" in second.body["messages"][-1]["content"]
    # both calls at the tenant's prices: 1000 × 0.20 + 500 × 0.60 per million = USD 0.0005
    assert usage(db) == [
        {"gateway_id": "meu-groq/llama-3.3-70b", "feature": "insight", "outcome": "success",
         "cost_usd": Decimal("0.0005000000")},
    ] * 2  # fmt: skip
    assert db.value(USED, (TENANT,)) > used_before


@pytest.mark.usefixtures("connected")
async def test_a_paused_budget_refuses_before_the_tenants_provider_is_called(
    db: Db, pool: Pool, gateways: Gateways, groq: OpenAIStandIn
) -> None:
    db.sql("update public.budgets set paused_reason = 'manual' where tenant_id = %s", (TENANT,))

    result = await ask_sentiment(pool, gateways)

    assert result.status is JsonStatus.REFUSED and result.refusal.reason == "paused"
    assert groq.calls_to("/openai/v1/chat/completions") == []
    assert usage(db) == []


async def test_without_the_integration_the_tenant_model_is_never_called_on_other_keys(
    db: Db, pool: Pool, gateways: Gateways, groq: OpenAIStandIn, connected: None
) -> None:
    db.sql("update public.integrations set status = 'inactive' where provider = 'meu-groq'")

    result = await ask_sentiment(pool, gateways)

    assert result.status is JsonStatus.FAILED
    assert [a.status for a in result.responses[0].attempts] == ["unavailable"]
    assert groq.calls_to("/openai/v1/chat/completions") == []
