"""Fixtures of the worker-side knowledge tests: an OpenAI-compatible embeddings stand-in
(the worker connection, `connect`, comes from tests/conftest.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from zapbase.knowledge.embedders import OpenAIEmbedder
from zapbase.standins.ai import OpenAIStandIn


@pytest.fixture
def openai_standin() -> OpenAIStandIn:
    return OpenAIStandIn(api_key="sk-test")


@pytest.fixture
async def openai_embedder(openai_standin: OpenAIStandIn, anyio_backend: str) -> AsyncIterator[OpenAIEmbedder]:
    transport = httpx.ASGITransport(app=openai_standin.app)
    async with httpx.AsyncClient(transport=transport) as http:
        yield OpenAIEmbedder(api_key="sk-test", client=http, base_url="http://openai.test")
