/**
 * Zapbase module: analytics (seed 001 analytics_snapshots, seed 004 ranking).
 *
 * `analytics_daily` holds one row per tenant x day (in the tenant's time zone) x number x
 * team x agent x bot. Every figure is a count or a sum with its count (first response,
 * resolution, queue wait, CSAT), so any slice of rows combines into true averages. ONE
 * function, private.analytics_facts(tenant, day), computes a tenant-day's rows from the facts
 * the other modules keep (conversations, messages, conversation_metrics, flow_executions,
 * ai_usage); private.analytics_rollup stores them: it deletes the day's rows and inserts them
 * again, so re-running a day gives the same rows.
 *
 * Each fact belongs to the day it happened: a conversation to the day it was created,
 * resolved (resolution time, containment), handed off or rated; a message to its day; the
 * first response to the day it was given; queue wait to the day the conversation first
 * needed a human; AI cost to the day of the call; a flow completion to the day it ended.
 *
 * Late facts: rather than recomputing the last N days every night (N days of scans for the
 * rare late fact, and still wrong past N), statement-level triggers on those tables mark the
 * past tenant-days a change touches dirty in `analytics_days`. Today is never marked (it is
 * not rolled up yet), so the hot path of a live day writes nothing there. The hourly job
 * analytics_rollup adds each tenant's local yesterday once and rolls up every dirty day.
 *
 * What does not add up over the dimensions is kept once per tenant-day in
 * `analytics_daily_tenant`: the day's first response times as a histogram (distinct seconds
 * and their counts: FRT percentiles of any period are exact, the same percentile_cont the
 * raw rows give), the current status of the day's conversations, AI cost per bot x feature.
 *
 * Dashboards read through RPCs (public security invoker wrappers over private functions):
 * analytics_summary, analytics_volumes, analytics_agent_leaderboard, analytics_ai_costs.
 * They read the rollups of the clean days of a period and compute the other days (today, a
 * dirty day, a day the job has not reached) from the facts with the very functions the
 * rollup stores (private.analytics_facts, private.analytics_tenant_facts): a period reads the
 * same before and after the job, and a late fact shows at once. Rollups outlive the facts:
 * usage rows deleted by the LGPD retention job still count in the days they were rolled into.
 *
 * Who may do what:
 *   manager       every dashboard RPC and the rollup rows of their tenant
 *   agent         the leaderboard: the whole ranking when the tenant's feature flag
 *                 ranking_visibility is on (tenants.feature_flags, else plans.features),
 *                 only their own line when it is off
 *   service role  everything (the job, `zapbase report`)
 */

/**
 * ----
 * Section - Tables
 * ----
 */

create table if not exists public.analytics_daily (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  day date not null,
  whatsapp_number_id uuid,
  team_id uuid,
  member_id uuid,
  bot_id uuid,
  conversations_new integer not null default 0,
  conversations_resolved integer not null default 0,
  bot_contained integer not null default 0,
  handoffs integer not null default 0,
  messages_in integer not null default 0,
  messages_out integer not null default 0,
  frt_seconds_sum bigint not null default 0,
  frt_count integer not null default 0,
  resolution_seconds_sum bigint not null default 0,
  resolution_count integer not null default 0,
  queue_wait_seconds_sum bigint not null default 0,
  queue_wait_count integer not null default 0,
  flow_completions integer not null default 0,
  ai_calls integer not null default 0,
  ai_cost_brl numeric(20,10) not null default 0,
  csat_sum integer not null default 0,
  csat_count integer not null default 0,
  rolled_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique nulls not distinct (tenant_id, day, whatsapp_number_id, team_id, member_id, bot_id)
);
alter table public.analytics_daily enable row level security;
comment on table public.analytics_daily is 'Daily rollup per tenant x day (tenant time zone) x number x team x agent x bot, written only by private.analytics_rollup (delete + insert of a tenant-day). Sums come with their counts so slices combine into true averages.';
comment on column public.analytics_daily.day is 'The day in the tenant''s time zone (tenants.timezone).';
comment on column public.analytics_daily.member_id is 'The agent: the sender of an agent message, else the conversation''s assignee.';
comment on column public.analytics_daily.bot_contained is 'Conversations resolved that day that never met a human (no handoff, no assignee).';
comment on column public.analytics_daily.frt_seconds_sum is 'Sum of first response times given that day (conversation_metrics.first_response_seconds); frt_count of them.';
comment on column public.analytics_daily.resolution_seconds_sum is 'Sum of resolution times of the conversations resolved that day; resolution_count of them.';
comment on column public.analytics_daily.queue_wait_seconds_sum is 'Queue wait of the conversations that first needed a human that day; queue_wait_count is their queue entries.';
comment on column public.analytics_daily.ai_cost_brl is 'Cost of that day''s AI calls (ai_usage.cost_brl); ai_calls counts them.';
comment on column public.analytics_daily.csat_sum is 'Sum of the 1-5 ratings answered that day; csat_count of them.';

-- No dimension columns are foreign keys: a deleted team or agent keeps its history.
create index if not exists analytics_daily_day_idx on public.analytics_daily (tenant_id, day);

create table if not exists public.analytics_daily_tenant (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  day date not null,
  frt_seconds integer[] not null default '{}',
  frt_counts integer[] not null default '{}',
  conversations_by_status jsonb not null default '{}'::jsonb,
  ai_costs jsonb not null default '[]'::jsonb,
  rolled_at timestamptz not null default now(),
  unique (tenant_id, id),
  constraint analytics_daily_tenant_day_key unique (tenant_id, day)
);
alter table public.analytics_daily_tenant enable row level security;
comment on table public.analytics_daily_tenant is 'Daily rollup per tenant x day of the figures that are not sums over the dimensions (FRT distribution, status of the day''s conversations, AI cost per bot and feature), written only by private.analytics_rollup with analytics_daily.';
comment on column public.analytics_daily_tenant.frt_seconds is 'The distinct first response times (seconds, ascending) given that day; frt_counts holds how many conversations had each. Exact: percentiles of any period merge these histograms.';
comment on column public.analytics_daily_tenant.frt_counts is 'How many first responses of that day took frt_seconds[i] seconds.';
comment on column public.analytics_daily_tenant.conversations_by_status is 'The current status of the conversations created that day: {status: count}. A status change marks the creation day dirty, so a rolled-up day is never stale.';
comment on column public.analytics_daily_tenant.ai_costs is 'That day''s AI calls per bot (ai_usage.bot_id) and feature: [{bot_id, feature, calls, input_tokens, output_tokens, cost_brl}], sums exact (numeric).';

create table if not exists public.analytics_days (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  day date not null,
  dirty boolean not null default true,
  marked_at timestamptz not null default now(),
  rolled_at timestamptz,
  unique (tenant_id, id),
  constraint analytics_days_tenant_day_key unique (tenant_id, day)
);
alter table public.analytics_days enable row level security;
create index if not exists analytics_days_dirty_idx on public.analytics_days (tenant_id, day) where dirty;
comment on table public.analytics_days is 'Tenant-days known to the rollup: dirty until private.analytics_rollup has computed them after their last fact. Marked by the facts'' triggers (past days only) and by the job (yesterday).';
comment on column public.analytics_days.dirty is 'A fact of that day arrived (or changed) since the last rollup: the next analytics_rollup run recomputes it.';

-- The rollup and the dashboards' live days read a tenant's facts by time.
create index if not exists messages_tenant_created_idx on public.messages (tenant_id, created_at);
create index if not exists conversations_tenant_created_idx on public.conversations (tenant_id, created_at);
create index if not exists conversations_tenant_resolved_idx on public.conversations (tenant_id, resolved_at)
  where resolved_at is not null;
-- with these two every branch of the rollup's conversation read is an index range: a day (today
-- on every dashboard call) reads its own conversations, not all of the tenant's
create index if not exists conversations_tenant_handoff_idx on public.conversations (tenant_id, handoff_at)
  where handoff_at is not null;
create index if not exists conversations_tenant_csat_idx on public.conversations (tenant_id, csat_answered_at)
  where csat_answered_at is not null;
create index if not exists conversation_metrics_first_response_idx
  on public.conversation_metrics (tenant_id, first_response_at) where first_response_at is not null;
create index if not exists conversation_metrics_needs_human_idx
  on public.conversation_metrics (tenant_id, needs_human_at) where needs_human_at is not null;
create index if not exists flow_executions_tenant_ended_idx on public.flow_executions (tenant_id, ended_at)
  where status = 'completed';

/**
 * ----
 * Section - Private helpers
 * ----
 */

-- A feature of the tenant: its own override (tenants.feature_flags), else its plan's.
create or replace function private.feature_enabled(tenant_id uuid, flag text)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce((t.feature_flags ->> feature_enabled.flag)::boolean,
                  (p.features ->> feature_enabled.flag)::boolean, false)
    from public.tenants t join public.plans p on p.id = t.plan_id
   where t.id = feature_enabled.tenant_id
$$;
comment on function private.feature_enabled(uuid, text) is 'A feature flag of a tenant: tenants.feature_flags overrides plans.features; absent is off.';

-- Who reads a tenant's analytics: a client (authenticated) must hold min_role there; the
-- service role and the database owner (jobs, `zapbase report`) read any tenant.
create or replace function private.analytics_reader(tenant_id uuid, min_role public.member_role)
returns public.members
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  if coalesce(current_setting('role', true), 'none') in ('authenticated', 'anon') then
    return private.require_role(analytics_reader.tenant_id, analytics_reader.min_role);
  end if;
  return null;
end;
$$;
comment on function private.analytics_reader(uuid, public.member_role) is 'The calling member (at least min_role) of a client request; null for the service role and jobs. Raises for anyone else.';

-- The [start, end) instants of a tenant's local day.
create or replace function private.tenant_day_range(tenant_id uuid, day date)
returns tstzrange
language sql
stable
security definer
set search_path = ''
as $$
  select tstzrange(tenant_day_range.day::timestamp at time zone t.timezone,
                   (tenant_day_range.day + 1)::timestamp at time zone t.timezone)
    from public.tenants t where t.id = tenant_day_range.tenant_id
$$;

/**
 * ----
 * Section - Rollup
 * ----
 */

-- The analytics_daily rows of one tenant-day computed from the facts (id null): what the
-- rollup stores, and what dashboards read for a day not rolled up yet.
-- One generic plan per session: planning this five-way read costs more than running it on a
-- day (custom plans were redone on every call, once per live day of a dashboard). A day's
-- facts are few next to the tenant's conversations, so each is joined by its key (nested
-- loops): the generic plan would otherwise hash the tenant's whole conversations table.
create or replace function private.analytics_facts(tenant_id uuid, day date)
returns setof public.analytics_daily
language plpgsql
stable
security definer
set search_path = ''
set plan_cache_mode = force_generic_plan
set enable_hashjoin = off
set enable_mergejoin = off
as $$
declare
  v_range tstzrange := private.tenant_day_range(analytics_facts.tenant_id, analytics_facts.day);
  v_lo timestamptz := lower(v_range);
  v_hi timestamptz := upper(v_range);
begin
  return query
  select null::uuid, analytics_facts.tenant_id, analytics_facts.day, f.number_id, f.team_id, f.member_id, f.bot_id,
         sum(f.conversations_new)::integer, sum(f.resolved)::integer, sum(f.contained)::integer,
         sum(f.handoffs)::integer, sum(f.messages_in)::integer, sum(f.messages_out)::integer,
         sum(f.frt_sum)::bigint, sum(f.frt_count)::integer, sum(f.resolution_sum)::bigint,
         sum(f.resolution_count)::integer, sum(f.wait_sum)::bigint, sum(f.wait_count)::integer,
         sum(f.flow_completions)::integer, sum(f.ai_calls)::integer, sum(f.ai_cost)::numeric(20,10),
         sum(f.csat_sum)::integer, sum(f.csat_count)::integer, now()
    from (
      -- conversations: new, resolved (resolution time, containment), handed off, rated
      select c.whatsapp_number_id as number_id, c.team_id, c.assignee_id as member_id, c.bot_id,
             (c.created_at >= v_lo and c.created_at < v_hi)::integer as conversations_new,
             (c.resolved_at >= v_lo and c.resolved_at < v_hi)::integer as resolved,
             (c.resolved_at >= v_lo and c.resolved_at < v_hi and c.handoff_at is null
              and c.assignee_id is null and c.mode <> 'human')::integer as contained,
             (c.handoff_at >= v_lo and c.handoff_at < v_hi)::integer as handoffs,
             0 as messages_in, 0 as messages_out, 0::bigint as frt_sum, 0 as frt_count,
             case when c.resolved_at >= v_lo and c.resolved_at < v_hi
                  then coalesce(m.resolution_seconds, greatest(extract(epoch from c.resolved_at
                         - coalesce(c.first_message_at, c.created_at)), 0)::integer) else 0 end::bigint as resolution_sum,
             (c.resolved_at >= v_lo and c.resolved_at < v_hi)::integer as resolution_count,
             0::bigint as wait_sum, 0 as wait_count, 0 as flow_completions, 0 as ai_calls, 0::numeric as ai_cost,
             case when c.csat_answered_at >= v_lo and c.csat_answered_at < v_hi then coalesce(c.csat, 0) else 0 end
               as csat_sum,
             (c.csat_answered_at >= v_lo and c.csat_answered_at < v_hi and c.csat is not null)::integer as csat_count
        from public.conversations c
        left join public.conversation_metrics m on m.tenant_id = c.tenant_id and m.conversation_id = c.id
       where c.tenant_id = analytics_facts.tenant_id
         and ((c.created_at >= v_lo and c.created_at < v_hi) or (c.resolved_at >= v_lo and c.resolved_at < v_hi)
              or (c.handoff_at >= v_lo and c.handoff_at < v_hi)
              or (c.csat_answered_at >= v_lo and c.csat_answered_at < v_hi))
      union all
      -- messages in and out (internal timeline lines are not messages to anyone)
      select msg.whatsapp_number_id, c.team_id, coalesce(msg.sender_member_id, c.assignee_id), c.bot_id,
             0, 0, 0, 0, (msg.direction = 'inbound')::integer, (msg.direction = 'outbound')::integer,
             0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        from public.messages msg
        join public.conversations c on c.tenant_id = msg.tenant_id and c.id = msg.conversation_id
       where msg.tenant_id = analytics_facts.tenant_id and msg.created_at >= v_lo and msg.created_at < v_hi
         and msg.direction <> 'internal'
      union all
      -- first responses given that day; queue wait of conversations that first needed a human that day
      select c.whatsapp_number_id, coalesce(m.team_id, c.team_id), c.assignee_id, c.bot_id,
             0, 0, 0, 0, 0, 0,
             case when m.first_response_at >= v_lo and m.first_response_at < v_hi
                  then coalesce(m.first_response_seconds, 0) else 0 end,
             (m.first_response_at >= v_lo and m.first_response_at < v_hi and m.first_response_seconds is not null)::integer,
             0, 0,
             case when m.needs_human_at >= v_lo and m.needs_human_at < v_hi then m.queue_wait_seconds else 0 end,
             case when m.needs_human_at >= v_lo and m.needs_human_at < v_hi then m.queue_entries else 0 end,
             0, 0, 0, 0, 0
        from public.conversation_metrics m
        join public.conversations c on c.tenant_id = m.tenant_id and c.id = m.conversation_id
       where m.tenant_id = analytics_facts.tenant_id
         and ((m.first_response_at >= v_lo and m.first_response_at < v_hi)
              or (m.needs_human_at >= v_lo and m.needs_human_at < v_hi))
      union all
      -- flows completed that day
      select c.whatsapp_number_id, c.team_id, c.assignee_id, c.bot_id, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
             1, 0, 0, 0, 0
        from public.flow_executions x
        join public.conversations c on c.tenant_id = x.tenant_id and c.id = x.conversation_id
       where x.tenant_id = analytics_facts.tenant_id and x.status = 'completed'
         and x.ended_at >= v_lo and x.ended_at < v_hi
      union all
      -- AI calls of that day, on the bot that made them
      select c.whatsapp_number_id, c.team_id, c.assignee_id, coalesce(u.bot_id, c.bot_id),
             0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, u.cost_brl, 0, 0
        from public.ai_usage u
        left join public.conversations c on c.tenant_id = u.tenant_id and c.id = u.conversation_id
       where u.tenant_id = analytics_facts.tenant_id and u.created_at >= v_lo and u.created_at < v_hi
    ) f
   group by f.number_id, f.team_id, f.member_id, f.bot_id;
end;
$$;
comment on function private.analytics_facts(uuid, date) is 'The analytics_daily rows (id null) of one tenant-day computed from the facts: stored by analytics_rollup, read live by the dashboards for days not rolled up.';

-- The analytics_daily_tenant row of one tenant-day computed from the facts (id null).
create or replace function private.analytics_tenant_facts(tenant_id uuid, day date)
returns setof public.analytics_daily_tenant
language plpgsql
stable
security definer
set search_path = ''
set plan_cache_mode = force_generic_plan
as $$
declare
  v_range tstzrange := private.tenant_day_range(analytics_tenant_facts.tenant_id, analytics_tenant_facts.day);
  v_lo timestamptz := lower(v_range);
  v_hi timestamptz := upper(v_range);
begin
  return query
  with frt as (
    -- the day's distinct first response times, each with how many conversations had it
    select m.first_response_seconds as seconds, count(*)::integer as n
      from public.conversation_metrics m
     where m.tenant_id = analytics_tenant_facts.tenant_id and m.first_response_at >= v_lo
       and m.first_response_at < v_hi and m.first_response_seconds is not null
     group by m.first_response_seconds)
  select null::uuid, analytics_tenant_facts.tenant_id, analytics_tenant_facts.day,
         coalesce((select array_agg(h.seconds order by h.seconds) from frt h), '{}'),
         coalesce((select array_agg(h.n order by h.seconds) from frt h), '{}'),
         coalesce((select jsonb_object_agg(s.status, s.n) from (
             select c.status, count(*) as n from public.conversations c
              where c.tenant_id = analytics_tenant_facts.tenant_id and c.created_at >= v_lo and c.created_at < v_hi
              group by c.status) s), '{}'),
         coalesce((select jsonb_agg(jsonb_build_object('bot_id', a.bot_id, 'feature', a.feature, 'calls', a.calls,
                                    'input_tokens', a.input_tokens, 'output_tokens', a.output_tokens,
                                    'cost_brl', a.cost_brl) order by a.bot_id, a.feature) from (
             select u.bot_id, u.feature, count(*) as calls, sum(u.input_tokens) as input_tokens,
                    sum(u.output_tokens) as output_tokens, sum(u.cost_brl) as cost_brl
               from public.ai_usage u
              where u.tenant_id = analytics_tenant_facts.tenant_id and u.created_at >= v_lo and u.created_at < v_hi
              group by u.bot_id, u.feature) a), '[]'),
         now();
end;
$$;
comment on function private.analytics_tenant_facts(uuid, date) is 'The analytics_daily_tenant row (id null) of one tenant-day computed from the facts: stored by analytics_rollup, read live by the dashboards for days not rolled up.';

-- THE rollup of one tenant-day: delete its rows, insert them again from the facts.
create or replace function private.analytics_rollup(tenant_id uuid, day date)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_hi timestamptz := upper(private.tenant_day_range(analytics_rollup.tenant_id, analytics_rollup.day));
  v_rows integer;
begin
  delete from public.analytics_daily d where d.tenant_id = analytics_rollup.tenant_id and d.day = analytics_rollup.day;
  insert into public.analytics_daily (tenant_id, day, whatsapp_number_id, team_id, member_id, bot_id,
    conversations_new, conversations_resolved, bot_contained, handoffs, messages_in, messages_out,
    frt_seconds_sum, frt_count, resolution_seconds_sum, resolution_count, queue_wait_seconds_sum, queue_wait_count,
    flow_completions, ai_calls, ai_cost_brl, csat_sum, csat_count)
  select f.tenant_id, f.day, f.whatsapp_number_id, f.team_id, f.member_id, f.bot_id,
         f.conversations_new, f.conversations_resolved, f.bot_contained, f.handoffs, f.messages_in, f.messages_out,
         f.frt_seconds_sum, f.frt_count, f.resolution_seconds_sum, f.resolution_count, f.queue_wait_seconds_sum,
         f.queue_wait_count, f.flow_completions, f.ai_calls, f.ai_cost_brl, f.csat_sum, f.csat_count
    from private.analytics_facts(analytics_rollup.tenant_id, analytics_rollup.day) f;
  get diagnostics v_rows = row_count;
  insert into public.analytics_daily_tenant (tenant_id, day, frt_seconds, frt_counts, conversations_by_status,
    ai_costs)
  select f.tenant_id, f.day, f.frt_seconds, f.frt_counts, f.conversations_by_status, f.ai_costs
    from private.analytics_tenant_facts(analytics_rollup.tenant_id, analytics_rollup.day) f
  on conflict on constraint analytics_daily_tenant_day_key do update
    set frt_seconds = excluded.frt_seconds, frt_counts = excluded.frt_counts,
        conversations_by_status = excluded.conversations_by_status, ai_costs = excluded.ai_costs, rolled_at = now();
  insert into public.analytics_days as a (tenant_id, day, dirty, rolled_at)
  values (analytics_rollup.tenant_id, analytics_rollup.day, v_hi > now(), now())
  on conflict on constraint analytics_days_tenant_day_key do update set dirty = excluded.dirty, rolled_at = now();
  return v_rows;
end;
$$;
comment on function private.analytics_rollup(uuid, date) is 'Recomputes the analytics_daily rows of one tenant-day from the facts (delete + insert: idempotent) and marks the day clean (a day not over yet stays dirty: the job finishes it); returns the rows written.';

-- Marks the past tenant-days of changed facts dirty (statement triggers: one insert per
-- statement). TG_ARGV: the timestamp columns of the changed rows whose days are touched.
create or replace function private.analytics_mark_dirty()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  -- static SQL (its plan is kept per trigger; a dynamic one was planned on every statement):
  -- the TG_ARGV columns are read by name from each row's jsonb, built once per row like its
  -- tenant's start of today (offset 0 keeps both from being recomputed per column)
  insert into public.analytics_days as a (tenant_id, day)
  select distinct r.tenant_id, (x.at at time zone r.timezone)::date
    from (select c.tenant_id, t.timezone, to_jsonb(c) as j,
                 (now() at time zone t.timezone)::date::timestamp at time zone t.timezone as today
            from changed c join public.tenants t on t.id = c.tenant_id
          offset 0) r
   cross join lateral (select (r.j ->> col)::timestamptz from unnest(tg_argv) col) x (at)
   where x.at < r.today
  on conflict (tenant_id, day) do update set dirty = true, marked_at = now() where not a.dirty;
  return null;
end;
$$;
comment on function private.analytics_mark_dirty() is 'Statement trigger: the past tenant-days (tenant time zone) of the changed rows'' timestamp columns become dirty for the next rollup; today is never marked.';

drop trigger if exists analytics_dirty_insert on public.messages;
create trigger analytics_dirty_insert after insert on public.messages referencing new table as changed
  for each statement execute function private.analytics_mark_dirty('created_at');
drop trigger if exists analytics_dirty_insert on public.conversations;
create trigger analytics_dirty_insert after insert on public.conversations referencing new table as changed
  for each statement execute function private.analytics_mark_dirty('created_at', 'resolved_at', 'handoff_at');
-- an update can move a conversation between agents or teams: its message days change too
drop trigger if exists analytics_dirty_update on public.conversations;
create trigger analytics_dirty_update after update on public.conversations referencing new table as changed
  for each statement execute function private.analytics_mark_dirty('created_at', 'resolved_at', 'handoff_at',
    'csat_answered_at', 'last_message_at');
drop trigger if exists analytics_dirty_insert on public.conversation_metrics;
create trigger analytics_dirty_insert after insert on public.conversation_metrics referencing new table as changed
  for each statement execute function private.analytics_mark_dirty('first_response_at', 'needs_human_at');
drop trigger if exists analytics_dirty_update on public.conversation_metrics;
create trigger analytics_dirty_update after update on public.conversation_metrics referencing new table as changed
  for each statement execute function private.analytics_mark_dirty('first_response_at', 'needs_human_at');
drop trigger if exists analytics_dirty_update on public.flow_executions;
create trigger analytics_dirty_update after update on public.flow_executions referencing new table as changed
  for each statement execute function private.analytics_mark_dirty('ended_at');
drop trigger if exists analytics_dirty_insert on public.ai_usage;
create trigger analytics_dirty_insert after insert on public.ai_usage referencing new table as changed
  for each statement execute function private.analytics_mark_dirty('created_at');

-- The job: each tenant's local yesterday once, then every dirty day (rows locked SKIP
-- LOCKED: a day a late fact is marking now waits for the next run).
create or replace function private.job_analytics_rollup(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_day record;
  v_rows integer := 0;
begin
  insert into public.analytics_days (tenant_id, day)
  select t.id, (job_analytics_rollup.as_of at time zone t.timezone)::date - 1 from public.tenants t
  on conflict (tenant_id, day) do nothing;
  for v_day in
    select a.tenant_id, a.day from public.analytics_days a where a.dirty
     order by a.day, a.tenant_id for update skip locked
  loop
    v_rows := v_rows + private.analytics_rollup(v_day.tenant_id, v_day.day);
  end loop;
  return v_rows;
end;
$$;
comment on function private.job_analytics_rollup(timestamptz) is 'Job analytics_rollup: adds each tenant''s local yesterday (once) and recomputes every dirty tenant-day; returns the rows written.';

insert into public.job_schedules (name, description, cron, function_name, runner) values
  ('analytics_rollup', 'Rolls up each tenant''s yesterday (its time zone) into analytics_daily and recomputes the days late facts touched.',
   '15 * * * *', 'private.job_analytics_rollup', 'database')
on conflict (name) do update set description = excluded.description, function_name = excluded.function_name,
  runner = excluded.runner;

/**
 * ----
 * Section - Reading a period
 * ----
 */

-- The days of a period without a clean rollup, which the dashboards compute from the facts:
-- today, the days late facts marked dirty, the days the job has not reached yet.
create or replace function private.analytics_live_days(tenant_id uuid, from_day date, to_day date)
returns setof date
language sql
stable
security definer
set search_path = ''
as $$
  select g.day::date
    from generate_series(analytics_live_days.from_day, analytics_live_days.to_day, interval '1 day') g (day)
   where not exists (select from public.analytics_days a
                      where a.tenant_id = analytics_live_days.tenant_id and a.day = g.day::date and not a.dirty)
$$;
comment on function private.analytics_live_days(uuid, date, date) is 'The days of a period (inclusive) that have no clean rollup (analytics_days.dirty or absent): read from the facts.';

-- A period's analytics_daily rows: the stored rows of its rolled-up days, the facts of the
-- others (computed as the rollup would store them, so a day reads the same before and after).
create or replace function private.analytics_period(tenant_id uuid, from_day date, to_day date)
returns setof public.analytics_daily
language sql
stable
security definer
set search_path = ''
as $$
  select d.* from public.analytics_daily d
    join public.analytics_days a on a.tenant_id = d.tenant_id and a.day = d.day and not a.dirty
   where d.tenant_id = analytics_period.tenant_id
     and d.day between analytics_period.from_day and analytics_period.to_day
  union all
  select f.*
    from private.analytics_live_days(analytics_period.tenant_id, analytics_period.from_day, analytics_period.to_day) l (day)
   cross join lateral private.analytics_facts(analytics_period.tenant_id, l.day) f
$$;
comment on function private.analytics_period(uuid, date, date) is 'The analytics_daily rows of a period: stored for rolled-up days, computed from the facts (private.analytics_facts) for the others.';

create or replace function private.analytics_period_tenant(tenant_id uuid, from_day date, to_day date)
returns setof public.analytics_daily_tenant
language sql
stable
security definer
set search_path = ''
as $$
  select d.* from public.analytics_daily_tenant d
    join public.analytics_days a on a.tenant_id = d.tenant_id and a.day = d.day and not a.dirty
   where d.tenant_id = analytics_period_tenant.tenant_id
     and d.day between analytics_period_tenant.from_day and analytics_period_tenant.to_day
  union all
  select f.*
    from private.analytics_live_days(analytics_period_tenant.tenant_id, analytics_period_tenant.from_day,
                                     analytics_period_tenant.to_day) l (day)
   cross join lateral private.analytics_tenant_facts(analytics_period_tenant.tenant_id, l.day) f
$$;
comment on function private.analytics_period_tenant(uuid, date, date) is 'The analytics_daily_tenant rows of a period: stored for rolled-up days, computed from the facts (private.analytics_tenant_facts) for the others.';

/**
 * ----
 * Section - Dashboard RPCs
 * ----
 */

-- The main figures of a period (days inclusive, tenant time zone): conversations by status
-- (of those created in the period, now), volumes, FRT p50 / p90, averages, rates, AI cost.
create or replace function private.analytics_summary(tenant_id uuid, from_day date, to_day date)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_result jsonb;
  v_frt double precision[];
  v_status jsonb;
begin
  perform private.analytics_reader(analytics_summary.tenant_id, 'manager');
  select jsonb_build_object(
           'from_day', analytics_summary.from_day, 'to_day', analytics_summary.to_day,
           'conversations_new', coalesce(sum(d.conversations_new), 0),
           'conversations_resolved', coalesce(sum(d.conversations_resolved), 0),
           'messages_in', coalesce(sum(d.messages_in), 0),
           'messages_out', coalesce(sum(d.messages_out), 0),
           'handoffs', coalesce(sum(d.handoffs), 0),
           'handoff_rate', round(sum(d.handoffs)::numeric / nullif(sum(d.conversations_new), 0), 4),
           'bot_contained', coalesce(sum(d.bot_contained), 0),
           'bot_containment_rate', round(sum(d.bot_contained)::numeric / nullif(sum(d.conversations_resolved), 0), 4),
           'frt_avg_seconds', round(sum(d.frt_seconds_sum)::numeric / nullif(sum(d.frt_count), 0), 1),
           'resolution_avg_seconds', round(sum(d.resolution_seconds_sum)::numeric / nullif(sum(d.resolution_count), 0), 1),
           'queue_wait_avg_seconds', round(sum(d.queue_wait_seconds_sum)::numeric / nullif(sum(d.queue_wait_count), 0), 1),
           'flow_completions', coalesce(sum(d.flow_completions), 0),
           'ai_calls', coalesce(sum(d.ai_calls), 0),
           'ai_cost_brl', round(coalesce(sum(d.ai_cost_brl), 0), 4),
           'csat_avg', round(sum(d.csat_sum)::numeric / nullif(sum(d.csat_count), 0), 2),
           'csat_count', coalesce(sum(d.csat_count), 0))
    into v_result
    from private.analytics_period(analytics_summary.tenant_id, analytics_summary.from_day, analytics_summary.to_day) d;
  -- FRT p50 / p90: percentile_cont over the merged daily FRT histograms gives the same double
  -- precision as over the raw first responses: the value at rank p * (n - 1) of the n sorted
  -- times, linear between the two ranks around it. The work grows with the distinct times per
  -- day, not with the conversations. Statuses are summed over the days.
  with t as materialized (
    select x.frt_seconds, x.frt_counts, x.conversations_by_status
      from private.analytics_period_tenant(analytics_summary.tenant_id, analytics_summary.from_day,
                                           analytics_summary.to_day) x),
  h as (
    select s.v, (sum(s.n) over (order by s.v))::bigint as upto
      from (select u.v, sum(u.n) as n from t cross join lateral unnest(t.frt_seconds, t.frt_counts) u (v, n)
             group by u.v) s),
  q as (
    select f.ord, f.p * ((select max(h.upto) from h) - 1)::double precision as pos
      from unnest(array[0.5, 0.9]::double precision[]) with ordinality f (p, ord))
  select (select array_agg(lo.v + (hi.v - lo.v) * (q.pos - floor(q.pos)) order by q.ord)
            from q
           cross join lateral (select min(h.v)::double precision as v from h where h.upto > floor(q.pos)) lo
           cross join lateral (select min(h.v)::double precision as v from h where h.upto > ceil(q.pos)) hi
           where q.pos is not null),
         (select coalesce(jsonb_object_agg(s.status, s.n), '{}'::jsonb)
            from (select e.key as status, sum(e.value::bigint)::bigint as n
                    from t cross join lateral jsonb_each_text(t.conversations_by_status) e
                   group by e.key) s)
    into v_frt, v_status;
  return v_result || jsonb_build_object('frt_p50_seconds', v_frt[1], 'frt_p90_seconds', v_frt[2],
                                        'conversations_by_status', v_status);
end;
$$;
comment on function private.analytics_summary(uuid, date, date) is 'Managers: the period''s figures (averages from sums and counts), exact FRT p50/p90 from the daily FRT histograms, and today''s status of the conversations created in the period; rolled-up days from the rollups, the others from the facts.';

create or replace function private.analytics_volumes(tenant_id uuid, from_day date, to_day date)
returns table (day date, conversations_new bigint, conversations_resolved bigint, messages_in bigint,
               messages_out bigint, handoffs bigint, bot_contained bigint, frt_avg_seconds numeric,
               resolution_avg_seconds numeric, ai_cost_brl numeric)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform private.analytics_reader(analytics_volumes.tenant_id, 'manager');
  return query
  select g.day::date, coalesce(sum(d.conversations_new), 0)::bigint, coalesce(sum(d.conversations_resolved), 0)::bigint,
         coalesce(sum(d.messages_in), 0)::bigint, coalesce(sum(d.messages_out), 0)::bigint,
         coalesce(sum(d.handoffs), 0)::bigint, coalesce(sum(d.bot_contained), 0)::bigint,
         round(sum(d.frt_seconds_sum)::numeric / nullif(sum(d.frt_count), 0), 1),
         round(sum(d.resolution_seconds_sum)::numeric / nullif(sum(d.resolution_count), 0), 1),
         round(coalesce(sum(d.ai_cost_brl), 0), 4)
    from generate_series(analytics_volumes.from_day, analytics_volumes.to_day, interval '1 day') g (day)
    left join private.analytics_period(analytics_volumes.tenant_id, analytics_volumes.from_day,
                                       analytics_volumes.to_day) d on d.day = g.day::date
   group by g.day
   order by g.day;
end;
$$;
comment on function private.analytics_volumes(uuid, date, date) is 'Managers: one line per day of the period (days without facts included) with volumes, FRT and resolution averages and AI cost.';

create or replace function private.analytics_agent_leaderboard(tenant_id uuid, from_day date, to_day date)
returns table (rank bigint, member_id uuid, name text, conversations_resolved bigint, messages_out bigint,
               frt_avg_seconds numeric, resolution_avg_seconds numeric, csat_avg numeric)
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_me public.members := private.analytics_reader(analytics_agent_leaderboard.tenant_id, 'agent');
  v_only uuid := case when v_me.id is not null and v_me.role < 'manager'
                       and not private.feature_enabled(analytics_agent_leaderboard.tenant_id, 'ranking_visibility')
                      then v_me.id end;
begin
  return query
  select r.* from (
    select rank() over (order by sum(d.conversations_resolved) desc, sum(d.messages_out) desc) as rank,
           d.member_id, private.member_name(analytics_agent_leaderboard.tenant_id, d.member_id),
           sum(d.conversations_resolved)::bigint, sum(d.messages_out)::bigint,
           round(sum(d.frt_seconds_sum)::numeric / nullif(sum(d.frt_count), 0), 1),
           round(sum(d.resolution_seconds_sum)::numeric / nullif(sum(d.resolution_count), 0), 1),
           round(sum(d.csat_sum)::numeric / nullif(sum(d.csat_count), 0), 2)
      from private.analytics_period(analytics_agent_leaderboard.tenant_id, analytics_agent_leaderboard.from_day,
                                    analytics_agent_leaderboard.to_day) d
     where d.member_id is not null
     group by d.member_id) r
   where v_only is null or r.member_id = v_only
   order by r.rank, r.member_id;
end;
$$;
comment on function private.analytics_agent_leaderboard(uuid, date, date) is 'Agents ranked by conversations resolved in the period. Managers see everyone; agents see everyone only when the tenant''s ranking_visibility flag is on, else their own line.';

create or replace function private.analytics_ai_costs(tenant_id uuid, from_day date, to_day date)
returns table (bot_id uuid, bot_name text, feature text, calls bigint, input_tokens bigint, output_tokens bigint,
               cost_brl numeric)
language plpgsql
stable
security definer
set search_path = ''
as $$
begin
  perform private.analytics_reader(analytics_ai_costs.tenant_id, 'manager');
  return query
  select a.bot_id, b.name, a.feature, sum(a.calls)::bigint, sum(a.input_tokens)::bigint,
         sum(a.output_tokens)::bigint, round(sum(a.cost_brl), 4)
    from private.analytics_period_tenant(analytics_ai_costs.tenant_id, analytics_ai_costs.from_day,
                                         analytics_ai_costs.to_day) t
   cross join lateral jsonb_to_recordset(t.ai_costs)
         a (bot_id uuid, feature text, calls bigint, input_tokens bigint, output_tokens bigint, cost_brl numeric)
    left join public.bots b on b.tenant_id = t.tenant_id and b.id = a.bot_id
   group by a.bot_id, b.name, a.feature
   order by sum(a.cost_brl) desc, a.feature;
end;
$$;
comment on function private.analytics_ai_costs(uuid, date, date) is 'Managers: AI calls, tokens and cost (BRL) per bot and feature over the period (the daily ai_costs of analytics_daily_tenant, from ai_usage for days not rolled up).';

create or replace function public.analytics_summary(tenant_id uuid, from_day date, to_day date)
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$ select private.analytics_summary(analytics_summary.tenant_id, analytics_summary.from_day, analytics_summary.to_day) $$;
comment on function public.analytics_summary(uuid, date, date) is 'Managers: the main figures of a period (see private.analytics_summary).';

create or replace function public.analytics_volumes(tenant_id uuid, from_day date, to_day date)
returns table (day date, conversations_new bigint, conversations_resolved bigint, messages_in bigint,
               messages_out bigint, handoffs bigint, bot_contained bigint, frt_avg_seconds numeric,
               resolution_avg_seconds numeric, ai_cost_brl numeric)
language sql
stable
security invoker
set search_path = ''
as $$ select * from private.analytics_volumes(analytics_volumes.tenant_id, analytics_volumes.from_day, analytics_volumes.to_day) $$;
comment on function public.analytics_volumes(uuid, date, date) is 'Managers: daily volumes of a period (see private.analytics_volumes).';

create or replace function public.analytics_agent_leaderboard(tenant_id uuid, from_day date, to_day date)
returns table (rank bigint, member_id uuid, name text, conversations_resolved bigint, messages_out bigint,
               frt_avg_seconds numeric, resolution_avg_seconds numeric, csat_avg numeric)
language sql
stable
security invoker
set search_path = ''
as $$
  select * from private.analytics_agent_leaderboard(analytics_agent_leaderboard.tenant_id,
                                                     analytics_agent_leaderboard.from_day, analytics_agent_leaderboard.to_day)
$$;
comment on function public.analytics_agent_leaderboard(uuid, date, date) is 'The agent ranking of a period, as the ranking_visibility flag allows (see private.analytics_agent_leaderboard).';

create or replace function public.analytics_ai_costs(tenant_id uuid, from_day date, to_day date)
returns table (bot_id uuid, bot_name text, feature text, calls bigint, input_tokens bigint, output_tokens bigint,
               cost_brl numeric)
language sql
stable
security invoker
set search_path = ''
as $$ select * from private.analytics_ai_costs(analytics_ai_costs.tenant_id, analytics_ai_costs.from_day, analytics_ai_costs.to_day) $$;
comment on function public.analytics_ai_costs(uuid, date, date) is 'Managers: AI cost per bot and feature of a period (see private.analytics_ai_costs).';

/**
 * ----
 * Section - Policies
 * ----
 */
drop policy if exists "Managers read the rollups" on public.analytics_daily;
create policy "Managers read the rollups" on public.analytics_daily for select to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')) or (select private.is_platform_admin()));
drop policy if exists "Managers read the tenant rollups" on public.analytics_daily_tenant;
create policy "Managers read the tenant rollups" on public.analytics_daily_tenant for select to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')) or (select private.is_platform_admin()));
drop policy if exists "Managers read the rollup days" on public.analytics_days;
create policy "Managers read the rollup days" on public.analytics_days for select to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')) or (select private.is_platform_admin()));

/**
 * ----
 * Section - Grants
 * ----
 */
grant select on public.analytics_daily, public.analytics_daily_tenant, public.analytics_days to authenticated;
grant select, insert, update, delete on public.analytics_daily, public.analytics_daily_tenant, public.analytics_days
  to service_role;

revoke execute on all functions in schema private from public, anon;
grant execute on function private.analytics_rollup(uuid, date) to service_role;
grant execute on function private.analytics_summary(uuid, date, date), private.analytics_volumes(uuid, date, date),
  private.analytics_agent_leaderboard(uuid, date, date), private.analytics_ai_costs(uuid, date, date)
  to authenticated, service_role;
revoke execute on function public.analytics_summary(uuid, date, date), public.analytics_volumes(uuid, date, date),
  public.analytics_agent_leaderboard(uuid, date, date), public.analytics_ai_costs(uuid, date, date)
  from public, anon;
grant execute on function public.analytics_summary(uuid, date, date), public.analytics_volumes(uuid, date, date),
  public.analytics_agent_leaderboard(uuid, date, date), public.analytics_ai_costs(uuid, date, date)
  to authenticated, service_role;
