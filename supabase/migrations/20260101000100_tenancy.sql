/**
 * Zapbase module 2: tenancy.
 * Tenants (seed 002 clients, 001 organizations, 004 companies) with their plan, the
 * people who work in them (members over Supabase Auth users), invites, teams
 * (departments = squads), push tokens, integrations with Vault secrets, import logs,
 * alerts, the audit log and the job registry.
 *
 * Roles, from most to least powerful (the enum order makes `role >= 'manager'` work):
 *   owner    everything, including plan, deletion of the tenant and other owners
 *   admin    members (up to admin), invites, integrations, numbers, budgets, settings;
 *            reads the audit log
 *   manager  teams and their members, templates, quick replies, bots, campaigns,
 *            import logs; reads alerts and reports
 *   agent    works conversations: contacts, conversations, messages of the tenant
 *   viewer   reads the tenant's inbox, writes nothing
 * A tenant always keeps at least one active owner, and nobody changes or removes a member
 * whose role is above theirs or grants a role above their own, whatever the path (RPC or
 * plain table write), enforced by triggers and policies.
 *
 * Self-service: a signed-in user opens up to private.max_tenants_per_user() tenants, on free
 * plans only, with a trial (trial_ends_at); paid plans and plan changes come from billing
 * through the service role.
 */

/**
 * ----
 * Section - Enums
 * ----
 */
do $$
begin
  if not exists (select 1 from pg_type where typname = 'member_role' and typnamespace = 'public'::regnamespace) then
    create type public.member_role as enum ('viewer', 'agent', 'manager', 'admin', 'owner');
  end if;
end
$$;
comment on type public.member_role is 'Ordered from least to most powerful: viewer < agent < manager < admin < owner.';

/**
 * ----
 * Section - Tables
 * ----
 */

-- Plans: limits and default AI budgets (seed 001 organization limits, 002 plan_budgets).
create table if not exists public.plans (
  id uuid primary key default gen_random_uuid(),
  code text not null unique check (code ~ '^[a-z0-9_]{2,40}$'),
  name text not null check (length(name) <= 80),
  description text check (length(description) <= 1000),
  price_monthly numeric(14,4) not null default 0 check (price_monthly >= 0),
  currency text not null default 'BRL' check (currency ~ '^[A-Z]{3}$'),
  max_whatsapp_numbers integer not null default 1 check (max_whatsapp_numbers >= 0),
  max_members integer not null default 3 check (max_members >= 0),
  max_contacts integer not null default 1000 check (max_contacts >= 0),
  max_bots integer not null default 1 check (max_bots >= 0),
  max_teams integer not null default 3 check (max_teams >= 0),
  monthly_message_limit integer not null default 1000 check (monthly_message_limit >= 0),
  monthly_conversation_limit integer check (monthly_conversation_limit >= 0),
  features jsonb not null default '{}'::jsonb,
  budget_mode text not null default 'brl' check (budget_mode in ('tokens', 'brl', 'both')),
  budget_period text not null default 'monthly' check (budget_period in ('daily', 'weekly', 'monthly')),
  budget_token_limit bigint check (budget_token_limit >= 0),
  budget_brl_limit numeric(14,4) check (budget_brl_limit >= 0),
  event_retention_days integer not null default 90 check (event_retention_days between 1 and 3650),
  raw_event_retention_days integer not null default 30 check (raw_event_retention_days between 1 and 3650),
  delivery_retention_days integer not null default 30 check (delivery_retention_days between 1 and 3650),
  is_public boolean not null default true,
  is_active boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
alter table public.plans enable row level security;
comment on table public.plans is 'Subscription plans: resource limits, feature flags and the default AI budget of their tenants.';
comment on column public.plans.features is 'Feature flags the plan enables, e.g. {"knowledge": true, "tts": false, "campaigns": true}.';
comment on column public.plans.budget_token_limit is 'Default AI budget in tokens per budget_period for tenants on this plan (null: none).';
comment on column public.plans.budget_brl_limit is 'Default AI budget in BRL per budget_period for tenants on this plan (null: none).';
comment on column public.plans.monthly_message_limit is 'Messages the tenant sends per calendar month (tenant time zone): agents'', bots'' and campaigns'' outbound messages; customers'' messages are never refused.';
comment on column public.plans.monthly_conversation_limit is 'Conversations agents may start per calendar month (null: no limit); conversations customers open are never refused.';
comment on column public.plans.event_retention_days is 'Days the tenant''s events (activity feed, outbox) are kept; tenants.settings.retention_days.events may only shorten it.';
comment on column public.plans.raw_event_retention_days is 'Days raw webhook bodies (inbound_events) and message status events are kept (settings.retention_days.inbound_events / status_events may shorten it).';
comment on column public.plans.delivery_retention_days is 'Days webhook and alert deliveries with their attempts are kept (settings.retention_days.deliveries may shorten it).';

-- Tenants: one business (seed 002 clients / 001 organizations / 004 companies).
create table if not exists public.tenants (
  id uuid primary key default gen_random_uuid(),
  slug text not null unique check (slug ~ '^[a-z0-9](?:[a-z0-9-]{0,48}[a-z0-9])?$'),
  name text not null check (length(name) between 1 and 120),
  status text not null default 'trial' check (status in ('trial', 'active', 'suspended', 'cancelled')),
  plan_id uuid not null references public.plans (id),
  trial_ends_at timestamptz,
  created_by uuid references auth.users (id) on delete set null,
  timezone text not null default 'America/Sao_Paulo',
  currency text not null default 'BRL' check (currency ~ '^[A-Z]{3}$'),
  locale text not null default 'pt-BR' check (locale ~ '^[a-z]{2}(-[A-Z]{2})?$'),
  document text check (length(document) <= 20),
  contact_email text check (length(contact_email) <= 254),
  notification_emails text[] not null default '{}'
    check (cardinality(notification_emails) <= 10 and array_position(notification_emails, null) is null
           and array_to_string(notification_emails, ' ') ~ '^([^@\s]{1,64}@[^@\s]+\.[^@\s]+( |$))*$'
           and length(array_to_string(notification_emails, ' ')) <= 2550),
  session_timeout interval not null default interval '4 hours'
    check (session_timeout between interval '5 minutes' and interval '7 days'),
  restrict_agents_to_assigned boolean not null default false,
  presence_timeout interval not null default interval '60 seconds'
    check (presence_timeout between interval '15 seconds' and interval '1 hour'),
  offline_grace interval not null default interval '10 minutes'
    check (offline_grace between interval '0 seconds' and interval '1 day'),
  feature_flags jsonb not null default '{}'::jsonb,
  settings jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now()
);
alter table public.tenants enable row level security;
create index if not exists tenants_plan_id_idx on public.tenants (plan_id);
create index if not exists tenants_created_by_idx on public.tenants (created_by);
comment on table public.tenants is 'A business using Zapbase; every tenant-owned row carries its tenant_id.';
comment on column public.tenants.trial_ends_at is 'End of the trial: afterwards a tenant on a free plan gets no AI on the platform''s keys (its own provider keys still work) until billing moves it to a paid plan.';
comment on column public.tenants.created_by is 'The user who opened the tenant through create_tenant; counts toward their private.max_tenants_per_user().';
comment on column public.tenants.document is 'CNPJ or CPF of the business.';
comment on column public.tenants.timezone is 'IANA time zone: business hours, budget periods and reports use it.';
comment on column public.tenants.session_timeout is 'A conversation idle longer than this is closed as expired; the next message opens a new one (seed 000: 4 h).';
comment on column public.tenants.restrict_agents_to_assigned is 'When true, agents write only into conversations assigned to them or their teams.';
comment on column public.tenants.notification_emails is 'Addresses every alert is e-mailed to (up to 10; the worker sends through SMTP, see alert_deliveries). Tenant systems hear alerts as alert.created webhook events.';
comment on column public.tenants.presence_timeout is 'An online agent without a heartbeat for this long counts as offline (inbox: agent_presence.expires_at).';
comment on column public.tenants.offline_grace is 'An agent offline for longer than this gets their open conversations returned to the queue.';
comment on column public.tenants.feature_flags is 'Per-tenant overrides of plan features.';

-- Members: a Supabase Auth user working in a tenant (seed 001 users, 002 user_profiles, 004 users).
create table if not exists public.members (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  role public.member_role not null default 'agent',
  status text not null default 'active' check (status in ('active', 'disabled')),
  display_name text check (length(display_name) <= 120),
  area text check (area in ('support', 'sales', 'customer_success', 'billing', 'management', 'other')),
  max_concurrent_conversations integer not null default 5 check (max_concurrent_conversations between 0 and 500),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, user_id)
);
alter table public.members enable row level security;
create index if not exists members_user_id_idx on public.members (user_id);
comment on table public.members is 'A user''s membership in a tenant, with role and capacity for conversation assignment (presence and load: agent_presence).';
comment on column public.members.max_concurrent_conversations is 'Live conversations the member may hold at once across all teams: assignment never goes past it.';

-- Platform operators (not tenant members): may read across tenants through helpers.
create table if not exists public.platform_admins (
  user_id uuid primary key references auth.users (id) on delete cascade,
  note text check (length(note) <= 200),
  created_at timestamptz not null default now()
);
alter table public.platform_admins enable row level security;
comment on table public.platform_admins is 'Zapbase operators. Granted by the service role only.';

-- Invites (seed 002 user_invites): the token is shown once and stored as its SHA-256.
create table if not exists public.invites (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  email text not null check (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' and length(email) <= 254),
  role public.member_role not null default 'agent',
  team_id uuid,
  token_hash text not null unique check (token_hash ~ '^[0-9a-f]{64}$'),
  invited_by uuid references auth.users (id) on delete set null,
  expires_at timestamptz not null default now() + interval '7 days',
  accepted_at timestamptz,
  accepted_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  unique (tenant_id, id)
);
alter table public.invites enable row level security;
create index if not exists invites_tenant_id_idx on public.invites (tenant_id);
create index if not exists invites_invited_by_idx on public.invites (invited_by);
create index if not exists invites_accepted_by_idx on public.invites (accepted_by);
comment on table public.invites is 'Invitations to join a tenant. Created and accepted through RPCs; the token itself is never stored.';
comment on column public.invites.token_hash is 'hex SHA-256 of the invite token.';

-- Teams (seed 001 departments, 004 squads): queues of conversations with an assignment strategy.
create table if not exists public.teams (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  name text not null check (length(name) between 1 and 80),
  description text check (length(description) <= 500),
  kind text not null default 'support' check (kind in ('support', 'sales', 'customer_success', 'billing', 'other')),
  assignment_strategy text not null default 'round_robin'
    check (assignment_strategy in ('round_robin', 'load_balance', 'priority', 'manual')),
  max_queue_size integer check (max_queue_size > 0),
  business_hours jsonb not null default '{}'::jsonb,
  away_message text check (length(away_message) <= 1024),
  monthly_target numeric(14,4) check (monthly_target >= 0),
  overflow_team_id uuid,
  return_after interval check (return_after between interval '1 minute' and interval '7 days'),
  csat_enabled boolean not null default true,
  is_active boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, name),
  foreign key (tenant_id, overflow_team_id) references public.teams (tenant_id, id) on delete set null (overflow_team_id),
  check (overflow_team_id <> id)
);
alter table public.teams enable row level security;
comment on table public.teams is 'Departments / squads: where conversations queue and how they are assigned.';
comment on column public.teams.business_hours is 'Weekly opening hours in the tenant time zone: {"mon": [["09:00","18:00"]], ..., "holidays": ["2026-12-25"]}.';
comment on column public.teams.assignment_strategy is 'round_robin (the online agent assigned least recently), load_balance (fewest open conversations, ties round robin), priority (team_members.priority, highest first, ties round robin) or manual (agents pull or managers assign).';
comment on column public.teams.max_queue_size is 'Queue length beyond which a new conversation overflows: to overflow_team_id, or it stays queued and the customer gets away_message with a promise of contact.';
comment on column public.teams.away_message is 'Sent to a customer whose conversation overflowed a full queue (pt-BR default when null).';
comment on column public.teams.overflow_team_id is 'Where conversations go when this team''s queue holds max_queue_size (one hop).';
comment on column public.teams.return_after is 'Return timer: a customer message unanswered by the assigned agent this long sends the conversation back to the queue and alerts the managers (null: off).';
comment on column public.teams.csat_enabled is 'Resolving a conversation asks the customer for a 1-5 rating (inside the 24 h window).';
comment on column public.teams.monthly_target is 'Sales target of the squad for the month (seed 004), in the tenant currency.';

alter table public.invites drop constraint if exists invites_team_fk;
alter table public.invites add constraint invites_team_fk
  foreign key (tenant_id, team_id) references public.teams (tenant_id, id) on delete set null (team_id);
create index if not exists invites_team_idx on public.invites (tenant_id, team_id);

create table if not exists public.team_members (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  team_id uuid not null,
  member_id uuid not null,
  is_leader boolean not null default false,
  priority integer not null default 0,
  can_pull_from_queue boolean not null default true,
  max_conversations integer check (max_conversations between 0 and 500),
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (team_id, member_id),
  foreign key (tenant_id, team_id) references public.teams (tenant_id, id) on delete cascade,
  foreign key (tenant_id, member_id) references public.members (tenant_id, id) on delete cascade
);
alter table public.team_members enable row level security;
create index if not exists team_members_tenant_team_idx on public.team_members (tenant_id, team_id);
create index if not exists team_members_tenant_member_idx on public.team_members (tenant_id, member_id);
comment on table public.team_members is 'Which members serve which team; priority orders them for the priority strategy.';
comment on column public.team_members.priority is 'priority_level of seed 001: with the priority strategy, higher first.';
comment on column public.team_members.can_pull_from_queue is 'The member may take the next conversation of this team''s queue themselves (pull_next_conversation).';
comment on column public.team_members.max_conversations is 'Optional cap on the member''s live conversations of this team, inside their overall max_concurrent_conversations.';

-- Push tokens (seed 002): a member's devices for inbox notifications.
create table if not exists public.push_tokens (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  user_id uuid not null references auth.users (id) on delete cascade,
  token text not null check (length(token) <= 4096),
  platform text not null check (platform in ('ios', 'android', 'web')),
  device_name text check (length(device_name) <= 120),
  last_used_at timestamptz,
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (user_id, token)
);
alter table public.push_tokens enable row level security;
create index if not exists push_tokens_tenant_id_idx on public.push_tokens (tenant_id);
comment on table public.push_tokens is 'Device push tokens of members; each user manages only their own.';

-- Integrations (seed 004 integrations, 003 configuracoes): credentials live in Vault.
create table if not exists public.integrations (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  type text not null check (type in ('crm', 'payments', 'ecommerce', 'llm', 'tts', 'email', 'calendar', 'courses', 'webhook', 'other')),
  provider text not null check (provider ~ '^[a-z0-9_.-]{2,40}$'),
  name text not null check (length(name) between 1 and 80),
  status text not null default 'inactive' check (status in ('active', 'inactive', 'error')),
  config jsonb not null default '{}'::jsonb,
  secret_id uuid,
  last_sync_at timestamptz,
  last_error text check (length(last_error) <= 2000),
  created_by uuid default auth.uid() references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, provider, name)
);
alter table public.integrations enable row level security;
create index if not exists integrations_created_by_idx on public.integrations (created_by);
comment on table public.integrations is 'Connections to outside systems (Hotmart, CRMs, LLM keys...). Secrets are Vault ids.';
comment on column public.integrations.config is 'Non-secret settings (base URL, account id, options).';
comment on column public.integrations.secret_id is 'Vault id of the credential (the Vault secret named integration:<id>); written only by set_integration_secret(), never read or written by frontends.';

-- Import logs (seed 004).
create table if not exists public.import_logs (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  kind text not null check (kind in ('contacts', 'leads', 'deals', 'products', 'students', 'transactions', 'knowledge', 'other')),
  source text not null default 'csv' check (source in ('csv', 'xlsx', 'api', 'hotmart', 'crm', 'other')),
  file_name text check (length(file_name) <= 255),
  status text not null default 'pending' check (status in ('pending', 'running', 'succeeded', 'failed', 'partial')),
  total_rows integer not null default 0 check (total_rows >= 0),
  imported_rows integer not null default 0 check (imported_rows >= 0),
  failed_rows integer not null default 0 check (failed_rows >= 0),
  errors jsonb not null default '[]'::jsonb,
  started_by uuid references auth.users (id) on delete set null,
  started_at timestamptz not null default now(),
  finished_at timestamptz,
  unique (tenant_id, id)
);
alter table public.import_logs enable row level security;
create index if not exists import_logs_tenant_started_idx on public.import_logs (tenant_id, started_at desc);
create index if not exists import_logs_started_by_idx on public.import_logs (started_by);
comment on table public.import_logs is 'One row per bulk import, with counts and per-row errors ([{"row": 12, "error": "..."}]).';

-- Alerts (seed 004): budget thresholds, SLA breaches, expiring certificates, channel errors.
create table if not exists public.alerts (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  type text not null check (type ~ '^[a-z0-9_.]{2,60}$'),
  priority text not null default 'medium' check (priority in ('low', 'medium', 'high', 'critical')),
  status text not null default 'unread' check (status in ('unread', 'read', 'acknowledged')),
  title text not null check (length(title) <= 200),
  message text check (length(message) <= 4000),
  payload jsonb not null default '{}'::jsonb,
  dedupe_key text check (length(dedupe_key) <= 200),
  delivered_at timestamptz,
  read_at timestamptz,
  acknowledged_at timestamptz,
  acknowledged_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, dedupe_key)
);
alter table public.alerts enable row level security;
create index if not exists alerts_tenant_status_idx on public.alerts (tenant_id, status, created_at desc);
create index if not exists alerts_undelivered_idx on public.alerts (created_at) where delivered_at is null;
create index if not exists alerts_acknowledged_by_idx on public.alerts (acknowledged_by);
comment on table public.alerts is 'Notifications for tenant managers; delivered as alert.created webhook events, e-mails to tenants.notification_emails and push rows for managers'' devices (alert_deliveries).';
comment on column public.alerts.dedupe_key is 'Makes an alert fire once, e.g. budget:<id>:2026-11:80.';
comment on column public.alerts.delivered_at is 'When every channel (e-mails, push rows, alert.created webhook deliveries) had succeeded or given up; see alert_deliveries and webhook_deliveries for each one.';

-- Audit log (seed 001/002/004 audit_logs): written only by private.tg_audit and RPCs.
create table if not exists public.audit_log (
  id uuid primary key default gen_random_uuid(),
  -- no foreign key: the record of a deleted tenant (and of its deletion) outlives it
  tenant_id uuid,
  actor_id uuid,
  actor_role text not null,
  action text not null check (length(action) <= 60),
  resource_type text not null check (length(resource_type) <= 60),
  resource_id uuid,
  changes jsonb not null default '{}'::jsonb,
  ip_address text,
  user_agent text,
  created_at timestamptz not null default now(),
  unique (tenant_id, id)
);
alter table public.audit_log enable row level security;
create index if not exists audit_log_tenant_created_idx on public.audit_log (tenant_id, created_at desc);
create index if not exists audit_log_resource_idx on public.audit_log (resource_type, resource_id);
comment on table public.audit_log is 'Who changed what: one row per audited insert/update/delete or RPC action.';
comment on column public.audit_log.actor_id is 'auth.users id of the acting user; null for the service role, jobs and migrations.';
comment on column public.audit_log.actor_role is 'Database role the change ran as (authenticated, service_role, postgres for migrations and jobs): never a JWT claim.';
comment on column public.audit_log.changes is 'insert: {"new": row}; delete: {"old": row}; update: {"column": {"old": .., "new": ..}} for changed columns only.';

-- Job registry (seed 000 scheduled jobs, 002 execution_logs): every run of a SQL job.
create table if not exists public.job_runs (
  id uuid primary key default gen_random_uuid(),
  job_name text not null check (job_name ~ '^[a-z0-9_.]{2,80}$'),
  tenant_id uuid references public.tenants (id) on delete cascade,
  status text not null default 'running' check (status in ('running', 'succeeded', 'failed')),
  rows_affected integer,
  details jsonb not null default '{}'::jsonb,
  error text,
  started_at timestamptz not null default now(),
  finished_at timestamptz,
  unique (tenant_id, id)
);
alter table public.job_runs enable row level security;
create index if not exists job_runs_name_started_idx on public.job_runs (job_name, started_at desc);
create index if not exists job_runs_tenant_idx on public.job_runs (tenant_id, started_at desc);
comment on table public.job_runs is 'One row per run of a scheduled job (pg_cron on Supabase, the worker scheduler locally).';

/**
 * ----
 * Section - Private helpers (used by policies; SECURITY DEFINER to read members
 * without recursing into its own policies)
 * ----
 */
create or replace function private.my_tenant_ids()
returns setof uuid
language sql
stable
security definer
set search_path = ''
as $$
  select m.tenant_id from public.members m
   where m.user_id = auth.uid() and m.status = 'active'
$$;
comment on function private.my_tenant_ids() is 'Tenants where the caller is an active member. Use as tenant_id in (select private.my_tenant_ids()).';

create or replace function private.my_tenant_ids_with_role(min_role public.member_role)
returns setof uuid
language sql
stable
security definer
set search_path = ''
as $$
  select m.tenant_id from public.members m
   where m.user_id = auth.uid() and m.status = 'active' and m.role >= my_tenant_ids_with_role.min_role
$$;
comment on function private.my_tenant_ids_with_role(public.member_role) is 'Tenants where the caller holds at least min_role.';

-- The common shape of a tenant's reference tables (tags, templates, calendars, catalogues):
-- every member reads them, managers add, edit and delete. One definition for every module.
create or replace function private.members_read_managers_write(table_name text)
returns void
language plpgsql
set search_path = ''
as $$
begin
  execute format('drop policy if exists "Members read %1$s" on public.%1$I', table_name);
  execute format('create policy "Members read %1$s" on public.%1$I for select to authenticated
                  using (tenant_id in (select private.my_tenant_ids()))', table_name);
  execute format('drop policy if exists "Managers add %1$s" on public.%1$I', table_name);
  execute format('create policy "Managers add %1$s" on public.%1$I for insert to authenticated
                  with check (tenant_id in (select private.my_tenant_ids_with_role(''manager'')))', table_name);
  execute format('drop policy if exists "Managers edit %1$s" on public.%1$I', table_name);
  execute format('create policy "Managers edit %1$s" on public.%1$I for update to authenticated
                  using (tenant_id in (select private.my_tenant_ids_with_role(''manager'')))
                  with check (tenant_id in (select private.my_tenant_ids_with_role(''manager'')))', table_name);
  execute format('drop policy if exists "Managers delete %1$s" on public.%1$I', table_name);
  execute format('create policy "Managers delete %1$s" on public.%1$I for delete to authenticated
                  using (tenant_id in (select private.my_tenant_ids_with_role(''manager'')))', table_name);
end;
$$;
comment on function private.members_read_managers_write(text) is 'Migrations: members read public.<table_name>, managers add, edit and delete (RLS policies).';

create or replace function private.is_member(tenant_id uuid)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.members m
     where m.tenant_id = is_member.tenant_id and m.user_id = auth.uid() and m.status = 'active'
  )
$$;

create or replace function private.has_role(tenant_id uuid, min_role public.member_role)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.members m
     where m.tenant_id = has_role.tenant_id and m.user_id = auth.uid()
       and m.status = 'active' and m.role >= has_role.min_role
  )
$$;

create or replace function private.is_platform_admin()
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (select 1 from public.platform_admins p where p.user_id = auth.uid())
$$;

-- The caller's member row in a tenant, or an error a frontend can show.
create or replace function private.require_role(tenant_id uuid, min_role public.member_role)
returns public.members
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_member public.members;
begin
  if auth.uid() is null then
    raise exception 'authentication required' using errcode = '28000';
  end if;
  select * into v_member from public.members m
   where m.tenant_id = require_role.tenant_id and m.user_id = auth.uid() and m.status = 'active';
  if not found or v_member.role < require_role.min_role then
    raise exception 'this action requires the % role in this tenant', require_role.min_role
      using errcode = '42501';
  end if;
  return v_member;
end;
$$;

-- How many tenants one user may open through create_tenant: enough for a business and a
-- test tenant or two, not for an army of free trials on the platform's AI keys. Billing
-- (the service role) opens more for a customer who needs them. Change it here.
create or replace function private.max_tenants_per_user()
returns integer
language sql
immutable
set search_path = ''
as $$
  select 3
$$;
comment on function private.max_tenants_per_user() is 'Cap on the tenants one user opens through create_tenant (a setting kept in code: change it here).';

-- The check behind every plan limit: the tenant's limit (plans.<limit_column>) when it
-- already uses all of it, so one more would be over; null while there is room. The
-- triggers guarding each counted thing pass how many the tenant has and raise their own
-- error (23514) with the limit.
create or replace function private.plan_limit_reached(tenant_id uuid, limit_column text, used bigint)
returns integer
language sql
stable
security definer
set search_path = ''
as $$
  select l.max
    from public.tenants t join public.plans p on p.id = t.plan_id,
         lateral (select (to_jsonb(p) ->> plan_limit_reached.limit_column)::integer as max) l
   where t.id = plan_limit_reached.tenant_id and plan_limit_reached.used >= l.max
$$;
comment on function private.plan_limit_reached(uuid, text, bigint) is 'The plan''s plans.<limit_column> when the tenant already uses all of it, else null.';

revoke execute on all functions in schema private from public, anon;
grant execute on function private.my_tenant_ids(), private.my_tenant_ids_with_role(public.member_role),
  private.is_member(uuid), private.has_role(uuid, public.member_role),
  private.is_platform_admin() to authenticated, service_role;

/**
 * ----
 * Section - Triggers
 * ----
 */

-- A tenant never loses its last active owner (role change, disable or removal). Deleting
-- the tenant itself cascades freely.
create or replace function private.tg_members_keep_an_owner()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if old.role <> 'owner' or old.status <> 'active' then
    return coalesce(new, old);
  end if;
  if tg_op = 'UPDATE' and new.role = 'owner' and new.status = 'active' then
    return new;
  end if;
  if not exists (select 1 from public.tenants t where t.id = old.tenant_id) then
    return coalesce(new, old);  -- the tenant is being deleted
  end if;
  if not exists (
    select 1 from public.members m
     where m.tenant_id = old.tenant_id and m.id <> old.id and m.role = 'owner' and m.status = 'active'
  ) then
    raise exception 'a tenant must keep at least one active owner: make another member owner first'
      using errcode = '23514';
  end if;
  return coalesce(new, old);
end;
$$;

-- Ranks hold on every path, RPCs and plain writes alike: through the API a member changes
-- or removes only themselves or members at or below their own role, and grants nobody
-- (themselves included) a role above their own. The service role and jobs pass.
create or replace function private.tg_members_respect_ranks()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_mine public.member_role;
begin
  if private.request_role() <> 'authenticated'
     or not exists (select 1 from public.tenants t where t.id = old.tenant_id) then
    return coalesce(new, old);  -- the service role, jobs, or the tenant itself being deleted
  end if;
  select m.role into v_mine from public.members m
   where m.tenant_id = old.tenant_id and m.user_id = auth.uid() and m.status = 'active';
  if old.user_id is distinct from auth.uid() and (v_mine is null or old.role > v_mine) then
    raise exception 'you cannot change or remove a member whose role is above yours' using errcode = '42501';
  end if;
  if tg_op = 'UPDATE' and new.role > old.role and (v_mine is null or new.role > v_mine) then
    raise exception 'you cannot grant a role above your own (%)', coalesce(v_mine::text, 'none')
      using errcode = '42501';
  end if;
  return coalesce(new, old);
end;
$$;

create or replace function private.tg_tenants_check_timezone()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if not exists (select 1 from pg_catalog.pg_timezone_names where name = new.timezone) then
    raise exception 'unknown time zone "%": use an IANA name such as America/Sao_Paulo', new.timezone
      using errcode = '22023';
  end if;
  return new;
end;
$$;

do $$
declare
  v_table text;
begin
  foreach v_table in array array['plans', 'tenants', 'members', 'teams', 'integrations'] loop
    execute format('drop trigger if exists _100_set_updated_at on public.%I', v_table);
    execute format('create trigger _100_set_updated_at before update on public.%I
                    for each row execute function private.tg_set_updated_at()', v_table);
  end loop;
  foreach v_table in array array['tenants', 'members', 'invites', 'teams', 'team_members', 'integrations'] loop
    execute format('drop trigger if exists _900_audit on public.%I', v_table);
    execute format('create trigger _900_audit after insert or update or delete on public.%I
                    for each row execute function private.tg_audit()', v_table);
  end loop;
end
$$;

drop trigger if exists _150_respect_ranks on public.members;
create trigger _150_respect_ranks before update or delete on public.members
  for each row execute function private.tg_members_respect_ranks();

drop trigger if exists _200_keep_an_owner on public.members;
create trigger _200_keep_an_owner before update or delete on public.members
  for each row execute function private.tg_members_keep_an_owner();

drop trigger if exists _200_check_timezone on public.tenants;
create trigger _200_check_timezone before insert or update of timezone on public.tenants
  for each row execute function private.tg_tenants_check_timezone();

/**
 * ----
 * Section - RLS policies (one per command and role; helpers wrapped in a select so
 * they run once per statement)
 * ----
 */

-- plans: a public price list; written by the service role only.
drop policy if exists "Public plans are readable by everyone" on public.plans;
create policy "Public plans are readable by everyone" on public.plans
  for select to anon, authenticated using (is_public and is_active);

-- tenants
drop policy if exists "Tenants are visible to their members" on public.tenants;
create policy "Tenants are visible to their members" on public.tenants
  for select to authenticated using (id in (select private.my_tenant_ids()));
drop policy if exists "Tenants are updated by their admins" on public.tenants;
create policy "Tenants are updated by their admins" on public.tenants
  for update to authenticated
  using (id in (select private.my_tenant_ids_with_role('admin')))
  with check (id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Tenants are deleted by their owners" on public.tenants;
create policy "Tenants are deleted by their owners" on public.tenants
  for delete to authenticated using (id in (select private.my_tenant_ids_with_role('owner')));

-- members
drop policy if exists "Members see the members of their tenants" on public.members;
create policy "Members see the members of their tenants" on public.members
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
-- others' rows: owners manage everyone, admins everyone below owner (see tg_members_respect_ranks)
drop policy if exists "Members update themselves and admins update members up to their rank" on public.members;
create policy "Members update themselves and admins update members up to their rank" on public.members
  for update to authenticated
  using (user_id = (select auth.uid())
         or tenant_id in (select private.my_tenant_ids_with_role('owner'))
         or (role < 'owner' and tenant_id in (select private.my_tenant_ids_with_role('admin'))))
  with check (user_id = (select auth.uid())
              or tenant_id in (select private.my_tenant_ids_with_role('owner'))
              or (role < 'owner' and tenant_id in (select private.my_tenant_ids_with_role('admin'))));
drop policy if exists "Members leave and admins remove members up to their rank" on public.members;
create policy "Members leave and admins remove members up to their rank" on public.members
  for delete to authenticated
  using (user_id = (select auth.uid())
         or tenant_id in (select private.my_tenant_ids_with_role('owner'))
         or (role < 'owner' and tenant_id in (select private.my_tenant_ids_with_role('admin'))));

-- platform_admins
drop policy if exists "Platform admins see themselves" on public.platform_admins;
create policy "Platform admins see themselves" on public.platform_admins
  for select to authenticated using (user_id = (select auth.uid()));

-- invites
drop policy if exists "Invites are visible to tenant admins" on public.invites;
create policy "Invites are visible to tenant admins" on public.invites
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Invites are revoked by tenant admins" on public.invites;
create policy "Invites are revoked by tenant admins" on public.invites
  for delete to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));

-- teams and team_members: read by members, managed by managers
drop policy if exists "Teams are visible to members" on public.teams;
create policy "Teams are visible to members" on public.teams
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Teams are created by managers" on public.teams;
create policy "Teams are created by managers" on public.teams
  for insert to authenticated with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Teams are updated by managers" on public.teams;
create policy "Teams are updated by managers" on public.teams
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')))
  with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Teams are deleted by managers" on public.teams;
create policy "Teams are deleted by managers" on public.teams
  for delete to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('manager')));

drop policy if exists "Team members are visible to members" on public.team_members;
create policy "Team members are visible to members" on public.team_members
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Team members are added by managers" on public.team_members;
create policy "Team members are added by managers" on public.team_members
  for insert to authenticated with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Team members are updated by managers" on public.team_members;
create policy "Team members are updated by managers" on public.team_members
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')))
  with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Team members are removed by managers" on public.team_members;
create policy "Team members are removed by managers" on public.team_members
  for delete to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('manager')));

-- push_tokens: each user manages their own, inside tenants they belong to
drop policy if exists "Users see their own push tokens" on public.push_tokens;
create policy "Users see their own push tokens" on public.push_tokens
  for select to authenticated using (user_id = (select auth.uid()));
drop policy if exists "Users register their own push tokens" on public.push_tokens;
create policy "Users register their own push tokens" on public.push_tokens
  for insert to authenticated
  with check (user_id = (select auth.uid()) and tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Users update their own push tokens" on public.push_tokens;
create policy "Users update their own push tokens" on public.push_tokens
  for update to authenticated
  using (user_id = (select auth.uid()))
  with check (user_id = (select auth.uid()) and tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Users delete their own push tokens" on public.push_tokens;
create policy "Users delete their own push tokens" on public.push_tokens
  for delete to authenticated using (user_id = (select auth.uid()));

-- integrations: admins only
drop policy if exists "Integrations are visible to admins" on public.integrations;
create policy "Integrations are visible to admins" on public.integrations
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Integrations are created by admins" on public.integrations;
create policy "Integrations are created by admins" on public.integrations
  for insert to authenticated with check (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Integrations are updated by admins" on public.integrations;
create policy "Integrations are updated by admins" on public.integrations
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('admin')))
  with check (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Integrations are deleted by admins" on public.integrations;
create policy "Integrations are deleted by admins" on public.integrations
  for delete to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));

-- import_logs: managers
drop policy if exists "Import logs are visible to managers" on public.import_logs;
create policy "Import logs are visible to managers" on public.import_logs
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Import logs are started by managers" on public.import_logs;
create policy "Import logs are started by managers" on public.import_logs
  for insert to authenticated with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));

-- alerts: managers read and acknowledge
drop policy if exists "Alerts are visible to managers" on public.alerts;
create policy "Alerts are visible to managers" on public.alerts
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Alerts are acknowledged by managers" on public.alerts;
create policy "Alerts are acknowledged by managers" on public.alerts
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')))
  with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));

-- audit_log and job_runs: read-only views of history
drop policy if exists "Audit log is visible to tenant admins" on public.audit_log;
create policy "Audit log is visible to tenant admins" on public.audit_log
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Job runs are visible to tenant admins" on public.job_runs;
create policy "Job runs are visible to tenant admins" on public.job_runs
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));

/**
 * ----
 * Section - Public functions (RPC). They exist in `public` because frontends call them
 * through PostgREST; each checks the caller's tenant role itself.
 * ----
 */

-- Create a tenant; the caller becomes its owner. Self-service opens free plans only, with a
-- 14-day trial, and at most private.max_tenants_per_user() per user; a paid plan is set by
-- billing (service role) once the customer pays.
create or replace function private.create_tenant(
  name text, slug text default null, plan_code text default 'free', timezone text default 'America/Sao_Paulo'
) returns public.tenants
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := auth.uid();
  v_plan uuid;
  v_price numeric;
  v_slug text;
  v_tenant public.tenants;
begin
  if v_user is null then
    raise exception 'sign in to create a tenant' using errcode = '28000';
  end if;
  select p.id, p.price_monthly into v_plan, v_price from public.plans p
   where p.code = create_tenant.plan_code and p.is_active and p.is_public;
  if v_plan is null then
    raise exception 'unknown plan "%"', create_tenant.plan_code using errcode = '22023';
  end if;
  if v_price > 0 then
    raise exception 'the "%" plan is paid: start on a free plan and subscribe to it from billing',
      create_tenant.plan_code using errcode = '42501';
  end if;
  -- one user's calls queue here, so parallel calls cannot pass the cap together
  perform pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended('create_tenant:' || v_user::text, 0));
  if (select count(*) from public.tenants t where t.created_by = v_user) >= private.max_tenants_per_user() then
    raise exception 'you already opened % tenants, the most one user may open: ask Zapbase support for more',
      private.max_tenants_per_user() using errcode = '23514';
  end if;
  v_slug := coalesce(create_tenant.slug,
    trim(both '-' from left(regexp_replace(lower(create_tenant.name), '[^a-z0-9]+', '-', 'g'), 50)));
  if exists (select 1 from public.tenants t where t.slug = v_slug) then
    raise exception 'the address "%" is taken: choose another slug', v_slug using errcode = '23505';
  end if;
  insert into public.tenants (name, slug, plan_id, timezone, trial_ends_at, created_by)
  values (create_tenant.name, v_slug, v_plan, create_tenant.timezone, now() + interval '14 days', v_user)
  returning * into v_tenant;
  insert into public.members (tenant_id, user_id, role, display_name)
  select v_tenant.id, v_user, 'owner', coalesce(u.raw_user_meta_data ->> 'full_name', u.email)
    from auth.users u where u.id = v_user;
  return v_tenant;
end;
$$;

-- What PostgREST exposes (security invoker); private.create_tenant does the work as its owner.
create or replace function public.create_tenant(
  name text, slug text default null, plan_code text default 'free', timezone text default 'America/Sao_Paulo'
)
returns public.tenants
language sql
security invoker
set search_path = ''
as $$ select * from private.create_tenant(name, slug, plan_code, timezone) $$;
revoke execute on function private.create_tenant(text, text, text, text) from public, anon;
grant execute on function private.create_tenant(text, text, text, text) to authenticated, service_role;
comment on function public.create_tenant(text, text, text, text) is 'Creates a tenant on a free plan with a 14-day trial (at most private.max_tenants_per_user() per user); the caller becomes its owner.';

-- Invite someone by e-mail; returns the token once (only its hash is stored).
create or replace function private.invite_member(
  tenant_id uuid, email text, role public.member_role default 'agent', team_id uuid default null
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_caller public.members := private.require_role(invite_member.tenant_id, 'admin');
  v_token text := encode(convert_to(gen_random_uuid()::text || gen_random_uuid()::text, 'UTF8'), 'base64');
  v_invite public.invites;
begin
  if invite_member.role > v_caller.role then
    raise exception 'you cannot invite someone with a role above yours (%)', v_caller.role
      using errcode = '42501';
  end if;
  v_token := translate(rtrim(v_token, '='), E'+/\n', '-_');
  insert into public.invites (tenant_id, email, role, team_id, token_hash, invited_by)
  values (invite_member.tenant_id, lower(invite_member.email), invite_member.role,
          invite_member.team_id, encode(sha256(convert_to(v_token, 'UTF8')), 'hex'), auth.uid())
  returning * into v_invite;
  return jsonb_build_object('invite_id', v_invite.id, 'token', v_token, 'expires_at', v_invite.expires_at);
end;
$$;

-- What PostgREST exposes (security invoker); private.invite_member does the work as its owner.
create or replace function public.invite_member(
  tenant_id uuid, email text, role public.member_role default 'agent', team_id uuid default null
)
returns jsonb
language sql
security invoker
set search_path = ''
as $$ select private.invite_member(tenant_id, email, role, team_id) $$;
revoke execute on function private.invite_member(uuid, text, public.member_role, uuid) from public, anon;
grant execute on function private.invite_member(uuid, text, public.member_role, uuid) to authenticated, service_role;
comment on function public.invite_member(uuid, text, public.member_role, uuid) is 'Admins invite by e-mail; returns {invite_id, token, expires_at}. The token is shown only here.';

-- Accept an invite with its token; the signed-in user's e-mail must be confirmed and match it.
create or replace function private.accept_invite(token text)
returns public.members
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user uuid := auth.uid();
  v_account auth.users;
  v_invite public.invites;
  v_member public.members;
begin
  if v_user is null then
    raise exception 'sign in to accept an invite' using errcode = '28000';
  end if;
  select * into v_invite from public.invites i
   where i.token_hash = encode(sha256(convert_to(accept_invite.token, 'UTF8')), 'hex')
   for update;
  if not found then
    raise exception 'invite not found' using errcode = 'P0002';
  end if;
  if v_invite.accepted_at is not null then
    raise exception 'this invite was already accepted' using errcode = '22023';
  end if;
  if v_invite.expires_at < now() then
    raise exception 'this invite expired on %: ask for a new one', v_invite.expires_at using errcode = '22023';
  end if;
  -- the account's own e-mail, and only once its owner proved it is theirs
  select * into v_account from auth.users u where u.id = v_user;
  if lower(coalesce(v_account.email, '')) <> v_invite.email then
    raise exception 'this invite was sent to another e-mail address' using errcode = '42501';
  end if;
  if v_account.email_confirmed_at is null then
    raise exception 'confirm your e-mail address before accepting the invite' using errcode = '42501';
  end if;
  if exists (select 1 from public.members m where m.tenant_id = v_invite.tenant_id and m.user_id = v_user) then
    raise exception 'you are already a member of this tenant' using errcode = '23505';
  end if;
  insert into public.members (tenant_id, user_id, role, display_name)
  values (v_invite.tenant_id, v_user, v_invite.role,
          coalesce(v_account.raw_user_meta_data ->> 'full_name', v_account.email))
  returning * into v_member;
  if v_invite.team_id is not null then
    insert into public.team_members (tenant_id, team_id, member_id)
    values (v_invite.tenant_id, v_invite.team_id, v_member.id);
  end if;
  update public.invites set accepted_at = now(), accepted_by = v_user where id = v_invite.id;
  return v_member;
end;
$$;

-- What PostgREST exposes (security invoker); private.accept_invite does the work as its owner.
create or replace function public.accept_invite(token text)
returns public.members
language sql
security invoker
set search_path = ''
as $$ select * from private.accept_invite(token) $$;
revoke execute on function private.accept_invite(text) from public, anon;
grant execute on function private.accept_invite(text) to authenticated, service_role;
comment on function public.accept_invite(text) is 'Joins the tenant of an unexpired invite sent to the caller''s confirmed e-mail.';

-- Change a member's role. Admins manage roles up to admin; only owners grant or take
-- away ownership; the last owner cannot be demoted (trigger).
create or replace function private.change_member_role(member_id uuid, new_role public.member_role)
returns public.members
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_target public.members;
  v_caller public.members;
begin
  select * into v_target from public.members m where m.id = change_member_role.member_id;
  if not found then
    raise exception 'member not found' using errcode = 'P0002';
  end if;
  v_caller := private.require_role(v_target.tenant_id, 'admin');
  if (v_target.role = 'owner' or change_member_role.new_role = 'owner') and v_caller.role <> 'owner' then
    raise exception 'only an owner can grant or remove the owner role' using errcode = '42501';
  end if;
  if v_target.role > v_caller.role then
    raise exception 'you cannot change the role of someone above you' using errcode = '42501';
  end if;
  update public.members set role = change_member_role.new_role where id = v_target.id
  returning * into v_target;
  return v_target;
end;
$$;

-- What PostgREST exposes (security invoker); private.change_member_role does the work as its owner.
create or replace function public.change_member_role(member_id uuid, new_role public.member_role)
returns public.members
language sql
security invoker
set search_path = ''
as $$ select * from private.change_member_role(member_id, new_role) $$;
revoke execute on function private.change_member_role(uuid, public.member_role) from public, anon;
grant execute on function private.change_member_role(uuid, public.member_role) to authenticated, service_role;
comment on function public.change_member_role(uuid, public.member_role) is 'Admins change roles up to admin; owners manage owners; a tenant always keeps an owner.';

-- Store an integration's credential in Vault, as the secret named integration:<id> (never
-- whatever id the row holds); returns only the Vault id.
create or replace function private.set_integration_secret(integration_id uuid, secret text)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_integration public.integrations;
  v_secret_id uuid;
begin
  select * into v_integration from public.integrations i where i.id = set_integration_secret.integration_id
     for update;
  if not found then
    raise exception 'integration not found' using errcode = 'P0002';
  end if;
  perform private.require_role(v_integration.tenant_id, 'admin');
  if length(coalesce(set_integration_secret.secret, '')) = 0 then
    raise exception 'the secret is empty' using errcode = '22023';
  end if;
  v_secret_id := private.vault_store('integration:' || v_integration.id::text, set_integration_secret.secret,
    'Credential of integration ' || v_integration.name);
  update public.integrations set secret_id = v_secret_id where id = v_integration.id;
  return v_secret_id;
end;
$$;

-- What PostgREST exposes (security invoker); private.set_integration_secret does the work as its owner.
create or replace function public.set_integration_secret(integration_id uuid, secret text)
returns uuid
language sql
security invoker
set search_path = ''
as $$ select private.set_integration_secret(integration_id, secret) $$;
revoke execute on function private.set_integration_secret(uuid, text) from public, anon;
grant execute on function private.set_integration_secret(uuid, text) to authenticated, service_role;
comment on function public.set_integration_secret(uuid, text) is 'Admins store an integration credential in Vault; returns the secret id, never the secret.';

/**
 * ----
 * Section - Policy helpers of later modules (which members and teams the caller is)
 * ----
 */

create or replace function private.my_member_ids()
returns setof uuid
language sql
stable
security definer
set search_path = ''
as $$
  select m.id from public.members m where m.user_id = auth.uid() and m.status = 'active'
$$;
comment on function private.my_member_ids() is 'The caller''s member ids (one per tenant).';

create or replace function private.my_team_ids()
returns setof uuid
language sql
stable
security definer
set search_path = ''
as $$
  select tm.team_id from public.team_members tm
    join public.members m on m.tenant_id = tm.tenant_id and m.id = tm.member_id
   where m.user_id = auth.uid() and m.status = 'active'
$$;
comment on function private.my_team_ids() is 'Teams the caller serves.';

-- Tenants where the caller may work every conversation: managers and up always; agents
-- unless the tenant restricts them to what is assigned to them or their teams.
create or replace function private.my_unrestricted_tenant_ids()
returns setof uuid
language sql
stable
security definer
set search_path = ''
as $$
  select m.tenant_id from public.members m join public.tenants t on t.id = m.tenant_id
   where m.user_id = auth.uid() and m.status = 'active'
     and (m.role >= 'manager' or (m.role = 'agent' and not t.restrict_agents_to_assigned))
$$;

/**
 * ----
 * Section - Grants
 * ----
 */
grant select on public.plans to anon, authenticated;
grant select, update (name, timezone, locale, document, contact_email, notification_emails,
  session_timeout, restrict_agents_to_assigned, presence_timeout, offline_grace, settings), delete
  on public.tenants to authenticated;
grant select, update (display_name, area, max_concurrent_conversations), delete
  on public.members to authenticated;
grant select on public.platform_admins to authenticated;
grant select, delete on public.invites to authenticated;
grant select, insert, update, delete on public.teams, public.team_members, public.push_tokens to authenticated;
-- never secret_id: a Vault id is written by set_integration_secret() and read by the worker
grant select (id, tenant_id, type, provider, name, status, config, last_sync_at, last_error, created_by,
    created_at, updated_at),
  insert (tenant_id, type, provider, name, status, config),
  update (type, provider, name, status, config), delete
  on public.integrations to authenticated;
grant select, insert on public.import_logs to authenticated;
grant select, update (status, read_at, acknowledged_at, acknowledged_by) on public.alerts to authenticated;
grant select on public.audit_log, public.job_runs to authenticated;

grant select, insert, update, delete on public.plans, public.tenants, public.members,
  public.platform_admins, public.invites, public.teams, public.team_members, public.push_tokens,
  public.integrations, public.import_logs, public.alerts, public.audit_log, public.job_runs
  to service_role;

revoke execute on function public.create_tenant(text, text, text, text),
  public.invite_member(uuid, text, public.member_role, uuid), public.accept_invite(text),
  public.change_member_role(uuid, public.member_role), public.set_integration_secret(uuid, text)
  from public, anon;
grant execute on function public.create_tenant(text, text, text, text),
  public.invite_member(uuid, text, public.member_role, uuid), public.accept_invite(text),
  public.change_member_role(uuid, public.member_role), public.set_integration_secret(uuid, text)
  to authenticated, service_role;
grant execute on function private.my_member_ids(), private.my_team_ids(), private.my_unrestricted_tenant_ids()
  to authenticated, service_role;
