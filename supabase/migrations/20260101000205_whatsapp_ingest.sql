/**
 * Zapbase module 3a: whatsapp_ingest.
 * A Meta webhook body applied in one transaction by `whatsapp_ingest`, for both entry points
 * (the worker's HTTP route and the edge function): each change routed to its number and kept
 * once in inbound_events; applied only when the app that signed the body speaks for that
 * number (private.webhook_covers); messages grouped by number and sender (contact,
 * conversation with the 4 h session rule and the 24 h window, AI memory written once per
 * body), statuses never moving a message back, template updates and account errors; odd
 * items kept with their reason, never raised; at most 2,000 items and 1,000 changes a body.
 * The entry points call `whatsapp_receive`: a body is applied at once while the database keeps
 * up, and kept in `inbound_backlog` (durably, answered 200 at once) during a burst, then
 * applied in arrival order by the worker (`whatsapp_apply_backlog`).
 *
 * Who may do what:
 *   service role  everything here (members read the results through the whatsapp module)
 */

/**
 * ----
 * Section - Private helpers
 * ----
 */

-- Meta's unix-seconds timestamp string, or null when it is missing or not a number.
create or replace function private.wa_timestamp(value text)
returns timestamptz
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case when value ~ '^[0-9]{1,12}$' then pg_catalog.to_timestamp(value::bigint) end
$$;

-- Meta's stamp as Zapbase believes it: never more than 5 minutes after the receive time (now():
-- clock skew is fine, a later stamp would hold the 24 h window open), the receive time when
-- missing. The raw stamp stays in the payload (see timestamp_note).
create or replace function private.wa_time(value text)
returns timestamptz
language sql
stable
parallel safe
set search_path = ''
as $$
  select case when s.at <= now() + interval '5 minutes' then s.at else now() end
    from (select private.wa_timestamp(value) offset 0) s (at)  -- offset 0: read once
$$;

-- Why an inbound stamp was not taken as is (or is suspicious), or null: kept on the message
-- payload as zapbase_timestamp.
create or replace function private.timestamp_note(value text)
returns text
language sql
stable
parallel safe
set search_path = ''
as $$
  select case
    when s.at is null then 'missing or not unix seconds: the receive time is used'
    when s.at > now() + interval '5 minutes' then 'more than 5 minutes after it was received: the receive time is used'
    when s.at < now() - interval '30 days' then 'older than 30 days (Meta retries for 7 days): kept as stamped'
  end
    from (select private.wa_timestamp(value) offset 0) s (at)  -- offset 0: read once
$$;

-- A business-scoped user id (BSUID) as Meta sends it, or null for anything that cannot be one.
create or replace function private.bsuid(value text)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case when length(value) between 1 and 120 then value end
$$;

-- A readable text for an inbound message: what agents see in the inbox and bots read.
create or replace function private.inbound_content(type text, obj jsonb)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case type
    when 'text' then obj ->> 'body'
    when 'image' then obj ->> 'caption'
    when 'video' then obj ->> 'caption'
    when 'document' then coalesce(obj ->> 'caption', obj ->> 'filename')
    when 'location' then concat_ws(' · ', obj ->> 'name', obj ->> 'address',
                                   (obj ->> 'latitude') || ',' || (obj ->> 'longitude'))
    when 'contacts' then (select string_agg(c -> 'name' ->> 'formatted_name', ', ')
                            from jsonb_array_elements(case when jsonb_typeof(obj) = 'array' then obj else '[]' end) c)
    when 'interactive' then coalesce(obj -> 'button_reply' ->> 'title', obj -> 'list_reply' ->> 'title',
                                     obj -> 'nfm_reply' ->> 'body')
    when 'button' then obj ->> 'text'
    when 'order' then obj ->> 'text'
    when 'system' then obj ->> 'body'
  end
$$;

-- The routing key of a tap: button / list row id, template quick-reply payload.
create or replace function private.inbound_reply_id(type text, obj jsonb)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case type
    when 'interactive' then coalesce(obj -> 'button_reply' ->> 'id', obj -> 'list_reply' ->> 'id',
                                     'flow:' || (obj -> 'nfm_reply' ->> 'name'))
    when 'button' then obj ->> 'payload'
  end
$$;

-- The contact of an inbound sender, found or created (its counters are kept by count_inbound).
-- Who is who, in this order: the business-scoped user id (the same across number changes),
-- the wa_id, then a contact that announced this number in a user_changed_number and is now
-- confirmed by the number itself. A missing id, or the new number of a BSUID user, is filled
-- in when no other contact holds it (the old number goes to attributes.previous_wa_ids); two
-- contacts that turn out to be one person are not merged here: the message goes to the
-- BSUID's. Optional fields longer than their column are cut (the raw message keeps them).
create or replace function private.wa_contact(
  tenant_id uuid, wa_id text, user_id text, profile_name text, username text
) returns uuid
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_contact public.contacts;
  v_name text := left(nullif(wa_contact.profile_name, ''), 256);
  v_username text := left(nullif(wa_contact.username, ''), 120);
  v_wa_id text;
  v_user_id text;
begin
  if wa_contact.user_id is not null then
    select * into v_contact from public.contacts c
     where c.tenant_id = wa_contact.tenant_id and c.user_id = wa_contact.user_id;
  end if;
  if v_contact.id is null and wa_contact.wa_id is not null then
    select * into v_contact from public.contacts c
     where c.tenant_id = wa_contact.tenant_id and c.wa_id = wa_contact.wa_id;
    if v_contact.id is null then
      select * into v_contact from public.contacts c
       where c.tenant_id = wa_contact.tenant_id and c.pending_wa_id = wa_contact.wa_id
       order by c.updated_at desc limit 1;
    end if;
  end if;
  if v_contact.id is null then
    insert into public.contacts (tenant_id, wa_id, user_id, username, profile_name)
    values (wa_contact.tenant_id, wa_contact.wa_id, wa_contact.user_id, v_username, v_name)
    on conflict do nothing
    returning * into v_contact;
    if v_contact.id is not null then
      return v_contact.id;
    end if;
    select * into v_contact from public.contacts c  -- a concurrent webhook created it first
     where c.tenant_id = wa_contact.tenant_id and (c.user_id = wa_contact.user_id or c.wa_id = wa_contact.wa_id)
     order by c.user_id is not distinct from wa_contact.user_id desc limit 1;
  end if;

  -- the lookups behind IFs of their own: a plan is then made once (see ingest_messages)
  if wa_contact.wa_id is distinct from v_contact.wa_id then
    if not exists (select 1 from public.contacts o
                    where o.tenant_id = wa_contact.tenant_id and o.wa_id = wa_contact.wa_id) then
      v_wa_id := wa_contact.wa_id;
    end if;
  end if;
  if wa_contact.user_id is not null and v_contact.user_id is null then
    if not exists (select 1 from public.contacts o
                    where o.tenant_id = wa_contact.tenant_id and o.user_id = wa_contact.user_id) then
      v_user_id := wa_contact.user_id;
    end if;
  end if;
  -- written only when something changes: a batch resolves its senders once, and a redelivery
  -- rewrites nothing
  if v_wa_id is not null or v_user_id is not null or v_name <> coalesce(v_contact.profile_name, '')
     or v_username <> coalesce(v_contact.username, '') then
    update public.contacts c
       set wa_id = coalesce(v_wa_id, c.wa_id),
           pending_wa_id = case when v_wa_id = c.pending_wa_id then null else c.pending_wa_id end,
           attributes = case when v_wa_id is not null and c.wa_id is not null and jsonb_typeof(c.attributes) = 'object'
                             then c.attributes || jsonb_build_object('previous_wa_ids',
                                    coalesce(c.attributes -> 'previous_wa_ids', '[]') || to_jsonb(c.wa_id))
                             else c.attributes end,
           user_id = coalesce(c.user_id, v_user_id),
           profile_name = coalesce(v_name, c.profile_name),
           username = coalesce(v_username, c.username)
     where c.id = v_contact.id;
  end if;
  return v_contact.id;
end;
$$;

-- The contact's live conversation on a number at time `at`, locked; one idle for longer
-- than the tenant's session timeout (seed 000: 4 h) is closed as expired and a new one opens.
create or replace function private.live_conversation(
  tenant_id uuid, contact_id uuid, number_id uuid, session_timeout interval, at timestamptz,
  referral jsonb default null
) returns public.conversations
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_conv public.conversations;
begin
  select * into v_conv from public.conversations c
   where c.tenant_id = live_conversation.tenant_id and c.contact_id = live_conversation.contact_id
     and c.whatsapp_number_id = live_conversation.number_id and c.status in ('open', 'waiting', 'pending')
   for update;
  if found and v_conv.last_message_at < live_conversation.at - live_conversation.session_timeout then
    update public.conversations c
       set status = 'expired', close_reason = 'idle',
           closed_at = v_conv.last_message_at + live_conversation.session_timeout
     where c.id = v_conv.id;
    delete from public.session_context s where s.tenant_id = v_conv.tenant_id and s.conversation_id = v_conv.id;
    v_conv := null;
  end if;
  if v_conv.id is null then
    insert into public.conversations (tenant_id, contact_id, whatsapp_number_id, referral)
    values (live_conversation.tenant_id, live_conversation.contact_id, live_conversation.number_id,
            live_conversation.referral)
    on conflict (tenant_id, contact_id, whatsapp_number_id) where status in ('open', 'waiting', 'pending')
    do nothing
    returning * into v_conv;
    if v_conv.id is null then  -- a concurrent webhook opened it first
      select * into v_conv from public.conversations c
       where c.tenant_id = live_conversation.tenant_id and c.contact_id = live_conversation.contact_id
         and c.whatsapp_number_id = live_conversation.number_id and c.status in ('open', 'waiting', 'pending')
       for update;
    else
      update public.contacts c set total_conversations = c.total_conversations + 1
       where c.id = live_conversation.contact_id;
    end if;
  end if;
  return v_conv;
end;
$$;

-- A customer's answer to the 1-5 survey sent on resolve (a list reply csat:N) lands on the
-- conversation that asked, resolved as it is, rather than opening a new one; null otherwise.
create or replace function private.csat_conversation(tenant_id uuid, contact_id uuid, number_id uuid, msg jsonb,
                                                     at timestamptz)
returns public.conversations
language sql
set search_path = ''
as $$
  select c.* from public.conversations c
   where msg -> 'interactive' -> 'list_reply' ->> 'id' ~ '^csat:[1-5]$'
     and c.tenant_id = csat_conversation.tenant_id and c.contact_id = csat_conversation.contact_id
     and c.whatsapp_number_id = csat_conversation.number_id
     and c.csat is null and c.csat_requested_at > csat_conversation.at - interval '24 hours'
   order by c.csat_requested_at desc
   limit 1
   for update
$$;

-- Why an inbound message cannot be applied, or null when its shape is usable.
create or replace function private.inbound_problem(msg jsonb)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case
    when jsonb_typeof(msg) <> 'object' then 'message is not an object'
    when jsonb_typeof(msg -> 'id') is distinct from 'string' or msg ->> 'id' = '' then 'message without id'
    when length(msg ->> 'id') > 200 then 'message id longer than 200 characters'
    when jsonb_typeof(msg -> 'type') is distinct from 'string' or msg ->> 'type' = '' then 'message without type'
    when coalesce(msg ->> 'from', '') = '' and private.bsuid(msg ->> 'from_user_id') is null
      then 'message without sender (from / from_user_id)'
    when coalesce(msg ->> 'from', '') <> '' and msg ->> 'from' !~ '^[0-9]{5,20}$'
      then 'sender wa_id is not a phone number'
    when msg ->> 'type' = 'contacts' and jsonb_typeof(msg -> 'contacts') is distinct from 'array'
      then 'missing contacts array'
    when msg ->> 'type' in ('text', 'image', 'audio', 'video', 'document', 'sticker', 'location',
                            'interactive', 'button', 'reaction', 'order', 'system')
         and jsonb_typeof(msg -> (msg ->> 'type')) is distinct from 'object'
      then 'missing ' || (msg ->> 'type') || ' object'
    when msg ->> 'type' = 'reaction' and coalesce(msg -> 'reaction' ->> 'message_id', '') = ''
      then 'reaction without message_id'
  end
$$;

-- Who sent an inbound message: its group in a batch (the wa_id, or the BSUID of a username user).
create or replace function private.inbound_sender(msg jsonb)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select coalesce(nullif(msg ->> 'from', ''), 'user:' || private.bsuid(msg ->> 'from_user_id'))
$$;

-- A reaction is not a turn of its own: it marks (or, without emoji, unmarks) the message it
-- reacts to, when that message is ours.
create or replace function private.apply_reaction(tenant_id uuid, msg jsonb, at timestamptz)
returns void
language sql
set search_path = ''
as $$
  update public.messages m
     set reaction_emoji = left(nullif(apply_reaction.msg -> 'reaction' ->> 'emoji', ''), 32),
         reaction_at = apply_reaction.at
   where m.tenant_id = apply_reaction.tenant_id and m.wamid = apply_reaction.msg -> 'reaction' ->> 'message_id'
     and (m.reaction_at is null or m.reaction_at <= apply_reaction.at)
$$;

-- Store one inbound message in its conversation (counted later by count_inbound). Optional
-- fields longer than their column are cut; the payload keeps the message whole. Returns its
-- id, or null when the wamid is already stored.
create or replace function private.insert_inbound(
  tenant_id uuid, number_id uuid, contact_id uuid, conversation_id uuid, msg jsonb, at timestamptz
) returns uuid
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_type text := msg ->> 'type';
  v_obj jsonb;
  v_media boolean;
  v_content text;
  v_note text := private.timestamp_note(msg ->> 'timestamp');
  v_reply uuid;
  v_id uuid;
begin
  if v_type not in ('text', 'image', 'audio', 'video', 'document', 'sticker', 'location', 'contacts',
                    'interactive', 'button', 'order', 'system', 'unsupported') then
    v_type := 'unknown';  -- a type Meta added after this code: kept whole in payload
  end if;
  v_obj := case when v_type in ('unknown', 'unsupported') then msg else msg -> v_type end;
  v_media := v_type in ('image', 'audio', 'video', 'document', 'sticker');
  v_content := private.inbound_content(v_type, v_obj);
  if msg -> 'context' ->> 'id' is not null then  -- apart: the insert's plan is then made once (see ingest_messages)
    select m.id into v_reply from public.messages m
     where m.tenant_id = insert_inbound.tenant_id and m.wamid = msg -> 'context' ->> 'id';
  end if;
  insert into public.messages (tenant_id, conversation_id, contact_id, whatsapp_number_id, direction,
    sender_type, wamid, type, content, content_masked, payload, media_id, media_mime_type, media_sha256,
    media_filename, is_voice, reply_to_wamid, reply_to_message_id, interactive_reply_id, forwarded,
    referral, status, wa_timestamp, created_at)  -- clock time: a batch keeps its order
  values (insert_inbound.tenant_id, insert_inbound.conversation_id, insert_inbound.contact_id,
    insert_inbound.number_id, 'inbound', case when v_type = 'system' then 'system' else 'contact' end,
    msg ->> 'id', v_type, v_content, private.mask_pii(v_content),
    case when v_note is null then msg else msg || jsonb_build_object('zapbase_timestamp', v_note) end,
    case when v_media then left(v_obj ->> 'id', 200) end,
    case when v_media then left(v_obj ->> 'mime_type', 200) end,
    case when v_media then left(v_obj ->> 'sha256', 200) end,
    case when v_type = 'document' then left(v_obj ->> 'filename', 500) end,
    v_type = 'audio' and coalesce(v_obj ->> 'voice' = 'true', false),
    left(msg -> 'context' ->> 'id', 200), v_reply,
    left(private.inbound_reply_id(v_type, v_obj), 256),
    coalesce(msg -> 'context' ->> 'forwarded' = 'true' or msg -> 'context' ->> 'frequently_forwarded' = 'true', false),
    msg -> 'referral', case when v_type = 'system' then 'ignored' else 'received' end, insert_inbound.at,
    clock_timestamp())
  on conflict (tenant_id, wamid) do nothing
  returning id into v_id;
  return v_id;
end;
$$;

-- A user_changed_number never re-keys a contact by itself (anyone who can get a body signed
-- could redirect the replies, personal data included, to another number): the claimed number
-- waits on contacts.pending_wa_id until that number writes itself (see wa_contact), and the
-- agents are told, by an alert and by a note in the conversation. Returns the note's id.
create or replace function private.number_change_claimed(
  tenant_id uuid, conversation_id uuid, contact_id uuid, number_id uuid, system jsonb
) returns uuid
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_new text := system ->> 'wa_id';
  v_contact public.contacts;
  v_text text;
  v_id uuid;
begin
  if system ->> 'type' is distinct from 'user_changed_number' or coalesce(v_new, '') !~ '^[0-9]{5,20}$' then
    return null;
  end if;
  update public.contacts c set pending_wa_id = v_new
   where c.id = number_change_claimed.contact_id and c.wa_id is distinct from v_new
  returning * into v_contact;
  if v_contact.id is null then
    return null;
  end if;
  v_text := format('%s informou um novo número, +%s. As respostas continuam indo para %s até que o novo número '
                   'envie uma mensagem; confirme com o cliente antes de enviar dados pessoais.',
                   coalesce(v_contact.name, v_contact.profile_name, 'O contato'), v_new,
                   coalesce(v_contact.phone, 'o contato'));
  insert into public.alerts (tenant_id, type, priority, title, message, payload, dedupe_key)
  values (number_change_claimed.tenant_id, 'whatsapp.number_change', 'high',
          'WhatsApp: contato informou troca de número', v_text,
          jsonb_build_object('contact_id', v_contact.id, 'conversation_id', number_change_claimed.conversation_id,
                             'wa_id', v_contact.wa_id, 'pending_wa_id', v_new),
          'whatsapp:number_change:' || v_contact.id || ':' || v_new)
  on conflict (tenant_id, dedupe_key) do nothing;
  insert into public.messages (tenant_id, conversation_id, contact_id, whatsapp_number_id, direction, sender_type,
                               type, content, content_masked, payload, status, created_at)
  values (number_change_claimed.tenant_id, number_change_claimed.conversation_id, v_contact.id,
          number_change_claimed.number_id, 'inbound', 'system', 'system', v_text, private.mask_pii(v_text),
          jsonb_build_object('zapbase_note', 'number_change_pending', 'pending_wa_id', v_new), 'ignored',
          clock_timestamp())
  returning id into v_id;
  return v_id;
end;
$$;

-- Count a batch's new inbound messages of one conversation on it and on its contact, and add
-- them to the AI memory: one write of each row per batch, however many messages.
create or replace function private.count_inbound(tenant_id uuid, conversation_id uuid, contact_id uuid, ids uuid[])
returns void
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  v record;
  v_waiting boolean;
begin
  if coalesce(cardinality(ids), 0) = 0 then
    return;
  end if;
  select count(*) as n, min(m.wa_timestamp) as first_at, max(m.wa_timestamp) as last_at,
         -- the 24 h window runs from when the customer wrote, never from a stamp after receipt
         max(least(m.wa_timestamp, now())) filter (where m.sender_type = 'contact') as customer_at,
         (array_agg(left(coalesce(m.content, '[' || m.type || ']'), 200)
                    order by m.wa_timestamp desc, m.created_at desc))[1] as preview,
         (array_agg(m.referral order by m.wa_timestamp, m.created_at) filter (where m.referral is not null))[1]
           as referral,
         coalesce(jsonb_agg(e.entry order by m.created_at) filter (where e.entry is not null), '[]') as memory
    into v
    from public.messages m
   cross join lateral (select private.memory_entry(m) offset 0) e (entry)  -- offset 0: one call per row
   where m.id = any(count_inbound.ids);  -- by primary key alone (see ingest_messages)
  if v.n = 0 then
    return;
  end if;
  update public.conversations c
     set message_count = c.message_count + v.n,
         inbound_count = c.inbound_count + v.n,
         unread_count = c.unread_count + v.n,
         first_message_at = least(coalesce(c.first_message_at, v.first_at), v.first_at),
         last_message_preview = case when v.last_at >= coalesce(c.last_message_at, v.last_at)
           then v.preview else c.last_message_preview end,
         last_message_direction = case when v.last_at >= coalesce(c.last_message_at, v.last_at)
           then 'inbound' else c.last_message_direction end,
         last_message_at = greatest(c.last_message_at, v.last_at),
         -- every customer message refreshes the 24 h customer-service window
         last_customer_message_at = greatest(c.last_customer_message_at, v.customer_at),
         window_expires_at = case when v.customer_at is not null
           then greatest(c.last_customer_message_at, v.customer_at) + interval '24 hours'
           else c.window_expires_at end
   where c.id = count_inbound.conversation_id
  returning c.status = 'waiting' into v_waiting;
  -- apart, and only when it changes: the status triggers (capacity, load, assignment at
  -- commit) have nothing to do for a counter update
  if v_waiting and v.customer_at is not null then
    update public.conversations c set status = 'open' where c.id = count_inbound.conversation_id;
  end if;
  update public.contacts k
     set total_messages = k.total_messages + v.n,
         last_message_at = greatest(k.last_message_at, v.last_at),
         last_inbound_at = greatest(k.last_inbound_at, v.last_at),
         first_referral = coalesce(k.first_referral, v.referral)
   where k.id = count_inbound.contact_id;
  perform private.remember(count_inbound.tenant_id, count_inbound.conversation_id, v.memory);
end;
$$;

-- Apply the inbound messages of a body's routed `messages` changes ([{"event", "tenant",
-- "number", "timeout", "value"}]), grouped by number and sender across the whole body and in
-- time order inside a group: a contact and its conversation are resolved once and written
-- once per body (count_inbound). Rewriting a row once per message would make each write walk
-- the chain of that row's earlier versions in the same transaction (quadratic), and Meta may
-- batch one customer's messages as one change each. Lookups go by primary key where they
-- can: in a table without statistics yet, a (tenant_id, ...) index looks as good as the key.
-- Statements here and below are written so that their plan is made once per session: the
-- changes are read as one jsonb array (unnest's row estimate follows the array's length, so
-- a plan kept for any length would look worse than one made for this call, and be made again
-- on every call), and a lookup that runs only sometimes sits behind its own IF.
-- Messages past `budget` are kept unapplied. Returns {"ids": [new inbound messages to
-- process], "duplicates", "reactions", "quarantined": [{"event", "item", "reason"}], "used"}.
create or replace function private.ingest_messages(changes jsonb[], budget integer)
returns jsonb
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_profiles jsonb;
  v_profile jsonb;
  v_row record;
  v_group text;
  v_contact uuid;
  v_conv public.conversations;
  v_last timestamptz;
  v_fresh boolean;
  v_id uuid;
  v_note uuid;
  v_ids uuid[] := '{}';
  v_new uuid[] := '{}';
  v_quarantined jsonb[] := '{}';
  v_duplicates integer := 0;
  v_reactions integer := 0;
  v_count integer := 0;
begin
  -- the profiles of the body by number and wa_id or BSUID (the first one wins)
  select coalesce(jsonb_object_agg(k.key, k.p), '{}') into v_profiles
    from (select distinct on (x.key) x.key, p.p
            from unnest(changes) with ordinality c(ch, cord)
           cross join lateral jsonb_array_elements(case when jsonb_typeof(c.ch -> 'value' -> 'contacts') = 'array'
                                                        then c.ch -> 'value' -> 'contacts' else '[]' end)
                 with ordinality p(p, pord)
           cross join lateral (values ((c.ch ->> 'number') || ':' || nullif(p.p ->> 'wa_id', '')),
                                      ((c.ch ->> 'number') || ':user:' || private.bsuid(p.p ->> 'user_id'))) x(key)
           where jsonb_typeof(p.p) = 'object' and x.key is not null
           order by x.key, c.cord, p.pord) k;

  for v_row in
    select i.*, p.problem
      from (select x.*, row_number() over (order by x.cord, x.ord) as n
              from (select c.cord, e.ord, c.ch ->> 'event' as event, (c.ch ->> 'tenant')::uuid as tenant_id,
                           (c.ch ->> 'number')::uuid as number_id, (c.ch ->> 'timeout')::interval as timeout, e.m,
                           (c.ch ->> 'number') || ':' || private.inbound_sender(e.m) as sender,
                           private.wa_time(e.m ->> 'timestamp') as at
                      from jsonb_array_elements(to_jsonb(changes)) with ordinality c(ch, cord)
                     cross join lateral jsonb_array_elements(
                             case when jsonb_typeof(c.ch -> 'value' -> 'messages') = 'array'
                                  then c.ch -> 'value' -> 'messages' else '[]' end) with ordinality e(m, ord)
                    offset 0) x) i  -- offset 0: the sorts carry each message, not its whole change
     cross join lateral (select case when i.n > budget then 'over the item limit of one webhook body'
                                     else private.inbound_problem(i.m) end as problem
                          offset 0) p  -- offset 0: read once, for the output and for the order
     order by p.problem is null, i.sender, i.at, i.n
  loop
    v_count := v_count + 1;
    if v_row.problem is not null then
      v_quarantined := array_append(v_quarantined,
        jsonb_build_object('event', v_row.event, 'item', v_row.m, 'reason', v_row.problem));
      continue;
    end if;
    if v_row.sender is distinct from v_group or v_row.at > v_last + v_row.timeout then
      -- another sender, or an idle gap inside the body: the next message may open a new session
      if cardinality(v_ids) > 0 then
        perform private.count_inbound(v_conv.tenant_id, v_conv.id, v_contact, v_ids);
        v_ids := '{}';
      end if;
      v_conv := null;
      if v_row.sender is distinct from v_group then
        v_contact := null;
        v_group := v_row.sender;
      end if;
    end if;
    v_fresh := v_conv.id is null;
    begin  -- one subtransaction per message: a failure quarantines it alone
      if v_row.m ->> 'type' = 'reaction' then
        perform private.apply_reaction(v_row.tenant_id, v_row.m, v_row.at);
        v_reactions := v_reactions + 1;
      elsif v_fresh and exists (select 1 from public.messages m
                                 where m.tenant_id = v_row.tenant_id and m.wamid = v_row.m ->> 'id') then
        -- a known wamid opens no contact or conversation; inside a resolved group the insert's
        -- arbiter index (ON CONFLICT) finds it without a lookup
        v_duplicates := v_duplicates + 1;
      else
        if v_fresh then
          if v_contact is null then
            v_profile := coalesce(v_profiles -> v_row.sender,
              v_profiles -> (v_row.number_id || ':user:' || private.bsuid(v_row.m ->> 'from_user_id')));
            v_contact := private.wa_contact(v_row.tenant_id, nullif(v_row.m ->> 'from', ''),
              coalesce(private.bsuid(v_row.m ->> 'from_user_id'), private.bsuid(v_profile ->> 'user_id')),
              v_profile -> 'profile' ->> 'name', v_profile -> 'profile' ->> 'username');
          end if;
          if v_row.m -> 'interactive' -> 'list_reply' ->> 'id' ~ '^csat:[1-5]$' then  -- the survey's answer
            v_conv := private.csat_conversation(v_row.tenant_id, v_contact, v_row.number_id, v_row.m, v_row.at);
          end if;
          if v_conv.id is null then
            v_conv := private.live_conversation(v_row.tenant_id, v_contact, v_row.number_id, v_row.timeout,
                                                v_row.at, v_row.m -> 'referral');
          end if;
          v_last := coalesce(v_conv.last_message_at, v_row.at);
        end if;
        v_id := private.insert_inbound(v_row.tenant_id, v_row.number_id, v_contact, v_conv.id, v_row.m, v_row.at);
        if v_id is null then  -- a redelivered (or concurrent) wamid
          v_duplicates := v_duplicates + 1;
        elsif v_row.m ->> 'type' = 'system' then
          v_note := private.number_change_claimed(v_row.tenant_id, v_conv.id, v_contact, v_row.number_id,
                                                  v_row.m -> 'system');
          v_ids := array_append(v_ids, v_id);
          if v_note is not null then
            v_ids := array_append(v_ids, v_note);
          end if;
        else
          v_ids := array_append(v_ids, v_id);
          v_new := array_append(v_new, v_id);
        end if;
        v_last := greatest(v_last, v_row.at);
      end if;
    exception when others then
      v_quarantined := array_append(v_quarantined,
        jsonb_build_object('event', v_row.event, 'item', v_row.m, 'reason', 'could not apply: ' || sqlerrm));
      if v_fresh then  -- what this message resolved was rolled back with it
        v_conv := null;
        v_contact := null;
      end if;
    end;
  end loop;
  perform private.count_inbound(v_conv.tenant_id, v_conv.id, v_contact, v_ids);
  return jsonb_build_object('ids', to_jsonb(v_new), 'duplicates', v_duplicates, 'reactions', v_reactions,
                            'quarantined', to_jsonb(v_quarantined), 'used', greatest(least(v_count, budget), 0));
end;
$$;

-- Apply one status webhook. Returns duplicate, applied, unknown (wamid not ours, or not yet).
create or replace function private.ingest_status(tenant_id uuid, st jsonb)
returns text
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_at timestamptz := private.wa_time(st ->> 'timestamp');
  v_error jsonb := st -> 'errors' -> 0;
  v_message uuid;
  v_event uuid;
begin
  select m.id into v_message from public.messages m
   where m.tenant_id = ingest_status.tenant_id and m.wamid = st ->> 'id';
  insert into public.message_status_events (tenant_id, message_id, wamid, status, occurred_at, recipient_id,
    error_code, error_title, error_details, pricing, raw)
  values (ingest_status.tenant_id, v_message, st ->> 'id', st ->> 'status', v_at, left(st ->> 'recipient_id', 120),
    case when v_error ->> 'code' ~ '^[0-9]{1,9}$' then (v_error ->> 'code')::integer end,
    left(coalesce(v_error ->> 'title', v_error ->> 'message'), 500),
    left(v_error -> 'error_data' ->> 'details', 2000), st -> 'pricing', st)
  on conflict (tenant_id, wamid, status, occurred_at) do nothing
  returning id into v_event;
  if v_event is null then
    return 'duplicate';
  end if;
  if v_message is null then
    -- maybe a send whose sender died before storing the wamid: its callback data names the row
    return case when private.adopt_unrecorded_send(ingest_status.tenant_id, st ->> 'id',
                                                   st ->> 'biz_opaque_callback_data') is null
                then 'unknown' else 'applied' end;
  end if;
  perform private.apply_status(v_message, st ->> 'status', v_at,
    case when v_error ->> 'code' ~ '^[0-9]{1,9}$' then v_error end, st -> 'pricing');
  return 'applied';
end;
$$;

-- Why a status cannot be applied, or null.
create or replace function private.status_problem(st jsonb)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case
    when jsonb_typeof(st) <> 'object' then 'status is not an object'
    when jsonb_typeof(st -> 'id') is distinct from 'string' or st ->> 'id' = '' then 'status without id'
    when length(st ->> 'id') > 200 then 'status id longer than 200 characters'
    when coalesce(st ->> 'status', '') not in ('sent', 'delivered', 'read', 'played', 'failed', 'deleted', 'warning')
      then 'unknown status "' || coalesce(st ->> 'status', '') || '"'
  end
$$;

-- A Meta template status update (field message_template_status_update) on our copy.
create or replace function private.ingest_template_status(tenant_id uuid, value jsonb)
returns void
language sql
set search_path = ''
as $$
  update public.message_templates t
     set status = upper(value ->> 'event'),
         rejection_reason = case when upper(value ->> 'event') = 'REJECTED' then left(value ->> 'reason', 1000)
                                 else t.rejection_reason end,
         last_synced_at = now()
   where t.tenant_id = ingest_template_status.tenant_id
     and upper(value ->> 'event') in ('PENDING', 'APPROVED', 'REJECTED', 'PAUSED', 'DISABLED', 'IN_APPEAL',
                                      'PENDING_DELETION', 'DELETED')
     and (t.meta_template_id = value ->> 'message_template_id'
          or (t.name = value ->> 'message_template_name' and t.language = value ->> 'message_template_language'))
$$;

-- Apply a change's statuses in the order they happened (a late sent never undoes a read
-- anyway). Items past `budget` are kept unapplied. Returns {"applied", "unknown",
-- "quarantined": [{"item", "reason"}], "used"}.
create or replace function private.ingest_statuses(tenant_id uuid, statuses jsonb, budget integer)
returns jsonb
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_row record;
  v_problem text;
  v_quarantined jsonb[] := '{}';
  v_applied integer := 0;
  v_unknown integer := 0;
begin
  if jsonb_typeof(statuses) is distinct from 'array' then
    return jsonb_build_object('applied', 0, 'unknown', 0, 'quarantined', '[]'::jsonb, 'used', 0);
  end if;
  for v_row in
    select e.s, case when e.ord > budget then 'over the item limit of one webhook body'
                     else private.status_problem(e.s) end as problem
      from jsonb_array_elements(statuses) with ordinality e(s, ord)
     order by 2 nulls first, private.wa_time(e.s ->> 'timestamp'), private.outbound_rank(e.s ->> 'status'), e.ord
  loop
    v_problem := v_row.problem;
    if v_problem is null then
      begin
        case private.ingest_status(tenant_id, v_row.s)
          when 'applied' then v_applied := v_applied + 1;
          when 'unknown' then v_unknown := v_unknown + 1;
          else null;
        end case;
      exception when others then
        v_problem := 'could not apply: ' || sqlerrm;
      end;
    end if;
    if v_problem is not null then
      v_quarantined := array_append(v_quarantined, jsonb_build_object('item', v_row.s, 'reason', v_problem));
    end if;
  end loop;
  return jsonb_build_object('applied', v_applied, 'unknown', v_unknown, 'quarantined', to_jsonb(v_quarantined),
                            'used', greatest(least(jsonb_array_length(statuses), budget), 0));
end;
$$;

-- Errors about the number or the account (value.errors, e.g. 130429 throughput): kept on the
-- number with an alert per code and day. Elements that are not error objects, or past
-- `budget`, are returned with the reason. Returns {"quarantined": [...], "used"}.
create or replace function private.ingest_errors(tenant_id uuid, number_id uuid, errors jsonb, budget integer)
returns jsonb
language plpgsql
set search_path = ''
as $$
begin
  if jsonb_typeof(errors) is distinct from 'array' or jsonb_array_length(errors) = 0 then
    return jsonb_build_object('quarantined', '[]'::jsonb, 'used', 0);
  end if;
  update public.whatsapp_numbers n
     set last_error = jsonb_build_object('errors', errors, 'at', now()), last_error_at = now()
   where n.id = ingest_errors.number_id;
  perform private.number_alert(ingest_errors.tenant_id, ingest_errors.number_id, e, 'high',
            'WhatsApp: ' || coalesce(e ->> 'title', e ->> 'message', 'erro ' || (e ->> 'code'), 'erro sem descrição'),
            e -> 'error_data' ->> 'details')
    from jsonb_array_elements(errors) with ordinality x(e, ord)
   where jsonb_typeof(e) = 'object' and ord <= budget;
  return jsonb_build_object(
    'quarantined', coalesce((
      select jsonb_agg(jsonb_build_object('item', e, 'reason', case when ord > budget
               then 'over the item limit of one webhook body' else 'error is not an object' end) order by ord)
        from jsonb_array_elements(errors) with ordinality x(e, ord)
       where jsonb_typeof(e) <> 'object' or ord > budget), '[]'),
    'used', greatest(least(jsonb_array_length(errors), budget), 0));
end;
$$;

-- Apply a body's routed `messages` changes ([{"event", "tenant", "number", "timeout",
-- "value"}]) within `budget` items (messages first, then each change's statuses and errors)
-- and record on each event what was quarantined. Returns the counts for whatsapp_ingest,
-- with the ids of the new inbound messages.
create or replace function private.ingest_changes(changes jsonb[], budget integer)
returns jsonb
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
declare
  v_wamids text[];
  v_messages jsonb;
  v_left integer;
  v_change jsonb;
  v_statuses jsonb;
  v_errors jsonb;
  v_quarantined jsonb;
  v_applied integer := 0;
  v_unknown integer := 0;
  v_count integer;
begin
  -- before any row the sender also locks (a reply updates its campaign): see lock_wamids
  -- (the changes as one jsonb array, not unnest: see ingest_messages)
  v_wamids := array(select s ->> 'id' from jsonb_array_elements(to_jsonb(changes)) c,
    jsonb_array_elements(case when jsonb_typeof(c -> 'value' -> 'statuses') = 'array'
                              then c -> 'value' -> 'statuses' end) s);
  if cardinality(v_wamids) > 0 then
    perform private.lock_wamids(v_wamids, false);
  end if;
  v_messages := private.ingest_messages(changes, budget);
  v_left := budget - (v_messages ->> 'used')::integer;
  v_count := jsonb_array_length(v_messages -> 'quarantined');
  if v_count > 0 then
    update public.inbound_events e
       set status = 'partial', quarantined = q.items, reason = q.n || ' item(s) quarantined'
      from (select x ->> 'event' as event, count(*) as n,
                   jsonb_agg(jsonb_build_object('item', x -> 'item', 'reason', x -> 'reason') order by ord) as items
              from jsonb_array_elements(v_messages -> 'quarantined') with ordinality q(x, ord)
             group by 1) q
     where e.id = q.event::uuid;
  end if;
  foreach v_change in array changes loop
    if jsonb_typeof(v_change -> 'value' -> 'statuses') is distinct from 'array'
       and jsonb_typeof(v_change -> 'value' -> 'errors') is distinct from 'array' then
      continue;  -- messages only (most changes): nothing below to apply or record
    end if;
    v_statuses := private.ingest_statuses((v_change ->> 'tenant')::uuid, v_change -> 'value' -> 'statuses', v_left);
    v_left := v_left - (v_statuses ->> 'used')::integer;
    v_errors := private.ingest_errors((v_change ->> 'tenant')::uuid, (v_change ->> 'number')::uuid,
                                      v_change -> 'value' -> 'errors', v_left);
    v_left := v_left - (v_errors ->> 'used')::integer;
    v_applied := v_applied + (v_statuses ->> 'applied')::integer;
    v_unknown := v_unknown + (v_statuses ->> 'unknown')::integer;
    v_quarantined := (v_statuses -> 'quarantined') || (v_errors -> 'quarantined');
    if jsonb_array_length(v_quarantined) > 0 then
      v_count := v_count + jsonb_array_length(v_quarantined);
      update public.inbound_events e
         set status = 'partial', quarantined = e.quarantined || v_quarantined,
             reason = jsonb_array_length(e.quarantined || v_quarantined) || ' item(s) quarantined'
       where e.id = (v_change ->> 'event')::uuid;
    end if;
  end loop;
  return jsonb_build_object(
    'ids', v_messages -> 'ids', 'duplicate_messages', v_messages -> 'duplicates',
    'reactions', v_messages -> 'reactions', 'statuses', v_applied, 'unknown_statuses', v_unknown,
    'quarantined', v_count);
end;
$$;

/**
 * ----
 * Section - Webhook ingest (service role: the worker's route and the edge function)
 * ----
 */

-- Which numbers a webhook signature speaks for: the one rule behind the worker's route and
-- the edge function. The platform's Meta app (signer null: its secrets are the worker's and
-- the edge function's settings) signs for the numbers with no app secret of their own; a
-- tenant's own app (signer = the phone_number_id named in the callback URL, whose app secret
-- verified the signature) signs for that tenant's numbers holding the same app secret, i.e.
-- registered under the same app. Anything else would let one tenant speak for another.
create or replace function private.webhook_covers(signer text, number_id uuid)
returns boolean
language sql
stable
set search_path = ''
as $$
  select case
    when webhook_covers.signer is null then n.app_secret_secret_id is null
    else exists (
      select 1 from public.whatsapp_numbers a
       where a.phone_number_id = webhook_covers.signer and a.tenant_id = n.tenant_id and a.app_secret_secret_id is not null
         and (a.id = n.id
              or private.vault_secret(a.app_secret_secret_id, 'whatsapp_number:' || a.id || ':app_secret')
               = private.vault_secret(n.app_secret_secret_id, 'whatsapp_number:' || n.id || ':app_secret')))
  end
    from public.whatsapp_numbers n
   where n.id = webhook_covers.number_id
$$;

-- inbound_events.payload_hash: real changes hash as [entry id, change]; raw bodies and
-- refused changes hash in spaces of their own (a prefix no JSON array starts with), so
-- neither can pose as a real change and make it look like a duplicate.
create or replace function private.inbound_event_hash(kind text, content text)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select encode(sha256(convert_to(case when kind = 'change' then content else kind || ':' || content end, 'UTF8')),
                'hex')
$$;

-- Applies a whole Meta webhook body in one transaction. Idempotent: each entry × change is
-- kept once in inbound_events (by hash); a redelivered change changes nothing, and known
-- wamids inside a new batch are skipped. Nothing raises for a bad shape: malformed items
-- are quarantined with their reason and the rest of the batch is applied. Wakes the worker
-- with NOTIFY zapbase_inbound and returns what happened, with the ids of the new inbound
-- messages to process. `signer` says whose app secret verified the signature (see
-- private.webhook_covers): a change for a number it does not cover is refused, kept apart.
create or replace function public.whatsapp_ingest(payload jsonb, signer text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_entry jsonb;
  v_change jsonb;
  v_value jsonb;
  v_field text;
  v_number record;
  v_event_id uuid;
  v_result jsonb;
  v_routed jsonb[] := '{}';
  -- Work one request may cause (Meta batches at most 1,000 updates per POST): messages,
  -- statuses and errors past the item limit are kept on their event unapplied, and changes
  -- past the change limit are kept with the whole body, unapplied, with the reason.
  v_item_limit constant integer := 2000;
  v_change_limit constant integer := 1000;
  v_changes integer := 0;
  v_new jsonb;
  v_events integer := 0;
  v_duplicates integer := 0;
  v_quarantine_count integer := 0;
  v_unroutable integer := 0;
  v_refused integer := 0;
begin
  if jsonb_typeof(payload) is distinct from 'object' or jsonb_typeof(payload -> 'entry') is distinct from 'array' then
    perform public.whatsapp_quarantine_raw(coalesce(payload::text, 'null'), 'body has no entry array');
    return jsonb_build_object('events', 0, 'quarantined', 1, 'inbound_message_ids', '[]'::jsonb);
  end if;

  <<entries>>
  for v_entry in select e from jsonb_array_elements(payload -> 'entry') e loop
    v_changes := v_changes + 1;
    if v_changes > v_change_limit then
      perform private.quarantine_overflow(payload, v_change_limit);
      v_quarantine_count := v_quarantine_count + 1;
      exit entries;
    end if;
    if jsonb_typeof(v_entry) <> 'object' or jsonb_typeof(v_entry -> 'changes') is distinct from 'array' then
      perform public.whatsapp_quarantine_raw(v_entry::text, 'entry is not an object with a changes array');
      v_quarantine_count := v_quarantine_count + 1;
      continue;
    end if;
    for v_change in select c from jsonb_array_elements(v_entry -> 'changes') c loop
      v_changes := v_changes + 1;
      if v_changes > v_change_limit then
        perform private.quarantine_overflow(payload, v_change_limit);
        v_quarantine_count := v_quarantine_count + 1;
        exit entries;
      end if;
      if jsonb_typeof(v_change) <> 'object' then
        perform public.whatsapp_quarantine_raw(v_change::text, 'change is not an object');
        v_quarantine_count := v_quarantine_count + 1;
        continue;
      end if;
      v_value := case when jsonb_typeof(v_change -> 'value') = 'object' then v_change -> 'value' else '{}' end;
      v_field := v_change ->> 'field';

      select n.id, n.tenant_id, t.session_timeout into v_number
        from public.whatsapp_numbers n join public.tenants t on t.id = n.tenant_id
       where n.phone_number_id = v_value -> 'metadata' ->> 'phone_number_id';
      if v_number.id is null and v_field is distinct from 'messages' then
        -- account-level fields (templates, quality, account updates) name the WABA instead
        select n.id, n.tenant_id, t.session_timeout into v_number
          from public.whatsapp_numbers n join public.tenants t on t.id = n.tenant_id
         where n.waba_id = v_entry ->> 'id'
         order by private.webhook_covers(signer, n.id) desc, n.created_at limit 1;
      end if;

      if v_number.id is not null and not private.webhook_covers(signer, v_number.id) then
        -- Signed by an app that does not speak for this number: kept for inspection, apart
        -- from the number's tenant and from its real changes, and never applied.
        insert into public.inbound_events (payload_hash, object, entry_id, field, phone_number_id, payload,
          status, reason)
        values (private.inbound_event_hash('refused', jsonb_build_array(signer, v_entry ->> 'id', v_change)::text),
          left(payload ->> 'object', 60), left(v_entry ->> 'id', 60), left(v_field, 100),
          left(v_value -> 'metadata' ->> 'phone_number_id', 60),
          jsonb_build_object('object', payload ->> 'object', 'entry_id', v_entry ->> 'id', 'change', v_change,
                             'signer', signer),
          'quarantined', 'the signature ' || coalesce('of the app of ' || left(signer, 60), 'of the platform''s app')
                         || ' does not cover this number')
        on conflict (payload_hash) do nothing;
        v_refused := v_refused + 1;
        continue;
      end if;

      insert into public.inbound_events (tenant_id, whatsapp_number_id, payload_hash, object, entry_id, field,
        phone_number_id, payload, status, message_count, status_count, cleaned)
      values (v_number.tenant_id, v_number.id,
        private.inbound_event_hash('change', jsonb_build_array(v_entry ->> 'id', v_change)::text),
        left(payload ->> 'object', 60), left(v_entry ->> 'id', 60), left(v_field, 100),
        left(v_value -> 'metadata' ->> 'phone_number_id', 60),
        jsonb_build_object('object', payload ->> 'object', 'entry_id', v_entry ->> 'id', 'change', v_change),
        case when v_field is distinct from 'messages' then 'stored'
             when v_number.id is null then 'unroutable' else 'applied' end,
        case when jsonb_typeof(v_value -> 'messages') = 'array' then jsonb_array_length(v_value -> 'messages') else 0 end,
        case when jsonb_typeof(v_value -> 'statuses') = 'array' then jsonb_array_length(v_value -> 'statuses') else 0 end,
        payload -> 'zapbase_cleaned')  -- set by the webhook route (zapbase.whatsapp.cleaning)
      on conflict (payload_hash) do nothing
      returning id into v_event_id;
      if v_event_id is null then
        v_duplicates := v_duplicates + 1;
        continue;
      end if;
      v_events := v_events + 1;

      if v_field is distinct from 'messages' then
        if v_field = 'message_template_status_update' and v_number.tenant_id is not null then
          perform private.ingest_template_status(v_number.tenant_id, v_value);
        end if;
        continue;
      end if;
      if v_number.id is null then
        v_unroutable := v_unroutable + 1;
        continue;
      end if;

      v_routed := array_append(v_routed, jsonb_build_object('event', v_event_id, 'tenant', v_number.tenant_id,
        'number', v_number.id, 'timeout', v_number.session_timeout, 'value', v_value));
    end loop;
  end loop;

  -- the body's messages, statuses and errors, applied together (see ingest_messages)
  v_result := private.ingest_changes(v_routed, v_item_limit);
  v_new := v_result -> 'ids';
  v_quarantine_count := v_quarantine_count + (v_result ->> 'quarantined')::integer;

  if jsonb_array_length(v_new) > 0 then
    perform pg_notify('zapbase_inbound', jsonb_array_length(v_new)::text);
  end if;
  return jsonb_build_object(
    'events', v_events, 'duplicate_events', v_duplicates, 'messages', jsonb_array_length(v_new),
    'duplicate_messages', v_result -> 'duplicate_messages', 'reactions', v_result -> 'reactions',
    'statuses', v_result -> 'statuses', 'unknown_statuses', v_result -> 'unknown_statuses',
    'quarantined', v_quarantine_count, 'unroutable', v_unroutable, 'refused', v_refused,
    'inbound_message_ids', v_new);
end;
$$;
comment on function public.whatsapp_ingest(jsonb, text) is 'Service role: applies a Meta webhook body signed by `signer` (the phone_number_id of the tenant app''s callback URL, null for the platform''s app) to the numbers that signature covers (idempotent, never raises for a bad shape); NOTIFY zapbase_inbound; returns counts and the new inbound message ids.';

-- A signed body that is not a JSON object: kept for inspection (Meta is answered 200 so it
-- stops resending bytes that can never become valid).
create or replace function public.whatsapp_quarantine_raw(body text, reason text)
returns uuid
language sql
security definer
set search_path = ''
as $$
  insert into public.inbound_events (payload_hash, raw_body, status, reason)
  values (private.inbound_event_hash('raw', body), body, 'quarantined', left(reason, 2000))
  on conflict (payload_hash) do update set reason = excluded.reason
  returning id
$$;
comment on function public.whatsapp_quarantine_raw(text, text) is 'Service role: keeps a signed webhook body that is not a JSON object, with the reason.';

-- The part of a body past whatsapp_ingest's change limit: the whole body is kept raw with the
-- reason (what came before the limit was applied; replaying the body is idempotent).
create or replace function private.quarantine_overflow(payload jsonb, change_limit integer)
returns void
language sql
set search_path = ''
as $$
  select public.whatsapp_quarantine_raw(payload::text, 'over the limit of ' || change_limit
           || ' entries and changes per webhook body: those past it were not applied')
$$;

-- The Meta app a tenant subscribed with its own credentials, named in the callback URL by
-- one of its numbers (`/webhooks/whatsapp/<phone_number_id>`): that number's app secret
-- (signatures) and verify token (handshake), from Vault. No row for an unknown or disabled
-- number. The platform's own app is configured in the worker and the edge function instead.
create or replace function public.whatsapp_webhook_app(phone_number_id text)
returns table (app_secret text, verify_token text)
language sql
stable
security definer
set search_path = ''
as $$
  select private.vault_secret(n.app_secret_secret_id, 'whatsapp_number:' || n.id || ':app_secret'),
         private.vault_secret(n.verify_token_secret_id, 'whatsapp_number:' || n.id || ':verify_token')
    from public.whatsapp_numbers n
   where n.phone_number_id = whatsapp_webhook_app.phone_number_id and n.status <> 'disabled'
$$;
comment on function public.whatsapp_webhook_app(text) is 'Service role: app secret and verify token of the Meta app a number lives under, from Vault (the webhook path names the number).';

/**
 * ----
 * Section - Backlog: bodies acknowledged before they are applied
 * ----
 */

-- A burst Meta sends faster than ingest applies would queue every request behind the same
-- CPUs, and Meta counts a slow answer as a failure (median <= 250 ms). During a burst a body
-- is kept here, durably, and answered 200 at once; the worker applies the backlog right
-- after, in arrival order per number. No tenant yet: routing is part of applying. Worker only.
create table if not exists public.inbound_backlog (
  id bigint generated by default as identity primary key,
  route_key text not null,
  payload jsonb not null,
  signer text,
  received_at timestamptz not null default now(),
  attempts integer not null default 0,
  retry_at timestamptz,
  last_error text check (length(last_error) <= 2000)
);
alter table public.inbound_backlog enable row level security;
create index if not exists inbound_backlog_route_idx on public.inbound_backlog (route_key, id);
comment on table public.inbound_backlog is 'Signed webhook bodies acknowledged during a burst and not applied yet; applied in id order per route_key. Worker only.';
comment on column public.inbound_backlog.route_key is 'What orders the body (private.backlog_route_key): the phone_number_id of its first change, or its WABA; one number''s bodies are applied one at a time in id order, different numbers in parallel.';
comment on column public.inbound_backlog.signer is 'whatsapp_ingest''s signer: the phone_number_id of the tenant app''s callback URL, null for the platform''s app.';
comment on column public.inbound_backlog.attempts is 'Applies that raised: the number''s later bodies wait (order) until retry_at, and after 5 the body is quarantined with the error.';

create or replace function private.backlog_route_key(payload jsonb)
returns text
language sql
immutable
set search_path = ''
as $$
  select left(coalesce(payload #>> '{entry,0,changes,0,value,metadata,phone_number_id}',
                       payload #>> '{entry,0,id}', ''), 60)
$$;

-- How many bodies may be applied at once (advisory locks (205, 1..n), held to the commit).
-- A body past them would only wait for the same CPUs: it goes to the backlog instead.
create or replace function private.ingest_slot()
returns boolean
language plpgsql
set search_path = ''
as $$
declare
  v_slots constant integer := 2;
begin
  for v_slot in 1 .. v_slots loop
    if pg_catalog.pg_try_advisory_xact_lock(205, v_slot) then  -- 205: this module's lock space
      return true;
    end if;
  end loop;
  return false;
end;
$$;

-- The lock a backlog applier holds on one route key until its commit.
create or replace function private.lock_route_key(route_key text)
returns boolean
language sql
set search_path = ''
as $$
  select pg_catalog.pg_try_advisory_xact_lock(pg_catalog.hashtextextended('inbound_backlog:' || route_key, 0))
$$;

-- The webhook entry point (the worker's route and the edge function): applies the body at
-- once as whatsapp_ingest, unless bodies of its number received before it still wait in the
-- backlog (they go first, so nothing is reordered) or every ingest slot is busy; then the
-- body is kept in the backlog and NOTIFY zapbase_backlog wakes the worker. Either way it is
-- durable at commit.
create or replace function public.whatsapp_receive(payload jsonb, signer text default null)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_key text := private.backlog_route_key(payload);
  v_id bigint;
begin
  if not exists (select 1 from public.inbound_backlog b where b.route_key = v_key) and private.ingest_slot() then
    return public.whatsapp_ingest(payload, signer) || '{"backlogged": false}';
  end if;
  insert into public.inbound_backlog (route_key, payload, signer) values (v_key, payload, signer)
  returning id into v_id;
  perform pg_notify('zapbase_backlog', '');
  return jsonb_build_object('backlogged', true, 'backlog_id', v_id);
end;
$$;
comment on function public.whatsapp_receive(jsonb, text) is 'Service role: a signed webhook body, applied at once (whatsapp_ingest''s result) or, during a burst, kept in inbound_backlog ({"backlogged": true}); durable either way.';

-- Worker: applies up to `batch_size` of the oldest backlogged bodies, each as whatsapp_ingest
-- (in a subtransaction), in arrival order per number: a round holds the lock of each number
-- it applies, and skips a number another round holds (with all its later bodies), so
-- replicas apply different numbers in parallel; a round looks past at most 1,000 bodies. A
-- body whose apply raises (a lock timeout, a bug) holds back its number's later bodies, to
-- keep their order, until it is retried (after 1, 2, 4, 8 s); after 5 attempts it is
-- quarantined with the error. Returns {"applied", "messages", "stalled": a body failed}.
create or replace function public.whatsapp_apply_backlog(batch_size integer default 20)
returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_body public.inbound_backlog;
  v_result jsonb;
  v_error text;
  v_skipped text[] := '{}';
  v_held text[] := '{}';
  v_applied integer := 0;
  v_messages integer := 0;
  v_stalled boolean := false;
begin
  for v_body in select * from public.inbound_backlog b order by b.id limit 1000 loop
    exit when v_applied >= batch_size;
    continue when v_body.route_key = any(v_skipped);
    if v_body.retry_at > now() then
      v_skipped := v_skipped || v_body.route_key;
      continue;
    end if;
    if not v_body.route_key = any(v_held) then
      if not private.lock_route_key(v_body.route_key) then
        v_skipped := v_skipped || v_body.route_key;
        continue;
      end if;
      v_held := v_held || v_body.route_key;
    end if;
    -- another round may have applied it since this loop's snapshot (it held the lock then)
    continue when not exists (select 1 from public.inbound_backlog b where b.id = v_body.id);
    begin
      v_result := public.whatsapp_ingest(v_body.payload, v_body.signer);
      v_messages := v_messages + (v_result ->> 'messages')::integer;
    exception when others then
      get stacked diagnostics v_error = message_text;
      if v_body.attempts < 4 then
        update public.inbound_backlog b
           set attempts = b.attempts + 1, last_error = left(v_error, 2000),
               retry_at = now() + make_interval(secs => 2 ^ b.attempts)
         where b.id = v_body.id;
        v_skipped := v_skipped || v_body.route_key;
        v_stalled := true;
        continue;
      end if;
      perform public.whatsapp_quarantine_raw(v_body.payload::text,
        'backlogged body not applied after 5 attempts: ' || v_error);
    end;
    delete from public.inbound_backlog b where b.id = v_body.id;
    v_applied := v_applied + 1;
  end loop;
  return jsonb_build_object('applied', v_applied, 'messages', v_messages, 'stalled', v_stalled);
end;
$$;
comment on function public.whatsapp_apply_backlog(integer) is 'Worker: applies the oldest backlogged webhook bodies, in arrival order per number (numbers another round holds are skipped); returns {"applied", "messages", "stalled"}.';

-- A backlog nobody applied for a minute (no worker running): applied from the schedule, so
-- agents still see what arrived. A live worker leaves nothing that old: one index probe.
create or replace function private.job_inbound_backlog(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_round jsonb;
  v_total integer := 0;
begin
  while v_total < 1000 and (select b.received_at from public.inbound_backlog b order by b.id limit 1)
                            < as_of - interval '1 minute' loop
    v_round := public.whatsapp_apply_backlog(100);
    exit when (v_round ->> 'applied')::integer = 0;
    v_total := v_total + (v_round ->> 'applied')::integer;
  end loop;
  return v_total;
end;
$$;

insert into public.job_schedules (name, description, cron, function_name) values
  ('inbound_backlog', 'Applies webhook bodies backlogged more than a minute ago (no worker applied them).',
   '* * * * *', 'private.job_inbound_backlog')
on conflict (name) do update set description = excluded.description, function_name = excluded.function_name,
  runner = excluded.runner;

/**
 * ----
 * Section - Grants
 * ----
 */
revoke execute on all functions in schema private from public, anon;
revoke execute on function public.whatsapp_ingest(jsonb, text), public.whatsapp_quarantine_raw(text, text),
  public.whatsapp_webhook_app(text), public.whatsapp_receive(jsonb, text), public.whatsapp_apply_backlog(integer)
  from public, anon, authenticated;
grant execute on function public.whatsapp_ingest(jsonb, text), public.whatsapp_quarantine_raw(text, text),
  public.whatsapp_webhook_app(text), public.whatsapp_receive(jsonb, text), public.whatsapp_apply_backlog(integer)
  to service_role;
grant select, insert, update, delete on public.inbound_backlog to service_role;
