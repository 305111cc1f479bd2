"""Fixtures of the worker-side knowledge tests: the anyio backend, a worker connection
(authenticator working as service_role) and an OpenAI-compatible embeddings stand-in."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from support import Db
from zapbase.ai.standins import OpenAIStandIn
from zapbase.rag.embedders import OpenAIEmbedder
from zapbase.worker.database import Connect, borrow
from zapbase.worker.database import connect as connect_db


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def connect(db: Db, anyio_backend: str) -> AsyncIterator[Connect]:
    async with await connect_db(db.url) as conn:
        yield borrow(conn)


@pytest.fixture
def openai_standin() -> OpenAIStandIn:
    return OpenAIStandIn(api_key="sk-test")


@pytest.fixture
async def openai_embedder(openai_standin: OpenAIStandIn, anyio_backend: str) -> AsyncIterator[OpenAIEmbedder]:
    transport = httpx.ASGITransport(app=openai_standin.app)
    async with httpx.AsyncClient(transport=transport) as http:
        yield OpenAIEmbedder(api_key="sk-test", http=http, base_url="http://openai.test")
