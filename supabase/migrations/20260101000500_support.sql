/**
 * Zapbase module 6: support.
 * The support desk of seed 000 (GATTE tickets) grown into an SLA desk in the manner of
 * Zammad's escalations: tickets with a protocol the customer can quote, always opened from a
 * conversation; SLA policies per priority and category (first response, next response,
 * resolution) counted in business time over calendars (several intervals a day, holidays,
 * a time zone), the clock paused while the ticket waits for the customer or is resolved.
 *
 *   create_ticket (agents, the bot, flows, automation rules: one RPC)
 *        │  protocol BR-YYYYMMDD-NNNN from a per-tenant, per-day counter row locked in the
 *        │  transaction: unique and gap-free under concurrency (a rolled-back ticket
 *        │  rolls its number back)
 *        ▼
 *   tickets ──BEFORE trigger──► policy chosen, deadlines stored (first_response_due_at,
 *        │                      next_response_due_at, resolution_due_at, their *_warn_at,
 *        │                      sla_due_at, sla_next_check_at); recomputed on every change
 *        │                      of status, priority, category or policy
 *   messages ──AFTER trigger──► an agent's message answers (first / next response met), a
 *        │                      customer's message starts a next-response clock and brings a
 *        │                      ticket waiting for them back to in_progress
 *   job sla_breach_alert (every minute): index range scan of sla_next_check_at ≤ now
 *        ▼
 *   sla_events (append-only: warning, breach, met) ──► events ticket.sla_*, alerts
 *
 * Deadlines are stored, never computed at read time: the job reads one partial index however
 * many tickets there are. Policy changes are audited (audit_log) and emitted.
 *
 * Who may do what:
 *   every member  reads tickets, their notes and attachments, SLA policies, calendars, SLA events
 *   agent         creates tickets (create_ticket) on conversations they may work, works them
 *                 (status, priority, category, assignee, team, title, description), writes
 *                 internal notes and attaches stored files
 *   manager       SLA policies and business calendars
 *   service role  the bot's and flows' tickets, the customer's status question
 *                 (ticket_status_for_customer), the job
 */

/**
 * ----
 * Section - Tables
 * ----
 */

-- Business calendars: when the SLA clock runs.
create table if not exists public.business_calendars (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  name text not null check (length(name) between 1 and 80),
  timezone text not null default 'America/Sao_Paulo',
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, name)
);
alter table public.business_calendars enable row level security;
comment on table public.business_calendars is 'When the SLA clock runs: weekly intervals (business_calendar_hours) and holidays in a time zone. A policy without a calendar counts wall-clock time.';
comment on column public.business_calendars.timezone is 'IANA time zone the intervals and holidays are read in.';

create table if not exists public.business_calendar_hours (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  calendar_id uuid not null,
  weekday smallint not null check (weekday between 0 and 6),
  starts_at time not null,
  ends_at time not null,
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  check (ends_at > starts_at),
  foreign key (tenant_id, calendar_id) references public.business_calendars (tenant_id, id) on delete cascade,
  -- intervals of one day never overlap (overlaps would count the same minute twice)
  constraint business_calendar_hours_no_overlap exclude using gist (
    calendar_id with =, weekday with =,
    int4range(extract(epoch from starts_at)::integer, extract(epoch from ends_at)::integer) with &&)
);
alter table public.business_calendar_hours enable row level security;
create index if not exists business_calendar_hours_calendar_idx on public.business_calendar_hours (tenant_id, calendar_id);
comment on table public.business_calendar_hours is 'Business intervals of a calendar: several a day (e.g. 08:00-12:00 and 13:00-18:00), never overlapping.';
comment on column public.business_calendar_hours.weekday is '0 Sunday ... 6 Saturday (extract(dow)).';
comment on column public.business_calendar_hours.ends_at is 'End of the interval; 24:00 runs to midnight.';

create table if not exists public.business_calendar_holidays (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  calendar_id uuid not null,
  day date not null,
  name text check (length(name) <= 120),
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (calendar_id, day),
  foreign key (tenant_id, calendar_id) references public.business_calendars (tenant_id, id) on delete cascade
);
alter table public.business_calendar_holidays enable row level security;
create index if not exists business_calendar_holidays_tenant_idx on public.business_calendar_holidays (tenant_id, calendar_id);
comment on table public.business_calendar_holidays is 'Days of a calendar with no business hours at all (national and local holidays).';

-- SLA policies: the targets of a ticket by priority and category.
create table if not exists public.sla_policies (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  name text not null check (length(name) between 1 and 120),
  priority text check (priority in ('low', 'medium', 'high', 'critical')),
  category text check (category ~ '^[A-Za-z0-9_ -]{1,60}$'),
  calendar_id uuid,
  first_response_minutes integer check (first_response_minutes between 1 and 525600),
  next_response_minutes integer check (next_response_minutes between 1 and 525600),
  resolution_minutes integer check (resolution_minutes between 1 and 525600),
  warning_at_pct smallint not null default 80 check (warning_at_pct between 1 and 99),
  is_active boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique nulls not distinct (tenant_id, priority, category),
  foreign key (tenant_id, calendar_id) references public.business_calendars (tenant_id, id)
    on delete set null (calendar_id)
);
alter table public.sla_policies enable row level security;
create index if not exists sla_policies_calendar_idx on public.sla_policies (tenant_id, calendar_id);
comment on table public.sla_policies is 'SLA targets by priority and category: the most specific active policy applies (priority and category, then priority, then category, then neither). Changes are audited and emitted (sla_policy.changed) and re-apply to open tickets.';
comment on column public.sla_policies.priority is 'Tickets of this priority; null: any priority.';
comment on column public.sla_policies.category is 'Tickets of this category; null: any category.';
comment on column public.sla_policies.calendar_id is 'Business calendar the minutes count in; null: wall-clock time (24x7).';
comment on column public.sla_policies.first_response_minutes is 'Business minutes from the ticket''s opening to an agent''s first message; null: no target.';
comment on column public.sla_policies.next_response_minutes is 'Business minutes from a customer''s message (after the first response) to the agent''s next one; null: no target.';
comment on column public.sla_policies.resolution_minutes is 'Business minutes from opening to resolved, not counting time waiting for the customer or resolved; null: no target.';
comment on column public.sla_policies.warning_at_pct is 'A warning fires when this share of a target has elapsed (80: with 20% of the time left).';

-- The protocol counter: one row per tenant and day, locked by the transaction that numbers a ticket.
create table if not exists public.ticket_protocol_counters (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  day date not null,
  last_number integer not null check (last_number between 1 and 999999),
  unique (tenant_id, id),
  unique (tenant_id, day)
);
alter table public.ticket_protocol_counters enable row level security;
comment on table public.ticket_protocol_counters is 'Last protocol number of a tenant''s day (tenant time zone). Incremented in the ticket''s transaction: concurrent creations queue on the row, a rollback gives the number back, so numbers are unique and gap-free per day.';

-- Tickets (seed 000 tickets).
create table if not exists public.tickets (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  protocol text not null check (protocol ~ '^BR-[0-9]{8}-[0-9]{4,6}$'),
  conversation_id uuid not null,
  contact_id uuid not null,
  title text not null check (length(title) between 1 and 300),
  description text check (length(description) <= 20000),
  status text not null default 'open'
    check (status in ('open', 'in_progress', 'waiting_client', 'resolved', 'closed')),
  priority text not null default 'medium' check (priority in ('low', 'medium', 'high', 'critical')),
  category text check (category ~ '^[A-Za-z0-9_ -]{1,60}$'),
  source text not null default 'agent' check (source in ('agent', 'bot', 'flow', 'automation', 'api')),
  team_id uuid,
  assignee_id uuid,
  created_by uuid references auth.users (id) on delete set null,
  sla_policy_id uuid,
  sla_started_at timestamptz not null default now(),
  sla_paused_at timestamptz,
  sla_paused_seconds bigint not null default 0 check (sla_paused_seconds >= 0),
  first_response_at timestamptz,
  first_response_warn_at timestamptz,
  first_response_due_at timestamptz,
  awaiting_reply_since timestamptz,
  next_response_cycle integer not null default 0,
  next_response_warn_at timestamptz,
  next_response_due_at timestamptz,
  resolution_warn_at timestamptz,
  resolution_due_at timestamptz,
  sla_due_at timestamptz,
  sla_next_check_at timestamptz,
  resolved_at timestamptz,
  closed_at timestamptz,
  reopened_count integer not null default 0,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, protocol),
  foreign key (tenant_id, conversation_id) references public.conversations (tenant_id, id) on delete cascade,
  foreign key (tenant_id, contact_id) references public.contacts (tenant_id, id) on delete cascade,
  foreign key (tenant_id, team_id) references public.teams (tenant_id, id) on delete set null (team_id),
  foreign key (tenant_id, assignee_id) references public.members (tenant_id, id) on delete set null (assignee_id),
  foreign key (tenant_id, sla_policy_id) references public.sla_policies (tenant_id, id)
    on delete set null (sla_policy_id)
);
alter table public.tickets enable row level security;
create index if not exists tickets_tenant_status_idx on public.tickets (tenant_id, status, sla_due_at);
create index if not exists tickets_tenant_conversation_idx on public.tickets (tenant_id, conversation_id);
create index if not exists tickets_tenant_contact_idx on public.tickets (tenant_id, contact_id);
create index if not exists tickets_tenant_assignee_idx on public.tickets (tenant_id, assignee_id);
create index if not exists tickets_tenant_team_idx on public.tickets (tenant_id, team_id);
create index if not exists tickets_tenant_policy_idx on public.tickets (tenant_id, sla_policy_id);
create index if not exists tickets_created_by_idx on public.tickets (created_by);
-- the SLA job: one range scan over every tenant
create index if not exists tickets_sla_check_idx on public.tickets (sla_next_check_at)
  where sla_next_check_at is not null;
comment on table public.tickets is 'Support tickets (seed 000): a protocol the customer quotes, always opened from a conversation, worked open → in_progress → waiting_client → resolved → closed (reopen allowed), with SLA deadlines stored and recomputed on every change.';
comment on column public.tickets.protocol is 'BR-YYYYMMDD-NNNN: the tenant''s day (its time zone) and the number of the ticket that day, unique per tenant and gap-free per day.';
comment on column public.tickets.contact_id is 'The conversation''s contact (set by the trigger).';
comment on column public.tickets.category is 'Tenant''s own category (seed 000: LC_WEB, LC_ERP, CERT, PIX, TEF, OUTROS); chooses the SLA policy with the priority.';
comment on column public.tickets.source is 'Who opened it: agent, bot, flow, automation or api.';
comment on column public.tickets.sla_started_at is 'When the SLA clock started (opening).';
comment on column public.tickets.sla_paused_at is 'Since when the clock is paused (waiting_client, resolved, closed); null while it runs.';
comment on column public.tickets.sla_paused_seconds is 'Business seconds paused so far: added to every target.';
comment on column public.tickets.first_response_at is 'First agent message in the conversation after the opening.';
comment on column public.tickets.awaiting_reply_since is 'A customer message (after the first response) not yet answered by an agent: the next-response clock runs from here.';
comment on column public.tickets.next_response_cycle is 'How many next-response clocks were started (numbers their SLA events).';
comment on column public.tickets.sla_due_at is 'Earliest deadline in force (first response, next response, resolution); frozen while paused (moved on by the pause when the clock resumes); null without a policy.';
comment on column public.tickets.sla_next_check_at is 'Next moment the SLA job must look at the ticket (a warning or a deadline); null: nothing pending.';

-- Internal notes (seed 000 internal_notes): the team's, never shown to the customer.
create table if not exists public.ticket_notes (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  ticket_id uuid not null,
  author_id uuid default auth.uid() references auth.users (id) on delete set null,
  body text not null check (length(body) between 1 and 10000),
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  foreign key (tenant_id, ticket_id) references public.tickets (tenant_id, id) on delete cascade
);
alter table public.ticket_notes enable row level security;
create index if not exists ticket_notes_ticket_idx on public.ticket_notes (tenant_id, ticket_id, created_at);
create index if not exists ticket_notes_author_idx on public.ticket_notes (author_id);
comment on table public.ticket_notes is 'Internal notes of a ticket, visible to the tenant''s members only; written as the signed-in member.';

-- Attachments: files already stored (Supabase Storage), referenced by path.
create table if not exists public.ticket_attachments (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  ticket_id uuid not null,
  storage_path text not null check (length(storage_path) <= 1000 and storage_path !~ '(^|/)\.\.(/|$)'),
  file_name text check (length(file_name) <= 255),
  mime_type text check (length(mime_type) <= 200),
  size_bytes bigint check (size_bytes >= 0),
  uploaded_by uuid default auth.uid() references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  constraint ticket_attachments_path_in_tenant check (storage_path like tenant_id::text || '/%'),
  foreign key (tenant_id, ticket_id) references public.tickets (tenant_id, id) on delete cascade
);
alter table public.ticket_attachments enable row level security;
create index if not exists ticket_attachments_ticket_idx on public.ticket_attachments (tenant_id, ticket_id);
create index if not exists ticket_attachments_uploaded_by_idx on public.ticket_attachments (uploaded_by);
comment on table public.ticket_attachments is 'Files of a ticket: a storage path under the tenant''s folder (<tenant_id>/...), never the bytes.';

-- SLA history: append-only.
create table if not exists public.sla_events (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  ticket_id uuid not null,
  metric text not null check (metric in ('first_response', 'next_response', 'resolution')),
  kind text not null check (kind in ('warning', 'breach', 'met')),
  cycle integer not null default 0,
  due_at timestamptz,
  occurred_at timestamptz not null default now(),
  sla_policy_id uuid,
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  -- a warning, a breach and a met once per target (the job may look twice)
  unique (ticket_id, metric, kind, cycle),
  foreign key (tenant_id, ticket_id) references public.tickets (tenant_id, id) on delete cascade
);
alter table public.sla_events enable row level security;
create index if not exists sla_events_tenant_ticket_idx on public.sla_events (tenant_id, ticket_id, occurred_at);
comment on table public.sla_events is 'Append-only SLA history of tickets: warning (a share of the target elapsed), breach (deadline passed), met (answered or resolved; late when after due_at). Each emits ticket.sla_<kind>; warnings and breaches raise alerts.';
comment on column public.sla_events.cycle is 'next_response: which customer message started the clock (tickets.next_response_cycle); 0 otherwise.';
comment on column public.sla_events.due_at is 'The deadline in force when the event happened.';

/**
 * ----
 * Section - Private helpers: business time
 * ----
 */

-- The moment `seconds` of business time after `start_at` in a calendar (wall clock when the
-- calendar is null). Loads the week and the holidays once, then walks the days.
create or replace function private.business_add(calendar_id uuid, start_at timestamptz, seconds bigint)
returns timestamptz
language plpgsql
stable
set search_path = ''
as $$
declare
  v_tz text;
  v_weekdays smallint[];
  v_starts time[];
  v_ends time[];
  v_holidays date[];
  v_day date;
  v_from timestamptz;
  v_to timestamptz;
  v_span numeric;
  v_left numeric := greatest(business_add.seconds, 0);
begin
  if business_add.calendar_id is null then
    return business_add.start_at + make_interval(secs => v_left);
  end if;
  select c.timezone into v_tz from public.business_calendars c where c.id = business_add.calendar_id;
  select array_agg(h.weekday order by h.weekday, h.starts_at), array_agg(h.starts_at order by h.weekday, h.starts_at),
         array_agg(h.ends_at order by h.weekday, h.starts_at)
    into v_weekdays, v_starts, v_ends
    from public.business_calendar_hours h where h.calendar_id = business_add.calendar_id;
  if v_tz is null or v_weekdays is null then
    raise exception 'business calendar % has no business hours', business_add.calendar_id using errcode = '22023';
  end if;
  select coalesce(array_agg(d.day), '{}') into v_holidays
    from public.business_calendar_holidays d
   where d.calendar_id = business_add.calendar_id and d.day >= (business_add.start_at at time zone v_tz)::date;
  v_day := (business_add.start_at at time zone v_tz)::date;
  for v_i in 0 .. 3700 loop
    if not (v_day = any (v_holidays)) then
      for v_j in 1 .. cardinality(v_weekdays) loop
        continue when v_weekdays[v_j] <> extract(dow from v_day);
        v_from := greatest((v_day + v_starts[v_j]) at time zone v_tz, business_add.start_at);
        v_to := (v_day + v_ends[v_j]) at time zone v_tz;
        continue when v_to <= v_from;
        v_span := extract(epoch from v_to - v_from);
        if v_span >= v_left then
          return v_from + make_interval(secs => v_left);
        end if;
        v_left := v_left - v_span;
      end loop;
    end if;
    v_day := v_day + 1;
  end loop;
  raise exception 'business calendar % has no business hours in ten years', business_add.calendar_id
    using errcode = '22023';
end;
$$;
comment on function private.business_add(uuid, timestamptz, bigint) is 'The moment `seconds` of business time after start_at in a calendar (its intervals, holidays and time zone); wall clock when the calendar is null.';

-- Business seconds between two moments (what a pause is worth).
create or replace function private.business_seconds(calendar_id uuid, from_at timestamptz, to_at timestamptz)
returns bigint
language plpgsql
stable
set search_path = ''
as $$
declare
  v_tz text;
  v_total numeric := 0;
begin
  if business_seconds.to_at <= business_seconds.from_at then
    return 0;
  end if;
  if business_seconds.calendar_id is null then
    return extract(epoch from business_seconds.to_at - business_seconds.from_at)::bigint;
  end if;
  select c.timezone into v_tz from public.business_calendars c where c.id = business_seconds.calendar_id;
  select coalesce(sum(extract(epoch from
           least((d.day + h.ends_at) at time zone v_tz, business_seconds.to_at)
           - greatest((d.day + h.starts_at) at time zone v_tz, business_seconds.from_at))), 0)
    into v_total
    from (select (business_seconds.from_at at time zone v_tz)::date + i as day
            from generate_series(0, (business_seconds.to_at at time zone v_tz)::date
                                    - (business_seconds.from_at at time zone v_tz)::date) as i) d
    join public.business_calendar_hours h
      on h.calendar_id = business_seconds.calendar_id and h.weekday = extract(dow from d.day)
   where not exists (select 1 from public.business_calendar_holidays x
                      where x.calendar_id = business_seconds.calendar_id and x.day = d.day)
     and (d.day + h.ends_at) at time zone v_tz > business_seconds.from_at
     and (d.day + h.starts_at) at time zone v_tz < business_seconds.to_at;
  return v_total::bigint;
end;
$$;
comment on function private.business_seconds(uuid, timestamptz, timestamptz) is 'Business seconds of a calendar between two moments (wall-clock seconds when the calendar is null).';

/**
 * ----
 * Section - Private helpers: tickets and their SLA
 * ----
 */

-- The most specific active policy for a priority and category.
create or replace function private.ticket_sla_policy(tenant_id uuid, priority text, category text)
returns uuid
language sql
stable
set search_path = ''
as $$
  select p.id from public.sla_policies p
   where p.tenant_id = ticket_sla_policy.tenant_id and p.is_active
     and (p.priority is null or p.priority = ticket_sla_policy.priority)
     and (p.category is null or p.category = ticket_sla_policy.category)
   order by (p.priority is not null) desc, (p.category is not null) desc
   limit 1
$$;

-- Which status changes a ticket allows: forward through the work, back to work from
-- waiting, and reopening from resolved or closed.
create or replace function private.ticket_transition_ok(from_status text, to_status text)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select case from_status
    when 'open' then to_status in ('in_progress', 'waiting_client', 'resolved', 'closed')
    when 'in_progress' then to_status in ('open', 'waiting_client', 'resolved', 'closed')
    when 'waiting_client' then to_status in ('open', 'in_progress', 'resolved', 'closed')
    when 'resolved' then to_status in ('closed', 'open', 'in_progress')
    when 'closed' then to_status in ('open', 'in_progress')
    else false
  end
$$;

-- The ticket with its deadlines computed from its policy, clock and pauses: targets are
-- business time from the start plus what was paused. While paused the deadlines stay as they
-- were (frozen, what a met-while-paused is judged against) and nothing is checked.
create or replace function private.ticket_sla(t public.tickets)
returns public.tickets
language plpgsql
stable
set search_path = ''
as $$
declare
  v_policy public.sla_policies;
  v_pct numeric;
begin
  if t.sla_paused_at is not null then
    t.sla_next_check_at := null;
    return t;
  end if;
  t.first_response_warn_at := null;
  t.first_response_due_at := null;
  t.next_response_warn_at := null;
  t.next_response_due_at := null;
  t.resolution_warn_at := null;
  t.resolution_due_at := null;
  select * into v_policy from public.sla_policies p where p.tenant_id = t.tenant_id and p.id = t.sla_policy_id;
  if v_policy.id is not null then
    v_pct := v_policy.warning_at_pct / 100.0;
    if t.first_response_at is null and v_policy.first_response_minutes is not null then
      t.first_response_warn_at := private.business_add(v_policy.calendar_id, t.sla_started_at,
        (v_policy.first_response_minutes * 60 * v_pct)::bigint + t.sla_paused_seconds);
      t.first_response_due_at := private.business_add(v_policy.calendar_id, t.sla_started_at,
        v_policy.first_response_minutes * 60 + t.sla_paused_seconds);
    end if;
    if t.awaiting_reply_since is not null and v_policy.next_response_minutes is not null then
      t.next_response_warn_at := private.business_add(v_policy.calendar_id, t.awaiting_reply_since,
        (v_policy.next_response_minutes * 60 * v_pct)::bigint);
      t.next_response_due_at := private.business_add(v_policy.calendar_id, t.awaiting_reply_since,
        v_policy.next_response_minutes * 60);
    end if;
    if v_policy.resolution_minutes is not null then
      t.resolution_warn_at := private.business_add(v_policy.calendar_id, t.sla_started_at,
        (v_policy.resolution_minutes * 60 * v_pct)::bigint + t.sla_paused_seconds);
      t.resolution_due_at := private.business_add(v_policy.calendar_id, t.sla_started_at,
        v_policy.resolution_minutes * 60 + t.sla_paused_seconds);
    end if;
  end if;
  t.sla_due_at := least(t.first_response_due_at, t.next_response_due_at, t.resolution_due_at);
  t.sla_next_check_at := least(t.first_response_warn_at, t.first_response_due_at, t.next_response_warn_at,
                               t.next_response_due_at, t.resolution_warn_at, t.resolution_due_at);
  return t;
end;
$$;
comment on function private.ticket_sla(public.tickets) is 'A ticket''s SLA deadlines and warnings from its policy (business time, pauses added); frozen and unchecked while paused.';

-- Records an SLA event once (the unique key absorbs a second look); true when new.
create or replace function private.record_sla_event(t public.tickets, metric text, kind text, cycle integer,
                                                    due_at timestamptz, occurred_at timestamptz)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
#variable_conflict use_column
begin
  insert into public.sla_events (tenant_id, ticket_id, metric, kind, cycle, due_at, occurred_at, sla_policy_id)
  values (t.tenant_id, t.id, record_sla_event.metric, record_sla_event.kind, record_sla_event.cycle,
          record_sla_event.due_at, record_sla_event.occurred_at, t.sla_policy_id)
  on conflict (ticket_id, metric, kind, cycle) do nothing;
  return found;
end;
$$;

/**
 * ----
 * Section - Triggers
 * ----
 */

-- Before a ticket is written: its contact from the conversation, allowed status changes,
-- the pause accounting, the policy (again when priority or category change) and deadlines.
create or replace function private.tg_tickets_prepare()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_paused constant text[] := array['waiting_client', 'resolved', 'closed'];
  v_calendar uuid;
begin
  if tg_op = 'INSERT' then
    select c.contact_id into new.contact_id from public.conversations c
     where c.tenant_id = new.tenant_id and c.id = new.conversation_id;
    if new.contact_id is null then
      raise exception 'a ticket is always opened from a conversation of its tenant: conversation % not found',
        coalesce(new.conversation_id::text, 'null') using errcode = '23503';
    end if;
    new.sla_started_at := now();
    new.sla_policy_id := private.ticket_sla_policy(new.tenant_id, new.priority, new.category);
    if new.status = any (v_paused) then
      new.sla_paused_at := now();
    end if;
    return private.ticket_sla(new);
  end if;

  if new.status is distinct from old.status then
    if not private.ticket_transition_ok(old.status, new.status) then
      raise exception 'a ticket cannot go from % to %', old.status, new.status using errcode = '22023',
        hint = 'open → in_progress → waiting_client → resolved → closed; resolved and closed tickets are reopened to open or in_progress.';
    end if;
    select p.calendar_id into v_calendar from public.sla_policies p
     where p.tenant_id = new.tenant_id and p.id = old.sla_policy_id;
    if old.status = any (v_paused) and not new.status = any (v_paused) then
      new.sla_paused_seconds := old.sla_paused_seconds
        + private.business_seconds(v_calendar, coalesce(old.sla_paused_at, now()), now());
      new.sla_paused_at := null;
    elsif new.status = any (v_paused) and not old.status = any (v_paused) then
      new.sla_paused_at := now();
    end if;
    if new.status = 'resolved' then
      new.resolved_at := now();
    elsif new.status = 'closed' then
      new.closed_at := now();
      new.resolved_at := coalesce(old.resolved_at, now());
    elsif old.status in ('resolved', 'closed') then
      new.reopened_count := old.reopened_count + 1;
      new.resolved_at := null;
      new.closed_at := null;
    end if;
  end if;
  if (new.priority, new.category) is distinct from (old.priority, old.category) then
    new.sla_policy_id := private.ticket_sla_policy(new.tenant_id, new.priority, new.category);
  end if;
  return private.ticket_sla(new);
end;
$$;

-- After a ticket changed: events, and the SLA targets it met.
create or replace function private.tg_tickets_emit()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_event jsonb := jsonb_build_object('ticket_id', new.id, 'protocol', new.protocol, 'conversation_id',
    new.conversation_id, 'contact_id', new.contact_id, 'status', new.status, 'priority', new.priority,
    'category', new.category, 'team_id', new.team_id, 'assignee_id', new.assignee_id, 'sla_due_at', new.sla_due_at);
begin
  if tg_op = 'INSERT' then
    perform private.emit(new.tenant_id, 'ticket.created', 'tickets', new.id,
                         v_event || jsonb_build_object('source', new.source, 'title', new.title));
    return null;
  end if;
  if new.status is distinct from old.status then
    perform private.emit(new.tenant_id,
      case when old.status in ('resolved', 'closed') and new.status in ('open', 'in_progress')
           then 'ticket.reopened' else 'ticket.status_changed' end,
      'tickets', new.id, v_event || jsonb_build_object('previous_status', old.status));
    -- resolved from a pause: the clock stopped when the pause began
    if new.status = 'resolved' and old.resolution_due_at is not null then
      perform private.record_sla_event(new, 'resolution', 'met', 0, old.resolution_due_at,
                                       coalesce(old.sla_paused_at, now()));
    end if;
  end if;
  if new.assignee_id is distinct from old.assignee_id or new.team_id is distinct from old.team_id then
    perform private.emit(new.tenant_id, 'ticket.assigned', 'tickets', new.id,
      v_event || jsonb_build_object('previous_assignee_id', old.assignee_id, 'previous_team_id', old.team_id));
  end if;
  if old.first_response_at is null and new.first_response_at is not null and old.first_response_due_at is not null then
    perform private.record_sla_event(new, 'first_response', 'met', 0, old.first_response_due_at, new.first_response_at);
  end if;
  if old.awaiting_reply_since is not null and new.awaiting_reply_since is null and old.next_response_due_at is not null then
    perform private.record_sla_event(new, 'next_response', 'met', old.next_response_cycle, old.next_response_due_at, now());
  end if;
  return null;
end;
$$;

-- An SLA event reaches the tenant: its event, and an alert for a warning or a breach.
create or replace function private.tg_sla_events_emit()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_ticket public.tickets;
  v_label text := case new.metric when 'first_response' then 'primeira resposta'
                                  when 'next_response' then 'próxima resposta' else 'resolução' end;
begin
  select * into v_ticket from public.tickets t where t.tenant_id = new.tenant_id and t.id = new.ticket_id;
  perform private.emit(new.tenant_id,
    case new.kind when 'breach' then 'ticket.sla_breached' when 'warning' then 'ticket.sla_warning' else 'ticket.sla_met' end,
    'tickets', new.ticket_id,
    jsonb_build_object('ticket_id', new.ticket_id, 'protocol', v_ticket.protocol, 'metric', new.metric,
      'cycle', new.cycle, 'due_at', new.due_at, 'occurred_at', new.occurred_at,
      'late', new.kind = 'met' and new.occurred_at > new.due_at, 'assignee_id', v_ticket.assignee_id,
      'team_id', v_ticket.team_id, 'priority', v_ticket.priority));
  if new.kind in ('warning', 'breach') then
    insert into public.alerts (tenant_id, type, priority, title, message, payload, dedupe_key)
    values (new.tenant_id, 'ticket.sla_' || new.kind,
            case when new.kind = 'breach' then 'high' else 'medium' end,
            left(case when new.kind = 'breach' then 'SLA estourado: ' else 'SLA perto do prazo: ' end
                 || v_ticket.protocol || ' (' || v_label || ')', 200),
            'O chamado ' || v_ticket.protocol || ' "' || left(v_ticket.title, 200) || '" '
              || case when new.kind = 'breach' then 'passou do prazo de ' else 'está perto do prazo de ' end
              || v_label || ' (' || to_char(new.due_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI "UTC"') || ').',
            jsonb_build_object('ticket_id', new.ticket_id, 'protocol', v_ticket.protocol, 'metric', new.metric,
                               'due_at', new.due_at, 'assignee_id', v_ticket.assignee_id),
            'sla:' || new.ticket_id || ':' || new.metric || ':' || new.cycle || ':' || new.kind)
    on conflict (tenant_id, dedupe_key) do nothing;
  end if;
  return null;
end;
$$;

-- SLA events are history: no role changes or removes one; they go only with their ticket.
create or replace function private.tg_sla_events_guard()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' and (not exists (select 1 from public.tickets t
                                        where t.tenant_id = old.tenant_id and t.id = old.ticket_id)
                           or not exists (select 1 from public.tenants t where t.id = old.tenant_id)) then
    return old;
  end if;
  raise exception 'SLA events are append-only' using errcode = '42501';
end;
$$;

-- Messages of a conversation answer or reopen the clocks of its live tickets: an agent's
-- message is the (first or next) response; a customer's message after the first response
-- starts the next-response clock and takes a ticket waiting for them back to work.
create or replace function private.tg_messages_tickets()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.sender_type = 'agent' then
    update public.tickets t
       set first_response_at = coalesce(t.first_response_at, new.created_at), awaiting_reply_since = null
     where t.tenant_id = new.tenant_id and t.conversation_id = new.conversation_id
       and t.status not in ('resolved', 'closed')
       and (t.first_response_at is null or t.awaiting_reply_since is not null);
  else
    update public.tickets t
       set awaiting_reply_since = case when t.first_response_at is not null
                                       then coalesce(t.awaiting_reply_since, new.created_at) end,
           next_response_cycle = t.next_response_cycle
             + case when t.first_response_at is not null and t.awaiting_reply_since is null then 1 else 0 end,
           status = case when t.status = 'waiting_client' then 'in_progress' else t.status end
     where t.tenant_id = new.tenant_id and t.conversation_id = new.conversation_id
       and t.status not in ('resolved', 'closed')
       and ((t.first_response_at is not null and t.awaiting_reply_since is null) or t.status = 'waiting_client');
  end if;
  return null;
end;
$$;

-- A policy change is recorded (audit_log by tg_audit, and an event) and re-applies to the
-- tenant's live tickets.
create or replace function private.tg_sla_policies_changed()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row public.sla_policies := case when tg_op = 'DELETE' then old else new end;
begin
  if not exists (select 1 from public.tenants t where t.id = v_row.tenant_id) then
    return null;  -- the tenant is being deleted
  end if;
  perform private.emit(v_row.tenant_id, 'sla_policy.changed', 'sla_policies', v_row.id,
    jsonb_build_object('policy_id', v_row.id, 'operation', lower(tg_op), 'name', v_row.name,
                       'priority', v_row.priority, 'category', v_row.category,
                       'old', case when tg_op <> 'INSERT' then to_jsonb(old) end,
                       'new', case when tg_op <> 'DELETE' then to_jsonb(new) end));
  update public.tickets t
     set sla_policy_id = private.ticket_sla_policy(t.tenant_id, t.priority, t.category)
   where t.tenant_id = v_row.tenant_id and t.status not in ('resolved', 'closed');
  return null;
end;
$$;

-- A calendar's hours, holidays or time zone changed: the open tickets whose policy counts in
-- it get their deadlines again (writing sla_policy_id runs _200_prepare).
create or replace function private.recompute_calendar_slas(calendar_ids uuid[])
returns void
language sql
set search_path = ''
as $$
  update public.tickets t
     set sla_policy_id = t.sla_policy_id
    from public.sla_policies p
   where p.tenant_id = t.tenant_id and p.id = t.sla_policy_id and p.calendar_id = any(calendar_ids)
     and t.status not in ('resolved', 'closed')
$$;

-- Hours and holidays: one statement trigger per operation, each naming its transition table `changed`.
create or replace function private.tg_business_calendar_days_changed()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.recompute_calendar_slas(array(select distinct c.calendar_id from changed c));
  return null;
end;
$$;

create or replace function private.tg_business_calendars_changed()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.recompute_calendar_slas(array[new.id]);
  return null;
end;
$$;

drop trigger if exists _200_prepare on public.tickets;
create trigger _200_prepare before insert or update of status, priority, category, sla_policy_id, first_response_at,
  awaiting_reply_since on public.tickets
  for each row execute function private.tg_tickets_prepare();
drop trigger if exists _100_set_updated_at on public.tickets;
create trigger _100_set_updated_at before update on public.tickets
  for each row execute function private.tg_set_updated_at();
drop trigger if exists _500_emit on public.tickets;
create trigger _500_emit after insert or update on public.tickets
  for each row execute function private.tg_tickets_emit();
drop trigger if exists _500_emit on public.sla_events;
create trigger _500_emit after insert on public.sla_events
  for each row execute function private.tg_sla_events_emit();
drop trigger if exists _100_guard on public.sla_events;
create trigger _100_guard before update or delete on public.sla_events
  for each row execute function private.tg_sla_events_guard();
drop trigger if exists _600_tickets on public.messages;
create trigger _600_tickets after insert on public.messages
  for each row when (new.sender_type = 'agent' or (new.sender_type = 'contact' and new.direction = 'inbound'))
  execute function private.tg_messages_tickets();
drop trigger if exists _100_set_updated_at on public.sla_policies;
create trigger _100_set_updated_at before update on public.sla_policies
  for each row execute function private.tg_set_updated_at();
drop trigger if exists _500_changed on public.sla_policies;
create trigger _500_changed after insert or update or delete on public.sla_policies
  for each row execute function private.tg_sla_policies_changed();
drop trigger if exists _900_audit on public.sla_policies;
create trigger _900_audit after insert or update or delete on public.sla_policies
  for each row execute function private.tg_audit();
drop trigger if exists _100_set_updated_at on public.business_calendars;
create trigger _100_set_updated_at before update on public.business_calendars
  for each row execute function private.tg_set_updated_at();
drop trigger if exists _500_changed_insert on public.business_calendar_hours;
create trigger _500_changed_insert after insert on public.business_calendar_hours
  referencing new table as changed for each statement execute function private.tg_business_calendar_days_changed();
drop trigger if exists _500_changed_update on public.business_calendar_hours;
create trigger _500_changed_update after update on public.business_calendar_hours
  referencing new table as changed for each statement execute function private.tg_business_calendar_days_changed();
drop trigger if exists _500_changed_delete on public.business_calendar_hours;
create trigger _500_changed_delete after delete on public.business_calendar_hours
  referencing old table as changed for each statement execute function private.tg_business_calendar_days_changed();
drop trigger if exists _500_changed_insert on public.business_calendar_holidays;
create trigger _500_changed_insert after insert on public.business_calendar_holidays
  referencing new table as changed for each statement execute function private.tg_business_calendar_days_changed();
drop trigger if exists _500_changed_update on public.business_calendar_holidays;
create trigger _500_changed_update after update on public.business_calendar_holidays
  referencing new table as changed for each statement execute function private.tg_business_calendar_days_changed();
drop trigger if exists _500_changed_delete on public.business_calendar_holidays;
create trigger _500_changed_delete after delete on public.business_calendar_holidays
  referencing old table as changed for each statement execute function private.tg_business_calendar_days_changed();
drop trigger if exists _500_changed on public.business_calendars;
create trigger _500_changed after update of timezone on public.business_calendars
  for each row when (old.timezone is distinct from new.timezone)
  execute function private.tg_business_calendars_changed();
drop trigger if exists _200_check_timezone on public.business_calendars;
create trigger _200_check_timezone before insert or update of timezone on public.business_calendars
  for each row execute function private.tg_tenants_check_timezone();
create or replace function private.tg_ticket_notes_emit()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.emit(new.tenant_id, 'ticket.note_added', 'tickets', new.ticket_id,
    jsonb_build_object('ticket_id', new.ticket_id, 'note_id', new.id, 'author_id', new.author_id));
  return null;
end;
$$;
drop trigger if exists _500_note_emit on public.ticket_notes;
create trigger _500_note_emit after insert on public.ticket_notes
  for each row execute function private.tg_ticket_notes_emit();

/**
 * ----
 * Section - Event types of this module
 * ----
 */
insert into public.event_types (type, module, description) values
  ('ticket.created', 'support', 'A ticket was opened (by an agent, the bot, a flow or an automation): payload has its protocol, conversation, contact, priority, category and SLA due time.'),
  ('ticket.status_changed', 'support', 'A ticket moved between open, in_progress, waiting_client, resolved and closed (previous_status says from where).'),
  ('ticket.reopened', 'support', 'A resolved or closed ticket was reopened.'),
  ('ticket.assigned', 'support', 'A ticket got a new assignee or team.'),
  ('ticket.note_added', 'support', 'An internal note was added to a ticket.'),
  ('ticket.sla_warning', 'support', 'A share of an SLA target of a ticket elapsed (the policy''s warning_at_pct): metric first_response, next_response or resolution.'),
  ('ticket.sla_breached', 'support', 'A ticket passed an SLA deadline (metric, due_at).'),
  ('ticket.sla_met', 'support', 'A ticket met an SLA target (late: true when it was met after its deadline).'),
  ('sla_policy.changed', 'support', 'An SLA policy was created, changed or deleted (old and new rows); open tickets were re-evaluated.')
on conflict (type) do update set module = excluded.module, description = excluded.description;

/**
 * ----
 * Section - Jobs
 * ----
 */

-- Seed 000 sla_breach_alert: every ticket whose next SLA moment has come (an index range scan
-- of tickets_sla_check_idx), its warnings and breaches recorded once, then moved to its next
-- moment. Tickets a transaction holds are skipped (it is recomputing them).
create or replace function private.job_sla_breach_alert(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_ticket public.tickets;
  v_target record;
  v_count integer := 0;
begin
  for v_ticket in
    select * from public.tickets t
     where t.sla_next_check_at <= as_of
     order by t.sla_next_check_at
     limit 10000
     for update skip locked
  loop
    for v_target in
      select * from (values
        ('first_response', 0, v_ticket.first_response_warn_at, v_ticket.first_response_due_at),
        ('next_response', v_ticket.next_response_cycle, v_ticket.next_response_warn_at, v_ticket.next_response_due_at),
        ('resolution', 0, v_ticket.resolution_warn_at, v_ticket.resolution_due_at)) x(metric, cycle, warn_at, due_at)
       where x.due_at is not null
    loop
      if v_target.due_at <= as_of then
        v_count := v_count + private.record_sla_event(v_ticket, v_target.metric, 'breach', v_target.cycle,
                                                      v_target.due_at, as_of)::integer;
      elsif v_target.warn_at <= as_of then
        v_count := v_count + private.record_sla_event(v_ticket, v_target.metric, 'warning', v_target.cycle,
                                                      v_target.due_at, as_of)::integer;
      end if;
    end loop;
    update public.tickets t
       set sla_next_check_at = (select min(m) from unnest(array[
             v_ticket.first_response_warn_at, v_ticket.first_response_due_at, v_ticket.next_response_warn_at,
             v_ticket.next_response_due_at, v_ticket.resolution_warn_at, v_ticket.resolution_due_at]) m
           where m > as_of)
     where t.id = v_ticket.id;
  end loop;
  return v_count;
end;
$$;

insert into public.job_schedules (name, description, cron, function_name) values
  ('sla_breach_alert', 'Records SLA warnings and breaches of tickets whose next SLA moment has come, with alerts (seed 000 sla_breach_alert).',
   '* * * * *', 'private.job_sla_breach_alert')
on conflict (name) do update set description = excluded.description, function_name = excluded.function_name,
  runner = excluded.runner;

/**
 * ----
 * Section - Realtime: the desk streams tickets and notes to frontends (RLS applies)
 * ----
 */
do $$
declare
  v_table text;
begin
  if exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    foreach v_table in array array['tickets', 'ticket_notes'] loop
      if not exists (select 1 from pg_publication_tables
                      where pubname = 'supabase_realtime' and schemaname = 'public' and tablename = v_table) then
        execute format('alter publication supabase_realtime add table public.%I', v_table);
      end if;
    end loop;
  end if;
end
$$;

/**
 * ----
 * Section - RLS policies
 * ----
 */

-- calendars, their hours and holidays, SLA policies: members read, managers write
do $$
declare
  v_table text;
begin
  foreach v_table in array array['business_calendars', 'business_calendar_hours', 'business_calendar_holidays',
                                 'sla_policies'] loop
    perform private.members_read_managers_write(v_table);
  end loop;
end
$$;

-- tickets: members read; agents work them (restricted tenants: assigned to them or their
-- teams); created only through create_ticket
drop policy if exists "Tickets are visible to members" on public.tickets;
create policy "Tickets are visible to members" on public.tickets
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Tickets are worked by agents" on public.tickets;
create policy "Tickets are worked by agents" on public.tickets
  for update to authenticated
  using (tenant_id in (select private.my_unrestricted_tenant_ids())
         or (tenant_id in (select private.my_tenant_ids_with_role('agent'))
             and (assignee_id in (select private.my_member_ids()) or team_id in (select private.my_team_ids()))))
  with check (tenant_id in (select private.my_unrestricted_tenant_ids())
         or (tenant_id in (select private.my_tenant_ids_with_role('agent'))
             and (assignee_id in (select private.my_member_ids()) or team_id in (select private.my_team_ids()))));

-- notes and attachments: members read; agents add them as themselves
drop policy if exists "Ticket notes are visible to members" on public.ticket_notes;
create policy "Ticket notes are visible to members" on public.ticket_notes
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Ticket notes are written by agents as themselves" on public.ticket_notes;
create policy "Ticket notes are written by agents as themselves" on public.ticket_notes
  for insert to authenticated
  with check (tenant_id in (select private.my_tenant_ids_with_role('agent')) and author_id = (select auth.uid()));
drop policy if exists "Ticket attachments are visible to members" on public.ticket_attachments;
create policy "Ticket attachments are visible to members" on public.ticket_attachments
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Ticket attachments are added by agents as themselves" on public.ticket_attachments;
create policy "Ticket attachments are added by agents as themselves" on public.ticket_attachments
  for insert to authenticated
  with check (tenant_id in (select private.my_tenant_ids_with_role('agent')) and uploaded_by = (select auth.uid()));
drop policy if exists "Ticket attachments are removed by agents" on public.ticket_attachments;
create policy "Ticket attachments are removed by agents" on public.ticket_attachments
  for delete to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('agent')));

drop policy if exists "SLA events are visible to members" on public.sla_events;
create policy "SLA events are visible to members" on public.sla_events
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));

/**
 * ----
 * Section - Public RPCs (SECURITY DEFINER in `private`; `public` holds SECURITY INVOKER
 * wrappers that PostgREST exposes)
 * ----
 */

-- Opens a ticket on a conversation with its protocol from the tenant's counter row of the
-- day (locked until the transaction ends). No permission check: create_ticket and
-- automation rules check.
create or replace function private.open_ticket(
  conv public.conversations, title text, description text, priority text, category text, team_id uuid,
  assignee_id uuid, source text
) returns public.tickets
language plpgsql
set search_path = ''
as $$
declare
  v_day date;
  v_number integer;
  v_ticket public.tickets;
begin
  select (now() at time zone t.timezone)::date into v_day from public.tenants t where t.id = conv.tenant_id;
  insert into public.ticket_protocol_counters as k (tenant_id, day, last_number)
  values (conv.tenant_id, v_day, 1)
  on conflict (tenant_id, day) do update set last_number = k.last_number + 1
  returning k.last_number into v_number;
  insert into public.tickets (tenant_id, protocol, conversation_id, title, description, priority, category,
                              team_id, assignee_id, source, created_by)
  values (conv.tenant_id, 'BR-' || to_char(v_day, 'YYYYMMDD') || '-' || lpad(v_number::text, 4, '0'),
          conv.id, open_ticket.title, open_ticket.description, coalesce(open_ticket.priority, 'medium'),
          open_ticket.category, coalesce(open_ticket.team_id, conv.team_id),
          coalesce(open_ticket.assignee_id, conv.assignee_id), open_ticket.source, auth.uid())
  returning * into v_ticket;
  return v_ticket;
end;
$$;
comment on function private.open_ticket(public.conversations, text, text, text, text, uuid, uuid, text) is 'Inserts a ticket with the next protocol of the tenant''s day; team and assignee default to the conversation''s. No permission check (create_ticket and automation rules check).';

-- Opens a ticket on a conversation. Agents (and up) on conversations they may work; the
-- service role for the bot, flows and automation rules (source says which).
create or replace function private.create_ticket(
  conversation_id uuid, title text, description text default null, priority text default 'medium',
  category text default null, team_id uuid default null, assignee_id uuid default null, source text default 'agent'
) returns public.tickets
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_conv public.conversations;
begin
  if create_ticket.conversation_id is null then
    raise exception 'a ticket is always opened from a conversation: conversation_id is required'
      using errcode = '23502';
  end if;
  select * into v_conv from public.conversations c where c.id = create_ticket.conversation_id;
  if v_conv.id is null or (private.request_role() = 'authenticated' and not private.is_member(v_conv.tenant_id)) then
    raise exception 'conversation not found' using errcode = 'P0002';
  end if;
  if private.request_role() = 'authenticated' then
    perform private.require_role(v_conv.tenant_id, 'agent');
    if not private.can_work_conversation(v_conv.tenant_id, v_conv.assignee_id, v_conv.team_id) then
      raise exception 'this conversation is assigned to someone else: ask a manager to reassign it'
        using errcode = '42501';
    end if;
    if create_ticket.source <> 'agent' then
      raise exception 'tickets opened by members have source agent' using errcode = '22023';
    end if;
  end if;
  return private.open_ticket(v_conv, create_ticket.title, create_ticket.description, create_ticket.priority,
                             create_ticket.category, create_ticket.team_id, create_ticket.assignee_id,
                             create_ticket.source);
end;
$$;

create or replace function public.create_ticket(
  conversation_id uuid, title text, description text default null, priority text default 'medium',
  category text default null, team_id uuid default null, assignee_id uuid default null, source text default 'agent'
) returns public.tickets
language sql
security invoker
set search_path = ''
as $$
  select * from private.create_ticket(create_ticket.conversation_id, create_ticket.title, create_ticket.description,
                                      create_ticket.priority, create_ticket.category, create_ticket.team_id,
                                      create_ticket.assignee_id, create_ticket.source)
$$;
comment on function public.create_ticket(uuid, text, text, text, text, uuid, uuid, text) is 'Open a ticket on a conversation; returns it with its protocol (BR-YYYYMMDD-NNNN) and SLA deadlines. Agents: on conversations they may work, source agent. Service role (bot, flows, automation rules): source bot / flow / automation / api. Team and assignee default to the conversation''s; priority low / medium / high / critical; category chooses the SLA policy with the priority.';

-- The customer asks about a ticket by protocol (the bot): the answer in pt-BR, only about
-- tickets of the conversation's own contact, so a guessed protocol tells a stranger nothing.
create or replace function public.ticket_status_for_customer(conversation_id uuid, protocol text)
returns text
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_conv public.conversations;
  v_ticket public.tickets;
begin
  select * into v_conv from public.conversations c where c.id = ticket_status_for_customer.conversation_id;
  select * into v_ticket from public.tickets t
   where t.tenant_id = v_conv.tenant_id and t.contact_id = v_conv.contact_id
     and t.protocol = upper(btrim(ticket_status_for_customer.protocol));
  if v_ticket.id is null then
    return 'Não encontrei nenhum chamado seu com o protocolo ' || upper(btrim(ticket_status_for_customer.protocol))
      || '. Confira o número, por favor.';
  end if;
  return 'Chamado ' || v_ticket.protocol || ' (' || left(v_ticket.title, 120) || '): '
    || case v_ticket.status
         when 'open' then 'aberto, aguardando atendimento.'
         when 'in_progress' then 'em atendimento pela nossa equipe.'
         when 'waiting_client' then 'aguardando uma resposta sua.'
         when 'resolved' then 'resolvido. Se algo ainda não estiver certo, é só responder aqui.'
         else 'encerrado.' end;
end;
$$;
comment on function public.ticket_status_for_customer(uuid, text) is 'Worker (bot): the status of a ticket of the conversation''s contact by protocol, as a pt-BR sentence for the customer.';

/**
 * ----
 * Section - Grants
 * ----
 */
grant select, insert (tenant_id, name, timezone), update (name, timezone), delete
  on public.business_calendars to authenticated;
grant select, insert (tenant_id, calendar_id, weekday, starts_at, ends_at), update (weekday, starts_at, ends_at), delete
  on public.business_calendar_hours to authenticated;
grant select, insert (tenant_id, calendar_id, day, name), update (day, name), delete
  on public.business_calendar_holidays to authenticated;
grant select,
  insert (tenant_id, name, priority, category, calendar_id, first_response_minutes, next_response_minutes,
    resolution_minutes, warning_at_pct, is_active),
  update (name, priority, category, calendar_id, first_response_minutes, next_response_minutes, resolution_minutes,
    warning_at_pct, is_active),
  delete on public.sla_policies to authenticated;
-- what agents decide; protocol, clocks and deadlines are the system's
grant select, update (title, description, status, priority, category, team_id, assignee_id) on public.tickets
  to authenticated;
grant select, insert (tenant_id, ticket_id, body) on public.ticket_notes to authenticated;
grant select, insert (tenant_id, ticket_id, storage_path, file_name, mime_type, size_bytes), delete
  on public.ticket_attachments to authenticated;
grant select on public.sla_events to authenticated;
grant select, insert, update, delete on public.business_calendars, public.business_calendar_hours,
  public.business_calendar_holidays, public.sla_policies, public.ticket_protocol_counters, public.tickets,
  public.ticket_notes, public.ticket_attachments to service_role;
grant select, insert on public.sla_events to service_role;

revoke execute on all functions in schema private from public, anon;
grant execute on function private.create_ticket(uuid, text, text, text, text, uuid, uuid, text)
  to authenticated, service_role;
revoke execute on function public.create_ticket(uuid, text, text, text, text, uuid, uuid, text),
  public.ticket_status_for_customer(uuid, text) from public, anon;
grant execute on function public.create_ticket(uuid, text, text, text, text, uuid, uuid, text)
  to authenticated, service_role;
grant execute on function public.ticket_status_for_customer(uuid, text) to service_role;
