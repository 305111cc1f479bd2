/**
 * Zapbase module 4: ai — the Postgres half of the AI gateway.
 * Model registry and prices (seed 002 ai_models_registry, pricing_config), exchange rates,
 * gateway policies (shared_gateway_config), per-tenant budgets inheriting from the plan
 * (plan_budgets, client_budgets), reservations, one usage log for every provider call
 * (gateway_usage_logs, usage_logs, tts_usage_logs, 004 ai_usage) and the exact response
 * cache (gateway_cache_performance).
 *
 * The worker's Ledger calls these functions, SECURITY DEFINER and executable by
 * service_role only. A reply costs two round trips:
 *   ai_begin   cache lookup, then (on a miss) a budget reservation
 *   ai_finish  settlement of the reservation, then the cache store
 * The same steps one by one: ai_cache_get, ai_reserve, ai_settle, ai_cache_put; usage that
 * had no reservation (a TTS cache hit, embeddings at ingestion): ai_record_usage.
 *
 * Budget enforcement learns from LiteLLM's issues (reference/ai-gateway.md): every check
 * and counter change happens in ONE transaction under row locks on the tenant's budget
 * rows; a reservation adds its estimate to reserved_* before the provider call, so
 * concurrent calls see each other; settlement swaps the estimate for the actual cost;
 * every active window is checked; a window whose period is over is rolled before it is
 * read. Lock order everywhere: the tenant's budget rows by id, then its reservations.
 *
 * Money: prices are USD per million units; per-call costs and budget usage are
 * numeric(20,10), because one reply costs a fraction of a cent and rounding each call to
 * cents would make a budget drift from the sum of its calls. Limits stay numeric(14,4).
 * Tokens follow Anthropic: input_tokens EXCLUDES cache reads and writes. OpenAI callers
 * pass input = prompt_tokens - cached_tokens and cache_read = cached_tokens.
 */

/**
 * ----
 * Section - Tables
 * ----
 */

-- Model registry (seed 002 ai_models_registry): what the gateway may call, at list price.
-- Platform rows (tenant_id null: the catalogue of Anthropic, OpenAI, Groq, Gemini,
-- OpenRouter... models) are read-only for tenants; a tenant adds its own chat models for the
-- providers of its `llm` integrations (a self-hosted server, an OpenRouter model the
-- catalogue lacks), priced as the tenant says, usable by that tenant only.
create table if not exists public.ai_models (
  id uuid primary key default gen_random_uuid(),
  -- null: a platform model every tenant may use
  tenant_id uuid references public.tenants (id) on delete cascade,
  provider text not null check (provider ~ '^[a-z0-9_-]{2,40}$'),
  model text not null check (length(model) between 1 and 120),
  gateway_id text not null check (gateway_id ~ '^[a-z0-9_-]+/[A-Za-z0-9_.:/-]+$'),
  api_type text not null default 'chat' check (api_type in ('chat', 'tts', 'embedding', 'transcription')),
  capabilities jsonb not null default '{}'::jsonb,
  context_window integer check (context_window > 0),
  max_output_tokens integer check (max_output_tokens > 0),
  input_usd_per_mtok numeric(12,6) not null default 0 check (input_usd_per_mtok >= 0),
  output_usd_per_mtok numeric(12,6) not null default 0 check (output_usd_per_mtok >= 0),
  cache_read_usd_per_mtok numeric(12,6) not null default 0 check (cache_read_usd_per_mtok >= 0),
  cache_write_usd_per_mtok numeric(12,6) not null default 0 check (cache_write_usd_per_mtok >= 0),
  usd_per_audio_minute numeric(12,6) not null default 0 check (usd_per_audio_minute >= 0),
  usd_per_mchars numeric(12,6) not null default 0 check (usd_per_mchars >= 0),
  is_active boolean not null default true,
  description text check (length(description) <= 500),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique nulls not distinct (tenant_id, gateway_id),
  unique nulls not distinct (tenant_id, provider, model)
);
alter table public.ai_models enable row level security;
create index if not exists ai_models_tenant_id_idx on public.ai_models (tenant_id);
comment on table public.ai_models is 'AI models the gateway may call, with USD list prices. Reference data, written by the platform.';
comment on column public.ai_models.model is 'The provider''s model name, sent in the API call (e.g. claude-sonnet-4-20250514).';
comment on column public.ai_models.gateway_id is 'Stable id used by policies, the worker and usage logs: provider/alias (e.g. anthropic/claude-sonnet-4).';
comment on column public.ai_models.tenant_id is 'Null for the platform catalogue; else the tenant whose own provider (an llm integration of the same provider name) serves this chat model, at the prices given here.';
comment on column public.ai_models.capabilities is 'Open shape, e.g. {"tools": true, "vision": true, "dimensions": 384, "voices": ["alloy"]}. structured_output: "json_schema" (response_format with a JSON schema) or "json_object" (JSON mode, schema in the prompt); absent: the schema goes in the prompt only. Answers are validated against the schema either way.';
comment on column public.ai_models.input_usd_per_mtok is 'USD per million uncached input tokens.';
comment on column public.ai_models.cache_read_usd_per_mtok is 'USD per million input tokens read from the provider''s prompt cache.';
comment on column public.ai_models.cache_write_usd_per_mtok is 'USD per million input tokens written to the provider''s prompt cache (Anthropic: 1.25× input for 5 min).';
comment on column public.ai_models.usd_per_audio_minute is 'Transcription price per minute of audio.';
comment on column public.ai_models.usd_per_mchars is 'TTS price per million input characters.';

-- What a tenant pays (seed 002 pricing_config): a markup over list prices, or fixed prices.
create table if not exists public.pricing_overrides (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  -- null: every model of the tenant without a model-specific row
  model_id uuid references public.ai_models (id) on delete cascade,
  markup_pct numeric(7,3) not null default 0 check (markup_pct > -100 and markup_pct <= 1000),
  input_usd_per_mtok numeric(12,6) check (input_usd_per_mtok >= 0),
  output_usd_per_mtok numeric(12,6) check (output_usd_per_mtok >= 0),
  cache_read_usd_per_mtok numeric(12,6) check (cache_read_usd_per_mtok >= 0),
  cache_write_usd_per_mtok numeric(12,6) check (cache_write_usd_per_mtok >= 0),
  usd_per_audio_minute numeric(12,6) check (usd_per_audio_minute >= 0),
  usd_per_mchars numeric(12,6) check (usd_per_mchars >= 0),
  note text check (length(note) <= 500),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique nulls not distinct (tenant_id, model_id)
);
alter table public.pricing_overrides enable row level security;
create index if not exists pricing_overrides_model_id_idx on public.pricing_overrides (model_id);
comment on table public.pricing_overrides is 'Per-tenant prices: a fixed USD price replaces the list price of that unit; otherwise list × (1 + markup_pct/100). The model-specific row beats the tenant-wide one.';
comment on column public.pricing_overrides.markup_pct is 'Percent over list price for units without a fixed price here (20 = +20 %).';

-- USD→BRL (and other) exchange rates by day (BCB PTAX or similar).
create table if not exists public.fx_rates (
  base text not null default 'USD' check (base ~ '^[A-Z]{3}$'),
  quote text not null default 'BRL' check (quote ~ '^[A-Z]{3}$'),
  rate_date date not null,
  rate numeric(12,6) not null check (rate > 0),
  source text check (length(source) <= 200),
  created_at timestamptz not null default now(),
  primary key (base, quote, rate_date)
);
alter table public.fx_rates enable row level security;
comment on table public.fx_rates is 'Exchange rates by day. A cost uses the latest rate on or before its day (São Paulo calendar): weekends and holidays reuse the last business day.';

-- Gateway policies (seed 002 shared_gateway_config): the fallback chain and its knobs.
create table if not exists public.gateway_policies (
  id uuid primary key default gen_random_uuid(),
  -- null: a platform policy every tenant may use; exactly one of those is the default
  tenant_id uuid references public.tenants (id) on delete cascade,
  name text not null check (length(name) between 1 and 80),
  chain text[] not null check (cardinality(chain) between 1 and 8),
  timeout_ms integer not null default 20000 check (timeout_ms between 500 and 300000),
  max_retries smallint not null default 1 check (max_retries between 0 and 5),
  failures_before_cooldown smallint not null default 3 check (failures_before_cooldown between 1 and 100),
  cooldown_seconds integer not null default 30 check (cooldown_seconds between 0 and 3600),
  cache_ttl_seconds integer not null default 3600 check (cache_ttl_seconds between 0 and 2592000),
  is_default boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id)
);
alter table public.gateway_policies enable row level security;
create unique index if not exists gateway_policies_one_platform_default on public.gateway_policies ((true))
  where tenant_id is null and is_default;
create unique index if not exists gateway_policies_one_tenant_default on public.gateway_policies (tenant_id)
  where tenant_id is not null and is_default;
comment on table public.gateway_policies is 'How the worker calls models: ordered fallback chain, per-call timeout, retries, cooldown of a failing model, cache TTL. Platform rows (tenant_id null) and tenant overrides.';
comment on column public.gateway_policies.chain is 'ai_models.gateway_id values tried in order (e.g. {anthropic/claude-haiku-4-5, openai/gpt-4o-mini, local/local-small}).';
comment on column public.gateway_policies.timeout_ms is 'Timeout of one provider call; the worker then falls back to the next model.';
comment on column public.gateway_policies.cooldown_seconds is 'A model failing failures_before_cooldown times in a row is skipped for this long.';
comment on column public.gateway_policies.cache_ttl_seconds is 'Lifetime of exact response cache entries made under this policy; 0 disables the cache.';
comment on column public.gateway_policies.is_default is 'The tenant''s default policy (or, with tenant_id null, the platform default) for bots without their own.';

-- Budgets (seed 002 plan_budgets, client_budgets): spending windows of a tenant.
create table if not exists public.budgets (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  kind text not null default 'custom' check (kind in ('plan', 'custom')),
  name text not null default 'Limite personalizado' check (length(name) between 1 and 80),
  inherits_from_plan boolean not null default false,
  mode text not null default 'brl' check (mode in ('tokens', 'brl', 'both')),
  period text not null default 'monthly' check (period in ('daily', 'weekly', 'monthly')),
  token_limit bigint check (token_limit >= 0),
  brl_limit numeric(14,4) check (brl_limit >= 0),
  notify_thresholds integer[] not null default '{80,90,100}'
    check (cardinality(notify_thresholds) <= 10 and 0 < all (notify_thresholds) and 1000 >= all (notify_thresholds)),
  notified_thresholds integer[] not null default '{}',
  pause_at_limit boolean not null default true,
  is_active boolean not null default true,
  paused_reason text check (paused_reason in ('limit', 'manual')),
  paused_at timestamptz,
  period_start timestamptz not null,
  period_end timestamptz not null,
  used_tokens bigint not null default 0,
  used_usd numeric(20,10) not null default 0,
  used_brl numeric(20,10) not null default 0,
  reserved_tokens bigint not null default 0 check (reserved_tokens >= 0),
  reserved_brl numeric(20,10) not null default 0 check (reserved_brl >= 0),
  last_reset_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  check (period_end > period_start)
);
alter table public.budgets enable row level security;
create unique index if not exists budgets_one_plan_window on public.budgets (tenant_id) where kind = 'plan';
create index if not exists budgets_period_end_idx on public.budgets (period_end);
comment on table public.budgets is 'AI spending windows of a tenant. Every tenant has one plan window (follows its plan; admins may only lower its limits) and may add custom windows (e.g. a daily cap). Every active window is enforced.';
comment on column public.budgets.kind is 'plan: created with the tenant, mode and period follow the plan; custom: added by tenant admins.';
comment on column public.budgets.inherits_from_plan is 'When true the limits are copied from the plan (and follow plan changes); changing a limit turns it off.';
comment on column public.budgets.mode is 'Which limits are enforced: tokens, brl or both. Usage of both kinds is always counted.';
comment on column public.budgets.period is 'daily / weekly (from Monday) / monthly, in the tenant time zone.';
comment on column public.budgets.token_limit is 'Tokens per period (input + output + cache read + cache write). Null: this window does not limit tokens.';
comment on column public.budgets.brl_limit is 'BRL per period. Null: this window does not limit money.';
comment on column public.budgets.notify_thresholds is 'Percentages of the limit that raise an alert, once each per period.';
comment on column public.budgets.notified_thresholds is 'Thresholds already alerted in the current period; cleared when the period rolls.';
comment on column public.budgets.pause_at_limit is 'true: refuse calls that would pass the limit and pause at 100 %. false: alert only (soft budget).';
comment on column public.budgets.paused_reason is 'limit: reached 100 % (cleared when the period rolls); manual: paused by an admin until resumed.';
comment on column public.budgets.used_brl is 'Settled spend in the current period, exact (sum of ai_usage.cost_brl).';
comment on column public.budgets.reserved_brl is 'Estimates of calls in flight; a new call must fit in limit - used - reserved.';

-- Reservations: estimates taken before a provider call, released at settlement or expiry.
create table if not exists public.budget_reservations (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  feature text not null check (feature ~ '^[a-z0-9_.]{2,60}$'),
  model_id uuid not null references public.ai_models (id),
  budget_ids uuid[] not null default '{}',
  estimated_tokens bigint not null default 0 check (estimated_tokens >= 0),
  estimated_usd numeric(20,10) not null default 0 check (estimated_usd >= 0),
  estimated_brl numeric(20,10) not null default 0 check (estimated_brl >= 0),
  status text not null default 'open' check (status in ('open', 'settled', 'released', 'expired')),
  cache_key text check (cache_key ~ '^[0-9a-f]{64}$'),
  cache_ttl_seconds integer check (cache_ttl_seconds >= 0),
  conversation_id uuid,
  message_id uuid,
  bot_id uuid,           -- FK to bots added by the automation module
  request_id text check (length(request_id) <= 200),
  phone_hash text check (phone_hash ~ '^[0-9a-f]{64}$'),
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  closed_at timestamptz,
  unique (tenant_id, id),
  foreign key (tenant_id, conversation_id) references public.conversations (tenant_id, id)
    on delete set null (conversation_id),
  foreign key (tenant_id, message_id) references public.messages (tenant_id, id) on delete set null (message_id)
);
alter table public.budget_reservations enable row level security;
create index if not exists budget_reservations_open_idx on public.budget_reservations (tenant_id, expires_at)
  where status = 'open';
create index if not exists budget_reservations_conversation_idx
  on public.budget_reservations (tenant_id, conversation_id) where conversation_id is not null;
create index if not exists budget_reservations_message_idx
  on public.budget_reservations (tenant_id, message_id) where message_id is not null;
-- No index on model_id here nor in ai_usage: every index slows the hot insert path, and a
-- registry model is deactivated, never deleted (which would have to scan these tables).
comment on table public.budget_reservations is 'Budget held for an AI call in flight. Settled once (idempotent), released when cancelled, expired when abandoned.';
comment on column public.budget_reservations.budget_ids is 'The windows the estimate was added to (reserved_*), released from the same ones.';
comment on column public.budget_reservations.cache_key is 'Exact-cache key of the request; ai_finish stores the answer under it.';
comment on column public.budget_reservations.expires_at is 'After this an open reservation no longer holds budget (released by the next reserve or the expiry job).';

-- Usage log: one row per provider call or cache hit (seed 002 gateway_usage_logs, usage_logs,
-- tts_usage_logs; 004 ai_usage; 000 message tokens/model/latency).
create table if not exists public.ai_usage (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  reservation_id uuid,
  attempt smallint not null default 1 check (attempt between 1 and 20),
  conversation_id uuid,
  message_id uuid,
  bot_id uuid,           -- FK to bots added by the automation module
  request_id text check (length(request_id) <= 200),
  phone_hash text check (phone_hash ~ '^[0-9a-f]{64}$'),
  model_id uuid not null references public.ai_models (id),
  provider text not null,
  model text not null,
  api_type text not null check (api_type in ('chat', 'tts', 'embedding', 'transcription')),
  feature text not null check (feature ~ '^[a-z0-9_.]{2,60}$'),
  outcome text not null check (outcome in ('success', 'failure', 'cache_hit')),
  cached boolean generated always as (outcome = 'cache_hit') stored,
  input_tokens integer not null default 0 check (input_tokens >= 0),
  output_tokens integer not null default 0 check (output_tokens >= 0),
  cache_read_tokens integer not null default 0 check (cache_read_tokens >= 0),
  cache_write_tokens integer not null default 0 check (cache_write_tokens >= 0),
  total_tokens bigint generated always as
    (input_tokens::bigint + output_tokens + cache_read_tokens + cache_write_tokens) stored,
  characters integer not null default 0 check (characters >= 0),
  audio_seconds numeric(10,3) not null default 0 check (audio_seconds >= 0),
  latency_ms integer check (latency_ms >= 0),
  fallback_from text,
  cache_key text check (cache_key ~ '^[0-9a-f]{64}$'),
  cost_usd numeric(20,10) not null default 0,
  cost_brl numeric(20,10) not null default 0,
  saved_usd numeric(20,10) not null default 0,
  saved_brl numeric(20,10) not null default 0,
  fx_rate numeric(12,6),
  error_code text check (length(error_code) <= 100),
  error_message text check (length(error_message) <= 2000),
  metadata jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (reservation_id, attempt),
  foreign key (tenant_id, reservation_id) references public.budget_reservations (tenant_id, id)
    on delete set null (reservation_id),
  -- a deleted conversation (LGPD) leaves its costs on the books, unlinked
  foreign key (tenant_id, conversation_id) references public.conversations (tenant_id, id)
    on delete set null (conversation_id),
  foreign key (tenant_id, message_id) references public.messages (tenant_id, id) on delete set null (message_id)
);
alter table public.ai_usage enable row level security;
create index if not exists ai_usage_tenant_created_idx on public.ai_usage (tenant_id, created_at desc);
create index if not exists ai_usage_tenant_conversation_idx on public.ai_usage (tenant_id, conversation_id)
  where conversation_id is not null;
create index if not exists ai_usage_tenant_message_idx on public.ai_usage (tenant_id, message_id)
  where message_id is not null;
comment on table public.ai_usage is 'One row per AI provider call (success or failure) or cache hit, priced in SQL. Written only through the ai_* functions.';
comment on column public.ai_usage.attempt is 'Position in the fallback chain for this reservation: failed attempts first, the answer last.';
comment on column public.ai_usage.phone_hash is 'private.phone_hash() of the end customer; never the number itself.';
comment on column public.ai_usage.model is 'gateway_id of the model that was called (or that produced the cached answer).';
comment on column public.ai_usage.input_tokens is 'Uncached input tokens (Anthropic semantics: excludes cache reads and writes).';
comment on column public.ai_usage.cached is 'A cache hit: cost 0; the counts describe the avoided call and saved_* what it would have cost.';
comment on column public.ai_usage.fallback_from is 'gateway_id of the first model tried when another one answered.';
comment on column public.ai_usage.cache_key is 'Set when the call looked up the exact cache (hit or miss); feeds the hit rate.';
comment on column public.ai_usage.cost_usd is 'ai_models price × pricing_overrides, exact numeric.';
comment on column public.ai_usage.cost_brl is 'cost_usd × fx_rate (USD→BRL of the day).';

-- Exact response cache (seed 002 gateway_cache_performance), per tenant.
create table if not exists public.response_cache (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  cache_key text not null check (cache_key ~ '^[0-9a-f]{64}$'),
  model_id uuid not null references public.ai_models (id) on delete cascade,
  response jsonb,
  response_text text,
  input_tokens integer not null default 0,
  output_tokens integer not null default 0,
  cache_read_tokens integer not null default 0,
  cache_write_tokens integer not null default 0,
  cost_usd numeric(20,10) not null default 0,
  cost_brl numeric(20,10) not null default 0,
  expires_at timestamptz not null,
  hits integer not null default 0,
  saved_usd numeric(20,10) not null default 0,
  saved_brl numeric(20,10) not null default 0,
  last_hit_at timestamptz,
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  constraint response_cache_tenant_key unique (tenant_id, cache_key),
  check (response is not null or response_text is not null)
);
alter table public.response_cache enable row level security;
create index if not exists response_cache_expires_idx on public.response_cache (expires_at);
create index if not exists response_cache_model_id_idx on public.response_cache (model_id);
comment on table public.response_cache is 'Answers of identical requests, reused until expires_at. Exact match only: multi-turn chats replay nothing stale because the key covers the whole message list.';
comment on column public.response_cache.cache_key is 'hex SHA-256 computed by the worker over everything that selects the answer: model or policy, system prompt, messages, parameters.';
comment on column public.response_cache.cost_usd is 'Cost of the original call; each hit adds it to saved_usd.';

/**
 * ----
 * Section - Private helpers
 * ----
 */

-- The window of `period` that contains `as_of`, in time zone `tz` (weeks start on Monday).
-- Local arithmetic, so a monthly window in America/Sao_Paulo starts at 03:00 UTC.
create or replace function private.budget_window(period text, tz text, as_of timestamptz,
  out period_start timestamptz, out period_end timestamptz)
language sql
stable
set search_path = ''
as $$
  select w.s,
         (w.s at time zone budget_window.tz
          + case budget_window.period when 'daily' then interval '1 day'
                                      when 'weekly' then interval '1 week'
                                      else interval '1 month' end) at time zone budget_window.tz
    from (select date_trunc(case budget_window.period when 'daily' then 'day'
                                                      when 'weekly' then 'week'
                                                      else 'month' end,
                            budget_window.as_of, budget_window.tz) as s) w
$$;
comment on function private.budget_window(text, text, timestamptz) is 'Start and end of the budget period containing as_of, in the given time zone.';

-- What the plan gives a tenant's plan window, plus its time zone. SECURITY DEFINER: the
-- budgets trigger runs as the admin, who may not see a non-public plan.
create or replace function private.budget_plan_defaults(tenant_id uuid,
  out mode text, out period text, out token_limit bigint, out brl_limit numeric, out timezone text)
language sql
stable
security definer
set search_path = ''
as $$
  select p.budget_mode, p.budget_period, p.budget_token_limit, p.budget_brl_limit, t.timezone
    from public.tenants t join public.plans p on p.id = t.plan_id
   where t.id = budget_plan_defaults.tenant_id
$$;

-- Cost in USD of a call for a tenant, exact to 10 decimal places. Per unit, a fixed price
-- of the tenant's override wins, else the list price × (1 + markup %); a model-specific
-- override beats the tenant-wide one (model_id null). PL/pgSQL, like every helper on the
-- hot path: its plan is cached per session, where a SQL function with a pinned
-- search_path is parsed and planned again on every call.
create or replace function private.cost_usd(tenant_id uuid, model_id uuid, input_tokens bigint,
  output_tokens bigint, cache_read_tokens bigint, cache_write_tokens bigint, characters bigint,
  audio_seconds numeric)
returns numeric
language plpgsql
stable
set search_path = ''
as $$
declare
  v_cost numeric;
begin
  select round((coalesce(cost_usd.input_tokens, 0)
                  * coalesce(o.input_usd_per_mtok, m.input_usd_per_mtok * k.factor)
                + coalesce(cost_usd.output_tokens, 0)
                  * coalesce(o.output_usd_per_mtok, m.output_usd_per_mtok * k.factor)
                + coalesce(cost_usd.cache_read_tokens, 0)
                  * coalesce(o.cache_read_usd_per_mtok, m.cache_read_usd_per_mtok * k.factor)
                + coalesce(cost_usd.cache_write_tokens, 0)
                  * coalesce(o.cache_write_usd_per_mtok, m.cache_write_usd_per_mtok * k.factor)
                + coalesce(cost_usd.characters, 0)
                  * coalesce(o.usd_per_mchars, m.usd_per_mchars * k.factor)) / 1000000
               + coalesce(cost_usd.audio_seconds, 0) / 60
                 * coalesce(o.usd_per_audio_minute, m.usd_per_audio_minute * k.factor), 10)
    into v_cost
    from public.ai_models m
    left join lateral (
      select po.* from public.pricing_overrides po
       where po.tenant_id = cost_usd.tenant_id
         and (po.model_id = m.id or po.model_id is null)
       order by po.model_id nulls last
       limit 1
    ) o on true
    cross join lateral (select 1 + coalesce(o.markup_pct, 0) / 100 as factor) k
   where m.id = cost_usd.model_id;
  return v_cost;
end;
$$;

-- USD→BRL of the São Paulo calendar day of as_of: the latest rate on or before it.
create or replace function private.usd_brl(as_of timestamptz)
returns numeric
language plpgsql
stable
set search_path = ''
as $$
declare
  v_day date := (usd_brl.as_of at time zone 'America/Sao_Paulo')::date;
  v_rate numeric;
begin
  select r.rate into v_rate from public.fx_rates r
   where r.base = 'USD' and r.quote = 'BRL' and r.rate_date <= v_day
   order by r.rate_date desc
   limit 1;
  if v_rate is null then
    raise exception 'no USD→BRL rate on or before %: add one to public.fx_rates', v_day
      using errcode = '22023';
  end if;
  return v_rate;
end;
$$;

-- The policy a call runs under: the one asked for (the tenant's or a platform one), else
-- the tenant default, else the platform default.
create or replace function private.effective_policy(tenant_id uuid, policy_id uuid)
returns public.gateway_policies
language plpgsql
stable
set search_path = ''
as $$
declare
  v_policy public.gateway_policies;
begin
  select p.* into v_policy from public.gateway_policies p
   where (p.tenant_id = effective_policy.tenant_id or p.tenant_id is null)
     and (p.id = effective_policy.policy_id or p.is_default)
   order by p.id = effective_policy.policy_id desc nulls last, p.tenant_id nulls last
   limit 1;
  return v_policy;
end;
$$;

create or replace function private.policy_json(p public.gateway_policies)
returns jsonb
language plpgsql
immutable
set search_path = ''
as $$
begin
  return jsonb_build_object('id', p.id, 'name', p.name, 'chain', to_jsonb(p.chain),
    'timeout_ms', p.timeout_ms, 'max_retries', p.max_retries,
    'failures_before_cooldown', p.failures_before_cooldown,
    'cooldown_seconds', p.cooldown_seconds, 'cache_ttl_seconds', p.cache_ttl_seconds);
end;
$$;

-- ai_reserve's answer when it refuses a call; every refusal is also an ai.call_refused event,
-- whatever the feature (operation alerts, webhooks and rules read it there).
create or replace function private.refusal(tenant_id uuid, feature text, conversation_id uuid, reason text,
  budget_id uuid, message text)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_refusal jsonb := jsonb_build_object('status', 'refused', 'reason', refusal.reason,
                                        'budget_id', refusal.budget_id, 'message', refusal.message);
begin
  perform private.emit(refusal.tenant_id, 'ai.call_refused',
    case when refusal.budget_id is not null then 'budgets' end, refusal.budget_id,
    (v_refusal - 'status') || jsonb_build_object('feature', refusal.feature, 'conversation_id', refusal.conversation_id));
  return v_refusal;
end;
$$;

-- How full a window is, in percent of its tightest enforced limit; null when it limits nothing.
create or replace function private.budget_used_pct(b public.budgets)
returns numeric
language plpgsql
immutable
set search_path = ''
as $$
begin
  return greatest(
    case when b.mode in ('tokens', 'both') and b.token_limit is not null then
      case when b.token_limit > 0 then b.used_tokens * 100.0 / b.token_limit
           when b.used_tokens > 0 then 100 else 0 end
    end,
    case when b.mode in ('brl', 'both') and b.brl_limit is not null then
      case when b.brl_limit > 0 then b.used_brl * 100 / b.brl_limit
           when b.used_brl > 0 then 100 else 0 end
    end);
end;
$$;

-- Rolls windows whose period is over (tenant_id null: every tenant): usage, thresholds and
-- the limit pause start again. reserved_* stays: calls in flight settle in the new period.
create or replace function private.budget_roll(tenant_id uuid, as_of timestamptz)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_rows integer;
begin
  update public.budgets b
     set (period_start, period_end) =
           (select w.period_start, w.period_end from private.budget_window(b.period, t.timezone, budget_roll.as_of) w),
         used_tokens = 0, used_usd = 0, used_brl = 0,
         notified_thresholds = '{}',
         paused_at = case when b.paused_reason = 'limit' then null else b.paused_at end,
         paused_reason = nullif(b.paused_reason, 'limit'),
         last_reset_at = budget_roll.as_of
    from public.tenants t
   where t.id = b.tenant_id
     and b.period_end <= budget_roll.as_of
     and (budget_roll.tenant_id is null or b.tenant_id = budget_roll.tenant_id);
  get diagnostics v_rows = row_count;
  return v_rows;
end;
$$;

-- Locks the tenant's budget rows (by id: the one lock order of this module) and rolls
-- the windows whose period is over, so no check reads a stale period.
create or replace function private.budget_lock(tenant_id uuid, as_of timestamptz)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_stale integer;
begin
  select count(*) filter (where l.period_end <= budget_lock.as_of) into v_stale
    from (select b.period_end from public.budgets b
           where b.tenant_id = budget_lock.tenant_id order by b.id for update) l;
  if v_stale > 0 then
    perform private.budget_roll(budget_lock.tenant_id, budget_lock.as_of);
  end if;
end;
$$;

-- Gives back the budget held by the tenant's abandoned reservations. The caller holds
-- the tenant's budget locks.
create or replace function private.release_expired(tenant_id uuid, as_of timestamptz)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_rows integer;
begin
  if not exists (select 1 from public.budget_reservations r
                  where r.tenant_id = release_expired.tenant_id and r.status = 'open'
                    and r.expires_at <= release_expired.as_of) then
    return 0;  -- the usual case: one index probe
  end if;
  with expired as (
    update public.budget_reservations r
       set status = 'expired', closed_at = release_expired.as_of
     where r.tenant_id = release_expired.tenant_id and r.status = 'open'
       and r.expires_at <= release_expired.as_of
    returning r.budget_ids, r.estimated_tokens, r.estimated_brl
  ), per_budget as (
    select u.budget_id, sum(e.estimated_tokens) as tokens, sum(e.estimated_brl) as brl
      from expired e cross join lateral unnest(e.budget_ids) as u(budget_id)
     group by u.budget_id
  ), released as (
    update public.budgets b
       set reserved_tokens = b.reserved_tokens - p.tokens, reserved_brl = b.reserved_brl - p.brl
      from per_budget p
     where b.id = p.budget_id
    returning 1
  )
  select count(*) into v_rows from expired;
  return v_rows;
end;
$$;

create or replace function private.format_brl(amount numeric)
returns text
language sql
immutable
set search_path = ''
as $$
  -- literal separators (not G/D): the result must not depend on lc_numeric
  select 'R$ ' || translate(to_char(round(amount, 2), 'FM999,999,999,990.00'), ',.', '.,')
$$;

create or replace function private.format_count(amount numeric)
returns text
language sql
immutable
set search_path = ''
as $$
  select translate(to_char(amount, 'FM999,999,999,999,990'), ',', '.')
$$;

-- Raises the alerts of thresholds crossed by settled usage (once per threshold and period:
-- notified_thresholds, and the alerts dedupe_key as a second guard), NOTIFYs
-- zapbase_alerts for the worker, and pauses a window at 100 % when it should.
-- Returns the alerts raised: [{alert_id, budget_id, threshold}].
create or replace function private.budget_fire_thresholds(tenant_id uuid, as_of timestamptz)
returns jsonb
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_budget public.budgets;
  v_tenant public.tenants;
  v_pct numeric;
  v_threshold integer;
  v_new integer[];
  v_pause boolean;
  v_alert_id uuid;
  v_usage text;
  v_fired jsonb := '[]'::jsonb;
begin
  for v_budget in
    select * from public.budgets b
     where b.tenant_id = budget_fire_thresholds.tenant_id and b.is_active
     order by b.id
  loop
    v_pct := private.budget_used_pct(v_budget);
    continue when v_pct is null;
    select coalesce(array_agg(t order by t), '{}') into v_new
      from unnest(v_budget.notify_thresholds) t
     where v_pct >= t and not t = any (v_budget.notified_thresholds);
    v_pause := v_budget.pause_at_limit and v_pct >= 100 and v_budget.paused_reason is null;
    continue when cardinality(v_new) = 0 and not v_pause;

    if v_tenant.id is null then
      select * into v_tenant from public.tenants t where t.id = budget_fire_thresholds.tenant_id;
    end if;
    v_usage := concat_ws(' e ',
      case when v_budget.mode in ('brl', 'both') and v_budget.brl_limit is not null then
        private.format_brl(v_budget.used_brl) || ' de ' || private.format_brl(v_budget.brl_limit) end,
      case when v_budget.mode in ('tokens', 'both') and v_budget.token_limit is not null then
        private.format_count(v_budget.used_tokens) || ' de ' || private.format_count(v_budget.token_limit) || ' tokens' end);

    foreach v_threshold in array v_new loop
      insert into public.alerts (tenant_id, type, priority, title, message, payload, dedupe_key)
      values (
        v_budget.tenant_id,
        'budget.threshold',
        case when v_threshold >= 100 then 'critical' when v_threshold >= 90 then 'high' else 'medium' end,
        format('Orçamento de IA em %s%%', v_threshold),
        format('%s: %s usados no período de %s a %s.%s', v_budget.name, v_usage,
          to_char(v_budget.period_start at time zone v_tenant.timezone, 'DD/MM/YYYY'),
          to_char((v_budget.period_end at time zone v_tenant.timezone) - interval '1 second', 'DD/MM/YYYY'),
          case when v_threshold >= 100 and v_budget.pause_at_limit
               then ' As respostas com IA ficam pausadas até o próximo período ou até o limite ser aumentado.'
               else '' end),
        jsonb_build_object(
          'budget_id', v_budget.id, 'budget_name', v_budget.name, 'threshold', v_threshold,
          'used_pct', round(v_pct, 2), 'mode', v_budget.mode, 'period', v_budget.period,
          'period_start', v_budget.period_start, 'period_end', v_budget.period_end,
          'used_tokens', v_budget.used_tokens, 'token_limit', v_budget.token_limit,
          'used_brl', round(v_budget.used_brl, 4), 'brl_limit', v_budget.brl_limit,
          'paused', v_threshold >= 100 and v_budget.pause_at_limit),
        format('budget:%s:%s:%s', v_budget.id,
               to_char(v_budget.period_start at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI"Z"'), v_threshold)
      )
      on conflict (tenant_id, dedupe_key) do nothing
      returning id into v_alert_id;
      if v_alert_id is not null then
        perform pg_notify('zapbase_alerts', jsonb_build_object(
          'alert_id', v_alert_id, 'tenant_id', v_budget.tenant_id, 'type', 'budget.threshold',
          'budget_id', v_budget.id, 'threshold', v_threshold)::text);
        v_fired := v_fired || jsonb_build_object('alert_id', v_alert_id, 'budget_id', v_budget.id,
                                                 'threshold', v_threshold);
      end if;
    end loop;

    update public.budgets b
       set notified_thresholds = b.notified_thresholds || v_new,
           paused_reason = case when v_pause then 'limit' else b.paused_reason end
     where b.id = v_budget.id;
  end loop;
  return v_fired;
end;
$$;

-- Adds settled usage to every window of the tenant (inactive ones too, so a window turned
-- back on shows the truth), releases an estimate from the windows it was taken from, and
-- fires thresholds when a window crossed one. The caller holds the tenant's budget locks.
create or replace function private.budget_charge(tenant_id uuid, tokens bigint, usd numeric, brl numeric,
  release_ids uuid[], release_tokens bigint, release_brl numeric, as_of timestamptz)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_crossed boolean;
begin
  with charged as (
    update public.budgets b
       set used_tokens = b.used_tokens + budget_charge.tokens,
           used_usd = b.used_usd + budget_charge.usd,
           used_brl = b.used_brl + budget_charge.brl,
           reserved_tokens = b.reserved_tokens
             - case when b.id = any (budget_charge.release_ids) then budget_charge.release_tokens else 0 end,
           reserved_brl = b.reserved_brl
             - case when b.id = any (budget_charge.release_ids) then budget_charge.release_brl else 0 end
     where b.tenant_id = budget_charge.tenant_id
    returning b
  )
  select coalesce(bool_or((c.b).is_active and (
           exists (select 1 from unnest((c.b).notify_thresholds) t
                    where private.budget_used_pct(c.b) >= t and t <> all ((c.b).notified_thresholds))
           or ((c.b).pause_at_limit and (c.b).paused_reason is null and private.budget_used_pct(c.b) >= 100))),
         false)
    into v_crossed
    from charged c;
  if v_crossed then
    return private.budget_fire_thresholds(budget_charge.tenant_id, budget_charge.as_of);
  end if;
  return '[]'::jsonb;
end;
$$;

-- Prices and inserts one ai_usage row. `u` carries what the caller knows (tenant, model_id,
-- counts, context); provider, api type, costs and the rate are filled in here. A cache hit
-- costs 0 and records as saved what its counts would have cost (unless saved_usd is given).
create or replace function private.insert_usage(u public.ai_usage, as_of timestamptz)
returns public.ai_usage
language plpgsql
set search_path = ''
as $$
declare
  v_model public.ai_models;
  v_cost numeric;
begin
  select * into strict v_model from public.ai_models m where m.id = u.model_id;
  u.provider := v_model.provider;
  u.model := v_model.gateway_id;
  u.api_type := v_model.api_type;
  u.fx_rate := private.usd_brl(insert_usage.as_of);
  v_cost := private.cost_usd(u.tenant_id, u.model_id, u.input_tokens, u.output_tokens,
                             u.cache_read_tokens, u.cache_write_tokens, u.characters, u.audio_seconds);
  if u.outcome = 'cache_hit' then
    u.cost_usd := 0;
    u.cost_brl := 0;
    u.saved_usd := coalesce(u.saved_usd, v_cost);
    u.saved_brl := coalesce(u.saved_brl, round(u.saved_usd * u.fx_rate, 10));
  else
    u.cost_usd := v_cost;
    u.cost_brl := round(v_cost * u.fx_rate, 10);
    u.saved_usd := 0;
    u.saved_brl := 0;
  end if;
  insert into public.ai_usage (tenant_id, reservation_id, attempt, conversation_id, message_id, bot_id,
    request_id, phone_hash, model_id, provider, model, api_type, feature, outcome, input_tokens,
    output_tokens, cache_read_tokens, cache_write_tokens, characters, audio_seconds, latency_ms,
    fallback_from, cache_key, cost_usd, cost_brl, saved_usd, saved_brl, fx_rate, error_code,
    error_message, metadata, created_at)
  values (u.tenant_id, u.reservation_id, coalesce(u.attempt, 1), u.conversation_id, u.message_id, u.bot_id,
    u.request_id, u.phone_hash, u.model_id, u.provider, u.model, u.api_type, u.feature, u.outcome,
    coalesce(u.input_tokens, 0), coalesce(u.output_tokens, 0), coalesce(u.cache_read_tokens, 0),
    coalesce(u.cache_write_tokens, 0), coalesce(u.characters, 0), coalesce(u.audio_seconds, 0),
    u.latency_ms, u.fallback_from, u.cache_key, u.cost_usd, u.cost_brl, u.saved_usd, u.saved_brl,
    u.fx_rate, u.error_code, left(u.error_message, 2000), coalesce(u.metadata, '{}'::jsonb),
    insert_usage.as_of)
  returning * into u;
  return u;
end;
$$;

-- A model as the tenant sees it: its own row first, else the platform's. Another tenant's
-- models do not exist for it.
create or replace function private.model_by_gateway_id(tenant_id uuid, gateway_id text)
returns public.ai_models
language plpgsql
stable
set search_path = ''
as $$
declare
  v_model public.ai_models;
begin
  select * into v_model from public.ai_models m
   where m.gateway_id = model_by_gateway_id.gateway_id
     and (m.tenant_id is null or m.tenant_id = model_by_gateway_id.tenant_id)
   order by m.tenant_id nulls last
   limit 1;
  if not found then
    raise exception 'unknown model "%": not in public.ai_models', model_by_gateway_id.gateway_id
      using errcode = '22023';
  end if;
  return v_model;
end;
$$;

/**
 * ----
 * Section - Trigger functions
 * ----
 */

-- Every tenant gets its plan window when it is created.
create or replace function private.tg_tenants_create_plan_budget()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.budgets (tenant_id, kind, name, inherits_from_plan)
  values (new.id, 'plan', 'Orçamento do plano', true)
  on conflict (tenant_id) where kind = 'plan' do nothing;
  return new;
end;
$$;

-- Plan windows follow plan changes: inheriting ones copy the new plan (through
-- tg_budgets_apply_plan), overridden ones are clamped to the new caps.
create or replace function private.tg_budgets_follow_plan()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.budgets b
     set inherits_from_plan = b.inherits_from_plan,
         token_limit = case when b.inherits_from_plan then b.token_limit
                            else least(b.token_limit, p.budget_token_limit) end,
         brl_limit = case when b.inherits_from_plan then b.brl_limit
                          else least(b.brl_limit, p.budget_brl_limit) end
    from public.tenants t join public.plans p on p.id = t.plan_id
   where b.tenant_id = t.id and b.kind = 'plan'
     and (case when tg_table_name = 'plans' then t.plan_id = new.id else t.id = new.id end);
  return new;
end;
$$;

-- Keeps a window consistent with its plan and inside what the plan allows:
--  * a plan window takes the plan's mode and period; when inheriting, its limits too;
--  * changing a limit of an inheriting window turns inheritance off (an override);
--  * through the API (role authenticated) only admins write, limits stay at or below the
--    plan caps, and the plan window's mode, period, pause_at_limit and is_active belong
--    to the platform (service role): admins restrict spending, they never extend it;
--  * the period bounds are set when the window is created or its period changes.
create or replace function private.tg_budgets_apply_plan()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_plan record;
  v_api boolean := current_user in ('authenticated', 'anon');
  v_window record;
begin
  if v_api and not private.has_role(new.tenant_id, 'admin') then
    raise exception 'budgets are managed by tenant admins' using errcode = '42501';
  end if;
  select * into v_plan from private.budget_plan_defaults(new.tenant_id);
  if tg_op = 'UPDATE' then
    if v_api and old.kind = 'plan' and (new.mode, new.period, new.pause_at_limit, new.is_active)
        is distinct from (old.mode, old.period, old.pause_at_limit, old.is_active) then
      raise exception 'the plan budget follows your plan: you may lower its limits or add a custom budget'
        using errcode = '42501';
    end if;
    if new.inherits_from_plan and old.inherits_from_plan
       and (new.token_limit, new.brl_limit) is distinct from (old.token_limit, old.brl_limit) then
      new.inherits_from_plan := false;
    end if;
    if new.paused_reason is distinct from old.paused_reason then
      new.paused_at := case when new.paused_reason is null then null else now() end;
    end if;
  end if;
  if new.kind = 'plan' then
    new.mode := v_plan.mode;
    new.period := v_plan.period;
  end if;
  if new.inherits_from_plan then
    new.token_limit := v_plan.token_limit;
    new.brl_limit := v_plan.brl_limit;
  end if;
  if v_api then
    if new.token_limit > v_plan.token_limit
       or (new.kind = 'plan' and new.token_limit is null and v_plan.token_limit is not null) then
      raise exception 'the token limit cannot exceed your plan''s % tokens', v_plan.token_limit
        using errcode = '23514';
    end if;
    if new.brl_limit > v_plan.brl_limit
       or (new.kind = 'plan' and new.brl_limit is null and v_plan.brl_limit is not null) then
      raise exception 'the BRL limit cannot exceed your plan''s R$ %', v_plan.brl_limit
        using errcode = '23514';
    end if;
  end if;
  if tg_op = 'INSERT' or new.period is distinct from old.period then
    -- usage is kept when the period changes: conservative until the next roll
    select * into v_window from private.budget_window(new.period, v_plan.timezone, now());
    new.period_start := v_window.period_start;
    new.period_end := v_window.period_end;
  end if;
  return new;
end;
$$;

-- A policy's chain must name models of the registry: platform ones, or the policy's tenant's.
create or replace function private.tg_gateway_policies_check_chain()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_unknown text[];
begin
  select array_agg(c) into v_unknown
    from unnest(new.chain) c
   where not exists (select 1 from public.ai_models m
                      where m.gateway_id = c and (m.tenant_id is null or m.tenant_id = new.tenant_id));
  if v_unknown is not null then
    raise exception 'unknown models in the chain: %', array_to_string(v_unknown, ', ')
      using errcode = '23503';
  end if;
  return new;
end;
$$;

-- A tenant's llm integration names its provider's API: anthropic and openai default to
-- their public APIs; any other provider speaks OpenAI's chat completions at config.base_url,
-- the base URL its SDK takes (https://api.groq.com/openai/v1,
-- https://generativelanguage.googleapis.com/v1beta/openai, https://openrouter.ai/api/v1).
-- https only and no address-literal of a private network, unless zapbase.webhooks_allow_http
-- is on (local development); the worker checks the resolved address again on every call.
create or replace function private.tg_integrations_check_llm()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_url text := new.config ->> 'base_url';
  v_local boolean := coalesce(current_setting('zapbase.webhooks_allow_http', true), '') = 'on';
  v_host text;
begin
  if current_user in ('authenticated', 'anon')
     and new.tenant_id not in (select private.my_tenant_ids_with_role('admin')) then
    return new;  -- refused by RLS
  end if;
  if v_url is null then
    if new.provider not in ('anthropic', 'openai') then
      raise exception 'an llm integration of provider "%" needs config.base_url, its OpenAI-compatible API (e.g. https://api.groq.com/openai/v1)',
        new.provider using errcode = '22023';
    end if;
    return new;
  end if;
  if new.provider = 'anthropic' then
    raise exception 'the anthropic provider takes no base_url' using errcode = '22023';
  end if;
  v_host := lower(substring(v_url from '^https?://([^/?#]*)'));
  if v_url !~ '^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$' then
    raise exception 'config.base_url must be a URL such as https://host/v1, without credentials, query or fragment (got %)',
      left(v_url, 200) using errcode = '22023';
  end if;
  if not v_local and (v_url !~ '^https://'
      or split_part(v_host, ':', 1) ~ '(^|\.)localhost$'
      or split_part(v_host, ':', 1) ~ '^[0-9.]+$') then
    raise exception 'config.base_url must be https:// on a public host name (got %)', left(v_url, 200)
      using errcode = '22023';
  end if;
  return new;
end;
$$;

-- A tenant's own model: a chat model of one of its llm integrations, under a provider name
-- the platform catalogue does not use (the worker may hold the platform's key for those,
-- and a tenant's prices must never apply to the platform's account).
create or replace function private.tg_ai_models_check_tenant_model()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  -- a row the signed-in caller may not write is refused by RLS, not described here
  if current_user in ('authenticated', 'anon')
     and new.tenant_id not in (select private.my_tenant_ids_with_role('admin')) then
    return new;
  end if;
  if new.api_type <> 'chat' then
    raise exception 'a tenant model must be a chat model' using errcode = '22023';
  end if;
  if split_part(new.gateway_id, '/', 1) <> new.provider then
    raise exception 'a tenant model''s gateway_id starts with its provider: %/...', new.provider
      using errcode = '22023';
  end if;
  if new.provider = 'local' or exists (select 1 from public.ai_models m
                                         where m.tenant_id is null and m.provider = new.provider) then
    raise exception 'provider "%" is in the platform catalogue: use its models, or name your integration differently',
      new.provider using errcode = '22023';
  end if;
  if not exists (select 1 from public.integrations i
                  where i.tenant_id = new.tenant_id and i.type = 'llm' and i.provider = new.provider) then
    raise exception 'no llm integration of provider "%": connect the provider first', new.provider
      using errcode = '23503';
  end if;
  return new;
end;
$$;

/**
 * ----
 * Section - Triggers
 * ----
 */
drop trigger if exists _200_check_llm on public.integrations;
create trigger _200_check_llm before insert or update of type, provider, config on public.integrations
  for each row when (new.type = 'llm') execute function private.tg_integrations_check_llm();

drop trigger if exists _200_check_tenant_model on public.ai_models;
create trigger _200_check_tenant_model before insert or update on public.ai_models
  for each row when (new.tenant_id is not null) execute function private.tg_ai_models_check_tenant_model();

drop trigger if exists _300_create_plan_budget on public.tenants;
create trigger _300_create_plan_budget after insert on public.tenants
  for each row execute function private.tg_tenants_create_plan_budget();

drop trigger if exists _300_budgets_follow_plan on public.tenants;
create trigger _300_budgets_follow_plan after update of plan_id on public.tenants
  for each row when (old.plan_id is distinct from new.plan_id)
  execute function private.tg_budgets_follow_plan();

drop trigger if exists _300_budgets_follow_plan on public.plans;
create trigger _300_budgets_follow_plan
  after update of budget_mode, budget_period, budget_token_limit, budget_brl_limit on public.plans
  for each row execute function private.tg_budgets_follow_plan();

-- Config changes only: reservations and settlements update the counters many times a
-- second and would otherwise flood audit_log.
drop trigger if exists _100_set_updated_at on public.budgets;
create trigger _100_set_updated_at before update on public.budgets
  for each row when ((old.name, old.mode, old.period, old.token_limit, old.brl_limit, old.inherits_from_plan,
                      old.notify_thresholds, old.pause_at_limit, old.is_active, old.paused_reason)
                     is distinct from
                     (new.name, new.mode, new.period, new.token_limit, new.brl_limit, new.inherits_from_plan,
                      new.notify_thresholds, new.pause_at_limit, new.is_active, new.paused_reason))
  execute function private.tg_set_updated_at();

drop trigger if exists _200_apply_plan on public.budgets;
create trigger _200_apply_plan
  before insert or update of tenant_id, kind, mode, period, token_limit, brl_limit, inherits_from_plan,
    pause_at_limit, is_active, paused_reason on public.budgets
  for each row execute function private.tg_budgets_apply_plan();

drop trigger if exists _900_audit on public.budgets;
create trigger _900_audit after update on public.budgets
  for each row when ((old.name, old.mode, old.period, old.token_limit, old.brl_limit, old.inherits_from_plan,
                      old.notify_thresholds, old.pause_at_limit, old.is_active, old.paused_reason)
                     is distinct from
                     (new.name, new.mode, new.period, new.token_limit, new.brl_limit, new.inherits_from_plan,
                      new.notify_thresholds, new.pause_at_limit, new.is_active, new.paused_reason))
  execute function private.tg_audit();
drop trigger if exists _900_audit_insert_delete on public.budgets;
create trigger _900_audit_insert_delete after insert or delete on public.budgets
  for each row execute function private.tg_audit();

-- The outbox (events module): each threshold crossed in a period, once.
insert into public.event_types (type, module, description) values
  ('ai.call_refused', 'ai', 'An AI call was refused before it was made (budget paused or full, no budget, trial over, tenant inactive, unknown model): payload has the reason, the feature, the budget and the conversation.'),
  ('budget.threshold_reached', 'ai', 'An AI budget window crossed one of its notify thresholds this period: payload has the budget, threshold, usage and whether it paused.')
on conflict (type) do update set module = excluded.module, description = excluded.description;

create or replace function private.tg_budgets_emit()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.emit(new.tenant_id, 'budget.threshold_reached', 'budgets', new.id,
    jsonb_build_object('budget_id', new.id, 'name', new.name, 'kind', new.kind, 'threshold', t.threshold,
      'used_pct', round(private.budget_used_pct(new), 2), 'used_tokens', new.used_tokens, 'used_brl', new.used_brl,
      'token_limit', new.token_limit, 'brl_limit', new.brl_limit, 'period_start', new.period_start,
      'period_end', new.period_end, 'paused', new.paused_reason = 'limit'))
    from unnest(new.notified_thresholds) t (threshold)
   where t.threshold <> all (old.notified_thresholds)
   order by t.threshold;
  return null;
end;
$$;

drop trigger if exists _500_emit on public.budgets;
create trigger _500_emit after update of notified_thresholds on public.budgets
  for each row when (new.notified_thresholds is distinct from old.notified_thresholds)
  execute function private.tg_budgets_emit();

drop trigger if exists _200_check_chain on public.gateway_policies;
create trigger _200_check_chain before insert or update of chain on public.gateway_policies
  for each row execute function private.tg_gateway_policies_check_chain();

do $$
declare
  v_table text;
begin
  foreach v_table in array array['ai_models', 'pricing_overrides', 'gateway_policies'] loop
    execute format('drop trigger if exists _100_set_updated_at on public.%I', v_table);
    execute format('create trigger _100_set_updated_at before update on public.%I
                    for each row execute function private.tg_set_updated_at()', v_table);
  end loop;
  foreach v_table in array array['pricing_overrides', 'gateway_policies'] loop
    execute format('drop trigger if exists _900_audit on public.%I', v_table);
    execute format('create trigger _900_audit after insert or update or delete on public.%I
                    for each row execute function private.tg_audit()', v_table);
  end loop;
end
$$;

-- Tenants that existed before this module get their plan window now.
insert into public.budgets (tenant_id, kind, name, inherits_from_plan)
select t.id, 'plan', 'Orçamento do plano', true from public.tenants t
on conflict (tenant_id) where kind = 'plan' do nothing;

/**
 * ----
 * Section - RLS policies. Admins read usage, budgets, reservations and the cache and
 * manage budgets; agents see none of it; only the service role writes usage.
 * ----
 */
drop policy if exists "Platform models, and a tenant's own to its members, are readable" on public.ai_models;
create policy "Platform models, and a tenant's own to its members, are readable" on public.ai_models
  for select to authenticated using (tenant_id is null or tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Tenant models are created by tenant admins" on public.ai_models;
create policy "Tenant models are created by tenant admins" on public.ai_models
  for insert to authenticated with check (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Tenant models are updated by tenant admins" on public.ai_models;
create policy "Tenant models are updated by tenant admins" on public.ai_models
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('admin')))
  with check (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Tenant models are deleted by tenant admins" on public.ai_models;
create policy "Tenant models are deleted by tenant admins" on public.ai_models
  for delete to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));

drop policy if exists "Exchange rates are readable by signed-in users" on public.fx_rates;
create policy "Exchange rates are readable by signed-in users" on public.fx_rates
  for select to authenticated using (true);

drop policy if exists "Pricing overrides are visible to tenant admins" on public.pricing_overrides;
create policy "Pricing overrides are visible to tenant admins" on public.pricing_overrides
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));

drop policy if exists "Gateway policies are visible to managers, platform ones to everyone" on public.gateway_policies;
create policy "Gateway policies are visible to managers, platform ones to everyone" on public.gateway_policies
  for select to authenticated
  using (tenant_id is null or tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Gateway policies are created by tenant admins" on public.gateway_policies;
create policy "Gateway policies are created by tenant admins" on public.gateway_policies
  for insert to authenticated with check (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Gateway policies are updated by tenant admins" on public.gateway_policies;
create policy "Gateway policies are updated by tenant admins" on public.gateway_policies
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('admin')))
  with check (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Gateway policies are deleted by tenant admins" on public.gateway_policies;
create policy "Gateway policies are deleted by tenant admins" on public.gateway_policies
  for delete to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));

drop policy if exists "Budgets are visible to tenant admins" on public.budgets;
create policy "Budgets are visible to tenant admins" on public.budgets
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Custom budgets are created by tenant admins" on public.budgets;
create policy "Custom budgets are created by tenant admins" on public.budgets
  for insert to authenticated
  with check (tenant_id in (select private.my_tenant_ids_with_role('admin')) and kind = 'custom');
drop policy if exists "Budgets are updated by tenant admins" on public.budgets;
create policy "Budgets are updated by tenant admins" on public.budgets
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('admin')))
  with check (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Custom budgets are deleted by tenant admins" on public.budgets;
create policy "Custom budgets are deleted by tenant admins" on public.budgets
  for delete to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('admin')) and kind = 'custom');

drop policy if exists "Reservations are visible to tenant admins" on public.budget_reservations;
create policy "Reservations are visible to tenant admins" on public.budget_reservations
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));

drop policy if exists "AI usage is visible to tenant admins" on public.ai_usage;
create policy "AI usage is visible to tenant admins" on public.ai_usage
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));

drop policy if exists "Cached responses are visible to tenant admins" on public.response_cache;
create policy "Cached responses are visible to tenant admins" on public.response_cache
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Cached responses are purged by tenant admins" on public.response_cache;
create policy "Cached responses are purged by tenant admins" on public.response_cache
  for delete to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));

/**
 * ----
 * Section - Worker functions (the Ledger). In `public` so that the service role can call
 * them through PostgREST too; executable by service_role only. Every one takes `as_of`
 * (default now()) so that tests and replays control time.
 * ----
 */

-- Cache lookup. A live entry counts a hit and the cost it saved, and is returned as
-- {status: 'hit', cache_id, model, response, response_text, input_tokens, output_tokens,
--  cache_read_tokens, cache_write_tokens, cost_usd, cost_brl, created_at, expires_at, hits};
-- a miss or an expired entry returns SQL null.
create or replace function public.ai_cache_get(tenant_id uuid, cache_key text, as_of timestamptz default now())
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_hit jsonb;
begin
  update public.response_cache c
     set hits = c.hits + 1,
         saved_usd = c.saved_usd + c.cost_usd,
         saved_brl = c.saved_brl + c.cost_brl,
         last_hit_at = ai_cache_get.as_of
    from public.ai_models m
   where c.tenant_id = ai_cache_get.tenant_id and c.cache_key = ai_cache_get.cache_key
     and c.expires_at > ai_cache_get.as_of and m.id = c.model_id
  returning jsonb_build_object('status', 'hit', 'cache_id', c.id, 'model', m.gateway_id,
    'response', c.response, 'response_text', c.response_text,
    'input_tokens', c.input_tokens, 'output_tokens', c.output_tokens,
    'cache_read_tokens', c.cache_read_tokens, 'cache_write_tokens', c.cache_write_tokens,
    'cost_usd', c.cost_usd, 'cost_brl', c.cost_brl,
    'created_at', c.created_at, 'expires_at', c.expires_at, 'hits', c.hits)
  into v_hit;
  return v_hit;
end;
$$;
comment on function public.ai_cache_get(uuid, text, timestamptz) is 'Worker: exact cache lookup; a hit counts and returns the answer, a miss returns null.';

-- Upserts a cache entry; hit counters of a replaced entry are kept.
create or replace function private.cache_store(tenant_id uuid, cache_key text, model_id uuid, response jsonb,
  response_text text, input_tokens integer, output_tokens integer, cache_read_tokens integer,
  cache_write_tokens integer, cost_usd numeric, cost_brl numeric, ttl_seconds integer, as_of timestamptz)
returns public.response_cache
language plpgsql
set search_path = ''
as $$
declare
  v_entry public.response_cache;
begin
  if coalesce(cache_store.ttl_seconds, 0) <= 0 then
    raise exception 'ttl_seconds must be positive' using errcode = '22023';
  end if;
  insert into public.response_cache as c (tenant_id, cache_key, model_id, response, response_text,
    input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, cost_brl,
    expires_at, created_at)
  values (cache_store.tenant_id, cache_store.cache_key, cache_store.model_id, cache_store.response,
    cache_store.response_text, coalesce(cache_store.input_tokens, 0), coalesce(cache_store.output_tokens, 0),
    coalesce(cache_store.cache_read_tokens, 0), coalesce(cache_store.cache_write_tokens, 0),
    cache_store.cost_usd, cache_store.cost_brl,
    cache_store.as_of + make_interval(secs => cache_store.ttl_seconds), cache_store.as_of)
  on conflict on constraint response_cache_tenant_key do update
     set model_id = excluded.model_id, response = excluded.response, response_text = excluded.response_text,
         input_tokens = excluded.input_tokens, output_tokens = excluded.output_tokens,
         cache_read_tokens = excluded.cache_read_tokens, cache_write_tokens = excluded.cache_write_tokens,
         cost_usd = excluded.cost_usd, cost_brl = excluded.cost_brl,
         expires_at = excluded.expires_at, created_at = excluded.created_at
  returning * into v_entry;
  return v_entry;
end;
$$;

-- Stores (or replaces) an answer. cost_usd null: priced from the counts for this tenant.
-- Returns {cache_id, expires_at}.
create or replace function public.ai_cache_put(
  tenant_id uuid,
  cache_key text,
  model text,
  response jsonb default null,
  response_text text default null,
  input_tokens integer default 0,
  output_tokens integer default 0,
  cache_read_tokens integer default 0,
  cache_write_tokens integer default 0,
  cost_usd numeric default null,
  ttl_seconds integer default 3600,
  as_of timestamptz default now()
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_model public.ai_models := private.model_by_gateway_id(ai_cache_put.tenant_id, ai_cache_put.model);
  v_cost numeric;
  v_entry public.response_cache;
begin
  v_cost := coalesce(ai_cache_put.cost_usd,
    private.cost_usd(ai_cache_put.tenant_id, v_model.id, ai_cache_put.input_tokens, ai_cache_put.output_tokens,
                     ai_cache_put.cache_read_tokens, ai_cache_put.cache_write_tokens, 0, 0));
  v_entry := private.cache_store(ai_cache_put.tenant_id, ai_cache_put.cache_key, v_model.id,
    ai_cache_put.response, ai_cache_put.response_text, ai_cache_put.input_tokens, ai_cache_put.output_tokens,
    ai_cache_put.cache_read_tokens, ai_cache_put.cache_write_tokens, v_cost,
    round(v_cost * private.usd_brl(ai_cache_put.as_of), 10), ai_cache_put.ttl_seconds, ai_cache_put.as_of);
  return jsonb_build_object('cache_id', v_entry.id, 'expires_at', v_entry.expires_at);
end;
$$;
comment on function public.ai_cache_put(uuid, text, text, jsonb, text, integer, integer, integer, integer, numeric, integer, timestamptz)
  is 'Worker: stores an answer in the exact cache for ttl_seconds; returns {cache_id, expires_at}.';

-- Reserves the estimated cost of one call against every active window of the tenant.
-- Returns one of
--   {status: 'reserved', reservation_id, model, expires_at, estimated_tokens,
--    estimated_cost_usd, estimated_cost_brl, budget_ids}
--   {status: 'refused', reason, budget_id, message} with reason
--     unknown_model    the model is not in the registry or inactive
--     tenant_inactive  the tenant is suspended or cancelled
--     trial_ended      the trial is over and the plan is free: no AI on the platform's keys
--                      (a chat model of a provider the tenant has its own key for goes on)
--     paused           a window is paused (reached 100 %, or paused by an admin)
--     no_budget        no active window limits anything: AI is off until one exists
--     limit            used + reserved + this estimate would pass a window's limit
-- Windows with pause_at_limit = false hold the estimate but never refuse.
create or replace function public.ai_reserve(
  tenant_id uuid,
  feature text,
  model text,
  estimated_input_tokens integer default 0,
  estimated_output_tokens integer default 0,
  estimated_characters integer default 0,
  estimated_audio_seconds numeric default 0,
  conversation_id uuid default null,
  message_id uuid default null,
  bot_id uuid default null,
  request_id text default null,
  phone text default null,
  cache_key text default null,
  cache_ttl_seconds integer default null,
  hold_seconds integer default 300,
  as_of timestamptz default now()
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_tenant public.tenants;
  v_model public.ai_models;
  v_budget public.budgets;
  v_full public.budgets;
  v_tokens bigint := greatest(coalesce(ai_reserve.estimated_input_tokens, 0), 0)
                     + greatest(coalesce(ai_reserve.estimated_output_tokens, 0), 0);
  v_usd numeric;
  v_brl numeric;
  v_budget_ids uuid[] := '{}';
  v_reservation public.budget_reservations;
begin
  select * into v_tenant from public.tenants t where t.id = ai_reserve.tenant_id;
  if not found then
    raise exception 'unknown tenant %', ai_reserve.tenant_id using errcode = 'P0002';
  end if;
  select * into v_model from public.ai_models m
   where m.gateway_id = ai_reserve.model and (m.tenant_id is null or m.tenant_id = ai_reserve.tenant_id)
   order by m.tenant_id nulls last limit 1;
  if not found or not v_model.is_active then
    return private.refusal(ai_reserve.tenant_id, ai_reserve.feature, ai_reserve.conversation_id,
      'unknown_model', null,
      format('model "%s" is not in the registry or is inactive', ai_reserve.model));
  end if;
  if v_tenant.status in ('suspended', 'cancelled') then
    return private.refusal(ai_reserve.tenant_id, ai_reserve.feature, ai_reserve.conversation_id,
      'tenant_inactive', null, format('the tenant is %s', v_tenant.status));
  end if;
  if v_tenant.trial_ends_at <= ai_reserve.as_of
     and (select p.price_monthly from public.plans p where p.id = v_tenant.plan_id) = 0
     and not (v_model.api_type = 'chat' and public.ai_tenant_credentials(v_tenant.id) ? v_model.provider) then
    return private.refusal(ai_reserve.tenant_id, ai_reserve.feature, ai_reserve.conversation_id,
      'trial_ended', null, format(
      'the trial ended on %s: subscribe to a paid plan, or connect your own %s key, to keep using AI',
      to_char(v_tenant.trial_ends_at at time zone v_tenant.timezone, 'DD/MM/YYYY'), v_model.provider));
  end if;

  v_usd := private.cost_usd(ai_reserve.tenant_id, v_model.id, ai_reserve.estimated_input_tokens,
    ai_reserve.estimated_output_tokens, 0, 0, ai_reserve.estimated_characters,
    ai_reserve.estimated_audio_seconds);
  v_brl := round(v_usd * private.usd_brl(ai_reserve.as_of), 10);

  perform private.budget_lock(ai_reserve.tenant_id, ai_reserve.as_of);
  perform private.release_expired(ai_reserve.tenant_id, ai_reserve.as_of);

  -- one pass over the active windows; a paused one wins over one without room
  for v_budget in
    select * from public.budgets b where b.tenant_id = ai_reserve.tenant_id and b.is_active order by b.id
  loop
    if v_budget.paused_reason is not null then
      return private.refusal(ai_reserve.tenant_id, ai_reserve.feature, ai_reserve.conversation_id,
        'paused', v_budget.id, case v_budget.paused_reason
        when 'manual' then format('budget "%s" was paused by an admin', v_budget.name)
        else format('budget "%s" reached its limit for this period', v_budget.name) end);
    end if;
    continue when private.budget_used_pct(v_budget) is null;  -- limits nothing
    if v_full is null and v_budget.pause_at_limit and (
         (v_budget.mode in ('tokens', 'both')
          and v_budget.used_tokens + v_budget.reserved_tokens + v_tokens > v_budget.token_limit)
      or (v_budget.mode in ('brl', 'both')
          and v_budget.used_brl + v_budget.reserved_brl + v_brl > v_budget.brl_limit)) then
      v_full := v_budget;
    end if;
    v_budget_ids := v_budget_ids || v_budget.id;
  end loop;
  if v_full.id is not null then
    return private.refusal(ai_reserve.tenant_id, ai_reserve.feature, ai_reserve.conversation_id,
      'limit', v_full.id,
      format('budget "%s" has not enough left for this call in this period', v_full.name));
  end if;
  if cardinality(v_budget_ids) = 0 then
    return private.refusal(ai_reserve.tenant_id, ai_reserve.feature, ai_reserve.conversation_id,
      'no_budget', null, 'the tenant has no active AI budget');
  end if;

  update public.budgets b
     set reserved_tokens = b.reserved_tokens + v_tokens, reserved_brl = b.reserved_brl + v_brl
   where b.id = any (v_budget_ids);
  insert into public.budget_reservations (tenant_id, feature, model_id, budget_ids, estimated_tokens,
    estimated_usd, estimated_brl, cache_key, cache_ttl_seconds, conversation_id, message_id, bot_id,
    request_id, phone_hash, created_at, expires_at)
  values (ai_reserve.tenant_id, ai_reserve.feature, v_model.id, v_budget_ids, v_tokens, v_usd, v_brl,
    ai_reserve.cache_key, ai_reserve.cache_ttl_seconds, ai_reserve.conversation_id, ai_reserve.message_id,
    ai_reserve.bot_id, ai_reserve.request_id, private.phone_hash(ai_reserve.phone), ai_reserve.as_of,
    ai_reserve.as_of + make_interval(secs => greatest(coalesce(ai_reserve.hold_seconds, 300), 1)))
  returning * into v_reservation;

  return jsonb_build_object('status', 'reserved', 'reservation_id', v_reservation.id,
    'model', v_model.gateway_id, 'expires_at', v_reservation.expires_at,
    'estimated_tokens', v_tokens, 'estimated_cost_usd', v_usd, 'estimated_cost_brl', v_brl,
    'budget_ids', to_jsonb(v_budget_ids));
end;
$$;
comment on function public.ai_reserve(uuid, text, text, integer, integer, integer, numeric, uuid, uuid, uuid, text, text, text, integer, integer, timestamptz)
  is 'Worker: atomically reserves the estimated cost of a call in every active budget window; {status: reserved|refused, ...}.';

-- Settles a reservation after the call: one ai_usage row per failed attempt (failed_attempts:
-- [{model, error_code, error_message, latency_ms, input_tokens, output_tokens, ...}]) and one
-- for the final answer (or final failure), priced here; the estimate is released and the
-- actual usage charged to every window, firing thresholds. outcome 'cancelled' (the call
-- never happened) only releases. Idempotent: settling again returns the first result with
-- status 'already_settled'. A reservation that expired meanwhile is still charged.
-- result: {status: settled|already_settled|released, reservation_id, usage_id, model,
--          cost_usd, cost_brl (all attempts), alerts: [{alert_id, budget_id, threshold}]};
-- also the reservation and the answer's usage row, for ai_finish.
create or replace function private.settle(
  reservation_id uuid,
  outcome text default 'success',
  model text default null,
  input_tokens integer default 0,
  output_tokens integer default 0,
  cache_read_tokens integer default 0,
  cache_write_tokens integer default 0,
  characters integer default 0,
  audio_seconds numeric default 0,
  latency_ms integer default null,
  fallback_from text default null,
  error_code text default null,
  error_message text default null,
  failed_attempts jsonb default '[]'::jsonb,
  metadata jsonb default '{}'::jsonb,
  as_of timestamptz default now(),
  out result jsonb,
  out settled_reservation public.budget_reservations,
  out answer public.ai_usage
)
language plpgsql
set search_path = ''
as $$
declare
  v_tenant_id uuid;
  v_reservation public.budget_reservations;
  v_usage public.ai_usage;
  v_attempt jsonb;
  v_number smallint := 0;
  v_tokens bigint := 0;
  v_usd numeric := 0;
  v_brl numeric := 0;
  v_alerts jsonb;
  v_last public.ai_usage;
begin
  if settle.outcome not in ('success', 'failure', 'cancelled') then
    raise exception 'outcome must be success, failure or cancelled, not "%"', settle.outcome
      using errcode = '22023';
  end if;
  select r.tenant_id into v_tenant_id from public.budget_reservations r where r.id = settle.reservation_id;
  if not found then
    raise exception 'reservation % not found', settle.reservation_id using errcode = 'P0002';
  end if;
  perform private.budget_lock(v_tenant_id, settle.as_of);
  select * into v_reservation from public.budget_reservations r where r.id = settle.reservation_id for update;

  if v_reservation.status in ('settled', 'released') then
    select * into v_last from public.ai_usage u
     where u.reservation_id = v_reservation.id order by u.attempt desc limit 1;
    result := jsonb_build_object('status', 'already_settled', 'reservation_id', v_reservation.id,
      'usage_id', v_last.id, 'model', v_last.model,
      'cost_usd', coalesce((select sum(u.cost_usd) from public.ai_usage u where u.reservation_id = v_reservation.id), 0),
      'cost_brl', coalesce((select sum(u.cost_brl) from public.ai_usage u where u.reservation_id = v_reservation.id), 0),
      'alerts', '[]'::jsonb);
    settled_reservation := v_reservation;
    answer := v_last;
    return;
  end if;

  if settle.outcome <> 'cancelled' then
    -- the context every row of this call shares
    v_usage.tenant_id := v_reservation.tenant_id;
    v_usage.reservation_id := v_reservation.id;
    v_usage.conversation_id := v_reservation.conversation_id;
    v_usage.message_id := v_reservation.message_id;
    v_usage.bot_id := v_reservation.bot_id;
    v_usage.request_id := v_reservation.request_id;
    v_usage.phone_hash := v_reservation.phone_hash;
    v_usage.feature := v_reservation.feature;

    for v_attempt in select * from jsonb_array_elements(coalesce(settle.failed_attempts, '[]'::jsonb)) loop
      v_number := v_number + 1;
      v_usage.attempt := v_number;
      v_usage.model_id := (private.model_by_gateway_id(v_reservation.tenant_id, v_attempt ->> 'model')).id;
      v_usage.outcome := 'failure';
      v_usage.input_tokens := coalesce((v_attempt ->> 'input_tokens')::integer, 0);
      v_usage.output_tokens := coalesce((v_attempt ->> 'output_tokens')::integer, 0);
      v_usage.cache_read_tokens := coalesce((v_attempt ->> 'cache_read_tokens')::integer, 0);
      v_usage.cache_write_tokens := coalesce((v_attempt ->> 'cache_write_tokens')::integer, 0);
      v_usage.characters := coalesce((v_attempt ->> 'characters')::integer, 0);
      v_usage.audio_seconds := coalesce((v_attempt ->> 'audio_seconds')::numeric, 0);
      v_usage.latency_ms := (v_attempt ->> 'latency_ms')::integer;
      v_usage.error_code := v_attempt ->> 'error_code';
      v_usage.error_message := v_attempt ->> 'error_message';
      v_usage.metadata := coalesce(v_attempt -> 'metadata', '{}'::jsonb);
      v_last := private.insert_usage(v_usage, settle.as_of);
      v_tokens := v_tokens + v_last.total_tokens;
      v_usd := v_usd + v_last.cost_usd;
      v_brl := v_brl + v_last.cost_brl;
    end loop;

    v_usage.attempt := v_number + 1;
    v_usage.model_id := case when settle.model is null then v_reservation.model_id
                             else (private.model_by_gateway_id(v_reservation.tenant_id, settle.model)).id end;
    v_usage.outcome := settle.outcome;
    v_usage.input_tokens := settle.input_tokens;
    v_usage.output_tokens := settle.output_tokens;
    v_usage.cache_read_tokens := settle.cache_read_tokens;
    v_usage.cache_write_tokens := settle.cache_write_tokens;
    v_usage.characters := settle.characters;
    v_usage.audio_seconds := settle.audio_seconds;
    v_usage.latency_ms := settle.latency_ms;
    -- the first model tried, unless it answered after a retry (not a fallback)
    if v_number > 0 then
      v_usage.fallback_from := coalesce(settle.fallback_from,
        nullif(settle.failed_attempts -> 0 ->> 'model',
               (select m.gateway_id from public.ai_models m where m.id = v_usage.model_id)));
    else
      v_usage.fallback_from := settle.fallback_from;
    end if;
    v_usage.cache_key := v_reservation.cache_key;
    v_usage.error_code := settle.error_code;
    v_usage.error_message := settle.error_message;
    v_usage.metadata := settle.metadata;
    v_last := private.insert_usage(v_usage, settle.as_of);
    v_tokens := v_tokens + v_last.total_tokens;
    v_usd := v_usd + v_last.cost_usd;
    v_brl := v_brl + v_last.cost_brl;
  end if;

  -- an expired reservation gave its estimate back already: charge, release nothing
  v_alerts := private.budget_charge(v_reservation.tenant_id, v_tokens, v_usd, v_brl,
    case when v_reservation.status = 'open' then v_reservation.budget_ids else '{}'::uuid[] end,
    v_reservation.estimated_tokens, v_reservation.estimated_brl, settle.as_of);

  update public.budget_reservations r
     set status = case when settle.outcome = 'cancelled' then 'released' else 'settled' end,
         closed_at = settle.as_of
   where r.id = v_reservation.id;

  result := jsonb_build_object(
    'status', case when settle.outcome = 'cancelled' then 'released' else 'settled' end,
    'reservation_id', v_reservation.id, 'usage_id', v_last.id, 'model', v_last.model,
    'cost_usd', v_usd, 'cost_brl', v_brl, 'alerts', v_alerts);
  settled_reservation := v_reservation;
  answer := v_last;
end;
$$;

-- Settles a reservation after the call (see private.settle). Returns
--   {status: settled|already_settled|released, reservation_id, usage_id, model,
--    cost_usd, cost_brl (all attempts), alerts: [{alert_id, budget_id, threshold}]}.
create or replace function public.ai_settle(
  reservation_id uuid,
  outcome text default 'success',
  model text default null,
  input_tokens integer default 0,
  output_tokens integer default 0,
  cache_read_tokens integer default 0,
  cache_write_tokens integer default 0,
  characters integer default 0,
  audio_seconds numeric default 0,
  latency_ms integer default null,
  fallback_from text default null,
  error_code text default null,
  error_message text default null,
  failed_attempts jsonb default '[]'::jsonb,
  metadata jsonb default '{}'::jsonb,
  as_of timestamptz default now()
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
begin
  return (private.settle(
    reservation_id => ai_settle.reservation_id, outcome => ai_settle.outcome, model => ai_settle.model,
    input_tokens => ai_settle.input_tokens, output_tokens => ai_settle.output_tokens,
    cache_read_tokens => ai_settle.cache_read_tokens, cache_write_tokens => ai_settle.cache_write_tokens,
    characters => ai_settle.characters, audio_seconds => ai_settle.audio_seconds,
    latency_ms => ai_settle.latency_ms, fallback_from => ai_settle.fallback_from,
    error_code => ai_settle.error_code, error_message => ai_settle.error_message,
    failed_attempts => ai_settle.failed_attempts, metadata => ai_settle.metadata,
    as_of => ai_settle.as_of)).result;
end;
$$;
comment on function public.ai_settle(uuid, text, text, integer, integer, integer, integer, integer, numeric, integer, text, text, text, jsonb, jsonb, timestamptz)
  is 'Worker: records the usage of a reserved call (and its failed attempts), releases the estimate, charges budgets. Idempotent.';

-- Usage that had no reservation: a cache hit served outside ai_begin (e.g. TTS audio from
-- the TTS cache: outcome 'cache_hit', cost 0, saved = what the counts would cost unless
-- saved_usd is given), or a call made outside the reply path (embeddings at ingestion).
-- Charged to the budgets without a limit check: the call already happened.
-- Returns {status: 'recorded', usage_id, model, cost_usd, cost_brl, saved_usd, saved_brl, alerts}.
create or replace function public.ai_record_usage(
  tenant_id uuid,
  feature text,
  model text,
  outcome text default 'success',
  input_tokens integer default 0,
  output_tokens integer default 0,
  cache_read_tokens integer default 0,
  cache_write_tokens integer default 0,
  characters integer default 0,
  audio_seconds numeric default 0,
  latency_ms integer default null,
  saved_usd numeric default null,
  conversation_id uuid default null,
  message_id uuid default null,
  bot_id uuid default null,
  request_id text default null,
  phone text default null,
  cache_key text default null,
  fallback_from text default null,
  error_code text default null,
  error_message text default null,
  metadata jsonb default '{}'::jsonb,
  as_of timestamptz default now()
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_usage public.ai_usage;
  v_alerts jsonb := '[]'::jsonb;
begin
  if ai_record_usage.outcome not in ('success', 'failure', 'cache_hit') then
    raise exception 'outcome must be success, failure or cache_hit, not "%"', ai_record_usage.outcome
      using errcode = '22023';
  end if;
  v_usage.tenant_id := ai_record_usage.tenant_id;
  v_usage.model_id := (private.model_by_gateway_id(ai_record_usage.tenant_id, ai_record_usage.model)).id;
  v_usage.feature := ai_record_usage.feature;
  v_usage.outcome := ai_record_usage.outcome;
  v_usage.input_tokens := ai_record_usage.input_tokens;
  v_usage.output_tokens := ai_record_usage.output_tokens;
  v_usage.cache_read_tokens := ai_record_usage.cache_read_tokens;
  v_usage.cache_write_tokens := ai_record_usage.cache_write_tokens;
  v_usage.characters := ai_record_usage.characters;
  v_usage.audio_seconds := ai_record_usage.audio_seconds;
  v_usage.latency_ms := ai_record_usage.latency_ms;
  v_usage.saved_usd := ai_record_usage.saved_usd;
  v_usage.conversation_id := ai_record_usage.conversation_id;
  v_usage.message_id := ai_record_usage.message_id;
  v_usage.bot_id := ai_record_usage.bot_id;
  v_usage.request_id := ai_record_usage.request_id;
  v_usage.phone_hash := private.phone_hash(ai_record_usage.phone);
  v_usage.cache_key := ai_record_usage.cache_key;
  v_usage.fallback_from := ai_record_usage.fallback_from;
  v_usage.error_code := ai_record_usage.error_code;
  v_usage.error_message := ai_record_usage.error_message;
  v_usage.metadata := ai_record_usage.metadata;
  if ai_record_usage.outcome <> 'cache_hit' then
    perform private.budget_lock(ai_record_usage.tenant_id, ai_record_usage.as_of);
  end if;
  v_usage := private.insert_usage(v_usage, ai_record_usage.as_of);
  if ai_record_usage.outcome <> 'cache_hit' then
    v_alerts := private.budget_charge(v_usage.tenant_id, v_usage.total_tokens, v_usage.cost_usd,
      v_usage.cost_brl, '{}', 0, 0, ai_record_usage.as_of);
  end if;
  return jsonb_build_object('status', 'recorded', 'usage_id', v_usage.id, 'model', v_usage.model,
    'cost_usd', v_usage.cost_usd, 'cost_brl', v_usage.cost_brl,
    'saved_usd', v_usage.saved_usd, 'saved_brl', v_usage.saved_brl, 'alerts', v_alerts);
end;
$$;
comment on function public.ai_record_usage(uuid, text, text, text, integer, integer, integer, integer, integer, numeric, integer, numeric, uuid, uuid, uuid, text, text, text, text, text, text, jsonb, timestamptz)
  is 'Worker: logs (and charges) usage that had no reservation, e.g. cache hits outside ai_begin.';

-- The first of a reply's two round trips: resolves the policy (policy_id, else the tenant
-- default, else the platform default); with a cache_key and a policy cache TTL, looks the
-- answer up and, on a hit, logs the cached usage; otherwise reserves budget for `model`
-- (default: the first active model of the chain). Every answer carries `policy`:
--   {status: 'hit', usage_id, cache_id, model, response, response_text, saved_usd, saved_brl, policy}
--   {status: 'reserved', reservation_id, model, expires_at, ..., policy}   (see ai_reserve)
--   {status: 'refused', reason, budget_id, message, policy}
-- hold_seconds null: the reservation lives as long as the whole chain may take.
create or replace function public.ai_begin(
  tenant_id uuid,
  feature text,
  model text default null,
  cache_key text default null,
  estimated_input_tokens integer default 0,
  estimated_output_tokens integer default 0,
  estimated_characters integer default 0,
  estimated_audio_seconds numeric default 0,
  policy_id uuid default null,
  conversation_id uuid default null,
  message_id uuid default null,
  bot_id uuid default null,
  request_id text default null,
  phone text default null,
  hold_seconds integer default null,
  as_of timestamptz default now()
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_policy public.gateway_policies := private.effective_policy(ai_begin.tenant_id, ai_begin.policy_id);
  v_policy_json jsonb := private.policy_json(v_policy);
  v_model text := ai_begin.model;
  v_ttl integer := coalesce(v_policy.cache_ttl_seconds, 0);
  v_hit jsonb;
  v_usage public.ai_usage;
begin
  if v_model is null then
    select c.gateway_id into v_model
      from unnest(v_policy.chain) with ordinality as c(gateway_id, ord)
      join public.ai_models m on m.gateway_id = c.gateway_id and m.is_active
       and (m.tenant_id is null or m.tenant_id = ai_begin.tenant_id)
     order by c.ord limit 1;
  end if;
  if ai_begin.cache_key is not null and v_ttl > 0 then
    v_hit := public.ai_cache_get(ai_begin.tenant_id, ai_begin.cache_key, ai_begin.as_of);
    if v_hit is not null then
      v_usage.tenant_id := ai_begin.tenant_id;
      v_usage.model_id := (private.model_by_gateway_id(ai_begin.tenant_id, v_hit ->> 'model')).id;
      v_usage.feature := ai_begin.feature;
      v_usage.outcome := 'cache_hit';
      v_usage.input_tokens := (v_hit ->> 'input_tokens')::integer;
      v_usage.output_tokens := (v_hit ->> 'output_tokens')::integer;
      v_usage.cache_read_tokens := (v_hit ->> 'cache_read_tokens')::integer;
      v_usage.cache_write_tokens := (v_hit ->> 'cache_write_tokens')::integer;
      v_usage.saved_usd := (v_hit ->> 'cost_usd')::numeric;
      v_usage.saved_brl := (v_hit ->> 'cost_brl')::numeric;
      v_usage.cache_key := ai_begin.cache_key;
      v_usage.conversation_id := ai_begin.conversation_id;
      v_usage.message_id := ai_begin.message_id;
      v_usage.bot_id := ai_begin.bot_id;
      v_usage.request_id := ai_begin.request_id;
      v_usage.phone_hash := private.phone_hash(ai_begin.phone);
      v_usage.metadata := jsonb_build_object('cache_id', v_hit -> 'cache_id');
      v_usage := private.insert_usage(v_usage, ai_begin.as_of);
      return jsonb_build_object('status', 'hit', 'usage_id', v_usage.id, 'cache_id', v_hit -> 'cache_id',
        'model', v_hit -> 'model', 'response', v_hit -> 'response', 'response_text', v_hit -> 'response_text',
        'saved_usd', v_usage.saved_usd, 'saved_brl', v_usage.saved_brl, 'policy', v_policy_json);
    end if;
  end if;
  return public.ai_reserve(
      tenant_id => ai_begin.tenant_id, feature => ai_begin.feature, model => v_model,
      estimated_input_tokens => ai_begin.estimated_input_tokens,
      estimated_output_tokens => ai_begin.estimated_output_tokens,
      estimated_characters => ai_begin.estimated_characters,
      estimated_audio_seconds => ai_begin.estimated_audio_seconds,
      conversation_id => ai_begin.conversation_id, message_id => ai_begin.message_id,
      bot_id => ai_begin.bot_id, request_id => ai_begin.request_id, phone => ai_begin.phone,
      cache_key => case when v_ttl > 0 then ai_begin.cache_key end, cache_ttl_seconds => v_ttl,
      hold_seconds => coalesce(ai_begin.hold_seconds,
        ceil(coalesce(v_policy.timeout_ms, 20000) / 1000.0 * coalesce(cardinality(v_policy.chain), 1)
             * (1 + coalesce(v_policy.max_retries, 0)))::integer + 30),
      as_of => ai_begin.as_of)
    || jsonb_build_object('policy', v_policy_json);
end;
$$;
comment on function public.ai_begin(uuid, text, text, text, integer, integer, integer, numeric, uuid, uuid, uuid, uuid, text, text, integer, timestamptz)
  is 'Worker, round trip 1 of a reply: exact cache lookup, else budget reservation; returns the policy too.';

-- The policy a call follows (the one asked for, else the tenant default, else the
-- platform default), with its chain's active chat models in order: what the worker's
-- gateway walks.
create or replace function public.ai_policy(tenant_id uuid, policy_id uuid default null)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select private.policy_json(p) || jsonb_build_object('links', coalesce((
           select jsonb_agg(jsonb_build_object('provider', m.provider, 'model', m.model,
                    'gateway_id', m.gateway_id, 'context_window', m.context_window,
                    'structured_output', m.capabilities ->> 'structured_output') order by c.ord)
             from unnest(p.chain) with ordinality as c(gateway_id, ord)
             -- the tenant's own model first; a model deleted since is left out
             cross join lateral (
               select * from public.ai_models r
                where r.gateway_id = c.gateway_id and (r.tenant_id is null or r.tenant_id = ai_policy.tenant_id)
                order by r.tenant_id nulls last limit 1) m
            where m.is_active and m.api_type = 'chat'),
           '[]'::jsonb))
    from private.effective_policy(ai_policy.tenant_id, ai_policy.policy_id) p
   where p.id is not null
$$;
comment on function public.ai_policy(uuid, uuid) is 'Worker: the effective gateway policy with its chain''s active chat models, in order.';

-- A tenant's own providers (what the worker calls them with, and what lets a call go on
-- after the trial): the tenant's active `llm` integrations with their own Vault secret, the
-- most recently updated one per provider, each {"secret", "base_url"} (base_url null: the
-- provider's public API; anthropic speaks Anthropic's protocol, every other provider
-- OpenAI's chat completions).
create or replace function public.ai_tenant_credentials(tenant_id uuid)
returns jsonb
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(jsonb_object_agg(i.provider,
           jsonb_build_object('secret', k.secret, 'base_url', i.config ->> 'base_url') order by i.updated_at),
         '{}'::jsonb)
    from public.integrations i
    cross join lateral private.vault_secret(i.secret_id, 'integration:' || i.id::text) as k(secret)
   where i.tenant_id = ai_tenant_credentials.tenant_id and i.type = 'llm' and i.status = 'active'
     and k.secret is not null
$$;
comment on function public.ai_tenant_credentials(uuid) is 'Worker: the tenant''s own LLM providers ({"groq": {"secret": .., "base_url": "https://api.groq.com/openai/v1"}, "anthropic": {..}}) from its active llm integrations.';

-- The second round trip: ai_settle, then, for a successful answer of a reservation made
-- with a cache key, ai_cache_put under the policy TTL. Returns ai_settle's object plus
-- cache: {cache_id, expires_at} or null.
create or replace function public.ai_finish(
  reservation_id uuid,
  outcome text default 'success',
  model text default null,
  input_tokens integer default 0,
  output_tokens integer default 0,
  cache_read_tokens integer default 0,
  cache_write_tokens integer default 0,
  characters integer default 0,
  audio_seconds numeric default 0,
  latency_ms integer default null,
  response jsonb default null,
  response_text text default null,
  fallback_from text default null,
  error_code text default null,
  error_message text default null,
  failed_attempts jsonb default '[]'::jsonb,
  metadata jsonb default '{}'::jsonb,
  as_of timestamptz default now()
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_settled record;
  v_reservation public.budget_reservations;
  v_answer public.ai_usage;
  v_entry public.response_cache;
  v_cache jsonb;
begin
  select * into v_settled from private.settle(
    reservation_id => ai_finish.reservation_id, outcome => ai_finish.outcome, model => ai_finish.model,
    input_tokens => ai_finish.input_tokens, output_tokens => ai_finish.output_tokens,
    cache_read_tokens => ai_finish.cache_read_tokens, cache_write_tokens => ai_finish.cache_write_tokens,
    characters => ai_finish.characters, audio_seconds => ai_finish.audio_seconds,
    latency_ms => ai_finish.latency_ms, fallback_from => ai_finish.fallback_from,
    error_code => ai_finish.error_code, error_message => ai_finish.error_message,
    failed_attempts => ai_finish.failed_attempts, metadata => ai_finish.metadata, as_of => ai_finish.as_of);
  v_reservation := v_settled.settled_reservation;
  v_answer := v_settled.answer;
  if v_settled.result ->> 'status' = 'settled' and ai_finish.outcome = 'success'
     and (ai_finish.response is not null or ai_finish.response_text is not null)
     and v_reservation.cache_key is not null and coalesce(v_reservation.cache_ttl_seconds, 0) > 0 then
    -- the answer's own cost (not the failed attempts') is what a hit will save
    v_entry := private.cache_store(v_answer.tenant_id, v_reservation.cache_key, v_answer.model_id,
      ai_finish.response, ai_finish.response_text, v_answer.input_tokens, v_answer.output_tokens,
      v_answer.cache_read_tokens, v_answer.cache_write_tokens, v_answer.cost_usd, v_answer.cost_brl,
      v_reservation.cache_ttl_seconds, ai_finish.as_of);
    v_cache := jsonb_build_object('cache_id', v_entry.id, 'expires_at', v_entry.expires_at);
  end if;
  return v_settled.result || jsonb_build_object('cache', v_cache);
end;
$$;
comment on function public.ai_finish(uuid, text, text, integer, integer, integer, integer, integer, numeric, integer, jsonb, text, text, text, text, jsonb, jsonb, timestamptz)
  is 'Worker, round trip 2 of a reply: ai_settle plus ai_cache_put of a successful answer.';

/**
 * ----
 * Section - Jobs (registered in job_schedules; private.run_job records each run in job_runs)
 * ----
 */

-- Rolls every budget window whose period is over (reserve and settle also roll lazily).
create or replace function private.job_budget_period_reset(as_of timestamptz default now())
returns integer
language plpgsql
security definer
set search_path = ''
as $$
begin
  -- lock in id order first, as every function of this module does
  perform 1 from public.budgets b where b.period_end <= job_budget_period_reset.as_of order by b.id for update;
  return private.budget_roll(null, job_budget_period_reset.as_of);
end;
$$;
comment on function private.job_budget_period_reset(timestamptz) is 'Job: starts a new period for every budget window whose period ended. Returns windows rolled.';

-- Gives back the budget of abandoned reservations (reserve also does it per tenant).
create or replace function private.job_ai_reservations_expire(as_of timestamptz default now())
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_tenant uuid;
  v_rows integer := 0;
begin
  for v_tenant in
    select distinct r.tenant_id from public.budget_reservations r
     where r.status = 'open' and r.expires_at <= job_ai_reservations_expire.as_of
  loop
    perform 1 from public.budgets b where b.tenant_id = v_tenant order by b.id for update;
    v_rows := v_rows + private.release_expired(v_tenant, job_ai_reservations_expire.as_of);
  end loop;
  return v_rows;
end;
$$;
comment on function private.job_ai_reservations_expire(timestamptz) is 'Job: expires open reservations past expires_at and releases their estimates.';

-- Deletes expired cache entries (their hits stay counted in ai_usage).
create or replace function private.job_ai_cache_purge(as_of timestamptz default now())
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_rows integer;
begin
  delete from public.response_cache c where c.expires_at <= job_ai_cache_purge.as_of;
  get diagnostics v_rows = row_count;
  return v_rows;
end;
$$;
comment on function private.job_ai_cache_purge(timestamptz) is 'Job: deletes expired response cache entries.';

insert into public.job_schedules (name, description, cron, function_name) values
  ('budget_period_reset', 'Starts a new period for AI budget windows whose period ended.', '*/10 * * * *',
   'private.job_budget_period_reset'),
  ('ai_reservations_expire', 'Releases the estimates of abandoned AI budget reservations.', '* * * * *',
   'private.job_ai_reservations_expire'),
  ('ai_cache_purge', 'Deletes expired AI response cache entries.', '17 * * * *', 'private.job_ai_cache_purge')
on conflict (name) do update set description = excluded.description, function_name = excluded.function_name,
  runner = excluded.runner;

/**
 * ----
 * Section - Views (security_invoker: the caller's RLS applies, so only admins see rows)
 * ----
 */

-- Budget windows as a dashboard shows them: a window whose period is over but was not yet
-- rolled reads as empty, so a dashboard never shows last period's usage as current.
create or replace view public.budget_status with (security_invoker = true) as
select b.id, b.tenant_id, b.name, b.kind, b.mode, b.period, b.token_limit, b.brl_limit,
       b.pause_at_limit, b.is_active, b.paused_reason,
       case when b.period_end <= now() then null else b.period_start end as period_start,
       case when b.period_end <= now() then null else b.period_end end as period_end,
       case when b.period_end <= now() then 0 else b.used_tokens end as used_tokens,
       case when b.period_end <= now() then 0 else round(b.used_brl, 4) end as used_brl,
       b.reserved_tokens, round(b.reserved_brl, 4) as reserved_brl,
       case when b.period_end <= now() then 0 else round(private.budget_used_pct(b), 2) end as used_pct,
       case when b.brl_limit is not null and b.period_end > now()
            then round(greatest(b.brl_limit - b.used_brl - b.reserved_brl, 0), 4) end as remaining_brl,
       case when b.token_limit is not null and b.period_end > now()
            then greatest(b.token_limit - b.used_tokens - b.reserved_tokens, 0) end as remaining_tokens
  from public.budgets b;
comment on view public.budget_status is 'Budget windows with current usage in percent and what is left; admins only (RLS of budgets).';

-- Exact-cache performance per tenant: entries and their hits, and the hit rate of the
-- last 30 days of lookups (ai_usage rows made with a cache key).
create or replace view public.ai_cache_performance with (security_invoker = true) as
with lookups as (
  select u.tenant_id,
         count(*) filter (where u.cached) as hits,
         count(*) filter (where not u.cached) as misses,
         sum(u.saved_usd) as saved_usd,
         sum(u.saved_brl) as saved_brl
    from public.ai_usage u
   where u.cache_key is not null and u.created_at > now() - interval '30 days'
   group by u.tenant_id
), entries as (
  select c.tenant_id, count(*) as entries, count(*) filter (where c.expires_at > now()) as live_entries,
         sum(c.hits) as entry_hits
    from public.response_cache c
   group by c.tenant_id
)
select coalesce(l.tenant_id, e.tenant_id) as tenant_id,
       coalesce(e.entries, 0) as entries,
       coalesce(e.live_entries, 0) as live_entries,
       coalesce(e.entry_hits, 0) as entry_hits,
       coalesce(l.hits, 0) as hits_30d,
       coalesce(l.misses, 0) as misses_30d,
       round(coalesce(l.hits, 0)::numeric / nullif(coalesce(l.hits, 0) + coalesce(l.misses, 0), 0), 4) as hit_rate_30d,
       round(coalesce(l.saved_usd, 0), 6) as saved_usd_30d,
       round(coalesce(l.saved_brl, 0), 6) as saved_brl_30d
  from lookups l full join entries e on e.tenant_id = l.tenant_id;
comment on view public.ai_cache_performance is 'Exact cache per tenant: entries, hits, 30-day hit rate and money saved; admins only (RLS of ai_usage and response_cache).';

/**
 * ----
 * Section - Grants
 * ----
 */
grant select on public.ai_models, public.fx_rates to authenticated;
grant insert (tenant_id, provider, model, gateway_id, capabilities, context_window, max_output_tokens,
    input_usd_per_mtok, output_usd_per_mtok, cache_read_usd_per_mtok, cache_write_usd_per_mtok, is_active,
    description),
  update (provider, model, gateway_id, capabilities, context_window, max_output_tokens, input_usd_per_mtok,
    output_usd_per_mtok, cache_read_usd_per_mtok, cache_write_usd_per_mtok, is_active, description), delete
  on public.ai_models to authenticated;
grant select on public.pricing_overrides, public.budget_reservations, public.ai_usage to authenticated;
grant select, delete on public.response_cache to authenticated;
grant select, insert (tenant_id, name, chain, timeout_ms, max_retries, failures_before_cooldown,
    cooldown_seconds, cache_ttl_seconds, is_default),
  update (name, chain, timeout_ms, max_retries, failures_before_cooldown, cooldown_seconds,
    cache_ttl_seconds, is_default), delete
  on public.gateway_policies to authenticated;
grant select, insert (tenant_id, name, mode, period, token_limit, brl_limit, notify_thresholds,
    pause_at_limit, is_active),
  update (name, mode, period, token_limit, brl_limit, inherits_from_plan, notify_thresholds,
    pause_at_limit, is_active, paused_reason), delete
  on public.budgets to authenticated;
grant select on public.budget_status, public.ai_cache_performance to authenticated, service_role;

grant select, insert, update, delete on public.ai_models, public.pricing_overrides, public.fx_rates,
  public.gateway_policies, public.budgets, public.budget_reservations, public.ai_usage,
  public.response_cache to service_role;

revoke execute on all functions in schema private from public, anon;
grant execute on function private.budget_plan_defaults(uuid), private.budget_window(text, text, timestamptz),
  private.budget_used_pct(public.budgets) to authenticated, service_role;
grant execute on function private.job_budget_period_reset(timestamptz),
  private.job_ai_reservations_expire(timestamptz), private.job_ai_cache_purge(timestamptz)
  to service_role;

revoke execute on function
  public.ai_cache_get(uuid, text, timestamptz),
  public.ai_cache_put(uuid, text, text, jsonb, text, integer, integer, integer, integer, numeric, integer, timestamptz),
  public.ai_reserve(uuid, text, text, integer, integer, integer, numeric, uuid, uuid, uuid, text, text, text, integer, integer, timestamptz),
  public.ai_settle(uuid, text, text, integer, integer, integer, integer, integer, numeric, integer, text, text, text, jsonb, jsonb, timestamptz),
  public.ai_record_usage(uuid, text, text, text, integer, integer, integer, integer, integer, numeric, integer, numeric, uuid, uuid, uuid, text, text, text, text, text, text, jsonb, timestamptz),
  public.ai_begin(uuid, text, text, text, integer, integer, integer, numeric, uuid, uuid, uuid, uuid, text, text, integer, timestamptz),
  public.ai_finish(uuid, text, text, integer, integer, integer, integer, integer, numeric, integer, jsonb, text, text, text, text, jsonb, jsonb, timestamptz),
  public.ai_policy(uuid, uuid),
  public.ai_tenant_credentials(uuid)
  from public, anon, authenticated;
grant execute on function
  public.ai_cache_get(uuid, text, timestamptz),
  public.ai_cache_put(uuid, text, text, jsonb, text, integer, integer, integer, integer, numeric, integer, timestamptz),
  public.ai_reserve(uuid, text, text, integer, integer, integer, numeric, uuid, uuid, uuid, text, text, text, integer, integer, timestamptz),
  public.ai_settle(uuid, text, text, integer, integer, integer, integer, integer, numeric, integer, text, text, text, jsonb, jsonb, timestamptz),
  public.ai_record_usage(uuid, text, text, text, integer, integer, integer, integer, integer, numeric, integer, numeric, uuid, uuid, uuid, text, text, text, text, text, text, jsonb, timestamptz),
  public.ai_begin(uuid, text, text, text, integer, integer, integer, numeric, uuid, uuid, uuid, uuid, text, text, integer, timestamptz),
  public.ai_finish(uuid, text, text, integer, integer, integer, integer, integer, numeric, integer, jsonb, text, text, text, text, jsonb, jsonb, timestamptz),
  public.ai_policy(uuid, uuid),
  public.ai_tenant_credentials(uuid)
  to service_role;
