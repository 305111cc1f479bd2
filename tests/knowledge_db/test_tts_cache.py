"""tts_cache through the worker's functions: hits and cost avoided, WhatsApp media ids
per number and their expiry, duplicates, eviction by age and size with a job_runs row."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from support import Db

from .knowledge_support import AGENT_A, OWNER_A, TENANT_A, sha256

NUMBER_1 = "00000000-0000-4000-9000-000000000001"  # seed: Loja Demo's number
NUMBER_2 = "00000000-0000-4000-f000-000000000002"
STORE = ("select * from public.tts_cache_store(tenant_id => %(t)s, cache_key => %(k)s, provider => 'openai',"
         " model => 'tts-1', voice => 'nova', format => 'ogg_opus', speech_text => %(text)s,"
         " storage_path => %(path)s, size_bytes => %(size)s, characters => %(chars)s, cost_usd => %(cost)s,"
         " duration_seconds => 2.5, language => 'pt-BR')")
LOOKUP = "select * from public.tts_cache_lookup(%s, %s, %s)"


def store(db: Db, text: str, *, tenant: str = TENANT_A, size: int = 1000,
          path: str | None = None) -> dict[str, Any]:
    key = sha256("openai|tts-1|nova|" + text)
    with db.as_service() as s:
        row: dict[str, Any] = s.one(STORE, {"t": tenant, "k": key, "text": text, "size": size,
                                           "path": path or f"tts/{key}.ogg", "chars": len(text),
                                           "cost": Decimal("0.000015") * len(text)})
    return {**row, "key": key}


def lookup(db: Db, key: str, number: str | None = NUMBER_1, tenant: str = TENANT_A) -> list[dict[str, Any]]:
    with db.as_service() as s:
        return s.all(LOOKUP, (tenant, key, number))


def test_a_miss_returns_nothing_and_a_hit_counts_what_it_saved(db: Db) -> None:
    assert lookup(db, sha256("nada")) == []
    entry = store(db, "Olá! Seu pedido saiu para entrega.")
    assert entry["stored"] is True
    first = lookup(db, entry["key"])[0]
    second = lookup(db, entry["key"])[0]
    assert (first["hit_count"], second["hit_count"]) == (1, 2)
    cost = Decimal("0.000015") * 34
    assert first["cost_usd"] == cost and second["cost_avoided_usd"] == 2 * cost
    assert second["storage_path"] == f"tts/{entry['key']}.ogg" and second["format"] == "ogg_opus"
    row = db.sql("select characters_avoided, last_hit_at, text_hash from public.tts_cache")[0]
    assert row["characters_avoided"] == 68 and row["last_hit_at"] is not None
    assert row["text_hash"] == sha256("Olá! Seu pedido saiu para entrega.")


def test_the_text_is_kept_only_as_a_hash_and_a_masked_preview(db: Db) -> None:
    store(db, "Oi Maria, seu CPF 123.456.789-09 foi confirmado.  " + "x" * 300)
    row = db.sql("select text_preview from public.tts_cache")[0]
    assert "123.456.789-09" not in row["text_preview"] and "***.***.***-**" in row["text_preview"]
    assert len(row["text_preview"]) == 200


def test_a_duplicate_synthesis_keeps_the_first_audio(db: Db) -> None:
    first = store(db, "Bom dia!", path="tts/a.ogg")
    second = store(db, "Bom dia!", path="tts/b.ogg")
    assert second["stored"] is False and second["cache_id"] == first["cache_id"]
    assert second["cache_storage_path"] == "tts/a.ogg"  # the caller deletes tts/b.ogg


def test_media_ids_are_reused_per_number_until_they_expire(db: Db) -> None:
    key = store(db, "Seu boleto vence amanhã.")["key"]
    assert lookup(db, key)[0]["media_valid"] is False  # never uploaded
    with db.as_service() as s:
        assert s.value("select public.tts_cache_set_media(%s, %s, %s, 'wamid-media-1')",
                       (TENANT_A, key, NUMBER_1)) is True
    hit = lookup(db, key, NUMBER_1)[0]
    assert hit["media_valid"] is True and hit["whatsapp_media_id"] == "wamid-media-1"
    # media ids belong to the number that uploaded them
    other = lookup(db, key, NUMBER_2)[0]
    assert other["media_valid"] is False and other["whatsapp_media_id"] is None
    # WhatsApp keeps media 30 days; within a day of expiry it is not worth the risk
    db.sql("update public.tts_cache set media_expires_at = now() + interval '20 hours'")
    assert lookup(db, key, NUMBER_1)[0]["media_valid"] is False
    with db.as_service() as s:  # re-uploaded: fresh id, 30 days again
        s.value("select public.tts_cache_set_media(%s, %s, %s, 'wamid-media-2')", (TENANT_A, key, NUMBER_1))
    hit = lookup(db, key, NUMBER_1)[0]
    assert hit["whatsapp_media_id"] == "wamid-media-2" and hit["media_valid"] is True
    assert db.value("select media_expires_at - media_uploaded_at from public.tts_cache").days == 30
    with db.as_service() as s:
        assert s.value("select public.tts_cache_set_media(%s, %s, %s, 'x')",
                       (TENANT_A, sha256("desconhecido"), NUMBER_1)) is False


def test_the_cache_is_per_tenant(db: Db) -> None:
    key = store(db, "Obrigado pela compra!")["key"]
    other = str(db.create_tenant(db.create_user(), "Outra"))
    assert lookup(db, key, tenant=other) == []
    assert store(db, "Obrigado pela compra!", tenant=other)["stored"] is True


def evict(db: Db, **params: Any) -> list[dict[str, Any]]:
    args = ", ".join(f"{name} => %({name})s" for name in params)
    with db.as_service() as s:
        return s.all(f"select * from private.job_tts_cache_evict({args})", params)


def test_eviction_by_age_then_least_recently_used_until_the_size_fits(db: Db) -> None:
    old = store(db, "antigo", size=100)
    a = store(db, "a", size=400)
    b = store(db, "b", size=400)
    c = store(db, "c", size=400)
    db.sql("update public.tts_cache set created_at = now() - interval '120 days' where cache_key = %s",
           (old["key"],))
    db.sql("update public.tts_cache set created_at = now() - interval '3 days'"
           " where cache_key in (%s, %s, %s)", (a["key"], b["key"], c["key"]))
    db.sql("update public.tts_cache set last_hit_at = now() - interval '1 day' where cache_key = %s",
           (a["key"],))
    db.sql("update public.tts_cache set last_hit_at = now() where cache_key = %s", (b["key"],))
    # recency now: b (hit now) > a (hit yesterday) > c (created 3 days ago)
    evicted = evict(db, max_age="90 days", max_total_bytes=900)
    assert [(e["cache_key"], e["reason"]) for e in evicted] == [(old["key"], "age"), (c["key"], "size")]
    assert evicted[1]["storage_path"] == f"tts/{c['key']}.ogg" and evicted[1]["size_bytes"] == 400
    assert {r["cache_key"] for r in db.sql("select cache_key from public.tts_cache")} == {a["key"], b["key"]}
    run = db.sql("select * from public.job_runs where job_name = 'tts_cache_evict'")[0]
    assert run["status"] == "succeeded" and run["rows_affected"] == 2
    assert run["details"]["evicted_by_age"] == 1 and run["details"]["evicted_by_size"] == 1
    assert run["details"]["bytes_freed"] == 500
    assert sorted(run["details"]["storage_paths"]) == sorted(e["storage_path"] for e in evicted)


def test_eviction_caps_each_tenant_or_one_tenant(db: Db) -> None:
    other = str(db.create_tenant(db.create_user(), "Outra"))
    for n in range(3):
        store(db, f"a{n}", size=100)
        store(db, f"b{n}", size=100, tenant=other)
    evicted = evict(db, max_tenant_bytes=200)
    assert sorted(str(e["evicted_tenant_id"]) for e in evicted) == sorted([TENANT_A, other])
    assert evict(db, tenant_id=other, max_total_bytes=100)[0]["reason"] == "size"
    counts = db.sql("select tenant_id::text, count(*) from public.tts_cache group by 1")
    assert {r["tenant_id"]: r["count"] for r in counts} == {TENANT_A: 2, other: 1}
    runs = db.sql("select tenant_id::text, rows_affected from public.job_runs"
                  " where job_name = 'tts_cache_evict' order by started_at")
    assert runs == [{"tenant_id": None, "rows_affected": 2}, {"tenant_id": other, "rows_affected": 1}]


def test_a_failed_eviction_is_recorded_not_raised(db: Db) -> None:
    store(db, "Olá!")
    db.sql("""create function public.tg_refuse_deletes() returns trigger language plpgsql as
              $$ begin raise exception 'storage is read-only'; end $$;
              create trigger refuse before delete on public.tts_cache
                for each row execute function public.tg_refuse_deletes();""")
    assert evict(db, max_total_bytes=0) == []
    run = db.sql("select status, error from public.job_runs where job_name = 'tts_cache_evict'")
    assert run == [{"status": "failed", "error": "storage is read-only"}]
    assert db.value("select count(*) from public.tts_cache") == 1


def test_admins_read_the_cache_others_do_not_and_nobody_writes_it(db: Db) -> None:
    store(db, "Olá!")
    with db.as_user(OWNER_A) as s:
        assert s.value("select count(*) from public.tts_cache") == 1
    with db.as_user(AGENT_A) as s:
        assert s.value("select count(*) from public.tts_cache") == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(OWNER_A) as s:
        s.all("update public.tts_cache set hit_count = 0")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(OWNER_A) as s:
        s.all(LOOKUP, (TENANT_A, sha256("x"), str(uuid.uuid4())))
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(OWNER_A) as s:
        s.all("select * from private.job_tts_cache_evict()")
