/**
 * Zapbase module 1: platform.
 * Cross-cutting pieces every other module uses: the `private` schema, explicit
 * privileges, the updated_at and audit triggers, and the LGPD helpers (phone hash,
 * masking of personal data in free text).
 */

/**
 * ----
 * Section - Privileges
 * ----
 * Supabase opens new objects in `public` to the API roles by default. Zapbase closes
 * that door and grants explicitly after each object.
 */
alter default privileges in schema public revoke all on tables from anon, authenticated, service_role;
alter default privileges in schema public revoke all on sequences from anon, authenticated, service_role;
alter default privileges in schema public revoke execute on functions from anon, authenticated, service_role;
alter default privileges revoke execute on functions from public;

-- Helpers for policies and triggers. PostgREST never exposes this schema; the API roles
-- get USAGE only so that policies may call the helpers granted to them.
create schema if not exists private;
revoke all on schema private from public;
grant usage on schema private to authenticated, service_role;
comment on schema private is 'Zapbase internals: policy helpers, trigger functions, jobs. Not exposed through the API.';

/**
 * ----
 * Section - Trigger functions
 * ----
 */

-- Keeps updated_at honest whatever the client sends.
create or replace function private.tg_set_updated_at()
returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end;
$$;
comment on function private.tg_set_updated_at() is 'BEFORE UPDATE trigger: sets updated_at = now().';

-- The database role the request runs as: what PostgREST switched to (anon, authenticated,
-- service_role), the worker's `set role service_role`, else the login role (postgres for
-- migrations and jobs). Never the JWT `role` claim (auth.role()): a claim is only data,
-- and inside a SECURITY DEFINER function current_user is the function's owner, while the
-- `role` setting stays the role of the session.
create or replace function private.request_role()
returns text
language sql
stable
set search_path = ''
as $$
  select coalesce(nullif(current_setting('role', true), 'none'), session_user::text)
$$;
comment on function private.request_role() is 'Database role of the request (authenticated, anon, service_role, postgres); use it, not the JWT role claim, to tell frontends from the service role.';
grant execute on function private.request_role() to authenticated, service_role;

-- A row as the audit log shows it: Vault ids (secret_id, *_secret_id) become "redacted"
-- (null stays null, so setting or clearing a secret still shows).
create or replace function private.redact_secret_ids(r jsonb)
returns jsonb
language sql
immutable
set search_path = ''
as $$
  select jsonb_object_agg(e.key, case when (e.key = 'secret_id' or e.key like '%\_secret\_id')
                                        and e.value <> 'null'::jsonb
                                      then to_jsonb('redacted'::text) else e.value end)
    from jsonb_each(redact_secret_ids.r) e
$$;
comment on function private.redact_secret_ids(jsonb) is 'Replaces Vault secret ids in a row (secret_id, *_secret_id) by "redacted" for the audit log.';

-- Generic audit trigger: one audit_log row per insert/update/delete with the actor and,
-- for updates, only the columns that changed ({"col": {"old": .., "new": ..}}), Vault ids
-- redacted. Trigger arguments name bookkeeping columns the system updates on its own (a
-- rate limit's window): an update of only those is not worth a row. The address is the right-most X-Forwarded-For entry, the one the proxy in front
-- of PostgREST (Supabase's API gateway) appended for whoever connected to it; the entries
-- to its left are whatever the client sent and prove nothing.
-- SECURITY DEFINER because no API role may write audit_log directly.
create or replace function private.tg_audit()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_old jsonb := case when tg_op in ('UPDATE', 'DELETE') then to_jsonb(old) end;
  v_new jsonb := case when tg_op in ('INSERT', 'UPDATE') then to_jsonb(new) end;
  v_row jsonb := coalesce(v_new, v_old);
  v_old_shown jsonb := private.redact_secret_ids(v_old);
  v_new_shown jsonb := private.redact_secret_ids(v_new);
  v_changes jsonb;
  v_headers jsonb := nullif(current_setting('request.headers', true), '')::jsonb;
begin
  if tg_op = 'UPDATE' then
    select coalesce(jsonb_object_agg(n.key, jsonb_build_object('old', v_old_shown -> n.key,
                                                               'new', v_new_shown -> n.key)), '{}')
      into v_changes
      from jsonb_each(v_new) n
     where n.key <> 'updated_at' and not n.key = any(coalesce(tg_argv, '{}'))
       and (v_old -> n.key) is distinct from n.value;
    if v_changes = '{}'::jsonb then
      return new;  -- nothing but updated_at changed: not worth a row
    end if;
  elsif tg_op = 'INSERT' then
    v_changes := jsonb_build_object('new', v_new_shown);
  else
    v_changes := jsonb_build_object('old', v_old_shown);
  end if;

  insert into public.audit_log (tenant_id, actor_id, actor_role, action, resource_type,
                                resource_id, changes, ip_address, user_agent)
  values (
    case when tg_table_name = 'tenants' then (v_row ->> 'id')::uuid else (v_row ->> 'tenant_id')::uuid end,
    auth.uid(),
    private.request_role(),
    lower(tg_op),
    tg_table_name,
    (v_row ->> 'id')::uuid,
    v_changes,
    nullif(trim((regexp_match(v_headers ->> 'x-forwarded-for', '([^,]*)$'))[1]), ''),
    v_headers ->> 'user-agent'
  );
  return coalesce(new, old);
end;
$$;
comment on function private.tg_audit() is 'AFTER trigger writing audit_log: actor, action, resource, changed columns.';

/**
 * ----
 * Section - Vault secrets
 * ----
 * A Vault secret belongs to one object, and its Vault name says which:
 * 'integration:<id>', 'whatsapp_number:<id>:<kind>'. Functions store a secret under its
 * owner's name and read a row's secret id only together with that name, so an id copied
 * into another row (or read from an old log) never reads or overwrites someone else's.
 * Only SECURITY DEFINER functions call these; no API role may.
 */

-- Stores `secret` as the Vault secret of `owner` (created the first time); returns its id.
create or replace function private.vault_store(owner text, secret text, description text default '')
returns uuid
language plpgsql
set search_path = ''
as $$
declare
  v_id uuid;
begin
  select s.id into v_id from vault.secrets s where s.name = vault_store.owner;
  if v_id is null then
    return vault.create_secret(vault_store.secret, vault_store.owner, coalesce(vault_store.description, ''));
  end if;
  perform vault.update_secret(v_id, vault_store.secret);
  return v_id;
end;
$$;
comment on function private.vault_store(text, text, text) is 'Creates or updates the Vault secret named owner (integration:<id>, whatsapp_number:<id>:<kind>); returns its id.';

-- The decrypted secret with this id, if it is `owner`'s; null otherwise.
create or replace function private.vault_secret(secret_id uuid, owner text)
returns text
language sql
stable
set search_path = ''
as $$
  select s.decrypted_secret from vault.decrypted_secrets s
   where s.id = vault_secret.secret_id and s.name = vault_secret.owner
$$;
comment on function private.vault_secret(uuid, text) is 'Decrypted Vault secret by id, only when its name says it belongs to owner.';

/**
 * ----
 * Section - LGPD helpers
 * ----
 */

-- Digits of a phone number (E.164 without '+'), the form every phone key uses.
create or replace function private.phone_digits(phone text)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select nullif(regexp_replace(coalesce(phone, ''), '\D', '', 'g'), '')
$$;

-- Pseudonymous key of a phone number for analytics and logs that must not carry the
-- number itself (usage logs, exports). It is a plain SHA-256: pseudonymisation, not
-- anonymisation (the space of phone numbers is small enough to enumerate).
create or replace function private.phone_hash(phone text)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select encode(sha256(convert_to('zapbase:phone:' || private.phone_digits(phone), 'UTF8')), 'hex')
$$;
comment on function private.phone_hash(text) is 'SHA-256 of the phone digits (pseudonymisation for logs and analytics).';

-- Masks personal data inside free text (LGPD): e-mail addresses, card numbers (last 4
-- kept), CPF, CNPJ and phone numbers (last 4 kept). Order matters: longer digit runs first.
create or replace function private.mask_pii(content text)
returns text
language sql
immutable
parallel safe
set search_path = ''
as $$
  select regexp_replace(
    regexp_replace(
      regexp_replace(
        regexp_replace(
          regexp_replace(content,
            '([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})',
            '\1***@\2', 'g'),
          '(^|[^0-9])(\d[ .-]?){11,15}(\d{4})(?![0-9])', '\1**** **** **** \3', 'g'),
        '(^|[^0-9])\d{2}\.?\d{3}\.?\d{3}/?\d{4}-?\d{2}(?![0-9])', '\1**.***.***/****-**', 'g'),
      '(^|[^0-9])\d{3}\.?\d{3}\.?\d{3}-?\d{2}(?![0-9])', '\1***.***.***-**', 'g'),
    '(^|[^0-9])(\+?\d{1,3}[ -]?)?(\(?\d{2}\)?[ -]?)?9?\d{4}[ -]?(\d{4})(?![0-9])', '\1(**) *****-\4', 'g')
$$;
comment on function private.mask_pii(text) is 'Masks e-mail, card, CNPJ, CPF and phone numbers in free text (LGPD).';

grant execute on function private.phone_digits(text), private.phone_hash(text),
  private.mask_pii(text) to service_role;
