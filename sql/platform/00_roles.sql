-- Local stand-in for the roles of the Supabase Postgres image (supabase/postgres init
-- scripts). Applied as supabase_admin on a plain PostgreSQL only; never on Supabase.
-- Every statement is idempotent: roles are cluster-wide and this file runs per database.

do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'postgres') then
    create role postgres login createrole createdb replication bypassrls password 'postgres';
  end if;
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticator') then
    create role authenticator login noinherit password 'postgres';
  end if;
end
$$;

-- postgres is demoted on Supabase: no superuser, but BYPASSRLS and admin of the API roles.
alter role postgres nosuperuser createrole createdb replication bypassrls login;
alter role postgres set search_path = "$user", public, extensions;
grant anon, authenticated, service_role to postgres with admin option;
grant anon, authenticated, service_role to authenticator;

alter role anon set statement_timeout = '3s';
alter role authenticated set statement_timeout = '8s';
alter role authenticator set statement_timeout = '8s';
