from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import httpx2
import pytest

from zapbase.ai import AnthropicProvider, Gateway, GatewayPolicy, OpenAICompatProvider, Provider
from zapbase.standins.ai import AnthropicStandIn, OpenAIStandIn

from .memory_ledger import MemoryLedger
from .support import LONG, MINI, SONNET, FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def anthropic_fake() -> AnthropicStandIn:
    return AnthropicStandIn(api_key="sk-ant-test", reply_text="Resposta do Claude.")


@pytest.fixture
def openai_fake() -> OpenAIStandIn:
    return OpenAIStandIn(api_key="sk-test", reply_text="Resposta do GPT.")


@pytest.fixture
async def anthropic_provider(anthropic_fake: AnthropicStandIn) -> AsyncIterator[AnthropicProvider]:
    # The anthropic SDK 2.x runs on httpx2, hence an httpx2 ASGI transport.
    transport = httpx2.ASGITransport(app=anthropic_fake.app)
    async with httpx2.AsyncClient(transport=transport) as http:
        provider = AnthropicProvider(
            api_key="sk-ant-test", base_url="http://anthropic.test", client=http
        )
        yield provider
        await provider.aclose()


@pytest.fixture
async def openai_provider(openai_fake: OpenAIStandIn) -> AsyncIterator[OpenAICompatProvider]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=openai_fake.app)) as http:
        yield OpenAICompatProvider(api_key="sk-test", base_url="http://openai.test", client=http)


@pytest.fixture
def ledger() -> MemoryLedger:
    return MemoryLedger()


@pytest.fixture
def gateway(
    anthropic_provider: AnthropicProvider,
    openai_provider: OpenAICompatProvider,
    ledger: MemoryLedger,
    clock: FakeClock,
) -> Gateway:
    providers: dict[str, Provider] = {"anthropic": anthropic_provider, "openai": openai_provider}
    return Gateway(providers, ledger, clock=clock)


@pytest.fixture
def policy() -> GatewayPolicy:
    return GatewayPolicy(links=(SONNET, MINI, LONG), timeout_seconds=5, cooldown_seconds=30)
