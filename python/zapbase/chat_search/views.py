"""The views a chat search may read, described to the LLM from the database's own comments.

The names are the allow-list of the SQL checker; the migration
(supabase/migrations/20260101000820_chat_search.sql) defines the views, and a test holds the
two together. The description is read from the catalogue (each view's comment, its columns
with their types and comments), so what the LLM is told is what exists.
"""

from __future__ import annotations

from zapbase.db.pool import Connection

__all__ = ["VIEWS", "describe_views"]

VIEWS: tuple[str, ...] = (
    "chat_campaigns",
    "chat_conversations",
    "chat_deals",
    "chat_insights",
    "chat_leads",
    "chat_members",
    "chat_messages_daily",
    "chat_tickets",
)

_DESCRIBE = """
select c.relname as name, obj_description(c.oid, 'pg_class') as about,
       string_agg(format('  %%s %%s%%s', a.attname, format_type(a.atttypid, a.atttypmod),
                         coalesce(' -- ' || col_description(c.oid, a.attnum), '')),
                  E'\\n' order by a.attnum) as columns
  from pg_catalog.pg_class c
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace and n.nspname = 'public'
  join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
 where c.relkind = 'v' and c.relname = any(%s)
 group by c.oid, c.relname
 order by c.relname
"""


async def describe_views(conn: Connection, views: tuple[str, ...] = VIEWS) -> str:
    """One block per view: `name -- comment` then its columns, as the LLM reads them."""
    rows = await (await conn.execute(_DESCRIBE, (list(views),))).fetchall()
    return "\n\n".join(f"{r['name']} -- {r['about'] or ''}\n{r['columns']}" for r in rows)
