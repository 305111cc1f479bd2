-- The database as Supabase hands it over: owned by postgres (so postgres owns `public`,
-- whose owner is pg_database_owner), with the `extensions` schema and the extensions
-- that Supabase lets postgres enable.

do $$
begin
  execute format('alter database %I owner to postgres', current_database());
end
$$;

create schema if not exists extensions;
grant usage on schema extensions to postgres, anon, authenticated, service_role;
grant all on schema extensions to postgres with grant option;

-- On Supabase these are available and enabled by migrations as postgres (supautils);
-- locally only a superuser may create them, so the stand-in creates them first and the
-- migrations' own `create extension if not exists` become no-ops.
create extension if not exists vector with schema extensions;
create extension if not exists pg_trgm with schema extensions;
create extension if not exists btree_gist with schema extensions;

grant usage on schema public to anon, authenticated, service_role;

-- Supabase's default privileges: new objects of postgres in public are open to the API
-- roles. Zapbase migrations revoke these and grant explicitly, so keep them here to
-- catch a table that forgets to.
alter default privileges for role postgres in schema public
  grant all on tables to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on functions to anon, authenticated, service_role;
alter default privileges for role postgres in schema public
  grant all on sequences to anon, authenticated, service_role;
