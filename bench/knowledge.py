"""Knowledge search at scale: 100,000 chunks × 384 dimensions over 50 tenants.

Vectors are clustered, like real embeddings: 200 unit centres, each point a centre plus
Gaussian noise, normalised; every tenant holds points of every cluster. Each chunk's text
carries its cluster's topic words among common Portuguese words, so full text and vectors
agree the way they do on a real knowledge base.

Loaded with one binary COPY (pgvector's binary format), the HNSW index dropped first and
built afterwards (timed, one core). Then tenant-filtered hybrid queries through
match_knowledge as the service role, from held-out points near the centres with a query
text, without server-side prepared statements (Supavisor transaction mode):
  - latency p50 / p95 of the full hybrid search (10 results);
  - recall@10 of its vector part (full_text_weight => 0) against an exact scan with the
    same tenant filter and the index disabled.
A 2,000-chunk tenant is searched exactly by match_knowledge (index-only scan of its
vectors); the same figures are taken a second time with zapbase.knowledge_exact_max_chunks = 0
and sorts made dear (enable_sort = off: else the planner still scans such a tenant
exactly), which sends every tenant through GIN and the shared HNSW with iterative scan;
then a third time once job_knowledge_tenant_indexes gave each tenant its own HNSW index,
as a big tenant is served; on that path, again with each hnsw.ef_search of EF_SEARCH
(zapbase.knowledge_ef_search) instead of match_knowledge's default, max(100, 2 × 40
candidates). Iterative scan changes nothing there: a tenant's own index holds only rows
the filter keeps, so the first ef_search candidates already pass it.

    ZAPBASE_BENCH_KNOWLEDGE_ROWS=20000 python bench/run.py knowledge    # a quick run
"""

from __future__ import annotations

import os
import re
import struct
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg

from harness import Context, Measure, median, percentile

ROWS = int(os.environ.get("ZAPBASE_BENCH_KNOWLEDGE_ROWS", "100000"))
TENANTS = 50
SOURCES = 20  # per tenant: chunks arrive one source at a time, as the worker ingests them
CENTRES = 200
DIMS = 384
NOISE = 0.75  # norm of the noise added to a unit centre: same-cluster cosine ≈ 0.64
QUERIES = 200
WARMUP = 20
MODEL = "bench-clustered-384"
SEED = 20260101
EF_SEARCH = (40, 64)  # tried on the tenant's own HNSW; 40 = the candidates a list takes

FILLER = (
    "pedido", "cliente", "prazo", "entrega", "loja", "produto", "compra", "pagamento", "atendimento",
    "valor", "frete", "troca", "site", "conta", "cadastro", "desconto", "nota", "fiscal", "estoque",
    "envio", "retirada", "garantia", "suporte", "horario", "endereco", "cidade", "cartao", "boleto",
    "pix", "parcela", "cupom", "promocao", "mensagem", "contato", "resposta",
)
SYLLABLES = ("ba", "ce", "di", "fo", "gu", "la", "me", "ni", "po", "ru", "sa", "te", "vi", "xo", "za")


@dataclass(frozen=True)
class Query:
    tenant_id: uuid.UUID
    text: str
    vector: str


def topic_words() -> list[list[str]]:
    words = [a + b + c for a in SYLLABLES for b in SYLLABLES for c in SYLLABLES]
    return [words[i * 5:(i + 1) * 5] for i in range(CENTRES)]


def _text_field(value: str) -> bytes:
    data = value.encode()
    return struct.pack(">i", len(data)) + data


def copy_rows(np: Any, rng: Any, centres: Any, sources: list[tuple[uuid.UUID, uuid.UUID]],
              topics: list[list[str]]) -> Iterator[bytes]:
    """PostgreSQL binary COPY stream of ROWS chunks: one batch per (tenant, source), the
    sources of all tenants interleaved in random order."""
    yield b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
    vector_header = struct.pack(">ihh", 4 + 4 * DIMS, DIMS, 0)
    model = _text_field(MODEL)
    per_source = -(-ROWS // len(sources))
    for number, index in enumerate(rng.permutation(len(sources))):
        tenant, source = sources[int(index)]
        start = number * per_source
        n = min(per_source, ROWS - start)
        if n <= 0:
            break
        clusters = rng.integers(0, CENTRES, n)
        points = centres[clusters] + rng.normal(0, NOISE / np.sqrt(DIMS), (n, DIMS))
        points /= np.linalg.norm(points, axis=1, keepdims=True)
        raw = points.astype(">f4")
        fillers = rng.integers(0, len(FILLER), (n, 25))
        out = []
        for i in range(n):
            words = topics[int(clusters[i])]
            content = " ".join([words[0], *(FILLER[j] for j in fillers[i][:12]), words[1], words[2],
                                *(FILLER[j] for j in fillers[i][12:])])
            out.append(b"".join((
                struct.pack(">hi", 8, 16), uuid.uuid4().bytes,
                struct.pack(">i", 16), tenant.bytes,
                struct.pack(">i", 16), source.bytes,
                struct.pack(">ii", 4, i),
                _text_field(content),
                _text_field(f"{start + i:064x}"),
                vector_header, raw[i].tobytes(),
                model,
            )))
        yield b"".join(out)
    yield struct.pack(">h", -1)


def vector_text(values: Any) -> str:
    return "[" + ",".join(f"{v:.6f}" for v in values) + "]"


HYBRID = ("select chunk_id from public.match_knowledge(query_text => %s,"
          " query_embedding => %s::extensions.vector, match_count => 10, embedding_model => %s,"
          " tenant_id => %s, full_text_weight => %s)")
EXACT = ("select id from public.document_chunks where tenant_id = %s and embedding_model = %s"
         " order by embedding operator(extensions.<=>) %s::extensions.vector limit 10")
# the vector part of match_knowledge, as it runs on each path
VECTOR_PART = ("explain (costs off) select c.id from public.document_chunks c"
               " where c.tenant_id = %s and c.embedding_model = %s and c.bot_id is null"
               " order by (c.embedding operator(extensions.<=>) %s::extensions.vector){} limit 40")


def explain(conn: psycopg.Connection[Any], probe: tuple[Any, ...], exact: bool) -> str:
    lines = (r[0] for r in conn.execute(VECTOR_PART.format(" + 0" if exact else ""), probe))
    return "\n".join(re.sub(r"'\[[^']*\]'", "$query", line) for line in lines)


def exact_answers(conn: psycopg.Connection[Any], queries: list[Query]) -> list[set[Any]]:
    """The true 10 nearest chunks of each query's tenant: a scan of them all."""
    answers = []
    for q in queries[WARMUP:]:
        with conn.transaction():
            # every vector index off (HNSW is an index scan, the covering btree an index-only one)
            conn.execute("set local enable_indexscan = off")
            conn.execute("set local enable_indexonlyscan = off")
            answers.append({r[0] for r in conn.execute(EXACT, (q.tenant_id, MODEL, q.vector))})
    return answers


def search_figures(
    conn: psycopg.Connection[Any], queries: list[Query], exact: list[set[Any]]
) -> tuple[list[float], float]:
    """Latencies (ms) of the hybrid search and recall@10 of its vector part."""
    for q in queries[:WARMUP]:
        conn.execute(HYBRID, (q.text, q.vector, MODEL, q.tenant_id, 1.0)).fetchall()
    latencies = []
    for q in queries[WARMUP:]:
        began = time.perf_counter()
        conn.execute(HYBRID, (q.text, q.vector, MODEL, q.tenant_id, 1.0)).fetchall()
        latencies.append((time.perf_counter() - began) * 1000)
    hits = 0
    for q, truth in zip(queries[WARMUP:], exact, strict=True):
        found = {r[0] for r in conn.execute(HYBRID, (q.text, q.vector, MODEL, q.tenant_id, 0.0))}
        hits += len(found & truth)
    return latencies, hits / (10 * (len(queries) - WARMUP))


def measure(ctx: Context) -> list[Measure]:
    try:
        import numpy as np
    except ImportError:
        print("bench/knowledge.py needs numpy to generate 100k vectors quickly: pip install numpy")
        return []
    rng = np.random.default_rng(SEED)
    centres = rng.normal(0, 1, (CENTRES, DIMS))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    topics = topic_words()
    tenants = [uuid.uuid4() for _ in range(TENANTS)]
    sources = [(tenant, uuid.uuid4()) for tenant in tenants for _ in range(SOURCES)]
    url = ctx.fresh_db()
    rows_label = f"{ROWS // 1000}k×{DIMS}"

    with psycopg.connect(url, autocommit=True, prepare_threshold=None) as conn:
        for n, tenant in enumerate(tenants):
            conn.execute("insert into public.tenants (id, slug, name, plan_id)"
                         " select %s, %s, %s, p.id from public.plans p order by p.code limit 1",
                         (tenant, f"bench-knowledge-{n}", f"Bench knowledge {n}"))
        for n, (tenant, source) in enumerate(sources):
            conn.execute("insert into public.knowledge_sources (id, tenant_id, title, content_hash, status,"
                         " embedding_model) values (%s, %s, %s, %s, 'processing', %s)",
                         (source, tenant, f"Central de ajuda {n}", f"{n:064x}", MODEL))
        conn.execute("drop index public.document_chunks_embedding_hnsw_idx")
        began = time.perf_counter()
        with conn.cursor() as cur, cur.copy(
            "copy public.document_chunks (id, tenant_id, source_id, position, content, content_hash,"
            " embedding, embedding_model) from stdin (format binary)"
        ) as copy:
            for block in copy_rows(np, rng, centres, sources, topics):
                copy.write(block)
        load_seconds = time.perf_counter() - began
        conn.execute("select public.knowledge_mark_ready(tenant_id, id) from public.knowledge_sources")
        conn.execute("vacuum analyze public.document_chunks")

        conn.execute("set maintenance_work_mem = '1GB'")
        conn.execute("set max_parallel_maintenance_workers = 0")  # one core: the machine is shared
        began = time.perf_counter()
        conn.execute("create index document_chunks_embedding_hnsw_idx on public.document_chunks using hnsw"
                     " (embedding extensions.vector_cosine_ops) with (m = 16, ef_construction = 64)")
        build_seconds = time.perf_counter() - began
        conn.execute("analyze public.document_chunks")

        queries = []
        for _ in range(QUERIES):
            c = int(rng.integers(0, CENTRES))
            point = centres[c] + rng.normal(0, NOISE / np.sqrt(DIMS), DIMS)
            words = topics[c]
            text = f"qual o {FILLER[int(rng.integers(0, len(FILLER)))]} do {words[0]} {words[2]}?"
            queries.append(Query(tenants[int(rng.integers(0, TENANTS))], text,
                                 vector_text(point / np.linalg.norm(point))))

        conn.execute("set role service_role")
        probe = (queries[0].tenant_id, MODEL, queries[0].vector)
        plan = explain(conn, probe, exact=True)
        exact = exact_answers(conn, queries)  # computed once, under the planner's defaults
        latencies, recall = search_figures(conn, queries, exact)
        conn.execute("set zapbase.knowledge_exact_max_chunks = 0")  # every tenant takes the GIN + HNSW path
        # At 2,000 chunks a tenant the planner still picks an exact scan plus a sort over
        # HNSW; a sort made dear leaves HNSW's ordered scan (iterative, tenant-filtered), the
        # plan of a tenant too big for the exact path, so these figures are HNSW's.
        conn.execute("set enable_sort = off")
        plan_shared = explain(conn, probe, exact=False)
        shared_latencies, shared_recall = search_figures(conn, queries, exact)
        # then as big tenants are served: each with its own HNSW index (the hourly job)
        conn.execute("reset role")
        began = time.perf_counter()
        conn.execute("select private.job_knowledge_tenant_indexes(now())")
        tenant_build_seconds = time.perf_counter() - began
        conn.execute("analyze public.document_chunks")
        conn.execute("set role service_role")
        plan_forced = explain(conn, probe, exact=False)
        forced_latencies, forced_recall = search_figures(conn, queries, exact)
        swept = []
        for ef in EF_SEARCH:
            conn.execute(f"set zapbase.knowledge_ef_search = {ef}")
            swept.append((ef, *search_figures(conn, queries, exact)))
        conn.execute("reset zapbase.knowledge_ef_search")
        conn.execute("reset enable_sort")

    print(f"knowledge: vector part of a {ROWS // TENANTS}-chunk tenant (exact path):\n{plan}")
    print(f"knowledge: with the index path forced, shared HNSW:\n{plan_shared}")
    print(f"knowledge: with the index path forced, the tenant's own HNSW:\n{plan_forced}")
    p50, p95 = median(latencies), percentile(latencies, 95)
    return [
        Measure(f"knowledge load {rows_label} (binary COPY)", load_seconds, "s"),
        Measure(f"knowledge HNSW build {rows_label}", build_seconds, "s",
                goal="1 core, m=16, ef_construction=64"),
        Measure("knowledge hybrid search p50", p50, "ms", goal="exact path (≤ 5,000 chunks)"),
        Measure("knowledge hybrid search p95", p95, "ms", goal="≤ 20 ms"),
        Measure("knowledge hybrid search p50, as queries/s", 1000 / p50, "queries/s",
                baseline="select 1 round trip, 1 client(s)"),
        Measure("knowledge vector recall@10", recall, "ratio", goal="≥ 0.95"),
        Measure("knowledge hybrid search p95 (index path, shared HNSW, iterative scan)",
                percentile(shared_latencies, 95), "ms"),
        Measure("knowledge vector recall@10 (index path, shared HNSW)", shared_recall, "ratio"),
        Measure(f"knowledge {TENANTS} tenant HNSW builds ({ROWS // TENANTS} chunks each)",
                tenant_build_seconds, "s", goal="1 core, job_knowledge_tenant_indexes"),
        Measure("knowledge hybrid search p50 (index path)", median(forced_latencies), "ms"),
        Measure("knowledge hybrid search p95 (index path)", percentile(forced_latencies, 95), "ms",
                goal="≤ 20 ms"),
        Measure("knowledge vector recall@10 (index path)", forced_recall, "ratio", goal="≥ 0.95"),
        *(m for ef, lat, rec in swept for m in (
            Measure(f"knowledge hybrid search p95 (index path, ef_search {ef})", percentile(lat, 95), "ms",
                    goal="≤ 20 ms"),
            Measure(f"knowledge vector recall@10 (index path, ef_search {ef})", rec, "ratio",
                    goal="≥ 0.95"))),
    ]
