"""One chat search, end to end, from a claimed `chat_searches` row to its stored answer::

    question + view descriptions ─► gateway (feature chat_search) ─► SQL text
        ─► check_sql ──refused──► status refused, the rule it broke
        ─► run as the member: role authenticated with their uid (RLS), transaction read only,
           statement timeout, search_path empty, the views scoped to the search's tenant
        ─► rows ─► gateway: analysis in Portuguese ─► status answered
    budget refusal, provider failure, SQL error or timeout ─► status failed, with the reason

Every gateway call carries the search id as `request_id`, so tokens and cost are summed
from `ai_usage` when the row is written. A failed search keeps no rows and no analysis:
the final write is the only one, and an answered row holds SQL, rows and analysis together.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from zapbase.ai.chain import LOCAL_LINK, Gateway
from zapbase.ai.types import AttemptStatus, ChatMessage, ChatRequest, ChatResult, GatewayPolicy
from zapbase.bot.config import load_policy
from zapbase.bot.gateways import Gateways
from zapbase.chat_search.checker import SqlRefused, check_sql
from zapbase.chat_search.views import VIEWS, describe_views
from zapbase.db.pool import Pool, Row

__all__ = ["FEATURE", "ChatSearcher", "Outcome", "extract_sql"]

_logger = logging.getLogger(__name__)

FEATURE = "chat_search"
NO_QUERY = "SEM_CONSULTA"
# Rows shown to the LLM for its analysis (all of them are stored).
_ROWS_FOR_ANALYSIS = 60

_SQL_SYSTEM = """Você escreve UMA consulta SQL (PostgreSQL) que responde à pergunta de um gestor \
sobre os dados da própria empresa. Regras:
- Use somente as visões abaixo; elas já contêm apenas os dados da empresa de quem pergunta \
(não filtre por empresa nem por tenant).
- Apenas SELECT (pode usar WITH, JOIN, GROUP BY, funções de agregação e de data comuns).
- Termine com LIMIT de no máximo {max_rows} linhas.
- Responda somente com o SQL, sem explicações. Se a pergunta não puder ser respondida com \
estas visões, responda exatamente {no_query}.

Visões disponíveis:
{views}"""

_ANALYSIS_SYSTEM = """Você é um analista de vendas e atendimento. Com base apenas no resultado da \
consulta, responda à pergunta em português do Brasil, em poucas frases: o que os números \
mostram, destaques e, se fizer sentido, uma ação sugerida. Não invente dados que não estão \
no resultado; se ele estiver vazio, diga que não há dados para a pergunta."""

_FENCE = re.compile(r"```(?:sql|postgresql)?\s*(.*?)```", re.S | re.I)

_FINISH = """
update public.chat_searches s
   set status = %(status)s, status_reason = %(reason)s, generated_sql = %(generated_sql)s,
       executed_sql = %(executed_sql)s, check_verdict = %(verdict)s, results = %(results)s,
       row_count = %(row_count)s, analysis = %(analysis)s, llm_provider = %(provider)s,
       llm_model = %(model)s, processing_time_ms = %(ms)s, finished_at = now(), lease_until = null,
       tokens_used = u.tokens, cost_usd = u.usd, cost_brl = round(u.brl, 4)
  from (select coalesce(sum(a.total_tokens), 0)::integer as tokens, coalesce(sum(a.cost_usd), 0) as usd,
               coalesce(sum(a.cost_brl), 0) as brl
          from public.ai_usage a
         where a.tenant_id = %(tenant)s and a.request_id = %(request)s) u
 where s.id = %(id)s and s.status = 'running' and s.leased_by = %(worker)s
"""
# Transaction settings of the member's query: set_config(..., true) lasts until its rollback.
_AS_MEMBER = """
select set_config('statement_timeout', %(timeout)s, true), set_config('search_path', '', true),
       set_config('standard_conforming_strings', 'on', true),
       set_config('zapbase.chat_tenant', %(tenant)s, true),
       set_config('request.jwt.claims', %(claims)s, true), set_config('role', 'authenticated', true)
"""


def extract_sql(text: str) -> str | None:
    """The SQL in an LLM's answer (inside a ``` fence when there is one); None when it says
    the question cannot be answered with the views."""
    fenced = _FENCE.search(text)
    sql = (fenced.group(1) if fenced else text).strip()
    return None if not sql or sql.upper().startswith(NO_QUERY) else sql


@dataclass(slots=True)
class Outcome:
    """What the final write stores; `status` answered, refused or failed."""

    status: str
    reason: str | None = None
    generated_sql: str | None = None
    executed_sql: str | None = None
    verdict: str | None = None
    results: dict[str, Any] | None = None
    row_count: int | None = None
    analysis: str | None = None
    provider: str | None = None
    model: str | None = None


class _Failed(Exception):
    """A step failed; `outcome` is what to store."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.reason)
        self.outcome = outcome


class ChatSearcher:
    """Answers claimed chat searches.

    **Parameters**

    * **pool** - worker connections (service role); the member's query runs on one of them
      switched to role authenticated for its transaction.
    * **gateways** - the AI gateway of each tenant (its own keys or the platform's).
    * **worker_id** - the lease holder written by `chat_search_claim`.
    * **max_rows** - cap of the query's outer LIMIT.
    * **statement_timeout_ms** - the member's query is cancelled after this.
    """

    def __init__(
        self, *, pool: Pool, gateways: Gateways, worker_id: str, max_rows: int = 200,
        statement_timeout_ms: int = 5000,
    ) -> None:
        self._pool = pool
        self._gateways = gateways
        self.worker_id = worker_id
        self._max_rows = max_rows
        self._timeout_ms = statement_timeout_ms

    async def answer(self, search: Row) -> str:
        """Answer one claimed search and store the outcome; returns its status."""
        started = time.perf_counter()
        try:
            outcome = await self._answer(search)
        except _Failed as failed:
            outcome = failed.outcome
        await self._finish(search, outcome, round((time.perf_counter() - started) * 1000))
        _logger.info("chat search %s: %s %s", search["id"], outcome.status, outcome.reason or "")
        return outcome.status

    async def _answer(self, search: Row) -> Outcome:
        tenant: uuid.UUID = search["tenant_id"]
        async with self._pool.connection() as conn:
            policy = await load_policy(conn, tenant, None)
            gateway = await self._gateways.for_tenant(conn, tenant)
            views = await describe_views(conn)
        system = _SQL_SYSTEM.format(max_rows=self._max_rows, no_query=NO_QUERY, views=views)
        written = await self._ask(gateway, policy, search, system, search["question"], Outcome("failed"))
        outcome = Outcome("refused", provider=written.provider, model=written.model,
                          generated_sql=written.text.strip()[:20000])  # fmt: skip
        sql = extract_sql(written.text)
        if sql is None:
            outcome.reason = outcome.verdict = "a pergunta não pode ser respondida com os dados disponíveis"
            return outcome
        try:
            checked = check_sql(sql, views=VIEWS, max_rows=self._max_rows)
        except SqlRefused as refused:
            outcome.reason = outcome.verdict = str(refused)[:1000]
            return outcome
        outcome.verdict, outcome.executed_sql = "ok", checked.sql
        outcome.status = "failed"
        results = await self._run_as_member(search, checked.sql, outcome)
        prompt = (f"Pergunta: {search['question']}\n\nConsulta executada:\n{checked.sql}\n\n"
                  f"Resultado ({len(results['rows'])} linhas; colunas {results['columns']}):\n"
                  + json.dumps(results["rows"][:_ROWS_FOR_ANALYSIS], ensure_ascii=False))  # fmt: skip
        analysed = await self._ask(gateway, policy, search, _ANALYSIS_SYSTEM, prompt, outcome)
        outcome.status, outcome.analysis = "answered", analysed.text.strip()[:20000]
        outcome.results, outcome.row_count = results, len(results["rows"])
        return outcome

    async def _ask(
        self, gateway: Gateway, policy: GatewayPolicy, search: Row, system: str, text: str, outcome: Outcome
    ) -> ChatResult:
        request = ChatRequest(
            system=system, messages=(ChatMessage(role="user", content=text),), max_tokens=1024,
            temperature=0.0, feature=FEATURE, tenant_id=str(search["tenant_id"]),
            request_id=str(search["id"]),
        )
        response = await gateway.chat(request, policy)
        result = response.result
        # The offline answerer (the chain's last link) quotes passages: it can neither write SQL nor analyse.
        if result is not None and result.provider != LOCAL_LINK.provider and result.text.strip():
            return result
        failed = [a for a in response.attempts if a.status is AttemptStatus.FAILED]
        if response.refusal is not None:
            outcome.reason = f"orçamento de IA: {response.refusal.message or response.refusal.reason}"
        elif failed:
            outcome.reason = "o provedor de IA falhou: " + ", ".join(
                f"{a.link.provider}/{a.link.model} {a.error_code}" for a in failed)
        else:
            outcome.reason = "nenhum modelo de IA disponível para a busca"
        outcome.status = "failed"
        raise _Failed(outcome)

    async def _run_as_member(self, search: Row, sql: str, outcome: Outcome) -> dict[str, Any]:
        """Run the checked query as the member who asked, read only, and roll back."""
        claims = json.dumps({"sub": str(search["user_id"]), "role": "authenticated", "aud": "authenticated"})
        settings = {"timeout": f"{self._timeout_ms}ms", "tenant": str(search["tenant_id"]), "claims": claims}
        try:
            async with self._pool.connection() as conn, conn.transaction(force_rollback=True):
                await conn.execute("set transaction read only")
                await conn.execute(_AS_MEMBER, settings)
                cur = conn.cursor(row_factory=tuple_row)
                await cur.execute(sql)
                columns = [column.name for column in cur.description or ()]
                rows = await cur.fetchall()
        except pg_errors.QueryCanceled:
            outcome.reason = f"a consulta passou de {self._timeout_ms / 1000:g} s e foi cancelada"
            raise _Failed(outcome) from None
        except psycopg.OperationalError:
            raise  # the database is down: the lease brings the search back
        except psycopg.Error as exc:
            # What the database refused to the member (a missing column, a permission, a bad cast).
            outcome.reason = f"a consulta falhou ({exc.sqlstate}): {str(exc).splitlines()[0][:500]}"
            raise _Failed(outcome) from None
        # Dates, numerics and uuids as text: the stored rows are plain JSON.
        return {"columns": columns, "rows": json.loads(json.dumps([list(r) for r in rows], default=str))}

    async def _finish(self, search: Row, outcome: Outcome, ms: int) -> None:
        params = {
            "status": outcome.status, "reason": outcome.reason, "generated_sql": outcome.generated_sql,
            "executed_sql": outcome.executed_sql, "verdict": outcome.verdict,
            "results": Jsonb(outcome.results) if outcome.results is not None else None,
            "row_count": outcome.row_count, "analysis": outcome.analysis, "provider": outcome.provider,
            "model": outcome.model, "ms": ms, "tenant": search["tenant_id"], "request": str(search["id"]),
            "id": search["id"], "worker": self.worker_id,
        }
        async with self._pool.connection() as conn:
            await conn.execute(_FINISH, params)
