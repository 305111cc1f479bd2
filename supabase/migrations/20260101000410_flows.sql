/**
 * Zapbase module 5b: flows (seed 001 flows + nodes, 002 interactive_flows + flow_executions,
 * 000 current_flow / flow_step / flow_data).
 *
 * A flow is a graph of blocks and edges. Managers edit a draft version; publishing validates
 * the graph here, in SQL, and freezes the version. An execution pins the version it started
 * on; the worker's interpreter (python/zapbase/flows) advances it one customer message at a
 * time and commits its state with the replies it queued (flow_commit_turn). Triggers start
 * flows: a keyword, a QR / wa.me short code, a Click-to-WhatsApp ad (referral source_id), the
 * message's intent (classified by the intents module before the turn), an event (conversation created, first message ever, outside business hours), the number's
 * default flow, an agent or an automation (start_flow). Business hours are those of the
 * support module's calendar named by the number (whatsapp_numbers.settings.business_calendar_id),
 * else by the tenant (tenants.settings.business_calendar_id); with neither it is never "outside".
 *
 * The graph (flow_versions.graph), one JSON document:
 *   {"blocks": [{"id": "ask_cpf", "type": "question", ...}, ...],
 *    "edges":  [{"from": "start", "to": "ask_cpf", "port": "next"}, ...]}
 * Block ids: 1-64 characters [A-Za-z0-9_-]. Texts may read variables as {{name}} (contact.name,
 * contact.wa_id and flow.name are always set). Types, their fields and their out ports:
 *   start          -                                                       next
 *   message        text (<= 4096), media {type image|video|document|audio, link} next
 *   question       text (<= 1024), kind text|number|email|phone|cpf|cnpj|date|time|yes_no,
 *                  variable, retry_text, max_retries (0-5, default 2)        next, invalid
 *   choice         text (<= 1024), variable (the option id; <variable>_label its label),
 *                  options [{id, label, description}] (1-100, ids unique),
 *                  retry_text, max_retries                                   one per option id, invalid
 *   condition      rules [{variable, op equals|not_equals|contains|starts_with|regex|greater|
 *                  less|is_set|is_empty, value}], match all|any             true, false
 *   set            variable, value (text with {{variables}})                next
 *   action         action add_tag|remove_tag (tag) | set_attribute (name, value) |
 *                  set_priority (priority) | assign_team (team_id) | opt_out next
 *                  | create_ticket (title, description, priority, category,
 *                  team_id, variable: the protocol) | create_lead (interest,
 *                  score, variable: the lead id)                            next, error
 *   http           method GET|POST|PUT|PATCH|DELETE, url, headers {name: text | {"integration": id}},
 *                  body (JSON, strings with {{variables}}), timeout_ms (<= 10000),
 *                  save {variable: "path.in.response"}                     next, error
 *   ai             prompt, variable (answer stored) and/or send (true: sent) next, error
 *   whatsapp_flow  text, flow_id (Meta's), cta, variable (nfm_reply response JSON) next, invalid
 *   wait           seconds (60-604800), variable (the reply)                next, timeout
 *   jump           target (a block id) | flow_id (a sub-flow: another       - | next
 *                  published flow of the tenant, run here; its end blocks
 *                  return to this block's next port, or end the run without one)
 *   handoff        text, reason, team_id                                    -
 *   end            text                                                     -
 * An unconnected invalid / error / timeout port hands the conversation to humans.
 */

/**
 * ----
 * Section - Tables
 * ----
 */

-- Flows: a named graph, where and when it runs.
create table if not exists public.flows (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  name text not null check (length(name) between 1 and 80),
  description text check (length(description) <= 500),
  status text not null default 'draft' check (status in ('draft', 'active', 'paused', 'archived')),
  -- whatsapp_numbers ids (checked by tg_flows_check). Empty: every number of the tenant.
  whatsapp_number_ids uuid[] not null default '{}',
  published_version_id uuid,
  on_trigger_while_running text not null default 'ignore' check (on_trigger_while_running in ('ignore', 'interrupt')),
  session_timeout interval not null default interval '4 hours'
    check (session_timeout between interval '1 minute' and interval '7 days'),
  max_steps_per_turn integer not null default 50 check (max_steps_per_turn between 1 and 500),
  max_block_visits integer not null default 20 check (max_block_visits between 1 and 1000),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, name)
);
alter table public.flows enable row level security;
comment on table public.flows is 'Conversation flows of a tenant (seed 001 flows, 002 interactive_flows): triggers, numbers, the published version, runtime limits.';
comment on column public.flows.status is 'draft (never published), active (triggers start it), paused (running executions go on, nothing new starts), archived.';
comment on column public.flows.published_version_id is 'The version new executions start on (set by publish_flow).';
comment on column public.flows.on_trigger_while_running is 'When another flow''s trigger (keyword, code, ad) arrives while this one runs: ignore it (the message is this flow''s input) or interrupt (this execution ends as abandoned and the other starts).';
comment on column public.flows.session_timeout is 'An execution idle this long expires; the customer''s next message says so and offers a restart (seed 000: 4 h).';
comment on column public.flows.max_steps_per_turn is 'Loop guard: blocks run for one customer message at most; beyond, the execution fails and hands off.';
comment on column public.flows.max_block_visits is 'Loop guard: visits of one block per execution at most; beyond, the execution fails and hands off.';

-- Versions: drafts the editor saves, frozen once published.
create table if not exists public.flow_versions (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  flow_id uuid not null,
  version integer not null default 0,
  graph jsonb not null default '{"blocks": [{"id": "start", "type": "start"}], "edges": []}'::jsonb
    check (jsonb_typeof(graph) = 'object' and pg_column_size(graph) <= 1048576),
  canvas jsonb not null default '{}'::jsonb check (pg_column_size(canvas) <= 1048576),
  run_graph jsonb check (pg_column_size(run_graph) <= 4194304),
  published_at timestamptz,
  published_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, flow_id, version),
  foreign key (tenant_id, flow_id) references public.flows (tenant_id, id) on delete cascade,
  foreign key (tenant_id, published_by) references public.members (tenant_id, id) on delete set null (published_by)
);
alter table public.flow_versions enable row level security;
create unique index if not exists flow_versions_one_draft_idx on public.flow_versions (tenant_id, flow_id)
  where published_at is null;
create index if not exists flow_versions_published_by_idx on public.flow_versions (tenant_id, published_by)
  where published_by is not null;
comment on table public.flow_versions is 'Versions of a flow''s graph: one draft at a time, edited freely; published versions are frozen (executions pin them).';
comment on column public.flow_versions.graph is 'Blocks and edges, in the schema documented at the top of the flows migration; validated by publish_flow.';
comment on column public.flow_versions.run_graph is 'What executions run, set by publish_flow: graph with each sub-flow call replaced by the called flow''s published run_graph (block ids prefixed "<calling block>/"), so a version pins its sub-flows too.';
comment on column public.flow_versions.canvas is 'Editor layout (React Flow positions, zoom): never read by the runtime.';
comment on column public.flow_versions.version is 'Sequence number within the flow, set on insert.';

alter table public.flows drop constraint if exists flows_published_version_fk;
alter table public.flows add constraint flows_published_version_fk
  foreign key (tenant_id, published_version_id) references public.flow_versions (tenant_id, id)
  on delete set null (published_version_id);
create index if not exists flows_published_version_idx on public.flows (tenant_id, published_version_id)
  where published_version_id is not null;

-- Triggers: what starts a flow.
create table if not exists public.flow_triggers (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  flow_id uuid not null,
  kind text not null check (kind in ('keyword', 'qr_code', 'referral', 'intent', 'event', 'default')),
  value text check (length(value) between 1 and 200),
  match text not null default 'exact' check (match in ('exact', 'contains')),
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  foreign key (tenant_id, flow_id) references public.flows (tenant_id, id) on delete cascade,
  check (case kind when 'default' then value is null
                   when 'event' then value in ('conversation_created', 'first_message_ever', 'outside_business_hours')
                   when 'intent' then value ~ '^[a-z][a-z0-9_]{0,59}$'
                   else value is not null end)
);
alter table public.flow_triggers enable row level security;
create index if not exists flow_triggers_flow_idx on public.flow_triggers (tenant_id, flow_id);
create index if not exists flow_triggers_match_idx on public.flow_triggers (tenant_id, kind, value);
create unique index if not exists flow_triggers_code_idx on public.flow_triggers (tenant_id, kind, value)
  where kind in ('qr_code', 'referral');
comment on table public.flow_triggers is 'What starts a flow: keyword (exact or contained word sequence), qr_code (short code of a QR / wa.me prefilled text), referral (Click-to-WhatsApp ad source_id), intent (the message''s classified intent), event, default (any message of a new conversation on the flow''s numbers).';
comment on column public.flow_triggers.value is 'keyword / qr_code: stored folded (case, accents, punctuation); referral: the ad''s source_id; intent: an intent name (public.intents); event: conversation_created, first_message_ever or outside_business_hours (once per closed period and conversation).';
comment on column public.flow_triggers.match is 'keyword: exact (the whole message) or contains (the words appear in order).';

-- Executions: one run of a flow version in a conversation.
create table if not exists public.flow_executions (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  flow_id uuid not null,
  flow_version_id uuid not null,
  conversation_id uuid not null,
  contact_id uuid not null,
  whatsapp_number_id uuid,
  status text not null default 'active' check (status in ('active', 'completed', 'abandoned', 'expired', 'failed')),
  current_block text check (length(current_block) <= 200),
  awaiting text check (awaiting in ('input', 'wait', 'restart')),
  pending_event text check (pending_event in ('start', 'expired', 'timeout')),
  variables jsonb not null default '{}'::jsonb check (pg_column_size(variables) <= 262144),
  visits jsonb not null default '{}'::jsonb,
  retries integer not null default 0,
  page integer not null default 0,
  revision integer not null default 0,
  records jsonb not null default '{}'::jsonb,
  started_by text not null check (length(started_by) <= 80),
  started_by_member uuid,
  last_input text check (length(last_input) <= 1000),
  wait_until timestamptz,
  last_activity_at timestamptz not null default now(),
  expires_at timestamptz not null,
  started_at timestamptz not null default now(),
  ended_at timestamptz,
  end_reason text check (length(end_reason) <= 500),
  unique (tenant_id, id),
  foreign key (tenant_id, flow_id) references public.flows (tenant_id, id) on delete cascade,
  foreign key (tenant_id, flow_version_id) references public.flow_versions (tenant_id, id) on delete cascade,
  foreign key (tenant_id, conversation_id) references public.conversations (tenant_id, id) on delete cascade,
  foreign key (tenant_id, contact_id) references public.contacts (tenant_id, id) on delete cascade,
  foreign key (tenant_id, whatsapp_number_id) references public.whatsapp_numbers (tenant_id, id)
    on delete set null (whatsapp_number_id),
  foreign key (tenant_id, started_by_member) references public.members (tenant_id, id)
    on delete set null (started_by_member)
);
alter table public.flow_executions enable row level security;
-- One running flow per contact and number, whichever conversation it began in.
create unique index if not exists flow_executions_one_active_idx
  on public.flow_executions (tenant_id, contact_id, whatsapp_number_id) where status = 'active';
create index if not exists flow_executions_conversation_idx on public.flow_executions (tenant_id, conversation_id);
create index if not exists flow_executions_flow_idx on public.flow_executions (tenant_id, flow_id, started_at);
create index if not exists flow_executions_version_idx on public.flow_executions (tenant_id, flow_version_id);
create index if not exists flow_executions_contact_idx on public.flow_executions (tenant_id, contact_id);
create index if not exists flow_executions_number_idx on public.flow_executions (tenant_id, whatsapp_number_id);
create index if not exists flow_executions_member_idx on public.flow_executions (tenant_id, started_by_member)
  where started_by_member is not null;
create index if not exists flow_executions_wait_idx on public.flow_executions (wait_until)
  where status = 'active' and wait_until is not null;
comment on table public.flow_executions is 'Runs of flows (seed 002 flow_executions, 000 current_flow / flow_step / flow_data): the pinned version, where it stands, its variables.';
comment on column public.flow_executions.current_block is 'The block the execution stands at (waiting for input there, or about to run it).';
comment on column public.flow_executions.awaiting is 'input: a question / choice waits for the answer; wait: a wait block (wait_until is its timeout); restart: an expired run''s restart offer waits for yes / no.';
comment on column public.flow_executions.pending_event is 'What the worker runs next without customer input: start (just started), expired (tell the customer, offer a restart), timeout (a wait ran out).';
comment on column public.flow_executions.visits is 'Block id -> times run in this execution (loop guard).';
comment on column public.flow_executions.retries is 'Invalid answers given to the current question.';
comment on column public.flow_executions.page is 'Page of a long choice list the customer is on (0 = first).';
comment on column public.flow_executions.revision is 'Bumped by every committed turn: a turn computed on an older state is refused (flow_commit_turn).';
comment on column public.flow_executions.records is 'What create_ticket / create_lead blocks of the running turn made, by revision, block and visit: a retried turn finds its ticket instead of opening a second one (flow_record). Emptied by every committed turn.';
comment on column public.flow_executions.started_by is 'trigger:<kind>, agent, automation, restart.';
comment on column public.flow_executions.expires_at is 'last_activity_at + the flow''s session_timeout.';

-- The step log: every block run, for drop-off analytics and support.
create table if not exists public.flow_steps (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  seq bigint generated always as identity,
  execution_id uuid not null,
  flow_id uuid not null,
  flow_version_id uuid not null,
  block_id text not null check (length(block_id) <= 200),
  block_type text not null check (length(block_type) <= 20),
  input text check (length(input) <= 1000),
  outcome text not null check (length(outcome) <= 500),
  created_at timestamptz not null default now(),
  foreign key (tenant_id, execution_id) references public.flow_executions (tenant_id, id) on delete cascade,
  foreign key (tenant_id, flow_id) references public.flows (tenant_id, id) on delete cascade,
  unique (tenant_id, id),
  foreign key (tenant_id, flow_version_id) references public.flow_versions (tenant_id, id) on delete cascade
);
alter table public.flow_steps enable row level security;
create index if not exists flow_steps_execution_idx on public.flow_steps (tenant_id, execution_id, seq);
create index if not exists flow_steps_version_block_idx on public.flow_steps (tenant_id, flow_version_id, block_id);
create index if not exists flow_steps_flow_idx on public.flow_steps (tenant_id, flow_id);
comment on table public.flow_steps is 'Step log of flow executions: which block ran, the customer''s input (PII masked), the outcome (next port, invalid, error...).';
comment on column public.flow_steps.seq is 'Order of the steps (blocks of one turn share a commit time).';
comment on column public.flow_steps.input is 'What the block consumed, masked by private.mask_pii (CPF, e-mail, phone, cards).';

-- The running flow of a conversation (declared in the whatsapp module, which comes first).
alter table public.conversations drop constraint if exists conversations_flow_fk;
alter table public.conversations add constraint conversations_flow_fk
  foreign key (tenant_id, flow_id) references public.flows (tenant_id, id) on delete set null (flow_id);

/**
 * ----
 * Section - Views
 * ----
 */

-- Per block of a version: how many executions reached it, how many stopped there for good,
-- and per version how many completed. security_invoker: the caller's RLS applies (managers).
create or replace view public.flow_block_stats with (security_invoker = true) as
  with last_step as (
    select distinct on (s.execution_id) s.execution_id, s.block_id
      from public.flow_steps s order by s.execution_id, s.seq desc
  ), runs as (
    select e.tenant_id, e.flow_id, e.flow_version_id, count(*) as executions,
           count(*) filter (where e.status = 'completed') as completed
      from public.flow_executions e group by 1, 2, 3
  )
  select s.tenant_id, s.flow_id, s.flow_version_id, s.block_id, min(s.block_type) as block_type,
         count(*) as visits, count(distinct s.execution_id) as executions_reached,
         count(distinct s.execution_id) filter (
           where e.status in ('abandoned', 'expired', 'failed') and l.block_id = s.block_id) as drop_offs,
         max(r.executions) as executions_started,
         round(max(r.completed)::numeric / nullif(max(r.executions), 0), 4) as completion_rate
    from public.flow_steps s
    join public.flow_executions e on e.tenant_id = s.tenant_id and e.id = s.execution_id
    join last_step l on l.execution_id = s.execution_id
    join runs r on r.tenant_id = s.tenant_id and r.flow_version_id = s.flow_version_id
   group by s.tenant_id, s.flow_id, s.flow_version_id, s.block_id;
comment on view public.flow_block_stats is 'Flow analytics per block of a version: visits, executions that reached it, drop-offs (executions that ended abandoned / expired / failed there), executions started and completion rate of the version. Managers read it.';

/**
 * ----
 * Section - Private helpers
 * ----
 */

-- Text as triggers compare it: lower case, no accents, punctuation to spaces, spaces collapsed
-- (the SQL twin of zapbase.text.fold for Portuguese).
create or replace function private.flow_fold(content text)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select btrim(regexp_replace(
    translate(lower(content), 'áàâãäéèêëíìîïóòôõöúùûüçñ', 'aaaaaeeeeiiiiooooouuuucn'),
    '[^a-z0-9]+', ' ', 'g'))
$$;
comment on function private.flow_fold(text) is 'Lower case, accents stripped, punctuation to spaces: how keywords and codes are compared.';

-- Whether a condition's regex compiles (publish checks it, so no turn fails on it).
create or replace function private.flow_regex_ok(pattern text)
returns boolean
language plpgsql
immutable
set search_path = ''
as $$
begin
  perform '' ~ pattern;
  return pattern is not null;
exception when invalid_regular_expression then
  return false;
end;
$$;

-- Every problem of a graph, each naming its block: the publish check. Team ids must be teams
-- of the tenant.
create or replace function private.flow_graph_problems(tenant_id uuid, graph jsonb)
returns table (block_id text, problem text)
language sql
stable
set search_path = ''
as $$
  with recursive blocks as (
    select b ->> 'id' as id, b ->> 'type' as type, b
      from jsonb_array_elements(case when jsonb_typeof(graph -> 'blocks') = 'array' then graph -> 'blocks'
                                     else '[]' end) b
  ), edges as (
    select e ->> 'from' as src, e ->> 'to' as dst, coalesce(e ->> 'port', 'next') as port
      from jsonb_array_elements(case when jsonb_typeof(graph -> 'edges') = 'array' then graph -> 'edges'
                                     else '[]' end) e
    union all  -- a jump is an edge too (a sub-flow call left here was not inlined: see below)
    select b.id, b.b ->> 'target', 'jump' from blocks b where b.type = 'jump' and not b.b ? 'flow_id'
  ),
  ports as (  -- the out ports each block may use
    select b.id, p.port from blocks b cross join lateral unnest(case
      when b.type = 'action' and b.b ->> 'action' in ('create_ticket', 'create_lead') then array['next', 'error']
      when b.type in ('start', 'message', 'set', 'action') then array['next']
      when b.type in ('question', 'whatsapp_flow') then array['next', 'invalid']
      when b.type = 'choice' then array['invalid'] || array(select o ->> 'id' from jsonb_array_elements(
        case when jsonb_typeof(b.b -> 'options') = 'array' then b.b -> 'options' else '[]' end) o)
      when b.type = 'condition' then array['true', 'false']
      when b.type in ('http', 'ai') then array['next', 'error']
      when b.type = 'wait' then array['next', 'timeout']
      when b.type = 'jump' then case when b.b ? 'flow_id' then array['next'] else array['jump'] end
      else array[]::text[] end) p(port)
  ), reach as (  -- from the start block through edges
    select b.id from blocks b where b.type = 'start'
    union
    select e.dst from reach r join edges e on e.src = r.id
  ), closure as (  -- (ancestor, block): a path leads from ancestor to block
    select e.src as anc, e.dst as id from edges e
    union
    select c.anc, e.dst from closure c join edges e on e.src = c.id
  ), writes as (
    select b.id, w.var from blocks b cross join lateral (
      select b.b ->> 'variable' as var where b.type in ('question', 'choice', 'set', 'ai', 'whatsapp_flow', 'wait',
                                                        'action')
      union all select (b.b ->> 'variable') || '_label' where b.type = 'choice'  -- the chosen option's label
      union all select k from jsonb_object_keys(case when b.type = 'http' and jsonb_typeof(b.b -> 'save') = 'object'
                                                     then b.b -> 'save' else '{}' end) k
    ) w where w.var is not null
  ), reads as (
    select b.id, r.var from blocks b cross join lateral (
      select m[1] as var from regexp_matches(
        coalesce(b.b ->> 'text', '') || ' ' || coalesce(b.b ->> 'value', '') || ' ' || coalesce(b.b ->> 'prompt', '')
          || ' ' || coalesce(b.b ->> 'title', '') || ' ' || coalesce(b.b ->> 'description', '')
          || ' ' || coalesce(b.b ->> 'interest', '')
          || ' ' || coalesce(b.b ->> 'url', '') || ' ' || coalesce(b.b ->> 'body', '')
          || ' ' || coalesce(b.b ->> 'headers', ''),
        '\{\{\s*([A-Za-z0-9_.]+)\s*\}\}', 'g') m
      union all select x ->> 'variable' from jsonb_array_elements(
        case when b.type = 'condition' and jsonb_typeof(b.b -> 'rules') = 'array' then b.b -> 'rules' else '[]' end) x
       where x ->> 'op' not in ('is_set', 'is_empty')  -- asking whether it is set is no read
    ) r where r.var is not null and r.var not like 'contact.%' and r.var not like 'flow.%'
  )
  select null::text, 'the graph has ' || count(*) || ' start blocks: exactly one is needed'
    from blocks where type = 'start' having count(*) <> 1
  union all
  select b.id, 'block id must be 1-64 letters, digits, _ or -' from blocks b
   where b.id is null or b.id !~ '^[A-Za-z0-9_-]{1,64}(/[A-Za-z0-9_-]{1,64})*$'
  union all
  select b.id, 'sub-flows nest too deep: the ids of their blocks (calling block ids joined by /) exceed 200'
               ' characters' from blocks b where length(b.id) > 200
  union all
  select b.id, 'block id is used ' || count(*) || ' times' from blocks b where b.id is not null group by b.id
  having count(*) > 1
  union all
  select b.id, 'unknown block type "' || coalesce(b.type, '') || '"' from blocks b
   where b.type is null or b.type <> all (array['start', 'message', 'question', 'choice', 'condition', 'set',
     'action', 'http', 'ai', 'whatsapp_flow', 'wait', 'jump', 'handoff', 'end'])
  union all
  select e.src, 'an edge leaves from a block that does not exist' from edges e
   where not exists (select 1 from blocks b where b.id = e.src)
  union all
  select e.src, 'an edge (port ' || e.port || ') goes to "' || coalesce(e.dst, '') || '", which does not exist'
    from edges e where not exists (select 1 from blocks b where b.id = e.dst)
  union all
  select e.src, 'port "' || e.port || '" does not exist on this block' from edges e
   where exists (select 1 from blocks b where b.id = e.src)
     and not exists (select 1 from ports p where p.id = e.src and p.port = e.port)
  union all
  select e.src, 'port "' || e.port || '" has ' || count(*) || ' edges: one at most' from edges e
   group by e.src, e.port having count(*) > 1
  union all
  select b.id, 'no path from the start block leads here' from blocks b
   where b.type <> 'start' and not exists (select 1 from reach r where r.id = b.id)
  union all
  select b.id, 'port "next" must lead somewhere' from blocks b
   where b.type in ('start', 'message', 'question', 'set', 'action', 'http', 'ai', 'whatsapp_flow', 'wait')
     and not exists (select 1 from edges e where e.src = b.id and e.port = 'next')
  union all
  select b.id, 'option "' || p.port || '" must lead somewhere' from blocks b join ports p on p.id = b.id
   where b.type = 'choice' and p.port <> 'invalid'
     and not exists (select 1 from edges e where e.src = b.id and e.port = p.port)
  union all
  select b.id, 'ports "true" and "false" must both lead somewhere' from blocks b
   where b.type = 'condition' and (select count(*) from edges e where e.src = b.id) < 2
  union all
  select r.id, 'reads {{' || r.var || '}}, which no block before it sets' from reads r
   where not exists (select 1 from writes w join closure c on c.anc = w.id and c.id = r.id where w.var = r.var)
  union all
  select b.id, 'text is required (at most ' || case when b.type = 'message' then 4096 else 1024 end || ' characters)'
    from blocks b
   where b.type in ('message', 'question', 'choice', 'whatsapp_flow')
     and (coalesce(b.b ->> 'text', '') = '' and b.b -> 'media' is null
          or length(b.b ->> 'text') > case when b.type = 'message' then 4096 else 1024 end)
  union all
  select b.id, 'variable must be 1-64 letters, digits or _' from blocks b
   where (b.type in ('question', 'choice', 'set', 'whatsapp_flow') or b.b ? 'variable')
     and coalesce(b.b ->> 'variable', '') !~ '^[A-Za-z_][A-Za-z0-9_]{0,63}$'
  union all
  select b.id, 'kind must be text, number, email, phone, cpf, cnpj, date, time or yes_no' from blocks b
   where b.type = 'question' and coalesce(b.b ->> 'kind', 'text')
         not in ('text', 'number', 'email', 'phone', 'cpf', 'cnpj', 'date', 'time', 'yes_no')
  union all
  select b.id, 'max_retries must be 0-5' from blocks b
   where b.type in ('question', 'choice') and b.b ? 'max_retries'
     and not (jsonb_typeof(b.b -> 'max_retries') = 'number' and (b.b ->> 'max_retries')::numeric between 0 and 5)
  union all
  select b.id, 'a choice needs 1-100 options, each with an id (1-200 characters) and a label (1-100)' from blocks b
   where b.type = 'choice' and (jsonb_typeof(b.b -> 'options') is distinct from 'array'
     or jsonb_array_length(b.b -> 'options') not between 1 and 100
     or exists (select 1 from jsonb_array_elements(b.b -> 'options') o
                 where coalesce(length(o ->> 'id'), 0) not between 1 and 200
                    or coalesce(length(o ->> 'label'), 0) not between 1 and 100
                    or length(o ->> 'description') > 72))
  union all
  select b.id, 'option id "' || (o ->> 'id') || '" is used ' || count(*) || ' times' from blocks b
   cross join lateral jsonb_array_elements(case when jsonb_typeof(b.b -> 'options') = 'array'
                                                then b.b -> 'options' else '[]' end) o
   where b.type = 'choice' group by b.id, o ->> 'id' having count(*) > 1
  union all
  select b.id, 'option id "invalid" is reserved' from blocks b
   where b.type = 'choice' and jsonb_typeof(b.b -> 'options') = 'array'
     and exists (select 1 from jsonb_array_elements(b.b -> 'options') o where o ->> 'id' = 'invalid')
  union all
  select b.id, 'rules need 1-20 entries with a variable and an op of equals, not_equals, contains, starts_with,'
               ' regex, greater, less, is_set or is_empty' from blocks b
   where b.type = 'condition' and (jsonb_typeof(b.b -> 'rules') is distinct from 'array'
     or jsonb_array_length(b.b -> 'rules') not between 1 and 20
     or exists (select 1 from jsonb_array_elements(b.b -> 'rules') x
                 where coalesce(x ->> 'variable', '') = '' or coalesce(x ->> 'op', '') not in
                   ('equals', 'not_equals', 'contains', 'starts_with', 'regex', 'greater', 'less', 'is_set', 'is_empty')))
  union all
  select b.id, 'regex "' || (x ->> 'value') || '" is not valid' from blocks b
   cross join lateral jsonb_array_elements(case when b.type = 'condition' and jsonb_typeof(b.b -> 'rules') = 'array'
                                                then b.b -> 'rules' else '[]' end) x
   where x ->> 'op' = 'regex' and not private.flow_regex_ok(x ->> 'value')
  union all
  select b.id, 'action must be add_tag, remove_tag (tag), set_attribute (name), set_priority (low, normal, high,'
               ' urgent), assign_team (team_id), opt_out, create_ticket (title of 1-300 characters, priority low,'
               ' medium, high or critical, category of 1-60 letters, digits, _, - or spaces) or create_lead'
               ' (interest of at most 300 characters, score 0-100)' from blocks b
   where b.type = 'action' and not coalesce(case b.b ->> 'action'
     when 'add_tag' then length(b.b ->> 'tag') between 1 and 60
     when 'remove_tag' then length(b.b ->> 'tag') between 1 and 60
     when 'set_attribute' then length(b.b ->> 'name') between 1 and 64
     when 'set_priority' then b.b ->> 'priority' in ('low', 'normal', 'high', 'urgent')
     when 'assign_team' then b.b ? 'team_id'
     when 'opt_out' then true
     when 'create_ticket' then length(b.b ->> 'title') between 1 and 300
       and coalesce(b.b ->> 'priority', 'medium') in ('low', 'medium', 'high', 'critical')
       and coalesce(b.b ->> 'category', 'x') ~ '^[A-Za-z0-9_ -]{1,60}$'
       and coalesce(length(b.b ->> 'description'), 0) <= 20000
     when 'create_lead' then coalesce(length(b.b ->> 'interest'), 0) <= 300
       and (not b.b ? 'score' or jsonb_typeof(b.b -> 'score') = 'number'
            and (b.b ->> 'score')::numeric between 0 and 100 and (b.b ->> 'score')::numeric % 1 = 0)
     else false end, false)
  union all
  select b.id, 'team ' || (b.b ->> 'team_id') || ' is not a team of this tenant' from blocks b
   where b.type in ('action', 'handoff') and b.b ->> 'team_id' is not null
     and not exists (select 1 from public.teams t where t.tenant_id = flow_graph_problems.tenant_id
                        and t.id::text = b.b ->> 'team_id')
  union all
  select b.id, 'http needs a method GET, POST, PUT, PATCH or DELETE, an http(s) url and timeout_ms of 100-10000'
    from blocks b
   where b.type = 'http' and (coalesce(b.b ->> 'method', 'GET') not in ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')
     or coalesce(b.b ->> 'url', '') !~ '^https?://'
     or (b.b ? 'timeout_ms' and not (jsonb_typeof(b.b -> 'timeout_ms') = 'number'
                                     and (b.b ->> 'timeout_ms')::numeric between 100 and 10000)))
  union all
  select b.id, 'header "' || h.key || '" names integration ' || (h.value ->> 'integration') || ', which is not one'
               ' of this tenant''s with a secret' from blocks b
   cross join lateral jsonb_each(case when b.type = 'http' and jsonb_typeof(b.b -> 'headers') = 'object'
                                      then b.b -> 'headers' else '{}' end) h
   where jsonb_typeof(h.value) = 'object' and not exists (
     select 1 from public.integrations i where i.tenant_id = flow_graph_problems.tenant_id
        and i.id::text = h.value ->> 'integration' and i.secret_id is not null)
  union all
  select b.id, 'an ai block needs a prompt and a variable or send: true' from blocks b
   where b.type = 'ai' and (coalesce(b.b ->> 'prompt', '') = ''
     or (b.b ->> 'variable' is null and coalesce(b.b ->> 'send', 'false') <> 'true'))
  union all
  select b.id, 'a whatsapp_flow block needs flow_id and cta (at most 20 characters)' from blocks b
   where b.type = 'whatsapp_flow' and (coalesce(b.b ->> 'flow_id', '') = '' or coalesce(length(b.b ->> 'cta'), 0)
     not between 1 and 20)
  union all
  select b.id, 'seconds must be 60-604800' from blocks b
   where b.type = 'wait' and not (jsonb_typeof(b.b -> 'seconds') = 'number'
                                  and (b.b ->> 'seconds')::numeric between 60 and 604800)
  union all
  select b.id, 'a jump needs a target' from blocks b
   where b.type = 'jump' and coalesce(b.b ->> 'target', '') = '' and not b.b ? 'flow_id'
  union all
  select b.id, 'flow_id ' || (b.b ->> 'flow_id') || ' is not a published flow of this tenant' from blocks b
   where b.type = 'jump' and b.b ? 'flow_id'  -- publish_flow inlined every call it could
  union all
  select b.id, 'text is at most 4096 characters' from blocks b
   where b.type in ('handoff', 'end') and length(b.b ->> 'text') > 4096
  union all
  select null, 'the graph needs "blocks" and "edges" arrays'
   where jsonb_typeof(graph -> 'blocks') is distinct from 'array' or jsonb_typeof(graph -> 'edges') is distinct from 'array'
$$;
comment on function private.flow_graph_problems(uuid, jsonb) is 'Every problem of a flow graph, naming its block: one start, edges between existing blocks on existing ports, no orphan, variables set before read, unique choice ids, WhatsApp limits, teams and integrations of the tenant.';

-- The graph an execution runs: each sub-flow call (a jump with a flow_id) replaced by the
-- called flow's published run_graph (its own calls already inlined when it was published),
-- its block ids prefixed with the calling block's id and "/". The call jumps to the
-- sub-flow's first block; the sub-flow's end blocks go on at the call's next port (a message
-- with their text first) or, when it has none, end the run. A call of a flow that is not
-- published stays as it is, for flow_graph_problems to name.
create or replace function private.flow_inline(tenant_id uuid, graph jsonb)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_call jsonb;
  v_sub jsonb;
  v_prefix text;
  v_return text;
  v_start text;
  v_blocks jsonb := graph -> 'blocks';
  v_edges jsonb := graph -> 'edges';
begin
  if jsonb_typeof(v_blocks) is distinct from 'array' or jsonb_typeof(v_edges) is distinct from 'array' then
    return graph;
  end if;
  for v_call in select b from jsonb_array_elements(graph -> 'blocks') b
                 where b ->> 'type' = 'jump' and b ? 'flow_id' loop
    select v.run_graph into v_sub
      from public.flows f join public.flow_versions v on v.tenant_id = f.tenant_id and v.id = f.published_version_id
     where f.tenant_id = flow_inline.tenant_id and f.id::text = v_call ->> 'flow_id';
    continue when v_sub is null;
    v_prefix := (v_call ->> 'id') || '/';
    v_return := (select e ->> 'to' from jsonb_array_elements(v_edges) e
                  where e ->> 'from' = v_call ->> 'id' and coalesce(e ->> 'port', 'next') = 'next' limit 1);
    v_start := (select b ->> 'id' from jsonb_array_elements(v_sub -> 'blocks') b where b ->> 'type' = 'start');
    v_blocks := (select jsonb_agg(case when b ->> 'id' = v_call ->> 'id' then jsonb_build_object(
                     'id', b ->> 'id', 'type', 'jump', 'target', v_prefix || (
                       select e ->> 'to' from jsonb_array_elements(v_sub -> 'edges') e
                        where e ->> 'from' = v_start and coalesce(e ->> 'port', 'next') = 'next'))
                   else b end)
                   from jsonb_array_elements(v_blocks) b)
      || (select jsonb_agg(case
            when b ->> 'type' = 'end' and v_return is not null and coalesce(b ->> 'text', '') <> '' then
              jsonb_build_object('id', v_prefix || (b ->> 'id'), 'type', 'message', 'text', b ->> 'text')
            when b ->> 'type' = 'end' and v_return is not null then
              jsonb_build_object('id', v_prefix || (b ->> 'id'), 'type', 'jump', 'target', v_return)
            when b ->> 'type' = 'jump' then
              b || jsonb_build_object('id', v_prefix || (b ->> 'id'), 'target', v_prefix || (b ->> 'target'))
            else b || jsonb_build_object('id', v_prefix || (b ->> 'id')) end)
            from jsonb_array_elements(v_sub -> 'blocks') b where b ->> 'type' <> 'start');
    v_edges := coalesce((select jsonb_agg(e) from jsonb_array_elements(v_edges) e
                          where e ->> 'from' <> v_call ->> 'id'), '[]')  -- the call's jump replaces them
      || coalesce((select jsonb_agg(e || jsonb_build_object('from', v_prefix || (e ->> 'from'),
                                                            'to', v_prefix || (e ->> 'to')))
                     from jsonb_array_elements(v_sub -> 'edges') e where e ->> 'from' <> v_start), '[]')
      || coalesce((select jsonb_agg(jsonb_build_object('from', v_prefix || (b ->> 'id'), 'to', v_return, 'port', 'next'))
                     from jsonb_array_elements(v_sub -> 'blocks') b
                    where b ->> 'type' = 'end' and v_return is not null and coalesce(b ->> 'text', '') <> ''), '[]');
  end loop;
  return jsonb_build_object('blocks', v_blocks, 'edges', v_edges);
end;
$$;
comment on function private.flow_inline(uuid, jsonb) is 'A graph with its sub-flow calls replaced by the called flows'' published run_graph (ids prefixed "<call>/", ends returning to the call''s next port): what publish_flow validates and freezes as run_graph.';

-- A new execution of a flow's published version in a conversation, waiting for the worker to
-- run its start; the conversation goes to flow mode. Any running execution of the contact on
-- the number must have ended before.
create or replace function private.flow_start(conv public.conversations, flow_id uuid, started_by text,
                                              member_id uuid default null, pending text default 'start')
returns public.flow_executions
language plpgsql
set search_path = ''
as $$
declare
  v_flow public.flows;
  v_exec public.flow_executions;
begin
  select * into v_flow from public.flows f where f.tenant_id = conv.tenant_id and f.id = flow_start.flow_id;
  if v_flow.id is null or v_flow.published_version_id is null or v_flow.status not in ('active', 'paused') then
    raise exception 'flow not found or not published' using errcode = 'P0002';
  end if;
  insert into public.flow_executions (tenant_id, flow_id, flow_version_id, conversation_id, contact_id,
    whatsapp_number_id, pending_event, awaiting, started_by, started_by_member, expires_at)
  values (conv.tenant_id, v_flow.id, v_flow.published_version_id, conv.id, conv.contact_id, conv.whatsapp_number_id,
    flow_start.pending, case when flow_start.pending = 'expired' then 'restart' end, flow_start.started_by,
    flow_start.member_id, now() + v_flow.session_timeout)
  returning * into v_exec;
  update public.conversations c set mode = 'flow', flow_id = v_flow.id where c.id = conv.id;
  return v_exec;
end;
$$;

-- Whether a message at `at` comes outside the business hours of the conversation's number's
-- calendar (else the tenant's) and the flow has not run in the conversation since they closed
-- (no business second between its last start and `at`): one "we are closed" per night.
-- plpgsql: the calendars belong to the support module, created after this one.
create or replace function private.flow_outside_hours(conv public.conversations, flow_id uuid, at timestamptz)
returns boolean
language plpgsql
stable
set search_path = ''
as $$
declare
  v_calendar uuid;
begin
  select c.id into v_calendar
    from public.business_calendars c
   where c.tenant_id = conv.tenant_id
     and c.id::text = coalesce((select n.settings ->> 'business_calendar_id' from public.whatsapp_numbers n
                                 where n.tenant_id = conv.tenant_id and n.id = conv.whatsapp_number_id),
                               (select t.settings ->> 'business_calendar_id' from public.tenants t
                                 where t.id = conv.tenant_id));
  if v_calendar is null or private.business_seconds(v_calendar, at, at + interval '1 second') > 0 then
    return false;
  end if;
  return not exists (select 1 from public.flow_executions e
                      where e.tenant_id = conv.tenant_id and e.conversation_id = conv.id
                        and e.flow_id = flow_outside_hours.flow_id
                        and private.business_seconds(v_calendar, e.started_at, at) = 0);
end;
$$;
comment on function private.flow_outside_hours(public.conversations, uuid, timestamptz) is 'Whether an outside_business_hours trigger of the flow fires for a message at `at`: closed by the number''s (else the tenant''s) business calendar, and the flow not started in the conversation since closing.';

-- The flow a customer message starts, by trigger priority: QR / wa.me code, ad referral,
-- keyword, intent, then (only when no flow runs) events and the number's default flow.
create or replace function private.flow_trigger_match(conv public.conversations, msg public.messages, running boolean)
returns uuid
language sql
stable
set search_path = ''
as $$
  with m as (select private.flow_fold(coalesce(msg.content, '')) as folded)
  select t.flow_id
    from public.flow_triggers t
    join public.flows f on f.tenant_id = t.tenant_id and f.id = t.flow_id
    cross join m
   where t.tenant_id = conv.tenant_id and f.status = 'active' and f.published_version_id is not null
     and (f.whatsapp_number_ids = '{}' or conv.whatsapp_number_id = any(f.whatsapp_number_ids))
     and case t.kind
       when 'qr_code' then m.folded = t.value or m.folded like t.value || ' %' or m.folded like '% ' || t.value
                           or m.folded like '% ' || t.value || ' %'
       when 'referral' then msg.referral ->> 'source_id' = t.value
       when 'intent' then msg.intent = t.value
       when 'keyword' then m.folded = t.value
                           or (t.match = 'contains' and ' ' || m.folded || ' ' like '% ' || t.value || ' %')
       when 'event' then not running and case t.value
         when 'conversation_created' then not exists (
           select 1 from public.messages p where p.tenant_id = conv.tenant_id and p.conversation_id = conv.id
              and p.direction = 'inbound' and p.sender_type = 'contact' and p.created_at < msg.created_at)
         when 'first_message_ever' then not exists (
           select 1 from public.messages p where p.tenant_id = conv.tenant_id and p.contact_id = conv.contact_id
              and p.direction = 'inbound' and p.sender_type = 'contact' and p.created_at < msg.created_at)
         when 'outside_business_hours' then private.flow_outside_hours(conv, t.flow_id, msg.created_at)
         end
       when 'default' then not running and not exists (
         select 1 from public.flow_executions e where e.tenant_id = conv.tenant_id and e.conversation_id = conv.id)
     end
   order by array_position(array['qr_code', 'referral', 'keyword', 'intent', 'event', 'default'], t.kind),
            f.whatsapp_number_ids = '{}', t.created_at
   limit 1
$$;

-- The system message that wakes the worker for an execution's pending event: it goes
-- through the inbound queue, so it is serialised with the conversation's customer messages.
create or replace function private.flow_wake(exec public.flow_executions, note text)
returns void
language sql
set search_path = ''
as $$
  insert into public.messages (tenant_id, conversation_id, contact_id, whatsapp_number_id, direction, sender_type,
    type, content, payload, status, created_at)
  values (exec.tenant_id, exec.conversation_id, exec.contact_id, exec.whatsapp_number_id, 'inbound', 'system',
    'system', note, jsonb_build_object('zapbase_note', 'flow', 'execution_id', exec.id), 'received', clock_timestamp());
  select pg_notify('zapbase_inbound', '1');
$$;

-- Ends an execution (not a turn's own end: see flow_commit_turn); the conversation leaves
-- flow mode for the bot.
create or replace function private.flow_end(exec public.flow_executions, status text, reason text)
returns public.flow_executions
language plpgsql
set search_path = ''
as $$
declare
  v_exec public.flow_executions;
begin
  update public.flow_executions e
     set status = flow_end.status, end_reason = left(flow_end.reason, 500), ended_at = now(), awaiting = null,
         pending_event = null, wait_until = null, revision = e.revision + 1
   where e.id = exec.id and e.status = 'active'
  returning * into v_exec;
  update public.conversations c set mode = 'bot'
   where c.tenant_id = exec.tenant_id and c.id = exec.conversation_id and c.mode = 'flow';
  return v_exec;
end;
$$;

/**
 * ----
 * Section - Trigger functions
 * ----
 */

-- Flows and triggers are written by managers; numbers must be the tenant's.
create or replace function private.tg_flows_check()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if private.request_role() = 'authenticated' and not private.has_role(new.tenant_id, 'manager') then
    raise exception 'flows are managed by tenant managers' using errcode = '42501';
  end if;
  if tg_table_name = 'flows' then
    if exists (select 1 from unnest(new.whatsapp_number_ids) as n(id)
                where not exists (select 1 from public.whatsapp_numbers w
                                   where w.tenant_id = new.tenant_id and w.id = n.id)) then
      raise exception 'whatsapp_number_ids must name numbers of this tenant' using errcode = '23503';
    end if;
    if new.status = 'active' and new.published_version_id is null then
      raise exception 'publish a version before activating the flow' using errcode = '55000';
    end if;
  end if;
  return new;
end;
$$;

-- Keywords and codes are stored folded, so matching is an equality.
create or replace function private.tg_flow_triggers_fold()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.kind in ('keyword', 'qr_code') then
    new.value := nullif(private.flow_fold(new.value), '');
    if new.value is null then
      raise exception 'a % trigger needs letters or digits', new.kind using errcode = '23514';
    end if;
  end if;
  return new;
end;
$$;

-- Drafts are numbered on insert; published versions are frozen (only the flow's deletion
-- removes them).
create or replace function private.tg_flow_versions_guard()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if private.request_role() = 'authenticated' and not private.has_role(new.tenant_id, 'manager') then
    raise exception 'flows are managed by tenant managers' using errcode = '42501';
  end if;
  if tg_op = 'INSERT' then
    new.version := coalesce((select max(v.version) from public.flow_versions v
                              where v.tenant_id = new.tenant_id and v.flow_id = new.flow_id), 0) + 1;
    new.published_at := null;
    new.published_by := null;
    new.run_graph := null;
  elsif old.published_at is not null then
    raise exception 'version % is published and frozen: edit a new draft', old.version using errcode = '55000';
  end if;
  return new;
end;
$$;

-- Starts and ends of executions are events (flow.started, flow.ended).
create or replace function private.tg_flow_executions_emit()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    perform private.emit(new.tenant_id, 'flow.started', 'flow_executions', new.id,
      jsonb_build_object('flow_id', new.flow_id, 'flow_version_id', new.flow_version_id,
                         'conversation_id', new.conversation_id, 'contact_id', new.contact_id,
                         'started_by', new.started_by));
  elsif new.status <> 'active' and old.status = 'active' then
    perform private.emit(new.tenant_id, 'flow.ended', 'flow_executions', new.id,
      jsonb_build_object('flow_id', new.flow_id, 'conversation_id', new.conversation_id, 'status', new.status,
                         'reason', new.end_reason, 'block', new.current_block));
  end if;
  return null;
end;
$$;

/**
 * ----
 * Section - Triggers
 * ----
 */
drop trigger if exists _100_set_updated_at on public.flows;
create trigger _100_set_updated_at before update on public.flows
  for each row execute function private.tg_set_updated_at();
drop trigger if exists _200_check on public.flows;
create trigger _200_check before insert or update on public.flows
  for each row execute function private.tg_flows_check();
drop trigger if exists _900_audit on public.flows;
create trigger _900_audit after insert or update or delete on public.flows
  for each row execute function private.tg_audit();
drop trigger if exists _100_set_updated_at on public.flow_versions;
create trigger _100_set_updated_at before update on public.flow_versions
  for each row execute function private.tg_set_updated_at();
drop trigger if exists _200_guard on public.flow_versions;
create trigger _200_guard before insert or update on public.flow_versions
  for each row execute function private.tg_flow_versions_guard();
drop trigger if exists _200_check on public.flow_triggers;
create trigger _200_check before insert or update on public.flow_triggers
  for each row execute function private.tg_flows_check();
drop trigger if exists _300_fold on public.flow_triggers;
create trigger _300_fold before insert or update on public.flow_triggers
  for each row execute function private.tg_flow_triggers_fold();
drop trigger if exists _500_emit on public.flow_executions;
create trigger _500_emit after insert or update of status on public.flow_executions
  for each row execute function private.tg_flow_executions_emit();

insert into public.event_types (type, module, description) values
  ('flow.started', 'automation', 'A flow execution started (trigger, agent, automation or restart).'),
  ('flow.ended', 'automation', 'A flow execution ended: completed, abandoned, expired or failed (reason, last block).')
on conflict (type) do nothing;

/**
 * ----
 * Section - Jobs
 * ----
 */

-- Wait blocks whose time ran out: the worker is woken to take their timeout path.
create or replace function private.job_flows_wait_timeouts(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_exec public.flow_executions;
  v_count integer := 0;
begin
  for v_exec in
    update public.flow_executions e set pending_event = 'timeout', wait_until = null
     where e.status = 'active' and e.wait_until <= job_flows_wait_timeouts.as_of and e.pending_event is null
    returning *
  loop
    perform private.flow_wake(v_exec, 'wait timeout');
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;

insert into public.job_schedules (name, description, cron, function_name) values
  ('flows_wait_timeouts', 'Wakes flow executions whose wait block timed out, to take its timeout path.',
   '* * * * *', 'private.job_flows_wait_timeouts')
on conflict (name) do update set description = excluded.description, function_name = excluded.function_name,
  runner = excluded.runner;

/**
 * ----
 * Section - RLS policies
 * ----
 */
drop policy if exists "Flows are visible to members" on public.flows;
create policy "Flows are visible to members" on public.flows
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Flows are created by managers" on public.flows;
create policy "Flows are created by managers" on public.flows
  for insert to authenticated with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Flows are updated by managers" on public.flows;
create policy "Flows are updated by managers" on public.flows
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')))
  with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Flows are deleted by managers" on public.flows;
create policy "Flows are deleted by managers" on public.flows
  for delete to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('manager')));

drop policy if exists "Flow versions are visible to members" on public.flow_versions;
create policy "Flow versions are visible to members" on public.flow_versions
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Flow drafts are created by managers" on public.flow_versions;
create policy "Flow drafts are created by managers" on public.flow_versions
  for insert to authenticated with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Flow drafts are updated by managers" on public.flow_versions;
create policy "Flow drafts are updated by managers" on public.flow_versions
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')) and published_at is null)
  with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Flow drafts are deleted by managers" on public.flow_versions;
create policy "Flow drafts are deleted by managers" on public.flow_versions
  for delete to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')) and published_at is null);

drop policy if exists "Flow triggers are visible to members" on public.flow_triggers;
create policy "Flow triggers are visible to members" on public.flow_triggers
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Flow triggers are created by managers" on public.flow_triggers;
create policy "Flow triggers are created by managers" on public.flow_triggers
  for insert to authenticated with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Flow triggers are updated by managers" on public.flow_triggers;
create policy "Flow triggers are updated by managers" on public.flow_triggers
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')))
  with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Flow triggers are deleted by managers" on public.flow_triggers;
create policy "Flow triggers are deleted by managers" on public.flow_triggers
  for delete to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('manager')));

drop policy if exists "Flow executions are visible to members" on public.flow_executions;
create policy "Flow executions are visible to members" on public.flow_executions
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Flow steps are visible to managers" on public.flow_steps;
create policy "Flow steps are visible to managers" on public.flow_steps
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('manager')));

/**
 * ----
 * Section - Public functions
 * ----
 */

-- Managers: validate a draft and freeze it as the flow's published version.
create or replace function private.publish_flow(version_id uuid)
returns public.flow_versions
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_version public.flow_versions;
  v_member public.members;
  v_problems text;
  v_run jsonb;
begin
  select * into v_version from public.flow_versions v where v.id = publish_flow.version_id for update;
  if v_version.id is null or (private.request_role() = 'authenticated' and not private.is_member(v_version.tenant_id)) then
    raise exception 'flow version not found' using errcode = 'P0002';
  end if;
  if private.request_role() = 'authenticated' then
    v_member := private.require_role(v_version.tenant_id, 'manager');
  end if;
  if v_version.published_at is not null then
    raise exception 'version % is already published', v_version.version using errcode = '55000';
  end if;
  v_run := private.flow_inline(v_version.tenant_id, v_version.graph);
  select string_agg(coalesce('block "' || p.block_id || '": ', '') || p.problem, '; ' order by p.block_id nulls first)
    into v_problems from private.flow_graph_problems(v_version.tenant_id, v_run) p;
  if v_problems is not null then
    raise exception 'the flow cannot be published: %', v_problems using errcode = '23514';
  end if;
  update public.flow_versions v set published_at = now(), published_by = v_member.id, run_graph = v_run
   where v.id = v_version.id returning * into v_version;
  update public.flows f
     set published_version_id = v_version.id, status = case when f.status = 'draft' then 'active' else f.status end
   where f.tenant_id = v_version.tenant_id and f.id = v_version.flow_id;
  return v_version;
end;
$$;

create or replace function public.publish_flow(version_id uuid)
returns public.flow_versions
language sql
security invoker
set search_path = ''
as $$ select * from private.publish_flow(version_id) $$;
revoke execute on function private.publish_flow(uuid) from public, anon;
grant execute on function private.publish_flow(uuid) to authenticated, service_role;
comment on function public.publish_flow(uuid) is 'Managers: validate a draft version (every problem named by block, sub-flows inlined) and freeze it as the flow''s published version (run_graph: what executions run); a draft flow becomes active.';

-- Starts a flow in a live conversation now (its row locked by the caller), for a member or
-- (member null) an automation: a running flow of the contact on that number ends as abandoned.
create or replace function private.flow_start_now(conv public.conversations, flow_id uuid, member_id uuid)
returns public.flow_executions
language plpgsql
set search_path = ''
as $$
declare
  v_running public.flow_executions;
  v_exec public.flow_executions;
begin
  if conv.status not in ('open', 'waiting', 'pending') then
    raise exception 'this conversation is % : flows run in live conversations', conv.status using errcode = '55000';
  end if;
  select * into v_running from public.flow_executions e
   where e.tenant_id = conv.tenant_id and e.contact_id = conv.contact_id
     and e.whatsapp_number_id is not distinct from conv.whatsapp_number_id and e.status = 'active'
   for update;
  if v_running.id is not null then
    perform private.flow_end(v_running, 'abandoned', 'replaced by a flow started by '
      || case when flow_start_now.member_id is null then 'an automation' else 'an agent' end);
  end if;
  v_exec := private.flow_start(conv, flow_start_now.flow_id,
    case when flow_start_now.member_id is null then 'automation' else 'agent' end, flow_start_now.member_id);
  perform private.flow_wake(v_exec, 'flow started');
  return v_exec;
end;
$$;
comment on function private.flow_start_now(public.conversations, uuid, uuid) is 'Starts a published flow in a live conversation for a member or (null) an automation rule, replacing a running one; no permission check (start_flow and automation rules check).';

-- Agents (on conversations they may work) and automations (service role): start a flow in a
-- conversation now.
create or replace function private.start_flow(conversation_id uuid, flow_id uuid)
returns public.flow_executions
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_conv public.conversations;
  v_member public.members;
begin
  select * into v_conv from public.conversations c where c.id = start_flow.conversation_id for update;
  if v_conv.id is null or (private.request_role() = 'authenticated' and not private.is_member(v_conv.tenant_id)) then
    raise exception 'conversation not found' using errcode = 'P0002';
  end if;
  if private.request_role() = 'authenticated' then
    v_member := private.require_role(v_conv.tenant_id, 'agent');
    if not private.can_work_conversation(v_conv.tenant_id, v_conv.assignee_id, v_conv.team_id) then
      raise exception 'this conversation is assigned to someone else: ask a manager to reassign it'
        using errcode = '42501';
    end if;
  end if;
  return private.flow_start_now(v_conv, start_flow.flow_id, v_member.id);
end;
$$;

create or replace function public.start_flow(conversation_id uuid, flow_id uuid)
returns public.flow_executions
language sql
security invoker
set search_path = ''
as $$ select * from private.start_flow(conversation_id, flow_id) $$;
revoke execute on function private.start_flow(uuid, uuid) from public, anon;
grant execute on function private.start_flow(uuid, uuid) to authenticated, service_role;
comment on function public.start_flow(uuid, uuid) is 'Agents (conversations they may work) and automations (service role): start a published flow in a live conversation now; a flow running for the contact on that number ends as abandoned.';

-- Agents and automations: end a running execution; the conversation leaves flow mode.
create or replace function private.end_flow_execution(execution_id uuid, reason text default null)
returns public.flow_executions
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_exec public.flow_executions;
  v_conv public.conversations;
begin
  select * into v_exec from public.flow_executions e where e.id = end_flow_execution.execution_id for update;
  if v_exec.id is null or (private.request_role() = 'authenticated' and not private.is_member(v_exec.tenant_id)) then
    raise exception 'flow execution not found' using errcode = 'P0002';
  end if;
  if private.request_role() = 'authenticated' then
    perform private.require_role(v_exec.tenant_id, 'agent');
    select * into v_conv from public.conversations c where c.id = v_exec.conversation_id;
    if not private.can_work_conversation(v_conv.tenant_id, v_conv.assignee_id, v_conv.team_id) then
      raise exception 'this conversation is assigned to someone else: ask a manager to reassign it'
        using errcode = '42501';
    end if;
  end if;
  if v_exec.status <> 'active' then
    raise exception 'this execution already ended (%)', v_exec.status using errcode = '55000';
  end if;
  return private.flow_end(v_exec, 'abandoned', coalesce(nullif(btrim(end_flow_execution.reason), ''),
    case when private.request_role() = 'authenticated' then 'ended by an agent' else 'ended by an automation' end));
end;
$$;

create or replace function public.end_flow_execution(execution_id uuid, reason text default null)
returns public.flow_executions
language sql
security invoker
set search_path = ''
as $$ select * from private.end_flow_execution(execution_id, reason) $$;
revoke execute on function private.end_flow_execution(uuid, text) from public, anon;
grant execute on function private.end_flow_execution(uuid, text) to authenticated, service_role;
comment on function public.end_flow_execution(uuid, text) is 'Agents (conversations they may work) and automations: end a running flow execution as abandoned; the conversation goes back to the bot.';

/**
 * ----
 * Section - Worker functions
 * ----
 */

-- Worker: the flow turn a claimed inbound message starts, or null when no flow takes it (the
-- bot answers). Decides, in this order: a system message wakes its execution's pending event;
-- the contact's running execution on the number expired (it ends, and a restart offer
-- begins); a trigger interrupts it (when its flow allows) or starts a flow where none runs;
-- else the running execution takes the message as input. Commits what it decided, so a
-- retried message finds the same turn (pending_event) and nothing runs twice.
create or replace function public.flow_begin_turn(message_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_msg public.messages;
  v_conv public.conversations;
  v_exec public.flow_executions;
  v_flow public.flows;
  v_trigger uuid;
  v_event text := 'input';
begin
  select * into v_msg from public.messages m where m.id = flow_begin_turn.message_id and m.direction = 'inbound';
  select * into v_conv from public.conversations c where c.id = v_msg.conversation_id for update;
  if v_conv.id is null or v_conv.mode = 'human' then
    return null;
  end if;
  select * into v_exec from public.flow_executions e
   where e.tenant_id = v_conv.tenant_id and e.contact_id = v_conv.contact_id
     and e.whatsapp_number_id is not distinct from v_conv.whatsapp_number_id and e.status = 'active'
   for update;
  if v_msg.sender_type = 'system' then
    if v_exec.id is null or v_exec.id::text is distinct from v_msg.payload ->> 'execution_id'
       or v_exec.pending_event is null then
      return null;  -- ended, or answered before its timeout
    end if;
    v_event := v_exec.pending_event;
  elsif v_exec.pending_event is not null then
    v_event := v_exec.pending_event;  -- a retry of the message that started it
  elsif v_exec.id is not null and v_exec.expires_at <= now() then
    select * into v_flow from public.flows f where f.tenant_id = v_exec.tenant_id and f.id = v_exec.flow_id;
    perform private.flow_end(v_exec, 'expired', 'no answer for ' || v_flow.session_timeout);
    if v_flow.status not in ('active', 'paused') or v_flow.published_version_id is null then
      return null;  -- nothing to restart: the bot answers
    end if;
    v_exec := private.flow_start(v_conv, v_exec.flow_id, 'restart', null, 'expired');
    v_event := 'expired';
  else
    v_trigger := private.flow_trigger_match(v_conv, v_msg, v_exec.id is not null);
    if v_trigger is not null and v_exec.id is not null and (select f.on_trigger_while_running from public.flows f
         where f.tenant_id = v_exec.tenant_id and f.id = v_exec.flow_id) = 'ignore' then
      v_trigger := null;
    end if;
    if v_trigger is not null then
      if v_exec.id is not null then
        perform private.flow_end(v_exec, 'abandoned', 'interrupted by another flow''s trigger');
      end if;
      v_exec := private.flow_start(v_conv, v_trigger, 'trigger');
      v_event := 'start';
    elsif v_exec.id is null then
      if v_conv.mode = 'flow' then
        update public.conversations c set mode = 'bot' where c.id = v_conv.id;
      end if;
      return null;
    end if;
  end if;
  if v_exec.conversation_id <> v_conv.id then  -- the session moved to a new conversation
    update public.flow_executions e set conversation_id = v_conv.id where e.id = v_exec.id returning * into v_exec;
  end if;
  update public.conversations c set mode = 'flow', flow_id = v_exec.flow_id
   where c.id = v_conv.id and (c.mode <> 'flow' or c.flow_id is distinct from v_exec.flow_id);
  select * into v_flow from public.flows f where f.tenant_id = v_exec.tenant_id and f.id = v_exec.flow_id;
  return jsonb_build_object(
    'event', v_event,
    'execution', to_jsonb(v_exec),
    'flow', jsonb_build_object('name', v_flow.name, 'max_steps_per_turn', v_flow.max_steps_per_turn,
                               'max_block_visits', v_flow.max_block_visits),
    'graph', (select v.run_graph from public.flow_versions v where v.tenant_id = v_exec.tenant_id
                                                            and v.id = v_exec.flow_version_id),
    'contact', (select jsonb_build_object('name', coalesce(k.profile_name, ''), 'wa_id', coalesce(k.wa_id, ''))
                  from public.contacts k where k.tenant_id = v_conv.tenant_id and k.id = v_conv.contact_id),
    -- header secrets of the version's http blocks, by integration id
    'secrets', (select coalesce(jsonb_object_agg(i.id, private.vault_secret(i.secret_id, 'integration:' || i.id)),
                                '{}')
                  from public.integrations i
                 where i.tenant_id = v_exec.tenant_id and i.secret_id is not null
                   and i.id::text in (
                     select h.value ->> 'integration'
                       from public.flow_versions v, jsonb_array_elements(v.run_graph -> 'blocks') b,
                            jsonb_each(case when jsonb_typeof(b -> 'headers') = 'object' then b -> 'headers'
                                            else '{}' end) h
                      where v.tenant_id = v_exec.tenant_id and v.id = v_exec.flow_version_id
                        and jsonb_typeof(h.value) = 'object')));
end;
$$;
comment on function public.flow_begin_turn(uuid) is 'Worker: the flow turn of a claimed inbound message ({event start|input|expired|timeout, execution, flow, graph, contact, secrets}) or null when the bot answers; starts triggered flows, expires idle ones.';

-- Worker: commit a turn the interpreter computed on revision `revision` of the execution:
-- its state, step log and actions (tags, attribute, priority, team, opt-out), then its end
-- (completed / failed) and handoff. Called in the transaction that queues the turn's replies.
create or replace function public.flow_commit_turn(execution_id uuid, revision integer, turn jsonb)
returns public.flow_executions
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_exec public.flow_executions;
  v_flow public.flows;
  v_action jsonb;
  v_team uuid;
  v_status text := coalesce(turn ->> 'status', 'active');
begin
  select * into v_exec from public.flow_executions e where e.id = flow_commit_turn.execution_id for update;
  if v_exec.id is null or v_exec.revision <> flow_commit_turn.revision or v_exec.status <> 'active' then
    raise exception 'flow execution % changed while its turn ran', flow_commit_turn.execution_id
      using errcode = '40001';
  end if;
  select * into v_flow from public.flows f where f.tenant_id = v_exec.tenant_id and f.id = v_exec.flow_id;
  update public.flow_executions e
     set current_block = turn ->> 'block', awaiting = turn ->> 'awaiting', pending_event = null,
         variables = coalesce(turn -> 'variables', e.variables), visits = coalesce(turn -> 'visits', e.visits),
         retries = coalesce((turn ->> 'retries')::integer, 0), page = coalesce((turn ->> 'page')::integer, 0),
         revision = e.revision + 1, records = '{}',
         last_input = coalesce(left(private.mask_pii(turn ->> 'input'), 1000), e.last_input),
         wait_until = case when turn ->> 'awaiting' = 'wait'
                           then now() + make_interval(secs => (turn ->> 'wait_seconds')::integer) end,
         last_activity_at = now(), expires_at = now() + v_flow.session_timeout,
         status = v_status, ended_at = case when v_status <> 'active' then now() end,
         end_reason = left(turn ->> 'end_reason', 500)
   where e.id = v_exec.id
  returning * into v_exec;
  insert into public.flow_steps (tenant_id, execution_id, flow_id, flow_version_id, block_id, block_type, input, outcome)
  select v_exec.tenant_id, v_exec.id, v_exec.flow_id, v_exec.flow_version_id, s ->> 'block', s ->> 'type',
         left(private.mask_pii(s ->> 'input'), 1000), left(s ->> 'outcome', 500)
    from jsonb_array_elements(coalesce(turn -> 'steps', '[]')) s;
  for v_action in select * from jsonb_array_elements(coalesce(turn -> 'actions', '[]')) loop
    case v_action ->> 'action'
      when 'add_tag' then
        update public.contacts k set tags = array_append(k.tags, v_action ->> 'tag')
         where k.tenant_id = v_exec.tenant_id and k.id = v_exec.contact_id and not (v_action ->> 'tag') = any(k.tags);
      when 'remove_tag' then
        update public.contacts k set tags = array_remove(k.tags, v_action ->> 'tag')
         where k.tenant_id = v_exec.tenant_id and k.id = v_exec.contact_id;
      when 'set_attribute' then
        update public.contacts k
           set attributes = k.attributes || jsonb_build_object(v_action ->> 'name', v_action -> 'value')
         where k.tenant_id = v_exec.tenant_id and k.id = v_exec.contact_id;
      when 'set_priority' then
        update public.conversations c set priority = v_action ->> 'priority'
         where c.tenant_id = v_exec.tenant_id and c.id = v_exec.conversation_id;
      when 'assign_team' then  -- a team deleted since publishing: the conversation keeps its team
        update public.conversations c set team_id = t.id
          from public.teams t
         where c.tenant_id = v_exec.tenant_id and c.id = v_exec.conversation_id
           and t.tenant_id = v_exec.tenant_id and t.id::text = v_action ->> 'team_id' and t.is_active;
      when 'opt_out' then
        perform private.record_consent(v_exec.tenant_id, v_exec.contact_id, 'opt_out', 'customer_message',
          'asked in flow "' || v_flow.name || '" (block ' || (v_action ->> 'block') || ')');
    end case;
  end loop;
  if turn -> 'handoff' is not null and jsonb_typeof(turn -> 'handoff') = 'object' then
    -- a team deleted or paused since publishing: the tenant's support team takes it
    select t.id into v_team from public.teams t
     where t.tenant_id = v_exec.tenant_id and t.id::text = turn -> 'handoff' ->> 'team_id' and t.is_active;
    perform private.handoff_conversation(v_exec.conversation_id,
      coalesce(turn -> 'handoff' ->> 'reason', 'flow "' || v_flow.name || '"'), v_team);
  elsif v_status <> 'active' then
    update public.conversations c set mode = 'bot'
     where c.tenant_id = v_exec.tenant_id and c.id = v_exec.conversation_id and c.mode = 'flow';
  end if;
  return v_exec;
end;
$$;
comment on function public.flow_commit_turn(uuid, integer, jsonb) is 'Worker: save an interpreted turn (state, steps, actions, end, handoff) if the execution is still at `revision`; raises 40001 otherwise. Run in the transaction that queues the turn''s replies.';

-- Worker: run a create_ticket / create_lead block of a turn computed on revision `revision`
-- (its own transaction, before the turn commits, so later blocks can read the protocol).
-- `key` (block:visit) names the block run: a retried turn gets the same record back. The
-- ticket's or lead's own refusal comes back as {"error": ...} for the block's error path.
create or replace function public.flow_record(execution_id uuid, revision integer, key text, action jsonb)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_exec public.flow_executions;
  v_key text := flow_record.revision || ':' || flow_record.key;
  v_result jsonb;
begin
  select * into v_exec from public.flow_executions e where e.id = flow_record.execution_id for update;
  if v_exec.id is null or v_exec.revision <> flow_record.revision or v_exec.status <> 'active' then
    raise exception 'flow execution % changed while its turn ran', flow_record.execution_id using errcode = '40001';
  end if;
  if v_exec.records ? v_key then
    return v_exec.records -> v_key;
  end if;
  begin
    case action ->> 'action'
      when 'create_ticket' then
        select jsonb_build_object('value', t.protocol, 'ticket_id', t.id) into v_result
          from private.create_ticket(v_exec.conversation_id, action ->> 'title', nullif(action ->> 'description', ''),
                                     coalesce(action ->> 'priority', 'medium'), action ->> 'category',
                                     (select m.id from public.teams m where m.tenant_id = v_exec.tenant_id
                                         and m.id::text = action ->> 'team_id' and m.is_active),
                                     null, 'flow') t;
      when 'create_lead' then
        select jsonb_build_object('value', l.id, 'lead_id', l.id) into v_result
          from private.create_lead(v_exec.tenant_id, v_exec.contact_id, null, null, null, 'flow',
                                   v_exec.flow_id::text, nullif(action ->> 'interest', ''),
                                   (action ->> 'score')::integer) l;
      else
        raise exception 'unknown record action %', action ->> 'action' using errcode = '22023';
    end case;
  exception when others then  -- e.g. a title too long once filled: the block's error path
    return jsonb_build_object('error', sqlerrm);
  end;
  update public.flow_executions e set records = e.records || jsonb_build_object(v_key, v_result)
   where e.id = v_exec.id;
  return v_result;
end;
$$;
comment on function public.flow_record(uuid, integer, text, jsonb) is 'Worker: open the ticket / lead of a flow action block for the turn on `revision` ({value: protocol | lead id} or {error}); idempotent per block visit, raises 40001 when the execution moved on.';

/**
 * ----
 * Section - Grants
 * ----
 */
grant select, insert (tenant_id, name, description, status, whatsapp_number_ids, on_trigger_while_running,
    session_timeout, max_steps_per_turn, max_block_visits),
  update (name, description, status, whatsapp_number_ids, on_trigger_while_running, session_timeout,
    max_steps_per_turn, max_block_visits),
  delete on public.flows to authenticated;
grant select, insert (tenant_id, flow_id, graph, canvas), update (graph, canvas), delete
  on public.flow_versions to authenticated;
grant select, insert (tenant_id, flow_id, kind, value, match), update (kind, value, match), delete
  on public.flow_triggers to authenticated;
grant select on public.flow_executions, public.flow_steps, public.flow_block_stats to authenticated;
grant select, insert, update, delete on public.flows, public.flow_versions, public.flow_triggers,
  public.flow_executions, public.flow_steps to service_role;
grant select on public.flow_block_stats to service_role;
revoke execute on all functions in schema private from public, anon;
grant execute on function private.flow_fold(text) to authenticated, service_role;  -- the triggers' fold trigger
revoke execute on function public.flow_begin_turn(uuid), public.flow_commit_turn(uuid, integer, jsonb),
  public.flow_record(uuid, integer, text, jsonb) from public, anon, authenticated;
grant execute on function public.flow_begin_turn(uuid), public.flow_commit_turn(uuid, integer, jsonb),
  public.flow_record(uuid, integer, text, jsonb) to service_role;
revoke execute on function public.publish_flow(uuid), public.start_flow(uuid, uuid),
  public.end_flow_execution(uuid, text) from public, anon;
grant execute on function public.publish_flow(uuid), public.start_flow(uuid, uuid),
  public.end_flow_execution(uuid, text) to authenticated, service_role;
