/**
 * Zapbase module 3: whatsapp.
 * The WhatsApp channel in Postgres: numbers (seed 001), contacts (000 users, 001 contacts,
 * 002 clientes_whatsapp), tags, conversations with the 4 h session rule and the 24 h
 * customer-service window, messages with their status lifecycle, status events, the AI
 * session memory (000 session_context), templates and the raw webhook events. Opt-in and
 * consent belong to the customer: they change only through an append-only history (the
 * customer's own STOP / START words, or a request the tenant documents).
 *
 * The whole meaning of a Meta webhook is applied by `whatsapp_ingest`, the next module
 * (whatsapp_ingest), so the worker's HTTP route and the edge function stay thin and
 * identical. The worker's message queues (outbound and inbound) are the next module, whatsapp_queues; what agents
 * do in the inbox (send, start, hand off, read, record consent; quick replies, greetings)
 * is the inbox module.
 *
 * Who may do what:
 *   every member  reads the tenant's numbers (never their secrets), contacts and their consent
 *                 history, conversations, messages, templates
 *   agent         edits contacts (not their opt-in or consent), works conversations (status,
 *                 assignment, mode, priority, tags); when the tenant sets
 *                 restrict_agents_to_assigned, only conversations assigned to them or to one
 *                 of their teams
 *   manager       tags, templates
 *   admin         numbers and their secrets (through set_whatsapp_number_secret), raw events
 *   service role  ingest and everything the worker does
 */

/**
 * ----
 * Section - Tables
 * ----
 */

-- WhatsApp numbers (seed 001 whatsapp_numbers, 002 clients.meta_*).
create table if not exists public.whatsapp_numbers (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  phone_number text not null check (phone_number ~ '^\+[1-9][0-9]{6,14}$'),
  phone_number_id text not null unique check (phone_number_id ~ '^[0-9]{1,30}$'),
  waba_id text check (waba_id ~ '^[0-9]{1,30}$'),
  display_name text check (length(display_name) <= 120),
  status text not null default 'active' check (status in ('pending', 'active', 'disabled')),
  is_default boolean not null default false,
  quality_rating text check (quality_rating in ('GREEN', 'YELLOW', 'RED', 'UNKNOWN')),
  messaging_limit_tier text check (length(messaging_limit_tier) <= 40),
  throughput_mps integer not null default 80 check (throughput_mps between 1 and 1000),
  access_token_secret_id uuid,
  app_secret_secret_id uuid,
  verify_token_secret_id uuid,
  last_error jsonb,
  last_error_at timestamptz,
  settings jsonb not null default '{}'::jsonb,
  send_window_start timestamptz,
  send_window_count integer not null default 0,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, phone_number)
);
alter table public.whatsapp_numbers enable row level security;
create index if not exists whatsapp_numbers_waba_idx on public.whatsapp_numbers (waba_id);
comment on table public.whatsapp_numbers is 'A tenant''s WhatsApp Business numbers. phone_number_id routes every inbound webhook; secrets are Vault ids no frontend reads.';
comment on column public.whatsapp_numbers.phone_number_id is 'Meta''s id of the number: the global routing key of inbound webhooks.';
comment on column public.whatsapp_numbers.throughput_mps is 'Messages per second the sender may use (Meta: 80 by default, up to 1000).';
comment on column public.whatsapp_numbers.access_token_secret_id is 'Vault id of the Graph API access token.';
comment on column public.whatsapp_numbers.app_secret_secret_id is 'Vault id of the Meta app secret that signs webhooks (X-Hub-Signature-256).';
comment on column public.whatsapp_numbers.verify_token_secret_id is 'Vault id of the verify token of the webhook handshake.';
comment on column public.whatsapp_numbers.last_error is 'Last value.errors Meta reported for the number (e.g. 130429), with their time.';
comment on column public.whatsapp_numbers.send_window_start is 'Sender rate limit: start of the current one-second window.';
comment on column public.whatsapp_numbers.send_window_count is 'Sender rate limit: messages claimed in the current window.';

-- Contacts (seed 000 users, 001 contacts, 002 clientes_whatsapp, 003 alunos).
create table if not exists public.contacts (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  wa_id text check (wa_id ~ '^[0-9]{5,20}$'),
  user_id text check (length(user_id) <= 120),
  username text check (length(username) <= 120),
  pending_wa_id text check (pending_wa_id ~ '^[0-9]{5,20}$'),
  profile_name text check (length(profile_name) <= 256),
  name text check (length(name) <= 256),
  email text check (length(email) <= 254),
  phone text check (phone ~ '^\+[0-9]{5,20}$'),
  phone_hash text check (phone_hash ~ '^[0-9a-f]{64}$'),
  cpf text check (cpf ~ '^[0-9]{11}$'),
  company text check (length(company) <= 200),
  is_client boolean not null default false,
  ltv numeric(14,4) not null default 0,
  currency text not null default 'BRL' check (currency ~ '^[A-Z]{3}$'),
  tags text[] not null default '{}',
  attributes jsonb not null default '{}'::jsonb,
  consent boolean not null default false,
  consent_at timestamptz,
  opt_in boolean not null default true,
  opt_in_at timestamptz,
  opt_out_at timestamptz,
  is_blocked boolean not null default false,
  blocked_at timestamptz,
  lgpd_state text not null default 'active' check (lgpd_state in ('active', 'deletion_requested', 'anonymised')),
  lgpd_requested_at timestamptz,
  anonymised_at timestamptz,
  first_referral jsonb,
  last_message_at timestamptz,
  last_inbound_at timestamptz,
  total_conversations integer not null default 0,
  total_messages integer not null default 0,
  notes text check (length(notes) <= 10000),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, wa_id),
  unique (tenant_id, user_id),
  -- a buyer known only by e-mail or CPF (commerce: Hotmart) is a contact too, not yet reachable
  check (wa_id is not null or user_id is not null or email is not null or cpf is not null or lgpd_state = 'anonymised')
);
-- Every inbound message updates its contact's counters: no index on them (recent contacts
-- are listed through conversations_tenant_inbox_idx) and room on the page keep those
-- updates HOT, with no index entries to write.
alter table public.contacts set (fillfactor = 90);
alter table public.contacts enable row level security;
create index if not exists contacts_tenant_phone_hash_idx on public.contacts (tenant_id, phone_hash);
create index if not exists contacts_tags_idx on public.contacts using gin (tags);
create index if not exists contacts_pending_wa_id_idx on public.contacts (tenant_id, pending_wa_id)
  where pending_wa_id is not null;
comment on table public.contacts is 'People who talk to a tenant on WhatsApp (customers, leads, students), with LGPD consent and state.';
comment on column public.contacts.wa_id is 'WhatsApp id: the phone number in E.164 digits. Null for users known only by username.';
comment on column public.contacts.user_id is 'Business-scoped user id (BSUID, 2026), e.g. US.13491208655302741918: identifies username users.';
comment on column public.contacts.pending_wa_id is 'A number the contact announced in a user_changed_number (system message): replies keep going to wa_id until this number writes itself, which moves wa_id here (the old one goes to attributes.previous_wa_ids).';
comment on column public.contacts.phone_hash is 'private.phone_hash(wa_id): pseudonymous key for logs and analytics (seed 000).';
comment on column public.contacts.ltv is 'Lifetime value in currency, kept by the commerce module.';
comment on column public.contacts.opt_in is 'False once the contact opted out: nothing is sent to them. Derived from contact_consents, like opt_in_at, opt_out_at, consent and consent_at.';
comment on column public.contacts.consent is 'LGPD consent in force: the latest consent_given / consent_withdrawn of contact_consents.';
comment on column public.contacts.consent_at is 'When the latest consent_given was expressed (kept after a withdrawal, for the record).';
comment on column public.contacts.lgpd_state is 'active, deletion_requested (anonymisation job pending) or anonymised.';
comment on column public.contacts.first_referral is 'Click-to-WhatsApp ad of the first message (attribution).';
comment on column public.contacts.tags is 'Names of the contact''s tags, kept equal to contact_tags (agents tag and untag there; the API may not write this array) for segmentation filters.';

-- Tags (seed 001 tags, 003 tags).
create table if not exists public.tags (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  name text not null check (length(name) between 1 and 60),
  color text not null default '#3B82F6' check (color ~ '^#[0-9A-Fa-f]{6}$'),
  description text check (length(description) <= 500),
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, name)
);
alter table public.tags enable row level security;
comment on table public.tags is 'Named, coloured labels for contacts and conversations.';

-- Conversations (seed 000/001/002 conversations): a session between a contact and a number.
create table if not exists public.conversations (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  contact_id uuid not null,
  whatsapp_number_id uuid,
  channel text not null default 'whatsapp' check (channel in ('whatsapp', 'call', 'video', 'email')),
  status text not null default 'open'
    check (status in ('open', 'waiting', 'pending', 'resolved', 'closed', 'expired')),
  mode text not null default 'bot' check (mode in ('bot', 'flow', 'human')),
  bot_id uuid,
  team_id uuid,
  assignee_id uuid,
  assigned_at timestamptz,
  queued_at timestamptz,
  handoff_at timestamptz,
  handoff_reason text check (length(handoff_reason) <= 500),
  flow_id uuid,
  flow_node text check (length(flow_node) <= 120),
  flow_state jsonb not null default '{}'::jsonb,
  last_intent text check (length(last_intent) <= 100),
  last_customer_message_at timestamptz,
  window_expires_at timestamptz,
  first_message_at timestamptz,
  last_message_at timestamptz,
  last_message_preview text,
  last_message_direction text check (last_message_direction in ('inbound', 'outbound')),
  first_response_at timestamptz,
  message_count integer not null default 0,
  inbound_count integer not null default 0,
  outbound_count integer not null default 0,
  unread_count integer not null default 0,
  priority text not null default 'normal' check (priority in ('low', 'normal', 'high', 'urgent')),
  csat smallint check (csat between 1 and 5),
  csat_comment text check (length(csat_comment) <= 2000),
  csat_requested_at timestamptz,
  csat_answered_at timestamptz,
  snoozed_until timestamptz,
  tags text[] not null default '{}',
  referral jsonb,
  transcript text,
  resolved_at timestamptz,
  closed_at timestamptz,
  close_reason text check (close_reason in ('resolved', 'idle', 'agent', 'contact', 'system')),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  foreign key (tenant_id, contact_id) references public.contacts (tenant_id, id) on delete cascade,
  foreign key (tenant_id, whatsapp_number_id) references public.whatsapp_numbers (tenant_id, id)
    on delete set null (whatsapp_number_id),
  foreign key (tenant_id, team_id) references public.teams (tenant_id, id) on delete set null (team_id),
  foreign key (tenant_id, assignee_id) references public.members (tenant_id, id) on delete set null (assignee_id)
);
alter table public.conversations set (fillfactor = 90);
alter table public.conversations enable row level security;
-- One live conversation per contact and number: concurrent webhooks cannot open two.
create unique index if not exists conversations_one_live_idx
  on public.conversations (tenant_id, contact_id, whatsapp_number_id)
  where status in ('open', 'waiting', 'pending');
create index if not exists conversations_tenant_inbox_idx on public.conversations (tenant_id, status, last_message_at desc);
create index if not exists conversations_tenant_contact_idx on public.conversations (tenant_id, contact_id);
create index if not exists conversations_tenant_number_idx on public.conversations (tenant_id, whatsapp_number_id);
create index if not exists conversations_tenant_assignee_idx on public.conversations (tenant_id, assignee_id);
create index if not exists conversations_tenant_team_idx on public.conversations (tenant_id, team_id);
create index if not exists conversations_tenant_bot_idx on public.conversations (tenant_id, bot_id) where bot_id is not null;
create index if not exists conversations_tenant_flow_idx on public.conversations (tenant_id, flow_id) where flow_id is not null;
comment on table public.conversations is 'A session between a contact and a number (or a call / meeting, seed 004): mode bot/flow/human, queue and assignment, 24 h window, metrics.';
comment on column public.conversations.mode is 'Who answers: bot (AI), flow (interactive flow graph) or human (agents).';
comment on column public.conversations.status is 'open / waiting (for the customer) / pending (in a human queue) are live; resolved, closed and expired are final.';
comment on column public.conversations.window_expires_at is '24 h customer-service window: free-form messages may be sent until then; afterwards only approved templates.';
comment on column public.conversations.queued_at is 'When the conversation entered its team''s human queue (handoff, transfer to a team, or returned to the queue: then when the customer started waiting); kept after assignment.';
comment on column public.conversations.csat is 'The customer''s 1-5 rating, from their answer to the survey sent on resolve (written by ingest only).';
comment on column public.conversations.csat_requested_at is 'When the 1-5 survey was sent (resolve_conversation); an answer is taken while csat is null.';
comment on column public.conversations.csat_answered_at is 'When the customer''s rating arrived.';
comment on column public.conversations.snoozed_until is 'Snoozed by an agent: hidden as waiting until then (or until the customer writes), then open again.';
comment on column public.conversations.last_message_preview is 'First 200 characters of the last message, for the inbox list.';
comment on column public.conversations.unread_count is 'Inbound messages since an agent last read the conversation.';
comment on column public.conversations.transcript is 'Transcript of a call or meeting (channel call/video, seed 004).';
comment on column public.conversations.referral is 'Click-to-WhatsApp ad that started the conversation (attribution).';
comment on column public.conversations.bot_id is 'The bot answering in bot mode (FK added by the automation module).';
comment on column public.conversations.flow_id is 'The flow running in flow mode (FK added by the automation module).';

-- Messages (seed 000/001/002 messages, 001 Mongo message_logs, 003 logs_disparo).
create table if not exists public.messages (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  conversation_id uuid not null,
  contact_id uuid not null,
  whatsapp_number_id uuid,
  direction text not null check (direction in ('inbound', 'outbound', 'internal')),
  sender_type text not null check (sender_type in ('contact', 'bot', 'agent', 'system', 'campaign')),
  sender_member_id uuid,
  wamid text check (length(wamid) <= 200),
  type text not null check (type in ('text', 'image', 'audio', 'video', 'document', 'sticker', 'location',
    'contacts', 'interactive', 'button', 'order', 'system', 'template', 'reaction', 'unsupported', 'unknown',
    'note')),
  content text check (length(content) <= 3145728),
  content_masked text,
  payload jsonb not null default '{}'::jsonb,
  media_id text check (length(media_id) <= 200),
  media_mime_type text check (length(media_mime_type) <= 200),
  media_sha256 text check (length(media_sha256) <= 200),
  media_filename text check (length(media_filename) <= 500),
  media_size integer,
  media_storage_path text check (length(media_storage_path) <= 1000),
  is_voice boolean not null default false,
  transcription text,
  reply_to_wamid text check (length(reply_to_wamid) <= 200),
  reply_to_message_id uuid,
  interactive_reply_id text check (length(interactive_reply_id) <= 256),
  forwarded boolean not null default false,
  referral jsonb,
  reaction_emoji text check (length(reaction_emoji) <= 32),
  reaction_at timestamptz,
  status text not null check (status in ('received', 'processing', 'processed', 'ignored',
    'queued', 'sending', 'sent', 'delivered', 'read', 'played', 'failed', 'cancelled')),
  wa_timestamp timestamptz,
  sent_at timestamptz,
  delivered_at timestamptz,
  read_at timestamptz,
  played_at timestamptz,
  failed_at timestamptz,
  error_code integer,
  error_title text check (length(error_title) <= 500),
  error_details text check (length(error_details) <= 2000),
  pricing_category text check (length(pricing_category) <= 40),
  pricing_model text check (length(pricing_model) <= 20),
  attempts integer not null default 0,
  max_attempts integer not null default 5 check (max_attempts between 1 and 50),
  next_attempt_at timestamptz,
  lease_until timestamptz,
  leased_by text check (length(leased_by) <= 200),
  ai_model text check (length(ai_model) <= 120),
  ai_input_tokens integer,
  ai_output_tokens integer,
  ai_latency_ms integer,
  intent text check (length(intent) <= 100),
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, wamid),
  foreign key (tenant_id, conversation_id) references public.conversations (tenant_id, id) on delete cascade,
  foreign key (tenant_id, contact_id) references public.contacts (tenant_id, id) on delete cascade,
  foreign key (tenant_id, whatsapp_number_id) references public.whatsapp_numbers (tenant_id, id)
    on delete set null (whatsapp_number_id),
  foreign key (tenant_id, sender_member_id) references public.members (tenant_id, id)
    on delete set null (sender_member_id),
  foreign key (tenant_id, reply_to_message_id) references public.messages (tenant_id, id)
    on delete set null (reply_to_message_id)
);
alter table public.messages enable row level security;
create index if not exists messages_conversation_created_idx on public.messages (tenant_id, conversation_id, created_at);
create index if not exists messages_tenant_contact_idx on public.messages (tenant_id, contact_id);
create index if not exists messages_tenant_number_idx on public.messages (tenant_id, whatsapp_number_id);
create index if not exists messages_tenant_sender_idx on public.messages (tenant_id, sender_member_id)
  where sender_member_id is not null;
create index if not exists messages_tenant_reply_idx on public.messages (tenant_id, reply_to_message_id)
  where reply_to_message_id is not null;
-- The two work queues: inbound to process, outbound to send.
create index if not exists messages_inbound_queue_idx on public.messages (created_at)
  where status in ('received', 'processing');
create index if not exists messages_outbound_queue_idx on public.messages (whatsapp_number_id, created_at)
  where status in ('queued', 'sending');
-- The sender's one-in-flight-per-contact check: is an older message of the contact unsent?
create index if not exists messages_outbound_contact_queue_idx
  on public.messages (whatsapp_number_id, contact_id, created_at, id) where status in ('queued', 'sending');
-- Bots' daily reply caps count their replies of the day.
create index if not exists messages_bot_replies_idx on public.messages (tenant_id, created_at)
  where sender_type = 'bot';
comment on table public.messages is 'Every message in and out, with its WhatsApp status lifecycle; outbound rows double as the send queue.';
comment on column public.messages.direction is 'inbound (from the customer), outbound (to WhatsApp), internal (agents'' notes and the timeline''s system lines: never sent, never in the AI memory).';
comment on column public.messages.wamid is 'WhatsApp message id; unique per tenant, which makes ingest idempotent.';
comment on column public.messages.status is 'Inbound: received → processing → processed (or ignored). Outbound: queued → sending → sent → delivered → read (→ played for voice), or failed; never downgraded.';
comment on column public.messages.content is 'Text, caption, or a readable rendering (location, contacts, replies).';
comment on column public.messages.content_masked is 'content with CPF, e-mail, phone and card numbers masked (LGPD), for logs and AI analytics.';
comment on column public.messages.payload is 'Inbound: the raw typed object from Meta. Outbound: the Graph API message body (type and its object).';
comment on column public.messages.interactive_reply_id is 'Id of the tapped button / list row / template quick reply: the routing key of flows and bots.';
comment on column public.messages.reaction_emoji is 'The customer''s reaction to this message (null when removed).';
comment on column public.messages.wa_timestamp is 'Meta''s timestamp of an inbound message.';
comment on column public.messages.next_attempt_at is 'Outbound: not sent before this time (retry backoff, scheduling).';
comment on column public.messages.lease_until is 'A worker claimed the row until then; an expired lease returns it to its queue.';
comment on column public.messages.pricing_category is 'Meta''s pricing category from the status webhook (service, utility, marketing...).';

-- Consent history (seed 000 LGPD consent, 001 opt-in/opt-out): every opt-in, opt-out, consent
-- given or withdrawn, as the customer expressed it. Append-only (private.tg_contact_consents_guard);
-- the contact's opt_in / consent columns are derived from it and from nothing else.
create table if not exists public.contact_consents (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  contact_id uuid not null,
  kind text not null check (kind in ('opt_in', 'opt_out', 'consent_given', 'consent_withdrawn')),
  source text not null check (source in ('customer_message', 'quick_reply', 'documented_request', 'import', 'system')),
  evidence text not null check (length(btrim(evidence)) between 1 and 2000),
  recorded_by uuid,
  message_id uuid,
  occurred_at timestamptz not null default now(),
  recorded_at timestamptz not null default clock_timestamp(),
  unique (tenant_id, id),
  foreign key (tenant_id, contact_id) references public.contacts (tenant_id, id) on delete cascade,
  foreign key (tenant_id, recorded_by) references public.members (tenant_id, id) on delete set null (recorded_by),
  foreign key (tenant_id, message_id) references public.messages (tenant_id, id) on delete set null (message_id)
);
alter table public.contact_consents enable row level security;
create index if not exists contact_consents_contact_idx on public.contact_consents (tenant_id, contact_id, occurred_at);
create index if not exists contact_consents_recorded_by_idx on public.contact_consents (tenant_id, recorded_by)
  where recorded_by is not null;
create index if not exists contact_consents_message_idx on public.contact_consents (tenant_id, message_id)
  where message_id is not null;
comment on table public.contact_consents is 'Append-only history of a contact''s opt-in / opt-out and LGPD consent: the only source of contacts.opt_in, opt_in_at, opt_out_at, consent and consent_at.';
comment on column public.contact_consents.source is 'customer_message (the customer wrote it, see message_id), quick_reply (the customer tapped a button such as a marketing template''s STOP, see message_id), documented_request (a manager recorded a request the tenant documents), import or system.';
comment on column public.contact_consents.evidence is 'What proves it: the customer''s words, or the tenant''s description of the documented request (channel, date, document).';
comment on column public.contact_consents.recorded_by is 'Member who recorded a documented request; null for customer messages and the system (or once the member is removed).';
comment on column public.contact_consents.occurred_at is 'When the customer expressed it: the message time, or the moment a documented request was recorded (never back-dated).';

-- Status events (every sent / delivered / read / played / failed webhook, seed 001 message_logs).
create table if not exists public.message_status_events (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  message_id uuid,
  wamid text not null check (length(wamid) <= 200),
  status text not null check (status in ('sent', 'delivered', 'read', 'played', 'failed', 'deleted', 'warning')),
  occurred_at timestamptz not null,
  recipient_id text check (length(recipient_id) <= 120),
  error_code integer,
  error_title text check (length(error_title) <= 500),
  error_details text check (length(error_details) <= 2000),
  pricing jsonb,
  raw jsonb not null,
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, wamid, status, occurred_at),
  foreign key (tenant_id, message_id) references public.messages (tenant_id, id) on delete cascade
);
alter table public.message_status_events enable row level security;
create index if not exists message_status_events_message_idx on public.message_status_events (tenant_id, message_id);
create index if not exists message_status_events_orphans_idx on public.message_status_events (tenant_id, wamid)
  where message_id is null;
create index if not exists message_status_events_retention_idx on public.message_status_events (tenant_id, created_at);
comment on table public.message_status_events is 'Each status webhook of an outbound message, kept as received; message_id is null while the wamid is unknown.';

-- AI memory of a live conversation (seed 000 session_context, 002 n8n_chat_histories).
create table if not exists public.session_context (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  conversation_id uuid not null,
  recent_messages jsonb not null default '[]'::jsonb,
  max_messages integer not null default 20 check (max_messages between 1 and 200),
  summary text,
  summarized_until timestamptz,
  pending_summary integer not null default 0,
  total_tokens integer not null default 0,
  last_intent text check (length(last_intent) <= 100),
  context jsonb not null default '{}'::jsonb,
  ttl_expires_at timestamptz not null,
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, conversation_id),
  foreign key (tenant_id, conversation_id) references public.conversations (tenant_id, id) on delete cascade
);
-- Rewritten by every message of its conversation: unindexed ttl (the expiry job scans this
-- small table of live sessions) and free room keep the rewrite HOT.
alter table public.session_context set (fillfactor = 80);
alter table public.session_context enable row level security;
comment on table public.session_context is 'AI memory of a conversation: the last N messages (kept by a trigger), a rolling summary, and a TTL of the tenant session timeout.';
comment on column public.session_context.recent_messages is '[{"role": "user"|"assistant", "content": "...", "at": "...", "message_id": "..."}], oldest first, at most max_messages.';
comment on column public.session_context.summary is 'Rolling summary of what fell out of recent_messages, written by the gateway (feature summary).';
comment on column public.session_context.summarized_until is 'created_at of the newest message the summary covers.';
comment on column public.session_context.pending_summary is 'Messages that fell out of recent_messages since the last summary.';

-- Message templates (seed 001 whatsapp_templates, 002 message_templates, 003 templates).
create table if not exists public.message_templates (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  waba_id text check (waba_id ~ '^[0-9]{1,30}$'),
  meta_template_id text check (length(meta_template_id) <= 60),
  name text not null check (name ~ '^[a-z0-9_]+$' and length(name) <= 512),
  language text not null default 'pt_BR' check (language ~ '^[a-z]{2,3}(_[A-Za-z]{2,4})?$'),
  category text not null check (category in ('MARKETING', 'UTILITY', 'AUTHENTICATION')),
  status text not null default 'PENDING'
    check (status in ('PENDING', 'APPROVED', 'REJECTED', 'PAUSED', 'DISABLED', 'IN_APPEAL', 'PENDING_DELETION', 'DELETED')),
  components jsonb not null default '[]'::jsonb,
  parameter_format text not null default 'positional' check (parameter_format in ('positional', 'named')),
  rejection_reason text check (length(rejection_reason) <= 1000),
  quality_score text check (length(quality_score) <= 40),
  product_id uuid,
  is_active boolean not null default true,
  last_synced_at timestamptz,
  sync_status text not null default 'local'
    check (sync_status in ('local', 'synced', 'pending_create', 'creating', 'create_failed', 'pending_delete',
                           'deleting', 'delete_failed')),
  sync_error text check (length(sync_error) <= 2000),
  sync_attempted_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique nulls not distinct (tenant_id, waba_id, name, language)
);
alter table public.message_templates enable row level security;
create index if not exists message_templates_meta_id_idx on public.message_templates (meta_template_id);
comment on table public.message_templates is 'WhatsApp templates synced with Meta: the only messages allowed outside the 24 h window once APPROVED.';
comment on column public.message_templates.components is 'Meta components: header / body / footer / buttons with their examples.';
comment on column public.message_templates.product_id is 'Optional product the template belongs to (commerce module).';
comment on column public.message_templates.sync_status is 'Where the template stands with Meta: local (only here), synced, pending_create / creating / create_failed, pending_delete / deleting / delete_failed (campaigns module pushes them).';
comment on column public.message_templates.sync_error is 'Meta''s answer to the last failed create or delete.';
create index if not exists message_templates_sync_queue_idx on public.message_templates (sync_attempted_at nulls first)
  where sync_status in ('pending_create', 'creating', 'pending_delete', 'deleting');

-- Raw webhook events: every entry × change as received, for inspection and replay.
create table if not exists public.inbound_events (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid references public.tenants (id) on delete cascade,
  whatsapp_number_id uuid,
  payload_hash text not null unique check (payload_hash ~ '^[0-9a-f]{64}$'),
  object text check (length(object) <= 60),
  entry_id text check (length(entry_id) <= 60),
  field text check (length(field) <= 100),
  phone_number_id text check (length(phone_number_id) <= 60),
  payload jsonb,
  raw_body text,
  status text not null check (status in ('applied', 'partial', 'stored', 'unroutable', 'quarantined')),
  reason text check (length(reason) <= 2000),
  quarantined jsonb not null default '[]'::jsonb,
  cleaned jsonb,
  message_count integer not null default 0,
  status_count integer not null default 0,
  received_at timestamptz not null default now(),
  unique (tenant_id, id),
  foreign key (tenant_id, whatsapp_number_id) references public.whatsapp_numbers (tenant_id, id)
    on delete set null (whatsapp_number_id)
);
alter table public.inbound_events enable row level security;
create index if not exists inbound_events_tenant_received_idx on public.inbound_events (tenant_id, received_at desc);
create index if not exists inbound_events_problems_idx on public.inbound_events (received_at desc)
  where status in ('partial', 'unroutable', 'quarantined');
create index if not exists inbound_events_number_idx on public.inbound_events (tenant_id, whatsapp_number_id);
comment on table public.inbound_events is 'Each webhook change as Meta sent it (no API returns them later): idempotency by hash, unroutable and malformed items kept for inspection.';
comment on column public.inbound_events.payload is '{"object", "entry_id", "change": {"field", "value"}}: enough to replay it.';
comment on column public.inbound_events.raw_body is 'A signed body that was not a JSON object, kept as text.';
comment on column public.inbound_events.status is 'applied; partial (some items quarantined); stored (a field other than messages); unroutable (unknown phone_number_id); quarantined (nothing usable, or signed by an app that does not cover the number: never applied, no tenant).';
comment on column public.inbound_events.cleaned is '{"strings": n, "raw_sha256": "..."} when the webhook route replaced strings jsonb refuses (\u0000, lone surrogates) by U+FFFD before ingest; raw_sha256 is of the body as received and signed.';
comment on column public.inbound_events.quarantined is '[{"item": {...}, "reason": "..."}] for malformed messages and statuses.';

/**
 * ----
 * Section - Private helpers (shared with ingest and the queues)
 * ----
 */

-- A status webhook can arrive while the sender is still recording the message's wamid
-- (Meta answers the send, then posts the status at once). Both meet on an advisory lock
-- per bucket of wamids: whatsapp_mark_sent takes its wamid's bucket exclusively before it
-- touches any row, whatsapp_ingest takes the buckets of a body's statuses shared before it
-- touches any row the sender needs. So one waits for the other's commit and the status
-- is applied or adopted, never left an orphan. 256 buckets bound the locks one body takes.
create or replace function private.lock_wamids(wamids text[], exclusive boolean)
returns void
language plpgsql
set search_path = ''
as $$
declare
  v_bucket integer;
begin
  for v_bucket in
    select distinct pg_catalog.hashtext(w) & 255 from unnest(wamids) w where w is not null order by 1
  loop
    if exclusive then
      perform pg_catalog.pg_advisory_xact_lock(200, v_bucket);  -- 200: this module's lock space
    else
      perform pg_catalog.pg_advisory_xact_lock_shared(200, v_bucket);
    end if;
  end loop;
end;
$$;

-- Order of the outbound lifecycle: a status webhook only ever moves a message forward.
-- failed ranks between sent and delivered: a late failure after sent applies, a delivered
-- or read receipt after a failure proves delivery, and nothing downgrades a read.
create or replace function private.outbound_rank(status text)
returns integer
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case status
    when 'queued' then 0 when 'sending' then 10 when 'sent' then 20 when 'failed' then 25
    when 'delivered' then 30 when 'read' then 40 when 'played' then 50 when 'cancelled' then 60
    else -1 end
$$;

-- Move an outbound message forward by a status; never backwards (see outbound_rank).
create or replace function private.apply_status(
  message_id uuid, status text, at timestamptz, error jsonb, pricing jsonb
) returns void
language sql
set search_path = ''
as $$
  update public.messages m
     set status = case when private.outbound_rank(apply_status.status) > private.outbound_rank(m.status)
                       then apply_status.status else m.status end,
         -- a receipt's own time wins over the time another receipt implied it
         sent_at = case when apply_status.status = 'sent' then least(coalesce(m.sent_at, apply_status.at), apply_status.at)
                        when apply_status.status <> 'failed' then coalesce(m.sent_at, apply_status.at)
                        else m.sent_at end,
         delivered_at = case when apply_status.status = 'delivered'
                             then least(coalesce(m.delivered_at, apply_status.at), apply_status.at)
                             when apply_status.status in ('read', 'played')
                             then coalesce(m.delivered_at, apply_status.at) else m.delivered_at end,
         read_at = case when apply_status.status in ('read', 'played')
                        then coalesce(m.read_at, apply_status.at) else m.read_at end,
         played_at = case when apply_status.status = 'played'
                          then coalesce(m.played_at, apply_status.at) else m.played_at end,
         failed_at = case when apply_status.status = 'failed'
                          then coalesce(m.failed_at, apply_status.at) else m.failed_at end,
         error_code = case when apply_status.status = 'failed' and private.outbound_rank(m.status) < 25
                           then (apply_status.error ->> 'code')::integer else m.error_code end,
         error_title = case when apply_status.status = 'failed' and private.outbound_rank(m.status) < 25
                            then left(coalesce(apply_status.error ->> 'title', apply_status.error ->> 'message'), 500)
                            else m.error_title end,
         error_details = case when apply_status.status = 'failed' and private.outbound_rank(m.status) < 25
                              then left(apply_status.error -> 'error_data' ->> 'details', 2000)
                              else m.error_details end,
         pricing_category = coalesce(left(apply_status.pricing ->> 'category', 40), m.pricing_category),
         pricing_model = coalesce(left(apply_status.pricing ->> 'pricing_model', 20), m.pricing_model),
         lease_until = null
   where m.id = apply_status.message_id and m.direction = 'outbound'
     and apply_status.status in ('sent', 'delivered', 'read', 'played', 'failed')
$$;

-- An alert about a number's error (from a webhook or a failed send): one per number, Meta
-- code and day, however many messages hit it. Whatever Meta (or a forger) puts in the error,
-- the row fits: a default title, the code cut to fit the key.
create or replace function private.number_alert(
  tenant_id uuid, number_id uuid, error jsonb, priority text, title text, message text,
  extra jsonb default '{}'::jsonb
) returns void
language sql
set search_path = ''
as $$
  insert into public.alerts (tenant_id, type, priority, title, message, payload, dedupe_key)
  values (number_alert.tenant_id, 'whatsapp.error', number_alert.priority,
          left(coalesce(number_alert.title, 'WhatsApp: erro sem descrição'), 200), left(number_alert.message, 4000),
          jsonb_build_object('whatsapp_number_id', number_alert.number_id, 'error', number_alert.error)
            || number_alert.extra,
          'whatsapp:' || number_alert.number_id || ':' || left(coalesce(number_alert.error ->> 'code', '?'), 60) || ':'
            || to_char(now(), 'YYYY-MM-DD'))
  on conflict (tenant_id, dedupe_key) do nothing
$$;

-- The consent columns of a contact as its history says: the latest opt_in / opt_out (none:
-- opted in) and the latest consent_given / consent_withdrawn (none: no consent).
create or replace function private.contact_consent_state(tenant_id uuid, contact_id uuid)
returns table (opt_in boolean, opt_in_at timestamptz, opt_out_at timestamptz, consent boolean,
               consent_at timestamptz)
language sql
stable
set search_path = ''
as $$
  select coalesce((array_agg(h.kind order by h.occurred_at desc, h.recorded_at desc)
                     filter (where h.kind in ('opt_in', 'opt_out')))[1] = 'opt_in', true),
         max(h.occurred_at) filter (where h.kind = 'opt_in'),
         max(h.occurred_at) filter (where h.kind = 'opt_out'),
         coalesce((array_agg(h.kind order by h.occurred_at desc, h.recorded_at desc)
                     filter (where h.kind in ('consent_given', 'consent_withdrawn')))[1] = 'consent_given', false),
         max(h.occurred_at) filter (where h.kind = 'consent_given')
    from public.contact_consents h
   where h.tenant_id = contact_consent_state.tenant_id and h.contact_id = contact_consent_state.contact_id
$$;

-- Append one entry to a contact's consent history (a trigger then updates the contact).
create or replace function private.record_consent(
  tenant_id uuid, contact_id uuid, kind text, source text, evidence text,
  recorded_by uuid default null, message_id uuid default null, occurred_at timestamptz default now()
) returns public.contact_consents
language sql
set search_path = ''
as $$
  insert into public.contact_consents (tenant_id, contact_id, kind, source, evidence, recorded_by, message_id,
                                       occurred_at)
  values (record_consent.tenant_id, record_consent.contact_id, record_consent.kind, record_consent.source,
          left(btrim(record_consent.evidence), 2000), record_consent.recorded_by, record_consent.message_id,
          least(record_consent.occurred_at, now()))
  returning *
$$;

-- What a customer's whole message says about their opt-in: 'opt_out' for STOP-like words,
-- 'opt_in' for START-like ones, else null. Only the whole message counts (case, accents and
-- punctuation aside): "quero parar de pagar juros" is not an opt-out.
create or replace function private.consent_word(content text)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case btrim(regexp_replace(translate(lower(content), 'áàâãäéèêëíìîïóòôõöúùûüç', 'aaaaaeeeeiiiiooooouuuuc'),
                                   '[^a-z]+', ' ', 'g'))
    when 'stop' then 'opt_out' when 'parar' then 'opt_out' when 'pare' then 'opt_out'
    when 'descadastrar' then 'opt_out' when 'sair da lista' then 'opt_out'
    when 'cancelar inscricao' then 'opt_out' when 'unsubscribe' then 'opt_out'
    when 'parar promocoes' then 'opt_out' when 'stop promotions' then 'opt_out'
    when 'start' then 'opt_in' when 'voltar a receber' then 'opt_in' when 'quero receber' then 'opt_in'
  end
$$;

/**
 * ----
 * Section - Numbers' secrets (admins)
 * ----
 */
-- Frontends: store a number's secret in Vault (admins), as the secret named
-- whatsapp_number:<id>:<kind> (never whatever id the row holds); returns only the Vault id.
create or replace function private.set_whatsapp_number_secret(whatsapp_number_id uuid, kind text, secret text)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_number public.whatsapp_numbers;
  v_secret_id uuid;
begin
  select * into v_number from public.whatsapp_numbers n where n.id = set_whatsapp_number_secret.whatsapp_number_id
     for update;
  if v_number.id is null or (private.request_role() = 'authenticated' and not private.is_member(v_number.tenant_id)) then
    raise exception 'WhatsApp number not found' using errcode = 'P0002';
  end if;
  if private.request_role() = 'authenticated' then
    perform private.require_role(v_number.tenant_id, 'admin');
  end if;
  if kind not in ('access_token', 'app_secret', 'verify_token') then
    raise exception 'kind must be access_token, app_secret or verify_token' using errcode = '22023';
  end if;
  if length(coalesce(secret, '')) < 8 then
    raise exception 'the secret is too short' using errcode = '22023';
  end if;
  v_secret_id := private.vault_store('whatsapp_number:' || v_number.id || ':' || kind, secret,
                                     'WhatsApp ' || kind || ' of ' || v_number.phone_number);
  execute format('update public.whatsapp_numbers set %I = $1 where id = $2', kind || '_secret_id')
    using v_secret_id, v_number.id;
  return v_secret_id;
end;
$$;

-- What PostgREST exposes (security invoker); private.set_whatsapp_number_secret does the work as its owner.
create or replace function public.set_whatsapp_number_secret(whatsapp_number_id uuid, kind text, secret text)
returns uuid
language sql
security invoker
set search_path = ''
as $$ select private.set_whatsapp_number_secret(whatsapp_number_id, kind, secret) $$;
revoke execute on function private.set_whatsapp_number_secret(uuid, text, text) from public, anon;
grant execute on function private.set_whatsapp_number_secret(uuid, text, text) to authenticated, service_role;
comment on function public.set_whatsapp_number_secret(uuid, text, text) is 'Admins: store a number''s access token, app secret or verify token in Vault; returns the Vault id only.';

/**
 * ----
 * Section - Policy helpers
 * ----
 */

create or replace function private.can_work_conversation(tenant_id uuid, assignee_id uuid, team_id uuid)
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce(
    can_work_conversation.tenant_id in (select private.my_unrestricted_tenant_ids())
      or (can_work_conversation.tenant_id in (select private.my_tenant_ids_with_role('agent'))
          and (can_work_conversation.assignee_id in (select private.my_member_ids())
               or can_work_conversation.team_id in (select private.my_team_ids()))),
    false)
$$;

/**
 * ----
 * Section - Triggers
 * ----
 */

-- Contacts: derived phone fields, the blocking date, and the opt-in / consent columns, which
-- only the consent history sets: whoever writes them directly (even the service role) gets
-- what the history says.
create or replace function private.tg_contacts_prepare()
returns trigger
language plpgsql
security definer  -- the LGPD helpers and the consent history are not granted to frontends
set search_path = ''
as $$
begin
  if new.wa_id is not null and (tg_op = 'INSERT' or new.wa_id is distinct from old.wa_id) then
    new.phone := '+' || new.wa_id;
    new.phone_hash := private.phone_hash(new.wa_id);
  elsif new.wa_id is null and new.phone is not null then
    new.phone_hash := private.phone_hash(new.phone);
  end if;
  if tg_op = 'INSERT' or (new.opt_in, new.opt_in_at, new.opt_out_at, new.consent, new.consent_at)
                         is distinct from (old.opt_in, old.opt_in_at, old.opt_out_at, old.consent, old.consent_at) then
    select s.opt_in, s.opt_in_at, s.opt_out_at, s.consent, s.consent_at
      into new.opt_in, new.opt_in_at, new.opt_out_at, new.consent, new.consent_at
      from private.contact_consent_state(new.tenant_id, new.id) s;
  end if;
  if tg_op = 'UPDATE' and new.is_blocked and not old.is_blocked then
    new.blocked_at := now();
  end if;
  return new;
end;
$$;

-- A new entry of the consent history takes effect on its contact.
create or replace function private.tg_contact_consents_apply()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.contacts c
     set (opt_in, opt_in_at, opt_out_at, consent, consent_at) =
         (select s.opt_in, s.opt_in_at, s.opt_out_at, s.consent, s.consent_at
            from private.contact_consent_state(new.tenant_id, new.contact_id) s)
   where c.tenant_id = new.tenant_id and c.id = new.contact_id;
  return null;
end;
$$;

-- The consent history is append-only for every role, table owner included. Two changes come
-- from foreign keys and pass: links to a removed member or message fade to null, and the
-- entries of a deleted contact (or tenant) go with it.
create or replace function private.tg_contact_consents_guard()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'UPDATE'
     and to_jsonb(new) - 'recorded_by' - 'message_id' = to_jsonb(old) - 'recorded_by' - 'message_id'
     and (new.recorded_by is null or new.recorded_by = old.recorded_by)
     and (new.message_id is null or new.message_id = old.message_id) then
    return new;
  end if;
  -- the one rewrite allowed: LGPD anonymisation erases the evidence of an anonymised contact
  if tg_op = 'UPDATE' and new.evidence = '[anonimizado]'
     and to_jsonb(new) - 'evidence' = to_jsonb(old) - 'evidence'
     and exists (select 1 from public.contacts c where c.tenant_id = old.tenant_id and c.id = old.contact_id
                    and c.lgpd_state = 'anonymised') then
    return new;
  end if;
  if tg_op = 'DELETE'
     and (not exists (select 1 from public.contacts c where c.tenant_id = old.tenant_id and c.id = old.contact_id)
          or not exists (select 1 from public.tenants t where t.id = old.tenant_id)) then
    return old;
  end if;
  raise exception 'the consent history is append-only: record a new entry instead'
    using errcode = '42501';
end;
$$;

-- A customer who writes STOP-like words, or taps a button saying or carrying them (a
-- marketing template's "Parar promoções" quick reply), opts out; START-like words opt back
-- in (see private.consent_word); the message is the evidence. Nothing is recorded when the
-- contact is already where the words would put them.
create or replace function private.tg_messages_consent_words()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_kind text := coalesce(private.consent_word(new.content),
                          case when new.interactive_reply_id is not null
                               then private.consent_word(new.interactive_reply_id) end);
begin
  if v_kind is null then  -- apart from the lookup: its plan is then made once per session
    return null;
  end if;
  if exists (select 1 from public.contacts c
              where c.tenant_id = new.tenant_id and c.id = new.contact_id and c.opt_in = (v_kind = 'opt_out')) then
    perform private.record_consent(new.tenant_id, new.contact_id, v_kind,
                                   case when new.type in ('button', 'interactive') then 'quick_reply'
                                        else 'customer_message' end,
                                   coalesce(new.content, new.interactive_reply_id),
                                   null, new.id, coalesce(new.wa_timestamp, new.created_at));
  end if;
  return null;
end;
$$;

-- Conversations: the lifecycle timestamps follow status and assignee, whoever changes them
-- (clients may not write them): resolved_at and closed_at when the status gets there, cleared
-- when the conversation comes back to life; assigned_at with each new assignee.
create or replace function private.tg_conversations_lifecycle()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.assignee_id is distinct from old.assignee_id and new.assigned_at is not distinct from old.assigned_at then
    new.assigned_at := case when new.assignee_id is not null then now() end;
  end if;
  if new.status is not distinct from old.status then
    return new;
  end if;
  if new.status = 'expired' and auth.role() in ('authenticated', 'anon') then
    raise exception 'conversations expire by themselves: resolve or close it instead' using errcode = '42501';
  end if;
  if new.status in ('open', 'waiting', 'pending') then
    new.resolved_at := null;
    new.closed_at := null;
    new.close_reason := null;
  elsif new.status = 'resolved' then
    new.resolved_at := now();
    new.close_reason := coalesce(new.close_reason, 'resolved');
  else  -- closed, expired: a time and reason the system gave (ingest's idle expiry) are kept
    new.closed_at := case when new.closed_at is distinct from old.closed_at then new.closed_at else now() end;
    new.close_reason := coalesce(new.close_reason,
      case when new.status = 'expired' then 'idle' when auth.role() = 'authenticated' then 'agent' else 'system' end);
  end if;
  return new;
end;
$$;

-- A number per plan slot (plans.max_whatsapp_numbers).
create or replace function private.tg_whatsapp_numbers_check()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_max integer;
begin
  -- the caller's right first: the plan of another tenant is none of their business
  if private.request_role() = 'authenticated' and not private.has_role(new.tenant_id, 'admin') then
    raise exception 'WhatsApp numbers are managed by tenant admins' using errcode = '42501';
  end if;
  v_max := private.plan_limit_reached(new.tenant_id, 'max_whatsapp_numbers',
    (select count(*) from public.whatsapp_numbers n where n.tenant_id = new.tenant_id));
  if v_max is not null then
    raise exception 'your plan allows % WhatsApp number(s): upgrade the plan to add another', v_max
      using errcode = '23514';
  end if;
  return new;
end;
$$;

-- One AI-memory entry for a message, or null when the model should not reread it: a system
-- note, an agent's internal note, a reaction, a spoken copy of a reply (audio) or a sticker, a message without text.
create or replace function private.memory_entry(m public.messages)
returns jsonb
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case when coalesce(m.transcription, m.content) is not null and m.sender_type <> 'system'
                   and m.direction <> 'internal'
                   and m.type <> 'reaction' and not (m.direction = 'outbound' and m.type in ('audio', 'sticker'))
    then jsonb_build_object('role', case when m.direction = 'inbound' then 'user' else 'assistant' end,
                            'content', coalesce(m.transcription, m.content),
                            'at', coalesce(m.wa_timestamp, m.created_at), 'message_id', m.id,
                            'sender', m.sender_type)
  end
$$;

-- Append entries (oldest first) to a conversation's AI memory: the last max_messages are
-- kept, what falls out is counted for the next summary; the TTL is the tenant's session
-- timeout from now.
create or replace function private.remember(tenant_id uuid, conversation_id uuid, entries jsonb)
returns void
language plpgsql
set search_path = ''
as $$
#variable_conflict use_column
begin
  if jsonb_array_length(remember.entries) = 0 then
    return;
  end if;
  -- one statement when the conversation has its memory already (every message but the first)
  for attempt in 1..2 loop
    update public.session_context s
       set recent_messages = case
             when jsonb_array_length(s.recent_messages) + jsonb_array_length(remember.entries) <= s.max_messages
               then s.recent_messages || remember.entries  -- room for them all: nothing to cut
             else (select coalesce(jsonb_agg(e.v order by e.ord), '[]')
                     from jsonb_array_elements(s.recent_messages || remember.entries) with ordinality e(v, ord)
                    where e.ord > jsonb_array_length(s.recent_messages) + jsonb_array_length(remember.entries)
                                  - s.max_messages) end,
           pending_summary = s.pending_summary + greatest(
             jsonb_array_length(s.recent_messages) + jsonb_array_length(remember.entries) - s.max_messages, 0),
           ttl_expires_at = now() + (select t.session_timeout from public.tenants t where t.id = s.tenant_id),
           updated_at = now()
     where s.tenant_id = remember.tenant_id and s.conversation_id = remember.conversation_id;
    exit when found;
    insert into public.session_context (tenant_id, conversation_id, ttl_expires_at)
    select remember.tenant_id, remember.conversation_id, now() + t.session_timeout
      from public.tenants t
     where t.id = remember.tenant_id
    on conflict (tenant_id, conversation_id) do nothing;
  end loop;
end;
$$;

-- The AI memory follows outbound messages and transcriptions row by row (first transcription
-- only: the triggers' WHEN clauses). Inbound messages are remembered by ingest
-- (count_inbound), once per conversation and batch.
create or replace function private.tg_messages_remember()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_entry jsonb;
begin
  v_entry := private.memory_entry(new);
  if v_entry is not null then
    perform private.remember(new.tenant_id, new.conversation_id, jsonb_build_array(v_entry));
  end if;
  return null;
end;
$$;

do $$
declare
  v_table text;
begin
  foreach v_table in array array['whatsapp_numbers', 'contacts', 'conversations', 'messages',
                                 'message_templates'] loop
    execute format('drop trigger if exists _100_set_updated_at on public.%I', v_table);
    execute format('create trigger _100_set_updated_at before update on public.%I
                    for each row execute function private.tg_set_updated_at()', v_table);
  end loop;
  foreach v_table in array array['message_templates', 'tags'] loop
    execute format('drop trigger if exists _900_audit on public.%I', v_table);
    execute format('create trigger _900_audit after insert or update or delete on public.%I
                    for each row execute function private.tg_audit()', v_table);
  end loop;
end
$$;
-- the sender's rate-limit window moves with every claim: not audited
drop trigger if exists _900_audit on public.whatsapp_numbers;
create trigger _900_audit after insert or update or delete on public.whatsapp_numbers
  for each row execute function private.tg_audit('send_window_start', 'send_window_count');

drop trigger if exists _200_prepare on public.contacts;
create trigger _200_prepare before insert or update on public.contacts
  for each row execute function private.tg_contacts_prepare();
drop trigger if exists _200_guard on public.contact_consents;
create trigger _200_guard before update or delete on public.contact_consents
  for each row execute function private.tg_contact_consents_guard();
drop trigger if exists _200_guard_truncate on public.contact_consents;
create trigger _200_guard_truncate before truncate on public.contact_consents
  for each statement execute function private.tg_contact_consents_guard();
drop trigger if exists _300_apply on public.contact_consents;
create trigger _300_apply after insert on public.contact_consents
  for each row execute function private.tg_contact_consents_apply();
drop trigger if exists _200_lifecycle on public.conversations;
create trigger _200_lifecycle before update on public.conversations
  for each row execute function private.tg_conversations_lifecycle();
drop trigger if exists _200_check_plan on public.whatsapp_numbers;
create trigger _200_check_plan before insert on public.whatsapp_numbers
  for each row execute function private.tg_whatsapp_numbers_check();
-- WHEN clauses rather than an early return: an inbound message pays no call
drop trigger if exists _300_remember on public.messages;
create trigger _300_remember after insert on public.messages
  for each row when (new.direction <> 'inbound') execute function private.tg_messages_remember();
drop trigger if exists _300_remember_transcription on public.messages;
create trigger _300_remember_transcription after update of transcription on public.messages
  for each row when (old.transcription is null) execute function private.tg_messages_remember();
drop trigger if exists _400_consent_words on public.messages;
create trigger _400_consent_words after insert on public.messages
  for each row when (new.direction = 'inbound' and new.sender_type = 'contact'
                     and (length(new.content) <= 60 or new.interactive_reply_id is not null))
  execute function private.tg_messages_consent_words();

/**
 * ----
 * Section - Events (the outbox of the events module: one AFTER trigger per table, so
 * every path that changes a row, RPC, ingest or job, emits the same events)
 * ----
 */
insert into public.event_types (type, module, description) values
  ('message.received', 'whatsapp', 'A customer message arrived (not reactions or system notices): payload has the message, its conversation and contact.'),
  ('message.sent', 'whatsapp', 'Meta accepted an outbound message (its wamid is known).'),
  ('message.status_changed', 'whatsapp', 'An outbound message was delivered, read, played or failed; failures carry Meta''s error code, title and details.'),
  ('conversation.created', 'whatsapp', 'A conversation opened (first message of a session, or an agent reaching out).'),
  ('conversation.assigned', 'whatsapp', 'A conversation got a new assignee (previous_assignee_id says from whom).'),
  ('conversation.handed_off', 'whatsapp', 'A conversation went from the bot or a flow to humans (reason, team).'),
  ('conversation.resolved', 'whatsapp', 'A conversation was marked resolved.'),
  ('conversation.closed', 'whatsapp', 'A conversation was closed without being resolved.'),
  ('conversation.expired', 'whatsapp', 'A conversation was idle longer than the tenant''s session timeout and expired.'),
  ('contact.created', 'whatsapp', 'A contact was created (first message, or added by an agent or an import).'),
  ('contact.updated', 'whatsapp', 'A contact''s profile, tags, attributes, consent, block or LGPD state changed: payload.changed lists the fields.'),
  ('contact.opted_out', 'whatsapp', 'A contact opted out of messages: nothing may be sent to them.'),
  ('contact.opted_in', 'whatsapp', 'A contact opted back in to messages.')
on conflict (type) do update set module = excluded.module, description = excluded.description;

create or replace function private.message_event(m public.messages)
returns jsonb
language sql
immutable
set search_path = ''
as $$
  select jsonb_build_object('message_id', m.id, 'conversation_id', m.conversation_id, 'contact_id', m.contact_id,
    'whatsapp_number_id', m.whatsapp_number_id, 'direction', m.direction, 'sender_type', m.sender_type,
    'type', m.type, 'wamid', m.wamid, 'status', m.status, 'content', left(m.content, 4096))
$$;

create or replace function private.tg_messages_emit()
returns trigger
language plpgsql
security definer  -- events are written by private.emit only
set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    if new.direction = 'inbound' and new.sender_type = 'contact' then
      perform private.emit(new.tenant_id, 'message.received', 'messages', new.id, private.message_event(new));
    end if;
  elsif new.status = 'sent' then
    perform private.emit(new.tenant_id, 'message.sent', 'messages', new.id, private.message_event(new));
  elsif new.status in ('delivered', 'read', 'played', 'failed') then
    perform private.emit(new.tenant_id, 'message.status_changed', 'messages', new.id,
      private.message_event(new) || jsonb_build_object('previous_status', old.status,
        'error', case when new.status = 'failed' then jsonb_build_object('code', new.error_code,
                      'title', new.error_title, 'details', new.error_details) end));
  end if;
  return null;
end;
$$;

create or replace function private.tg_conversations_emit()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_event jsonb := jsonb_build_object('conversation_id', new.id, 'contact_id', new.contact_id,
    'whatsapp_number_id', new.whatsapp_number_id, 'status', new.status, 'mode', new.mode,
    'team_id', new.team_id, 'assignee_id', new.assignee_id);
begin
  if tg_op = 'INSERT' then
    perform private.emit(new.tenant_id, 'conversation.created', 'conversations', new.id, v_event);
    return null;
  end if;
  if new.assignee_id is distinct from old.assignee_id and new.assignee_id is not null then
    perform private.emit(new.tenant_id, 'conversation.assigned', 'conversations', new.id,
      v_event || jsonb_build_object('previous_assignee_id', old.assignee_id));
  end if;
  if new.mode = 'human' and old.mode <> 'human' then
    perform private.emit(new.tenant_id, 'conversation.handed_off', 'conversations', new.id,
      v_event || jsonb_build_object('previous_mode', old.mode, 'reason', new.handoff_reason));
  end if;
  if new.status is distinct from old.status and new.status in ('resolved', 'closed', 'expired') then
    perform private.emit(new.tenant_id, 'conversation.' || new.status, 'conversations', new.id,
      v_event || jsonb_build_object('previous_status', old.status, 'close_reason', new.close_reason,
                                    'closed_at', coalesce(new.closed_at, new.resolved_at)));
  end if;
  return null;
end;
$$;

create or replace function private.tg_contacts_emit()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_changed jsonb;
begin
  if tg_op = 'INSERT' then
    perform private.emit(new.tenant_id, 'contact.created', 'contacts', new.id,
      jsonb_build_object('contact_id', new.id, 'wa_id', new.wa_id, 'user_id', new.user_id,
                         'profile_name', new.profile_name, 'name', new.name));
    return null;
  end if;
  if new.opt_in is distinct from old.opt_in then
    perform private.emit(new.tenant_id, case when new.opt_in then 'contact.opted_in' else 'contact.opted_out' end,
      'contacts', new.id, jsonb_build_object('contact_id', new.id, 'wa_id', new.wa_id,
        'at', case when new.opt_in then new.opt_in_at else new.opt_out_at end));
  end if;
  select coalesce(jsonb_agg(n.key order by n.key), '[]') into v_changed
    from jsonb_each(to_jsonb(new)) n
   where n.key in ('wa_id', 'user_id', 'username', 'profile_name', 'name', 'email', 'phone', 'cpf', 'company',
                   'is_client', 'tags', 'attributes', 'consent', 'is_blocked', 'lgpd_state')
     and n.value is distinct from to_jsonb(old) -> n.key;
  if jsonb_array_length(v_changed) > 0 then
    perform private.emit(new.tenant_id, 'contact.updated', 'contacts', new.id,
      jsonb_build_object('contact_id', new.id, 'wa_id', new.wa_id, 'changed', v_changed));
  end if;
  return null;
end;
$$;

drop trigger if exists _500_emit on public.messages;
create trigger _500_emit after insert on public.messages
  for each row execute function private.tg_messages_emit();
drop trigger if exists _500_emit_status on public.messages;
create trigger _500_emit_status after update of status on public.messages
  for each row when (old.status is distinct from new.status and new.direction = 'outbound')
  execute function private.tg_messages_emit();
drop trigger if exists _500_emit on public.conversations;
create trigger _500_emit after insert on public.conversations
  for each row execute function private.tg_conversations_emit();
drop trigger if exists _500_emit_change on public.conversations;
create trigger _500_emit_change after update of status, mode, assignee_id on public.conversations
  for each row when (old.status is distinct from new.status or old.mode is distinct from new.mode
                     or old.assignee_id is distinct from new.assignee_id)
  execute function private.tg_conversations_emit();
drop trigger if exists _500_emit on public.contacts;
create trigger _500_emit after insert on public.contacts
  for each row execute function private.tg_contacts_emit();
-- counters and last-message times change with every message: not an event
drop trigger if exists _500_emit_change on public.contacts;
create trigger _500_emit_change after update on public.contacts
  for each row when ((old.opt_in, old.wa_id, old.user_id, old.username, old.profile_name, old.name, old.email,
                      old.phone, old.cpf, old.company, old.is_client, old.tags, old.attributes, old.consent,
                      old.is_blocked, old.lgpd_state)
                     is distinct from
                     (new.opt_in, new.wa_id, new.user_id, new.username, new.profile_name, new.name, new.email,
                      new.phone, new.cpf, new.company, new.is_client, new.tags, new.attributes, new.consent,
                      new.is_blocked, new.lgpd_state))
  execute function private.tg_contacts_emit();

/**
 * ----
 * Section - Jobs (registered in job_schedules, run by private.run_due_jobs)
 * ----
 */

-- Seed 000 conv_expire_idle: live conversations idle longer than their tenant's session
-- timeout expire (closed when the timeout ran out) and lose their AI memory; the next
-- message opens a new one (ingest applies the same rule when it meets one first). Per
-- tenant, an index range scan of conversations_tenant_inbox_idx; rows a webhook holds are
-- skipped (ingest is expiring or reviving them).
create or replace function private.job_conversations_expire_idle(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_tenant record;
  v_rows integer;
  v_total integer := 0;
begin
  for v_tenant in select t.id, t.session_timeout from public.tenants t loop
    with gone as (
      update public.conversations c
         set status = 'expired', close_reason = 'idle', closed_at = c.last_message_at + v_tenant.session_timeout
       where c.id in (select x.id from public.conversations x
                       where x.tenant_id = v_tenant.id and x.status in ('open', 'waiting', 'pending')
                         and x.last_message_at < as_of - v_tenant.session_timeout
                       for update skip locked)
      returning c.tenant_id, c.id
    ), forgotten as (
      delete from public.session_context s using gone g
       where s.tenant_id = g.tenant_id and s.conversation_id = g.id
    )
    select count(*) into v_rows from gone;
    v_total := v_total + v_rows;
  end loop;
  return v_total;
end;
$$;

-- Seed 000 cleanup_expired_sessions: AI memories past their TTL (their conversation went
-- quiet without being closed through a path that clears them).
create or replace function private.job_session_context_cleanup(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_rows integer;
begin
  delete from public.session_context s where s.ttl_expires_at < as_of;
  get diagnostics v_rows = row_count;
  return v_rows;
end;
$$;

-- Raw webhook bodies and status events older than the tenant's retention
-- (plans.raw_event_retention_days); bodies kept apart with no tenant after 30 days.
create or replace function private.job_whatsapp_retention(as_of timestamptz)
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
    delete from public.inbound_events e
     where e.tenant_id = v_tenant and e.received_at < private.retention_cutoff(v_tenant, 'inbound_events', as_of);
    get diagnostics v_rows = row_count;
    v_total := v_total + v_rows;
    delete from public.message_status_events e
     where e.tenant_id = v_tenant and e.created_at < private.retention_cutoff(v_tenant, 'status_events', as_of);
    get diagnostics v_rows = row_count;
    v_total := v_total + v_rows;
  end loop;
  delete from public.inbound_events e where e.tenant_id is null and e.received_at < as_of - interval '30 days';
  get diagnostics v_rows = row_count;
  return v_total + v_rows;
end;
$$;

insert into public.job_schedules (name, description, cron, function_name) values
  ('conversations_expire_idle', 'Expires conversations idle longer than the tenant''s session timeout (seed 000 conv_expire_idle).',
   '*/5 * * * *', 'private.job_conversations_expire_idle'),
  ('session_context_cleanup', 'Deletes AI memories past their TTL (seed 000 cleanup_expired_sessions).',
   '*/30 * * * *', 'private.job_session_context_cleanup'),
  ('whatsapp_retention', 'Deletes raw webhook bodies and status events older than the tenant''s retention.',
   '30 3 * * *', 'private.job_whatsapp_retention')
on conflict (name) do update set description = excluded.description, function_name = excluded.function_name,
  runner = excluded.runner;

/**
 * ----
 * Section - Realtime: the inbox streams conversations and messages to frontends (RLS applies)
 * ----
 */
do $$
declare
  v_table text;
begin
  if exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    foreach v_table in array array['conversations', 'messages'] loop
      if not exists (select 1 from pg_publication_tables
                      where pubname = 'supabase_realtime' and schemaname = 'public' and tablename = v_table) then
        execute format('alter publication supabase_realtime add table public.%I', v_table);
      end if;
    end loop;
  end if;
end
$$;

/**
 * ----
 * Section - RLS policies
 * ----
 */

-- whatsapp_numbers: members read (without secrets, see grants); admins manage
drop policy if exists "Numbers are visible to members" on public.whatsapp_numbers;
create policy "Numbers are visible to members" on public.whatsapp_numbers
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Numbers are added by admins" on public.whatsapp_numbers;
create policy "Numbers are added by admins" on public.whatsapp_numbers
  for insert to authenticated with check (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Numbers are updated by admins" on public.whatsapp_numbers;
create policy "Numbers are updated by admins" on public.whatsapp_numbers
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('admin')))
  with check (tenant_id in (select private.my_tenant_ids_with_role('admin')));
drop policy if exists "Numbers are removed by admins" on public.whatsapp_numbers;
create policy "Numbers are removed by admins" on public.whatsapp_numbers
  for delete to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));

-- contacts: members read, agents write, admins delete
drop policy if exists "Contacts are visible to members" on public.contacts;
create policy "Contacts are visible to members" on public.contacts
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Contacts are added by agents" on public.contacts;
create policy "Contacts are added by agents" on public.contacts
  for insert to authenticated with check (tenant_id in (select private.my_tenant_ids_with_role('agent')));
drop policy if exists "Contacts are edited by agents" on public.contacts;
create policy "Contacts are edited by agents" on public.contacts
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('agent')))
  with check (tenant_id in (select private.my_tenant_ids_with_role('agent')));
drop policy if exists "Contacts are deleted by admins" on public.contacts;
create policy "Contacts are deleted by admins" on public.contacts
  for delete to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));

-- contact_consents: members read; written only by record_contact_consent and the system,
-- never changed nor removed (private.tg_contact_consents_guard)
drop policy if exists "Consent history is visible to members" on public.contact_consents;
create policy "Consent history is visible to members" on public.contact_consents
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));

-- tags, message_templates: members read, managers write
do $$
declare
  v_table text;
begin
  foreach v_table in array array['tags', 'message_templates'] loop
    perform private.members_read_managers_write(v_table);
  end loop;
end
$$;

-- conversations: members read; agents work them (restricted tenants: assigned to them or
-- their teams); created by ingest and start_conversation only
drop policy if exists "Conversations are visible to members" on public.conversations;
create policy "Conversations are visible to members" on public.conversations
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Conversations are worked by agents" on public.conversations;
create policy "Conversations are worked by agents" on public.conversations
  for update to authenticated
  using (tenant_id in (select private.my_unrestricted_tenant_ids())
         or (tenant_id in (select private.my_tenant_ids_with_role('agent'))
             and (assignee_id in (select private.my_member_ids()) or team_id in (select private.my_team_ids()))))
  with check (tenant_id in (select private.my_unrestricted_tenant_ids())
         or (tenant_id in (select private.my_tenant_ids_with_role('agent'))
             and (assignee_id in (select private.my_member_ids()) or team_id in (select private.my_team_ids()))));

-- messages, status events, AI memory: members read; written through RPCs and the worker
drop policy if exists "Messages are visible to members" on public.messages;
create policy "Messages are visible to members" on public.messages
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Status events are visible to members" on public.message_status_events;
create policy "Status events are visible to members" on public.message_status_events
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "AI memory is visible to members" on public.session_context;
create policy "AI memory is visible to members" on public.session_context
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));

-- inbound_events: tenant admins inspect their raw events (unroutable ones have no tenant)
drop policy if exists "Raw events are visible to admins" on public.inbound_events;
create policy "Raw events are visible to admins" on public.inbound_events
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('admin')));

/**
 * ----
 * Section - Grants
 * ----
 */
grant select (id, tenant_id, phone_number, phone_number_id, waba_id, display_name, status, is_default,
    quality_rating, messaging_limit_tier, throughput_mps, last_error, last_error_at, settings, created_at, updated_at),
  insert (tenant_id, phone_number, phone_number_id, waba_id, display_name, status, is_default, throughput_mps,
    settings),
  update (phone_number, display_name, status, is_default, throughput_mps, settings),
  delete on public.whatsapp_numbers to authenticated;
-- opt-in and consent are the customer's: recorded in contact_consents, never written here
grant select,
  insert (tenant_id, wa_id, name, email, phone, cpf, company, is_client, attributes, is_blocked, notes),
  update (name, email, cpf, company, is_client, attributes, is_blocked, notes),
  delete on public.contacts to authenticated;
grant select on public.contact_consents to authenticated, service_role;
grant select, insert (tenant_id, name, color, description), update (name, color, description), delete
  on public.tags to authenticated;
-- what agents decide; counters, CSAT and lifecycle times are the system's (unread_count
-- through mark_conversation_read, resolved_at / closed_at / assigned_at by trigger)
grant select, update (status, mode, team_id, assignee_id, priority, tags) on public.conversations to authenticated;
grant select on public.messages, public.message_status_events, public.session_context to authenticated;
grant select, insert (tenant_id, waba_id, name, language, category, components, parameter_format, product_id,
    is_active),
  update (category, components, parameter_format, product_id, is_active), delete
  on public.message_templates to authenticated;
grant select on public.inbound_events to authenticated;
grant select, insert, update, delete on public.whatsapp_numbers, public.contacts, public.tags, public.conversations,
  public.messages, public.message_status_events, public.session_context, public.message_templates,
  public.inbound_events to service_role;

revoke execute on all functions in schema private from public, anon;
revoke execute on function public.set_whatsapp_number_secret(uuid, text, text) from public, anon, authenticated;
grant execute on function public.set_whatsapp_number_secret(uuid, text, text) to service_role;
grant execute on function public.set_whatsapp_number_secret(uuid, text, text) to authenticated;
