"""Throwaway clusters for tests and benchmarks: one embedded server in a temp dir, a
template database built once (platform, migrations, seed), fresh clones on demand."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from psycopg import sql

from zapbase.db.embedded import FAST_SETTINGS, POSTGRES_BIN_PATH, SUPERUSER, EmbeddedPostgres, free_port
from zapbase.db.migrate import apply_platform, apply_seed, connect, migrate, recreate_database
from zapbase.settings import Settings

TEMPLATE = "zapbase_template"


@contextmanager
def scratch_server(
    base_dir: Path | None = None, *, bin_dir: Path = POSTGRES_BIN_PATH,
    settings: Mapping[str, str] | None = None,
) -> Iterator[EmbeddedPostgres]:
    """A fast, non-durable server (the embedded one unless `bin_dir` says otherwise) on a free
    port with `settings` added, destroyed on exit."""
    with tempfile.TemporaryDirectory(prefix="zapbase-pg-", dir=base_dir) as tmp:
        server = EmbeddedPostgres(Path(tmp) / "data", free_port(),
                                  tuple({**FAST_SETTINGS, **(settings or {})}.items()), bin_dir)
        server.start()
        try:
            yield server
        finally:
            server.destroy()


@contextmanager
def migrated_database(settings: Settings) -> Iterator[str]:
    """A throwaway server whose `postgres` database has the platform stand-in and every
    migration (no seed): its URL as postgres. What generated files are generated from."""
    with scratch_server() as server:
        apply_platform(server.url(SUPERUSER, "postgres"), settings.platform_dir)
        migrate(server.url("postgres", "postgres"), settings.migrations_dir)
        yield server.url("postgres", "postgres")


def build_template(server: EmbeddedPostgres, settings: Settings, name: str = TEMPLATE) -> str:
    """Create database `name` with the platform stand-in, every migration and the seed."""
    apply_platform(server.url(SUPERUSER, "postgres"), settings.platform_dir)
    recreate_database(server.url(SUPERUSER, "template1"), name)
    apply_platform(server.url(SUPERUSER, name), settings.platform_dir)
    migrate(server.url("postgres", name), settings.migrations_dir)
    apply_seed(server.url("postgres", name), settings.seed_dir)
    return name


def clone_database(server: EmbeddedPostgres, template: str, name: str) -> str:
    """A new database `name` copied from `template`; returns its URL as postgres."""
    with connect(server.url("postgres", "postgres"), autocommit=True) as conn:
        conn.execute(
            sql.SQL("create database {} template {}").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )
    return server.url("postgres", name)
