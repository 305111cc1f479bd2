/**
 * Zapbase module 5: automation.
 * For now the bots the reply pipeline needs (seed 001 chatbots, 002 bot_configurations,
 * 004 bots merged). Flows, automation rules, the dispatch queue, campaigns and outbound
 * webhooks of this module come later in this same file.
 *
 * Members read bots (agents see what the bot told a customer and why); managers write them.
 */

/**
 * ----
 * Section - Tables
 * ----
 */

-- Bots: who answers a conversation in bot mode, and how.
create table if not exists public.bots (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  name text not null check (length(name) between 1 and 80),
  description text check (length(description) <= 500),
  type text not null default 'support' check (type in ('support', 'sdr', 'closer', 'follow_up', 'cs')),
  -- whatsapp_numbers ids (arrays cannot carry FKs: checked by tg_bots_check). Empty: every
  -- number of the tenant.
  whatsapp_number_ids uuid[] not null default '{}',
  system_prompt text not null default '' check (length(system_prompt) <= 20000),
  formatter_prompt text check (length(formatter_prompt) <= 5000),
  model_policy_id uuid,
  temperature numeric(3,2) not null default 0.3 check (temperature between 0 and 2),
  max_tokens integer not null default 600 check (max_tokens between 1 and 32000),
  knowledge_enabled boolean not null default false,
  tts_mode text not null default 'never' check (tts_mode in ('never', 'always', 'on_voice')),
  tts_model text,
  tts_voice text check (length(tts_voice) <= 80),
  handoff_keywords text[] not null default '{}',
  welcome_message text check (length(welcome_message) <= 4096),
  fallback_message text not null default 'Desculpe, não entendi. Pode reformular?'
    check (length(fallback_message) <= 4096),
  away_message text default 'Estamos fora do horário de atendimento. Responderemos assim que possível.'
    check (length(away_message) <= 4096),
  business_hours jsonb not null default '{}'::jsonb,
  max_replies_per_contact_per_day integer check (max_replies_per_contact_per_day > 0),
  max_replies_per_tenant_per_day integer check (max_replies_per_tenant_per_day > 0),
  memory_turns integer not null default 10 check (memory_turns between 0 and 100),
  is_active boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, name),
  foreign key (tenant_id, model_policy_id) references public.gateway_policies (tenant_id, id)
    on delete set null (model_policy_id)
);
alter table public.bots enable row level security;
create index if not exists bots_tenant_active_idx on public.bots (tenant_id, is_active);
create index if not exists bots_tenant_policy_idx on public.bots (tenant_id, model_policy_id)
  where model_policy_id is not null;
comment on table public.bots is 'AI bots of a tenant: prompts, model policy, RAG and TTS switches, handoff keywords, texts, business hours, daily caps.';
comment on column public.bots.type is 'support, sdr (prospecting), closer, follow_up or cs (customer success).';
comment on column public.bots.system_prompt is 'Instructions of the answering model (pt-BR).';
comment on column public.bots.formatter_prompt is 'Optional second pass that shapes the answer for WhatsApp (length, tone, lists).';
comment on column public.bots.model_policy_id is 'One of the tenant''s gateway_policies; null: the tenant default, else the platform default.';
comment on column public.bots.max_tokens is 'Output token cap per reply; also the output estimate reserved against the budget.';
comment on column public.bots.tts_mode is 'When replies are also sent as voice notes: never, always, or on_voice (when the customer sent one).';
comment on column public.bots.tts_model is 'ai_models.gateway_id of the TTS model (e.g. openai/tts-1); null: the platform default.';
comment on column public.bots.handoff_keywords is 'Words that hand the conversation to a human (matched case- and accent-insensitively by the worker).';
comment on column public.bots.business_hours is 'In the tenant time zone: {"mon": [["09:00","18:00"]], ..., "holidays": ["2026-12-25"]}; {} = always open.';
comment on column public.bots.max_replies_per_contact_per_day is 'Daily cap of bot replies to one contact; null: none.';
comment on column public.bots.max_replies_per_tenant_per_day is 'Daily cap of bot replies across the tenant; null: none.';
comment on column public.bots.memory_turns is 'Conversation turns (user + bot) kept in the model context.';

-- Usage rows and reservations name the bot that spent (declared in the ai module, which
-- comes first).
alter table public.ai_usage drop constraint if exists ai_usage_bot_fk;
alter table public.ai_usage add constraint ai_usage_bot_fk
  foreign key (tenant_id, bot_id) references public.bots (tenant_id, id) on delete set null (bot_id);
create index if not exists ai_usage_tenant_bot_idx on public.ai_usage (tenant_id, bot_id) where bot_id is not null;
alter table public.budget_reservations drop constraint if exists budget_reservations_bot_fk;
alter table public.budget_reservations add constraint budget_reservations_bot_fk
  foreign key (tenant_id, bot_id) references public.bots (tenant_id, id) on delete set null (bot_id);
create index if not exists budget_reservations_tenant_bot_idx on public.budget_reservations (tenant_id, bot_id)
  where bot_id is not null;

-- Knowledge scoped to a bot (declared in the knowledge module, which comes first) goes with
-- the bot: left behind with a null bot_id it would answer for every bot of the tenant.
alter table public.knowledge_sources drop constraint if exists knowledge_sources_bot_fk;
alter table public.knowledge_sources add constraint knowledge_sources_bot_fk
  foreign key (tenant_id, bot_id) references public.bots (tenant_id, id) on delete cascade;
alter table public.document_chunks drop constraint if exists document_chunks_bot_fk;
alter table public.document_chunks add constraint document_chunks_bot_fk
  foreign key (tenant_id, bot_id) references public.bots (tenant_id, id) on delete cascade;
create index if not exists document_chunks_tenant_bot_idx on public.document_chunks (tenant_id, bot_id)
  where bot_id is not null;

-- The bot answering a conversation (declared in the whatsapp module, which comes first).
alter table public.conversations drop constraint if exists conversations_bot_fk;
alter table public.conversations add constraint conversations_bot_fk
  foreign key (tenant_id, bot_id) references public.bots (tenant_id, id) on delete set null (bot_id);

/**
 * ----
 * Section - Trigger functions
 * ----
 */

-- Checks what a bot refers to: only managers of the tenant write (a clear error before
-- RLS's generic one), the plan's max_bots, a TTS model that exists and synthesises speech.
create or replace function private.tg_bots_check()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_max integer;
begin
  if private.request_role() = 'authenticated' and not private.has_role(new.tenant_id, 'manager') then
    raise exception 'bots are managed by tenant managers' using errcode = '42501';
  end if;
  if new.is_active and (tg_op = 'INSERT' or not old.is_active) then
    v_max := private.plan_limit_reached(new.tenant_id, 'max_bots',
      (select count(*) from public.bots b where b.tenant_id = new.tenant_id and b.is_active and b.id <> new.id));
    if v_max is not null then
      raise exception 'your plan allows % active bots: deactivate one or upgrade the plan', v_max
        using errcode = '23514';
    end if;
  end if;
  if exists (select 1 from unnest(new.whatsapp_number_ids) as n(id)
              where not exists (select 1 from public.whatsapp_numbers w
                                 where w.tenant_id = new.tenant_id and w.id = n.id)) then
    raise exception 'whatsapp_number_ids must name numbers of this tenant' using errcode = '23503';
  end if;
  if new.tts_model is not null and not exists (
    select 1 from public.ai_models m where m.gateway_id = new.tts_model and m.api_type = 'tts'
  ) then
    raise exception 'unknown TTS model "%"', new.tts_model using errcode = '23503';
  end if;
  return new;
end;
$$;

-- A new conversation is answered by the tenant's active bot for its number (one scoped to
-- the number before one for every number); without a bot it goes straight to the human
-- queue, so no customer waits for an answer that never comes.
create or replace function private.tg_conversations_pick_bot()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.mode <> 'bot' or new.bot_id is not null then
    return new;
  end if;
  select b.id into new.bot_id from public.bots b
   where b.tenant_id = new.tenant_id and b.is_active
     and (b.whatsapp_number_ids = '{}' or new.whatsapp_number_id = any(b.whatsapp_number_ids))
   order by b.whatsapp_number_ids = '{}', b.created_at
   limit 1;
  if new.bot_id is null then
    new.mode := 'human';
    new.status := 'pending';
    new.queued_at := now();
  end if;
  return new;
end;
$$;

/**
 * ----
 * Section - Triggers
 * ----
 */
drop trigger if exists _100_set_updated_at on public.bots;
create trigger _100_set_updated_at before update on public.bots
  for each row execute function private.tg_set_updated_at();
drop trigger if exists _200_check on public.bots;
create trigger _200_check before insert or update on public.bots
  for each row execute function private.tg_bots_check();
drop trigger if exists _200_pick_bot on public.conversations;
create trigger _200_pick_bot before insert on public.conversations
  for each row execute function private.tg_conversations_pick_bot();
drop trigger if exists _900_audit on public.bots;
create trigger _900_audit after insert or update or delete on public.bots
  for each row execute function private.tg_audit();

/**
 * ----
 * Section - RLS policies
 * ----
 */
drop policy if exists "Bots are visible to members" on public.bots;
create policy "Bots are visible to members" on public.bots
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Bots are created by managers" on public.bots;
create policy "Bots are created by managers" on public.bots
  for insert to authenticated with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Bots are updated by managers" on public.bots;
create policy "Bots are updated by managers" on public.bots
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')))
  with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Bots are deleted by managers" on public.bots;
create policy "Bots are deleted by managers" on public.bots
  for delete to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('manager')));

/**
 * ----
 * Section - Grants
 * ----
 */
grant select, insert (tenant_id, name, description, type, whatsapp_number_ids, system_prompt, formatter_prompt,
    model_policy_id, temperature, max_tokens, knowledge_enabled, tts_mode, tts_model, tts_voice, handoff_keywords,
    welcome_message, fallback_message, away_message, business_hours, max_replies_per_contact_per_day,
    max_replies_per_tenant_per_day, memory_turns, is_active),
  update (name, description, type, whatsapp_number_ids, system_prompt, formatter_prompt, model_policy_id,
    temperature, max_tokens, knowledge_enabled, tts_mode, tts_model, tts_voice, handoff_keywords, welcome_message,
    fallback_message, away_message, business_hours, max_replies_per_contact_per_day,
    max_replies_per_tenant_per_day, memory_turns, is_active),
  delete on public.bots to authenticated;
grant select, insert, update, delete on public.bots to service_role;
revoke execute on all functions in schema private from public, anon;
