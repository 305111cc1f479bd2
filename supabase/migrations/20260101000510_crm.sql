/**
 * Zapbase module 6b: crm.
 * Leads (seed 000 leads, 004 leads): one per person per tenant, linked to the contact when
 * known, with stages, a score, where they came from (a Click-to-WhatsApp ad captured from
 * ingest, a campaign, a flow, an import, a renewal) and external CRM ids; converting one
 * makes its contact a client and keeps the lead and its stage history. Deals (seed 004) on
 * the tenant's own pipelines and stages, with stage history (what "deal stuck" reads), won /
 * lost with a reason. Appointments (seed 000) that never double-book an assignee, confirmed,
 * cancelled or sent back for a new time by the customer's reply buttons, reminded by
 * template and marked no-show by jobs. Services and certificates (seed 000): a certificate
 * always under a service, days to expire in a view, expiry alerts at 30 and 7 days sent
 * once each by template with a renewal lead.
 *
 *   create_lead / import_leads / CTWA conversation ─► leads ─► lead_stage_history
 *   deals ─► deal_stage_history (entered_at / left_at)
 *   appointments ─► job appointment_reminders ─► template with buttons ─► customer taps
 *        ─► messages (interactive_reply_id appointment:<id>:confirm|cancel|reschedule) ─► status
 *   certificates ─► jobs cert_expiry_alert_30d / _07d ─► template + alert + renewal lead
 *
 * Templates the jobs send are named in tenants.settings.templates (appointment_reminder,
 * certificate_expiry), with the defaults lembrete_agendamento and certificado_vencendo; a
 * send that WhatsApp's rules refuse (no approved template, an opted-out contact) is recorded
 * on the row and not retried.
 *
 * Who may do what:
 *   every member  reads leads, deals, pipelines, appointments, services, certificates
 *   agent         writes leads (create_lead, import_leads), deals, appointments, services,
 *                 certificates
 *   manager       pipelines and their stages
 *   service role  everything (flows and automation rules call create_lead), the jobs
 */

/**
 * ----
 * Section - Tables
 * ----
 */

-- Leads (seed 000 leads, 004 leads).
create table if not exists public.leads (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  contact_id uuid,
  name text not null check (length(name) between 1 and 200),
  phone text check (phone ~ '^\+?[0-9]{8,20}$'),
  email text check (length(email) <= 254),
  company text check (length(company) <= 200),
  position text check (length(position) <= 120),
  interest text check (length(interest) <= 300),
  stage text not null default 'new' check (stage in ('new', 'contacted', 'qualified', 'proposal', 'lost', 'converted')),
  score smallint not null default 0 check (score between 0 and 100),
  source text not null default 'whatsapp_bot'
    check (source in ('whatsapp_bot', 'ctwa_ad', 'campaign', 'flow', 'automation', 'import', 'manual', 'renewal', 'api')),
  source_ref text check (length(source_ref) <= 200),
  referral jsonb,
  owner_id uuid,
  external_id text check (length(external_id) <= 200),
  crm_synced_at timestamptz,
  custom_fields jsonb not null default '{}'::jsonb,
  notes text check (length(notes) <= 10000),
  lost_reason text check (length(lost_reason) <= 500),
  converted_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, contact_id),
  unique (tenant_id, phone),
  unique (tenant_id, external_id),
  foreign key (tenant_id, contact_id) references public.contacts (tenant_id, id) on delete set null (contact_id),
  foreign key (tenant_id, owner_id) references public.members (tenant_id, id) on delete set null (owner_id)
);
alter table public.leads enable row level security;
create index if not exists leads_tenant_stage_idx on public.leads (tenant_id, stage, created_at desc);
create index if not exists leads_tenant_owner_idx on public.leads (tenant_id, owner_id);
comment on table public.leads is 'Sales leads, one per person per tenant (by contact and by phone): stage, score, source, external CRM id. Converted leads stay, with their history; their contact becomes a client.';
comment on column public.leads.contact_id is 'The WhatsApp contact, when known (null: a lead from an import or a CRM, before any conversation).';
comment on column public.leads.score is 'Qualification score 0-100 (rules, the bot''s qualification).';
comment on column public.leads.source is 'Where the lead came from: whatsapp_bot, ctwa_ad (Click-to-WhatsApp ad, referral kept), campaign, flow, automation, import, manual, renewal, api.';
comment on column public.leads.source_ref is 'Id or name within the source (campaign id, flow id, ad id, import log id, certificate id).';
comment on column public.leads.referral is 'The Click-to-WhatsApp ad referral captured by ingest (source_url, headline, ctwa_clid...).';
comment on column public.leads.external_id is 'Id of the lead in the tenant''s external CRM, unique per tenant (seed 004).';
comment on column public.leads.custom_fields is 'Tenant-defined fields (seed 004 custom_fields).';

create table if not exists public.lead_stage_history (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  lead_id uuid not null,
  from_stage text,
  to_stage text not null,
  changed_by uuid references auth.users (id) on delete set null,
  changed_at timestamptz not null default now(),
  unique (tenant_id, id),
  foreign key (tenant_id, lead_id) references public.leads (tenant_id, id) on delete cascade
);
alter table public.lead_stage_history enable row level security;
create index if not exists lead_stage_history_lead_idx on public.lead_stage_history (tenant_id, lead_id, changed_at);
create index if not exists lead_stage_history_changed_by_idx on public.lead_stage_history (changed_by);
comment on table public.lead_stage_history is 'Every stage a lead went through, written by trigger (conversion included).';

-- Pipelines and their stages (seed 004 deal stages, per tenant).
create table if not exists public.pipelines (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  name text not null check (length(name) between 1 and 80),
  is_default boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, name)
);
alter table public.pipelines enable row level security;
create unique index if not exists pipelines_one_default_idx on public.pipelines (tenant_id) where is_default;
comment on table public.pipelines is 'A tenant''s sales pipelines (e.g. Novos clientes, Renovações).';

create table if not exists public.pipeline_stages (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  pipeline_id uuid not null,
  name text not null check (length(name) between 1 and 80),
  position smallint not null default 0,
  kind text not null default 'open' check (kind in ('open', 'won', 'lost')),
  probability numeric(5,2) check (probability between 0 and 100),
  stuck_after interval check (stuck_after > interval '0'),
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, pipeline_id, id),
  unique (pipeline_id, name),
  foreign key (tenant_id, pipeline_id) references public.pipelines (tenant_id, id) on delete cascade
);
alter table public.pipeline_stages enable row level security;
comment on table public.pipeline_stages is 'Stages of a pipeline in order; kind won / lost closes the deals that reach them.';
comment on column public.pipeline_stages.probability is 'Default probability (%) of a deal entering the stage.';
comment on column public.pipeline_stages.stuck_after is 'A deal longer than this in the stage is stuck (read from deal_stage_history / deals.stage_entered_at).';

-- Deals (seed 004 deals).
create table if not exists public.deals (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  lead_id uuid,
  contact_id uuid,
  title text not null check (length(title) between 1 and 200),
  pipeline_id uuid not null,
  stage_id uuid not null,
  status text not null default 'open' check (status in ('open', 'won', 'lost')),
  probability numeric(5,2) check (probability between 0 and 100),
  value numeric(14,4) not null default 0 check (value >= 0),
  currency text not null default 'BRL' check (currency ~ '^[A-Z]{3}$'),
  expected_close_at date,
  closed_at timestamptz,
  lost_reason text check (length(lost_reason) <= 500),
  stage_entered_at timestamptz not null default now(),
  owner_id uuid,
  external_id text check (length(external_id) <= 200),
  crm_synced_at timestamptz,
  custom_fields jsonb not null default '{}'::jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, external_id),
  foreign key (tenant_id, lead_id) references public.leads (tenant_id, id) on delete set null (lead_id),
  foreign key (tenant_id, contact_id) references public.contacts (tenant_id, id) on delete set null (contact_id),
  foreign key (tenant_id, pipeline_id) references public.pipelines (tenant_id, id),
  -- the stage belongs to the deal's pipeline
  foreign key (tenant_id, pipeline_id, stage_id) references public.pipeline_stages (tenant_id, pipeline_id, id),
  foreign key (tenant_id, owner_id) references public.members (tenant_id, id) on delete set null (owner_id)
);
alter table public.deals enable row level security;
create index if not exists deals_tenant_stage_idx on public.deals (tenant_id, pipeline_id, stage_id, stage_entered_at);
create index if not exists deals_tenant_lead_idx on public.deals (tenant_id, lead_id);
create index if not exists deals_tenant_contact_idx on public.deals (tenant_id, contact_id);
create index if not exists deals_tenant_owner_idx on public.deals (tenant_id, owner_id);
comment on table public.deals is 'Opportunities on a pipeline: stage (of that pipeline), probability, value in BRL, expected / closed dates, won or lost (with a reason), external CRM id.';
comment on column public.deals.status is 'open, won or lost: the kind of its stage (set by trigger).';
comment on column public.deals.stage_entered_at is 'When the deal entered its current stage ("deal stuck" compares it with the stage''s stuck_after).';

create table if not exists public.deal_stage_history (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  deal_id uuid not null,
  stage_id uuid not null,
  entered_at timestamptz not null default now(),
  left_at timestamptz,
  changed_by uuid references auth.users (id) on delete set null,
  unique (tenant_id, id),
  foreign key (tenant_id, deal_id) references public.deals (tenant_id, id) on delete cascade,
  foreign key (tenant_id, stage_id) references public.pipeline_stages (tenant_id, id) on delete cascade
);
alter table public.deal_stage_history enable row level security;
create index if not exists deal_stage_history_deal_idx on public.deal_stage_history (tenant_id, deal_id, entered_at);
create index if not exists deal_stage_history_stage_idx on public.deal_stage_history (tenant_id, stage_id) where left_at is null;
create index if not exists deal_stage_history_changed_by_idx on public.deal_stage_history (changed_by);
comment on table public.deal_stage_history is 'Each stay of a deal in a stage (entered_at, left_at; left_at null for the current one), written by trigger.';

-- Appointments (seed 000 appointments).
create table if not exists public.appointments (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  contact_id uuid not null,
  type text not null check (type in ('demo', 'support', 'training', 'followup', 'renewal')),
  status text not null default 'pending'
    check (status in ('pending', 'confirmed', 'rescheduled', 'done', 'no_show', 'cancelled')),
  starts_at timestamptz not null,
  ends_at timestamptz not null,
  assignee_id uuid,
  ticket_id uuid,
  lead_id uuid,
  meeting_link text check (meeting_link ~ '^https://' and length(meeting_link) <= 500),
  calendar_event_id text check (length(calendar_event_id) <= 200),
  notes text check (length(notes) <= 5000),
  reminder_hours smallint not null default 24 check (reminder_hours between 0 and 720),
  remind_at timestamptz,
  reminder_sent_at timestamptz,
  reminder_error text check (length(reminder_error) <= 500),
  confirmed_at timestamptz,
  cancelled_at timestamptz,
  created_by uuid default auth.uid() references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  check (ends_at > starts_at),
  foreign key (tenant_id, contact_id) references public.contacts (tenant_id, id) on delete cascade,
  foreign key (tenant_id, assignee_id) references public.members (tenant_id, id) on delete set null (assignee_id),
  foreign key (tenant_id, ticket_id) references public.tickets (tenant_id, id) on delete set null (ticket_id),
  foreign key (tenant_id, lead_id) references public.leads (tenant_id, id) on delete set null (lead_id),
  constraint appointments_assignee_already_booked exclude using gist (
    tenant_id with =, assignee_id with =, tstzrange(starts_at, ends_at) with &&)
    where (assignee_id is not null and status in ('pending', 'confirmed', 'rescheduled'))
);
alter table public.appointments enable row level security;
create index if not exists appointments_tenant_contact_idx on public.appointments (tenant_id, contact_id, starts_at);
create index if not exists appointments_tenant_ticket_idx on public.appointments (tenant_id, ticket_id);
create index if not exists appointments_tenant_lead_idx on public.appointments (tenant_id, lead_id);
create index if not exists appointments_created_by_idx on public.appointments (created_by);
create index if not exists appointments_reminder_due_idx on public.appointments (remind_at)
  where reminder_sent_at is null and status in ('pending', 'confirmed');
create index if not exists appointments_open_end_idx on public.appointments (ends_at)
  where status in ('pending', 'confirmed');
comment on table public.appointments is 'Meetings with a contact (demo, support, training, followup, renewal). An assignee is never booked twice at once (exclusion constraint over the time range of live appointments).';
comment on column public.appointments.status is 'pending → confirmed / rescheduled (the customer asked for another time) / cancelled, then done or no_show (job, after the end).';
comment on column public.appointments.remind_at is 'starts_at - reminder_hours: when the reminder template is sent (job appointment_reminders).';
comment on column public.appointments.reminder_error is 'Why the reminder could not be sent (no approved template, the contact opted out...).';
comment on column public.appointments.calendar_event_id is 'Event id in the external calendar (Google Calendar).';

-- Services and certificates (seed 000).
create table if not exists public.services (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  contact_id uuid not null,
  name text not null check (length(name) between 1 and 200),
  plan text not null check (plan in ('essencial', 'profissional', 'enterprise', 'trial')),
  status text not null default 'active' check (status in ('active', 'suspended', 'cancelled', 'trial')),
  contracted_at timestamptz not null default now(),
  expires_at timestamptz,
  monthly_value numeric(14,4) check (monthly_value >= 0),
  currency text not null default 'BRL' check (currency ~ '^[A-Z]{3}$'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  foreign key (tenant_id, contact_id) references public.contacts (tenant_id, id) on delete cascade
);
alter table public.services enable row level security;
create index if not exists services_tenant_contact_idx on public.services (tenant_id, contact_id);
comment on table public.services is 'What a contact contracted (plan, status, monthly value, dates).';

create table if not exists public.certificates (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  service_id uuid not null,
  contact_id uuid not null,
  type text not null check (type in ('e-CPF', 'e-CNPJ', 'e-NFe', 'e-CTe', 'e-CAdES')),
  issued_at timestamptz not null,
  expires_at timestamptz not null,
  status text not null default 'valid' check (status in ('valid', 'expired', 'revoked', 'renewed')),
  alert_30d_sent_at timestamptz,
  alert_07d_sent_at timestamptz,
  alert_error text check (length(alert_error) <= 500),
  renewal_lead_id uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  check (expires_at > issued_at),
  foreign key (tenant_id, service_id) references public.services (tenant_id, id) on delete cascade,
  foreign key (tenant_id, contact_id) references public.contacts (tenant_id, id) on delete cascade,
  foreign key (tenant_id, renewal_lead_id) references public.leads (tenant_id, id) on delete set null (renewal_lead_id)
);
alter table public.certificates enable row level security;
create index if not exists certificates_tenant_service_idx on public.certificates (tenant_id, service_id);
create index if not exists certificates_tenant_contact_idx on public.certificates (tenant_id, contact_id);
create index if not exists certificates_renewal_lead_idx on public.certificates (tenant_id, renewal_lead_id);
create index if not exists certificates_alert_30d_idx on public.certificates (expires_at)
  where status = 'valid' and alert_30d_sent_at is null;
create index if not exists certificates_alert_07d_idx on public.certificates (expires_at)
  where status = 'valid' and alert_07d_sent_at is null;
comment on table public.certificates is 'Digital certificates (e-CPF, e-CNPJ...), always under a service; expiry alerts at 30 and 7 days, once each. Days to expire: the view certificates_expiry.';
comment on column public.certificates.contact_id is 'The service''s contact (set by trigger).';
comment on column public.certificates.alert_30d_sent_at is 'When the 30-day expiry alert was handled (sent, or refused: see alert_error); never twice.';
comment on column public.certificates.renewal_lead_id is 'The renewal lead the first expiry alert created (or found: one lead per person).';

-- Days to expire are time-dependent: a view, never a generated column (seed 000's mistake).
create or replace view public.certificates_expiry with (security_invoker = true) as
  select c.*, (c.expires_at at time zone t.timezone)::date - (now() at time zone t.timezone)::date as days_to_expire
    from public.certificates c join public.tenants t on t.id = c.tenant_id;
comment on view public.certificates_expiry is 'Certificates with days_to_expire (calendar days in the tenant''s time zone, negative once expired); RLS of certificates applies.';

/**
 * ----
 * Section - Private helpers
 * ----
 */

-- The contact's live conversation on the tenant's default number, or a new one waiting for
-- the customer: where a job's template goes.
create or replace function private.contact_conversation(tenant_id uuid, contact_id uuid)
returns public.conversations
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_number uuid;
  v_conv public.conversations;
begin
  select n.id into v_number from public.whatsapp_numbers n
   where n.tenant_id = contact_conversation.tenant_id and n.status = 'active'
   order by n.is_default desc, n.created_at limit 1;
  if v_number is null then
    raise exception 'no active WhatsApp number to write from' using errcode = 'P0002';
  end if;
  select * into v_conv from public.conversations c
   where c.tenant_id = contact_conversation.tenant_id and c.contact_id = contact_conversation.contact_id
     and c.whatsapp_number_id = v_number and c.status in ('open', 'waiting', 'pending');
  if v_conv.id is null then
    insert into public.conversations (tenant_id, contact_id, whatsapp_number_id, mode, status)
    values (contact_conversation.tenant_id, contact_conversation.contact_id, v_number, 'bot', 'waiting')
    returning * into v_conv;
    update public.contacts c set total_conversations = c.total_conversations + 1
     where c.tenant_id = contact_conversation.tenant_id and c.id = contact_conversation.contact_id;
  end if;
  return v_conv;
end;
$$;

-- Queues a tenant's template (its name from tenants.settings.templates.<purpose>, else the
-- default) with body parameters and quick-reply button payloads. Returns null when sent,
-- else why WhatsApp's rules refused it (the caller records it; nothing is retried).
create or replace function private.send_template(
  tenant_id uuid, contact_id uuid, purpose text, default_name text, body text[], buttons text[] default '{}'
) returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_name text;
  v_components jsonb;
begin
  select coalesce(t.settings -> 'templates' ->> send_template.purpose, send_template.default_name) into v_name
    from public.tenants t where t.id = send_template.tenant_id;
  v_components := jsonb_build_array(jsonb_build_object('type', 'body', 'parameters',
    (select coalesce(jsonb_agg(jsonb_build_object('type', 'text', 'text', b) order by i), '[]')
       from unnest(send_template.body) with ordinality as x(b, i))))
    || (select coalesce(jsonb_agg(jsonb_build_object('type', 'button', 'sub_type', 'quick_reply', 'index', (i - 1)::text,
                                                      'parameters', jsonb_build_array(
                                                        jsonb_build_object('type', 'payload', 'payload', p)))
                                  order by i), '[]')
          from unnest(send_template.buttons) with ordinality as x(p, i));
  perform private.queue_outbound(private.contact_conversation(send_template.tenant_id, send_template.contact_id),
    jsonb_build_object('type', 'template', 'template', jsonb_build_object(
      'name', v_name, 'language', jsonb_build_object('code', 'pt_BR'), 'components', v_components)),
    'system');
  return null;
exception when others then
  return left(sqlerrm, 500);
end;
$$;
comment on function private.send_template(uuid, uuid, text, text, text[], text[]) is 'Jobs: queue a tenant template (settings.templates.<purpose> or the default name) to a contact; null when queued, else the refusal.';

-- The lead of a person (by contact, else by phone), created when there is none; what exists
-- is kept (one lead per person), empty fields are filled in and the score only rises.
create or replace function private.upsert_lead(
  tenant_id uuid, contact_id uuid, name text, phone text, email text, source text, source_ref text,
  interest text, score integer, referral jsonb default null
) returns public.leads
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_lead public.leads;
  v_contact public.contacts;
begin
  if upsert_lead.contact_id is not null then
    select * into v_contact from public.contacts c
     where c.tenant_id = upsert_lead.tenant_id and c.id = upsert_lead.contact_id;
    if v_contact.id is null then
      raise exception 'contact not found' using errcode = 'P0002';
    end if;
  end if;
  select * into v_lead from public.leads l
   where l.tenant_id = upsert_lead.tenant_id
     and (l.contact_id = upsert_lead.contact_id
          or l.phone = coalesce(upsert_lead.phone, '+' || v_contact.wa_id))
   order by l.contact_id = upsert_lead.contact_id desc nulls last
   limit 1 for update;
  if v_lead.id is null then
    insert into public.leads (tenant_id, contact_id, name, phone, email, source, source_ref, interest, score, referral)
    values (upsert_lead.tenant_id, upsert_lead.contact_id,
            coalesce(nullif(btrim(upsert_lead.name), ''), v_contact.name, v_contact.profile_name, 'Sem nome'),
            coalesce(upsert_lead.phone, '+' || v_contact.wa_id), coalesce(upsert_lead.email, v_contact.email),
            upsert_lead.source, upsert_lead.source_ref, upsert_lead.interest, coalesce(upsert_lead.score, 0),
            upsert_lead.referral)
    on conflict do nothing
    returning * into v_lead;
    if v_lead.id is null then  -- a concurrent creation of the same person won
      return private.upsert_lead(upsert_lead.tenant_id, upsert_lead.contact_id, upsert_lead.name, upsert_lead.phone,
        upsert_lead.email, upsert_lead.source, upsert_lead.source_ref, upsert_lead.interest, upsert_lead.score,
        upsert_lead.referral);
    end if;
    return v_lead;
  end if;
  update public.leads l
     set contact_id = coalesce(l.contact_id, upsert_lead.contact_id),
         email = coalesce(l.email, upsert_lead.email),
         interest = coalesce(upsert_lead.interest, l.interest),
         referral = coalesce(l.referral, upsert_lead.referral),
         score = greatest(l.score, coalesce(upsert_lead.score, 0))
   where l.id = v_lead.id
  returning * into v_lead;
  return v_lead;
end;
$$;

-- Answers an appointment from a tapped reply button (payload appointment:<id>:<action>),
-- only for the contact the appointment is with.
create or replace function private.appointment_reply(message public.messages)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_parts text[] := regexp_match(message.interactive_reply_id,
    '^appointment:([0-9a-f-]{36}):(confirm|cancel|reschedule)$');
begin
  if v_parts is null then
    return;
  end if;
  update public.appointments a
     set status = case v_parts[2] when 'confirm' then 'confirmed' when 'cancel' then 'cancelled' else 'rescheduled' end
   where a.tenant_id = message.tenant_id and a.id = v_parts[1]::uuid and a.contact_id = message.contact_id
     and a.status in ('pending', 'confirmed', 'rescheduled');
end;
$$;

/**
 * ----
 * Section - Triggers
 * ----
 */

-- Leads: stage history, conversion makes the contact a client, events.
create or replace function private.tg_leads_changed()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_event jsonb := jsonb_build_object('lead_id', new.id, 'contact_id', new.contact_id, 'name', new.name,
    'stage', new.stage, 'score', new.score, 'source', new.source, 'external_id', new.external_id);
begin
  if tg_op = 'INSERT' then
    insert into public.lead_stage_history (tenant_id, lead_id, to_stage, changed_by)
    values (new.tenant_id, new.id, new.stage, auth.uid());
    perform private.emit(new.tenant_id, 'lead.created', 'leads', new.id, v_event);
    return null;
  end if;
  if new.stage is distinct from old.stage then
    insert into public.lead_stage_history (tenant_id, lead_id, from_stage, to_stage, changed_by)
    values (new.tenant_id, new.id, old.stage, new.stage, auth.uid());
    perform private.emit(new.tenant_id, case when new.stage = 'converted' then 'lead.converted' else 'lead.stage_changed' end,
      'leads', new.id, v_event || jsonb_build_object('previous_stage', old.stage));
    if new.stage = 'converted' and new.contact_id is not null then
      update public.contacts c set is_client = true
       where c.tenant_id = new.tenant_id and c.id = new.contact_id and not c.is_client;
    end if;
  end if;
  return null;
end;
$$;

create or replace function private.tg_leads_prepare()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.stage = 'converted' and (tg_op = 'INSERT' or old.stage <> 'converted') then
    new.converted_at := now();
  end if;
  if new.stage = 'lost' and new.lost_reason is null then
    raise exception 'a lost lead needs a reason (lost_reason)' using errcode = '23514';
  end if;
  return new;
end;
$$;

-- Deals: the stage of the deal's own pipeline (a clear refusal before the foreign key's),
-- status and probability from the stage, a reason to lose, the stage history.
create or replace function private.tg_deals_prepare()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_stage public.pipeline_stages;
begin
  select * into v_stage from public.pipeline_stages s where s.tenant_id = new.tenant_id and s.id = new.stage_id;
  if v_stage.id is null or v_stage.pipeline_id <> new.pipeline_id then
    raise exception 'stage % does not belong to the deal''s pipeline %', new.stage_id, new.pipeline_id
      using errcode = '23503', hint = 'Pick a stage of the same pipeline (pipeline_stages.pipeline_id).';
  end if;
  new.status := v_stage.kind;
  if tg_op = 'INSERT' or new.stage_id <> old.stage_id then
    new.stage_entered_at := now();
    new.probability := case v_stage.kind when 'won' then 100 when 'lost' then 0
                            else coalesce(v_stage.probability, new.probability) end;
  end if;
  if new.status = 'lost' and new.lost_reason is null then
    raise exception 'a lost deal needs a reason (lost_reason)' using errcode = '23514';
  end if;
  new.closed_at := case when new.status = 'open' then null
                        else coalesce(case when tg_op = 'UPDATE' then old.closed_at end, now()) end;
  if new.lead_id is not null and new.contact_id is null then
    select l.contact_id into new.contact_id from public.leads l where l.tenant_id = new.tenant_id and l.id = new.lead_id;
  end if;
  return new;
end;
$$;

create or replace function private.tg_deals_changed()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_event jsonb := jsonb_build_object('deal_id', new.id, 'lead_id', new.lead_id, 'contact_id', new.contact_id,
    'title', new.title, 'pipeline_id', new.pipeline_id, 'stage_id', new.stage_id, 'status', new.status,
    'value', new.value, 'currency', new.currency, 'probability', new.probability, 'lost_reason', new.lost_reason);
begin
  if tg_op = 'UPDATE' and new.stage_id = old.stage_id then
    return null;
  end if;
  if tg_op = 'UPDATE' then
    update public.deal_stage_history h set left_at = now()
     where h.tenant_id = new.tenant_id and h.deal_id = new.id and h.left_at is null;
  end if;
  insert into public.deal_stage_history (tenant_id, deal_id, stage_id, entered_at, changed_by)
  values (new.tenant_id, new.id, new.stage_id, new.stage_entered_at, auth.uid());
  perform private.emit(new.tenant_id,
    case when tg_op = 'INSERT' then 'deal.created' when new.status = 'won' then 'deal.won'
         when new.status = 'lost' then 'deal.lost' else 'deal.stage_changed' end,
    'deals', new.id, v_event || case when tg_op = 'UPDATE' then jsonb_build_object('previous_stage_id', old.stage_id)
                                     else '{}'::jsonb end);
  return null;
end;
$$;

-- Appointments: the end from the duration given, the reminder moment, lifecycle times, events.
create or replace function private.tg_appointments_prepare()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.remind_at := new.starts_at - make_interval(hours => new.reminder_hours);
  if tg_op = 'UPDATE' and (new.starts_at <> old.starts_at or new.ends_at <> old.ends_at) then
    new.reminder_sent_at := null;  -- a new time gets its own reminder
    new.reminder_error := null;
    if new.status = old.status and old.status in ('confirmed', 'rescheduled') then
      new.status := 'pending';
    end if;
  end if;
  if new.status = 'confirmed' and (tg_op = 'INSERT' or old.status <> 'confirmed') then
    new.confirmed_at := now();
  elsif new.status = 'cancelled' and (tg_op = 'INSERT' or old.status <> 'cancelled') then
    new.cancelled_at := now();
  end if;
  return new;
end;
$$;

create or replace function private.tg_appointments_changed()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' or new.status <> old.status then
    perform private.emit(new.tenant_id,
      case when tg_op = 'INSERT' then 'appointment.created'
           when new.status = 'rescheduled' then 'appointment.reschedule_requested'
           else 'appointment.' || new.status end,
      'appointments', new.id,
      jsonb_build_object('appointment_id', new.id, 'contact_id', new.contact_id, 'type', new.type,
        'status', new.status, 'starts_at', new.starts_at, 'assignee_id', new.assignee_id,
        'previous_status', case when tg_op = 'UPDATE' then old.status end));
  end if;
  return null;
end;
$$;

-- Reply buttons of the reminder (the ingest hook: an inbound tap on appointment:<id>:...).
create or replace function private.tg_messages_appointment_reply()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.appointment_reply(new);
  return null;
end;
$$;

-- A Click-to-WhatsApp ad that opens a conversation brings (or updates) its contact's lead.
create or replace function private.tg_conversations_ctwa_lead()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.upsert_lead(new.tenant_id, new.contact_id, null, null, null, 'ctwa_ad',
    left(coalesce(new.referral ->> 'source_id', new.referral ->> 'ctwa_clid'), 200),
    left(new.referral ->> 'headline', 300), null, new.referral);
  return null;
end;
$$;

-- Certificates: the service's contact; a certificate without a service is refused clearly.
create or replace function private.tg_certificates_prepare()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.service_id is null then
    raise exception 'a certificate always belongs to a service: service_id is required' using errcode = '23502';
  end if;
  select s.contact_id into new.contact_id from public.services s
   where s.tenant_id = new.tenant_id and s.id = new.service_id;
  if new.contact_id is null then
    raise exception 'service % not found in this tenant', new.service_id using errcode = '23503';
  end if;
  if tg_op = 'UPDATE' and new.expires_at <> old.expires_at then
    new.alert_30d_sent_at := null;  -- renewed: the new expiry gets its own alerts
    new.alert_07d_sent_at := null;
    new.alert_error := null;
  end if;
  return new;
end;
$$;

drop trigger if exists _200_prepare on public.leads;
create trigger _200_prepare before insert or update of stage, lost_reason on public.leads
  for each row execute function private.tg_leads_prepare();
drop trigger if exists _100_set_updated_at on public.leads;
create trigger _100_set_updated_at before update on public.leads
  for each row execute function private.tg_set_updated_at();
drop trigger if exists _500_changed on public.leads;
create trigger _500_changed after insert or update of stage on public.leads
  for each row execute function private.tg_leads_changed();
drop trigger if exists _100_set_updated_at on public.pipelines;
create trigger _100_set_updated_at before update on public.pipelines
  for each row execute function private.tg_set_updated_at();
drop trigger if exists _200_prepare on public.deals;
create trigger _200_prepare before insert or update on public.deals
  for each row execute function private.tg_deals_prepare();
drop trigger if exists _100_set_updated_at on public.deals;
create trigger _100_set_updated_at before update on public.deals
  for each row execute function private.tg_set_updated_at();
drop trigger if exists _500_changed on public.deals;
create trigger _500_changed after insert or update of stage_id on public.deals
  for each row execute function private.tg_deals_changed();
drop trigger if exists _200_prepare on public.appointments;
create trigger _200_prepare before insert or update on public.appointments
  for each row execute function private.tg_appointments_prepare();
drop trigger if exists _100_set_updated_at on public.appointments;
create trigger _100_set_updated_at before update on public.appointments
  for each row execute function private.tg_set_updated_at();
drop trigger if exists _500_changed on public.appointments;
create trigger _500_changed after insert or update of status on public.appointments
  for each row execute function private.tg_appointments_changed();
drop trigger if exists _610_appointment_reply on public.messages;
create trigger _610_appointment_reply after insert on public.messages
  for each row when (new.direction = 'inbound' and new.interactive_reply_id like 'appointment:%')
  execute function private.tg_messages_appointment_reply();
drop trigger if exists _610_ctwa_lead on public.conversations;
create trigger _610_ctwa_lead after insert on public.conversations
  for each row when (new.referral is not null) execute function private.tg_conversations_ctwa_lead();
drop trigger if exists _100_set_updated_at on public.services;
create trigger _100_set_updated_at before update on public.services
  for each row execute function private.tg_set_updated_at();
drop trigger if exists _200_prepare on public.certificates;
create trigger _200_prepare before insert or update on public.certificates
  for each row execute function private.tg_certificates_prepare();
drop trigger if exists _100_set_updated_at on public.certificates;
create trigger _100_set_updated_at before update on public.certificates
  for each row execute function private.tg_set_updated_at();

/**
 * ----
 * Section - Event types of this module
 * ----
 */
insert into public.event_types (type, module, description) values
  ('lead.created', 'crm', 'A lead was created (bot, Click-to-WhatsApp ad, campaign, flow, import, renewal...).'),
  ('lead.stage_changed', 'crm', 'A lead moved to another stage (previous_stage says from where).'),
  ('lead.converted', 'crm', 'A lead became a client: its contact is now is_client.'),
  ('deal.created', 'crm', 'A deal was opened on a pipeline.'),
  ('deal.stage_changed', 'crm', 'A deal moved to another open stage of its pipeline.'),
  ('deal.won', 'crm', 'A deal reached a won stage.'),
  ('deal.lost', 'crm', 'A deal reached a lost stage (lost_reason says why).'),
  ('appointment.created', 'crm', 'An appointment was booked.'),
  ('appointment.confirmed', 'crm', 'An appointment was confirmed (by the customer''s button or an agent).'),
  ('appointment.cancelled', 'crm', 'An appointment was cancelled.'),
  ('appointment.reschedule_requested', 'crm', 'The customer asked for another time: an agent picks a new one.'),
  ('appointment.done', 'crm', 'An appointment took place.'),
  ('appointment.no_show', 'crm', 'The customer did not show up (marked by the job after the end).'),
  ('appointment.pending', 'crm', 'An appointment went back to pending (moved to another time).'),
  ('certificate.expiring', 'crm', 'A certificate expires in 30 or 7 days: the customer was sent the template (or why not) and a renewal lead exists.')
on conflict (type) do update set module = excluded.module, description = excluded.description;

/**
 * ----
 * Section - Jobs
 * ----
 */

-- Reminders by template N hours before (index range scan of appointments_reminder_due_idx),
-- with buttons to confirm, reschedule or cancel.
create or replace function private.job_appointment_reminders(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_appt record;
  v_error text;
  v_count integer := 0;
begin
  for v_appt in
    select a.*, coalesce(c.name, c.profile_name, 'cliente') as contact_name, t.timezone
      from public.appointments a
      join public.contacts c on c.tenant_id = a.tenant_id and c.id = a.contact_id
      join public.tenants t on t.id = a.tenant_id
     where a.remind_at <= as_of and a.reminder_sent_at is null and a.status in ('pending', 'confirmed')
       and a.starts_at > as_of
     order by a.remind_at
     for update of a skip locked
  loop
    v_error := private.send_template(v_appt.tenant_id, v_appt.contact_id, 'appointment_reminder',
      'lembrete_agendamento',
      array[v_appt.contact_name, to_char(v_appt.starts_at at time zone v_appt.timezone, 'DD/MM/YYYY "às" HH24:MI')],
      array['appointment:' || v_appt.id || ':confirm', 'appointment:' || v_appt.id || ':reschedule',
            'appointment:' || v_appt.id || ':cancel']);
    update public.appointments a set reminder_sent_at = as_of, reminder_error = v_error where a.id = v_appt.id;
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;

-- Appointments still pending or confirmed an hour after their end did not happen.
create or replace function private.job_appointment_no_show(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_rows integer;
begin
  update public.appointments a set status = 'no_show'
   where a.id in (select x.id from public.appointments x
                   where x.status in ('pending', 'confirmed') and x.ends_at < as_of - interval '1 hour'
                   for update skip locked);
  get diagnostics v_rows = row_count;
  return v_rows;
end;
$$;

-- Expiry alerts (seed 000 cert_expiry_alert_30d / 07d): once per certificate and threshold,
-- the template to the customer, an alert to the team, a renewal lead (one per person).
create or replace function private.certificate_expiry_alerts(as_of timestamptz, days integer)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_cert record;
  v_error text;
  v_lead public.leads;
  v_count integer := 0;
begin
  for v_cert in
    select c.*, coalesce(k.name, k.profile_name, 'cliente') as contact_name, s.name as service_name, t.timezone
      from public.certificates c
      join public.contacts k on k.tenant_id = c.tenant_id and k.id = c.contact_id
      join public.services s on s.tenant_id = c.tenant_id and s.id = c.service_id
      join public.tenants t on t.id = c.tenant_id
     where c.status = 'valid' and c.expires_at > as_of
       and c.expires_at <= as_of + make_interval(days => certificate_expiry_alerts.days)
       and case when certificate_expiry_alerts.days = 30
                then c.alert_30d_sent_at is null and c.expires_at > as_of + interval '7 days'
                else c.alert_07d_sent_at is null end
     order by c.expires_at
     for update of c skip locked
  loop
    v_error := private.send_template(v_cert.tenant_id, v_cert.contact_id, 'certificate_expiry',
      'certificado_vencendo',
      array[v_cert.contact_name, v_cert.type, to_char(v_cert.expires_at at time zone v_cert.timezone, 'DD/MM/YYYY')]);
    v_lead := private.upsert_lead(v_cert.tenant_id, v_cert.contact_id, null, null, null, 'renewal',
                                  v_cert.id::text, 'Renovação ' || v_cert.type, null);
    update public.certificates c
       set alert_30d_sent_at = case when certificate_expiry_alerts.days = 30 then as_of else c.alert_30d_sent_at end,
           alert_07d_sent_at = case when certificate_expiry_alerts.days = 7 then as_of else c.alert_07d_sent_at end,
           alert_error = v_error, renewal_lead_id = coalesce(c.renewal_lead_id, v_lead.id)
     where c.id = v_cert.id;
    insert into public.alerts (tenant_id, type, priority, title, message, payload, dedupe_key)
    values (v_cert.tenant_id, 'certificate.expiring', case when certificate_expiry_alerts.days = 7 then 'high' else 'medium' end,
            left('Certificado ' || v_cert.type || ' de ' || v_cert.contact_name || ' vence em '
                 || certificate_expiry_alerts.days || ' dias', 200),
            'O certificado ' || v_cert.type || ' (' || v_cert.service_name || ') vence em '
              || to_char(v_cert.expires_at at time zone v_cert.timezone, 'DD/MM/YYYY') || '. '
              || coalesce('O aviso ao cliente falhou: ' || v_error, 'O cliente foi avisado pelo WhatsApp.'),
            jsonb_build_object('certificate_id', v_cert.id, 'contact_id', v_cert.contact_id, 'lead_id', v_lead.id,
                               'expires_at', v_cert.expires_at, 'error', v_error),
            'certificate:' || v_cert.id || ':' || certificate_expiry_alerts.days || 'd:' || v_cert.expires_at::date)
    on conflict (tenant_id, dedupe_key) do nothing;
    perform private.emit(v_cert.tenant_id, 'certificate.expiring', 'certificates', v_cert.id,
      jsonb_build_object('certificate_id', v_cert.id, 'contact_id', v_cert.contact_id, 'type', v_cert.type,
        'expires_at', v_cert.expires_at, 'days', certificate_expiry_alerts.days, 'lead_id', v_lead.id,
        'template_error', v_error));
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;

create or replace function private.job_cert_expiry_alert_30d(as_of timestamptz)
returns integer
language sql
security definer
set search_path = ''
as $$ select private.certificate_expiry_alerts(job_cert_expiry_alert_30d.as_of, 30) $$;

create or replace function private.job_cert_expiry_alert_07d(as_of timestamptz)
returns integer
language sql
security definer
set search_path = ''
as $$ select private.certificate_expiry_alerts(job_cert_expiry_alert_07d.as_of, 7) $$;

insert into public.job_schedules (name, description, cron, function_name) values
  ('appointment_reminders', 'Sends the reminder template (confirm / reschedule / cancel buttons) of appointments whose remind_at has come.',
   '*/5 * * * *', 'private.job_appointment_reminders'),
  ('appointment_no_show', 'Marks appointments still pending or confirmed an hour after their end as no_show.',
   '*/15 * * * *', 'private.job_appointment_no_show'),
  ('cert_expiry_alert_30d', 'Certificates expiring within 30 days: template to the customer, alert, renewal lead (seed 000, 08:00 São Paulo).',
   '0 11 * * *', 'private.job_cert_expiry_alert_30d'),
  ('cert_expiry_alert_07d', 'Certificates expiring within 7 days: template to the customer, alert, renewal lead (seed 000, 08:00 São Paulo).',
   '0 11 * * *', 'private.job_cert_expiry_alert_07d')
on conflict (name) do update set description = excluded.description, function_name = excluded.function_name,
  runner = excluded.runner;

/**
 * ----
 * Section - RLS policies
 * ----
 */

-- leads, deals, appointments, services, certificates: members read, agents write;
-- pipelines and stages: members read, managers write
do $$
declare
  v_table text;
  v_role text;
begin
  foreach v_table in array array['leads', 'deals', 'appointments', 'services', 'certificates', 'pipelines',
                                 'pipeline_stages'] loop
    v_role := case when v_table like 'pipeline%' then 'manager' else 'agent' end;
    execute format('drop policy if exists "Members read %1$s" on public.%1$I', v_table);
    execute format('create policy "Members read %1$s" on public.%1$I for select to authenticated
                    using (tenant_id in (select private.my_tenant_ids()))', v_table);
    execute format('drop policy if exists "Writers add %1$s" on public.%1$I', v_table);
    execute format('create policy "Writers add %1$s" on public.%1$I for insert to authenticated
                    with check (tenant_id in (select private.my_tenant_ids_with_role(%2$L)))', v_table, v_role);
    execute format('drop policy if exists "Writers edit %1$s" on public.%1$I', v_table);
    execute format('create policy "Writers edit %1$s" on public.%1$I for update to authenticated
                    using (tenant_id in (select private.my_tenant_ids_with_role(%2$L)))
                    with check (tenant_id in (select private.my_tenant_ids_with_role(%2$L)))', v_table, v_role);
    execute format('drop policy if exists "Writers delete %1$s" on public.%1$I', v_table);
    execute format('create policy "Writers delete %1$s" on public.%1$I for delete to authenticated
                    using (tenant_id in (select private.my_tenant_ids_with_role(%2$L)))', v_table,
                   case when v_role = 'agent' then 'manager' else v_role end);
  end loop;
end
$$;
drop policy if exists "Lead history is visible to members" on public.lead_stage_history;
create policy "Lead history is visible to members" on public.lead_stage_history
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Deal history is visible to members" on public.deal_stage_history;
create policy "Deal history is visible to members" on public.deal_stage_history
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));

/**
 * ----
 * Section - Public RPCs (SECURITY DEFINER in `private`; `public` holds SECURITY INVOKER
 * wrappers that PostgREST exposes)
 * ----
 */

-- The lead of a person, created or completed: one per person per tenant. Agents (of the
-- contact's tenant, or of tenant_id for a lead without a contact); the service role for
-- flows and automation rules.
create or replace function private.create_lead(
  tenant_id uuid default null, contact_id uuid default null, name text default null, phone text default null,
  email text default null, source text default 'manual', source_ref text default null, interest text default null,
  score integer default null
) returns public.leads
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_tenant uuid := create_lead.tenant_id;
begin
  if create_lead.contact_id is not null then
    select c.tenant_id into v_tenant from public.contacts c where c.id = create_lead.contact_id;
    if v_tenant is null or (create_lead.tenant_id is not null and v_tenant <> create_lead.tenant_id) then
      raise exception 'contact not found' using errcode = 'P0002';
    end if;
  elsif v_tenant is null or (create_lead.name is null and create_lead.phone is null) then
    raise exception 'a lead without a contact needs tenant_id and a name or phone' using errcode = '22023';
  end if;
  if private.request_role() = 'authenticated' then
    if not private.is_member(v_tenant) then
      raise exception 'contact not found' using errcode = 'P0002';
    end if;
    perform private.require_role(v_tenant, 'agent');
  end if;
  return private.upsert_lead(v_tenant, create_lead.contact_id, create_lead.name, create_lead.phone, create_lead.email,
                             create_lead.source, create_lead.source_ref, create_lead.interest, create_lead.score);
end;
$$;

create or replace function public.create_lead(
  tenant_id uuid default null, contact_id uuid default null, name text default null, phone text default null,
  email text default null, source text default 'manual', source_ref text default null, interest text default null,
  score integer default null
) returns public.leads
language sql
security invoker
set search_path = ''
as $$
  select * from private.create_lead(create_lead.tenant_id, create_lead.contact_id, create_lead.name, create_lead.phone,
                                    create_lead.email, create_lead.source, create_lead.source_ref, create_lead.interest,
                                    create_lead.score)
$$;
comment on function public.create_lead(uuid, uuid, text, text, text, text, text, text, integer) is 'The lead of a person, one per tenant: by contact_id (tenant from the contact) or, without a contact, tenant_id with a name or phone (E.164). An existing lead is returned with empty fields filled in, interest updated and the score raised (never lowered). Agents; the service role for flows and automation rules (source flow / automation / campaign...).';

-- Imports leads from rows a frontend parsed out of a CSV (one object per line: name, phone,
-- email, company, interest, score, external_id), recorded in import_logs with per-row errors.
create or replace function private.import_leads(tenant_id uuid, file_name text, rows jsonb)
returns public.import_logs
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_log public.import_logs;
  v_row jsonb;
  v_n integer := 0;
  v_errors jsonb := '[]';
  v_lead public.leads;
begin
  perform private.require_role(import_leads.tenant_id, 'agent');
  if jsonb_typeof(import_leads.rows) is distinct from 'array' or jsonb_array_length(import_leads.rows) > 10000 then
    raise exception 'rows must be an array of at most 10000 objects' using errcode = '22023';
  end if;
  insert into public.import_logs (tenant_id, kind, source, file_name, status, total_rows, started_by)
  values (import_leads.tenant_id, 'leads', 'csv', left(import_leads.file_name, 255), 'running',
          jsonb_array_length(import_leads.rows), auth.uid())
  returning * into v_log;
  for v_row in select r from jsonb_array_elements(import_leads.rows) r loop
    v_n := v_n + 1;
    begin
      v_lead := private.upsert_lead(import_leads.tenant_id, null, v_row ->> 'name',
        '+' || nullif(regexp_replace(coalesce(v_row ->> 'phone', ''), '[^0-9]', '', 'g'), ''), v_row ->> 'email', 'import',
        v_log.id::text, v_row ->> 'interest', (v_row ->> 'score')::integer);
      update public.leads l
         set company = coalesce(v_row ->> 'company', l.company),
             external_id = coalesce(v_row ->> 'external_id', l.external_id)
       where l.id = v_lead.id;
    exception when others then
      v_errors := v_errors || jsonb_build_object('row', v_n, 'error', sqlerrm);
    end;
  end loop;
  update public.import_logs l
     set imported_rows = v_n - jsonb_array_length(v_errors), failed_rows = jsonb_array_length(v_errors),
         errors = v_errors, finished_at = now(),
         status = case when jsonb_array_length(v_errors) = 0 then 'succeeded'
                       when jsonb_array_length(v_errors) = v_n then 'failed' else 'partial' end
   where l.id = v_log.id
  returning * into v_log;
  return v_log;
end;
$$;

create or replace function public.import_leads(tenant_id uuid, file_name text, rows jsonb)
returns public.import_logs
language sql
security invoker
set search_path = ''
as $$ select * from private.import_leads(import_leads.tenant_id, import_leads.file_name, import_leads.rows) $$;
comment on function public.import_leads(uuid, text, jsonb) is 'Agents: import leads from CSV lines parsed by the frontend ([{"name", "phone", "email", "company", "interest", "score", "external_id"}]); one lead per person (existing ones completed); returns the import_logs row with counts and per-row errors.';

/**
 * ----
 * Section - Grants
 * ----
 */
grant select,
  insert (tenant_id, contact_id, name, phone, email, company, position, interest, stage, score, source, source_ref,
    owner_id, external_id, crm_synced_at, custom_fields, notes, lost_reason),
  update (contact_id, name, phone, email, company, position, interest, stage, score, source_ref, owner_id, external_id,
    crm_synced_at, custom_fields, notes, lost_reason),
  delete on public.leads to authenticated;
grant select on public.lead_stage_history, public.deal_stage_history to authenticated;
grant select, insert (tenant_id, name, is_default), update (name, is_default), delete on public.pipelines to authenticated;
grant select, insert (tenant_id, pipeline_id, name, position, kind, probability, stuck_after),
  update (name, position, kind, probability, stuck_after), delete on public.pipeline_stages to authenticated;
grant select,
  insert (tenant_id, lead_id, contact_id, title, pipeline_id, stage_id, probability, value, currency, expected_close_at,
    lost_reason, owner_id, external_id, crm_synced_at, custom_fields),
  update (lead_id, contact_id, title, pipeline_id, stage_id, probability, value, currency, expected_close_at,
    lost_reason, owner_id, external_id, crm_synced_at, custom_fields),
  delete on public.deals to authenticated;
grant select,
  insert (tenant_id, contact_id, type, status, starts_at, ends_at, assignee_id, ticket_id, lead_id, meeting_link,
    calendar_event_id, notes, reminder_hours),
  update (type, status, starts_at, ends_at, assignee_id, ticket_id, lead_id, meeting_link, calendar_event_id, notes,
    reminder_hours),
  delete on public.appointments to authenticated;
grant select, insert (tenant_id, contact_id, name, plan, status, contracted_at, expires_at, monthly_value, currency),
  update (name, plan, status, contracted_at, expires_at, monthly_value, currency), delete
  on public.services to authenticated;
grant select, insert (tenant_id, service_id, type, issued_at, expires_at, status),
  update (type, issued_at, expires_at, status), delete on public.certificates to authenticated;
grant select on public.certificates_expiry to authenticated, service_role;
grant select, insert, update, delete on public.leads, public.lead_stage_history, public.pipelines,
  public.pipeline_stages, public.deals, public.deal_stage_history, public.appointments, public.services,
  public.certificates to service_role;

revoke execute on all functions in schema private from public, anon;
grant execute on function private.create_lead(uuid, uuid, text, text, text, text, text, text, integer),
  private.import_leads(uuid, text, jsonb) to authenticated, service_role;
revoke execute on function public.create_lead(uuid, uuid, text, text, text, text, text, text, integer),
  public.import_leads(uuid, text, jsonb) from public, anon;
grant execute on function public.create_lead(uuid, uuid, text, text, text, text, text, text, integer),
  public.import_leads(uuid, text, jsonb) to authenticated, service_role;
