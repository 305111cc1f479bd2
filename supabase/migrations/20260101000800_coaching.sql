/**
 * Zapbase module 8: coaching (seed 004 Performancy).
 * Sales, pre-sales and CS coaching: versioned playbooks, calls and meetings with their
 * transcripts, AI insights of a conversation (WhatsApp or call) with evidence-backed
 * methodology scores, OKRs whose key results move with real data, and the coaching alerts.
 *
 *   playbooks (draft ─► active ─► inactive; a new version links its parent)
 *   request_playbook_draft ─► playbook_drafts (pending) ─► worker: coaching_draft_claim
 *        ─► AI gateway (feature playbook_draft) ─► coaching_draft_record: a content that passes
 *           the schema becomes a new draft playbook (is_ai_generated), else invalid_output
 *   coaching_calls with an audio file (transcription pending) ─► worker: coaching_transcription_claim
 *        ─► provider transcription (feature call_transcription, priced per audio minute)
 *        ─► coaching_transcription_record: the transcript, then lines and insight as an upload
 *   coaching_calls ─► coaching_call_lines (one row per transcript line: what evidence cites)
 *   request_insight / a call's transcript ─► conversation_insights (pending, one per transcript hash)
 *        ─► worker: coaching_insight_claim ─► AI gateway (feature coaching_insight)
 *        ─► coaching_insight_record: evidence checked against the conversation, scores stored
 *   okr_periods (one current) ─► objectives ─► key_results ─► key_result_progress
 *        ─► key_results_status (status and trend from progress against time elapsed)
 *        ◄── job okr_metrics (playbook score, won deal value, CSAT, first response time)
 *   job coaching_alerts ─► alerts deal_stuck, low_playbook_adherence, target_risk, conversion_drop
 *   import_logs (finished) ─► alert import_failed; job operation_alerts ─► alerts bot_error, ai_rate_limit
 *
 * Why calls are not rows of `conversations`: a WhatsApp conversation is a session of a
 * number with a contact (24 h window, queue, assignment, wamids, delivery status) whose
 * messages trigger ingest, the bot and the sender. A call is one uploaded transcript of a
 * seller with a lead or deal. An insight therefore points at a conversation OR a call, and
 * its evidence cites message ids or call line ids of that subject.
 *
 * Tenant settings read (tenants.settings.coaching, all optional): deal_stuck_days (14: a
 * stage without stuck_after), adherence_min (60) and adherence_window (5 analysed
 * conversations), conversion_drop_pct (20), import_rejected_pct (10: a partial import
 * rejecting more of its lines alerts).
 *
 * Who may do what:
 *   every member  reads playbooks and OKRs; records progress of key results they own
 *   agent         uploads their own calls (text or audio), reads their own calls and insights (and
 *                 asks for them), retries their calls' failed transcriptions
 *   manager       playbooks and AI drafts of playbooks, OKRs, every call and insight of the tenant
 *   service role  the coaching worker (claim, record: insights, drafts, transcriptions) and the jobs
 */

/**
 * ----
 * Section - Validation helpers (used by the tables' triggers and the insight recorder)
 * ----
 */

-- The dimensions each methodology is scored on.
create or replace function private.methodology_dimensions(methodology text)
returns text[]
language sql
immutable
set search_path = ''
as $$
  select case methodology_dimensions.methodology
    when 'spiced' then array['situation', 'pain', 'impact', 'critical_event', 'decision']
    when 'spin' then array['situation', 'problem', 'implication', 'need_payoff']
    when 'meddic' then array['metrics', 'economic_buyer', 'decision_criteria', 'decision_process',
                             'identify_pain', 'champion']
    when 'bant' then array['budget', 'authority', 'need', 'timeline']
  end
$$;
comment on function private.methodology_dimensions(text) is 'The dimensions a methodology (spiced, spin, meddic, bant) is scored on, in order.';

-- The playbook content schema, checked by private.playbook_content_problem:
--   {
--     "sections":    [ {"title": text 1-120, "questions": [text 1-500, ... 1 to 30]}, ... 1 to 30 ],
--     "objections":  [ {"objection": text 1-300, "answer": text 1-2000}, ... up to 50 ]   (optional),
--     "automations": { ... }                                                               (optional, open)
--   }
-- No other key, at any level.
create or replace function private.playbook_content_problem(content jsonb)
returns text
language plpgsql
immutable
set search_path = ''
as $$
declare
  v_item jsonb;
  v_n integer := 0;
begin
  if jsonb_typeof(content) is distinct from 'object' then
    return 'content must be a JSON object';
  end if;
  if exists (select 1 from jsonb_object_keys(content) k where k not in ('sections', 'objections', 'automations')) then
    return 'content has keys other than sections, objections and automations';
  end if;
  if jsonb_typeof(content -> 'sections') is distinct from 'array'
     or jsonb_array_length(content -> 'sections') not between 1 and 30 then
    return 'sections must be an array of 1 to 30 sections';
  end if;
  for v_item in select value from jsonb_array_elements(content -> 'sections') loop
    v_n := v_n + 1;
    if jsonb_typeof(v_item) <> 'object'
       or exists (select 1 from jsonb_object_keys(v_item) k where k not in ('title', 'questions')) then
      return format('sections[%s] must be an object with title and questions only', v_n);
    end if;
    if jsonb_typeof(v_item -> 'title') is distinct from 'string' or length(v_item ->> 'title') not between 1 and 120 then
      return format('sections[%s].title must be a text of 1 to 120 characters', v_n);
    end if;
    if jsonb_typeof(v_item -> 'questions') is distinct from 'array'
       or jsonb_array_length(v_item -> 'questions') not between 1 and 30
       or exists (select 1 from jsonb_array_elements(v_item -> 'questions') q
                   where jsonb_typeof(q) <> 'string' or length(q #>> '{}') not between 1 and 500) then
      return format('sections[%s].questions must be 1 to 30 texts of 1 to 500 characters', v_n);
    end if;
  end loop;
  if content ? 'objections' then
    if jsonb_typeof(content -> 'objections') <> 'array' or jsonb_array_length(content -> 'objections') > 50 then
      return 'objections must be an array of up to 50 objections';
    end if;
    v_n := 0;
    for v_item in select value from jsonb_array_elements(content -> 'objections') loop
      v_n := v_n + 1;
      if jsonb_typeof(v_item) <> 'object'
         or exists (select 1 from jsonb_object_keys(v_item) k where k not in ('objection', 'answer'))
         or jsonb_typeof(v_item -> 'objection') is distinct from 'string'
         or jsonb_typeof(v_item -> 'answer') is distinct from 'string'
         or length(v_item ->> 'objection') not between 1 and 300
         or length(v_item ->> 'answer') not between 1 and 2000 then
        return format('objections[%s] must be {"objection": text 1-300, "answer": text 1-2000}', v_n);
      end if;
    end loop;
  end if;
  if content ? 'automations' and jsonb_typeof(content -> 'automations') <> 'object' then
    return 'automations must be an object';
  end if;
  return null;
end;
$$;
comment on function private.playbook_content_problem(jsonb) is 'Null when a playbook content matches the schema {"sections": [{"title", "questions": [..]}] (1-30), "objections": [{"objection", "answer"}] (optional, up to 50), "automations": {} (optional)}; otherwise what is wrong.';

/**
 * ----
 * Section - Tables
 * ----
 */

-- Playbooks (seed 004 playbooks): versioned, immutable once activated.
create table if not exists public.playbooks (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  team_id uuid,
  name text not null check (length(name) between 1 and 120),
  description text check (length(description) <= 2000),
  function text not null check (function in ('pre_sales', 'sales', 'cs')),
  methodology text not null check (methodology in ('spiced', 'spin', 'meddic', 'bant')),
  version integer not null default 1 check (version >= 1),
  status text not null default 'draft' check (status in ('draft', 'active', 'inactive')),
  is_ai_generated boolean not null default false,
  content jsonb not null,
  parent_id uuid,
  activated_at timestamptz,
  created_by uuid default auth.uid() references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  foreign key (tenant_id, team_id) references public.teams (tenant_id, id) on delete cascade,
  foreign key (tenant_id, parent_id) references public.playbooks (tenant_id, id)
);
alter table public.playbooks enable row level security;
-- one active playbook per team (or the whole tenant) and function
create unique index if not exists playbooks_one_active_idx on public.playbooks
  (tenant_id, coalesce(team_id, '00000000-0000-0000-0000-000000000000'::uuid), function) where status = 'active';
-- a version has at most one next version: no forks of the history
create unique index if not exists playbooks_one_successor_idx on public.playbooks (tenant_id, parent_id);
create index if not exists playbooks_team_idx on public.playbooks (tenant_id, team_id);
create index if not exists playbooks_created_by_idx on public.playbooks (created_by);
comment on table public.playbooks is 'Sales / pre-sales / CS playbooks (seed 004): sections of questions and objection answers for a methodology. A draft is edited freely; once active a version never changes (only active → inactive and back): a change is a new version whose parent_id is the previous one. One active playbook per team (or tenant, team_id null) and function.';
comment on column public.playbooks.team_id is 'The squad it is for; null: the whole tenant (used when the seller''s team has none).';
comment on column public.playbooks.function is 'pre_sales (SDR), sales (closer) or cs (customer success).';
comment on column public.playbooks.methodology is 'spiced, spin, meddic or bant: the dimensions insights score (private.methodology_dimensions).';
comment on column public.playbooks.content is 'Sections with questions, objections with answers: the schema of private.playbook_content_problem, checked on every write.';
comment on column public.playbooks.version is 'Set by trigger: 1, or the parent''s version + 1.';
comment on column public.playbooks.parent_id is 'The version this one revises (same team, function and methodology).';

-- Requests for an AI draft of a playbook (a manager describes it, the worker writes it).
create table if not exists public.playbook_drafts (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  team_id uuid,
  name text not null check (length(name) between 1 and 120),
  function text not null check (function in ('pre_sales', 'sales', 'cs')),
  methodology text not null check (methodology in ('spiced', 'spin', 'meddic', 'bant')),
  description text not null check (length(btrim(description)) between 1 and 4000),
  status text not null default 'pending'
    check (status in ('pending', 'running', 'done', 'invalid_output', 'refused', 'failed')),
  attempts smallint not null default 0,
  lease_until timestamptz,
  leased_by text check (length(leased_by) <= 200),
  playbook_id uuid,
  model text check (length(model) <= 200),
  prompt_version text check (length(prompt_version) <= 40),
  tokens integer,
  cost_usd numeric(20,10),
  cost_brl numeric(20,10),
  error text check (length(error) <= 2000),
  requested_by uuid default auth.uid() references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  completed_at timestamptz,
  unique (tenant_id, id),
  check (status = 'done' or playbook_id is null),
  foreign key (tenant_id, team_id) references public.teams (tenant_id, id) on delete cascade,
  foreign key (tenant_id, playbook_id) references public.playbooks (tenant_id, id) on delete set null (playbook_id)
);
alter table public.playbook_drafts enable row level security;
create index if not exists playbook_drafts_queue_idx on public.playbook_drafts (created_at)
  where status in ('pending', 'running');
create index if not exists playbook_drafts_tenant_idx on public.playbook_drafts (tenant_id, created_at desc);
create index if not exists playbook_drafts_team_idx on public.playbook_drafts (tenant_id, team_id);
create index if not exists playbook_drafts_playbook_idx on public.playbook_drafts (tenant_id, playbook_id);
create index if not exists playbook_drafts_requested_by_idx on public.playbook_drafts (requested_by);
-- the usage rows of one draft (its cost, summed when it is recorded)
create index if not exists ai_usage_playbook_draft_idx on public.ai_usage (tenant_id, request_id)
  where feature = 'playbook_draft';
comment on table public.playbook_drafts is 'AI drafts of a playbook asked for by a manager (request_playbook_draft): pending → running (a worker''s lease) → done (playbook_id: a new draft playbook, is_ai_generated), or invalid_output (the answer did not match the content schema: nothing stored), refused (AI budget), failed (providers).';
comment on column public.playbook_drafts.description is 'What the manager wants (product, audience, stage of the sale), sent to the model.';
comment on column public.playbook_drafts.playbook_id is 'The draft playbook written from the answer (status done; null again if that draft is deleted).';
comment on column public.playbook_drafts.model is 'The model that answered, as the usage log names it (ai_models.gateway_id).';
comment on column public.playbook_drafts.cost_usd is 'Sum of the ai_usage rows of this draft (request_id playbook_draft:<id>).';

-- Calls and meetings (seed 004 conversations of the channels call, video and e-mail).
create table if not exists public.coaching_calls (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  channel text not null default 'call' check (channel in ('call', 'video', 'email')),
  seller_id uuid,
  lead_id uuid,
  deal_id uuid,
  title text check (length(title) <= 200),
  occurred_at timestamptz not null,
  duration_seconds integer check (duration_seconds between 0 and 86400),
  transcript text not null default '' check (length(transcript) <= 200000),
  transcript_hash text not null default '',
  notes text check (length(notes) <= 10000),
  audio_storage_path text check (length(audio_storage_path) <= 1000),
  audio_mime_type text check (length(audio_mime_type) <= 100),
  transcription_status text check (transcription_status in ('pending', 'running', 'done', 'refused', 'failed')),
  transcription_attempts smallint not null default 0,
  transcription_lease_until timestamptz,
  transcription_leased_by text check (length(transcription_leased_by) <= 200),
  transcription_model text check (length(transcription_model) <= 200),
  transcription_error text check (length(transcription_error) <= 2000),
  transcribed_at timestamptz,
  created_by uuid default auth.uid() references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  foreign key (tenant_id, seller_id) references public.members (tenant_id, id) on delete set null (seller_id),
  foreign key (tenant_id, lead_id) references public.leads (tenant_id, id) on delete set null (lead_id),
  foreign key (tenant_id, deal_id) references public.deals (tenant_id, id) on delete set null (deal_id),
  check ((audio_storage_path is null) = (transcription_status is null))
);
alter table public.coaching_calls enable row level security;
create index if not exists coaching_calls_transcription_queue_idx on public.coaching_calls (created_at)
  where transcription_status in ('pending', 'running');
create index if not exists coaching_calls_seller_idx on public.coaching_calls (tenant_id, seller_id, occurred_at desc);
create index if not exists coaching_calls_lead_idx on public.coaching_calls (tenant_id, lead_id);
create index if not exists coaching_calls_deal_idx on public.coaching_calls (tenant_id, deal_id);
create index if not exists coaching_calls_created_by_idx on public.coaching_calls (created_by);
comment on table public.coaching_calls is 'Calls, video meetings and e-mail threads of a seller with a lead or deal, as an uploaded text transcript (one line per turn, "Speaker: text") or an audio file the worker transcribes. Each upload or change of the transcript queues its AI insight.';
comment on column public.coaching_calls.audio_storage_path is 'The recording, <bucket>/<tenant_id>/... in storage as messages.media_storage_path (set on upload, instead of a transcript): the worker transcribes it.';
comment on column public.coaching_calls.audio_mime_type is 'The recording''s type (audio/mpeg, audio/ogg, audio/wav...), sent to the transcription provider.';
comment on column public.coaching_calls.transcription_status is 'Null for a text upload; for a recording: pending → running (a worker''s lease) → done (transcript written), refused (AI budget) or failed (transcription_error); retry_call_transcription makes a refused or failed one pending again.';
comment on column public.coaching_calls.transcription_model is 'The transcription model, as the usage log names it (feature call_transcription, request_id transcription:<call id>).';
comment on column public.coaching_calls.transcription_error is 'Why the last transcription was refused or failed.';
comment on column public.coaching_calls.seller_id is 'The member who sold (agents upload only their own calls).';
comment on column public.coaching_calls.transcript is 'Plain text, one turn per line, optionally "Speaker: text"; split into coaching_call_lines.';
comment on column public.coaching_calls.transcript_hash is 'sha256 of the transcript (set by trigger): an insight runs once per hash.';

-- The lines of a call's transcript: what an insight's evidence cites by id.
create table if not exists public.coaching_call_lines (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  call_id uuid not null,
  position integer not null check (position >= 1),
  speaker text check (length(speaker) <= 60),
  text text not null check (length(text) between 1 and 20000),
  unique (tenant_id, id),
  unique (call_id, position),
  foreign key (tenant_id, call_id) references public.coaching_calls (tenant_id, id) on delete cascade
);
alter table public.coaching_call_lines enable row level security;
create index if not exists coaching_call_lines_call_idx on public.coaching_call_lines (tenant_id, call_id, position);
comment on table public.coaching_call_lines is 'One row per non-blank line of a call''s transcript (rewritten by trigger when it changes); insights cite these ids as evidence, as they cite message ids of WhatsApp conversations.';

-- AI insights of a conversation or call (seed 004 conversation analysis fields).
create table if not exists public.conversation_insights (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  conversation_id uuid,
  call_id uuid,
  seller_id uuid,
  playbook_id uuid,
  methodology text not null check (methodology in ('spiced', 'spin', 'meddic', 'bant')),
  transcript_hash text not null check (transcript_hash ~ '^[0-9a-f]{64}$'),
  status text not null default 'pending'
    check (status in ('pending', 'running', 'done', 'empty', 'invalid_output', 'refused', 'failed')),
  attempts smallint not null default 0,
  lease_until timestamptz,
  leased_by text check (length(leased_by) <= 200),
  summary text check (length(summary) <= 4000),
  sentiment text check (sentiment in ('positive', 'neutral', 'negative')),
  methodology_scores jsonb,
  methodology_score numeric(5,2) check (methodology_score between 0 and 100),
  playbook_adherence jsonb,
  playbook_score numeric(5,2) check (playbook_score between 0 and 100),
  key_moments jsonb,
  suggested_actions jsonb,
  model text check (length(model) <= 200),
  prompt_version text check (length(prompt_version) <= 40),
  tokens integer,
  cost_usd numeric(20,10),
  cost_brl numeric(20,10),
  error text check (length(error) <= 2000),
  requested_by uuid default auth.uid() references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  completed_at timestamptz,
  unique (tenant_id, id),
  check (num_nonnulls(conversation_id, call_id) = 1),
  foreign key (tenant_id, conversation_id) references public.conversations (tenant_id, id) on delete cascade,
  foreign key (tenant_id, call_id) references public.coaching_calls (tenant_id, id) on delete cascade,
  foreign key (tenant_id, seller_id) references public.members (tenant_id, id) on delete set null (seller_id),
  foreign key (tenant_id, playbook_id) references public.playbooks (tenant_id, id) on delete set null (playbook_id)
);
alter table public.conversation_insights enable row level security;
-- one live analysis per transcript version: a failed one may be asked again
create unique index if not exists conversation_insights_once_idx on public.conversation_insights
  (tenant_id, coalesce(conversation_id, call_id), transcript_hash) where status in ('pending', 'running', 'done', 'empty');
create index if not exists conversation_insights_queue_idx on public.conversation_insights (created_at)
  where status in ('pending', 'running');
create index if not exists conversation_insights_conversation_idx on public.conversation_insights (tenant_id, conversation_id);
create index if not exists conversation_insights_call_idx on public.conversation_insights (tenant_id, call_id);
create index if not exists conversation_insights_seller_idx on public.conversation_insights
  (tenant_id, seller_id, completed_at desc) where status = 'done';
create index if not exists conversation_insights_playbook_idx on public.conversation_insights (tenant_id, playbook_id);
create index if not exists conversation_insights_requested_by_idx on public.conversation_insights (requested_by);
comment on table public.conversation_insights is 'One AI analysis of a WhatsApp conversation or a call at one transcript version: pending → running (a worker''s lease) → done, or empty (nothing to analyse), invalid_output (the model''s answer did not match the schema), refused (AI budget), failed (providers). Scores only with evidence: a dimension without a valid quote is insufficient_evidence, never 0.';
-- the usage rows of one analysis (its cost, summed when it is recorded)
create index if not exists ai_usage_coaching_insight_idx on public.ai_usage (tenant_id, request_id)
  where feature = 'coaching_insight';
comment on column public.conversation_insights.seller_id is 'The call''s seller or the conversation''s assignee when asked.';
comment on column public.conversation_insights.playbook_id is 'The active playbook of the seller''s team (or the tenant''s) for the function, when asked.';
comment on column public.conversation_insights.transcript_hash is 'sha256 of what was analysed (call transcript, or the conversation''s message ids and texts): the same hash never runs twice.';
comment on column public.conversation_insights.methodology_scores is '{dimension: {"status": "scored", "score": 0-10, "evidence": [{"message_id", "quote"}]} | {"status": "insufficient_evidence"}} for every dimension of the methodology; evidence ids are messages (or call lines) of this subject whose text contains the quote.';
comment on column public.conversation_insights.methodology_score is 'Average of the scored dimensions × 10 (0-100); null when no dimension had evidence.';
comment on column public.conversation_insights.playbook_adherence is '[{"section", "question", "covered", "evidence"}] for every question of the playbook; covered only with valid evidence.';
comment on column public.conversation_insights.playbook_score is 'Percentage of the playbook''s questions covered with evidence; null without a playbook.';
comment on column public.conversation_insights.key_moments is '[{"message_id", "quote", "note"}] moments the model pointed at, kept only when the quote is in the cited message.';
comment on column public.conversation_insights.suggested_actions is 'Next actions for the seller (texts, pt-BR).';
comment on column public.conversation_insights.model is 'The model that answered, as the usage log names it (ai_models.gateway_id).';
comment on column public.conversation_insights.prompt_version is 'Version of the worker''s analysis prompt.';
comment on column public.conversation_insights.cost_usd is 'Sum of the ai_usage rows of this analysis (request_id insight:<id>).';

-- OKR periods (seed 004 okr_periods): exactly one current per tenant once any exists.
create table if not exists public.okr_periods (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  label text not null check (length(label) between 1 and 40),
  starts_on date not null,
  ends_on date not null,
  is_current boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  unique (tenant_id, label),
  check (ends_on > starts_on)
);
alter table public.okr_periods enable row level security;
create unique index if not exists okr_periods_one_current_idx on public.okr_periods (tenant_id) where is_current;
comment on table public.okr_periods is 'OKR cycles ("Q1 2026"). The first period of a tenant is current; making another one current un-marks the previous one; the current one cannot be un-marked or deleted directly.';

create table if not exists public.objectives (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  period_id uuid not null,
  title text not null check (length(title) between 1 and 200),
  description text check (length(description) <= 2000),
  area text not null check (area in ('revenue', 'sales', 'marketing', 'pre_sales', 'cs')),
  owner_member_id uuid,
  owner_team_id uuid,
  created_by uuid default auth.uid() references auth.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  check (num_nonnulls(owner_member_id, owner_team_id) <= 1),
  foreign key (tenant_id, period_id) references public.okr_periods (tenant_id, id) on delete cascade,
  foreign key (tenant_id, owner_member_id) references public.members (tenant_id, id) on delete set null (owner_member_id),
  foreign key (tenant_id, owner_team_id) references public.teams (tenant_id, id) on delete set null (owner_team_id)
);
alter table public.objectives enable row level security;
create index if not exists objectives_period_idx on public.objectives (tenant_id, period_id);
create index if not exists objectives_owner_member_idx on public.objectives (tenant_id, owner_member_id);
create index if not exists objectives_owner_team_idx on public.objectives (tenant_id, owner_team_id);
create index if not exists objectives_created_by_idx on public.objectives (created_by);
comment on table public.objectives is 'Objectives of an OKR period by area, owned by a member or a squad (team).';

create table if not exists public.key_results (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  objective_id uuid not null,
  title text not null check (length(title) between 1 and 200),
  unit text not null default 'number' check (unit in ('currency', 'percentage', 'number', 'hours', 'minutes', 'days')),
  start_value numeric(16,4) not null default 0,
  target numeric(16,4) not null,
  current_value numeric(16,4),
  metric text not null default 'manual'
    check (metric in ('manual', 'avg_playbook_score', 'won_deal_value', 'csat', 'first_response_time')),
  metric_team_id uuid,
  owner_member_id uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  check (target <> start_value),
  check (metric <> 'manual' or metric_team_id is null),
  foreign key (tenant_id, objective_id) references public.objectives (tenant_id, id) on delete cascade,
  foreign key (tenant_id, metric_team_id) references public.teams (tenant_id, id) on delete cascade,
  foreign key (tenant_id, owner_member_id) references public.members (tenant_id, id) on delete set null (owner_member_id)
);
alter table public.key_results enable row level security;
create index if not exists key_results_objective_idx on public.key_results (tenant_id, objective_id);
create index if not exists key_results_metric_team_idx on public.key_results (tenant_id, metric_team_id);
create index if not exists key_results_owner_idx on public.key_results (tenant_id, owner_member_id);
create index if not exists key_results_linked_idx on public.key_results (tenant_id) where metric <> 'manual';
comment on table public.key_results is 'Measurable results of an objective: from start_value to target (a target below the start is a result to lower, e.g. first response time). Status and trend: the view key_results_status.';
comment on column public.key_results.current_value is 'The latest progress entry''s value (set by trigger); null before any.';
comment on column public.key_results.metric is 'manual (progress entered by people) or a linked metric the okr_metrics job records: avg_playbook_score (insights, 0-100), won_deal_value (deals won in the period, BRL), csat (1-5 average), first_response_time (minutes), of metric_team_id or the whole tenant.';
comment on column public.key_results.metric_team_id is 'The squad the linked metric is measured on (null: the tenant).';

create table if not exists public.key_result_progress (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  key_result_id uuid not null,
  value numeric(16,4) not null,
  source text not null default 'manual' check (source in ('manual', 'coach', 'pipeline', 'crm', 'analytics')),
  note text check (length(note) <= 1000),
  recorded_by uuid default auth.uid() references auth.users (id) on delete set null,
  recorded_at timestamptz not null default now(),
  unique (tenant_id, id),
  foreign key (tenant_id, key_result_id) references public.key_results (tenant_id, id) on delete cascade
);
alter table public.key_result_progress enable row level security;
create index if not exists key_result_progress_kr_idx on public.key_result_progress (tenant_id, key_result_id, recorded_at desc);
create index if not exists key_result_progress_recorded_by_idx on public.key_result_progress (recorded_by);
comment on table public.key_result_progress is 'Each value a key result had, from people (manual) or the okr_metrics job (coach: playbook scores, crm: won deals, analytics: CSAT and first response time). Append-only.';

/**
 * ----
 * Section - Private helpers
 * ----
 */

-- Where a key result stands: achieved, on_track (progress at least 90 % of the time
-- elapsed), at_risk (at least 60 %) or behind. Progress and time are fractions 0-1.
create or replace function private.key_result_state(start_value numeric, target numeric, current_value numeric,
                                                    starts_on date, ends_on date, as_of timestamptz)
returns table (progress numeric, elapsed numeric, status text)
language sql
immutable
set search_path = ''
as $$
  with f as (
    select least(greatest(coalesce((key_result_state.current_value - key_result_state.start_value)
                                   / (key_result_state.target - key_result_state.start_value), 0), 0), 1) as progress,
           least(greatest((key_result_state.as_of::date - key_result_state.starts_on)::numeric
                          / (key_result_state.ends_on - key_result_state.starts_on), 0), 1) as elapsed
  )
  select round(f.progress, 4), round(f.elapsed, 4),
         case when f.progress >= 1 then 'achieved'
              when f.progress >= f.elapsed * 0.9 then 'on_track'
              when f.progress >= f.elapsed * 0.6 then 'at_risk'
              else 'behind' end
    from f
$$;
comment on function private.key_result_state(numeric, numeric, numeric, date, date, timestamptz) is 'Progress (0-1 towards the target), time elapsed in the period (0-1) and status: achieved, on_track (progress ≥ 90 % of elapsed), at_risk (≥ 60 %), behind.';

-- A tenant's coaching setting (tenants.settings.coaching.<key>) or the default.
create or replace function private.coaching_setting(tenant_id uuid, key text, fallback numeric)
returns numeric
language sql
stable
security definer
set search_path = ''
as $$
  select coalesce((select (t.settings -> 'coaching' ->> coaching_setting.key)::numeric
                     from public.tenants t where t.id = coaching_setting.tenant_id), coaching_setting.fallback)
$$;

-- What an insight of a conversation or call reads: its lines (id, speaker, text) in order.
create or replace function private.insight_lines(tenant_id uuid, conversation_id uuid, call_id uuid)
returns table (id uuid, speaker text, text text)
language sql
stable
security definer
set search_path = ''
as $$
  select x.id, x.speaker, x.text from (
    select m.id, case m.sender_type when 'contact' then 'Cliente' when 'bot' then 'Assistente' else 'Vendedor' end
             as speaker, coalesce(m.transcription, m.content) as text, m.created_at as at, 0 as position
      from public.messages m
     where insight_lines.conversation_id is not null
       and m.tenant_id = insight_lines.tenant_id and m.conversation_id = insight_lines.conversation_id
       and coalesce(m.transcription, m.content) is not null and m.sender_type <> 'system' and m.type <> 'reaction'
    union all
    select l.id, l.speaker, l.text, null, l.position
      from public.coaching_call_lines l
     where insight_lines.call_id is not null
       and l.tenant_id = insight_lines.tenant_id and l.call_id = insight_lines.call_id
  ) x
  order by x.at nulls last, x.position, x.id
  limit 2000
$$;
comment on function private.insight_lines(uuid, uuid, uuid) is 'The text an insight analyses, one row per message (WhatsApp: Cliente / Vendedor / Assistente) or call line, oldest first (up to 2,000).';

-- Queues the insight of a conversation or call at its current text (nothing when that
-- version already has a live one). Returns the insight.
create or replace function private.queue_insight(tenant_id uuid, conversation_id uuid, call_id uuid,
                                                 function text default 'sales')
returns public.conversation_insights
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_hash text;
  v_lines integer;
  v_seller uuid;
  v_playbook public.playbooks;
  v_insight public.conversation_insights;
begin
  select encode(sha256(convert_to(coalesce(string_agg(l.id::text || ':' || l.text, E'\n'), ''), 'UTF8')), 'hex'),
         count(*)
    into v_hash, v_lines
    from private.insight_lines(queue_insight.tenant_id, queue_insight.conversation_id, queue_insight.call_id) l;
  select * into v_insight from public.conversation_insights i
   where i.tenant_id = queue_insight.tenant_id
     and coalesce(i.conversation_id, i.call_id) = coalesce(queue_insight.conversation_id, queue_insight.call_id)
     and i.transcript_hash = v_hash and i.status in ('pending', 'running', 'done', 'empty');
  if found then
    return v_insight;
  end if;
  if queue_insight.call_id is not null then
    select c.seller_id into v_seller from public.coaching_calls c
     where c.tenant_id = queue_insight.tenant_id and c.id = queue_insight.call_id;
  else
    select c.assignee_id into v_seller from public.conversations c
     where c.tenant_id = queue_insight.tenant_id and c.id = queue_insight.conversation_id;
  end if;
  -- the seller's team's active playbook for the function, else the tenant's
  select p.* into v_playbook from public.playbooks p
   where p.tenant_id = queue_insight.tenant_id and p.status = 'active' and p.function = queue_insight.function
     and (p.team_id is null or p.team_id in (select tm.team_id from public.team_members tm
                                             where tm.tenant_id = p.tenant_id and tm.member_id = v_seller))
   order by p.team_id nulls last
   limit 1;
  insert into public.conversation_insights (tenant_id, conversation_id, call_id, seller_id, playbook_id, methodology,
                                            transcript_hash, status, completed_at)
  values (queue_insight.tenant_id, queue_insight.conversation_id, queue_insight.call_id, v_seller, v_playbook.id,
          coalesce(v_playbook.methodology, 'spiced'), v_hash,
          case when v_lines = 0 then 'empty' else 'pending' end, case when v_lines = 0 then now() end)
  returning * into v_insight;
  if v_lines > 0 then
    perform pg_notify('zapbase_insights', '');
  end if;
  return v_insight;
end;
$$;
comment on function private.queue_insight(uuid, uuid, uuid, text) is 'Queues the analysis of a conversation or call at its current text with the active playbook of the seller''s team (else the tenant''s) for the function; an empty one is recorded as empty at once; an already analysed text returns its insight.';

-- The cited evidence that holds: message (or call line) ids of the insight's subject whose
-- text contains the quote (case and spacing aside). Anything else is dropped.
create or replace function private.valid_evidence(evidence jsonb, lines jsonb)
returns jsonb
language sql
immutable
set search_path = ''
as $$
  select coalesce(jsonb_agg(jsonb_build_object('message_id', e ->> 'message_id', 'quote', e ->> 'quote')), '[]'::jsonb)
    from jsonb_array_elements(case when jsonb_typeof(valid_evidence.evidence) = 'array'
                                   then valid_evidence.evidence else '[]'::jsonb end) e
   where jsonb_typeof(e) = 'object' and length(btrim(e ->> 'quote')) >= 3
     and position(lower(regexp_replace(btrim(e ->> 'quote'), '\s+', ' ', 'g'))
                  in lower(regexp_replace(valid_evidence.lines ->> (e ->> 'message_id'), '\s+', ' ', 'g'))) > 0
$$;
comment on function private.valid_evidence(jsonb, jsonb) is 'The items of an evidence array [{"message_id", "quote"}] whose message is in lines ({id: text}) and contains the quote (at least 3 characters; case and spacing ignored).';

/**
 * ----
 * Section - Triggers
 * ----
 */

-- Playbooks: content checked, version from the parent, frozen once active, one active
-- per team and function (activating one retires the previous).
create or replace function private.tg_playbooks_prepare()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_parent public.playbooks;
  v_problem text;
begin
  if tg_op = 'DELETE' then
    if old.status <> 'draft' and pg_trigger_depth() = 1 then
      raise exception 'playbook % version % was activated: it is kept (set it inactive instead)', old.name, old.version
        using errcode = '55000';
    end if;
    return old;
  end if;
  -- LGPD anonymisation scrubs staff text that names a person (lgpd_places_coaching)
  if tg_op = 'UPDATE' and old.status <> 'draft' and current_setting('zapbase.lgpd_scrub', true) is distinct from 'on' then
    if (new.name, new.description, new.team_id, new.function, new.methodology, new.content, new.version,
        new.parent_id, new.is_ai_generated) is distinct from
       (old.name, old.description, old.team_id, old.function, old.methodology, old.content, old.version,
        old.parent_id, old.is_ai_generated) or new.status = 'draft' then
      raise exception 'playbook % version % is %: it cannot change', old.name, old.version, old.status
        using errcode = '55000', hint = 'Create a new version with parent_id = this playbook''s id.';
    end if;
  end if;
  if tg_op = 'INSERT' and new.parent_id is not null then
    select * into v_parent from public.playbooks p where p.tenant_id = new.tenant_id and p.id = new.parent_id;
    if v_parent.id is null then
      raise exception 'parent playbook % not found', new.parent_id using errcode = '23503';
    end if;
    if (new.team_id, new.function, new.methodology) is distinct from
       (v_parent.team_id, v_parent.function, v_parent.methodology) then
      raise exception 'a new version keeps the team, function and methodology of version %', v_parent.version
        using errcode = '23514';
    end if;
    new.version := v_parent.version + 1;
  elsif tg_op = 'INSERT' then
    new.version := 1;
  end if;
  v_problem := private.playbook_content_problem(new.content);
  if v_problem is not null then
    raise exception 'playbook content: %', v_problem using errcode = '23514',
      hint = 'See the comment on private.playbook_content_problem for the schema.';
  end if;
  if new.status = 'active' and (tg_op = 'INSERT' or old.status <> 'active') then
    new.activated_at := now();
    update public.playbooks p set status = 'inactive'
     where p.tenant_id = new.tenant_id and p.team_id is not distinct from new.team_id
       and p.function = new.function and p.status = 'active' and p.id <> new.id;
    perform private.emit(new.tenant_id, 'playbook.activated', 'playbooks', new.id,
      jsonb_build_object('name', new.name, 'version', new.version, 'function', new.function,
                         'methodology', new.methodology, 'team_id', new.team_id));
  end if;
  return new;
end;
$$;
drop trigger if exists _200_prepare on public.playbooks;
create trigger _200_prepare before insert or update or delete on public.playbooks
  for each row execute function private.tg_playbooks_prepare();
drop trigger if exists _100_set_updated_at on public.playbooks;
create trigger _100_set_updated_at before update on public.playbooks
  for each row execute function private.tg_set_updated_at();

-- Calls: hash, lines and a queued insight whenever the transcript is new or changed (a
-- recording: once the worker has written its transcript).
create or replace function private.tg_coaching_calls_hash()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  new.transcript_hash := encode(sha256(convert_to(new.transcript, 'UTF8')), 'hex');
  return new;
end;
$$;
-- A recording instead of a transcript: its path must be in the tenant's folder (the worker
-- reads storage with the service key), and its transcription starts pending.
create or replace function private.tg_coaching_calls_audio()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.audio_storage_path is null then
    new.transcription_status := null;
    return new;
  end if;
  if new.audio_storage_path !~ ('^[A-Za-z0-9._-]+/' || new.tenant_id::text || '/')
     or exists (select 1 from unnest(string_to_array(new.audio_storage_path, '/')) p where p in ('', '.', '..')) then
    raise exception 'audio_storage_path must be a file in the tenant''s folder: <bucket>/%/...', new.tenant_id
      using errcode = '22023';
  end if;
  if btrim(new.transcript) <> '' then
    raise exception 'a call has an audio file or a transcript, not both: the transcript is written from the audio'
      using errcode = '22023';
  end if;
  new.transcript := '';
  new.transcription_status := 'pending';
  new.transcription_attempts := 0;
  new.transcription_lease_until := null;
  new.transcription_leased_by := null;
  new.transcription_model := null;
  new.transcription_error := null;
  new.transcribed_at := null;
  return new;
end;
$$;
drop trigger if exists _150_audio on public.coaching_calls;
create trigger _150_audio before insert on public.coaching_calls
  for each row execute function private.tg_coaching_calls_audio();

drop trigger if exists _200_hash on public.coaching_calls;
create trigger _200_hash before insert or update of transcript on public.coaching_calls
  for each row execute function private.tg_coaching_calls_hash();
drop trigger if exists _100_set_updated_at on public.coaching_calls;
create trigger _100_set_updated_at before update on public.coaching_calls
  for each row execute function private.tg_set_updated_at();
-- a deleted call, or a replaced recording: the old recording leaves storage (see lgpd)
drop trigger if exists _900_orphaned_object on public.coaching_calls;
create trigger _900_orphaned_object after delete or update of audio_storage_path on public.coaching_calls
  for each row execute function private.tg_queue_orphaned_object('audio_storage_path', '');

create or replace function private.tg_coaching_calls_lines()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from public.coaching_call_lines l where l.tenant_id = new.tenant_id and l.call_id = new.id;
  insert into public.coaching_call_lines (tenant_id, call_id, position, speaker, text)
  select new.tenant_id, new.id, row_number() over (order by n),
         nullif(btrim((regexp_match(line, '^\s*([^:]{1,60}):'))[1]), ''),
         left(btrim(coalesce((regexp_match(line, '^\s*[^:]{1,60}:(.*)$'))[1], line)), 20000)
    from regexp_split_to_table(new.transcript, E'\r?\n') with ordinality as t (line, n)
   where btrim(coalesce((regexp_match(line, '^\s*[^:]{1,60}:(.*)$'))[1], line)) <> '';
  -- a recording not transcribed yet is not an empty conversation: its insight waits for the text
  if btrim(new.transcript) <> '' or new.transcription_status is null then
    perform private.queue_insight(new.tenant_id, null, new.id);
  end if;
  if new.transcription_status = 'pending' then
    perform pg_notify('zapbase_insights', '');
  end if;
  return null;
end;
$$;
drop trigger if exists _500_lines on public.coaching_calls;
create trigger _500_lines after insert on public.coaching_calls
  for each row execute function private.tg_coaching_calls_lines();
drop trigger if exists _500_lines_changed on public.coaching_calls;
create trigger _500_lines_changed after update of transcript on public.coaching_calls
  for each row when (old.transcript_hash is distinct from new.transcript_hash)
  execute function private.tg_coaching_calls_lines();

-- OKR periods: the first is current, a new current replaces the old, the current one
-- stays until another takes its place.
create or replace function private.tg_okr_periods_current()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if tg_op = 'DELETE' then
    if old.is_current and pg_trigger_depth() = 1 then
      raise exception 'period % is the current one: make another period current first', old.label
        using errcode = '55000';
    end if;
    return old;
  end if;
  if tg_op = 'UPDATE' and old.is_current and not new.is_current and pg_trigger_depth() = 1 then
    raise exception 'a tenant always has one current OKR period: make another period current instead'
      using errcode = '55000';
  end if;
  if tg_op = 'INSERT' and not new.is_current then
    new.is_current := not exists (select 1 from public.okr_periods p where p.tenant_id = new.tenant_id and p.is_current);
  end if;
  if new.is_current and (tg_op = 'INSERT' or not old.is_current) then
    update public.okr_periods p set is_current = false
     where p.tenant_id = new.tenant_id and p.is_current and p.id <> new.id;
  end if;
  return new;
end;
$$;
drop trigger if exists _200_current on public.okr_periods;
create trigger _200_current before insert or update or delete on public.okr_periods
  for each row execute function private.tg_okr_periods_current();

-- Key results: the current value is the latest progress entry's.
create or replace function private.tg_key_result_progress_current()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.key_results k
     set current_value = (select p.value from public.key_result_progress p
                           where p.tenant_id = k.tenant_id and p.key_result_id = k.id
                           order by p.recorded_at desc, p.id desc limit 1)
   where k.tenant_id = new.tenant_id and k.id = new.key_result_id;
  return null;
end;
$$;
drop trigger if exists _500_current on public.key_result_progress;
create trigger _500_current after insert on public.key_result_progress
  for each row execute function private.tg_key_result_progress_current();

-- Progress is history: never edited. What may still change: the recorder, set null when
-- their user is deleted, and a note that names a person, scrubbed by LGPD anonymisation.
create or replace function private.tg_key_result_progress_append_only()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if (new.id, new.tenant_id, new.key_result_id, new.value, new.source, new.recorded_at)
       is not distinct from (old.id, old.tenant_id, old.key_result_id, old.value, old.source, old.recorded_at)
     and (new.recorded_by is not distinct from old.recorded_by or new.recorded_by is null)
     and (new.note is not distinct from old.note or current_setting('zapbase.lgpd_scrub', true) = 'on') then
    return new;
  end if;
  raise exception 'key result progress is append-only: record a new value instead' using errcode = '55000';
end;
$$;
drop trigger if exists _100_append_only on public.key_result_progress;
create trigger _100_append_only before update on public.key_result_progress
  for each row execute function private.tg_key_result_progress_append_only();

do $$
declare
  v_table text;
begin
  foreach v_table in array array['okr_periods', 'objectives', 'key_results'] loop
    execute format('drop trigger if exists _100_set_updated_at on public.%I', v_table);
    execute format('create trigger _100_set_updated_at before update on public.%I
                    for each row execute function private.tg_set_updated_at()', v_table);
  end loop;
end
$$;

/**
 * ----
 * Section - Views
 * ----
 */

-- Status and trend of every key result, as of now (time-dependent: a view, not a column).
create or replace view public.key_results_status with (security_invoker = true) as
select k.id, k.tenant_id, k.objective_id, o.period_id, k.title, k.unit, k.start_value, k.target, k.current_value,
       k.metric, s.progress, s.elapsed, s.status,
       case when w.value is null or k.current_value is null or k.current_value = w.value then 'stable'
            when (k.current_value - w.value) * sign(k.target - k.start_value) > 0 then 'up'
            else 'down' end as trend,
       round(coalesce((k.current_value - w.value) / (k.target - k.start_value), 0) * 100, 2) as trend_value
  from public.key_results k
  join public.objectives o on o.tenant_id = k.tenant_id and o.id = k.objective_id
  join public.okr_periods p on p.tenant_id = o.tenant_id and p.id = o.period_id
  cross join lateral private.key_result_state(k.start_value, k.target, k.current_value, p.starts_on, p.ends_on, now()) s
  left join lateral (select g.value from public.key_result_progress g
                      where g.tenant_id = k.tenant_id and g.key_result_id = k.id
                        and g.recorded_at <= now() - interval '7 days'
                      order by g.recorded_at desc, g.id desc limit 1) w on true;
comment on view public.key_results_status is 'Key results with status (achieved / on_track / at_risk / behind: progress towards the target against the share of the period elapsed) and trend (up / down / stable against the value of 7 days ago, towards the target; trend_value in points of progress).';

/**
 * ----
 * Section - Jobs
 * ----
 */

-- Linked metrics of the current periods' key results, recorded as progress when changed.
create or replace function private.job_okr_metrics(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_kr record;
  v_value numeric;
  v_rows integer := 0;
begin
  for v_kr in
    select k.*, p.starts_on, p.ends_on, t.timezone
      from public.key_results k
      join public.objectives o on o.tenant_id = k.tenant_id and o.id = k.objective_id
      join public.okr_periods p on p.tenant_id = o.tenant_id and p.id = o.period_id and p.is_current
      join public.tenants t on t.id = k.tenant_id
     where k.metric <> 'manual'
  loop
    v_value := case v_kr.metric
      when 'avg_playbook_score' then (
        select avg(i.playbook_score) from public.conversation_insights i
         where i.tenant_id = v_kr.tenant_id and i.status = 'done' and i.playbook_score is not null
           and (i.completed_at at time zone v_kr.timezone)::date between v_kr.starts_on and v_kr.ends_on
           and (v_kr.metric_team_id is null or i.seller_id in (
                 select tm.member_id from public.team_members tm
                  where tm.tenant_id = v_kr.tenant_id and tm.team_id = v_kr.metric_team_id)))
      when 'won_deal_value' then (
        select coalesce(sum(d.value), 0) from public.deals d
         where d.tenant_id = v_kr.tenant_id and d.status = 'won'
           and (d.closed_at at time zone v_kr.timezone)::date between v_kr.starts_on and v_kr.ends_on
           and (v_kr.metric_team_id is null or d.owner_id in (
                 select tm.member_id from public.team_members tm
                  where tm.tenant_id = v_kr.tenant_id and tm.team_id = v_kr.metric_team_id)))
      when 'csat' then (
        select sum(a.csat_sum)::numeric / nullif(sum(a.csat_count), 0) from public.analytics_daily a
         where a.tenant_id = v_kr.tenant_id and a.day between v_kr.starts_on and v_kr.ends_on
           and (v_kr.metric_team_id is null or a.team_id = v_kr.metric_team_id))
      when 'first_response_time' then (
        select sum(a.frt_seconds_sum)::numeric / nullif(sum(a.frt_count), 0) / 60 from public.analytics_daily a
         where a.tenant_id = v_kr.tenant_id and a.day between v_kr.starts_on and v_kr.ends_on
           and (v_kr.metric_team_id is null or a.team_id = v_kr.metric_team_id))
    end;
    if v_value is not null and round(v_value, 4) is distinct from v_kr.current_value then
      insert into public.key_result_progress (tenant_id, key_result_id, value, source, note, recorded_by, recorded_at)
      values (v_kr.tenant_id, v_kr.id, round(v_value, 4),
              case v_kr.metric when 'avg_playbook_score' then 'coach' when 'won_deal_value' then 'crm' else 'analytics' end,
              'okr_metrics: ' || v_kr.metric, null, job_okr_metrics.as_of);
      v_rows := v_rows + 1;
    end if;
  end loop;
  return v_rows;
end;
$$;

-- The coaching alerts, each once per subject and period (alerts.dedupe_key).
create or replace function private.job_coaching_alerts(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_rows integer;
  v_total integer := 0;
  v_week text := to_char(job_coaching_alerts.as_of, 'IYYY-"W"IW');
begin
  -- deal_stuck: an open deal past its stage's stuck_after (or the tenant's days), once per stay in a stage
  insert into public.alerts (tenant_id, type, priority, title, message, payload, dedupe_key)
  select d.tenant_id, 'deal_stuck', 'medium', left('Negócio parado: ' || d.title, 200),
         format('O negócio "%s" está na etapa "%s" há %s dias sem mudança.', d.title, s.name,
                extract(day from job_coaching_alerts.as_of - d.stage_entered_at)),
         jsonb_build_object('deal_id', d.id, 'stage_id', s.id, 'owner_id', d.owner_id,
                            'stage_entered_at', d.stage_entered_at),
         'deal_stuck:' || d.id || ':' || to_char(d.stage_entered_at, 'YYYYMMDDHH24MISSUS')
    from public.deals d
    join public.pipeline_stages s on s.tenant_id = d.tenant_id and s.id = d.stage_id
   where d.status = 'open'
     and d.stage_entered_at < job_coaching_alerts.as_of
           - coalesce(s.stuck_after, make_interval(days => private.coaching_setting(d.tenant_id, 'deal_stuck_days', 14)::int))
  on conflict (tenant_id, dedupe_key) do nothing;
  get diagnostics v_rows = row_count;
  v_total := v_total + v_rows;

  -- low_playbook_adherence: a seller's last N analysed conversations average below the minimum, once a week
  insert into public.alerts (tenant_id, type, priority, title, message, payload, dedupe_key)
  select x.tenant_id, 'low_playbook_adherence', 'medium', 'Baixa aderência ao playbook',
         format('%s: aderência média de %s%% nas últimas %s conversas analisadas (mínimo %s%%).',
                coalesce(private.member_name(x.tenant_id, x.seller_id), 'Vendedor'), round(x.score), x.n, x.minimum),
         jsonb_build_object('member_id', x.seller_id, 'average', round(x.score, 2), 'conversations', x.n),
         'low_playbook_adherence:' || x.seller_id || ':' || v_week
    from (select i.tenant_id, i.seller_id, avg(i.playbook_score) as score, count(*) as n,
                 private.coaching_setting(i.tenant_id, 'adherence_min', 60) as minimum,
                 private.coaching_setting(i.tenant_id, 'adherence_window', 5) as size
            from (select i.*, row_number() over (partition by i.tenant_id, i.seller_id order by i.completed_at desc) as rn
                    from public.conversation_insights i
                   where i.status = 'done' and i.playbook_score is not null and i.seller_id is not null
                     and i.completed_at <= job_coaching_alerts.as_of) i
           where i.rn <= private.coaching_setting(i.tenant_id, 'adherence_window', 5)
           group by i.tenant_id, i.seller_id) x
   where x.n >= x.size and x.score < x.minimum
  on conflict (tenant_id, dedupe_key) do nothing;
  get diagnostics v_rows = row_count;
  v_total := v_total + v_rows;

  -- target_risk: a key result of the current period projected to miss (at_risk or behind
  -- once a quarter of the period has gone), once per key result
  insert into public.alerts (tenant_id, type, priority, title, message, payload, dedupe_key)
  select k.tenant_id, 'target_risk', case s.status when 'behind' then 'high' else 'medium' end,
         left('Meta em risco: ' || k.title, 200),
         format('"%s" está em %s%% da meta com %s%% do período decorrido.', k.title, round(s.progress * 100),
                round(s.elapsed * 100)),
         jsonb_build_object('key_result_id', k.id, 'period_id', p.id, 'status', s.status, 'progress', s.progress,
                            'elapsed', s.elapsed),
         'target_risk:' || k.id
    from public.key_results k
    join public.objectives o on o.tenant_id = k.tenant_id and o.id = k.objective_id
    join public.okr_periods p on p.tenant_id = o.tenant_id and p.id = o.period_id and p.is_current
    cross join lateral private.key_result_state(k.start_value, k.target, k.current_value, p.starts_on, p.ends_on,
                                                job_coaching_alerts.as_of) s
   where s.status in ('at_risk', 'behind') and s.elapsed >= 0.25
  on conflict (tenant_id, dedupe_key) do nothing;
  get diagnostics v_rows = row_count;
  v_total := v_total + v_rows;

  -- conversion_drop: the last 7 days' win rate of closed deals below the previous four
  -- weeks' average by conversion_drop_pct %, once a week
  insert into public.alerts (tenant_id, type, priority, title, message, payload, dedupe_key)
  select w.tenant_id, 'conversion_drop', 'high', 'Queda na conversão',
         format('Conversão dos últimos 7 dias: %s%% (média das 4 semanas anteriores: %s%%).',
                round(w.rate * 100), round(w.baseline * 100)),
         jsonb_build_object('rate', round(w.rate, 4), 'baseline', round(w.baseline, 4), 'closed', w.closed),
         'conversion_drop:' || v_week
    from (select d.tenant_id,
                 count(*) filter (where d.closed_at > job_coaching_alerts.as_of - interval '7 days') as closed,
                 avg((d.status = 'won')::int) filter (where d.closed_at > job_coaching_alerts.as_of - interval '7 days') as rate,
                 avg((d.status = 'won')::int) filter (where d.closed_at <= job_coaching_alerts.as_of - interval '7 days') as baseline
            from public.deals d
           where d.status in ('won', 'lost') and d.closed_at <= job_coaching_alerts.as_of
             and d.closed_at > job_coaching_alerts.as_of - interval '35 days'
           group by d.tenant_id) w
   where w.closed >= 3 and w.baseline > 0
     and w.rate < w.baseline * (1 - private.coaching_setting(w.tenant_id, 'conversion_drop_pct', 20) / 100)
  on conflict (tenant_id, dedupe_key) do nothing;
  get diagnostics v_rows = row_count;
  return v_total + v_rows;
end;
$$;

-- import_failed: a finished import that failed, or rejected more than import_rejected_pct % of
-- its lines (campaign lists, leads, any import_logs writer), once per import.
create or replace function private.tg_import_logs_alert()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.status = 'partial' and new.failed_rows * 100.0
       <= new.total_rows * private.coaching_setting(new.tenant_id, 'import_rejected_pct', 10) then
    return null;
  end if;
  insert into public.alerts (tenant_id, type, priority, title, message, payload, dedupe_key)
  values (new.tenant_id, 'import_failed', case new.status when 'failed' then 'high' else 'medium' end,
          left('Importação com falhas: ' || coalesce(new.file_name, new.kind), 200),
          format('A importação de %s (%s) terminou %s: %s de %s linhas rejeitadas.', new.kind,
                 coalesce(new.file_name, new.source), case new.status when 'failed' then 'com falha' else 'parcial' end,
                 new.failed_rows, new.total_rows),
          jsonb_build_object('import_id', new.id, 'kind', new.kind, 'source', new.source, 'file_name', new.file_name,
                             'status', new.status, 'total_rows', new.total_rows, 'imported_rows', new.imported_rows,
                             'failed_rows', new.failed_rows,
                             'errors', coalesce((select jsonb_agg(e) from (select e from jsonb_array_elements(
                                                  case jsonb_typeof(new.errors) when 'array' then new.errors
                                                  else '[]' end) e limit 5) f), '[]')),
          'import_failed:' || new.id)
  on conflict (tenant_id, dedupe_key) do nothing;
  return null;
end;
$$;
comment on function private.tg_import_logs_alert() is 'An import finished failed, or partial above import_rejected_pct % rejected lines: alert import_failed, once per import.';
drop trigger if exists _600_alert on public.import_logs;
create trigger _600_alert after insert or update of status, finished_at on public.import_logs
  for each row when (new.finished_at is not null and new.status in ('failed', 'partial'))
  execute function private.tg_import_logs_alert();

-- Where the operation alerts find failures in a tenant's recent hours (rare rows: small indexes).
create index if not exists flow_steps_errors_idx on public.flow_steps (tenant_id, created_at)
  where outcome like 'error:%';
create index if not exists messages_inbound_failed_idx on public.messages (tenant_id, created_at)
  where direction = 'inbound' and status = 'failed';

-- bot_error, per bot and hour: the bot failed to answer a customer. Recorded today as a reply
-- whose whole provider chain failed (ai_usage: the reservation's last attempt is a failure), a
-- flow's http or AI block that failed (flow_steps outcome "error: ..."), an inbound message
-- the processor gave up on after its retries (messages failed). ai_rate_limit, per tenant and
-- hour: providers answering 429 (ai_usage error_code rate_limited) or out of quota
-- (spend_limit_exceeded), and the tenant's budget refusing calls of any feature (ai.call_refused
-- events of a budget reason: paused, limit, no_budget, trial_ended). Each looks at the last two hours
-- (a run early in an hour still sees the end of the previous one) and alerts once per hour.
create or replace function private.job_operation_alerts(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_from timestamptz := date_trunc('hour', job_operation_alerts.as_of) - interval '1 hour';
  v_tenant uuid;
  v_rows integer;
  v_total integer := 0;
begin
  for v_tenant in select t.id from public.tenants t loop
    with failures as (
      select c.bot_id, date_trunc('hour', e.at) as hour, e.source, e.conversation_id, e.at, left(e.error, 300) as error
        from (select u.conversation_id, u.created_at as at, 'reply' as source,
                     coalesce(u.error_code, 'failure') as error
                from public.ai_usage u
               where u.tenant_id = v_tenant and u.created_at >= v_from and u.created_at < job_operation_alerts.as_of
                 and u.feature = 'reply' and u.outcome = 'failure' and u.conversation_id is not null
                 and not exists (select 1 from public.ai_usage l
                                  where l.reservation_id = u.reservation_id and l.attempt > u.attempt)
              union all
              select x.conversation_id, s.created_at, 'flow_' || s.block_type, s.outcome
                from public.flow_steps s
                join public.flow_executions x on x.tenant_id = s.tenant_id and x.id = s.execution_id
               where s.tenant_id = v_tenant and s.outcome like 'error:%' and s.created_at >= v_from
                 and s.created_at < job_operation_alerts.as_of and s.block_type in ('http', 'ai')
              union all
              select m.conversation_id, m.updated_at, 'processing', coalesce(m.error_details, 'failed')
                from public.messages m
               where m.tenant_id = v_tenant and m.direction = 'inbound' and m.status = 'failed'
                 and m.created_at >= v_from - interval '1 hour' and m.updated_at >= v_from
                 and m.updated_at < job_operation_alerts.as_of) e
        join public.conversations c on c.tenant_id = v_tenant and c.id = e.conversation_id
    )
    insert into public.alerts (tenant_id, type, priority, title, message, payload, dedupe_key)
    select v_tenant, 'bot_error', 'high', left('Bot sem responder: ' || coalesce(b.name, 'sem bot'), 200),
           format('%s falha(s) do bot "%s" entre %s e %s (UTC) em %s conversa(s); a última: %s', f.failures,
                  coalesce(b.name, 'sem bot'), to_char(f.hour at time zone 'UTC', 'HH24:00'),
                  to_char((f.hour + interval '1 hour') at time zone 'UTC', 'HH24:00'), f.conversations, f.last_error),
           jsonb_build_object('bot_id', f.bot_id, 'hour', f.hour, 'failures', f.failures, 'by_source', f.by_source,
                              'conversations', f.conversations, 'conversation_ids', to_jsonb(f.conversation_ids),
                              'last_error', f.last_error),
           'bot_error:' || coalesce(f.bot_id::text, 'none') || ':' || to_char(f.hour at time zone 'UTC', 'YYYYMMDDHH24')
      from (select f.bot_id, f.hour, count(*)::integer as failures,
                   (select jsonb_object_agg(g.source, g.n)
                      from (select g.source, count(*) as n from failures g
                             where g.bot_id is not distinct from f.bot_id and g.hour = f.hour group by g.source) g)
                     as by_source,
                   count(distinct f.conversation_id)::integer as conversations,
                   (array_agg(distinct f.conversation_id))[1:20] as conversation_ids,
                   (array_agg(f.error order by f.at desc))[1] as last_error
              from failures f
             group by f.bot_id, f.hour) f
      left join public.bots b on b.tenant_id = v_tenant and b.id = f.bot_id
    on conflict (tenant_id, dedupe_key) do nothing;
    get diagnostics v_rows = row_count;
    v_total := v_total + v_rows;

    insert into public.alerts (tenant_id, type, priority, title, message, payload, dedupe_key)
    select v_tenant, 'ai_rate_limit', 'medium', 'IA limitada: chamadas recusadas',
           format('Entre %s e %s (UTC): %s recusa(s) por limite do provedor (429), %s por cota do provedor, %s pelo orçamento de IA.',
                  to_char(r.hour at time zone 'UTC', 'HH24:00'), to_char((r.hour + interval '1 hour') at time zone 'UTC', 'HH24:00'),
                  r.rate_limited, r.provider_quota, r.budget_refused),
           jsonb_build_object('hour', r.hour, 'rate_limited', r.rate_limited, 'provider_quota', r.provider_quota,
                              'budget_refused', r.budget_refused, 'providers', r.providers),
           'ai_rate_limit:' || to_char(r.hour at time zone 'UTC', 'YYYYMMDDHH24')
      from (select date_trunc('hour', e.at) as hour,
                   count(*) filter (where e.kind = 'rate_limited')::integer as rate_limited,
                   count(*) filter (where e.kind = 'provider_quota')::integer as provider_quota,
                   count(*) filter (where e.kind = 'budget_refused')::integer as budget_refused,
                   coalesce(jsonb_agg(distinct e.provider) filter (where e.provider is not null), '[]') as providers
              from (select u.created_at as at, u.provider,
                           case u.error_code when 'rate_limited' then 'rate_limited' else 'provider_quota' end as kind
                      from public.ai_usage u
                     where u.tenant_id = v_tenant and u.created_at >= v_from and u.created_at < job_operation_alerts.as_of
                       and u.outcome = 'failure' and u.error_code in ('rate_limited', 'spend_limit_exceeded')
                    union all
                    select e.created_at, null, 'budget_refused'
                      from public.events e
                     where e.tenant_id = v_tenant and e.created_at >= v_from and e.created_at < job_operation_alerts.as_of
                       and e.type = 'ai.call_refused'
                       and e.payload ->> 'reason' in ('paused', 'limit', 'no_budget', 'trial_ended')) e
             group by date_trunc('hour', e.at)) r
    on conflict (tenant_id, dedupe_key) do nothing;
    get diagnostics v_rows = row_count;
    v_total := v_total + v_rows;
  end loop;
  return v_total;
end;
$$;
comment on function private.job_operation_alerts(timestamptz) is 'Alerts bot_error (per bot and hour) and ai_rate_limit (per tenant and hour) from the failures recorded in the last two hours; returns the alerts raised.';

insert into public.job_schedules (name, description, cron, function_name) values
  ('okr_metrics', 'Records the linked metrics (playbook score, won deal value, CSAT, first response time) of the current OKR periods'' key results as progress when they changed.', '7 * * * *',
   'private.job_okr_metrics'),
  ('coaching_alerts', 'Coaching alerts once per subject and period: deal_stuck, low_playbook_adherence, target_risk, conversion_drop.', '*/15 * * * *',
   'private.job_coaching_alerts'),
  ('operation_alerts', 'Alerts once per hour of the last two: bot_error per bot (replies, flow blocks, inbound messages that failed), ai_rate_limit per tenant (provider 429 and quota, budget refusals).', '*/10 * * * *',
   'private.job_operation_alerts')
on conflict (name) do update set description = excluded.description, function_name = excluded.function_name,
  runner = excluded.runner;

insert into public.event_types (type, module, description) values
  ('playbook.activated', 'coaching', 'A playbook version became the active one of its team and function.'),
  ('insight.completed', 'coaching', 'An AI insight of a conversation or call was stored (status done).'),
  ('playbook.drafted', 'coaching', 'The AI wrote a draft playbook a manager asked for (request_playbook_draft).')
on conflict do nothing;

/**
 * ----
 * Section - Coaching worker (service role): insights, playbook drafts, call transcriptions
 * ----
 */

-- Claims pending insights (and ones whose worker died: expired lease), with what the
-- prompt needs: the lines, the methodology's dimensions, the playbook.
create or replace function public.coaching_insight_claim(worker text, batch_size integer default 4,
                                                         lease_seconds integer default 300)
returns table (insight_id uuid, tenant_id uuid, attempt integer, conversation_id uuid, call_id uuid,
               methodology text, dimensions text[], playbook jsonb, lines jsonb)
language sql
security definer
set search_path = ''
as $$
  with picked as (
    select i.id from public.conversation_insights i
     where (i.status = 'pending' or (i.status = 'running' and i.lease_until < now()))
     order by i.created_at
     limit coaching_insight_claim.batch_size
     for update of i skip locked
  ), claimed as (
    update public.conversation_insights i
       set status = 'running', attempts = i.attempts + 1, leased_by = coaching_insight_claim.worker,
           lease_until = now() + make_interval(secs => coaching_insight_claim.lease_seconds)
      from picked p where i.id = p.id
    returning i.*
  )
  select c.id, c.tenant_id, c.attempts::integer, c.conversation_id, c.call_id, c.methodology,
         private.methodology_dimensions(c.methodology),
         case when p.id is not null then jsonb_build_object('name', p.name, 'content', p.content) end,
         (select coalesce(jsonb_agg(jsonb_build_object('id', l.id, 'speaker', l.speaker, 'text', l.text)), '[]'::jsonb)
            from private.insight_lines(c.tenant_id, c.conversation_id, c.call_id) l)
    from claimed c
    left join public.playbooks p on p.tenant_id = c.tenant_id and p.id = c.playbook_id
$$;
comment on function public.coaching_insight_claim(text, integer, integer) is 'Insight worker: claim pending analyses (SKIP LOCKED, leased) with the conversation''s lines [{id, speaker, text}], the methodology''s dimensions and the playbook.';

-- Records the outcome of an attempt. status done takes the model's answer (already
-- schema-validated by the worker) and keeps only what the conversation backs: evidence
-- must cite a line of this subject containing the quote; a dimension or playbook question
-- without it is insufficient_evidence / not covered. Other statuses: refused, failed,
-- invalid_output with the error. A result for a lease another worker took over is ignored.
create or replace function public.coaching_insight_record(insight_id uuid, attempt integer, status text,
                                                          result jsonb default null, model text default null,
                                                          prompt_version text default null, error text default null)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_insight public.conversation_insights;
  v_lines jsonb;
  v_scores jsonb := '{}'::jsonb;
  v_dimension text;
  v_item jsonb;
  v_evidence jsonb;
  v_adherence jsonb := '[]'::jsonb;
  v_questions integer := 0;
  v_covered integer := 0;
  v_content jsonb;
  v_section jsonb;
  v_question text;
  v_usage record;
begin
  if coaching_insight_record.status not in ('done', 'refused', 'failed', 'invalid_output') then
    raise exception 'unknown insight outcome %', coaching_insight_record.status using errcode = '22023';
  end if;
  select * into v_insight from public.conversation_insights i where i.id = coaching_insight_record.insight_id for update;
  if v_insight.id is null then
    raise exception 'insight % not found', coaching_insight_record.insight_id using errcode = 'P0002';
  end if;
  if v_insight.status <> 'running' or v_insight.attempts <> coaching_insight_record.attempt then
    return v_insight.status;
  end if;
  select count(*) as calls, coalesce(sum(u.total_tokens), 0) as tokens, coalesce(sum(u.cost_usd), 0) as usd,
         coalesce(sum(u.cost_brl), 0) as brl
    into v_usage
    from public.ai_usage u
   where u.tenant_id = v_insight.tenant_id and u.request_id = 'insight:' || v_insight.id and u.feature = 'coaching_insight';
  update public.conversation_insights i
     set status = coaching_insight_record.status, lease_until = null, leased_by = null, completed_at = now(),
         model = left(coaching_insight_record.model, 200),
         prompt_version = left(coaching_insight_record.prompt_version, 40),
         error = left(coaching_insight_record.error, 2000),
         tokens = v_usage.tokens, cost_usd = v_usage.usd, cost_brl = v_usage.brl
   where i.id = v_insight.id;
  if coaching_insight_record.status <> 'done' then
    return coaching_insight_record.status;
  end if;

  select coalesce(jsonb_object_agg(l.id::text, l.text), '{}'::jsonb) into v_lines
    from private.insight_lines(v_insight.tenant_id, v_insight.conversation_id, v_insight.call_id) l;
  foreach v_dimension in array private.methodology_dimensions(v_insight.methodology) loop
    v_item := coaching_insight_record.result -> 'methodology' -> v_dimension;
    v_evidence := private.valid_evidence(v_item -> 'evidence', v_lines);
    if jsonb_typeof(v_item -> 'score') = 'number' and (v_item ->> 'score')::numeric between 0 and 10
       and jsonb_array_length(v_evidence) > 0 then
      v_scores := v_scores || jsonb_build_object(v_dimension, jsonb_build_object(
        'status', 'scored', 'score', (v_item ->> 'score')::numeric, 'evidence', v_evidence));
    else
      v_scores := v_scores || jsonb_build_object(v_dimension, jsonb_build_object('status', 'insufficient_evidence'));
    end if;
  end loop;

  select p.content into v_content from public.playbooks p
   where p.tenant_id = v_insight.tenant_id and p.id = v_insight.playbook_id;
  for v_section in select value from jsonb_array_elements(coalesce(v_content -> 'sections', '[]'::jsonb)) loop
    for v_question in select value #>> '{}' from jsonb_array_elements(v_section -> 'questions') loop
      v_questions := v_questions + 1;
      select private.valid_evidence(a -> 'evidence', v_lines) into v_evidence
        from jsonb_array_elements(coalesce(coaching_insight_record.result -> 'playbook', '[]'::jsonb)) a
       where a ->> 'question' = v_question and (a ->> 'covered')::boolean is true
       limit 1;
      v_evidence := coalesce(v_evidence, '[]'::jsonb);
      if jsonb_array_length(v_evidence) > 0 then
        v_covered := v_covered + 1;
      end if;
      v_adherence := v_adherence || jsonb_build_array(jsonb_build_object(
        'section', v_section ->> 'title', 'question', v_question,
        'covered', jsonb_array_length(v_evidence) > 0, 'evidence', v_evidence));
    end loop;
  end loop;

  update public.conversation_insights i
     set summary = left(coaching_insight_record.result ->> 'summary', 4000),
         sentiment = coaching_insight_record.result ->> 'sentiment',
         methodology_scores = v_scores,
         methodology_score = (select round(avg((s.value ->> 'score')::numeric) * 10, 2)
                                from jsonb_each(v_scores) s where s.value ->> 'status' = 'scored'),
         playbook_adherence = case when v_content is not null then v_adherence end,
         playbook_score = case when v_questions > 0 then round(100.0 * v_covered / v_questions, 2) end,
         key_moments = (select coalesce(jsonb_agg(m || private.valid_evidence(jsonb_build_array(m), v_lines) -> 0), '[]'::jsonb)
                          from jsonb_array_elements(coalesce(coaching_insight_record.result -> 'key_moments', '[]'::jsonb)) m
                         where jsonb_array_length(private.valid_evidence(jsonb_build_array(m), v_lines)) > 0),
         suggested_actions = coalesce(coaching_insight_record.result -> 'suggested_actions', '[]'::jsonb)
   where i.id = v_insight.id;
  perform private.emit(v_insight.tenant_id, 'insight.completed', 'conversation_insights', v_insight.id,
    jsonb_build_object('conversation_id', v_insight.conversation_id, 'call_id', v_insight.call_id,
                       'seller_id', v_insight.seller_id, 'playbook_score',
                       case when v_questions > 0 then round(100.0 * v_covered / v_questions, 2) end));
  return 'done';
end;
$$;
comment on function public.coaching_insight_record(uuid, integer, text, jsonb, text, text, text) is 'Insight worker: store an attempt''s outcome (done with the validated answer, refused, failed, invalid_output) with the cost of its ai_usage rows; evidence that does not quote a message of the conversation is dropped, and a dimension left without evidence is insufficient_evidence.';

-- Claims pending playbook drafts (and ones whose worker died), with what the prompt needs.
create or replace function public.coaching_draft_claim(worker text, batch_size integer default 4,
                                                       lease_seconds integer default 300)
returns table (draft_id uuid, tenant_id uuid, attempt integer, name text, function text, methodology text,
               dimensions text[], description text, team_name text)
language sql
security definer
set search_path = ''
as $$
  with picked as (
    select d.id from public.playbook_drafts d
     where (d.status = 'pending' or (d.status = 'running' and d.lease_until < now()))
     order by d.created_at
     limit coaching_draft_claim.batch_size
     for update of d skip locked
  ), claimed as (
    update public.playbook_drafts d
       set status = 'running', attempts = d.attempts + 1, leased_by = coaching_draft_claim.worker,
           lease_until = now() + make_interval(secs => coaching_draft_claim.lease_seconds)
      from picked p where d.id = p.id
    returning d.*
  )
  select c.id, c.tenant_id, c.attempts::integer, c.name, c.function, c.methodology,
         private.methodology_dimensions(c.methodology), c.description, t.name
    from claimed c
    left join public.teams t on t.tenant_id = c.tenant_id and t.id = c.team_id
$$;
comment on function public.coaching_draft_claim(text, integer, integer) is 'Coaching worker: claim pending playbook drafts (SKIP LOCKED, leased) with the request (name, function, methodology and its dimensions, description, team name).';

-- Records the outcome of a draft attempt. done takes the content the model wrote: checked
-- against the playbook schema again (what fails is invalid_output and nothing is stored),
-- then written as a new draft playbook in the same transaction. A result for a lease
-- another worker took over is ignored.
create or replace function public.coaching_draft_record(draft_id uuid, attempt integer, status text,
                                                        content jsonb default null, model text default null,
                                                        prompt_version text default null, error text default null)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_draft public.playbook_drafts;
  v_status text := coaching_draft_record.status;
  v_error text := coaching_draft_record.error;
  v_playbook uuid;
  v_usage record;
begin
  if v_status not in ('done', 'refused', 'failed', 'invalid_output') then
    raise exception 'unknown draft outcome %', v_status using errcode = '22023';
  end if;
  select * into v_draft from public.playbook_drafts d where d.id = coaching_draft_record.draft_id for update;
  if v_draft.id is null then
    raise exception 'playbook draft % not found', coaching_draft_record.draft_id using errcode = 'P0002';
  end if;
  if v_draft.status <> 'running' or v_draft.attempts <> coaching_draft_record.attempt then
    return v_draft.status;
  end if;
  if v_status = 'done' then
    v_error := 'playbook content: ' || private.playbook_content_problem(coaching_draft_record.content);
    v_status := case when v_error is null then 'done' else 'invalid_output' end;
  end if;
  if v_status = 'done' then
    insert into public.playbooks (tenant_id, team_id, name, description, function, methodology, status,
                                  is_ai_generated, content, created_by)
    values (v_draft.tenant_id, v_draft.team_id, v_draft.name, left(v_draft.description, 2000), v_draft.function,
            v_draft.methodology, 'draft', true, coaching_draft_record.content, v_draft.requested_by)
    returning id into v_playbook;
  end if;
  select coalesce(sum(u.total_tokens), 0) as tokens, coalesce(sum(u.cost_usd), 0) as usd,
         coalesce(sum(u.cost_brl), 0) as brl
    into v_usage
    from public.ai_usage u
   where u.tenant_id = v_draft.tenant_id and u.request_id = 'playbook_draft:' || v_draft.id
     and u.feature = 'playbook_draft';
  update public.playbook_drafts d
     set status = v_status, playbook_id = v_playbook, lease_until = null, leased_by = null, completed_at = now(),
         model = left(coaching_draft_record.model, 200),
         prompt_version = left(coaching_draft_record.prompt_version, 40),
         error = left(v_error, 2000), tokens = v_usage.tokens, cost_usd = v_usage.usd, cost_brl = v_usage.brl
   where d.id = v_draft.id;
  if v_status = 'done' then
    perform private.emit(v_draft.tenant_id, 'playbook.drafted', 'playbooks', v_playbook,
      jsonb_build_object('draft_id', v_draft.id, 'name', v_draft.name, 'function', v_draft.function,
                         'methodology', v_draft.methodology, 'team_id', v_draft.team_id));
  end if;
  return v_status;
end;
$$;
comment on function public.coaching_draft_record(uuid, integer, text, jsonb, text, text, text) is 'Coaching worker: store a draft attempt''s outcome (done with the content, refused, failed, invalid_output) with the cost of its ai_usage rows; done content is checked against the playbook schema and becomes a new draft playbook (is_ai_generated) in the same transaction, or invalid_output with nothing stored.';

-- Claims pending call transcriptions (and ones whose worker died), with where the audio is.
create or replace function public.coaching_transcription_claim(worker text, batch_size integer default 2,
                                                               lease_seconds integer default 600)
returns table (call_id uuid, tenant_id uuid, attempt integer, audio_storage_path text, audio_mime_type text,
               duration_seconds integer)
language sql
security definer
set search_path = ''
as $$
  with picked as (
    select c.id from public.coaching_calls c
     where (c.transcription_status = 'pending'
            or (c.transcription_status = 'running' and c.transcription_lease_until < now()))
     order by c.created_at
     limit coaching_transcription_claim.batch_size
     for update of c skip locked
  )
  update public.coaching_calls c
     set transcription_status = 'running', transcription_attempts = c.transcription_attempts + 1,
         transcription_leased_by = coaching_transcription_claim.worker,
         transcription_lease_until = now() + make_interval(secs => coaching_transcription_claim.lease_seconds)
    from picked p where c.id = p.id
  returning c.id, c.tenant_id, c.transcription_attempts::integer, c.audio_storage_path, c.audio_mime_type,
            c.duration_seconds
$$;
comment on function public.coaching_transcription_claim(text, integer, integer) is 'Coaching worker: claim calls whose recording waits for its transcription (SKIP LOCKED, leased), with the audio''s storage path, type and the call''s duration (the budget''s estimate).';

-- Records the outcome of a transcription attempt. done writes the transcript (the call's
-- lines and insight follow as for an uploaded text; an empty one is an empty insight).
create or replace function public.coaching_transcription_record(call_id uuid, attempt integer, status text,
                                                                transcript text default null,
                                                                model text default null, error text default null)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_call public.coaching_calls;
begin
  if coaching_transcription_record.status not in ('done', 'refused', 'failed') then
    raise exception 'unknown transcription outcome %', coaching_transcription_record.status using errcode = '22023';
  end if;
  select * into v_call from public.coaching_calls c where c.id = coaching_transcription_record.call_id for update;
  if v_call.id is null then
    raise exception 'call % not found', coaching_transcription_record.call_id using errcode = 'P0002';
  end if;
  if v_call.transcription_status is distinct from 'running'
     or v_call.transcription_attempts <> coaching_transcription_record.attempt then
    return v_call.transcription_status;
  end if;
  update public.coaching_calls c
     set transcription_status = coaching_transcription_record.status, transcription_lease_until = null,
         transcription_leased_by = null, transcription_model = left(coaching_transcription_record.model, 200),
         transcription_error = left(coaching_transcription_record.error, 2000),
         transcribed_at = case when coaching_transcription_record.status = 'done' then now() end,
         transcript = case when coaching_transcription_record.status = 'done'
                           then left(coalesce(coaching_transcription_record.transcript, ''), 200000)
                           else c.transcript end
   where c.id = v_call.id;
  if coaching_transcription_record.status = 'done' then
    -- a new text was queued by the lines trigger already (same hash: that insight); an
    -- empty one changed nothing and is recorded as an empty insight here
    perform private.queue_insight(v_call.tenant_id, null, v_call.id);
  end if;
  return coaching_transcription_record.status;
end;
$$;
comment on function public.coaching_transcription_record(uuid, integer, text, text, text, text) is 'Coaching worker: store a transcription attempt''s outcome: done with the transcript (lines and insight follow), refused (AI budget) or failed with the reason. A result for a lease another worker took over is ignored.';

/**
 * ----
 * Section - RLS policies
 * ----
 */
select private.members_read_managers_write('playbooks');
select private.members_read_managers_write('okr_periods');
select private.members_read_managers_write('objectives');
select private.members_read_managers_write('key_results');

drop policy if exists "Playbook drafts are visible to managers" on public.playbook_drafts;
create policy "Playbook drafts are visible to managers" on public.playbook_drafts
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('manager')));

-- calls: managers all of the tenant's, agents their own
drop policy if exists "Calls are visible to managers and their seller" on public.coaching_calls;
create policy "Calls are visible to managers and their seller" on public.coaching_calls
  for select to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')) or seller_id in (select private.my_member_ids()));
drop policy if exists "Calls are uploaded by managers or their seller" on public.coaching_calls;
create policy "Calls are uploaded by managers or their seller" on public.coaching_calls
  for insert to authenticated
  with check (tenant_id in (select private.my_tenant_ids_with_role('manager'))
              or (seller_id in (select private.my_member_ids()) and tenant_id in (select private.my_tenant_ids_with_role('agent'))));
drop policy if exists "Calls are edited by managers or their seller" on public.coaching_calls;
create policy "Calls are edited by managers or their seller" on public.coaching_calls
  for update to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager'))
         or (seller_id in (select private.my_member_ids()) and tenant_id in (select private.my_tenant_ids_with_role('agent'))))
  with check (tenant_id in (select private.my_tenant_ids_with_role('manager'))
              or (seller_id in (select private.my_member_ids()) and tenant_id in (select private.my_tenant_ids_with_role('agent'))));
drop policy if exists "Calls are deleted by managers" on public.coaching_calls;
create policy "Calls are deleted by managers" on public.coaching_calls
  for delete to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('manager')));

drop policy if exists "Call lines are visible with their call" on public.coaching_call_lines;
create policy "Call lines are visible with their call" on public.coaching_call_lines
  for select to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager'))
         or call_id in (select c.id from public.coaching_calls c where c.seller_id in (select private.my_member_ids())));

drop policy if exists "Insights are visible to managers and their seller" on public.conversation_insights;
create policy "Insights are visible to managers and their seller" on public.conversation_insights
  for select to authenticated
  using (tenant_id in (select private.my_tenant_ids_with_role('manager')) or seller_id in (select private.my_member_ids()));

-- progress: every member reads; managers and the key result's owner record
drop policy if exists "Members read key result progress" on public.key_result_progress;
create policy "Members read key result progress" on public.key_result_progress
  for select to authenticated using (tenant_id in (select private.my_tenant_ids()));
drop policy if exists "Progress is recorded by managers or the key result's owner" on public.key_result_progress;
create policy "Progress is recorded by managers or the key result's owner" on public.key_result_progress
  for insert to authenticated
  with check (recorded_by = (select auth.uid())
              and (tenant_id in (select private.my_tenant_ids_with_role('manager'))
                   or key_result_id in (select k.id from public.key_results k
                                         where k.owner_member_id in (select private.my_member_ids()))));

/**
 * ----
 * Section - Public functions
 * ----
 */

-- Asks for the insight of a WhatsApp conversation or a call (exactly one) at its current
-- text; an already analysed text returns its insight instead of running again.
create or replace function private.request_insight(conversation_id uuid default null, call_id uuid default null,
                                                   function text default 'sales')
returns public.conversation_insights
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_tenant uuid;
  v_seller uuid;
begin
  if num_nonnulls(request_insight.conversation_id, request_insight.call_id) <> 1 then
    raise exception 'name one conversation or one call' using errcode = '22023';
  end if;
  if request_insight.function not in ('pre_sales', 'sales', 'cs') then
    raise exception 'function must be pre_sales, sales or cs' using errcode = '22023';
  end if;
  if request_insight.call_id is not null then
    select c.tenant_id, c.seller_id into v_tenant, v_seller from public.coaching_calls c where c.id = request_insight.call_id;
  else
    select c.tenant_id, c.assignee_id into v_tenant, v_seller from public.conversations c
     where c.id = request_insight.conversation_id;
  end if;
  -- managers for anything of their tenant; agents for their own calls and conversations; the service role
  if v_tenant is null or (private.request_role() <> 'service_role' and not (
       private.has_role(v_tenant, 'manager')
       or (private.has_role(v_tenant, 'agent') and v_seller in (select private.my_member_ids())))) then
    raise exception 'conversation or call not found' using errcode = 'P0002';
  end if;
  return private.queue_insight(v_tenant, request_insight.conversation_id, request_insight.call_id,
                               request_insight.function);
end;
$$;

create or replace function public.request_insight(conversation_id uuid default null, call_id uuid default null,
                                                  function text default 'sales')
returns public.conversation_insights
language sql
security invoker
set search_path = ''
as $$
  select * from private.request_insight(request_insight.conversation_id, request_insight.call_id, request_insight.function)
$$;
comment on function public.request_insight(uuid, uuid, text) is 'Queue the AI insight of a WhatsApp conversation or a call (one of the two) against the active playbook of the function (pre_sales, sales, cs); the same text is never analysed twice: its insight is returned. Managers; agents for their own calls and assigned conversations; the service role.';

-- Asks the AI for a draft playbook from a description (managers and above). The worker
-- writes it as a new draft version 1 (is_ai_generated) the manager then edits and activates.
create or replace function private.request_playbook_draft(tenant_id uuid, team_id uuid, function text,
                                                          methodology text, description text,
                                                          name text default null)
returns public.playbook_drafts
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_draft public.playbook_drafts;
begin
  if private.request_role() <> 'service_role' and not private.has_role(request_playbook_draft.tenant_id, 'manager') then
    raise exception 'managers ask for playbook drafts' using errcode = '42501';
  end if;
  if request_playbook_draft.team_id is not null and not exists (
       select 1 from public.teams t where t.tenant_id = request_playbook_draft.tenant_id and t.id = request_playbook_draft.team_id) then
    raise exception 'team not found' using errcode = 'P0002';
  end if;
  if request_playbook_draft.function is null or request_playbook_draft.function not in ('pre_sales', 'sales', 'cs') then
    raise exception 'function must be pre_sales, sales or cs' using errcode = '22023';
  end if;
  if private.methodology_dimensions(request_playbook_draft.methodology) is null then
    raise exception 'methodology must be spiced, spin, meddic or bant' using errcode = '22023';
  end if;
  if length(btrim(coalesce(request_playbook_draft.description, ''))) not between 1 and 4000 then
    raise exception 'describe the playbook in 1 to 4000 characters' using errcode = '22023';
  end if;
  insert into public.playbook_drafts (tenant_id, team_id, name, function, methodology, description)
  values (request_playbook_draft.tenant_id, request_playbook_draft.team_id,
          coalesce(nullif(btrim(request_playbook_draft.name), ''),
                   'Playbook ' || upper(request_playbook_draft.methodology) || ' (rascunho IA)'),
          request_playbook_draft.function, request_playbook_draft.methodology, btrim(request_playbook_draft.description))
  returning * into v_draft;
  perform pg_notify('zapbase_insights', '');
  return v_draft;
end;
$$;

create or replace function public.request_playbook_draft(tenant_id uuid, team_id uuid, function text,
                                                         methodology text, description text,
                                                         name text default null)
returns public.playbook_drafts
language sql
security invoker
set search_path = ''
as $$
  select * from private.request_playbook_draft(request_playbook_draft.tenant_id, request_playbook_draft.team_id,
                                               request_playbook_draft.function, request_playbook_draft.methodology,
                                               request_playbook_draft.description, request_playbook_draft.name)
$$;
comment on function public.request_playbook_draft(uuid, uuid, text, text, text, text) is 'Queue an AI draft of a playbook for a team (null: the tenant) and function (pre_sales, sales, cs) in a methodology (spiced, spin, meddic, bant) from a description (1-4000 characters); name defaults to "Playbook <METHODOLOGY> (rascunho IA)". Follow it in playbook_drafts: done links the new draft playbook. Managers and above.';

-- Tries a call's refused or failed transcription again.
create or replace function private.retry_call_transcription(call_id uuid)
returns public.coaching_calls
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_call public.coaching_calls;
begin
  select * into v_call from public.coaching_calls c where c.id = retry_call_transcription.call_id for update;
  -- managers for any call of their tenant; agents for their own; the service role
  if v_call.id is null or (private.request_role() <> 'service_role' and not (
       private.has_role(v_call.tenant_id, 'manager')
       or (private.has_role(v_call.tenant_id, 'agent') and v_call.seller_id in (select private.my_member_ids())))) then
    raise exception 'call not found' using errcode = 'P0002';
  end if;
  if v_call.transcription_status is distinct from 'failed' and v_call.transcription_status is distinct from 'refused' then
    raise exception 'only a refused or failed transcription is tried again (this one is %)',
      coalesce(v_call.transcription_status, 'a text upload') using errcode = '55000';
  end if;
  update public.coaching_calls c
     set transcription_status = 'pending', transcription_error = null, transcription_lease_until = null,
         transcription_leased_by = null
   where c.id = v_call.id
  returning * into v_call;
  perform pg_notify('zapbase_insights', '');
  return v_call;
end;
$$;

create or replace function public.retry_call_transcription(call_id uuid)
returns public.coaching_calls
language sql
security invoker
set search_path = ''
as $$
  select * from private.retry_call_transcription(retry_call_transcription.call_id)
$$;
comment on function public.retry_call_transcription(uuid) is 'Make a call''s refused or failed transcription pending again (the worker picks it up). Managers; agents for their own calls; the service role.';

/**
 * ----
 * Section - Grants
 * ----
 */
grant select, insert (tenant_id, team_id, name, description, function, methodology, status, is_ai_generated, content,
                      parent_id),
  update (name, description, team_id, function, methodology, status, content), delete
  on public.playbooks to authenticated;
grant select, insert (tenant_id, channel, seller_id, lead_id, deal_id, title, occurred_at, duration_seconds, transcript,
                      notes, audio_storage_path, audio_mime_type),
  update (channel, seller_id, lead_id, deal_id, title, occurred_at, duration_seconds, transcript, notes), delete
  on public.coaching_calls to authenticated;
grant select on public.coaching_call_lines, public.conversation_insights, public.playbook_drafts to authenticated;
grant select, insert (tenant_id, label, starts_on, ends_on, is_current), update (label, starts_on, ends_on, is_current),
  delete on public.okr_periods to authenticated;
grant select, insert (tenant_id, period_id, title, description, area, owner_member_id, owner_team_id),
  update (title, description, area, owner_member_id, owner_team_id), delete on public.objectives to authenticated;
grant select, insert (tenant_id, objective_id, title, unit, start_value, target, metric, metric_team_id, owner_member_id),
  update (title, unit, start_value, target, metric, metric_team_id, owner_member_id), delete
  on public.key_results to authenticated;
grant select, insert (tenant_id, key_result_id, value, note, recorded_by) on public.key_result_progress to authenticated;
grant select on public.key_results_status to authenticated, service_role;
grant select, insert, update, delete on public.playbooks, public.playbook_drafts, public.coaching_calls,
  public.coaching_call_lines,
  public.conversation_insights, public.okr_periods, public.objectives, public.key_results,
  public.key_result_progress to service_role;

revoke execute on all functions in schema private from public, anon;
grant execute on function private.request_insight(uuid, uuid, text),
  private.request_playbook_draft(uuid, uuid, text, text, text, text), private.retry_call_transcription(uuid),
  private.key_result_state(numeric, numeric, numeric, date, date, timestamptz) to authenticated, service_role;
revoke execute on function public.request_insight(uuid, uuid, text),
  public.request_playbook_draft(uuid, uuid, text, text, text, text), public.retry_call_transcription(uuid),
  public.coaching_insight_claim(text, integer, integer),
  public.coaching_insight_record(uuid, integer, text, jsonb, text, text, text),
  public.coaching_draft_claim(text, integer, integer),
  public.coaching_draft_record(uuid, integer, text, jsonb, text, text, text),
  public.coaching_transcription_claim(text, integer, integer),
  public.coaching_transcription_record(uuid, integer, text, text, text, text) from public, anon;
grant execute on function public.request_insight(uuid, uuid, text),
  public.request_playbook_draft(uuid, uuid, text, text, text, text), public.retry_call_transcription(uuid)
  to authenticated, service_role;
grant execute on function public.coaching_insight_claim(text, integer, integer),
  public.coaching_insight_record(uuid, integer, text, jsonb, text, text, text),
  public.coaching_draft_claim(text, integer, integer),
  public.coaching_draft_record(uuid, integer, text, jsonb, text, text, text),
  public.coaching_transcription_claim(text, integer, integer),
  public.coaching_transcription_record(uuid, integer, text, text, text, text) to service_role;

/**
 * ----
 * Section - LGPD: what coaching holds about a contact (one place of private.lgpd_process)
 * ----
 */

-- A call with the person (of one of their leads or deals) is a conversation with them: its
-- transcript and notes go whole, like the content of their messages, and its title is
-- scrubbed; a call that only mentions them is scrubbed. The insights of their conversations
-- and calls keep status, scores, sentiment, cost and times and lose the summary and the
-- evidence quotes (the message and line ids they cite stay); the model's notes and
-- suggested actions are scrubbed, as is any other insight that mentions them. An analysis
-- still pending or running fails: it would store what was just removed. A rewritten
-- transcript rebuilds its lines and queues an insight of the new text, which goes:
-- anonymisation spends nothing on AI. Their calls' recordings are queued for deletion from
-- storage, with any transcription not done yet; AI drafts of playbooks that quote them are scrubbed.
create or replace function private.lgpd_places_coaching(s private.lgpd_subject, anonymise boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_leads uuid[] := private.lgpd_lead_ids(s);
  v_their_calls uuid[] := array(select c.id from public.coaching_calls c where c.tenant_id = s.tenant_id
    and (c.lead_id = any(v_leads) or c.deal_id = any(private.lgpd_deal_ids(s, v_leads))));
  v_calls uuid[] := v_their_calls || array(select c.id from public.coaching_calls c
    where c.tenant_id = s.tenant_id and not c.id = any(v_their_calls)
      and private.lgpd_mentions(concat_ws(' ', c.title, c.transcript, c.notes), s.patterns));
  v_their_insights uuid[] := array(select i.id from public.conversation_insights i where i.tenant_id = s.tenant_id
    and (i.conversation_id = any(s.conversation_ids) or i.call_id = any(v_their_calls)));
  v_insights uuid[] := v_their_insights || array(select i.id from public.conversation_insights i
    where i.tenant_id = s.tenant_id and not i.id = any(v_their_insights)
      and private.lgpd_mentions(concat_ws(' ', i.summary, i.methodology_scores::text, i.playbook_adherence::text,
                                          i.key_moments::text, i.suggested_actions::text, i.error), s.patterns));
  v_queued_before uuid[];
  v_doc jsonb := jsonb_build_object(
    'coaching_calls', private.lgpd_rows(format('select * from public.coaching_calls c
       where c.tenant_id = ($1).tenant_id and c.id = any(%L::uuid[]) order by c.occurred_at', v_calls), s),
    'coaching_call_lines', private.lgpd_rows(format('select * from public.coaching_call_lines l
       where l.tenant_id = ($1).tenant_id and l.call_id = any(%L::uuid[]) order by l.call_id, l.position', v_calls), s),
    'conversation_insights', private.lgpd_rows(format('select * from public.conversation_insights i
       where i.tenant_id = ($1).tenant_id and i.id = any(%L::uuid[]) order by i.created_at', v_insights), s),
    'playbook_drafts', private.lgpd_rows('select * from public.playbook_drafts d
       where d.tenant_id = ($1).tenant_id and private.lgpd_mentions(concat_ws('' '', d.description, d.error), ($1).patterns)
       order by d.created_at', s),
    'playbooks', private.lgpd_rows('select * from public.playbooks p
       where p.tenant_id = ($1).tenant_id
         and private.lgpd_mentions(concat_ws('' '', p.name, p.description, p.content::text), ($1).patterns)
       order by p.created_at', s),
    'objectives', private.lgpd_rows('select * from public.objectives o
       where o.tenant_id = ($1).tenant_id and private.lgpd_mentions(concat_ws('' '', o.title, o.description), ($1).patterns)
       order by o.created_at', s),
    'key_results', private.lgpd_rows('select * from public.key_results k
       where k.tenant_id = ($1).tenant_id and private.lgpd_mentions(k.title, ($1).patterns) order by k.created_at', s),
    'key_result_progress', private.lgpd_rows('select * from public.key_result_progress g
       where g.tenant_id = ($1).tenant_id and private.lgpd_mentions(g.note, ($1).patterns) order by g.recorded_at', s));
begin
  if not anonymise then
    return v_doc;
  end if;
  update public.conversation_insights i
     set status = 'failed', lease_until = null, leased_by = null, completed_at = now(),
         error = 'contato anonimizado (LGPD) antes da análise'
   where i.tenant_id = s.tenant_id and i.id = any(v_their_insights) and i.status in ('pending', 'running');
  update public.conversation_insights i
     set summary = case when i.id = any(v_their_insights) then null else left(private.lgpd_scrub(i.summary, s.patterns), 4000) end,
         methodology_scores = private.lgpd_scrub_jsonb(case when i.id = any(v_their_insights)
           then private.lgpd_drop_key(i.methodology_scores, 'quote') else i.methodology_scores end, s.patterns),
         playbook_adherence = private.lgpd_scrub_jsonb(case when i.id = any(v_their_insights)
           then private.lgpd_drop_key(i.playbook_adherence, 'quote') else i.playbook_adherence end, s.patterns),
         key_moments = private.lgpd_scrub_jsonb(case when i.id = any(v_their_insights)
           then private.lgpd_drop_key(i.key_moments, 'quote') else i.key_moments end, s.patterns),
         suggested_actions = private.lgpd_scrub_jsonb(i.suggested_actions, s.patterns),
         error = left(private.lgpd_scrub(i.error, s.patterns), 2000)
   where i.tenant_id = s.tenant_id and i.id = any(v_insights);
  update public.playbook_drafts d
     set description = left(private.lgpd_scrub(d.description, s.patterns), 4000),
         error = left(private.lgpd_scrub(d.error, s.patterns), 2000)
   where d.tenant_id = s.tenant_id and private.lgpd_mentions(concat_ws(' ', d.description, d.error), s.patterns);
  -- their recordings go from storage, and a transcription not done yet never runs
  insert into public.storage_deletions (tenant_id, storage_key, reason)
  select c.tenant_id, c.audio_storage_path, 'anonymisation' from public.coaching_calls c
   where c.tenant_id = s.tenant_id and c.id = any(v_their_calls) and c.audio_storage_path is not null
  on conflict (storage_key) do nothing;
  update public.coaching_calls c
     set audio_storage_path = null, audio_mime_type = null, transcription_status = null, transcription_error = null,
         transcription_lease_until = null, transcription_leased_by = null
   where c.tenant_id = s.tenant_id and c.id = any(v_their_calls) and c.audio_storage_path is not null;
  v_queued_before := array(select i.id from public.conversation_insights i
                            where i.tenant_id = s.tenant_id and i.call_id = any(v_calls));
  update public.coaching_calls c
     set transcript = case when c.id = any(v_their_calls) then '[removido]'
                           else left(private.lgpd_scrub(c.transcript, s.patterns), 200000) end,
         notes = case when c.id = any(v_their_calls) then null else left(private.lgpd_scrub(c.notes, s.patterns), 10000) end,
         title = left(private.lgpd_scrub(c.title, s.patterns), 200)
   where c.tenant_id = s.tenant_id and c.id = any(v_calls);
  delete from public.conversation_insights i
   where i.tenant_id = s.tenant_id and i.call_id = any(v_calls) and not i.id = any(v_queued_before);
  -- staff text that names them: objectives, key results, and rows otherwise never edited
  -- (activated playbooks, progress history), whose freeze lets zapbase.lgpd_scrub through
  update public.objectives o
     set title = left(private.lgpd_scrub(o.title, s.patterns), 200),
         description = left(private.lgpd_scrub(o.description, s.patterns), 2000)
   where o.tenant_id = s.tenant_id and private.lgpd_mentions(concat_ws(' ', o.title, o.description), s.patterns);
  update public.key_results k set title = left(private.lgpd_scrub(k.title, s.patterns), 200)
   where k.tenant_id = s.tenant_id and private.lgpd_mentions(k.title, s.patterns);
  perform set_config('zapbase.lgpd_scrub', 'on', true);
  update public.playbooks p
     set name = left(private.lgpd_scrub(p.name, s.patterns), 120),
         description = left(private.lgpd_scrub(p.description, s.patterns), 2000),
         content = private.lgpd_scrub_jsonb(p.content, s.patterns)
   where p.tenant_id = s.tenant_id
     and private.lgpd_mentions(concat_ws(' ', p.name, p.description, p.content::text), s.patterns);
  update public.key_result_progress g set note = left(private.lgpd_scrub(g.note, s.patterns), 1000)
   where g.tenant_id = s.tenant_id and private.lgpd_mentions(g.note, s.patterns);
  perform set_config('zapbase.lgpd_scrub', 'off', true);
  return v_doc;
end;
$$;
comment on function private.lgpd_places_coaching(private.lgpd_subject, boolean) is 'LGPD export / anonymisation of coaching: calls with the person (their leads and deals) or mentioning them, their lines, the insights of their conversations and calls or mentioning them, and staff text naming them (playbooks, drafts, objectives, key results, progress notes).';
