/**
 * Zapbase module 2b: events and time.
 * The transactional outbox every other module writes to, and what reads it: the catalogue
 * of event types, `events` (one row per change another part of Zapbase or a tenant's system
 * reacts to), written only by `private.emit` inside the transaction that made the change.
 *
 *   change (trigger of the owning module) ─► private.emit ─► events
 *
 * Modules declare their event types in the catalogue and emit from AFTER triggers in their
 * own file (whatsapp: messages, conversations, contacts; ai: budgets); alerts are emitted
 * here, and delivered on every channel by 20260101000160_alerts.sql.
 *
 * Outbound webhooks (seed 001 webhooks, webhook_deliveries, Mongo webhook_logs): a tenant's
 * endpoints subscribe to event types; emit creates one delivery per event and endpoint in the
 * same transaction (nothing is lost, the unique pair sends nothing twice), the worker's
 * deliverer claims them (SKIP LOCKED, leased), signs each attempt per the Standard Webhooks
 * spec and records every attempt. Retries follow a Svix-like schedule; an endpoint failing
 * for 5 days is disabled with an alert.
 *
 *   events ─► webhook_deliveries ─► webhooks_claim ─► POST ─► webhooks_record ─► webhook_attempts
 *
 * Time: one registry of schedules (`job_schedules`: cron expression, SQL job function) and
 * one entry point, `private.run_due_jobs()`, called every minute by pg_cron on Supabase and
 * by the worker's scheduler elsewhere (one leader across replicas). Every run, whoever starts
 * it, is recorded in `job_runs` by `private.record_job_run`. Modules register their jobs in
 * their own file; jobs are `private.job_<name>(as_of timestamptz) returns integer` (rows
 * affected) and raise on failure: run_job records the error and the schedule goes on.
 *
 * Who may do what:
 *   every member  reads the catalogue of event types
 *   admin         reads the tenant's events (the activity feed); manages webhook endpoints
 *                 (created and re-keyed through RPCs that show the secret once; secrets
 *                 themselves are Vault ids no client reads), reads deliveries and attempts,
 *                 replays a delivery
 *   nobody        writes events directly: only private.emit, from triggers and functions
 *   service role  everything the worker does: runs due jobs, reads and toggles schedules
 */

/**
 * ----
 * Section - Tables
 * ----
 */

-- The catalogue: every event type with what it means (Studio shows it; webhooks and rules
-- subscribe by these names). Each module adds its own types.
create table if not exists public.event_types (
  type text primary key check (type ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$' and length(type) <= 80),
  module text not null check (module ~ '^[a-z_]{2,40}$'),
  description text not null check (length(description) between 1 and 1000),
  created_at timestamptz not null default now()
);
alter table public.event_types enable row level security;
comment on table public.event_types is 'Catalogue of event types (dotted names) with their meaning; events, webhooks and rules use these names.';
comment on column public.event_types.module is 'The module that emits events of this type.';

-- The outbox. Partition-ready: the primary key holds created_at, so the table can become
-- `partition by range (created_at)` with one partition per month without changing a key or
-- a foreign key (those referencing an event name its created_at too); retention then drops
-- whole months beyond the longest plan retention and deletes per tenant inside them.
create table if not exists public.events (
  id uuid not null default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  type text not null references public.event_types (type),
  subject_table text check (subject_table ~ '^[a-z_][a-z0-9_]{0,62}$'),
  subject_id uuid,
  payload jsonb not null default '{}'::jsonb,
  actor_id uuid,
  actor_role text not null,
  cause_event_id uuid,
  depth smallint not null default 0 check (depth between 0 and 100),
  created_at timestamptz not null default clock_timestamp(),
  primary key (tenant_id, created_at, id)
);
alter table public.events enable row level security;
-- No index on type alone: every index is paid by each emit on the hottest write paths, and
-- readers by type (a rule's dry run) come with the tenant and read the primary key newest first.
drop index if exists public.events_type_idx;
comment on table public.events is 'Transactional outbox: one row per change others react to, written by private.emit in the transaction of the change; the tenant''s activity feed. Kept for the plan''s event_retention_days.';
comment on column public.events.subject_table is 'Table of the row the event is about (messages, conversations, contacts, alerts...).';
comment on column public.events.subject_id is 'id of that row.';
comment on column public.events.payload is 'What a consumer needs without reading the subject again (ids, status, error...).';
comment on column public.events.actor_id is 'auth.users id of the member who made the change; null for webhooks, the worker and jobs.';
comment on column public.events.actor_role is 'Database role of the request that made the change (authenticated, service_role, postgres for jobs).';
comment on column public.events.cause_event_id is 'The event whose handling made this change (automation), set through private.set_event_cause.';
comment on column public.events.depth is '0 for a change nobody automated; cause''s depth + 1 otherwise (loop guard of consumers).';

-- Schedules (seed 000 scheduled jobs): what runs when. The next run is stored, with an
-- index, so the minute tick is an index range scan; times are UTC, as pg_cron's.
create table if not exists public.job_schedules (
  name text primary key check (name ~ '^[a-z0-9_.]{2,80}$'),
  description text not null check (length(description) between 1 and 1000),
  cron text not null check (length(cron) <= 200),
  function_name text not null check (function_name ~ '^private\.job_[a-z0-9_]+$'),
  runner text not null default 'database' check (runner in ('database', 'worker')),
  enabled boolean not null default true,
  next_run_at timestamptz,
  last_run_at timestamptz,
  last_status text check (last_status in ('succeeded', 'failed')),
  last_error text,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
alter table public.job_schedules enable row level security;
create index if not exists job_schedules_due_idx on public.job_schedules (next_run_at) where enabled;
comment on table public.job_schedules is 'Registry of scheduled jobs: cron expression (UTC), the SQL job function, the next run stored. Ticked by private.run_due_jobs().';
comment on column public.job_schedules.cron is 'Five fields, UTC: minute hour day-of-month month day-of-week, each *, a number, a range a-b, a list, with an optional /step (e.g. */5 * * * *, 0 3 * * 1-5).';
comment on column public.job_schedules.function_name is 'private.job_<name>(as_of timestamptz) returns integer (rows affected); raises on failure.';
comment on column public.job_schedules.runner is 'database: run by private.run_due_jobs(); worker: the job needs I/O (e.g. deleting storage objects), the worker''s scheduler claims and runs it.';
comment on column public.job_schedules.next_run_at is 'When it runs next: set from cron on insert, on a cron change and after every run.';

-- Outbound webhook endpoints (seed 001 webhooks): where a tenant's systems hear events.
create table if not exists public.webhook_endpoints (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  name text not null check (length(name) between 1 and 120),
  url text not null check (url ~ '^https?://[^\s/?#@]+' and length(url) <= 2000),
  event_types text[] not null check (cardinality(event_types) between 1 and 100),
  secret_id uuid,
  previous_secret_id uuid,
  previous_secret_expires_at timestamptz,
  enabled boolean not null default true,
  disabled_reason text check (length(disabled_reason) <= 500),
  disabled_at timestamptz,
  failing_since timestamptz,
  last_success_at timestamptz,
  last_failure_at timestamptz,
  created_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id)
);
alter table public.webhook_endpoints enable row level security;
create index if not exists webhook_endpoints_fanout_idx on public.webhook_endpoints (tenant_id) where enabled;
create index if not exists webhook_endpoints_created_by_idx on public.webhook_endpoints (created_by);
comment on table public.webhook_endpoints is 'A tenant''s HTTPS endpoints that receive signed events (Standard Webhooks). Created with create_webhook_endpoint, re-keyed with rotate_webhook_secret.';
comment on column public.webhook_endpoints.url is 'https:// only (http:// where the database setting zapbase.webhooks_allow_http is on, for local development); the worker also refuses private, loopback and link-local addresses.';
comment on column public.webhook_endpoints.event_types is 'Subscribed types: catalogue names, "prefix.*" (e.g. message.*) or "*" for every event.';
comment on column public.webhook_endpoints.secret_id is 'Vault id of the signing secret (whsec_ + base64). Never readable by clients.';
comment on column public.webhook_endpoints.previous_secret_id is 'Vault id of the secret before the last rotation: deliveries are signed with both until previous_secret_expires_at.';
comment on column public.webhook_endpoints.failing_since is 'First failed attempt since the last success; failing for 5 days disables the endpoint with an alert.';
comment on column public.webhook_endpoints.disabled_reason is 'Why it was disabled (by an admin, or by the deliverer after 5 days of failures); cleared when re-enabled.';

-- Deliveries (seed 001 webhook_deliveries): one per event and endpoint, the retry state.
create table if not exists public.webhook_deliveries (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  endpoint_id uuid not null,
  event_id uuid not null,
  event_created_at timestamptz not null,
  event_type text not null,
  status text not null default 'pending' check (status in ('pending', 'sending', 'succeeded', 'failed')),
  attempts integer not null default 0,
  next_attempt_at timestamptz not null default now(),
  lease_until timestamptz,
  leased_by text check (length(leased_by) <= 200),
  last_status_code integer,
  last_error text check (length(last_error) <= 2000),
  delivered_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (endpoint_id, event_id),
  foreign key (tenant_id, endpoint_id) references public.webhook_endpoints (tenant_id, id) on delete cascade,
  foreign key (tenant_id, event_created_at, event_id) references public.events (tenant_id, created_at, id)
    on delete cascade
);
alter table public.webhook_deliveries enable row level security;
create index if not exists webhook_deliveries_due_idx on public.webhook_deliveries (next_attempt_at)
  where status = 'pending';
create index if not exists webhook_deliveries_leased_idx on public.webhook_deliveries (lease_until)
  where status = 'sending';
create index if not exists webhook_deliveries_endpoint_idx on public.webhook_deliveries (tenant_id, endpoint_id, created_at desc);
create index if not exists webhook_deliveries_retention_idx on public.webhook_deliveries (tenant_id, created_at);
create index if not exists webhook_deliveries_event_idx on public.webhook_deliveries (tenant_id, event_created_at, event_id);
comment on table public.webhook_deliveries is 'One event to one endpoint: pending → sending (leased) → succeeded, or back to pending on a retryable failure until the schedule ends (failed). Its webhook-id is the event id, the same on every attempt.';
comment on column public.webhook_deliveries.next_attempt_at is 'When it may be sent (retry schedule: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h).';
comment on column public.webhook_deliveries.lease_until is 'A worker claimed it until then; an expired lease (a deliverer killed mid-send) returns it to the queue.';

-- Every attempt (seed 001 Mongo webhook_logs): what the receiver answered, or why nothing.
create table if not exists public.webhook_attempts (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  delivery_id uuid not null,
  endpoint_id uuid not null,
  attempt integer not null,
  status_code integer,
  duration_ms integer,
  response_body text check (length(response_body) <= 4096),
  error text check (length(error) <= 2000),
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  foreign key (tenant_id, delivery_id) references public.webhook_deliveries (tenant_id, id) on delete cascade,
  foreign key (tenant_id, endpoint_id) references public.webhook_endpoints (tenant_id, id) on delete cascade
);
alter table public.webhook_attempts enable row level security;
create index if not exists webhook_attempts_delivery_idx on public.webhook_attempts (tenant_id, delivery_id);
create index if not exists webhook_attempts_endpoint_idx on public.webhook_attempts (tenant_id, endpoint_id, created_at desc);
comment on table public.webhook_attempts is 'Each POST of a delivery: status code, latency, the first 4 KB of the response, or the error (timeout, refused address...).';

/**
 * ----
 * Section - Private helpers
 * ----
 */

-- Marks the rest of the transaction as caused by an event: what it emits carries the cause
-- and a depth one deeper, so automations can refuse to react to their own effects forever.
create or replace function private.set_event_cause(cause_event_id uuid, cause_depth integer)
returns void
language sql
set search_path = ''
as $$
  select set_config('zapbase.cause_event_id', set_event_cause.cause_event_id::text, true),
         set_config('zapbase.cause_depth', set_event_cause.cause_depth::text, true)
$$;
comment on function private.set_event_cause(uuid, integer) is 'Transaction-local: later emits carry this cause and depth + 1.';

-- THE way to write an event: in the caller's transaction, so the event exists exactly when
-- the change does. SECURITY DEFINER: no API role may write events directly.
create or replace function private.emit(
  tenant_id uuid, type text, subject_table text, subject_id uuid, payload jsonb default '{}'::jsonb
) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id uuid := gen_random_uuid();
  v_at timestamptz := clock_timestamp();
  v_cause uuid := nullif(current_setting('zapbase.cause_event_id', true), '')::uuid;
begin
  insert into public.events (id, tenant_id, type, subject_table, subject_id, payload, actor_id, actor_role,
                             cause_event_id, depth, created_at)
  values (v_id, emit.tenant_id, emit.type, emit.subject_table, emit.subject_id, coalesce(emit.payload, '{}'),
          auth.uid(), private.request_role(), v_cause,
          case when v_cause is null then 0
               else coalesce(nullif(current_setting('zapbase.cause_depth', true), '')::integer, 0) + 1 end,
          v_at);
  -- fan-out to the tenant's endpoints, in the same transaction: no event without its deliveries
  -- (most tenants have none: a read settles it without starting an insert)
  if exists (select 1 from public.webhook_endpoints w where w.tenant_id = emit.tenant_id and w.enabled) then
    insert into public.webhook_deliveries (tenant_id, endpoint_id, event_id, event_created_at, event_type)
    select w.tenant_id, w.id, v_id, v_at, emit.type
      from public.webhook_endpoints w
     where w.tenant_id = emit.tenant_id and w.enabled and private.webhook_subscribes(w.event_types, emit.type);
    if found then
      perform pg_notify('zapbase_webhooks', '');
    end if;
  end if;
  return v_id;
end;
$$;
comment on function private.emit(uuid, text, text, uuid, jsonb) is 'Appends one event in the caller''s transaction (actor and cause from the session) and its webhook deliveries. The only writer of events.';

-- Does a subscription list cover an event type: the exact name, "prefix.*" or "*".
create or replace function private.webhook_subscribes(subscribed text[], type text)
returns boolean
language sql
immutable
parallel safe
set search_path = ''
as $$
  select webhook_subscribes.type = any (webhook_subscribes.subscribed) or '*' = any (webhook_subscribes.subscribed)
      or exists (select 1 from unnest(webhook_subscribes.subscribed) p
                  where p like '%.*' and webhook_subscribes.type like left(p, -1) || '%')
$$;

-- How long to wait before the next attempt after `attempts` attempts (Svix-like: at once,
-- 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h); null when the schedule is over.
create or replace function private.webhook_retry_delay(attempts integer)
returns interval
language sql
immutable
parallel safe
set search_path = ''
as $$
  select (array[interval '5 seconds', interval '5 minutes', interval '30 minutes', interval '2 hours',
                interval '5 hours', interval '10 hours', interval '10 hours'])[webhook_retry_delay.attempts]
$$;
comment on function private.webhook_retry_delay(integer) is 'Delay before attempt n + 1 of a webhook delivery (8 attempts in all); null: give up.';

-- A new signing secret: whsec_ + base64 of 32 random bytes (two random UUIDs).
create or replace function private.webhook_new_secret()
returns text
language sql
volatile
set search_path = ''
as $$
  select 'whsec_' || encode(decode(replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', ''), 'hex'),
                            'base64')
$$;

-- The values a cron field allows, sorted: lists of *, n or a-b, each with an optional /step
-- (n/step runs from n to the maximum, as in Vixie cron).
create or replace function private.cron_values(field text, lo integer, hi integer)
returns integer[]
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_item text;
  v_range text;
  v_step integer;
  v_from integer;
  v_to integer;
  v_values integer[] := '{}';
begin
  foreach v_item in array string_to_array(field, ',') loop
    if v_item !~ '^(\*|[0-9]{1,2}(-[0-9]{1,2})?)(/[0-9]{1,2})?$' then
      raise exception 'bad cron field "%"', field using errcode = '22023';
    end if;
    v_range := split_part(v_item, '/', 1);
    v_step := coalesce(nullif(split_part(v_item, '/', 2), '')::integer, 1);
    if v_range = '*' then
      v_from := lo;
      v_to := hi;
    else
      v_from := split_part(v_range, '-', 1)::integer;
      v_to := case when v_range like '%-%' then split_part(v_range, '-', 2)::integer
                   when v_item like '%/%' then hi else v_from end;
    end if;
    if v_from < lo or v_to > hi or v_from > v_to or v_step < 1 then
      raise exception 'cron field "%" is out of range % to %', field, lo, hi using errcode = '22023';
    end if;
    v_values := v_values || array(select generate_series(v_from, v_to, v_step));
  end loop;
  return array(select distinct v from unnest(v_values) v order by v);
end;
$$;

-- The first minute after `after` (UTC) a five-field cron expression matches. Day of month
-- and day of week combine as in cron: when both are restricted, either one matches. Looks
-- ahead four years plus a day (29 February); raises for an expression that never matches.
create or replace function private.cron_next(cron text, after timestamptz)
returns timestamptz
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_fields text[] := regexp_split_to_array(trim(cron), '\s+');
  v_minutes integer[];
  v_hours integer[];
  v_days integer[];
  v_months integer[];
  v_weekdays integer[];
  v_start timestamp := date_trunc('minute', after at time zone 'UTC') + interval '1 minute';
  v_day date;
  v_hour integer;
  v_minute integer;
  v_day_ok boolean;
begin
  if cardinality(v_fields) <> 5 then
    raise exception 'a cron expression has five fields (minute hour day month weekday), not "%"', cron
      using errcode = '22023';
  end if;
  v_minutes := private.cron_values(v_fields[1], 0, 59);
  v_hours := private.cron_values(v_fields[2], 0, 23);
  v_days := private.cron_values(v_fields[3], 1, 31);
  v_months := private.cron_values(v_fields[4], 1, 12);
  v_weekdays := array(select distinct d % 7 from unnest(private.cron_values(v_fields[5], 0, 7)) d);  -- 7 is Sunday
  for v_offset in 0 .. 1461 loop
    v_day := v_start::date + v_offset;
    continue when extract(month from v_day)::integer <> all (v_months);
    v_day_ok := case
      when v_fields[3] like '*%' and v_fields[5] like '*%' then true
      when v_fields[3] like '*%' then extract(dow from v_day)::integer = any (v_weekdays)
      when v_fields[5] like '*%' then extract(day from v_day)::integer = any (v_days)
      else extract(day from v_day)::integer = any (v_days) or extract(dow from v_day)::integer = any (v_weekdays)
    end;
    continue when not v_day_ok;
    foreach v_hour in array v_hours loop
      continue when v_offset = 0 and v_hour < extract(hour from v_start);
      foreach v_minute in array v_minutes loop
        continue when v_offset = 0 and v_hour = extract(hour from v_start) and v_minute < extract(minute from v_start);
        return (v_day + make_interval(hours => v_hour, mins => v_minute)) at time zone 'UTC';
      end loop;
    end loop;
  end loop;
  raise exception 'cron expression "%" never matches a date', cron using errcode = '22023';
end;
$$;
comment on function private.cron_next(text, timestamptz) is 'Next UTC minute after `after` matching a five-field cron expression (*, n, a-b, lists, /step).';

-- THE writer of job_runs: one row per run, whoever ran the job, and the schedule's last run.
create or replace function private.record_job_run(
  job_name text, started_at timestamptz, rows_affected integer, details jsonb, error text default null,
  tenant_id uuid default null
) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id uuid;
begin
  insert into public.job_runs (job_name, tenant_id, status, rows_affected, details, error, started_at, finished_at)
  values (record_job_run.job_name, record_job_run.tenant_id,
          case when record_job_run.error is null then 'succeeded' else 'failed' end,
          record_job_run.rows_affected, coalesce(record_job_run.details, '{}'), record_job_run.error,
          record_job_run.started_at, clock_timestamp())
  returning id into v_id;
  update public.job_schedules s
     set last_run_at = record_job_run.started_at,
         last_status = case when record_job_run.error is null then 'succeeded' else 'failed' end,
         last_error = record_job_run.error,
         next_run_at = private.cron_next(s.cron, greatest(now(), record_job_run.started_at))
   where s.name = record_job_run.job_name;
  return v_id;
end;
$$;
comment on function private.record_job_run(text, timestamptz, integer, jsonb, text, uuid) is 'Records one run of a job in job_runs (failed when error is given) and moves its schedule on.';

-- Runs one registered database job now, as of `as_of`. A failure is recorded, not raised
-- (the job's own changes roll back). Returns the rows affected, null when it failed.
create or replace function private.run_job(name text, as_of timestamptz default now())
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_job public.job_schedules;
  v_started timestamptz := clock_timestamp();
  v_rows integer;
  v_error text;
begin
  select * into v_job from public.job_schedules s where s.name = run_job.name;
  if not found then
    raise exception 'no job named "%"', run_job.name using errcode = 'P0002';
  end if;
  if v_job.runner <> 'database' then
    raise exception 'job "%" needs the worker (it does I/O): run it with `zapbase jobs run %`', v_job.name, v_job.name
      using errcode = '55000';
  end if;
  begin
    if to_regprocedure(v_job.function_name || '(timestamptz)') is null then
      raise exception 'the job function %(as_of timestamptz) does not exist', v_job.function_name;
    end if;
    execute format('select %s($1)', to_regprocedure(v_job.function_name || '(timestamptz)')::oid::regproc)
      into v_rows using run_job.as_of;
  exception when others then
    v_error := coalesce(nullif(sqlerrm, ''), sqlstate);
  end;
  perform private.record_job_run(v_job.name, v_started, v_rows, jsonb_build_object('as_of', run_job.as_of),
                                 v_error);
  return case when v_error is null then v_rows end;
end;
$$;
comment on function private.run_job(text, timestamptz) is 'Runs a database job now and records the run; returns rows affected (null: failed, see job_runs).';

-- The minute tick: every enabled database job that is due, oldest first. Rows locked SKIP
-- LOCKED: pg_cron and a worker ticking at once never run a job twice.
create or replace function private.run_due_jobs()
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_name text;
  v_count integer := 0;
begin
  for v_name in
    select s.name from public.job_schedules s
     where s.enabled and s.next_run_at <= now() and s.runner = 'database'
     order by s.next_run_at
     for update skip locked
  loop
    perform private.run_job(v_name);
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;
comment on function private.run_due_jobs() is 'Runs every due database job (pg_cron every minute on Supabase, the worker''s scheduler elsewhere); returns how many ran.';

-- The worker's share of the tick: due jobs that need I/O, moved to their next run as they
-- are handed out (a worker that dies mid-job skips that one run).
create or replace function private.claim_worker_jobs(as_of timestamptz default now())
returns setof text
language sql
security definer
set search_path = ''
as $$
  update public.job_schedules s set next_run_at = private.cron_next(s.cron, claim_worker_jobs.as_of)
   where s.name in (select d.name from public.job_schedules d
                     where d.enabled and d.runner = 'worker' and d.next_run_at <= claim_worker_jobs.as_of
                     for update skip locked)
  returning s.name
$$;
comment on function private.claim_worker_jobs(timestamptz) is 'Worker: hands out the due worker-run jobs and moves them to their next run.';

-- How long a tenant keeps a kind of history: the plan's days, shortened (never lengthened)
-- by tenants.settings.retention_days.<kind>.
create or replace function private.retention_cutoff(tenant_id uuid, kind text, as_of timestamptz)
returns timestamptz
language sql
stable
set search_path = ''
as $$
  select retention_cutoff.as_of - make_interval(days => least(
           case retention_cutoff.kind when 'events' then p.event_retention_days
                                      when 'deliveries' then p.delivery_retention_days
                                      else p.raw_event_retention_days end,
           case when t.settings -> 'retention_days' ->> retention_cutoff.kind ~ '^[0-9]{1,4}$'
                then (t.settings -> 'retention_days' ->> retention_cutoff.kind)::integer end))
    from public.tenants t join public.plans p on p.id = t.plan_id
   where t.id = retention_cutoff.tenant_id
$$;
comment on function private.retention_cutoff(uuid, text, timestamptz) is 'Oldest time a tenant keeps for kind events, deliveries, inbound_events or status_events (plan days, shortened by tenant settings).';

/**
 * ----
 * Section - Event types of this module
 * ----
 */
insert into public.event_types (type, module, description) values
  ('alert.created', 'events', 'An alert was raised for the tenant (budget threshold, number error, SLA...): payload has its type, priority, title and message.')
on conflict (type) do update set module = excluded.module, description = excluded.description;

/**
 * ----
 * Section - Triggers
 * ----
 */

-- Alerts (tenancy module) reach the tenant through this module: the event first.
create or replace function private.tg_alerts_emit()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.emit(new.tenant_id, 'alert.created', 'alerts', new.id,
    jsonb_build_object('alert_id', new.id, 'type', new.type, 'priority', new.priority, 'title', new.title,
                       'message', new.message, 'payload', new.payload));
  return null;
end;
$$;

drop trigger if exists _500_emit on public.alerts;
create trigger _500_emit after insert on public.alerts
  for each row execute function private.tg_alerts_emit();

/**
 * ----
 * Section - Jobs
 * ----
 */

-- Events, and finished webhook deliveries (with their attempts), older than the tenant's
-- retention (per tenant: index range scans).
create or replace function private.job_events_retention(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_tenant uuid;
  v_rows integer;
  v_total integer := 0;
begin
  for v_tenant in select t.id from public.tenants t loop
    delete from public.events e
     where e.tenant_id = v_tenant and e.created_at < private.retention_cutoff(v_tenant, 'events', as_of);
    get diagnostics v_rows = row_count;
    v_total := v_total + v_rows;
    delete from public.webhook_deliveries d
     where d.tenant_id = v_tenant and d.created_at < private.retention_cutoff(v_tenant, 'deliveries', as_of)
       and d.status in ('succeeded', 'failed');
    get diagnostics v_rows = row_count;
    v_total := v_total + v_rows;
  end loop;
  return v_total;
end;
$$;

-- Endpoints: https only (unless the database allows http for local development), known
-- event types, and a re-enabled endpoint starts healthy.
create or replace function private.tg_webhook_endpoints_check()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_unknown text;
begin
  if new.url !~ '^https://' and coalesce(current_setting('zapbase.webhooks_allow_http', true), '') <> 'on' then
    raise exception 'a webhook URL must use https:// (got %)', left(new.url, 200) using errcode = '22023';
  end if;
  select p into v_unknown from unnest(new.event_types) p
   where p <> '*' and p !~ '^[a-z][a-z0-9_]*\.\*$'
     and not exists (select 1 from public.event_types t where t.type = p)
   limit 1;
  if v_unknown is not null then
    raise exception 'unknown event type "%"', v_unknown using errcode = '22023',
      hint = 'Subscribe to names of public.event_types, a prefix such as message.*, or *.';
  end if;
  if tg_op = 'UPDATE' and new.enabled and not old.enabled then
    new.disabled_reason := null;
    new.disabled_at := null;
    new.failing_since := null;
  elsif tg_op = 'UPDATE' and not new.enabled and old.enabled then
    new.disabled_at := coalesce(new.disabled_at, now());
    new.disabled_reason := coalesce(new.disabled_reason, 'disabled by an admin');
  end if;
  return new;
end;
$$;
drop trigger if exists _200_check on public.webhook_endpoints;
create trigger _200_check before insert or update of url, event_types, enabled on public.webhook_endpoints
  for each row execute function private.tg_webhook_endpoints_check();
drop trigger if exists _100_set_updated_at on public.webhook_endpoints;
create trigger _100_set_updated_at before update on public.webhook_endpoints
  for each row execute function private.tg_set_updated_at();
drop trigger if exists _100_set_updated_at on public.webhook_deliveries;
create trigger _100_set_updated_at before update on public.webhook_deliveries
  for each row execute function private.tg_set_updated_at();
drop trigger if exists _900_audit on public.webhook_endpoints;
create trigger _900_audit after insert or update or delete on public.webhook_endpoints
  for each row execute function private.tg_audit();

drop trigger if exists _100_set_updated_at on public.job_schedules;
create trigger _100_set_updated_at before update on public.job_schedules
  for each row execute function private.tg_set_updated_at();

-- A schedule's next run follows its cron (which is validated here).
create or replace function private.tg_job_schedules_next_run()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.enabled and (tg_op = 'INSERT' or new.cron is distinct from old.cron or not old.enabled
                      or new.next_run_at is null) then
    new.next_run_at := private.cron_next(new.cron, now());
  end if;
  return new;
end;
$$;
drop trigger if exists _200_next_run on public.job_schedules;
create trigger _200_next_run before insert or update on public.job_schedules
  for each row execute function private.tg_job_schedules_next_run();

insert into public.job_schedules (name, description, cron, function_name) values
  ('events_retention', 'Deletes events and webhook deliveries older than the tenant''s retention (plans.event_retention_days, delivery_retention_days).', '15 3 * * *',
   'private.job_events_retention')
on conflict (name) do update set description = excluded.description, function_name = excluded.function_name,
  runner = excluded.runner;

-- pg_cron (Supabase) ticks the registry every minute. Where it is missing (a plain local
-- PostgreSQL) this is a no-op and the worker's scheduler ticks instead.
do $$
begin
  begin
    create extension if not exists pg_cron;
  exception when others then
    raise notice 'pg_cron is not available (%): the worker''s scheduler runs the jobs', sqlerrm;
    return;
  end;
  perform cron.schedule('zapbase-run-due-jobs', '* * * * *', 'select private.run_due_jobs()');
end
$$;

/**
 * ----
 * Section - Webhook endpoints: admin RPCs (SECURITY DEFINER in `private`, granted to
 * authenticated; `public` holds SECURITY INVOKER wrappers that PostgREST exposes)
 * ----
 */

-- Creates an endpoint with a fresh signing secret, shown only in this answer.
create or replace function private.create_webhook_endpoint(
  tenant_id uuid, name text, url text, event_types text[]
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_secret text := private.webhook_new_secret();
  v_endpoint public.webhook_endpoints;
begin
  perform private.require_role(create_webhook_endpoint.tenant_id, 'admin');
  insert into public.webhook_endpoints (tenant_id, name, url, event_types, created_by)
  values (create_webhook_endpoint.tenant_id, create_webhook_endpoint.name, create_webhook_endpoint.url,
          create_webhook_endpoint.event_types, auth.uid())
  returning * into v_endpoint;
  update public.webhook_endpoints w
     set secret_id = private.vault_store('webhook_endpoint:' || v_endpoint.id, v_secret,
                                         'Signing secret of webhook ' || v_endpoint.name)
   where w.id = v_endpoint.id;
  return jsonb_build_object('id', v_endpoint.id, 'secret', v_secret);
end;
$$;

-- A new signing secret; the old one keeps signing (beside the new) for `overlap`, so the
-- receiver can switch without dropping a delivery.
create or replace function private.rotate_webhook_secret(endpoint_id uuid, overlap interval)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_endpoint public.webhook_endpoints;
  v_secret text := private.webhook_new_secret();
begin
  select * into v_endpoint from public.webhook_endpoints w where w.id = rotate_webhook_secret.endpoint_id for update;
  if v_endpoint.id is null or not private.is_member(v_endpoint.tenant_id) then
    raise exception 'webhook endpoint not found' using errcode = 'P0002';
  end if;
  perform private.require_role(v_endpoint.tenant_id, 'admin');
  if rotate_webhook_secret.overlap not between interval '0' and interval '7 days' then
    raise exception 'the overlap of two secrets is between 0 and 7 days' using errcode = '22023';
  end if;
  -- the current secret becomes the endpoint's previous one (its Vault name says so)
  delete from vault.secrets s where s.name = 'webhook_endpoint:' || v_endpoint.id || ':previous';
  perform vault.update_secret(v_endpoint.secret_id, new_name => 'webhook_endpoint:' || v_endpoint.id || ':previous');
  update public.webhook_endpoints w
     set previous_secret_id = w.secret_id,
         previous_secret_expires_at = now() + rotate_webhook_secret.overlap,
         secret_id = private.vault_store('webhook_endpoint:' || w.id, v_secret, 'Signing secret of webhook ' || w.name)
   where w.id = v_endpoint.id;
  return v_secret;
end;
$$;

-- Sends a delivery again from the start of the schedule, with the same webhook-id.
create or replace function private.replay_webhook_delivery(delivery_id uuid)
returns public.webhook_deliveries
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_delivery public.webhook_deliveries;
begin
  select * into v_delivery from public.webhook_deliveries d where d.id = replay_webhook_delivery.delivery_id
     for update;
  if v_delivery.id is null or not private.is_member(v_delivery.tenant_id) then
    raise exception 'webhook delivery not found' using errcode = 'P0002';
  end if;
  perform private.require_role(v_delivery.tenant_id, 'admin');
  if v_delivery.status in ('pending', 'sending') then
    raise exception 'this delivery is still being attempted' using errcode = '55000';
  end if;
  update public.webhook_deliveries d
     set status = 'pending', attempts = 0, next_attempt_at = now(), lease_until = null, leased_by = null
   where d.id = v_delivery.id
  returning * into v_delivery;
  perform pg_notify('zapbase_webhooks', '');
  return v_delivery;
end;
$$;

create or replace function public.create_webhook_endpoint(
  tenant_id uuid, name text, url text, event_types text[]
) returns jsonb
language sql
security invoker
set search_path = ''
as $$
  select private.create_webhook_endpoint(create_webhook_endpoint.tenant_id, create_webhook_endpoint.name,
                                         create_webhook_endpoint.url, create_webhook_endpoint.event_types)
$$;
comment on function public.create_webhook_endpoint(uuid, text, text, text[]) is 'Admins: a webhook endpoint for event types (names, "prefix.*" or "*"); returns {id, secret}. The secret (whsec_...) is shown only here.';

create or replace function public.rotate_webhook_secret(endpoint_id uuid, overlap interval default interval '24 hours')
returns text
language sql
security invoker
set search_path = ''
as $$
  select private.rotate_webhook_secret(rotate_webhook_secret.endpoint_id, rotate_webhook_secret.overlap)
$$;
comment on function public.rotate_webhook_secret(uuid, interval) is 'Admins: a new signing secret, returned once; the old one also signs deliveries during the overlap (default 24 h).';

create or replace function public.replay_webhook_delivery(delivery_id uuid)
returns public.webhook_deliveries
language sql
security invoker
set search_path = ''
as $$
  select private.replay_webhook_delivery(replay_webhook_delivery.delivery_id)
$$;
comment on function public.replay_webhook_delivery(uuid) is 'Admins: send a finished (succeeded or failed) delivery again, same webhook-id, from the first retry step.';

/**
 * ----
 * Section - Webhook deliverer (service role: the worker)
 * ----
 */

-- Claims due deliveries of enabled endpoints (SKIP LOCKED, leased). Returns what the
-- worker needs to send: the URL, the body, and the secrets valid now (two during a rotation).
drop function if exists public.webhooks_claim(text, integer, integer);  -- its columns changed
create or replace function public.webhooks_claim(worker text, batch_size integer default 8,
                                                 lease_seconds integer default 60)
returns table (delivery_id uuid, tenant_id uuid, endpoint_id uuid, url text, event_id uuid, event_type text,
               attempt integer, attempt_id uuid, body jsonb, secrets text[])
language sql
security definer
set search_path = ''
as $$
  -- two index-ordered scans (expired leases first, then due rows): an OR of both would read
  -- and sort every queued row on each claim
  with expired as (
    select d.id from public.webhook_deliveries d
     where d.status = 'sending' and d.lease_until < now()
       and exists (select 1 from public.webhook_endpoints w
                    where w.tenant_id = d.tenant_id and w.id = d.endpoint_id and w.enabled)
     order by d.lease_until
     limit webhooks_claim.batch_size
     for update of d skip locked
  ), due as (
    select d.id from public.webhook_deliveries d
     where d.status = 'pending' and d.next_attempt_at <= now()
       and exists (select 1 from public.webhook_endpoints w
                    where w.tenant_id = d.tenant_id and w.id = d.endpoint_id and w.enabled)
     order by d.next_attempt_at
     limit greatest(webhooks_claim.batch_size - (select count(*) from expired), 0)
     for update of d skip locked
  ), picked as (
    select id from expired union all select id from due
  ), claimed as (
    update public.webhook_deliveries d
       set status = 'sending', attempts = d.attempts + 1, leased_by = webhooks_claim.worker,
           lease_until = now() + make_interval(secs => webhooks_claim.lease_seconds)
      from picked p where d.id = p.id
    returning d.*
  ), endpoints as materialized (  -- a secret is decrypted once per endpoint, not once per delivery
    select w.tenant_id, w.id, w.url,
           array_remove(array[
             private.vault_secret(w.secret_id, 'webhook_endpoint:' || w.id),
             case when w.previous_secret_expires_at > now()
                  then private.vault_secret(w.previous_secret_id, 'webhook_endpoint:' || w.id || ':previous') end],
             null) as secrets
      from public.webhook_endpoints w
     where (w.tenant_id, w.id) in (select c.tenant_id, c.endpoint_id from claimed c)
  )
  select c.id, c.tenant_id, c.endpoint_id, w.url, c.event_id, c.event_type, c.attempts, gen_random_uuid(),
         jsonb_build_object('id', e.id, 'type', e.type, 'timestamp', e.created_at, 'tenant_id', e.tenant_id,
                            'subject', jsonb_build_object('table', e.subject_table, 'id', e.subject_id),
                            'data', e.payload),
         w.secrets
    from claimed c
    join endpoints w on w.tenant_id = c.tenant_id and w.id = c.endpoint_id
    join public.events e on e.tenant_id = c.tenant_id and e.created_at = c.event_created_at and e.id = c.event_id
$$;
comment on function public.webhooks_claim(text, integer, integer) is 'Worker: claim due webhook deliveries (SKIP LOCKED, leased) with URL, Standard Webhooks body, the signing secrets valid now and an attempt_id naming this attempt when it is recorded.';

-- Records the attempts of a round in one transaction and decides what follows each: 2xx
-- succeeded; a timeout, connection error, 429 or 5xx is retried on the schedule; anything
-- else (other 4xx, redirects, a refused address) is final. A result for a lease another
-- worker took over is logged only; an attempt_id already recorded (the worker sending the
-- round again after a lost reply) changes nothing. A delivery deleted meanwhile (its
-- endpoint removed) comes back as 'deleted'. Tracks each endpoint's health: failing for
-- 5 days disables it, with an alert.
drop function if exists public.webhooks_record(uuid, integer, integer, integer, text, text, boolean);
create or replace function public.webhooks_record(outcomes jsonb)
returns table (delivery_id uuid, status text)
language plpgsql
security definer
set search_path = ''
as $$
declare
  o record;
  v_delivery public.webhook_deliveries;
  v_ok boolean;
  v_retry boolean;
  v_endpoint public.webhook_endpoints;
begin
  -- endpoints before deliveries, the order of a DELETE of an endpoint (its row, then its
  -- deliveries by cascade): otherwise a round and that delete deadlock
  perform 1 from public.webhook_endpoints w
   where w.id in (select d.endpoint_id from public.webhook_deliveries d
                   where d.id in (select (x ->> 'delivery_id')::uuid
                                    from jsonb_array_elements(webhooks_record.outcomes) x))
   order by w.id
     for no key update;
  for o in
    select * from jsonb_to_recordset(webhooks_record.outcomes) as x (delivery_id uuid, attempt_id uuid,
      attempt integer, status_code integer, duration_ms integer, response_body text, error text, retryable boolean)
     order by x.delivery_id  -- one lock order for every worker
  loop
    v_ok := o.status_code between 200 and 299 and o.error is null;
    v_retry := coalesce(o.retryable, o.status_code is null or o.status_code = 429 or o.status_code >= 500);
    delivery_id := o.delivery_id;
    select * into v_delivery from public.webhook_deliveries d where d.id = o.delivery_id for update;
    if v_delivery.id is null then
      status := 'deleted';
      return next;
      continue;
    end if;
    insert into public.webhook_attempts (id, tenant_id, delivery_id, endpoint_id, attempt, status_code, duration_ms,
                                         response_body, error)
    values (o.attempt_id, v_delivery.tenant_id, v_delivery.id, v_delivery.endpoint_id, o.attempt, o.status_code,
            o.duration_ms, left(o.response_body, 4096), left(o.error, 2000))
    on conflict (id) do nothing;
    if not found or v_delivery.status <> 'sending' or v_delivery.attempts <> o.attempt then
      status := v_delivery.status;
      return next;
      continue;
    end if;
    update public.webhook_deliveries d
       set status = case when v_ok then 'succeeded'
                         when v_retry and private.webhook_retry_delay(d.attempts) is not null then 'pending'
                         else 'failed' end,
           next_attempt_at = case when not v_ok and v_retry
                                  then now() + coalesce(private.webhook_retry_delay(d.attempts), interval '0')
                                  else d.next_attempt_at end,
           delivered_at = case when v_ok then now() else d.delivered_at end,
           last_status_code = o.status_code,
           last_error = case when v_ok then null
                             else left(coalesce(o.error, 'HTTP ' || o.status_code), 2000) end,
           lease_until = null, leased_by = null
     where d.id = v_delivery.id
    returning * into v_delivery;

    update public.webhook_endpoints w
       set last_success_at = case when v_ok then now() else w.last_success_at end,
           last_failure_at = case when v_ok then w.last_failure_at else now() end,
           failing_since = case when v_ok then null else coalesce(w.failing_since, now()) end
     where w.tenant_id = v_delivery.tenant_id and w.id = v_delivery.endpoint_id
    returning * into v_endpoint;
    if not v_ok and v_endpoint.enabled and v_endpoint.failing_since <= now() - interval '5 days' then
      update public.webhook_endpoints w
         set enabled = false, disabled_at = now(),
             disabled_reason = 'failing since ' || to_char(v_endpoint.failing_since at time zone 'UTC', 'YYYY-MM-DD HH24:MI "UTC"')
       where w.id = v_endpoint.id;
      insert into public.alerts (tenant_id, type, priority, title, message, payload, dedupe_key)
      values (v_endpoint.tenant_id, 'webhook.endpoint_disabled', 'high',
              left('Webhook desativado: ' || v_endpoint.name, 200),
              'O endpoint ' || v_endpoint.url || ' falhou em todas as entregas por 5 dias e foi desativado. '
                || 'Corrija o servidor e reative o endpoint; as entregas falhas podem ser reenviadas.',
              jsonb_build_object('endpoint_id', v_endpoint.id, 'url', v_endpoint.url,
                                 'failing_since', v_endpoint.failing_since, 'last_error', v_delivery.last_error),
              'webhook:' || v_endpoint.id || ':disabled:' || to_char(now(), 'YYYY-MM-DD'))
      on conflict (tenant_id, dedupe_key) do nothing;
    end if;
    status := v_delivery.status;
    return next;
  end loop;
end;
$$;
comment on function public.webhooks_record(jsonb) is 'Worker: log a round of attempts ([{delivery_id, attempt_id, attempt, status_code, duration_ms, response_body, error, retryable}]: status code, latency, first 4 KB, error), idempotent per attempt_id, and succeed, retry on the schedule or fail each; disables an endpoint failing for 5 days, with an alert. Returns each delivery''s status.';

/**
 * ----
 * Section - RLS policies
 * ----
 */
drop policy if exists "Event types are readable by signed-in users" on public.event_types;
create policy "Event types are readable by signed-in users" on public.event_types
  for select to authenticated using (true);
drop policy if exists "Events are visible to tenant admins" on public.events;
create policy "Events are visible to tenant admins" on public.events
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));

drop policy if exists "Webhook endpoints are visible to admins" on public.webhook_endpoints;
create policy "Webhook endpoints are visible to admins" on public.webhook_endpoints
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Webhook endpoints are edited by admins" on public.webhook_endpoints;
create policy "Webhook endpoints are edited by admins" on public.webhook_endpoints
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('admin')))
  with check (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Webhook endpoints are deleted by admins" on public.webhook_endpoints;
create policy "Webhook endpoints are deleted by admins" on public.webhook_endpoints
  for delete to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Webhook deliveries are visible to admins" on public.webhook_deliveries;
create policy "Webhook deliveries are visible to admins" on public.webhook_deliveries
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Webhook attempts are visible to admins" on public.webhook_attempts;
create policy "Webhook attempts are visible to admins" on public.webhook_attempts
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));

/**
 * ----
 * Section - Grants
 * ----
 */
grant select on public.event_types, public.events to authenticated, service_role;
grant select, update (enabled, cron) on public.job_schedules to service_role;
grant select (id, tenant_id, name, url, event_types, previous_secret_expires_at, enabled, disabled_reason,
    disabled_at, failing_since, last_success_at, last_failure_at, created_by, created_at, updated_at),
  update (name, url, event_types, enabled, disabled_reason), delete
  on public.webhook_endpoints to authenticated;
grant select on public.webhook_deliveries, public.webhook_attempts to authenticated;
grant select, insert, update, delete on public.webhook_endpoints, public.webhook_deliveries,
  public.webhook_attempts to service_role;

revoke execute on all functions in schema private from public, anon;
grant execute on function private.emit(uuid, text, text, uuid, jsonb), private.set_event_cause(uuid, integer),
  private.run_job(text, timestamptz), private.run_due_jobs(), private.claim_worker_jobs(timestamptz),
  private.cron_next(text, timestamptz), private.record_job_run(text, timestamptz, integer, jsonb, text, uuid)
  to service_role;
grant execute on function private.create_webhook_endpoint(uuid, text, text, text[]),
  private.rotate_webhook_secret(uuid, interval), private.replay_webhook_delivery(uuid) to authenticated, service_role;
revoke execute on function public.create_webhook_endpoint(uuid, text, text, text[]),
  public.rotate_webhook_secret(uuid, interval), public.replay_webhook_delivery(uuid),
  public.webhooks_claim(text, integer, integer),
  public.webhooks_record(jsonb) from public, anon;
grant execute on function public.create_webhook_endpoint(uuid, text, text, text[]),
  public.rotate_webhook_secret(uuid, interval), public.replay_webhook_delivery(uuid) to authenticated, service_role;
grant execute on function public.webhooks_claim(text, integer, integer),
  public.webhooks_record(jsonb) to service_role;
