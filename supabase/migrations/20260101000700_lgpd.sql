/**
 * Zapbase module: LGPD (Brazil's data protection law, seed 000 consent / lgpd_deleted /
 * lgpd_data_cleanup).
 *
 * The consent ledger itself is the whatsapp module's append-only `contact_consents`
 * (sources: the customer's message, a quick reply such as a template's STOP, a documented
 * tenant request); this module adds the confirmation a customer gets when they opt out.
 *
 * Data subject requests (admins): `lgpd_export_contact` returns everything Zapbase holds
 * about a contact as one JSON document; `lgpd_anonymise_contact` removes it. Both walk the
 * same list of places, one function per module (private.lgpd_places_<module>), called from
 * private.lgpd_process: a module that stores something about a contact adds its function
 * there, and the proof test (a catalog-driven scan of every text and jsonb column) shows
 * what was missed. What identifies the person goes; counts, costs, statuses and timestamps
 * stay, so analytics and billing stay true.
 *
 * Phone hash: an anonymised contact keeps a phone hash salted per tenant (a random salt in
 * Vault, never readable by a client), not the plain private.phone_hash. The plain SHA-256 of
 * a phone number is reversed by enumerating the ~10^10 possible numbers in minutes, so it
 * would still identify the person; the salted one cannot be reversed without the salt and
 * cannot be joined across tenants. A returning customer meets no wa_id and is a new contact.
 *
 * Media files cannot be deleted by SQL: their keys are queued in `storage_deletions` and
 * the worker's job lgpd_storage_purge deletes the objects (local directory or Supabase
 * Storage), then the rows.
 *
 * Retention per tenant (`retention_policies`: months of messages, raw webhook events and
 * AI usage rows) is applied by the monthly job lgpd_data_cleanup, which also anonymises
 * contacts left in lgpd_state deletion_requested.
 *
 * Who may do what:
 *   admin         export and anonymise contacts, set the retention policy, read the
 *                 storage deletion queue
 *   service role  everything (the worker purges storage)
 */

/**
 * ----
 * Section - Tables
 * ----
 */

-- Objects (media files) to delete from storage: the database cannot reach it.
create table if not exists public.storage_deletions (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  storage_key text not null unique check (length(storage_key) between 1 and 1024),
  reason text not null check (reason in ('anonymisation', 'retention', 'deleted')),
  requested_at timestamptz not null default now(),
  attempts integer not null default 0,
  last_error text check (length(last_error) <= 2000),
  unique (tenant_id, id)
);
alter table public.storage_deletions enable row level security;
create index if not exists storage_deletions_tenant_idx on public.storage_deletions (tenant_id, requested_at);
create index if not exists storage_deletions_todo_idx on public.storage_deletions (requested_at);
comment on table public.storage_deletions is 'Storage objects (media files) to delete, queued by anonymisation, retention and the deletion of the row that held them (deleted); the worker job lgpd_storage_purge deletes each object, then its row.';
comment on column public.storage_deletions.storage_key is '<bucket>/<path> as in messages.media_storage_path.';
comment on column public.storage_deletions.attempts is 'Purge attempts that failed (last_error says why); the row stays until the object is gone.';

-- Retention per tenant (seed 000 lgpd_data_cleanup): null keeps forever.
create table if not exists public.retention_policies (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null unique references public.tenants (id) on delete cascade,
  messages_months integer check (messages_months between 1 and 120),
  raw_events_months integer check (raw_events_months between 1 and 120),
  usage_months integer check (usage_months between 1 and 120),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id)
);
alter table public.retention_policies enable row level security;
comment on table public.retention_policies is 'How long a tenant keeps personal data; applied monthly by lgpd_data_cleanup. Null: no limit beyond the plan''s.';
comment on column public.retention_policies.messages_months is 'Messages older than this lose their content, payload, transcription and media (the rows, counts and times stay).';
comment on column public.retention_policies.raw_events_months is 'Raw webhook bodies (inbound_events) older than this are deleted (the plan''s raw_event_retention_days may be shorter).';
comment on column public.retention_policies.usage_months is 'AI usage rows older than this are deleted (analytics_daily keeps their totals).';

-- What anonymisation and export know about their subject (built by private.lgpd_subject).
do $$
begin
  if not exists (select 1 from pg_type where typname = 'lgpd_subject' and typnamespace = 'private'::regnamespace) then
    create type private.lgpd_subject as (
      tenant_id uuid,
      contact_id uuid,
      conversation_ids uuid[],
      message_ids uuid[],
      patterns text[],
      phone_hash text,
      salted_hash text
    );
  end if;
end
$$;
comment on type private.lgpd_subject is 'A data subject: the contact, its conversations and messages, the regular expressions that find its personal data in free text, its plain and salted phone hashes.';

/**
 * ----
 * Section - Private helpers: finding and removing personal data in free text
 * ----
 */

-- A phone number or CPF as a regular expression that matches it however it is written
-- ("+55 (21) 91234-5678", "21912345678", "91234 5678"; "111.444.777-35"): the last 8 digits
-- of a phone (what every format has), optionally preceded by the country code, area code
-- and ninth digit; all 11 digits of a CPF. Separators allowed between any two digits.
create or replace function private.lgpd_digits_pattern(digits text, kind text)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case
    when lgpd_digits_pattern.kind = 'phone' and length(lgpd_digits_pattern.digits) >= 8 then
      '\+?\(?([0-9][\s().-]{0,2}){0,5}'
        || array_to_string(regexp_split_to_array(right(lgpd_digits_pattern.digits, 8), ''), '[\s().-]{0,2}')
        || '(?![0-9])'
    when lgpd_digits_pattern.kind = 'cpf' and length(lgpd_digits_pattern.digits) = 11 then
      '(?<![0-9])' || array_to_string(regexp_split_to_array(lgpd_digits_pattern.digits, ''), '[\s./-]{0,2}')
        || '(?![0-9])'
  end
$$;

-- A literal (name, e-mail, address) as a case-insensitive pattern; runs of spaces match
-- any whitespace. Shorter than 4 characters: too common to remove everywhere.
create or replace function private.lgpd_literal_pattern(value text)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case when length(btrim(lgpd_literal_pattern.value)) >= 4 then
    regexp_replace(regexp_replace(btrim(lgpd_literal_pattern.value), '([.^$*+?(){}|\\\[\]-])', '\\\1', 'g'),
                   '\s+', '\\s+', 'g')
  end
$$;

-- The patterns of a contact's personal data: names, e-mail, company, every phone number it
-- had (wa_id, phone, pending and previous numbers), CPF, and every text of its attributes
-- (address, CEP, document...).
create or replace function private.lgpd_patterns(c public.contacts)
returns text[]
language sql
stable
set search_path = ''
as $$
  select coalesce(array_agg(distinct p) filter (where p is not null), '{}')
    from (
      select private.lgpd_literal_pattern(v) as p
        from unnest(array[c.name, c.profile_name, c.username, c.email, c.company, c.user_id]) v
      union all
      select private.lgpd_digits_pattern(private.phone_digits(v), 'phone')
        from unnest(array[c.wa_id, c.phone, c.pending_wa_id]
                    || array(select jsonb_array_elements_text(
                               case when jsonb_typeof(c.attributes -> 'previous_wa_ids') = 'array'
                                    then c.attributes -> 'previous_wa_ids' else '[]' end))) v
      union all
      select private.lgpd_digits_pattern(c.cpf, 'cpf')
      union all
      select case when private.phone_digits(a.value) is not null
                       and length(private.phone_digits(a.value)) between 10 and 13
                       and a.value ~ '^[\s+()0-9.-]+$'
                  then private.lgpd_digits_pattern(private.phone_digits(a.value), 'phone')
                  when length(private.phone_digits(a.value)) = 11 and a.value ~ '^[\s0-9./-]+$'
                  then private.lgpd_digits_pattern(private.phone_digits(a.value), 'cpf')
                  else private.lgpd_literal_pattern(a.value) end
        from jsonb_path_query(c.attributes, 'strict $.**') j(v)
        cross join lateral (select j.v #>> '{}' as value) a
       where jsonb_typeof(j.v) in ('string', 'number')
    ) x
$$;
comment on function private.lgpd_patterns(public.contacts) is 'Regular expressions (case-insensitive) that find a contact''s personal data in free text.';

-- Does the text hold any of the patterns?
create or replace function private.lgpd_mentions(value text, patterns text[])
returns boolean
language sql
immutable
parallel safe
set search_path = ''
as $$
  select lgpd_mentions.value is not null and cardinality(lgpd_mentions.patterns) > 0
     and lgpd_mentions.value ~* ('(' || array_to_string(lgpd_mentions.patterns, ')|(') || ')')
$$;

-- The text with every match of the patterns replaced by "[removido]".
create or replace function private.lgpd_scrub(value text, patterns text[])
returns text
language plpgsql
immutable
parallel safe
set search_path = ''
as $$
declare
  v_pattern text;
  v_text text := value;
begin
  if not private.lgpd_mentions(v_text, patterns) then
    return v_text;
  end if;
  foreach v_pattern in array patterns loop
    v_text := regexp_replace(v_text, v_pattern, '[removido]', 'gi');
  end loop;
  return v_text;
end;
$$;

-- The same for a JSON value: keys and strings scrubbed, numbers that hold a match become
-- the string "[removido]"; the shape stays.
create or replace function private.lgpd_scrub_jsonb(value jsonb, patterns text[])
returns jsonb
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case
    when not private.lgpd_mentions(lgpd_scrub_jsonb.value::text, lgpd_scrub_jsonb.patterns) then lgpd_scrub_jsonb.value
    when jsonb_typeof(lgpd_scrub_jsonb.value) = 'object' then
      (select coalesce(jsonb_object_agg(private.lgpd_scrub(e.key, lgpd_scrub_jsonb.patterns),
                                        private.lgpd_scrub_jsonb(e.value, lgpd_scrub_jsonb.patterns)), '{}')
         from jsonb_each(lgpd_scrub_jsonb.value) e)
    when jsonb_typeof(lgpd_scrub_jsonb.value) = 'array' then
      (select coalesce(jsonb_agg(private.lgpd_scrub_jsonb(e.value, lgpd_scrub_jsonb.patterns) order by e.n), '[]')
         from jsonb_array_elements(lgpd_scrub_jsonb.value) with ordinality e(value, n))
    when jsonb_typeof(lgpd_scrub_jsonb.value) = 'string' then
      to_jsonb(private.lgpd_scrub(lgpd_scrub_jsonb.value #>> '{}', lgpd_scrub_jsonb.patterns))
    else to_jsonb('[removido]'::text)
  end
$$;

-- The JSON value without `key` at any depth: the verbatim quotes of what a person said
-- (coaching evidence) go whole, like a message's content, while what cites them stays.
create or replace function private.lgpd_drop_key(value jsonb, key text)
returns jsonb
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case jsonb_typeof(lgpd_drop_key.value)
    when 'object' then
      (select coalesce(jsonb_object_agg(e.key, private.lgpd_drop_key(e.value, lgpd_drop_key.key)), '{}')
         from jsonb_each(lgpd_drop_key.value) e where e.key <> lgpd_drop_key.key)
    when 'array' then
      (select coalesce(jsonb_agg(private.lgpd_drop_key(e.value, lgpd_drop_key.key) order by e.n), '[]')
         from jsonb_array_elements(lgpd_drop_key.value) with ordinality e(value, n))
    else lgpd_drop_key.value
  end
$$;

-- The tenant's phone salt (Vault secret tenant:<id>:phone_salt, made on first use) and the
-- salted hash anonymised contacts keep (see the header for why not the plain hash).
create or replace function private.lgpd_salted_phone_hash(tenant_id uuid, phone text)
returns text
language plpgsql
set search_path = ''
as $$
declare
  v_owner text := 'tenant:' || lgpd_salted_phone_hash.tenant_id || ':phone_salt';
  v_salt text;
begin
  if private.phone_digits(phone) is null then
    return null;
  end if;
  select s.decrypted_secret into v_salt from vault.decrypted_secrets s where s.name = v_owner;
  if v_salt is null then
    v_salt := replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
    perform private.vault_store(v_owner, v_salt, 'Salt of the phone hashes of anonymised contacts (LGPD)');
  end if;
  return encode(sha256(convert_to(v_salt || ':' || private.phone_digits(phone), 'UTF8')), 'hex');
end;
$$;

-- Rows of a query as a JSON array (the export's unit); '[]' when none.
create or replace function private.lgpd_rows(query text, s private.lgpd_subject)
returns jsonb
language plpgsql
stable
set search_path = ''
as $$
declare
  v_rows jsonb;
begin
  execute format('select coalesce(jsonb_agg(to_jsonb(r)), ''[]'') from (%s) r', query) into v_rows using s;
  return v_rows;
end;
$$;

-- The person's leads: linked to the contact, or naming them (by name, phone or e-mail) for a
-- lead that has no contact yet (an import); and the deals of the contact or of those leads.
-- Read by crm and by the modules whose rows hang on leads and deals (coaching calls).
create or replace function private.lgpd_lead_ids(s private.lgpd_subject)
returns uuid[]
language sql
stable
set search_path = ''
as $$
  select array(select l.id from public.leads l where l.tenant_id = s.tenant_id
    and (l.contact_id = s.contact_id or private.lgpd_mentions(concat_ws(' ', l.name, l.phone, l.email), s.patterns)))
$$;

create or replace function private.lgpd_deal_ids(s private.lgpd_subject, lead_ids uuid[])
returns uuid[]
language sql
stable
set search_path = ''
as $$
  select array(select d.id from public.deals d where d.tenant_id = s.tenant_id
    and (d.contact_id = s.contact_id or d.lead_id = any(lgpd_deal_ids.lead_ids)))
$$;

-- Messages lose what they said and what points at the person: content, captions, payload,
-- transcription, media (queued for deletion from storage), wamids (Meta's encode the phone
-- number); type, direction, status, times, pricing and AI figures stay. Used by
-- anonymisation and by message retention.
create or replace function private.lgpd_forget_messages(tenant_id uuid, message_ids uuid[], reason text)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_rows integer;
begin
  insert into public.storage_deletions (tenant_id, storage_key, reason)
  select m.tenant_id, m.media_storage_path, lgpd_forget_messages.reason
    from public.messages m
   where m.tenant_id = lgpd_forget_messages.tenant_id and m.id = any(lgpd_forget_messages.message_ids)
     and m.media_storage_path is not null
  on conflict (storage_key) do nothing;
  update public.message_status_events e
     set recipient_id = null, raw = '{"anonymised": true}', error_details = null, wamid = 'anonymised:' || e.id
   where e.tenant_id = lgpd_forget_messages.tenant_id and e.message_id = any(lgpd_forget_messages.message_ids);
  update public.messages m
     set content = null, content_masked = null, payload = '{"anonymised": true}', transcription = null,
         media_id = null, media_sha256 = null, media_filename = null, media_storage_path = null,
         referral = null, interactive_reply_id = null, error_details = null, wamid = null, reply_to_wamid = null
   where m.tenant_id = lgpd_forget_messages.tenant_id and m.id = any(lgpd_forget_messages.message_ids)
     and m.payload is distinct from '{"anonymised": true}';
  get diagnostics v_rows = row_count;
  return v_rows;
end;
$$;
comment on function private.lgpd_forget_messages(uuid, uuid[], text) is 'Removes what messages said (content, payload, transcription, media, wamids) keeping their figures; queues their media files for deletion.';

/**
 * ----
 * Section - The places personal data lives, one function per module. Each returns
 * {"<table>": [rows about the subject]} (the export) and, when `anonymise`, removes the
 * personal data from those rows. A module that adds a table holding data about contacts
 * adds its function (in its own migration when that runs after this one: plpgsql resolves
 * names when called) and one line in private.lgpd_process.
 * ----
 */

-- whatsapp: conversations, messages, status events, AI memory, consent history, raw events.
create or replace function private.lgpd_places_whatsapp(s private.lgpd_subject, anonymise boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_doc jsonb := jsonb_build_object(
    'conversations', private.lgpd_rows('select * from public.conversations c
       where c.tenant_id = ($1).tenant_id and c.id = any(($1).conversation_ids) order by c.created_at', s),
    'messages', private.lgpd_rows('select * from public.messages m
       where m.tenant_id = ($1).tenant_id and m.id = any(($1).message_ids) order by m.created_at', s),
    'message_status_events', private.lgpd_rows('select * from public.message_status_events e
       where e.tenant_id = ($1).tenant_id and e.message_id = any(($1).message_ids) order by e.occurred_at', s),
    'session_context', private.lgpd_rows('select * from public.session_context x
       where x.tenant_id = ($1).tenant_id and x.conversation_id = any(($1).conversation_ids)', s),
    'contact_consents', private.lgpd_rows('select * from public.contact_consents h
       where h.tenant_id = ($1).tenant_id and h.contact_id = ($1).contact_id order by h.occurred_at', s),
    'inbound_events', private.lgpd_rows('select * from public.inbound_events e
       where e.tenant_id = ($1).tenant_id
         and private.lgpd_mentions(concat(e.payload::text, e.raw_body, e.quarantined::text, e.reason), ($1).patterns)
       order by e.received_at', s));
begin
  if not anonymise then
    return v_doc;
  end if;
  perform private.lgpd_forget_messages(s.tenant_id, s.message_ids, 'anonymisation');
  update public.conversations c
     set last_message_preview = null, handoff_reason = private.lgpd_scrub(c.handoff_reason, s.patterns),
         csat_comment = null, referral = null, transcript = null, flow_state = '{}'
   where c.tenant_id = s.tenant_id and c.id = any(s.conversation_ids);
  delete from public.session_context x where x.tenant_id = s.tenant_id and x.conversation_id = any(s.conversation_ids);
  update public.inbound_events e
     set payload = private.lgpd_scrub_jsonb(e.payload, s.patterns), raw_body = private.lgpd_scrub(e.raw_body, s.patterns),
         quarantined = private.lgpd_scrub_jsonb(e.quarantined, s.patterns), reason = private.lgpd_scrub(e.reason, s.patterns)
   where e.tenant_id = s.tenant_id
     and private.lgpd_mentions(concat(e.payload::text, e.raw_body, e.quarantined::text, e.reason), s.patterns);
  -- orphan status events (wamid never matched) addressed to the person
  update public.message_status_events e
     set recipient_id = null, raw = private.lgpd_scrub_jsonb(e.raw, s.patterns),
         error_details = private.lgpd_scrub(e.error_details, s.patterns)
   where e.tenant_id = s.tenant_id and e.message_id is null
     and private.lgpd_mentions(concat(e.recipient_id, e.raw::text), s.patterns);
  return v_doc;
end;
$$;

-- ai: usage rows (costs stay, the phone hash becomes the salted one), reservations, and
-- cached answers that quote the person.
create or replace function private.lgpd_places_ai(s private.lgpd_subject, anonymise boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_doc jsonb := jsonb_build_object(
    'ai_usage', private.lgpd_rows('select * from public.ai_usage u
       where u.tenant_id = ($1).tenant_id and (u.conversation_id = any(($1).conversation_ids)
             or u.message_id = any(($1).message_ids) or u.phone_hash = ($1).phone_hash) order by u.created_at', s),
    'budget_reservations', private.lgpd_rows('select * from public.budget_reservations r
       where r.tenant_id = ($1).tenant_id and r.phone_hash = ($1).phone_hash', s),
    'response_cache', private.lgpd_rows('select * from public.response_cache r
       where r.tenant_id = ($1).tenant_id and private.lgpd_mentions(concat(r.response::text, r.response_text), ($1).patterns)', s));
begin
  if anonymise then
    update public.ai_usage u
       set phone_hash = case when u.phone_hash is not null then s.salted_hash end,
           metadata = private.lgpd_scrub_jsonb(u.metadata, s.patterns),
           error_message = private.lgpd_scrub(u.error_message, s.patterns)
     where u.tenant_id = s.tenant_id and (u.conversation_id = any(s.conversation_ids)
           or u.message_id = any(s.message_ids) or u.phone_hash = s.phone_hash);
    update public.budget_reservations r set phone_hash = s.salted_hash
     where r.tenant_id = s.tenant_id and r.phone_hash = s.phone_hash;
    delete from public.response_cache r
     where r.tenant_id = s.tenant_id and private.lgpd_mentions(concat(r.response::text, r.response_text), s.patterns);
  end if;
  return v_doc;
end;
$$;

-- knowledge: chunks and sources that quote the person (scrubbed, chunks re-embedded by the
-- worker); synthesised speech whose text named them (row and audio file go).
create or replace function private.lgpd_places_knowledge(s private.lgpd_subject, anonymise boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_doc jsonb := jsonb_build_object(
    'knowledge_sources', private.lgpd_rows('select k.id, k.title, k.origin, k.content, k.metadata
       from public.knowledge_sources k where k.tenant_id = ($1).tenant_id
        and private.lgpd_mentions(concat(k.title, k.origin, k.content, k.metadata::text), ($1).patterns)', s),
    'document_chunks', private.lgpd_rows('select d.id, d.source_id, d.position, d.heading_path, d.content, d.metadata
       from public.document_chunks d where d.tenant_id = ($1).tenant_id
        and private.lgpd_mentions(concat(d.heading_path::text, d.content, d.metadata::text), ($1).patterns)', s),
    'tts_cache', private.lgpd_rows('select t.id, t.text_preview, t.storage_path from public.tts_cache t
       where t.tenant_id = ($1).tenant_id and private.lgpd_mentions(t.text_preview, ($1).patterns)', s));
begin
  if anonymise then
    update public.knowledge_sources k
       set title = private.lgpd_scrub(k.title, s.patterns), origin = private.lgpd_scrub(k.origin, s.patterns),
           content = private.lgpd_scrub(k.content, s.patterns), metadata = private.lgpd_scrub_jsonb(k.metadata, s.patterns)
     where k.tenant_id = s.tenant_id
       and private.lgpd_mentions(concat(k.title, k.origin, k.content, k.metadata::text), s.patterns);
    update public.document_chunks d
       set heading_path = array(select private.lgpd_scrub(h, s.patterns) from unnest(d.heading_path) h),
           content = private.lgpd_scrub(d.content, s.patterns), metadata = private.lgpd_scrub_jsonb(d.metadata, s.patterns),
           content_hash = encode(sha256(convert_to(private.lgpd_scrub(d.content, s.patterns), 'UTF8')), 'hex'),
           embedding = null, embedding_model = null, embedded_at = null
     where d.tenant_id = s.tenant_id
       and private.lgpd_mentions(concat(d.heading_path::text, d.content, d.metadata::text), s.patterns);
    with gone as (
      delete from public.tts_cache t
       where t.tenant_id = s.tenant_id and private.lgpd_mentions(t.text_preview, s.patterns)
      returning t.tenant_id, t.storage_path
    )
    insert into public.storage_deletions (tenant_id, storage_key, reason)
    select g.tenant_id, g.storage_path, 'anonymisation' from gone g
    on conflict (storage_key) do nothing;
  end if;
  return v_doc;
end;
$$;

-- tenancy: alerts and import reports that name the person.
create or replace function private.lgpd_places_tenancy(s private.lgpd_subject, anonymise boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_doc jsonb := jsonb_build_object(
    'alerts', private.lgpd_rows('select * from public.alerts a where a.tenant_id = ($1).tenant_id
       and private.lgpd_mentions(concat(a.title, a.message, a.payload::text), ($1).patterns)', s),
    'import_logs', private.lgpd_rows('select * from public.import_logs i where i.tenant_id = ($1).tenant_id
       and private.lgpd_mentions(concat(i.file_name, i.errors::text), ($1).patterns)', s));
begin
  if anonymise then
    update public.alerts a
       set title = private.lgpd_scrub(a.title, s.patterns), message = private.lgpd_scrub(a.message, s.patterns),
           payload = private.lgpd_scrub_jsonb(a.payload, s.patterns)
     where a.tenant_id = s.tenant_id and private.lgpd_mentions(concat(a.title, a.message, a.payload::text), s.patterns);
    update public.import_logs i
       set file_name = private.lgpd_scrub(i.file_name, s.patterns), errors = private.lgpd_scrub_jsonb(i.errors, s.patterns)
     where i.tenant_id = s.tenant_id and private.lgpd_mentions(concat(i.file_name, i.errors::text), s.patterns);
  end if;
  return v_doc;
end;
$$;

-- inbox: tags and service figures of the conversations (nothing to remove: no free text).
create or replace function private.lgpd_places_inbox(s private.lgpd_subject, anonymise boolean)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_build_object(
    'contact_tags', private.lgpd_rows('select * from public.contact_tags t
       where t.tenant_id = ($1).tenant_id and t.contact_id = ($1).contact_id', s),
    'conversation_metrics', private.lgpd_rows('select * from public.conversation_metrics m
       where m.tenant_id = ($1).tenant_id and m.conversation_id = any(($1).conversation_ids)', s))
$$;

-- campaigns: the lists and sends that reached the person (the number goes; statuses and
-- times stay, so campaign results stay true).
create or replace function private.lgpd_places_campaigns(s private.lgpd_subject, anonymise boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_doc jsonb := jsonb_build_object(
    'campaign_list_members', private.lgpd_rows('select * from public.campaign_list_members l
       where l.tenant_id = ($1).tenant_id and l.contact_id = ($1).contact_id', s),
    'campaign_recipients', private.lgpd_rows('select * from public.campaign_recipients r
       where r.tenant_id = ($1).tenant_id and r.contact_id = ($1).contact_id order by r.created_at', s));
begin
  if anonymise then
    update public.campaign_recipients r
       set wa_id = null, error_title = private.lgpd_scrub(r.error_title, s.patterns)
     where r.tenant_id = s.tenant_id and r.contact_id = s.contact_id;
  end if;
  return v_doc;
end;
$$;

-- flows: what the person answered (variables, inputs) goes whole, whether or not it names
-- them, like a message's content; blocks, outcomes, statuses and times stay for analytics.
create or replace function private.lgpd_places_flows(s private.lgpd_subject, anonymise boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_doc jsonb := jsonb_build_object(
    'flow_executions', private.lgpd_rows('select * from public.flow_executions x
       where x.tenant_id = ($1).tenant_id and x.contact_id = ($1).contact_id order by x.started_at', s),
    'flow_steps', private.lgpd_rows('select p.* from public.flow_steps p join public.flow_executions x
         on x.tenant_id = p.tenant_id and x.id = p.execution_id
       where x.tenant_id = ($1).tenant_id and x.contact_id = ($1).contact_id order by p.seq', s));
begin
  if anonymise then
    update public.flow_steps p
       set input = null, outcome = private.lgpd_scrub(p.outcome, s.patterns)
      from public.flow_executions x
     where x.tenant_id = s.tenant_id and x.contact_id = s.contact_id
       and p.tenant_id = x.tenant_id and p.execution_id = x.id;
    update public.flow_executions x
       set variables = '{}', last_input = null, end_reason = private.lgpd_scrub(x.end_reason, s.patterns)
     where x.tenant_id = s.tenant_id and x.contact_id = s.contact_id;
  end if;
  return v_doc;
end;
$$;

-- automation rules: executions and approvals about the person (conditions, actions,
-- results and previews quote their data), and queue errors naming them.
create or replace function private.lgpd_places_automation(s private.lgpd_subject, anonymise boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_doc jsonb := jsonb_build_object(
    'automation_executions', private.lgpd_rows('select * from public.automation_executions x
       where x.tenant_id = ($1).tenant_id and (x.contact_id = ($1).contact_id
             or x.conversation_id = any(($1).conversation_ids)) order by x.created_at', s),
    'dispatch_queue', private.lgpd_rows('select * from public.dispatch_queue d
       where d.tenant_id = ($1).tenant_id and (d.contact_id = ($1).contact_id
             or d.conversation_id = any(($1).conversation_ids)) order by d.created_at', s),
    'automation_queue', private.lgpd_rows('select * from public.automation_queue q
       where q.tenant_id = ($1).tenant_id and private.lgpd_mentions(q.last_error, ($1).patterns)', s));
begin
  if anonymise then
    update public.automation_executions x
       set condition_results = private.lgpd_scrub_jsonb(x.condition_results, s.patterns),
           actions = private.lgpd_scrub_jsonb(x.actions, s.patterns),
           action_results = private.lgpd_scrub_jsonb(x.action_results, s.patterns),
           error = private.lgpd_scrub(x.error, s.patterns)
     where x.tenant_id = s.tenant_id and (x.contact_id = s.contact_id or x.conversation_id = any(s.conversation_ids));
    update public.dispatch_queue d
       set actions = private.lgpd_scrub_jsonb(d.actions, s.patterns), preview = private.lgpd_scrub(d.preview, s.patterns),
           reject_reason = private.lgpd_scrub(d.reject_reason, s.patterns)
     where d.tenant_id = s.tenant_id and (d.contact_id = s.contact_id or d.conversation_id = any(s.conversation_ids));
    update public.automation_queue q set last_error = private.lgpd_scrub(q.last_error, s.patterns)
     where q.tenant_id = s.tenant_id and private.lgpd_mentions(q.last_error, s.patterns);
  end if;
  return v_doc;
end;
$$;

-- support: the person's tickets (title, description and notes scrubbed; status, SLA and
-- times stay), their attachments (rows go, files queued for deletion from the bucket
-- ticket-attachments).
create or replace function private.lgpd_places_support(s private.lgpd_subject, anonymise boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_doc jsonb := jsonb_build_object(
    'tickets', private.lgpd_rows('select * from public.tickets t
       where t.tenant_id = ($1).tenant_id and t.contact_id = ($1).contact_id order by t.created_at', s),
    'ticket_notes', private.lgpd_rows('select n.* from public.ticket_notes n join public.tickets t
         on t.tenant_id = n.tenant_id and t.id = n.ticket_id
       where t.tenant_id = ($1).tenant_id and t.contact_id = ($1).contact_id order by n.created_at', s),
    'ticket_attachments', private.lgpd_rows('select a.* from public.ticket_attachments a join public.tickets t
         on t.tenant_id = a.tenant_id and t.id = a.ticket_id
       where t.tenant_id = ($1).tenant_id and t.contact_id = ($1).contact_id order by a.created_at', s));
begin
  if anonymise then
    with gone as (
      delete from public.ticket_attachments a using public.tickets t
       where t.tenant_id = s.tenant_id and t.contact_id = s.contact_id and a.tenant_id = t.tenant_id and a.ticket_id = t.id
      returning a.tenant_id, a.storage_path
    )
    insert into public.storage_deletions (tenant_id, storage_key, reason)
    select g.tenant_id, 'ticket-attachments/' || g.storage_path, 'anonymisation' from gone g
    on conflict (storage_key) do nothing;
    update public.ticket_notes n set body = private.lgpd_scrub(n.body, s.patterns)
      from public.tickets t
     where t.tenant_id = s.tenant_id and t.contact_id = s.contact_id and n.tenant_id = t.tenant_id and n.ticket_id = t.id
       and private.lgpd_mentions(n.body, s.patterns);
    update public.tickets t
       set title = private.lgpd_scrub(t.title, s.patterns), description = private.lgpd_scrub(t.description, s.patterns)
     where t.tenant_id = s.tenant_id and t.contact_id = s.contact_id
       and private.lgpd_mentions(concat(t.title, t.description), s.patterns);
  end if;
  return v_doc;
end;
$$;

-- crm: the person's leads (found by contact, or by name, phone or e-mail for a lead that
-- has no contact yet: an import) lose what identifies them; deals, appointments, services
-- and certificates keep their values, stages and dates, their free text scrubbed.
create or replace function private.lgpd_places_crm(s private.lgpd_subject, anonymise boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_leads uuid[] := private.lgpd_lead_ids(s);
  v_deals uuid[] := private.lgpd_deal_ids(s, v_leads);
  v_leads_sql text := format('(select unnest(%L::uuid[]))', v_leads);
  v_doc jsonb := jsonb_build_object(
    'leads', private.lgpd_rows('select * from public.leads l where l.id in ' || v_leads_sql, s),
    'lead_stage_history', private.lgpd_rows('select * from public.lead_stage_history h
       where h.tenant_id = ($1).tenant_id and h.lead_id in ' || v_leads_sql || ' order by h.changed_at', s),
    'deals', private.lgpd_rows(format('select * from public.deals d where d.tenant_id = ($1).tenant_id
       and d.id = any(%L::uuid[])', v_deals), s),
    'deal_stage_history', private.lgpd_rows(format('select * from public.deal_stage_history h
       where h.tenant_id = ($1).tenant_id and h.deal_id = any(%L::uuid[]) order by h.entered_at', v_deals), s),
    'appointments', private.lgpd_rows('select * from public.appointments a where a.tenant_id = ($1).tenant_id
       and (a.contact_id = ($1).contact_id or a.lead_id in ' || v_leads_sql || ') order by a.starts_at', s),
    'services', private.lgpd_rows('select * from public.services v
       where v.tenant_id = ($1).tenant_id and v.contact_id = ($1).contact_id', s),
    'certificates', private.lgpd_rows('select * from public.certificates c
       where c.tenant_id = ($1).tenant_id and c.contact_id = ($1).contact_id', s));
begin
  if anonymise then
    update public.leads l
       set name = '[removido]', phone = null, email = null, company = null, position = null, notes = null,
           referral = null, custom_fields = '{}', external_id = null,
           interest = private.lgpd_scrub(l.interest, s.patterns), source_ref = private.lgpd_scrub(l.source_ref, s.patterns),
           lost_reason = private.lgpd_scrub(l.lost_reason, s.patterns)
     where l.tenant_id = s.tenant_id and l.id = any(v_leads);
    update public.deals d
       set title = private.lgpd_scrub(d.title, s.patterns), lost_reason = private.lgpd_scrub(d.lost_reason, s.patterns),
           custom_fields = private.lgpd_scrub_jsonb(d.custom_fields, s.patterns)
     where d.tenant_id = s.tenant_id and d.id = any(v_deals);
    update public.appointments a
       set notes = null, meeting_link = null, reminder_error = private.lgpd_scrub(a.reminder_error, s.patterns)
     where a.tenant_id = s.tenant_id and (a.contact_id = s.contact_id or a.lead_id = any(v_leads));
    update public.services v set name = private.lgpd_scrub(v.name, s.patterns)
     where v.tenant_id = s.tenant_id and v.contact_id = s.contact_id and private.lgpd_mentions(v.name, s.patterns);
    update public.certificates c set alert_error = private.lgpd_scrub(c.alert_error, s.patterns)
     where c.tenant_id = s.tenant_id and c.contact_id = s.contact_id and private.lgpd_mentions(c.alert_error, s.patterns);
  end if;
  return v_doc;
end;
$$;

-- commerce: purchases keep code, product, status, value and dates (billing and LTV stay
-- true) and lose the payment instruments and Hotmart subscriber codes; the raw postbacks
-- about the person lose the buyer / user / subscriber objects and their raw text; identity
-- conflicts are scrubbed.
create or replace function private.lgpd_places_commerce(s private.lgpd_subject, anonymise boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_events_sql text := 'select * from public.hotmart_events e where e.tenant_id = ($1).tenant_id
    and (e.contact_id = ($1).contact_id or e.transaction_id in (select t.id from public.transactions t
           where t.tenant_id = ($1).tenant_id and t.contact_id = ($1).contact_id)
         or private.lgpd_mentions(concat(e.payload::text, e.raw_body, e.reason), ($1).patterns))';
  v_events uuid[] := array(select (r ->> 'id')::uuid from jsonb_array_elements(private.lgpd_rows(v_events_sql, s)) r);
  v_doc jsonb := jsonb_build_object(
    'transactions', private.lgpd_rows('select * from public.transactions t
       where t.tenant_id = ($1).tenant_id and t.contact_id = ($1).contact_id order by t.created_at', s),
    'enrollments', private.lgpd_rows('select * from public.enrollments n
       where n.tenant_id = ($1).tenant_id and n.contact_id = ($1).contact_id', s),
    'lesson_progress', private.lgpd_rows('select p.* from public.lesson_progress p join public.enrollments n
         on n.tenant_id = p.tenant_id and n.id = p.enrollment_id
       where n.tenant_id = ($1).tenant_id and n.contact_id = ($1).contact_id', s),
    'hotmart_events', private.lgpd_rows(v_events_sql || ' order by e.received_at', s),
    'contact_conflicts', private.lgpd_rows('select * from public.contact_conflicts c where c.tenant_id = ($1).tenant_id
       and (($1).contact_id in (c.contact_id, c.other_contact_id)
            or private.lgpd_mentions(concat(c.reason, c.identity::text, c.note), ($1).patterns))', s));
begin
  if anonymise then
    update public.transactions t
       set billet_url = null, billet_barcode = null, pix_code = null, pix_qrcode_url = null, subscriber_code = null,
           source = private.lgpd_scrub(t.source, s.patterns)
     where t.tenant_id = s.tenant_id and t.contact_id = s.contact_id;
    update public.enrollments n set subscriber_code = null
     where n.tenant_id = s.tenant_id and n.contact_id = s.contact_id;
    update public.hotmart_events e
       set payload = private.lgpd_scrub_jsonb(e.payload #- '{data,buyer}' #- '{data,user}' #- '{data,subscriber}'
                                               #- '{data,subscription,user}', s.patterns),
           raw_body = null, reason = private.lgpd_scrub(e.reason, s.patterns)
     where e.tenant_id = s.tenant_id and e.id = any(v_events);
    update public.contact_conflicts c
       set identity = private.lgpd_scrub_jsonb(c.identity, s.patterns), reason = private.lgpd_scrub(c.reason, s.patterns),
           note = private.lgpd_scrub(c.note, s.patterns)
     where c.tenant_id = s.tenant_id
       and (s.contact_id in (c.contact_id, c.other_contact_id)
            or private.lgpd_mentions(concat(c.reason, c.identity::text, c.note), s.patterns));
  end if;
  return v_doc;
end;
$$;

-- intents: the classifier's cached answers for the person's messages go, because their key
-- hashes the message's text, and a short answer (a CPF, a phone number) is found by hashing
-- every candidate, as with plain phone hashes. The keys are recomputed against the tenant's
-- current intents: entries made under an older set are never read again and the daily purge
-- drops them within 30 days. Intents whose description or examples quote the person are
-- scrubbed. The intent each message got stays (a label, exported with the message). Before
-- whatsapp, which forgets the text the keys hash.
create or replace function private.lgpd_places_intents(s private.lgpd_subject, anonymise boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_set jsonb := private.intent_set(s.tenant_id);
  v_keys text[] := array(select private.intent_cache_key(private.flow_fold(m.content), v_set)
                            from public.messages m
                           where v_set is not null and m.tenant_id = s.tenant_id and m.id = any(s.message_ids)
                             and m.direction = 'inbound' and private.flow_fold(coalesce(m.content, '')) <> '');
  v_doc jsonb := jsonb_build_object(
    'intent_cache', private.lgpd_rows(format('select * from public.intent_cache c
       where c.tenant_id = ($1).tenant_id and c.key = any(%L::text[]) order by c.created_at', v_keys), s),
    'intents', private.lgpd_rows('select * from public.intents i where i.tenant_id = ($1).tenant_id
       and private.lgpd_mentions(concat_ws('' '', i.description, array_to_string(i.examples, '' '')), ($1).patterns)', s));
begin
  if anonymise then
    delete from public.intent_cache c where c.tenant_id = s.tenant_id and c.key = any(v_keys);
    update public.intents i
       set description = left(private.lgpd_scrub(i.description, s.patterns), 500),
           examples = array(select private.lgpd_scrub(x.e, s.patterns) from unnest(i.examples) with ordinality x(e, n)
                             order by x.n)
     where i.tenant_id = s.tenant_id
       and private.lgpd_mentions(concat_ws(' ', i.description, array_to_string(i.examples, ' ')), s.patterns);
  end if;
  return v_doc;
end;
$$;

-- contacts: the row itself (after the other modules, which read it through the subject).
create or replace function private.lgpd_places_contact(s private.lgpd_subject, anonymise boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_doc jsonb := jsonb_build_object('contacts', private.lgpd_rows(
    'select * from public.contacts c where c.tenant_id = ($1).tenant_id and c.id = ($1).contact_id', s));
begin
  if anonymise then
    update public.contacts c
       set wa_id = null, user_id = null, username = null, pending_wa_id = null, profile_name = null, name = null,
           email = null, phone = null, cpf = null, company = null, notes = null, attributes = '{}',
           first_referral = null, phone_hash = s.salted_hash, lgpd_state = 'anonymised', anonymised_at = now()
     where c.tenant_id = s.tenant_id and c.id = s.contact_id;
    update public.contact_consents h set evidence = '[anonimizado]'
     where h.tenant_id = s.tenant_id and h.contact_id = s.contact_id and h.evidence <> '[anonimizado]';
  end if;
  return v_doc;
end;
$$;

-- events: the outbox (and so the webhook payloads kept for retries) and what receivers
-- answered. After the other modules: their changes emit events too.
create or replace function private.lgpd_places_events(s private.lgpd_subject, anonymise boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_doc jsonb := jsonb_build_object(
    'events', private.lgpd_rows('select * from public.events e where e.tenant_id = ($1).tenant_id
       and (e.subject_id = ($1).contact_id or e.subject_id = any(($1).conversation_ids)
            or e.subject_id = any(($1).message_ids) or e.payload ->> ''contact_id'' = (($1).contact_id)::text
            or private.lgpd_mentions(e.payload::text, ($1).patterns)) order by e.created_at', s),
    'webhook_attempts', private.lgpd_rows('select * from public.webhook_attempts a where a.tenant_id = ($1).tenant_id
       and private.lgpd_mentions(concat(a.response_body, a.error), ($1).patterns)', s));
begin
  if anonymise then
    -- a message's own words go whether or not they name the person
    update public.events e
       set payload = private.lgpd_scrub_jsonb(e.payload - 'content' - 'text' - 'body' - 'profile_name' - 'name', s.patterns)
     where e.tenant_id = s.tenant_id
       and (e.subject_id = s.contact_id or e.subject_id = any(s.conversation_ids) or e.subject_id = any(s.message_ids)
            or e.payload ->> 'contact_id' = s.contact_id::text or private.lgpd_mentions(e.payload::text, s.patterns));
    update public.webhook_attempts a
       set response_body = private.lgpd_scrub(a.response_body, s.patterns), error = private.lgpd_scrub(a.error, s.patterns)
     where a.tenant_id = s.tenant_id and private.lgpd_mentions(concat(a.response_body, a.error), s.patterns);
  end if;
  return v_doc;
end;
$$;

-- audit_log: last of all, since audited changes made above log the old values. Rows about
-- the subject's own rows keep which columns changed, not their values.
create or replace function private.lgpd_places_audit(s private.lgpd_subject, anonymise boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_ids uuid[] := s.contact_id || s.conversation_ids || s.message_ids;
  v_doc jsonb := jsonb_build_object('audit_log', private.lgpd_rows('select * from public.audit_log a
     where a.tenant_id = ($1).tenant_id
       and (a.resource_id = any(($1).contact_id || ($1).conversation_ids || ($1).message_ids)
            or private.lgpd_mentions(concat(a.changes::text, a.user_agent), ($1).patterns))
     order by a.created_at', s));
begin
  if anonymise then
    update public.audit_log a
       set changes = case when a.resource_id = any(v_ids)
                          then jsonb_build_object('anonymised', true, 'columns',
                                 (select coalesce(jsonb_agg(k order by k), '[]') from jsonb_object_keys(a.changes) k))
                          else private.lgpd_scrub_jsonb(a.changes, s.patterns) end,
           user_agent = private.lgpd_scrub(a.user_agent, s.patterns)
     where a.tenant_id = s.tenant_id
       and (a.resource_id = any(v_ids) or private.lgpd_mentions(concat(a.changes::text, a.user_agent), s.patterns));
  end if;
  return v_doc;
end;
$$;

/**
 * ----
 * Section - Export and anonymisation (the one place that lists the modules)
 * ----
 */

create or replace function private.lgpd_subject(tenant_id uuid, contact_id uuid)
returns private.lgpd_subject
language sql
stable
set search_path = ''
as $$
  select row(c.tenant_id, c.id,
             array(select v.id from public.conversations v where v.tenant_id = c.tenant_id and v.contact_id = c.id),
             array(select m.id from public.messages m where m.tenant_id = c.tenant_id and m.contact_id = c.id),
             private.lgpd_patterns(c), c.phone_hash,
             coalesce(private.lgpd_salted_phone_hash(c.tenant_id, coalesce(c.wa_id, c.phone)), c.phone_hash)
            )::private.lgpd_subject
    from public.contacts c
   where c.tenant_id = lgpd_subject.tenant_id and c.id = lgpd_subject.contact_id
$$;

-- Walks every place (export) and removes the personal data when `anonymise`. Order: the
-- modules' own tables, then the contact row, then events and the audit log, which the
-- changes before them write to.
create or replace function private.lgpd_process(tenant_id uuid, contact_id uuid, anonymise boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  s private.lgpd_subject := private.lgpd_subject(lgpd_process.tenant_id, lgpd_process.contact_id);
  v_tables jsonb := '{}';
  v_leads uuid[] := private.lgpd_lead_ids(s);
  -- media of the messages, ticket attachments (bucket ticket-attachments), recordings of
  -- calls with them (their leads and deals)
  v_objects jsonb := (select coalesce(jsonb_agg(o.key order by o.n, o.at), '[]') from (
                        select 1 as n, m.created_at as at, m.media_storage_path as key from public.messages m
                         where m.tenant_id = s.tenant_id and m.id = any(s.message_ids) and m.media_storage_path is not null
                        union all
                        select 2, a.created_at, 'ticket-attachments/' || a.storage_path
                          from public.ticket_attachments a join public.tickets t on t.tenant_id = a.tenant_id and t.id = a.ticket_id
                         where t.tenant_id = s.tenant_id and t.contact_id = s.contact_id
                        union all
                        select 3, c.occurred_at, c.audio_storage_path from public.coaching_calls c
                         where c.tenant_id = s.tenant_id and c.audio_storage_path is not null
                           and (c.lead_id = any(v_leads) or c.deal_id = any(private.lgpd_deal_ids(s, v_leads)))) o);
begin
  if s.contact_id is null then
    raise exception 'contact not found' using errcode = 'P0002';
  end if;
  -- first the modules that find their rows through what the others remove: the text of the
  -- messages (intents' cache keys), the names of leads without a contact (coaching calls)
  v_tables := v_tables || private.lgpd_places_intents(s, anonymise);
  v_tables := v_tables || private.lgpd_places_coaching(s, anonymise);  -- 800_coaching
  v_tables := v_tables || private.lgpd_places_chat_search(s, anonymise);  -- 820_chat_search
  v_tables := v_tables || private.lgpd_places_whatsapp(s, anonymise);
  v_tables := v_tables || private.lgpd_places_ai(s, anonymise);
  v_tables := v_tables || private.lgpd_places_knowledge(s, anonymise);
  v_tables := v_tables || private.lgpd_places_tenancy(s, anonymise);
  v_tables := v_tables || private.lgpd_places_inbox(s, anonymise);
  v_tables := v_tables || private.lgpd_places_campaigns(s, anonymise);
  v_tables := v_tables || private.lgpd_places_flows(s, anonymise);
  v_tables := v_tables || private.lgpd_places_automation(s, anonymise);
  v_tables := v_tables || private.lgpd_places_support(s, anonymise);
  v_tables := v_tables || private.lgpd_places_crm(s, anonymise);
  v_tables := v_tables || private.lgpd_places_commerce(s, anonymise);
  -- a module added later: one line here, before the contact row, or above when it looks
  -- for the person through text the modules above remove
  v_tables := v_tables || private.lgpd_places_contact(s, anonymise);
  if anonymise then
    perform private.emit(s.tenant_id, 'contact.anonymised', 'contacts', s.contact_id,
                         jsonb_build_object('contact_id', s.contact_id));
  end if;
  v_tables := v_tables || private.lgpd_places_events(s, anonymise);
  v_tables := v_tables || private.lgpd_places_audit(s, anonymise);
  return jsonb_build_object(
    'contact_id', s.contact_id,
    'generated_at', now(),
    'tables', (select jsonb_object_agg(t.key, t.value) from jsonb_each(v_tables) t where t.value <> '[]'),
    'storage_objects', v_objects);
end;
$$;
comment on function private.lgpd_process(uuid, uuid, boolean) is 'THE list of places personal data about a contact lives (one private.lgpd_places_<module> each): returns them as a document, and anonymises them when asked.';

/**
 * ----
 * Section - Opt-out confirmation
 * ----
 */

-- A customer who opted out by message or quick reply is told so, once, in the conversation
-- they wrote in (tenants.settings.lgpd.opt_out_confirmation replaces the default text).
-- Named _250 so that it runs before the whatsapp module's _300_apply: the contact is still
-- opted in while the confirmation is queued, and the window runs from their message.
create or replace function private.tg_contact_consents_confirm_opt_out()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_conv public.conversations;
  v_text text;
begin
  select c.* into v_conv from public.conversations c join public.messages m
      on m.tenant_id = c.tenant_id and m.conversation_id = c.id
   where m.tenant_id = new.tenant_id and m.id = new.message_id;
  if v_conv.id is null then
    return null;
  end if;
  select coalesce(nullif(btrim(t.settings -> 'lgpd' ->> 'opt_out_confirmation'), ''),
                  'Pronto! Você não receberá mais mensagens nossas por aqui. Se mudar de ideia, é só responder VOLTAR A RECEBER.')
    into v_text from public.tenants t where t.id = new.tenant_id;
  v_conv.window_expires_at := greatest(v_conv.window_expires_at, new.occurred_at + interval '24 hours');
  begin
    perform private.queue_outbound(v_conv, jsonb_build_object('type', 'text', 'text', jsonb_build_object('body', v_text)),
                                   'system', null, new.message_id);
  exception when sqlstate '55000' or sqlstate '22023' then
    null;  -- a blocked contact or a disabled number gets no confirmation; the opt-out stands
  end;
  return null;
end;
$$;

drop trigger if exists _250_confirm_opt_out on public.contact_consents;
create trigger _250_confirm_opt_out after insert on public.contact_consents
  for each row when (new.kind = 'opt_out' and new.source in ('customer_message', 'quick_reply')
                     and new.message_id is not null)
  execute function private.tg_contact_consents_confirm_opt_out();

-- A row that holds a storage object was deleted, or points at another object now: the old
-- object is queued for the purge job (a file nobody can reach is still personal data).
-- Not when the row goes with its tenant. tg_argv: the path column, and the bucket the path
-- leaves out ('' when it names its bucket).
create or replace function private.tg_queue_orphaned_object()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_path text := to_jsonb(old) ->> tg_argv[0];
begin
  if v_path is not null and (tg_op = 'DELETE' or v_path is distinct from to_jsonb(new) ->> tg_argv[0]) then
    insert into public.storage_deletions (tenant_id, storage_key, reason)
    select old.tenant_id, tg_argv[1] || v_path, 'deleted'
     where exists (select 1 from public.tenants t where t.id = old.tenant_id)
    on conflict (storage_key) do nothing;
  end if;
  return null;
end;
$$;

-- support's attachments (a deleted ticket takes its attachments with it)
drop trigger if exists _900_orphaned_object on public.ticket_attachments;
create trigger _900_orphaned_object after delete on public.ticket_attachments
  for each row execute function private.tg_queue_orphaned_object('storage_path', 'ticket-attachments/');

drop trigger if exists _100_set_updated_at on public.retention_policies;
create trigger _100_set_updated_at before update on public.retention_policies
  for each row execute function private.tg_set_updated_at();
drop trigger if exists _900_audit on public.retention_policies;
create trigger _900_audit after insert or update or delete on public.retention_policies
  for each row execute function private.tg_audit();

insert into public.event_types (type, module, description) values
  ('contact.anonymised', 'lgpd', 'A contact was anonymised (LGPD request or retention): only its id remains.')
on conflict (type) do update set module = excluded.module, description = excluded.description;

/**
 * ----
 * Section - Public functions (RPC): data subject requests (admins)
 * ----
 */

create or replace function private.lgpd_export_contact(contact_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_tenant uuid;
begin
  select c.tenant_id into v_tenant from public.contacts c where c.id = lgpd_export_contact.contact_id;
  if v_tenant is null or (private.request_role() = 'authenticated' and not private.is_member(v_tenant)) then
    raise exception 'contact not found' using errcode = 'P0002';
  end if;
  if private.request_role() = 'authenticated' then
    perform private.require_role(v_tenant, 'admin');
  end if;
  return private.lgpd_process(v_tenant, lgpd_export_contact.contact_id, false);
end;
$$;

create or replace function public.lgpd_export_contact(contact_id uuid)
returns jsonb
language sql
security invoker
set search_path = ''
as $$ select private.lgpd_export_contact(contact_id) $$;
revoke execute on function private.lgpd_export_contact(uuid) from public, anon;
grant execute on function private.lgpd_export_contact(uuid) to authenticated, service_role;
comment on function public.lgpd_export_contact(uuid) is 'Admins: everything Zapbase holds about a contact (LGPD access request) as one JSON document: {"tables": {"<table>": [rows]}, "storage_objects": [keys]}.';

-- Anonymises at once (LGPD gives 15 days; nothing is gained by waiting) and records who
-- asked in the audit log; returns what was removed, counted per table.
create or replace function private.lgpd_anonymise_contact(contact_id uuid, reason text)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_contact public.contacts;
  v_doc jsonb;
  v_counts jsonb;
begin
  select * into v_contact from public.contacts c where c.id = lgpd_anonymise_contact.contact_id for update;
  if v_contact.id is null or (private.request_role() = 'authenticated' and not private.is_member(v_contact.tenant_id)) then
    raise exception 'contact not found' using errcode = 'P0002';
  end if;
  if private.request_role() = 'authenticated' then
    perform private.require_role(v_contact.tenant_id, 'admin');
  end if;
  if length(btrim(coalesce(lgpd_anonymise_contact.reason, ''))) < 10 then
    raise exception 'say why (the data subject''s request: channel, date, protocol)' using errcode = '22023';
  end if;
  if v_contact.lgpd_state = 'anonymised' then
    raise exception 'this contact is already anonymised' using errcode = '55000';
  end if;
  v_doc := private.lgpd_process(v_contact.tenant_id, v_contact.id, true);
  select coalesce(jsonb_object_agg(t.key, jsonb_array_length(t.value)), '{}') into v_counts
    from jsonb_each(v_doc -> 'tables') t;
  insert into public.audit_log (tenant_id, actor_id, actor_role, action, resource_type, resource_id, changes)
  values (v_contact.tenant_id, auth.uid(), private.request_role(), 'anonymise', 'contacts', v_contact.id,
          jsonb_build_object('reason', private.lgpd_scrub(left(lgpd_anonymise_contact.reason, 2000),
                                                          private.lgpd_patterns(v_contact)),
                             'rows', v_counts));
  return jsonb_build_object('contact_id', v_contact.id, 'rows', v_counts,
                            'storage_objects', jsonb_array_length(v_doc -> 'storage_objects'));
end;
$$;

create or replace function public.lgpd_anonymise_contact(contact_id uuid, reason text)
returns jsonb
language sql
security invoker
set search_path = ''
as $$ select private.lgpd_anonymise_contact(contact_id, reason) $$;
revoke execute on function private.lgpd_anonymise_contact(uuid, text) from public, anon;
grant execute on function private.lgpd_anonymise_contact(uuid, text) to authenticated, service_role;
comment on function public.lgpd_anonymise_contact(uuid, text) is 'Admins: anonymise a contact now (LGPD deletion request): names, numbers, e-mail, CPF, addresses, message content, call transcripts and coaching quotes, media, AI memory, knowledge quotes, chat searches, raw events, event payloads and audit values go; counts, costs and times stay. reason: the request (channel, date, protocol).';

/**
 * ----
 * Section - Jobs
 * ----
 */

-- Seed 000 lgpd_data_cleanup (monthly): contacts waiting in deletion_requested are
-- anonymised; each tenant's retention policy forgets old messages and deletes old raw
-- events and AI usage rows.
create or replace function private.job_lgpd_data_cleanup(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_contact record;
  v_policy public.retention_policies;
  v_rows integer;
  v_total integer := 0;
begin
  for v_contact in select c.tenant_id, c.id from public.contacts c where c.lgpd_state = 'deletion_requested' loop
    perform private.lgpd_process(v_contact.tenant_id, v_contact.id, true);
    v_total := v_total + 1;
  end loop;
  for v_policy in select * from public.retention_policies loop
    if v_policy.messages_months is not null then
      v_total := v_total + private.lgpd_forget_messages(v_policy.tenant_id, array(
        select m.id from public.messages m
         where m.tenant_id = v_policy.tenant_id
           and m.created_at < as_of - make_interval(months => v_policy.messages_months)
           and m.payload is distinct from '{"anonymised": true}'), 'retention');
    end if;
    if v_policy.raw_events_months is not null then
      delete from public.inbound_events e
       where e.tenant_id = v_policy.tenant_id
         and e.received_at < as_of - make_interval(months => v_policy.raw_events_months);
      get diagnostics v_rows = row_count;
      v_total := v_total + v_rows;
    end if;
    if v_policy.usage_months is not null then
      delete from public.ai_usage u
       where u.tenant_id = v_policy.tenant_id and u.created_at < as_of - make_interval(months => v_policy.usage_months);
      get diagnostics v_rows = row_count;
      v_total := v_total + v_rows;
    end if;
  end loop;
  return v_total;
end;
$$;

-- Worker job lgpd_storage_purge, in one transaction of the worker: this hands out the keys
-- to delete (locked, so two workers never take the same), the worker deletes each object,
-- then private.lgpd_storage_purged removes the rows of the deleted ones and records the run.
create or replace function private.job_lgpd_storage_purge(batch_size integer default 500)
returns table (id uuid, storage_key text)
language sql
security definer
set search_path = ''
as $$
  select d.id, d.storage_key from public.storage_deletions d
   order by d.requested_at
   limit job_lgpd_storage_purge.batch_size
   for update skip locked
$$;
comment on function private.job_lgpd_storage_purge(integer) is 'Worker: storage objects to delete (locked until its transaction ends); report with private.lgpd_storage_purged.';

create or replace function private.lgpd_storage_purged(deleted uuid[], failed jsonb, started_at timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_rows integer;
begin
  delete from public.storage_deletions d where d.id = any(lgpd_storage_purged.deleted);
  get diagnostics v_rows = row_count;
  update public.storage_deletions d
     set attempts = d.attempts + 1, last_error = left(f.value, 2000)
    from jsonb_each_text(coalesce(lgpd_storage_purged.failed, '{}')) f
   where d.id = f.key::uuid;
  perform private.record_job_run('lgpd_storage_purge', lgpd_storage_purged.started_at, v_rows,
    jsonb_build_object('deleted', v_rows, 'failed', (select count(*) from jsonb_object_keys(coalesce(failed, '{}')))));
  return v_rows;
end;
$$;
comment on function private.lgpd_storage_purged(uuid[], jsonb, timestamptz) is 'Worker: the objects deleted (their rows go) and the failures ({"<id>": "error"}: kept, attempts + 1); records the run.';

insert into public.job_schedules (name, description, cron, function_name, runner) values
  ('lgpd_data_cleanup', 'Anonymises contacts waiting for deletion and applies each tenant''s retention policy (seed 000 lgpd_data_cleanup).',
   '0 4 1 * *', 'private.job_lgpd_data_cleanup', 'database'),
  ('lgpd_storage_purge', 'Deletes the media files that anonymisation and retention queued in storage_deletions.',
   '*/10 * * * *', 'private.job_lgpd_storage_purge', 'worker')
on conflict (name) do update set description = excluded.description, function_name = excluded.function_name,
  runner = excluded.runner;

/**
 * ----
 * Section - RLS policies
 * ----
 */
drop policy if exists "Storage deletions are visible to admins" on public.storage_deletions;
create policy "Storage deletions are visible to admins" on public.storage_deletions
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Retention policies are visible to admins" on public.retention_policies;
create policy "Retention policies are visible to admins" on public.retention_policies
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Retention policies are set by admins" on public.retention_policies;
create policy "Retention policies are set by admins" on public.retention_policies
  for insert to authenticated with check (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Retention policies are changed by admins" on public.retention_policies;
create policy "Retention policies are changed by admins" on public.retention_policies
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('admin')))
  with check (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Retention policies are removed by admins" on public.retention_policies;
create policy "Retention policies are removed by admins" on public.retention_policies
  for delete to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));

/**
 * ----
 * Section - Grants
 * ----
 */
grant select on public.storage_deletions to authenticated;
grant select, insert (tenant_id, messages_months, raw_events_months, usage_months),
  update (messages_months, raw_events_months, usage_months), delete on public.retention_policies to authenticated;
grant select, insert, update, delete on public.storage_deletions, public.retention_policies to service_role;
revoke execute on all functions in schema private from public, anon;
grant execute on function private.job_lgpd_storage_purge(integer), private.lgpd_storage_purged(uuid[], jsonb, timestamptz)
  to service_role;
revoke execute on function public.lgpd_export_contact(uuid), public.lgpd_anonymise_contact(uuid, text)
  from public, anon;
grant execute on function public.lgpd_export_contact(uuid), public.lgpd_anonymise_contact(uuid, text)
  to authenticated, service_role;
