"""The demo tenant's seed knowledge base: ingested once (idempotent by content hash), it
answers the questions customers ask about hours, delivery, returns and PIX; tenants never
see each other's knowledge, nor reuse each other's vectors."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest

from support import Db
from zapbase.db.pool import Connect
from zapbase.knowledge.embedders import HashingEmbedder, OpenAIEmbedder
from zapbase.knowledge.seed import aingest_seed_knowledge, ingest_seed_knowledge, seed_files
from zapbase.knowledge.sources import list_sources, remove_source
from zapbase.knowledge.store import KnowledgeService
from zapbase.settings import find_project_dir
from zapbase.standins.ai import OpenAIStandIn

from .knowledge_support import TENANT_A, new_tenant

PROJECT = find_project_dir(Path(__file__).parent)
TENANT = UUID(TENANT_A)

# question a customer types -> heading path of the chunk that answers it
KNOWN_ANSWERS = {
    "que horas a loja abre?": ("Horário de funcionamento", "Loja física"),
    "qual o horário de atendimento no sábado?": ("Horário de funcionamento", "Atendimento humano"),
    "qual o desconto para pagar com pix?": ("Formas de pagamento", "PIX"),
    "quanto tempo demora a entrega no nordeste?": ("Entrega", "Prazos"),
    "posso trocar o tamanho de uma roupa?": ("Trocas e devoluções", "Troca por tamanho, cor ou modelo"),
    "me arrependi da compra, posso devolver?": ("Trocas e devoluções", "Arrependimento"),
    "o frete é grátis?": ("Entrega", "Frete"),
    "onde fica a loja física?": ("Horário de funcionamento", "Loja física"),
    "em quantas vezes posso parcelar no cartão?": ("Formas de pagamento", "Cartão de crédito"),
    "o código pix expirou, e agora?": ("Formas de pagamento", "PIX"),
    "quanto custa o frete?": ("Entrega", "Frete"),
    "posso retirar na loja?": ("Entrega", "Retirada na loja"),
}


def test_the_seed_covers_hours_delivery_returns_and_pix() -> None:
    text = "\n".join(p.read_text(encoding="utf-8") for p in seed_files(PROJECT)).lower()
    for topic in ("horário de funcionamento", "entrega", "trocas e devoluções", "pix"):
        assert topic in text, topic


def test_seeding_twice_changes_nothing(db: Db) -> None:
    first = ingest_seed_knowledge(db.url, PROJECT, embedder=HashingEmbedder())
    stored = "select id, origin, status, chunk_count from public.knowledge_sources order by origin"
    rows = db.sql(stored)
    chunk_ids = db.sql("select id from public.document_chunks order by id")
    again = ingest_seed_knowledge(db.url, PROJECT, embedder=HashingEmbedder())
    assert [r.action for r in first] == ["created"] * len(seed_files(PROJECT))
    assert [r.action for r in again] == ["unchanged"] * len(first)
    assert [r["origin"] for r in rows] == [f"seed/knowledge/{p.name}" for p in seed_files(PROJECT)]
    assert all(r["status"] == "ready" and r["chunk_count"] > 0 for r in rows)
    assert db.sql(stored) == rows
    assert db.sql("select id from public.document_chunks order by id") == chunk_ids


@pytest.mark.anyio
async def test_search_finds_the_known_answers(db: Db, connect: Connect) -> None:
    await aingest_seed_knowledge(connect, PROJECT, embedder=HashingEmbedder())
    service = KnowledgeService(connect=connect, embedder=HashingEmbedder())
    for question, heading in KNOWN_ANSWERS.items():
        matches = await service.search(TENANT, question)
        assert matches[0].heading_path == heading, (question, [m.heading_path for m in matches])
        assert matches[0].fts_position is not None or matches[0].semantic_position is not None


@pytest.mark.anyio
async def test_tenants_never_see_or_reuse_each_others_knowledge(
    db: Db, connect: Connect, openai_embedder: OpenAIEmbedder, openai_standin: OpenAIStandIn, tmp_path: Path
) -> None:
    other, _ = new_tenant(db)
    other_id = UUID(other)
    secret = tmp_path / "segredo.md"
    secret.write_text("# Atacado\n\nDesconto de atacado: 40% para pedidos acima de 500 peças.\n")
    service = KnowledgeService(connect=connect, embedder=openai_embedder)
    mine = await service.add_file(TENANT, secret)
    theirs = await service.add_file(other_id, secret)
    # the same bytes are a new source in another tenant, embedded (and billed) again
    assert (mine.action, theirs.action) == ("created", "created") and mine.source_id != theirs.source_id
    assert theirs.embedded == theirs.chunks == 1 and len(openai_standin.calls_to("/v1/embeddings")) == 2
    billed = db.sql("select tenant_id, count(*) as calls from public.ai_usage group by 1 order by 1")
    assert [r["calls"] for r in billed] == [1, 1]

    await service.add_file(TENANT, PROJECT / "seed" / "knowledge" / "pagamento.md")
    found = await service.search(other_id, "desconto no pix")
    assert {m.source_id for m in found} == {theirs.source_id}
    assert {m.source_id for m in await service.search(TENANT, "desconto de atacado")} >= {mine.source_id}
    assert theirs.source_id not in {m.source_id for m in await service.search(TENANT, "desconto de atacado")}

    assert [s.id for s in await list_sources(connect, other_id)] == [theirs.source_id]
    assert theirs.source_id is not None
    assert await remove_source(connect, TENANT, theirs.source_id) is False  # not this tenant's
    assert db.value("select count(*) from public.knowledge_sources where id = %s", (theirs.source_id,)) == 1
    assert await remove_source(connect, other_id, theirs.source_id) is True
    assert db.value("select count(*) from public.document_chunks where tenant_id = %s", (other,)) == 0
