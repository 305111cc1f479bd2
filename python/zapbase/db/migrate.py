"""Applies the platform stand-in, the migrations and the seed, like the Supabase CLI.

Migrations run as `postgres` (never as superuser), one transaction per file, recorded in
`supabase_migrations.schema_migrations(version, name, statements)`. Zapbase records a
file's whole text as its single statement, so an applied file that changed is detected.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from zapbase.errors import DatabaseError

_logger = logging.getLogger(__name__)

MIGRATION_NAME = re.compile(r"^(?P<version>\d{14})_(?P<name>[a-z0-9_]+)\.sql$")
# Serialises concurrent runners (two `zapbase up` at once) on one database.
_MIGRATION_LOCK_KEY = 7_311_996_502


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def text(self) -> str:
        return self.path.read_text(encoding="utf-8")


def list_migrations(directory: Path) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if match is None:
            raise DatabaseError(
                f"{path} is not named <YYYYMMDDHHMMSS>_<name>.sql; rename it so its order is clear"
            )
        found.append(Migration(match["version"], match["name"], path))
    return found


def connect(url: str, *, autocommit: bool = False) -> psycopg.Connection[tuple[object, ...]]:
    try:
        return psycopg.connect(url, autocommit=autocommit, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise DatabaseError(
            f"cannot connect to {mask_password(url)}: {str(exc).strip()}\n"
            "Check DATABASE_URL (host, port, user, password, database), or unset it to use "
            "the embedded database."
        ) from None


def mask_password(url: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _run_file(conn: psycopg.Connection[tuple[object, ...]], path: Path, text: str) -> None:
    """Run one SQL file; on error, name the file and line and let the transaction roll back."""
    try:
        conn.execute(text.encode())  # bytes: the simple protocol, many statements per call
    except psycopg.Error as exc:
        position = exc.diag.statement_position
        where = ""
        if position:
            line = text.encode()[: int(position)].decode(errors="replace").count("\n") + 1
            where = f" at line {line}"
        raise DatabaseError(
            f"{path.name} failed{where}: {exc.diag.message_primary or exc}"
            + (f" ({exc.diag.message_detail})" if exc.diag.message_detail else "")
            + "\nNothing from this file was applied; fix it and run the command again."
        ) from None


def apply_platform(admin_url: str, platform_dir: Path) -> None:
    """Apply sql/platform/*.sql as the superuser (plain PostgreSQL only, never Supabase)."""
    with connect(admin_url) as conn:
        for path in sorted(platform_dir.glob("*.sql")):
            _run_file(conn, path, path.read_text(encoding="utf-8"))
        conn.commit()


def migrate(url: str, migrations_dir: Path) -> list[Migration]:
    """Apply pending migrations in version order; return the ones applied now."""
    migrations = list_migrations(migrations_dir)
    applied_now: list[Migration] = []
    with connect(url) as conn:
        conn.execute("select pg_advisory_lock(%s)", (_MIGRATION_LOCK_KEY,))
        try:
            _ensure_history_table(conn)
            conn.commit()
            recorded = {
                str(version): statements
                for version, statements in conn.execute(
                    "select version, statements from supabase_migrations.schema_migrations"
                )
            }
            conn.commit()
            for migration in migrations:
                if migration.version in recorded:
                    _check_unchanged(migration, recorded[migration.version])
                    continue
                text = migration.text
                _run_file(conn, migration.path, text)
                conn.execute(
                    "insert into supabase_migrations.schema_migrations (version, name, statements)"
                    " values (%s, %s, %s)",
                    (migration.version, migration.name, [text]),
                )
                conn.commit()
                applied_now.append(migration)
                _logger.info("applied migration %s", migration.path.name)
        finally:
            conn.rollback()
            conn.execute("select pg_advisory_unlock(%s)", (_MIGRATION_LOCK_KEY,))
    return applied_now


def _ensure_history_table(conn: psycopg.Connection[tuple[object, ...]]) -> None:
    conn.execute("create schema if not exists supabase_migrations")
    conn.execute(
        "create table if not exists supabase_migrations.schema_migrations ("
        " version text primary key, statements text[], name text)"
    )


def _check_unchanged(migration: Migration, statements: object) -> None:
    # Only files recorded by Zapbase hold their whole text; the Supabase CLI splits them.
    if not isinstance(statements, list) or len(statements) != 1:
        return
    if statements[0] != migration.text:
        raise DatabaseError(
            f"{migration.path.name} was changed after it was applied to this database. "
            "Locally, rebuild the database with `zapbase db reset`; on a shared database, "
            "put the change in a new migration file instead."
        )


def apply_seed(url: str, seed_dir: Path, *, demo: bool = True) -> list[Path]:
    """Apply seed/*.sql as postgres; seed files are idempotent, so this may run again.
    Files named *demo* (a tenant with users and the simulator's credentials) only with
    `demo`: they must never reach a real project."""
    files = sorted(p for p in seed_dir.glob("*.sql") if demo or "demo" not in p.name)
    with connect(url) as conn:
        for path in files:
            _run_file(conn, path, path.read_text(encoding="utf-8"))
        conn.commit()
    return files


def recreate_database(admin_url: str, name: str) -> None:
    """Drop and create `name` owned by postgres (embedded server only)."""
    with connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("create database {} owner postgres").format(sql.Identifier(name)))
