/**
 * Zapbase module 3c: inbox.
 * What agents do with conversations from a frontend (seed 001): send a message (the 24 h
 * window, approved templates, reachability), start a conversation, hand one to a team, mark
 * it read, record a customer's documented consent request; quick replies and agent
 * greetings. Each RPC is a security invoker function in public over a security definer one
 * in private that checks the caller's tenant and role.
 *
 * Who may do what:
 *   every member  reads quick replies and greetings
 *   agent         sends, starts, hands off and marks read conversations they may work (when
 *                 the tenant sets restrict_agents_to_assigned: assigned to them or one of
 *                 their teams); writes their own greeting
 *   manager       quick replies, any agent greeting, the customer's documented opt-in /
 *                 opt-out / consent requests (record_contact_consent)
 *   service role  handoff (the bot's), everything else
 */

/**
 * ----
 * Section - Tables
 * ----
 */

-- Quick replies (seed 001): canned answers agents insert with /shortcut.
create table if not exists public.quick_replies (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  shortcut text not null check (shortcut ~ '^/[a-z0-9_-]{1,40}$'),
  title text not null check (length(title) between 1 and 120),
  content text not null check (length(content) between 1 and 4096),
  media_url text check (media_url ~ '^https?://'),
  media_type text check (media_type in ('image', 'video', 'audio', 'document')),
  team_id uuid,
  usage_count integer not null default 0,
  created_by uuid references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, shortcut),
  foreign key (tenant_id, team_id) references public.teams (tenant_id, id) on delete cascade
);
alter table public.quick_replies enable row level security;
create index if not exists quick_replies_team_idx on public.quick_replies (tenant_id, team_id);
create index if not exists quick_replies_created_by_idx on public.quick_replies (created_by);
comment on table public.quick_replies is 'Canned answers (/shortcut); team_id null: every team.';

-- Agent greetings (seed 001): sent when an agent takes a conversation.
create table if not exists public.agent_greetings (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  member_id uuid not null,
  message_template text not null check (length(message_template) between 1 and 1024),
  is_active boolean not null default true,
  auto_send boolean not null default true,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, member_id),
  foreign key (tenant_id, member_id) references public.members (tenant_id, id) on delete cascade
);
alter table public.agent_greetings enable row level security;
comment on table public.agent_greetings is 'An agent''s greeting, with {{agent_name}}, {{contact_name}}, {{team}} placeholders, sent on takeover when auto_send.';

/**
 * ----
 * Section - Agent RPCs (frontends; handoff also the worker)
 * ----
 */

-- Frontends: an agent sends a message into a conversation of their tenant. `message` is
-- the Graph API body without recipient: {"type": "text", "text": {"body": "Olá!"}},
-- {"type": "template", "template": {"name": ..., "language": {"code": "pt_BR"}, "components": [...]}},
-- {"type": "interactive", ...}, {"type": "image", "image": {"id" | "link", "caption"}}...
create or replace function private.send_message(
  conversation_id uuid, message jsonb, reply_to_message_id uuid default null
) returns public.messages
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_conv public.conversations;
  v_member public.members;
begin
  select * into v_conv from public.conversations c where c.id = send_message.conversation_id;
  if v_conv.id is null or not private.is_member(v_conv.tenant_id) then
    raise exception 'conversation not found' using errcode = 'P0002';
  end if;
  v_member := private.require_role(v_conv.tenant_id, 'agent');
  if not private.can_work_conversation(v_conv.tenant_id, v_conv.assignee_id, v_conv.team_id) then
    raise exception 'this conversation is assigned to someone else: ask a manager to reassign it'
      using errcode = '42501';
  end if;
  if v_conv.status in ('resolved', 'closed', 'expired') then
    raise exception 'this conversation is %: start a new one with start_conversation', v_conv.status
      using errcode = '55000';
  end if;
  return private.queue_outbound(v_conv, send_message.message, 'agent', v_member.id,
                                send_message.reply_to_message_id);
end;
$$;

-- What PostgREST exposes (security invoker); private.send_message does the work as its owner.
create or replace function public.send_message(
  conversation_id uuid, message jsonb, reply_to_message_id uuid default null
)
returns public.messages
language sql
security invoker
set search_path = ''
as $$ select * from private.send_message(conversation_id, message, reply_to_message_id) $$;
revoke execute on function private.send_message(uuid, jsonb, uuid) from public, anon;
grant execute on function private.send_message(uuid, jsonb, uuid) to authenticated, service_role;
comment on function public.send_message(uuid, jsonb, uuid) is 'Agents: queue a text / template / interactive / media message in a conversation; refused outside the 24 h window unless it is an approved template, and for blocked or opted-out contacts.';

-- Frontends: the contact's live conversation on a number (the tenant's default number when
-- not given), opened in human mode and assigned to the caller when there is none: how an
-- agent reaches out first (with a template, since no window is open).
create or replace function private.start_conversation(contact_id uuid, whatsapp_number_id uuid default null)
returns public.conversations
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_contact public.contacts;
  v_member public.members;
  v_number uuid;
  v_conv public.conversations;
begin
  select * into v_contact from public.contacts c where c.id = start_conversation.contact_id;
  if v_contact.id is null or not private.is_member(v_contact.tenant_id) then
    raise exception 'contact not found' using errcode = 'P0002';
  end if;
  v_member := private.require_role(v_contact.tenant_id, 'agent');
  select n.id into v_number from public.whatsapp_numbers n
   where n.tenant_id = v_contact.tenant_id and n.status = 'active'
     and (start_conversation.whatsapp_number_id is null or n.id = start_conversation.whatsapp_number_id)
   order by n.is_default desc, n.created_at limit 1;
  if v_number is null then
    raise exception 'no active WhatsApp number to start the conversation from' using errcode = 'P0002';
  end if;
  select * into v_conv from public.conversations c
   where c.tenant_id = v_contact.tenant_id and c.contact_id = v_contact.id and c.whatsapp_number_id = v_number
     and c.status in ('open', 'waiting', 'pending');
  if v_conv.id is not null then
    return v_conv;
  end if;
  insert into public.conversations (tenant_id, contact_id, whatsapp_number_id, mode, status, assignee_id, assigned_at)
  values (v_contact.tenant_id, v_contact.id, v_number, 'human', 'waiting', v_member.id, now())
  returning * into v_conv;
  update public.contacts c set total_conversations = c.total_conversations + 1 where c.id = v_contact.id;
  return v_conv;
end;
$$;

-- What PostgREST exposes (security invoker); private.start_conversation does the work as its owner.
create or replace function public.start_conversation(contact_id uuid, whatsapp_number_id uuid default null)
returns public.conversations
language sql
security invoker
set search_path = ''
as $$ select * from private.start_conversation(contact_id, whatsapp_number_id) $$;
revoke execute on function private.start_conversation(uuid, uuid) from public, anon;
grant execute on function private.start_conversation(uuid, uuid) to authenticated, service_role;
comment on function public.start_conversation(uuid, uuid) is 'Agents: the contact''s live conversation, or a new one in human mode assigned to the caller.';

-- Worker (bot handoff) and agents: hand a conversation to humans, queued for a team.
create or replace function private.handoff_conversation(conversation_id uuid, reason text default null,
                                                       team_id uuid default null)
returns public.conversations
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_conv public.conversations;
  v_team public.teams;
begin
  select * into v_conv from public.conversations c where c.id = handoff_conversation.conversation_id for update;
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
  if handoff_conversation.team_id is not null then
    -- the conversation's own tenant only; a paused team takes no new queue
    select * into v_team from public.teams t
     where t.tenant_id = v_conv.tenant_id and t.id = handoff_conversation.team_id;
    if v_team.id is null then
      raise exception 'team not found' using errcode = 'P0002';
    end if;
    if not v_team.is_active then
      raise exception 'team "%" is inactive: hand the conversation to an active team', v_team.name
        using errcode = '55000';
    end if;
  end if;
  update public.conversations c
     set mode = 'human', handoff_at = now(), handoff_reason = left(handoff_conversation.reason, 500),
         team_id = coalesce(v_team.id, c.team_id)
   where c.id = v_conv.id
  returning * into v_conv;
  if v_conv.assignee_id is null then  -- into the team's queue (or the tenant's support team's); assigned at commit
    v_conv := private.enqueue(v_conv, v_conv.team_id, 'handoff');
  end if;
  return v_conv;
end;
$$;

-- What PostgREST exposes (security invoker); private.handoff_conversation does the work as its owner.
create or replace function public.handoff_conversation(conversation_id uuid, reason text default null,
                                                       team_id uuid default null)
returns public.conversations
language sql
security invoker
set search_path = ''
as $$ select * from private.handoff_conversation(conversation_id, reason, team_id) $$;
revoke execute on function private.handoff_conversation(uuid, text, uuid) from public, anon;
grant execute on function private.handoff_conversation(uuid, text, uuid) to authenticated, service_role;
comment on function public.handoff_conversation(uuid, text, uuid) is 'Hand a conversation from bot or flow to humans: mode human, queued for the given active team of its tenant (or the tenant''s support team). Agents: only conversations they may work.';

-- Frontends: an agent opened the conversation; its unread counter restarts. The counter is
-- the system's (ingest counts, agents' replies reset it): clients cannot write it directly.
create or replace function private.mark_conversation_read(conversation_id uuid)
returns public.conversations
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_conv public.conversations;
begin
  select * into v_conv from public.conversations c where c.id = mark_conversation_read.conversation_id;
  if v_conv.id is null or not private.is_member(v_conv.tenant_id) then
    raise exception 'conversation not found' using errcode = 'P0002';
  end if;
  perform private.require_role(v_conv.tenant_id, 'agent');
  if not private.can_work_conversation(v_conv.tenant_id, v_conv.assignee_id, v_conv.team_id) then
    raise exception 'this conversation is assigned to someone else' using errcode = '42501';
  end if;
  update public.conversations c set unread_count = 0 where c.id = v_conv.id
  returning * into v_conv;
  return v_conv;
end;
$$;

-- What PostgREST exposes (security invoker); private.mark_conversation_read does the work as its owner.
create or replace function public.mark_conversation_read(conversation_id uuid)
returns public.conversations
language sql
security invoker
set search_path = ''
as $$ select * from private.mark_conversation_read(conversation_id) $$;
revoke execute on function private.mark_conversation_read(uuid) from public, anon;
grant execute on function private.mark_conversation_read(uuid) to authenticated, service_role;
comment on function public.mark_conversation_read(uuid) is 'Agents: the conversation was read; unread_count back to 0 (only in conversations they may work).';

-- Frontends: a manager records an opt-in / opt-out or a consent the customer gave or withdrew
-- outside WhatsApp (phone call, e-mail, signed form), with the evidence the tenant keeps. Takes
-- effect now: the history is never back-dated.
create or replace function private.record_contact_consent(contact_id uuid, kind text, evidence text)
returns public.contact_consents
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_contact public.contacts;
  v_member public.members;
begin
  select * into v_contact from public.contacts c where c.id = record_contact_consent.contact_id;
  if v_contact.id is null or not private.is_member(v_contact.tenant_id) then
    raise exception 'contact not found' using errcode = 'P0002';
  end if;
  v_member := private.require_role(v_contact.tenant_id, 'manager');
  if coalesce(record_contact_consent.kind, '') not in ('opt_in', 'opt_out', 'consent_given', 'consent_withdrawn') then
    raise exception 'kind must be opt_in, opt_out, consent_given or consent_withdrawn' using errcode = '22023';
  end if;
  if length(btrim(coalesce(record_contact_consent.evidence, ''))) < 10 then
    raise exception 'describe the evidence of the customer''s request (how and when they asked, where it is kept)'
      using errcode = '22023';
  end if;
  if length(record_contact_consent.evidence) > 2000 then
    raise exception 'the evidence has % characters: at most 2000', length(record_contact_consent.evidence)
      using errcode = '22023';
  end if;
  return private.record_consent(v_contact.tenant_id, v_contact.id, record_contact_consent.kind,
                                'documented_request', record_contact_consent.evidence, v_member.id);
end;
$$;

-- What PostgREST exposes (security invoker); private.record_contact_consent does the work as its owner.
create or replace function public.record_contact_consent(contact_id uuid, kind text, evidence text)
returns public.contact_consents
language sql
security invoker
set search_path = ''
as $$ select * from private.record_contact_consent(contact_id, kind, evidence) $$;
revoke execute on function private.record_contact_consent(uuid, text, text) from public, anon;
grant execute on function private.record_contact_consent(uuid, text, text) to authenticated, service_role;
comment on function public.record_contact_consent(uuid, text, text) is 'Managers: record a customer''s documented opt-in / opt-out / consent request (evidence required, effective now) in the append-only history that drives the contact''s flags.';

/**
 * ----
 * Section - Triggers
 * ----
 */
do $$
declare
  v_table text;
begin
  foreach v_table in array array['quick_replies', 'agent_greetings'] loop
    execute format('drop trigger if exists _100_set_updated_at on public.%I', v_table);
    execute format('create trigger _100_set_updated_at before update on public.%I
                    for each row execute function private.tg_set_updated_at()', v_table);
  end loop;
end
$$;
drop trigger if exists _900_audit on public.quick_replies;
create trigger _900_audit after insert or update or delete on public.quick_replies
  for each row execute function private.tg_audit();

/**
 * ----
 * Section - RLS policies
 * ----
 */

-- quick_replies: members read, managers write
drop policy if exists "Members read quick_replies" on public.quick_replies;
create policy "Members read quick_replies" on public.quick_replies for select to authenticated
  using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Managers add quick_replies" on public.quick_replies;
create policy "Managers add quick_replies" on public.quick_replies for insert to authenticated
  with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Managers edit quick_replies" on public.quick_replies;
create policy "Managers edit quick_replies" on public.quick_replies for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')))
  with check (tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Managers delete quick_replies" on public.quick_replies;
create policy "Managers delete quick_replies" on public.quick_replies for delete to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')));

-- agent_greetings: members read; each agent writes their own (an agent still: not a viewer),
-- managers anyone's
drop policy if exists "Greetings are visible to members" on public.agent_greetings;
create policy "Greetings are visible to members" on public.agent_greetings
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Greetings are added by their agent or managers" on public.agent_greetings;
create policy "Greetings are added by their agent or managers" on public.agent_greetings
  for insert to authenticated
  with check ((member_id in (select private.my_member_ids())
               and tenant_id in (select private.my_tenant_ids_with_role('agent')))
              or tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Greetings are edited by their agent or managers" on public.agent_greetings;
create policy "Greetings are edited by their agent or managers" on public.agent_greetings
  for update to authenticated
  using ((member_id in (select private.my_member_ids())
          and tenant_id in (select private.my_tenant_ids_with_role('agent')))
         or tenant_id in (select private.my_tenant_ids_with_role('manager')))
  with check ((member_id in (select private.my_member_ids())
               and tenant_id in (select private.my_tenant_ids_with_role('agent')))
              or tenant_id in (select private.my_tenant_ids_with_role('manager')));
drop policy if exists "Greetings are deleted by their agent or managers" on public.agent_greetings;
create policy "Greetings are deleted by their agent or managers" on public.agent_greetings
  for delete to authenticated
  using ((member_id in (select private.my_member_ids())
          and tenant_id in (select private.my_tenant_ids_with_role('agent')))
         or tenant_id in (select private.my_tenant_ids_with_role('manager')));

/**
 * ----
 * Section - Grants
 * ----
 */
grant select, insert (tenant_id, shortcut, title, content, media_url, media_type, team_id),
  update (shortcut, title, content, media_url, media_type, team_id), delete
  on public.quick_replies to authenticated;
grant select, insert (tenant_id, member_id, message_template, is_active, auto_send),
  update (message_template, is_active, auto_send), delete on public.agent_greetings to authenticated;
grant select, insert, update, delete on public.quick_replies, public.agent_greetings to service_role;

revoke execute on all functions in schema private from public, anon;
revoke execute on function public.send_message(uuid, jsonb, uuid), public.start_conversation(uuid, uuid),
  public.handoff_conversation(uuid, text, uuid), public.mark_conversation_read(uuid),
  public.record_contact_consent(uuid, text, text)
  from public, anon, authenticated;
grant execute on function public.send_message(uuid, jsonb, uuid), public.start_conversation(uuid, uuid),
  public.handoff_conversation(uuid, text, uuid), public.mark_conversation_read(uuid),
  public.record_contact_consent(uuid, text, text)
  to authenticated, service_role;
