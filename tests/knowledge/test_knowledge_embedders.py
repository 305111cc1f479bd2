"""Embedders: the hashing fallback, the OpenAI-compatible client, the local MiniLM model."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from zapbase.ai.errors import (
    AuthFailed,
    ConnectionFailed,
    ProviderTimeout,
    RateLimited,
    ServerError,
    SpendLimitExceeded,
)
from zapbase.knowledge import (
    EMBEDDING_DIMS,
    EmbedderUnavailable,
    HashingEmbedder,
    MiniLMEmbedder,
    OpenAIEmbedder,
    select_embedder,
)

API_KEY = "sk-test-embeddings"


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


# --- hashing --------------------------------------------------------------------------


@pytest.mark.anyio
async def test_hashing_embedder_returns_unit_vectors_of_384_dims() -> None:
    result = await HashingEmbedder().embed(["Qual é o prazo de entrega?", "PIX tem desconto?"])

    assert result.provider == "local" and result.model == "hashing-v1"
    assert len(result.vectors) == 2
    for vector in result.vectors:
        assert len(vector) == EMBEDDING_DIMS
        assert math.isclose(math.sqrt(sum(x * x for x in vector)), 1.0)
    assert result.tokens == 9


def test_hashing_embedder_ranks_similar_portuguese_sentences_closer() -> None:
    embedder = HashingEmbedder()
    query = embedder.vector("Qual o prazo de entrega para São Paulo?")
    related = embedder.vector("Prazos de entrega: capital de São Paulo em 1 a 2 dias úteis.")
    unrelated = embedder.vector("Aceitamos pagamento por PIX, cartão de crédito e boleto.")

    assert _cosine(query, related) > 0.3
    assert _cosine(query, related) > _cosine(query, unrelated) + 0.2


def test_hashing_embedder_ignores_accents_and_case() -> None:
    embedder = HashingEmbedder()

    assert embedder.vector("Não recebi meu pedido, qual é o código de rastreio?") == embedder.vector(
        "nao recebi MEU pedido qual e o codigo de RASTREIO"
    )


def test_hashing_embedder_is_deterministic_and_maps_no_words_to_zero() -> None:
    assert HashingEmbedder().vector("Trocas em até 30 dias") == HashingEmbedder().vector(
        "Trocas em até 30 dias"
    )
    assert HashingEmbedder().vector("?!") == [0.0] * EMBEDDING_DIMS


# --- OpenAI-compatible ----------------------------------------------------------------


def _embeddings_app(seen: list[dict[str, Any]], *, dims: int = EMBEDDING_DIMS) -> FastAPI:
    """Speaks OpenAI's /v1/embeddings; answers items in reverse order, as servers may."""
    app = FastAPI()

    @app.post("/v1/embeddings")
    async def embeddings(request: Request) -> JSONResponse:
        body = await request.json()
        seen.append({"authorization": request.headers.get("authorization"), **body})
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return JSONResponse(
                {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}, 401
            )
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(text))] + [0.0] * (dims - 1)}
            for i, text in enumerate(body["input"])
        ]
        usage = {"prompt_tokens": 3 * len(body["input"]), "total_tokens": 3 * len(body["input"])}
        return JSONResponse({"object": "list", "model": body["model"], "data": data[::-1], "usage": usage})

    return app


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app))


@pytest.mark.anyio
async def test_openai_embedder_posts_dimensions_in_batches_and_keeps_order() -> None:
    seen: list[dict[str, Any]] = []
    async with _client(_embeddings_app(seen)) as http:
        embedder = OpenAIEmbedder(api_key=API_KEY, client=http, base_url="http://stand.in/", batch_size=2)
        texts = ["a", "bb", "ccc", "dddd", "eeeee"]

        result = await embedder.embed(texts)

    assert [v[0] for v in result.vectors] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert all(len(v) == EMBEDDING_DIMS for v in result.vectors)
    assert result.tokens == 15
    assert (result.provider, result.model, embedder.name) == (
        "openai",
        "text-embedding-3-small",
        "openai:text-embedding-3-small",
    )
    assert [r["input"] for r in seen] == [["a", "bb"], ["ccc", "dddd"], ["eeeee"]]
    assert all(r["dimensions"] == 384 and r["model"] == "text-embedding-3-small" for r in seen)
    assert all(r["encoding_format"] == "float" and r["authorization"] == f"Bearer {API_KEY}" for r in seen)


@pytest.mark.anyio
async def test_openai_embedder_rejects_vectors_of_the_wrong_width() -> None:
    async with _client(_embeddings_app([], dims=1536)) as http:
        embedder = OpenAIEmbedder(api_key=API_KEY, client=http, base_url="http://stand.in")
        with pytest.raises(ServerError, match="384 dimensions"):
            await embedder.embed(["prazo"])


@pytest.mark.anyio
async def test_openai_embedder_maps_wrong_key_to_auth_failed() -> None:
    async with _client(_embeddings_app([])) as http:
        embedder = OpenAIEmbedder(api_key="sk-wrong", client=http, base_url="http://stand.in")
        with pytest.raises(AuthFailed):
            await embedder.embed(["prazo"])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (429, {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}},
         RateLimited),
        (429, {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}},
         SpendLimitExceeded),
        (500, {"error": {"message": "The server had an error", "type": "server_error"}}, ServerError),
        (200, {"unexpected": True}, ServerError),
    ],
)  # fmt: skip
async def test_openai_embedder_maps_error_responses(
    status: int, body: dict[str, Any], error: type[Exception]
) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, json=body))
    async with httpx.AsyncClient(transport=transport) as http:
        embedder = OpenAIEmbedder(api_key=API_KEY, client=http, base_url="http://stand.in")
        with pytest.raises(error):
            await embedder.embed(["prazo"])


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("exc", "error"),
    [(httpx.ConnectError("refused"), ConnectionFailed), (httpx.ReadTimeout("slow"), ProviderTimeout)],
)
async def test_openai_embedder_maps_transport_failures(exc: Exception, error: type[Exception]) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    async with httpx.AsyncClient(transport=httpx.MockTransport(fail)) as http:
        embedder = OpenAIEmbedder(api_key=API_KEY, client=http, base_url="http://stand.in")
        with pytest.raises(error):
            await embedder.embed(["prazo"])


@pytest.mark.anyio
async def test_openai_embedder_sends_nothing_for_no_texts() -> None:
    transport = httpx.MockTransport(lambda request: pytest.fail("no request expected"))
    async with httpx.AsyncClient(transport=transport) as http:
        result = await OpenAIEmbedder(api_key=API_KEY, client=http).embed([])

    assert result.vectors == [] and result.tokens == 0


# --- choice ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_select_embedder_by_name_and_default() -> None:
    async with httpx.AsyncClient() as http:
        openai = OpenAIEmbedder(api_key=API_KEY, client=http)

        assert select_embedder(openai=openai) is openai
        assert select_embedder("openai:text-embedding-3-small", openai=openai) is openai
        with pytest.raises(EmbedderUnavailable, match="API key"):
            OpenAIEmbedder(api_key="", client=http)
    assert isinstance(select_embedder("local:hashing-v1"), HashingEmbedder)
    with pytest.raises(EmbedderUnavailable, match="not available"):
        select_embedder("openai:text-embedding-3-small")


# --- local MiniLM (knowledge-local extra) ----------------------------------------------------


@pytest.mark.anyio
@pytest.mark.skipif(not MiniLMEmbedder.installed(), reason="knowledge-local extra not installed")
async def test_minilm_embedder_runs_offline_with_384_dims() -> None:
    embedder = MiniLMEmbedder.load()
    query, related, unrelated = (
        await embedder.embed(
            [
                "Qual o prazo de entrega do meu pedido?",
                "O pedido chega em 3 a 5 dias úteis após a confirmação do pagamento.",
                "Aceitamos cartão de crédito Visa e Mastercard.",
            ]
        )
    ).vectors

    assert len(query) == EMBEDDING_DIMS
    assert math.isclose(math.sqrt(sum(x * x for x in query)), 1.0, rel_tol=1e-4)
    assert _cosine(query, related) > _cosine(query, unrelated)
