"""The worker's ingestion path (knowledge_* functions as the service role) and the
sources a frontend manages (managers add texts and FAQs; RLS)."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from support import Db

from .knowledge_support import AGENT_A, MODEL, OWNER_A, TENANT_A, create_bot, embed, new_tenant, sha256

UPSERT = ("select * from public.knowledge_upsert_source(tenant_id => %(t)s, content_hash => %(h)s,"
          " title => %(title)s, origin => %(origin)s, embedding_model => %(m)s, bot_id => %(bot)s)")


def upsert(s: Any, content: str, *, origin: str | None = "kb/politicas.md", model: str | None = MODEL,
           bot_id: str | None = None, title: str = "Políticas") -> dict[str, Any]:
    result: dict[str, Any] = s.one(UPSERT, {"t": TENANT_A, "h": sha256(content), "title": title,
                                            "origin": origin, "m": model, "bot": bot_id})
    return result


def chunks_of(*texts: str, embedded: bool = True, model: str | None = None) -> str:
    return json.dumps([{"heading_path": ["Políticas"], "content": t, "token_count": len(t) // 4,
                        **({"embedding": embed(t)} if embedded else {}),
                        **({"embedding_model": model} if model else {})} for t in texts])


def ingest(db: Db, content: str, *parts: str, **kwargs: Any) -> dict[str, Any]:
    with db.as_service() as s:
        source = upsert(s, content, **kwargs)
        if source["action"] in ("created", "replaced"):
            s.value("select public.knowledge_insert_chunks(%s, %s, %s)",
                    (TENANT_A, source["source_id"], chunks_of(*parts)))
            s.one("select * from public.knowledge_mark_ready(%s, %s)", (TENANT_A, source["source_id"]))
    return source


def test_adding_the_same_file_twice_is_a_no_op(db: Db) -> None:
    first = ingest(db, "v1", "Trocas em até 7 dias.", "Devolução sem custo.")
    again = ingest(db, "v1", "Trocas em até 7 dias.", "Devolução sem custo.")
    assert first["action"] == "created"
    assert again == {"source_id": first["source_id"], "action": "unchanged"}
    source = db.sql("select * from public.knowledge_sources")[0]
    assert source["status"] == "ready" and source["chunk_count"] == 2
    assert source["character_count"] == len("Trocas em até 7 dias.") + len("Devolução sem custo.")
    assert source["token_count"] == 5 + 5 and source["processed_at"] is not None


def test_a_new_version_of_a_file_replaces_its_chunks(db: Db) -> None:
    first = ingest(db, "v1", "Trocas em até 7 dias.", "Devolução sem custo.")
    second = ingest(db, "v2", "Trocas em até 30 dias.")
    assert second == {"source_id": first["source_id"], "action": "replaced"}
    assert [r["content"] for r in db.sql("select content from public.document_chunks")] == [
        "Trocas em até 30 dias."]
    source = db.sql("select content_hash, chunk_count, status from public.knowledge_sources")
    assert source == [{"content_hash": sha256("v2"), "chunk_count": 1, "status": "ready"}]


def test_another_embedding_model_reingests_the_source(db: Db) -> None:
    first = ingest(db, "v1", "Trocas em até 7 dias.")
    second = ingest(db, "v1", "Trocas em até 7 dias.", model="text-embedding-3-small@384")
    assert second == {"source_id": first["source_id"], "action": "replaced"}
    assert db.value("select embedding_model from public.document_chunks") == "text-embedding-3-small@384"


def test_the_same_content_in_another_bot_scope_is_another_source(db: Db) -> None:
    tenant_wide = ingest(db, "v1", "Trocas em até 7 dias.")
    for_a_bot = ingest(db, "v1", "Trocas em até 7 dias.", bot_id=create_bot(db))
    assert for_a_bot["action"] == "created" and for_a_bot["source_id"] != tenant_wide["source_id"]
    assert db.value("select count(*) from public.document_chunks where bot_id is not null") == 1


def test_a_source_names_a_bot_of_its_own_tenant(db: Db) -> None:
    other_tenant, _ = new_tenant(db)
    foreign_bot = create_bot(db, other_tenant)
    with pytest.raises(psycopg.errors.ForeignKeyViolation), db.as_user(OWNER_A) as s:
        s.one("insert into public.knowledge_sources (tenant_id, bot_id, title, kind, content)"
              " values (%s, %s, 'FAQ', 'faq', 'P: Entregam? R: Sim.') returning id", (TENANT_A, foreign_bot))
    with pytest.raises(psycopg.errors.ForeignKeyViolation), db.as_service() as s:
        upsert(s, "v1", bot_id="00000000-0000-4000-e000-0000000000b1")  # no such bot
    assert db.value("select count(*) from public.knowledge_sources") == 0


def test_a_deleted_bot_takes_its_knowledge_along(db: Db) -> None:
    bot = create_bot(db)
    ingest(db, "v1", "Trocas em até 7 dias.", bot_id=bot)
    tenant_wide = ingest(db, "v2", "Entregas em 2 dias.", origin="kb/entregas.md")
    with db.as_user(OWNER_A) as s:
        assert s.rowcount("delete from public.bots where id = %s", (bot,)) == 1
    # left with a null bot_id, the bot's knowledge would answer for every bot of the tenant
    assert [str(r["id"]) for r in db.sql("select id from public.knowledge_sources")] == [
        str(tenant_wide["source_id"])]
    assert db.value("select count(*) from public.document_chunks where bot_id is not null") == 0


def test_a_source_being_processed_is_left_to_its_worker(db: Db) -> None:
    with db.as_service() as s:
        first = upsert(s, "v1")
    with db.as_service() as s:
        assert upsert(s, "v1") == {"source_id": first["source_id"], "action": "in_progress"}
    db.sql("alter table public.knowledge_sources disable trigger _100_set_updated_at;"
           " update public.knowledge_sources set updated_at = now() - interval '1 hour';"
           " alter table public.knowledge_sources enable trigger _100_set_updated_at")
    with db.as_service() as s:  # its worker died: take it over
        assert upsert(s, "v1")["action"] == "replaced"


def test_chunks_are_written_in_bulk_and_retries_are_safe(db: Db) -> None:
    with db.as_service() as s:
        source = upsert(s, "v1")["source_id"]
        payload = chunks_of("um", "dois", "três")
        assert s.value("select public.knowledge_insert_chunks(%s, %s, %s)", (TENANT_A, source, payload)) == 3
        assert s.value("select public.knowledge_insert_chunks(%s, %s, %s)", (TENANT_A, source, payload)) == 3
    rows = db.sql("select position, content, content_hash, heading_path, embedding_model, bot_id"
                  " from public.document_chunks order by position")
    assert [(r["position"], r["content"]) for r in rows] == [(0, "um"), (1, "dois"), (2, "três")]
    assert rows[2]["content_hash"] == sha256("três")
    assert rows[0]["heading_path"] == ["Políticas"] and rows[0]["embedding_model"] == MODEL


def test_chunks_need_a_processing_source_and_dimensions_that_fit(db: Db) -> None:
    ingest(db, "v1", "Trocas em até 7 dias.")
    source = db.value("select id from public.knowledge_sources")
    with pytest.raises(psycopg.Error, match="knowledge source is ready"), db.as_service() as s:
        s.all("select public.knowledge_insert_chunks(%s, %s, %s)", (TENANT_A, source, chunks_of("x")))
    with db.as_service() as s:
        source = upsert(s, "v2")["source_id"]
    bad = json.dumps([{"content": "x", "embedding": [0.1, 0.2]}])
    with pytest.raises(psycopg.Error, match="expected 384 dimensions"), db.as_service() as s:
        s.all("select public.knowledge_insert_chunks(%s, %s, %s)", (TENANT_A, source, bad))
    with db.as_service() as s:
        unscoped = upsert(s, "v3", origin=None, model=None)["source_id"]
    no_model = json.dumps([{"content": "x", "embedding": embed("x")}])
    with pytest.raises(psycopg.Error, match="needs its embedding_model"), db.as_service() as s:
        s.all("select public.knowledge_insert_chunks(%s, %s, %s)", (TENANT_A, unscoped, no_model))


def test_embeddings_are_listed_set_in_bulk_and_checked_before_ready(db: Db) -> None:
    with db.as_service() as s:
        source = upsert(s, "v1")["source_id"]
        s.value("select public.knowledge_insert_chunks(%s, %s, %s)",
                (TENANT_A, source, chunks_of("Frete grátis acima de R$ 199.", "Entrega em 3 dias.",
                                             embedded=False)))
    with pytest.raises(psycopg.Error, match=r"2 chunk\(s\) of this source are not embedded"), \
            db.as_service() as s:
        s.all("select public.knowledge_mark_ready(%s, %s)", (TENANT_A, source))
    with db.as_service() as s:
        todo = s.all("select * from public.knowledge_chunks_to_embed(%s, tenant_id => %s)", (MODEL, TENANT_A))
        assert [t["content"] for t in todo] == ["Frete grátis acima de R$ 199.", "Entrega em 3 dias."]
        assert {str(t["chunk_tenant_id"]) for t in todo} == {TENANT_A}
        payload = json.dumps([{"chunk_id": str(t["chunk_id"]), "embedding": embed(t["content"])}
                              for t in todo])
        assert s.value("select public.knowledge_set_embeddings(%s, %s, %s)", (TENANT_A, MODEL, payload)) == 2
        assert s.all("select * from public.knowledge_chunks_to_embed(%s)", (MODEL,)) == []
        ready = s.one("select * from public.knowledge_mark_ready(%s, %s)", (TENANT_A, source))
    assert ready["status"] == "ready" and ready["chunk_count"] == 2
    # a model migration: every chunk shows up again for the new model
    with db.as_service() as s:
        assert len(s.all("select * from public.knowledge_chunks_to_embed('minilm-384')")) == 2


def test_set_embeddings_stays_inside_its_tenant(db: Db) -> None:
    ingest(db, "v1", "Trocas em até 7 dias.")
    chunk = db.value("select id from public.document_chunks")
    other = db.create_tenant(db.create_user(), "Outra")
    payload = json.dumps([{"chunk_id": str(chunk), "embedding": embed("forjado")}])
    with db.as_service() as s:
        assert s.value("select public.knowledge_set_embeddings(%s, 'forged-384', %s)", (other, payload)) == 0
    assert db.value("select embedding_model from public.document_chunks") == MODEL


def test_a_failed_ingestion_keeps_no_partial_chunks(db: Db) -> None:
    with db.as_service() as s:
        source = upsert(s, "v1")["source_id"]
        s.value("select public.knowledge_insert_chunks(%s, %s, %s)", (TENANT_A, source, chunks_of("parte 1")))
        failed = s.one("select * from public.knowledge_mark_failed(%s, %s, 'PDF protegido por senha')",
                       (TENANT_A, source))
    assert failed["status"] == "failed" and failed["error"] == "PDF protegido por senha"
    assert db.value("select count(*) from public.document_chunks") == 0
    with db.as_service() as s:  # adding it again retries
        assert upsert(s, "v1") == {"source_id": source, "action": "replaced"}


def test_managers_add_faqs_that_the_worker_claims(db: Db) -> None:
    manager = db.add_member(TENANT_A, "manager")
    faq = "P: Vocês entregam no sábado?\nR: Sim, nas capitais."
    with db.as_user(manager) as s:
        source = s.one("insert into public.knowledge_sources (tenant_id, title, kind, content)"
                       " values (%s, 'FAQ entregas', 'faq', %s) returning *", (TENANT_A, faq))
    assert source["content_hash"] == sha256(faq)
    assert source["status"] == "pending" and source["created_by"] == manager
    with db.as_service() as s:
        claimed = s.all("select * from public.knowledge_claim_sources(5)")
        assert [c["id"] for c in claimed] == [source["id"]] and claimed[0]["content"] == faq
        assert claimed[0]["status"] == "processing"
        assert s.all("select * from public.knowledge_claim_sources(5)") == []
        s.value("select public.knowledge_insert_chunks(%s, %s, %s)",
                (TENANT_A, source["id"], chunks_of(faq, model=MODEL)))
        ready = s.one("select * from public.knowledge_mark_ready(%s, %s)", (TENANT_A, source["id"]))
    assert ready["embedding_model"] == MODEL  # adopted from its chunks
    # editing the text sends it back to the worker, which replaces the chunks
    with db.as_user(manager) as s:
        edited = s.one("update public.knowledge_sources set content = content || ' E no interior também.'"
                       " where id = %s returning status, content_hash", (source["id"],))
    assert edited["status"] == "pending" and edited["content_hash"] != source["content_hash"]
    with db.as_service() as s:
        assert len(s.all("select * from public.knowledge_claim_sources(5)")) == 1
    assert db.value("select count(*) from public.document_chunks") == 0
    actions = [r["action"] for r in db.sql(
        "select action from public.audit_log where resource_type = 'knowledge_sources' order by created_at")]
    assert actions == ["insert", "update"]  # people's changes, not the worker's bookkeeping


def test_agents_read_sources_but_do_not_write_them(db: Db) -> None:
    ingest(db, "v1", "Trocas em até 7 dias.")
    with db.as_user(AGENT_A) as s:
        assert s.value("select count(*) from public.knowledge_sources") == 1
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(AGENT_A) as s:
        s.all("insert into public.knowledge_sources (tenant_id, title, kind, content)"
              " values (%s, 'x', 'text', 'y')", (TENANT_A,))
    with db.as_user(AGENT_A) as s:
        assert s.rowcount("delete from public.knowledge_sources") == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(OWNER_A) as s:
        s.all("update public.knowledge_sources set status = 'ready'")  # status is the worker's
    with db.as_user(OWNER_A) as s:  # an owner (>= manager) removes it, and its chunks go with it
        assert s.rowcount("delete from public.knowledge_sources") == 1
    assert db.value("select count(*) from public.document_chunks") == 0
