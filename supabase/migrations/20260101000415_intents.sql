/**
 * Zapbase module 5b: intents (seed 000 messages.intent_detected, conversations.last_intent and
 * its TICKET_FLOW / LEAD_FLOW routing).
 *
 * A tenant names its intents (a name, what it means, examples). Each inbound customer message
 * with text (typed, or a tapped button / list row) is classified by the worker through the AI
 * gateway (the cheapest model of the tenant's chain, budgeted and logged with feature
 * 'intent'), only when the tenant has active intents:
 *
 *   intent_begin(message) ─► null: nothing to ask (no active intents, no text, already
 *        │                         classified, or the cached answer applied)
 *        ▼ {key, intents, model}
 *   the model answers {"intent": name | "none", "confidence": 0-1} (the gateway's structured
 *   output, validated against a schema of the active intents)
 *        ▼
 *   intent_record(message, key, intent, confidence) ─► cache, message, conversation, event
 *
 * The same folded text (private.flow_fold: case, accents, punctuation) against the same set
 * of active intents is answered once per 30 days (intent_cache). Below the tenant's threshold
 * (tenants.settings.intent_threshold, default 0.6) the message gets no intent. A kept intent
 * sets messages.intent and conversations.last_intent and emits message.intent_detected, in
 * time for the flow triggers of kind intent (flows module) to start a flow on it.
 */

/**
 * ----
 * Section - Tables
 * ----
 */

-- Intents: what a customer may want, as the classifier is told.
create table if not exists public.intents (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  name text not null check (name ~ '^[a-z][a-z0-9_]{0,59}$'),
  description text not null check (length(description) between 1 and 500),
  examples text[] not null default '{}'
    check (cardinality(examples) <= 20 and length(array_to_string(examples, '')) <= 4000),
  active boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, name)
);
alter table public.intents enable row level security;
comment on table public.intents is 'Intents of a tenant''s customers (seed 000 intent_detected): the classifier picks one per inbound message; flow triggers of kind intent start flows on them.';
comment on column public.intents.name is 'Identifier the model answers with and triggers name: lower case letters, digits and _ (e.g. rastrear_pedido).';
comment on column public.intents.description is 'What the intent means, as the model reads it.';
comment on column public.intents.examples is 'Up to 20 example customer messages (the model''s few-shot hints).';
comment on column public.intents.active is 'Only active intents are offered to the model; none active: no message is classified (no cost).';

-- Answers of the classifier, by folded text and intent set.
create table if not exists public.intent_cache (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  key text not null check (key ~ '^[0-9a-f]{64}$'),
  intent text check (intent ~ '^[a-z][a-z0-9_]{0,59}$'),
  confidence numeric(4,3) not null check (confidence between 0 and 1),
  model text check (length(model) <= 120),
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, key)
);
alter table public.intent_cache enable row level security;
create index if not exists intent_cache_created_idx on public.intent_cache (created_at);
comment on table public.intent_cache is 'The classifier''s answers (no message text: a hash of it): the same folded text against the same active intents is not asked twice within 30 days. Worker only.';
comment on column public.intent_cache.key is 'sha256 of the folded message text and the active intents (names, descriptions, examples): editing an intent asks again.';
comment on column public.intent_cache.intent is 'The model''s intent, whatever its confidence; null: none fits.';

alter table public.messages add column if not exists intent_confidence numeric(4,3)
  check (intent_confidence between 0 and 1);
comment on column public.messages.intent is 'Inbound: the intent classified (seed 000 intent_detected), null below the tenant''s threshold; outbound: the intent an AI reply answered.';
comment on column public.messages.intent_confidence is 'Inbound: the classifier''s confidence in its best intent (set even below the threshold); null: not classified.';
comment on column public.conversations.last_intent is 'The intent of the latest classified customer message that had one (seed 000).';

/**
 * ----
 * Section - Private helpers
 * ----
 */

-- Store a classification on the message; a confidence at the tenant's threshold or above
-- keeps the intent (on the conversation too, with an event). Returns the intent kept.
create or replace function private.intent_apply(msg public.messages, intent text, confidence numeric)
returns text
language plpgsql
set search_path = ''
as $$
declare
  v_setting text := (select t.settings ->> 'intent_threshold' from public.tenants t where t.id = msg.tenant_id);
  v_threshold numeric := case when v_setting ~ '^(0(\.[0-9]+)?|1(\.0+)?)$' then v_setting::numeric else 0.6 end;
  v_intent text := case when intent_apply.confidence >= v_threshold then intent_apply.intent end;
begin
  update public.messages m set intent = v_intent, intent_confidence = intent_apply.confidence
   where m.tenant_id = msg.tenant_id and m.id = msg.id;
  if v_intent is not null then
    update public.conversations c set last_intent = v_intent
     where c.tenant_id = msg.tenant_id and c.id = msg.conversation_id;
    perform private.emit(msg.tenant_id, 'message.intent_detected', 'messages', msg.id,
      jsonb_build_object('intent', v_intent, 'confidence', intent_apply.confidence,
                         'conversation_id', msg.conversation_id, 'contact_id', msg.contact_id));
  end if;
  return v_intent;
end;
$$;
comment on function private.intent_apply(public.messages, text, numeric) is 'Sets a message''s intent and confidence; at or above tenants.settings.intent_threshold (default 0.6) also the conversation''s last_intent and a message.intent_detected event.';

-- The active intents of a tenant as the classifier is told them (null: none active), and the
-- cache key of a folded text against them: what intent_begin asks and caches under, and what
-- anonymisation recomputes to forget a person's classifications.
create or replace function private.intent_set(tenant_id uuid)
returns jsonb
language sql
stable
set search_path = ''
as $$
  select jsonb_agg(jsonb_build_object('name', i.name, 'description', i.description, 'examples', to_jsonb(i.examples))
                   order by i.name)
    from public.intents i where i.tenant_id = intent_set.tenant_id and i.active
$$;
comment on function private.intent_set(uuid) is 'The tenant''s active intents [{name, description, examples}] by name, as the classifier reads them; null when none is active.';

create or replace function private.intent_cache_key(folded text, intents jsonb)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$ select encode(sha256(convert_to(intent_cache_key.folded || chr(10) || intent_cache_key.intents::text, 'UTF8')), 'hex') $$;
comment on function private.intent_cache_key(text, jsonb) is 'intent_cache.key: sha256 of a folded message text and the active intents (private.intent_set).';

/**
 * ----
 * Section - Triggers
 * ----
 */
drop trigger if exists _100_set_updated_at on public.intents;
create trigger _100_set_updated_at before update on public.intents
  for each row execute function private.tg_set_updated_at();
drop trigger if exists _900_audit on public.intents;
create trigger _900_audit after insert or update or delete on public.intents
  for each row execute function private.tg_audit();

insert into public.event_types (type, module, description) values
  ('message.intent_detected', 'automation', 'A customer message was classified with one of the tenant''s intents at or above its threshold (intent, confidence).')
on conflict (type) do nothing;

/**
 * ----
 * Section - Jobs
 * ----
 */

-- Cached answers older than 30 days are no longer read: delete them.
create or replace function private.job_intent_cache_purge(as_of timestamptz)
returns integer
language sql
security definer
set search_path = ''
as $$
  with gone as (
    delete from public.intent_cache c where c.created_at < job_intent_cache_purge.as_of - interval '30 days'
    returning 1)
  select count(*)::integer from gone
$$;

insert into public.job_schedules (name, description, cron, function_name) values
  ('intent_cache_purge', 'Deletes intent classifications cached more than 30 days ago.', '40 3 * * *',
   'private.job_intent_cache_purge')
on conflict (name) do update set description = excluded.description, function_name = excluded.function_name,
  runner = excluded.runner;

/**
 * ----
 * Section - RLS policies
 * ----
 */
select private.members_read_managers_write('intents');
-- intent_cache: no policy, the worker (service role) only.

/**
 * ----
 * Section - Worker functions
 * ----
 */

-- Worker: what to ask the model about a claimed inbound message, or null when nothing is to
-- be asked (no active intents, no text, classified before, or a cached answer, applied here).
create or replace function public.intent_begin(message_id uuid)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_msg public.messages;
  v_folded text;
  v_intents jsonb;
  v_key text;
  v_hit public.intent_cache;
begin
  select * into v_msg from public.messages m
   where m.id = intent_begin.message_id and m.direction = 'inbound' and m.sender_type = 'contact'
     and m.type in ('text', 'interactive', 'button');
  v_folded := private.flow_fold(coalesce(v_msg.content, ''));
  if v_msg.id is null or v_folded = '' or v_msg.intent_confidence is not null then
    return null;
  end if;
  v_intents := private.intent_set(v_msg.tenant_id);
  if v_intents is null then
    return null;
  end if;
  v_key := private.intent_cache_key(v_folded, v_intents);
  select * into v_hit from public.intent_cache c
   where c.tenant_id = v_msg.tenant_id and c.key = v_key and c.created_at > now() - interval '30 days';
  if v_hit.id is not null then
    perform private.intent_apply(v_msg, v_hit.intent, v_hit.confidence);
    return null;
  end if;
  return jsonb_build_object('key', v_key, 'intents', v_intents,
    -- the cheapest priced model of the tenant's chain (the chain falls back from it)
    'model', (select m.model from private.effective_policy(v_msg.tenant_id, null) p
                cross join lateral unnest(p.chain) g(gateway_id)
                cross join lateral (  -- as ai_policy resolves it: the tenant's own model first
                  select * from public.ai_models r
                   where r.gateway_id = g.gateway_id and (r.tenant_id is null or r.tenant_id = v_msg.tenant_id)
                   order by r.tenant_id nulls last limit 1) m
               where m.is_active and m.api_type = 'chat' and m.provider <> 'local'
               order by m.input_usd_per_mtok + m.output_usd_per_mtok, m.gateway_id limit 1));
end;
$$;
comment on function public.intent_begin(uuid) is 'Worker: {key, intents [{name, description, examples}], model} to classify an inbound customer message, or null (no active intents, no text, classified before, or a cached answer, which it applies).';

-- Worker: the model's validated answer for a message (intent null: none fits): cached under
-- `cache_key`, then applied (threshold, conversation, event). Returns the intent kept.
create or replace function public.intent_record(message_id uuid, cache_key text, intent text, confidence numeric,
                                                model text default null)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_msg public.messages;
begin
  select * into v_msg from public.messages m where m.id = intent_record.message_id and m.direction = 'inbound';
  if v_msg.id is null then
    raise exception 'message not found' using errcode = 'P0002';
  end if;
  if intent_record.intent is not null and not exists (
       select 1 from public.intents i where i.tenant_id = v_msg.tenant_id and i.name = intent_record.intent
          and i.active) then
    raise exception '"%" is not an active intent of this tenant', intent_record.intent using errcode = '22023';
  end if;
  insert into public.intent_cache (tenant_id, key, intent, confidence, model)
  values (v_msg.tenant_id, intent_record.cache_key, intent_record.intent, intent_record.confidence, intent_record.model)
  on conflict on constraint intent_cache_tenant_id_key_key do update
    set intent = excluded.intent, confidence = excluded.confidence, model = excluded.model, created_at = now();
  return private.intent_apply(v_msg, intent_record.intent, intent_record.confidence);
end;
$$;
comment on function public.intent_record(uuid, text, text, numeric, text) is 'Worker: store the classifier''s answer for a message (cache, message, and at or above the threshold the conversation''s last_intent and a message.intent_detected event); returns the intent kept.';

/**
 * ----
 * Section - Grants
 * ----
 */
grant select, insert (tenant_id, name, description, examples, active), update (name, description, examples, active),
  delete on public.intents to authenticated;
grant select, insert, update, delete on public.intents, public.intent_cache to service_role;
revoke execute on function private.intent_apply(public.messages, text, numeric),
  private.intent_set(uuid), private.intent_cache_key(text, jsonb),
  private.job_intent_cache_purge(timestamptz) from public, anon, authenticated;
revoke execute on function public.intent_begin(uuid), public.intent_record(uuid, text, text, numeric, text)
  from public, anon, authenticated;
grant execute on function public.intent_begin(uuid), public.intent_record(uuid, text, text, numeric, text)
  to service_role;
