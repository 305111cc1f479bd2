"""Security checks generated over the whole schema, so every future table is covered.

- every table in `public` has RLS, a comment, and a policy for each command its grants
  allow to anon / authenticated;
- policies call auth.*() and private.*() wrapped in a select (evaluated once per statement);
- SECURITY DEFINER functions pin search_path and are not executable by anon;
- foreign keys between tenant tables include tenant_id;
- a member of tenant A, a signed-in outsider and anon attack every row of tenant B
  (select, insert, update, delete, and moving A's rows into B) and find nothing.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from support import Db

TENANT_A = "00000000-0000-4000-b000-000000000001"  # seed: Loja Demo
OWNER_A = "00000000-0000-4000-a000-000000000001"  # seed: its owner
TENANT_B = "bbbbbbbb-0000-4000-b000-000000000001"
COMMANDS = ("SELECT", "INSERT", "UPDATE", "DELETE")
FIXTURE = Path(__file__).parent / "fixtures" / "other_tenant.sql"


def public_tables(db: Db) -> list[str]:
    return [r["relname"] for r in db.sql(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'public' and c.relkind in ('r', 'p') order by 1")]


def tenant_tables(db: Db) -> dict[str, str]:
    """Tenant-owned tables and the column naming their tenant (`id` for tenants itself)."""
    tables = {r["table_name"]: "tenant_id" for r in db.sql(
        "select c.table_name from information_schema.columns c"
        " join information_schema.tables t using (table_schema, table_name)"
        " where c.table_schema = 'public' and c.column_name = 'tenant_id'"
        " and t.table_type = 'BASE TABLE' order by 1")}
    return {"tenants": "id", **tables}


def test_every_public_table_has_rls_and_a_comment(db: Db) -> None:
    rows = db.sql(
        "select c.relname, c.relrowsecurity, obj_description(c.oid, 'pg_class') as comment"
        " from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = 'public' and c.relkind in ('r', 'p')")
    assert rows, "no tables found"
    assert [r["relname"] for r in rows if not r["relrowsecurity"]] == []
    assert [r["relname"] for r in rows if not r["comment"]] == []


def test_every_granted_command_has_a_policy(db: Db) -> None:
    missing = []
    for table in public_tables(db):
        for role in ("anon", "authenticated"):
            for command in COMMANDS:
                granted = db.value(
                    "select has_table_privilege(%(r)s, %(t)s, %(c)s)"
                    " or (%(c)s in ('SELECT', 'INSERT', 'UPDATE')"
                    "     and has_any_column_privilege(%(r)s, %(t)s, %(c)s))",
                    {"r": role, "t": f"public.{table}", "c": command})
                if not granted:
                    continue
                covered = db.value(
                    "select exists (select 1 from pg_policies where schemaname = 'public'"
                    " and tablename = %s and cmd in (%s, 'ALL')"
                    " and (%s = any(roles) or 'public' = any(roles)))",
                    (table, command, role))
                if not covered:
                    missing.append(f"{table}: {command} granted to {role} without a policy")
    assert missing == []


def test_policies_wrap_helper_calls_in_a_select(db: Db) -> None:
    offenders = []
    call = re.compile(r"\b(auth|private)\.\w+\(|current_setting\(")
    for row in db.sql("select tablename, policyname, qual, with_check from pg_policies"
                      " where schemaname = 'public'"):
        for expr in (row["qual"], row["with_check"]):
            for match in call.finditer(expr or ""):
                if not expr[: match.start()].rstrip().endswith("SELECT"):
                    offenders.append(f"{row['tablename']}: {row['policyname']}: {match.group(0)}")
    assert offenders == []


def test_security_definer_functions_pin_search_path_and_refuse_anon(db: Db) -> None:
    rows = db.sql(
        "select n.nspname || '.' || p.proname as name, p.proconfig,"
        "       has_function_privilege('anon', p.oid, 'EXECUTE') as anon_can_execute"
        "  from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
        " where p.prosecdef and n.nspname in ('public', 'private')")
    assert rows, "expected security definer helpers"
    assert [r["name"] for r in rows
            if not any(c.startswith("search_path=") for c in r["proconfig"] or [])] == []
    assert [r["name"] for r in rows if r["anon_can_execute"]] == []


def test_no_function_in_public_is_executable_by_public(db: Db) -> None:
    rows = db.sql(
        "select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace"
        " left join pg_depend d on d.objid = p.oid and d.deptype = 'e'"
        " where n.nspname = 'public' and d.objid is null"
        "   and exists (select 1 from aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a"
        "               where a.grantee = 0 and a.privilege_type = 'EXECUTE')")
    assert [r["proname"] for r in rows] == []


def test_foreign_keys_between_tenant_tables_include_tenant_id(db: Db) -> None:
    rows = db.sql(
        "select con.conrelid::regclass::text as tbl, con.conname,"
        "       array(select a.attname from unnest(con.conkey) k"
        "             join pg_attribute a on a.attrelid = con.conrelid and a.attnum = k) as cols"
        "  from pg_constraint con join pg_namespace n on n.oid = con.connamespace"
        " where con.contype = 'f' and n.nspname = 'public'"
        "   and exists (select 1 from pg_attribute a where a.attrelid = con.confrelid"
        "               and a.attname = 'tenant_id' and not a.attisdropped)"
        "   and con.confrelid <> 'public.tenants'::regclass")
    assert [f"{r['tbl']}.{r['conname']}" for r in rows if "tenant_id" not in r["cols"]] == []


# -- the generated cross-tenant attack --------------------------------------------------

def _attempt(session_factory: Any, query: str, params: Any = None) -> int | str:
    """Rows touched by one request, or the SQLSTATE it failed with."""
    try:
        with session_factory() as s:
            return s.rowcount(query, params)
    except psycopg.Error as exc:
        return exc.sqlstate or "error"


def _columns_with(db: Db, table: str, privilege: str) -> list[str]:
    return [r["column_name"] for r in db.sql(
        "select column_name from information_schema.columns where table_schema = 'public'"
        " and table_name = %s and has_column_privilege('authenticated', 'public.' || table_name,"
        " column_name, %s) order by ordinal_position", (table, privilege))]


@pytest.fixture
def victim(db: Db) -> Db:
    db.sql(FIXTURE.read_text())
    return db


def test_every_tenant_table_has_a_victim_row(victim: Db) -> None:
    empty = [t for t, key in tenant_tables(victim).items()
             if not victim.value(f"select count(*) from public.{t} where {key} = %s", (TENANT_B,))]
    assert empty == [], f"add rows of tenant B for these tables to {FIXTURE.name}"


def find_leaks(victim: Db, tables: dict[str, str]) -> list[str]:
    """Attack every row of tenant B in `tables` (name -> tenant column) as three outsiders."""
    outsider = victim.create_user(f"curioso-{uuid.uuid4().hex[:6]}@example.com")
    attackers = {
        "member of tenant A": lambda: victim.as_user(OWNER_A),
        "signed-in outsider": lambda: victim.as_user(outsider),
        "anon": victim.as_anon,
    }
    leaks: list[str] = []
    for table, key in tables.items():
        victim_row = victim.sql(
            f"select to_jsonb(t) as row from public.{table} t where {key} = %s limit 1",
            (TENANT_B,))[0]["row"]
        insertable = [c for c in _columns_with(victim, table, "INSERT") if c != "id"]
        updatable = _columns_with(victim, table, "UPDATE")
        for who, as_attacker in attackers.items():
            seen = _attempt(as_attacker, f"select 1 from public.{table} where {key} = %s", (TENANT_B,))
            if seen not in (0, "42501"):
                leaks.append(f"{who} reads {table} of tenant B ({seen})")
            if updatable:
                col = updatable[0]
                touched = _attempt(as_attacker,
                                   f"update public.{table} set {col} = {col} where {key} = %s",
                                   (TENANT_B,))
                if touched not in (0, "42501"):
                    leaks.append(f"{who} updates {table} of tenant B ({touched})")
            removed = _attempt(as_attacker, f"delete from public.{table} where {key} = %s", (TENANT_B,))
            if removed not in (0, "42501"):
                leaks.append(f"{who} deletes {table} of tenant B ({removed})")
            if insertable:
                forged = {**victim_row, "id": str(uuid.uuid4())}
                cols = ", ".join(insertable)
                inserted = _attempt(
                    as_attacker,
                    f"insert into public.{table} ({cols}) select {cols}"
                    f" from jsonb_populate_record(null::public.{table}, %s)",
                    (json.dumps(forged),))
                if inserted != "42501":
                    leaks.append(f"{who} inserts into {table} of tenant B ({inserted})")
            if "tenant_id" in updatable:
                moved = _attempt(as_attacker,
                                 f"update public.{table} set tenant_id = %s where tenant_id = %s",
                                 (TENANT_B, TENANT_A))
                if moved not in (0, "42501"):
                    leaks.append(f"{who} moves {table} rows of tenant A into tenant B ({moved})")
    return leaks


def test_cross_tenant_attack_finds_no_leak(victim: Db) -> None:
    assert find_leaks(victim, tenant_tables(victim)) == []


def test_cross_tenant_attack_catches_a_leaky_table(victim: Db) -> None:
    """The attack itself works: a table whose policies forget the tenant is caught."""
    victim.sql("""
        create table public.leaky (id uuid primary key default gen_random_uuid(),
                                   tenant_id uuid not null, note text);
        alter table public.leaky enable row level security;
        create policy "leaky read" on public.leaky for select to authenticated using (true);
        create policy "leaky write" on public.leaky for update to authenticated using (true);
        grant select, update on public.leaky to authenticated;
        insert into public.leaky (tenant_id, note) values (%s, 'b');
    """.replace("%s", f"'{TENANT_B}'"))
    leaks = find_leaks(victim, {"leaky": "tenant_id"})
    assert "member of tenant A reads leaky of tenant B (1)" in leaks
    assert "signed-in outsider updates leaky of tenant B (1)" in leaks
    assert not any(leak.startswith("anon") for leak in leaks)


def test_tables_without_tenant_are_read_only_for_the_api(victim: Db) -> None:
    writes = []
    for table in set(public_tables(victim)) - set(tenant_tables(victim)):
        for who, as_attacker in {"authenticated": lambda: victim.as_user(OWNER_A),
                                 "anon": victim.as_anon}.items():
            for query in (f"delete from public.{table}",
                          f"insert into public.{table} select * from public.{table} limit 1"):
                result = _attempt(as_attacker, query)
                if result not in (0, "42501"):
                    writes.append(f"{who}: {query} ({result})")
    assert writes == []


# -- the database role, never the JWT's role claim ---------------------------------------

def test_a_service_role_claim_gives_a_signed_in_user_no_service_powers(victim: Db) -> None:
    """PostgREST switches to the role the (signed) JWT names; inside the database a `role`
    claim is only data, and an authenticated session that carries one stays authenticated."""
    def forged() -> Any:
        return victim.as_user(OWNER_A, role="service_role")

    conversation = victim.value("select id from public.conversations where tenant_id = %s", (TENANT_B,))
    ids = {"tenant": TENANT_B, "number": "bbbbbbbb-0000-4000-9000-000000000001", "conversation": conversation}
    with pytest.raises(psycopg.Error, match="conversation not found"), forged() as s:
        s.all("select public.handoff_conversation(%(conversation)s, 'ataque')", ids)
    with pytest.raises(psycopg.Error, match="WhatsApp number not found"), forged() as s:
        s.all("select public.set_whatsapp_number_secret(%(number)s, 'access_token', 'EAAG-roubado')", ids)
    with pytest.raises(psycopg.Error, match="managed by tenant admins"), forged() as s:
        s.all("insert into public.whatsapp_numbers (tenant_id, phone_number, phone_number_id)"
              " values (%(tenant)s, '+5521930000009', '900000000000099')", ids)
    with pytest.raises(psycopg.Error, match="managed by tenant managers"), forged() as s:
        s.all("insert into public.bots (tenant_id, name) values (%(tenant)s, 'Robô intruso')", ids)

    with forged() as s:
        s.all("update public.tenants set name = 'Loja Demo Ltda' where id = %s", (TENANT_A,))
    assert victim.value("select actor_role from public.audit_log where resource_type = 'tenants'"
                        " and action = 'update' and resource_id = %s", (TENANT_A,)) == "authenticated"


def test_no_api_role_reads_or_writes_a_vault_secret_id(db: Db) -> None:
    columns = [(r["table_name"], r["column_name"]) for r in db.sql(
        "select table_name, column_name from information_schema.columns where table_schema = 'public'"
        " and (column_name = 'secret_id' or column_name like '%\\_secret\\_id') order by 1, 2")]
    assert ("integrations", "secret_id") in columns
    assert ("whatsapp_numbers", "app_secret_secret_id") in columns
    exposed = [f"{role} may {privilege} {table}.{column}"
               for table, column in columns
               for role in ("anon", "authenticated")
               for privilege in ("SELECT", "INSERT", "UPDATE")
               if db.value("select has_column_privilege(%s, %s, %s, %s)",
                           (role, f"public.{table}", column, privilege))]
    assert exposed == []
