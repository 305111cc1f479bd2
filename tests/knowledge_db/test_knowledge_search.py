"""match_knowledge: hybrid ranking, accents, full-text fallback, like with like, bot
scope and tenant isolation, through the entry points a frontend and the worker use."""

from __future__ import annotations

import json

import psycopg
import pytest

from support import Db

from .knowledge_support import (
    AGENT_A,
    CORPUS,
    MODEL,
    OWNER_A,
    SEARCH,
    TENANT_A,
    Doc,
    create_bot,
    embed,
    ingest,
    new_tenant,
    search_params,
    vector_literal,
)

# question a customer types -> title of the chunk that answers it
KNOWN_ANSWERS = {
    "qual o horário de funcionamento?": "Horário de funcionamento",
    "quanto tempo demora a entrega?": "Prazos de entrega",
    "posso pagar com pix?": "PIX",
    "dá pra parcelar no cartão?": "Cartão de crédito",
    "quero trocar um produto": "Trocas e devoluções",
    "quando vence o boleto?": "Boleto",
    "reembolso no cartão de crédito": "Reembolso",
    "onde fica a loja física?": "Loja física",
    "como rastrear meu pedido": "Rastreamento",
    "o produto veio com defeito": "Garantia",
}


@pytest.fixture
def kb(db: Db) -> Db:
    ingest(db, TENANT_A, CORPUS)
    return db


def titles(rows: list[dict[str, object]]) -> list[object]:
    return [r["title"] for r in rows]


def test_hybrid_search_puts_the_known_answer_first(kb: Db) -> None:
    with kb.as_user(AGENT_A) as s:
        for question, answer in KNOWN_ANSWERS.items():
            rows = s.all(SEARCH, search_params(question))
            assert titles(rows)[0] == answer, question
            best = rows[0]
            assert best["fts_position"] is not None and best["semantic_position"] is not None, question
            assert best["score"] >= 1 / 51 + 1 / 52, question  # near the top of both lists (k = 50)
            assert len(rows) == 5


def test_hybrid_search_returns_the_chunk_and_its_source(kb: Db) -> None:
    with kb.as_user(AGENT_A) as s:
        best = s.all(SEARCH, search_params("posso pagar com pix?"))[0]
    assert best["heading_path"] == ["Pagamentos", "PIX"]
    assert "5% de desconto" in best["content"]
    assert best["similarity"] > 0.2 and best["fts_rank"] > 0
    assert best["source_id"] is not None and best["chunk_id"] is not None


def test_search_is_accent_insensitive(kb: Db) -> None:
    with kb.as_user(AGENT_A) as s:
        for typed in ("horario de funcionamento", "HORÁRIO DE FUNCIONAMENTO", "horário"):
            rows = s.all(SEARCH, search_params(typed, semantic=False))
            assert titles(rows)[0] == "Horário de funcionamento", typed
        # plural without accents meets the singular with accents: devolucoes -> devolução
        assert titles(s.all(SEARCH, search_params("devolucoes", semantic=False)))[0] == "Trocas e devoluções"
        assert titles(s.all(SEARCH, search_params("nao abrem domingo", semantic=False))) == [
            "Horário de funcionamento"]
        card = s.all(SEARCH, search_params("cartao de credito", semantic=False))
        assert titles(card)[0] == "Cartão de crédito"


def test_full_text_alone_answers_without_an_embedding(kb: Db) -> None:
    with kb.as_user(AGENT_A) as s:
        rows = s.all(SEARCH, search_params("qual o prazo de entrega para o interior?", semantic=False))
    assert titles(rows)[0] == "Prazos de entrega"
    assert all(r["similarity"] is None and r["semantic_position"] is None for r in rows)
    # a chunk matching every term ranks above chunks matching only some; equal ranks share
    # a position (ties are not broken by random ids)
    positions = [r["fts_position"] for r in rows]
    assert positions[0] == 1 and positions == sorted(positions) and len(set(positions)) > 1


def test_full_text_falls_back_to_trigrams_for_typos(kb: Db) -> None:
    with kb.as_user(AGENT_A) as s:
        rows = s.all(SEARCH, search_params("orario de funsionamento", semantic=False))
        nothing = s.all(SEARCH, search_params("xyzzy plugh", semantic=False))
    assert titles(rows) == ["Horário de funcionamento"]
    assert rows[0]["fts_position"] is None and rows[0]["score"] >= 0.5
    assert nothing == []


def test_vector_part_compares_only_like_with_like(kb: Db) -> None:
    question = "posso pagar com pix?"
    # another embedder wrote a chunk whose vector equals the query's under MODEL
    ingest(kb, TENANT_A, [Doc("Impostor", ("Outro modelo",), "texto sem relação alguma com nada")],
           model="other-model-384", embed_fn=lambda _text: embed(question))
    with kb.as_user(AGENT_A) as s:
        semantic = s.all(SEARCH, search_params(question, ftw=0, n=20))
        other = s.all(SEARCH, search_params(question, model="other-model-384", ftw=0, n=20))
    assert "Impostor" not in titles(semantic)
    assert len(semantic) == len(CORPUS)
    assert titles(other) == ["Impostor"] and other[0]["similarity"] == pytest.approx(1.0)


def test_an_embedding_needs_its_model(kb: Db) -> None:
    params = search_params("pix", model=None)
    params["e"] = search_params("pix")["e"]
    with pytest.raises(psycopg.Error, match="embedding_model is required"), kb.as_user(AGENT_A) as s:
        s.all(SEARCH, params)


def test_bot_scope_adds_the_bots_own_knowledge(kb: Db) -> None:
    bot, other_bot = create_bot(kb), create_bot(kb)
    ingest(kb, TENANT_A, [Doc("Black Friday", ("Promoções",),
                              "Na Black Friday o cupom BLACK10 dá 10% de desconto em todo o site.")],
           bot_id=bot)
    question = "tem cupom de desconto na black friday?"
    with kb.as_user(AGENT_A) as s:
        with_bot = titles(s.all(SEARCH, search_params(question, bot_id=bot)))
        tenant_wide = titles(s.all(SEARCH, search_params(question)))
        another_bot = titles(s.all(SEARCH, search_params(question, bot_id=other_bot)))
    assert with_bot[0] == "Black Friday"
    assert "PIX" in with_bot  # tenant-wide knowledge still answers for the bot
    assert "Black Friday" not in tenant_wide
    assert "Black Friday" not in another_bot


def test_members_never_see_another_tenants_chunks(kb: Db) -> None:
    tenant_b, owner_b = new_tenant(kb)
    ingest(kb, tenant_b, [Doc("Horário da Outra Loja", ("Atendimento",),
                              "A Outra Loja abre todos os dias das 7h às 22h, inclusive domingos.")])
    question = "qual o horario de funcionamento no domingo?"
    with kb.as_user(OWNER_A) as s:  # tenant inferred: Ana belongs to one tenant
        mine = s.all(SEARCH, search_params(question, tenant_id=None, n=20))
    assert "Horário da Outra Loja" not in titles(mine) and len(mine) == len(CORPUS)
    with pytest.raises(psycopg.Error, match="not a member of this tenant"), kb.as_user(OWNER_A) as s:
        s.all(SEARCH, search_params(question, tenant_id=tenant_b))
    with kb.as_user(owner_b) as s:
        theirs = s.all(SEARCH, search_params(question, tenant_id=None, n=20))
    assert titles(theirs) == ["Horário da Outra Loja"]


def test_rls_still_guards_the_search_underneath(kb: Db) -> None:
    """A signed-in request without a user id reaches the tenant_id path, where RLS on
    document_chunks (the function runs as the caller) leaves nothing to find."""
    with kb.as_user(OWNER_A, sub=None) as s:
        assert s.all(SEARCH, search_params("pix", tenant_id=TENANT_A)) == []


def test_search_refuses_anon_and_needs_a_tenant_for_the_service_role(kb: Db) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), kb.as_anon() as s:
        s.all(SEARCH, search_params("pix"))
    with pytest.raises(psycopg.Error, match="tenant_id is required"), kb.as_service() as s:
        s.all(SEARCH, search_params("pix", tenant_id=None))
    with kb.as_service() as s:
        assert titles(s.all(SEARCH, search_params("pix")))[0] == "PIX"


def test_a_member_of_several_tenants_must_choose(kb: Db) -> None:
    tenant_b, _ = new_tenant(kb)
    kb.sql("insert into public.members (tenant_id, user_id, role) values (%s, %s, 'agent')",
           (tenant_b, AGENT_A))
    with pytest.raises(psycopg.Error, match="several tenants"), kb.as_user(AGENT_A) as s:
        s.all(SEARCH, search_params("pix", tenant_id=None))
    with kb.as_user(AGENT_A) as s:
        assert titles(s.all(SEARCH, search_params("pix", tenant_id=tenant_b))) == []


def test_search_leaves_the_hnsw_settings_as_it_found_them(kb: Db) -> None:
    with kb.as_service() as s:
        s.all("select '[1]'::extensions.vector")  # loads pgvector, which defines hnsw.*
        s.all("set local hnsw.ef_search = 77")
        assert titles(s.all(SEARCH, search_params("pix")))[0] == "PIX"
        assert s.value("select current_setting('hnsw.ef_search')") == "77"
        assert s.value("select current_setting('hnsw.iterative_scan')") == "off"


def test_members_read_chunks_but_only_the_service_role_writes_them(kb: Db) -> None:
    chunk = json.dumps({"position": 9, "content": "forjado"})
    with kb.as_user(AGENT_A) as s:
        assert s.value("select count(*) from public.document_chunks") == len(CORPUS)
    with pytest.raises(psycopg.errors.InsufficientPrivilege), kb.as_user(OWNER_A) as s:
        s.all("insert into public.document_chunks (tenant_id, source_id, position, content, content_hash)"
              " select tenant_id, source_id, 99, 'x', repeat('a', 64) from public.document_chunks limit 1")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), kb.as_user(OWNER_A) as s:
        s.all("select public.knowledge_insert_chunks(%s, gen_random_uuid(), %s)", (TENANT_A, f"[{chunk}]"))


def test_big_knowledge_bases_take_the_index_path_with_the_same_answers(kb: Db) -> None:
    """Above zapbase.knowledge_exact_max_chunks the search goes through GIN and HNSW."""
    with kb.as_user(AGENT_A) as s:
        s.all("set local zapbase.knowledge_exact_max_chunks = 0")
        for question, answer in KNOWN_ANSWERS.items():
            assert titles(s.all(SEARCH, search_params(question)))[0] == answer, question
        assert titles(s.all(SEARCH, search_params("devolucoes", semantic=False)))[0] == "Trocas e devoluções"


def test_a_big_tenant_gets_its_own_hnsw_index_and_loses_it_when_it_shrinks(kb: Db) -> None:
    index = "document_chunks_hnsw_" + TENANT_A.replace("-", "")

    def run_job(limit: int) -> int:
        with kb.connect() as conn:
            conn.execute("select set_config('zapbase.knowledge_exact_max_chunks', %s, false)", (str(limit),))
            row = conn.execute("select private.job_knowledge_tenant_indexes(now()) as n").fetchone()
        changed: int = row["n"]
        return changed

    def indexes() -> list[str]:
        rows = kb.sql("select indexname from pg_indexes where indexname like 'document\\_chunks\\_hnsw\\_%'")
        return [r["indexname"] for r in rows]

    assert run_job(len(CORPUS) - 1) == 1 and indexes() == [index]
    assert run_job(len(CORPUS) - 1) == 0  # already there
    with kb.as_service() as s:
        s.all("set local zapbase.knowledge_exact_max_chunks = 0")
        s.all("set local enable_seqscan = off")
        s.all("set local enable_sort = off")  # a few rows: else the planner sorts them all
        plan = "\n".join(r["QUERY PLAN"] for r in s.all(
            "explain select id from public.document_chunks where tenant_id = %s and embedding_model = %s"
            " order by embedding operator(extensions.<=>) %s::extensions.vector limit 10",
            (TENANT_A, MODEL, vector_literal(embed("pix")))))
        assert f"Index Scan using {index}" in plan, plan
        for question, answer in KNOWN_ANSWERS.items():
            assert titles(s.all(SEARCH, search_params(question)))[0] == answer, question
    assert run_job(2 * len(CORPUS) - 1) == 0  # above half the limit: kept, no flapping
    assert run_job(2 * len(CORPUS)) == 1 and indexes() == []
