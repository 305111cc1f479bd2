"""The `zapbase db` commands as a user runs them, including every bad input the
foundation promises a clear, traceback-free message for."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from support import Db
from zapbase.db.embedded import SUPERUSER, EmbeddedPostgres
from zapbase.db.migrate import apply_platform, recreate_database
from zapbase.settings import find_project_dir

ZAPBASE = [sys.executable, "-m", "zapbase.cli"]


def run(*args: str, env: dict[str, str] | None = None,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("ZAPBASE_", "DATABASE_URL"))}
    full_env.update(env or {})
    full_env["COLUMNS"] = "200"  # keep rich from wrapping messages
    return subprocess.run([*ZAPBASE, *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd or find_project_dir(), timeout=120, check=False)


def assert_clean_failure(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    for needle in needles:
        assert needle in output, output


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's SQL, to add migrations to."""
    source = find_project_dir()
    for part in ("supabase", "sql", "seed"):
        shutil.copytree(source / part, tmp_path / part)
    return tmp_path


def test_embedded_database_lifecycle(tmp_path: Path) -> None:
    """setup, status, url, psql, migrate, backup and restore, reset, stop."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    env = {"ZAPBASE_HOME": str(tmp_path / "home"), "ZAPBASE_DB_PORT": port,
           "ZAPBASE_BACKUP_KEY": run("db", "backup-key").stdout.strip(),
           "ZAPBASE_BACKUP_DIR": str(tmp_path / "bk")}
    try:
        setup = run("setup", env=env)
        assert setup.returncode == 0 and "knowledge base of loja-demo: 4 file(s)" in setup.stdout
        status = run("db", "status", env=env)
        assert status.returncode == 0 and f"127.0.0.1:{port}/postgres" in status.stdout
        url = run("db", "url", env=env).stdout.strip()
        assert url == f"postgresql://postgres:postgres@127.0.0.1:{port}/postgres"
        psql = run("db", "psql", "-Atc", "select name from public.tenants", env=env)
        assert psql.stdout.strip() == "Loja Demo"
        ready_sql = "select count(*) from public.knowledge_sources where status = 'ready'"
        ready = run("db", "psql", "-Atc", ready_sql, env=env)
        assert ready.stdout.strip() == "4"  # the seed knowledge base `make demo` answers from
        assert "0 migration(s) applied" in run("db", "migrate", env=env).stdout
        backup_and_restore(env, tmp_path)
        reset = run("db", "reset", "--yes", env=env)
        assert reset.returncode == 0 and "database rebuilt" in reset.stdout
        assert run("db", "stop", env=env).stdout.strip() == "stopped"
        assert run("db", "status", env=env).returncode == 3
    finally:
        run("db", "stop", env=env)


def backup_and_restore(env: dict[str, str], tmp_path: Path) -> None:
    """`db backup` writes an encrypted dump; `db restore` refuses a wrong key or a cut file
    before touching anything, and brings the database back as it was."""
    sql = ["db", "psql", "-v", "ON_ERROR_STOP=1", "-Atc"]
    assert run(*sql, "update public.tenants set name = 'Antes do backup'", env=env).returncode == 0
    made = run("db", "backup", env=env)
    assert made.returncode == 0, made.stderr
    [backup] = (tmp_path / "bk").glob("zapbase-*.dump.enc")
    assert b"Antes do backup" not in backup.read_bytes() and b"PGDMP" not in backup.read_bytes()

    run(*sql, "update public.tenants set name = 'Depois'; drop table public.retention_policies", env=env)
    other_key = run("db", "backup-key").stdout.strip()
    wrong = run("db", "restore", str(backup), "--yes", env={**env, "ZAPBASE_BACKUP_KEY": other_key})
    assert_clean_failure(wrong, "does not decrypt with this key")
    cut = tmp_path / "cut.dump.enc"
    cut.write_bytes(backup.read_bytes()[:-100])
    assert_clean_failure(run("db", "restore", str(cut), "--yes", env=env), "cut short")
    assert run(*sql, "select name from public.tenants", env=env).stdout.strip() == "Depois"  # untouched

    restored = run("db", "restore", str(backup), "--yes", env=env)
    assert restored.returncode == 0, restored.stderr
    assert run(*sql, "select name from public.tenants", env=env).stdout.strip() == "Antes do backup"
    assert run(*sql, "select count(*) from public.retention_policies", env=env).stdout.strip() == "0"


def test_wrong_database_url_is_explained(tmp_path: Path) -> None:
    result = run("db", "migrate", env={"DATABASE_URL": "postgresql://postgres:secret@127.0.0.1:1/postgres"})
    assert_clean_failure(result, "cannot connect to postgresql://postgres:***@127.0.0.1:1/postgres",
                         "Check DATABASE_URL")
    assert "secret" not in result.stderr


def test_port_in_use_is_explained(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        result = run("db", "start", env={"ZAPBASE_HOME": str(tmp_path), "ZAPBASE_DB_PORT": port})
    assert_clean_failure(result, f"port {port} on 127.0.0.1 is already in use", "ZAPBASE_DB_PORT=")


def test_data_dir_of_another_postgres_version_is_explained(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "PG_VERSION").write_text("16\n")
    result = run("db", "start", env={"ZAPBASE_HOME": str(tmp_path)})
    assert_clean_failure(result, "holds a PostgreSQL 16 cluster", "PostgreSQL 18", "ZAPBASE_HOME")


def test_broken_migration_names_file_and_line_and_applies_nothing(db: Db, project: Path) -> None:
    (project / "supabase" / "migrations" / "20991231000000_broken.sql").write_text(
        "create table public.half_done (id int);\n\ninsert into public.half_done values (1);\nselec 1;\n")
    result = run("db", "migrate", env={"DATABASE_URL": db.url}, cwd=project)
    assert_clean_failure(result, "20991231000000_broken.sql failed at line 4",
                         'syntax error at or near "selec"', "Nothing from this file was applied")
    assert db.value("select to_regclass('public.half_done') is null")
    assert db.value("select count(*) from supabase_migrations.schema_migrations"
                    " where version = '20991231000000'") == 0


def test_migrations_apply_once_in_order_and_changes_are_reported(db: Db, project: Path) -> None:
    new = project / "supabase" / "migrations" / "20991231000000_extra.sql"
    new.write_text("create table public.extra (id int);\n")
    env = {"DATABASE_URL": db.url}
    first = run("db", "migrate", env=env, cwd=project)
    assert first.returncode == 0 and "applied 20991231000000_extra.sql" in first.stdout
    assert "0 migration(s) applied" in run("db", "migrate", env=env, cwd=project).stdout
    recorded = db.sql("select name, statements from supabase_migrations.schema_migrations"
                      " where version = '20991231000000'")[0]
    assert recorded == {"name": "extra", "statements": [new.read_text()]}

    new.write_text("create table public.extra (id bigint);\n")
    assert_clean_failure(run("db", "migrate", env=env, cwd=project),
                         "20991231000000_extra.sql was changed after it was applied", "zapbase db reset")


def test_reset_refuses_a_database_url(db: Db) -> None:
    assert_clean_failure(run("db", "reset", "--yes", env={"DATABASE_URL": db.url}),
                         "refusing to reset a database given by DATABASE_URL")


def test_a_database_url_gets_reference_data_but_never_the_demo_tenant(
    pg_server: EmbeddedPostgres, template_db: str  # the template brings the cluster's roles
) -> None:
    # the demo seeds a tenant with known users and the simulator's webhook secret: on a real
    # project anybody could sign webhooks for its number
    recreate_database(pg_server.url(SUPERUSER, "template1"), "fresh_project")
    apply_platform(pg_server.url(SUPERUSER, "fresh_project"), find_project_dir() / "sql" / "platform")
    url = pg_server.url("postgres", "fresh_project")
    result = run("setup", env={"DATABASE_URL": url})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no demo tenant" in result.stdout
    with psycopg.connect(url) as conn:
        counts = conn.execute(
            "select (select count(*) from public.plans), (select count(*) from public.ai_models),"
            " (select count(*) from public.tenants), (select count(*) from public.whatsapp_numbers),"
            " (select count(*) from auth.users), (select count(*) from public.knowledge_sources)").fetchone()
    assert counts is not None and counts[0] > 0 and counts[1] > 0
    assert counts[2:] == (0, 0, 0, 0)


def test_a_supabase_project_is_restored_by_the_platform(tmp_path: Path) -> None:
    backup = tmp_path / "b.dump.enc"
    backup.write_bytes(b"ZBK1")
    env = {"DATABASE_URL": "postgresql://postgres:x@db.abcd.supabase.co:5432/postgres",
           "ZAPBASE_BACKUP_KEY": run("db", "backup-key").stdout.strip()}
    assert_clean_failure(run("db", "restore", str(backup), "--yes", env=env), "platform's backups")
