/**
 * Zapbase module 5b: automation rules (seed 003 regras_automacao, filas_disparo, logs_disparo;
 * seed 004 bots' daily caps).
 * IF something happened (an event of the catalogue) or a time came (no agent reply for N
 * minutes, N minutes since the customer's last message, N days before / after a date
 * attribute) AND conditions hold, DO ordered actions: automatically, or as a suggestion a
 * person approves or rejects in the dispatch queue. Every matched evaluation is logged.
 *
 * Where evaluation runs. Not inside private.emit: a rule would then run (and queue
 * messages) inside the ingest transaction of a customer's message, and one broken rule
 * would refuse the message. Not through a cursor over events.created_at either: created_at
 * is taken before commit, so concurrent webhooks commit out of order and a cursor skips the
 * event that commits late. Instead an AFTER INSERT trigger on events enqueues, in the
 * emitting transaction, only the events some active rule of that tenant listens to (one
 * index probe), and a consumer evaluates them in its own transaction:
 *
 *   private.emit ─► events ─► automation_queue ─► automation_run (worker loop on NOTIFY,
 *                                                  and the minute job) ─► automation_executions
 *   job automation_rules (every minute) ─► time triggers ─┘          └─► dispatch_queue (suggest)
 *
 * The queue row is the delivery (at least once, SKIP LOCKED); executions are unique per
 * rule and event (or per rule and time subject), so evaluating twice acts once. A rule only
 * ever reads rules, contacts and conversations of the event's own tenant.
 *
 * Loop guard: actions run with private.set_event_cause (their events carry the cause and a
 * depth one deeper) and the setting zapbase.automation_rule_id, which the queue row keeps:
 * a rule never reacts to its own effects, and an event deeper than 3 stops with a logged error.
 *
 * Who may do what:
 *   every member  reads rules, settings, the execution log and the dispatch queue
 *   manager       writes rules and settings, dry-runs a rule, approves / rejects suggestions
 *   agent         approves / rejects when listed in automation_settings.approver_member_ids
 *   service role  runs the consumer (automation_run)
 */

/**
 * ----
 * Section - Tables
 * ----
 */

-- Per-tenant brakes on automated messages (seed 004 max_messages_per_day).
create table if not exists public.automation_settings (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null unique references public.tenants (id) on delete cascade,
  max_messages_per_contact_per_day integer not null default 3
    check (max_messages_per_contact_per_day between 0 and 100),
  quiet_hours_start time,
  quiet_hours_end time,
  approver_member_ids uuid[] not null default '{}' check (cardinality(approver_member_ids) <= 500),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  check ((quiet_hours_start is null) = (quiet_hours_end is null))
);
alter table public.automation_settings enable row level security;
comment on table public.automation_settings is 'A tenant''s brakes on automated messages: a daily cap per contact across all rules, quiet hours, which agents may approve suggestions. No row: the defaults.';
comment on column public.automation_settings.max_messages_per_contact_per_day is 'Automated messages (every rule) one contact may get per day of the tenant''s time zone.';
comment on column public.automation_settings.quiet_hours_start is 'Start of the quiet hours in the tenant''s time zone (e.g. 21:00): no automated message is sent until quiet_hours_end (which may be the next morning).';
comment on column public.automation_settings.approver_member_ids is 'Agents who may approve or reject suggestions (managers always may).';

-- Rules (seed 003 regras_automacao).
create table if not exists public.automation_rules (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  name text not null check (length(name) between 1 and 120),
  description text check (length(description) <= 1000),
  trigger_type text not null default 'event'
    check (trigger_type in ('event', 'no_agent_reply', 'since_customer_message', 'date_attribute')),
  event_type text references public.event_types (type),
  wait_minutes integer check (wait_minutes between 1 and 525600),
  date_attribute text check (date_attribute ~ '^[a-z0-9_]{1,60}$'),
  date_offset_days integer check (date_offset_days between -3650 and 3650),
  date_yearly boolean not null default false,
  conditions jsonb not null default '{}'::jsonb,
  actions jsonb not null check (jsonb_typeof(actions) = 'array'),
  mode text not null default 'suggest' check (mode in ('suggest', 'automatic')),
  priority integer not null default 100 check (priority between 0 and 10000),
  is_active boolean not null default true,
  stop_after boolean not null default false,
  max_per_contact integer check (max_per_contact > 0),
  approval_ttl_minutes integer not null default 1440 check (approval_ttl_minutes between 1 and 43200),
  version integer not null default 1,
  scanned_on date,
  created_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  check ((trigger_type = 'event') = (event_type is not null)),
  check ((trigger_type in ('no_agent_reply', 'since_customer_message')) = (wait_minutes is not null)),
  check ((trigger_type = 'date_attribute') = (date_attribute is not null and date_offset_days is not null))
);
alter table public.automation_rules enable row level security;
create index if not exists automation_rules_event_idx on public.automation_rules (tenant_id, event_type, priority)
  where is_active;
create index if not exists automation_rules_time_idx on public.automation_rules (tenant_id, priority)
  where is_active and trigger_type <> 'event';
create index if not exists automation_rules_created_by_idx on public.automation_rules (created_by);
comment on table public.automation_rules is 'IF an event (or a time trigger) AND conditions, DO ordered actions; suggest (a person approves in dispatch_queue) or automatic. Evaluated by priority (lowest first); validated when saved.';
comment on column public.automation_rules.trigger_type is 'event (event_type), no_agent_reply (a customer in a human conversation waits wait_minutes for any reply), since_customer_message (wait_minutes since the customer''s last message in a live conversation), date_attribute (contact attribute date_attribute + date_offset_days is today).';
comment on column public.automation_rules.date_offset_days is 'Days after the date (negative: before; -30 = thirty days before a certificate expiry).';
comment on column public.automation_rules.date_yearly is 'Match the month and day every year (birthdays, purchase anniversaries).';
comment on column public.automation_rules.conditions is 'JSON conditions: {"all": [...]} / {"any": [...]} of {"field": "contact.tags", "op": "contains", "value": "vip"}; {} always holds. Fields and operators: private.automation_fields(). Checked when saved.';
comment on column public.automation_rules.actions is 'Ordered actions: send_template {template, language, variables}, send_text {text}, add_tag / remove_tag {tag}, set_attribute {key, value}, assign_team {team_id}, set_priority {priority}, resolve {}, call_webhook {endpoint_id}, start_flow {flow_id}, create_ticket {title, description, priority, category}, create_lead {interest, score} (source automation). Texts and variables take {{contact.name|default}} placeholders.';
comment on column public.automation_rules.stop_after is 'When this rule matches, rules of lower priority are not evaluated for the same event or subject.';
comment on column public.automation_rules.max_per_contact is 'Times this rule may act on one contact, ever (1: never the same promotion twice); null: no cap.';
comment on column public.automation_rules.approval_ttl_minutes is 'How long a suggestion waits for approval before it expires.';
comment on column public.automation_rules.version is 'Bumped when the trigger, conditions, actions or mode change; the log names the version that ran.';
comment on column public.automation_rules.scanned_on is 'date_attribute rules: the tenant-local day last scanned (once a day).';

-- Events waiting for evaluation: one row per event some active rule of its tenant listens to.
create table if not exists public.automation_queue (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  event_id uuid not null,
  event_created_at timestamptz not null,
  caused_by_rule_id uuid,
  attempts integer not null default 0,
  last_error text check (length(last_error) <= 2000),
  failed_at timestamptz,
  created_at timestamptz not null default clock_timestamp(),
  unique (tenant_id, id),
  foreign key (tenant_id, event_created_at, event_id) references public.events (tenant_id, created_at, id)
    on delete cascade
);
alter table public.automation_queue enable row level security;
create index if not exists automation_queue_due_idx on public.automation_queue (created_at) where failed_at is null;
create index if not exists automation_queue_event_idx on public.automation_queue (tenant_id, event_created_at, event_id);
comment on table public.automation_queue is 'Events to evaluate against the tenant''s rules, enqueued with the event; claimed SKIP LOCKED by automation_run and deleted once evaluated.';
comment on column public.automation_queue.caused_by_rule_id is 'The rule whose action emitted the event: that rule does not react to it (loop guard).';
comment on column public.automation_queue.failed_at is 'Evaluation raised three times (last_error): left here for inspection, not retried.';

-- The execution log (seed 003 logs_disparo): every evaluation that matched.
create table if not exists public.automation_executions (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  rule_id uuid not null,
  rule_version integer not null,
  trigger_type text not null,
  dedupe_key text not null check (length(dedupe_key) <= 200),
  event_id uuid,
  event_created_at timestamptz,
  event_type text,
  event_depth smallint not null default 0,
  contact_id uuid,
  conversation_id uuid,
  mode text not null check (mode in ('suggest', 'automatic')),
  status text not null check (status in ('suggested', 'succeeded', 'partial', 'failed', 'rejected', 'expired',
                                         'capped', 'stopped')),
  condition_results jsonb not null default '[]'::jsonb,
  actions jsonb not null default '[]'::jsonb,
  action_results jsonb not null default '[]'::jsonb,
  messages_sent integer not null default 0,
  error text check (length(error) <= 2000),
  executed_at timestamptz,
  created_at timestamptz not null default clock_timestamp(),
  unique (tenant_id, id),
  unique (rule_id, dedupe_key),
  foreign key (tenant_id, rule_id) references public.automation_rules (tenant_id, id) on delete cascade,
  foreign key (tenant_id, contact_id) references public.contacts (tenant_id, id) on delete set null (contact_id),
  foreign key (tenant_id, conversation_id) references public.conversations (tenant_id, id)
    on delete set null (conversation_id)
);
alter table public.automation_executions enable row level security;
create index if not exists automation_executions_tenant_idx on public.automation_executions (tenant_id, created_at desc);
create index if not exists automation_executions_contact_idx on public.automation_executions (tenant_id, contact_id, executed_at)
  where contact_id is not null;
create index if not exists automation_executions_conversation_idx on public.automation_executions (tenant_id, conversation_id)
  where conversation_id is not null;
comment on table public.automation_executions is 'Every rule evaluation that matched: the event, the rule version, each condition''s result, the actions as resolved and each one''s outcome (message ids; wamids in automation_messages), or why nothing ran (capped, loop guard). The tenant''s legal record of what automation sent.';
comment on column public.automation_executions.dedupe_key is 'The event id, or the time subject (conversation and the moment it started waiting, contact and day): one execution per rule and key.';
comment on column public.automation_executions.status is 'suggested (waiting in dispatch_queue), succeeded / partial / failed (actions ran), rejected, expired, capped (max_per_contact), stopped (loop guard).';
comment on column public.automation_executions.condition_results is '[{"field", "op", "value", "actual", "result"}] for each leaf condition.';
comment on column public.automation_executions.actions is 'The actions as resolved when the rule matched: messages carry the Graph API body an approver saw.';
comment on column public.automation_executions.action_results is '[{"index", "type", "outcome": "ok" | "error" | "skipped", "error", "message_id", "delivery_id", "flow_execution_id", "ticket_id", "protocol", "lead_id"}], in order.';

-- The approval queue (seed 003 filas_disparo): suggested actions waiting for a person.
create table if not exists public.dispatch_queue (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  execution_id uuid not null,
  rule_id uuid not null,
  contact_id uuid,
  conversation_id uuid,
  status text not null default 'pending' check (status in ('pending', 'approved', 'rejected', 'expired')),
  actions jsonb not null,
  preview text check (length(preview) <= 4096),
  expires_at timestamptz not null,
  decided_by uuid,
  decided_at timestamptz,
  reject_reason text check (length(reject_reason) <= 1000),
  outcome text check (outcome in ('succeeded', 'partial', 'failed')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (execution_id),
  foreign key (tenant_id, execution_id) references public.automation_executions (tenant_id, id) on delete cascade,
  foreign key (tenant_id, rule_id) references public.automation_rules (tenant_id, id) on delete cascade,
  foreign key (tenant_id, contact_id) references public.contacts (tenant_id, id) on delete cascade,
  foreign key (tenant_id, conversation_id) references public.conversations (tenant_id, id)
    on delete set null (conversation_id),
  foreign key (tenant_id, decided_by) references public.members (tenant_id, id) on delete set null (decided_by),
  check ((status = 'rejected') = (reject_reason is not null))
);
alter table public.dispatch_queue enable row level security;
create index if not exists dispatch_queue_pending_idx on public.dispatch_queue (tenant_id, created_at) where status = 'pending';
create index if not exists dispatch_queue_expiry_idx on public.dispatch_queue (expires_at) where status = 'pending';
create index if not exists dispatch_queue_rule_idx on public.dispatch_queue (tenant_id, rule_id);
create index if not exists dispatch_queue_contact_idx on public.dispatch_queue (tenant_id, contact_id);
create index if not exists dispatch_queue_conversation_idx on public.dispatch_queue (tenant_id, conversation_id)
  where conversation_id is not null;
create index if not exists dispatch_queue_decided_by_idx on public.dispatch_queue (tenant_id, decided_by)
  where decided_by is not null;
comment on table public.dispatch_queue is 'Suggested actions waiting for approval: pending → approved (then executed: outcome) / rejected (reason) / expired. Who decided and what they approved (actions, preview) are kept. Streamed by Realtime to approvers.';
comment on column public.dispatch_queue.actions is 'Exactly what runs when approved (messages resolved when suggested).';
comment on column public.dispatch_queue.preview is 'The messages as the customer would read them.';
comment on column public.dispatch_queue.decided_by is 'The member who approved or rejected.';
comment on column public.dispatch_queue.outcome is 'After approval: how the actions went (details in the execution).';

/**
 * ----
 * Section - Condition language
 * ----
 */

-- The fields conditions may name, with their type. contact.attributes.<key> and
-- event.payload.<key> are open (type any).
create or replace function private.automation_fields()
returns jsonb
language sql
immutable
parallel safe
set search_path = ''
as $$
  select '{
    "contact.id": "text", "contact.name": "text", "contact.profile_name": "text", "contact.display_name": "text",
    "contact.wa_id": "text", "contact.email": "text", "contact.phone": "text", "contact.company": "text",
    "contact.is_client": "boolean", "contact.ltv": "number", "contact.opt_in": "boolean",
    "contact.consent": "boolean", "contact.tags": "array", "contact.total_conversations": "number",
    "contact.total_messages": "number", "contact.created_at": "timestamp", "contact.last_inbound_at": "timestamp",
    "conversation.id": "text", "conversation.status": "text", "conversation.mode": "text", "conversation.priority": "text",
    "conversation.channel": "text", "conversation.team_id": "text", "conversation.assignee_id": "text",
    "conversation.whatsapp_number_id": "text", "conversation.tags": "array", "conversation.last_intent": "text",
    "conversation.unread_count": "number", "conversation.inbound_count": "number",
    "conversation.outbound_count": "number", "conversation.csat": "number", "conversation.window_open": "boolean",
    "conversation.last_customer_message_at": "timestamp", "conversation.created_at": "timestamp",
    "event.type": "text", "event.depth": "number", "event.actor_role": "text"
  }'::jsonb
$$;
comment on function private.automation_fields() is 'Fields of the condition language and their types (text, number, boolean, array, timestamp); plus contact.attributes.<key> and event.payload.<key> (any).';

-- A field's type, or null when conditions may not name it.
create or replace function private.automation_field_type(field text)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select coalesce(private.automation_fields() ->> field,
                  case when field ~ '^(contact\.attributes|event\.payload)(\.[A-Za-z0-9_]{1,60}){1,4}$' then 'any' end)
$$;

-- Operators by field type.
create or replace function private.automation_ops(field_type text)
returns text[]
language sql
immutable
parallel safe
set search_path = ''
as $$
  select array['eq', 'neq', 'in', 'not_in', 'exists', 'not_exists'] || case field_type
    when 'text' then array['contains', 'not_contains', 'starts_with']
    when 'number' then array['gt', 'gte', 'lt', 'lte']
    when 'timestamp' then array['gt', 'gte', 'lt', 'lte', 'within_last_minutes', 'older_than_minutes']
    when 'array' then array['contains', 'not_contains']
    when 'any' then array['contains', 'not_contains', 'starts_with', 'gt', 'gte', 'lt', 'lte']
    else array[]::text[] end
$$;

-- Raises a readable error for the first problem of a condition tree: unknown field,
-- operator the field's type does not take, value of the wrong shape. At most 5 levels
-- and 50 leaves.
create or replace function private.automation_check_conditions(cond jsonb, path text default 'conditions',
                                                                level integer default 1)
returns integer
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_key text;
  v_type text;
  v_op text := cond ->> 'op';
  v_value jsonb := cond -> 'value';
  v_leaves integer := 0;
  v_item record;
begin
  if jsonb_typeof(cond) is distinct from 'object' then
    raise exception '% must be an object', path using errcode = '22023';
  end if;
  if cond = '{}'::jsonb and level = 1 then
    return 0;
  end if;
  if level > 5 then
    raise exception '% nests deeper than 5 levels', path using errcode = '22023';
  end if;
  if cond ? 'all' or cond ? 'any' then
    v_key := case when cond ? 'all' then 'all' else 'any' end;
    if (select count(*) from jsonb_object_keys(cond)) <> 1 then
      raise exception '% must hold only "%"', path, v_key using errcode = '22023';
    end if;
    if jsonb_typeof(cond -> v_key) <> 'array' or jsonb_array_length(cond -> v_key) = 0 then
      raise exception '%.% must be a non-empty array of conditions', path, v_key using errcode = '22023';
    end if;
    for v_item in select c, i - 1 as n from jsonb_array_elements(cond -> v_key) with ordinality as e(c, i) loop
      v_leaves := v_leaves + private.automation_check_conditions(v_item.c, path || '.' || v_key || '[' || v_item.n || ']',
                                                                 level + 1);
    end loop;
    if level = 1 and v_leaves > 50 then
      raise exception '% has % conditions: at most 50', path, v_leaves using errcode = '22023';
    end if;
    return v_leaves;
  end if;
  if exists (select 1 from jsonb_object_keys(cond) k where k not in ('field', 'op', 'value')) then
    raise exception '% must be {"field", "op", "value"} or {"all": [...]} / {"any": [...]}', path
      using errcode = '22023';
  end if;
  v_type := private.automation_field_type(cond ->> 'field');
  if v_type is null then
    raise exception 'unknown field "%" in %', coalesce(cond ->> 'field', ''), path using errcode = '22023',
      hint = 'Use one of ' || (select string_agg(k, ', ' order by k) from jsonb_object_keys(private.automation_fields()) k)
             || ', contact.attributes.<key> or event.payload.<key>.';
  end if;
  if v_op is null or not v_op = any (private.automation_ops(v_type)) then
    raise exception 'operator "%" does not apply to % (a % field) in %', coalesce(v_op, ''), cond ->> 'field', v_type, path
      using errcode = '22023', hint = 'Use ' || array_to_string(private.automation_ops(v_type), ', ') || '.';
  end if;
  if v_op in ('exists', 'not_exists') then
    if v_value is not null then
      raise exception '% takes no value in %', v_op, path using errcode = '22023';
    end if;
  elsif v_value is null then
    raise exception '% needs a value in %', v_op, path using errcode = '22023';
  elsif v_op in ('in', 'not_in') and (jsonb_typeof(v_value) <> 'array' or jsonb_array_length(v_value) = 0) then
    raise exception '% needs a non-empty array value in %', v_op, path using errcode = '22023';
  elsif v_op in ('within_last_minutes', 'older_than_minutes')
        and (jsonb_typeof(v_value) <> 'number' or (v_value #>> '{}')::numeric <= 0) then
    raise exception '% needs a positive number of minutes in %', v_op, path using errcode = '22023';
  elsif v_op in ('gt', 'gte', 'lt', 'lte') and v_type = 'number' and jsonb_typeof(v_value) <> 'number' then
    raise exception '% needs a number in %', v_op, path using errcode = '22023';
  elsif v_op in ('gt', 'gte', 'lt', 'lte') and v_type = 'timestamp'
        and (jsonb_typeof(v_value) <> 'string' or v_value #>> '{}' !~ '^\d{4}-\d{2}-\d{2}([T ][0-9:.]+(Z|[+-][0-9:]+)?)?$') then
    raise exception '% needs an ISO date or timestamp in %', v_op, path using errcode = '22023';
  elsif v_op in ('contains', 'not_contains', 'starts_with') and jsonb_typeof(v_value) <> 'string' then
    raise exception '% needs a string in %', v_op, path using errcode = '22023';
  elsif v_op in ('eq', 'neq') and v_type in ('text', 'number', 'boolean')
        and jsonb_typeof(v_value) <> replace(v_type, 'text', 'string') then
    raise exception '% of a % field needs a % value in %', v_op, v_type, replace(v_type, 'text', 'string'), path
      using errcode = '22023';
  end if;
  return 1;
end;
$$;
comment on function private.automation_check_conditions(jsonb, text, integer) is 'Validates a condition tree when a rule is saved (unknown field, wrong operator or value: a readable error); returns the number of leaves.';

-- One leaf against the subject. Total: never raises for the subject's data.
create or replace function private.automation_leaf(leaf jsonb, subject jsonb)
returns boolean
language plpgsql
stable
parallel safe
set search_path = ''
as $$
declare
  v_actual jsonb := subject #> string_to_array(leaf ->> 'field', '.');
  v_value jsonb := leaf -> 'value';
  v_op text := leaf ->> 'op';
  v_kind text;
begin
  if v_actual = 'null'::jsonb then
    v_actual := null;
  end if;
  if v_op = 'exists' then return v_actual is not null; end if;
  if v_op = 'not_exists' then return v_actual is null; end if;
  if v_op = 'neq' then return v_actual is distinct from v_value; end if;
  if v_op = 'not_in' then return v_actual is null or not v_value @> jsonb_build_array(v_actual); end if;
  if v_op = 'not_contains' then
    return v_actual is null or not private.automation_leaf(leaf || '{"op": "contains"}', subject);
  end if;
  if v_actual is null then
    return false;
  end if;
  v_kind := jsonb_typeof(v_actual);
  case v_op
  when 'eq' then return v_actual = v_value;
  when 'in' then return v_value @> jsonb_build_array(v_actual);
  when 'contains' then
    return case when v_kind = 'array' then v_actual @> jsonb_build_array(v_value)
                when v_kind = 'string' then strpos(lower(v_actual #>> '{}'), lower(v_value #>> '{}')) > 0
                else false end;
  when 'starts_with' then
    return v_kind = 'string' and starts_with(lower(v_actual #>> '{}'), lower(v_value #>> '{}'));
  when 'within_last_minutes', 'older_than_minutes' then
    -- only timestamp fields (validated), which the subject fills with valid timestamps
    return case when v_op = 'within_last_minutes'
                then (v_actual #>> '{}')::timestamptz >= (subject ->> 'now')::timestamptz - make_interval(mins => (v_value #>> '{}')::integer)
                else (v_actual #>> '{}')::timestamptz < (subject ->> 'now')::timestamptz - make_interval(mins => (v_value #>> '{}')::integer) end;
  when 'gt', 'gte', 'lt', 'lte' then
    -- numbers as numbers; strings (timestamps, dates in attributes) as ISO text
    if v_kind = 'number' and jsonb_typeof(v_value) = 'number' then
      return case v_op when 'gt' then (v_actual #>> '{}')::numeric > (v_value #>> '{}')::numeric
                       when 'gte' then (v_actual #>> '{}')::numeric >= (v_value #>> '{}')::numeric
                       when 'lt' then (v_actual #>> '{}')::numeric < (v_value #>> '{}')::numeric
                       else (v_actual #>> '{}')::numeric <= (v_value #>> '{}')::numeric end;
    elsif v_kind = 'string' and jsonb_typeof(v_value) = 'string' then
      return case v_op when 'gt' then v_actual #>> '{}' > v_value #>> '{}'
                       when 'gte' then v_actual #>> '{}' >= v_value #>> '{}'
                       when 'lt' then v_actual #>> '{}' < v_value #>> '{}'
                       else v_actual #>> '{}' <= v_value #>> '{}' end;
    end if;
    return false;
  else
    return false;
  end case;
end;
$$;

-- Does a condition tree hold for the subject ({} always does).
create or replace function private.automation_test(cond jsonb, subject jsonb)
returns boolean
language plpgsql
stable
parallel safe
set search_path = ''
as $$
declare
  v_item jsonb;
begin
  if cond ? 'all' then
    for v_item in select jsonb_array_elements(cond -> 'all') loop
      if not private.automation_test(v_item, subject) then return false; end if;
    end loop;
    return true;
  elsif cond ? 'any' then
    for v_item in select jsonb_array_elements(cond -> 'any') loop
      if private.automation_test(v_item, subject) then return true; end if;
    end loop;
    return false;
  elsif cond ? 'field' then
    return private.automation_leaf(cond, subject);
  end if;
  return true;
end;
$$;

-- Each leaf with its actual value and result, for the log and the dry run.
create or replace function private.automation_explain(cond jsonb, subject jsonb)
returns jsonb
language sql
stable
parallel safe
set search_path = ''
as $$
  select coalesce(jsonb_agg(jsonb_build_object('field', l ->> 'field', 'op', l ->> 'op', 'value', l -> 'value',
                                               'actual', subject #> string_to_array(l ->> 'field', '.'),
                                               'result', private.automation_leaf(l, subject))), '[]')
    from jsonb_path_query(cond, 'strict $.**') l
   where jsonb_typeof(l) = 'object' and l ? 'field'
$$;

/**
 * ----
 * Section - Subjects, variables and actions
 * ----
 */

-- What conditions and variables read: the contact, the conversation, the event (or time
-- trigger), "now". Rows of the given tenant only.
create or replace function private.automation_subject(tenant_id uuid, contact_id uuid, conversation_id uuid,
                                                      event jsonb, as_of timestamptz)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'now', automation_subject.as_of,
    'event', automation_subject.event,
    'contact', (select jsonb_build_object('id', k.id, 'name', k.name, 'profile_name', k.profile_name,
                  'display_name', coalesce(k.name, k.profile_name), 'wa_id', k.wa_id, 'email', k.email,
                  'phone', k.phone, 'company', k.company, 'is_client', k.is_client, 'ltv', k.ltv,
                  'opt_in', k.opt_in, 'consent', k.consent, 'tags', to_jsonb(k.tags), 'attributes', k.attributes,
                  'total_conversations', k.total_conversations, 'total_messages', k.total_messages,
                  'created_at', k.created_at, 'last_inbound_at', k.last_inbound_at)
                  from public.contacts k
                 where k.tenant_id = automation_subject.tenant_id and k.id = automation_subject.contact_id),
    'conversation', (select jsonb_build_object('id', c.id, 'status', c.status, 'mode', c.mode,
                       'priority', c.priority, 'channel', c.channel, 'team_id', c.team_id,
                       'assignee_id', c.assignee_id, 'whatsapp_number_id', c.whatsapp_number_id,
                       'tags', to_jsonb(c.tags), 'last_intent', c.last_intent, 'unread_count', c.unread_count,
                       'inbound_count', c.inbound_count, 'outbound_count', c.outbound_count, 'csat', c.csat,
                       'window_open', coalesce(c.window_expires_at > automation_subject.as_of, false),
                       'last_customer_message_at', c.last_customer_message_at, 'created_at', c.created_at)
                       from public.conversations c
                      where c.tenant_id = automation_subject.tenant_id and c.id = automation_subject.conversation_id))
$$;

-- Fills the placeholders of a rule's texts: {{contact.name}} or {{contact.name|default}},
-- any field of the subject. Null when a variable has no value and no default.
create or replace function private.automation_render(text text, subject jsonb)
returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_out text := text;
  v_match text[];
  v_value text;
begin
  for v_match in select regexp_matches(text, '(\{\{\s*([a-z_]+(?:\.[A-Za-z0-9_]+)+)\s*(?:\|([^}]*))?\}\})', 'g') loop
    v_value := coalesce(nullif(subject #>> string_to_array(v_match[2], '.'), ''), v_match[3]);
    if v_value is null then
      return null;
    end if;
    v_out := replace(v_out, v_match[1], v_value);
  end loop;
  return v_out;
end;
$$;
comment on function private.automation_render(text, jsonb) is 'Fills {{field}} / {{field|default}} placeholders from a rule''s subject; null when one has no value and no default.';

-- A send_template variable as a source of private.render_template (the one template
-- renderer): {{contact.<field>|default}} and {{contact.attributes.<key>|default}} become its
-- {"field"} / {"attribute"} sources, a source object passes as is, any other text is filled
-- from the subject here and passed as a fixed {"value"} (null when it has no value).
create or replace function private.automation_template_source(variable jsonb, subject jsonb)
returns jsonb
language sql
immutable
set search_path = ''
as $$
  select case
    when jsonb_typeof(variable) = 'object' then variable
    when m is not null then jsonb_strip_nulls(case when m[2] is not null then jsonb_build_object('attribute', m[2])
      else jsonb_build_object('field', case m[1] when 'display_name' then 'name' else m[1] end) end
      || jsonb_build_object('default', m[3]))
    else jsonb_build_object('value', private.automation_render(variable #>> '{}', subject))
  end
    from (select regexp_match(variable #>> '{}', '^\{\{\s*contact\.(name|display_name|first_name|profile_name|email|phone|'
                                                 || 'wa_id|company|attributes\.([a-z0-9_]{1,60}))\s*(?:\|([^}]*))?\}\}$') m) x
$$;
comment on function private.automation_template_source(jsonb, jsonb) is 'Maps a send_template variable ({{contact.field|default}}, {{contact.attributes.key}}, a render_template source, or a text with subject placeholders) onto a private.render_template source.';

-- Is it quiet time for a tenant (its time zone): the reason, or null.
create or replace function private.automation_quiet(tenant_id uuid, as_of timestamptz)
returns text
language sql
stable
set search_path = ''
as $$
  select 'quiet hours ' || to_char(s.quiet_hours_start, 'HH24:MI') || '–' || to_char(s.quiet_hours_end, 'HH24:MI')
         || ' (' || t.timezone || ')'
    from public.automation_settings s
    join public.tenants t on t.id = s.tenant_id
   cross join lateral (select (automation_quiet.as_of at time zone t.timezone)::time as now_local) l
   where s.tenant_id = automation_quiet.tenant_id and s.quiet_hours_start is not null
     and case when s.quiet_hours_start < s.quiet_hours_end
              then l.now_local >= s.quiet_hours_start and l.now_local < s.quiet_hours_end
              else l.now_local >= s.quiet_hours_start or l.now_local < s.quiet_hours_end end
$$;

-- Does an action list send messages (caps and quiet hours apply).
create or replace function private.automation_sends(actions jsonb)
returns boolean
language sql
immutable
parallel safe
set search_path = ''
as $$
  select exists (select 1 from jsonb_array_elements(actions) a where a ->> 'type' in ('send_template', 'send_text'))
$$;

-- Raises a readable error for the first action that cannot work: unknown type, missing
-- parameter, a template that is not approved (or whose variables do not fit), a team or
-- webhook endpoint of another tenant. Checked when a rule is saved.
create or replace function private.automation_check_actions(tenant_id uuid, actions jsonb)
returns void
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_action jsonb;
  v_at text;
  v_n integer := 0;
  v_template public.message_templates;
  v_slots integer;
begin
  if jsonb_array_length(actions) not between 1 and 20 then
    raise exception 'a rule has 1 to 20 actions' using errcode = '22023';
  end if;
  for v_action in select jsonb_array_elements(actions) loop
    v_at := 'actions[' || v_n || ']';
    v_n := v_n + 1;
    if jsonb_typeof(v_action) <> 'object' then
      raise exception '% must be an object with a type', v_at using errcode = '22023';
    end if;
    case v_action ->> 'type'
    when 'send_template' then
      select * into v_template from public.message_templates t
       where t.tenant_id = automation_check_actions.tenant_id and t.name = v_action ->> 'template'
         and t.language = coalesce(v_action ->> 'language', 'pt_BR') and t.status = 'APPROVED' and t.is_active
       limit 1;
      if v_template.id is null then
        raise exception '%: template "%" (%) is not an approved template of this tenant', v_at,
          coalesce(v_action ->> 'template', ''), coalesce(v_action ->> 'language', 'pt_BR') using errcode = '22023',
          hint = 'Sync templates with Meta and name an APPROVED one.';
      end if;
      if coalesce(jsonb_typeof(v_action -> 'variables'), 'array') <> 'array'
         or exists (select 1 from jsonb_array_elements(coalesce(v_action -> 'variables', '[]')) v
                     where not (jsonb_typeof(v) = 'string' and length(v #>> '{}') between 1 and 1024
                                or jsonb_typeof(v) = 'object' and (v ? 'field' or v ? 'attribute' or v ? 'value'))) then
        raise exception '%.variables must be an array of texts (placeholders like {{contact.name|cliente}} allowed) or sources like {"attribute": "plano", "default": "básico"}', v_at
          using errcode = '22023';
      end if;
      select count(distinct m[1]) into v_slots
        from jsonb_array_elements(v_template.components) c
       cross join lateral regexp_matches(c ->> 'text', '\{\{\s*([0-9]+)\s*\}\}', 'g') m
       where upper(c ->> 'type') = 'BODY';
      if v_template.parameter_format = 'positional'
         and v_slots <> jsonb_array_length(coalesce(v_action -> 'variables', '[]')) then
        raise exception '%: template "%" has % body variables, the action gives %', v_at, v_template.name, v_slots,
          jsonb_array_length(coalesce(v_action -> 'variables', '[]')) using errcode = '22023';
      end if;
    when 'send_text' then
      if jsonb_typeof(v_action -> 'text') is distinct from 'string' or length(v_action ->> 'text') not between 1 and 4096 then
        raise exception '%.text must be a text of 1 to 4096 characters', v_at using errcode = '22023';
      end if;
    when 'add_tag', 'remove_tag' then
      if jsonb_typeof(v_action -> 'tag') is distinct from 'string' or length(v_action ->> 'tag') not between 1 and 60 then
        raise exception '%.tag must be a tag name of 1 to 60 characters', v_at using errcode = '22023';
      end if;
    when 'set_attribute' then
      if coalesce(v_action ->> 'key', '') !~ '^[a-z0-9_]{1,60}$' or not v_action ? 'value' then
        raise exception '% needs a key (a-z, 0-9, _) and a value', v_at using errcode = '22023';
      end if;
    when 'assign_team' then
      if not exists (select 1 from public.teams t where t.tenant_id = automation_check_actions.tenant_id
                        and t.id::text = v_action ->> 'team_id' and t.is_active) then
        raise exception '%: team_id must name an active team of this tenant', v_at using errcode = '22023';
      end if;
    when 'set_priority' then
      if coalesce(v_action ->> 'priority', '') not in ('low', 'normal', 'high', 'urgent') then
        raise exception '%.priority must be low, normal, high or urgent', v_at using errcode = '22023';
      end if;
    when 'resolve' then
      null;
    when 'call_webhook' then
      if not exists (select 1 from public.webhook_endpoints w where w.tenant_id = automation_check_actions.tenant_id
                        and w.id::text = v_action ->> 'endpoint_id') then
        raise exception '%: endpoint_id must name a webhook endpoint of this tenant', v_at using errcode = '22023',
          hint = 'Admins create endpoints with create_webhook_endpoint; deliveries are signed and retried.';
      end if;
    when 'start_flow' then
      if not exists (select 1 from public.flows f where f.tenant_id = automation_check_actions.tenant_id
                        and f.id::text = v_action ->> 'flow_id' and f.published_version_id is not null
                        and f.status in ('active', 'paused')) then
        raise exception '%: flow_id must name a published flow of this tenant', v_at using errcode = '22023',
          hint = 'Publish the flow (publish_flow) before a rule starts it.';
      end if;
    when 'create_ticket' then
      if jsonb_typeof(v_action -> 'title') is distinct from 'string' or length(v_action ->> 'title') not between 1 and 300 then
        raise exception '%.title must be a text of 1 to 300 characters', v_at using errcode = '22023';
      elsif coalesce(v_action ->> 'priority', 'medium') not in ('low', 'medium', 'high', 'critical') then
        raise exception '%.priority must be low, medium, high or critical', v_at using errcode = '22023';
      elsif v_action ? 'category' and coalesce(v_action ->> 'category', '') !~ '^[A-Za-z0-9_ -]{1,60}$' then
        raise exception '%.category must be 1 to 60 letters, digits, spaces, _ or -', v_at using errcode = '22023';
      elsif length(v_action ->> 'description') > 20000 then
        raise exception '%.description is longer than 20000 characters', v_at using errcode = '22023';
      end if;
    when 'create_lead' then
      if length(v_action ->> 'interest') > 300 then
        raise exception '%.interest is longer than 300 characters', v_at using errcode = '22023';
      elsif v_action ? 'score' and (jsonb_typeof(v_action -> 'score') <> 'number'
                                    or (v_action ->> 'score')::numeric not between 0 and 100
                                    or (v_action ->> 'score')::numeric % 1 <> 0) then
        raise exception '%.score must be a whole number from 0 to 100', v_at using errcode = '22023';
      end if;
    else
      raise exception '%: unknown action type "%"', v_at, coalesce(v_action ->> 'type', '') using errcode = '22023',
        hint = 'Use send_template, send_text, add_tag, remove_tag, set_attribute, assign_team, set_priority, resolve, '
               || 'call_webhook, start_flow, create_ticket or create_lead.';
    end case;
  end loop;
end;
$$;
comment on function private.automation_check_actions(uuid, jsonb) is 'Validates a rule''s actions against its tenant when the rule is saved; raises a readable error.';

-- The actions as they will run for one subject: messages get their Graph API body (and a
-- preview, as the customer reads it) with the variables filled in (templates by
-- private.render_template); a variable without a value leaves a problem the execution logs.
create or replace function private.automation_resolve(tenant_id uuid, actions jsonb, subject jsonb)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_action jsonb;
  v_out jsonb := '[]';
  v_template uuid;
  v_rendered jsonb;
  v_text text;
begin
  for v_action in select jsonb_array_elements(actions) loop
    if v_action ->> 'type' = 'send_template' and subject -> 'contact' ->> 'id' is not null then
      select t.id into v_template from public.message_templates t
       where t.tenant_id = automation_resolve.tenant_id and t.name = v_action ->> 'template'
         and t.language = coalesce(v_action ->> 'language', 'pt_BR') and t.status = 'APPROVED' and t.is_active
       limit 1;
      v_rendered := case when v_template is not null then private.render_template(automation_resolve.tenant_id,
        v_template, (subject -> 'contact' ->> 'id')::uuid, jsonb_build_object('body', (
          select coalesce(jsonb_object_agg(n::text, private.automation_template_source(v, subject)), '{}')
            from jsonb_array_elements(coalesce(v_action -> 'variables', '[]')) with ordinality x(v, n)))) end;
      v_action := v_action || case
        when v_rendered is null then jsonb_build_object('problem', 'the template is no longer approved')
        when jsonb_array_length(v_rendered -> 'missing') > 0 then jsonb_build_object('problem',
          'no value for this subject and no default: ' || (select string_agg(m, ', ')
                                                           from jsonb_array_elements_text(v_rendered -> 'missing') m))
        else jsonb_build_object('preview', v_rendered ->> 'text', 'message', v_rendered -> 'message') end;
    elsif v_action ->> 'type' = 'send_text' then
      v_text := private.automation_render(v_action ->> 'text', subject);
      v_action := v_action || case
        when v_text is null then jsonb_build_object('problem', 'a variable has no value for this subject and no default')
        else jsonb_build_object('preview', v_text,
                                'message', jsonb_build_object('type', 'text', 'text', jsonb_build_object('body', v_text))) end;
    end if;
    v_out := v_out || jsonb_build_array(v_action);
  end loop;
  return v_out;
end;
$$;
comment on function private.automation_resolve(uuid, jsonb, jsonb) is 'The actions for one subject: template (through private.render_template) and text messages resolved to Graph API bodies plus a preview.';

/**
 * ----
 * Section - Evaluation and execution
 * ----
 */

-- The rest of the transaction acts for a rule on behalf of an event: what it emits carries
-- the cause, a depth one deeper and the rule (the queue row keeps it). Nulls clear it.
create or replace function private.automation_context(event_id uuid, depth integer, rule_id uuid)
returns void
language sql
set search_path = ''
as $$
  select private.set_event_cause(automation_context.event_id, coalesce(automation_context.depth, 0)),
         set_config('zapbase.automation_rule_id', coalesce(automation_context.rule_id::text, ''), true)
$$;

-- The contact's live conversation, or a new one on the tenant's default number (a rule
-- reaching out to a contact with no conversation, e.g. before a certificate expires).
create or replace function private.automation_conversation(tenant_id uuid, contact_id uuid)
returns public.conversations
language plpgsql
set search_path = ''
as $$
declare
  v_conv public.conversations;
begin
  select * into v_conv from public.conversations c
   where c.tenant_id = automation_conversation.tenant_id and c.contact_id = automation_conversation.contact_id
     and c.status in ('open', 'waiting', 'pending')
   order by c.last_message_at desc nulls last limit 1;
  if v_conv.id is not null then
    return v_conv;
  end if;
  insert into public.conversations (tenant_id, contact_id, whatsapp_number_id, mode, status)
  select automation_conversation.tenant_id, automation_conversation.contact_id, n.id, 'human', 'waiting'
    from public.whatsapp_numbers n
   where n.tenant_id = automation_conversation.tenant_id and n.status = 'active'
   order by n.is_default desc, n.created_at limit 1
  returning * into v_conv;
  if v_conv.id is null then
    raise exception 'no active WhatsApp number to reach the contact from' using errcode = '55000';
  end if;
  update public.contacts c set total_conversations = c.total_conversations + 1
   where c.tenant_id = automation_conversation.tenant_id and c.id = automation_conversation.contact_id;
  return v_conv;
end;
$$;

-- One resolved action of an execution. Raises what went wrong (the caller logs it);
-- returns {"outcome": "ok" | "skipped", ...}.
create or replace function private.automation_act(exec public.automation_executions, action jsonb,
                                                   as_of timestamptz, sent_before integer)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_conv public.conversations;
  v_reason text;
  v_cap integer;
  v_sent integer;
  v_message public.messages;
  v_event uuid;
  v_delivery uuid;
  v_tz text;
  v_flow public.flow_executions;
  v_created record;  -- a ticket or lead (their modules come later in the migrations)
begin
  if exec.conversation_id is not null then
    select * into v_conv from public.conversations c
     where c.tenant_id = exec.tenant_id and c.id = exec.conversation_id;
  end if;
  case action ->> 'type'
  when 'send_template', 'send_text' then
    if action ? 'problem' then
      raise exception '%', action ->> 'problem';
    end if;
    if exec.contact_id is null then
      raise exception 'this subject has no contact to send to';
    end if;
    v_reason := private.automation_quiet(exec.tenant_id, as_of);
    if v_reason is not null then
      return jsonb_build_object('outcome', 'skipped', 'error', v_reason);
    end if;
    select t.timezone, coalesce(s.max_messages_per_contact_per_day, 3) into v_tz, v_cap
      from public.tenants t left join public.automation_settings s on s.tenant_id = t.id
     where t.id = exec.tenant_id;
    select coalesce(sum(e.messages_sent), 0) + sent_before into v_sent from public.automation_executions e
     where e.tenant_id = exec.tenant_id and e.contact_id = exec.contact_id
       and e.executed_at >= date_trunc('day', as_of at time zone v_tz) at time zone v_tz;
    if v_sent >= v_cap then
      return jsonb_build_object('outcome', 'skipped',
        'error', 'daily cap reached: ' || v_cap || ' automated messages to this contact today');
    end if;
    if v_conv.id is null or v_conv.status not in ('open', 'waiting', 'pending') then
      v_conv := private.automation_conversation(exec.tenant_id, exec.contact_id);
    end if;
    v_message := private.queue_outbound(v_conv, action -> 'message', 'system');
    return jsonb_build_object('outcome', 'ok', 'message_id', v_message.id, 'conversation_id', v_conv.id);
  when 'add_tag', 'remove_tag' then
    if exec.contact_id is null then
      raise exception 'this subject has no contact to tag';
    end if;
    if action ->> 'type' = 'add_tag' then
      insert into public.tags (tenant_id, name) values (exec.tenant_id, action ->> 'tag')
      on conflict (tenant_id, name) do nothing;
      update public.contacts k set tags = k.tags || (action ->> 'tag')
       where k.tenant_id = exec.tenant_id and k.id = exec.contact_id and not (action ->> 'tag') = any (k.tags);
    else
      update public.contacts k set tags = array_remove(k.tags, action ->> 'tag')
       where k.tenant_id = exec.tenant_id and k.id = exec.contact_id and (action ->> 'tag') = any (k.tags);
    end if;
  when 'set_attribute' then
    if exec.contact_id is null then
      raise exception 'this subject has no contact';
    end if;
    update public.contacts k set attributes = k.attributes || jsonb_build_object(action ->> 'key', action -> 'value')
     where k.tenant_id = exec.tenant_id and k.id = exec.contact_id;
  when 'assign_team', 'set_priority', 'resolve' then
    if v_conv.id is null then
      raise exception 'this subject has no conversation';
    end if;
    if action ->> 'type' = 'assign_team' then
      if not exists (select 1 from public.teams t where t.tenant_id = exec.tenant_id
                        and t.id::text = action ->> 'team_id' and t.is_active) then
        raise exception 'the team is inactive or was deleted';
      end if;
      update public.conversations c set team_id = (action ->> 'team_id')::uuid,
             queued_at = case when c.assignee_id is null then coalesce(c.queued_at, now()) else c.queued_at end
       where c.id = v_conv.id;
    elsif action ->> 'type' = 'set_priority' then
      update public.conversations c set priority = action ->> 'priority' where c.id = v_conv.id;
    elsif v_conv.status in ('open', 'waiting', 'pending') then
      update public.conversations c set status = 'resolved' where c.id = v_conv.id;
    end if;
  when 'start_flow', 'create_ticket' then
    if v_conv.id is null then
      raise exception 'this subject has no conversation';
    end if;
    if action ->> 'type' = 'start_flow' then
      select * into v_conv from public.conversations c where c.id = v_conv.id for update;
      v_flow := private.flow_start_now(v_conv, (action ->> 'flow_id')::uuid, null);
      return jsonb_build_object('outcome', 'ok', 'flow_execution_id', v_flow.id);
    end if;
    select t.id, t.protocol into v_created
      from private.open_ticket(v_conv, action ->> 'title', action ->> 'description', action ->> 'priority',
                               action ->> 'category', null, null, 'automation') t;
    return jsonb_build_object('outcome', 'ok', 'ticket_id', v_created.id, 'protocol', v_created.protocol);
  when 'create_lead' then
    if exec.contact_id is null then
      raise exception 'this subject has no contact';
    end if;
    select l.id into v_created
      from private.create_lead(exec.tenant_id, exec.contact_id, source => 'automation',
                               source_ref => exec.rule_id::text, interest => action ->> 'interest',
                               score => (action ->> 'score')::integer) l;
    return jsonb_build_object('outcome', 'ok', 'lead_id', v_created.id);
  when 'call_webhook' then
    if not exists (select 1 from public.webhook_endpoints w where w.tenant_id = exec.tenant_id
                      and w.id::text = action ->> 'endpoint_id' and w.enabled) then
      raise exception 'the webhook endpoint is disabled or was deleted';
    end if;
    v_event := private.emit(exec.tenant_id, 'automation.webhook', 'automation_executions', exec.id,
      jsonb_build_object('rule_id', exec.rule_id, 'rule_version', exec.rule_version, 'execution_id', exec.id,
                         'event_id', exec.event_id, 'contact_id', exec.contact_id,
                         'conversation_id', exec.conversation_id, 'data', action -> 'data'));
    insert into public.webhook_deliveries (tenant_id, endpoint_id, event_id, event_created_at, event_type)
    select e.tenant_id, (action ->> 'endpoint_id')::uuid, e.id, e.created_at, e.type
      from public.events e where e.tenant_id = exec.tenant_id and e.id = v_event
    on conflict (endpoint_id, event_id) do nothing;
    select d.id into v_delivery from public.webhook_deliveries d
     where d.endpoint_id = (action ->> 'endpoint_id')::uuid and d.event_id = v_event;
    perform pg_notify('zapbase_webhooks', '');
    return jsonb_build_object('outcome', 'ok', 'event_id', v_event, 'delivery_id', v_delivery);
  else
    raise exception 'unknown action type "%"', action ->> 'type';
  end case;
  return jsonb_build_object('outcome', 'ok');
end;
$$;
comment on function private.automation_act(public.automation_executions, jsonb, timestamptz, integer) is 'Runs one resolved action (quiet hours and the daily cap checked for messages; webhooks through the signed delivery queue); raises on failure.';

-- Runs an execution's actions in order, each in its own subtransaction: a failing action
-- is logged and the next one runs. Returns succeeded, partial or failed.
create or replace function private.automation_execute(execution_id uuid, as_of timestamptz)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_exec public.automation_executions;
  v_action jsonb;
  v_result jsonb;
  v_results jsonb := '[]';
  v_index integer := 0;
  v_sent integer := 0;
  v_ok integer := 0;
  v_status text;
begin
  select * into v_exec from public.automation_executions e where e.id = automation_execute.execution_id for update;
  perform private.automation_context(v_exec.event_id, v_exec.event_depth, v_exec.rule_id);
  for v_action in select jsonb_array_elements(v_exec.actions) loop
    begin
      v_result := private.automation_act(v_exec, v_action, as_of, v_sent);
    exception when others then
      v_result := jsonb_build_object('outcome', 'error', 'error', left(sqlerrm, 500));
    end;
    v_results := v_results || jsonb_build_array(
      jsonb_build_object('index', v_index, 'type', v_action ->> 'type') || v_result);
    v_sent := v_sent + case when v_result ? 'message_id' then 1 else 0 end;
    v_ok := v_ok + case when v_result ->> 'outcome' = 'ok' then 1 else 0 end;
    v_index := v_index + 1;
  end loop;
  v_status := case when v_ok = v_index then 'succeeded' when v_ok = 0 then 'failed' else 'partial' end;
  update public.automation_executions e
     set status = v_status, action_results = v_results, messages_sent = v_sent, executed_at = automation_execute.as_of
   where e.id = v_exec.id;
  perform private.automation_context(null, 0, null);
  return v_status;
end;
$$;
comment on function private.automation_execute(uuid, timestamptz) is 'Runs the resolved actions of an execution (automatic, or approved) under the loop guard and logs each outcome.';

-- A rule matched a subject: log it once per rule and dedupe key, then stop (loop guard, cap),
-- suggest (dispatch_queue) or act. Returns the execution's status, null when already logged.
create or replace function private.automation_matched(
  rule public.automation_rules, subject jsonb, event_id uuid, event_created_at timestamptz, event_depth integer,
  dedupe_key text, as_of timestamptz
) returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_contact uuid := (subject -> 'contact' ->> 'id')::uuid;
  v_conv uuid := (subject -> 'conversation' ->> 'id')::uuid;
  v_status text := case when rule.mode = 'suggest' then 'suggested' else 'failed' end;
  v_error text;
  v_actions jsonb := '[]';
  v_id uuid;
begin
  if event_depth > 3 then
    v_status := 'stopped';
    v_error := 'loop guard: the event is ' || event_depth || ' automation steps deep (at most 3); nothing was done';
  elsif rule.max_per_contact is not null and v_contact is not null and (
    select count(*) from public.automation_executions e
     where e.tenant_id = rule.tenant_id and e.contact_id = v_contact and e.rule_id = rule.id
       and e.status in ('suggested', 'succeeded', 'partial')) >= rule.max_per_contact then
    v_status := 'capped';
    v_error := 'this rule already acted ' || rule.max_per_contact || ' time(s) on this contact (max_per_contact)';
  else
    v_actions := private.automation_resolve(rule.tenant_id, rule.actions, subject);
  end if;
  insert into public.automation_executions (tenant_id, rule_id, rule_version, trigger_type, dedupe_key, event_id,
    event_created_at, event_type, event_depth, contact_id, conversation_id, mode, status, condition_results,
    actions, error)
  values (rule.tenant_id, rule.id, rule.version, rule.trigger_type, automation_matched.dedupe_key,
    automation_matched.event_id, automation_matched.event_created_at, subject -> 'event' ->> 'type',
    automation_matched.event_depth, v_contact, v_conv, rule.mode, v_status,
    private.automation_explain(rule.conditions, subject), v_actions, v_error)
  on conflict on constraint automation_executions_rule_id_dedupe_key_key do nothing
  returning id into v_id;
  if v_id is null or v_status in ('stopped', 'capped') then
    return case when v_id is not null then v_status end;
  end if;
  if rule.mode = 'automatic' then
    return private.automation_execute(v_id, as_of);
  end if;
  perform private.automation_context(automation_matched.event_id, automation_matched.event_depth, rule.id);
  insert into public.dispatch_queue (tenant_id, execution_id, rule_id, contact_id, conversation_id, actions, preview,
                                     expires_at)
  values (rule.tenant_id, v_id, rule.id, v_contact, v_conv, v_actions,
          left((select string_agg(a ->> 'preview', E'\n---\n') from jsonb_array_elements(v_actions) a), 4096),
          automation_matched.as_of + make_interval(mins => rule.approval_ttl_minutes));
  perform private.emit(rule.tenant_id, 'automation.dispatch_pending', 'automation_executions', v_id,
    jsonb_build_object('execution_id', v_id, 'rule_id', rule.id, 'rule_name', rule.name,
                       'contact_id', v_contact, 'conversation_id', v_conv));
  perform private.automation_context(null, 0, null);
  return v_status;
end;
$$;
comment on function private.automation_matched(public.automation_rules, jsonb, uuid, timestamptz, integer, text, timestamptz) is 'Logs a match once per rule and dedupe key, then stops (loop guard), caps, queues a suggestion or runs the actions.';

-- The subject of an event: its contact and conversation, looked up in the event's tenant only.
create or replace function private.automation_event_subject(e public.events, as_of timestamptz)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_uuid constant text := '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$';
  v_contact uuid := case when e.subject_table = 'contacts' then e.subject_id
                         when e.payload ->> 'contact_id' ~ v_uuid then (e.payload ->> 'contact_id')::uuid end;
  v_conv uuid := case when e.subject_table = 'conversations' then e.subject_id
                      when e.payload ->> 'conversation_id' ~ v_uuid then (e.payload ->> 'conversation_id')::uuid end;
begin
  if v_conv is not null then
    select c.contact_id into v_contact from public.conversations c where c.tenant_id = e.tenant_id and c.id = v_conv;
  elsif v_contact is not null then
    select c.id into v_conv from public.conversations c
     where c.tenant_id = e.tenant_id and c.contact_id = v_contact and c.status in ('open', 'waiting', 'pending')
     order by c.last_message_at desc nulls last limit 1;
  end if;
  return private.automation_subject(e.tenant_id, v_contact, v_conv,
    jsonb_build_object('id', e.id, 'type', e.type, 'payload', e.payload, 'depth', e.depth, 'actor_role', e.actor_role),
    as_of);
end;
$$;

-- Evaluates one queued event against its tenant's active rules for its type, by priority;
-- the rule that caused the event is skipped; stop_after ends the walk. Returns matches.
create or replace function private.automation_evaluate_event(item public.automation_queue, as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_event public.events;
  v_subject jsonb;
  v_rule public.automation_rules;
  v_matches integer := 0;
begin
  select * into v_event from public.events e
   where e.tenant_id = item.tenant_id and e.created_at = item.event_created_at and e.id = item.event_id;
  if v_event.id is null then
    return 0;
  end if;
  v_subject := private.automation_event_subject(v_event, as_of);
  for v_rule in
    select * from public.automation_rules r
     where r.tenant_id = v_event.tenant_id and r.event_type = v_event.type and r.is_active
       and r.id is distinct from item.caused_by_rule_id
     order by r.priority, r.created_at
  loop
    continue when not private.automation_test(v_rule.conditions, v_subject);
    perform private.automation_matched(v_rule, v_subject, v_event.id, v_event.created_at, v_event.depth,
                                       v_event.id::text, as_of);
    v_matches := v_matches + 1;
    exit when v_rule.stop_after;
  end loop;
  return v_matches;
end;
$$;

-- The consumer: claims queued events (SKIP LOCKED: replicas and the minute job side by
-- side), evaluates each in a subtransaction and deletes it; an evaluation that raises is
-- retried on the next run, and left with its error after three attempts.
create or replace function private.automation_consume(batch_size integer, as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_item public.automation_queue;
  v_count integer := 0;
begin
  for v_item in
    select * from public.automation_queue q where q.failed_at is null
     order by q.created_at limit automation_consume.batch_size
     for update skip locked
  loop
    begin
      perform private.automation_evaluate_event(v_item, as_of);
      delete from public.automation_queue q where q.id = v_item.id;
    exception when others then
      update public.automation_queue q
         set attempts = q.attempts + 1, last_error = left(sqlerrm, 2000),
             failed_at = case when q.attempts + 1 >= 3 then now() end
       where q.id = v_item.id;
    end;
    perform private.automation_context(null, 0, null);
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;
comment on function private.automation_consume(integer, timestamptz) is 'Evaluates up to batch_size queued events (SKIP LOCKED); returns how many were claimed.';

create or replace function public.automation_run(batch_size integer default 200)
returns integer
language sql
security definer
set search_path = ''
as $$
  select private.automation_consume(least(greatest(automation_run.batch_size, 1), 5000), now())
$$;
comment on function public.automation_run(integer) is 'Worker: evaluate queued events against the automation rules of their tenant (woken by NOTIFY zapbase_automation); returns how many were claimed.';

-- A date of a contact attribute, or null when it is not one.
create or replace function private.automation_date(value text)
returns date
language plpgsql
immutable
set search_path = ''
as $$
begin
  return case when value ~ '^\d{4}-\d{2}-\d{2}' then left(value, 10)::date end;
exception when others then
  return null;
end;
$$;

-- The subjects a time rule applies to at as_of, with the key that makes each occurrence act
-- once: a conversation and the moment its customer started waiting, a contact and the day.
create or replace function private.automation_time_candidates(rule public.automation_rules, as_of timestamptz)
returns table (contact_id uuid, conversation_id uuid, dedupe_key text, payload jsonb)
language sql
stable
set search_path = ''
as $$
  select c.contact_id, c.id, c.id || ':' || extract(epoch from w.since),
         jsonb_build_object('waiting_since', w.since, 'minutes', rule.wait_minutes)
    from public.conversations c
   cross join lateral (
     select min(m.created_at) as since from public.messages m
      where m.tenant_id = c.tenant_id and m.conversation_id = c.id and m.direction = 'inbound'
        and m.created_at > coalesce((select max(o.created_at) from public.messages o
                                      where o.tenant_id = c.tenant_id and o.conversation_id = c.id
                                        and o.direction = 'outbound'), '-infinity')) w
   where rule.trigger_type = 'no_agent_reply' and c.tenant_id = rule.tenant_id
     and c.status in ('open', 'waiting', 'pending') and c.mode = 'human'
     and w.since <= as_of - make_interval(mins => rule.wait_minutes)
  union all
  select c.contact_id, c.id, c.id || ':' || extract(epoch from c.last_customer_message_at),
         jsonb_build_object('last_customer_message_at', c.last_customer_message_at, 'minutes', rule.wait_minutes)
    from public.conversations c
   where rule.trigger_type = 'since_customer_message' and c.tenant_id = rule.tenant_id
     and c.status in ('open', 'waiting', 'pending')
     and c.last_customer_message_at <= as_of - make_interval(mins => rule.wait_minutes)
  union all
  select k.id, (select c.id from public.conversations c
                 where c.tenant_id = k.tenant_id and c.contact_id = k.id and c.status in ('open', 'waiting', 'pending')
                 order by c.last_message_at desc nulls last limit 1),
         k.id || ':' || d.today, jsonb_build_object('attribute', rule.date_attribute, 'date', d.value,
                                                   'offset_days', rule.date_offset_days)
    from public.contacts k
    join public.tenants t on t.id = k.tenant_id
   cross join lateral (select private.automation_date(k.attributes ->> rule.date_attribute) as value,
                              (as_of at time zone t.timezone)::date as today) d
   where rule.trigger_type = 'date_attribute' and k.tenant_id = rule.tenant_id and k.lgpd_state = 'active'
     and k.attributes ? rule.date_attribute
     and case when rule.date_yearly
              then to_char(d.value + rule.date_offset_days, 'MM-DD') = to_char(d.today, 'MM-DD')
              else d.value + rule.date_offset_days = d.today end
$$;
comment on function private.automation_time_candidates(public.automation_rules, timestamptz) is 'Subjects a time rule applies to at as_of (waiting conversations, conversations idle since the customer wrote, contacts whose date attribute + offset is today) with their dedupe keys.';

/**
 * ----
 * Section - Jobs
 * ----
 */

-- Every minute: the event backlog (what no worker took), suggestions past their validity,
-- then the time rules of every tenant by priority. Time rules that send wait out quiet
-- hours (their subjects still qualify afterwards); date rules scan once a tenant-local day.
create or replace function private.job_automation_rules(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_count integer;
  v_rows integer;
  v_rule public.automation_rules;
  v_candidate record;
  v_subject jsonb;
  v_tenant uuid;
  v_stopped uuid[] := '{}';
  v_today date;
begin
  v_count := private.automation_consume(5000, as_of);
  with expired as (
    update public.dispatch_queue d set status = 'expired'
     where d.status = 'pending' and d.expires_at <= as_of
    returning d.tenant_id, d.execution_id
  )
  update public.automation_executions e set status = 'expired', error = 'nobody approved it in time'
    from expired x where e.tenant_id = x.tenant_id and e.id = x.execution_id;
  get diagnostics v_rows = row_count;
  v_count := v_count + v_rows;
  for v_rule in
    select * from public.automation_rules r where r.is_active and r.trigger_type <> 'event'
     order by r.tenant_id, r.priority, r.created_at
  loop
    if v_rule.tenant_id is distinct from v_tenant then
      v_tenant := v_rule.tenant_id;
      v_stopped := '{}';
    end if;
    continue when private.automation_sends(v_rule.actions) and private.automation_quiet(v_rule.tenant_id, as_of) is not null;
    if v_rule.trigger_type = 'date_attribute' then
      select (as_of at time zone t.timezone)::date into v_today from public.tenants t where t.id = v_rule.tenant_id;
      continue when v_rule.scanned_on >= v_today;
      update public.automation_rules r set scanned_on = v_today where r.id = v_rule.id;
    end if;
    for v_candidate in select * from private.automation_time_candidates(v_rule, as_of) loop
      continue when coalesce(v_candidate.conversation_id, v_candidate.contact_id) = any (v_stopped);
      v_subject := private.automation_subject(v_rule.tenant_id, v_candidate.contact_id, v_candidate.conversation_id,
        jsonb_build_object('type', 'time.' || v_rule.trigger_type, 'payload', v_candidate.payload, 'depth', 0), as_of);
      continue when not private.automation_test(v_rule.conditions, v_subject);
      if private.automation_matched(v_rule, v_subject, null, null, 0, v_candidate.dedupe_key, as_of) is not null then
        v_count := v_count + 1;
      end if;
      if v_rule.stop_after then
        v_stopped := v_stopped || coalesce(v_candidate.conversation_id, v_candidate.contact_id);
      end if;
    end loop;
  end loop;
  return v_count;
end;
$$;
comment on function private.job_automation_rules(timestamptz) is 'Job automation_rules: queued events, expiry of suggestions, time-triggered rules.';

insert into public.job_schedules (name, description, cron, function_name) values
  ('automation_rules', 'Automation rules: evaluates queued events no worker took, expires suggestions past their validity, runs time-triggered rules (no agent reply, since the customer''s last message, date attributes).',
   '* * * * *', 'private.job_automation_rules')
on conflict (name) do update set description = excluded.description, function_name = excluded.function_name,
  runner = excluded.runner;

/**
 * ----
 * Section - Event types of this module
 * ----
 */
insert into public.event_types (type, module, description) values
  ('automation.dispatch_pending', 'automation', 'A rule in suggest mode matched: its actions wait in dispatch_queue for approval (payload: execution, rule, contact, conversation).'),
  ('automation.dispatch_decided', 'automation', 'A suggestion was approved (and executed: outcome) or rejected (reason) by a member.'),
  ('automation.webhook', 'automation', 'A rule''s call_webhook action: sent to the endpoint the action names (and to endpoints subscribed to it), with the rule, execution, contact and conversation.')
on conflict (type) do update set module = excluded.module, description = excluded.description;

/**
 * ----
 * Section - Triggers
 * ----
 */

-- Enqueues, in the emitting transaction, the events an active rule of the tenant listens
-- to, with the rule whose action emitted it (the loop guard's memory).
create or replace function private.tg_events_automation()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if exists (select 1 from public.automation_rules r
              where r.tenant_id = new.tenant_id and r.event_type = new.type and r.is_active) then
    insert into public.automation_queue (tenant_id, event_id, event_created_at, caused_by_rule_id)
    values (new.tenant_id, new.id, new.created_at,
            nullif(current_setting('zapbase.automation_rule_id', true), '')::uuid);
    perform pg_notify('zapbase_automation', '');
  end if;
  return null;
end;
$$;
drop trigger if exists _600_automation on public.events;
create trigger _600_automation after insert on public.events
  for each row execute function private.tg_events_automation();

-- Rules: only the tenant's managers write (a clear error before RLS's generic one, and
-- before anything about another tenant is looked at); conditions and actions validated;
-- the version follows what changes behaviour.
create or replace function private.tg_automation_rules_check()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if private.request_role() = 'authenticated' and not private.has_role(new.tenant_id, 'manager') then
    raise exception 'automation rules are managed by tenant managers' using errcode = '42501';
  end if;
  perform private.automation_check_conditions(new.conditions);
  perform private.automation_check_actions(new.tenant_id, new.actions);
  if tg_op = 'INSERT' then
    new.version := 1;
    new.created_by := coalesce(new.created_by, auth.uid());
  elsif (new.trigger_type, new.event_type, new.wait_minutes, new.date_attribute, new.date_offset_days, new.date_yearly,
         new.conditions, new.actions, new.mode)
        is distinct from
        (old.trigger_type, old.event_type, old.wait_minutes, old.date_attribute, old.date_offset_days, old.date_yearly,
         old.conditions, old.actions, old.mode) then
    new.version := old.version + 1;
  end if;
  return new;
end;
$$;

-- Settings: managers only; approvers are agents (or more) of the same tenant.
create or replace function private.tg_automation_settings_check()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if private.request_role() = 'authenticated' and not private.has_role(new.tenant_id, 'manager') then
    raise exception 'automation settings are managed by tenant managers' using errcode = '42501';
  end if;
  if exists (select 1 from unnest(new.approver_member_ids) a(id)
              where not exists (select 1 from public.members m where m.tenant_id = new.tenant_id and m.id = a.id
                                   and m.role >= 'agent')) then
    raise exception 'approver_member_ids must name agents of this tenant' using errcode = '23503';
  end if;
  return new;
end;
$$;

drop trigger if exists _200_check on public.automation_rules;
create trigger _200_check before insert or update on public.automation_rules
  for each row execute function private.tg_automation_rules_check();
drop trigger if exists _200_check on public.automation_settings;
create trigger _200_check before insert or update on public.automation_settings
  for each row execute function private.tg_automation_settings_check();
do $$
declare
  v_table text;
begin
  foreach v_table in array array['automation_rules', 'automation_settings', 'dispatch_queue'] loop
    execute format('drop trigger if exists _100_set_updated_at on public.%I', v_table);
    execute format('create trigger _100_set_updated_at before update on public.%I
                    for each row execute function private.tg_set_updated_at()', v_table);
  end loop;
end
$$;
drop trigger if exists _900_audit on public.automation_rules;
create trigger _900_audit after insert or update of name, description, trigger_type, event_type, wait_minutes,
  date_attribute, date_offset_days, date_yearly, conditions, actions, mode, priority, is_active, stop_after,
  max_per_contact, approval_ttl_minutes or delete on public.automation_rules
  for each row execute function private.tg_audit();
drop trigger if exists _900_audit on public.automation_settings;
create trigger _900_audit after insert or update or delete on public.automation_settings
  for each row execute function private.tg_audit();

/**
 * ----
 * Section - Public RPCs (SECURITY DEFINER in `private`, granted to authenticated;
 * `public` holds SECURITY INVOKER wrappers that PostgREST exposes)
 * ----
 */

-- The caller's member row when they may decide suggestions of a tenant: managers, and
-- agents the tenant lists as approvers.
create or replace function private.automation_approver(tenant_id uuid)
returns public.members
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_member public.members := private.require_role(automation_approver.tenant_id, 'agent');
begin
  if v_member.role < 'manager' and not exists (
    select 1 from public.automation_settings s
     where s.tenant_id = automation_approver.tenant_id and v_member.id = any (s.approver_member_ids)) then
    raise exception 'approving automation suggestions requires the manager role or being one of the tenant''s approvers'
      using errcode = '42501';
  end if;
  return v_member;
end;
$$;

-- Approves (then executes, as approved) or rejects suggestions, one or many, all or none.
create or replace function private.decide_dispatch(ids uuid[], approve boolean, reason text)
returns setof public.dispatch_queue
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_item public.dispatch_queue;
  v_member public.members;
  v_outcome text;
begin
  if coalesce(cardinality(ids), 0) not between 1 and 500 then
    raise exception 'decide 1 to 500 suggestions at a time' using errcode = '22023';
  end if;
  if not approve and length(btrim(coalesce(reason, ''))) not between 3 and 1000 then
    raise exception 'say why the suggestion is rejected (3 to 1000 characters)' using errcode = '22023';
  end if;
  if (select count(*) from public.dispatch_queue d where d.id = any (ids) and private.is_member(d.tenant_id))
     <> (select count(distinct i) from unnest(ids) i) then
    raise exception 'suggestion not found' using errcode = 'P0002';
  end if;
  for v_item in select * from public.dispatch_queue d where d.id = any (ids) order by d.created_at for update loop
    v_member := private.automation_approver(v_item.tenant_id);
    if v_item.status <> 'pending' then
      raise exception 'this suggestion was already %', v_item.status using errcode = '55000';
    end if;
    if v_item.expires_at <= now() then
      raise exception 'this suggestion expired at %', v_item.expires_at using errcode = '55000';
    end if;
    if approve then
      update public.dispatch_queue d set status = 'approved', decided_by = v_member.id, decided_at = now()
       where d.id = v_item.id;
      v_outcome := private.automation_execute(v_item.execution_id, now());
      update public.dispatch_queue d set outcome = v_outcome where d.id = v_item.id returning * into v_item;
    else
      update public.dispatch_queue d
         set status = 'rejected', decided_by = v_member.id, decided_at = now(), reject_reason = btrim(reason)
       where d.id = v_item.id
      returning * into v_item;
      update public.automation_executions e set status = 'rejected', error = 'rejected: ' || btrim(reason)
       where e.tenant_id = v_item.tenant_id and e.id = v_item.execution_id;
    end if;
    perform private.emit(v_item.tenant_id, 'automation.dispatch_decided', 'dispatch_queue', v_item.id,
      jsonb_build_object('dispatch_id', v_item.id, 'execution_id', v_item.execution_id, 'rule_id', v_item.rule_id,
                         'status', v_item.status, 'outcome', v_item.outcome, 'reason', v_item.reject_reason,
                         'decided_by', v_member.id));
    return next v_item;
  end loop;
end;
$$;

create or replace function public.approve_dispatch(ids uuid[])
returns setof public.dispatch_queue
language sql
security invoker
set search_path = ''
as $$ select * from private.decide_dispatch(approve_dispatch.ids, true, null) $$;
comment on function public.approve_dispatch(uuid[]) is 'Managers and approver agents: approve pending suggestions (one or many, all or none); each runs at once, as approved; returns the rows with their outcome.';

create or replace function public.reject_dispatch(ids uuid[], reason text)
returns setof public.dispatch_queue
language sql
security invoker
set search_path = ''
as $$ select * from private.decide_dispatch(reject_dispatch.ids, false, reject_dispatch.reason) $$;
comment on function public.reject_dispatch(uuid[], text) is 'Managers and approver agents: reject pending suggestions with a reason (kept, with who decided).';

-- Evaluates a saved rule (active or not) against the tenant's recent events of its type, or
-- the subjects of its time trigger now, without acting or logging anything.
create or replace function private.dry_run_automation_rule(rule_id uuid, max_events integer)
returns table (event_id uuid, event_type text, event_at timestamptz, contact_id uuid, conversation_id uuid,
               matched boolean, conditions jsonb, actions jsonb)
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_rule public.automation_rules;
  v_event public.events;
  v_subject jsonb;
  v_candidate record;
begin
  select * into v_rule from public.automation_rules r where r.id = dry_run_automation_rule.rule_id;
  if v_rule.id is null or not private.is_member(v_rule.tenant_id) then
    raise exception 'automation rule not found' using errcode = 'P0002';
  end if;
  perform private.require_role(v_rule.tenant_id, 'manager');
  if v_rule.trigger_type = 'event' then
    for v_event in
      select * from public.events e where e.tenant_id = v_rule.tenant_id and e.type = v_rule.event_type
       order by e.created_at desc limit least(greatest(max_events, 1), 200)
    loop
      v_subject := private.automation_event_subject(v_event, now());
      event_id := v_event.id;
      event_type := v_event.type;
      event_at := v_event.created_at;
      contact_id := (v_subject -> 'contact' ->> 'id')::uuid;
      conversation_id := (v_subject -> 'conversation' ->> 'id')::uuid;
      matched := private.automation_test(v_rule.conditions, v_subject);
      conditions := private.automation_explain(v_rule.conditions, v_subject);
      actions := case when matched then private.automation_resolve(v_rule.tenant_id, v_rule.actions, v_subject) end;
      return next;
    end loop;
  else
    for v_candidate in
      select * from private.automation_time_candidates(v_rule, now()) limit least(greatest(max_events, 1), 200)
    loop
      v_subject := private.automation_subject(v_rule.tenant_id, v_candidate.contact_id, v_candidate.conversation_id,
        jsonb_build_object('type', 'time.' || v_rule.trigger_type, 'payload', v_candidate.payload, 'depth', 0), now());
      event_type := 'time.' || v_rule.trigger_type;
      event_at := now();
      contact_id := v_candidate.contact_id;
      conversation_id := v_candidate.conversation_id;
      matched := private.automation_test(v_rule.conditions, v_subject);
      conditions := private.automation_explain(v_rule.conditions, v_subject);
      actions := case when matched then private.automation_resolve(v_rule.tenant_id, v_rule.actions, v_subject) end;
      return next;
    end loop;
  end if;
end;
$$;

create or replace function public.dry_run_automation_rule(rule_id uuid, max_events integer default 20)
returns table (event_id uuid, event_type text, event_at timestamptz, contact_id uuid, conversation_id uuid,
               matched boolean, conditions jsonb, actions jsonb)
language sql
security invoker
set search_path = ''
as $$ select * from private.dry_run_automation_rule(dry_run_automation_rule.rule_id, dry_run_automation_rule.max_events) $$;
comment on function public.dry_run_automation_rule(uuid, integer) is 'Managers: what a rule would do for the tenant''s latest events of its type (at most 200), or for its time trigger''s subjects now: each condition''s result and the resolved actions. Acts on nothing, logs nothing.';

/**
 * ----
 * Section - Realtime: approvers' screens stream the dispatch queue (RLS applies)
 * ----
 */
do $$
begin
  if exists (select 1 from pg_publication where pubname = 'supabase_realtime')
     and not exists (select 1 from pg_publication_tables
                      where pubname = 'supabase_realtime' and schemaname = 'public' and tablename = 'dispatch_queue') then
    alter publication supabase_realtime add table public.dispatch_queue;
  end if;
end
$$;

/**
 * ----
 * Section - RLS policies
 * ----
 */
drop policy if exists "Automation settings are visible to members" on public.automation_settings;
create policy "Automation settings are visible to members" on public.automation_settings
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Automation settings are created by managers" on public.automation_settings;
create policy "Automation settings are created by managers" on public.automation_settings
  for insert to authenticated with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Automation settings are updated by managers" on public.automation_settings;
create policy "Automation settings are updated by managers" on public.automation_settings
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')))
  with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));

drop policy if exists "Automation rules are visible to members" on public.automation_rules;
create policy "Automation rules are visible to members" on public.automation_rules
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Automation rules are created by managers" on public.automation_rules;
create policy "Automation rules are created by managers" on public.automation_rules
  for insert to authenticated with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Automation rules are updated by managers" on public.automation_rules;
create policy "Automation rules are updated by managers" on public.automation_rules
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')))
  with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Automation rules are deleted by managers" on public.automation_rules;
create policy "Automation rules are deleted by managers" on public.automation_rules
  for delete to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('manager')));

drop policy if exists "Automation executions are visible to members" on public.automation_executions;
create policy "Automation executions are visible to members" on public.automation_executions
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Suggestions are visible to members" on public.dispatch_queue;
create policy "Suggestions are visible to members" on public.dispatch_queue
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));

/**
 * ----
 * Section - Grants
 * ----
 */
grant select, insert (tenant_id, max_messages_per_contact_per_day, quiet_hours_start, quiet_hours_end,
    approver_member_ids),
  update (max_messages_per_contact_per_day, quiet_hours_start, quiet_hours_end, approver_member_ids)
  on public.automation_settings to authenticated;
grant select, insert (tenant_id, name, description, trigger_type, event_type, wait_minutes, date_attribute,
    date_offset_days, date_yearly, conditions, actions, mode, priority, is_active, stop_after, max_per_contact,
    approval_ttl_minutes),
  update (name, description, trigger_type, event_type, wait_minutes, date_attribute, date_offset_days, date_yearly,
    conditions, actions, mode, priority, is_active, stop_after, max_per_contact, approval_ttl_minutes),
  delete on public.automation_rules to authenticated;
grant select on public.automation_executions, public.dispatch_queue to authenticated;
grant select, insert, update, delete on public.automation_settings, public.automation_rules,
  public.automation_executions, public.dispatch_queue, public.automation_queue to service_role;

revoke execute on all functions in schema private from public, anon;
grant execute on function private.decide_dispatch(uuid[], boolean, text),
  private.dry_run_automation_rule(uuid, integer) to authenticated, service_role;
revoke execute on function public.approve_dispatch(uuid[]), public.reject_dispatch(uuid[], text),
  public.dry_run_automation_rule(uuid, integer), public.automation_run(integer) from public, anon, authenticated;
grant execute on function public.approve_dispatch(uuid[]), public.reject_dispatch(uuid[], text),
  public.dry_run_automation_rule(uuid, integer) to authenticated, service_role;
grant execute on function public.automation_run(integer), private.job_automation_rules(timestamptz) to service_role;
