/**
 * Zapbase module 2c: alert delivery.
 * Alerts (tenancy's `alerts`: budget thresholds, disabled webhooks, every later module's)
 * reach the tenant on three channels, each with its own delivery state:
 *
 *   alert ─► alert.created event ─► webhook_deliveries (one per subscribed endpoint; 150_events)
 *         ─► alert_deliveries, channel email: one per tenants.notification_emails address,
 *            sent by the worker's alert mailer through SMTP
 *         ─► alert_deliveries, channel push: one per push token of the tenant's managers,
 *            for a push sender (FCM / APNs / Web Push: not part of Zapbase) or the frontend
 *
 * E-mail and push rows are claimed (SKIP LOCKED, leased) with alerts_claim, and each attempt
 * recorded with alerts_record, retried on the webhooks' schedule (private.webhook_retry_delay).
 * A row no sender claims within that schedule's span (no SMTP configured, no push sender)
 * ends as failed through the alert_deliveries job. `alerts.delivered_at` is set once every
 * channel row of the alert, webhook deliveries included, has succeeded or ended.
 *
 * Who may do what:
 *   manager       reads the tenant's alert deliveries (the alerts themselves: tenancy)
 *   service role  the senders: claims and records deliveries
 *   nobody        writes alert deliveries directly: the alerts trigger creates them
 */

/**
 * ----
 * Section - Tables
 * ----
 */

-- One alert to one e-mail address or one device: the retry state of that channel.
create table if not exists public.alert_deliveries (
  id uuid primary key default gen_random_uuid(),
  tenant_id uuid not null references public.tenants (id) on delete cascade,
  alert_id uuid not null,
  channel text not null check (channel in ('email', 'push')),
  email text check (length(email) <= 254),
  push_token_id uuid,
  status text not null default 'pending' check (status in ('pending', 'sending', 'succeeded', 'failed')),
  attempts integer not null default 0,
  next_attempt_at timestamptz not null default now(),
  lease_until timestamptz,
  leased_by text check (length(leased_by) <= 200),
  last_error text check (length(last_error) <= 2000),
  delivered_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  unique (tenant_id, id),
  check (case channel when 'email' then email is not null and push_token_id is null
                      else push_token_id is not null and email is null end),
  foreign key (tenant_id, alert_id) references public.alerts (tenant_id, id) on delete cascade,
  foreign key (tenant_id, push_token_id) references public.push_tokens (tenant_id, id) on delete cascade
);
alter table public.alert_deliveries enable row level security;
create unique index if not exists alert_deliveries_target_key on public.alert_deliveries
  (alert_id, channel, coalesce(email, push_token_id::text));
create index if not exists alert_deliveries_due_idx on public.alert_deliveries (next_attempt_at)
  where status = 'pending';
create index if not exists alert_deliveries_leased_idx on public.alert_deliveries (lease_until)
  where status = 'sending';
create index if not exists alert_deliveries_alert_idx on public.alert_deliveries (tenant_id, alert_id);
create index if not exists alert_deliveries_push_token_idx on public.alert_deliveries (tenant_id, push_token_id);
create index if not exists alert_deliveries_retention_idx on public.alert_deliveries (tenant_id, created_at);
comment on table public.alert_deliveries is 'One alert to one e-mail address (sent by the worker through SMTP) or one manager''s device (push rows for a push sender or the frontend): pending → sending (leased) → succeeded, or pending again on a retryable failure until the webhooks'' schedule ends (failed).';
comment on column public.alert_deliveries.email is 'channel email: the address (from tenants.notification_emails when the alert was raised).';
comment on column public.alert_deliveries.push_token_id is 'channel push: the device (push_tokens of members with role manager or above).';
comment on column public.alert_deliveries.next_attempt_at is 'When it may be sent (the webhooks'' schedule: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h).';
comment on column public.alert_deliveries.lease_until is 'A sender claimed it until then; an expired lease (a sender killed mid-send) returns it to the queue.';
comment on column public.alert_deliveries.last_error is 'Why the last attempt failed (SMTP answer, timeout...), or why it ended unsent.';

-- alert.created events by alert: finds an alert's webhook deliveries without scanning the feed.
create index if not exists events_alert_subject_idx on public.events (tenant_id, subject_id)
  where type = 'alert.created';

/**
 * ----
 * Section - Private helpers
 * ----
 */

-- Sets alerts.delivered_at once nothing of the alert is still to be sent: no e-mail or push
-- row pending or sending, no webhook delivery of its alert.created event pending or sending
-- to an enabled endpoint (a disabled endpoint sends nothing until re-enabled).
create or replace function private.alert_settle(alert_id uuid)
returns boolean
language sql
security definer
set search_path = ''
as $$
  update public.alerts a set delivered_at = now()
   where a.id = alert_settle.alert_id and a.delivered_at is null
     and not exists (select 1 from public.alert_deliveries d
                      where d.tenant_id = a.tenant_id and d.alert_id = a.id and d.status in ('pending', 'sending'))
     and not exists (select 1 from public.events e
                       join public.webhook_deliveries w
                         on w.tenant_id = e.tenant_id and w.event_created_at = e.created_at and w.event_id = e.id
                       join public.webhook_endpoints p on p.tenant_id = w.tenant_id and p.id = w.endpoint_id
                      where e.tenant_id = a.tenant_id and e.type = 'alert.created' and e.subject_id = a.id
                        and w.status in ('pending', 'sending') and p.enabled)
  returning true
$$;
comment on function private.alert_settle(uuid) is 'Sets alerts.delivered_at when every channel of the alert has succeeded or ended; true when it did.';

-- The span of the retry schedule: a row nobody claimed for this long ends unsent.
create or replace function private.alert_delivery_span()
returns interval
language sql
immutable
set search_path = ''
as $$
  select sum(private.webhook_retry_delay(n)) from generate_series(1, 10) n
$$;

/**
 * ----
 * Section - Triggers
 * ----
 */

-- A new alert (after its alert.created event, trigger _500_emit): one e-mail row per
-- notification address, one push row per device of an active manager, owner or admin.
create or replace function private.tg_alerts_deliveries()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.alert_deliveries (tenant_id, alert_id, channel, email)
  select new.tenant_id, new.id, 'email', lower(address)
    from public.tenants t, unnest(t.notification_emails) address
   where t.id = new.tenant_id
  on conflict do nothing;
  if found then
    perform pg_notify('zapbase_alert_deliveries', '');
  end if;
  insert into public.alert_deliveries (tenant_id, alert_id, channel, push_token_id)
  select new.tenant_id, new.id, 'push', p.id
    from public.push_tokens p
    join public.members m on m.tenant_id = p.tenant_id and m.user_id = p.user_id
   where p.tenant_id = new.tenant_id and m.status = 'active' and m.role >= 'manager';
  perform private.alert_settle(new.id);  -- nowhere to send it: delivered as raised
  return null;
end;
$$;
drop trigger if exists _600_deliveries on public.alerts;
create trigger _600_deliveries after insert on public.alerts
  for each row execute function private.tg_alerts_deliveries();

-- A channel row ended (or went away with its device): maybe the alert is delivered now.
create or replace function private.tg_alert_deliveries_settle()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.alert_settle(coalesce(new.alert_id, old.alert_id));
  return null;
end;
$$;
drop trigger if exists _500_settle on public.alert_deliveries;
create trigger _500_settle after update of status on public.alert_deliveries
  for each row when (new.status in ('succeeded', 'failed') and old.status is distinct from new.status)
  execute function private.tg_alert_deliveries_settle();
drop trigger if exists _500_settle_deleted on public.alert_deliveries;
create trigger _500_settle_deleted after delete on public.alert_deliveries
  for each row when (old.status in ('pending', 'sending'))
  execute function private.tg_alert_deliveries_settle();
drop trigger if exists _100_set_updated_at on public.alert_deliveries;
create trigger _100_set_updated_at before update on public.alert_deliveries
  for each row execute function private.tg_set_updated_at();

-- The webhook channel: an alert.created delivery ended.
create or replace function private.tg_webhook_deliveries_alert_settle()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform private.alert_settle(e.subject_id)
     from public.events e
    where e.tenant_id = new.tenant_id and e.created_at = new.event_created_at and e.id = new.event_id;
  return null;
end;
$$;
drop trigger if exists _600_alert_settle on public.webhook_deliveries;
create trigger _600_alert_settle after update of status on public.webhook_deliveries
  for each row when (new.event_type = 'alert.created' and new.status in ('succeeded', 'failed')
                     and old.status is distinct from new.status)
  execute function private.tg_webhook_deliveries_alert_settle();

/**
 * ----
 * Section - Jobs
 * ----
 */

-- Ends rows no sender claimed within the retry schedule's span, settles alerts whose
-- webhook endpoint was disabled meanwhile, and deletes finished rows past the tenant's
-- delivery retention.
create or replace function private.job_alert_deliveries(as_of timestamptz)
returns integer
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_rows integer;
  v_total integer := 0;
  v_tenant uuid;
begin
  update public.alert_deliveries d
     set status = 'failed', lease_until = null, leased_by = null,
         last_error = 'not sent: no ' || case d.channel when 'email' then 'SMTP sender (the worker with ZAPBASE_SMTP_HOST)'
                                                      else 'push sender' end
                      || ' claimed it within ' || private.alert_delivery_span()
   where d.status = 'pending' and d.attempts = 0
     and d.created_at < job_alert_deliveries.as_of - private.alert_delivery_span();
  get diagnostics v_rows = row_count;
  v_total := v_total + v_rows;
  select v_total + count(*) into v_total
    from public.alerts a, private.alert_settle(a.id) settled
   where a.delivered_at is null and settled;
  for v_tenant in select t.id from public.tenants t loop
    delete from public.alert_deliveries d
     where d.tenant_id = v_tenant and d.status in ('succeeded', 'failed')
       and d.created_at < private.retention_cutoff(v_tenant, 'deliveries', job_alert_deliveries.as_of);
    get diagnostics v_rows = row_count;
    v_total := v_total + v_rows;
  end loop;
  return v_total;
end;
$$;

insert into public.job_schedules (name, description, cron, function_name) values
  ('alert_deliveries', 'Ends alert e-mails and pushes no sender claimed within the retry schedule, settles alerts, deletes finished alert deliveries past the tenant''s retention (plans.delivery_retention_days).', '*/10 * * * *',
   'private.job_alert_deliveries')
on conflict (name) do update set description = excluded.description, function_name = excluded.function_name,
  runner = excluded.runner;

/**
 * ----
 * Section - Senders (service role: the worker's alert mailer, a push sender)
 * ----
 */

-- Claims due rows of the given channels (SKIP LOCKED, leased), with what a message needs.
create or replace function public.alerts_claim(worker text, channels text[], batch_size integer default 8,
                                               lease_seconds integer default 60)
returns table (delivery_id uuid, tenant_id uuid, alert_id uuid, channel text, email text, push_token text,
               push_platform text, attempt integer, tenant_name text, type text, priority text, title text,
               message text, payload jsonb, raised_at timestamptz)
language sql
security definer
set search_path = ''
as $$
  with picked as (
    select d.id from public.alert_deliveries d
     where ((d.status = 'pending' and d.next_attempt_at <= now()) or (d.status = 'sending' and d.lease_until < now()))
       and d.channel = any (alerts_claim.channels)
     order by d.next_attempt_at
     limit alerts_claim.batch_size
     for update of d skip locked
  ), claimed as (
    update public.alert_deliveries d
       set status = 'sending', attempts = d.attempts + 1, leased_by = alerts_claim.worker,
           lease_until = now() + make_interval(secs => alerts_claim.lease_seconds)
      from picked p where d.id = p.id
    returning d.*
  )
  select c.id, c.tenant_id, c.alert_id, c.channel, c.email, p.token, p.platform, c.attempts, t.name, a.type,
         a.priority, a.title, a.message, a.payload, a.created_at
    from claimed c
    join public.alerts a on a.tenant_id = c.tenant_id and a.id = c.alert_id
    join public.tenants t on t.id = c.tenant_id
    left join public.push_tokens p on p.tenant_id = c.tenant_id and p.id = c.push_token_id
$$;
comment on function public.alerts_claim(text, text[], integer, integer) is 'Senders: claim due alert deliveries of some channels (email, push; SKIP LOCKED, leased) with the alert, the address or device token.';

-- Records one attempt: no error succeeded; a retryable error waits for the next step of the
-- webhooks' schedule, or fails when it is over; any other error is final. A result for a
-- lease another sender took over is ignored.
create or replace function public.alerts_record(delivery_id uuid, attempt integer, error text default null,
                                                retryable boolean default true)
returns text
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_delivery public.alert_deliveries;
  v_delay interval;
begin
  select * into v_delivery from public.alert_deliveries d where d.id = alerts_record.delivery_id for update;
  if v_delivery.id is null then
    raise exception 'alert delivery % not found', alerts_record.delivery_id using errcode = 'P0002';
  end if;
  if v_delivery.status <> 'sending' or v_delivery.attempts <> alerts_record.attempt then
    return v_delivery.status;
  end if;
  v_delay := case when alerts_record.retryable then private.webhook_retry_delay(v_delivery.attempts) end;
  update public.alert_deliveries d
     set status = case when alerts_record.error is null then 'succeeded'
                       when v_delay is not null then 'pending' else 'failed' end,
         next_attempt_at = now() + coalesce(v_delay, interval '0'),
         delivered_at = case when alerts_record.error is null then now() end,
         last_error = left(alerts_record.error, 2000),
         lease_until = null, leased_by = null
   where d.id = v_delivery.id
  returning * into v_delivery;
  return v_delivery.status;
end;
$$;
comment on function public.alerts_record(uuid, integer, text, boolean) is 'Senders: record an attempt of an alert delivery (error null: sent); retryable errors follow the webhooks'' schedule. Returns the new status.';

/**
 * ----
 * Section - RLS policies
 * ----
 */
drop policy if exists "Alert deliveries are visible to managers" on public.alert_deliveries;
create policy "Alert deliveries are visible to managers" on public.alert_deliveries
  for select to authenticated using (tenant_id in (select private.my_tenant_ids_with_role('manager')));

/**
 * ----
 * Section - Grants
 * ----
 */
grant select on public.alert_deliveries to authenticated;
grant select, insert, update, delete on public.alert_deliveries to service_role;

revoke execute on all functions in schema private from public, anon;
revoke execute on function public.alerts_claim(text, text[], integer, integer),
  public.alerts_record(uuid, integer, text, boolean) from public, anon;
grant execute on function public.alerts_claim(text, text[], integer, integer),
  public.alerts_record(uuid, integer, text, boolean) to service_role;
