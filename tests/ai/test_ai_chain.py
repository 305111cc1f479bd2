"""The fallback chain against the Anthropic and OpenAI stand-ins and an in-memory ledger."""

from __future__ import annotations

import pytest

from zapbase.ai import (
    LOCAL_LINK,
    BadRequest,
    ChatRequest,
    ChatResult,
    Decision,
    Failure,
    Gateway,
    GatewayPolicy,
    GatewayResponse,
    Overloaded,
    Refusal,
    Success,
    build_providers,
    cache_key,
)
from zapbase.ai.providers.local import NOT_FOUND_REPLY
from zapbase.standins.ai import AnthropicStandIn, Fault, FaultKind, OpenAIStandIn

from .memory_ledger import MemoryLedger
from .support import KNOWLEDGE, LONG, MINI, SONNET, FakeClock, ask

pytestmark = pytest.mark.anyio


def statuses(response: GatewayResponse) -> list[tuple[str, str]]:
    return [(a.link.model, a.status.value) for a in response.attempts]


async def test_chat_answers_from_first_link_when_healthy(
    gateway: Gateway, policy: GatewayPolicy, ledger: MemoryLedger
) -> None:
    response = await gateway.chat(ask("Oi"), policy)

    assert response.ok and response.result is not None
    assert (response.result.provider, response.result.text) == ("anthropic", "Resposta do Claude.")
    assert statuses(response) == [(SONNET.model, "ok")]
    assert ledger.outcomes == [Success(link=SONNET, result=response.result)]
    assert ledger.calls == 2  # begin + finish: the ledger's two round trips


async def test_chat_falls_back_to_openai_when_anthropic_overloaded(
    gateway: Gateway, policy: GatewayPolicy, ledger: MemoryLedger, anthropic_fake: AnthropicStandIn
) -> None:
    anthropic_fake.push(Fault(kind=FaultKind.OVERLOADED))

    response = await gateway.chat(ask("Oi"), policy)

    assert response.result is not None and response.result.provider == "openai"
    assert response.error is None  # errors on the way to an answer live in attempts
    assert statuses(response) == [(SONNET.model, "failed"), (MINI.model, "ok")]
    assert response.attempts[1].fallback_from == SONNET
    # one reservation, estimated on the first link, settles both attempts in one call
    ((reservation, (first, second)),) = ledger.finished
    assert reservation.link == SONNET
    assert isinstance(first, Failure) and first.error_code == "overloaded"
    assert first.status_code == 529 and first.link == SONNET
    assert isinstance(second, Success) and second.link == MINI
    assert ledger.calls == 2


async def test_chat_answers_locally_when_every_remote_provider_fails(
    gateway: Gateway,
    policy: GatewayPolicy,
    ledger: MemoryLedger,
    anthropic_fake: AnthropicStandIn,
    openai_fake: OpenAIStandIn,
) -> None:
    anthropic_fake.push(Fault(kind=FaultKind.OVERLOADED))
    openai_fake.push(Fault(kind=FaultKind.SERVER_ERROR))

    response = await gateway.chat(ask("Qual o horário de atendimento?", knowledge=KNOWLEDGE), policy)

    assert response.result is not None and response.result.provider == "local"
    assert "das 9h às 18h" in response.result.text
    # gpt-4.1 is on the provider that just failed: skipped, not called.
    assert statuses(response) == [
        (SONNET.model, "failed"),
        (MINI.model, "failed"),
        (LONG.model, "cooling_down"),
        (LOCAL_LINK.model, "ok"),
    ]
    assert len(openai_fake.calls) == 1
    assert not ledger.open_reservations


async def test_every_attempt_is_settled_with_its_fallback_path(
    gateway: Gateway,
    policy: GatewayPolicy,
    ledger: MemoryLedger,
    anthropic_fake: AnthropicStandIn,
    openai_fake: OpenAIStandIn,
) -> None:
    anthropic_fake.push(Fault(kind=FaultKind.SERVER_ERROR))
    openai_fake.push(Fault(kind=FaultKind.RATE_LIMIT))

    await gateway.chat(ask("Oi", tenant_id="t1", conversation_id="c1"), policy)

    ((_, attempts),) = ledger.finished
    path = [(o.link.model, type(o).__name__) for o in attempts]
    assert path == [
        (SONNET.model, "Failure"),
        (MINI.model, "Failure"),
        (LOCAL_LINK.model, "Success"),
    ]
    assert [o.error_code for o in ledger.outcomes if isinstance(o, Failure)] == [
        "server_error",
        "rate_limited",
    ]
    ((request, _),) = ledger.begun
    assert (request.tenant_id, request.conversation_id) == ("t1", "c1")
    assert not ledger.open_reservations


async def test_spend_limit_stops_the_chain_with_an_alert(
    gateway: Gateway,
    policy: GatewayPolicy,
    ledger: MemoryLedger,
    anthropic_fake: AnthropicStandIn,
    openai_fake: OpenAIStandIn,
) -> None:
    anthropic_fake.push(Fault(kind=FaultKind.SPEND_LIMIT))

    response = await gateway.chat(ask("Oi", tenant_id="t1", conversation_id="c1"), policy)

    assert not response.ok
    assert response.error is not None and response.error.decision is Decision.STOP_AND_ALERT
    (alert,) = response.alerts
    assert (alert.kind, alert.provider, alert.tenant_id) == ("spend_limit_exceeded", "anthropic", "t1")
    assert openai_fake.calls_to("/v1/chat/completions") == []
    assert len(anthropic_fake.calls) == 1  # not retried
    assert [type(o).__name__ for o in ledger.outcomes] == ["Failure"]
    assert not ledger.open_reservations


async def test_rate_limit_cools_the_provider_down(
    gateway: Gateway,
    policy: GatewayPolicy,
    ledger: MemoryLedger,
    anthropic_fake: AnthropicStandIn,
    clock: FakeClock,
) -> None:
    anthropic_fake.push(Fault(kind=FaultKind.RATE_LIMIT, retry_after=45))

    first = await gateway.chat(ask("Oi"), policy)
    second = await gateway.chat(ask("Tudo bem?"), policy)

    assert first.result is not None and first.result.provider == "openai"
    assert statuses(second) == [(SONNET.model, "cooling_down"), (MINI.model, "ok")]
    # the budget is reserved on the link that is really called first
    assert [r.link for _, r in ledger.begun] == [SONNET, MINI]
    assert len(anthropic_fake.calls) == 1
    clock.now += 40  # cooldown is max(policy 30 s, retry-after 45 s)
    assert gateway.cooling_down("anthropic")
    clock.now += 10
    third = await gateway.chat(ask("E agora?"), policy)
    assert third.result is not None and third.result.provider == "anthropic"


async def test_cooldown_is_per_gateway_instance(
    gateway: Gateway, policy: GatewayPolicy, anthropic_fake: AnthropicStandIn
) -> None:
    anthropic_fake.push(Fault(kind=FaultKind.RATE_LIMIT))
    await gateway.chat(ask("Oi"), policy)

    other = Gateway({}, MemoryLedger())

    assert gateway.cooling_down("anthropic")
    assert not other.cooling_down("anthropic")


async def test_context_too_long_jumps_to_a_larger_window(
    gateway: Gateway, policy: GatewayPolicy, anthropic_fake: AnthropicStandIn, openai_fake: OpenAIStandIn
) -> None:
    anthropic_fake.push(Fault(kind=FaultKind.CONTEXT_TOO_LONG))

    response = await gateway.chat(ask("Resuma a conversa"), policy)

    assert response.result is not None and response.result.model == LONG.model
    assert statuses(response) == [
        (SONNET.model, "failed"),
        (MINI.model, "window_too_small"),
        (LONG.model, "ok"),
    ]
    assert [c.body["model"] for c in openai_fake.calls] == [LONG.model]
    assert not gateway.cooling_down("anthropic")  # the provider itself is fine


async def test_auth_failure_alerts_and_continues(
    gateway: Gateway, policy: GatewayPolicy, anthropic_fake: AnthropicStandIn
) -> None:
    anthropic_fake.push(Fault(kind=FaultKind.AUTH))

    response = await gateway.chat(ask("Oi"), policy)

    assert response.result is not None and response.result.provider == "openai"
    assert [(a.kind, a.provider) for a in response.alerts] == [("auth_failed", "anthropic")]


async def test_timeout_moves_to_the_next_provider(
    gateway: Gateway, ledger: MemoryLedger, anthropic_fake: AnthropicStandIn
) -> None:
    anthropic_fake.push(Fault(kind=FaultKind.TIMEOUT))
    policy = GatewayPolicy(links=(SONNET, MINI), timeout_seconds=0.2)

    response = await gateway.chat(ask("Oi"), policy)

    assert response.result is not None and response.result.provider == "openai"
    failure = ledger.outcomes[0]
    assert isinstance(failure, Failure) and failure.error_code == "timeout"
    assert failure.latency_ms >= 200


async def test_bad_request_is_fatal(ledger: MemoryLedger, policy: GatewayPolicy) -> None:
    class Rejecting:
        name = "anthropic"

        async def chat(self, request: ChatRequest, model: str) -> ChatResult:
            raise BadRequest("messages: roles must alternate", provider="anthropic", status_code=400)

        async def aclose(self) -> None:
            return None

    response = await Gateway({"anthropic": Rejecting()}, ledger).chat(ask("Oi"), policy)

    assert not response.ok and isinstance(response.error, BadRequest)
    assert response.alerts == ()
    assert [type(o).__name__ for o in ledger.outcomes] == ["Failure"]


async def test_unexpected_error_releases_the_reservation(ledger: MemoryLedger, policy: GatewayPolicy) -> None:
    class Broken:
        name = "anthropic"

        async def chat(self, request: ChatRequest, model: str) -> ChatResult:
            raise RuntimeError("bug")

        async def aclose(self) -> None:
            return None

    with pytest.raises(RuntimeError):
        await Gateway({"anthropic": Broken()}, ledger).chat(ask("Oi"), policy)

    (outcome,) = ledger.outcomes
    assert isinstance(outcome, Failure) and outcome.error_code == "unexpected"
    assert not ledger.open_reservations


async def test_refusal_stops_the_reply_before_any_call(
    gateway: Gateway,
    policy: GatewayPolicy,
    ledger: MemoryLedger,
    anthropic_fake: AnthropicStandIn,
    openai_fake: OpenAIStandIn,
) -> None:
    ledger.refusal = Refusal(reason="limit", message='budget "Plano" has not enough left')

    response = await gateway.chat(ask("Oi"), policy)

    assert not response.ok and response.refusal == ledger.refusal
    assert statuses(response) == [(SONNET.model, "refused")]
    assert (len(anthropic_fake.calls), len(openai_fake.calls)) == (0, 0)
    assert ledger.finished == [] and ledger.calls == 1


async def test_a_reply_that_calls_nothing_releases_its_reservation(ledger: MemoryLedger) -> None:
    class Failing:
        name = "local"

        async def chat(self, request: ChatRequest, model: str) -> ChatResult:
            raise Overloaded("busy", provider="local", status_code=529)

        async def aclose(self) -> None:
            return None

    gateway = Gateway({"local": Failing()}, ledger)
    policy = GatewayPolicy(links=(LOCAL_LINK,), cooldown_seconds=30)

    first = await gateway.chat(ask("Oi"), policy)
    second = await gateway.chat(ask("Oi"), policy)

    assert not first.ok and statuses(second) == [(LOCAL_LINK.model, "cooling_down")]
    assert [len(attempts) for _, attempts in ledger.finished] == [1, 0]
    assert not ledger.open_reservations


async def test_requested_model_starts_the_chain_at_its_link(
    gateway: Gateway, policy: GatewayPolicy, anthropic_fake: AnthropicStandIn
) -> None:
    response = await gateway.chat(ask("Oi", model=MINI.model), policy)

    assert statuses(response) == [(MINI.model, "ok")]
    assert anthropic_fake.calls_to("/v1/messages") == []


async def test_without_keys_only_the_local_provider_answers(policy: GatewayPolicy) -> None:
    providers = build_providers()
    gateway = Gateway(providers, MemoryLedger())

    response = await gateway.chat(ask("Vocês vendem bicicletas?", knowledge=KNOWLEDGE), policy)

    assert set(providers) == {"local"}
    assert response.result is not None and response.result.text == NOT_FOUND_REPLY
    assert [a.status.value for a in response.attempts] == ["unavailable", "unavailable", "unavailable", "ok"]


async def test_cache_hit_returns_without_calling_providers(
    gateway: Gateway, ledger: MemoryLedger, anthropic_fake: AnthropicStandIn
) -> None:
    policy = GatewayPolicy(links=(SONNET, MINI), cache_ttl_seconds=3600)

    miss = await gateway.chat(ask("Qual o prazo de entrega?", tenant_id="t1"), policy)
    hit = await gateway.chat(ask("Qual o prazo de entrega?", tenant_id="t2"), policy)

    assert not miss.cached and hit.cached and miss.result is not None
    assert hit.result == miss.result
    assert len(anthropic_fake.calls) == 1
    assert [(ttl, r.provider) for r, ttl in ledger.cache.values()] == [(3600, "anthropic")]
    # the hit is one ledger call (logged there), with no reservation to settle
    assert [r.tenant_id for r in ledger.hits] == ["t2"]
    assert len(ledger.finished) == 1 and ledger.calls == 3
    assert statuses(hit) == [(SONNET.model, "cached")]


async def test_local_fallback_answers_are_not_cached(
    ledger: MemoryLedger, anthropic_fake: AnthropicStandIn
) -> None:
    gateway = Gateway({}, ledger)
    policy = GatewayPolicy(links=(SONNET,), cache_ttl_seconds=3600)

    await gateway.chat(ask("Oi"), policy)

    assert ledger.cache_reads == 1 and ledger.cache == {}


async def test_cache_is_not_consulted_when_ttl_is_zero(
    gateway: Gateway, policy: GatewayPolicy, ledger: MemoryLedger
) -> None:
    await gateway.chat(ask("Oi"), policy)

    assert ledger.cache_reads == 0 and ledger.cache == {}


def test_cache_key_covers_the_prompt_but_not_tenant_metadata() -> None:
    base = cache_key(ask("Oi", tenant_id="a", conversation_id="x", feature="reply"), "m")

    assert base == cache_key(ask("Oi", tenant_id="b", conversation_id="y", feature="summary"), "m")
    assert base != cache_key(ask("Olá", tenant_id="a"), "m")
    assert base != cache_key(ask("Oi", tenant_id="a"), "other-model")
    assert base != cache_key(ask("Oi", tenant_id="a", max_tokens=10), "m")
    assert base != cache_key(ask("Oi", tenant_id="a", knowledge=KNOWLEDGE), "m")
    assert len(base) == 64
