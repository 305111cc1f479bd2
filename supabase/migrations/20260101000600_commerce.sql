/**
 * Zapbase module 7: commerce.
 * Customer success for course sellers on Hotmart (seed 003): the catalogue (products,
 * offers, course modules, lessons with drip days), transactions, enrollments, lesson
 * progress, the LTV and behaviour tags of the contact (students ARE contacts), and the raw
 * Hotmart webhooks (postback v2) they come from.
 *
 *   Hotmart POST /webhooks/hotmart/<integration id>  (worker route or edge function)
 *     ─► X-HOTMART-HOTTOK compared in constant time with the integration's secret (Vault,
 *        hotmart_webhook_secret); a wrong one only counts (hotmart_reject), 401
 *     ─► hotmart_ingest(integration, payload): hotmart_events (idempotent by the event id),
 *        then applied in a subtransaction: a failure to apply keeps the event (status failed,
 *        with the error) and still answers 200, since Hotmart deactivates a failing URL
 *     ─► products / offers / contacts / transactions / enrollments / progress ─► events
 *
 * A transaction only moves forward (events arrive out of order): pending < billet_printed <
 * delayed < canceled, expired < approved < protested < complete < refunded, chargeback (final).
 * Each event carries the whole purchase, so a refund met first creates the transaction
 * already refunded, and the purchase arriving later only fills what it knew.
 *
 * Buyers become contacts matched by CPF, then e-mail, then phone (E.164 for Brazil, with
 * and without the ninth digit); a contact whose CPF differs is another person, and two
 * candidates that disagree are never merged: contact_conflicts records it for a person.
 *
 * Tenant settings (tenants.settings.commerce): vip_ltv (1000), stalled_days (7),
 * warranty_notice_days (2), warranty_progress_pct (30), warranty_days (7, when Hotmart
 * sends no warranty date).
 *
 * Who may do what:
 *   every member  reads the catalogue, transactions (boleto link and PIX code for recovery),
 *                 enrollments, progress and conflicts
 *   agent         resolves conflicts (status and note)
 *   manager       edits the catalogue (products, offers, modules, lessons)
 *   admin         reads raw Hotmart events and refused calls; sets the hottok through
 *                 set_integration_secret (an integration with provider 'hotmart')
 *   service role  ingest, jobs, everything the worker does
 */

/**
 * ----
 * Section - Tables
 * ----
 */

-- Products (seed 003 produtos): a course or mentoring, mirrored from Hotmart.
create table if not exists public.products (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  name text not null check (length(name) between 1 and 255),
  hotmart_product_id text check (length(hotmart_product_id) between 1 and 60),
  hotmart_ucode text check (length(hotmart_ucode) <= 60),
  hotmart_subdomain text check (length(hotmart_subdomain) <= 100),
  cover_url text check (length(cover_url) <= 2000),
  monitoring_enabled boolean not null default false,
  warranty_days integer check (warranty_days between 0 and 365),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, hotmart_product_id)
);
alter table public.products enable row level security;
comment on table public.products is 'Courses and mentorings a tenant sells on Hotmart (seed 003 produtos); created from the first event that names an unknown one.';
comment on column public.products.hotmart_product_id is 'Hotmart''s product id as text (webhooks send it as a number or a string).';
comment on column public.products.hotmart_subdomain is 'Subdomain of the Hotmart Club area (members area) the lessons are read from.';
comment on column public.products.monitoring_enabled is 'Customer success switch (seed 003 ativo_monitoramento): jobs watch progress of this product''s students only when on.';
comment on column public.products.warranty_days is 'Guarantee in days when Hotmart sends no warranty date (else the tenant''s commerce.warranty_days, 7).';

-- A template tied to a product (declared in the whatsapp module, which comes first) is sent
-- only to its buyers (campaigns module): the product cannot go while a template names it.
alter table public.message_templates drop constraint if exists message_templates_product_fk;
alter table public.message_templates add constraint message_templates_product_fk
  foreign key (tenant_id, product_id) references public.products (tenant_id, id);
create index if not exists message_templates_tenant_product_idx on public.message_templates (tenant_id, product_id)
  where product_id is not null;

-- Offers (seed 003 ofertas): price plans of a product.
create table if not exists public.offers (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  product_id uuid not null,
  hotmart_offer_code text not null check (length(hotmart_offer_code) between 1 and 60),
  name text check (length(name) <= 255),
  price numeric(14,4) check (price >= 0),
  currency text not null default 'BRL' check (currency ~ '^[A-Z]{3}$'),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, product_id, hotmart_offer_code),
  foreign key (tenant_id, product_id) references public.products (tenant_id, id) on delete cascade
);
alter table public.offers enable row level security;
comment on table public.offers is 'Price plans of a product (seed 003 ofertas): high or low ticket, yearly or monthly.';
comment on column public.offers.hotmart_offer_code is 'Hotmart''s offer code (e.g. n82b9jqz).';

-- Course modules (seed 003 modulos).
create table if not exists public.course_modules (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  product_id uuid not null,
  hotmart_module_id text not null check (length(hotmart_module_id) between 1 and 60),
  name text check (length(name) <= 255),
  position integer,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, product_id, hotmart_module_id),
  foreign key (tenant_id, product_id) references public.products (tenant_id, id) on delete cascade
);
alter table public.course_modules enable row level security;
comment on table public.course_modules is 'Modules of a course (seed 003 modulos): where students stall.';
comment on column public.course_modules.hotmart_module_id is 'Hotmart Club''s alphanumeric module id.';

-- Lessons (seed 003 aulas).
create table if not exists public.lessons (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  module_id uuid not null,
  hotmart_page_hash text not null check (length(hotmart_page_hash) between 1 and 60),
  name text check (length(name) <= 255),
  position integer,
  drip_days integer check (drip_days between 0 and 3650),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, module_id, hotmart_page_hash),
  foreign key (tenant_id, module_id) references public.course_modules (tenant_id, id) on delete cascade
);
alter table public.lessons enable row level security;
comment on table public.lessons is 'Lessons (Hotmart Club pages) of a module (seed 003 aulas).';
comment on column public.lessons.drip_days is 'Dripping: the lesson opens this many days after the enrollment starts ("your lesson is out").';

-- Raw Hotmart webhooks: every event as received, kept for inspection and replay.
create table if not exists public.hotmart_events (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  integration_id uuid not null,
  event_id text not null check (length(event_id) between 1 and 200),
  event text check (length(event) <= 80),
  occurred_at timestamptz,
  payload jsonb,
  raw_body text,
  status text not null default 'received'
    check (status in ('received', 'applied', 'stored', 'failed', 'quarantined')),
  reason text check (length(reason) <= 2000),
  transaction_id uuid,
  contact_id uuid,
  received_at timestamptz not null default now(),
  applied_at timestamptz,
  unique (tenant_id, id),
  unique (tenant_id, event_id),
  foreign key (tenant_id, integration_id) references public.integrations (tenant_id, id) on delete cascade
);
alter table public.hotmart_events enable row level security;
create index if not exists hotmart_events_tenant_received_idx on public.hotmart_events (tenant_id, received_at desc);
create index if not exists hotmart_events_integration_idx on public.hotmart_events (tenant_id, integration_id);
create index if not exists hotmart_events_problems_idx on public.hotmart_events (received_at desc)
  where status in ('failed', 'quarantined');
comment on table public.hotmart_events is 'Each Hotmart webhook (postback v2) as received: idempotent by the event id, applied by hotmart_ingest, unknown events kept (stored).';
comment on column public.hotmart_events.event_id is 'Hotmart''s event id (payload.id); for a body without one, the SHA-256 of the body.';
comment on column public.hotmart_events.occurred_at is 'creation_date or creationDate (milliseconds since the epoch).';
comment on column public.hotmart_events.raw_body is 'A body that was not a JSON object, kept as text (status quarantined).';
comment on column public.hotmart_events.status is 'received (being applied), applied, stored (an event this module does not act on), failed (apply raised: reason), quarantined (not a JSON object).';

-- Calls with a wrong hottok: nothing of them is kept but this count.
create table if not exists public.hotmart_rejections (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  integration_id uuid not null,
  refused integer not null default 0,
  last_refused_at timestamptz,
  unique (tenant_id, id),
  unique (tenant_id, integration_id),
  foreign key (tenant_id, integration_id) references public.integrations (tenant_id, id) on delete cascade
);
alter table public.hotmart_rejections enable row level security;
comment on table public.hotmart_rejections is 'Webhook calls refused for a wrong X-HOTMART-HOTTOK, counted per integration (the bodies are not kept).';

-- Transactions (seed 003 transacoes): one Hotmart purchase (transaction code HP...).
create table if not exists public.transactions (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  code text not null check (length(code) between 1 and 60),
  contact_id uuid,
  product_id uuid,
  offer_id uuid,
  status text not null check (status in ('pending', 'billet_printed', 'delayed', 'canceled', 'expired',
    'approved', 'protested', 'complete', 'refunded', 'chargeback')),
  hotmart_status text check (length(hotmart_status) <= 60),
  value numeric(14,4) check (value >= 0),
  currency text not null default 'BRL' check (currency ~ '^[A-Z]{3}$'),
  payment_type text check (length(payment_type) <= 60),
  installments integer,
  purchased_at timestamptz,
  approved_at timestamptz,
  refunded_at timestamptz,
  warranty_ends_at timestamptz,
  warranty_notice_at timestamptz,
  anniversary_at timestamptz,
  billet_url text check (length(billet_url) <= 2000),
  billet_barcode text check (length(billet_barcode) <= 200),
  pix_code text check (length(pix_code) <= 4000),
  pix_qrcode_url text check (length(pix_qrcode_url) <= 2000),
  pix_expires_at timestamptz,
  source text check (length(source) <= 200),
  subscriber_code text check (length(subscriber_code) <= 60),
  last_event_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, code),
  foreign key (tenant_id, contact_id) references public.contacts (tenant_id, id) on delete set null (contact_id),
  foreign key (tenant_id, product_id) references public.products (tenant_id, id) on delete set null (product_id),
  foreign key (tenant_id, offer_id) references public.offers (tenant_id, id) on delete set null (offer_id)
);
alter table public.transactions enable row level security;
create index if not exists transactions_contact_idx on public.transactions (tenant_id, contact_id);
create index if not exists transactions_product_idx on public.transactions (tenant_id, product_id);
create index if not exists transactions_offer_idx on public.transactions (tenant_id, offer_id) where offer_id is not null;
create index if not exists transactions_warranty_notice_idx on public.transactions (warranty_notice_at)
  where warranty_notice_at is not null;
create index if not exists transactions_anniversary_idx on public.transactions (anniversary_at)
  where anniversary_at is not null;
comment on table public.transactions is 'Hotmart purchases (seed 003 transacoes): status only moves forward; refunded and chargeback are final; LTV of the contact follows them.';
comment on column public.transactions.code is 'Hotmart''s transaction code (HP...).';
comment on column public.transactions.status is 'pending < billet_printed < delayed < canceled, expired < approved < protested (refund requested) < complete (guarantee over) < refunded, chargeback (final).';
comment on column public.transactions.hotmart_status is 'purchase.status as Hotmart sent it last, whatever the value (unknown values are kept).';
comment on column public.transactions.value is 'Amount paid (purchase.price.value).';
comment on column public.transactions.approved_at is 'When it was paid (approved_date, else the event''s time); set once, whatever arrives first.';
comment on column public.transactions.warranty_ends_at is 'End of the guarantee (product.warranty_date, else approval + warranty days): "refund risk" before it.';
comment on column public.transactions.warranty_notice_at is 'When warranty.ending is due (warranty_notice_days before the end); cleared once emitted or when no longer paid.';
comment on column public.transactions.anniversary_at is 'Next purchase anniversary (purchase.anniversary); moves a year on each time.';
comment on column public.transactions.billet_url is 'Boleto link, for payment recovery messages (templates read it here and in purchase.billet_printed).';
comment on column public.transactions.pix_code is 'PIX copy-and-paste code, for payment recovery messages.';
comment on column public.transactions.source is 'Tracking source (purchase.origin.src / sck).';

-- Enrollments (seed 003 matriculas): a student's access to a product.
create table if not exists public.enrollments (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  contact_id uuid not null,
  product_id uuid not null,
  transaction_id uuid,
  access_status text not null default 'active' check (access_status in ('active', 'blocked', 'expired')),
  started_at timestamptz not null default now(),
  renews_at timestamptz,
  subscriber_code text check (length(subscriber_code) <= 60),
  plan_name text check (length(plan_name) <= 255),
  first_access_at timestamptz,
  first_access_origin text check (first_access_origin in ('whatsapp', 'hotmart_email')),
  completed_modules text[] not null default '{}',
  progress_pct numeric(5,2) not null default 0 check (progress_pct between 0 and 100),
  last_progress_at timestamptz,
  stalls_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, contact_id, product_id),
  foreign key (tenant_id, contact_id) references public.contacts (tenant_id, id) on delete cascade,
  foreign key (tenant_id, product_id) references public.products (tenant_id, id) on delete cascade,
  foreign key (tenant_id, transaction_id) references public.transactions (tenant_id, id)
    on delete set null (transaction_id)
);
alter table public.enrollments enable row level security;
create index if not exists enrollments_product_idx on public.enrollments (tenant_id, product_id);
create index if not exists enrollments_transaction_idx on public.enrollments (tenant_id, transaction_id)
  where transaction_id is not null;
create index if not exists enrollments_stalls_idx on public.enrollments (stalls_at) where stalls_at is not null;
comment on table public.enrollments is 'A student''s access to a product (seed 003 matriculas): status, renewal, first access and its origin, progress.';
comment on column public.enrollments.access_status is 'active (seed ATIVO), blocked (BLOQUEADO: refunded, charged back, payment late) or expired (EXPIRADO: subscription cancelled).';
comment on column public.enrollments.first_access_origin is 'KPI: whatsapp when a WhatsApp message of the tenant reached the student between the purchase and the first access, else hotmart_email.';
comment on column public.enrollments.completed_modules is 'Hotmart module ids completed (CLUB_MODULE_COMPLETED).';
comment on column public.enrollments.progress_pct is 'Lessons completed over the product''s lessons; modules over known modules while no lesson is known.';
comment on column public.enrollments.stalls_at is 'When progress.stalled is due (last activity + stalled_days) while active; cleared once emitted.';

-- Lesson progress (seed 003 progresso_aulas).
create table if not exists public.lesson_progress (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  enrollment_id uuid not null,
  lesson_id uuid not null,
  completed_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, enrollment_id, lesson_id),
  foreign key (tenant_id, enrollment_id) references public.enrollments (tenant_id, id) on delete cascade,
  foreign key (tenant_id, lesson_id) references public.lessons (tenant_id, id) on delete cascade
);
alter table public.lesson_progress enable row level security;
create index if not exists lesson_progress_lesson_idx on public.lesson_progress (tenant_id, lesson_id);
comment on table public.lesson_progress is 'Each lesson a student completed, once (seed 003 progresso_aulas).';

-- Identity conflicts: buyer data that points at more than one person.
create table if not exists public.contact_conflicts (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  contact_id uuid,
  other_contact_id uuid,
  hotmart_event_id uuid,
  reason text not null check (length(reason) between 1 and 500),
  identity jsonb not null default '{}'::jsonb,
  status text not null default 'open' check (status in ('open', 'resolved', 'dismissed')),
  note text check (length(note) <= 2000),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  foreign key (tenant_id, contact_id) references public.contacts (tenant_id, id) on delete cascade,
  foreign key (tenant_id, other_contact_id) references public.contacts (tenant_id, id) on delete cascade,
  foreign key (tenant_id, hotmart_event_id) references public.hotmart_events (tenant_id, id)
    on delete set null (hotmart_event_id)
);
alter table public.contact_conflicts enable row level security;
create index if not exists contact_conflicts_open_idx on public.contact_conflicts (tenant_id, created_at desc)
  where status = 'open';
create index if not exists contact_conflicts_contact_idx on public.contact_conflicts (tenant_id, contact_id);
create index if not exists contact_conflicts_other_idx on public.contact_conflicts (tenant_id, other_contact_id);
create index if not exists contact_conflicts_event_idx on public.contact_conflicts (tenant_id, hotmart_event_id);
comment on table public.contact_conflicts is 'Buyer data matching two different contacts (or a contact with another CPF): never merged silently, a person resolves it.';
comment on column public.contact_conflicts.contact_id is 'The contact the event was applied to.';
comment on column public.contact_conflicts.other_contact_id is 'The contact that also matched (by e-mail or phone) and was left alone.';
comment on column public.contact_conflicts.identity is 'What the event said: {"cpf", "email", "phone"}.';

/**
 * ----
 * Section - Private helpers
 * ----
 */

-- A contact bought a product: a paid transaction (approved, protested while the refund is
-- only asked, complete). Templates tied to a product are sent to these contacts only.
create or replace function private.is_buyer(tenant_id uuid, contact_id uuid, product_id uuid)
returns boolean
language sql
stable
set search_path = ''
as $$
  select exists (select 1 from public.transactions t
                  where t.tenant_id = is_buyer.tenant_id and t.contact_id = is_buyer.contact_id
                    and t.product_id = is_buyer.product_id and t.status in ('approved', 'protested', 'complete'))
$$;
comment on function private.is_buyer(uuid, uuid, uuid) is 'A paid (approved, protested or complete) transaction of the contact for the product: who a product''s templates may go to.';

-- A Hotmart time: milliseconds (number or digits), seconds, or an ISO string; null otherwise.
create or replace function private.hotmart_time(value jsonb)
returns timestamptz
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_text text := value #>> '{}';
begin
  if v_text is null or v_text = '' then
    return null;
  end if;
  if v_text ~ '^[0-9]{1,16}(\.[0-9]+)?$' then
    -- 11+ digits: milliseconds (seconds reach 11 digits only in the year 5138)
    return to_timestamp(v_text::numeric / case when v_text::numeric >= 1e11 then 1000 else 1 end);
  end if;
  return v_text::timestamptz;
exception when others then
  return null;
end;
$$;
comment on function private.hotmart_time(jsonb) is 'Hotmart timestamp (milliseconds, seconds or ISO 8601) as timestamptz; null when unreadable.';

-- A Brazilian phone as E.164 digits with the mobile ninth digit (55 DD 9XXXXXXXX), or null.
-- Numbers outside Brazil (a + or 00 prefix with another country) are kept as they are.
create or replace function private.br_phone(value text)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  with d as (
    select case when value ~ '^\s*(\+|00)' and regexp_replace(value, '\D', '', 'g') !~ '^(00)?55'
                then 'intl' end as kind,
           regexp_replace(regexp_replace(coalesce(value, ''), '\D', '', 'g'), '^0+', '') as digits
  ), n as (
    select kind, case when kind = 'intl' then digits
                      when length(digits) in (10, 11) then '55' || digits
                      else digits end as digits
      from d
  )
  select case when kind = 'intl' then case when length(digits) between 8 and 15 then digits end
              when digits ~ '^55[1-9][0-9][6-9][0-9]{7}$'  -- a mobile written without its 9
                then substr(digits, 1, 4) || '9' || substr(digits, 5)
              when digits ~ '^55[1-9][0-9](9[0-9]{8}|[2-5][0-9]{7})$' then digits
         end
    from n
$$;
comment on function private.br_phone(text) is 'Phone as E.164 digits; Brazilian numbers get 55 and the mobile ninth digit; null when not a phone.';

-- Both forms a Brazilian mobile is known by (with and without the ninth digit).
create or replace function private.phone_variants(e164 text)
returns text[]
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case when e164 ~ '^55[1-9][0-9]9[0-9]{8}$' then array[e164, substr(e164, 1, 4) || substr(e164, 6)]
              when e164 is not null then array[e164] else '{}' end
$$;

-- A commerce setting of the tenant (tenants.settings.commerce.<key>), else the default.
create or replace function private.commerce_setting(tenant_id uuid, key text, fallback numeric)
returns numeric
language sql
stable
set search_path = ''
as $$
  select coalesce((select case when t.settings -> 'commerce' ->> commerce_setting.key ~ '^[0-9]{1,9}(\.[0-9]+)?$'
                               then (t.settings -> 'commerce' ->> commerce_setting.key)::numeric end
                     from public.tenants t where t.id = commerce_setting.tenant_id), commerce_setting.fallback)
$$;

-- Adds or removes a behaviour tag on a contact (and makes sure the tag exists).
create or replace function private.contact_tag(tenant_id uuid, contact_id uuid, tag text, present boolean)
returns void
language plpgsql
set search_path = ''
as $$
begin
  if present then
    insert into public.tags (tenant_id, name, description)
    values (contact_tag.tenant_id, contact_tag.tag, 'Etiqueta de comportamento (customer success)')
    on conflict on constraint tags_tenant_id_name_key do nothing;
  end if;
  update public.contacts c
     set tags = case when contact_tag.present then array_append(c.tags, contact_tag.tag)
                     else array_remove(c.tags, contact_tag.tag) end
   where c.tenant_id = contact_tag.tenant_id and c.id = contact_tag.contact_id
     and (contact_tag.tag = any (c.tags)) is distinct from contact_tag.present;
end;
$$;

-- LTV (approved minus refunded and charged back) of a contact, its client flag and the vip tag.
create or replace function private.refresh_ltv(tenant_id uuid, contact_id uuid)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_ltv numeric(14,4);
begin
  select coalesce(sum(t.value) filter (where t.approved_at is not null), 0)
         - coalesce(sum(t.value) filter (where t.approved_at is not null and t.status in ('refunded', 'chargeback')), 0)
    into v_ltv
    from public.transactions t join public.contacts c on c.id = t.contact_id
   where t.tenant_id = refresh_ltv.tenant_id and t.contact_id = refresh_ltv.contact_id
     and t.currency = c.currency;
  update public.contacts c
     set ltv = v_ltv, is_client = c.is_client or v_ltv > 0
   where c.tenant_id = refresh_ltv.tenant_id and c.id = refresh_ltv.contact_id and c.ltv is distinct from v_ltv;
  perform private.contact_tag(refresh_ltv.tenant_id, refresh_ltv.contact_id, 'vip',
    v_ltv >= private.commerce_setting(refresh_ltv.tenant_id, 'vip_ltv', 1000));
end;
$$;
comment on function private.refresh_ltv(uuid, uuid) is 'Recomputes contacts.ltv (paid minus refunded/charged back, in the contact''s currency) and the vip tag (commerce.vip_ltv).';

-- Progress of an enrollment: lessons done over the product's lessons (modules while no lesson
-- is known); new activity moves the stall deadline and lifts churn_risk.
create or replace function private.refresh_progress(tenant_id uuid, enrollment_id uuid, at timestamptz)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_e public.enrollments;
  v_lessons integer;
  v_done integer;
  v_modules integer;
  v_pct numeric;
begin
  select * into v_e from public.enrollments e
   where e.tenant_id = refresh_progress.tenant_id and e.id = refresh_progress.enrollment_id for update;
  select count(*) into v_lessons from public.lessons l join public.course_modules m on m.id = l.module_id
   where m.tenant_id = v_e.tenant_id and m.product_id = v_e.product_id;
  if v_lessons > 0 then
    select count(*) into v_done from public.lesson_progress p
     where p.tenant_id = v_e.tenant_id and p.enrollment_id = v_e.id;
    v_pct := 100.0 * v_done / v_lessons;
  else
    select count(*) into v_modules from public.course_modules m
     where m.tenant_id = v_e.tenant_id and m.product_id = v_e.product_id;
    v_pct := case when v_modules > 0 then 100.0 * cardinality(v_e.completed_modules) / v_modules else 0 end;
  end if;
  update public.enrollments e
     set progress_pct = least(round(v_pct, 2), 100),
         last_progress_at = greatest(e.last_progress_at, refresh_progress.at),
         stalls_at = case when e.access_status = 'active' and v_pct < 100
                          then greatest(e.last_progress_at, refresh_progress.at)
                               + make_interval(days => private.commerce_setting(e.tenant_id, 'stalled_days', 7)::integer)
                          end
   where e.id = v_e.id;
  perform private.contact_tag(v_e.tenant_id, v_e.contact_id, 'churn_risk', false);
end;
$$;

-- Records buyer data that points at two people, once per pair and event.
create or replace function private.record_conflict(
  tenant_id uuid, contact_id uuid, other_contact_id uuid, event_id uuid, reason text, identity jsonb
) returns void
language sql
set search_path = ''
as $$
  insert into public.contact_conflicts (tenant_id, contact_id, other_contact_id, hotmart_event_id, reason, identity)
  select record_conflict.tenant_id, record_conflict.contact_id, record_conflict.other_contact_id,
         record_conflict.event_id, record_conflict.reason, record_conflict.identity
   where not exists (select 1 from public.contact_conflicts k
                      where k.tenant_id = record_conflict.tenant_id and k.status = 'open'
                        and k.contact_id is not distinct from record_conflict.contact_id
                        and k.other_contact_id is not distinct from record_conflict.other_contact_id)
$$;

-- The contact of a Hotmart buyer / club user / subscriber: found by CPF, then e-mail, then
-- phone (both forms of a Brazilian mobile), else created. A contact with another CPF is
-- another person; candidates that disagree are recorded, never merged. Missing fields of
-- the chosen contact are filled in. Null when the person carries nothing to match on.
create or replace function private.hotmart_contact(tenant_id uuid, person jsonb, event_id uuid)
returns uuid
language plpgsql
set search_path = ''
as $$
#variable_conflict use_variable
declare
  v_doc text := regexp_replace(coalesce(person ->> 'document', person ->> 'cpf', ''), '\D', '', 'g');
  v_cpf text := case when length(v_doc) = 11 and coalesce(person ->> 'document_type', 'CPF') = 'CPF' then v_doc end;
  v_email text := lower(nullif(trim(person ->> 'email'), ''));
  v_phone text := coalesce(
    private.br_phone(person ->> 'checkout_phone'),
    private.br_phone(coalesce(person ->> 'checkout_phone_code', '') || coalesce(person ->> 'checkout_phone', '')),
    private.br_phone(case when jsonb_typeof(person -> 'phone') = 'string' then person ->> 'phone'
                          else coalesce(person -> 'phone' ->> 'dddCell', '') || coalesce(person -> 'phone' ->> 'cell', '') end),
    private.br_phone(person ->> 'cellphone'));
  v_name text := left(nullif(trim(person ->> 'name'), ''), 256);
  v_identity jsonb;
  v_by_cpf public.contacts;
  v_by_email public.contacts;
  v_by_phone public.contacts;
  v_chosen public.contacts;
  v_other public.contacts;
begin
  if v_email is not null and length(v_email) > 254 then
    v_email := null;
  end if;
  v_identity := jsonb_strip_nulls(jsonb_build_object('cpf', v_cpf, 'email', v_email, 'phone', v_phone));
  if v_identity = '{}'::jsonb then
    return null;
  end if;
  if v_cpf is not null then
    select * into v_by_cpf from public.contacts c
     where c.tenant_id = tenant_id and c.cpf = v_cpf order by c.created_at limit 1;
  end if;
  if v_email is not null then
    select * into v_by_email from public.contacts c
     where c.tenant_id = tenant_id and lower(c.email) = v_email
     order by (c.cpf is not distinct from v_cpf) desc, c.created_at limit 1;
  end if;
  if v_phone is not null then
    select * into v_by_phone from public.contacts c
     where c.tenant_id = tenant_id and c.wa_id = any (private.phone_variants(v_phone))
     order by (c.cpf is not distinct from v_cpf) desc, c.created_at limit 1;
  end if;

  -- another CPF is another person: such a candidate is only a conflict
  foreach v_other in array array[v_by_email, v_by_phone] loop
    if v_other.id is not null and v_cpf is not null and v_other.cpf is not null and v_other.cpf <> v_cpf then
      perform private.record_conflict(tenant_id, v_by_cpf.id, v_other.id, event_id,
        'another CPF holds this ' || case when v_other.id = v_by_email.id then 'e-mail' else 'phone' end, v_identity);
      if v_other.id = v_by_email.id then v_by_email := null; end if;
      if v_other.id = v_by_phone.id then v_by_phone := null; end if;
    end if;
  end loop;
  v_chosen := case when v_by_cpf.id is not null then v_by_cpf
                   when v_by_email.id is not null then v_by_email else v_by_phone end;
  foreach v_other in array array[v_by_email, v_by_phone] loop
    if v_other.id is not null and v_other.id <> v_chosen.id then
      perform private.record_conflict(tenant_id, v_chosen.id, v_other.id, event_id,
        'the ' || case when v_other.id = v_by_email.id then 'e-mail' else 'phone' end
          || ' belongs to another contact', v_identity);
    end if;
  end loop;

  if v_chosen.id is null then
    insert into public.contacts (tenant_id, wa_id, name, email, cpf)
    values (tenant_id, case when not exists (select 1 from public.contacts o where o.tenant_id = tenant_id
                                                and o.wa_id = any (private.phone_variants(v_phone))) then v_phone end,
            v_name, v_email, v_cpf)
    returning * into v_chosen;
    return v_chosen.id;
  end if;
  if (v_chosen.cpf is null and v_cpf is not null) or (v_chosen.email is null and v_email is not null)
     or (v_chosen.wa_id is null and v_phone is not null) or (v_chosen.name is null and v_name is not null) then
    update public.contacts c
       set cpf = coalesce(c.cpf, v_cpf),
           email = coalesce(c.email, v_email),
           wa_id = coalesce(c.wa_id, case when not exists (
                     select 1 from public.contacts o where o.tenant_id = c.tenant_id
                        and o.wa_id = any (private.phone_variants(v_phone))) then v_phone end),
           name = coalesce(c.name, v_name)
     where c.id = v_chosen.id;
  end if;
  return v_chosen.id;
end;
$$;
comment on function private.hotmart_contact(uuid, jsonb, uuid) is 'Finds (CPF, then e-mail, then phone) or creates the contact of a Hotmart person; disagreeing candidates go to contact_conflicts.';

-- The product an event names, created from the event when unknown.
create or replace function private.hotmart_product(tenant_id uuid, product jsonb)
returns uuid
language plpgsql
set search_path = ''
as $$
#variable_conflict use_variable
declare
  v_hotmart_id text := left(nullif(product ->> 'id', ''), 60);
  v_id uuid;
begin
  if jsonb_typeof(product) is distinct from 'object' or v_hotmart_id is null then
    return null;
  end if;
  select p.id into v_id from public.products p where p.tenant_id = tenant_id and p.hotmart_product_id = v_hotmart_id;
  if v_id is null then
    insert into public.products (tenant_id, name, hotmart_product_id, hotmart_ucode)
    values (tenant_id, coalesce(left(nullif(trim(product ->> 'name'), ''), 255), 'Produto Hotmart ' || v_hotmart_id),
            v_hotmart_id, left(product ->> 'ucode', 60))
    on conflict on constraint products_tenant_id_hotmart_product_id_key do update set hotmart_ucode = coalesce(products.hotmart_ucode, excluded.hotmart_ucode)
    returning id into v_id;
  end if;
  return v_id;
end;
$$;

-- An enrollment of a contact in a product, created active when missing.
create or replace function private.hotmart_enrollment(tenant_id uuid, contact_id uuid, product_id uuid, at timestamptz)
returns public.enrollments
language plpgsql
set search_path = ''
as $$
#variable_conflict use_variable
declare
  v_e public.enrollments;
begin
  insert into public.enrollments (tenant_id, contact_id, product_id, started_at, stalls_at)
  values (tenant_id, contact_id, product_id, coalesce(at, now()),
          coalesce(at, now()) + make_interval(days => private.commerce_setting(tenant_id, 'stalled_days', 7)::integer))
  on conflict on constraint enrollments_tenant_id_contact_id_product_id_key do nothing
  returning * into v_e;
  if v_e.id is null then
    select * into v_e from public.enrollments e
     where e.tenant_id = tenant_id and e.contact_id = contact_id and e.product_id = product_id for update;
  end if;
  return v_e;
end;
$$;

-- Forward order of transaction states (refunded and chargeback are final).
create or replace function private.transaction_rank(status text)
returns integer
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case status when 'pending' then 0 when 'billet_printed' then 10 when 'delayed' then 15
                     when 'canceled' then 20 when 'expired' then 20 when 'approved' then 30
                     when 'protested' then 35 when 'complete' then 40
                     when 'refunded' then 50 when 'chargeback' then 50 end
$$;

-- A PURCHASE_* event: product, offer, contact, the transaction moved forward, the
-- enrollment, and the events of the transitions. Returns the transaction id.
create or replace function private.hotmart_purchase(
  tenant_id uuid, event_row uuid, event text, data jsonb, at timestamptz
) returns uuid
language plpgsql
set search_path = ''
as $$
#variable_conflict use_variable
declare
  v_purchase jsonb := coalesce(data -> 'purchase', '{}');
  v_payment jsonb := coalesce(v_purchase -> 'payment', '{}');
  v_code text := left(nullif(v_purchase ->> 'transaction', ''), 60);
  v_status text := case event
    when 'PURCHASE_BILLET_PRINTED' then 'billet_printed' when 'PURCHASE_DELAYED' then 'delayed'
    when 'PURCHASE_CANCELED' then 'canceled' when 'PURCHASE_EXPIRED' then 'expired'
    when 'PURCHASE_APPROVED' then 'approved' when 'PURCHASE_PROTEST' then 'protested'
    when 'PURCHASE_COMPLETE' then 'complete' when 'PURCHASE_REFUNDED' then 'refunded'
    when 'PURCHASE_CHARGEBACK' then 'chargeback' else 'pending' end;
  v_value numeric := case when (v_purchase -> 'price' ->> 'value') ~ '^[0-9]{1,10}(\.[0-9]+)?$'
                          then (v_purchase -> 'price' ->> 'value')::numeric end;
  v_currency text := coalesce(nullif(upper(coalesce(v_purchase -> 'price' ->> 'currency_value',
                                                    v_purchase -> 'price' ->> 'currency_code')), ''), 'BRL');
  v_paid boolean := v_status in ('approved', 'protested', 'complete');
  v_product uuid := private.hotmart_product(tenant_id, data -> 'product');
  v_contact uuid := private.hotmart_contact(tenant_id, data -> 'buyer', event_row);
  v_offer uuid;
  v_old public.transactions;
  v_new public.transactions;
  v_approved timestamptz := coalesce(private.hotmart_time(v_purchase -> 'approved_date'), at);
  v_warranty timestamptz;
  v_e public.enrollments;
begin
  if v_code is null then
    return null;
  end if;
  if v_currency !~ '^[A-Z]{3}$' then
    v_currency := 'BRL';
  end if;
  if v_product is not null and nullif(v_purchase -> 'offer' ->> 'code', '') is not null then
    insert into public.offers (tenant_id, product_id, hotmart_offer_code, price, currency)
    values (tenant_id, v_product, left(v_purchase -> 'offer' ->> 'code', 60),
            case when (v_purchase -> 'original_offer_price' ->> 'value') ~ '^[0-9]{1,10}(\.[0-9]+)?$'
                 then (v_purchase -> 'original_offer_price' ->> 'value')::numeric else v_value end, v_currency)
    on conflict on constraint offers_tenant_id_product_id_hotmart_offer_code_key do update set updated_at = offers.updated_at
    returning id into v_offer;
  end if;
  v_warranty := coalesce(private.hotmart_time(data -> 'product' -> 'warranty_date'),
    v_approved + make_interval(days => coalesce(
      (select p.warranty_days from public.products p where p.id = v_product),
      private.commerce_setting(tenant_id, 'warranty_days', 7))::integer));

  select * into v_old from public.transactions t where t.tenant_id = tenant_id and t.code = v_code for update;
  if v_old.id is null then
    insert into public.transactions (tenant_id, code, status)
    values (tenant_id, v_code, 'pending')
    on conflict on constraint transactions_tenant_id_code_key do nothing;
    select * into v_old from public.transactions t where t.tenant_id = tenant_id and t.code = v_code for update;
    v_old.status := null;  -- new: every state is a move forward
  end if;

  update public.transactions t
     set status = case when coalesce(private.transaction_rank(v_old.status), -1) < private.transaction_rank(v_status)
                            and coalesce(v_old.status, '') not in ('refunded', 'chargeback')
                       then v_status else t.status end,
         hotmart_status = coalesce(left(v_purchase ->> 'status', 60), t.hotmart_status),
         contact_id = coalesce(t.contact_id, v_contact),
         product_id = coalesce(t.product_id, v_product),
         offer_id = coalesce(t.offer_id, v_offer),
         value = coalesce(v_value, t.value),
         currency = case when v_value is not null then v_currency else t.currency end,
         payment_type = coalesce(left(v_payment ->> 'type', 60), t.payment_type),
         installments = coalesce(case when (v_payment ->> 'installments_number') ~ '^[0-9]{1,3}$'
                                      then (v_payment ->> 'installments_number')::integer end, t.installments),
         purchased_at = coalesce(t.purchased_at, private.hotmart_time(v_purchase -> 'order_date'), at),
         approved_at = coalesce(t.approved_at, case when v_paid or v_status in ('refunded', 'chargeback')
                                                    then private.hotmart_time(v_purchase -> 'approved_date') end,
                                case when v_paid then at end),
         refunded_at = coalesce(t.refunded_at, case when v_status in ('refunded', 'chargeback') then at end),
         warranty_ends_at = case when v_paid or t.warranty_ends_at is not null then coalesce(t.warranty_ends_at, v_warranty) end,
         billet_url = coalesce(left(v_payment ->> 'billet_url', 2000), t.billet_url),
         billet_barcode = coalesce(left(v_payment ->> 'billet_barcode', 200), t.billet_barcode),
         pix_code = coalesce(left(v_payment ->> 'pix_code', 4000), t.pix_code),
         pix_qrcode_url = coalesce(left(v_payment ->> 'pix_qrcode', 2000), t.pix_qrcode_url),
         pix_expires_at = coalesce(private.hotmart_time(v_payment -> 'pix_expiration_date'), t.pix_expires_at),
         source = coalesce(left(coalesce(v_purchase -> 'origin' ->> 'src', v_purchase -> 'origin' ->> 'sck',
                                         v_purchase ->> 'sckPaymentLink'), 200), t.source),
         subscriber_code = coalesce(left(data -> 'subscription' -> 'subscriber' ->> 'code', 60), t.subscriber_code),
         last_event_at = greatest(t.last_event_at, at)
   where t.id = v_old.id
  returning * into v_new;

  -- deadlines of the jobs, while paid and not final
  update public.transactions t
     set warranty_notice_at = case when t.status in ('approved', 'protested') and t.warranty_ends_at > now()
                                   and (v_old.status is null or v_old.status not in ('approved', 'protested')
                                        or t.warranty_notice_at is not null)
                                   then t.warranty_ends_at - make_interval(
                                          days => private.commerce_setting(t.tenant_id, 'warranty_notice_days', 2)::integer) end,
         anniversary_at = case when t.status in ('approved', 'protested', 'complete')
                               then coalesce(t.anniversary_at, t.approved_at + interval '1 year') end
   where t.id = v_new.id
  returning * into v_new;

  if v_new.contact_id is not null and v_new.product_id is not null
     and v_new.status in ('approved', 'protested', 'complete', 'refunded', 'chargeback', 'delayed') then
    v_e := private.hotmart_enrollment(tenant_id, v_new.contact_id, v_new.product_id, v_new.approved_at);
    update public.enrollments e
       set access_status = case when v_new.status in ('refunded', 'chargeback', 'delayed') then 'blocked'
                                else 'active' end,
           transaction_id = coalesce(e.transaction_id, v_new.id),
           started_at = least(e.started_at, coalesce(v_new.approved_at, e.started_at)),
           subscriber_code = coalesce(e.subscriber_code, v_new.subscriber_code),
           plan_name = coalesce(left(data -> 'subscription' -> 'plan' ->> 'name', 255), e.plan_name),
           stalls_at = case when v_new.status in ('refunded', 'chargeback', 'delayed') then null else e.stalls_at end
     where e.id = v_e.id;
  end if;

  if v_new.status is distinct from v_old.status then
    if v_new.status in ('approved', 'protested', 'complete')
       and coalesce(v_old.status, '') not in ('approved', 'protested', 'complete') then
      perform private.emit(tenant_id, 'purchase.approved', 'transactions', v_new.id, private.transaction_event(v_new));
    end if;
    if v_new.status in ('refunded', 'chargeback', 'billet_printed') then
      perform private.emit(tenant_id, 'purchase.' || v_new.status, 'transactions', v_new.id,
                           private.transaction_event(v_new));
    elsif v_new.status = 'protested' then
      perform private.emit(tenant_id, 'purchase.refund_requested', 'transactions', v_new.id,
                           private.transaction_event(v_new));
      if v_new.contact_id is not null then
        perform private.contact_tag(tenant_id, v_new.contact_id, 'churn_risk', true);
      end if;
    end if;
  end if;
  return v_new.id;
end;
$$;

-- What an event about a transaction carries: enough for a template without another read.
create or replace function private.transaction_event(t public.transactions)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_strip_nulls(jsonb_build_object(
    'transaction_id', t.id, 'code', t.code, 'status', t.status, 'hotmart_status', t.hotmart_status,
    'contact_id', t.contact_id, 'product_id', t.product_id,
    'product_name', (select p.name from public.products p where p.id = t.product_id),
    'value', t.value, 'currency', t.currency, 'payment_type', t.payment_type, 'approved_at', t.approved_at,
    'warranty_ends_at', t.warranty_ends_at, 'billet_url', t.billet_url, 'billet_barcode', t.billet_barcode,
    'pix_code', t.pix_code, 'pix_qrcode_url', t.pix_qrcode_url, 'pix_expires_at', t.pix_expires_at))
$$;
comment on function private.transaction_event(public.transactions) is 'Payload of purchase.* events: ids, status, value, guarantee, boleto link and PIX code (recovery templates).';

-- Applies one stored Hotmart event; returns its new status (applied or stored).
create or replace function private.hotmart_apply(e public.hotmart_events)
returns text
language plpgsql
set search_path = ''
as $$
declare
  v_data jsonb := case when jsonb_typeof(e.payload -> 'data') = 'object' then e.payload -> 'data' else '{}' end;
  v_at timestamptz := coalesce(e.occurred_at, e.received_at);
  v_person jsonb;
  v_contact uuid;
  v_product uuid;
  v_transaction uuid;
  v_enrollment public.enrollments;
  v_module uuid;
  v_origin text;
begin
  v_person := coalesce(v_data -> 'buyer', v_data -> 'user', v_data -> 'subscriber', v_data -> 'subscription' -> 'user');
  v_product := private.hotmart_product(e.tenant_id, coalesce(v_data -> 'product', v_data -> 'subscription' -> 'product'));

  if e.event like 'PURCHASE\_%' and e.event <> 'PURCHASE_OUT_OF_SHOPPING_CART'
     and v_data -> 'purchase' ->> 'transaction' is not null then
    v_transaction := private.hotmart_purchase(e.tenant_id, e.id, e.event, v_data, v_at);
    select t.contact_id into v_contact from public.transactions t where t.id = v_transaction;
  elsif e.event = 'PURCHASE_OUT_OF_SHOPPING_CART' then
    v_contact := private.hotmart_contact(e.tenant_id, v_person, e.id);
    if v_contact is not null then
      perform private.emit(e.tenant_id, 'purchase.cart_abandoned', 'contacts', v_contact, jsonb_strip_nulls(
        jsonb_build_object('contact_id', v_contact, 'product_id', v_product,
          'product_name', (select p.name from public.products p where p.id = v_product),
          'offer_code', coalesce(v_data -> 'offer' ->> 'code', v_data -> 'purchase' -> 'offer' ->> 'code'),
          'checkout_url', v_data ->> 'checkout_url')));
    end if;
  elsif e.event in ('SUBSCRIPTION_CANCELLATION', 'SWITCH_PLAN', 'UPDATE_SUBSCRIPTION_CHARGE_DATE',
                    'CLUB_FIRST_ACCESS', 'CLUB_MODULE_COMPLETED') then
    v_contact := private.hotmart_contact(e.tenant_id, v_person, e.id);
    if v_contact is null or v_product is null then
      return 'stored';
    end if;
    v_enrollment := private.hotmart_enrollment(e.tenant_id, v_contact, v_product, v_at);
    if e.event = 'SUBSCRIPTION_CANCELLATION' then
      update public.enrollments en
         set access_status = 'expired', stalls_at = null,
             renews_at = coalesce(private.hotmart_time(v_data -> 'date_next_charge'), en.renews_at),
             plan_name = coalesce(left(v_data -> 'subscription' -> 'plan' ->> 'name', 255), en.plan_name),
             subscriber_code = coalesce(en.subscriber_code, left(v_data -> 'subscriber' ->> 'code', 60))
       where en.id = v_enrollment.id;
    elsif e.event = 'SWITCH_PLAN' then
      update public.enrollments en
         set plan_name = coalesce((select left(p ->> 'name', 255) from jsonb_array_elements(
                                     case when jsonb_typeof(v_data -> 'plans') = 'array' then v_data -> 'plans' else '[]' end) p
                                    where (p ->> 'current')::boolean is true limit 1), en.plan_name),
             subscriber_code = coalesce(en.subscriber_code, left(v_data -> 'subscription' ->> 'subscriber_code', 60))
       where en.id = v_enrollment.id;
    elsif e.event = 'UPDATE_SUBSCRIPTION_CHARGE_DATE' then
      update public.enrollments en
         set renews_at = coalesce(private.hotmart_time(v_data -> 'subscription' -> 'date_next_charge'), en.renews_at)
       where en.id = v_enrollment.id;
    elsif e.event = 'CLUB_FIRST_ACCESS' then
      if v_enrollment.first_access_at is null then
        -- KPI: did a WhatsApp message of the tenant reach the student since the purchase?
        -- (Meta's status times are whole seconds: the purchase's second counts.)
        v_origin := case when exists (
            select 1 from public.messages m
             where m.tenant_id = e.tenant_id and m.contact_id = v_contact and m.direction = 'outbound'
               and m.delivered_at between date_trunc('second', v_enrollment.started_at) and v_at)
          then 'whatsapp' else 'hotmart_email' end;
        update public.enrollments en set first_access_at = v_at, first_access_origin = v_origin
         where en.id = v_enrollment.id;
        perform private.emit(e.tenant_id, 'enrollment.first_access', 'enrollments', v_enrollment.id,
          jsonb_build_object('enrollment_id', v_enrollment.id, 'contact_id', v_contact, 'product_id', v_product,
                             'first_access_at', v_at, 'origin', v_origin));
        perform private.refresh_progress(e.tenant_id, v_enrollment.id, v_at);
      end if;
    else  -- CLUB_MODULE_COMPLETED
      if nullif(v_data -> 'module' ->> 'id', '') is null then
        return 'stored';
      end if;
      insert into public.course_modules (tenant_id, product_id, hotmart_module_id, name)
      values (e.tenant_id, v_product, left(v_data -> 'module' ->> 'id', 60), left(v_data -> 'module' ->> 'name', 255))
      on conflict (tenant_id, product_id, hotmart_module_id) do update set name = coalesce(course_modules.name, excluded.name)
      returning id into v_module;
      insert into public.lesson_progress (tenant_id, enrollment_id, lesson_id, completed_at)
      select e.tenant_id, v_enrollment.id, l.id, v_at from public.lessons l
       where l.tenant_id = e.tenant_id and l.module_id = v_module
      on conflict (tenant_id, enrollment_id, lesson_id) do nothing;
      update public.enrollments en
         set completed_modules = array_append(en.completed_modules, v_data -> 'module' ->> 'id')
       where en.id = v_enrollment.id and not ((v_data -> 'module' ->> 'id') = any (en.completed_modules));
      perform private.refresh_progress(e.tenant_id, v_enrollment.id, v_at);
    end if;
  else
    return 'stored';  -- an event this module does not act on (yet): kept as received
  end if;

  update public.hotmart_events h set transaction_id = v_transaction, contact_id = v_contact where h.id = e.id;
  return case when v_transaction is null and v_contact is null then 'stored' else 'applied' end;
end;
$$;
comment on function private.hotmart_apply(public.hotmart_events) is 'Applies one Hotmart event (purchases, subscriptions, club) to the commerce tables; returns applied or stored.';

/**
 * ----
 * Section - Triggers
 * ----
 */

create or replace function private.tg_transactions_ltv()
returns trigger
language plpgsql
security definer  -- contacts are written whoever changed the transaction
set search_path = ''
as $$
begin
  if tg_op in ('UPDATE', 'DELETE') and old.contact_id is not null then
    perform private.refresh_ltv(old.tenant_id, old.contact_id);
  end if;
  if tg_op in ('INSERT', 'UPDATE') and new.contact_id is not null
     and (tg_op = 'INSERT' or new.contact_id is distinct from old.contact_id) then
    perform private.refresh_ltv(new.tenant_id, new.contact_id);
  end if;
  return null;
end;
$$;

create or replace function private.tg_lesson_progress_refresh()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.refresh_progress(new.tenant_id, new.enrollment_id, new.completed_at);
  return null;
end;
$$;

do $$
declare
  v_table text;
begin
  foreach v_table in array array['products', 'offers', 'course_modules', 'lessons', 'transactions', 'enrollments',
                                 'contact_conflicts'] loop
    execute format('drop trigger if exists _100_set_updated_at on public.%I', v_table);
    execute format('create trigger _100_set_updated_at before update on public.%I
                    for each row execute function private.tg_set_updated_at()', v_table);
  end loop;
  foreach v_table in array array['products', 'offers', 'course_modules', 'lessons'] loop
    execute format('drop trigger if exists _900_audit on public.%I', v_table);
    execute format('create trigger _900_audit after insert or update or delete on public.%I
                    for each row execute function private.tg_audit()', v_table);
  end loop;
end
$$;

drop trigger if exists _300_ltv on public.transactions;
create trigger _300_ltv after insert or delete or update of status, value, currency, approved_at, contact_id
  on public.transactions for each row execute function private.tg_transactions_ltv();
drop trigger if exists _300_progress on public.lesson_progress;
create trigger _300_progress after insert on public.lesson_progress
  for each row execute function private.tg_lesson_progress_refresh();

/**
 * ----
 * Section - Event types of this module
 * ----
 */
insert into public.event_types (type, module, description) values
  ('purchase.approved', 'commerce', 'A Hotmart purchase was paid (approved or complete, whichever came first): transaction, product, value, guarantee end (seed 003 compra_aprovada).'),
  ('purchase.refunded', 'commerce', 'A purchase was refunded: the enrollment is blocked and the LTV lowered.'),
  ('purchase.chargeback', 'commerce', 'A purchase was charged back: the enrollment is blocked and the LTV lowered.'),
  ('purchase.refund_requested', 'commerce', 'The buyer asked for a refund (PURCHASE_PROTEST): the contact is tagged churn_risk.'),
  ('purchase.billet_printed', 'commerce', 'A boleto (or PIX code) was issued and awaits payment: payload has billet_url, billet_barcode, pix_code for recovery.'),
  ('purchase.cart_abandoned', 'commerce', 'A buyer left the checkout (PURCHASE_OUT_OF_SHOPPING_CART): contact, product, offer.'),
  ('purchase.anniversary', 'commerce', 'A paid purchase is one more year old (seed 003 aniversario_compra): payload has the years.'),
  ('enrollment.first_access', 'commerce', 'A student opened the course for the first time: payload has the origin KPI (whatsapp or hotmart_email).'),
  ('progress.stalled', 'commerce', 'An active student completed no lesson for the tenant''s stalled_days (seed 003 progresso_estagnado): tagged churn_risk.'),
  ('warranty.ending', 'commerce', 'The guarantee ends within warranty_notice_days and progress is below warranty_progress_pct: refund risk.')
on conflict (type) do update set module = excluded.module, description = excluded.description;

/**
 * ----
 * Section - Jobs (registered in job_schedules, run by private.run_due_jobs)
 * ----
 */

-- Active enrollments of monitored products with no lesson for stalled_days: progress.stalled
-- and the churn_risk tag (the deadline is stored: an index range scan).
create or replace function private.job_commerce_progress_stalled(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_e record;
  v_count integer := 0;
begin
  for v_e in
    update public.enrollments e set stalls_at = null
     where e.stalls_at <= job_commerce_progress_stalled.as_of and e.access_status = 'active'
       and exists (select 1 from public.products p where p.id = e.product_id and p.monitoring_enabled)
    returning e.*
  loop
    perform private.emit(v_e.tenant_id, 'progress.stalled', 'enrollments', v_e.id,
      jsonb_build_object('enrollment_id', v_e.id, 'contact_id', v_e.contact_id, 'product_id', v_e.product_id,
                         'progress_pct', v_e.progress_pct,
                         'last_activity_at', coalesce(v_e.last_progress_at, v_e.first_access_at, v_e.started_at)));
    perform private.contact_tag(v_e.tenant_id, v_e.contact_id, 'churn_risk', true);
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;

-- Paid transactions whose guarantee ends soon while the student's progress is low: warranty.ending.
create or replace function private.job_commerce_warranty_ending(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_t public.transactions;
  v_count integer := 0;
begin
  for v_t in
    update public.transactions t set warranty_notice_at = null
     where t.warranty_notice_at <= job_commerce_warranty_ending.as_of
    returning t.*
  loop
    continue when v_t.status not in ('approved', 'protested') or v_t.warranty_ends_at <= as_of;
    continue when coalesce((select e.progress_pct from public.enrollments e
                             where e.tenant_id = v_t.tenant_id and e.contact_id = v_t.contact_id
                               and e.product_id = v_t.product_id), 0)
                  >= private.commerce_setting(v_t.tenant_id, 'warranty_progress_pct', 30);
    perform private.emit(v_t.tenant_id, 'warranty.ending', 'transactions', v_t.id,
      private.transaction_event(v_t) || jsonb_build_object('progress_pct',
        coalesce((select e.progress_pct from public.enrollments e where e.tenant_id = v_t.tenant_id
                     and e.contact_id = v_t.contact_id and e.product_id = v_t.product_id), 0)));
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;

-- Paid purchases one more year old: purchase.anniversary, and the next one a year on.
create or replace function private.job_commerce_purchase_anniversary(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_t record;
  v_count integer := 0;
begin
  for v_t in
    update public.transactions t
       set anniversary_at = case when t.status in ('approved', 'protested', 'complete')
                                 then t.anniversary_at + interval '1 year' end
     where t.anniversary_at <= job_commerce_purchase_anniversary.as_of
    returning t.*, (t.anniversary_at - interval '1 year') as due
  loop
    continue when v_t.anniversary_at is null;  -- no longer paid
    perform private.emit(v_t.tenant_id, 'purchase.anniversary', 'transactions', v_t.id,
      jsonb_build_object('transaction_id', v_t.id, 'contact_id', v_t.contact_id, 'product_id', v_t.product_id,
                         'approved_at', v_t.approved_at,
                         'years', extract(year from age(v_t.due, v_t.approved_at))::integer));
    v_count := v_count + 1;
  end loop;
  return v_count;
end;
$$;

-- Raw Hotmart events older than the tenant's retention (plans.raw_event_retention_days, as
-- WhatsApp's raw bodies). What they did stays in the tables; a redelivery that old is applied
-- again, which moves nothing backwards and emits nothing twice.
create or replace function private.job_commerce_hotmart_retention(as_of timestamptz)
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
    delete from public.hotmart_events h
     where h.tenant_id = v_tenant and h.received_at < private.retention_cutoff(v_tenant, 'inbound_events', as_of);
    get diagnostics v_rows = row_count;
    v_total := v_total + v_rows;
  end loop;
  return v_total;
end;
$$;

insert into public.job_schedules (name, description, cron, function_name) values
  ('commerce_hotmart_retention', 'Deletes raw Hotmart events older than the tenant''s retention (plans.raw_event_retention_days).',
   '40 3 * * *', 'private.job_commerce_hotmart_retention'),
  ('commerce_progress_stalled', 'Emits progress.stalled and tags churn_risk for active students with no lesson for commerce.stalled_days.',
   '0 * * * *', 'private.job_commerce_progress_stalled'),
  ('commerce_warranty_ending', 'Emits warranty.ending when a guarantee ends within commerce.warranty_notice_days and progress is below commerce.warranty_progress_pct.',
   '5 * * * *', 'private.job_commerce_warranty_ending'),
  ('commerce_purchase_anniversary', 'Emits purchase.anniversary for paid purchases one more year old.',
   '10 12 * * *', 'private.job_commerce_purchase_anniversary')
on conflict (name) do update set description = excluded.description, function_name = excluded.function_name,
  runner = excluded.runner;

/**
 * ----
 * Section - Webhook RPCs (service role: the worker's route and the edge function)
 * ----
 */

-- The hottok of a Hotmart integration (the Vault secret named integration:<id>); null for
-- an unknown id, another provider or no secret. The caller compares it in constant time.
create or replace function public.hotmart_webhook_secret(integration_id uuid)
returns text
language sql
stable
security definer
set search_path = ''
as $$
  select private.vault_secret(i.secret_id, 'integration:' || i.id::text)
    from public.integrations i
   where i.id = hotmart_webhook_secret.integration_id and i.provider = 'hotmart' and i.status <> 'error'
$$;
comment on function public.hotmart_webhook_secret(uuid) is 'Service role: the hottok (X-HOTMART-HOTTOK) of a Hotmart integration, from Vault; null when there is none.';

-- A call with a wrong hottok: counted, nothing else kept.
create or replace function public.hotmart_reject(integration_id uuid)
returns void
language sql
security definer
set search_path = ''
as $$
  insert into public.hotmart_rejections as r (tenant_id, integration_id, refused, last_refused_at)
  select i.tenant_id, i.id, 1, now() from public.integrations i
   where i.id = hotmart_reject.integration_id and i.provider = 'hotmart'
  on conflict (tenant_id, integration_id) do update set refused = r.refused + 1, last_refused_at = now()
$$;
comment on function public.hotmart_reject(uuid) is 'Service role: counts a webhook call refused for a wrong hottok (its body is not kept).';

-- Stores a Hotmart event (idempotent by its id) and applies it. Application runs in a
-- subtransaction: when it fails the event stays, marked failed with the error, and the call
-- still succeeds (Hotmart deactivates URLs that keep failing; the event can be replayed).
create or replace function public.hotmart_ingest(integration_id uuid, payload jsonb)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_tenant uuid;
  v_event public.hotmart_events;
  v_status text;
  v_error text;
begin
  select i.tenant_id into v_tenant from public.integrations i
   where i.id = hotmart_ingest.integration_id and i.provider = 'hotmart';
  if v_tenant is null then
    raise exception 'no Hotmart integration %', hotmart_ingest.integration_id using errcode = 'P0002';
  end if;
  if jsonb_typeof(payload) is distinct from 'object' then
    return jsonb_build_object('status', 'quarantined', 'event_id',
      public.hotmart_quarantine_raw(integration_id, coalesce(payload::text, 'null'), 'body is not a JSON object'));
  end if;

  insert into public.hotmart_events (tenant_id, integration_id, event_id, event, occurred_at, payload)
  values (v_tenant, hotmart_ingest.integration_id,
          coalesce(left(nullif(payload ->> 'id', ''), 200), encode(sha256(convert_to(payload::text, 'UTF8')), 'hex')),
          left(payload ->> 'event', 80),
          coalesce(private.hotmart_time(payload -> 'creation_date'), private.hotmart_time(payload -> 'creationDate')),
          payload)
  on conflict (tenant_id, event_id) do nothing
  returning * into v_event;
  if v_event.id is null then
    return jsonb_build_object('status', 'duplicate');
  end if;

  begin
    v_status := private.hotmart_apply(v_event);
  exception when others then
    v_status := 'failed';
    v_error := left(sqlstate || ': ' || sqlerrm, 2000);
  end;
  update public.hotmart_events h set status = v_status, reason = v_error, applied_at = now()
   where h.id = v_event.id;
  return jsonb_build_object('status', v_status, 'event_id', v_event.id, 'error', v_error);
end;
$$;
comment on function public.hotmart_ingest(uuid, jsonb) is 'Service role: stores a Hotmart webhook (idempotent by event id) and applies it; returns {"status": applied|stored|failed|duplicate|quarantined}. Never fails for the payload''s content.';

-- A body with the right hottok that is not a JSON object: kept as text, answered 200.
create or replace function public.hotmart_quarantine_raw(integration_id uuid, body text, reason text)
returns uuid
language sql
security definer
set search_path = ''
as $$
  insert into public.hotmart_events (tenant_id, integration_id, event_id, raw_body, status, reason)
  select i.tenant_id, i.id, encode(sha256(convert_to(hotmart_quarantine_raw.body, 'UTF8')), 'hex'),
         hotmart_quarantine_raw.body, 'quarantined', left(hotmart_quarantine_raw.reason, 2000)
    from public.integrations i
   where i.id = hotmart_quarantine_raw.integration_id and i.provider = 'hotmart'
  on conflict (tenant_id, event_id) do update set reason = excluded.reason
  returning id
$$;
comment on function public.hotmart_quarantine_raw(uuid, text, text) is 'Service role: keeps a Hotmart webhook body that is not a JSON object, with the reason.';

/**
 * ----
 * Section - RLS policies
 * ----
 */
do $$
declare
  v_table text;
begin
  foreach v_table in array array['transactions', 'enrollments', 'lesson_progress', 'contact_conflicts'] loop
    execute format('drop policy if exists "Members read %1$s" on public.%1$I', v_table);
    execute format('create policy "Members read %1$s" on public.%1$I for select to authenticated
                    using (tenant_id in (select private.my_tenant_ids()))', v_table);
  end loop;
  foreach v_table in array array['products', 'offers', 'course_modules', 'lessons'] loop
    perform private.members_read_managers_write(v_table);
  end loop;
end
$$;
drop policy if exists "Agents resolve contact conflicts" on public.contact_conflicts;
create policy "Agents resolve contact conflicts" on public.contact_conflicts
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('agent')))
  with check (tenant_id in (select private.my_tenant_ids_with_role('agent')));
drop policy if exists "Admins read Hotmart events" on public.hotmart_events;
create policy "Admins read Hotmart events" on public.hotmart_events
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Admins read refused Hotmart calls" on public.hotmart_rejections;
create policy "Admins read refused Hotmart calls" on public.hotmart_rejections
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));

/**
 * ----
 * Section - Grants
 * ----
 */
grant select, insert, update, delete on public.products, public.offers, public.course_modules, public.lessons
  to authenticated;
grant select on public.transactions, public.enrollments, public.lesson_progress, public.hotmart_events,
  public.hotmart_rejections to authenticated;
grant select, update (status, note) on public.contact_conflicts to authenticated;
grant select, insert, update, delete on public.products, public.offers, public.course_modules, public.lessons,
  public.transactions, public.enrollments, public.lesson_progress, public.contact_conflicts, public.hotmart_events,
  public.hotmart_rejections to service_role;

revoke execute on all functions in schema private from public, anon;
revoke execute on function public.hotmart_webhook_secret(uuid), public.hotmart_reject(uuid),
  public.hotmart_ingest(uuid, jsonb), public.hotmart_quarantine_raw(uuid, text, text) from public, anon, authenticated;
grant execute on function public.hotmart_webhook_secret(uuid), public.hotmart_reject(uuid),
  public.hotmart_ingest(uuid, jsonb), public.hotmart_quarantine_raw(uuid, text, text) to service_role;
grant execute on function private.br_phone(text), private.hotmart_time(jsonb) to service_role;
