"""The schema on Supabase's own PostgreSQL major (15) with pg_cron preloaded, as a hosted
project runs it; the rest of the suite runs on the embedded PostgreSQL 18.

Debian's postgresql-15, postgresql-15-cron and the build tools are installed with apt when
missing (CI runs as root on a clean machine); pgvector is built for PostgreSQL 15 from
Debian's source (scripts/pgvector-source.sh). A throwaway cluster then gets the platform
stand-in, `create extension pg_cron` (enabled before the migrations, as on a project that
turned it on), every migration and the seed, through the same functions as everywhere else.
The security catalog checks of test_security.py that take only `db` run there unchanged.
"""

from __future__ import annotations

import inspect
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import test_security
from support import Db
from zapbase.db.embedded import SUPERUSER
from zapbase.db.migrate import apply_platform, apply_seed, connect, list_migrations, migrate
from zapbase.db.scratch import scratch_server
from zapbase.settings import Settings

pytestmark = pytest.mark.postgres15

PG15 = Path("/usr/lib/postgresql/15")
PACKAGES = ("postgresql-15", "postgresql-15-cron", "postgresql-server-dev-15", "gcc", "make")
DATABASE = "postgres"  # pg_cron lives in one database (cron.database_name); keep its default


def _missing_packages() -> list[str]:
    if shutil.which("dpkg-query") is None:
        pytest.skip("PostgreSQL 15 test: not a Debian machine (no dpkg/apt to install postgresql-15)")
    missing = []
    for package in PACKAGES:
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package],
                                capture_output=True, text=True, check=False).stdout
        if status.strip() != "install ok installed":
            missing.append(package)
    return missing


def _require_root(what: str) -> None:
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip(f"PostgreSQL 15 test: {what}, and apt-get is unavailable here (needs root)")


def _install_postgres15(project_dir: Path) -> None:
    """postgresql-15 + pg_cron from apt, pgvector built from source: once per machine."""
    missing = _missing_packages()
    if missing:
        _require_root(f"{' '.join(missing)} not installed")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                       check=True, env=env, capture_output=True)
    if not (PG15 / "lib" / "vector.so").is_file():
        _require_root("pgvector is not built for PostgreSQL 15")
        with tempfile.TemporaryDirectory(prefix="pgvector-") as work:
            source = subprocess.run([str(project_dir / "scripts" / "pgvector-source.sh"), work],
                                    check=True, capture_output=True, text=True).stdout.strip()
            subprocess.run(["make", "-s", "-j2", "-C", source, f"PG_CONFIG={PG15 / 'bin' / 'pg_config'}",
                            "OPTFLAGS=", "install"], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pg15(settings: Settings) -> Iterator[Db]:
    _install_postgres15(settings.zapbase_project_dir)
    with scratch_server(bin_dir=PG15 / "bin", settings={"shared_preload_libraries": "pg_cron"}) as server:
        admin = server.url(SUPERUSER, DATABASE)
        apply_platform(admin, settings.platform_dir)
        with connect(admin, autocommit=True) as conn:
            conn.execute("create extension pg_cron")
            # what Supabase grants when a project enables pg_cron: postgres schedules its jobs
            conn.execute("grant usage on schema cron to postgres")
            conn.execute("grant all on all tables in schema cron to postgres")
        migrate(server.url("postgres", DATABASE), settings.migrations_dir)
        apply_seed(server.url("postgres", DATABASE), settings.seed_dir)
        yield Db(server.url("postgres", DATABASE))


def test_every_migration_applies_on_postgresql_15(pg15: Db, settings: Settings) -> None:
    assert pg15.value("select current_setting('server_version_num')::int / 10000") == 15
    recorded = [r["version"] for r in pg15.sql(
        "select version from supabase_migrations.schema_migrations order by 1")]
    assert recorded == [m.version for m in list_migrations(settings.migrations_dir)]


# Every catalog check of test_security.py that needs nothing but a migrated database.
CATALOG_CHECKS: dict[str, Callable[[Db], None]] = {
    name: check for name, check in inspect.getmembers(test_security, inspect.isfunction)
    if name.startswith("test_") and list(inspect.signature(check).parameters) == ["db"]
}


@pytest.mark.parametrize("check", sorted(CATALOG_CHECKS))
def test_security_catalog_checks_on_postgresql_15(pg15: Db, check: str) -> None:
    CATALOG_CHECKS[check](pg15)


def test_pg_cron_schedules_beside_the_schema(pg15: Db) -> None:
    with pg15.connect(SUPERUSER) as conn:
        assert conn.execute("select count(*) as n from pg_stat_activity"
                            " where backend_type = 'pg_cron launcher'").fetchone() == {"n": 1}
        job = conn.execute("select cron.schedule('zapbase-probe', '* * * * *', 'select 1') as id").fetchone()
        assert job is not None
        assert conn.execute("select command from cron.job where jobid = %s",
                            (job["id"],)).fetchone() == {"command": "select 1"}
        conn.execute("select cron.unschedule('zapbase-probe')")


def test_pg_cron_runs_due_jobs(pg15: Db) -> None:
    """Hook for the job scheduler: the migration that adds private.run_due_jobs() schedules it
    where pg_cron exists; this proves pg_cron then runs it (within a minute)."""
    if pg15.value("select to_regprocedure('private.run_due_jobs()') is null"):
        pytest.skip("private.run_due_jobs() does not exist yet: once schedules land, this test "
                    "checks that the migrations schedule it with pg_cron and that pg_cron runs it")
    with pg15.connect(SUPERUSER) as conn:
        conn.autocommit = True
        job = conn.execute(
            "select jobid from cron.job where command like '%private.run_due_jobs()%'").fetchone()
        assert job is not None, "pg_cron exists but no cron.job calls private.run_due_jobs()"
        deadline = time.monotonic() + 75
        while time.monotonic() < deadline:
            run = conn.execute("select status, return_message from cron.job_run_details where jobid = %s"
                               " order by start_time desc limit 1", (job["jobid"],)).fetchone()
            if run is not None and run["status"] in ("succeeded", "failed"):
                assert run["status"] == "succeeded", run["return_message"]
                return
            time.sleep(1)
        pytest.fail("pg_cron did not run private.run_due_jobs() within 75 s")
