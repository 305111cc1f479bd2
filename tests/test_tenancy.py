"""Tenancy through the entry points a frontend uses: RPCs and tables as `authenticated`."""

from __future__ import annotations

import json

import psycopg
import pytest

from support import Db

OWNER = "00000000-0000-4000-a000-000000000001"  # seed: Ana, owner of Loja Demo
AGENT = "00000000-0000-4000-a000-000000000002"  # seed: Bruno, agent
TENANT = "00000000-0000-4000-b000-000000000001"


def test_create_tenant_makes_the_caller_its_owner(db: Db) -> None:
    user = db.create_user("maria@padaria.com.br", "Maria Padeira")
    with db.as_user(user) as s:
        tenant = s.one("select * from public.create_tenant(name => 'Padaria Pão Quente')")
        me = s.one("select role, display_name from public.members where tenant_id = %s", (tenant["id"],))
    assert tenant["slug"] == "padaria-p-o-quente"
    assert tenant["timezone"] == "America/Sao_Paulo"
    assert tenant["status"] == "trial"
    assert me == {"role": "owner", "display_name": "Maria Padeira"}


def test_create_tenant_refuses_anon_a_taken_slug_and_a_bad_time_zone(db: Db) -> None:
    user = db.create_user()
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_anon() as s:
        s.all("select public.create_tenant(name => 'X')")
    with pytest.raises(psycopg.errors.UniqueViolation, match="loja-demo"), db.as_user(user) as s:
        s.all("select public.create_tenant(name => 'Loja Demo')")
    with pytest.raises(psycopg.Error, match='unknown time zone "Mars/Olympus"'), db.as_user(user) as s:
        s.all("select public.create_tenant(name => 'Marte', timezone => 'Mars/Olympus')")


def test_self_service_opens_free_plans_only_and_a_few_tenants_per_user(db: Db) -> None:
    user = db.create_user()
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match='"enterprise" plan is paid'), \
            db.as_user(user) as s:
        s.all("select public.create_tenant(name => 'Grande', plan_code => 'enterprise')")
    cap = db.value("select private.max_tenants_per_user()")
    with db.as_user(user) as s:
        for n in range(cap):
            tenant = s.one("select * from public.create_tenant(name => %s)", (f"Loja {n}",))
    assert tenant["trial_ends_at"] is not None and tenant["plan_id"] == db.value(
        "select id from public.plans where code = 'free'")
    with pytest.raises(psycopg.Error, match=f"already opened {cap} tenants"), db.as_user(user) as s:
        s.all("select public.create_tenant(name => 'Mais uma')")
    # the plan and the trial belong to billing (the service role), not to the owner
    for column in ("plan_id = (select id from public.plans where code = 'enterprise')",
                   "trial_ends_at = null"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(user) as s:
            s.all(f"update public.tenants set {column} where id = %s", (tenant["id"],))


def test_members_see_only_their_tenants(db: Db) -> None:
    stranger = db.create_user()
    other_tenant = db.create_tenant(stranger, "Outra")
    with db.as_user(AGENT) as s:
        assert [r["name"] for r in s.all("select name from public.tenants")] == ["Loja Demo"]
        assert s.value("select count(*) from public.members") == 2
    with db.as_user(stranger) as s:
        assert [r["id"] for r in s.all("select id from public.tenants")] == [other_tenant]


def test_invite_and_accept(db: Db) -> None:
    with db.as_user(OWNER) as s:
        invite = s.value("select public.invite_member(%s, 'Carla@Exemplo.com', 'manager')", (TENANT,))
    stored = db.sql("select email, role, token_hash from public.invites")[0]
    assert stored["email"] == "carla@exemplo.com" and stored["role"] == "manager"
    assert invite["token"] not in stored["token_hash"]  # only the hash is stored

    carla = db.create_user("carla@exemplo.com")
    with db.as_user(carla) as s:
        member = s.one("select * from public.accept_invite(%s)", (invite["token"],))
    assert member["role"] == "manager" and str(member["tenant_id"]) == TENANT
    with pytest.raises(psycopg.Error, match="already accepted"), db.as_user(carla) as s:
        s.all("select public.accept_invite(%s)", (invite["token"],))


def test_invite_rules(db: Db) -> None:
    with pytest.raises(psycopg.Error, match="requires the admin role"), db.as_user(AGENT) as s:
        s.all("select public.invite_member(%s, 'x@y.com')", (TENANT,))
    admin = db.add_member(TENANT, "admin")
    with pytest.raises(psycopg.Error, match="role above yours"), db.as_user(admin) as s:
        s.all("select public.invite_member(%s, 'x@y.com', 'owner')", (TENANT,))
    with db.as_user(OWNER) as s:
        token = s.value("select public.invite_member(%s, 'dave@y.com')", (TENANT,))["token"]
    intruder = db.create_user("intruso@y.com")
    with pytest.raises(psycopg.Error, match="another e-mail"), db.as_user(intruder) as s:
        s.all("select public.accept_invite(%s)", (token,))
    db.sql("update public.invites set expires_at = now() - interval '1 minute'")
    dave = db.create_user("dave@y.com")
    with pytest.raises(psycopg.Error, match="expired"), db.as_user(dave) as s:
        s.all("select public.accept_invite(%s)", (token,))
    with pytest.raises(psycopg.Error, match="invite not found"), db.as_user(dave) as s:
        s.all("select public.accept_invite('forged')")


def test_an_invite_needs_a_confirmed_e_mail(db: Db) -> None:
    """Anyone may sign up with someone else's address; only its owner can confirm it."""
    with db.as_user(OWNER) as s:
        token = s.value("select public.invite_member(%s, 'erica@exemplo.com', 'admin')", (TENANT,))["token"]
    squatter = db.create_user("erica@exemplo.com", confirmed=False)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="confirm your e-mail"), \
            db.as_user(squatter) as s:
        s.all("select public.accept_invite(%s)", (token,))
    assert db.value("select count(*) from public.members where user_id = %s", (squatter,)) == 0
    db.sql("update auth.users set email_confirmed_at = now() where id = %s", (squatter,))
    with db.as_user(squatter) as s:
        assert s.one("select role from public.accept_invite(%s)", (token,))["role"] == "admin"


def test_role_changes_never_leave_a_tenant_without_an_owner(db: Db) -> None:
    owner_member = db.value("select id from public.members where user_id = %s", (OWNER,))
    agent_member = db.value("select id from public.members where user_id = %s", (AGENT,))
    with pytest.raises(psycopg.Error, match="at least one active owner"), db.as_user(OWNER) as s:
        s.all("select public.change_member_role(%s, 'admin')", (owner_member,))
    with pytest.raises(psycopg.Error, match="at least one active owner"), db.as_user(OWNER) as s:
        s.all("delete from public.members where id = %s", (owner_member,))

    with db.as_user(OWNER) as s:
        s.all("select public.change_member_role(%s, 'owner')", (agent_member,))
        s.all("select public.change_member_role(%s, 'admin')", (owner_member,))
    roles = {r["user_id"]: r["role"] for r in db.sql("select user_id, role from public.members")}
    assert {str(k): v for k, v in roles.items()} == {OWNER: "admin", AGENT: "owner"}


def test_admins_cannot_touch_owners_or_grant_ownership(db: Db) -> None:
    admin = db.add_member(TENANT, "admin")
    owner_member = db.value("select id from public.members where user_id = %s", (OWNER,))
    agent_member = db.value("select id from public.members where user_id = %s", (AGENT,))
    with pytest.raises(psycopg.Error, match="only an owner"), db.as_user(admin) as s:
        s.all("select public.change_member_role(%s, 'owner')", (agent_member,))
    with pytest.raises(psycopg.Error, match="only an owner"), db.as_user(admin) as s:
        s.all("select public.change_member_role(%s, 'viewer')", (owner_member,))
    with db.as_user(admin) as s:
        assert s.one("select role from public.change_member_role(%s, 'manager')",
                     (agent_member,))["role"] == "manager"


def test_admins_cannot_edit_or_remove_owners_through_the_table(db: Db) -> None:
    """PostgREST exposes members to plain updates and deletes: ranks hold there too."""
    admin = db.add_member(TENANT, "admin")
    db.add_member(TENANT, "owner")  # a second owner: the last-owner rule is not what stops it
    peer = db.add_member(TENANT, "admin")
    with db.as_user(admin) as s:
        assert s.rowcount("update public.members set display_name = 'Ex-dona' where user_id = %s",
                          (OWNER,)) == 0
        assert s.rowcount("delete from public.members where user_id = %s", (OWNER,)) == 0
        # at or below their own rank they manage members as before
        assert s.rowcount("update public.members set max_concurrent_conversations = 9 where user_id = %s",
                          (peer,)) == 1
        assert s.rowcount("delete from public.members where user_id = %s", (AGENT,)) == 1
    assert db.value("select display_name from public.members where user_id = %s", (OWNER,)) == "Ana Souza"


def test_ranks_hold_even_for_an_rpc_that_forgets_them(db: Db) -> None:
    """A trigger guards members whatever the path: a careless SECURITY DEFINER function
    run by an admin still cannot touch an owner or hand out ownership."""
    db.sql("""
        create function public.set_role_carelessly(member_id uuid, new_role public.member_role)
        returns void language sql security definer set search_path = '' as $$
          update public.members set role = set_role_carelessly.new_role
           where id = set_role_carelessly.member_id
        $$;
        grant execute on function public.set_role_carelessly(uuid, public.member_role) to authenticated;
    """)
    admin = db.add_member(TENANT, "admin")
    db.add_member(TENANT, "owner")
    owner_member = db.value("select id from public.members where user_id = %s", (OWNER,))
    admin_member = db.value("select id from public.members where user_id = %s", (admin,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="role is above yours"), \
            db.as_user(admin) as s:
        s.all("select public.set_role_carelessly(%s, 'viewer')", (owner_member,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="above your own"), db.as_user(admin) as s:
        s.all("select public.set_role_carelessly(%s, 'owner')", (admin_member,))
    with db.as_user(admin) as s:
        s.all("select public.set_role_carelessly(%s, 'admin')",
              (db.value("select id from public.members where user_id = %s", (AGENT,)),))


def test_members_cannot_promote_themselves_through_the_table(db: Db) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(AGENT) as s:
        s.all("update public.members set role = 'owner' where user_id = %s", (AGENT,))
    with db.as_user(AGENT) as s:
        assert s.rowcount("update public.members set display_name = 'Bruno' where user_id = %s",
                          (AGENT,)) == 1
        # an agent cannot edit someone else's member row
        assert s.rowcount("update public.members set display_name = 'Ana' where user_id = %s", (OWNER,)) == 0


def test_role_matrix_for_teams_and_integrations(db: Db) -> None:
    manager = db.add_member(TENANT, "manager")
    viewer = db.add_member(TENANT, "viewer")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(viewer) as s:
        s.all("insert into public.teams (tenant_id, name) values (%s, 'Vendas')", (TENANT,))
    with db.as_user(manager) as s:
        s.all("insert into public.teams (tenant_id, name) values (%s, 'Vendas')", (TENANT,))
        assert s.value("select count(*) from public.integrations") == 0  # admins only
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(manager) as s:
        s.all("insert into public.integrations (tenant_id, type, provider, name)"
              " values (%s, 'crm', 'pipedrive', 'CRM')", (TENANT,))


def test_integration_secret_goes_to_vault_and_only_its_id_comes_back(db: Db) -> None:
    with db.as_user(OWNER) as s:
        integration = s.value("insert into public.integrations (tenant_id, type, provider, name)"
                              " values (%s, 'payments', 'hotmart', 'Hotmart') returning id", (TENANT,))
        secret_id = s.value("select public.set_integration_secret(%s, 'hottok-123')", (integration,))
        again = s.value("select public.set_integration_secret(%s, 'hottok-456')", (integration,))
    assert again == secret_id
    assert db.value("select decrypted_secret from vault.decrypted_secrets where id = %s",
                    (secret_id,)) == "hottok-456"
    assert db.value("select secret_id from public.integrations where id = %s", (integration,)) == secret_id
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(OWNER) as s:
        s.all("select * from vault.decrypted_secrets")
    with pytest.raises(psycopg.Error, match="requires the admin role"), db.as_user(AGENT) as s:
        s.all("select public.set_integration_secret(%s, 'x')", (integration,))


def test_integration_secret_ids_unlock_nothing_for_frontends(db: Db) -> None:
    """A Vault id belongs to one object: an admin who learns another tenant's id can neither
    point their own integration at it nor make set_integration_secret overwrite it, and
    the worker hands it to nobody else as their key."""
    other_owner = db.create_user()
    other = db.create_tenant(other_owner, "Outra Loja")
    llm = ("insert into public.integrations (tenant_id, type, provider, name, status)"
           " values (%s, 'llm', 'openai', %s, 'active') returning id")
    with db.as_user(other_owner) as s:
        theirs = s.value(llm, (other, "OpenAI deles"))
        their_secret = s.value("select public.set_integration_secret(%s, 'sk-deles')", (theirs,))
    with db.as_user(OWNER) as s:
        mine = s.value(llm, (TENANT, "Minha OpenAI"))
    for statement in ("update public.integrations set secret_id = %(secret)s where id = %(mine)s",
                      "insert into public.integrations (tenant_id, type, provider, name, status, secret_id)"
                      " values (%(tenant)s, 'llm', 'anthropic', 'Roubada', 'active', %(secret)s)",
                      "select secret_id from public.integrations"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(OWNER) as s:
            s.all(statement, {"secret": their_secret, "mine": mine, "tenant": TENANT})

    # a row holding someone else's id anyway (written before these rules) unlocks nothing
    db.sql("update public.integrations set secret_id = %s where id = %s", (their_secret, mine))
    with db.as_service() as s:
        assert s.value("select public.ai_tenant_credentials(%s)", (TENANT,)) == {}
    with db.as_user(OWNER) as s:
        my_secret = s.value("select public.set_integration_secret(%s, 'sk-minha')", (mine,))
    assert my_secret != their_secret
    assert db.value("select decrypted_secret from vault.decrypted_secrets where id = %s",
                    (their_secret,)) == "sk-deles"
    with db.as_service() as s:
        assert s.value("select public.ai_tenant_credentials(%s)", (TENANT,)) == {
            "openai": {"secret": "sk-minha", "base_url": None}}
        assert s.value("select public.ai_tenant_credentials(%s)", (other,)) == {
            "openai": {"secret": "sk-deles", "base_url": None}}


def test_number_secrets_are_stored_under_their_number(db: Db) -> None:
    """set_whatsapp_number_secret writes the secret named after the number, whatever id
    the row holds."""
    number = "00000000-0000-4000-9000-000000000001"  # seed: Loja Demo's number
    foreign = db.value("select vault.create_secret('segredo-de-outro', 'integration:' || gen_random_uuid())")
    db.sql("update public.whatsapp_numbers set access_token_secret_id = %s where id = %s", (foreign, number))
    with db.as_user(OWNER) as s:
        secret_id = s.value("select public.set_whatsapp_number_secret(%s, 'access_token', 'EAAG-novo')",
                            (number,))
    assert secret_id != foreign
    assert db.value("select decrypted_secret from vault.decrypted_secrets where id = %s",
                    (foreign,)) == "segredo-de-outro"
    assert db.value("select name from vault.secrets where id = %s",
                    (secret_id,)) == f"whatsapp_number:{number}:access_token"


def test_audit_log_hides_vault_ids(db: Db) -> None:
    with db.as_user(OWNER) as s:
        integration = s.value("insert into public.integrations (tenant_id, type, provider, name)"
                              " values (%s, 'payments', 'hotmart', 'Hotmart') returning id", (TENANT,))
        secret_id = s.value("select public.set_integration_secret(%s, 'hottok-123')", (integration,))
    rows = db.sql("select action, changes from public.audit_log"
                  " where resource_type = 'integrations' and resource_id = %s order by created_at, action",
                  (integration,))
    assert str(secret_id) not in json.dumps(rows, default=str)
    assert [r["action"] for r in rows] == ["insert", "update"]
    assert rows[1]["changes"]["secret_id"] == {"old": None, "new": "redacted"}


def test_audit_log_records_the_address_the_proxy_appended(db: Db) -> None:
    with db.as_user(OWNER) as s:
        # the client writes its own X-Forwarded-For; the proxy appends the address it saw
        s.all("select set_config('request.headers', %s, true)",
              (json.dumps({"x-forwarded-for": "6.6.6.6, 203.0.113.7"}),))
        s.all("update public.tenants set name = 'Loja Demo Ltda' where id = %s", (TENANT,))
    assert db.value("select ip_address from public.audit_log where resource_type = 'tenants'"
                    " and action = 'update'") == "203.0.113.7"


def test_audit_log_records_actor_and_changed_columns_only(db: Db) -> None:
    with db.as_user(OWNER) as s:
        s.all("update public.tenants set name = 'Loja Demo Ltda', session_timeout = '2 hours'")
    row = db.sql("select * from public.audit_log where resource_type = 'tenants' and action = 'update'")[0]
    assert str(row["actor_id"]) == OWNER and row["actor_role"] == "authenticated"
    assert row["changes"] == {
        "name": {"old": "Loja Demo", "new": "Loja Demo Ltda"},
        "session_timeout": {"old": "04:00:00", "new": "02:00:00"},
    }
    with db.as_user(AGENT) as s:
        assert s.value("select count(*) from public.audit_log") == 0  # admins only
    with db.as_user(OWNER) as s:
        assert s.value("select count(*) from public.audit_log") >= 1


def test_deleting_a_tenant_removes_its_members(db: Db) -> None:
    with db.as_user(OWNER) as s:
        assert s.rowcount("delete from public.tenants where id = %s", (TENANT,)) == 1
    assert db.value("select count(*) from public.members where tenant_id = %s", (TENANT,)) == 0
    with db.as_user(AGENT) as s:
        assert s.rowcount("delete from public.tenants") == 0


@pytest.mark.parametrize(("text", "masked"), [
    ("meu cpf é 123.456.789-09", "meu cpf é ***.***.***-**"),
    ("cpf 12345678909 ok", "cpf ***.***.***-** ok"),
    ("email joao.silva@gmail.com", "email j***@gmail.com"),
    ("cartão 4111 1111 1111 1234", "cartão **** **** **** 1234"),
    ("liga (11) 98765-4321", "liga (**) *****-4321"),
    ("whats +55 11 98765 4321", "whats (**) *****-4321"),
    ("cnpj 12.345.678/0001-95", "cnpj **.***.***/****-**"),
    ("pedido 12345 chegou", "pedido 12345 chegou"),
])
def test_mask_pii(db: Db, text: str, masked: str) -> None:
    assert db.value("select private.mask_pii(%s)", (text,)) == masked


def test_phone_hash_ignores_formatting(db: Db) -> None:
    a, b, c = (db.value("select private.phone_hash(%s)", (p,))
               for p in ("+55 (11) 98765-4321", "5511987654321", "5511987654322"))
    assert a == b != c and len(a) == 64


def test_the_plan_limits_whatsapp_numbers(db: Db) -> None:
    owner = db.create_user()
    tenant = db.create_tenant(owner, "Loja Um Número", plan="starter")  # max_whatsapp_numbers = 1
    add = "insert into public.whatsapp_numbers (tenant_id, phone_number, phone_number_id) values (%s, %s, %s)"
    with db.as_user(owner) as s:
        s.all(add, (tenant, "+5511999990101", "300000000000101"))
    with (
        pytest.raises(psycopg.errors.CheckViolation, match="your plan allows 1 WhatsApp number"),
        db.as_user(owner) as s,
    ):
        s.all(add, (tenant, "+5511999990102", "300000000000102"))
