"""Chat search end to end: a member asks through the RPC, the worker's loop claims the search,
the OpenAI stand-in writes the SQL and the analysis over the real ledger, the checked query
runs as the member, and the row holds the answer. Hostile SQL from the LLM (writes, another
tenant's ids, a runaway query) ends refused or failed, with nothing executed that the checks
refuse and nothing stored half-done; who reads and shares searches is RLS."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import psycopg
import pytest

from support import Db, Row
from zapbase.ai import Gateway, OpenAICompatProvider, PostgresLedger
from zapbase.bot import AIResponder
from zapbase.bot.gateways import Gateways
from zapbase.bot.knowledge import Knowledge
from zapbase.bot.memory import Summarizer
from zapbase.chat_search.checker import check_sql
from zapbase.chat_search.service import ChatSearcher
from zapbase.chat_search.views import VIEWS
from zapbase.db.pool import Pool, open_pool
from zapbase.settings import Settings
from zapbase.standins.ai import Fault, FaultKind, OpenAIStandIn, Reply
from zapbase.storage import LocalStorage
from zapbase.worker.chat_search import ChatSearchLoop
from zapbase.worker.runner import Runner

pytestmark = pytest.mark.anyio

TENANT = "00000000-0000-4000-b000-000000000001"
OWNER = "00000000-0000-4000-a000-000000000001"
AGENT = "00000000-0000-4000-a000-000000000002"
TENANT_B = "bbbbbbbb-0000-4000-b000-000000000001"
OTHER_TENANT = Path(__file__).parents[1] / "fixtures" / "other_tenant.sql"
CORPUS = json.loads((Path(__file__).parents[1] / "fixtures" / "chat_search_corpus.json").read_text())
ANALYSIS = "Há 3 leads; a maioria está qualificada."


@pytest.fixture
def crm(db: Db) -> Db:
    """Tenant B (the victim) and three leads and a won deal of the demo tenant."""
    db.sql(OTHER_TENANT.read_text())
    db.sql(f"""
        insert into public.leads (tenant_id, name, stage, score, source) values
          ('{TENANT}', 'Carla Dias', 'qualified', 80, 'manual'),
          ('{TENANT}', 'Davi Rocha', 'qualified', 60, 'manual'),
          ('{TENANT}', 'Eva Nunes', 'new', 10, 'import');
        insert into public.pipelines (id, tenant_id, name, is_default)
        values ('00000000-0000-4000-6000-000000000001', '{TENANT}', 'Vendas', true);
        insert into public.pipeline_stages (id, tenant_id, pipeline_id, name, kind)
        values ('00000000-0000-4000-6100-000000000001', '{TENANT}', '00000000-0000-4000-6000-000000000001',
                'Ganho', 'won');
        insert into public.deals (tenant_id, lead_id, title, pipeline_id, stage_id, value, owner_id)
        select '{TENANT}', l.id, 'Plano anual', '00000000-0000-4000-6000-000000000001',
               '00000000-0000-4000-6100-000000000001', 900, '00000000-0000-4000-c000-000000000002'
          from public.leads l where l.tenant_id = '{TENANT}' and l.name = 'Carla Dias';
    """)
    return db


@pytest.fixture
def gpt() -> OpenAIStandIn:
    return OpenAIStandIn(api_key="sk-test")


@pytest.fixture
async def pool(crm: Db, anyio_backend: str) -> AsyncIterator[Pool]:
    async with open_pool(crm.url, 4) as pool:
        yield pool


@pytest.fixture
async def loop(pool: Pool, gpt: OpenAIStandIn) -> AsyncIterator[ChatSearchLoop]:
    """The worker's chat search loop on the platform gateway, OpenAI being the stand-in."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gpt.app)) as http:
        openai = OpenAICompatProvider(api_key="sk-test", base_url="http://openai.test", client=http)
        ledger = PostgresLedger(pool)
        gateways = Gateways(platform=Gateway({"openai": openai}, ledger), ledger=ledger)
        searcher = ChatSearcher(pool=pool, gateways=gateways, worker_id="worker-1", statement_timeout_ms=300)
        yield ChatSearchLoop(pool=pool, searcher=searcher)


def ask(db: Db, question: str, user: str = AGENT, tenant: str = TENANT) -> str:
    with db.as_user(user) as s:
        return str(s.value("select public.chat_search_ask(%s, %s)", (tenant, question)))


async def answered(db: Db, loop: ChatSearchLoop, gpt: OpenAIStandIn, sql: str, question: str = "Quais leads?",
                   analysis: str = ANALYSIS) -> Row:  # fmt: skip
    search = ask(db, question)
    gpt.push(Reply(text=f"```sql\n{sql}\n```"), Reply(text=analysis))
    assert await loop.run_once() == 1
    return db.sql("select * from public.chat_searches where id = %s", (search,))[0]


async def test_a_question_is_answered_end_to_end(crm: Db, loop: ChatSearchLoop, gpt: OpenAIStandIn) -> None:
    row = await answered(crm, loop, gpt, "select name, score from chat_leads where stage = 'qualified' "
                                         "order by score desc limit all", "Quais leads estão qualificados?")
    assert row["status"] == "answered", row["status_reason"]
    assert row["executed_sql"] == ("SELECT name, score FROM public.chat_leads WHERE stage = 'qualified' "
                                   "ORDER BY score DESC LIMIT 200")
    assert row["check_verdict"] == "ok"
    assert row["results"] == {"columns": ["name", "score"], "rows": [["Carla Dias", 80], ["Davi Rocha", 60]]}
    assert (row["row_count"], row["analysis"], row["llm_provider"]) == (2, ANALYSIS, "openai")
    # the LLM saw the views and the question, then the rows
    sql_call, analysis_call = gpt.calls_to("/v1/chat/completions")
    prompt = json.dumps(sql_call.body, ensure_ascii=False)
    assert "chat_leads -- Sales leads" in prompt and "Quais leads estão qualificados?" in prompt
    assert "Carla Dias" in json.dumps(analysis_call.body, ensure_ascii=False)
    # tokens and cost are the search's two usage rows, feature chat_search
    usage = crm.sql("select feature, total_tokens, cost_usd from public.ai_usage where request_id = %s",
                    (str(row["id"]),))
    assert [u["feature"] for u in usage] == ["chat_search", "chat_search"]
    assert row["tokens_used"] == sum(u["total_tokens"] for u in usage) > 0
    assert row["cost_usd"] == sum(u["cost_usd"] for u in usage) > 0
    assert row["processing_time_ms"] >= 0 and row["finished_at"] is not None
    finished = "select count(*) from public.events where type = 'chat_search.finished' and subject_id = %s"
    assert crm.value(finished, (row["id"],)) == 1


@pytest.mark.parametrize("sql", [
    "with x as (delete from leads returning *) select * from x",
    "with x as (update chat_leads set score = 0 returning *) select * from x",
    "select * into roubados from chat_leads",
    "select * from chat_leads for update",
    "select pg_sleep(10)",
    "select * from dblink('dbname=postgres', 'select 1') as t(a int)",
    "select set_config('zapbase.chat_tenant', 'bbbbbbbb-0000-4000-b000-000000000001', true)",
    f"select * from leads where tenant_id = '{TENANT_B}'",
    "select 1; delete from leads",
    "select name from chat_leads -- \n; delete from leads",
])
async def test_hostile_sql_is_refused_and_never_runs(
    crm: Db, loop: ChatSearchLoop, gpt: OpenAIStandIn, sql: str
) -> None:
    fingerprint = "select md5(string_agg(to_jsonb(l)::text, '' order by id)) from public.leads l"
    before = crm.value(fingerprint)
    row = await answered(crm, loop, gpt, sql)
    assert row["status"] == "refused"
    assert row["check_verdict"] == row["status_reason"] and row["status_reason"]
    assert row["generated_sql"] and sql.split()[0] in row["generated_sql"]
    assert (row["executed_sql"], row["results"], row["analysis"]) == (None, None, None)
    assert len(gpt.calls_to("/v1/chat/completions")) == 1  # no analysis of what never ran
    assert crm.value(fingerprint) == before
    assert crm.value("select count(*) from pg_tables where tablename = 'roubados'") == 0


async def test_another_tenants_ids_find_nothing(crm: Db, loop: ChatSearchLoop, gpt: OpenAIStandIn) -> None:
    b_lead = crm.value("select id from public.leads where tenant_id = %s", (TENANT_B,))
    row = await answered(crm, loop, gpt, f"select name from chat_leads where id = '{b_lead}' "
                                         f"union all select title from chat_deals where lead_id = '{b_lead}'")
    assert (row["status"], row["results"]["rows"]) == ("answered", [])


async def test_scoping_is_the_searchs_tenant_even_for_a_member_of_both(
    crm: Db, loop: ChatSearchLoop, gpt: OpenAIStandIn
) -> None:
    crm.sql("insert into public.members (tenant_id, user_id, role) values (%s, %s, 'agent')",
            (TENANT_B, AGENT))
    both = "select count(*) as leads, (select count(*) from chat_deals) as deals from chat_leads"
    row = await answered(crm, loop, gpt, both)
    assert row["results"]["rows"] == [[3, 1]]  # the demo tenant's, not B's lead and deal too


async def test_the_query_runs_as_the_member_under_rls(
    crm: Db, loop: ChatSearchLoop, gpt: OpenAIStandIn
) -> None:
    """A policy that hides a lead from everyone but the service role, and shows the others only
    to the agent's uid: the search sees exactly what the agent's own session sees."""
    crm.sql(f"""create policy "Test: only the agent, never Eva" on public.leads as restrictive for select
                to authenticated using ((select auth.uid()) = '{AGENT}' and name <> 'Eva Nunes')""")
    row = await answered(crm, loop, gpt, "select name from chat_leads order by name")
    assert row["results"]["rows"] == [["Carla Dias"], ["Davi Rocha"]]


async def test_a_search_of_a_member_who_left_fails_at_the_claim(
    crm: Db, loop: ChatSearchLoop, gpt: OpenAIStandIn
) -> None:
    search = ask(crm, "Quantos leads?")
    crm.sql("update public.members set status = 'disabled' where user_id = %s", (AGENT,))
    assert await loop.run_once() == 0  # failed at the claim, no LLM call
    row = crm.sql("select * from public.chat_searches where id = %s", (search,))[0]
    assert row["status"] == "failed" and "membro" in row["status_reason"]
    assert gpt.calls_to("/v1/chat/completions") == []


async def test_a_runaway_query_is_cancelled(crm: Db, loop: ChatSearchLoop, gpt: OpenAIStandIn) -> None:
    row = await answered(crm, loop, gpt, "select count(*) from generate_series(1, 1000000000)")
    assert row["status"] == "failed" and "cancelada" in row["status_reason"]
    assert (row["results"], row["analysis"]) == (None, None)
    assert row["executed_sql"].startswith("SELECT COUNT(*) FROM GENERATE_SERIES")


async def test_sql_the_database_refuses_fails_with_its_reason(
    crm: Db, loop: ChatSearchLoop, gpt: OpenAIStandIn
) -> None:
    row = await answered(crm, loop, gpt, "select tenant_id from chat_leads")  # the views have no tenant
    assert row["status"] == "failed" and "42703" in row["status_reason"]
    assert row["results"] is None


async def test_an_llm_that_writes_no_query_is_a_refusal(
    crm: Db, loop: ChatSearchLoop, gpt: OpenAIStandIn
) -> None:
    row = await answered(crm, loop, gpt, "SEM_CONSULTA")
    assert row["status"] == "refused" and "não pode ser respondida" in row["status_reason"]


async def test_a_provider_failure_stores_nothing_half_done(
    crm: Db, loop: ChatSearchLoop, gpt: OpenAIStandIn
) -> None:
    search = ask(crm, "Quantos leads?")
    gpt.push(Reply(text="select count(*) from chat_leads"), Fault(kind=FaultKind.AUTH))
    assert await loop.run_once() == 1
    row = crm.sql("select * from public.chat_searches where id = %s", (search,))[0]
    assert row["status"] == "failed" and "provedor" in row["status_reason"]
    assert (row["results"], row["analysis"], row["row_count"]) == (None, None, None)
    with pytest.raises(psycopg.errors.CheckViolation):  # and the table refuses an answer without them
        crm.sql("update public.chat_searches set status = 'answered' where id = %s", (search,))


async def test_a_budget_refusal_is_a_clear_failure(crm: Db, loop: ChatSearchLoop, gpt: OpenAIStandIn) -> None:
    with crm.as_user(OWNER) as s:  # the admin pauses AI
        s.all("update public.budgets set paused_reason = 'manual' where kind = 'plan'")
    row = await answered(crm, loop, gpt, "select count(*) from chat_leads")
    assert row["status"] == "failed" and "orçamento" in row["status_reason"]
    assert gpt.calls_to("/v1/chat/completions") == []


def test_only_agents_and_above_ask_in_their_own_tenant(crm: Db) -> None:
    viewer = crm.add_member(uuid.UUID(TENANT), "viewer")
    outsider = crm.create_user()
    for user, tenant in ((viewer, TENANT), (outsider, TENANT), (AGENT, TENANT_B)):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            ask(crm, "Quanto vendemos?", str(user), tenant)
    with pytest.raises(psycopg.errors.InvalidParameterValue):
        ask(crm, "  ?  ")
    assert crm.value("select count(*) from public.chat_searches where tenant_id = %s", (TENANT,)) == 0
    assert ask(crm, "Quanto vendemos?")


def test_searches_are_private_until_shared(crm: Db) -> None:
    search = ask(crm, "Quanto vendemos?")
    other_agent = crm.add_member(uuid.UUID(TENANT), "agent")
    read = "select count(*) from public.chat_searches where id = %s"
    share = "update public.chat_searches set shared_as_memory = true where id = %s"
    with crm.as_user(other_agent) as s:
        assert s.value(read, (search,)) == 0
        assert s.rowcount(share, (search,)) == 0
    with crm.as_user(OWNER) as s:  # managers read every search of the tenant
        assert s.value(read, (search,)) == 1
    with pytest.raises(psycopg.errors.InsufficientPrivilege), crm.as_user(AGENT) as s:
        s.all("update public.chat_searches set status = 'answered' where id = %s", (search,))
    with crm.as_user(AGENT) as s:
        assert s.rowcount(share, (search,)) == 1
    with crm.as_user(other_agent) as s:
        assert s.value(read, (search,)) == 1


def test_the_views_are_the_checkers_allow_list(db: Db) -> None:
    views = db.sql("select viewname from pg_views where schemaname = 'public' and viewname like 'chat\\_%%'"
                   " order by 1")
    assert tuple(v["viewname"] for v in views) == VIEWS
    invoker = db.sql("select relname from pg_class where relname = any(%s)"
                     " and 'security_invoker=true' = any(reloptions)", (list(VIEWS),))
    assert len(invoker) == len(VIEWS)


def test_every_valid_query_of_the_corpus_runs_on_postgres(crm: Db) -> None:
    """As the member, the way the worker runs them: checked, regenerated, read only."""
    for sql in CORPUS["valid"]:
        checked = check_sql(sql, views=VIEWS, max_rows=200)
        with crm.as_user(AGENT) as s:
            s.all("set transaction read only")
            s.all("select set_config('zapbase.chat_tenant', %s, true), set_config('search_path', '', true)",
                  (TENANT,))
            s.all(checked.sql.replace("%", "%%"))


async def test_the_worker_answers_a_search_as_soon_as_it_is_asked(
    crm: Db, pool: Pool, gpt: OpenAIStandIn, tmp_path: Path
) -> None:
    """The runner starts the chat search loop next to the AI bot; chat_search_ask's NOTIFY
    wakes it long before its poll."""
    settings = Settings(database_url=crm.url, zapbase_media_dir=tmp_path, anthropic_api_key=None,
                        openai_api_key=None, zapbase_poll_interval_s=60.0, zapbase_scheduler=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gpt.app)) as http:
        openai = OpenAICompatProvider(api_key="sk-test", base_url="http://openai.test", client=http)
        ledger = PostgresLedger(pool)
        gateways = Gateways(platform=Gateway({"openai": openai}, ledger), ledger=ledger)
        responder = AIResponder(
            connect=pool.connection, gateways=gateways, knowledge=Knowledge(connect=pool.connection),
            summarizer=Summarizer(connect=pool.connection, threshold=9), media=LocalStorage(tmp_path),
        )
        runner = Runner(settings, responder=responder, serve_http=False, handle_signals=False)
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner.run)
            await runner.ready.wait()
            # the other AI loops' catch-up rounds (the fixture's messages, insights, drafts) are
            # over, so the scripted replies below go to the search: the stand-in heard nothing new
            # for a second
            with anyio.fail_after(30):
                heard = -1
                while heard != len(gpt.calls):
                    heard = len(gpt.calls)
                    await anyio.sleep(1.0)
            gpt.push(Reply(text="select count(*) from chat_leads"), Reply(text="São 3 leads."))
            asked = time.monotonic()
            search = ask(crm, "Quantos leads temos?")
            status = "select status from public.chat_searches where id = %s"
            with anyio.fail_after(10):
                while crm.value(status, (search,)) != "answered":
                    await anyio.sleep(0.05)
            assert time.monotonic() - asked < 10
            runner.stop()
    assert crm.value("select results from public.chat_searches where id = %s", (search,))["rows"] == [[3]]


async def test_coaching_insights_are_searchable_by_their_tenant_only(
    crm: Db, loop: ChatSearchLoop, gpt: OpenAIStandIn
) -> None:
    crm.sql(f"""
        insert into public.coaching_calls (tenant_id, seller_id, title, occurred_at, transcript)
        values ('{TENANT}', '00000000-0000-4000-c000-000000000002', 'Ligação com a Carla', now(),
                E'Vendedor: Qual o orçamento?\\nCliente: Cinco mil.');
        update public.conversation_insights
           set status = 'done', summary = 'Orçamento levantado.', sentiment = 'positive',
               playbook_score = case when tenant_id = '{TENANT}' then 70 else 10 end, completed_at = now();
    """)
    assert crm.value("select count(*) from public.conversation_insights where status = 'done'") == 2
    row = await answered(crm, loop, gpt, "select count(*), round(avg(playbook_score)) from chat_insights",
                         "Como está a aderência ao playbook?")  # fmt: skip
    assert (row["status"], row["results"]["rows"]) == ("answered", [[1, "70"]]), row["status_reason"]
