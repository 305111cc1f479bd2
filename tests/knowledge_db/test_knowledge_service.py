"""The worker's ingestion service (zapbase.knowledge.store) against the database: files land as
chunks, the same file twice is a no-op, embedding cost is settled in ai_usage, unchanged
chunks keep their vectors, a new embedder re-embeds, failures leave no chunks."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from uuid import UUID

import pytest

from support import Db
from zapbase.db.pool import Connect
from zapbase.knowledge.embedders import HashingEmbedder, OpenAIEmbedder
from zapbase.knowledge.store import KnowledgeService
from zapbase.standins.ai import Fault, FaultKind, OpenAIStandIn

from .knowledge_support import OWNER_A, TENANT_A

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parents[1] / "knowledge" / "fixtures"
FILES = [FIXTURES / "loja.md", FIXTURES / "loja.html", FIXTURES / "loja.txt"]
TENANT = UUID(TENANT_A)
EMBEDDING_USD_PER_TOKEN = Decimal("0.02") / 1_000_000  # seed: openai/text-embedding-3-small


def sources(db: Db) -> list[dict[str, object]]:
    return db.sql(
        "select s.id, s.title, s.status, s.chunk_count, s.embedding_model, s.origin, s.mime_type,"
        " (select count(*) from public.document_chunks c where c.source_id = s.id) as stored"
        " from public.knowledge_sources s order by s.created_at, s.id"
    )


async def test_markdown_html_and_text_land_as_chunks_and_again_as_no_ops(db: Db, connect: Connect) -> None:
    service = KnowledgeService(connect=connect, embedder=HashingEmbedder())
    first = [await service.add_file(TENANT, path) for path in FILES]
    assert [r.action for r in first] == ["created", "created", "created"]
    rows = sources(db)
    assert [r["mime_type"] for r in rows] == ["text/markdown", "text/html", "text/plain"]
    assert [r["title"] for r in rows] == ["Loja Demo", "Ajuda — Loja Demo", "Trocas e devoluções"]
    assert all(r["status"] == "ready" and r["chunk_count"] == r["stored"] for r in rows)
    assert [r["stored"] for r in rows] == [r.chunks for r in first] and all(r.chunks > 0 for r in first)
    assert {r["origin"] for r in rows} == {str(p.resolve()) for p in FILES}
    chunks = db.sql("select heading_path, embedding_model, embedding is not null as embedded,"
                    " content from public.document_chunks")
    assert all(c["embedded"] and c["embedding_model"] == "local:hashing-v1" for c in chunks)
    assert ["Loja Demo", "Entrega", "Prazos"] in [c["heading_path"] for c in chunks]
    assert any("Sudeste | 2 a 4 dias" in c["content"] for c in chunks)  # the Markdown table

    chunk_ids = {r["id"] for r in db.sql("select id from public.document_chunks")}
    again = [await service.add_file(TENANT, path) for path in FILES]
    assert [r.action for r in again] == ["unchanged"] * 3
    assert [r.source_id for r in again] == [r.source_id for r in first]
    assert [r.chunks for r in again] == [r.chunks for r in first] and all(r.embedded == 0 for r in again)
    assert {r["id"] for r in db.sql("select id from public.document_chunks")} == chunk_ids
    assert db.value("select count(*) from public.knowledge_sources") == 3


async def test_embedding_cost_is_settled_in_the_usage_log(
    db: Db, connect: Connect, openai_embedder: OpenAIEmbedder, openai_standin: OpenAIStandIn
) -> None:
    service = KnowledgeService(connect=connect, embedder=openai_embedder)
    result = await service.add_file(TENANT, FILES[0])
    texts = openai_standin.calls_to("/v1/embeddings")[0].body["input"]
    tokens = sum(max(1, len(t) // 4) for t in texts)  # what the stand-in bills
    assert result.action == "created" and result.embedded == result.chunks == len(texts)
    assert result.tokens == tokens and result.cost_usd == tokens * EMBEDDING_USD_PER_TOKEN
    usage = db.sql("select api_type, feature, model, outcome, input_tokens, cost_usd, cost_brl, metadata"
                   " from public.ai_usage where tenant_id = %s", (TENANT_A,))
    assert len(usage) == 1
    row = usage[0]
    assert (row["api_type"], row["feature"], row["model"], row["outcome"]) == (
        "embedding", "knowledge.ingest", "openai/text-embedding-3-small", "success")
    assert row["input_tokens"] == tokens and row["cost_usd"] == tokens * EMBEDDING_USD_PER_TOKEN
    assert row["cost_brl"] > 0 and row["metadata"]["source_id"] == str(result.source_id)
    assert db.value("select used_usd from public.budgets where tenant_id = %s and kind = 'plan'",
                    (TENANT_A,)) == row["cost_usd"]

    await service.add_file(TENANT, FILES[0])  # unchanged: no call, no cost
    assert len(openai_standin.calls_to("/v1/embeddings")) == 1
    assert db.value("select count(*) from public.ai_usage") == 1


async def test_an_edited_file_reembeds_only_its_changed_chunks(
    db: Db, connect: Connect, openai_embedder: OpenAIEmbedder, openai_standin: OpenAIStandIn, tmp_path: Path
) -> None:
    service = KnowledgeService(connect=connect, embedder=openai_embedder)
    path = tmp_path / "politicas.md"
    policy = ("# Políticas\n\n## Trocas\n\nTrocas em até {} dias.\n\n"
              "## Frete\n\nFrete grátis acima de R$ 299.\n")
    frete_vector = "select embedding::text from public.document_chunks where content like 'Frete%%'"
    path.write_text(policy.format(30))
    first = await service.add_file(TENANT, path)
    vector = db.value(frete_vector)
    path.write_text(policy.format(60))
    second = await service.add_file(TENANT, path)
    assert (first.action, second.action) == ("created", "replaced")
    assert second.source_id == first.source_id and (second.chunks, second.embedded) == (2, 1)
    sent = openai_standin.calls_to("/v1/embeddings")[1].body["input"]
    assert sent == ["Políticas > Trocas\n\nTrocas em até 60 dias."]  # the unchanged chunk was not sent
    assert db.value(frete_vector) == vector
    assert [r["content"] for r in db.sql("select content from public.document_chunks order by position")] == [
        "Trocas em até 60 dias.", "Frete grátis acima de R$ 299."]
    assert db.sql("select input_tokens from public.ai_usage order by created_at") == [
        {"input_tokens": first.tokens}, {"input_tokens": second.tokens}]


async def test_another_embedder_reembeds_a_file_added_again(
    db: Db, connect: Connect, openai_embedder: OpenAIEmbedder
) -> None:
    await KnowledgeService(connect=connect, embedder=HashingEmbedder()).add_file(TENANT, FILES[0])
    again = await KnowledgeService(connect=connect, embedder=openai_embedder).add_file(TENANT, FILES[0])
    assert again.action == "replaced" and again.embedded == again.chunks
    assert db.sql("select distinct embedding_model from public.document_chunks") == [
        {"embedding_model": "openai:text-embedding-3-small"}]
    assert db.value("select embedding_model from public.knowledge_sources") == "openai:text-embedding-3-small"


async def test_reembed_moves_every_stored_chunk_to_the_new_embedder(
    db: Db, connect: Connect, openai_embedder: OpenAIEmbedder
) -> None:
    hashing = KnowledgeService(connect=connect, embedder=HashingEmbedder(), batch_size=2)
    added = [await hashing.add_file(TENANT, path) for path in FILES]
    total = sum(r.chunks for r in added)
    service = KnowledgeService(connect=connect, embedder=openai_embedder, batch_size=2)
    result = await service.reembed(TENANT)
    assert result.chunks == total and result.tokens > 0
    assert db.sql("select distinct embedding_model from public.document_chunks") == [
        {"embedding_model": "openai:text-embedding-3-small"}]
    assert {r["embedding_model"] for r in sources(db)} == {"openai:text-embedding-3-small"}
    usage = db.sql("select sum(input_tokens) as tokens, sum(cost_usd) as cost from public.ai_usage"
                   " where model = 'openai/text-embedding-3-small'")[0]
    assert usage["tokens"] == result.tokens and usage["cost"] == result.cost_usd
    assert (await service.reembed(TENANT)).chunks == 0  # nothing left to move
    matches = await service.search(TENANT, "PIX com desconto")
    assert matches and matches[0].semantic_position is not None


async def test_an_unreadable_file_fails_without_chunks(db: Db, connect: Connect, tmp_path: Path) -> None:
    path = tmp_path / "vazio.html"
    path.write_text("<html><body><script>nada()</script></body></html>")
    result = await KnowledgeService(connect=connect, embedder=HashingEmbedder()).add_file(TENANT, path)
    assert result.action == "failed" and "no extractable text" in (result.error or "")
    row = sources(db)[0]
    assert (row["status"], row["stored"], row["title"]) == ("failed", 0, "vazio")


async def test_a_provider_failure_fails_the_source_and_is_not_billed(
    db: Db, connect: Connect, openai_embedder: OpenAIEmbedder, openai_standin: OpenAIStandIn
) -> None:
    openai_standin.push(Fault(kind=FaultKind.SERVER_ERROR))
    result = await KnowledgeService(connect=connect, embedder=openai_embedder).add_file(TENANT, FILES[2])
    assert result.action == "failed" and result.error
    row = db.sql("select status, error, chunk_count from public.knowledge_sources")[0]
    assert row["status"] == "failed" and row["error"] == result.error and row["chunk_count"] == 0
    assert db.value("select count(*) from public.document_chunks") == 0
    assert db.value("select count(*) from public.ai_usage") == 0
    retried = await KnowledgeService(connect=connect, embedder=openai_embedder).add_file(TENANT, FILES[2])
    assert retried.action == "replaced" and retried.source_id == result.source_id


async def test_faqs_typed_in_the_app_are_claimed_and_ingested(db: Db, connect: Connect) -> None:
    with db.as_user(OWNER_A) as s:
        s.all("insert into public.knowledge_sources (tenant_id, title, kind, content)"
              " values (%s, 'Cupom', 'faq', %s)",
              (TENANT_A, "## Cupom\n\nUse o cupom BEMVINDO na primeira compra."))
    service = KnowledgeService(connect=connect, embedder=HashingEmbedder())
    [result] = await service.process_pending()
    assert result.action == "created" and result.chunks == 1 and result.origin.startswith("faq:")
    row = sources(db)[0]
    assert (row["status"], row["stored"], row["embedding_model"]) == ("ready", 1, "local:hashing-v1")
    assert await service.process_pending() == []
    assert (await service.search(TENANT, "cupom de primeira compra"))[0].title == "Cupom"
