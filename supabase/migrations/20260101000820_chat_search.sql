/**
 * Zapbase module: chat search (seed 004 chat_searches, "Chat Inteligente").
 *
 * A member asks a question in Portuguese about the tenant's own sales and support data.
 * The worker has the AI gateway write ONE read-only SQL query over a fixed set of views
 * (`chat_*` below, described to the LLM by their comments), checks it with a parser
 * (zapbase.chat_search.checker: one SELECT, only these views, an allow-list of functions, no
 * write / DDL / COPY / locking / SELECT INTO anywhere, the outer LIMIT capped), runs the
 * checked query AS THE ASKING USER (role authenticated with their uid, so RLS applies) in a
 * read-only transaction with a statement timeout, has the gateway analyse the rows, and
 * stores everything on the search row.
 *
 *   chat_search_ask(tenant, question) ─► chat_searches (queued) ─► NOTIFY zapbase_chat_search
 *   worker: chat_search_claim ─► LLM writes SQL ─► checker ─► run as the user (read only,
 *           timeout, views scoped to the search's tenant) ─► LLM analysis
 *        ─► answered | refused (the check said no) | failed (budget, provider, SQL error)
 *        ─► event chat_search.finished
 *
 * Tenant scoping never comes from the LLM: the views have no tenant column; each filters
 * on the tenant the worker sets for the search (`zapbase.chat_tenant`, a transaction
 * setting the checked SQL cannot change) on top of the tables' own RLS.
 *
 * Who may do what:
 *   agent         asks (chat_search_ask), reads their own searches and the shared ones,
 *                 shares their own as memory (update of shared_as_memory)
 *   manager       reads every search of the tenant
 *   service role  claims and answers searches (the worker)
 */

/**
 * ----
 * Section - Tables
 * ----
 */

-- One question and everything that answered it (seed 004 chat_searches).
create table if not exists public.chat_searches (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  -- who asked: the SQL runs as this user
  user_id uuid not null references auth.users (id) on delete cascade,
  question text not null check (length(btrim(question)) between 3 and 1000),
  status text not null default 'queued'
    check (status in ('queued', 'running', 'answered', 'refused', 'failed')),
  status_reason text check (length(status_reason) <= 2000),
  generated_sql text check (length(generated_sql) <= 20000),
  executed_sql text check (length(executed_sql) <= 20000),
  check_verdict text check (length(check_verdict) <= 1000),
  results jsonb,
  row_count integer check (row_count >= 0),
  analysis text check (length(analysis) <= 20000),
  llm_provider text check (length(llm_provider) <= 60),
  llm_model text check (length(llm_model) <= 120),
  tokens_used integer check (tokens_used >= 0),
  cost_usd numeric(20,10),
  cost_brl numeric(14,4),
  processing_time_ms integer check (processing_time_ms >= 0),
  shared_as_memory boolean not null default false,
  attempts smallint not null default 0,
  leased_by text check (length(leased_by) <= 200),
  lease_until timestamptz,
  started_at timestamptz,
  finished_at timestamptz,
  created_at timestamptz not null default now(),
  unique (tenant_id, id),
  -- a finished search keeps nothing half-done: answered means SQL, rows and analysis
  check (status <> 'answered' or (executed_sql is not null and results is not null and analysis is not null))
);
alter table public.chat_searches enable row level security;
create index if not exists chat_searches_tenant_idx on public.chat_searches (tenant_id, created_at desc);
create index if not exists chat_searches_user_idx on public.chat_searches (user_id, created_at desc);
create index if not exists chat_searches_due_idx on public.chat_searches (created_at)
  where status in ('queued', 'running');
comment on table public.chat_searches is 'Chat search ("Chat Inteligente", seed 004): a member''s question, the SQL the LLM wrote, the checker''s verdict, the rows it returned when run as the member, the LLM''s analysis, tokens, cost and time.';
comment on column public.chat_searches.user_id is 'Who asked; the checked SQL runs as this user (role authenticated, RLS applies).';
comment on column public.chat_searches.status is 'queued → running → answered, refused (the SQL checker said no, or the LLM wrote no query) or failed (budget, provider, SQL error or timeout).';
comment on column public.chat_searches.status_reason is 'Why it was refused or failed, readable by the member.';
comment on column public.chat_searches.generated_sql is 'The SQL exactly as the LLM wrote it.';
comment on column public.chat_searches.executed_sql is 'The checked query that ran: regenerated from the parse tree, views qualified, outer LIMIT capped.';
comment on column public.chat_searches.check_verdict is 'The SQL checker''s verdict: ok, or the first rule the query broke.';
comment on column public.chat_searches.results is 'Rows returned: {"columns": [...], "rows": [[...], ...]} (seed 004 search_results).';
comment on column public.chat_searches.analysis is 'The LLM''s analysis of the rows, in Portuguese (seed 004 llm_analysis).';
comment on column public.chat_searches.tokens_used is 'Tokens of every gateway call of the search (SQL and analysis), from ai_usage.';
comment on column public.chat_searches.cost_usd is 'Cost of the search''s gateway calls in USD, from ai_usage.';
comment on column public.chat_searches.cost_brl is 'Cost of the search''s gateway calls in BRL, from ai_usage.';
comment on column public.chat_searches.processing_time_ms is 'From the claim to the stored answer.';
comment on column public.chat_searches.shared_as_memory is 'Shared with the tenant: every member reads it (the author sets it).';
comment on column public.chat_searches.lease_until is 'The worker holding the search must finish by then, or another one takes it.';

grant select on public.chat_searches to authenticated;
grant update (shared_as_memory) on public.chat_searches to authenticated;
grant select, insert, update, delete on public.chat_searches to service_role;

/**
 * ----
 * Section - Views the LLM may query
 * ----
 * security_invoker: the caller's RLS applies to every table underneath. No tenant column:
 * each view keeps the rows of the tenant the worker set for the search (no rows at all
 * outside a chat search). zapbase.chat_search.views.VIEWS lists the same names.
 */

create or replace function private.chat_tenant()
returns uuid
language sql
stable
set search_path = ''
as $$ select nullif(current_setting('zapbase.chat_tenant', true), '')::uuid $$;
comment on function private.chat_tenant() is 'The tenant of the chat search being answered (set by the worker for its transaction), else null.';
grant execute on function private.chat_tenant() to authenticated, service_role;

create or replace view public.chat_members with (security_invoker = true) as
select m.id, m.display_name as name, m.role::text as role, m.area, m.status, m.created_at
  from public.members m
 where m.tenant_id = (select private.chat_tenant());
comment on view public.chat_members is 'Members of the team (sellers, agents, managers): who owns leads, deals, conversations and tickets.';
comment on column public.chat_members.role is 'owner, admin, manager, agent or viewer.';
comment on column public.chat_members.area is 'support, sales, customer_success, billing, management or other.';

create or replace view public.chat_leads with (security_invoker = true) as
select l.id, l.name, l.company, l.position, l.interest, l.stage, l.score, l.source, l.owner_id,
       l.lost_reason, l.converted_at, l.created_at, l.updated_at
  from public.leads l
 where l.tenant_id = (select private.chat_tenant());
comment on view public.chat_leads is 'Sales leads, one per person.';
comment on column public.chat_leads.stage is 'new, contacted, qualified, proposal, lost or converted.';
comment on column public.chat_leads.score is 'Qualification score 0-100.';
comment on column public.chat_leads.source is 'whatsapp_bot, ctwa_ad, campaign, flow, automation, import, manual, renewal or api.';
comment on column public.chat_leads.owner_id is 'The member who owns the lead (chat_members.id).';

create or replace view public.chat_deals with (security_invoker = true) as
select d.id, d.lead_id, d.title, p.name as pipeline, s.name as stage, d.status, d.probability, d.value,
       d.currency, d.expected_close_at, d.closed_at, d.lost_reason, d.stage_entered_at, d.owner_id,
       d.created_at
  from public.deals d
  join public.pipelines p on p.tenant_id = d.tenant_id and p.id = d.pipeline_id
  join public.pipeline_stages s on s.tenant_id = d.tenant_id and s.id = d.stage_id
 where d.tenant_id = (select private.chat_tenant());
comment on view public.chat_deals is 'Deals (opportunities) on the sales pipelines.';
comment on column public.chat_deals.lead_id is 'The lead of the deal (chat_leads.id), if any.';
comment on column public.chat_deals.stage is 'Name of the current stage of the pipeline.';
comment on column public.chat_deals.status is 'open, won or lost.';
comment on column public.chat_deals.value is 'Deal value in currency (BRL).';
comment on column public.chat_deals.stage_entered_at is 'When the deal entered its current stage.';
comment on column public.chat_deals.owner_id is 'The seller who owns the deal (chat_members.id).';

create or replace view public.chat_conversations with (security_invoker = true) as
select c.id, c.channel, c.status, c.mode, c.team_id, c.assignee_id, c.priority, c.csat, c.message_count,
       c.inbound_count, c.outbound_count, c.first_message_at, c.last_message_at, c.first_response_at,
       c.handoff_at, c.resolved_at, c.closed_at, c.close_reason, c.tags, c.created_at
  from public.conversations c
 where c.tenant_id = (select private.chat_tenant());
comment on view public.chat_conversations is 'Customer conversations (WhatsApp, calls, video, e-mail).';
comment on column public.chat_conversations.channel is 'whatsapp, call, video or email.';
comment on column public.chat_conversations.status is 'open, waiting, pending, resolved, closed or expired.';
comment on column public.chat_conversations.mode is 'Who answers: bot, flow or human.';
comment on column public.chat_conversations.assignee_id is 'The agent handling it (chat_members.id).';
comment on column public.chat_conversations.csat is 'Customer satisfaction 1-5, when rated.';
comment on column public.chat_conversations.handoff_at is 'When the bot handed it to a human.';

create or replace view public.chat_messages_daily with (security_invoker = true) as
select (m.created_at at time zone t.timezone)::date as day, m.direction, m.sender_type, m.type,
       count(*) as messages
  from public.messages m
  join public.tenants t on t.id = m.tenant_id
 where m.tenant_id = (select private.chat_tenant())
 group by 1, 2, 3, 4;
comment on view public.chat_messages_daily is 'Message counts per day (tenant time zone), direction, sender and type; message texts are not searchable.';
comment on column public.chat_messages_daily.direction is 'inbound (from customers), outbound or internal.';
comment on column public.chat_messages_daily.sender_type is 'contact, bot, agent, system or campaign.';

create or replace view public.chat_tickets with (security_invoker = true) as
select k.id, k.protocol, k.conversation_id, k.title, k.status, k.priority, k.category, k.source, k.team_id,
       k.assignee_id, k.first_response_at, k.sla_due_at, k.resolved_at, k.closed_at, k.reopened_count,
       k.created_at
  from public.tickets k
 where k.tenant_id = (select private.chat_tenant());
comment on view public.chat_tickets is 'Support tickets with their SLA.';
comment on column public.chat_tickets.status is 'open, in_progress, waiting_client, resolved or closed.';
comment on column public.chat_tickets.priority is 'low, medium, high or critical.';
comment on column public.chat_tickets.sla_due_at is 'Earliest SLA deadline in force.';

create or replace view public.chat_campaigns with (security_invoker = true) as
select c.id, c.name, c.status, c.scheduled_at, c.started_at, c.finished_at, c.total_count, c.sent_count,
       c.delivered_count, c.read_count, c.failed_count, c.replied_count, c.created_at
  from public.campaigns c
 where c.tenant_id = (select private.chat_tenant());
comment on view public.chat_campaigns is 'WhatsApp template campaigns and their delivery counters.';
comment on column public.chat_campaigns.status is 'draft, scheduled, running, paused, completed, cancelled or failed.';

create or replace view public.chat_insights with (security_invoker = true) as
select i.id, i.conversation_id, i.call_id, i.seller_id, i.methodology, i.sentiment, i.methodology_score,
       i.playbook_score, i.summary, i.completed_at
  from public.conversation_insights i
 where i.tenant_id = (select private.chat_tenant()) and i.status = 'done';
comment on view public.chat_insights is 'AI analyses of sales conversations and calls (coaching): summary, sentiment and scores.';
comment on column public.chat_insights.conversation_id is 'The WhatsApp conversation analysed (chat_conversations.id), or null for a call.';
comment on column public.chat_insights.seller_id is 'The seller (chat_members.id).';
comment on column public.chat_insights.methodology is 'spiced, spin, meddic or bant.';
comment on column public.chat_insights.sentiment is 'positive, neutral or negative.';
comment on column public.chat_insights.methodology_score is 'Average 0-100 of the methodology dimensions backed by evidence.';
comment on column public.chat_insights.playbook_score is 'Share 0-100 of the playbook''s questions covered, with evidence.';

grant select on public.chat_members, public.chat_leads, public.chat_deals, public.chat_conversations,
  public.chat_messages_daily, public.chat_tickets, public.chat_campaigns, public.chat_insights
  to authenticated, service_role;

/**
 * ----
 * Section - Triggers
 * ----
 */

create or replace function private.tg_chat_searches__finished()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.emit(new.tenant_id, 'chat_search.finished', 'chat_searches', new.id,
                       jsonb_build_object('status', new.status, 'user_id', new.user_id));
  return null;
end;
$$;
comment on function private.tg_chat_searches__finished() is 'Emits chat_search.finished when a search is answered, refused or failed.';

drop trigger if exists _500_finished on public.chat_searches;
create trigger _500_finished after update of status on public.chat_searches
  for each row when (old.status is distinct from new.status and new.status in ('answered', 'refused', 'failed'))
  execute function private.tg_chat_searches__finished();

/**
 * ----
 * Section - RLS policies
 * ----
 */

drop policy if exists "Searches are visible to their author, to managers, and to members when shared" on public.chat_searches;
create policy "Searches are visible to their author, to managers, and to members when shared" on public.chat_searches
  for select to authenticated
  using (tenant_id in (select private.my_tenant_ids())
         and (user_id = (select auth.uid()) or shared_as_memory
              or tenant_id in (select private.my_tenant_ids_with_role('manager'))));

drop policy if exists "Authors share their own searches" on public.chat_searches;
create policy "Authors share their own searches" on public.chat_searches
  for update to authenticated
  using (user_id = (select auth.uid()) and tenant_id in (select private.my_tenant_ids()))
  with check (user_id = (select auth.uid()) and tenant_id in (select private.my_tenant_ids()));

/**
 * ----
 * Section - Public RPCs
 * ----
 */

-- Agents and above ask: the search is queued and the worker woken.
create or replace function private.chat_search_ask(tenant_id uuid, question text)
returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_id uuid;
begin
  perform private.require_role(chat_search_ask.tenant_id, 'agent');
  if length(btrim(coalesce(chat_search_ask.question, ''))) not between 3 and 1000 then
    raise exception 'a question has 3 to 1000 characters' using errcode = '22023';
  end if;
  insert into public.chat_searches (tenant_id, user_id, question)
  values (chat_search_ask.tenant_id, auth.uid(), btrim(chat_search_ask.question))
  returning id into v_id;
  perform pg_notify('zapbase_chat_search', '');
  return v_id;
end;
$$;
comment on function private.chat_search_ask(uuid, text) is 'Queues a chat search by the caller (an agent or above) and wakes the worker.';

create or replace function public.chat_search_ask(tenant_id uuid, question text)
returns uuid
language sql
security invoker
set search_path = ''
as $$ select private.chat_search_ask(chat_search_ask.tenant_id, chat_search_ask.question) $$;
comment on function public.chat_search_ask(uuid, text) is 'Agents: ask a question about the tenant''s data; returns the search id (read chat_searches for the answer).';

-- The worker: the oldest queued search (or one whose lease expired), leased to `worker`.
-- A search whose author is no longer an active member fails here; one tried 3 times fails.
create or replace function public.chat_search_claim(worker text, lease_seconds integer)
returns setof public.chat_searches
language plpgsql
security invoker
set search_path = ''
as $$
declare
  v_search public.chat_searches;
begin
  loop
    select * into v_search from public.chat_searches s
     where s.status = 'queued' or (s.status = 'running' and s.lease_until < now())
     order by s.created_at
     limit 1
       for update skip locked;
    if not found then
      return;
    end if;
    if v_search.attempts >= 3 then
      update public.chat_searches set status = 'failed', status_reason = 'gave up after 3 attempts',
             finished_at = now(), lease_until = null
       where id = v_search.id;
    elsif not exists (select 1 from public.members m where m.tenant_id = v_search.tenant_id
                         and m.user_id = v_search.user_id and m.status = 'active'
                         and m.role >= 'agent') then
      update public.chat_searches set status = 'failed', finished_at = now(), lease_until = null,
             status_reason = 'quem perguntou não é mais membro ativo da empresa'
       where id = v_search.id;
    else
      return query
        update public.chat_searches set status = 'running', attempts = attempts + 1,
               leased_by = chat_search_claim.worker, started_at = now(),
               lease_until = now() + make_interval(secs => chat_search_claim.lease_seconds)
         where id = v_search.id
        returning *;
      return;
    end if;
  end loop;
end;
$$;
comment on function public.chat_search_claim(text, integer) is 'Worker: leases the oldest queued chat search (or one whose lease expired); fails those whose author left.';

revoke execute on function private.chat_search_ask(uuid, text), public.chat_search_ask(uuid, text),
  public.chat_search_claim(text, integer) from public, anon;
grant execute on function private.chat_search_ask(uuid, text), public.chat_search_ask(uuid, text)
  to authenticated, service_role;
revoke execute on function public.chat_search_claim(text, integer) from authenticated;
grant execute on function public.chat_search_claim(text, integer) to service_role;

/**
 * ----
 * Section - Event types of this module
 * ----
 */
insert into public.event_types (type, module, description) values
  ('chat_search.finished', 'chat_search', 'A chat search was answered, refused or failed (status says which).')
on conflict (type) do nothing;

/**
 * ----
 * Section - LGPD: what chat search holds about a contact (one place of private.lgpd_process)
 * ----
 */

-- Searches whose question, SQL, rows or analysis name the person (a question about a
-- customer, the rows that listed them, an analysis quoting them) are scrubbed; status, row
-- counts, tokens, cost and times stay.
create or replace function private.lgpd_places_chat_search(s private.lgpd_subject, anonymise boolean)
returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_doc jsonb := jsonb_build_object('chat_searches', private.lgpd_rows('select * from public.chat_searches c
     where c.tenant_id = ($1).tenant_id
       and private.lgpd_mentions(concat_ws('' '', c.question, c.status_reason, c.generated_sql, c.executed_sql,
                                           c.check_verdict, c.results::text, c.analysis), ($1).patterns)
     order by c.created_at', s));
begin
  if anonymise then
    update public.chat_searches c
       set question = left(private.lgpd_scrub(c.question, s.patterns), 1000),
           status_reason = left(private.lgpd_scrub(c.status_reason, s.patterns), 2000),
           generated_sql = left(private.lgpd_scrub(c.generated_sql, s.patterns), 20000),
           executed_sql = left(private.lgpd_scrub(c.executed_sql, s.patterns), 20000),
           check_verdict = left(private.lgpd_scrub(c.check_verdict, s.patterns), 1000),
           results = private.lgpd_scrub_jsonb(c.results, s.patterns),
           analysis = left(private.lgpd_scrub(c.analysis, s.patterns), 20000)
     where c.tenant_id = s.tenant_id
       and private.lgpd_mentions(concat_ws(' ', c.question, c.status_reason, c.generated_sql, c.executed_sql,
                                           c.check_verdict, c.results::text, c.analysis), s.patterns);
  end if;
  return v_doc;
end;
$$;
comment on function private.lgpd_places_chat_search(private.lgpd_subject, boolean) is 'LGPD export / anonymisation of chat search: searches whose question, SQL, rows or analysis name the person.';
