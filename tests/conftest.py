"""One embedded PostgreSQL per test session; a template database migrated and seeded
once; a fresh database cloned from it for every test that asks for `db`."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_postgresql.janitor import DatabaseJanitor
from support import Db

from zapbase.db.embedded import FAST_SETTINGS, SUPERUSER, EmbeddedPostgres, free_port
from zapbase.db.migrate import apply_platform, apply_seed, migrate, recreate_database
from zapbase.settings import Settings

TEMPLATE = "zapbase_template"
_clone_numbers = itertools.count()


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(database_url=None)


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(
        tmp_path_factory.mktemp("pg") / "data", free_port(), tuple(FAST_SETTINGS.items())
    )
    server.start()
    yield server
    server.destroy()


@pytest.fixture(scope="session")
def template_db(pg_server: EmbeddedPostgres, settings: Settings) -> str:
    """Name of the template: platform stand-in, every migration and the seed."""
    apply_platform(pg_server.url(SUPERUSER, "postgres"), settings.platform_dir)
    recreate_database(pg_server.url(SUPERUSER, "template1"), TEMPLATE)
    apply_platform(pg_server.url(SUPERUSER, TEMPLATE), settings.platform_dir)
    migrate(pg_server.url("postgres", TEMPLATE), settings.migrations_dir)
    apply_seed(pg_server.url("postgres", TEMPLATE), settings.seed_dir)
    return TEMPLATE


@pytest.fixture
def db(pg_server: EmbeddedPostgres, template_db: str, request: pytest.FixtureRequest) -> Iterator[Db]:
    name = f"test_{next(_clone_numbers)}"
    janitor = DatabaseJanitor(
        user="postgres", host="127.0.0.1", port=pg_server.port, dbname=name,
        template_dbname=template_db,
    )
    started = time.perf_counter()
    janitor.init()
    request.config.stash.setdefault(CLONE_TIMES, []).append(time.perf_counter() - started)
    yield Db(pg_server.url("postgres", name))
    janitor.drop()


CLONE_TIMES = pytest.StashKey[list[float]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    times = sorted(config.stash.get(CLONE_TIMES, []))
    if times:
        median = times[len(times) // 2] * 1000
        terminalreporter.write_line(
            f"per-test database clone: median {median:.0f} ms over {len(times)} clones"
        )


@pytest.fixture
def project_dir(settings: Settings) -> Path:
    return settings.zapbase_project_dir
