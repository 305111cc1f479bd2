"""JSON answers through the gateway: any OpenAI-compatible provider at its base URL (a
Groq-like stand-in), each link asked for JSON the way its model takes it, every answer
validated, an invalid one asked again once and then a clear status; the address guard on
tenant base URLs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import httpx2
import pytest

from zapbase.ai import (
    AnthropicProvider,
    Gateway,
    GatewayPolicy,
    JsonStatus,
    Link,
    OpenAICompatProvider,
    Refusal,
    RefusedEndpoint,
    tenant_providers,
)
from zapbase.standins.ai import AnthropicStandIn, Fault, FaultKind, OpenAIStandIn, Reply

from .memory_ledger import MemoryLedger
from .support import SONNET, ask

pytestmark = pytest.mark.anyio

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "summary": {"type": "string", "minLength": 1},
        "sentiment": {"enum": ["positive", "neutral", "negative"]},
    },
    "required": ["summary", "sentiment"],
    "additionalProperties": False,
}
VALID = json.dumps({"summary": "Cliente quer trocar o plano.", "sentiment": "positive"})
GROQ_PATH = "/openai/v1/chat/completions"
LLAMA = Link(provider="groq", model="llama-3.3-70b-versatile", context_window=131_072,
             structured_output="json_object")  # fmt: skip
GPT = Link(provider="groq", model="openai/gpt-oss-120b", context_window=131_072,
           structured_output="json_schema")  # fmt: skip


@pytest.fixture
def groq() -> OpenAIStandIn:
    return OpenAIStandIn(api_key="gsk-da-loja", base_path="/openai/v1")


@pytest.fixture
async def gateway(groq: OpenAIStandIn, ledger: MemoryLedger) -> AsyncIterator[Gateway]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=groq.app)) as http:
        # the tenant's integration as public.ai_tenant_credentials returns it (local mode: http)
        credentials = {"groq": {"secret": "gsk-da-loja", "base_url": "http://groq.test/openai/v1"}}
        yield Gateway(tenant_providers(credentials, local_mode=True, client=http), ledger)


def policy(*links: Link, cache_ttl_seconds: int = 0) -> GatewayPolicy:
    return GatewayPolicy(links=links, timeout_seconds=5, cache_ttl_seconds=cache_ttl_seconds)


async def test_a_valid_answer_is_parsed_after_one_call_with_the_schema(
    gateway: Gateway, groq: OpenAIStandIn
) -> None:
    groq.push(Reply(text=VALID))

    result = await gateway.complete_json(ask("Resuma."), policy(GPT), schema=SCHEMA, name="insight")

    assert result.status is JsonStatus.OK and result.ok
    assert result.value == {"summary": "Cliente quer trocar o plano.", "sentiment": "positive"}
    [call] = groq.calls_to(GROQ_PATH)
    assert call.headers["authorization"] == "Bearer gsk-da-loja"
    assert call.body["response_format"] == {
        "type": "json_schema", "json_schema": {"name": "insight", "schema": SCHEMA}
    }  # fmt: skip
    assert result.result is not None and result.result.provider == "groq"


async def test_json_mode_sends_the_schema_in_the_prompt(gateway: Gateway, groq: OpenAIStandIn) -> None:
    groq.push(Reply(text=f"```json\n{VALID}\n```"))  # a fenced answer is still the JSON

    result = await gateway.complete_json(ask("Resuma."), policy(LLAMA), schema=SCHEMA)

    assert result.ok
    [call] = groq.calls_to(GROQ_PATH)
    assert call.body["response_format"] == {"type": "json_object"}
    system = call.body["messages"][0]
    assert system["role"] == "system" and json.dumps(SCHEMA, separators=(",", ":")) in system["content"]


async def test_an_invalid_answer_is_asked_again_once_with_what_was_wrong(
    gateway: Gateway, groq: OpenAIStandIn, ledger: MemoryLedger
) -> None:
    wrong = json.dumps({"summary": "ok", "sentiment": "great"})
    groq.push(Reply(text=wrong), Reply(text=VALID))

    result = await gateway.complete_json(ask("Resuma."), policy(GPT), schema=SCHEMA)

    assert result.ok and result.value["sentiment"] == "positive"
    first, second = groq.calls_to(GROQ_PATH)
    assert second.body["messages"][:-2] == first.body["messages"]
    assert second.body["messages"][-2] == {"role": "assistant", "content": wrong}
    assert "$.sentiment: 'great' is not one of" in second.body["messages"][-1]["content"]
    assert len(ledger.finished) == 2  # each call reserved and settled on its own


async def test_two_invalid_answers_end_as_invalid_output_never_a_default(
    gateway: Gateway, groq: OpenAIStandIn
) -> None:
    groq.push(Reply(text="Claro! O cliente está feliz."), Reply(text='{"summary": ""}'), Reply(text=VALID))

    result = await gateway.complete_json(ask("Resuma."), policy(GPT), schema=SCHEMA)

    assert result.status is JsonStatus.INVALID_OUTPUT and not result.ok
    assert result.value is None and result.text == '{"summary": ""}'
    assert result.errors == ("$: 'sentiment' is a required property", "$.summary: '' should be non-empty")
    assert "not valid against the schema" in result.message
    assert len(groq.calls_to(GROQ_PATH)) == 2  # the third reply was never asked for
    assert len(result.responses) == 2


async def test_text_that_is_not_json_is_reported_as_such(gateway: Gateway, groq: OpenAIStandIn) -> None:
    groq.push(Reply(text="Resumo: tudo certo."), Reply(text="Resumo: tudo certo."))

    result = await gateway.complete_json(ask("Resuma."), policy(GPT), schema=SCHEMA)

    assert result.status is JsonStatus.INVALID_OUTPUT
    assert result.errors[0].startswith("not JSON: Expecting value")


async def test_the_local_answerer_never_answers_a_json_request(
    gateway: Gateway, groq: OpenAIStandIn, ledger: MemoryLedger
) -> None:
    groq.push(Fault(kind=FaultKind.SERVER_ERROR))

    result = await gateway.complete_json(ask("Resuma."), policy(GPT), schema=SCHEMA)

    assert result.status is JsonStatus.FAILED
    assert result.error is not None and result.error.code == "server_error"
    assert [a.link.provider for a in result.responses[0].attempts] == ["groq"]
    # a policy with the local model only: nothing can answer, nothing is reserved
    local_only = await gateway.complete_json(ask("Resuma."), policy(Link(provider="local", model="local-chat",
                                                                         context_window=8192)), schema=SCHEMA)
    assert local_only.status is JsonStatus.FAILED and len(ledger.begun) == 1


async def test_a_budget_refusal_is_a_status(
    gateway: Gateway, groq: OpenAIStandIn, ledger: MemoryLedger
) -> None:
    ledger.refusal = Refusal(reason="limit", message='budget "Mensal" has no room left')

    result = await gateway.complete_json(ask("Resuma."), policy(GPT), schema=SCHEMA)

    assert result.status is JsonStatus.REFUSED and result.refusal == ledger.refusal
    assert "refused (limit)" in result.message
    assert groq.calls_to(GROQ_PATH) == []


async def test_json_requests_skip_the_response_cache(
    gateway: Gateway, groq: OpenAIStandIn, ledger: MemoryLedger
) -> None:
    groq.push(Reply(text=VALID), Reply(text=VALID))
    for _ in range(2):
        assert (await gateway.complete_json(ask("Resuma."), policy(GPT, cache_ttl_seconds=3600),
                                            schema=SCHEMA)).ok  # fmt: skip
    assert ledger.cache_reads == 0 and ledger.cache == {}
    assert len(groq.calls_to(GROQ_PATH)) == 2


async def test_a_schema_that_is_not_a_schema_is_refused_before_any_call(
    gateway: Gateway, groq: OpenAIStandIn
) -> None:
    with pytest.raises(ValueError, match="not a valid JSON schema"):
        await gateway.complete_json(ask("Resuma."), policy(GPT), schema={"type": "objeto"})
    assert groq.calls_to(GROQ_PATH) == []


async def test_anthropic_gets_the_schema_in_its_system_prompt(ledger: MemoryLedger) -> None:
    claude = AnthropicStandIn(api_key="sk-ant", reply_text=VALID)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=claude.app)) as http:
        provider = AnthropicProvider(api_key="sk-ant", base_url="http://anthropic.test", client=http)
        gateway = Gateway({"anthropic": provider}, ledger)
        result = await gateway.complete_json(ask("Resuma."), policy(SONNET), schema=SCHEMA)
    assert result.ok
    [call] = claude.calls_to("/v1/messages")
    assert any(json.dumps(SCHEMA, separators=(",", ":")) in block["text"] for block in call.body["system"])


@pytest.mark.parametrize(
    "base_url",
    [
        "http://api.groq.com/openai/v1",  # plain http
        "https://127.0.0.1/v1",
        "https://localhost:8000/v1",
        "https://10.0.0.7/v1",
        "https://169.254.169.254/latest",  # cloud metadata
        "https://[::1]/v1",
    ],
)
async def test_a_tenant_base_url_into_a_private_network_is_never_called(
    base_url: str, groq: OpenAIStandIn, ledger: MemoryLedger
) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=groq.app)) as http:
        [provider] = tenant_providers({"groq": {"secret": "gsk", "base_url": base_url}}, client=http).values()
        gateway = Gateway({"groq": provider}, ledger)
        result = await gateway.complete_json(ask("Resuma."), policy(GPT), schema=SCHEMA)

    assert result.status is JsonStatus.FAILED
    assert isinstance(result.error, RefusedEndpoint)
    [alert] = result.responses[0].alerts  # an admin must fix the integration
    assert alert.kind == "refused_endpoint"
    assert not groq.calls


async def test_a_public_tenant_base_url_is_called_at_its_checked_address() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"model": "m", "choices": [{"message": {"content": "{}"}}]})

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        provider = OpenAICompatProvider(api_key="k", base_url="https://8.8.8.8:8443/openai/v1", api_path="",
                                        tenant_url=True, name="groq", client=http)  # fmt: skip
        result = await provider.chat(ask("Oi"), "m")
    assert result.text == "{}"
    [request] = seen
    assert str(request.url) == "https://8.8.8.8:8443/openai/v1/chat/completions"
    assert request.headers["host"] == "8.8.8.8:8443"
    assert request.extensions["sni_hostname"] == "8.8.8.8"
