"""Supabase's database advisor (splinter: the lints Supabase Studio shows under Advisors)
over the migrated and seeded schema: not one ERROR or WARN."""

from __future__ import annotations

from pathlib import Path

from support import Db

SPLINTER = Path(__file__).parent / "fixtures" / "splinter.sql"


def test_supabase_advisor_finds_nothing(db: Db) -> None:
    with db.connect() as conn:
        conn.execute("set search_path = ''")
        conn.execute("set pgrst.db_schemas = 'public'")
        conn.execute(b"create temp view _splinter as " + SPLINTER.read_bytes())
        found = conn.execute(
            "select level, name, detail from _splinter where level in ('ERROR', 'WARN') order by level, name"
        ).fetchall()
    assert found == [], "\n".join(f"{r['level']} {r['name']}: {r['detail']}" for r in found)
