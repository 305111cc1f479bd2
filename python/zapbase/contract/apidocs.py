"""`docs/api.md`: the API reference for frontend developers, read from the database itself.

Everything comes from the catalog of a freshly migrated database, so it cannot drift from the
schema: tables and views the `authenticated` role may touch (columns, per-column grants,
policies, the comments Studio shows), every RPC granted to `authenticated` (arguments, result,
its comment, which says who may call it, and the errors it raises: `raise exception '...'
using errcode = '...'` read from its body and from the private helpers it calls), the errors
triggers raise on writes, and the Realtime channels (tables in `supabase_realtime`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg.rows import dict_row

from zapbase.db.migrate import connect

DOCS_FILE = Path("docs") / "api.md"
ROLE = "authenticated"
_RAISE = re.compile(r"raise\s+exception\s+'((?:[^']|'')*)'(.*?);", re.IGNORECASE | re.DOTALL)
_ERRCODE = re.compile(r"errcode\s*=\s*'(\w+)'", re.IGNORECASE)
_CALL = re.compile(r"\b(public|private)\.(\w+)\s*\(", re.IGNORECASE)

_TABLES = """
select c.oid, c.relname as name, c.relkind = 'v' as is_view, obj_description(c.oid, 'pg_class') as comment,
       has_table_privilege(%(role)s, c.oid, 'DELETE') as can_delete
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
 where n.nspname = 'public' and c.relkind in ('r', 'p', 'v', 'm')
   and (has_any_column_privilege(%(role)s, c.oid, 'SELECT')
        or has_any_column_privilege(%(role)s, c.oid, 'INSERT')
        or has_any_column_privilege(%(role)s, c.oid, 'UPDATE')
        or has_table_privilege(%(role)s, c.oid, 'DELETE'))
 order by c.relname
"""
_COLUMNS = """
select a.attname as name, format_type(a.atttypid, a.atttypmod) as type, not a.attnotnull as nullable,
       col_description(a.attrelid, a.attnum) as comment,
       has_column_privilege(%(role)s, a.attrelid, a.attnum, 'SELECT') as can_select,
       has_column_privilege(%(role)s, a.attrelid, a.attnum, 'INSERT') as can_insert,
       has_column_privilege(%(role)s, a.attrelid, a.attnum, 'UPDATE') as can_update
  from pg_attribute a
 where a.attrelid = %(oid)s and a.attnum > 0 and not a.attisdropped
 order by a.attnum
"""
_POLICIES = """
select cmd, policyname from pg_policies
 where schemaname = 'public' and tablename = %(name)s and (%(role)s = any(roles) or 'public' = any(roles))
 order by array_position(array['ALL', 'SELECT', 'INSERT', 'UPDATE', 'DELETE'], cmd::text), policyname
"""
_TRIGGER_FUNCTIONS = """
select distinct t.tgfoid as oid from pg_trigger t where t.tgrelid = %(oid)s and not t.tgisinternal
"""
_RPCS = """
select p.oid, p.proname as name, pg_get_function_arguments(p.oid) as arguments,
       pg_get_function_result(p.oid) as result, obj_description(p.oid, 'pg_proc') as comment
  from pg_proc p join pg_namespace n on n.oid = p.pronamespace
 where n.nspname = 'public' and p.prokind = 'f' and has_function_privilege(%(role)s, p.oid, 'EXECUTE')
   and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e')
 order by p.proname, p.oid
"""
_FUNCTION_BODIES = """
select p.oid, n.nspname as schema, p.proname as name, p.prosrc as body
  from pg_proc p join pg_namespace n on n.oid = p.pronamespace
 where n.nspname in ('public', 'private')
"""
_REALTIME = """
select pt.tablename as name, p.pubinsert, p.pubupdate, p.pubdelete
  from pg_publication_tables pt join pg_publication p on p.pubname = pt.pubname
 where pt.pubname = 'supabase_realtime' and pt.schemaname = 'public'
 order by pt.tablename
"""


@dataclass(frozen=True)
class RaisedError:
    errcode: str
    message: str


class _Bodies:
    """Function bodies by oid and by name, to follow calls into helpers."""

    def __init__(self, rows: Iterable[dict[str, Any]]) -> None:
        self.by_oid: dict[int, str] = {}
        self.by_name: dict[tuple[str, str], list[int]] = {}
        for row in rows:
            self.by_oid[row["oid"]] = row["body"]
            self.by_name.setdefault((row["schema"], row["name"]), []).append(row["oid"])

    def errors(self, roots: Iterable[int]) -> list[RaisedError]:
        """Errors raised by these functions and every public/private function they call."""
        seen: set[int] = set()
        todo = list(roots)
        found: dict[RaisedError, None] = {}
        while todo:
            oid = todo.pop()
            if oid in seen or oid not in self.by_oid:
                continue
            seen.add(oid)
            body = self.by_oid[oid]
            for match in _RAISE.finditer(body):
                code = _ERRCODE.search(match.group(2))
                message = match.group(1).replace("''", "'").replace("%", "…")
                found[RaisedError(code.group(1) if code else "P0001", message)] = None
            for schema, name in _CALL.findall(body):
                todo.extend(self.by_name.get((schema.lower(), name), []))
        return sorted(found, key=lambda e: (e.errcode, e.message))


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _errors_table(errors: list[RaisedError]) -> list[str]:
    if not errors:
        return ["Errors: none raised by the function or its helpers.", ""]
    lines = ["| errcode | message |", "|---|---|"]
    lines += [f"| `{e.errcode}` | {_cell(e.message)} |" for e in errors]
    return [*lines, ""]


def render_api_docs(url: str) -> str:
    """The whole of docs/api.md for the database at `url`."""
    params = {"role": ROLE}
    with connect(url) as raw:
        conn = raw.cursor(row_factory=dict_row)
        bodies = _Bodies(conn.execute(_FUNCTION_BODIES).fetchall())
        realtime = conn.execute(_REALTIME).fetchall()
        tables = conn.execute(_TABLES, params).fetchall()
        rpcs = conn.execute(_RPCS, params).fetchall()
        out = [
            "# Zapbase API reference",
            "",
            "<!-- Generated by `make docs` (zapbase docs) from the database's own comments and grants:",
            "     do not edit. A test fails when it differs from what the migrations generate. -->",
            "",
            "Frontends reach Zapbase through PostgREST with supabase-js, signed in as a user (role",
            f"`{ROLE}`); row-level security limits every read and write to the caller's tenants.",
            "Type the client with `Database` from `supabase/types/database.ts`",
            "(`createClient<Database>(url, anonKey)`). Errors reach supabase-js as",
            "`error.code` (the SQLSTATE below) and `error.message`.",
            "",
            f"- [Tables and views](#tables-and-views) ({len(tables)})",
            f"- [RPCs](#rpcs) ({len(rpcs)})",
            f"- [Realtime](#realtime) ({len(realtime)})",
            "",
            "## Tables and views",
            "",
            f"Columns marked S, I, U are those `{ROLE}` may select, insert, update (PostgREST",
            "refuses the others); the policies then decide which rows.",
            "",
        ]
        for table in tables:
            out += _render_table(conn, bodies, table, params)
        out += ["## RPCs", "",
                "Call with `supabase.rpc(name, args)`; arguments are passed by name.", ""]
        for rpc in rpcs:
            out += [f"### `{rpc['name']}`", "", _cell(rpc["comment"]) or "(no comment)", "",
                    "```sql", f"{rpc['name']}({rpc['arguments']}) returns {rpc['result']}", "```", ""]
            out += _errors_table(bodies.errors([rpc["oid"]]))
        out += ["## Realtime", "",
                "Tables in the `supabase_realtime` publication: subscribe with",
                "`supabase.channel(name).on('postgres_changes', {schema: 'public', table, filter}, ...)`.",
                "Each subscriber receives only the rows its select policies let it read.", "",
                "| table | insert | update | delete |", "|---|---|---|---|"]
        out += [f"| [`{r['name']}`](#{r['name']}) | {_yes(r['pubinsert'])} | {_yes(r['pubupdate'])}"
                f" | {_yes(r['pubdelete'])} |" for r in realtime]
    return "\n".join(out) + "\n"


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _render_table(conn: Any, bodies: _Bodies, table: dict[str, Any], params: dict[str, Any]) -> list[str]:
    kind = "view" if table["is_view"] else "table"
    columns = conn.execute(_COLUMNS, {**params, "oid": table["oid"]}).fetchall()
    out = [f"### `{table['name']}`", "", f"{_cell(table['comment']) or '(no comment)'} ({kind})", ""]
    policies = conn.execute(_POLICIES, {**params, "name": table["name"]}).fetchall()
    if table["can_delete"]:
        out += [f"`{ROLE}` may delete rows.", ""]
    if policies:
        out += ["Policies: " + "; ".join(f"{p['cmd'].lower()}: {p['policyname']}" for p in policies), ""]
    out += ["| column | type | S | I | U | description |", "|---|---|---|---|---|---|"]
    for col in columns:
        marks = [mark if col[f"can_{priv}"] else "" for mark, priv in
                 (("S", "select"), ("I", "insert"), ("U", "update"))]
        type_ = col["type"] + ("" if col["nullable"] or table["is_view"] else " not null")
        out.append(f"| `{col['name']}` | {type_} | {' | '.join(marks)} | {_cell(col['comment'])} |")
    out.append("")
    writes = any(col["can_insert"] or col["can_update"] for col in columns) or table["can_delete"]
    triggers = [r["oid"] for r in conn.execute(_TRIGGER_FUNCTIONS, {"oid": table["oid"]}).fetchall()]
    errors = bodies.errors(triggers) if writes else []
    if errors:
        out += ["Errors its triggers raise on writes:", "", *_errors_table(errors)]
    return out
