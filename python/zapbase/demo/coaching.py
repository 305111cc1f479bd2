"""The coaching chapter: a playbook, a call analysed by the AI with evidence-backed scores, an
OKR whose key result moves with that analysis, a stuck deal's alert and a chat search.

The demo has no network: the demo tenant's `openai` provider is, for this chapter, the OpenAI
wire stand-in `zapbase demo` serves on a local port (an `llm` integration with its key in
Vault, disabled again at the end), scripted with the answers a model would give. Everything
else is the product's own machinery: the insight loop and the chat search loop of the worker,
the gateway's budget and usage rows at gpt-4o-mini's registry prices, the SQL checker, the
query run as the member under RLS, the OKR and alert jobs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb
from rich.console import Console
from rich.table import Table

from zapbase.db.pool import Connection
from zapbase.demo.common import AGENT, DEMO_OWNER, DEMO_TENANT, acting_as, cell, until
from zapbase.errors import ZapbaseError
from zapbase.standins.ai import OpenAIStandIn, Reply

if TYPE_CHECKING:
    from zapbase.local_stack import LocalStack

__all__ = ["CoachingChapter", "coaching_chapter", "coaching_standin", "render_coaching"]

_KEY = "sk-demo-standin"  # the stand-in accepts only this key: the one stored in Vault
_AGENT_MEMBER = "00000000-0000-4000-c000-000000000002"  # seed: Bruno Lima's membership
_PLAYBOOK = "Playbook SPICED — Vendas"
_QUESTIONS = (
    ("Descoberta", ("Como vocês atendem os pedidos hoje?", "Qual é o maior desafio hoje?",
                    "Quanto isso custa por mês?")),
    ("Decisão", ("Quem participa da decisão?", "Qual é o orçamento previsto?")),
    ("Fechamento", ("Qual é o próximo passo combinado?",)),
)  # fmt: skip
_CONTENT = {
    "sections": [{"title": title, "questions": list(questions)} for title, questions in _QUESTIONS],
    "objections": [{"objection": "Está caro", "answer": "Compare com as vendas perdidas pela demora."}],
}
_TRANSCRIPT = (
    "Bruno: Oi Carla, obrigado pelo tempo. Hoje vocês atendem os pedidos pelo WhatsApp?\n"
    "Carla: Sim, são uns 300 pedidos por dia e respondemos tudo manualmente.\n"
    "Bruno: E qual é o maior desafio hoje?\n"
    "Carla: A demora: o cliente espera duas horas pela resposta e muitos desistem da compra.\n"
    "Bruno: Quanto isso custa para vocês?\n"
    "Carla: Estimamos perder uns 40 mil reais por mês em vendas.\n"
    "Bruno: Quem mais participa da decisão?\n"
    "Carla: Eu e o diretor financeiro; queremos resolver antes da Black Friday.\n"
    "Bruno: Posso enviar a proposta e agendar uma demonstração para quinta?\n"
    "Carla: Pode sim, manda por e-mail.\n"
)
# (dimension, score, line, quote): what the scripted model cites, by line of the transcript
_SCORES = (
    ("situation", 8, 2, "são uns 300 pedidos por dia"),
    ("pain", 9, 4, "muitos desistem da compra"),
    ("impact", 8, 6, "perder uns 40 mil reais por mês"),
    ("critical_event", 7, 8, "antes da Black Friday"),
    ("decision", 6, 8, "Eu e o diretor financeiro"),
)
# (question, covered, line, quote): the playbook's questions the call covered
_COVERED = (
    ("Como vocês atendem os pedidos hoje?", 1, "Hoje vocês atendem os pedidos pelo WhatsApp?"),
    ("Qual é o maior desafio hoje?", 3, "qual é o maior desafio hoje?"),
    ("Quanto isso custa por mês?", 5, "Quanto isso custa para vocês?"),
    ("Quem participa da decisão?", 7, "Quem mais participa da decisão?"),
    ("Qual é o próximo passo combinado?", 9, "agendar uma demonstração para quinta"),
)
_QUESTION = "Quais negócios abertos temos e qual a aderência ao playbook de quem cuida deles?"
_SEARCH_SQL = (
    "select d.title, d.stage, d.value, round(avg(i.playbook_score)) as aderencia_media\n"
    "  from chat_deals d join chat_insights i on i.seller_id = d.owner_id\n"
    " where d.status = 'open'\n"
    " group by d.title, d.stage, d.value\n"
    " order by d.value desc"
)
_ANALYSIS = (
    "O negócio Plano anual — Mendes Alimentos segue aberto em Proposta enviada; quem cuida dele tem "
    "boa aderência ao playbook. Próximo passo: retomar o contato com o diretor financeiro antes da "
    "Black Friday."
)

_CONNECT_SQL = """
insert into public.integrations (tenant_id, type, provider, name, status, config)
values (%s, 'llm', 'openai', 'OpenAI (stand-in local da demo)', 'active', %s)
on conflict (tenant_id, provider, name) do update set status = 'active', config = excluded.config
returning id
"""
_PLAYBOOK_SQL = """
insert into public.playbooks (tenant_id, name, function, methodology, status, content)
select %(t)s, %(name)s, 'sales', 'spiced', 'active', %(content)s
 where not exists (select 1 from public.playbooks p
                    where p.tenant_id = %(t)s and p.function = 'sales' and p.status = 'active'
                      and p.team_id is null)
"""
_PLAYBOOKS_SQL = """
select p.name, p.version, p.function, p.methodology, p.status,
       (select count(*) from jsonb_path_query(p.content, '$.sections[*].questions[*]')) as questions
  from public.playbooks p where p.tenant_id = %s and p.status = 'active' order by p.created_at
"""
_CALL_SQL = """
insert into public.coaching_calls (tenant_id, seller_id, title, occurred_at, duration_seconds, transcript)
values (%s, %s, 'Demo com Carla — Mendes Alimentos', now() - interval '1 hour', 1260, %s) returning id
"""
_LINES_SQL = "select id, position from public.coaching_call_lines where call_id = %s order by position"
_INSIGHT_SQL = """
select i.id, i.status, i.sentiment, i.methodology_score, i.playbook_score, i.model, i.prompt_version,
       i.tokens, i.cost_usd, i.summary, i.error
  from public.conversation_insights i where i.call_id = %s order by i.created_at desc limit 1
"""
_ANALYSED_SQL = """
select i.status not in ('pending', 'running') as done
  from public.conversation_insights i where i.call_id = %s order by i.created_at desc limit 1
"""
_EVIDENCE_SQL = """
select d.name as dimension, s ->> 'status' as status, s ->> 'score' as score, l.position as line,
       e ->> 'quote' as quote
  from public.conversation_insights i
  cross join lateral jsonb_each(i.methodology_scores) d(name, s)
  left join lateral jsonb_array_elements(coalesce(s -> 'evidence', '[]')) with ordinality e(e, k) on e.k = 1
  left join public.coaching_call_lines l on l.tenant_id = i.tenant_id and l.id::text = e.e ->> 'message_id'
 where i.id = %s
 order by array_position(%s::text[], d.name)
"""
_PERIOD_SQL = """
insert into public.okr_periods (tenant_id, label, starts_on, ends_on)
select %(t)s, to_char(now(), '"T"Q YYYY'), date_trunc('quarter', now())::date,
       (date_trunc('quarter', now()) + interval '3 months - 1 day')::date
 where not exists (select 1 from public.okr_periods p where p.tenant_id = %(t)s and p.is_current)
"""
_KEY_RESULT_SQL = """
with found as (
  select k.id from public.key_results k
    join public.objectives o on o.tenant_id = k.tenant_id and o.id = k.objective_id
    join public.okr_periods p on p.tenant_id = o.tenant_id and p.id = o.period_id and p.is_current
   where k.tenant_id = %(t)s and k.title = %(title)s and k.metric = 'avg_playbook_score'
), o as (
  insert into public.objectives (tenant_id, period_id, title, area, owner_member_id)
  select %(t)s, p.id, 'Vender seguindo o playbook', 'sales', %(owner)s
    from public.okr_periods p where p.tenant_id = %(t)s and p.is_current and not exists (select 1 from found)
  returning id
), k as (
  insert into public.key_results (tenant_id, objective_id, title, unit, start_value, target, metric,
                                  owner_member_id)
  select %(t)s, o.id, %(title)s, 'percentage', 0, 90, 'avg_playbook_score', %(owner)s from o
  returning id
)
select id from found union all select id from k limit 1
"""
_KEY_RESULT_STATUS_SQL = """
select k.title, k.metric, k.start_value, k.target, k.current_value, k.status, k.trend, k.progress
  from public.key_results_status k where k.id = %s
"""
_PROGRESS_SQL = """
select p.source, p.value, p.note from public.key_result_progress p
 where p.key_result_id = %s order by p.recorded_at
"""
_DEAL_SQL = """
with found as (
  select s.id, s.pipeline_id from public.pipeline_stages s
    join public.pipelines p on p.tenant_id = s.tenant_id and p.id = s.pipeline_id
   where p.tenant_id = %(t)s and p.name = 'Vendas B2B' and s.name = 'Proposta enviada'
), p as (
  insert into public.pipelines (tenant_id, name)
  select %(t)s, 'Vendas B2B' where not exists (select 1 from found)
  returning id
), s as (
  insert into public.pipeline_stages (tenant_id, pipeline_id, name, stuck_after)
  select %(t)s, p.id, 'Proposta enviada', interval '7 days' from p
  returning id, pipeline_id
), stage as (select * from found union all select * from s limit 1)
insert into public.deals (tenant_id, title, pipeline_id, stage_id, value, owner_id)
select %(t)s, 'Plano anual — Mendes Alimentos', stage.pipeline_id, stage.id, 48000, %(owner)s from stage
returning id
"""
_ALERTS_SQL = """
select a.type, a.priority, a.title, a.message from public.alerts a
 where a.tenant_id = %s and a.type = 'deal_stuck' and a.payload ->> 'deal_id' = %s
"""
_SEARCHED_SQL = "select status not in ('queued', 'running') as done from public.chat_searches where id = %s"
_SEARCH_SQL_ROW = """
select s.question, s.status, s.status_reason, s.executed_sql, s.check_verdict, s.row_count, s.results,
       s.analysis, s.llm_model, s.tokens_used, s.cost_usd, s.processing_time_ms
  from public.chat_searches s where s.id = %s
"""
_USAGE_SQL = """
select u.feature, u.model, u.outcome, u.input_tokens, u.output_tokens, u.cost_usd from public.ai_usage u
 where u.tenant_id = %s and u.request_id in (%s, %s) order by u.created_at, u.attempt
"""


@dataclass(frozen=True, slots=True)
class CoachingChapter:
    """What the coaching chapter made, as its tables print it."""

    playbooks: list[dict[str, Any]]
    insight: dict[str, Any]
    evidence: list[dict[str, Any]]
    key_result: list[dict[str, Any]]  # before and after the okr_metrics job
    progress: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    search: dict[str, Any]
    usage: list[dict[str, Any]]


def coaching_standin() -> OpenAIStandIn:
    """The OpenAI-compatible provider `zapbase demo` serves for this chapter."""
    return OpenAIStandIn(api_key=_KEY)


def insight_answer(lines: dict[int, str]) -> str:
    """The model's analysis of the call, citing the stored ids of its lines."""

    def cite(line: int, quote: str) -> list[dict[str, str]]:
        return [{"message_id": lines[line], "quote": quote}]

    scores = {name: {"score": score, "evidence": cite(line, quote)} for name, score, line, quote in _SCORES}
    covered = [{"question": q, "covered": True, "evidence": cite(line, quote)} for q, line, quote in _COVERED]
    answer = {
        "summary": "Carla perde vendas pela demora no WhatsApp (cerca de R$ 40 mil por mês) e quer resolver "
        "antes da Black Friday com o diretor financeiro; demonstração combinada para quinta.",
        "sentiment": "positive",
        "methodology": scores,
        "playbook": [
            *covered,
            {"question": "Qual é o orçamento previsto?", "covered": False, "evidence": []},
        ],
        "key_moments": [{**cite(8, "antes da Black Friday")[0], "note": "prazo definido pela cliente"}],
        "suggested_actions": [
            "Enviar a proposta por e-mail hoje",
            "Levar o diretor financeiro à demonstração",
        ],
    }
    return json.dumps(answer, ensure_ascii=False)


async def coaching_chapter(stack: LocalStack, conn: Connection) -> CoachingChapter:
    """Ana connects the demo's provider and activates a playbook; Bruno uploads a call, which
    the worker analyses; Ana's key result on playbook adherence moves when the OKR job reads
    the analysis; a deal left in its stage raises deal_stuck; Ana asks the chat search."""
    if stack.ai_standin is None or stack.ai_url is None:
        raise ZapbaseError("the coaching chapter needs the AI stand-in of the local stack")
    model = stack.ai_standin
    async with acting_as(conn, DEMO_OWNER):
        await conn.execute("select set_config('zapbase.webhooks_allow_http', 'on', true)")  # a local stand-in
        row = await (
            await conn.execute(_CONNECT_SQL, (DEMO_TENANT, Jsonb({"base_url": stack.ai_url})))
        ).fetchone()
        integration = row["id"] if row else None
        await conn.execute("select public.set_integration_secret(%s, %s)", (integration, _KEY))
        await conn.execute(_PLAYBOOK_SQL, {"t": DEMO_TENANT, "name": _PLAYBOOK, "content": Jsonb(_CONTENT)})
    try:
        async with acting_as(conn, AGENT):  # Bruno uploads his call; its analysis is queued with it
            row = await (await conn.execute(_CALL_SQL, (DEMO_TENANT, _AGENT_MEMBER, _TRANSCRIPT))).fetchone()
            call_id = row["id"] if row else None
            lines = {
                r["position"]: str(r["id"])
                for r in await (await conn.execute(_LINES_SQL, (call_id,))).fetchall()
            }
            model.push(Reply(text=insight_answer(lines)))  # before the commit wakes the insight loop
        await until(conn, _ANALYSED_SQL, (call_id,), "the call's analysis")
        insight = await (await conn.execute(_INSIGHT_SQL, (call_id,))).fetchone() or {}
        dimensions = [name for name, *_ in _SCORES]
        evidence = await (await conn.execute(_EVIDENCE_SQL, (insight.get("id"), dimensions))).fetchall()
        async with acting_as(conn, DEMO_OWNER):
            await conn.execute(_PERIOD_SQL, {"t": DEMO_TENANT})
            params = {"t": DEMO_TENANT, "owner": _AGENT_MEMBER, "title": "Aderência média ao playbook"}
            row = await (await conn.execute(_KEY_RESULT_SQL, params)).fetchone()
            key_result = row["id"] if row else None
        before = await (await conn.execute(_KEY_RESULT_STATUS_SQL, (key_result,))).fetchone() or {}
        await conn.execute("select private.run_job('okr_metrics', now())")
        after = await (await conn.execute(_KEY_RESULT_STATUS_SQL, (key_result,))).fetchone() or {}
        progress = await (await conn.execute(_PROGRESS_SQL, (key_result,))).fetchall()
        row = await (await conn.execute(_DEAL_SQL, {"t": DEMO_TENANT, "owner": _AGENT_MEMBER})).fetchone()
        deal = row["id"] if row else None
        # the alert job as it runs eight days later, the deal still in its stage (stuck after 7)
        await conn.execute("select private.run_job('coaching_alerts', now() + interval '8 days')")
        alerts = await (await conn.execute(_ALERTS_SQL, (DEMO_TENANT, str(deal)))).fetchall()
        model.push(Reply(text=f"```sql\n{_SEARCH_SQL}\n```"), Reply(text=_ANALYSIS))
        async with acting_as(conn, DEMO_OWNER):
            row = await (await conn.execute("select public.chat_search_ask(%s, %s) as id",
                                            (DEMO_TENANT, _QUESTION))).fetchone()  # fmt: skip
            search_id = row["id"] if row else None
        await until(conn, _SEARCHED_SQL, (search_id,), "the chat search")
        search = await (await conn.execute(_SEARCH_SQL_ROW, (search_id,))).fetchone() or {}
        request_ids = (f"insight:{insight.get('id')}", str(search_id))
        usage = await (await conn.execute(_USAGE_SQL, (DEMO_TENANT, *request_ids))).fetchall()
    finally:  # the tenant's bot goes back to the platform's providers
        async with acting_as(conn, DEMO_OWNER):
            await conn.execute(
                "update public.integrations set status = 'inactive' where id = %s", (integration,)
            )
    return CoachingChapter(
        await (await conn.execute(_PLAYBOOKS_SQL, (DEMO_TENANT,))).fetchall(),
        insight,
        evidence,
        [{"": "antes", **before}, {"": "depois", **after}],
        progress,
        alerts,
        search,
        usage,
    )


def _table(out: Console, title: str, rows: list[dict[str, Any]]) -> None:
    table = Table(title=title)
    for key in rows[0] if rows else ():
        table.add_column(key, overflow="fold")
    for r in rows:
        table.add_row(*(cell(k, v) for k, v in r.items()))
    out.print(table)


def render_coaching(out: Console, chapter: CoachingChapter) -> None:
    insight = chapter.insight
    _table(out, "Coaching: public.playbooks (active)", chapter.playbooks)
    _table(out, "public.conversation_insights (the call with Carla, analysed by the worker)",
           [{k: v for k, v in insight.items() if k not in ("id", "summary")}])  # fmt: skip
    out.print(f"summary: {insight.get('summary')}", highlight=False)
    _table(out, "methodology_scores (SPICED): each score with the line it quotes", chapter.evidence)
    _table(out, "public.key_results_status (okr_metrics job, source coach)", chapter.key_result)
    _table(out, "public.key_result_progress", chapter.progress)
    _table(out, "public.alerts (deal_stuck, the alert job 8 days later)", chapter.alerts)
    for alert in chapter.alerts:
        out.print(f"{alert['type']}: {alert['message']}", highlight=False)
    search = chapter.search
    shown = [{k: v for k, v in search.items() if k not in ("executed_sql", "results", "analysis")}]
    _table(out, "public.chat_searches (Chat Inteligente)", shown)
    out.print(f"executed_sql: {search.get('executed_sql')}", highlight=False)
    results = search.get("results") or {}
    rows = [dict(zip(results.get("columns", []), r, strict=True)) for r in results.get("rows", [])]
    _table(out, "chat search rows (run as Ana, under RLS)", rows)
    out.print(f"analysis: {search.get('analysis')}", highlight=False)
    _table(out, "public.ai_usage (insight and chat search)", chapter.usage)
