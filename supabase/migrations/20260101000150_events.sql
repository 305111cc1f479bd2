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
 * here, since delivering them is this module's work.
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
create index if not exists events_type_idx on public.events (type);
comment on table public.events is 'Transactional outbox: one row per change others react to, written by private.emit in the transaction of the change; the tenant''s activity feed. Kept for the plan''s event_retention_days.';
comment on column public.events.subject_table is 'Table of the row the event is about (messages, conversations, contacts, alerts...).';
comment on column public.events.subject_id is 'id of that row.';
comment on column public.events.payload is 'What a consumer needs without reading the subject again (ids, status, error...).';
comment on column public.events.actor_id is 'auth.users id of the member who made the change; null for webhooks, the worker and jobs.';
comment on column public.events.actor_role is 'JWT role (authenticated, service_role) or database role of the change.';
comment on column public.events.cause_event_id is 'The event whose handling made this change (automation), set through private.set_event_cause.';
comment on column public.events.depth is '0 for a change nobody automated; cause''s depth + 1 otherwise (loop guard of consumers).';

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
  v_cause uuid := nullif(current_setting('zapbase.cause_event_id', true), '')::uuid;
begin
  insert into public.events (id, tenant_id, type, subject_table, subject_id, payload, actor_id, actor_role,
                             cause_event_id, depth)
  values (v_id, emit.tenant_id, emit.type, emit.subject_table, emit.subject_id, coalesce(emit.payload, '{}'),
          auth.uid(), private.current_actor_role(), v_cause,
          case when v_cause is null then 0
               else coalesce(nullif(current_setting('zapbase.cause_depth', true), '')::integer, 0) + 1 end);
  return v_id;
end;
$$;
comment on function private.emit(uuid, text, text, uuid, jsonb) is 'Appends one event in the caller''s transaction (actor and cause from the session). The only writer of events.';

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
 * Section - RLS policies
 * ----
 */
drop policy if exists "Event types are readable by signed-in users" on public.event_types;
create policy "Event types are readable by signed-in users" on public.event_types
  for select to authenticated using (true);
drop policy if exists "Events are visible to tenant admins" on public.events;
create policy "Events are visible to tenant admins" on public.events
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));

/**
 * ----
 * Section - Grants
 * ----
 */
grant select on public.event_types, public.events to authenticated, service_role;

revoke execute on all functions in schema private from public, anon;
grant execute on function private.emit(uuid, text, text, uuid, jsonb), private.set_event_cause(uuid, integer)
  to service_role;
