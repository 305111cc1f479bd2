"""The SQL checker: what an LLM wrote becomes a query that may run, or a refusal.

Pure (no database): the text is parsed with sqlglot's PostgreSQL dialect and the tree is
checked against allow-lists, never against a list of bad words::

    exactly one statement ─► SELECT or a set operation (UNION / INTERSECT / EXCEPT) at the root
    every node ─► no write, DDL, COPY, command, SELECT INTO, locking clause (FOR UPDATE / SHARE),
                  writable CTE, parameter, e-string / U& string, dollar-quoted text
    every table ─► an allowed view (bare or `public.`), or a CTE in scope
    every function ─► the allow-list; never schema-qualified
    every cast ─► the allow-list of types
    the outermost query ─► LIMIT n with n ≤ max_rows (missing, ALL, NULL, an expression or a
                           larger value becomes max_rows; FETCH FIRST likewise)

What runs is the checked tree regenerated (`CheckedQuery.sql`: no comments, views
schema-qualified), never the LLM's text, so a comment or quoting trick the parser read one
way cannot reach PostgreSQL read another way. The open-source guards this follows were
bypassed by writable CTEs, SELECT INTO, a LIMIT only inside a subquery and LIMIT ALL.
`check_sql` raises only `SqlRefused`, whatever the input.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

__all__ = ["ALLOWED_FUNCTIONS", "MAX_SQL_CHARS", "CheckedQuery", "SqlRefused", "check_sql"]

MAX_SQL_CHARS = 8000
# Deeper nesting is refused before parsing (sqlglot recurses on it), deeper trees before the walk.
_MAX_NESTING = 25
_MAX_DEPTH = 80

# Known function nodes sqlglot builds for PostgreSQL syntax (aggregates, windows, dates, text).
_FUNCTION_NODES: tuple[type[exp.Expr], ...] = (
    exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max, exp.Stddev, exp.StddevSamp, exp.StddevPop,
    exp.Variance, exp.PercentileCont, exp.PercentileDisc, exp.Mode, exp.GroupConcat, exp.ArrayAgg,
    exp.LogicalAnd, exp.LogicalOr, exp.Coalesce, exp.Nullif, exp.Greatest, exp.Least, exp.Case, exp.If,
    exp.Cast, exp.Extract, exp.TimestampTrunc, exp.DateTrunc, exp.CurrentDate, exp.CurrentTimestamp,
    exp.TimeToStr, exp.StrToDate, exp.Date, exp.MakeInterval, exp.JustifyDays, exp.JustifyInterval,
    exp.Lower, exp.Upper, exp.Length, exp.Trim, exp.Substring, exp.Left, exp.Right, exp.Concat,
    exp.Initcap, exp.StrPosition, exp.SplitPart, exp.Replace, exp.Round, exp.Floor, exp.Ceil, exp.Abs,
    exp.Trunc, exp.Sign, exp.RowNumber, exp.Rank, exp.DenseRank, exp.Ntile, exp.PercentRank, exp.CumeDist,
    exp.NthValue, exp.Lag, exp.Lead, exp.FirstValue, exp.LastValue, exp.Exists, exp.ExplodingGenerateSeries,
    exp.GenerateSeries, exp.Unnest, exp.Array, exp.ArraySize, exp.Interval, exp.Div, exp.Mod, exp.Pow,
    exp.Sqrt,
)
# Functions sqlglot leaves unnamed (`exp.Anonymous`), by their lower-case name.
ALLOWED_FUNCTIONS = frozenset({"age", "cardinality"})
_TYPES = frozenset({
    exp.DataType.Type.TEXT, exp.DataType.Type.VARCHAR, exp.DataType.Type.CHAR, exp.DataType.Type.INT,
    exp.DataType.Type.BIGINT, exp.DataType.Type.SMALLINT, exp.DataType.Type.DECIMAL,
    exp.DataType.Type.DOUBLE, exp.DataType.Type.FLOAT, exp.DataType.Type.DATE,
    exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPTZ, exp.DataType.Type.INTERVAL,
    exp.DataType.Type.BOOLEAN, exp.DataType.Type.UUID, exp.DataType.Type.ARRAY,
})
# Statement-like or side-channel nodes refused wherever they sit in the tree.
_FORBIDDEN: tuple[tuple[type[exp.Expr], str], ...] = (
    (exp.DML, "escrita (INSERT / UPDATE / DELETE / MERGE)"),
    (exp.DDL, "DDL (CREATE / DROP / ALTER)"),
    (exp.Copy, "COPY"),
    (exp.Command, "comando"),
    (exp.Into, "SELECT INTO"),
    (exp.Lock, "cláusula de bloqueio (FOR UPDATE / FOR SHARE)"),
    (exp.Set, "SET"),
    (exp.Transaction, "controle de transação"),
    (exp.Commit, "controle de transação"),
    (exp.Rollback, "controle de transação"),
    (exp.Parameter, "parâmetro"),
    (exp.Placeholder, "parâmetro"),
    (exp.SessionParameter, "parâmetro de sessão"),
    (exp.ByteString, "texto com escapes (E'...')"),
    (exp.UnicodeString, "texto com escapes Unicode (U&'...')"),
    (exp.RawString, "texto entre cifrões ($$...$$)"),
    (exp.ObjectIdentifier, "tipo identificador de objeto (regclass, oid...)"),
)


class SqlRefused(ValueError):
    """The query may not run; the message says which rule it broke (shown to the member)."""


@dataclass(frozen=True, slots=True)
class CheckedQuery:
    """A query that passed: `sql` is what runs, `limit` the outer LIMIT it carries."""

    sql: str
    limit: int
    views: frozenset[str]


def check_sql(text: str, *, views: Collection[str], max_rows: int) -> CheckedQuery:
    """The checked, regenerated query, or SqlRefused saying why not.

    `views`: the relations the query may read (unqualified names in schema public);
    `max_rows`: the cap of the outermost LIMIT.
    """
    if not isinstance(text, str) or not text.strip():
        raise SqlRefused("a consulta está vazia")
    if len(text) > MAX_SQL_CHARS:
        raise SqlRefused(f"a consulta passa de {MAX_SQL_CHARS} caracteres")
    if _nesting(text) > _MAX_NESTING:
        raise SqlRefused("a consulta é complexa demais")
    try:
        statements = [s for s in sqlglot.parse(text, read="postgres") if s is not None]
        if len(statements) != 1:
            raise SqlRefused(f"esperava exatamente um comando SQL, encontrei {len(statements)}")
        tree = statements[0]
        if not isinstance(tree, exp.Select | exp.SetOperation):
            raise SqlRefused(f"só consultas SELECT são permitidas, não {tree.key.upper()}")
        used = _check_tree(tree, frozenset(v.lower() for v in views))
        limit = _cap_outer_limit(tree, max_rows)
        sql = tree.sql(dialect="postgres", comments=False)
        # The regenerated text must read back as itself: no generator quirk may change its meaning.
        again = sqlglot.parse(sql, read="postgres")
        if len(again) != 1 or again[0] is None or again[0].sql(dialect="postgres", comments=False) != sql:
            raise SqlRefused("a consulta não se relê igual depois de verificada")
    except (SqlglotError, RecursionError) as exc:
        raise SqlRefused(f"SQL inválido: {str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__}"
                         ) from None
    return CheckedQuery(sql=sql, limit=limit, views=used)


def _nesting(text: str) -> int:
    """The deepest parenthesis nesting (strings included: it only decides a refusal)."""
    depth = deepest = 0
    for char in text:
        if char == "(":
            depth += 1
            deepest = max(deepest, depth)
        elif char == ")":
            depth -= 1
    return deepest


def _check_tree(tree: exp.Expr, views: frozenset[str]) -> frozenset[str]:
    used: set[str] = set()
    for node in tree.walk():
        if node.depth > _MAX_DEPTH:
            raise SqlRefused("a consulta é complexa demais")
        for kind, what in _FORBIDDEN:
            if isinstance(node, kind):
                raise SqlRefused(f"não é permitido: {what}")
        if isinstance(node, exp.Table):
            used |= _check_table(node, views)
        elif isinstance(node, exp.DataType):
            if node.this not in _TYPES:
                raise SqlRefused(f"o tipo {node.sql(dialect='postgres')} não é permitido")
        elif isinstance(node, exp.Func) and not _is_operator(node):
            _check_function(node)
    return frozenset(used)


def _is_operator(node: exp.Expr) -> bool:
    return isinstance(node, exp.Binary | exp.Connector | exp.Unary | exp.Predicate | exp.Paren) and not (
        isinstance(node, exp.Exists | exp.Anonymous))


def _check_function(node: exp.Func) -> None:
    if isinstance(node.parent, exp.Dot) and node.arg_key == "expression":
        raise SqlRefused("funções com esquema (esquema.função) não são permitidas")
    if isinstance(node, exp.Anonymous):
        name = node.name.lower()
        if name not in ALLOWED_FUNCTIONS or not isinstance(node.this, str):
            raise SqlRefused(f"a função {node.name or '?'} não é permitida")
    elif not isinstance(node, _FUNCTION_NODES):
        raise SqlRefused(f"a função {node.sql_name()} não é permitida")


def _identifier(node: exp.Expr | None) -> str | None:
    """PostgreSQL's name for an identifier: unquoted ones fold to lower case."""
    if not isinstance(node, exp.Identifier):
        return None
    return node.name if node.quoted else node.name.lower()


def _check_table(table: exp.Table, views: frozenset[str]) -> set[str]:
    schema = table.args.get("db")
    if table.args.get("catalog") is not None:
        raise SqlRefused("nomes com banco de dados não são permitidos")
    if not isinstance(table.this, exp.Identifier):
        if isinstance(table.this, exp.Func) and schema is None:
            return set()  # a set-returning function in FROM: checked as a function
        if isinstance(table.this, exp.Func):
            raise SqlRefused("funções com esquema (esquema.função) não são permitidas")
        raise SqlRefused("uma fonte de dados que não é tabela nem função")
    name = _identifier(table.this)
    if schema is None and name is not None and _cte_in_scope(table, name):
        return set()
    if name in views and (schema is None or _identifier(schema) == "public"):
        # Qualified, so what runs never depends on the search path.
        table.set("db", exp.to_identifier("public"))
        table.set("this", exp.to_identifier(name))
        return {name}
    shown = f"{_identifier(schema)}.{name}" if schema is not None else name
    raise SqlRefused(f"a tabela {shown} não está entre as visões permitidas ({', '.join(sorted(views))})")


def _cte_in_scope(table: exp.Table, name: str) -> bool:
    """Whether `name` at `table` means a CTE: one of an enclosing WITH, defined before the
    CTE the reference sits in (or anywhere in that WITH when it is RECURSIVE). Otherwise
    PostgreSQL would read a real relation of that name."""
    child: exp.Expr = table
    parent = table.parent
    while parent is not None:
        if isinstance(parent, exp.With):
            ctes = list(parent.expressions)
            inside = ctes.index(child) if child in ctes else len(ctes)
            if name in _cte_names(ctes if parent.args.get("recursive") else ctes[:inside]):
                return True
        elif isinstance(parent, exp.Query) and child is not parent.args.get("with_"):
            with_ = parent.args.get("with_")
            if isinstance(with_, exp.With) and name in _cte_names(with_.expressions):
                return True
        child, parent = parent, parent.parent
    return False


def _cte_names(ctes: list[exp.Expr]) -> set[str | None]:
    return {_identifier(cte.args["alias"].this) if cte.args.get("alias") else None for cte in ctes}


def _cap_outer_limit(tree: exp.Expr, max_rows: int) -> int:
    limit = tree.args.get("limit")
    wanted: exp.Expr | None = None
    if isinstance(limit, exp.Limit):
        wanted = limit.expression
    elif isinstance(limit, exp.Fetch):
        wanted = limit.args.get("count")
    rows = max_rows
    if isinstance(wanted, exp.Literal) and not wanted.is_string and wanted.this.isdigit():
        rows = min(int(wanted.this), max_rows)
    tree.set("limit", exp.Limit(expression=exp.Literal.number(rows)))
    return rows
