"""The SQL checker on its own: the corpus (valid queries pass, hostile ones are refused), the
outer LIMIT, what runs (regenerated, qualified, no comments), and property-based fuzzing:
whatever the text, the checker answers a CheckedQuery or SqlRefused, and what it accepts
reads back as one capped SELECT over the allowed views, with no write anywhere in it.

Small by default; `ZAPBASE_FUZZ_EXAMPLES=10000 make fuzz` for a long run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from zapbase.chat_search.checker import CheckedQuery, SqlRefused, check_sql
from zapbase.chat_search.views import VIEWS

CORPUS = json.loads((Path(__file__).parents[1] / "fixtures" / "chat_search_corpus.json").read_text())
EXAMPLES = int(os.environ.get("ZAPBASE_FUZZ_EXAMPLES", "300"))
CAP = 200


def check(sql: str) -> CheckedQuery:
    return check_sql(sql, views=VIEWS, max_rows=CAP)


@pytest.mark.parametrize("sql", CORPUS["valid"])
def test_a_valid_query_passes(sql: str) -> None:
    checked = check(sql)
    assert checked.limit <= CAP
    assert_safe(checked)


@pytest.mark.parametrize("sql", CORPUS["hostile"])
def test_a_hostile_query_is_refused(sql: str) -> None:
    with pytest.raises(SqlRefused):
        check(sql)


@pytest.mark.parametrize(("sql", "reason"), [
    ("with x as (delete from leads returning *) select * from x", "escrita"),
    ("select * into t from chat_leads", "SELECT INTO"),
    ("select * from chat_leads for update", "bloqueio"),
    ("select pg_sleep(10)", "pg_sleep"),
    ("select * from dblink('x', 'y') as t(a int)", "dblink"),
    ("select set_config('role', 'service_role', true)", "set_config"),
    ("select 1; delete from leads", "exatamente um"),
    ("select * from leads", "leads não está entre as visões"),
    ("copy leads to stdout", "COPY"),
])
def test_a_refusal_says_which_rule(sql: str, reason: str) -> None:
    with pytest.raises(SqlRefused, match=reason):
        check(sql)


@pytest.mark.parametrize(("sql", "limit"), [
    ("select name from chat_leads", CAP),
    ("select name from chat_leads limit all", CAP),
    ("select name from chat_leads limit null", CAP),
    ("select name from chat_leads limit 100000", CAP),
    ("select name from chat_leads limit (select 5)", CAP),
    ("select name from chat_leads limit 7", 7),
    ("select name from chat_leads fetch first 3 rows only", 3),
    ("select stage from chat_leads union select stage from chat_leads limit all", CAP),
])
def test_the_outer_query_is_limited(sql: str, limit: int) -> None:
    checked = check(sql)
    assert checked.limit == limit
    assert checked.sql.endswith(f"LIMIT {limit}")


def test_a_limit_inside_a_subquery_does_not_limit_the_query() -> None:
    checked = check("select * from chat_leads where id in (select lead_id from chat_deals limit 1)")
    assert checked.sql.endswith(f"LIMIT {CAP}")
    assert "LIMIT 1)" in checked.sql


def test_what_runs_is_the_regenerated_tree() -> None:
    checked = check("SELECT l.name /* ; drop table leads */ FROM Chat_Leads l -- fim\n WHERE l.score > 5")
    assert checked.sql == f"SELECT l.name FROM public.chat_leads AS l WHERE l.score > 5 LIMIT {CAP}"
    assert checked.views == {"chat_leads"}


def test_a_cte_is_read_only_in_its_scope() -> None:
    assert check("with won as (select * from chat_deals) select * from won").views == {"chat_deals"}
    # a name of a CTE that is out of scope would read a real relation of that name
    for sql in ("select * from (with contacts as (select 1) select 1) a, contacts",
                "with contacts as (select * from contacts) select * from contacts",
                "with a as (select * from b), b as (select 1) select * from a"):
        with pytest.raises(SqlRefused, match=r"contacts|b não"):
            check(sql)


def assert_safe(checked: CheckedQuery) -> None:
    """What an accepted query must be, read back from its SQL independently of the checker."""
    [tree] = sqlglot.parse(checked.sql, read="postgres")
    assert isinstance(tree, exp.Select | exp.SetOperation)
    limit = tree.args["limit"]
    assert isinstance(limit, exp.Limit) and int(limit.expression.this) <= CAP
    ctes = {cte.alias for cte in tree.find_all(exp.CTE)}
    for node in tree.walk():
        assert not isinstance(node, exp.DML | exp.DDL | exp.Copy | exp.Command | exp.Into | exp.Lock
                              | exp.Set)
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
            assert (node.db == "public" and node.name in VIEWS) or (not node.db and node.name in ctes)
        elif isinstance(node, exp.Table):  # a function in FROM: never another schema's
            assert not node.db and not node.catalog
        if isinstance(node, exp.Anonymous):
            assert node.name.lower() in {"age", "cardinality"}


FRAGMENTS = [
    "select", "*", "name", "count(*)", "from", "chat_leads", "chat_deals", "leads", "public.", "pg_catalog.",
    "where", "1=1", "and", "or", "(", ")", ",", ";", "--", "/*", "*/", "'", "''", '"', "$$", "e'", "limit",
    "all", "null", "1000000", "5", "offset", "union", "with", "x", "as", "insert into leads values (1)",
    "delete from leads", "update leads set name = 'x'", "returning *", "into", "t", "for update", "for share",
    "pg_sleep(1)", "dblink('a','b')", "set_config('role','service_role',true)", "current_setting('x')",
    "copy", "to stdout", "lateral", "join", "on true", "group by 1", "order by 1", "::regclass", "::text",
    "generate_series(1, 3)", "recursive", "exists", "in", "not", "case when", "then", "end", "\n", " ",
    "drop table leads", "begin", "commit", "evil.generate_series(1, 2)", "public.count(1)",
    "fetch first 5 rows only", "values (1)", "table", "$1", "?",
]
SELECTS = ["*", "name", "count(*)", "pg_sleep(1)", "lower(name)", "evil.lower(name)", "x.*", "(select 1)"]
SOURCES = ["chat_leads", "chat_leads x", "public.chat_leads", "leads", "pg_catalog.pg_class", "auth.users",
           "generate_series(1, 2) x", "evil.generate_series(1, 2) x", "public.count(1) x", "dblink('a') x",
           "(select * from chat_deals) x", "(delete from leads returning *) x", "unnest(array[1]) x",
           "chat_leads, lateral (select * from leads) x", "a.b.chat_leads"]
TAILS = ["", "limit all", "limit 5", "for update", "where name = 'x'", "; delete from leads",
         "union select 1", "union table leads", "offset 1"]
shaped = st.tuples(st.sampled_from(SELECTS), st.sampled_from(SOURCES), st.sampled_from(TAILS)).map(
    lambda t: f"select {t[0]} from {t[1]} {t[2]}")
soup = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=30).map(" ".join)
mutated = st.tuples(st.sampled_from(CORPUS["valid"]), st.integers(0, 400), st.sampled_from(FRAGMENTS)).map(
    lambda t: t[0][: t[1]] + " " + t[2] + " " + t[0][t[1]:])


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.text(max_size=300), soup, mutated, shaped))
def test_fuzz_the_checker_only_refuses_or_accepts_a_safe_query(sql: str) -> None:
    try:
        checked = check(sql)
    except SqlRefused:
        return
    assert_safe(checked)
