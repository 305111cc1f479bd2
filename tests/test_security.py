"""Security checks generated over the whole schema, so every future table is covered.

- every table in `public` has RLS, a comment, and a policy for each command its grants
  allow to anon / authenticated;
- policies call auth.*() and private.*() wrapped in a select (evaluated once per statement);
- SECURITY DEFINER functions pin search_path and are not executable by anon;
- foreign keys between tenant tables include tenant_id;
- a member of tenant A, a signed-in outsider and anon attack every row of tenant B
  (select, insert, update, delete, and moving A's rows into B) and find nothing;
- the same outsiders (and a member of A whose JWT claims the service role) call every
  function in `public` that `authenticated` may execute with tenant B's ids, and neither
  read nor change anything of B; a new function fails the test until it is attacked too;
- no Vault secret id (`secret_id`, `*_secret_id`) is readable or writable by the API roles.
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
        "   and con.confrelid <> 'public.tenants'::regclass"
        # the model registry mixes platform rows (no tenant) with tenants' own: the ledger
        # functions resolve a model among the platform's and the row tenant's only
        "   and con.confrelid <> 'public.ai_models'::regclass")
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


# -- the generated RPC attack ------------------------------------------------------------

# How to call each RPC against tenant B: keyed by signature, so a new function (or a new
# overload) fails test_every_rpc_is_attacked until it gets a line here. Parameters are
# tenant B's ids (see b_ids).
RPC_ATTACKS: dict[str, str] = {
    "accept_invite(text)": "select public.accept_invite(%(invite_token)s)",
    "change_member_role(uuid,member_role)": "select public.change_member_role(%(member)s, 'viewer')",
    "create_webhook_endpoint(uuid,text,text,text[])":
        "select public.create_webhook_endpoint(%(tenant)s, 'espiao', 'https://espiao.example.com', '{*}')",
    "replay_webhook_delivery(uuid)": "select * from public.replay_webhook_delivery(%(delivery)s)",
    "rotate_webhook_secret(uuid,interval)": "select public.rotate_webhook_secret(%(endpoint)s)",
    "create_tenant(text,text,text,text)":
        "select public.create_tenant(name => 'Outra Loja', slug => 'outra-loja')",
    "handoff_conversation(uuid,text,uuid)":
        "select public.handoff_conversation(%(conversation)s, 'ataque', %(team)s)",
    "invite_member(uuid,text,member_role,uuid)":
        "select public.invite_member(%(tenant)s, 'espiao@example.com', 'owner', %(team)s)",
    "mark_conversation_read(uuid)": "select public.mark_conversation_read(%(conversation)s)",
    "match_knowledge(text,vector,integer,text,uuid,uuid,double precision,double precision,integer)":
        "select * from public.match_knowledge('Outra Loja abre', array_fill(0.05::real, array[384])"
        "::extensions.vector, 10, 'hash-test-384', %(bot)s, %(tenant)s)",
    "record_contact_consent(uuid,text,text)":
        "select public.record_contact_consent(%(contact)s, 'opt_out',"
        " 'Pedido por telefone em 03/12, protocolo 123')",
    "send_message(uuid,jsonb,uuid)":
        "select public.send_message(%(conversation)s,"
        " '{\"type\": \"text\", \"text\": {\"body\": \"oi\"}}', %(message)s)",
    "set_integration_secret(uuid,text)":
        "select public.set_integration_secret(%(integration)s, 'sk-roubada')",
    "set_whatsapp_number_secret(uuid,text,text)":
        "select public.set_whatsapp_number_secret(%(number)s, 'access_token', 'EAAG-roubado')",
    "start_conversation(uuid,uuid)": "select public.start_conversation(%(contact)s, %(number)s)",
    "create_message_template(uuid,text,text,jsonb,text,text)":
        "select public.create_message_template(%(number)s, 'espiao', 'MARKETING',"
        " '[{\"type\": \"BODY\", \"text\": \"oi\"}]')",
    "delete_message_template(uuid)": "select public.delete_message_template(%(template)s)",
    "request_template_sync(uuid)": "select public.request_template_sync(%(tenant)s)",
    "preview_template(uuid,uuid,jsonb)": "select public.preview_template(%(template)s, %(contact)s)",
    "campaign_dry_run(uuid)": "select public.campaign_dry_run(%(campaign)s)",
    "set_campaign_list(uuid,uuid[])":
        "select public.set_campaign_list(%(campaign)s, array[%(contact)s]::uuid[])",
    "import_campaign_csv(uuid,text,text)": "select public.import_campaign_csv(%(campaign)s, '5521988880000')",
    "schedule_campaign(uuid,timestamp with time zone)":
        "select public.schedule_campaign(%(campaign)s, now() + interval '1 hour')",
    "start_campaign(uuid)": "select public.start_campaign(%(campaign)s)",
    "set_campaign_state(uuid,text)": "select public.set_campaign_state(%(campaign)s, 'cancel')",
    "create_ticket(uuid,text,text,text,text,uuid,uuid,text)":
        "select * from public.create_ticket(%(conversation)s, 'espiao', null, 'low', null, %(team)s,"
        " %(member)s)",
    "create_lead(uuid,uuid,text,text,text,text,text,text,integer)":
        "select * from public.create_lead(%(tenant)s, null, 'Carla', '+5521988880000', score => 100)",
    "import_leads(uuid,text,jsonb)":
        "select * from public.import_leads(%(tenant)s, 'leads.csv',"
        " '[{\"name\": \"Espiao\", \"phone\": \"+5521988880000\"}]')",
    "approve_dispatch(uuid[])": "select * from public.approve_dispatch(array[%(dispatch)s]::uuid[])",
    "reject_dispatch(uuid[],text)":
        "select * from public.reject_dispatch(array[%(dispatch)s]::uuid[], 'não quero')",
    "dry_run_automation_rule(uuid,integer)": "select * from public.dry_run_automation_rule(%(rule)s)",
    "lgpd_anonymise_contact(uuid,text)":
        "select public.lgpd_anonymise_contact(%(contact)s, 'Pedido por telefone em 03/12, protocolo 123')",
    "lgpd_export_contact(uuid)": "select public.lgpd_export_contact(%(contact)s)",
    # inbox queues
    "add_note(uuid,text)": "select * from public.add_note(%(conversation)s, 'espiando')",
    "assign_conversation(uuid,uuid,text)":
        "select * from public.assign_conversation(%(conversation)s, %(member)s, 'minha')",
    "close_conversation(uuid,text)": "select * from public.close_conversation(%(conversation)s)",
    "heartbeat(uuid)": "select * from public.heartbeat(%(tenant)s)",
    "pull_next_conversation(uuid,uuid)": "select * from public.pull_next_conversation(%(tenant)s, %(team)s)",
    "reopen_conversation(uuid)": "select * from public.reopen_conversation(%(conversation)s)",
    "resolve_conversation(uuid,boolean)": "select * from public.resolve_conversation(%(conversation)s)",
    "send_quick_reply(uuid,text)": "select * from public.send_quick_reply(%(conversation)s, '/pix')",
    "set_presence(uuid,text)": "select * from public.set_presence(%(tenant)s, 'online')",
    "snooze_conversation(uuid,timestamp with time zone)":
        "select * from public.snooze_conversation(%(conversation)s, now() + interval '1 hour')",
    "transfer_conversation(uuid,uuid,uuid,text)":
        "select * from public.transfer_conversation(%(conversation)s, null, %(team)s, 'leva')",
    "publish_flow(uuid)": "select * from public.publish_flow(%(flow_draft)s)",
    "start_flow(uuid,uuid)": "select * from public.start_flow(%(conversation)s, %(flow)s)",
    "end_flow_execution(uuid,text)": "select * from public.end_flow_execution(%(flow_execution)s, 'ataque')",
    "analytics_summary(uuid,date,date)":
        "select public.analytics_summary(%(tenant)s, current_date - 30, current_date + 1)",
    "analytics_volumes(uuid,date,date)":
        "select * from public.analytics_volumes(%(tenant)s, current_date - 30, current_date + 1)",
    "analytics_agent_leaderboard(uuid,date,date)":
        "select * from public.analytics_agent_leaderboard(%(tenant)s, current_date - 30, current_date + 1)",
    "analytics_ai_costs(uuid,date,date)":
        "select * from public.analytics_ai_costs(%(tenant)s, current_date - 30, current_date + 1)",
    "chat_search_ask(uuid,text)": "select public.chat_search_ask(%(tenant)s, 'quanto a outra loja vendeu?')",
    # coaching
    "request_insight(uuid,uuid,text)": "select * from public.request_insight(call_id => %(call)s)",
    "request_playbook_draft(uuid,uuid,text,text,text,text)":
        "select * from public.request_playbook_draft(%(tenant)s, %(team)s, 'sales', 'spin', 'o deles')",
    "retry_call_transcription(uuid)": "select * from public.retry_call_transcription(%(audio_call)s)",
}
INVITE_TOKEN_B = "convite-da-outra-loja"  # an invite of tenant B to someone else, token leaked


def executable_rpcs(db: Db) -> list[str]:
    return [r["signature"] for r in db.sql(
        "select p.oid::regprocedure::text as signature from pg_proc p"
        " join pg_namespace n on n.oid = p.pronamespace"
        " left join pg_depend d on d.objid = p.oid and d.deptype = 'e'"
        " where n.nspname = 'public' and d.objid is null"
        "   and has_function_privilege('authenticated', p.oid, 'EXECUTE') order by 1")]


def b_ids(victim: Db) -> dict[str, Any]:
    victim.sql("insert into public.invites (tenant_id, email, token_hash) values"
               " (%s, 'gerente@outraloja.com.br', encode(sha256(convert_to(%s, 'UTF8')), 'hex'))",
               (TENANT_B, INVITE_TOKEN_B))
    one = victim.value
    return {
        "tenant": TENANT_B,
        "invite_token": INVITE_TOKEN_B,
        "member": one("select id from public.members where tenant_id = %s", (TENANT_B,)),
        "team": one("select id from public.teams where tenant_id = %s", (TENANT_B,)),
        "integration": one("select id from public.integrations where tenant_id = %s and type = 'payments'",
                           (TENANT_B,)),
        "number": one("select id from public.whatsapp_numbers where tenant_id = %s", (TENANT_B,)),
        "contact": one("select id from public.contacts where tenant_id = %s", (TENANT_B,)),
        "conversation": one("select id from public.conversations where tenant_id = %s", (TENANT_B,)),
        "message": one("select id from public.messages where tenant_id = %s and direction = 'inbound'",
                       (TENANT_B,)),
        "bot": one("select id from public.bots where tenant_id = %s", (TENANT_B,)),
        "endpoint": one("select id from public.webhook_endpoints where tenant_id = %s", (TENANT_B,)),
        "delivery": one("select id from public.webhook_deliveries where tenant_id = %s limit 1", (TENANT_B,)),
        "template": one("select id from public.message_templates where tenant_id = %s", (TENANT_B,)),
        "campaign": one("select id from public.campaigns where tenant_id = %s", (TENANT_B,)),
        "dispatch": one("select id from public.dispatch_queue where tenant_id = %s", (TENANT_B,)),
        "rule": one("select id from public.automation_rules where tenant_id = %s", (TENANT_B,)),
        "flow": one("select id from public.flows where tenant_id = %s", (TENANT_B,)),
        "flow_draft": one("select id from public.flow_versions where tenant_id = %s and published_at is null",
                          (TENANT_B,)),
        "flow_execution": one("select id from public.flow_executions where tenant_id = %s", (TENANT_B,)),
        "call": one("select id from public.coaching_calls where tenant_id = %s"
                    " and audio_storage_path is null", (TENANT_B,)),
        "audio_call": one("select id from public.coaching_calls where tenant_id = %s"
                          " and audio_storage_path is not null", (TENANT_B,)),
    }


def b_state(victim: Db) -> str:
    """A fingerprint of every row of tenant B and of every Vault secret."""
    parts = [f"select '{t}' || to_jsonb(x)::text as r from public.{t} x where {key} = %(b)s"
             for t, key in tenant_tables(victim).items()]
    parts.append("select to_jsonb(v)::text from vault.secrets v")
    return str(victim.value(
        f"select md5(string_agg(r, '|' order by r)) from ({' union all '.join(parts)}) rows",
        {"b": TENANT_B}))


def b_markers(victim: Db) -> set[str]:
    """What must never come back to an outsider: the ids of B's rows and B's secrets."""
    markers = {TENANT_B, "hottok-da-outra-loja", "EAAG-da-outra-loja"}
    for table, key in tenant_tables(victim).items():
        markers |= {str(r["id"]) for r in victim.sql(
            f"select id from public.{table} where {key} = %s", (TENANT_B,))}
    return markers


def find_rpc_leaks(victim: Db, attacks: dict[str, str]) -> list[str]:
    """Call every RPC in `attacks` with tenant B's ids as three outsiders."""
    ids = b_ids(victim)
    outsider = victim.create_user(f"curioso-{uuid.uuid4().hex[:6]}@example.com")
    attackers = {
        "member of tenant A": lambda: victim.as_user(OWNER_A),
        "member of tenant A claiming the service role":
            lambda: victim.as_user(OWNER_A, role="service_role"),
        "signed-in outsider": lambda: victim.as_user(outsider),
    }
    markers = b_markers(victim)
    leaks: list[str] = []
    for signature, call in attacks.items():
        for who, as_attacker in attackers.items():
            before = b_state(victim)
            try:
                with as_attacker() as s:
                    answer = json.dumps(s.all(call, ids), default=str)
            except psycopg.Error:
                answer = ""
            seen = sorted(m for m in markers if m in answer)
            if seen:
                leaks.append(f"{who} reads tenant B through {signature} ({seen[0]})")
            if b_state(victim) != before:
                leaks.append(f"{who} changes tenant B through {signature}")
    return leaks


def test_every_rpc_is_attacked(db: Db) -> None:
    assert [f for f in executable_rpcs(db) if f not in RPC_ATTACKS] == [], (
        "add a line to RPC_ATTACKS saying how to call this function against tenant B")


def test_rpc_attack_finds_no_leak(victim: Db) -> None:
    assert find_rpc_leaks(victim, RPC_ATTACKS) == []


def test_rpc_attack_catches_a_leaky_rpc(victim: Db) -> None:
    """The attack itself works: an RPC that forgets the caller's tenant is caught twice."""
    victim.sql("""
        create function public.rename_tenant(tenant_id uuid) returns text
        language sql security definer set search_path = '' as $$
          update public.tenants set name = name || '!' where id = rename_tenant.tenant_id returning id::text
        $$;
        revoke execute on function public.rename_tenant(uuid) from public, anon;
        grant execute on function public.rename_tenant(uuid) to authenticated;
    """)
    assert "rename_tenant(uuid)" in executable_rpcs(victim)  # so test_every_rpc_is_attacked fails
    leaks = find_rpc_leaks(victim, {"rename_tenant(uuid)": "select public.rename_tenant(%(tenant)s)"})
    assert f"member of tenant A reads tenant B through rename_tenant(uuid) ({TENANT_B})" in leaks
    assert "signed-in outsider changes tenant B through rename_tenant(uuid)" in leaks
