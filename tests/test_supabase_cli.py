"""The real Supabase CLI (pinned in zapbase.contract.npm, installed once from npm) on a fresh
embedded database holding only the platform stand-in, as a new Supabase project would:
`supabase db push --include-seed` applies every migration and the seed as `postgres`,
`supabase migration list` shows local and remote in sync, and Zapbase's own runner then
finds nothing left to apply."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from support import Db
from zapbase.contract.npm import ToolUnavailable, supabase_cli
from zapbase.db.embedded import SUPERUSER, EmbeddedPostgres
from zapbase.db.migrate import apply_platform, list_migrations, migrate, recreate_database
from zapbase.settings import Settings

pytestmark = pytest.mark.supabase_cli


@pytest.fixture
def cli(settings: Settings) -> Path:
    try:
        return supabase_cli(settings.zapbase_project_dir)
    except ToolUnavailable as exc:
        pytest.skip(f"the Supabase CLI comes from npm: {exc}")


@pytest.fixture
def platform_only(pg_server: EmbeddedPostgres, settings: Settings) -> Iterator[Db]:
    name = f"cli_{uuid.uuid4().hex[:8]}"
    apply_platform(pg_server.url(SUPERUSER, "postgres"), settings.platform_dir)  # the roles
    recreate_database(pg_server.url(SUPERUSER, "template1"), name)
    apply_platform(pg_server.url(SUPERUSER, name), settings.platform_dir)
    yield Db(pg_server.url("postgres", name))
    DatabaseJanitor(user=SUPERUSER, host="127.0.0.1", port=pg_server.port, dbname=name).drop()


def run_cli(cli: Path, settings: Settings, *args: str) -> str:
    result = subprocess.run([str(cli), *args], cwd=settings.zapbase_project_dir, capture_output=True,
                            text=True, check=False, timeout=300, stdin=subprocess.DEVNULL)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"supabase {' '.join(args[:2])} failed:\n{output}"
    return output


def test_supabase_db_push_applies_migrations_and_seed(
    cli: Path, platform_only: Db, settings: Settings
) -> None:
    url = platform_only.url + "?sslmode=disable"
    versions = [m.version for m in list_migrations(settings.migrations_dir)]

    pushed = run_cli(cli, settings, "db", "push", "--db-url", url, "--include-seed", "--yes")
    assert "Finished supabase db push." in pushed, pushed
    assert [r["version"] for r in platform_only.sql(
        "select version from supabase_migrations.schema_migrations order by 1")] == versions
    assert platform_only.value("select count(*) from public.plans") > 0  # the seed ran
    assert platform_only.value("select count(*) from public.tenants") > 0  # the demo tenant too

    listed = run_cli(cli, settings, "migration", "list", "--db-url", url)
    rows = [[cell.strip(" `") for cell in line.split("|")] for line in listed.splitlines()
            if re.match(r"^\s*`?\d{14}", line)]
    assert rows, listed
    assert [(local, remote) for local, remote, *_ in rows] == [(v, v) for v in versions], listed

    assert migrate(platform_only.url, settings.migrations_dir) == []
