/**
 * Zapbase module 3d: inbox queues.
 * The agent's day (seed 001 departments, user_departments, agent greetings, quick replies,
 * CSAT): presence with heartbeats, one queue per team ordered by priority then waiting time,
 * assignment with capacity, the conversation lifecycle, internal notes, contact tags and
 * attribute definitions, the CSAT survey, plan limits and per-conversation metrics.
 *
 * Assignment is ONE function, private.assign_queue(team): it holds the team row (SKIP LOCKED:
 * another caller is draining it already), takes the head of the queue (urgent > high > normal
 * > low, then queued_at, then id: FIFO within a level; a head another transaction holds stops
 * the drain rather than being jumped, so the assigner never waits for a lock) and gives it
 * to an online agent of the team with room (sticky to the contact's previous agent, then the
 * team's strategy), the agent's row locked SKIP LOCKED. Load counters (agent_presence.
 * open_conversations) are kept by a trigger on conversations, in the same transaction, and
 * the same trigger refuses any assignment, by any path, past the agent's capacity.
 * It runs at commit of whatever puts a conversation in a queue or frees an agent (deferred
 * triggers: handoff, transfer, return, resolve, close, an agent coming online or getting more
 * capacity) and every minute from the scheduler (job inbox_assign), which also catches what
 * a busy team lock made a trigger skip.
 *
 * Who may do what:
 *   every member  reads presence, metrics, tags of contacts, attribute definitions
 *   agent         their own presence; assigns to themselves, pulls from queues they may pull
 *                 from, transfers, resolves, reopens, snoozes, closes and notes conversations
 *                 they may work; sends quick replies; tags contacts
 *   manager       assigns to anyone; attribute definitions
 *   service role  the jobs' work (presence expiry, returns, snooze wake-ups)
 */

/**
 * ----
 * Section - Tables
 * ----
 */

-- Presence and load of each member (one row, made with the member): what the team sees
-- live (Realtime) and what assignment locks.
create table if not exists public.agent_presence (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  member_id uuid not null,
  status text not null default 'offline' check (status in ('online', 'busy', 'away', 'offline')),
  expires_at timestamptz,
  last_heartbeat_at timestamptz,
  offline_since timestamptz default now(),
  resume_status text check (resume_status in ('online', 'busy', 'away')),
  open_conversations integer not null default 0 check (open_conversations >= 0),
  last_assigned_at timestamptz,
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, member_id),
  foreign key (tenant_id, member_id) references public.members (tenant_id, id) on delete cascade
);
alter table public.agent_presence enable row level security;
create index if not exists agent_presence_expiry_idx on public.agent_presence (expires_at) where status <> 'offline';
create index if not exists agent_presence_offline_idx on public.agent_presence (offline_since)
  where status = 'offline' and open_conversations > 0;
comment on table public.agent_presence is 'A member''s presence (set_presence, heartbeat) and load; one row per member, written only by the inbox RPCs, triggers and jobs.';
comment on column public.agent_presence.status is 'online (receives conversations), busy / away (keeps theirs, receives none), offline. Online lapses to offline at expires_at without a heartbeat.';
comment on column public.agent_presence.expires_at is 'Online, busy or away until then: the last heartbeat plus the tenant''s presence_timeout.';
comment on column public.agent_presence.offline_since is 'Offline since then; past the tenant''s offline_grace their open conversations return to the queue.';
comment on column public.agent_presence.resume_status is 'The status a silence expired: the next heartbeat restores it.';
comment on column public.agent_presence.open_conversations is 'Live conversations (open, waiting, pending) assigned to the member, kept by a trigger on conversations; never above members.max_concurrent_conversations through assignment.';
comment on column public.agent_presence.last_assigned_at is 'Last time a conversation was given to the member: round robin picks the oldest.';

-- Per-conversation service facts, kept by triggers; the analytics rollups read them.
create table if not exists public.conversation_metrics (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  conversation_id uuid not null,
  team_id uuid,
  needs_human_at timestamptz,
  first_response_at timestamptz,
  first_response_seconds integer,
  response_count integer not null default 0,
  response_seconds_total bigint not null default 0,
  avg_response_seconds numeric(12,2) generated always as
    (case when response_count > 0 then round(response_seconds_total::numeric / response_count, 2) end) stored,
  awaiting_reply_since timestamptz,
  queue_entries integer not null default 0,
  queue_wait_seconds bigint not null default 0,
  assignments integer not null default 0,
  transfers integer not null default 0,
  reopens integer not null default 0,
  resolution_seconds integer,
  away_message_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, conversation_id),
  foreign key (tenant_id, conversation_id) references public.conversations (tenant_id, id) on delete cascade,
  foreign key (tenant_id, team_id) references public.teams (tenant_id, id) on delete set null (team_id)
);
alter table public.conversation_metrics enable row level security;
create index if not exists conversation_metrics_team_idx on public.conversation_metrics (tenant_id, team_id);
create index if not exists conversation_metrics_awaiting_idx on public.conversation_metrics (awaiting_reply_since)
  where awaiting_reply_since is not null;
comment on table public.conversation_metrics is 'Service facts of one conversation with humans (first response, response times, queue wait, resolution), one row per conversation that met the human side, kept by triggers: analytics aggregates them, nothing recomputes them.';
comment on column public.conversation_metrics.team_id is 'The team the conversation was last queued or assigned in.';
comment on column public.conversation_metrics.needs_human_at is 'When the conversation first needed a human: handoff, or its first customer message when it was born in human mode.';
comment on column public.conversation_metrics.first_response_at is 'First agent message after needs_human_at.';
comment on column public.conversation_metrics.first_response_seconds is 'first_response_at - needs_human_at, in seconds (first response time).';
comment on column public.conversation_metrics.response_count is 'Agent replies that answered a waiting customer (the first agent message after one or more customer messages in human mode).';
comment on column public.conversation_metrics.response_seconds_total is 'Sum over those replies of (reply time - the first unanswered customer message), in seconds.';
comment on column public.conversation_metrics.avg_response_seconds is 'response_seconds_total / response_count (average response time), null before the first reply.';
comment on column public.conversation_metrics.awaiting_reply_since is 'The first customer message no agent has answered yet (human mode); the return timer runs from it.';
comment on column public.conversation_metrics.queue_entries is 'Times the conversation entered a team queue (handoff, transfer to a team, return).';
comment on column public.conversation_metrics.queue_wait_seconds is 'Total seconds spent waiting in queues (queued_at to assignment, summed over entries).';
comment on column public.conversation_metrics.assignments is 'Times it was given to an agent (queue, pull, manual assignment or transfer).';
comment on column public.conversation_metrics.transfers is 'Transfers to another agent or team.';
comment on column public.conversation_metrics.reopens is 'Times a resolved or closed conversation was reopened.';
comment on column public.conversation_metrics.resolution_seconds is 'Seconds from the first message (or creation) to the last resolve (resolution time); null while unresolved.';
comment on column public.conversation_metrics.away_message_at is 'When the customer got the overflow away message (once per conversation).';

-- Contact tags: a relation to tags (seed 001 contact_tags); contacts.tags mirrors the names.
create table if not exists public.contact_tags (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  contact_id uuid not null,
  tag_id uuid not null,
  added_by uuid references auth.users (id) on delete set null default auth.uid(),
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (contact_id, tag_id),
  foreign key (tenant_id, contact_id) references public.contacts (tenant_id, id) on delete cascade,
  foreign key (tenant_id, tag_id) references public.tags (tenant_id, id) on delete cascade
);
alter table public.contact_tags enable row level security;
create index if not exists contact_tags_tenant_contact_idx on public.contact_tags (tenant_id, contact_id);
create index if not exists contact_tags_tenant_tag_idx on public.contact_tags (tenant_id, tag_id);
create index if not exists contact_tags_added_by_idx on public.contact_tags (added_by);
comment on table public.contact_tags is 'Which tags a contact carries: the truth behind contacts.tags (a read-only mirror of the names, for segmentation filters).';

-- Custom attribute definitions (seed 001 custom fields): what contacts.attributes may hold.
create table if not exists public.contact_attribute_definitions (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  key text not null check (key ~ '^[a-z][a-z0-9_]{0,39}$'),
  label text not null check (length(label) between 1 and 80),
  type text not null check (type in ('text', 'number', 'boolean', 'date', 'list')),
  options text[] not null default '{}' check (cardinality(options) <= 100),
  description text check (length(description) <= 500),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, key),
  check (type = 'list' or options = '{}'),
  check (type <> 'list' or cardinality(options) > 0)
);
alter table public.contact_attribute_definitions enable row level security;
comment on table public.contact_attribute_definitions is 'A tenant''s custom contact attributes: contacts.attributes -> key must have this type (list: one of options). Keys without a definition stay free.';
comment on column public.contact_attribute_definitions.type is 'text, number, boolean, date (YYYY-MM-DD) or list (one of options).';

/**
 * ----
 * Section - Events
 * ----
 */
insert into public.event_types (type, module, description) values
  ('agent.presence_changed', 'inbox', 'An agent went online, busy, away or offline (set_presence, a heartbeat, or silence past the presence timeout).'),
  ('conversation.queued', 'inbox', 'A conversation entered a team''s queue (reason: handoff, transfer, returned, reopened); payload has team, priority and queued_at.'),
  ('conversation.overflowed', 'inbox', 'A conversation met a full queue: moved to the overflow team, or the customer got the away message.'),
  ('conversation.transferred', 'inbox', 'A conversation went to another agent or team, with the note that explains why.'),
  ('conversation.returned', 'inbox', 'A conversation went back to the queue: its agent was offline past the grace period (agent_offline), or a customer waited past the team''s return timer (no_reply).'),
  ('conversation.reopened', 'inbox', 'A resolved or closed conversation was reopened by an agent.'),
  ('conversation.snoozed', 'inbox', 'An agent snoozed a conversation until a time.'),
  ('conversation.unsnoozed', 'inbox', 'A snoozed conversation woke up (its time came, or the customer wrote).'),
  ('conversation.note_added', 'inbox', 'An agent wrote an internal note (never sent to the customer).'),
  ('conversation.csat_requested', 'inbox', 'The 1-5 satisfaction survey was sent after resolve.'),
  ('conversation.csat_received', 'inbox', 'The customer answered the satisfaction survey: payload.csat is 1-5.')
on conflict (type) do update set module = excluded.module, description = excluded.description;

/**
 * ----
 * Section - Private helpers
 * ----
 */

-- Queue order of a priority: urgent 0, high 1, normal 2, low 3.
create or replace function private.queue_rank(priority text)
returns smallint
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case queue_rank.priority when 'urgent' then 0 when 'high' then 1 when 'normal' then 2 else 3 end::smallint
$$;
comment on function private.queue_rank(text) is 'Queue order of a conversation priority (urgent 0 .. low 3).';

-- The queue of a team, in the order it is served; the assigner reads its head.
create index if not exists conversations_queue_idx
  on public.conversations (tenant_id, team_id, (private.queue_rank(priority)), queued_at, id)
  where mode = 'human' and assignee_id is null and status in ('open', 'waiting', 'pending');

create or replace function private.member_name(tenant_id uuid, member_id uuid)
returns text
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(m.display_name, u.raw_user_meta_data ->> 'full_name', split_part(u.email, '@', 1), 'agente')
    from public.members m left join auth.users u on u.id = m.user_id
   where m.tenant_id = member_name.tenant_id and m.id = member_name.member_id
$$;

-- The caller's member row in a tenant (null for the service role and jobs).
create or replace function private.my_member(tenant_id uuid)
returns public.members
language sql
stable
security definer
set search_path = ''
as $$
  select m.* from public.members m
   where m.tenant_id = my_member.tenant_id and m.user_id = auth.uid() and m.status = 'active'
$$;

-- One line of the timeline agents see: a system line (assigned, transferred, resolved...) or
-- an agent's internal note. Direction internal: never sent, never in the AI memory.
create or replace function private.timeline(conv public.conversations, content text, kind text default 'system',
                                            member_id uuid default null, payload jsonb default '{}'::jsonb)
returns public.messages
language sql
security definer
set search_path = ''
as $$
  insert into public.messages (tenant_id, conversation_id, contact_id, whatsapp_number_id, direction, sender_type,
                               sender_member_id, type, content, content_masked, payload, status, created_at)
  values (conv.tenant_id, conv.id, conv.contact_id, conv.whatsapp_number_id, 'internal',
          case when timeline.kind = 'note' then 'agent' else 'system' end, timeline.member_id, timeline.kind,
          left(timeline.content, 4096), private.mask_pii(left(timeline.content, 4096)), timeline.payload, 'processed',
          clock_timestamp())
  returning *
$$;

-- The metrics row of a conversation (made on first need).
create or replace function private.metrics_row(tenant_id uuid, conversation_id uuid)
returns void
language sql
security definer
set search_path = ''
as $$
  insert into public.conversation_metrics (tenant_id, conversation_id)
  values (metrics_row.tenant_id, metrics_row.conversation_id)
  on conflict (tenant_id, conversation_id) do nothing
$$;

-- A greeting with its placeholders filled (seed 001): {{agent_name}}, {{agent_department}},
-- {{contact_name}}, {{time}} and {{day}} in the tenant's time zone.
create or replace function private.render_greeting(template text, conv public.conversations, member_id uuid)
returns text
language sql
stable
security definer
set search_path = ''
as $$
  select replace(replace(replace(replace(replace(render_greeting.template,
           '{{agent_name}}', coalesce(private.member_name(conv.tenant_id, render_greeting.member_id), '')),
           '{{agent_department}}', coalesce((select t.name from public.teams t
                                              where t.tenant_id = conv.tenant_id and t.id = conv.team_id), '')),
           '{{contact_name}}', coalesce((select coalesce(c.name, c.profile_name) from public.contacts c
                                          where c.tenant_id = conv.tenant_id and c.id = conv.contact_id), '')),
           '{{time}}', to_char(now() at time zone tz.timezone, 'HH24:MI')),
           '{{day}}', to_char(now() at time zone tz.timezone, 'DD/MM/YYYY'))
    from (select t.timezone from public.tenants t where t.id = conv.tenant_id) tz
$$;

-- Sends something to the customer when WhatsApp allows it now (open window, reachable
-- contact); returns the message, or null when it may not be sent (nothing is raised: a
-- greeting or survey never blocks the change that triggered it).
create or replace function private.try_send(conv public.conversations, message jsonb, sender_type text,
                                            member_id uuid default null)
returns public.messages
language plpgsql
security definer
set search_path = ''
as $$
begin
  if conv.window_expires_at is null or conv.window_expires_at <= now() then
    return null;
  end if;
  return private.queue_outbound(conv, try_send.message, try_send.sender_type, try_send.member_id);
exception when sqlstate '55000' or sqlstate '22023' then
  return null;
end;
$$;

-- Gives a conversation to an agent: the assignment itself (the capacity trigger guards it),
-- round robin's clock, the metrics, the timeline line and the agent's greeting (sent as the
-- system on the agent's behalf: automatic, so not the agent's first response).
create or replace function private.give(conv public.conversations, member_id uuid, how text,
                                        note text default null)
returns public.conversations
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_conv public.conversations;
  v_greeting public.agent_greetings;
  v_name text := private.member_name(conv.tenant_id, give.member_id);
begin
  update public.conversations c
     set assignee_id = give.member_id, mode = 'human', snoozed_until = null,
         status = case when c.status = 'pending' then 'open' else c.status end
   where c.id = conv.id
  returning * into v_conv;
  update public.agent_presence p set last_assigned_at = clock_timestamp()
   where p.tenant_id = conv.tenant_id and p.member_id = give.member_id;
  perform private.metrics_row(conv.tenant_id, conv.id);
  update public.conversation_metrics x
     set assignments = x.assignments + 1, team_id = coalesce(v_conv.team_id, x.team_id),
         queue_wait_seconds = x.queue_wait_seconds + case when conv.assignee_id is null and conv.queued_at is not null
           then greatest(extract(epoch from now() - conv.queued_at), 0)::bigint else 0 end
   where x.tenant_id = conv.tenant_id and x.conversation_id = conv.id;
  perform private.timeline(v_conv, case give.how
      when 'queue' then 'Conversa atribuída a ' || v_name || ' pela fila'
      when 'pull' then v_name || ' puxou a conversa da fila'
      when 'transfer' then 'Conversa transferida para ' || v_name
      else 'Conversa atribuída a ' || v_name end
    || coalesce(': ' || nullif(btrim(give.note), ''), ''), 'system', null,
    jsonb_build_object('action', 'assigned', 'how', give.how, 'assignee_id', give.member_id));
  select * into v_greeting from public.agent_greetings g
   where g.tenant_id = conv.tenant_id and g.member_id = give.member_id and g.is_active and g.auto_send;
  if v_greeting.id is not null and conv.assignee_id is distinct from give.member_id then
    perform private.try_send(v_conv, jsonb_build_object('type', 'text', 'text', jsonb_build_object(
      'body', private.render_greeting(v_greeting.message_template, v_conv, give.member_id))), 'system', give.member_id);
  end if;
  select * into v_conv from public.conversations c where c.id = conv.id;
  return v_conv;
end;
$$;

-- THE assigner: up to max_count conversations of a team's queue, head first, to online
-- agents with room. skip_busy: another transaction holding the team is draining it, leave it
-- (triggers and the scheduler); otherwise wait for it (an agent pulling keeps FIFO too).
-- Returns how many it assigned.
create or replace function private.assign_queue(team_id uuid, max_count integer default 100,
                                                skip_busy boolean default true)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_team public.teams;
  v_conv public.conversations;
  v_sticky uuid;
  v_agent uuid;
  v_done integer := 0;
begin
  if skip_busy then
    select * into v_team from public.teams t where t.id = assign_queue.team_id and t.is_active
      for update skip locked;
  else
    select * into v_team from public.teams t where t.id = assign_queue.team_id and t.is_active for update;
  end if;
  if v_team.id is null or v_team.assignment_strategy = 'manual' then
    return 0;
  end if;
  while v_done < max_count loop
    select * into v_conv from public.conversations c
     where c.tenant_id = v_team.tenant_id and c.team_id = v_team.id and c.mode = 'human'
       and c.assignee_id is null and c.status in ('open', 'waiting', 'pending')
     order by private.queue_rank(c.priority), c.queued_at, c.id
     limit 1;
    exit when v_conv.id is null;
    -- the head is never jumped: when another transaction holds it, the drain stops here (that
    -- change drains at its commit, or the scheduler does); when it changed, look again
    select * into v_conv from public.conversations c where c.id = v_conv.id for update skip locked;
    exit when v_conv.id is null;
    continue when v_conv.assignee_id is not null or v_conv.mode <> 'human' or v_conv.team_id is distinct from v_team.id
                  or v_conv.status not in ('open', 'waiting', 'pending');
    -- sticky: the agent of the contact's previous conversation
    select c.assignee_id into v_sticky from public.conversations c
     where c.tenant_id = v_conv.tenant_id and c.contact_id = v_conv.contact_id and c.id <> v_conv.id
       and c.assignee_id is not null
     order by c.created_at desc limit 1;
    select p.member_id into v_agent
      from public.team_members tm
      join public.members m on m.tenant_id = tm.tenant_id and m.id = tm.member_id
      join public.agent_presence p on p.tenant_id = tm.tenant_id and p.member_id = tm.member_id
     where tm.tenant_id = v_team.tenant_id and tm.team_id = v_team.id
       and m.status = 'active' and m.role >= 'agent'
       and p.status = 'online' and p.expires_at > now()
       and p.open_conversations < m.max_concurrent_conversations
       and (tm.max_conversations is null or tm.max_conversations > (
             select count(*) from public.conversations x
              where x.tenant_id = tm.tenant_id and x.assignee_id = tm.member_id and x.team_id = tm.team_id
                and x.status in ('open', 'waiting', 'pending')))
     order by p.member_id is not distinct from v_sticky desc,
              case when v_team.assignment_strategy = 'priority' then -tm.priority else 0 end,
              case when v_team.assignment_strategy = 'load_balance' then p.open_conversations else 0 end,
              p.last_assigned_at nulls first, p.member_id
     limit 1
     for update of p skip locked;
    exit when v_agent is null;  -- nobody free: the head waits, and so does everyone behind it
    perform private.give(v_conv, v_agent, 'queue');
    v_done := v_done + 1;
    v_conv := null;
    v_agent := null;
  end loop;
  return v_done;
end;
$$;
comment on function private.assign_queue(uuid, integer, boolean) is 'The one assigner: head of the team''s queue (priority, then queued_at) to an online agent with room (sticky to the contact''s previous agent, then the team''s strategy); team and agent rows locked SKIP LOCKED.';

-- Drains every queue the member serves (after they came online or got room), in team order.
create or replace function private.drain_member(tenant_id uuid, member_id uuid)
returns integer
language sql
security definer
set search_path = ''
as $$
  select coalesce(sum(private.assign_queue(tm.team_id)), 0)::integer
    from (select tm.team_id from public.team_members tm
           where tm.tenant_id = drain_member.tenant_id and tm.member_id = drain_member.member_id
           order by tm.team_id) tm
$$;

-- Puts a conversation in a team's queue (handoff, transfer, return, reopen): unassigned,
-- pending, queued_at as given (the customer's waiting start for returns), an event and a
-- timeline line. A full queue overflows to its overflow team (one hop), or, without one, the
-- conversation stays queued and the customer gets the away message once. The assigner runs
-- at commit.
create or replace function private.enqueue(conv public.conversations, team_id uuid, reason text,
                                           queued_at timestamptz default null, note text default null)
returns public.conversations
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_team public.teams;
  v_conv public.conversations;
  v_waiting integer;
  v_full boolean := false;
begin
  select * into v_team from public.teams t
   where t.tenant_id = conv.tenant_id
     and t.id = coalesce(enqueue.team_id, conv.team_id,
       (select x.id from public.teams x where x.tenant_id = conv.tenant_id and x.is_active
         order by x.kind = 'support' desc, x.created_at limit 1));
  if v_team.max_queue_size is not null then
    select count(*) into v_waiting from public.conversations c
     where c.tenant_id = conv.tenant_id and c.team_id = v_team.id and c.mode = 'human'
       and c.assignee_id is null and c.status in ('open', 'waiting', 'pending') and c.id <> conv.id;
    v_full := v_waiting >= v_team.max_queue_size;
    if v_full and v_team.overflow_team_id is not null then
      v_full := false;
      perform private.emit(conv.tenant_id, 'conversation.overflowed', 'conversations', conv.id,
        jsonb_build_object('conversation_id', conv.id, 'team_id', v_team.id, 'overflow_team_id', v_team.overflow_team_id,
                           'queue_size', v_waiting));
      select * into v_team from public.teams t where t.tenant_id = conv.tenant_id and t.id = v_team.overflow_team_id;
    end if;
  end if;
  update public.conversations c
     set assignee_id = null, team_id = v_team.id, mode = 'human', snoozed_until = null,
         status = 'pending', queued_at = coalesce(enqueue.queued_at, now())
   where c.id = conv.id
  returning * into v_conv;
  perform private.metrics_row(conv.tenant_id, conv.id);
  update public.conversation_metrics x
     set queue_entries = x.queue_entries + 1, team_id = v_team.id,
         needs_human_at = coalesce(x.needs_human_at, now())
   where x.tenant_id = conv.tenant_id and x.conversation_id = conv.id;
  perform private.emit(conv.tenant_id, 'conversation.queued', 'conversations', conv.id,
    jsonb_build_object('conversation_id', conv.id, 'team_id', v_team.id, 'priority', v_conv.priority,
                       'queued_at', v_conv.queued_at, 'reason', enqueue.reason,
                       'previous_assignee_id', conv.assignee_id));
  perform private.timeline(v_conv, 'Conversa na fila ' || coalesce(v_team.name, '')
    || case enqueue.reason when 'agent_offline' then ' (agente offline)'
                           when 'no_reply' then ' (sem resposta do agente no prazo)' else '' end
    || coalesce(': ' || nullif(btrim(enqueue.note), ''), ''), 'system', null,
    jsonb_build_object('action', 'queued', 'reason', enqueue.reason, 'team_id', v_team.id));
  if v_full and not exists (select 1 from public.conversation_metrics x
                             where x.tenant_id = conv.tenant_id and x.conversation_id = conv.id
                               and x.away_message_at is not null)
     and (private.try_send(v_conv, jsonb_build_object('type', 'text', 'text', jsonb_build_object('body', coalesce(
           v_team.away_message, 'Nossa equipe está com muitos atendimentos agora. Sua conversa está na fila e um '
           || 'atendente vai falar com você assim que possível.'))), 'system')).id is not null then
    update public.conversation_metrics x set away_message_at = now()
     where x.tenant_id = conv.tenant_id and x.conversation_id = conv.id;
    perform private.emit(conv.tenant_id, 'conversation.overflowed', 'conversations', conv.id,
      jsonb_build_object('conversation_id', conv.id, 'team_id', v_team.id, 'away_message', true));
    select * into v_conv from public.conversations c where c.id = conv.id;
  end if;
  return v_conv;
end;
$$;

-- What a conversation the caller wants to change looks like, locked, or a clear error.
create or replace function private.workable_conversation(conversation_id uuid)
returns public.conversations
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_conv public.conversations;
begin
  select * into v_conv from public.conversations c where c.id = workable_conversation.conversation_id for update;
  if v_conv.id is null or (private.request_role() = 'authenticated' and not private.is_member(v_conv.tenant_id)) then
    raise exception 'conversation not found' using errcode = 'P0002';
  end if;
  if private.request_role() = 'authenticated' then
    perform private.require_role(v_conv.tenant_id, 'agent');
    if not private.can_work_conversation(v_conv.tenant_id, v_conv.assignee_id, v_conv.team_id) then
      raise exception 'this conversation is assigned to someone else: ask a manager to reassign it'
        using errcode = '42501';
    end if;
  end if;
  return v_conv;
end;
$$;

/**
 * ----
 * Section - Triggers
 * ----
 */

-- Every member has a presence row (locked by assignment, counted by the load trigger).
create or replace function private.tg_members_presence()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.agent_presence (tenant_id, member_id) values (new.tenant_id, new.id)
  on conflict (tenant_id, member_id) do nothing;
  return null;
end;
$$;

-- Capacity, on every path that gives a live conversation to someone (assigner, RPCs, an
-- agent's reply, a plain PostgREST update): the agent's row is locked, and the agent must be
-- an active agent with room overall and in the team. Through the API, giving it to someone
-- else also needs them online and serving the conversation's team.
create or replace function private.tg_conversations_capacity()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_member public.members;
  v_presence public.agent_presence;
  v_cap integer;
begin
  if new.assignee_id is null or new.status not in ('open', 'waiting', 'pending')
     or (tg_op = 'UPDATE' and new.assignee_id is not distinct from old.assignee_id
         and old.status in ('open', 'waiting', 'pending')) then
    return new;
  end if;
  -- both rows the load trigger will touch, in one order: crossing transfers cannot deadlock
  perform 1 from public.agent_presence p
   where p.tenant_id = new.tenant_id
     and p.member_id in (new.assignee_id, case when tg_op = 'UPDATE' then old.assignee_id end)
   order by p.member_id for update;
  select * into v_presence from public.agent_presence p
   where p.tenant_id = new.tenant_id and p.member_id = new.assignee_id;
  select * into v_member from public.members m where m.tenant_id = new.tenant_id and m.id = new.assignee_id;
  if v_member.id is null or v_member.status <> 'active' or v_member.role < 'agent' then
    raise exception 'conversations go to active agents of the tenant only' using errcode = '22023';
  end if;
  if v_presence.open_conversations >= v_member.max_concurrent_conversations then
    raise exception '% is at capacity (% of % conversations)', private.member_name(new.tenant_id, v_member.id),
      v_presence.open_conversations, v_member.max_concurrent_conversations
      using errcode = '23514', hint = 'Resolve one, raise their max_concurrent_conversations, or choose another agent.';
  end if;
  select tm.max_conversations into v_cap from public.team_members tm
   where tm.tenant_id = new.tenant_id and tm.team_id = new.team_id and tm.member_id = new.assignee_id;
  if v_cap is not null and v_cap <= (select count(*) from public.conversations x
      where x.tenant_id = new.tenant_id and x.assignee_id = new.assignee_id and x.team_id = new.team_id
        and x.status in ('open', 'waiting', 'pending') and x.id <> new.id) then
    raise exception '% is at their capacity in this team (% conversations)',
      private.member_name(new.tenant_id, v_member.id), v_cap using errcode = '23514';
  end if;
  if private.request_role() = 'authenticated' and v_member.user_id is distinct from auth.uid() then
    if new.team_id is not null and not exists (select 1 from public.team_members tm
        where tm.tenant_id = new.tenant_id and tm.team_id = new.team_id and tm.member_id = new.assignee_id) then
      raise exception '% is not in this conversation''s team: transfer it to their team instead',
        private.member_name(new.tenant_id, v_member.id) using errcode = '22023';
    end if;
    if v_presence.status <> 'online' or v_presence.expires_at <= now() then
      raise exception '% is offline: choose an online agent or queue the conversation',
        private.member_name(new.tenant_id, v_member.id) using errcode = '55000';
    end if;
  end if;
  return new;
end;
$$;

-- Load counters: +1 for whoever gets a live conversation, -1 for whoever loses one (status
-- or assignee change, deletion), in the transaction of the change.
create or replace function private.tg_conversations_load()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_old uuid := case when tg_op <> 'INSERT' and old.status in ('open', 'waiting', 'pending') then old.assignee_id end;
  v_new uuid := case when tg_op <> 'DELETE' and new.status in ('open', 'waiting', 'pending') then new.assignee_id end;
  v_tenant uuid := coalesce(new.tenant_id, old.tenant_id);
begin
  if v_old is not distinct from v_new then
    return null;
  end if;
  if v_old is not null then
    update public.agent_presence p set open_conversations = greatest(p.open_conversations - 1, 0)
     where p.tenant_id = v_tenant and p.member_id = v_old;
  end if;
  if v_new is not null then
    update public.agent_presence p set open_conversations = p.open_conversations + 1
     where p.tenant_id = v_tenant and p.member_id = v_new;
  end if;
  if tg_op = 'UPDATE' and new.status = 'resolved' and old.status <> 'resolved' then
    perform private.metrics_row(new.tenant_id, new.id);
    update public.conversation_metrics x
       set resolution_seconds = greatest(extract(epoch from now() - coalesce(new.first_message_at, new.created_at)), 0)
     where x.tenant_id = new.tenant_id and x.conversation_id = new.id;
  end if;
  return null;
end;
$$;

-- At commit (deferred): a conversation that entered a queue gets the assigner; an agent who
-- lost a live conversation frees room, and their queues are drained.
create or replace function private.tg_conversations_assign()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_conv public.conversations;
begin
  if tg_op = 'UPDATE' and old.assignee_id is not null and old.status in ('open', 'waiting', 'pending')
     and (new.assignee_id is distinct from old.assignee_id or new.status not in ('open', 'waiting', 'pending')) then
    perform private.drain_member(old.tenant_id, old.assignee_id);
  end if;
  select * into v_conv from public.conversations c where c.id = new.id;
  if v_conv.assignee_id is not null or v_conv.mode <> 'human' or v_conv.status not in ('open', 'waiting', 'pending') then
    return null;
  end if;
  if v_conv.team_id is null then  -- queued without a team (no bot answered): the tenant's default team
    -- A tenant without an active team: managers assign by hand. Checked before enqueue, whose
    -- update would queue this trigger again at the same commit, for ever.
    if not exists (select 1 from public.teams t where t.tenant_id = v_conv.tenant_id and t.is_active) then
      return null;
    end if;
    v_conv := private.enqueue(v_conv, null, 'handoff', v_conv.queued_at);
  end if;
  perform private.assign_queue(v_conv.team_id);
  return null;
end;
$$;

-- At commit (deferred): an agent who came online, got more room or joined a team drains
-- their queues.
create or replace function private.tg_agent_drain()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_table_name = 'members' then
    perform private.drain_member(new.tenant_id, new.id);
  elsif tg_table_name = 'team_members' then
    perform private.assign_queue(new.team_id);
  else
    perform private.drain_member(new.tenant_id, new.member_id);
  end if;
  return null;
end;
$$;

-- A customer's answer to the survey is not a question for the bot: processed at once.
create or replace function private.tg_messages_csat_answer()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if exists (select 1 from public.conversations c
              where c.id = new.conversation_id and c.csat is null and c.csat_requested_at is not null) then
    new.status := 'processed';
  end if;
  return new;
end;
$$;

-- Messages feed the metrics (customer waiting, agent answering), wake snoozed conversations,
-- and a customer's survey answer becomes the conversation's CSAT: only the customer writes it.
create or replace function private.tg_messages_inbox()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_conv public.conversations;
  v_at timestamptz := least(coalesce(new.wa_timestamp, new.created_at), now());
begin
  select * into v_conv from public.conversations c where c.id = new.conversation_id;
  if new.sender_type = 'contact' and new.interactive_reply_id ~ '^csat:[1-5]$' and v_conv.csat is null
     and v_conv.csat_requested_at is not null then
    update public.conversations c
       set csat = substr(new.interactive_reply_id, 6)::smallint, csat_answered_at = now()
     where c.id = v_conv.id;
    perform private.emit(v_conv.tenant_id, 'conversation.csat_received', 'conversations', v_conv.id,
      jsonb_build_object('conversation_id', v_conv.id, 'csat', substr(new.interactive_reply_id, 6)::integer,
                         'assignee_id', v_conv.assignee_id, 'team_id', v_conv.team_id, 'message_id', new.id));
    return null;
  end if;
  if v_conv.mode <> 'human' or v_conv.status not in ('open', 'waiting', 'pending') then
    return null;
  end if;
  perform private.metrics_row(v_conv.tenant_id, v_conv.id);
  if new.sender_type = 'contact' then
    update public.conversation_metrics x
       set awaiting_reply_since = coalesce(x.awaiting_reply_since, v_at),
           needs_human_at = coalesce(x.needs_human_at, v_at)
     where x.tenant_id = v_conv.tenant_id and x.conversation_id = v_conv.id;
    if v_conv.snoozed_until is not null then
      update public.conversations c set snoozed_until = null, status = 'open' where c.id = v_conv.id;
      perform private.emit(v_conv.tenant_id, 'conversation.unsnoozed', 'conversations', v_conv.id,
        jsonb_build_object('conversation_id', v_conv.id, 'reason', 'customer_wrote'));
    end if;
  else
    update public.conversation_metrics x
       set first_response_at = coalesce(x.first_response_at, now()),
           first_response_seconds = coalesce(x.first_response_seconds,
             greatest(extract(epoch from now() - coalesce(x.needs_human_at, v_conv.handoff_at, v_conv.created_at)), 0)::integer),
           response_count = x.response_count + case when x.awaiting_reply_since is not null then 1 else 0 end,
           response_seconds_total = x.response_seconds_total + coalesce(
             greatest(extract(epoch from now() - x.awaiting_reply_since), 0)::bigint, 0),
           awaiting_reply_since = null
     where x.tenant_id = v_conv.tenant_id and x.conversation_id = v_conv.id;
  end if;
  return null;
end;
$$;

-- A conversation that goes to humans starts its metrics (the moment it needed one).
create or replace function private.tg_conversations_needs_human()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.metrics_row(new.tenant_id, new.id);
  update public.conversation_metrics x
     set needs_human_at = coalesce(x.needs_human_at, new.handoff_at, now()), team_id = coalesce(new.team_id, x.team_id),
         queue_entries = x.queue_entries + case when tg_op = 'INSERT' and new.assignee_id is null then 1 else 0 end
   where x.tenant_id = new.tenant_id and x.conversation_id = new.id;
  return null;
end;
$$;

-- contacts.tags mirrors contact_tags (names, sorted): segmentation keeps its array filter.
-- Agents tag through contact_tags (the API may not write the array); the system's writers
-- of the array (imports, campaigns' arrangements) get their names made into tags and
-- relation rows, so both always say the same.
create or replace function private.contact_tag_names(tenant_id uuid, contact_id uuid)
returns text[]
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(array_agg(t.name order by t.name), '{}') from public.contact_tags ct
    join public.tags t on t.tenant_id = ct.tenant_id and t.id = ct.tag_id
   where ct.tenant_id = contact_tag_names.tenant_id and ct.contact_id = contact_tag_names.contact_id
$$;

create or replace function private.tg_contact_tags_mirror()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.contacts c set tags = private.contact_tag_names(c.tenant_id, c.id)
   where c.tenant_id = coalesce(new.tenant_id, old.tenant_id) and c.id = coalesce(new.contact_id, old.contact_id);
  return null;
end;
$$;

create or replace function private.tg_contacts_tags_sync()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.tags is not distinct from private.contact_tag_names(new.tenant_id, new.id) then
    return null;
  end if;
  insert into public.tags (tenant_id, name)
  select new.tenant_id, n from unnest(new.tags) n where length(n) between 1 and 60
  on conflict (tenant_id, name) do nothing;
  delete from public.contact_tags ct
   where ct.tenant_id = new.tenant_id and ct.contact_id = new.id
     and ct.tag_id not in (select t.id from public.tags t where t.tenant_id = new.tenant_id and t.name = any (new.tags));
  insert into public.contact_tags (tenant_id, contact_id, tag_id, added_by)
  select new.tenant_id, new.id, t.id, null from public.tags t
   where t.tenant_id = new.tenant_id and t.name = any (new.tags)
  on conflict (contact_id, tag_id) do nothing;
  return null;
end;
$$;

create or replace function private.tg_tags_mirror()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.contacts c set tags = private.contact_tag_names(c.tenant_id, c.id)
   where c.tenant_id = new.tenant_id
     and c.id in (select ct.contact_id from public.contact_tags ct where ct.tenant_id = new.tenant_id and ct.tag_id = new.id);
  return null;
end;
$$;

-- Contacts: attributes with a definition must fit it.
create or replace function private.tg_contacts_inbox()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_def public.contact_attribute_definitions;
  v_value jsonb;
begin
  if tg_op = 'INSERT' or new.attributes is distinct from old.attributes then
    for v_def in select * from public.contact_attribute_definitions d
                  where d.tenant_id = new.tenant_id and new.attributes ? d.key loop
      v_value := new.attributes -> v_def.key;
      if jsonb_typeof(v_value) <> 'null' and not (case v_def.type
          when 'text' then jsonb_typeof(v_value) = 'string'
          when 'number' then jsonb_typeof(v_value) = 'number'
          when 'boolean' then jsonb_typeof(v_value) = 'boolean'
          when 'date' then jsonb_typeof(v_value) = 'string' and v_value #>> '{}' ~ '^\d{4}-\d{2}-\d{2}$'
          else jsonb_typeof(v_value) = 'string' and v_value #>> '{}' = any (v_def.options) end) then
        raise exception 'attribute "%" (%) must be %', v_def.key, v_def.label,
          case v_def.type when 'date' then 'a date YYYY-MM-DD' when 'list' then 'one of ' || array_to_string(v_def.options, ', ')
                          else 'a ' || v_def.type end
          using errcode = '22023';
      end if;
    end loop;
  end if;
  return new;
end;
$$;

-- Plan limits (plans.max_members, max_teams, max_contacts, monthly_conversation_limit,
-- monthly_message_limit), checked as the counted row is added, with the limit in the error.
-- What customers bring (ingest's contacts, conversations and messages) is never refused.
create or replace function private.tg_plan_limit()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_month timestamptz;
  v_max integer;
  v_what text;
begin
  if tg_table_name = 'members' then
    v_what := 'members';
    v_max := private.plan_limit_reached(new.tenant_id, 'max_members',
      (select count(*) from public.members m where m.tenant_id = new.tenant_id and m.status = 'active'));
  elsif tg_table_name = 'teams' then
    v_what := 'teams';
    v_max := private.plan_limit_reached(new.tenant_id, 'max_teams',
      (select count(*) from public.teams t where t.tenant_id = new.tenant_id));
  elsif private.request_role() <> 'authenticated' then
    return new;  -- ingest, the worker and jobs: what customers bring is kept
  elsif tg_table_name = 'contacts' then
    v_what := 'contacts';
    v_max := private.plan_limit_reached(new.tenant_id, 'max_contacts',
      (select count(*) from public.contacts c where c.tenant_id = new.tenant_id));
  else
    select date_trunc('month', now() at time zone t.timezone) at time zone t.timezone into v_month
      from public.tenants t where t.id = new.tenant_id;
    if tg_table_name = 'conversations' then
      v_what := 'conversations started this month';
      v_max := private.plan_limit_reached(new.tenant_id, 'monthly_conversation_limit',
        (select count(*) from public.conversations c where c.tenant_id = new.tenant_id and c.created_at >= v_month));
    else
      v_what := 'messages sent this month';
      v_max := private.plan_limit_reached(new.tenant_id, 'monthly_message_limit',
        (select count(*) from public.messages m where m.tenant_id = new.tenant_id and m.direction = 'outbound'
            and m.created_at >= v_month));
    end if;
  end if;
  if v_max is not null then
    raise exception 'your plan allows % %: upgrade the plan for more', v_max, v_what using errcode = '23514';
  end if;
  return new;
end;
$$;

drop trigger if exists _300_presence on public.members;
create trigger _300_presence after insert on public.members
  for each row execute function private.tg_members_presence();
drop trigger if exists _250_capacity on public.conversations;
create trigger _250_capacity before insert or update of assignee_id, status on public.conversations
  for each row execute function private.tg_conversations_capacity();
drop trigger if exists _260_load on public.conversations;
create trigger _260_load after insert or update of assignee_id, status or delete on public.conversations
  for each row execute function private.tg_conversations_load();
drop trigger if exists _270_needs_human on public.conversations;
create trigger _270_needs_human after insert or update of mode on public.conversations
  for each row when (new.mode = 'human') execute function private.tg_conversations_needs_human();
drop trigger if exists _700_assign on public.conversations;
create constraint trigger _700_assign after insert or update of assignee_id, status, team_id, queued_at, mode
  on public.conversations deferrable initially deferred
  for each row execute function private.tg_conversations_assign();
drop trigger if exists _700_drain on public.agent_presence;
create constraint trigger _700_drain after update of status on public.agent_presence
  deferrable initially deferred
  for each row when (new.status = 'online') execute function private.tg_agent_drain();
drop trigger if exists _700_drain on public.members;
create constraint trigger _700_drain after update of max_concurrent_conversations on public.members
  deferrable initially deferred
  for each row when (new.max_concurrent_conversations > old.max_concurrent_conversations)
  execute function private.tg_agent_drain();
drop trigger if exists _700_drain on public.team_members;
create constraint trigger _700_drain after insert on public.team_members
  deferrable initially deferred
  for each row execute function private.tg_agent_drain();
drop trigger if exists _250_csat_answer on public.messages;
create trigger _250_csat_answer before insert on public.messages
  for each row when (new.direction = 'inbound' and new.interactive_reply_id ~ '^csat:[1-5]$')
  execute function private.tg_messages_csat_answer();
drop trigger if exists _600_inbox on public.messages;
create trigger _600_inbox after insert on public.messages
  for each row when (new.direction <> 'internal' and new.sender_type in ('contact', 'agent'))
  execute function private.tg_messages_inbox();
drop trigger if exists _300_mirror on public.contact_tags;
create trigger _300_mirror after insert or delete on public.contact_tags
  for each row execute function private.tg_contact_tags_mirror();
drop trigger if exists _300_mirror on public.tags;
create trigger _300_mirror after update of name on public.tags
  for each row execute function private.tg_tags_mirror();
drop trigger if exists _310_tags_sync on public.contacts;
create trigger _310_tags_sync after insert on public.contacts
  for each row when (cardinality(new.tags) > 0) execute function private.tg_contacts_tags_sync();
drop trigger if exists _310_tags_sync_change on public.contacts;
create trigger _310_tags_sync_change after update of tags on public.contacts
  for each row when (old.tags is distinct from new.tags) execute function private.tg_contacts_tags_sync();
drop trigger if exists _250_inbox on public.contacts;
create trigger _250_inbox before insert or update on public.contacts
  for each row execute function private.tg_contacts_inbox();
drop trigger if exists _100_set_updated_at on public.agent_presence;
create trigger _100_set_updated_at before update on public.agent_presence
  for each row execute function private.tg_set_updated_at();
drop trigger if exists _100_set_updated_at on public.conversation_metrics;
create trigger _100_set_updated_at before update on public.conversation_metrics
  for each row execute function private.tg_set_updated_at();
drop trigger if exists _100_set_updated_at on public.contact_attribute_definitions;
create trigger _100_set_updated_at before update on public.contact_attribute_definitions
  for each row execute function private.tg_set_updated_at();
drop trigger if exists _900_audit on public.contact_attribute_definitions;
create trigger _900_audit after insert or update or delete on public.contact_attribute_definitions
  for each row execute function private.tg_audit();
drop trigger if exists _150_plan_limit on public.members;
create trigger _150_plan_limit before insert on public.members
  for each row execute function private.tg_plan_limit();
drop trigger if exists _150_plan_limit on public.teams;
create trigger _150_plan_limit before insert on public.teams
  for each row execute function private.tg_plan_limit();
drop trigger if exists _150_plan_limit on public.contacts;
create trigger _150_plan_limit before insert on public.contacts
  for each row execute function private.tg_plan_limit();
drop trigger if exists _150_plan_limit on public.conversations;
create trigger _150_plan_limit before insert on public.conversations
  for each row execute function private.tg_plan_limit();
drop trigger if exists _150_plan_limit on public.messages;
create trigger _150_plan_limit before insert on public.messages
  for each row when (new.direction = 'outbound') execute function private.tg_plan_limit();

-- members that existed before this module
insert into public.agent_presence (tenant_id, member_id)
select m.tenant_id, m.id from public.members m
on conflict (tenant_id, member_id) do nothing;

/**
 * ----
 * Section - Jobs (registered in job_schedules, run by private.run_due_jobs)
 * ----
 */

-- Presence and timers, every minute: silent agents go offline; agents offline past the
-- grace period give their live conversations back to the queue; customers unanswered past
-- their team's return timer go back too (with an alert for the managers); snoozes end.
create or replace function private.job_inbox_housekeeping(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_total integer := 0;
  v_rows integer;
  v_row record;
begin
  update public.agent_presence p
     set resume_status = p.status, status = 'offline', offline_since = p.expires_at
   where p.status <> 'offline' and p.expires_at <= as_of;
  get diagnostics v_rows = row_count;
  v_total := v_total + v_rows;

  for v_row in
    select c.*, x.awaiting_reply_since from public.agent_presence p
      join public.tenants t on t.id = p.tenant_id
      join public.conversations c on c.tenant_id = p.tenant_id and c.assignee_id = p.member_id
      left join public.conversation_metrics x on x.tenant_id = c.tenant_id and x.conversation_id = c.id
     where p.status = 'offline' and p.open_conversations > 0 and p.offline_since <= as_of - t.offline_grace
       and c.status in ('open', 'waiting', 'pending')
     for update of c skip locked
  loop
    perform private.enqueue(jsonb_populate_record(null::public.conversations, to_jsonb(v_row)), null, 'agent_offline',
                            v_row.awaiting_reply_since);
    perform private.emit(v_row.tenant_id, 'conversation.returned', 'conversations', v_row.id,
      jsonb_build_object('conversation_id', v_row.id, 'reason', 'agent_offline', 'previous_assignee_id', v_row.assignee_id));
    v_total := v_total + 1;
  end loop;

  for v_row in
    select c.*, x.awaiting_reply_since, tm.name as team_name from public.conversation_metrics x
      join public.conversations c on c.tenant_id = x.tenant_id and c.id = x.conversation_id
      join public.teams tm on tm.tenant_id = c.tenant_id and tm.id = c.team_id
     where x.awaiting_reply_since is not null and c.assignee_id is not null and c.status in ('open', 'waiting', 'pending')
       and tm.return_after is not null and x.awaiting_reply_since <= as_of - tm.return_after
     for update of c skip locked
  loop
    perform private.enqueue(jsonb_populate_record(null::public.conversations, to_jsonb(v_row)), v_row.team_id, 'no_reply',
                            v_row.awaiting_reply_since);
    perform private.emit(v_row.tenant_id, 'conversation.returned', 'conversations', v_row.id,
      jsonb_build_object('conversation_id', v_row.id, 'reason', 'no_reply', 'previous_assignee_id', v_row.assignee_id,
                         'awaiting_reply_since', v_row.awaiting_reply_since));
    insert into public.alerts (tenant_id, type, priority, title, message, payload, dedupe_key)
    values (v_row.tenant_id, 'inbox.return_timer', 'high',
            'Cliente sem resposta voltou para a fila ' || v_row.team_name,
            private.member_name(v_row.tenant_id, v_row.assignee_id) || ' não respondeu desde '
              || to_char(v_row.awaiting_reply_since at time zone 'UTC', 'HH24:MI "UTC"') || '.',
            jsonb_build_object('conversation_id', v_row.id, 'member_id', v_row.assignee_id, 'team_id', v_row.team_id),
            'return:' || v_row.id || ':' || extract(epoch from v_row.awaiting_reply_since)::bigint)
    on conflict (tenant_id, dedupe_key) do nothing;
    v_total := v_total + 1;
  end loop;

  for v_row in
    select c.* from public.conversations c
     where c.snoozed_until <= as_of and c.status in ('open', 'waiting', 'pending')
     for update skip locked
  loop
    update public.conversations c set snoozed_until = null, status = 'open' where c.id = v_row.id;
    perform private.timeline(jsonb_populate_record(null::public.conversations, to_jsonb(v_row)),
                             'Soneca terminou: conversa aberta de novo', 'system', null,
                             jsonb_build_object('action', 'unsnoozed'));
    perform private.emit(v_row.tenant_id, 'conversation.unsnoozed', 'conversations', v_row.id,
      jsonb_build_object('conversation_id', v_row.id, 'reason', 'time'));
    v_total := v_total + 1;
  end loop;
  return v_total;
end;
$$;

-- Every queue with someone waiting, through the one assigner (teams being drained right now
-- are left to whoever holds them).
create or replace function private.job_inbox_assign(as_of timestamptz)
returns integer
language sql
security definer
set search_path = ''
as $$
  select coalesce(sum(private.assign_queue(q.team_id, 1000)), 0)::integer
    from (select distinct c.team_id from public.conversations c
           where c.mode = 'human' and c.assignee_id is null and c.team_id is not null
             and c.status in ('open', 'waiting', 'pending')
           order by c.team_id) q
$$;

insert into public.job_schedules (name, description, cron, function_name) values
  ('inbox_housekeeping', 'Silent agents go offline; conversations of agents offline past the grace period and customers unanswered past the return timer go back to the queue; snoozes end.',
   '* * * * *', 'private.job_inbox_housekeeping'),
  ('inbox_assign', 'Drains every team queue through the assigner (what a busy team made a trigger skip).',
   '* * * * *', 'private.job_inbox_assign')
on conflict (name) do update set description = excluded.description, function_name = excluded.function_name,
  runner = excluded.runner;

/**
 * ----
 * Section - Realtime: presence and contact tags stream to the inbox (RLS applies)
 * ----
 */
do $$
declare
  v_table text;
begin
  if exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    foreach v_table in array array['agent_presence', 'contact_tags'] loop
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

-- presence and metrics: members (and platform admins) read; written by the system only
drop policy if exists "Presence is visible to members" on public.agent_presence;
create policy "Presence is visible to members" on public.agent_presence for select to authenticated
  using (tenant_id in (select private.my_tenant_ids()) or (select private.is_platform_admin()));
drop policy if exists "Metrics are visible to members" on public.conversation_metrics;
create policy "Metrics are visible to members" on public.conversation_metrics for select to authenticated
  using (tenant_id in (select private.my_tenant_ids()) or (select private.is_platform_admin()));

-- contact_tags: members read, agents tag and untag
drop policy if exists "Contact tags are visible to members" on public.contact_tags;
create policy "Contact tags are visible to members" on public.contact_tags for select to authenticated
  using (tenant_id in (select private.my_tenant_ids()) or (select private.is_platform_admin()));
drop policy if exists "Contacts are tagged by agents" on public.contact_tags;
create policy "Contacts are tagged by agents" on public.contact_tags for insert to authenticated
  with check (tenant_id in (select private.my_tenant_ids_with_role('agent')));
drop policy if exists "Contacts are untagged by agents" on public.contact_tags;
create policy "Contacts are untagged by agents" on public.contact_tags for delete to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('agent')));

-- contact_attribute_definitions: members read, managers write
drop policy if exists "Attribute definitions are visible to members" on public.contact_attribute_definitions;
create policy "Attribute definitions are visible to members" on public.contact_attribute_definitions
  for select to authenticated
  using (tenant_id in (select private.my_tenant_ids()) or (select private.is_platform_admin()));
drop policy if exists "Attribute definitions are added by managers" on public.contact_attribute_definitions;
create policy "Attribute definitions are added by managers" on public.contact_attribute_definitions
  for insert to authenticated with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Attribute definitions are edited by managers" on public.contact_attribute_definitions;
create policy "Attribute definitions are edited by managers" on public.contact_attribute_definitions
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')))
  with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Attribute definitions are removed by managers" on public.contact_attribute_definitions;
create policy "Attribute definitions are removed by managers" on public.contact_attribute_definitions
  for delete to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('manager')));

/**
 * ----
 * Section - Public RPCs (frontends; each a security invoker wrapper over its private twin)
 * ----
 */

-- An agent sets their presence (online, busy, away, offline) in a tenant; online lasts the
-- tenant's presence_timeout unless heartbeats renew it. Coming online drains their queues.
create or replace function private.set_presence(tenant_id uuid, status text)
returns public.agent_presence
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_member public.members := private.require_role(set_presence.tenant_id, 'agent');
  v_row public.agent_presence;
  v_before text;
begin
  if coalesce(set_presence.status, '') not in ('online', 'busy', 'away', 'offline') then
    raise exception 'status must be online, busy, away or offline' using errcode = '22023';
  end if;
  select p.status into v_before from public.agent_presence p
   where p.tenant_id = v_member.tenant_id and p.member_id = v_member.id for update;
  update public.agent_presence p
     set status = set_presence.status, resume_status = null, last_heartbeat_at = now(),
         expires_at = case when set_presence.status <> 'offline'
                           then now() + (select t.presence_timeout from public.tenants t where t.id = p.tenant_id) end,
         offline_since = case when set_presence.status = 'offline' then coalesce(p.offline_since, now()) end
   where p.tenant_id = v_member.tenant_id and p.member_id = v_member.id
  returning * into v_row;
  if v_before is distinct from set_presence.status then
    perform private.emit(v_member.tenant_id, 'agent.presence_changed', 'agent_presence', v_row.id,
      jsonb_build_object('member_id', v_member.id, 'status', v_row.status, 'previous_status', v_before));
  end if;
  return v_row;
end;
$$;

create or replace function public.set_presence(tenant_id uuid, status text)
returns public.agent_presence
language sql
security invoker
set search_path = ''
as $$ select * from private.set_presence(tenant_id, status) $$;
comment on function public.set_presence(uuid, text) is 'Agents: online (receives conversations), busy or away (keeps theirs), offline; online lapses after the tenant''s presence_timeout without heartbeat().';

-- The frontend's heartbeat (every ~20 s): presence renewed; after a silence that expired it,
-- the status the agent had comes back.
create or replace function private.heartbeat(tenant_id uuid)
returns public.agent_presence
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_member public.members := private.require_role(heartbeat.tenant_id, 'agent');
  v_row public.agent_presence;
begin
  update public.agent_presence p
     set last_heartbeat_at = now(),
         status = coalesce(p.resume_status, p.status), resume_status = null,
         offline_since = case when coalesce(p.resume_status, p.status) = 'offline' then p.offline_since end,
         expires_at = case when coalesce(p.resume_status, p.status) <> 'offline'
                           then now() + (select t.presence_timeout from public.tenants t where t.id = p.tenant_id) end
   where p.tenant_id = v_member.tenant_id and p.member_id = v_member.id
  returning * into v_row;
  return v_row;
end;
$$;

create or replace function public.heartbeat(tenant_id uuid)
returns public.agent_presence
language sql
security invoker
set search_path = ''
as $$ select * from private.heartbeat(tenant_id) $$;
comment on function public.heartbeat(uuid) is 'Agents: I am still here (call every ~20 s); renews presence, and restores it after a silence expired it.';

-- Assign a conversation to an agent: managers to anyone of the team who is online with room;
-- agents only to themselves. The note goes to the timeline.
create or replace function private.assign_conversation(conversation_id uuid, member_id uuid, note text default null)
returns public.conversations
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_conv public.conversations := private.workable_conversation(assign_conversation.conversation_id);
  v_me public.members := private.my_member(v_conv.tenant_id);
begin
  if private.request_role() = 'authenticated' and v_me.role < 'manager'
     and assign_conversation.member_id is distinct from v_me.id then
    raise exception 'agents assign conversations to themselves only: transfer it instead' using errcode = '42501';
  end if;
  if not exists (select 1 from public.members m where m.tenant_id = v_conv.tenant_id and m.id = assign_conversation.member_id) then
    raise exception 'agent not found in this tenant' using errcode = 'P0002';
  end if;
  if v_conv.status not in ('open', 'waiting', 'pending') then
    raise exception 'this conversation is %: reopen it first', v_conv.status using errcode = '55000';
  end if;
  if v_conv.assignee_id is not distinct from assign_conversation.member_id then
    return v_conv;
  end if;
  -- two people assigning at once: the second sees the first's choice instead of silently
  -- overriding it (moving a conversation on is a transfer)
  if v_conv.assignee_id is not null then
    raise exception 'this conversation is already assigned to %: transfer it instead',
      private.member_name(v_conv.tenant_id, v_conv.assignee_id) using errcode = '55000';
  end if;
  return private.give(v_conv, assign_conversation.member_id, 'manual', assign_conversation.note);
end;
$$;

create or replace function public.assign_conversation(conversation_id uuid, member_id uuid, note text default null)
returns public.conversations
language sql
security invoker
set search_path = ''
as $$ select * from private.assign_conversation(conversation_id, member_id, note) $$;
comment on function public.assign_conversation(uuid, uuid, text) is 'Managers: give an unassigned live conversation to an online agent of its team with room; agents: take it themselves. Capacity, presence and team are checked; the note lands in the timeline. An assigned one moves by transfer_conversation.';

-- Transfer to another agent (online, with room, in the target team) or to a team's queue,
-- with a note that explains why (kept as an internal note).
create or replace function private.transfer_conversation(conversation_id uuid, to_member_id uuid default null,
                                                         to_team_id uuid default null, note text default null)
returns public.conversations
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_conv public.conversations := private.workable_conversation(transfer_conversation.conversation_id);
  v_me public.members := private.my_member(v_conv.tenant_id);
  v_team public.teams;
  v_from uuid := v_conv.assignee_id;
  v_from_team uuid := v_conv.team_id;
begin
  if transfer_conversation.to_member_id is null and transfer_conversation.to_team_id is null then
    raise exception 'transfer to an agent (to_member_id) or a team (to_team_id)' using errcode = '22023';
  end if;
  if v_conv.status not in ('open', 'waiting', 'pending') then
    raise exception 'this conversation is %: reopen it first', v_conv.status using errcode = '55000';
  end if;
  if transfer_conversation.to_team_id is not null then
    select * into v_team from public.teams t
     where t.tenant_id = v_conv.tenant_id and t.id = transfer_conversation.to_team_id;
    if v_team.id is null then
      raise exception 'team not found' using errcode = 'P0002';
    end if;
    if not v_team.is_active then
      raise exception 'team "%" is inactive', v_team.name using errcode = '55000';
    end if;
  end if;
  if transfer_conversation.to_member_id is not null
     and not exists (select 1 from public.members m where m.tenant_id = v_conv.tenant_id and m.id = transfer_conversation.to_member_id) then
    raise exception 'agent not found in this tenant' using errcode = 'P0002';
  end if;
  if nullif(btrim(transfer_conversation.note), '') is not null then
    perform private.timeline(v_conv, transfer_conversation.note, 'note', v_me.id);
  end if;
  perform private.metrics_row(v_conv.tenant_id, v_conv.id);
  update public.conversation_metrics x set transfers = x.transfers + 1
   where x.tenant_id = v_conv.tenant_id and x.conversation_id = v_conv.id;
  if transfer_conversation.to_member_id is null then
    v_conv := private.enqueue(v_conv, v_team.id, 'transfer', null, transfer_conversation.note);
  else
    if v_team.id is not null then
      update public.conversations c set team_id = v_team.id where c.id = v_conv.id returning * into v_conv;
    end if;
    v_conv := private.give(v_conv, transfer_conversation.to_member_id, 'transfer', transfer_conversation.note);
  end if;
  perform private.emit(v_conv.tenant_id, 'conversation.transferred', 'conversations', v_conv.id,
    jsonb_build_object('conversation_id', v_conv.id, 'from_member_id', v_from, 'to_member_id', transfer_conversation.to_member_id,
                       'from_team_id', v_from_team, 'to_team_id', v_conv.team_id, 'note', transfer_conversation.note));
  return v_conv;
end;
$$;

create or replace function public.transfer_conversation(conversation_id uuid, to_member_id uuid default null,
                                                        to_team_id uuid default null, note text default null)
returns public.conversations
language sql
security invoker
set search_path = ''
as $$ select * from private.transfer_conversation(conversation_id, to_member_id, to_team_id, note) $$;
comment on function public.transfer_conversation(uuid, uuid, uuid, text) is 'Agents: hand a live conversation to another agent (online, with room, in the team) or to a team''s queue, with a note kept in the timeline.';

-- Resolve: the agent's room frees (their queues drain at commit) and, inside the 24 h window
-- when the team asks for it, the customer gets the 1-5 survey.
create or replace function private.resolve_conversation(conversation_id uuid, send_csat boolean default true)
returns public.conversations
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_conv public.conversations := private.workable_conversation(resolve_conversation.conversation_id);
  v_me public.members := private.my_member(v_conv.tenant_id);
  v_survey public.messages;
begin
  if v_conv.status not in ('open', 'waiting', 'pending') then
    raise exception 'this conversation is already %', v_conv.status using errcode = '55000';
  end if;
  update public.conversations c set status = 'resolved', snoozed_until = null where c.id = v_conv.id
  returning * into v_conv;
  perform private.timeline(v_conv, 'Conversa resolvida' || coalesce(' por ' || private.member_name(v_conv.tenant_id, v_me.id), ''),
                           'system', null, jsonb_build_object('action', 'resolved'));
  if resolve_conversation.send_csat and v_conv.csat is null
     and coalesce((select t.csat_enabled from public.teams t where t.tenant_id = v_conv.tenant_id and t.id = v_conv.team_id), true) then
    v_survey := private.try_send(v_conv, jsonb_build_object('type', 'interactive', 'interactive', jsonb_build_object(
      'type', 'list',
      'body', jsonb_build_object('text', 'Seu atendimento foi concluído. Como você avalia a nossa ajuda?'),
      'action', jsonb_build_object('button', 'Avaliar', 'sections', jsonb_build_array(jsonb_build_object(
        'title', 'Sua nota', 'rows', jsonb_build_array(
          jsonb_build_object('id', 'csat:5', 'title', '5 - Excelente'),
          jsonb_build_object('id', 'csat:4', 'title', '4 - Bom'),
          jsonb_build_object('id', 'csat:3', 'title', '3 - Regular'),
          jsonb_build_object('id', 'csat:2', 'title', '2 - Ruim'),
          jsonb_build_object('id', 'csat:1', 'title', '1 - Péssimo'))))))), 'system');
    if v_survey.id is not null then
      update public.conversations c set csat_requested_at = now() where c.id = v_conv.id returning * into v_conv;
      perform private.emit(v_conv.tenant_id, 'conversation.csat_requested', 'conversations', v_conv.id,
        jsonb_build_object('conversation_id', v_conv.id, 'message_id', v_survey.id));
    end if;
  end if;
  return v_conv;
end;
$$;

create or replace function public.resolve_conversation(conversation_id uuid, send_csat boolean default true)
returns public.conversations
language sql
security invoker
set search_path = ''
as $$ select * from private.resolve_conversation(conversation_id, send_csat) $$;
comment on function public.resolve_conversation(uuid, boolean) is 'Agents: resolve a live conversation; frees the agent''s room (their queues drain) and sends the 1-5 CSAT survey inside the 24 h window.';

-- Close without resolving (spam, duplicate, nothing to do).
create or replace function private.close_conversation(conversation_id uuid, note text default null)
returns public.conversations
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_conv public.conversations := private.workable_conversation(close_conversation.conversation_id);
begin
  if v_conv.status not in ('open', 'waiting', 'pending') then
    raise exception 'this conversation is already %', v_conv.status using errcode = '55000';
  end if;
  update public.conversations c set status = 'closed', snoozed_until = null where c.id = v_conv.id
  returning * into v_conv;
  perform private.timeline(v_conv, 'Conversa encerrada' || coalesce(': ' || nullif(btrim(close_conversation.note), ''), ''),
                           'system', null, jsonb_build_object('action', 'closed'));
  return v_conv;
end;
$$;

create or replace function public.close_conversation(conversation_id uuid, note text default null)
returns public.conversations
language sql
security invoker
set search_path = ''
as $$ select * from private.close_conversation(conversation_id, note) $$;
comment on function public.close_conversation(uuid, text) is 'Agents: close a live conversation without resolving it (frees the agent''s room).';

-- Reopen a resolved or closed conversation: back to its agent when they have room, else to
-- the team's queue. Refused when the contact already has another live conversation there.
create or replace function private.reopen_conversation(conversation_id uuid)
returns public.conversations
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_conv public.conversations;
  v_agent uuid;
begin
  select * into v_conv from public.conversations c where c.id = reopen_conversation.conversation_id for update;
  if v_conv.id is null or not private.is_member(v_conv.tenant_id) then
    raise exception 'conversation not found' using errcode = 'P0002';
  end if;
  perform private.require_role(v_conv.tenant_id, 'agent');
  if not private.can_work_conversation(v_conv.tenant_id, v_conv.assignee_id, v_conv.team_id) then
    raise exception 'this conversation is assigned to someone else: ask a manager to reopen it' using errcode = '42501';
  end if;
  if v_conv.status not in ('resolved', 'closed') then
    raise exception 'only resolved or closed conversations reopen (this one is %)', v_conv.status using errcode = '55000';
  end if;
  if exists (select 1 from public.conversations c
              where c.tenant_id = v_conv.tenant_id and c.contact_id = v_conv.contact_id
                and c.whatsapp_number_id is not distinct from v_conv.whatsapp_number_id and c.id <> v_conv.id
                and c.status in ('open', 'waiting', 'pending')) then
    raise exception 'the contact already has a live conversation on this number: continue there' using errcode = '55000';
  end if;
  v_agent := v_conv.assignee_id;
  -- the previous agent keeps it only with room; otherwise the queue decides
  if v_agent is not null and not exists (
      select 1 from public.agent_presence p join public.members m on m.tenant_id = p.tenant_id and m.id = p.member_id
       where p.tenant_id = v_conv.tenant_id and p.member_id = v_agent and m.status = 'active'
         and p.open_conversations < m.max_concurrent_conversations) then
    v_agent := null;
  end if;
  update public.conversations c set assignee_id = v_agent, status = 'open', mode = 'human' where c.id = v_conv.id
  returning * into v_conv;
  perform private.metrics_row(v_conv.tenant_id, v_conv.id);
  update public.conversation_metrics x set reopens = x.reopens + 1, resolution_seconds = null
   where x.tenant_id = v_conv.tenant_id and x.conversation_id = v_conv.id;
  perform private.timeline(v_conv, 'Conversa reaberta', 'system', null, jsonb_build_object('action', 'reopened'));
  perform private.emit(v_conv.tenant_id, 'conversation.reopened', 'conversations', v_conv.id,
    jsonb_build_object('conversation_id', v_conv.id, 'assignee_id', v_agent, 'team_id', v_conv.team_id));
  if v_agent is null then
    v_conv := private.enqueue(v_conv, null, 'reopened');
  end if;
  return v_conv;
end;
$$;

create or replace function public.reopen_conversation(conversation_id uuid)
returns public.conversations
language sql
security invoker
set search_path = ''
as $$ select * from private.reopen_conversation(conversation_id) $$;
comment on function public.reopen_conversation(uuid) is 'Agents: reopen a resolved or closed conversation (to its agent when they have room, else to the team queue).';

-- Snooze until a time (at most 30 days): status waiting; it wakes then, or when the
-- customer writes. It stays with its agent.
create or replace function private.snooze_conversation(conversation_id uuid, until timestamptz)
returns public.conversations
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_conv public.conversations := private.workable_conversation(snooze_conversation.conversation_id);
begin
  if snooze_conversation.until is null or snooze_conversation.until <= now()
     or snooze_conversation.until > now() + interval '30 days' then
    raise exception 'snooze until a time in the next 30 days' using errcode = '22023';
  end if;
  if v_conv.status not in ('open', 'waiting', 'pending') then
    raise exception 'this conversation is %: reopen it first', v_conv.status using errcode = '55000';
  end if;
  update public.conversations c set snoozed_until = snooze_conversation.until, status = 'waiting' where c.id = v_conv.id
  returning * into v_conv;
  perform private.timeline(v_conv, 'Conversa em soneca até '
    || to_char(snooze_conversation.until at time zone (select t.timezone from public.tenants t where t.id = v_conv.tenant_id),
               'DD/MM/YYYY HH24:MI'), 'system', null, jsonb_build_object('action', 'snoozed', 'until', snooze_conversation.until));
  perform private.emit(v_conv.tenant_id, 'conversation.snoozed', 'conversations', v_conv.id,
    jsonb_build_object('conversation_id', v_conv.id, 'until', snooze_conversation.until));
  return v_conv;
end;
$$;

create or replace function public.snooze_conversation(conversation_id uuid, until timestamptz)
returns public.conversations
language sql
security invoker
set search_path = ''
as $$ select * from private.snooze_conversation(conversation_id, until) $$;
comment on function public.snooze_conversation(uuid, timestamptz) is 'Agents: snooze a live conversation until a time (wakes then, or when the customer writes).';

-- An agent takes the next conversation of a queue they may pull from (the given team, or the
-- best head among theirs): FIFO holds, since it waits for the team like the assigner.
create or replace function private.pull_next_conversation(tenant_id uuid, team_id uuid default null)
returns public.conversations
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_me public.members := private.require_role(pull_next_conversation.tenant_id, 'agent');
  v_team uuid;
  v_conv public.conversations;
begin
  select tm.team_id into v_team from public.team_members tm
    left join lateral (select private.queue_rank(c.priority) as rank, c.queued_at from public.conversations c
                        where c.tenant_id = tm.tenant_id and c.team_id = tm.team_id and c.mode = 'human'
                          and c.assignee_id is null and c.status in ('open', 'waiting', 'pending')
                        order by 1, 2 limit 1) head on true
   where tm.tenant_id = v_me.tenant_id and tm.member_id = v_me.id and tm.can_pull_from_queue
     and (pull_next_conversation.team_id is null or tm.team_id = pull_next_conversation.team_id)
   order by head.rank nulls last, head.queued_at nulls last
   limit 1;
  if v_team is null then
    raise exception 'you may not pull from this queue' using errcode = '42501';
  end if;
  perform 1 from public.teams t where t.id = v_team for update;  -- the assigner's lock: one head at a time
  select * into v_conv from public.conversations c
   where c.tenant_id = v_me.tenant_id and c.team_id = v_team and c.mode = 'human'
     and c.assignee_id is null and c.status in ('open', 'waiting', 'pending')
   order by private.queue_rank(c.priority), c.queued_at, c.id
   limit 1
   for update;
  if v_conv.id is null then
    return null;
  end if;
  return private.give(v_conv, v_me.id, 'pull');
end;
$$;

create or replace function public.pull_next_conversation(tenant_id uuid, team_id uuid default null)
returns public.conversations
language sql
security invoker
set search_path = ''
as $$ select * from private.pull_next_conversation(tenant_id, team_id) $$;
comment on function public.pull_next_conversation(uuid, uuid) is 'Agents with can_pull_from_queue: take the head of the queue (the given team, or the best among theirs); null when empty; capacity applies.';

-- An internal note: in the timeline, never sent, never in the bot's memory.
create or replace function private.add_note(conversation_id uuid, content text)
returns public.messages
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_conv public.conversations := private.workable_conversation(add_note.conversation_id);
  v_note public.messages;
begin
  if length(btrim(coalesce(add_note.content, ''))) = 0 or length(add_note.content) > 4096 then
    raise exception 'a note has 1 to 4096 characters' using errcode = '22023';
  end if;
  v_note := private.timeline(v_conv, add_note.content, 'note', (private.my_member(v_conv.tenant_id)).id);
  perform private.emit(v_conv.tenant_id, 'conversation.note_added', 'messages', v_note.id,
    jsonb_build_object('conversation_id', v_conv.id, 'message_id', v_note.id, 'member_id', v_note.sender_member_id));
  return v_note;
end;
$$;

create or replace function public.add_note(conversation_id uuid, content text)
returns public.messages
language sql
security invoker
set search_path = ''
as $$ select * from private.add_note(conversation_id, content) $$;
comment on function public.add_note(uuid, text) is 'Agents: an internal note in the conversation''s timeline (never sent to WhatsApp, never shown to the bot).';

-- /shortcut: send a quick reply (its text, or its media with the text as caption), with the
-- greeting placeholders filled, and count its use.
create or replace function private.send_quick_reply(conversation_id uuid, shortcut text)
returns public.messages
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_conv public.conversations;
  v_reply public.quick_replies;
  v_text text;
  v_sent public.messages;
begin
  select * into v_conv from public.conversations c where c.id = send_quick_reply.conversation_id;
  if v_conv.id is null or not private.is_member(v_conv.tenant_id) then
    raise exception 'conversation not found' using errcode = 'P0002';
  end if;
  select * into v_reply from public.quick_replies q
   where q.tenant_id = v_conv.tenant_id and q.shortcut = '/' || ltrim(lower(btrim(send_quick_reply.shortcut)), '/')
     and (q.team_id is null or q.team_id = v_conv.team_id
          or q.team_id in (select private.my_team_ids()));
  if v_reply.id is null then
    raise exception 'no quick reply %', send_quick_reply.shortcut using errcode = 'P0002';
  end if;
  v_text := private.render_greeting(v_reply.content, v_conv, (private.my_member(v_conv.tenant_id)).id);
  v_sent := private.send_message(v_conv.id, case when v_reply.media_url is null
    then jsonb_build_object('type', 'text', 'text', jsonb_build_object('body', v_text))
    else jsonb_build_object('type', v_reply.media_type, v_reply.media_type, jsonb_strip_nulls(jsonb_build_object(
      'link', v_reply.media_url, 'caption', case when v_reply.media_type <> 'audio' then left(v_text, 1024) end))) end);
  update public.quick_replies q set usage_count = q.usage_count + 1 where q.id = v_reply.id;
  return v_sent;
end;
$$;

create or replace function public.send_quick_reply(conversation_id uuid, shortcut text)
returns public.messages
language sql
security invoker
set search_path = ''
as $$ select * from private.send_quick_reply(conversation_id, shortcut) $$;
comment on function public.send_quick_reply(uuid, text) is 'Agents: send the quick reply of a /shortcut (placeholders filled, like greetings) under send_message''s rules; its usage_count goes up.';

/**
 * ----
 * Section - Grants
 * ----
 */
grant select on public.agent_presence, public.conversation_metrics to authenticated;
grant select, insert (tenant_id, contact_id, tag_id), delete on public.contact_tags to authenticated;
grant select, insert (tenant_id, key, label, type, options, description), update (label, type, options, description),
  delete on public.contact_attribute_definitions to authenticated;
grant select, insert, update, delete on public.agent_presence, public.conversation_metrics, public.contact_tags,
  public.contact_attribute_definitions to service_role;

revoke execute on all functions in schema private from public, anon;
grant execute on function private.set_presence(uuid, text), private.heartbeat(uuid),
  private.assign_conversation(uuid, uuid, text), private.transfer_conversation(uuid, uuid, uuid, text),
  private.resolve_conversation(uuid, boolean), private.close_conversation(uuid, text),
  private.reopen_conversation(uuid), private.snooze_conversation(uuid, timestamptz),
  private.pull_next_conversation(uuid, uuid), private.add_note(uuid, text), private.send_quick_reply(uuid, text)
  to authenticated, service_role;
revoke execute on function public.set_presence(uuid, text), public.heartbeat(uuid),
  public.assign_conversation(uuid, uuid, text), public.transfer_conversation(uuid, uuid, uuid, text),
  public.resolve_conversation(uuid, boolean), public.close_conversation(uuid, text),
  public.reopen_conversation(uuid), public.snooze_conversation(uuid, timestamptz),
  public.pull_next_conversation(uuid, uuid), public.add_note(uuid, text), public.send_quick_reply(uuid, text)
  from public, anon;
grant execute on function public.set_presence(uuid, text), public.heartbeat(uuid),
  public.assign_conversation(uuid, uuid, text), public.transfer_conversation(uuid, uuid, uuid, text),
  public.resolve_conversation(uuid, boolean), public.close_conversation(uuid, text),
  public.reopen_conversation(uuid), public.snooze_conversation(uuid, timestamptz),
  public.pull_next_conversation(uuid, uuid), public.add_note(uuid, text), public.send_quick_reply(uuid, text)
  to authenticated, service_role;
