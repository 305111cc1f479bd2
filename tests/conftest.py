"""One embedded PostgreSQL per test session; a template database migrated and seeded
once; a fresh database cloned from it for every test that asks for `db`, made ahead on
background threads so that a test seldom waits for its clone."""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from support import Db
from zapbase.db.embedded import SUPERUSER, EmbeddedPostgres
from zapbase.db.pool import Connect, borrow
from zapbase.db.pool import connect as connect_db
from zapbase.db.scratch import build_template, clone_database, scratch_server
from zapbase.settings import Settings


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(database_url=None)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    with scratch_server() as server:
        yield server


@pytest.fixture(scope="session")
def template_db(pg_server: EmbeddedPostgres, settings: Settings) -> str:
    """Name of the template: platform stand-in, every migration and the seed."""
    return build_template(pg_server, settings)


class Clones:
    """Fresh clones of the template, the next ones always in the making."""

    AHEAD = 2

    def __init__(self, server: EmbeddedPostgres, template: str) -> None:
        self._server, self._template = server, template
        self._numbers = itertools.count()
        self._maker = ThreadPoolExecutor(max_workers=self.AHEAD, thread_name_prefix="clone")
        self._ready: deque[Future[tuple[str, str]]] = deque(
            self._maker.submit(self._make) for _ in range(self.AHEAD))

    def _make(self) -> tuple[str, str]:
        name = f"test_{next(self._numbers)}"
        # A plain CREATE DATABASE ... TEMPLATE: PostgreSQL itself waits out an autovacuum
        # worker on the template (the janitor would try to kill it, which only the superuser may do).
        return name, clone_database(self._server, self._template, name)

    def take(self) -> tuple[str, str]:
        ready = self._ready.popleft().result()
        self._ready.append(self._maker.submit(self._make))
        return ready

    def close(self) -> None:
        self._maker.shutdown()  # waits for the clones in the making; the server's directory goes with them


@pytest.fixture(scope="session")
def clones(pg_server: EmbeddedPostgres, template_db: str) -> Iterator[Clones]:
    made = Clones(pg_server, template_db)
    yield made
    made.close()


@pytest.fixture
def db(pg_server: EmbeddedPostgres, clones: Clones, request: pytest.FixtureRequest) -> Iterator[Db]:
    started = time.perf_counter()
    name, url = clones.take()
    request.config.stash.setdefault(CLONE_TIMES, []).append(time.perf_counter() - started)
    yield Db(url)
    # Dropped by the superuser: it must end the backends a test left behind (authenticator's
    # included), which the demoted postgres may not signal.
    DatabaseJanitor(user=SUPERUSER, host="127.0.0.1", port=pg_server.port, dbname=name).drop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def connect(db: Db, anyio_backend: str) -> AsyncIterator[Connect]:
    """One service-role session on the test database, lent as the worker's services take it."""
    async with await connect_db(db.url) as conn:
        yield borrow(conn)


CLONE_TIMES = pytest.StashKey[list[float]]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    times = sorted(config.stash.get(CLONE_TIMES, []))
    if times:
        median = times[len(times) // 2] * 1000
        terminalreporter.write_line(
            f"per-test wait for a database clone: median {median:.0f} ms over {len(times)} clones"
        )
