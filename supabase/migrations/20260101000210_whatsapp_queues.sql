/**
 * Zapbase module 3b: whatsapp_queues.
 * The worker's message queues on the WhatsApp channel. Outbound: every message (an agent's
 * through send_message, a bot's or campaign's through whatsapp_queue_reply) is checked
 * against WhatsApp's limits and the contact's reachability by private.queue_outbound, then
 * leaves through whatsapp_claim_outbound (per-number throughput, one in flight per contact,
 * leases) / whatsapp_mark_sent (or _many, for sends answered together) /
 * whatsapp_mark_send_failed. Inbound: ingested messages are claimed by the processor
 * (whatsapp_claim_inbound) and settled by whatsapp_finish_inbound or whatsapp_fail_inbound.
 *
 * Who may do what:
 *   service role  everything here; frontends reach the outbound queue through the inbox RPCs
 */

/**
 * ----
 * Section - Outbound messages: WhatsApp's limits per type
 * ----
 */
-- What an outbound message shows in the inbox and in the AI memory.
create or replace function private.outbound_content(message jsonb)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case message ->> 'type'
    when 'text' then message -> 'text' ->> 'body'
    when 'template' then '[template ' || (message -> 'template' ->> 'name') || ']'
    when 'interactive' then message -> 'interactive' -> 'body' ->> 'text'
    when 'reaction' then message -> 'reaction' ->> 'emoji'
    else coalesce(message -> (message ->> 'type') ->> 'caption', '[' || (message ->> 'type') || ']')
  end
$$;

-- Why a text field of an outbound message breaks WhatsApp's rules, or null.
create or replace function private.wa_text_problem(obj jsonb, key text, path text, max_chars integer,
                                                   required boolean default true)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case
    when coalesce(jsonb_typeof(obj -> key), 'null') = 'null'
      then case when required then path || ' is required' end
    when jsonb_typeof(obj -> key) <> 'string' then path || ' must be a string'
    when required and btrim(obj ->> key) = '' then path || ' must not be empty'
    when length(obj ->> key) > max_chars
      then path || ' has ' || length(obj ->> key) || ' characters: WhatsApp allows at most ' || max_chars
  end
$$;

-- Why a media object (message or interactive header) is unusable, or null: exactly one of an
-- uploaded media id or an https link Meta fetches.
create or replace function private.wa_media_problem(obj jsonb, path text)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case
    when jsonb_typeof(obj) is distinct from 'object' then path || ' must be an object'
    when (obj -> 'id' is null) = (obj -> 'link' is null) then path || ' needs exactly one of id (an uploaded media id) or link'
    when obj ? 'id' then private.wa_text_problem(obj, 'id', path || '.id', 200)
    when jsonb_typeof(obj -> 'link') <> 'string' or obj ->> 'link' !~ '^https://[^\s/?#]+[^\s]*$'
      then path || '.link must be an https:// URL'
    when length(obj ->> 'link') > 2048 then path || '.link has more than 2048 characters'
  end
$$;

-- Why an outbound message (Graph API body without recipient) breaks a limit of WhatsApp
-- (reference: whatsapp-cloud-api.md §5, Meta's send-messages, interactive and media pages),
-- or null. The whole body is capped at 64 KB: no WhatsApp message needs more.
create or replace function private.outbound_problem(message jsonb)
returns text
language plpgsql
immutable
parallel safe
set search_path = ''
as $$
declare
  v_type text := message ->> 'type';
  v_obj jsonb := message -> v_type;
  v_size integer := octet_length(message::text);
  v_problem text;
  v_item jsonb;
  v_param jsonb;
  v_rows jsonb;
begin
  if v_size > 65536 then
    return 'the message has ' || v_size || ' bytes: at most 65536 (64 KB) are accepted';
  end if;
  case v_type
  when 'text' then
    return case when private.wa_text_problem(v_obj, 'body', 'text.body', 4096) is not null
                then 'a text message needs a body of 1 to 4096 characters' end;
  when 'image', 'video', 'document', 'audio', 'sticker' then
    v_problem := coalesce(private.wa_media_problem(v_obj, v_type),
      case when v_obj ? 'caption' and v_type not in ('image', 'video', 'document')
           then v_type || ' takes no caption' end,
      private.wa_text_problem(v_obj, 'caption', v_type || '.caption', 1024, false),
      case when v_obj ? 'filename' and v_type <> 'document' then 'only a document takes a filename' end,
      private.wa_text_problem(v_obj, 'filename', v_type || '.filename', 240, false),
      case when v_obj ? 'voice' and (v_type <> 'audio' or jsonb_typeof(v_obj -> 'voice') <> 'boolean')
           then 'voice is a boolean of audio messages only' end);
    return v_problem;
  when 'location' then
    return coalesce(
      case when jsonb_typeof(v_obj -> 'latitude') is distinct from 'number' then 'location.latitude must be a number'
           when (v_obj ->> 'latitude')::numeric not between -90 and 90 then 'location.latitude must be between -90 and 90'
      end,
      case when jsonb_typeof(v_obj -> 'longitude') is distinct from 'number' then 'location.longitude must be a number'
           when (v_obj ->> 'longitude')::numeric not between -180 and 180
           then 'location.longitude must be between -180 and 180'
      end,
      private.wa_text_problem(v_obj, 'name', 'location.name', 1000, false),
      private.wa_text_problem(v_obj, 'address', 'location.address', 1000, false));
  when 'reaction' then
    return coalesce(
      private.wa_text_problem(v_obj, 'message_id', 'reaction.message_id', 200),
      case when jsonb_typeof(v_obj -> 'emoji') is distinct from 'string'
           then 'reaction.emoji is required (an empty string removes the reaction)'
           when length(v_obj ->> 'emoji') > 10 or v_obj ->> 'emoji' ~ '[A-Za-z\s]'
           then 'reaction.emoji must be one emoji' end);
  when 'contacts' then
    if jsonb_array_length(v_obj) not between 1 and 20 then
      return 'a contacts message carries 1 to 20 contacts';
    end if;
    for v_item in select c from jsonb_array_elements(v_obj) c loop
      v_problem := private.wa_text_problem(v_item -> 'name', 'formatted_name', 'contacts[].name.formatted_name', 512);
      if v_problem is not null then return v_problem; end if;
    end loop;
    return null;
  when 'template' then
    v_problem := coalesce(
      case when coalesce(v_obj ->> 'name', '') !~ '^[a-z0-9_]+$' or length(v_obj ->> 'name') > 512
           then 'template.name must be a template name (a-z, 0-9, _; at most 512 characters)' end,
      private.wa_text_problem(v_obj -> 'language', 'code', 'template.language.code', 20),
      case when v_obj ? 'components' and jsonb_typeof(v_obj -> 'components') <> 'array'
           then 'template.components must be an array'
           when jsonb_array_length(coalesce(v_obj -> 'components', '[]')) > 20
           then 'template.components holds at most 20 components' end);
    if v_problem is not null then return v_problem; end if;
    -- Meta: header text parameters ≤ 60 characters, body ones ≤ 1024 (32768 when the body is
    -- the only component), button payloads ≤ 128 and URL suffixes ≤ 2000.
    for v_item in select c from jsonb_array_elements(coalesce(v_obj -> 'components', '[]')) c loop
      if jsonb_typeof(v_item) <> 'object' or coalesce(jsonb_typeof(v_item -> 'parameters'), 'array') <> 'array' then
        return 'each template component must be an object with a parameters array';
      end if;
      for v_param in select p from jsonb_array_elements(coalesce(v_item -> 'parameters', '[]')) p loop
        v_problem := case
          when jsonb_typeof(v_param) <> 'object' then 'each template parameter must be an object'
          when v_param ->> 'type' in ('image', 'video', 'document')
            then private.wa_media_problem(v_param -> (v_param ->> 'type'), 'template parameter ' || (v_param ->> 'type'))
          when lower(v_item ->> 'type') = 'header'
            then private.wa_text_problem(v_param, 'text', 'template header parameter text', 60, false)
          when lower(v_item ->> 'type') = 'body'
            then private.wa_text_problem(v_param, 'text', 'template body parameter text',
                   case when jsonb_array_length(v_obj -> 'components') = 1 then 32768 else 1024 end, false)
          when lower(v_item ->> 'type') = 'button'
            then coalesce(private.wa_text_problem(v_param, 'payload', 'template button payload', 128, false),
                          private.wa_text_problem(v_param, 'text', 'template button parameter text', 2000, false))
        end;
        if v_problem is not null then return v_problem; end if;
      end loop;
    end loop;
    return null;
  when 'interactive' then
    if v_obj ->> 'type' not in ('button', 'list', 'cta_url', 'flow') or v_obj ->> 'type' is null then
      return 'interactive.type must be button, list, cta_url or flow';
    end if;
    v_problem := coalesce(
      private.wa_text_problem(v_obj -> 'body', 'text', 'interactive.body.text',
                              case when v_obj ->> 'type' = 'list' then 4096 else 1024 end),
      private.wa_text_problem(v_obj -> 'footer', 'text', 'interactive.footer.text', 60, v_obj ? 'footer'),
      case when not v_obj ? 'header' then null
           when v_obj -> 'header' ->> 'type' = 'text'
           then private.wa_text_problem(v_obj -> 'header', 'text', 'interactive.header.text', 60)
           when v_obj -> 'header' ->> 'type' in ('image', 'video', 'document') and v_obj ->> 'type' <> 'list'
           then private.wa_media_problem(v_obj -> 'header' -> (v_obj -> 'header' ->> 'type'),
                                         'interactive.header.' || (v_obj -> 'header' ->> 'type'))
           else 'interactive.header must be text' || case when v_obj ->> 'type' = 'list' then '' else ', image, video or document' end
      end,
      case when jsonb_typeof(v_obj -> 'action') is distinct from 'object' then 'interactive.action is required' end);
    if v_problem is not null then return v_problem; end if;
    if v_obj ->> 'type' = 'flow' then  -- a WhatsApp Flow (Meta's forms), answered by an nfm_reply
      return coalesce(
        case when v_obj -> 'action' ->> 'name' is distinct from 'flow' then 'interactive.action.name must be flow' end,
        private.wa_text_problem(v_obj -> 'action' -> 'parameters', 'flow_id', 'interactive.action.parameters.flow_id', 200),
        private.wa_text_problem(v_obj -> 'action' -> 'parameters', 'flow_cta', 'interactive.action.parameters.flow_cta',
                                20));
    elsif v_obj ->> 'type' = 'cta_url' then
      return coalesce(
        case when v_obj -> 'action' ->> 'name' is distinct from 'cta_url' then 'interactive.action.name must be cta_url' end,
        private.wa_text_problem(v_obj -> 'action' -> 'parameters', 'display_text',
                                'interactive.action.parameters.display_text', 20),
        case when coalesce(v_obj -> 'action' -> 'parameters' ->> 'url', '') !~ '^https?://[^\s/?#]+[^\s]*$'
                  or length(v_obj -> 'action' -> 'parameters' ->> 'url') > 2000
             then 'interactive.action.parameters.url must be an http(s) URL of at most 2000 characters' end);
    elsif v_obj ->> 'type' = 'button' then
      if jsonb_typeof(v_obj -> 'action' -> 'buttons') is distinct from 'array'
         or jsonb_array_length(v_obj -> 'action' -> 'buttons') not between 1 and 3 then
        return 'interactive.action.buttons holds 1 to 3 reply buttons';
      end if;
      for v_item in select b from jsonb_array_elements(v_obj -> 'action' -> 'buttons') b loop
        v_problem := coalesce(
          case when v_item ->> 'type' is distinct from 'reply' then 'each button must be {"type": "reply", "reply": {id, title}}' end,
          private.wa_text_problem(v_item -> 'reply', 'id', 'button reply.id', 256),
          private.wa_text_problem(v_item -> 'reply', 'title', 'button reply.title', 20));
        if v_problem is not null then return v_problem; end if;
      end loop;
      if (select count(distinct b -> 'reply' ->> 'title') <> count(*) or count(distinct b -> 'reply' ->> 'id') <> count(*)
            from jsonb_array_elements(v_obj -> 'action' -> 'buttons') b) then
        return 'button titles and ids must be unique';
      end if;
    else  -- list
      v_problem := private.wa_text_problem(v_obj -> 'action', 'button', 'interactive.action.button', 20);
      if v_problem is not null then return v_problem; end if;
      if jsonb_typeof(v_obj -> 'action' -> 'sections') is distinct from 'array'
         or jsonb_array_length(v_obj -> 'action' -> 'sections') not between 1 and 10 then
        return 'interactive.action.sections holds 1 to 10 sections';
      end if;
      v_rows := '[]';
      for v_item in select x from jsonb_array_elements(v_obj -> 'action' -> 'sections') x loop
        v_problem := coalesce(
          case when jsonb_typeof(v_item -> 'rows') is distinct from 'array' or jsonb_array_length(v_item -> 'rows') = 0
               then 'each list section needs rows' end,
          private.wa_text_problem(v_item, 'title', 'section title', 24,
                                  jsonb_array_length(v_obj -> 'action' -> 'sections') > 1));
        if v_problem is not null then return v_problem; end if;
        v_rows := v_rows || (v_item -> 'rows');
      end loop;
      if jsonb_array_length(v_rows) > 10 then
        return 'a list holds at most 10 rows in total (got ' || jsonb_array_length(v_rows) || ')';
      end if;
      for v_item in select r from jsonb_array_elements(v_rows) r loop
        v_problem := coalesce(
          private.wa_text_problem(v_item, 'id', 'row id', 200),
          private.wa_text_problem(v_item, 'title', 'row title', 24),
          private.wa_text_problem(v_item, 'description', 'row description', 72, false));
        if v_problem is not null then return v_problem; end if;
      end loop;
      if (select count(distinct r ->> 'id') <> count(*) from jsonb_array_elements(v_rows) r) then
        return 'row ids must be unique';
      end if;
    end if;
    return null;
  else
    return null;  -- queue_outbound refuses unknown types itself
  end case;
end;
$$;

/**
 * ----
 * Section - Outbound queue
 * ----
 */

-- Queue an outbound message in a conversation after every rule that protects the tenant's
-- number: a known message type within WhatsApp's limits, a reachable contact (not blocked, not opted out, not
-- anonymised), the 24 h window for anything but an approved template.
create or replace function private.queue_outbound(
  conv public.conversations, message jsonb, sender_type text, sender_member_id uuid default null,
  reply_to_message_id uuid default null, ai jsonb default null
) returns public.messages
language plpgsql
set search_path = ''
as $$
declare
  v_type text := message ->> 'type';
  v_contact public.contacts;
  v_number public.whatsapp_numbers;
  v_content text;
  v_reply_wamid text;
  v_problem text;
  v_row public.messages;
begin
  if v_type is null or v_type not in ('text', 'template', 'interactive', 'image', 'audio', 'video', 'document',
                                      'sticker', 'location', 'contacts', 'reaction') then
    raise exception 'unknown message type "%"', coalesce(v_type, '')
      using errcode = '22023',
            hint = 'Use text, template, interactive, image, audio, video, document, sticker, location, contacts or reaction.';
  end if;
  if jsonb_typeof(message -> v_type) is distinct from (case when v_type = 'contacts' then 'array' else 'object' end) then
    raise exception 'a "%" message needs its "%" object', v_type, v_type using errcode = '22023';
  end if;
  v_problem := private.outbound_problem(message);
  if v_problem is not null then
    raise exception '%', v_problem using errcode = '22023';
  end if;
  select * into v_number from public.whatsapp_numbers n
   where n.tenant_id = conv.tenant_id and n.id = conv.whatsapp_number_id;
  if v_number.id is null or v_number.status = 'disabled' then
    raise exception 'this conversation has no active WhatsApp number to send from' using errcode = '55000';
  end if;
  select * into v_contact from public.contacts c where c.tenant_id = conv.tenant_id and c.id = conv.contact_id;
  if v_contact.is_blocked then
    raise exception 'this contact is blocked: unblock them before sending' using errcode = '55000';
  end if;
  if not v_contact.opt_in then
    raise exception 'this contact opted out of messages on %', coalesce(v_contact.opt_out_at::text, 'an earlier date')
      using errcode = '55000';
  end if;
  if v_contact.lgpd_state <> 'active' then
    raise exception 'this contact asked for their data to be deleted (LGPD): nothing can be sent'
      using errcode = '55000';
  end if;
  if v_type = 'template' then
    if not exists (
      select 1 from public.message_templates t
       where t.tenant_id = conv.tenant_id and t.name = message -> 'template' ->> 'name'
         and t.language = message -> 'template' -> 'language' ->> 'code'
         and t.status = 'APPROVED' and t.is_active
         and (t.waba_id is null or v_number.waba_id is null or t.waba_id = v_number.waba_id)
    ) then
      raise exception 'template "%" (%) is not approved for this number',
        message -> 'template' ->> 'name', coalesce(message -> 'template' -> 'language' ->> 'code', 'no language')
        using errcode = '55000', hint = 'Sync templates with Meta and use an APPROVED one.';
    end if;
  elsif conv.window_expires_at is null or conv.window_expires_at <= now() then
    raise exception 'the 24-hour customer service window of this conversation is closed (last customer message: %)',
      coalesce(to_char(conv.last_customer_message_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI "UTC"'), 'never')
      using errcode = '55000',
            hint = 'Outside the window WhatsApp only delivers approved templates: send a message of type "template".';
  end if;
  if queue_outbound.reply_to_message_id is not null then
    select m.wamid into v_reply_wamid from public.messages m
     where m.tenant_id = conv.tenant_id and m.id = queue_outbound.reply_to_message_id and m.conversation_id = conv.id;
  end if;

  v_content := private.outbound_content(message);
  insert into public.messages (tenant_id, conversation_id, contact_id, whatsapp_number_id, direction, sender_type,
    sender_member_id, type, content, content_masked, payload, reply_to_message_id, reply_to_wamid, status,
    next_attempt_at, ai_model, ai_input_tokens, ai_output_tokens, ai_latency_ms, intent, created_at)
  values (conv.tenant_id, conv.id, conv.contact_id, conv.whatsapp_number_id, 'outbound', queue_outbound.sender_type,
    queue_outbound.sender_member_id, v_type, v_content, private.mask_pii(v_content), message,
    case when v_reply_wamid is not null then queue_outbound.reply_to_message_id end, v_reply_wamid, 'queued', now(),
    ai ->> 'model', (ai ->> 'input_tokens')::integer, (ai ->> 'output_tokens')::integer,
    (ai ->> 'latency_ms')::integer, ai ->> 'intent', clock_timestamp())  -- replies of one turn keep their order
  returning * into v_row;

  update public.conversations c
     set message_count = c.message_count + 1,
         outbound_count = c.outbound_count + 1,
         last_message_at = greatest(c.last_message_at, now()),
         last_message_preview = left(coalesce(v_content, '[' || v_type || ']'), 200),
         last_message_direction = 'outbound',
         first_response_at = coalesce(c.first_response_at, now()),
         unread_count = case when queue_outbound.sender_type = 'agent' then 0 else c.unread_count end,
         -- an agent who writes takes the conversation over from the bot or the queue
         mode = case when queue_outbound.sender_type = 'agent' then 'human' else c.mode end,
         assignee_id = case when queue_outbound.sender_type = 'agent'
                            then coalesce(c.assignee_id, queue_outbound.sender_member_id) else c.assignee_id end,
         assigned_at = case when queue_outbound.sender_type = 'agent' and c.assignee_id is null then now()
                            else c.assigned_at end,
         handoff_at = case when queue_outbound.sender_type = 'agent' and c.mode <> 'human' then now()
                           else c.handoff_at end,
         status = case when c.status = 'pending' and queue_outbound.sender_type = 'agent' then 'open' else c.status end
   where c.id = conv.id;
  update public.contacts c
     set total_messages = c.total_messages + 1, last_message_at = greatest(c.last_message_at, now())
   where c.id = conv.contact_id;
  perform pg_notify('zapbase_outbound', v_number.id::text);
  return v_row;
end;
$$;

-- Worker: queue a bot (or system, campaign) reply, with the AI figures of the answer.
create or replace function public.whatsapp_queue_reply(
  conversation_id uuid, message jsonb, sender_type text default 'bot', reply_to_message_id uuid default null,
  ai jsonb default null
) returns public.messages
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_conv public.conversations;
begin
  if whatsapp_queue_reply.sender_type not in ('bot', 'system', 'campaign') then
    raise exception 'sender_type must be bot, system or campaign' using errcode = '22023';
  end if;
  select * into v_conv from public.conversations c where c.id = whatsapp_queue_reply.conversation_id;
  if v_conv.id is null then
    raise exception 'conversation % not found', whatsapp_queue_reply.conversation_id using errcode = 'P0002';
  end if;
  return private.queue_outbound(v_conv, whatsapp_queue_reply.message, whatsapp_queue_reply.sender_type, null,
                                whatsapp_queue_reply.reply_to_message_id, whatsapp_queue_reply.ai);
end;
$$;
comment on function public.whatsapp_queue_reply(uuid, jsonb, text, uuid, jsonb) is 'Worker: queue a bot / system / campaign message under the same rules as agents.';

-- Worker: claim outbound messages to send. Per number, at most throughput_mps per second
-- (numbers are locked, so replicas share the budget); per contact, one message in flight at
-- a time and in order (WhatsApp does not keep the order of concurrent sends, and the pair
-- limit is 1 message / 6 s). A lease that expired without a wamid returns the row to the queue.
-- A number is locked only when messages are taken from it, so concurrent claims spread over
-- the numbers with a backlog instead of queueing behind the first.
create or replace function public.whatsapp_claim_outbound(
  worker text, batch_size integer default 50, lease_seconds integer default 60
) returns table (
  message_id uuid, tenant_id uuid, conversation_id uuid, whatsapp_number_id uuid, phone_number_id text,
  access_token text, to_wa_id text, to_user_id text, payload jsonb, reply_to_wamid text, attempts integer
)
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_number_id uuid;
  v_number public.whatsapp_numbers;
  v_capacity integer;
  v_wanted integer;
  v_window integer;
  v_scanned integer;
  v_ids uuid[];
  v_left integer := batch_size;
begin
  for v_number_id in
    -- the numbers with a backlog, skipping along the queue index: one probe per number,
    -- however many messages wait; least recently served first
    with recursive busy(id) as (
      (select m.whatsapp_number_id from public.messages m
        where m.status in ('queued', 'sending') and m.whatsapp_number_id is not null
        order by m.whatsapp_number_id limit 1)
      union all
      select (select m.whatsapp_number_id from public.messages m
               where m.status in ('queued', 'sending') and m.whatsapp_number_id > b.id
               order by m.whatsapp_number_id limit 1)
        from busy b where b.id is not null
    )
    select n.id from public.whatsapp_numbers n
     where n.id in (select b.id from busy b) and n.status <> 'disabled'
     order by n.send_window_start nulls first
  loop
    exit when v_left <= 0;
    -- not FOR UPDATE: the key-share locks every ingest and queued message take on their
    -- number (foreign keys) would make the sender skip a busy number
    select * into v_number from public.whatsapp_numbers n
     where n.id = v_number_id and n.status <> 'disabled'
       for no key update skip locked;
    continue when v_number.id is null;
    v_capacity := v_number.throughput_mps - case when v_number.send_window_start > now() - interval '1 second'
                                                 then v_number.send_window_count else 0 end;
    continue when v_capacity <= 0;
    v_wanted := least(v_capacity, v_left);
    -- a contact's head is its oldest unsent message (queued or in flight): the first of the
    -- contact along the number's queue. Read from the head of the queue index in growing
    -- windows (ties of created_at kept whole), the cost follows what is claimed and what waits
    -- before it, and one plan fits every table statistics
    v_window := 4 * v_wanted;
    loop
      select (array_agg(p.id order by p.created_at, p.id)
                filter (where p.nth = 1 and ((p.status = 'queued' and coalesce(p.next_attempt_at, p.created_at) <= now())
                                             or (p.status = 'sending' and p.lease_until < now()))))[1:v_wanted],
             count(*)
        into v_ids, v_scanned
        from (select q.id, q.created_at, q.status, q.next_attempt_at, q.lease_until,
                     row_number() over (partition by q.contact_id order by q.created_at, q.id) as nth
                from (select m.id, m.contact_id, m.created_at, m.status, m.next_attempt_at, m.lease_until
                        from public.messages m
                       where m.whatsapp_number_id = v_number.id and m.status in ('queued', 'sending')
                       order by m.created_at
                       fetch first v_window rows with ties) q) p;
      exit when coalesce(cardinality(v_ids), 0) >= v_wanted or v_scanned < v_window;
      v_window := v_window * 4;
    end loop;
    continue when v_ids is null;
    update public.messages m
       set status = 'sending', lease_until = now() + make_interval(secs => lease_seconds),
           leased_by = worker, attempts = m.attempts + 1
     where m.id = any(v_ids);
    update public.whatsapp_numbers n
       set send_window_start = case when n.send_window_start > now() - interval '1 second'
                                    then n.send_window_start else now() end,
           send_window_count = case when n.send_window_start > now() - interval '1 second'
                                    then n.send_window_count else 0 end + cardinality(v_ids)
     where n.id = v_number.id;
    v_left := v_left - cardinality(v_ids);
    return query
      select m.id, m.tenant_id, m.conversation_id, m.whatsapp_number_id, v_number.phone_number_id, t.token,
             c.wa_id, c.user_id, m.payload, m.reply_to_wamid, m.attempts
        from public.messages m
        join public.contacts c on c.tenant_id = m.tenant_id and c.id = m.contact_id
        -- decrypted once per number, not per message
        cross join (select private.vault_secret(v_number.access_token_secret_id,
                                                'whatsapp_number:' || v_number.id || ':access_token') as token
                     offset 0) t
       where m.id = any(v_ids)
       order by m.created_at;
  end loop;
end;
$$;
comment on function public.whatsapp_claim_outbound(text, integer, integer) is 'Worker: claim queued messages within each number''s throughput, one in flight per contact, with a lease.';

-- Record the wamids Meta returned for outbound rows (message_ids[i] got wamids[i]) and apply
-- the status webhooks that came before them, in one statement each however many rows. The
-- caller holds the wamids' locks (see lock_wamids). Idempotent. Returns the rows recorded.
drop function if exists private.record_sent(uuid, text);  -- one row at a time, before batches
create or replace function private.record_sent(message_ids uuid[], wamids text[])
returns setof uuid
language plpgsql
set search_path = ''
as $$
declare
  v_ids uuid[];
  v_tenants uuid[];
  v_wamids text[];
  v_event public.message_status_events;
begin
  if cardinality(message_ids) is distinct from cardinality(wamids) then
    raise exception 'one wamid per message id (% ids, % wamids)', cardinality(message_ids), cardinality(wamids)
      using errcode = '22023';
  end if;
  with sent as (
    update public.messages m
       set wamid = s.wamid,
           status = case when private.outbound_rank(m.status) < private.outbound_rank('sent') then 'sent' else m.status end,
           sent_at = coalesce(m.sent_at, now()), lease_until = null, leased_by = null,
           error_code = null, error_title = null, error_details = null, next_attempt_at = null
      from unnest(record_sent.message_ids, record_sent.wamids) s(id, wamid)
     where m.id = any(record_sent.message_ids) and m.id = s.id and m.direction = 'outbound'
    returning m.id, m.tenant_id, s.wamid
  )
  select array_agg(sent.id), array_agg(sent.tenant_id), array_agg(sent.wamid) into v_ids, v_tenants, v_wamids
    from sent;
  if v_ids is null then
    return;
  end if;
  for v_event in
    update public.message_status_events e set message_id = s.id
      from unnest(v_ids, v_tenants, v_wamids) s(id, tenant_id, wamid)
     where e.wamid = any(v_wamids) and e.tenant_id = s.tenant_id and e.wamid = s.wamid and e.message_id is null
    returning e.*
  loop
    perform private.apply_status(v_event.message_id, v_event.status, v_event.occurred_at,
      case when v_event.error_code is not null then jsonb_build_object('code', v_event.error_code,
        'title', v_event.error_title, 'error_data', jsonb_build_object('details', v_event.error_details)) end,
      v_event.pricing);
  end loop;
  return query select unnest(v_ids);
end;
$$;

-- Worker: the Graph API accepted the message. Status webhooks that arrived before the
-- wamid was known are adopted now. Idempotent.
create or replace function public.whatsapp_mark_sent(message_id uuid, wamid text)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.lock_wamids(array[whatsapp_mark_sent.wamid], true);  -- first: see lock_wamids
  if not exists (select from private.record_sent(array[whatsapp_mark_sent.message_id],
                                                 array[whatsapp_mark_sent.wamid])) then
    raise exception 'outbound message % not found', whatsapp_mark_sent.message_id using errcode = 'P0002';
  end if;
end;
$$;
comment on function public.whatsapp_mark_sent(uuid, text) is 'Worker: record the wamid Meta returned; adopts status webhooks that came first.';

-- Worker: whatsapp_mark_sent for the sends whose Graph answers came together
-- (message_ids[i] got wamids[i]), in one transaction. Returns the rows recorded: an id
-- missing from it names no outbound row.
create or replace function public.whatsapp_mark_sent_many(message_ids uuid[], wamids text[])
returns setof uuid
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.lock_wamids(whatsapp_mark_sent_many.wamids, true);  -- first: see lock_wamids
  return query select private.record_sent(whatsapp_mark_sent_many.message_ids, whatsapp_mark_sent_many.wamids);
end;
$$;
comment on function public.whatsapp_mark_sent_many(uuid[], text[]) is 'Worker: record the wamids Meta returned for several sends at once (message_ids[i] got wamids[i]); returns the rows recorded.';

-- A status webhook for a wamid no row holds yet, whose biz_opaque_callback_data (the
-- sender puts the row id there; Meta echoes it in every status) names an outbound row of
-- the tenant still unsent: Meta accepted that row's send but the sender never recorded it
-- (it died, or got no answer). The wamid is recorded as whatsapp_mark_sent does, which also
-- applies the waiting status, so the row is not sent a second time. The ingest already holds
-- the wamid's lock shared (taking it exclusively here could deadlock two bodies): a sender
-- recording the same wamid waits for this commit and just repeats it. Returns the row, or null.
create or replace function private.adopt_unrecorded_send(tenant_id uuid, wamid text, callback_data text)
returns uuid
language plpgsql
set search_path = ''
as $$
declare
  v_id uuid;
begin
  if coalesce(callback_data, '') !~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' then
    return null;  -- not ours (another app on the number may set its own)
  end if;
  select m.id into v_id from public.messages m
   where m.tenant_id = adopt_unrecorded_send.tenant_id and m.id = callback_data::uuid and m.direction = 'outbound'
     and ((m.wamid is null and m.status in ('queued', 'sending')) or m.wamid = adopt_unrecorded_send.wamid)
     for update;
  if v_id is not null then
    perform private.record_sent(array[v_id], array[adopt_unrecorded_send.wamid]);
  end if;
  return v_id;
end;
$$;
comment on function private.adopt_unrecorded_send(uuid, text, text) is 'Record on the outbound row named by a status''s biz_opaque_callback_data the wamid its sender never stored (queued or sending, no wamid yet); returns the row or null.';

-- Worker: the send failed. Retryable errors (throughput 130429, pair limit 131056, 5xx,
-- timeouts) go back to the queue after a backoff until max_attempts; the rest fail with
-- Meta's code, title and details for the agent to see.
create or replace function public.whatsapp_mark_send_failed(
  message_id uuid, error_code integer, error_title text, error_details text default null,
  retryable boolean default false, retry_after_seconds numeric default null
) returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_status text;
begin
  update public.messages m
     set status = case when retryable and m.attempts < m.max_attempts then 'queued' else 'failed' end,
         next_attempt_at = case when retryable and m.attempts < m.max_attempts
           then now() + make_interval(secs => coalesce(retry_after_seconds, least(2 ^ m.attempts, 300)::numeric))
         end,
         failed_at = case when retryable and m.attempts < m.max_attempts then null else now() end,
         error_code = whatsapp_mark_send_failed.error_code,
         error_title = left(whatsapp_mark_send_failed.error_title, 500),
         error_details = left(whatsapp_mark_send_failed.error_details, 2000),
         lease_until = null, leased_by = null
   where m.id = whatsapp_mark_send_failed.message_id and m.direction = 'outbound' and m.wamid is null
  returning m.status into v_status;
  if v_status is null then
    raise exception 'unsent outbound message % not found', whatsapp_mark_send_failed.message_id
      using errcode = 'P0002';
  end if;
  return v_status;
end;
$$;
comment on function public.whatsapp_mark_send_failed(uuid, integer, text, text, boolean, numeric) is 'Worker: requeue with backoff (retryable, until max_attempts) or fail with Meta''s error; returns queued or failed.';

-- Worker: a send failed in a way only the tenant can fix (token expired, account restricted).
create or replace function public.whatsapp_alert_send_failure(message_id uuid, error jsonb, title text,
                                                              message text)
returns void
language sql
security definer
set search_path = ''
as $$
  select private.number_alert(m.tenant_id, m.whatsapp_number_id, whatsapp_alert_send_failure.error, 'critical',
                              whatsapp_alert_send_failure.title, whatsapp_alert_send_failure.message,
                              jsonb_build_object('message_id', m.id))
    from public.messages m
   where m.id = whatsapp_alert_send_failure.message_id and m.whatsapp_number_id is not null
$$;
comment on function public.whatsapp_alert_send_failure(uuid, jsonb, text, text) is 'Worker: the tenant''s alert (one per number, Meta code and day) for a send failure it must fix.';

-- Withdraw outbound messages no worker has claimed yet (e.g. of a cancelled campaign): they
-- become cancelled with the reason. A claimed one (sending) may already be at Meta and stays.
-- Their numbers are locked first, as whatsapp_claim_outbound locks them, so a claim never
-- takes a message being withdrawn. Callers check the tenant.
create or replace function private.withdraw_outbound(message_ids uuid[], reason text)
returns setof uuid
language plpgsql
set search_path = ''
as $$
begin
  perform 1 from public.whatsapp_numbers n
   where n.id in (select m.whatsapp_number_id from public.messages m where m.id = any(withdraw_outbound.message_ids))
   order by n.id
     for no key update of n;
  return query
    update public.messages m
       set status = 'cancelled', error_code = null, error_title = left(withdraw_outbound.reason, 500),
           next_attempt_at = null
     where m.id = any(withdraw_outbound.message_ids) and m.direction = 'outbound' and m.status = 'queued'
    returning m.id;
end;
$$;
comment on function private.withdraw_outbound(uuid[], text) is 'Cancel the given outbound messages still queued (unclaimed), with the reason; returns those withdrawn.';

/**
 * ----
 * Section - Inbound processing queue
 * ----
 */

-- Claim new inbound messages to process: the oldest unprocessed message of each
-- conversation, one at a time per conversation so replies keep their order; SKIP LOCKED
-- lets any number of replicas claim side by side; an expired lease is claimed again.
create or replace function public.whatsapp_claim_inbound(
  worker text, batch_size integer default 20, lease_seconds integer default 120
) returns table (
  message_id uuid, tenant_id uuid, conversation_id uuid, contact_id uuid, whatsapp_number_id uuid,
  phone_number_id text, access_token text, wamid text, type text, content text, payload jsonb, media_id text,
  media_mime_type text, is_voice boolean, interactive_reply_id text, conversation_mode text, bot_id uuid,
  wa_id text, user_id text, profile_name text, attempts integer, may_reply boolean
)
language sql
security definer
set search_path = ''
as $$
  with heads as (
    select distinct on (m.conversation_id) m.id, m.status, m.lease_until
      from public.messages m
     where m.status in ('received', 'processing')
     order by m.conversation_id, m.created_at, m.id
  ), picked as (
    select m.id from public.messages m join heads h on h.id = m.id
     where (h.status = 'received' or h.lease_until < now())
       -- re-checked on the locked row: another replica may have claimed it since the snapshot
       and (m.status = 'received' or (m.status = 'processing' and m.lease_until < now()))
     order by m.created_at
     limit batch_size
     for update of m skip locked
  ), claimed as (
    update public.messages m
       set status = 'processing', lease_until = now() + make_interval(secs => lease_seconds),
           leased_by = worker, attempts = m.attempts + 1
      from picked p where m.id = p.id
    returning m.*
  )
  select m.id, m.tenant_id, m.conversation_id, m.contact_id, m.whatsapp_number_id, n.phone_number_id,
         private.vault_secret(n.access_token_secret_id, 'whatsapp_number:' || n.id || ':access_token'), m.wamid, m.type, m.content, m.payload, m.media_id, m.media_mime_type, m.is_voice,
         m.interactive_reply_id, c.mode, c.bot_id, k.wa_id, k.user_id, k.profile_name, m.attempts,
         -- what queue_outbound would refuse: a bot does not answer (nor spend AI on) them
         not k.is_blocked and k.opt_in and k.lgpd_state = 'active'
    from claimed m
    join public.conversations c on c.tenant_id = m.tenant_id and c.id = m.conversation_id
    join public.contacts k on k.tenant_id = m.tenant_id and k.id = m.contact_id
    left join public.whatsapp_numbers n on n.tenant_id = m.tenant_id and n.id = m.whatsapp_number_id
   order by m.created_at
$$;
comment on function public.whatsapp_claim_inbound(text, integer, integer) is 'Worker: claim new inbound messages (oldest per conversation, SKIP LOCKED, leased); may_reply is false for a contact nothing may be sent to (blocked, opted out, anonymised).';

-- Worker: done with an inbound message (processed, ignored, or failed with the reason).
create or replace function public.whatsapp_finish_inbound(message_id uuid, status text default 'processed',
                                                          error text default null)
returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if whatsapp_finish_inbound.status not in ('processed', 'ignored', 'failed') then
    raise exception 'status must be processed, ignored or failed' using errcode = '22023';
  end if;
  update public.messages m
     set status = whatsapp_finish_inbound.status, lease_until = null, leased_by = null,
         error_details = left(whatsapp_finish_inbound.error, 2000)
   where m.id = whatsapp_finish_inbound.message_id and m.direction = 'inbound';
end;
$$;
comment on function public.whatsapp_finish_inbound(uuid, text, text) is 'Worker: mark a claimed inbound message processed, ignored or failed.';

-- Worker: processing a claimed message failed. Before max_attempts it stays claimed under
-- a short lease (attempt 1 → 2 s, attempt 2 → 8 s) and is claimed again when that runs out;
-- at max_attempts it fails with the reason. Only the worker holding the lease settles it.
create or replace function public.whatsapp_fail_inbound(message_id uuid, worker text, error text,
                                                        max_attempts integer default 3)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_outcome text;
begin
  update public.messages m
     set status = case when m.attempts < whatsapp_fail_inbound.max_attempts then 'processing' else 'failed' end,
         lease_until = case when m.attempts < whatsapp_fail_inbound.max_attempts
                            then now() + make_interval(secs => 2 ^ (2 * m.attempts - 1)) end,
         leased_by = case when m.attempts < whatsapp_fail_inbound.max_attempts then m.leased_by end,
         error_details = left(whatsapp_fail_inbound.error, 2000)
   where m.id = whatsapp_fail_inbound.message_id and m.direction = 'inbound' and m.status = 'processing'
     and m.leased_by = whatsapp_fail_inbound.worker
  returning case when m.status = 'failed' then 'failed' else 'retry' end into v_outcome;
  return v_outcome;
end;
$$;
comment on function public.whatsapp_fail_inbound(uuid, text, text, integer) is 'Worker: a claimed inbound message failed: retry under a short lease until max_attempts, then failed; returns retry or failed, null when the lease is no longer the worker''s.';

/**
 * ----
 * Section - Grants
 * ----
 */
revoke execute on all functions in schema private from public, anon;
revoke execute on function public.whatsapp_queue_reply(uuid, jsonb, text, uuid, jsonb),
  public.whatsapp_claim_outbound(text, integer, integer), public.whatsapp_mark_sent(uuid, text),
  public.whatsapp_mark_sent_many(uuid[], text[]),
  public.whatsapp_mark_send_failed(uuid, integer, text, text, boolean, numeric),
  public.whatsapp_alert_send_failure(uuid, jsonb, text, text),
  public.whatsapp_claim_inbound(text, integer, integer), public.whatsapp_finish_inbound(uuid, text, text),
  public.whatsapp_fail_inbound(uuid, text, text, integer)
  from public, anon, authenticated;
grant execute on function public.whatsapp_queue_reply(uuid, jsonb, text, uuid, jsonb),
  public.whatsapp_claim_outbound(text, integer, integer), public.whatsapp_mark_sent(uuid, text),
  public.whatsapp_mark_sent_many(uuid[], text[]),
  public.whatsapp_mark_send_failed(uuid, integer, text, text, boolean, numeric),
  public.whatsapp_alert_send_failure(uuid, jsonb, text, text),
  public.whatsapp_claim_inbound(text, integer, integer), public.whatsapp_finish_inbound(uuid, text, text),
  public.whatsapp_fail_inbound(uuid, text, text, integer)
  to service_role;
