/**
 * Zapbase module 3d: campaigns (seed 001 campaigns, campaign_recipients; 001/002/003 templates).
 * Templates kept in step with Meta, rendered per contact, and one-off campaigns that send
 * an approved template to an audience through the outbound queue of whatsapp_queues.
 *
 * Templates (the table is whatsapp's message_templates; what talks to Meta lives here):
 *   create_message_template ─► validated here ─► sync_status pending_create ─► worker POSTs
 *   delete_message_template ─► pending_delete ─► worker DELETEs ─► status DELETED
 *   request_template_sync / job templates_sync ─► template_syncs requested ─► worker lists
 *   every page of GET /{waba}/message_templates ─► templates_apply_sync
 *   private.render_template(tenant, template, contact, variables) fills the variables of
 *   one contact: the one renderer of campaigns, automation rules and the preview RPC.
 *
 * Campaigns:
 *   draft ─► scheduled ─► running ⇄ paused ─► completed | cancelled | failed
 *   start (now, or the job campaigns_start_due at scheduled_at) materialises every
 *   recipient in one insert … select (skipped ones with their reason); the worker's pacer
 *   calls campaign_release every second: per campaign, within its rate per minute, the
 *   tier's unique-recipient limit (24 h), the pair limit (1 message / 6 s to a contact) and
 *   the sending window in the tenant's time zone, it queues the pending recipients' messages
 *   in the same transaction that marks them queued, so a crash never sends anyone twice.
 *   Recipients move forward only (queued → sent → delivered → read), driven by the status
 *   of their message; Meta's throttling and ecosystem codes start a later attempt, a
 *   paused or disabled template pauses the campaign with an alert. Counters are kept by
 *   statement triggers from the rows that changed, so they are exact.
 *
 * Who may do what:
 *   every member  reads campaigns, their recipients and lists, template syncs; previews a template
 *   manager       creates / deletes templates at Meta, requests a sync, edits draft campaigns,
 *                 fills their lists (explicit or CSV), dry-runs, schedules, starts, pauses,
 *                 resumes and cancels them
 *   service role  the worker: template pushes and syncs, releasing campaign messages
 */

/**
 * ----
 * Section - Tables
 * ----
 */

-- One row per WhatsApp Business Account a tenant syncs templates from.
create table if not exists public.template_syncs (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  waba_id text not null check (waba_id ~ '^[0-9]{1,30}$'),
  status text not null default 'requested' check (status in ('requested', 'running', 'succeeded', 'failed')),
  requested_at timestamptz not null default now(),
  started_at timestamptz,
  finished_at timestamptz,
  last_synced_at timestamptz,
  template_count integer check (template_count >= 0),
  error text check (length(error) <= 2000),
  unique (tenant_id, id),
  unique (tenant_id, waba_id)
);
alter table public.template_syncs enable row level security;
create index if not exists template_syncs_requested_idx on public.template_syncs (requested_at)
  where status in ('requested', 'running');
comment on table public.template_syncs is 'Template sync with Meta per WABA: requested by a manager or the templates_sync job, run by the worker (every page of the list), with its outcome.';
comment on column public.template_syncs.last_synced_at is 'End of the last successful sync.';
comment on column public.template_syncs.error is 'Why the last sync failed (Meta''s error), null after a success.';

-- Campaigns (seed 001 campaigns): one approved template sent to an audience.
create table if not exists public.campaigns (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  name text not null check (length(btrim(name)) between 1 and 200),
  description text check (length(description) <= 2000),
  whatsapp_number_id uuid not null,
  template_id uuid not null,
  variables jsonb not null default '{}'::jsonb check (jsonb_typeof(variables) = 'object'),
  audience jsonb not null default '{}'::jsonb check (jsonb_typeof(audience) = 'object'),
  status text not null default 'draft'
    check (status in ('draft', 'scheduled', 'running', 'paused', 'completed', 'cancelled', 'failed')),
  status_reason text check (length(status_reason) <= 1000),
  scheduled_at timestamptz,
  started_at timestamptz,
  paused_at timestamptz,
  finished_at timestamptz,
  rate_per_minute integer not null default 60 check (rate_per_minute between 1 and 60000),
  send_window_start time,
  send_window_end time,
  reply_window_days integer not null default 3 check (reply_window_days between 0 and 30),
  max_attempts integer not null default 3 check (max_attempts between 1 and 10),
  pace_anchor_at timestamptz,
  pace_anchor_released integer not null default 0,
  released_count integer not null default 0,
  total_count integer not null default 0,
  pending_count integer not null default 0,
  queued_count integer not null default 0,
  sent_count integer not null default 0,
  delivered_count integer not null default 0,
  read_count integer not null default 0,
  failed_count integer not null default 0,
  skipped_count integer not null default 0,
  replied_count integer not null default 0,
  created_by uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  check ((send_window_start is null) = (send_window_end is null)),
  foreign key (tenant_id, whatsapp_number_id) references public.whatsapp_numbers (tenant_id, id),
  foreign key (tenant_id, template_id) references public.message_templates (tenant_id, id),
  foreign key (tenant_id, created_by) references public.members (tenant_id, id) on delete set null (created_by)
);
alter table public.campaigns enable row level security;
create index if not exists campaigns_tenant_status_idx on public.campaigns (tenant_id, status, created_at desc);
create index if not exists campaigns_number_idx on public.campaigns (tenant_id, whatsapp_number_id);
create index if not exists campaigns_template_idx on public.campaigns (tenant_id, template_id);
create index if not exists campaigns_created_by_idx on public.campaigns (tenant_id, created_by);
create index if not exists campaigns_due_idx on public.campaigns (scheduled_at) where status = 'scheduled';
create index if not exists campaigns_running_idx on public.campaigns (id) where status = 'running';
comment on table public.campaigns is 'One-off campaigns (seed 001): an approved template, its variables per recipient, an audience, a pace, and exact counters kept by triggers.';
comment on column public.campaigns.variables is 'How to fill the template per recipient: see private.render_template ({"body": {"1": {"field": "first_name"}}, ...}).';
comment on column public.campaigns.audience is 'Who gets it; every given filter must hold (none: all contacts): {"tags_any": [..], "tags_all": [..], "attributes": [{"key", "op": "eq"|"in"|"range", "value" | "values" | "min"/"max"}], "last_interaction_days": n, "list": true (campaign_list_members, filled explicitly or by CSV)}.';
comment on column public.campaigns.rate_per_minute is 'Messages released per minute (within the number''s throughput).';
comment on column public.campaigns.send_window_start is 'Optional local sending window (tenant time zone): nothing is released outside [start, end).';
comment on column public.campaigns.reply_window_days is 'A recipient who writes within this many days of the send counts as replied.';
comment on column public.campaigns.max_attempts is 'Attempts per recipient when Meta answers 130429, 131049 or 131056.';
comment on column public.campaigns.pace_anchor_at is 'Pacing: since this moment (start or resume) rate_per_minute messages a minute may be released on top of pace_anchor_released.';
comment on column public.campaigns.released_count is 'Messages queued so far (retries included).';
comment on column public.campaigns.total_count is 'Recipients materialised at start, skipped ones included; the *_count columns count recipients by current status.';

-- Explicit audience lists: contacts picked by hand or imported from a CSV.
create table if not exists public.campaign_list_members (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  campaign_id uuid not null,
  contact_id uuid not null,
  import_id uuid,
  added_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (campaign_id, contact_id),
  foreign key (tenant_id, campaign_id) references public.campaigns (tenant_id, id) on delete cascade,
  foreign key (tenant_id, contact_id) references public.contacts (tenant_id, id) on delete cascade,
  foreign key (tenant_id, import_id) references public.import_logs (tenant_id, id) on delete set null (import_id)
);
alter table public.campaign_list_members enable row level security;
create index if not exists campaign_list_members_contact_idx on public.campaign_list_members (tenant_id, contact_id);
create index if not exists campaign_list_members_import_idx on public.campaign_list_members (tenant_id, import_id);
comment on table public.campaign_list_members is 'The explicit list of a campaign whose audience says "list": true (set_campaign_list or import_campaign_csv).';

-- Recipients (seed 001 campaign_recipients): one per number, materialised at start.
create table if not exists public.campaign_recipients (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  campaign_id uuid not null,
  contact_id uuid not null,
  wa_id text,
  status text not null default 'pending'
    check (status in ('pending', 'queued', 'sent', 'delivered', 'read', 'failed', 'skipped')),
  skip_reason text check (skip_reason in ('blocked', 'opted_out', 'anonymised', 'no_consent', 'no_number',
                                           'not_a_buyer', 'missing_variable', 'cancelled')),
  message_id uuid,
  attempts integer not null default 0,
  next_attempt_at timestamptz,
  error_code integer,
  error_title text check (length(error_title) <= 500),
  queued_at timestamptz,
  sent_at timestamptz,
  delivered_at timestamptz,
  read_at timestamptz,
  failed_at timestamptz,
  replied_at timestamptz,
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (campaign_id, wa_id),
  check ((status = 'skipped') = (skip_reason is not null)),
  foreign key (tenant_id, campaign_id) references public.campaigns (tenant_id, id) on delete cascade,
  foreign key (tenant_id, contact_id) references public.contacts (tenant_id, id) on delete cascade,
  foreign key (tenant_id, message_id) references public.messages (tenant_id, id) on delete set null (message_id)
);
alter table public.campaign_recipients enable row level security;
create index if not exists campaign_recipients_pending_idx on public.campaign_recipients (campaign_id, next_attempt_at nulls first)
  where status = 'pending';
create index if not exists campaign_recipients_message_idx on public.campaign_recipients (tenant_id, message_id)
  where message_id is not null;
create index if not exists campaign_recipients_contact_idx on public.campaign_recipients (tenant_id, contact_id);
comment on table public.campaign_recipients is 'Per-recipient truth of a campaign: pending → queued → sent → delivered → read, or failed with Meta''s code, or skipped with the reason.';
comment on column public.campaign_recipients.status is 'Moves forward only within an attempt; a retryable Meta error (130429, 131049, 131056) starts a new attempt from pending.';
comment on column public.campaign_recipients.skip_reason is 'Why nothing was sent: blocked, opted_out, anonymised (LGPD), no_consent, no_number, not_a_buyer (the template is tied to a product the contact has not bought), missing_variable, cancelled (withdrawn by a cancel, queued messages included).';
comment on column public.campaign_recipients.replied_at is 'First customer message within the campaign''s reply window after the send.';

-- Campaign sends are counted per number over 24 h (the tier's unique-recipient limit).
create index if not exists messages_templates_sent_idx on public.messages (whatsapp_number_id, created_at)
  where type = 'template' and direction = 'outbound';

/**
 * ----
 * Section - Templates: validation and rendering
 * ----
 */

-- The variables of a template text in order of appearance ({{1}}, {{first_name}}).
create or replace function private.template_variables(text text)
returns text[]
language sql
immutable
set search_path = ''
as $$
  select coalesce(array_agg(m[1] order by n), '{}')
    from regexp_matches(coalesce(template_variables.text, ''), '\{\{([^{}]*)\}\}', 'g') with ordinality r(m, n)
$$;
comment on function private.template_variables(text) is 'Variables of a template text ({{1}}, {{name}}) in order of appearance.';

-- What is wrong with the variables of one component text, or null: positional ones are
-- 1..n without gaps, named ones lower-case identifiers; each needs an example.
create or replace function private.template_vars_problem(vars text[], parameter_format text, path text,
                                                         examples jsonb)
returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_distinct text[] := array(select distinct v from unnest(vars) v);
  v_name text;
begin
  if cardinality(v_distinct) = 0 then
    return null;
  end if;
  if parameter_format = 'positional' then
    if exists (select 1 from unnest(v_distinct) v where v !~ '^[1-9][0-9]{0,2}$') then
      return format('%s: positional variables are {{1}}, {{2}}, ... (got %s)', path, array_to_string(vars, ', '));
    end if;
    if (select max(v::integer) from unnest(v_distinct) v) <> cardinality(v_distinct) then
      return format('%s: variables must be numbered 1 to %s without gaps', path, cardinality(v_distinct));
    end if;
    if jsonb_typeof(examples) is distinct from 'array' or jsonb_array_length(examples) <> cardinality(v_distinct)
       or exists (select 1 from jsonb_array_elements(examples) e
                   where jsonb_typeof(e) <> 'string' or btrim(e #>> '{}') = '') then
      return format('%s: give one example per variable (%s)', path, cardinality(v_distinct));
    end if;
  else
    foreach v_name in array v_distinct loop
      if v_name !~ '^[a-z_][a-z0-9_]{0,99}$' then
        return format('%s: named variables are lower-case identifiers (got {{%s}})', path, v_name);
      end if;
      if not exists (select 1 from jsonb_array_elements(coalesce(examples, '[]')) e
                      where jsonb_typeof(e) = 'object' and e ->> 'param_name' = v_name
                        and btrim(coalesce(e ->> 'example', '')) <> '') then
        return format('%s: give an example for {{%s}}', path, v_name);
      end if;
    end loop;
  end if;
  return null;
end;
$$;

-- What Meta would refuse in a template's components, checked before anything is sent:
-- one BODY of at most 1024 characters, an optional HEADER (TEXT of 60 with at most one
-- variable, or IMAGE / VIDEO / DOCUMENT with an example handle, or LOCATION), a FOOTER of 60
-- without variables, at most 10 BUTTONS (text ≤ 25; at most 2 URL, 1 PHONE_NUMBER,
-- 1 COPY_CODE), variables numbered with examples. Returns the first problem or null.
create or replace function private.template_problem(components jsonb, parameter_format text)
returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_comp jsonb;
  v_type text;
  v_seen text[] := '{}';
  v_text text;
  v_vars text[];
  v_format text;
  v_btn jsonb;
  v_btype text;
  v_named boolean := parameter_format = 'named';
  v_problem text;
begin
  if jsonb_typeof(components) is distinct from 'array' or jsonb_array_length(components) = 0 then
    return 'components must be a non-empty array';
  end if;
  for v_comp in select e from jsonb_array_elements(components) e loop
    if jsonb_typeof(v_comp) <> 'object' then
      return 'each component must be an object';
    end if;
    v_type := upper(v_comp ->> 'type');
    if v_type is null or v_type not in ('HEADER', 'BODY', 'FOOTER', 'BUTTONS') then
      return format('unknown component type "%s" (HEADER, BODY, FOOTER or BUTTONS)', coalesce(v_comp ->> 'type', ''));
    end if;
    if v_type = any (v_seen) then
      return format('a template has one %s component at most', v_type);
    end if;
    v_seen := v_seen || v_type;
    v_text := v_comp ->> 'text';
    v_vars := private.template_variables(v_text);
    if v_type = 'BODY' then
      if coalesce(length(btrim(v_text)), 0) = 0 or length(v_text) > 1024 then
        return 'BODY.text must have 1 to 1024 characters';
      end if;
      v_problem := private.template_vars_problem(v_vars, parameter_format, 'BODY',
        case when v_named then v_comp -> 'example' -> 'body_text_named_params'
             else v_comp -> 'example' -> 'body_text' -> 0 end);
    elsif v_type = 'HEADER' then
      v_format := upper(coalesce(v_comp ->> 'format', ''));
      if v_format not in ('TEXT', 'IMAGE', 'VIDEO', 'DOCUMENT', 'LOCATION') then
        return 'HEADER.format must be TEXT, IMAGE, VIDEO, DOCUMENT or LOCATION';
      end if;
      if v_format = 'TEXT' then
        if coalesce(length(btrim(v_text)), 0) = 0 or length(v_text) > 60 then
          return 'HEADER.text must have 1 to 60 characters';
        end if;
        if cardinality(v_vars) > 1 then
          return 'HEADER.text takes one variable at most';
        end if;
        v_problem := private.template_vars_problem(v_vars, parameter_format, 'HEADER',
          case when v_named then v_comp -> 'example' -> 'header_text_named_params'
               else v_comp -> 'example' -> 'header_text' end);
      elsif v_format <> 'LOCATION' and (jsonb_typeof(v_comp -> 'example' -> 'header_handle') is distinct from 'array'
                                        or jsonb_array_length(v_comp -> 'example' -> 'header_handle') = 0) then
        return format('HEADER %s needs example.header_handle (an uploaded sample)', v_format);
      end if;
    elsif v_type = 'FOOTER' then
      if coalesce(length(btrim(v_text)), 0) = 0 or length(v_text) > 60 then
        return 'FOOTER.text must have 1 to 60 characters';
      end if;
      if cardinality(v_vars) > 0 then
        return 'FOOTER.text takes no variables';
      end if;
    else
      if jsonb_typeof(v_comp -> 'buttons') is distinct from 'array' or jsonb_array_length(v_comp -> 'buttons') = 0
         or jsonb_array_length(v_comp -> 'buttons') > 10 then
        return 'BUTTONS.buttons must hold 1 to 10 buttons';
      end if;
      for v_btn in select e from jsonb_array_elements(v_comp -> 'buttons') e loop
        v_btype := upper(coalesce(v_btn ->> 'type', ''));
        if v_btype not in ('QUICK_REPLY', 'URL', 'PHONE_NUMBER', 'COPY_CODE', 'OTP', 'FLOW') then
          return format('unknown button type "%s"', v_btn ->> 'type');
        end if;
        if v_btype not in ('COPY_CODE', 'OTP')
           and (coalesce(length(btrim(v_btn ->> 'text')), 0) = 0 or length(v_btn ->> 'text') > 25) then
          return 'button text must have 1 to 25 characters';
        end if;
        if v_btype = 'URL' then
          if coalesce(v_btn ->> 'url', '') !~ '^https?://' or length(v_btn ->> 'url') > 2000 then
            return 'URL button needs an http(s) url of at most 2000 characters';
          end if;
          v_vars := private.template_variables(v_btn ->> 'url');
          if cardinality(v_vars) > 1 or (cardinality(v_vars) = 1 and v_btn ->> 'url' !~ '\{\{1\}\}$') then
            return 'URL button takes one variable, {{1}}, at the end of the url';
          end if;
          v_problem := private.template_vars_problem(v_vars, 'positional', 'URL button', v_btn -> 'example');
          exit when v_problem is not null;
        elsif v_btype = 'PHONE_NUMBER' and coalesce(v_btn ->> 'phone_number', '') !~ '^\+?[0-9]{5,20}$' then
          return 'PHONE_NUMBER button needs phone_number (digits, optional +)';
        elsif v_btype = 'COPY_CODE' and (jsonb_typeof(v_btn -> 'example') <> 'string'
                                         or length(v_btn ->> 'example') not between 1 and 15) then
          return 'COPY_CODE button needs an example code of 1 to 15 characters';
        end if;
      end loop;
      if v_problem is null then
        v_problem := case
          when (select count(*) from jsonb_array_elements(v_comp -> 'buttons') e where upper(e ->> 'type') = 'URL') > 2
            then 'at most 2 URL buttons'
          when (select count(*) from jsonb_array_elements(v_comp -> 'buttons') e
                 where upper(e ->> 'type') = 'PHONE_NUMBER') > 1 then 'at most 1 PHONE_NUMBER button'
          when (select count(*) from jsonb_array_elements(v_comp -> 'buttons') e
                 where upper(e ->> 'type') = 'COPY_CODE') > 1 then 'at most 1 COPY_CODE button'
        end;
      end if;
    end if;
    if v_problem is not null then
      return v_problem;
    end if;
  end loop;
  if not 'BODY' = any (v_seen) then
    return 'a template needs a BODY component';
  end if;
  return null;
end;
$$;
comment on function private.template_problem(jsonb, text) is 'First thing Meta would refuse in template components (body ≤ 1024, header types, footer, button limits, numbered variables with examples), or null.';

-- One variable's value for a contact. `source` is a fixed string, or {"value": "..."},
-- {"field": "name" | "first_name" | "profile_name" | "email" | "phone" | "wa_id" | "company"},
-- {"attribute": "key"} (contacts.attributes), each with an optional "default". Meta refuses
-- new lines, tabs and 4+ spaces in parameters: they become one space. Null: no value.
create or replace function private.template_value(contact public.contacts, source jsonb)
returns text
language sql
stable
set search_path = ''
as $$
  select nullif(btrim(regexp_replace(coalesce(nullif(btrim(
           case when jsonb_typeof(source) = 'string' then source #>> '{}'
                when source ? 'value' then source ->> 'value'
                when source ? 'attribute' then contact.attributes ->> (source ->> 'attribute')
                else case source ->> 'field'
                       when 'name' then coalesce(contact.name, contact.profile_name)
                       when 'first_name' then split_part(btrim(coalesce(contact.name, contact.profile_name, '')), ' ', 1)
                       when 'profile_name' then contact.profile_name
                       when 'email' then contact.email
                       when 'phone' then coalesce(contact.phone, '+' || contact.wa_id)
                       when 'wa_id' then contact.wa_id
                       when 'company' then contact.company
                     end
           end), ''), source ->> 'default'), '[\n\r\t]+| {4,}', ' ', 'g')), '')
$$;

-- THE template renderer. Fills the template's variables for one contact from `variables`:
--   {"header": {"1": source} | {"link": "https://..."} | {"id": "<media id>"},
--    "body": {"1": source, "2": source} (named templates: {"first_name": source}),
--    "buttons": {"0": source}}               (button index → value of its {{1}} / coupon code)
-- where a source is described at private.template_value. Returns
--   {"message": {"type": "template", "template": {"name", "language": {"code"}, "components"}},
--    "text": "<header>\n\n<body>\n\n<footer> as the contact reads it",
--    "missing": ["body.2", ...],     (non-empty: do not send)
--    "buyer": true | false}          (only for a template tied to a product: false, do not send)
-- ready for private.queue_outbound. Callers check the caller's right to the tenant.
create or replace function private.render_template(tenant_id uuid, template_id uuid, contact_id uuid,
                                                   variables jsonb default '{}'::jsonb)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_template public.message_templates;
  v_contact public.contacts;
  v_comp jsonb;
  v_type text;
  v_text text;
  v_var text;
  v_value text;
  v_params jsonb;
  v_components jsonb := '[]';
  v_lines text[] := '{}';
  v_missing text[] := '{}';
  v_format text;
  v_btn jsonb;
  v_index integer;
  v_named boolean;
  v_src jsonb;
begin
  select * into v_template from public.message_templates t
   where t.tenant_id = render_template.tenant_id and t.id = render_template.template_id;
  if v_template.id is null then
    raise exception 'template % not found', render_template.template_id using errcode = 'P0002';
  end if;
  select * into v_contact from public.contacts c
   where c.tenant_id = render_template.tenant_id and c.id = render_template.contact_id;
  if v_contact.id is null then
    raise exception 'contact % not found', render_template.contact_id using errcode = 'P0002';
  end if;
  v_named := v_template.parameter_format = 'named';
  for v_comp in select e from jsonb_array_elements(v_template.components) e loop
    v_type := lower(v_comp ->> 'type');
    v_text := v_comp ->> 'text';
    v_format := upper(coalesce(v_comp ->> 'format', 'TEXT'));
    if v_type in ('header', 'body') and (v_type = 'body' or v_format = 'TEXT') then
      v_params := '[]';
      -- each variable once: positional ones in number order, named ones as they appear
      foreach v_var in array array(select u.v from unnest(private.template_variables(v_text)) with ordinality u(v, n)
                                    group by u.v order by case when u.v ~ '^[0-9]{1,3}$' then lpad(u.v, 3, '0') end,
                                                          min(u.n)) loop
        v_value := private.template_value(v_contact, variables -> v_type -> v_var);
        if v_value is null then
          v_missing := v_missing || (v_type || '.' || v_var);
        else
          v_text := replace(v_text, '{{' || v_var || '}}', v_value);
        end if;
        v_params := v_params || jsonb_strip_nulls(jsonb_build_object('type', 'text', 'text', coalesce(v_value, ''),
                                   'parameter_name', case when v_named then v_var end));
      end loop;
      if jsonb_array_length(v_params) > 0 then
        v_components := v_components || jsonb_build_object('type', v_type, 'parameters', v_params);
      end if;
      v_lines := v_lines || v_text;
    elsif v_type = 'header' then
      v_src := variables -> 'header';
      if v_format = 'LOCATION' and jsonb_typeof(v_src -> 'location') = 'object' then
        v_components := v_components || jsonb_build_object('type', 'header', 'parameters',
          jsonb_build_array(jsonb_build_object('type', 'location', 'location', v_src -> 'location')));
      elsif v_format <> 'LOCATION' and (v_src ? 'link' or v_src ? 'id') then
        v_components := v_components || jsonb_build_object('type', 'header', 'parameters',
          jsonb_build_array(jsonb_build_object('type', lower(v_format), lower(v_format),
            case when v_src ? 'id' then jsonb_build_object('id', v_src ->> 'id')
                 else jsonb_build_object('link', v_src ->> 'link') end)));
      else
        v_missing := v_missing || 'header'::text;
      end if;
    elsif v_type = 'footer' then
      v_lines := v_lines || v_text;
    elsif v_type = 'buttons' then
      v_index := 0;
      for v_btn in select e from jsonb_array_elements(v_comp -> 'buttons') e loop
        if upper(v_btn ->> 'type') = 'URL' and cardinality(private.template_variables(v_btn ->> 'url')) > 0
           or upper(v_btn ->> 'type') = 'COPY_CODE' then
          v_value := private.template_value(v_contact, variables -> 'buttons' -> v_index::text);
          if v_value is null then
            v_missing := v_missing || ('buttons.' || v_index);
          end if;
          v_components := v_components || jsonb_build_object('type', 'button',
            'sub_type', lower(v_btn ->> 'type'), 'index', v_index::text, 'parameters',
            jsonb_build_array(case when upper(v_btn ->> 'type') = 'URL'
                                   then jsonb_build_object('type', 'text', 'text', coalesce(v_value, ''))
                                   else jsonb_build_object('type', 'coupon_code', 'coupon_code', coalesce(v_value, ''))
                              end));
        end if;
        v_index := v_index + 1;
      end loop;
    end if;
  end loop;
  return jsonb_build_object(
    'message', jsonb_build_object('type', 'template', 'template', jsonb_build_object(
      'name', v_template.name, 'language', jsonb_build_object('code', v_template.language),
      'components', v_components)),
    'text', array_to_string(v_lines, E'\n\n'),
    'missing', to_jsonb(v_missing))
    || case when v_template.product_id is not null then jsonb_build_object('buyer',
         private.is_buyer(v_template.tenant_id, v_contact.id, v_template.product_id)) else '{}' end;
end;
$$;
comment on function private.render_template(uuid, uuid, uuid, jsonb) is 'THE renderer of templates: fills a template''s variables for one contact (contact fields, attributes or fixed values, with defaults); returns {message (ready for queue_outbound), text (as read), missing, buyer (template tied to a product: did the contact buy it)}. Callers check the tenant.';

/**
 * ----
 * Section - Templates: triggers
 * ----
 */

-- A template made here is checked before it can reach Meta.
create or replace function private.tg_message_templates_validate()
returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_problem text := private.template_problem(new.components, new.parameter_format);
begin
  if v_problem is not null then
    raise exception 'template "%": %', new.name, v_problem using errcode = '22023';
  end if;
  return new;
end;
$$;
drop trigger if exists _200_validate on public.message_templates;
create trigger _200_validate before insert or update of components, parameter_format on public.message_templates
  for each row when (new.sync_status = 'pending_create') execute function private.tg_message_templates_validate();

-- Meta paused or disabled a template (webhook or sync): its running campaigns pause, with an alert.
create or replace function private.tg_message_templates_pause_campaigns()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns;
begin
  for v_campaign in
    select * from public.campaigns c
     where c.tenant_id = new.tenant_id and c.template_id = new.id and c.status in ('running', 'scheduled')
  loop
    perform private.campaign_pause(v_campaign, format('template %s is %s at Meta', new.name, new.status), true);
  end loop;
  return null;
end;
$$;
drop trigger if exists _500_pause_campaigns on public.message_templates;
create trigger _500_pause_campaigns after update of status on public.message_templates
  for each row when (new.status in ('PAUSED', 'DISABLED', 'REJECTED', 'PENDING_DELETION', 'DELETED')
                     and old.status is distinct from new.status)
  execute function private.tg_message_templates_pause_campaigns();

/**
 * ----
 * Section - Campaigns: audience and materialisation
 * ----
 */

-- Why a contact cannot receive a campaign, or null.
create or replace function private.campaign_skip_reason(contact public.contacts)
returns text
language sql
immutable
set search_path = ''
as $$
  select case when contact.lgpd_state <> 'active' then 'anonymised'
              when contact.is_blocked then 'blocked'
              when not contact.opt_in then 'opted_out'
              when not contact.consent then 'no_consent'
              when contact.wa_id is null then 'no_number'
         end
$$;

-- Does a contact's attributes match every attribute filter of an audience.
create or replace function private.campaign_attributes_match(attributes jsonb, filters jsonb)
returns boolean
language sql
immutable
set search_path = ''
as $$
  select filters is null or not exists (
    select 1 from jsonb_array_elements(filters) f
     where not coalesce(case f ->> 'op'
       when 'eq' then attributes -> (f ->> 'key') = f -> 'value'
                      or attributes ->> (f ->> 'key') = f ->> 'value'
       when 'in' then exists (select 1 from jsonb_array_elements(f -> 'values') v
                               where attributes ->> (f ->> 'key') = v #>> '{}')
       when 'range' then case
         when jsonb_typeof(attributes -> (f ->> 'key')) = 'number'
           then (f -> 'min' is null or (attributes ->> (f ->> 'key'))::numeric >= (f ->> 'min')::numeric)
            and (f -> 'max' is null or (attributes ->> (f ->> 'key'))::numeric <= (f ->> 'max')::numeric)
         else (f -> 'min' is null or attributes ->> (f ->> 'key') >= f ->> 'min')
          and (f -> 'max' is null or attributes ->> (f ->> 'key') <= f ->> 'max') end
     end, false))
$$;

-- What is wrong with an audience description, or null.
create or replace function private.campaign_audience_problem(audience jsonb)
returns text
language sql
immutable
set search_path = ''
as $$
  select case
    when exists (select 1 from jsonb_object_keys(audience) k
                  where k not in ('tags_any', 'tags_all', 'attributes', 'last_interaction_days', 'list'))
      then 'audience keys are tags_any, tags_all, attributes, last_interaction_days and list'
    when audience ? 'tags_any' and jsonb_typeof(audience -> 'tags_any') <> 'array'
      or audience ? 'tags_all' and jsonb_typeof(audience -> 'tags_all') <> 'array'
      then 'tags_any and tags_all are arrays of tag names'
    when audience ? 'last_interaction_days' and coalesce(audience ->> 'last_interaction_days', '') !~ '^[0-9]{1,4}$'
      then 'last_interaction_days is a whole number of days'
    when audience ? 'list' and jsonb_typeof(audience -> 'list') <> 'boolean'
      then 'list is true or false'
    when audience ? 'attributes' and (jsonb_typeof(audience -> 'attributes') <> 'array' or exists (
           select 1 from jsonb_array_elements(audience -> 'attributes') f
            where jsonb_typeof(f) <> 'object' or coalesce(f ->> 'key', '') = ''
               or coalesce(f ->> 'op', '') not in ('eq', 'in', 'range')
               or (f ->> 'op' = 'in' and jsonb_typeof(f -> 'values') is distinct from 'array')
               or (f ->> 'op' = 'range' and f -> 'min' is null and f -> 'max' is null)))
      then 'attributes are [{"key", "op": "eq" | "in" | "range", "value" | "values" | "min" / "max"}]'
  end
$$;

-- Everyone the audience of a campaign selects, with why they would be skipped (null: they
-- get it). One query over contacts, so materialising 100k recipients is one insert … select.
-- (plpgsql: private.is_buyer belongs to the commerce module, which comes later.)
create or replace function private.campaign_audience(campaign public.campaigns)
returns table (contact_id uuid, wa_id text, skip_reason text)
language plpgsql
stable
set search_path = ''
as $$
declare
  v_product uuid;
begin
  select t.product_id into v_product from public.message_templates t
   where t.tenant_id = campaign.tenant_id and t.id = campaign.template_id;
  return query
  select c.id, c.wa_id, coalesce(private.campaign_skip_reason(c),
           case when v_product is null or private.is_buyer(c.tenant_id, c.id, v_product) then null
                else 'not_a_buyer' end)
    from public.contacts c
   where c.tenant_id = campaign.tenant_id
     and (campaign.audience -> 'tags_any' is null
          or c.tags && array(select jsonb_array_elements_text(campaign.audience -> 'tags_any')))
     and (campaign.audience -> 'tags_all' is null
          or c.tags @> array(select jsonb_array_elements_text(campaign.audience -> 'tags_all')))
     and (campaign.audience -> 'last_interaction_days' is null
          or c.last_inbound_at >= now() - make_interval(days => (campaign.audience ->> 'last_interaction_days')::integer))
     and (campaign.audience -> 'attributes' is null
          or private.campaign_attributes_match(c.attributes, campaign.audience -> 'attributes'))
     and (coalesce((campaign.audience ->> 'list')::boolean, false) is false
          or exists (select 1 from public.campaign_list_members l
                      where l.campaign_id = campaign.id and l.contact_id = c.id));
end;
$$;

/**
 * ----
 * Section - Campaigns: counters, recipient states, replies
 * ----
 */

-- Counters from the rows a statement changed (transition tables): one update per campaign
-- per statement however many recipients moved, and exact by construction.
create or replace function private.tg_campaign_recipients_count()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  -- Every inbound message runs an update that usually moves nobody (a contact no campaign
  -- reached): no row, no dynamic statement to plan.
  if not exists (select 1 from new_rows) then
    return null;
  end if;
  -- old_rows exists only for updates, hence the one dynamic line
  execute format($q$
  with moved as (
    select n.campaign_id, n.status, (n.replied_at is not null)::integer as replied, 1 as sign from new_rows n
    %s
  ), delta as (
    select m.campaign_id,
           sum(m.sign) filter (where %L = 'INSERT') as total,
           coalesce(sum(m.sign) filter (where m.status = 'pending'), 0) as pending,
           coalesce(sum(m.sign) filter (where m.status = 'queued'), 0) as queued,
           coalesce(sum(m.sign) filter (where m.status = 'sent'), 0) as sent,
           coalesce(sum(m.sign) filter (where m.status = 'delivered'), 0) as delivered,
           coalesce(sum(m.sign) filter (where m.status = 'read'), 0) as read,
           coalesce(sum(m.sign) filter (where m.status = 'failed'), 0) as failed,
           coalesce(sum(m.sign) filter (where m.status = 'skipped'), 0) as skipped,
           sum(m.sign * m.replied) as replied
      from moved m group by m.campaign_id
  )
  update public.campaigns c
     set total_count = c.total_count + coalesce(d.total, 0), pending_count = c.pending_count + d.pending,
         queued_count = c.queued_count + d.queued, sent_count = c.sent_count + d.sent,
         delivered_count = c.delivered_count + d.delivered, read_count = c.read_count + d.read,
         failed_count = c.failed_count + d.failed, skipped_count = c.skipped_count + d.skipped,
         replied_count = c.replied_count + d.replied
    from delta d
   where c.id = d.campaign_id
     and (d.total <> 0 or d.pending <> 0 or d.queued <> 0 or d.sent <> 0 or d.delivered <> 0 or d.read <> 0
          or d.failed <> 0 or d.skipped <> 0 or d.replied <> 0)
  $q$, case when tg_op = 'UPDATE' then
         'union all select o.campaign_id, o.status, (o.replied_at is not null)::integer, -1 from old_rows o' end,
       tg_op);
  return null;
end;
$$;
drop trigger if exists _500_count_insert on public.campaign_recipients;
create trigger _500_count_insert after insert on public.campaign_recipients
  referencing new table as new_rows for each statement execute function private.tg_campaign_recipients_count();
drop trigger if exists _500_count_update on public.campaign_recipients;
create trigger _500_count_update after update on public.campaign_recipients
  referencing old table as old_rows new table as new_rows
  for each statement execute function private.tg_campaign_recipients_count();

-- A running campaign with nobody left to send to is completed.
create or replace function private.tg_campaigns_complete()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.campaigns c
     set status = 'completed', finished_at = now(), status_reason = null
   where c.id = new.id and c.status = 'running';
  perform private.emit(new.tenant_id, 'campaign.completed', 'campaigns', new.id,
    jsonb_build_object('name', new.name, 'total', new.total_count, 'sent', new.sent_count,
                       'delivered', new.delivered_count, 'read', new.read_count, 'failed', new.failed_count,
                       'skipped', new.skipped_count));
  return null;
end;
$$;
drop trigger if exists _600_complete on public.campaigns;
create trigger _600_complete after update of pending_count, queued_count on public.campaigns
  for each row when (new.status = 'running' and new.pending_count = 0 and new.queued_count = 0
                     and new.started_at is not null and new.total_count > 0)
  execute function private.tg_campaigns_complete();

-- Order of the states a message moves its recipient through.
create or replace function private.campaign_rank(status text)
returns integer
language sql
immutable
set search_path = ''
as $$
  select case status when 'pending' then 0 when 'queued' then 1 when 'sent' then 2 when 'delivered' then 3
                     when 'read' then 4 when 'failed' then 5 when 'skipped' then 5 end
$$;

-- A campaign message changed status: its recipient follows, forward only. Meta's
-- throttling and ecosystem codes (130429, 131056 pair rate, 131049) start a later attempt
-- while attempts remain, reopening a completed campaign; a paused or disabled template (132015, 132016) pauses the campaign
-- and the recipient waits for the resume; anything else (131026 undeliverable, 131047 no
-- window, ...) fails the recipient with Meta's code.
create or replace function private.tg_messages_campaign_status()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_recipient public.campaign_recipients;
  v_campaign public.campaigns;
  v_status text := case when new.status = 'played' then 'read' else new.status end;
begin
  select * into v_recipient from public.campaign_recipients r
   where r.tenant_id = new.tenant_id and r.message_id = new.id
   for update;
  if v_recipient.id is null or v_recipient.status in ('failed', 'skipped', 'pending') then
    return null;
  end if;
  if v_status = 'failed' then
    select * into v_campaign from public.campaigns c where c.id = v_recipient.campaign_id for update;
    if new.error_code in (132015, 132016) then
      update public.campaign_recipients r
         set status = 'pending', message_id = null, next_attempt_at = null, attempts = greatest(r.attempts - 1, 0),
             error_code = new.error_code, error_title = left(new.error_title, 500)
       where r.id = v_recipient.id;
      perform private.campaign_pause(v_campaign, format('Meta refused the template (%s): %s', new.error_code,
                                                        coalesce(new.error_title, 'paused or disabled')), true);
      return null;
    end if;
    if new.error_code in (130429, 131049, 131056) and v_recipient.attempts < v_campaign.max_attempts
       and v_campaign.status in ('running', 'paused', 'completed') then
      update public.campaign_recipients r
         set status = 'pending', message_id = null, error_code = new.error_code, error_title = left(new.error_title, 500),
             next_attempt_at = now() + case new.error_code when 131049 then interval '1 hour'
                                                           when 131056 then make_interval(secs => 6 * 4 ^ r.attempts)
                                                           else interval '1 minute' end
       where r.id = v_recipient.id;
      -- Meta's verdict can come after the last send completed the campaign: it reopens for
      -- the retry (pacing from now) and completes again when nobody is left
      if v_campaign.status = 'completed' then
        update public.campaigns c
           set status = 'running', finished_at = null, pace_anchor_at = now(), pace_anchor_released = c.released_count,
               status_reason = format('reopened: Meta asked to retry a recipient later (%s)', new.error_code)
         where c.id = v_campaign.id;
        perform private.emit(v_campaign.tenant_id, 'campaign.resumed', 'campaigns', v_campaign.id,
          jsonb_build_object('name', v_campaign.name, 'reopened', true, 'error_code', new.error_code));
      end if;
      return null;
    end if;
    update public.campaign_recipients r
       set status = 'failed', failed_at = now(), error_code = new.error_code, error_title = left(new.error_title, 500)
     where r.id = v_recipient.id;
  elsif private.campaign_rank(v_status) > private.campaign_rank(v_recipient.status) then
    update public.campaign_recipients r
       set status = v_status,
           sent_at = coalesce(r.sent_at, new.sent_at, now()),
           delivered_at = case when v_status in ('delivered', 'read') then coalesce(r.delivered_at, new.delivered_at, now())
                               else r.delivered_at end,
           read_at = case when v_status = 'read' then coalesce(r.read_at, new.read_at, now()) else r.read_at end
     where r.id = v_recipient.id;
  else
    return null;
  end if;
  perform private.emit(new.tenant_id, 'campaign.recipient_updated', 'campaign_recipients', v_recipient.id,
    jsonb_build_object('campaign_id', v_recipient.campaign_id, 'contact_id', v_recipient.contact_id,
                       'message_id', new.id, 'status', v_status, 'error_code', new.error_code));
  return null;
end;
$$;
drop trigger if exists _500_campaign_recipient on public.messages;
create trigger _500_campaign_recipient after update of status on public.messages
  for each row when (new.sender_type = 'campaign' and old.status is distinct from new.status
                     and new.status in ('sent', 'delivered', 'read', 'played', 'failed'))
  execute function private.tg_messages_campaign_status();

-- A campaign message going back to the queue (a retryable send error) while its campaign is
-- cancelled: it was in flight at the cancel, so it is cancelled now instead of sent later.
create or replace function private.tg_messages_campaign_requeue()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.campaign_recipients r
     set status = 'skipped', skip_reason = 'cancelled'
    from public.campaigns c
   where r.tenant_id = new.tenant_id and r.message_id = new.id and r.status = 'queued'
     and c.id = r.campaign_id and c.status = 'cancelled';
  if found then
    new.status := 'cancelled';
    new.next_attempt_at := null;
    new.error_title := left('campaign cancelled by a manager; the last attempt failed: ' || new.error_title, 500);
  end if;
  return new;
end;
$$;
drop trigger if exists _400_campaign_requeue on public.messages;
create trigger _400_campaign_requeue before update of status on public.messages
  for each row when (new.sender_type = 'campaign' and old.status = 'sending' and new.status = 'queued')
  execute function private.tg_messages_campaign_requeue();

-- A customer message within a campaign's reply window marks its recipient replied.
create or replace function private.tg_messages_campaign_reply()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_recipient public.campaign_recipients;
begin
  -- most customers have no campaign message waiting for a reply: a read settles it
  if not exists (select 1 from public.campaign_recipients r
                  where r.tenant_id = new.tenant_id and r.contact_id = new.contact_id and r.replied_at is null
                    and r.sent_at is not null) then
    return null;
  end if;
  for v_recipient in
    update public.campaign_recipients r set replied_at = new.created_at
      from public.campaigns c
     where r.tenant_id = new.tenant_id and r.contact_id = new.contact_id and r.replied_at is null
       and r.sent_at is not null and r.sent_at <= new.created_at
       and c.id = r.campaign_id and new.created_at <= r.sent_at + make_interval(days => c.reply_window_days)
    returning r.*
  loop
    perform private.emit(new.tenant_id, 'campaign.recipient_updated', 'campaign_recipients', v_recipient.id,
      jsonb_build_object('campaign_id', v_recipient.campaign_id, 'contact_id', v_recipient.contact_id,
                         'message_id', new.id, 'status', v_recipient.status, 'replied', true));
  end loop;
  return null;
end;
$$;
drop trigger if exists _500_campaign_reply on public.messages;
create trigger _500_campaign_reply after insert on public.messages
  for each row when (new.direction = 'inbound') execute function private.tg_messages_campaign_reply();

/**
 * ----
 * Section - Campaigns: private helpers
 * ----
 */

-- Pause a campaign (by a manager, or because Meta stopped its template: then an alert).
create or replace function private.campaign_pause(campaign public.campaigns, reason text, alert boolean)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.campaigns c set status = 'paused', paused_at = now(), status_reason = left(reason, 1000)
   where c.id = campaign.id and c.status in ('running', 'scheduled');
  if not found then
    return;
  end if;
  perform private.emit(campaign.tenant_id, 'campaign.paused', 'campaigns', campaign.id,
    jsonb_build_object('name', campaign.name, 'reason', reason, 'by_system', alert));
  if alert then
    insert into public.alerts (tenant_id, type, priority, title, message, payload, dedupe_key)
    values (campaign.tenant_id, 'campaign.paused', 'high', left('Campanha pausada: ' || campaign.name, 200),
            left('A campanha foi pausada automaticamente: ' || reason, 4000),
            jsonb_build_object('campaign_id', campaign.id, 'reason', reason),
            'campaign:' || campaign.id || ':paused:' || to_char(now(), 'YYYY-MM-DD HH24:MI'))
    on conflict (tenant_id, dedupe_key) do nothing;
  end if;
end;
$$;

-- Messages a day the number's tier allows to unique recipients (null: no known limit).
create or replace function private.tier_limit(tier text)
returns integer
language sql
immutable
set search_path = ''
as $$
  select case upper(tier) when 'TIER_50' then 50 when 'TIER_250' then 250 when 'TIER_1K' then 1000
                          when 'TIER_2K' then 2000 when 'TIER_10K' then 10000 when 'TIER_100K' then 100000 end
$$;

-- Start a campaign now: check it can send, materialise every recipient, run.
create or replace function private.campaign_start(campaign public.campaigns)
returns public.campaigns
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_template public.message_templates;
  v_number public.whatsapp_numbers;
  v_row public.campaigns;
begin
  select * into v_template from public.message_templates t
   where t.tenant_id = campaign.tenant_id and t.id = campaign.template_id;
  select * into v_number from public.whatsapp_numbers n
   where n.tenant_id = campaign.tenant_id and n.id = campaign.whatsapp_number_id;
  if v_template.status <> 'APPROVED' or not v_template.is_active then
    raise exception 'template % is % at Meta: only an approved template can be sent', v_template.name,
      v_template.status using errcode = '55000';
  end if;
  if v_number.status <> 'active' then
    raise exception 'the campaign''s WhatsApp number is not active' using errcode = '55000';
  end if;
  if v_template.waba_id is not null and v_number.waba_id is not null and v_template.waba_id <> v_number.waba_id then
    raise exception 'template % belongs to another WhatsApp Business Account than the number', v_template.name
      using errcode = '55000';
  end if;
  insert into public.campaign_recipients (tenant_id, campaign_id, contact_id, wa_id, status, skip_reason)
  select campaign.tenant_id, campaign.id, a.contact_id, a.wa_id,
         case when a.skip_reason is null then 'pending' else 'skipped' end, a.skip_reason
    from private.campaign_audience(campaign) a
  on conflict (campaign_id, wa_id) do nothing;
  update public.campaigns c
     set status = 'running', started_at = now(), pace_anchor_at = now(), pace_anchor_released = c.released_count,
         status_reason = null
   where c.id = campaign.id
  returning * into v_row;
  perform private.emit(v_row.tenant_id, 'campaign.started', 'campaigns', v_row.id,
    jsonb_build_object('name', v_row.name, 'template_id', v_row.template_id, 'total', v_row.total_count,
                       'pending', v_row.pending_count, 'skipped', v_row.skipped_count));
  if v_row.total_count = 0 or v_row.pending_count = 0 then
    update public.campaigns c set status = 'completed', finished_at = now() where c.id = v_row.id
    returning * into v_row;
    perform private.emit(v_row.tenant_id, 'campaign.completed', 'campaigns', v_row.id,
      jsonb_build_object('name', v_row.name, 'total', v_row.total_count, 'skipped', v_row.skipped_count));
  end if;
  return v_row;
end;
$$;

-- A campaign of the caller's tenant, locked, with the manager role checked.
create or replace function private.campaign_for_manager(campaign_id uuid)
returns public.campaigns
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns;
begin
  select * into v_campaign from public.campaigns c where c.id = campaign_for_manager.campaign_id for update;
  if v_campaign.id is null or not private.is_member(v_campaign.tenant_id) then
    raise exception 'campaign not found' using errcode = 'P0002';
  end if;
  perform private.require_role(v_campaign.tenant_id, 'manager');
  return v_campaign;
end;
$$;

/**
 * ----
 * Section - Campaigns: releasing messages (the worker's pacer)
 * ----
 */

-- Queue one pending recipient's message in the same transaction that marks it queued.
-- Returns false when the recipient was skipped instead (state changed since the start,
-- a variable missing) or must wait for the pair limit.
create or replace function private.campaign_queue_recipient(campaign public.campaigns,
                                                            recipient public.campaign_recipients)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_contact public.contacts;
  v_conv public.conversations;
  v_rendered jsonb;
  v_message public.messages;
  v_reason text;
  v_last timestamptz;
begin
  select * into v_contact from public.contacts c where c.tenant_id = campaign.tenant_id and c.id = recipient.contact_id;
  v_reason := private.campaign_skip_reason(v_contact);
  if v_reason is null then
    v_rendered := private.render_template(campaign.tenant_id, campaign.template_id, v_contact.id, campaign.variables);
    if v_rendered ->> 'buyer' = 'false' then
      v_reason := 'not_a_buyer';
    elsif jsonb_array_length(v_rendered -> 'missing') > 0 then
      v_reason := 'missing_variable';
    end if;
  end if;
  if v_reason is not null then
    update public.campaign_recipients r
       set status = 'skipped', skip_reason = v_reason,
           error_title = case when v_reason = 'missing_variable'
                              then 'missing: ' || (select string_agg(m, ', ') from jsonb_array_elements_text(v_rendered -> 'missing') m) end
     where r.id = recipient.id;
    return false;
  end if;
  -- WhatsApp's pair limit: 1 message every 6 s to the same user
  select max(m.created_at) into v_last from public.messages m
   where m.tenant_id = campaign.tenant_id and m.contact_id = v_contact.id and m.direction = 'outbound';
  if v_last > now() - interval '6 seconds' then
    update public.campaign_recipients r set next_attempt_at = v_last + interval '6 seconds' where r.id = recipient.id;
    return false;
  end if;
  select * into v_conv from public.conversations c
   where c.tenant_id = campaign.tenant_id and c.contact_id = v_contact.id
     and c.whatsapp_number_id = campaign.whatsapp_number_id and c.status in ('open', 'waiting', 'pending')
   order by c.created_at desc limit 1;
  if v_conv.id is null then
    insert into public.conversations (tenant_id, contact_id, whatsapp_number_id, status)
    values (campaign.tenant_id, v_contact.id, campaign.whatsapp_number_id, 'open')
    returning * into v_conv;
    update public.contacts c set total_conversations = c.total_conversations + 1 where c.id = v_contact.id;
  end if;
  v_message := private.queue_outbound(v_conv, v_rendered -> 'message', 'campaign');
  update public.campaign_recipients r
     set status = 'queued', message_id = v_message.id, attempts = r.attempts + 1, queued_at = now(),
         next_attempt_at = null
   where r.id = recipient.id;
  return true;
end;
$$;

-- Worker (about every second): release what each running campaign may send now. Per
-- campaign (locked SKIP LOCKED, so replicas share the work): nothing outside its sending
-- window; at most rate_per_minute a minute since the start or resume; within the number's
-- tier of unique recipients in 24 h. A campaign whose release fails (e.g. its template was
-- unapproved meanwhile) is paused with an alert instead of blocking the others.
create or replace function public.campaign_release(max_per_campaign integer default 1000)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns;
  v_number public.whatsapp_numbers;
  v_local time;
  v_budget integer;
  v_used integer;
  v_limit integer;
  v_recipient public.campaign_recipients;
  v_released integer;
  v_total integer := 0;
begin
  for v_campaign in
    select c.* from public.campaigns c where c.status = 'running' order by c.started_at
       for update of c skip locked
  loop
    if v_campaign.send_window_start is not null then
      select (now() at time zone t.timezone)::time into v_local from public.tenants t where t.id = v_campaign.tenant_id;
      continue when not (case when v_campaign.send_window_start <= v_campaign.send_window_end
                              then v_local >= v_campaign.send_window_start and v_local < v_campaign.send_window_end
                              else v_local >= v_campaign.send_window_start or v_local < v_campaign.send_window_end end);
    end if;
    v_budget := least(max_per_campaign,
      v_campaign.pace_anchor_released - v_campaign.released_count + 1
        + floor(extract(epoch from now() - v_campaign.pace_anchor_at) * v_campaign.rate_per_minute / 60.0)::integer);
    continue when v_budget <= 0;
    select * into v_number from public.whatsapp_numbers n where n.id = v_campaign.whatsapp_number_id;
    v_limit := private.tier_limit(v_number.messaging_limit_tier);
    if v_limit is not null then
      select count(distinct m.contact_id) into v_used from public.messages m
       where m.whatsapp_number_id in (select n.id from public.whatsapp_numbers n
                                       where n.id = v_number.id or n.waba_id = v_number.waba_id)
         and m.type = 'template' and m.direction = 'outbound' and m.created_at > now() - interval '24 hours';
      v_budget := least(v_budget, v_limit - v_used);
      continue when v_budget <= 0;
    end if;
    v_released := 0;
    begin
      for v_recipient in
        select * from public.campaign_recipients r
         where r.campaign_id = v_campaign.id and r.status = 'pending'
           and (r.next_attempt_at is null or r.next_attempt_at <= now())
         order by r.next_attempt_at nulls first
         limit v_budget
      loop
        if private.campaign_queue_recipient(v_campaign, v_recipient) then
          v_released := v_released + 1;
        end if;
      end loop;
    exception when others then
      perform private.campaign_pause(v_campaign, 'sending stopped: ' || sqlerrm, true);
      continue;
    end;
    update public.campaigns c set released_count = c.released_count + v_released where c.id = v_campaign.id;
    v_total := v_total + v_released;
  end loop;
  return v_total;
end;
$$;
comment on function public.campaign_release(integer) is 'Worker: queue the messages running campaigns may send now (rate per minute, tier limit over 24 h, pair limit, sending window); returns how many.';

/**
 * ----
 * Section - Templates: the worker's side of Meta
 * ----
 */

-- Worker: claim templates to create or delete at Meta (a claim older than 5 minutes is
-- taken again), with a token of a number of their WABA.
create or replace function public.templates_claim_pushes(batch_size integer default 10)
returns table (template_id uuid, tenant_id uuid, waba_id text, action text, name text, language text,
               category text, components jsonb, parameter_format text, meta_template_id text, access_token text)
language sql
security definer
set search_path = ''
as $$
  with picked as (
    select t.id from public.message_templates t
     where t.sync_status in ('pending_create', 'pending_delete')
        or (t.sync_status in ('creating', 'deleting') and t.sync_attempted_at < now() - interval '5 minutes')
     order by t.sync_attempted_at nulls first
     limit batch_size
     for update skip locked
  ), claimed as (
    update public.message_templates t
       set sync_status = case when t.sync_status in ('pending_create', 'creating') then 'creating' else 'deleting' end,
           sync_attempted_at = now()
      from picked p where t.id = p.id
    returning t.*
  )
  select t.id, t.tenant_id, t.waba_id, case t.sync_status when 'creating' then 'create' else 'delete' end,
         t.name, t.language, t.category, t.components, t.parameter_format, t.meta_template_id,
         (select private.vault_secret(n.access_token_secret_id, 'whatsapp_number:' || n.id || ':access_token')
            from public.whatsapp_numbers n
           where n.tenant_id = t.tenant_id and n.waba_id = t.waba_id and n.access_token_secret_id is not null
           order by n.status = 'active' desc, n.is_default desc limit 1)
    from claimed t
$$;
comment on function public.templates_claim_pushes(integer) is 'Worker: templates to create or delete at Meta, with a token of their WABA.';

-- Worker: what Meta answered to a create or delete (error null: it worked).
create or replace function public.templates_record_push(template_id uuid, meta_template_id text default null,
                                                        status text default null, error text default null)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.message_templates t
     set sync_status = case
           when templates_record_push.error is not null
             then case t.sync_status when 'creating' then 'create_failed' else 'delete_failed' end
           else 'synced' end,
         sync_error = left(templates_record_push.error, 2000),
         meta_template_id = coalesce(templates_record_push.meta_template_id, t.meta_template_id),
         status = case when templates_record_push.error is not null then t.status
                       when t.sync_status = 'deleting' then 'DELETED'
                       else coalesce(upper(templates_record_push.status), t.status) end,
         is_active = case when templates_record_push.error is null and t.sync_status = 'deleting' then false
                          else t.is_active end,
         last_synced_at = case when templates_record_push.error is null then now() else t.last_synced_at end
   where t.id = templates_record_push.template_id and t.sync_status in ('creating', 'deleting');
end;
$$;
comment on function public.templates_record_push(uuid, text, text, text) is 'Worker: record Meta''s answer to a template create (id, status) or delete, or the error.';

-- Worker: claim requested syncs with a token of a number of the WABA.
create or replace function public.templates_claim_syncs(batch_size integer default 5)
returns table (tenant_id uuid, waba_id text, access_token text)
language sql
security definer
set search_path = ''
as $$
  with picked as (
    select s.tenant_id, s.waba_id from public.template_syncs s
     where s.status = 'requested' or (s.status = 'running' and s.started_at < now() - interval '10 minutes')
     order by s.requested_at
     limit batch_size
     for update skip locked
  ), claimed as (
    update public.template_syncs s set status = 'running', started_at = now()
      from picked p where s.tenant_id = p.tenant_id and s.waba_id = p.waba_id
    returning s.tenant_id, s.waba_id
  )
  select c.tenant_id, c.waba_id,
         (select private.vault_secret(n.access_token_secret_id, 'whatsapp_number:' || n.id || ':access_token')
            from public.whatsapp_numbers n
           where n.tenant_id = c.tenant_id and n.waba_id = c.waba_id and n.access_token_secret_id is not null
           order by n.status = 'active' desc, n.is_default desc limit 1)
    from claimed c
$$;
comment on function public.templates_claim_syncs(integer) is 'Worker: WABAs whose templates should be listed now, with a token.';

-- Worker: apply the full list of a WABA's templates (every page), or record the error.
-- Templates Meta no longer lists are marked DELETED and inactive; local ones not yet
-- pushed are left alone.
create or replace function public.templates_apply_sync(tenant_id uuid, waba_id text, templates jsonb,
                                                       error text default null)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_count integer := 0;
begin
  if templates_apply_sync.error is not null then
    update public.template_syncs s set status = 'failed', finished_at = now(), error = left(templates_apply_sync.error, 2000)
     where s.tenant_id = templates_apply_sync.tenant_id and s.waba_id = templates_apply_sync.waba_id;
    return 0;
  end if;
  insert into public.message_templates as t (tenant_id, waba_id, meta_template_id, name, language, category, status,
    components, parameter_format, rejection_reason, quality_score, sync_status, last_synced_at)
  select templates_apply_sync.tenant_id, templates_apply_sync.waba_id, e ->> 'id', e ->> 'name', e ->> 'language',
         upper(e ->> 'category'), upper(e ->> 'status'), coalesce(e -> 'components', '[]'),
         lower(coalesce(e ->> 'parameter_format', 'positional')),
         nullif(nullif(e ->> 'rejected_reason', 'NONE'), ''), e -> 'quality_score' ->> 'score', 'synced', now()
    from jsonb_array_elements(templates) e
   where upper(e ->> 'category') in ('MARKETING', 'UTILITY', 'AUTHENTICATION')
  on conflict (tenant_id, waba_id, name, language) do update
     set meta_template_id = excluded.meta_template_id, category = excluded.category, status = excluded.status,
         components = excluded.components, parameter_format = excluded.parameter_format,
         rejection_reason = excluded.rejection_reason, quality_score = excluded.quality_score,
         sync_status = case when t.sync_status in ('pending_delete', 'deleting') then t.sync_status else 'synced' end,
         sync_error = null, last_synced_at = now();
  get diagnostics v_count = row_count;
  update public.message_templates t set status = 'DELETED', is_active = false, last_synced_at = now()
   where t.tenant_id = templates_apply_sync.tenant_id and t.waba_id = templates_apply_sync.waba_id
     and t.sync_status = 'synced' and t.status <> 'DELETED'
     and not exists (select 1 from jsonb_array_elements(templates) e
                      where e ->> 'name' = t.name and e ->> 'language' = t.language);
  update public.template_syncs s
     set status = 'succeeded', finished_at = now(), last_synced_at = now(), template_count = v_count, error = null
   where s.tenant_id = templates_apply_sync.tenant_id and s.waba_id = templates_apply_sync.waba_id;
  return v_count;
end;
$$;
comment on function public.templates_apply_sync(uuid, text, jsonb, text) is 'Worker: upsert every template Meta lists for a WABA (the rest marked DELETED), or record why the sync failed.';

-- Request a sync of every WABA of every tenant (the templates_sync job) or of one tenant.
create or replace function private.request_template_syncs(tenant_id uuid default null)
returns integer
language sql
security definer
set search_path = ''
as $$
  with wabas as (
    select distinct n.tenant_id, n.waba_id from public.whatsapp_numbers n
     where n.waba_id is not null and n.status <> 'disabled'
       and (request_template_syncs.tenant_id is null or n.tenant_id = request_template_syncs.tenant_id)
  ), upserted as (
    insert into public.template_syncs as s (tenant_id, waba_id)
    select w.tenant_id, w.waba_id from wabas w
    on conflict (tenant_id, waba_id) do update set status = 'requested', requested_at = now()
     where s.status <> 'running'
    returning 1
  )
  select count(*)::integer from upserted
$$;

/**
 * ----
 * Section - Jobs
 * ----
 */

-- Scheduled campaigns whose time came start (recipients materialised then).
create or replace function private.job_campaigns_start_due(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns;
  v_count integer := 0;
begin
  for v_campaign in
    select * from public.campaigns c where c.status = 'scheduled' and c.scheduled_at <= as_of
     order by c.scheduled_at for update skip locked
  loop
    begin
      perform private.campaign_start(v_campaign);
      v_count := v_count + 1;
    exception when sqlstate '55000' then
      update public.campaigns c set status = 'failed', finished_at = now(), status_reason = left(sqlerrm, 1000)
       where c.id = v_campaign.id;
    end;
  end loop;
  return v_count;
end;
$$;

-- Every WABA's templates are listed again (catches changes no webhook reported).
create or replace function private.job_templates_sync(as_of timestamptz)
returns integer
language sql
security definer
set search_path = ''
as $$ select private.request_template_syncs(null) $$;

insert into public.job_schedules (name, description, cron, function_name) values
  ('campaigns_start_due', 'Starts scheduled campaigns whose time came (recipients materialised then).',
   '* * * * *', 'private.job_campaigns_start_due'),
  ('templates_sync', 'Requests a template sync of every WhatsApp Business Account; the worker lists them at Meta.',
   '17 */6 * * *', 'private.job_templates_sync')
on conflict (name) do update set description = excluded.description, function_name = excluded.function_name,
  runner = excluded.runner;

/**
 * ----
 * Section - Event types of this module
 * ----
 */
insert into public.event_types (type, module, description) values
  ('campaign.started', 'campaigns', 'A campaign started: recipients materialised (payload: total, pending, skipped).'),
  ('campaign.paused', 'campaigns', 'A campaign was paused by a manager or by the system (template paused or disabled at Meta, sending error): payload has the reason.'),
  ('campaign.resumed', 'campaigns', 'A paused campaign resumed, or a completed one reopened for a retry Meta asked for (reopened: true).'),
  ('campaign.completed', 'campaigns', 'Every recipient of a campaign was sent, failed or skipped: payload has the counters.'),
  ('campaign.cancelled', 'campaigns', 'A campaign was cancelled; its pending recipients were skipped.'),
  ('campaign.recipient_updated', 'campaigns', 'A campaign recipient was sent, delivered, read, failed (Meta''s code) or replied.')
on conflict (type) do update set description = excluded.description, module = excluded.module;

/**
 * ----
 * Section - Realtime: managers watch campaigns run (counters; RLS applies)
 * ----
 */
do $$
begin
  if exists (select 1 from pg_publication where pubname = 'supabase_realtime')
     and not exists (select 1 from pg_publication_tables
                      where pubname = 'supabase_realtime' and schemaname = 'public' and tablename = 'campaigns') then
    alter publication supabase_realtime add table public.campaigns;
  end if;
end
$$;

/**
 * ----
 * Section - Triggers of this module's tables
 * ----
 */
drop trigger if exists _100_set_updated_at on public.campaigns;
create trigger _100_set_updated_at before update on public.campaigns
  for each row execute function private.tg_set_updated_at();
drop trigger if exists _900_audit on public.campaigns;
create trigger _900_audit after insert or delete on public.campaigns
  for each row execute function private.tg_audit();

-- A draft's audience is checked when it is written.
create or replace function private.tg_campaigns_check()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_problem text := private.campaign_audience_problem(new.audience);
begin
  if v_problem is not null then
    raise exception 'audience: %', v_problem using errcode = '22023';
  end if;
  if tg_op = 'INSERT' and new.created_by is null then
    select m.id into new.created_by from public.members m where m.tenant_id = new.tenant_id and m.user_id = auth.uid();
  end if;
  return new;
end;
$$;
drop trigger if exists _200_check on public.campaigns;
create trigger _200_check before insert or update of audience on public.campaigns
  for each row execute function private.tg_campaigns_check();

/**
 * ----
 * Section - RLS policies
 * ----
 */
drop policy if exists "Campaigns are visible to members" on public.campaigns;
create policy "Campaigns are visible to members" on public.campaigns
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Managers draft campaigns" on public.campaigns;
create policy "Managers draft campaigns" on public.campaigns
  for insert to authenticated
  with check (tenant_id in (select private.my_tenant_ids_with_role('manager')) and status = 'draft');
drop policy if exists "Managers edit draft campaigns" on public.campaigns;
create policy "Managers edit draft campaigns" on public.campaigns
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')) and status = 'draft')
  with check (tenant_id in (select private.my_tenant_ids_with_role('manager')) and status = 'draft');
drop policy if exists "Managers delete draft campaigns" on public.campaigns;
create policy "Managers delete draft campaigns" on public.campaigns
  for delete to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')) and status = 'draft');

do $$
declare
  v_table text;
begin
  foreach v_table in array array['campaign_recipients', 'campaign_list_members', 'template_syncs'] loop
    execute format('drop policy if exists "Members read %1$s" on public.%1$I', v_table);
    execute format('create policy "Members read %1$s" on public.%1$I for select to authenticated
                    using (tenant_id in (select private.my_tenant_ids()))', v_table);
  end loop;
end
$$;

/**
 * ----
 * Section - Public RPCs (security invoker wrappers over private security definer functions)
 * ----
 */

-- Managers: create a template at Meta (validated now; the worker sends it).
create or replace function private.create_message_template(whatsapp_number_id uuid, name text, category text,
  components jsonb, language text default 'pt_BR', parameter_format text default 'positional')
returns public.message_templates
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_number public.whatsapp_numbers;
  v_row public.message_templates;
begin
  select * into v_number from public.whatsapp_numbers n where n.id = create_message_template.whatsapp_number_id;
  if v_number.id is null or not private.is_member(v_number.tenant_id) then
    raise exception 'WhatsApp number not found' using errcode = 'P0002';
  end if;
  perform private.require_role(v_number.tenant_id, 'manager');
  if v_number.waba_id is null then
    raise exception 'the number has no WhatsApp Business Account id (waba_id)' using errcode = '55000';
  end if;
  insert into public.message_templates (tenant_id, waba_id, name, language, category, components, parameter_format,
                                        status, sync_status)
  values (v_number.tenant_id, v_number.waba_id, create_message_template.name, create_message_template.language,
          upper(create_message_template.category), create_message_template.components,
          create_message_template.parameter_format, 'PENDING', 'pending_create')
  returning * into v_row;
  perform pg_notify('zapbase_templates', v_row.id::text);
  return v_row;
end;
$$;
create or replace function public.create_message_template(whatsapp_number_id uuid, name text, category text,
  components jsonb, language text default 'pt_BR', parameter_format text default 'positional')
returns public.message_templates
language sql
security invoker
set search_path = ''
as $$ select * from private.create_message_template(whatsapp_number_id, name, category, components, language,
                                                     parameter_format) $$;
comment on function public.create_message_template(uuid, text, text, jsonb, text, text) is 'Managers: create a template in the number''s WABA; components are checked against Meta''s rules now, the worker submits it.';

-- Managers: delete a template at Meta (the worker does it; the row stays as DELETED).
create or replace function private.delete_message_template(template_id uuid)
returns public.message_templates
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row public.message_templates;
begin
  select * into v_row from public.message_templates t where t.id = delete_message_template.template_id for update;
  if v_row.id is null or not private.is_member(v_row.tenant_id) then
    raise exception 'template not found' using errcode = 'P0002';
  end if;
  perform private.require_role(v_row.tenant_id, 'manager');
  if v_row.meta_template_id is null and v_row.sync_status in ('local', 'create_failed') then
    update public.message_templates t set status = 'DELETED', is_active = false where t.id = v_row.id
    returning * into v_row;
  else
    update public.message_templates t set sync_status = 'pending_delete', sync_attempted_at = null, is_active = false
     where t.id = v_row.id returning * into v_row;
    perform pg_notify('zapbase_templates', v_row.id::text);
  end if;
  return v_row;
end;
$$;
create or replace function public.delete_message_template(template_id uuid)
returns public.message_templates
language sql
security invoker
set search_path = ''
as $$ select * from private.delete_message_template(template_id) $$;
comment on function public.delete_message_template(uuid) is 'Managers: delete a template at Meta (the worker calls DELETE; it is inactive at once).';

-- Managers: list the tenant's templates at Meta again (every WABA).
create or replace function private.request_template_sync(tenant_id uuid)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.require_role(request_template_sync.tenant_id, 'manager');
  perform pg_notify('zapbase_templates', '');
  return private.request_template_syncs(request_template_sync.tenant_id);
end;
$$;
create or replace function public.request_template_sync(tenant_id uuid)
returns integer
language sql
security invoker
set search_path = ''
as $$ select private.request_template_sync(tenant_id) $$;
comment on function public.request_template_sync(uuid) is 'Managers: sync the tenant''s templates with Meta now; returns the WABAs requested (see template_syncs).';

-- Members: a template as one contact would read it.
create or replace function private.preview_template(template_id uuid, contact_id uuid,
                                                    variables jsonb default '{}'::jsonb)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_tenant uuid;
begin
  select t.tenant_id into v_tenant from public.message_templates t where t.id = preview_template.template_id;
  if v_tenant is null or not private.is_member(v_tenant) then
    raise exception 'template not found' using errcode = 'P0002';
  end if;
  return private.render_template(v_tenant, preview_template.template_id, preview_template.contact_id,
                                 coalesce(preview_template.variables, '{}'));
end;
$$;
create or replace function public.preview_template(template_id uuid, contact_id uuid,
                                                   variables jsonb default '{}'::jsonb)
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$ select private.preview_template(template_id, contact_id, variables) $$;
comment on function public.preview_template(uuid, uuid, jsonb) is 'Members: the final text of a template for one contact, the message that would be sent, the variables missing and, for a template tied to a product, whether the contact bought it (buyer).';

-- Managers: who would receive a campaign now, and why the others would not.
create or replace function private.campaign_dry_run(campaign_id uuid)
returns jsonb
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns;
  v_result jsonb;
begin
  select * into v_campaign from public.campaigns c where c.id = campaign_dry_run.campaign_id;
  if v_campaign.id is null or not private.is_member(v_campaign.tenant_id) then
    raise exception 'campaign not found' using errcode = 'P0002';
  end if;
  perform private.require_role(v_campaign.tenant_id, 'manager');
  select jsonb_build_object(
           'audience', coalesce(sum(a.n), 0),
           'would_send', coalesce(sum(a.n) filter (where a.skip_reason is null), 0),
           'skipped', coalesce(jsonb_object_agg(a.skip_reason, a.n) filter (where a.skip_reason is not null), '{}'))
    into v_result
    from (select a.skip_reason, count(*) as n from private.campaign_audience(v_campaign) a group by 1) a;
  return v_result;
end;
$$;
create or replace function public.campaign_dry_run(campaign_id uuid)
returns jsonb
language sql
stable
security invoker
set search_path = ''
as $$ select private.campaign_dry_run(campaign_id) $$;
comment on function public.campaign_dry_run(uuid) is 'Managers: {audience, would_send, skipped: {reason: n}} for a campaign as things stand now.';

-- Managers: the explicit list of a campaign (replaces it; audience list becomes true).
create or replace function private.set_campaign_list(campaign_id uuid, contact_ids uuid[])
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns := private.campaign_for_manager(set_campaign_list.campaign_id);
  v_count integer;
begin
  if v_campaign.status <> 'draft' then
    raise exception 'only a draft campaign''s list can change' using errcode = '55000';
  end if;
  delete from public.campaign_list_members l where l.campaign_id = v_campaign.id;
  insert into public.campaign_list_members (tenant_id, campaign_id, contact_id)
  select v_campaign.tenant_id, v_campaign.id, c.id from public.contacts c
   where c.tenant_id = v_campaign.tenant_id and c.id = any (set_campaign_list.contact_ids)
  on conflict do nothing;
  get diagnostics v_count = row_count;
  update public.campaigns c set audience = c.audience || '{"list": true}' where c.id = v_campaign.id;
  return v_count;
end;
$$;
create or replace function public.set_campaign_list(campaign_id uuid, contact_ids uuid[])
returns integer
language sql
security invoker
set search_path = ''
as $$ select private.set_campaign_list(campaign_id, contact_ids) $$;
comment on function public.set_campaign_list(uuid, uuid[]) is 'Managers: a draft campaign''s explicit list (contacts of the tenant; others ignored); returns its size.';

-- Managers: add a CSV of phone numbers (first column; a header line is allowed) to a draft
-- campaign's list, through import_logs: every bad line is reported with its number.
create or replace function private.import_campaign_csv(campaign_id uuid, csv text, file_name text default null)
returns public.import_logs
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns := private.campaign_for_manager(import_campaign_csv.campaign_id);
  v_log public.import_logs;
  v_line record;
  v_digits text;
  v_contact uuid;
  v_errors jsonb := '[]';
  v_seen text[] := '{}';
  v_total integer := 0;
  v_ok integer := 0;
begin
  if v_campaign.status <> 'draft' then
    raise exception 'only a draft campaign''s list can change' using errcode = '55000';
  end if;
  insert into public.import_logs (tenant_id, kind, source, file_name, status, started_by)
  values (v_campaign.tenant_id, 'contacts', 'csv', left(import_campaign_csv.file_name, 255), 'running', auth.uid())
  returning * into v_log;
  for v_line in
    select l.line, l.n from regexp_split_to_table(coalesce(import_campaign_csv.csv, ''), E'\r?\n')
                         with ordinality l(line, n)
  loop
    continue when btrim(v_line.line) = '';
    v_digits := regexp_replace(split_part(btrim(split_part(v_line.line, ',', 1)), ';', 1), '[\s().+-]', '', 'g');
    if v_line.n = 1 and v_digits !~ '[0-9]' then
      continue;  -- header
    end if;
    v_total := v_total + 1;
    if v_digits !~ '^[1-9][0-9]{7,14}$' then
      v_errors := v_errors || jsonb_build_object('row', v_line.n, 'error', 'not a phone number with country code',
                                                 'value', left(v_line.line, 100));
      continue;
    end if;
    if v_digits = any (v_seen) then
      v_errors := v_errors || jsonb_build_object('row', v_line.n, 'error', 'duplicate number', 'value', v_digits);
      continue;
    end if;
    v_seen := v_seen || v_digits;
    select c.id into v_contact from public.contacts c where c.tenant_id = v_campaign.tenant_id and c.wa_id = v_digits;
    if v_contact is null then
      v_errors := v_errors || jsonb_build_object('row', v_line.n, 'error', 'no contact with this number',
                                                 'value', v_digits);
      continue;
    end if;
    insert into public.campaign_list_members (tenant_id, campaign_id, contact_id, import_id)
    values (v_campaign.tenant_id, v_campaign.id, v_contact, v_log.id)
    on conflict do nothing;
    v_ok := v_ok + 1;
  end loop;
  update public.campaigns c set audience = c.audience || '{"list": true}' where c.id = v_campaign.id;
  update public.import_logs l
     set status = case when v_total - v_ok = 0 then 'succeeded' when v_ok = 0 then 'failed' else 'partial' end,
         total_rows = v_total, imported_rows = v_ok, failed_rows = v_total - v_ok, errors = v_errors,
         finished_at = now()
   where l.id = v_log.id
  returning * into v_log;
  return v_log;
end;
$$;
create or replace function public.import_campaign_csv(campaign_id uuid, csv text, file_name text default null)
returns public.import_logs
language sql
security invoker
set search_path = ''
as $$ select * from private.import_campaign_csv(campaign_id, csv, file_name) $$;
comment on function public.import_campaign_csv(uuid, text, text) is 'Managers: add the numbers of a CSV (first column) to a draft campaign''s list; import_logs reports each bad line.';

-- Managers: schedule a draft (or move a scheduled campaign).
create or replace function private.schedule_campaign(campaign_id uuid, at timestamptz)
returns public.campaigns
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns := private.campaign_for_manager(schedule_campaign.campaign_id);
begin
  if v_campaign.status not in ('draft', 'scheduled') then
    raise exception 'a % campaign cannot be scheduled', v_campaign.status using errcode = '55000';
  end if;
  if schedule_campaign.at is null or schedule_campaign.at < now() - interval '1 minute' then
    raise exception 'schedule it for a time to come' using errcode = '22023';
  end if;
  update public.campaigns c set status = 'scheduled', scheduled_at = schedule_campaign.at
   where c.id = v_campaign.id returning * into v_campaign;
  return v_campaign;
end;
$$;
create or replace function public.schedule_campaign(campaign_id uuid, at timestamptz)
returns public.campaigns
language sql
security invoker
set search_path = ''
as $$ select * from private.schedule_campaign(campaign_id, at) $$;
comment on function public.schedule_campaign(uuid, timestamptz) is 'Managers: a draft campaign starts at this time (the job campaigns_start_due).';

-- Managers: start a draft or scheduled campaign now.
create or replace function private.start_campaign(campaign_id uuid)
returns public.campaigns
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns := private.campaign_for_manager(start_campaign.campaign_id);
begin
  if v_campaign.status not in ('draft', 'scheduled') then
    raise exception 'a % campaign cannot start', v_campaign.status using errcode = '55000';
  end if;
  return private.campaign_start(v_campaign);
end;
$$;
create or replace function public.start_campaign(campaign_id uuid)
returns public.campaigns
language sql
security invoker
set search_path = ''
as $$ select * from private.start_campaign(campaign_id) $$;
comment on function public.start_campaign(uuid) is 'Managers: start now: recipients are materialised (skipped ones with their reason) and the worker sends at the campaign''s pace.';

-- Managers: pause, resume or cancel.
create or replace function private.set_campaign_state(campaign_id uuid, action text)
returns public.campaigns
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_campaign public.campaigns := private.campaign_for_manager(set_campaign_state.campaign_id);
  v_withdrawn uuid[];
begin
  if set_campaign_state.action = 'pause' then
    if v_campaign.status not in ('running', 'scheduled') then
      raise exception 'a % campaign cannot be paused', v_campaign.status using errcode = '55000';
    end if;
    perform private.campaign_pause(v_campaign, 'paused by a manager', false);
  elsif set_campaign_state.action = 'resume' then
    if v_campaign.status <> 'paused' then
      raise exception 'a % campaign cannot be resumed', v_campaign.status using errcode = '55000';
    end if;
    if v_campaign.started_at is null then
      update public.campaigns c set status = 'scheduled', paused_at = null, status_reason = null where c.id = v_campaign.id;
    else
      -- pacing restarts now: a pause never turns into a burst
      update public.campaigns c
         set status = 'running', paused_at = null, status_reason = null, pace_anchor_at = now(),
             pace_anchor_released = c.released_count
       where c.id = v_campaign.id;
    end if;
    perform private.emit(v_campaign.tenant_id, 'campaign.resumed', 'campaigns', v_campaign.id,
                         jsonb_build_object('name', v_campaign.name));
  elsif set_campaign_state.action = 'cancel' then
    if v_campaign.status not in ('draft', 'scheduled', 'running', 'paused') then
      raise exception 'a % campaign cannot be cancelled', v_campaign.status using errcode = '55000';
    end if;
    update public.campaigns c set status = 'cancelled', finished_at = now(), status_reason = 'cancelled by a manager'
     where c.id = v_campaign.id;
    -- what no worker has claimed yet never leaves; what is in flight follows its webhooks
    v_withdrawn := array(select private.withdraw_outbound(
      array(select r.message_id from public.campaign_recipients r
             where r.campaign_id = v_campaign.id and r.status = 'queued'),
      'campaign cancelled by a manager'));
    update public.campaign_recipients r set status = 'skipped', skip_reason = 'cancelled'
     where r.campaign_id = v_campaign.id
       and (r.status = 'pending' or r.status = 'queued' and r.message_id = any(v_withdrawn));
    perform private.emit(v_campaign.tenant_id, 'campaign.cancelled', 'campaigns', v_campaign.id,
                         jsonb_build_object('name', v_campaign.name));
  else
    raise exception 'action must be pause, resume or cancel' using errcode = '22023';
  end if;
  select * into v_campaign from public.campaigns c where c.id = v_campaign.id;
  return v_campaign;
end;
$$;
create or replace function public.set_campaign_state(campaign_id uuid, action text)
returns public.campaigns
language sql
security invoker
set search_path = ''
as $$ select * from private.set_campaign_state(campaign_id, action) $$;
comment on function public.set_campaign_state(uuid, text) is 'Managers: pause, resume (pacing restarts) or cancel (pending recipients and those whose message no worker has claimed yet are skipped as cancelled; a message in flight is either sent or, if its send fails and would be retried, cancelled too) a campaign.';

/**
 * ----
 * Section - Grants
 * ----
 */
revoke execute on all functions in schema private from public, anon;
grant select on public.template_syncs, public.campaign_recipients, public.campaign_list_members to authenticated;
grant select,
  insert (tenant_id, name, description, whatsapp_number_id, template_id, variables, audience, rate_per_minute,
          send_window_start, send_window_end, reply_window_days, max_attempts),
  update (name, description, whatsapp_number_id, template_id, variables, audience, rate_per_minute,
          send_window_start, send_window_end, reply_window_days, max_attempts),
  delete on public.campaigns to authenticated;
grant select, insert, update, delete on public.template_syncs, public.campaigns, public.campaign_recipients,
  public.campaign_list_members to service_role;

grant execute on function private.create_message_template(uuid, text, text, jsonb, text, text),
  private.delete_message_template(uuid), private.request_template_sync(uuid),
  private.preview_template(uuid, uuid, jsonb), private.campaign_dry_run(uuid),
  private.set_campaign_list(uuid, uuid[]), private.import_campaign_csv(uuid, text, text),
  private.schedule_campaign(uuid, timestamptz), private.start_campaign(uuid),
  private.set_campaign_state(uuid, text)
  to authenticated, service_role;
revoke execute on function public.create_message_template(uuid, text, text, jsonb, text, text),
  public.delete_message_template(uuid), public.request_template_sync(uuid),
  public.preview_template(uuid, uuid, jsonb), public.campaign_dry_run(uuid),
  public.set_campaign_list(uuid, uuid[]), public.import_campaign_csv(uuid, text, text),
  public.schedule_campaign(uuid, timestamptz), public.start_campaign(uuid),
  public.set_campaign_state(uuid, text)
  from public, anon;
grant execute on function public.create_message_template(uuid, text, text, jsonb, text, text),
  public.delete_message_template(uuid), public.request_template_sync(uuid),
  public.preview_template(uuid, uuid, jsonb), public.campaign_dry_run(uuid),
  public.set_campaign_list(uuid, uuid[]), public.import_campaign_csv(uuid, text, text),
  public.schedule_campaign(uuid, timestamptz), public.start_campaign(uuid),
  public.set_campaign_state(uuid, text)
  to authenticated, service_role;

revoke execute on function public.campaign_release(integer), public.templates_claim_pushes(integer),
  public.templates_record_push(uuid, text, text, text), public.templates_claim_syncs(integer),
  public.templates_apply_sync(uuid, text, jsonb, text)
  from public, anon, authenticated;
grant execute on function public.campaign_release(integer), public.templates_claim_pushes(integer),
  public.templates_record_push(uuid, text, text, text), public.templates_claim_syncs(integer),
  public.templates_apply_sync(uuid, text, jsonb, text)
  to service_role;
