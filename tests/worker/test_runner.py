"""The runner: one process with the HTTP API and both loops on real local ports, woken by
NOTIFY, stopping gracefully; and `zapbase up` / `zapbase demo` as a user runs them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import httpx
import pytest
from loop_support import MARIA, conversation_of, eventually, outbound, queue, text

from support import Db
from zapbase.db.embedded import free_port
from zapbase.db.pool import Pool
from zapbase.local_stack import local_stack
from zapbase.settings import Settings, find_project_dir
from zapbase.simulator import SimulatedUser, Simulator
from zapbase.whatsapp import GraphAPI
from zapbase.whatsapp.inbound import InboundMessage, Outgoing, Reply
from zapbase.worker.metrics import Metrics
from zapbase.worker.runner import OUTBOUND_CHANNEL, listen
from zapbase.worker.sender import Sender

WELCOME = "Olá! 👋 Sou a assistente virtual da Loja Demo. Como posso ajudar?"


@pytest.mark.anyio
async def test_notify_wakes_the_sender_long_before_its_poll(
    db: Db, sim: Simulator, maria: SimulatedUser, pool: Pool, graph_api: GraphAPI
) -> None:
    await maria.send_text("Oi")
    conversation = conversation_of(db, MARIA)
    sender = Sender(pool=pool, api=graph_api, metrics=Metrics(), worker_id="s", poll_interval=60)
    listening = anyio.Event()

    def wake() -> None:
        listening.set()  # the first call comes right after LISTEN (catch-up)
        sender.wake()

    async with anyio.create_task_group() as tg:
        tg.start_soon(listen, db.url, {OUTBOUND_CHANNEL: wake})
        await listening.wait()
        tg.start_soon(sender.run)
        await anyio.sleep(0.2)  # the sender's first round found nothing: it sleeps for 60 s
        queued_at = time.monotonic()
        queue(db, conversation, text("Olá!"))
        await eventually(lambda: len(sim.inbox) == 1, timeout=5, what="the NOTIFY-woken send")
        assert time.monotonic() - queued_at < 5
        sender.stop()
        tg.cancel_scope.cancel()


SLOW_REPLY = "Um instante, por favor."


class Slow:
    """Answers every message with one text, slowly: shutdown arrives while it works."""

    def __init__(self) -> None:
        self._started: dict[str, anyio.Event] = {}

    def started(self, wamid: str) -> anyio.Event:
        """Set once the responder works on the message `wamid`."""
        return self._started.setdefault(wamid, anyio.Event())

    async def respond(self, message: InboundMessage) -> Reply:
        self.started(message.wamid or "").set()
        await anyio.sleep(1.0)
        return Reply(messages=(Outgoing(body=text(SLOW_REPLY)),))


@pytest.mark.anyio
async def test_the_stack_answers_over_http_and_stops_after_the_message_in_hand(
    db: Db, loop_settings: Settings
) -> None:
    slow = Slow()
    async with local_stack(loop_settings, responder=slow) as stack:
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{stack.runner.http_url}/readyz")).status_code == 200
        user = stack.user("5511977776666", "Joana")
        first = await user.send_text("Oi")
        assert first.accepted
        await eventually(lambda: len(user.inbox) == 1, what="the first reply")
        assert user.inbox[0].text == SLOW_REPLY

        second = await user.send_text("Tem loja física?")
        await slow.started(second.wamid).wait()
        stopped_at = time.monotonic()
        stack.runner.stop()  # SIGTERM while the bot is answering
        await stack.stopped.wait()
        assert time.monotonic() - stopped_at < 5

    # The message in hand was finished: processed with its reply queued, nothing half-done.
    [row] = db.sql("select status from public.messages where wamid = %s", (second.wamid,))
    assert row["status"] == "processed"
    replies = outbound(db, conversation_of(db, "5511977776666"))
    assert replies[0]["status"] in ("sent", "delivered")
    assert replies[1]["status"] == "queued"  # for the next replica that starts
    assert len(user.inbox) == 1


@pytest.mark.anyio
async def test_a_webhook_backlogged_during_a_burst_is_applied_and_answered(
    db: Db, loop_settings: Settings
) -> None:
    """Every ingest slot busy (a burst): the route acknowledges the body at once without
    applying it, and NOTIFY wakes the backlog loop, which applies it long before its poll;
    the bot then answers as usual."""
    settings = loop_settings.model_copy(update={"zapbase_poll_interval_s": 60.0})
    async with local_stack(settings) as stack:
        user = stack.user("5511977776666", "Joana")
        with db.connect() as burst:
            burst.execute("select pg_advisory_lock(205, 1), pg_advisory_lock(205, 2)")  # ingest slots
            sent = await user.send_text("Oi, chegou meu pedido?")
        assert sent.accepted
        # the welcome and the answer may land together
        await eventually(lambda: len(user.inbox) >= 1, timeout=20, what="the reply to a backlogged body")
    assert db.value("select count(*) from public.inbound_backlog") == 0
    [row] = db.sql("select status from public.messages where wamid = %s", (sent.wamid,))
    assert row["status"] == "processed"


def _env(db: Db, tmp_path: Path, **extra: str) -> dict[str, str]:
    # No provider keys either: the bot answers offline, never over the network.
    prefixes = ("ZAPBASE_", "DATABASE_URL", "GRAPH_", "OPENAI_", "ANTHROPIC_")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith(prefixes)}
    env.update({"DATABASE_URL": db.url, "ZAPBASE_MEDIA_DIR": str(tmp_path / "media"), "COLUMNS": "200",
                "ZAPBASE_HOME": str(tmp_path / "home"), **extra})  # fmt: skip
    return env


def test_zapbase_up_answers_and_stops_cleanly_on_sigterm(db: Db, tmp_path: Path) -> None:
    http_port, sim_port = free_port(), free_port()
    env = _env(db, tmp_path, ZAPBASE_HTTP_PORT=str(http_port), ZAPBASE_SIMULATOR_PORT=str(sim_port))
    process = subprocess.Popen(
        [sys.executable, "-m", "zapbase.cli", "up", "--simulator"], env=env, cwd=find_project_dir(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        with httpx.Client(timeout=5) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if http.get(f"http://127.0.0.1:{http_port}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "zapbase up did not become ready"
                time.sleep(0.1)
            simulator = f"http://127.0.0.1:{sim_port}"
            wrote = http.post(f"{simulator}/_simulator/users/5511955554444/messages", json={"text": "Oi"})
            assert wrote.status_code == 200 and wrote.json()["webhook_status"] == 200
            deadline = time.monotonic() + 20
            while not (inbox := http.get(f"{simulator}/_simulator/inbox", params={"wa_id": "5511955554444"})
                       .json()["data"]):  # fmt: skip
                assert time.monotonic() < deadline, "no reply"
                time.sleep(0.1)
            assert inbox[0]["text"] == WELCOME
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, out + err
    assert "worker stopped" in out
    assert "Traceback" not in out + err


def test_zapbase_demo_plays_the_script_and_prints_the_rows(db: Db, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "zapbase.cli", "demo"], env=_env(db, tmp_path), cwd=find_project_dir(),
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in out + result.stderr
    for expected in (
        "Transcript: Maria Silva",
        "Oi! Qual o prazo de entrega para o Nordeste?",
        "Sou a assistente virtual da Loja Demo",  # welcome, first message
        "Encontrei esta informação para você",  # the offline model quotes the knowledge base
        "Capitais do Centro-Oeste e Nordeste | 4 a 7 dias úteis",
        "E o frete é grátis?",
        "compras acima de R$ 299,00",
        "nota de voz",
        "ainda não consigo ouvir áudios",  # no transcription provider offline
        "[Falar com atendente]",
        "public.conversations",
        "handoff keyword: atendente",
        "public.messages",
        ".ogg",  # the voice note, stored
        "local/local-chat",  # the model that answered, on the reply rows and in the usage log
        "public.ai_usage",
        "public.events",  # the outbox of the conversation
        "conversation.created",
        "conversation.handed_off",
        "message.status_changed",
        "public.campaign_recipients",  # the campaign chapter: three consented customers, one not
        "no_consent",
        "campaign completed: total 4, sent 0, delivered 3, read 0, failed 0, skipped 1, replied 1",
        "campaign.started → campaign.recipient_updated → campaign.completed",
    ):
        assert expected in out, f"{expected!r} missing from:\n{out}"
    # The handoff notice, or outside the bot's business hours its away message.
    assert "Vou chamar uma pessoa" in out or "Nosso horário de atendimento humano" in out
    assert "conversation is human / pending (team Atendimento)" in out
    assert "5 customer messages processed, 7 replies delivered" in out
    # every event of the conversation reached the local receiver once, its signature verified
    hooks = re.search(r"webhooks: (\d+) of (\d+) events delivered to a local receiver,"
                      r" (\d+) signatures verified with zapbase.webhooks, (\d+) duplicates", out)  # fmt: skip
    assert hooks, out
    delivered, events, verified, duplicates = map(int, hooks.groups())
    assert delivered == events == verified > 10 and duplicates == 0
    assert db.value("select count(*) from public.webhook_endpoints") == 0  # removed after the demo
    # The flow chapter: a second customer tracks an order with the published flow.
    for expected in ('Flow "Rastreio de pedidos"', "Qual é o CPF usado na compra?", "Esse CPF não é válido",
                     "Encontrei o pedido PED-1042", "[Falar com atendente]", "public.flow_steps",
                     "public.flow_block_stats", "reason: pediu atendente no rastreio"):  # fmt: skip
        assert expected in out, f"{expected!r} missing from:\n{out}"
    assert "52998224725" not in out  # the step log shows the CPF masked
    # The inbox chapter: queue → Bruno, transfer with a note → Ana (greeting), note, reply, resolve, CSAT.
    for expected in ("Inbox: Carla Mendes", "Olá Carla Mendes! Aqui é Ana Souza, da equipe Vendas",
                     "Conversa atribuída a Bruno Lima pela fila", "Conversa transferida para Ana Souza",
                     "Cliente antiga: ofereci 10% no anual", "5 - Excelente", "public.conversation_metrics",
                     "conversation.assigned → conversation.transferred"):  # fmt: skip
        assert expected in out, f"{expected!r} missing from:\n{out}"
    [carla] = db.sql("select c.id, c.status, c.csat, m.display_name from public.conversations c"
                     " join public.contacts k on k.id = c.contact_id"
                     " join public.members m on m.id = c.assignee_id"
                     " where k.profile_name = 'Carla Mendes'")  # fmt: skip
    assert (carla["status"], carla["csat"], carla["display_name"]) == ("resolved", 5, "Ana Souza")
    [metrics] = db.sql("select * from public.conversation_metrics where conversation_id = %s", (carla["id"],))
    # Ana's reply is the first response to the handoff (the customer wrote nothing in human mode since)
    assert (metrics["assignments"], metrics["transfers"]) == (2, 1)
    assert metrics["first_response_seconds"] is not None and metrics["resolution_seconds"] is not None
    assert db.value("select count(*) from public.messages where conversation_id = %s"
                    " and direction = 'internal' and wamid is not null", (carla["id"],)) == 0  # fmt: skip
    # The rows behind the printout.
    [conversation] = db.sql("select c.* from public.conversations c join public.contacts k"
                            " on k.id = c.contact_id where k.profile_name = 'Maria Silva'")
    assert (conversation["mode"], conversation["status"]) == ("human", "pending")
    rows = db.sql(
        "select direction, status, media_storage_path, ai_model from public.messages"
        " where conversation_id = %s order by created_at, id", (conversation["id"],)
    )
    assert [r["status"] for r in rows if r["direction"] == "inbound"] == ["processed"] * 5
    # the 7 replies of the transcript, then the course access link of the Hotmart chapter
    assert [r["status"] for r in rows if r["direction"] == "outbound"] == ["delivered"] * 8
    assert [r["ai_model"] for r in rows if r["ai_model"]] == ["local/local-chat"] * 2
    assert db.value("select count(*) from public.ai_usage where feature = 'reply' and conversation_id = %s",
                    (conversation["id"],)) == 2
    # The support desk: a ticket opened by the bot and resolved in SLA, an urgent one breached.
    for expected in ("Support desk: João Pereira", "Registrei seu chamado com o protocolo BR-",
                     "aberto, aguardando atendimento", "public.sla_events", "ticket.sla_breach"):
        assert expected in out, f"{expected!r} missing from:\n{out}"
    tickets = db.sql("select status, priority, source from public.tickets order by created_at")
    assert tickets == [{"status": "resolved", "priority": "medium", "source": "bot"},
                       {"status": "open", "priority": "critical", "source": "agent"}]
    assert db.sql("select metric, kind from public.sla_events order by created_at, metric") == [
        {"metric": "first_response", "kind": "met"}, {"metric": "resolution", "kind": "met"},
        {"metric": "first_response", "kind": "breach"}]
    stored = [r["media_storage_path"] for r in rows if r["media_storage_path"]]
    assert len(stored) == 1 and (tmp_path / "media" / stored[0]).is_file()
    # The automation chapter: the suggestion approved by the owner, sent, in the log with its wamid.
    for expected in ("Alguém aí? Ainda estou esperando.", "public.dispatch_queue (the approval queue)",
                     "desculpe a demora", "public.automation_executions (the execution log)",
                     "no_agent_reply"):
        assert expected in out, f"{expected!r} missing from:\n{out}"
    [logged] = db.sql("select e.status, d.status as decision, m.wamid, m.status as message_status"
                      " from public.automation_executions e"
                      " join public.dispatch_queue d on d.execution_id = e.id"
                      " join public.messages m on m.id = (e.action_results -> 0 ->> 'message_id')::uuid")
    assert (logged["status"], logged["decision"]) == ("succeeded", "approved")
    assert logged["message_status"] == "delivered"
    assert logged["wamid"]
    # The coaching chapter: a call analysed through the local OpenAI stand-in, an OKR, an alert, a search.
    for expected in ("Coaching: public.playbooks (active)", "Playbook SPICED — Vendas",
                     "public.conversation_insights", "openai/gpt-4o-mini", "insight-v1",
                     "perder uns 40 mil reais por mês", "Aderência média ao playbook",
                     "okr_metrics: avg_playbook_score", "Negócio parado: Plano anual — Mendes Alimentos",
                     "public.chat_searches (Chat Inteligente)",
                     "FROM public.chat_deals AS d JOIN public.chat_insights AS i", "LIMIT 200",
                     "retomar o contato com o diretor financeiro", "há 8 dias sem mudança",
                     "public.ai_usage (insight and chat search)"):  # fmt: skip
        assert expected in out, f"{expected!r} missing from:\n{out}"
    [insight] = db.sql("select id, status, model, playbook_score, methodology_scores"
                       " from public.conversation_insights")  # fmt: skip
    assert (insight["status"], insight["model"]) == ("done", "openai/gpt-4o-mini")
    assert {s["status"] for s in insight["methodology_scores"].values()} == {"scored"}
    cited = db.sql("select l.text, e ->> 'quote' as quote from public.conversation_insights i"
                   " cross join jsonb_each(i.methodology_scores) d(name, s)"
                   " cross join jsonb_array_elements(d.s -> 'evidence') e"
                   " join public.coaching_call_lines l on l.id::text = e ->> 'message_id'")  # fmt: skip
    assert len(cited) == 5 and all(c["quote"] in c["text"] for c in cited)  # each score quotes the call
    assert db.value("select current_value from public.key_results") == insight["playbook_score"] > 0
    assert db.value("select source from public.key_result_progress") == "coach"
    [stuck] = db.sql("select payload from public.alerts where type = 'deal_stuck'")
    assert db.value("select title from public.deals where id = %s", (stuck["payload"]["deal_id"],)) == (
        "Plano anual — Mendes Alimentos")  # fmt: skip
    [search] = db.sql("select status, check_verdict, results from public.chat_searches")
    assert (search["status"], search["check_verdict"]) == ("answered", "ok")
    [found] = search["results"]["rows"]  # run as Ana: the open deal and its seller's adherence
    assert found[:2] == ["Plano anual — Mendes Alimentos", "Proposta enviada"]
    usage = db.sql("select feature, outcome, request_id from public.ai_usage"
                   " where feature in ('coaching_insight', 'chat_search') order by created_at")  # fmt: skip
    assert [(u["feature"], u["outcome"]) for u in usage] == [
        ("coaching_insight", "success"), ("chat_search", "success"), ("chat_search", "success")]  # fmt: skip
    assert usage[0]["request_id"] == f"insight:{insight['id']}"
    # afterwards the demo tenant's AI is the platform's again (the stand-in's integration is off)
    assert db.value("select status from public.integrations where type = 'llm'") == "inactive"
