"""The generated files frontends build on are committed, like a lockfile: each must equal
what the migrations generate now (`make types docs` rewrites both)."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path

import pytest

from support import Db
from zapbase.contract.apidocs import DOCS_FILE, render_api_docs
from zapbase.contract.npm import ToolUnavailable
from zapbase.contract.typegen import TYPES_FILE, generate_types
from zapbase.settings import Settings


def check_committed(settings: Settings, relative: Path, generate: Callable[[], str], command: str) -> None:
    path = settings.zapbase_project_dir / relative
    committed = path.read_text(encoding="utf-8") if path.is_file() else ""
    generated = generate()
    if committed != generated:
        diff = list(difflib.unified_diff(committed.splitlines(), generated.splitlines(),
                                         f"{relative} (committed)", f"{relative} (from the migrations)",
                                         lineterm="", n=1))
        pytest.fail(f"{relative} is out of date with supabase/migrations: run `{command}` and commit it.\n"
                    + "\n".join(diff[:40]) + ("\n..." if len(diff) > 40 else ""), pytrace=False)


def test_committed_types_match_the_migrations(db: Db, settings: Settings) -> None:
    def generate() -> str:
        try:
            return generate_types(db.url, settings.zapbase_project_dir)
        except ToolUnavailable as exc:
            pytest.skip(f"cannot generate the TypeScript types: {exc}")

    check_committed(settings, TYPES_FILE, generate, "make types")


def test_committed_api_docs_match_the_migrations(db: Db, settings: Settings) -> None:
    check_committed(settings, DOCS_FILE, lambda: render_api_docs(db.url), "make docs")


def test_a_schema_change_makes_the_api_docs_stale(db: Db, settings: Settings) -> None:
    db.sql("comment on table public.tenants is 'A renamed concept.'")
    with pytest.raises(pytest.fail.Exception, match=r"run `make docs` and commit it"):
        check_committed(settings, DOCS_FILE, lambda: render_api_docs(db.url), "make docs")
