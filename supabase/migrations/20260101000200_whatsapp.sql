/**
 * Zapbase module 3: whatsapp.
 * The WhatsApp channel in Postgres: numbers (seed 001), contacts (000 users, 001 contacts,
 * 002 clientes_whatsapp), tags, conversations with the 4 h session rule and the 24 h
 * customer-service window, messages with their status lifecycle, status events, the AI
 * session memory (000 session_context), templates, quick replies, agent greetings and the
 * raw webhook events. Opt-in and consent belong to the customer: they change only through an
 * append-only history (the customer's own STOP / START words, or a request the tenant documents).
 *
 * The whole meaning of a Meta webhook is applied by one function, `whatsapp_ingest`, so
 * the worker's HTTP route and the edge function stay thin and identical. Outbound rows are
 * queued by `send_message` (frontends) or `whatsapp_queue_reply` (the worker) and leave
 * through `whatsapp_claim_outbound` / `whatsapp_mark_sent` / `whatsapp_mark_send_failed`.
 *
 * Who may do what:
 *   every member  reads the tenant's numbers (never their secrets), contacts and their consent
 *                 history, conversations, messages, templates, quick replies
 *   agent         edits contacts (not their opt-in or consent), works conversations (status,
 *                 assignment, mode, priority, tags; marks them read, hands them off) and sends
 *                 messages; when the tenant sets restrict_agents_to_assigned, only in
 *                 conversations assigned to them or to one of their teams; their own greeting
 *   manager       tags, templates, quick replies, any agent greeting, and the customer's
 *                 documented opt-in / opt-out / consent requests (record_contact_consent)
 *   admin         numbers and their secrets (through set_whatsapp_number_secret), raw events
 *   service role  ingest, queues, everything the worker does
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
  check (wa_id is not null or user_id is not null or lgpd_state = 'anonymised')
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
comment on column public.contacts.tags is 'Tag names (see tags) for segmentation.';

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
create index if not exists conversations_queue_idx on public.conversations (tenant_id, team_id, queued_at)
  where mode = 'human' and assignee_id is null and status in ('open', 'waiting', 'pending');
comment on table public.conversations is 'A session between a contact and a number (or a call / meeting, seed 004): mode bot/flow/human, queue and assignment, 24 h window, metrics.';
comment on column public.conversations.mode is 'Who answers: bot (AI), flow (interactive flow graph) or human (agents).';
comment on column public.conversations.status is 'open / waiting (for the customer) / pending (in a human queue) are live; resolved, closed and expired are final.';
comment on column public.conversations.window_expires_at is '24 h customer-service window: free-form messages may be sent until then; afterwards only approved templates.';
comment on column public.conversations.queued_at is 'When the conversation entered its team''s human queue (handoff).';
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
  direction text not null check (direction in ('inbound', 'outbound')),
  sender_type text not null check (sender_type in ('contact', 'bot', 'agent', 'system', 'campaign')),
  sender_member_id uuid,
  wamid text check (length(wamid) <= 200),
  type text not null check (type in ('text', 'image', 'audio', 'video', 'document', 'sticker', 'location',
    'contacts', 'interactive', 'button', 'order', 'system', 'template', 'reaction', 'unsupported', 'unknown')),
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
-- Bots' daily reply caps count their replies of the day.
create index if not exists messages_bot_replies_idx on public.messages (tenant_id, created_at)
  where sender_type = 'bot';
comment on table public.messages is 'Every message in and out, with its WhatsApp status lifecycle; outbound rows double as the send queue.';
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
  source text not null check (source in ('customer_message', 'documented_request', 'import', 'system')),
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
comment on column public.contact_consents.source is 'customer_message (the customer wrote it, see message_id), documented_request (a manager recorded a request the tenant documents), import or system.';
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
  select case when private.wa_timestamp(value) <= now() + interval '5 minutes' then private.wa_timestamp(value)
              else now() end
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
    when private.wa_timestamp(value) is null then 'missing or not unix seconds: the receive time is used'
    when private.wa_timestamp(value) > now() + interval '5 minutes'
      then 'more than 5 minutes after it was received: the receive time is used'
    when private.wa_timestamp(value) < now() - interval '30 days'
      then 'older than 30 days (Meta retries for 7 days): kept as stamped'
  end
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

  if wa_contact.wa_id is distinct from v_contact.wa_id and not exists (
       select 1 from public.contacts o where o.tenant_id = wa_contact.tenant_id and o.wa_id = wa_contact.wa_id) then
    v_wa_id := wa_contact.wa_id;
  end if;
  if v_contact.user_id is null and not exists (
       select 1 from public.contacts o where o.tenant_id = wa_contact.tenant_id and o.user_id = wa_contact.user_id) then
    v_user_id := wa_contact.user_id;
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
  v_id uuid;
begin
  if v_type not in ('text', 'image', 'audio', 'video', 'document', 'sticker', 'location', 'contacts',
                    'interactive', 'button', 'order', 'system', 'unsupported') then
    v_type := 'unknown';  -- a type Meta added after this code: kept whole in payload
  end if;
  v_obj := case when v_type in ('unknown', 'unsupported') then msg else msg -> v_type end;
  v_media := v_type in ('image', 'audio', 'video', 'document', 'sticker');
  v_content := private.inbound_content(v_type, v_obj);
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
    left(msg -> 'context' ->> 'id', 200),
    case when msg -> 'context' ->> 'id' is not null then
      (select m.id from public.messages m
        where m.tenant_id = insert_inbound.tenant_id and m.wamid = msg -> 'context' ->> 'id') end,
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
         coalesce(jsonb_agg(private.memory_entry(m) order by m.created_at)
                    filter (where private.memory_entry(m) is not null), '[]') as memory
    into v
    from public.messages m
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
           else c.window_expires_at end,
         status = case when v.customer_at is not null and c.status = 'waiting' then 'open' else c.status end
   where c.id = count_inbound.conversation_id;
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
                      from unnest(changes) with ordinality c(ch, cord)
                     cross join lateral jsonb_array_elements(
                             case when jsonb_typeof(c.ch -> 'value' -> 'messages') = 'array'
                                  then c.ch -> 'value' -> 'messages' else '[]' end) with ordinality e(m, ord)
                    offset 0) x) i  -- offset 0: the sorts carry each message, not its whole change
     cross join lateral (select case when i.n > budget then 'over the item limit of one webhook body'
                                     else private.inbound_problem(i.m) end as problem) p
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
      perform private.count_inbound(v_conv.tenant_id, v_conv.id, v_contact, v_ids);
      v_ids := '{}';
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
          v_conv := private.live_conversation(v_row.tenant_id, v_contact, v_row.number_id, v_row.timeout, v_row.at,
                                              v_row.m -> 'referral');
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
    return 'unknown';
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
    when 'start' then 'opt_in' when 'voltar a receber' then 'opt_in' when 'quero receber' then 'opt_in'
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
    if v_obj ->> 'type' not in ('button', 'list', 'cta_url') or v_obj ->> 'type' is null then
      return 'interactive.type must be button, list or cta_url';
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
    if v_obj ->> 'type' = 'cta_url' then
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
  v_messages jsonb := private.ingest_messages(changes, budget);
  v_left integer := budget - (v_messages ->> 'used')::integer;
  v_change jsonb;
  v_statuses jsonb;
  v_errors jsonb;
  v_quarantined jsonb;
  v_applied integer := 0;
  v_unknown integer := 0;
  v_count integer := jsonb_array_length(v_messages -> 'quarantined');
begin
  update public.inbound_events e
     set status = 'partial', quarantined = q.items, reason = q.n || ' item(s) quarantined'
    from (select x ->> 'event' as event, count(*) as n,
                 jsonb_agg(jsonb_build_object('item', x -> 'item', 'reason', x -> 'reason') order by ord) as items
            from jsonb_array_elements(v_messages -> 'quarantined') with ordinality q(x, ord)
           group by 1) q
   where e.id = q.event::uuid;
  foreach v_change in array changes loop
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
  v_new uuid[] := '{}';
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
  v_new := array(select jsonb_array_elements_text(v_result -> 'ids')::uuid);
  v_quarantine_count := v_quarantine_count + (v_result ->> 'quarantined')::integer;

  if cardinality(v_new) > 0 then
    perform pg_notify('zapbase_inbound', cardinality(v_new)::text);
  end if;
  return jsonb_build_object(
    'events', v_events, 'duplicate_events', v_duplicates, 'messages', cardinality(v_new),
    'duplicate_messages', v_result -> 'duplicate_messages', 'reactions', v_result -> 'reactions',
    'statuses', v_result -> 'statuses', 'unknown_statuses', v_result -> 'unknown_statuses',
    'quarantined', v_quarantine_count, 'unroutable', v_unroutable, 'refused', v_refused,
    'inbound_message_ids', to_jsonb(v_new));
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
  v_number public.whatsapp_numbers;
  v_capacity integer;
  v_ids uuid[];
  v_left integer := batch_size;
begin
  for v_number in
    select n.* from public.whatsapp_numbers n
     where n.id in (select distinct m.whatsapp_number_id from public.messages m
                     where m.status in ('queued', 'sending') and m.whatsapp_number_id is not null)
       and n.status <> 'disabled'
     order by n.send_window_start nulls first
     -- not FOR UPDATE: the key-share locks every ingest and queued message take on their
     -- number (foreign keys) would make the sender skip a busy number
     for no key update of n skip locked
  loop
    exit when v_left <= 0;
    v_capacity := v_number.throughput_mps - case when v_number.send_window_start > now() - interval '1 second'
                                                 then v_number.send_window_count else 0 end;
    continue when v_capacity <= 0;
    select array_agg(h.id) into v_ids
      from (select q.id from (
              select distinct on (m.contact_id) m.id, m.status, m.next_attempt_at, m.lease_until, m.created_at
                from public.messages m
               where m.whatsapp_number_id = v_number.id and m.status in ('queued', 'sending')
               order by m.contact_id, m.created_at, m.id) q
             where (q.status = 'queued' and coalesce(q.next_attempt_at, q.created_at) <= now())
                or (q.status = 'sending' and q.lease_until < now())
             order by q.created_at
             limit least(v_capacity, v_left)) h;
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
      select m.id, m.tenant_id, m.conversation_id, m.whatsapp_number_id, v_number.phone_number_id,
             s.decrypted_secret, c.wa_id, c.user_id, m.payload, m.reply_to_wamid, m.attempts
        from public.messages m
        join public.contacts c on c.tenant_id = m.tenant_id and c.id = m.contact_id
        left join vault.decrypted_secrets s on s.id = v_number.access_token_secret_id
                                            and s.name = 'whatsapp_number:' || v_number.id || ':access_token'
       where m.id = any(v_ids)
       order by m.created_at;
  end loop;
end;
$$;
comment on function public.whatsapp_claim_outbound(text, integer, integer) is 'Worker: claim queued messages within each number''s throughput, one in flight per contact, with a lease.';

-- Worker: the Graph API accepted the message. Status webhooks that arrived before the
-- wamid was known are adopted now. Idempotent.
create or replace function public.whatsapp_mark_sent(message_id uuid, wamid text)
returns void
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_tenant uuid;
  v_event public.message_status_events;
begin
  update public.messages m
     set wamid = whatsapp_mark_sent.wamid,
         status = case when private.outbound_rank(m.status) < private.outbound_rank('sent') then 'sent' else m.status end,
         sent_at = coalesce(m.sent_at, now()), lease_until = null, leased_by = null,
         error_code = null, error_title = null, error_details = null, next_attempt_at = null
   where m.id = whatsapp_mark_sent.message_id and m.direction = 'outbound'
  returning m.tenant_id into v_tenant;
  if v_tenant is null then
    raise exception 'outbound message % not found', whatsapp_mark_sent.message_id using errcode = 'P0002';
  end if;
  for v_event in
    update public.message_status_events e set message_id = whatsapp_mark_sent.message_id
     where e.tenant_id = v_tenant and e.wamid = whatsapp_mark_sent.wamid and e.message_id is null
    returning e.*
  loop
    perform private.apply_status(whatsapp_mark_sent.message_id, v_event.status, v_event.occurred_at,
      case when v_event.error_code is not null then jsonb_build_object('code', v_event.error_code,
        'title', v_event.error_title, 'error_data', jsonb_build_object('details', v_event.error_details)) end,
      v_event.pricing);
  end loop;
end;
$$;
comment on function public.whatsapp_mark_sent(uuid, text) is 'Worker: record the wamid Meta returned; adopts status webhooks that came first.';

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

/**
 * ----
 * Section - Inbound processing queue (worker)
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
         s.decrypted_secret, m.wamid, m.type, m.content, m.payload, m.media_id, m.media_mime_type, m.is_voice,
         m.interactive_reply_id, c.mode, c.bot_id, k.wa_id, k.user_id, k.profile_name, m.attempts,
         -- what queue_outbound would refuse: a bot does not answer (nor spend AI on) them
         not k.is_blocked and k.opt_in and k.lgpd_state = 'active'
    from claimed m
    join public.conversations c on c.tenant_id = m.tenant_id and c.id = m.conversation_id
    join public.contacts k on k.tenant_id = m.tenant_id and k.id = m.contact_id
    left join public.whatsapp_numbers n on n.tenant_id = m.tenant_id and n.id = m.whatsapp_number_id
    left join vault.decrypted_secrets s on s.id = n.access_token_secret_id
                                        and s.name = 'whatsapp_number:' || n.id || ':access_token'
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
     set mode = 'human', status = case when c.assignee_id is null then 'pending' else c.status end,
         handoff_at = now(), handoff_reason = left(handoff_conversation.reason, 500),
         queued_at = case when c.assignee_id is null then now() else c.queued_at end,
         team_id = coalesce(v_team.id, c.team_id,
           (select t.id from public.teams t where t.tenant_id = c.tenant_id and t.is_active
             order by t.kind = 'support' desc, t.created_at limit 1))
   where c.id = v_conv.id
  returning * into v_conv;
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
create or replace function private.my_member_ids()
returns setof uuid
language sql
stable
security definer
set search_path = ''
as $$
  select m.id from public.members m where m.user_id = auth.uid() and m.status = 'active'
$$;
comment on function private.my_member_ids() is 'The caller''s member ids (one per tenant).';

create or replace function private.my_team_ids()
returns setof uuid
language sql
stable
security definer
set search_path = ''
as $$
  select tm.team_id from public.team_members tm
    join public.members m on m.tenant_id = tm.tenant_id and m.id = tm.member_id
   where m.user_id = auth.uid() and m.status = 'active'
$$;
comment on function private.my_team_ids() is 'Teams the caller serves.';

-- Tenants where the caller may work every conversation: managers and up always; agents
-- unless the tenant restricts them to what is assigned to them or their teams.
create or replace function private.my_unrestricted_tenant_ids()
returns setof uuid
language sql
stable
security definer
set search_path = ''
as $$
  select m.tenant_id from public.members m join public.tenants t on t.id = m.tenant_id
   where m.user_id = auth.uid() and m.status = 'active'
     and (m.role >= 'manager' or (m.role = 'agent' and not t.restrict_agents_to_assigned))
$$;

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
  if tg_op = 'DELETE'
     and (not exists (select 1 from public.contacts c where c.tenant_id = old.tenant_id and c.id = old.contact_id)
          or not exists (select 1 from public.tenants t where t.id = old.tenant_id)) then
    return old;
  end if;
  raise exception 'the consent history is append-only: record a new entry instead'
    using errcode = '42501';
end;
$$;

-- A customer who writes STOP-like words opts out, START-like words opt back in (see
-- private.consent_word); the message is the evidence. Nothing is recorded when the contact
-- is already where the words would put them.
create or replace function private.tg_messages_consent_words()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_kind text := private.consent_word(new.content);
begin
  if v_kind is not null and exists (
    select 1 from public.contacts c
     where c.tenant_id = new.tenant_id and c.id = new.contact_id and c.opt_in = (v_kind = 'opt_out')
  ) then
    perform private.record_consent(new.tenant_id, new.contact_id, v_kind, 'customer_message', new.content,
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
-- note, a reaction, a spoken copy of a reply (audio) or a sticker, a message without text.
create or replace function private.memory_entry(m public.messages)
returns jsonb
language sql
immutable
parallel safe
set search_path = ''
as $$
  select case when coalesce(m.transcription, m.content) is not null and m.sender_type <> 'system'
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
language sql
set search_path = ''
as $$
  insert into public.session_context (tenant_id, conversation_id, ttl_expires_at)
  select remember.tenant_id, remember.conversation_id, now() + t.session_timeout
    from public.tenants t
   where t.id = remember.tenant_id and jsonb_array_length(remember.entries) > 0
  on conflict (tenant_id, conversation_id) do nothing;
  update public.session_context s
     set recent_messages = (
           select coalesce(jsonb_agg(e.v order by e.ord), '[]')
             from jsonb_array_elements(s.recent_messages || remember.entries) with ordinality e(v, ord)
            where e.ord > jsonb_array_length(s.recent_messages) + jsonb_array_length(remember.entries)
                          - s.max_messages),
         pending_summary = s.pending_summary + greatest(
           jsonb_array_length(s.recent_messages) + jsonb_array_length(remember.entries) - s.max_messages, 0),
         ttl_expires_at = now() + (select t.session_timeout from public.tenants t where t.id = s.tenant_id),
         updated_at = now()
   where s.tenant_id = remember.tenant_id and s.conversation_id = remember.conversation_id
     and jsonb_array_length(remember.entries) > 0;
$$;

-- The AI memory follows outbound messages and transcriptions row by row. Inbound messages
-- are remembered by ingest (count_inbound), once per conversation and batch.
create or replace function private.tg_messages_remember()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_entry jsonb;
begin
  if (tg_op = 'INSERT' and new.direction = 'inbound') or (tg_op = 'UPDATE' and old.transcription is not null) then
    return null;
  end if;
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
  foreach v_table in array array['whatsapp_numbers', 'contacts', 'conversations', 'messages', 'message_templates',
                                 'quick_replies', 'agent_greetings'] loop
    execute format('drop trigger if exists _100_set_updated_at on public.%I', v_table);
    execute format('create trigger _100_set_updated_at before update on public.%I
                    for each row execute function private.tg_set_updated_at()', v_table);
  end loop;
  foreach v_table in array array['whatsapp_numbers', 'message_templates', 'quick_replies', 'tags'] loop
    execute format('drop trigger if exists _900_audit on public.%I', v_table);
    execute format('create trigger _900_audit after insert or update or delete on public.%I
                    for each row execute function private.tg_audit()', v_table);
  end loop;
end
$$;

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
drop trigger if exists _300_remember on public.messages;
create trigger _300_remember after insert or update of transcription on public.messages
  for each row execute function private.tg_messages_remember();
drop trigger if exists _400_consent_words on public.messages;
create trigger _400_consent_words after insert on public.messages
  for each row when (new.direction = 'inbound' and new.sender_type = 'contact' and length(new.content) <= 60)
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

-- tags, message_templates, quick_replies: members read, managers write
do $$
declare
  v_table text;
begin
  foreach v_table in array array['tags', 'message_templates', 'quick_replies'] loop
    execute format('drop policy if exists "Members read %1$s" on public.%1$I', v_table);
    execute format('create policy "Members read %1$s" on public.%1$I for select to authenticated
                    using (tenant_id in (select private.my_tenant_ids()))', v_table);
    execute format('drop policy if exists "Managers add %1$s" on public.%1$I', v_table);
    execute format('create policy "Managers add %1$s" on public.%1$I for insert to authenticated
                    with check (tenant_id in (select private.my_tenant_ids_with_role(''manager'')))', v_table);
    execute format('drop policy if exists "Managers edit %1$s" on public.%1$I', v_table);
    execute format('create policy "Managers edit %1$s" on public.%1$I for update to authenticated
                    using (tenant_id in (select private.my_tenant_ids_with_role(''manager'')))
                    with check (tenant_id in (select private.my_tenant_ids_with_role(''manager'')))', v_table);
    execute format('drop policy if exists "Managers delete %1$s" on public.%1$I', v_table);
    execute format('create policy "Managers delete %1$s" on public.%1$I for delete to authenticated
                    using (tenant_id in (select private.my_tenant_ids_with_role(''manager'')))', v_table);
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
  insert (tenant_id, wa_id, name, email, phone, cpf, company, is_client, tags, attributes, is_blocked, notes),
  update (name, email, cpf, company, is_client, tags, attributes, is_blocked, notes),
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
grant select, insert (tenant_id, shortcut, title, content, media_url, media_type, team_id),
  update (shortcut, title, content, media_url, media_type, team_id), delete
  on public.quick_replies to authenticated;
grant select, insert (tenant_id, member_id, message_template, is_active, auto_send),
  update (message_template, is_active, auto_send), delete on public.agent_greetings to authenticated;
grant select on public.inbound_events to authenticated;
grant select, insert, update, delete on public.whatsapp_numbers, public.contacts, public.tags, public.conversations,
  public.messages, public.message_status_events, public.session_context, public.message_templates,
  public.quick_replies, public.agent_greetings, public.inbound_events to service_role;

revoke execute on all functions in schema private from public, anon;
grant execute on function private.my_member_ids(), private.my_team_ids(), private.my_unrestricted_tenant_ids()
  to authenticated, service_role;
revoke execute on function public.whatsapp_ingest(jsonb, text), public.whatsapp_quarantine_raw(text, text),
  public.whatsapp_webhook_app(text), public.whatsapp_queue_reply(uuid, jsonb, text, uuid, jsonb),
  public.whatsapp_claim_outbound(text, integer, integer), public.whatsapp_mark_sent(uuid, text),
  public.whatsapp_mark_send_failed(uuid, integer, text, text, boolean, numeric),
  public.whatsapp_alert_send_failure(uuid, jsonb, text, text),
  public.whatsapp_claim_inbound(text, integer, integer), public.whatsapp_finish_inbound(uuid, text, text),
  public.whatsapp_fail_inbound(uuid, text, text, integer),
  public.send_message(uuid, jsonb, uuid), public.start_conversation(uuid, uuid),
  public.handoff_conversation(uuid, text, uuid), public.set_whatsapp_number_secret(uuid, text, text),
  public.mark_conversation_read(uuid), public.record_contact_consent(uuid, text, text)
  from public, anon, authenticated;
grant execute on function public.whatsapp_ingest(jsonb, text), public.whatsapp_quarantine_raw(text, text),
  public.whatsapp_webhook_app(text), public.whatsapp_queue_reply(uuid, jsonb, text, uuid, jsonb),
  public.whatsapp_claim_outbound(text, integer, integer), public.whatsapp_mark_sent(uuid, text),
  public.whatsapp_mark_send_failed(uuid, integer, text, text, boolean, numeric),
  public.whatsapp_alert_send_failure(uuid, jsonb, text, text),
  public.whatsapp_claim_inbound(text, integer, integer), public.whatsapp_finish_inbound(uuid, text, text),
  public.whatsapp_fail_inbound(uuid, text, text, integer),
  public.handoff_conversation(uuid, text, uuid), public.set_whatsapp_number_secret(uuid, text, text)
  to service_role;
grant execute on function public.send_message(uuid, jsonb, uuid), public.start_conversation(uuid, uuid),
  public.handoff_conversation(uuid, text, uuid), public.set_whatsapp_number_secret(uuid, text, text),
  public.mark_conversation_read(uuid), public.record_contact_consent(uuid, text, text)
  to authenticated;
