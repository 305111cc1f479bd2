/**
 * Zapbase module 4b: knowledge (RAG) and the TTS cache.
 * Seed 002 `documents` (pgvector RAG per client) becomes `knowledge_sources` (what was
 * added: a file, a URL, a text, a FAQ) and `document_chunks` (its searchable pieces, each
 * with a 384-d embedding and a Portuguese full-text vector). Seed 002 `tts_cache` becomes
 * `tts_cache`: synthesised audio shared by every conversation of a tenant, with the
 * WhatsApp media id of its last upload so a hit costs neither a synthesis nor an upload.
 *
 * Who does what:
 *   frontends (PostgREST)  members read sources and chunks of their tenant; managers add,
 *                          edit and remove sources (a text or FAQ typed in the app);
 *                          match_knowledge() searches (RLS applies: SECURITY INVOKER)
 *   worker (service_role)  parses, chunks and embeds through knowledge_* functions;
 *                          synthesises speech and keeps tts_cache through tts_cache_*;
 *                          runs private.job_tts_cache_evict() and deletes the files it returns
 * Costs of embeddings and syntheses are settled by the worker through the ai module
 * (ai_usage); this module only remembers what a cached audio cost, to count savings.
 *
 * Accents. Customers type "nao", "horario", "devolucao". The `unaccent` extension is not
 * in the local server (pgserver ships vector, pg_trgm, btree_gist only) and a custom
 * text search dictionary would need files Supabase does not let us install, so accents
 * are folded by private.kb_fold() (translate() over NFC text), used identically in the
 * stored tsvector and in the query. Folding happens before the Portuguese stemmer, which
 * only recognises some plurals with their accents (devoluções/devolução), so kb_fold also
 * maps the plural endings -ões → -ão and -veis → -vel; both sides go through it, so
 * "devolucoes", "devoluções" and "devolução" meet on one stem.
 */

create extension if not exists vector with schema extensions;
create extension if not exists pg_trgm with schema extensions;

/**
 * ----
 * Section - Text normalisation (before the tables: the stored tsvector uses it)
 * ----
 */

-- Lower case, NFC, accents folded, -ões/-veis plurals folded. IMMUTABLE because a
-- generated column calls it: changing its body later requires recomputing
-- document_chunks.fts (update ... set content = content).
create or replace function private.kb_fold(value text)
returns text
language sql
immutable
strict
parallel safe
set search_path = ''
as $$
  select regexp_replace(regexp_replace(
    translate(lower(normalize(value, nfc)),
              'áàâãäåāçćčéèêëēęíìîïīñńóòôõöøōúùûüūýÿ',
              'aaaaaaaccceeeeeeiiiiinnooooooouuuuuyy'),
    'oes\M', 'ao', 'g'),
    'veis\M', 'vel', 'g')
$$;
comment on function private.kb_fold(text) is 'Folds text for accent-insensitive Portuguese search: lower, NFC, accents removed, -ões→-ão, -veis→-vel.';

-- The full-text document of a chunk: its heading path (weight B) and its text (weight A),
-- both folded, through the Portuguese stemmer and stop words.
create or replace function private.kb_tsvector(heading_path text[], content text)
returns tsvector
language sql
immutable
parallel safe
set search_path = ''
as $$
  select setweight(to_tsvector('portuguese'::regconfig,
                               coalesce(private.kb_fold(array_to_string(heading_path, ' / ')), '')), 'B')
      || setweight(to_tsvector('portuguese'::regconfig, coalesce(private.kb_fold(content), '')), 'A')
$$;
comment on function private.kb_tsvector(text[], text) is 'Stored full-text vector of a chunk: folded heading path (weight B) + folded content (weight A), Portuguese config.';

revoke execute on function private.kb_fold(text), private.kb_tsvector(text[], text) from public, anon;
grant execute on function private.kb_fold(text), private.kb_tsvector(text[], text) to authenticated, service_role;

/**
 * ----
 * Section - Tables
 * ----
 */

-- Knowledge sources (seed 002 documents, one level up): what a tenant taught its bots.
create table if not exists public.knowledge_sources (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  -- FK to bots (on delete cascade) added by the automation module, which comes later
  bot_id uuid,
  title text not null check (length(title) between 1 and 300),
  kind text not null default 'file' check (kind in ('file', 'url', 'text', 'faq')),
  origin text check (length(origin) between 1 and 2048),
  mime_type text check (length(mime_type) <= 255),
  content text check (length(content) <= 2000000),
  content_hash text not null check (content_hash ~ '^[0-9a-f]{64}$'),
  status text not null default 'pending' check (status in ('pending', 'processing', 'ready', 'failed')),
  error text check (length(error) <= 4000),
  chunk_count integer not null default 0 check (chunk_count >= 0),
  character_count bigint not null default 0 check (character_count >= 0),
  token_count bigint not null default 0 check (token_count >= 0),
  embedding_model text check (length(embedding_model) between 1 and 200),
  metadata jsonb not null default '{}'::jsonb,
  created_by uuid references auth.users (id) on delete set null,
  processed_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  constraint knowledge_sources_scope_hash_key unique nulls not distinct (tenant_id, bot_id, content_hash),
  constraint knowledge_sources_text_has_content check (kind not in ('text', 'faq') or content is not null)
);
alter table public.knowledge_sources enable row level security;
create index if not exists knowledge_sources_tenant_bot_idx on public.knowledge_sources (tenant_id, bot_id);
create index if not exists knowledge_sources_created_by_idx on public.knowledge_sources (created_by);
create index if not exists knowledge_sources_todo_idx on public.knowledge_sources (updated_at)
  where status in ('pending', 'processing');
-- One source per origin in a scope: a changed file replaces its previous version.
create unique index if not exists knowledge_sources_scope_origin_key on public.knowledge_sources
  (tenant_id, coalesce(bot_id, '00000000-0000-0000-0000-000000000000'::uuid), origin)
  where origin is not null;
comment on table public.knowledge_sources is 'Knowledge a tenant gave its bots (file, URL, typed text, FAQ): one row per source, chunked and embedded by the worker into document_chunks.';
comment on column public.knowledge_sources.bot_id is 'Scope: null = the whole tenant (every bot); else only that bot searches it.';
comment on column public.knowledge_sources.origin is 'Where it came from: storage path, file path or URL. A new version of the same origin replaces the old one.';
comment on column public.knowledge_sources.content is 'The text itself for kinds text and faq (typed in the app); null for files and URLs, which live in storage.';
comment on column public.knowledge_sources.content_hash is 'hex SHA-256 of the source bytes (of `content` for text/faq, computed by a trigger). Unique per tenant + bot scope: adding the same file twice is a no-op.';
comment on column public.knowledge_sources.status is 'pending (waiting for the worker) → processing → ready | failed (see error).';
comment on column public.knowledge_sources.embedding_model is 'Embedder of its chunks (e.g. hashing-384, text-embedding-3-small@384); null for full-text only.';
comment on column public.knowledge_sources.token_count is 'Sum of the chunks'' token estimates (what embedding them costs).';
comment on column public.knowledge_sources.processed_at is 'When the source last became ready.';

-- Document chunks: the searchable pieces of a source.
create table if not exists public.document_chunks (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  source_id uuid not null,
  -- copied from the source by knowledge_insert_chunks so the bot filter needs no join
  -- (FK to bots, on delete cascade, and its index added by the automation module)
  bot_id uuid,
  position integer not null check (position >= 0),
  heading_path text[] not null default '{}',
  content text not null check (length(content) between 1 and 100000),
  metadata jsonb not null default '{}'::jsonb,
  content_hash text not null check (content_hash ~ '^[0-9a-f]{64}$'),
  token_count integer check (token_count >= 0),
  embedding extensions.vector(384),
  embedding_model text check (length(embedding_model) between 1 and 200),
  embedded_at timestamptz,
  fts tsvector generated always as (private.kb_tsvector(heading_path, content)) stored,
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, source_id, position),
  foreign key (tenant_id, source_id) references public.knowledge_sources (tenant_id, id) on delete cascade,
  constraint document_chunks_embedding_has_model check ((embedding is null) = (embedding_model is null))
);
alter table public.document_chunks enable row level security;
-- Search is always filtered by tenant (1 of thousands), so two paths:
--   small knowledge base (≤ 5,000 chunks, most tenants): exact scan of the tenant's
--     vectors through document_chunks_tenant_vector_idx, index-only (the vectors are in
--     the index: no heap, no TOAST; contiguous per tenant whatever the heap order) —
--     recall 1, a few ms;
--   big one: HNSW with iterative scan (pgvector ≥ 0.8) so the tenant filter keeps recall.
-- match_knowledge picks the path from the tenant's chunk count. The covering index costs
-- a second copy of each vector (~1.6 kB a chunk): the price of fast exact tenant scans.
create index if not exists document_chunks_embedding_hnsw_idx on public.document_chunks
  using hnsw (embedding extensions.vector_cosine_ops) with (m = 16, ef_construction = 64);
create index if not exists document_chunks_fts_idx on public.document_chunks using gin (fts);
drop index if exists public.document_chunks_tenant_model_idx;
create index if not exists document_chunks_tenant_vector_idx on public.document_chunks
  (tenant_id, embedding_model, bot_id) include (id, embedding);
comment on table public.document_chunks is 'Searchable pieces of knowledge sources: text, heading path, embedding and Portuguese full-text vector. Written only by the worker.';
comment on column public.document_chunks.position is 'Order of the chunk inside its source, from 0.';
comment on column public.document_chunks.heading_path is 'Headings above the chunk, outermost first (e.g. {"Políticas", "Trocas e devoluções"}).';
comment on column public.document_chunks.content_hash is 'hex SHA-256 of the chunk text: unchanged chunks keep their embeddings across re-ingestion by the worker.';
comment on column public.document_chunks.token_count is 'Token estimate of the chunk (the embedder''s tokenizer or chars/4).';
comment on column public.document_chunks.embedding is '384-d embedding (cosine). Only compared with queries embedded by the same embedding_model.';
comment on column public.document_chunks.embedding_model is 'Embedder that wrote `embedding`; null while not embedded.';
comment on column public.document_chunks.fts is 'Stored Portuguese tsvector of the accent-folded heading path (B) and content (A): private.kb_tsvector().';

-- TTS cache (seed 002 tts_cache): one synthesised audio per tenant and cache key.
create table if not exists public.tts_cache (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  cache_key text not null check (cache_key ~ '^[0-9a-f]{64}$'),
  provider text not null check (provider ~ '^[a-z0-9_.-]{2,40}$'),
  model text not null check (length(model) between 1 and 120),
  voice text not null check (length(voice) between 1 and 200),
  voice_version text check (length(voice_version) <= 60),
  language text check (length(language) <= 20),
  format text not null check (format ~ '^[a-z0-9_]{2,20}$'),
  settings jsonb not null default '{}'::jsonb,
  text_hash text not null check (text_hash ~ '^[0-9a-f]{64}$'),
  text_preview text not null check (length(text_preview) <= 200),
  characters integer not null check (characters >= 0),
  storage_path text not null check (length(storage_path) between 1 and 1024),
  size_bytes bigint not null check (size_bytes >= 0),
  duration_seconds numeric(10,3) check (duration_seconds >= 0),
  cost_usd numeric(20,10) not null default 0 check (cost_usd >= 0),
  hit_count bigint not null default 0 check (hit_count >= 0),
  last_hit_at timestamptz,
  cost_avoided_usd numeric(20,10) not null default 0 check (cost_avoided_usd >= 0),
  characters_avoided bigint not null default 0 check (characters_avoided >= 0),
  whatsapp_media_id text check (length(whatsapp_media_id) <= 200),
  media_number_id uuid,
  media_uploaded_at timestamptz,
  media_expires_at timestamptz,
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, cache_key),
  -- a removed number leaves its media id unusable (lookups match the number), not an error
  foreign key (tenant_id, media_number_id) references public.whatsapp_numbers (tenant_id, id)
    on delete set null (media_number_id),
  constraint tts_cache_media_complete check (
    (whatsapp_media_id is null and media_number_id is null and media_expires_at is null)
    or (whatsapp_media_id is not null and media_expires_at is not null))
);
alter table public.tts_cache enable row level security;
create index if not exists tts_cache_tenant_number_idx on public.tts_cache (tenant_id, media_number_id);
create index if not exists tts_cache_last_used_idx on public.tts_cache ((coalesce(last_hit_at, created_at)));
comment on table public.tts_cache is 'Synthesised speech shared by a tenant''s conversations: storage path of the audio, the WhatsApp media id of its last upload, hits and cost avoided. Written only by the worker.';
comment on column public.tts_cache.cache_key is 'hex SHA-256 computed by the worker (zapbase.tts.cache_key) over provider, model, voice + version, normalised text, language, instructions, speed and settings, format.';
comment on column public.tts_cache.format is 'Audio format as produced (ogg_opus for WhatsApp voice notes, mp3, ...).';
comment on column public.tts_cache.settings is 'Speed, instructions and voice settings the audio was made with (informative: the key already covers them).';
comment on column public.tts_cache.text_hash is 'hex SHA-256 of the normalised text. The full text is not kept (LGPD): it may name the customer.';
comment on column public.tts_cache.text_preview is 'First 200 characters of the text with personal data masked (private.mask_pii), for the admin screen.';
comment on column public.tts_cache.characters is 'Characters billed for the original synthesis.';
comment on column public.tts_cache.storage_path is 'Object path of the audio in storage; the worker deletes it when the row is evicted.';
comment on column public.tts_cache.cost_usd is 'What the original synthesis cost (USD).';
comment on column public.tts_cache.cost_avoided_usd is 'cost_usd × hits: what the cache saved.';
comment on column public.tts_cache.characters_avoided is 'characters × hits: characters not billed thanks to the cache.';
comment on column public.tts_cache.whatsapp_media_id is 'Media id of the last upload to WhatsApp. Valid only for media_number_id (media ids are per number) until media_expires_at.';
comment on column public.tts_cache.media_number_id is 'whatsapp_numbers.id that uploaded whatsapp_media_id.';
comment on column public.tts_cache.media_expires_at is 'When the uploaded media expires on WhatsApp (30 days after upload).';

/**
 * ----
 * Section - Triggers
 * ----
 */

-- Text and FAQ sources carry their text: the hash is computed here (frontends need not),
-- and an edited text goes back to the worker. created_by is the signed-in user.
create or replace function private.tg_knowledge_sources_prepare()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.content is not null then
    new.content_hash := encode(sha256(convert_to(new.content, 'UTF8')), 'hex');
  end if;
  if tg_op = 'INSERT' then
    new.created_by := coalesce(auth.uid(), new.created_by);
  elsif new.content is distinct from old.content then
    new.status := 'pending';
    new.error := null;
  end if;
  return new;
end;
$$;

drop trigger if exists _100_set_updated_at on public.knowledge_sources;
create trigger _100_set_updated_at before update on public.knowledge_sources
  for each row execute function private.tg_set_updated_at();
drop trigger if exists _200_prepare on public.knowledge_sources;
create trigger _200_prepare before insert or update on public.knowledge_sources
  for each row execute function private.tg_knowledge_sources_prepare();
-- Audit what people change, not the worker's status bookkeeping.
drop trigger if exists _900_audit on public.knowledge_sources;
create trigger _900_audit after insert or delete or update of title, content, origin, bot_id, metadata
  on public.knowledge_sources for each row execute function private.tg_audit();

/**
 * ----
 * Section - RLS policies
 * ----
 */

-- knowledge_sources: members read, managers write (frontends upload texts and FAQs)
drop policy if exists "Knowledge sources are visible to members" on public.knowledge_sources;
create policy "Knowledge sources are visible to members" on public.knowledge_sources
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Knowledge sources are added by managers" on public.knowledge_sources;
create policy "Knowledge sources are added by managers" on public.knowledge_sources
  for insert to authenticated with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Knowledge sources are edited by managers" on public.knowledge_sources;
create policy "Knowledge sources are edited by managers" on public.knowledge_sources
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')))
  with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Knowledge sources are removed by managers" on public.knowledge_sources;
create policy "Knowledge sources are removed by managers" on public.knowledge_sources
  for delete to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('manager')));

-- document_chunks: members read; only the service role writes
drop policy if exists "Document chunks are visible to members" on public.document_chunks;
create policy "Document chunks are visible to members" on public.document_chunks
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));

-- tts_cache: admins read their tenant's cache and its savings; only the service role writes
drop policy if exists "TTS cache is visible to tenant admins" on public.tts_cache;
create policy "TTS cache is visible to tenant admins" on public.tts_cache
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));

/**
 * ----
 * Section - Public functions (RPC): search
 * ----
 */

-- Hybrid search over a tenant's knowledge: full-text and vector candidates fused by
-- reciprocal rank, Σ weight / (rrf_k + rank).
--
-- SECURITY INVOKER on purpose: for a frontend the RLS policy of document_chunks applies
-- underneath the explicit tenant filter, so a mistake here still cannot show another
-- tenant's chunks. The tenant is resolved first:
--   signed-in user   tenant_id must be one of theirs (error 42501 otherwise); when
--                    omitted, their only tenant (error when they belong to several)
--   service role     tenant_id is required (it bypasses RLS)
-- Scope: chunks of the whole tenant (bot_id null) plus those of `bot_id` when given.
-- Full text: websearch_to_tsquery on the folded query ranks first the chunks matching
-- every term; chunks matching only some terms follow (ts_rank), so a question in natural
-- language ("qual o horario de voces?") still finds candidates. Operators of websearch
-- syntax (quotes, -word) shape only that first, strict pass.
-- Vector: only chunks embedded by `embedding_model` (like with like); on pgvector ≥ 0.8
-- with hnsw.iterative_scan = relaxed_order so the tenant filter keeps recall; ef_search
-- from zapbase.knowledge_ef_search when set, else max(100, 2 × candidates).
-- Without query_embedding it answers from full text alone; when that finds nothing, from
-- trigram word similarity of the folded text (typos: "orario"), scanning the tenant.
-- Each list takes max(4 × match_count, 40) candidates.
-- Paths: a tenant with ≤ zapbase.knowledge_exact_max_chunks chunks (default 5,000, from
-- knowledge_sources.chunk_count) is searched exactly (index-only vector scan, full text
-- checked row by row: recall 1, no GIN posting lists of common words across all tenants);
-- a bigger one through the GIN and HNSW indexes. The query is planned per call (EXECUTE)
-- so the planner sees the real tenant and query.
create or replace function public.match_knowledge(
  query_text text,
  query_embedding extensions.vector(384) default null,
  match_count integer default 5,
  embedding_model text default null,
  bot_id uuid default null,
  tenant_id uuid default null,
  full_text_weight double precision default 1,
  semantic_weight double precision default 1,
  rrf_k integer default 50
) returns table (
  chunk_id uuid,
  source_id uuid,
  title text,
  heading_path text[],
  content text,
  metadata jsonb,
  similarity double precision,
  fts_rank real,
  semantic_position integer,
  fts_position integer,
  score double precision
)
language plpgsql
stable
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_tenant uuid := match_knowledge.tenant_id;
  v_tenants uuid[];
  v_count integer := least(greatest(coalesce(match_knowledge.match_count, 5), 1), 100);
  v_candidates integer;
  v_ftw double precision := greatest(coalesce(match_knowledge.full_text_weight, 1), 0);
  v_semw double precision := greatest(coalesce(match_knowledge.semantic_weight, 1), 0);
  v_k integer := greatest(coalesce(match_knowledge.rrf_k, 50), 1);
  v_folded text := private.kb_fold(coalesce(match_knowledge.query_text, ''));
  v_strict tsquery;
  v_any tsquery;
  v_vector extensions.vector(384);
  v_ef integer;
  v_iterative boolean;
  v_old_ef text;
  v_old_iterative text;
  v_exact boolean;
begin
  if auth.uid() is not null then
    if v_tenant is null then
      v_tenants := array(select t from private.my_tenant_ids() t);
      if cardinality(v_tenants) = 1 then
        v_tenant := v_tenants[1];
      elsif cardinality(v_tenants) = 0 then
        raise exception 'you are not a member of any tenant' using errcode = '42501';
      else
        raise exception 'you belong to several tenants: pass tenant_id' using errcode = '22023';
      end if;
    elsif not private.is_member(v_tenant) then
      raise exception 'you are not a member of this tenant' using errcode = '42501';
    end if;
  elsif v_tenant is null then
    raise exception 'tenant_id is required when searching without a signed-in user'
      using errcode = '22023';
  end if;
  if match_knowledge.query_embedding is not null and match_knowledge.embedding_model is null then
    raise exception 'embedding_model is required with query_embedding: vectors of different models are not comparable'
      using errcode = '22023';
  end if;

  v_candidates := greatest(v_count * 4, 40);
  if v_ftw > 0 and v_folded <> '' then
    v_strict := websearch_to_tsquery('portuguese'::regconfig, v_folded);
    -- every lexeme of the query, OR-ed: the lenient pass
    select string_agg('''' || replace(replace(l, '\', '\\'), '''', '''''') || '''', ' | ')::tsquery
      into v_any
      from unnest(tsvector_to_array(to_tsvector('portuguese'::regconfig, v_folded))) l;
  end if;
  if v_semw > 0 then
    v_vector := match_knowledge.query_embedding;
  end if;

  if v_vector is not null then
    v_ef := least(greatest(coalesce(nullif(current_setting('zapbase.knowledge_ef_search', true), '')::integer,
                                    greatest(100, 2 * v_candidates)), v_candidates), 1000);
    v_iterative := coalesce((select string_to_array(e.extversion, '.')::integer[] >= array[0, 8]
                               from pg_catalog.pg_extension e where e.extname = 'vector'), false);
    v_old_ef := current_setting('hnsw.ef_search', true);
    perform set_config('hnsw.ef_search', v_ef::text, true);
    if v_iterative then
      v_old_iterative := current_setting('hnsw.iterative_scan', true);
      perform set_config('hnsw.iterative_scan', 'relaxed_order', true);
    end if;
  end if;

  -- Small knowledge bases are searched exactly: the tenant's rows through
  -- document_chunks_tenant_vector_idx (index-only: ids and vectors sit together), with
  -- predicates the GIN and HNSW indexes cannot take. Big ones use GIN and HNSW.
  v_exact := coalesce((select sum(s.chunk_count) from public.knowledge_sources s
                        where s.tenant_id = v_tenant), 0)
             <= coalesce(nullif(current_setting('zapbase.knowledge_exact_max_chunks', true), '')::bigint, 5000);
  return query execute format($sql$
  with fts_raw as materialized (
    select c.id, (c.fts operator(pg_catalog.@@) $1) as strict_match, ts_rank(c.fts, $2) as rank
      from public.document_chunks c
     where $2 is not null
       and c.tenant_id = $3
       and (c.bot_id is null or c.bot_id = $4)
       and %1$s
     order by 2 desc, 3 desc, c.id
     limit $5
  ),
  fts as (
    -- equal ranks share a position: a tie broken by random ids would make the fusion arbitrary
    select f.id, f.rank, rank() over (order by f.strict_match desc, f.rank desc)::integer as pos
      from fts_raw f
  ),
  sem_raw as materialized (
    select c.id, c.embedding operator(extensions.<=>) $6 as distance
      from public.document_chunks c
     where $6 is not null
       and c.tenant_id = $3
       and c.embedding_model = $7
       and (c.bot_id is null or c.bot_id = $4)
     order by %2$s
     limit $5
  ),
  sem as (
    -- relaxed_order may return rows slightly out of order: rank them again
    select s.id, s.distance, row_number() over (order by s.distance, s.id)::integer as pos
      from sem_raw s
  ),
  fused as (
    select coalesce(f.id, s.id) as id, f.rank, f.pos as fts_pos, 1 - s.distance as similarity,
           s.pos as sem_pos,
           coalesce($8 / ($10 + f.pos), 0) + coalesce($9 / ($10 + s.pos), 0) as score
      from fts f
      full join sem s on s.id = f.id
     -- on a tie the words the customer used (full text) win over closeness of meaning
     order by 6 desc, 2 desc nulls last, 4 desc nulls last, 1
     limit $11
  )
  select c.id, c.source_id, src.title, c.heading_path, c.content, c.metadata,
         fu.similarity, fu.rank, fu.sem_pos, fu.fts_pos, fu.score
    from fused fu
    join public.document_chunks c on c.id = fu.id
    join public.knowledge_sources src on src.tenant_id = c.tenant_id and src.id = c.source_id
   order by fu.score desc, fu.rank desc nulls last, fu.similarity desc nulls last, c.id
  $sql$,
    case when v_exact then 'coalesce(c.fts operator(pg_catalog.@@) $2, false)'
         else 'c.fts operator(pg_catalog.@@) $2' end,
    case when v_exact then '(c.embedding operator(extensions.<=>) $6) + 0'
         else 'c.embedding operator(extensions.<=>) $6' end)
  using v_strict, v_any, v_tenant, match_knowledge.bot_id, v_candidates, v_vector,
        match_knowledge.embedding_model, v_ftw, v_semw, v_k::double precision, v_count;

  if not found and v_vector is null and v_folded <> '' then
    -- nothing shares a lexeme with the query: try trigram similarity (typos)
    return query
    select c.id, c.source_id, src.title, c.heading_path, c.content, c.metadata,
           null::double precision, null::real, null::integer, null::integer, t.sim::double precision
      from public.document_chunks c
      cross join lateral (select extensions.word_similarity(v_folded, private.kb_fold(c.content)) as sim) t
      join public.knowledge_sources src on src.tenant_id = c.tenant_id and src.id = c.source_id
     where c.tenant_id = v_tenant
       and (c.bot_id is null or c.bot_id = match_knowledge.bot_id)
       and t.sim >= 0.5
     order by t.sim desc, c.id
     limit v_count;
  end if;

  if v_vector is not null then
    perform set_config('hnsw.ef_search', coalesce(v_old_ef, '40'), true);
    if v_iterative then
      perform set_config('hnsw.iterative_scan', coalesce(v_old_iterative, 'off'), true);
    end if;
  end if;
end;
$$;
comment on function public.match_knowledge(text, extensions.vector, integer, text, uuid, uuid,
  double precision, double precision, integer) is
  'Hybrid RAG search (full text + vector, reciprocal rank fusion) over one tenant''s knowledge: tenant-wide chunks plus those of bot_id. Members: their tenant; service role: tenant_id required.';

/**
 * ----
 * Section - Worker functions (service_role only; SECURITY DEFINER so the bookkeeping is
 * one round trip and identical whatever client calls it)
 * ----
 */

-- Registers a source the worker is about to ingest, by content hash. Returns
-- (source_id, action):
--   unchanged    same hash in this tenant + bot scope, ready, same embedding model:
--                nothing to do
--   in_progress  same hash, another worker is processing it (touched < 15 min ago)
--   replaced     the same hash failed / is pending / used another embedding model, or
--                the same origin now has another hash: its chunks are deleted, the row
--                takes the new hash and metadata, status processing
--   created      new row, status processing
-- After created/replaced: knowledge_insert_chunks, then knowledge_mark_ready (or _failed).
create or replace function public.knowledge_upsert_source(
  tenant_id uuid,
  content_hash text,
  title text,
  kind text default 'file',
  origin text default null,
  mime_type text default null,
  bot_id uuid default null,
  embedding_model text default null,
  metadata jsonb default '{}'::jsonb,
  created_by uuid default null
) returns table (source_id uuid, action text)
language plpgsql
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_source public.knowledge_sources;
  v_hash text := lower(knowledge_upsert_source.content_hash);
begin
  if knowledge_upsert_source.tenant_id is null then
    raise exception 'tenant_id is required' using errcode = '22023';
  end if;
  for attempt in 1..2 loop
    select * into v_source from public.knowledge_sources s
     where s.tenant_id = knowledge_upsert_source.tenant_id
       and s.bot_id is not distinct from knowledge_upsert_source.bot_id
       and s.content_hash = v_hash
     for update;
    if not found and knowledge_upsert_source.origin is not null then
      select * into v_source from public.knowledge_sources s
       where s.tenant_id = knowledge_upsert_source.tenant_id
         and s.bot_id is not distinct from knowledge_upsert_source.bot_id
         and s.origin = knowledge_upsert_source.origin
       for update;
    end if;

    if found then
      if v_source.content_hash = v_hash and v_source.status = 'ready'
         and v_source.embedding_model is not distinct from
             coalesce(knowledge_upsert_source.embedding_model, v_source.embedding_model) then
        return query select v_source.id, 'unchanged'::text;
        return;
      end if;
      if v_source.content_hash = v_hash and v_source.status = 'processing'
         and v_source.updated_at > now() - interval '15 minutes' then
        return query select v_source.id, 'in_progress'::text;
        return;
      end if;
      delete from public.document_chunks c
       where c.tenant_id = v_source.tenant_id and c.source_id = v_source.id;
      update public.knowledge_sources s
         set content_hash = v_hash,
             title = knowledge_upsert_source.title,
             kind = knowledge_upsert_source.kind,
             origin = coalesce(knowledge_upsert_source.origin, s.origin),
             mime_type = coalesce(knowledge_upsert_source.mime_type, s.mime_type),
             embedding_model = knowledge_upsert_source.embedding_model,
             metadata = coalesce(knowledge_upsert_source.metadata, '{}'::jsonb),
             status = 'processing', error = null,
             chunk_count = 0, character_count = 0, token_count = 0
       where s.id = v_source.id;
      return query select v_source.id, 'replaced'::text;
      return;
    end if;

    insert into public.knowledge_sources (tenant_id, bot_id, title, kind, origin, mime_type,
                                          content_hash, status, embedding_model, metadata, created_by)
    values (knowledge_upsert_source.tenant_id, knowledge_upsert_source.bot_id,
            knowledge_upsert_source.title, knowledge_upsert_source.kind,
            knowledge_upsert_source.origin, knowledge_upsert_source.mime_type, v_hash, 'processing',
            knowledge_upsert_source.embedding_model,
            coalesce(knowledge_upsert_source.metadata, '{}'::jsonb), knowledge_upsert_source.created_by)
    on conflict do nothing
    returning * into v_source;
    if found then
      return query select v_source.id, 'created'::text;
      return;
    end if;
    -- a concurrent call inserted the same hash or origin first: look again
  end loop;
  raise exception 'could not register the source: concurrent changes, try again' using errcode = '40001';
end;
$$;
comment on function public.knowledge_upsert_source(uuid, text, text, text, text, text, uuid, text, jsonb, uuid) is
  'Worker: registers a source by content hash. Returns (source_id, action): unchanged | in_progress | replaced (old chunks deleted) | created; status processing after the last two.';

-- Text and FAQ sources typed in the app (status pending), and stale processing ones
-- (a worker died): claims up to max_sources, deletes their old chunks, status processing.
-- Returns the claimed rows, with their content.
create or replace function public.knowledge_claim_sources(
  max_sources integer default 5,
  stale_after interval default interval '15 minutes'
) returns setof public.knowledge_sources
language plpgsql
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_ids uuid[];
begin
  v_ids := array(
    select s.id from public.knowledge_sources s
     where s.status = 'pending'
        or (s.status = 'processing' and s.updated_at < now() - knowledge_claim_sources.stale_after)
     order by s.updated_at
     limit greatest(knowledge_claim_sources.max_sources, 0)
       for update skip locked);
  delete from public.document_chunks c
   using public.knowledge_sources s
   where s.id = any (v_ids) and c.tenant_id = s.tenant_id and c.source_id = s.id;
  return query
  update public.knowledge_sources s
     set status = 'processing', error = null, chunk_count = 0, character_count = 0, token_count = 0
   where s.id = any (v_ids)
  returning s.*;
end;
$$;
comment on function public.knowledge_claim_sources(integer, interval) is
  'Worker: claims pending (and stale processing) sources with SKIP LOCKED, clears their chunks, sets processing; returns them.';

-- Writes chunks of a processing source in one round trip. `chunks` is a JSON array of
--   {"position": 0, "heading_path": ["Políticas", "Trocas"], "content": "...",
--    "content_hash": "<hex sha256>", "token_count": 120, "metadata": {...},
--    "embedding": [384 numbers] | "[...]", "embedding_model": "..."}
-- Only content is required: position defaults to the array index, content_hash to the
-- SHA-256 of content, embedding_model to the source's (a source without one, e.g. a FAQ
-- typed in the app, adopts the chunks'). A position already written is overwritten
-- (retries are safe). Returns the number of chunks written.
create or replace function public.knowledge_insert_chunks(tenant_id uuid, source_id uuid, chunks jsonb)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_source public.knowledge_sources;
  v_rows integer;
begin
  select * into v_source from public.knowledge_sources s
   where s.tenant_id = knowledge_insert_chunks.tenant_id and s.id = knowledge_insert_chunks.source_id;
  if not found then
    raise exception 'knowledge source not found' using errcode = 'P0002';
  end if;
  if v_source.status <> 'processing' then
    raise exception 'knowledge source is %: chunks are written while it is processing (knowledge_upsert_source or knowledge_claim_sources first)',
      v_source.status using errcode = '55000';
  end if;
  if jsonb_typeof(knowledge_insert_chunks.chunks) is distinct from 'array' then
    raise exception 'chunks must be a JSON array' using errcode = '22023';
  end if;
  if exists (select 1 from jsonb_array_elements(knowledge_insert_chunks.chunks) e
              where jsonb_typeof(e -> 'embedding') in ('array', 'string')
                and coalesce(e ->> 'embedding_model', v_source.embedding_model) is null) then
    raise exception 'an embedding needs its embedding_model (on the chunk or the source)' using errcode = '22023';
  end if;
  if v_source.embedding_model is null then
    -- a source typed in the app learns its embedder from its first embedded chunks
    v_source.embedding_model := (select min(e ->> 'embedding_model')
                                   from jsonb_array_elements(knowledge_insert_chunks.chunks) e
                                  where jsonb_typeof(e -> 'embedding') in ('array', 'string'));
  end if;

  insert into public.document_chunks as c (tenant_id, source_id, bot_id, position, heading_path,
    content, metadata, content_hash, token_count, embedding, embedding_model, embedded_at)
  select v_source.tenant_id, v_source.id, v_source.bot_id,
         coalesce((x.e ->> 'position')::integer, (x.n - 1)::integer),
         coalesce(array(select jsonb_array_elements_text(x.e -> 'heading_path')), '{}'),
         x.e ->> 'content',
         coalesce(x.e -> 'metadata', '{}'::jsonb),
         coalesce(lower(x.e ->> 'content_hash'), encode(sha256(convert_to(x.e ->> 'content', 'UTF8')), 'hex')),
         (x.e ->> 'token_count')::integer,
         v.embedding,
         case when v.embedding is not null then coalesce(x.e ->> 'embedding_model', v_source.embedding_model) end,
         case when v.embedding is not null then now() end
    from jsonb_array_elements(knowledge_insert_chunks.chunks) with ordinality as x(e, n)
    cross join lateral (
      select case when jsonb_typeof(x.e -> 'embedding') in ('array', 'string')
                  then (x.e ->> 'embedding')::extensions.vector(384) end as embedding) v
  on conflict (tenant_id, source_id, position) do update
     set heading_path = excluded.heading_path, content = excluded.content,
         metadata = excluded.metadata, content_hash = excluded.content_hash,
         token_count = excluded.token_count, embedding = excluded.embedding,
         embedding_model = excluded.embedding_model, embedded_at = excluded.embedded_at;
  get diagnostics v_rows = row_count;
  update public.knowledge_sources s  -- updated_at keeps the claim fresh
     set updated_at = now(), embedding_model = v_source.embedding_model
   where s.id = v_source.id;
  return v_rows;
end;
$$;
comment on function public.knowledge_insert_chunks(uuid, uuid, jsonb) is
  'Worker: writes a JSON array of chunks (position, heading_path, content, content_hash, token_count, metadata, embedding, embedding_model) of a processing source; returns rows written.';

-- Chunks whose embedding is missing or from another model, oldest sources first.
-- tenant_id null: every tenant (a model migration); source_id narrows to one source.
create or replace function public.knowledge_chunks_to_embed(
  embedding_model text,
  tenant_id uuid default null,
  source_id uuid default null,
  max_chunks integer default 100
) returns table (
  chunk_id uuid, chunk_tenant_id uuid, chunk_source_id uuid, heading_path text[], content text,
  content_hash text, current_model text
)
language sql
stable
security definer
set search_path = ''
as $$
  select c.id, c.tenant_id, c.source_id, c.heading_path, c.content, c.content_hash, c.embedding_model
    from public.document_chunks c
   where (knowledge_chunks_to_embed.tenant_id is null or c.tenant_id = knowledge_chunks_to_embed.tenant_id)
     and (knowledge_chunks_to_embed.source_id is null or c.source_id = knowledge_chunks_to_embed.source_id)
     and c.embedding_model is distinct from knowledge_chunks_to_embed.embedding_model
   order by c.tenant_id, c.source_id, c.position
   limit greatest(knowledge_chunks_to_embed.max_chunks, 0)
$$;
comment on function public.knowledge_chunks_to_embed(text, uuid, uuid, integer) is
  'Worker: chunks not yet embedded by embedding_model (missing or other model): (chunk_id, chunk_tenant_id, chunk_source_id, heading_path, content, content_hash, current_model).';

-- Stores embeddings: `embeddings` is [{"chunk_id": "...", "embedding": [384 numbers]}, ...].
-- A source whose chunks are now all embedded by this model records it. Returns the
-- number of chunks updated (unknown ids and other tenants' chunks are skipped).
create or replace function public.knowledge_set_embeddings(tenant_id uuid, embedding_model text, embeddings jsonb)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_rows integer;
  v_sources uuid[];
begin
  if knowledge_set_embeddings.embedding_model is null then
    raise exception 'embedding_model is required' using errcode = '22023';
  end if;
  with updated as (
    update public.document_chunks c
       set embedding = (x.e ->> 'embedding')::extensions.vector(384),
           embedding_model = knowledge_set_embeddings.embedding_model,
           embedded_at = now()
      from jsonb_array_elements(knowledge_set_embeddings.embeddings) x(e)
     where c.tenant_id = knowledge_set_embeddings.tenant_id
       and c.id = (x.e ->> 'chunk_id')::uuid
    returning c.source_id
  )
  select count(*)::integer, array_agg(distinct u.source_id) into v_rows, v_sources from updated u;
  update public.knowledge_sources s
     set embedding_model = knowledge_set_embeddings.embedding_model
   where s.tenant_id = knowledge_set_embeddings.tenant_id
     and s.id = any (v_sources)
     and s.embedding_model is distinct from knowledge_set_embeddings.embedding_model
     and not exists (select 1 from public.document_chunks c
                      where c.tenant_id = s.tenant_id and c.source_id = s.id
                        and c.embedding_model is distinct from knowledge_set_embeddings.embedding_model);
  return v_rows;
end;
$$;
comment on function public.knowledge_set_embeddings(uuid, text, jsonb) is
  'Worker: sets embeddings in bulk ([{chunk_id, embedding}]) for one tenant; returns chunks updated.';

-- Closes an ingestion: counts from the chunks, status ready. Refuses while chunks of the
-- source's embedding model are still missing.
create or replace function public.knowledge_mark_ready(tenant_id uuid, source_id uuid)
returns public.knowledge_sources
language plpgsql
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_source public.knowledge_sources;
  v_missing integer;
begin
  select * into v_source from public.knowledge_sources s
   where s.tenant_id = knowledge_mark_ready.tenant_id and s.id = knowledge_mark_ready.source_id
   for update;
  if not found then
    raise exception 'knowledge source not found' using errcode = 'P0002';
  end if;
  if v_source.embedding_model is not null then
    select count(*) into v_missing from public.document_chunks c
     where c.tenant_id = v_source.tenant_id and c.source_id = v_source.id
       and c.embedding_model is distinct from v_source.embedding_model;
    if v_missing > 0 then
      raise exception '% chunk(s) of this source are not embedded with %', v_missing, v_source.embedding_model
        using errcode = '55000';
    end if;
  end if;
  update public.knowledge_sources s
     set status = 'ready', error = null, processed_at = now(),
         (chunk_count, character_count, token_count) = (
           select count(*), coalesce(sum(length(c.content)), 0), coalesce(sum(c.token_count), 0)
             from public.document_chunks c
            where c.tenant_id = s.tenant_id and c.source_id = s.id)
   where s.id = v_source.id
  returning * into v_source;
  return v_source;
end;
$$;
comment on function public.knowledge_mark_ready(uuid, uuid) is
  'Worker: status ready with chunk/character/token counts; fails while chunks lack embeddings of the source''s model.';

-- Records a failed ingestion; its partial chunks are deleted so the source contributes
-- nothing until it is ingested again.
create or replace function public.knowledge_mark_failed(tenant_id uuid, source_id uuid, error text)
returns public.knowledge_sources
language plpgsql
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_source public.knowledge_sources;
begin
  delete from public.document_chunks c
   where c.tenant_id = knowledge_mark_failed.tenant_id and c.source_id = knowledge_mark_failed.source_id;
  update public.knowledge_sources s
     set status = 'failed', error = left(coalesce(knowledge_mark_failed.error, 'unknown error'), 4000),
         chunk_count = 0, character_count = 0, token_count = 0
   where s.tenant_id = knowledge_mark_failed.tenant_id and s.id = knowledge_mark_failed.source_id
  returning * into v_source;
  if not found then
    raise exception 'knowledge source not found' using errcode = 'P0002';
  end if;
  return v_source;
end;
$$;
comment on function public.knowledge_mark_failed(uuid, uuid, text) is
  'Worker: status failed with the error; deletes the source''s partial chunks.';

-- TTS cache hit or miss. On a hit (one row) it counts the hit and the cost avoided in the
-- same statement, and says whether the stored WhatsApp media id can be sent from
-- `number_id`: same number and not expiring within media_margin. On a miss: no row.
create or replace function public.tts_cache_lookup(
  tenant_id uuid,
  cache_key text,
  number_id uuid default null,
  media_margin interval default interval '1 day'
) returns table (
  cache_id uuid, storage_path text, format text, size_bytes bigint, duration_seconds numeric,
  characters integer, cost_usd numeric, hit_count bigint, cost_avoided_usd numeric,
  whatsapp_media_id text, media_valid boolean, media_expires_at timestamptz
)
language sql
security definer
set search_path = ''
as $$
  with hit as (
    update public.tts_cache t
       set hit_count = t.hit_count + 1,
           last_hit_at = now(),
           cost_avoided_usd = t.cost_avoided_usd + t.cost_usd,
           characters_avoided = t.characters_avoided + t.characters
     where t.tenant_id = tts_cache_lookup.tenant_id and t.cache_key = lower(tts_cache_lookup.cache_key)
    returning t.*
  )
  select h.id, h.storage_path, h.format, h.size_bytes, h.duration_seconds, h.characters, h.cost_usd,
         h.hit_count, h.cost_avoided_usd, v.ok, v.ok is not null, h.media_expires_at
    from hit h
    cross join lateral (
      select case when h.whatsapp_media_id is not null
                   and h.media_number_id = tts_cache_lookup.number_id
                   and h.media_expires_at > now() + coalesce(tts_cache_lookup.media_margin, interval '0')
                  then h.whatsapp_media_id end as ok) v
$$;
comment on function public.tts_cache_lookup(uuid, text, uuid, interval) is
  'Worker: TTS cache lookup; on a hit counts it (hit_count, last_hit_at, cost/characters avoided) and returns the row with whatsapp_media_id only when valid for number_id (media_valid). No row: miss.';

-- Stores a fresh synthesis. When the key is already there (two workers synthesised the
-- same text) the existing row wins: stored = false and its storage_path is returned, so
-- the caller deletes its own duplicate object if the paths differ.
create or replace function public.tts_cache_store(
  tenant_id uuid,
  cache_key text,
  provider text,
  model text,
  voice text,
  format text,
  speech_text text,
  storage_path text,
  size_bytes bigint,
  characters integer,
  cost_usd numeric,
  duration_seconds numeric default null,
  language text default null,
  voice_version text default null,
  settings jsonb default '{}'::jsonb
) returns table (cache_id uuid, cache_storage_path text, stored boolean)
language plpgsql
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_text text := btrim(regexp_replace(normalize(coalesce(tts_cache_store.speech_text, ''), nfc), '\s+', ' ', 'g'));
  v_id uuid;
begin
  insert into public.tts_cache (tenant_id, cache_key, provider, model, voice, voice_version, language,
                                format, settings, text_hash, text_preview, characters, storage_path,
                                size_bytes, duration_seconds, cost_usd)
  values (tts_cache_store.tenant_id, lower(tts_cache_store.cache_key), lower(tts_cache_store.provider),
          tts_cache_store.model, tts_cache_store.voice, tts_cache_store.voice_version, tts_cache_store.language,
          lower(tts_cache_store.format), coalesce(tts_cache_store.settings, '{}'::jsonb),
          encode(sha256(convert_to(v_text, 'UTF8')), 'hex'), left(private.mask_pii(v_text), 200),
          tts_cache_store.characters, tts_cache_store.storage_path, tts_cache_store.size_bytes,
          tts_cache_store.duration_seconds, coalesce(tts_cache_store.cost_usd, 0))
  on conflict (tenant_id, cache_key) do nothing
  returning id into v_id;
  if v_id is not null then
    return query select v_id, tts_cache_store.storage_path, true;
  else
    return query select t.id, t.storage_path, false from public.tts_cache t
                  where t.tenant_id = tts_cache_store.tenant_id and t.cache_key = lower(tts_cache_store.cache_key);
  end if;
end;
$$;
comment on function public.tts_cache_store(uuid, text, text, text, text, text, text, text, bigint, integer,
  numeric, numeric, text, text, jsonb) is
  'Worker: stores a synthesis (text kept as hash + masked 200-char preview). Returns (cache_id, storage_path, stored); stored=false when the key existed: keep its path, delete yours.';

-- Remembers the media id of the latest upload of a cached audio from a WhatsApp number
-- (replacing the previous one: one media id per row). expires_at defaults to 30 days.
-- Returns false when the key is not in the cache.
create or replace function public.tts_cache_set_media(
  tenant_id uuid,
  cache_key text,
  number_id uuid,
  media_id text,
  expires_at timestamptz default null
) returns boolean
language plpgsql
security definer
set search_path = ''
as $$
#variable_conflict use_column
begin
  if tts_cache_set_media.number_id is null or tts_cache_set_media.media_id is null then
    raise exception 'number_id and media_id are required' using errcode = '22023';
  end if;
  update public.tts_cache t
     set whatsapp_media_id = tts_cache_set_media.media_id,
         media_number_id = tts_cache_set_media.number_id,
         media_uploaded_at = now(),
         media_expires_at = coalesce(tts_cache_set_media.expires_at, now() + interval '30 days')
   where t.tenant_id = tts_cache_set_media.tenant_id and t.cache_key = lower(tts_cache_set_media.cache_key);
  return found;
end;
$$;
comment on function public.tts_cache_set_media(uuid, text, uuid, text, timestamptz) is
  'Worker: records the WhatsApp media id of the latest upload (per number, expiring in 30 days by default). false: key not cached.';

/**
 * ----
 * Section - Jobs (the worker's scheduler: it deletes the storage objects returned). A run
 * leaves a job_runs row; a failure is recorded there instead of raised.
 * ----
 */

-- Evicts TTS cache rows: first every row not used (created or hit) within max_age; then,
-- least recently used first, until the total size fits max_total_bytes (the tenant's
-- when tenant_id is given, else all tenants together) and, in an all-tenant run, each
-- tenant's size fits max_tenant_bytes when given. Returns the evicted rows' storage
-- paths (reason 'age' or 'size'); job_runs.details keeps counts, bytes and the paths.
-- Run it from the worker, not pg_cron: only the worker can delete the audio objects.
create or replace function private.job_tts_cache_evict(
  max_age interval default interval '90 days',
  max_total_bytes bigint default 10737418240,
  tenant_id uuid default null,
  max_tenant_bytes bigint default null
) returns table (evicted_tenant_id uuid, cache_key text, storage_path text, size_bytes bigint, reason text)
language plpgsql
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_started timestamptz := clock_timestamp();
  v_by_age public.tts_cache[];
  v_by_size public.tts_cache[];
  v_evicted jsonb;
begin
  with gone as (
    delete from public.tts_cache t
     where (job_tts_cache_evict.tenant_id is null or t.tenant_id = job_tts_cache_evict.tenant_id)
       and coalesce(t.last_hit_at, t.created_at) < now() - job_tts_cache_evict.max_age
    returning t.*
  )
  select coalesce(array_agg(g), '{}') into v_by_age from gone g;

  with ranked as (
    -- running totals from the most recently used row down: what would be kept
    select t.id,
           sum(t.size_bytes) over (order by coalesce(t.last_hit_at, t.created_at) desc, t.id) as kept_total,
           sum(t.size_bytes) over (partition by t.tenant_id
                                   order by coalesce(t.last_hit_at, t.created_at) desc, t.id) as kept_tenant
      from public.tts_cache t
     where job_tts_cache_evict.tenant_id is null or t.tenant_id = job_tts_cache_evict.tenant_id
  ),
  gone as (
    delete from public.tts_cache t
     using ranked r
     where t.id = r.id
       and (r.kept_total > job_tts_cache_evict.max_total_bytes
            or (job_tts_cache_evict.tenant_id is null and r.kept_tenant > job_tts_cache_evict.max_tenant_bytes))
    returning t.*
  )
  select coalesce(array_agg(g), '{}') into v_by_size from gone g;

  select coalesce(jsonb_agg(e.storage_path), '[]'::jsonb) into v_evicted
    from (select a.storage_path from unnest(v_by_age) a
          union all select b.storage_path from unnest(v_by_size) b) e;
  perform private.record_job_run('tts_cache_evict', v_started, cardinality(v_by_age) + cardinality(v_by_size),
          jsonb_build_object(
            'max_age', job_tts_cache_evict.max_age::text,
            'max_total_bytes', job_tts_cache_evict.max_total_bytes,
            'max_tenant_bytes', job_tts_cache_evict.max_tenant_bytes,
            'evicted_by_age', cardinality(v_by_age),
            'evicted_by_size', cardinality(v_by_size),
            'bytes_freed', (select coalesce(sum(a.size_bytes), 0) from unnest(v_by_age) a)
                         + (select coalesce(sum(b.size_bytes), 0) from unnest(v_by_size) b),
            'storage_paths', v_evicted),
          tenant_id => job_tts_cache_evict.tenant_id);

  return query
    select a.tenant_id, a.cache_key, a.storage_path, a.size_bytes, 'age'::text from unnest(v_by_age) a
    union all
    select b.tenant_id, b.cache_key, b.storage_path, b.size_bytes, 'size'::text from unnest(v_by_size) b;
exception when others then
  perform private.record_job_run('tts_cache_evict', v_started, null,
          jsonb_build_object('max_age', job_tts_cache_evict.max_age::text,
                             'max_total_bytes', job_tts_cache_evict.max_total_bytes),
          sqlerrm, job_tts_cache_evict.tenant_id);
end;
$$;
comment on function private.job_tts_cache_evict(interval, bigint, uuid, bigint) is
  'Job: evicts TTS cache rows by age, then least recently used until sizes fit; returns (tenant, key, storage_path, size, reason) for the worker to delete the objects; records job_runs.';

-- A big tenant gets an HNSW index of its own: the shared one, filtered by tenant, must walk
-- ~(all chunks / the tenant's) nodes per match even with iterative scan (pgvector ≥ 0.8;
-- before it, recall collapses instead); a partial index holds only the tenant's vectors,
-- so its search costs what a small corpus costs, on any pgvector version. The planner
-- takes it by itself: match_knowledge plans each call with the tenant as a constant.
-- Created above zapbase.knowledge_exact_max_chunks chunks (the exact path's limit, 5,000),
-- dropped at half of it (no flapping) or when the tenant is gone. CREATE INDEX holds
-- writes to document_chunks for the build (about a second per 2,000 chunks), once per
-- tenant crossing the limit.
create or replace function private.knowledge_tenant_index_name(tenant_id uuid)
returns text
language sql
immutable
set search_path = ''
as $$ select 'document_chunks_hnsw_' || replace(knowledge_tenant_index_name.tenant_id::text, '-', '') $$;
comment on function private.knowledge_tenant_index_name(uuid) is 'Name of the partial HNSW index of a big tenant''s chunks (job_knowledge_tenant_indexes).';

create or replace function private.job_knowledge_tenant_indexes(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_limit bigint := coalesce(nullif(current_setting('zapbase.knowledge_exact_max_chunks', true), '')::bigint, 5000);
  v_name text;
  v_tenant uuid;
  v_changed integer := 0;
begin
  for v_tenant, v_name in
    select s.tenant_id, private.knowledge_tenant_index_name(s.tenant_id) from public.knowledge_sources s
     group by s.tenant_id having sum(s.chunk_count) > v_limit
  loop
    continue when exists (select 1 from pg_catalog.pg_indexes i
                           where i.schemaname = 'public' and i.indexname = v_name);
    execute format('create index %I on public.document_chunks using hnsw (embedding extensions.vector_cosine_ops)'
                   ' with (m = 16, ef_construction = 64) where tenant_id = %L', v_name, v_tenant);
    v_changed := v_changed + 1;
  end loop;
  for v_name in
    select i.indexname from pg_catalog.pg_indexes i
     where i.schemaname = 'public' and i.tablename = 'document_chunks'
       and i.indexname like 'document\_chunks\_hnsw\_%'
       and coalesce((select sum(s.chunk_count) from public.knowledge_sources s
                      where private.knowledge_tenant_index_name(s.tenant_id) = i.indexname), 0) <= v_limit / 2
  loop
    execute format('drop index public.%I', v_name);
    v_changed := v_changed + 1;
  end loop;
  return v_changed;
end;
$$;
comment on function private.job_knowledge_tenant_indexes(timestamptz) is 'Job: a partial HNSW index for each tenant above zapbase.knowledge_exact_max_chunks chunks, dropped at half of it; returns indexes created + dropped.';

insert into public.job_schedules (name, description, cron, function_name, runner) values
  ('tts_cache_evict', 'Evicts old and least recently used TTS audio (the worker deletes the files).', '40 3 * * *',
   'private.job_tts_cache_evict', 'worker'),
  ('knowledge_tenant_indexes', 'Gives each tenant above the exact-search limit its own HNSW index (drops it below half).',
   '25 * * * *', 'private.job_knowledge_tenant_indexes', 'database')
on conflict (name) do update set description = excluded.description, function_name = excluded.function_name,
  runner = excluded.runner;

/**
 * ----
 * Section - Grants
 * ----
 */
grant select, delete on public.knowledge_sources to authenticated;
grant insert (tenant_id, bot_id, title, kind, origin, mime_type, content, content_hash, metadata)
  on public.knowledge_sources to authenticated;
grant update (title, origin, mime_type, content, metadata) on public.knowledge_sources to authenticated;
grant select on public.document_chunks, public.tts_cache to authenticated;
grant select, insert, update, delete on public.knowledge_sources, public.document_chunks, public.tts_cache
  to service_role;

revoke execute on function
  public.match_knowledge(text, extensions.vector, integer, text, uuid, uuid, double precision, double precision, integer),
  public.knowledge_upsert_source(uuid, text, text, text, text, text, uuid, text, jsonb, uuid),
  public.knowledge_claim_sources(integer, interval),
  public.knowledge_insert_chunks(uuid, uuid, jsonb),
  public.knowledge_chunks_to_embed(text, uuid, uuid, integer),
  public.knowledge_set_embeddings(uuid, text, jsonb),
  public.knowledge_mark_ready(uuid, uuid),
  public.knowledge_mark_failed(uuid, uuid, text),
  public.tts_cache_lookup(uuid, text, uuid, interval),
  public.tts_cache_store(uuid, text, text, text, text, text, text, text, bigint, integer, numeric, numeric, text, text, jsonb),
  public.tts_cache_set_media(uuid, text, uuid, text, timestamptz),
  private.tg_knowledge_sources_prepare(),
  private.job_tts_cache_evict(interval, bigint, uuid, bigint)
  from public, anon, authenticated;
grant execute on function
  public.match_knowledge(text, extensions.vector, integer, text, uuid, uuid, double precision, double precision, integer)
  to authenticated, service_role;
grant execute on function
  public.knowledge_upsert_source(uuid, text, text, text, text, text, uuid, text, jsonb, uuid),
  public.knowledge_claim_sources(integer, interval),
  public.knowledge_insert_chunks(uuid, uuid, jsonb),
  public.knowledge_chunks_to_embed(text, uuid, uuid, integer),
  public.knowledge_set_embeddings(uuid, text, jsonb),
  public.knowledge_mark_ready(uuid, uuid),
  public.knowledge_mark_failed(uuid, uuid, text),
  public.tts_cache_lookup(uuid, text, uuid, interval),
  public.tts_cache_store(uuid, text, text, text, text, text, text, text, bigint, integer, numeric, numeric, text, text, jsonb),
  public.tts_cache_set_media(uuid, text, uuid, text, timestamptz),
  private.job_tts_cache_evict(interval, bigint, uuid, bigint)
  to service_role;
