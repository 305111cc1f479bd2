"""A tenant's own LLM providers: an `llm` integration naming any OpenAI-compatible API by its
base URL (https, no private address), the tenant's own models in the registry with its
prices, used by its policies, budgets and usage log only; platform models stay read-only
and another tenant sees and uses none of it."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from ai_support import AGENT, MID_NOV, OWNER, TENANT, Ledger, new_tenant, pin_november

from support import Db

INTEGRATION = ("insert into public.integrations (tenant_id, type, provider, name, status, config)"
               " values (%s, 'llm', %s, %s, 'active', %s) returning id")  # fmt: skip
MODEL = ("insert into public.ai_models (tenant_id, provider, model, gateway_id, context_window,"
         " input_usd_per_mtok, output_usd_per_mtok, capabilities) values (%s, %s, %s, %s, 32768, 0.20, 0.60,"
         " '{\"structured_output\": \"json_object\"}') returning id")
GATEWAY_ID = "meu-vllm/qwen2.5-7b"
VLLM_URL = '{"base_url": "https://llm.minhaloja.com.br/v1"}'
REFUSED = "row-level security|no llm integration of provider"


def connect_vllm(db: Db, tenant: str = TENANT, owner: Any = OWNER) -> str:
    """The tenant's own server as the admin screen connects it: integration, key, one model."""
    with db.as_user(owner) as s:
        integration = s.value(INTEGRATION, (tenant, "meu-vllm", "Servidor próprio", VLLM_URL))
        s.all("select public.set_integration_secret(%s, 'chave-do-vllm')", (integration,))
        return str(s.value(MODEL, (tenant, "meu-vllm", "qwen2.5-7b", "meu-vllm/qwen2.5-7b")))


@pytest.mark.parametrize(
    ("provider", "config", "message"),
    [
        ("groq", "{}", "needs config.base_url"),
        ("groq", '{"base_url": "http://api.groq.com/openai/v1"}', "must be https:// on a public host"),
        ("vllm", '{"base_url": "https://localhost:8000/v1"}', "must be https:// on a public host"),
        ("vllm", '{"base_url": "https://10.0.0.7/v1"}', "must be https:// on a public host"),
        ("vllm", '{"base_url": "https://169.254.169.254/latest"}', "must be https:// on a public host"),
        ("vllm", '{"base_url": "https://[::1]/v1"}', "without credentials, query or fragment"),
        ("vllm", '{"base_url": "https://eu:senha@llm.example.com/v1"}', "without credentials"),
        ("anthropic", '{"base_url": "https://proxy.example.com"}', "takes no base_url"),
    ],
)
def test_an_llm_integration_names_a_public_https_api(
    db: Db, provider: str, config: str, message: str
) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=message), db.as_user(OWNER) as s:
        s.all(INTEGRATION, (TENANT, provider, "Minha IA", config))


def test_groq_gemini_and_openrouter_are_connected_by_their_base_url(db: Db) -> None:
    with db.as_user(OWNER) as s:
        for provider, url in (("groq", "https://api.groq.com/openai/v1"),
                              ("gemini", "https://generativelanguage.googleapis.com/v1beta/openai"),
                              ("openrouter", "https://openrouter.ai/api/v1")):  # fmt: skip
            config = json.dumps({"base_url": url})
            integration = s.value(INTEGRATION, (TENANT, provider, provider.title(), config))
            s.all("select public.set_integration_secret(%s, %s)", (integration, f"chave-{provider}"))
    with db.as_service() as s:
        credentials = s.value("select public.ai_tenant_credentials(%s)", (TENANT,))
    assert credentials["gemini"] == {
        "secret": "chave-gemini", "base_url": "https://generativelanguage.googleapis.com/v1beta/openai"
    }  # fmt: skip
    assert set(credentials) == {"groq", "gemini", "openrouter"}
    # local development may point at a server on the machine
    with db.as_user(OWNER) as s:
        s.all("select set_config('zapbase.webhooks_allow_http', 'on', true)")
        s.all(INTEGRATION, (TENANT, "ollama", "Ollama local", '{"base_url": "http://localhost:11434/v1"}'))


def test_a_tenant_model_is_its_own_and_platform_models_stay_read_only(db: Db) -> None:
    model = connect_vllm(db)
    _, other_owner = new_tenant(db)

    with db.as_user(AGENT) as s:  # members read it, like the platform catalogue
        assert s.value("select gateway_id from public.ai_models where id = %s", (model,)) == GATEWAY_ID
    with db.as_user(other_owner) as s:
        assert s.all("select 1 from public.ai_models where tenant_id is not null") == []
        assert s.rowcount("update public.ai_models set output_usd_per_mtok = 0 where id = %s", (model,)) == 0
        assert s.rowcount("delete from public.ai_models where id = %s", (model,)) == 0
    for intruder in (other_owner, AGENT):  # neither sees the integration, nor may write the row
        with pytest.raises(psycopg.errors.DatabaseError, match=REFUSED), db.as_user(intruder) as s:
            s.all(MODEL, (TENANT, "meu-vllm", "outro", "meu-vllm/outro"))
    with db.as_user(OWNER) as s:  # the platform's rows: readable, never writable
        assert s.rowcount("update public.ai_models set output_usd_per_mtok = 0"
                          " where gateway_id = 'openai/gpt-4o-mini'") == 0  # fmt: skip
        assert s.rowcount("delete from public.ai_models where tenant_id is null") == 0
        assert s.rowcount("update public.ai_models set output_usd_per_mtok = 0.5 where id = %s",
                          (model,)) == 1  # fmt: skip
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="row-level security"), \
            db.as_user(OWNER) as s:  # fmt: skip
        s.all(MODEL, (None, "meu-vllm", "global", "meu-vllm/global"))
    assert db.value("select output_usd_per_mtok from public.ai_models where gateway_id = 'openai/gpt-4o-mini'"
                    " and tenant_id is null") == Decimal("0.600000")  # fmt: skip


@pytest.mark.parametrize(
    ("provider", "gateway_id", "message"),
    [
        ("openai", "openai/gpt-4o-mini-barato", "is in the platform catalogue"),  # the platform's key
        ("groq", "groq/llama-barato", "is in the platform catalogue"),
        ("outro", "outro/modelo", "no llm integration of provider"),
        ("meu-vllm", "openai/qwen", "starts with its provider"),
    ],
)
def test_a_tenant_model_cannot_borrow_a_platform_provider(
    db: Db, provider: str, gateway_id: str, message: str
) -> None:
    connect_vllm(db)
    with pytest.raises(psycopg.errors.DatabaseError, match=message), db.as_user(OWNER) as s:
        s.all(MODEL, (TENANT, provider, gateway_id.split("/", 1)[1], gateway_id))


def test_tenant_models_are_priced_budgeted_and_logged_for_their_tenant_only(
    db: Db, ledger: Ledger
) -> None:
    connect_vllm(db)
    other, other_owner = new_tenant(db)
    with db.as_user(OWNER) as s:
        s.all("insert into public.gateway_policies (tenant_id, name, chain, is_default)"
              " values (%s, 'Servidor próprio', '{meu-vllm/qwen2.5-7b, openai/gpt-4o-mini}', true)",
              (TENANT,))  # fmt: skip
    with pytest.raises(psycopg.errors.ForeignKeyViolation, match="unknown models in the chain: meu-vllm"), \
            db.as_user(other_owner) as s:  # fmt: skip
        s.all("insert into public.gateway_policies (tenant_id, name, chain)"
              " values (%s, 'Roubada', '{meu-vllm/qwen2.5-7b}')", (other,))

    with db.as_service() as s:
        policy = s.value("select public.ai_policy(%s)", (TENANT,))
    assert [(link["gateway_id"], link["structured_output"]) for link in policy["links"]] == [
        ("meu-vllm/qwen2.5-7b", "json_object"), ("openai/gpt-4o-mini", "json_schema")
    ]  # fmt: skip

    pin_november(db)
    spent = ledger.spend(1_000_000, MID_NOV, model="meu-vllm/qwen2.5-7b", estimate=100)
    assert Decimal(str(spent["cost_usd"])) == Decimal("0.60")  # the tenant's own output price
    row = db.sql("select m.gateway_id, m.tenant_id::text, u.outcome from public.ai_usage u"
                 " join public.ai_models m on m.id = u.model_id where u.tenant_id = %s",
                 (TENANT,))  # fmt: skip
    assert row == [{"gateway_id": "meu-vllm/qwen2.5-7b", "tenant_id": TENANT, "outcome": "success"}]

    refused = ledger.reserve(tenant_id=other, model="meu-vllm/qwen2.5-7b")
    assert (refused["status"], refused["reason"]) == ("refused", "unknown_model")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=r'unknown model "meu-vllm/qwen2\.5-7b"'):
        ledger.record(tenant_id=other, model="meu-vllm/qwen2.5-7b", input_tokens=10)


def test_a_deleted_tenant_model_drops_out_of_its_policy_chain(db: Db) -> None:
    connect_vllm(db)
    with db.as_user(OWNER) as s:
        s.all("insert into public.gateway_policies (tenant_id, name, chain, is_default)"
              " values (%s, 'Servidor próprio', '{meu-vllm/qwen2.5-7b, openai/gpt-4o-mini}', true)",
              (TENANT,))  # fmt: skip
        assert s.rowcount("delete from public.ai_models where gateway_id = %s", (GATEWAY_ID,)) == 1
    with db.as_service() as s:
        policy = s.value("select public.ai_policy(%s)", (TENANT,))
    assert [link["gateway_id"] for link in policy["links"]] == ["openai/gpt-4o-mini"]
