"""Flows through the processor: every block type, the loop guard, expiry, bad input; a
customer on the simulated phone, the real database, the worker's processor and sender."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest
from flow_chat import Chat, options, texts
from loop_support import MARIA

from flows_db.flow_support import OWNER, TEAM, TENANT, create_flow, graph
from support import Db
from zapbase.bot import AIResponder
from zapbase.db.pool import Pool
from zapbase.flows.engine import FlowEngine
from zapbase.flows.interpreter import EXPIRED_NOTICE, HANDOFF_NOTICE, LOOP_NOTICE, RETRY_HINTS
from zapbase.simulator import SimulatedUser, Simulator
from zapbase.standins.orders import OrdersStandIn
from zapbase.storage import LocalStorage
from zapbase.whatsapp import GraphAPI
from zapbase.worker.metrics import Metrics
from zapbase.worker.processor import Processor
from zapbase.worker.sender import Sender

pytestmark = pytest.mark.anyio

START = {"id": "start", "type": "start"}
END = {"id": "end", "type": "end", "text": "Até mais!"}


@pytest.fixture
async def chat(
    db: Db, sim: Simulator, maria: SimulatedUser, pool: Pool, graph_api: GraphAPI,
    media_storage: LocalStorage, offline_responder: AIResponder, flow_engine: FlowEngine,
) -> AsyncIterator[Chat]:  # fmt: skip
    processor = Processor(pool=pool, api=graph_api, storage=media_storage, responder=offline_responder,
                          flows=flow_engine, metrics=Metrics(), worker_id="p")  # fmt: skip
    yield Chat(db, sim, maria, processor, Sender(pool=pool, api=graph_api, metrics=Metrics(), worker_id="s"))


def flow(db: Db, *blocks: dict[str, Any], edges: list[Any], keyword: str = "teste", **settings: Any) -> None:
    """A published flow "Teste" started by `keyword`: start, the blocks, an end block if none is given."""
    if not any(b["id"] == "end" for b in blocks) and any(e[1] == "end" for e in edges):
        blocks = (*blocks, END)
    create_flow(db, "Teste", graph(START, *blocks, edges=edges), triggers=(("keyword", keyword),), **settings)


async def test_the_demo_order_flow(db: Db, chat: Chat, orders: OrdersStandIn) -> None:
    got = await chat.say("Rastreio!")
    assert texts(got) == ["Olá, Maria Silva! Vou localizar seu pedido. 📦",
                          "Qual é o CPF usado na compra? (só os números)"]
    conversation = chat.db.sql("select * from public.conversations")[0]
    assert conversation["mode"] == "flow"
    # a sticker, then a CPF with a wrong check digit: asked again each time
    await chat.phone.send_image(b"\x89PNG sticker-like")
    assert texts(await chat.settle()) == [RETRY_HINTS["cpf"]]
    assert texts(await chat.say("529.982.247-26")) == [RETRY_HINTS["cpf"]]
    got = await chat.say("529.982.247-25")
    assert texts(got)[0] == "Encontrei o pedido PED-1042: em transporte, previsão de entrega 05/12."
    menu = got[1]
    assert menu.content["type"] == "list" and len(options(menu)) == 5
    assert orders.requests[0][0] == "http://localhost:8788/orders?cpf=52998224725"
    got = await chat.tap(menu, "agent")
    assert texts(got) == ["Certo! Vou chamar uma pessoa da equipe de Atendimento."]
    after = chat.db.sql("select * from public.conversations")[0]
    assert (after["mode"], str(after["team_id"]), after["handoff_reason"]) == ("human", TEAM,
                                                                               "pediu atendente no rastreio")
    execution = chat.execution()
    assert (execution["status"], execution["end_reason"]) == ("completed", "handed off")
    assert execution["variables"]["cpf"] == "52998224725" and execution["variables"]["next"] == "agent"
    assert chat.steps() == [("start", "next"), ("hello", "next"), ("ask_cpf", "asked"),
                            ("ask_cpf", "retry 1"), ("ask_cpf", "retry 2"), ("ask_cpf", "next"),
                            ("lookup", "next"), ("found", "true"), ("show", "next"), ("menu", "asked"),
                            ("menu", "agent"), ("agent", "handoff")]
    # the step log keeps the CPF masked
    inputs = [r["input"] for r in db.sql("select input from public.flow_steps where input is not null")]
    assert "52998224725" not in json.dumps(inputs) and "529.982.247-25" not in json.dumps(inputs)


async def test_question_kinds_and_the_invalid_path(db: Db, chat: Chat) -> None:
    ask = [("email", "E-mail?", "maria@@x", "Maria@Loja.com.br", "maria@loja.com.br"),
           ("phone", "Telefone?", "123", "(11) 98888-7777", "5511988887777"),
           ("cnpj", "CNPJ?", "11.222.333/0001-00", "11.222.333/0001-81", "11222333000181"),
           ("date", "Data?", "31/02/2026", "3/12/26", "2026-12-03"),
           ("time", "Hora?", "25:00", "14h30", "14:30"),
           ("number", "Quantos?", "muitos", "1.234,5", "1234.5"),
           ("yes_no", "Confirma?", "talvez", "Claro!", "yes")]  # fmt: skip
    blocks = [{"id": kind, "type": "question", "kind": kind, "text": text, "variable": kind, "max_retries": 1}
              for kind, text, *_ in ask]
    edges = [("start", ask[0][0])] + [(a[0], b[0]) for a, b in itertools.pairwise(ask)]
    edges += [(ask[-1][0], "end"), ("email", "bad", "invalid")]
    flow(db, *blocks, END, {"id": "bad", "type": "message", "text": "Vamos seguir sem e-mail."},
         edges=[*edges, ("bad", "phone")])
    assert texts(await chat.say("teste")) == ["E-mail?"]
    assert texts(await chat.say("maria@@x")) == [RETRY_HINTS["email"]]
    # the second invalid answer (max_retries 1) takes the invalid path
    assert texts(await chat.say("de novo não")) == ["Vamos seguir sem e-mail.", "Telefone?"]
    for kind, _text, wrong, right, _value in ask[1:]:
        retry = await chat.say(wrong)
        assert retry[0].text == RETRY_HINTS[kind] or retry[0].content["body"]["text"] == RETRY_HINTS[kind]
        await chat.say(right)
    variables = chat.execution()["variables"]
    assert {k: variables[k] for k, *_ in ask[1:]} == {k: v for k, *_, v in ask[1:]}
    assert "email" not in variables and chat.execution()["status"] == "completed"


async def test_choices_buttons_typed_answers_and_pages(db: Db, chat: Chat) -> None:
    labels = ["Pix", "Cartão de crédito", "Boleto"]
    few = [{"id": f"o{n}", "label": label} for n, label in enumerate(labels, 1)]
    many = [{"id": f"p{n}", "label": f"Produto número {n} da coleção de verão"} for n in range(1, 13)]
    flow(db, {"id": "pay", "type": "choice", "text": "Como quer pagar?", "variable": "pay", "options": few},
         {"id": "prod", "type": "choice", "text": "Qual produto?", "variable": "prod", "options": many},
         {"id": "thanks", "type": "message", "text": "Anotado: {{pay_label}} e {{prod_label}}."},
         edges=[("start", "pay"), *[("pay", "prod", o["id"]) for o in few],
                *[("prod", "thanks", o["id"]) for o in many], ("thanks", "end")], **{})
    [buttons] = await chat.say("teste")
    assert options(buttons) == [("o1", "Pix"), ("o2", "Cartão de crédito"), ("o3", "Boleto")]
    assert texts(await chat.say("Pix?? não, quero o 5")) == [
        "Não encontrei essa opção. Toque em uma das opções abaixo ou digite o número dela."]
    [page1] = await chat.say("cartao de credito")  # typed label, accents and case folded
    assert page1.content["type"] == "list"
    rows = options(page1)
    assert len(rows) == 10 and rows[-1] == ("__more__", "Mais opções ›")
    assert all(len(title) <= 24 for _, title in rows) and rows[0][1] == "Produto número 1 da…"
    [page2] = await chat.tap(page1, "__more__")
    assert [r[0] for r in options(page2)] == ["p10", "p11", "p12", "__first__"]
    got = await chat.say("11")  # by number in the whole list
    assert texts(got)[0] == "Anotado: Cartão de crédito e Produto número 11 da coleção de verão."


async def test_condition_set_jump_and_actions(db: Db, chat: Chat) -> None:
    flow(db,
         {"id": "vip", "type": "set", "variable": "tier", "value": "vip-{{contact.name}}"},
         {"id": "check", "type": "condition", "match": "all", "rules": [
             {"variable": "tier", "op": "starts_with", "value": "VIP"},
             {"variable": "tier", "op": "regex", "value": "Maria\\s+Silva$"},
             {"variable": "missing", "op": "is_empty"}]},
         {"id": "tag", "type": "action", "action": "add_tag", "tag": "vip"},
         {"id": "attr", "type": "action", "action": "set_attribute", "name": "tier", "value": "{{tier}}"},
         {"id": "prio", "type": "action", "action": "set_priority", "priority": "high"},
         {"id": "team", "type": "action", "action": "assign_team", "team_id": TEAM},
         {"id": "hop", "type": "jump", "target": "end"},
         {"id": "no", "type": "message", "text": "não é vip"},
         END,
         edges=[("start", "vip"), ("vip", "check"), ("check", "tag", "true"), ("check", "no", "false"),
                ("tag", "attr"), ("attr", "prio"), ("prio", "team"), ("team", "hop"), ("no", "end")])
    assert texts(await chat.say("teste")) == ["Até mais!"]
    contact = db.sql("select tags, attributes from public.contacts where wa_id = %s", (MARIA,))[0]
    assert "vip" in contact["tags"] and contact["attributes"]["tier"] == "vip-Maria Silva"
    conversation = db.sql("select * from public.conversations")[0]
    assert (conversation["priority"], str(conversation["team_id"])) == ("high", TEAM)
    assert conversation["mode"] == "bot"
    assert ("hop", "next") in chat.steps() and chat.execution()["status"] == "completed"


async def test_ticket_and_lead_blocks_give_the_protocol_to_the_next_message(db: Db, chat: Chat) -> None:
    flow(db,
         {"id": "ticket", "type": "action", "action": "create_ticket", "title": "Troca: {{contact.name}}",
          "priority": "high", "category": "troca", "team_id": TEAM, "variable": "protocolo"},
         {"id": "lead", "type": "action", "action": "create_lead", "interest": "Troca", "score": 30,
          "variable": "lead"},
         {"id": "say", "type": "message", "text": "Chamado aberto: {{protocolo}}"},
         edges=[("start", "ticket"), ("ticket", "lead"), ("lead", "say"), ("say", "end")])
    got = texts(await chat.say("teste"))
    ticket = db.sql("select * from public.tickets")[0]
    assert got == [f"Chamado aberto: {ticket['protocol']}", "Até mais!"]
    assert (ticket["title"], ticket["priority"], ticket["source"], str(ticket["team_id"])) == (
        "Troca: Maria Silva", "high", "flow", TEAM)
    lead = db.sql("select l.* from public.leads l join public.contacts c on c.id = l.contact_id"
                  " where c.wa_id = %s", (MARIA,))[0]
    assert (lead["source"], lead["interest"], lead["score"]) == ("flow", "Troca", 30)
    assert chat.execution()["variables"]["lead"] == str(lead["id"])
    assert chat.execution()["records"] == {}
    # the same flow again: a second ticket, the same lead
    await chat.say("teste")
    assert db.value("select count(*) from public.tickets") == 2
    assert db.value("select count(*) from public.leads where source = 'flow'") == 1


async def test_a_refused_ticket_takes_the_error_path(db: Db, chat: Chat) -> None:
    # fits the 300 characters on publish, not once its variable is filled in
    flow(db, {"id": "long", "type": "set", "variable": "longo", "value": "x" * 400},
         {"id": "ticket", "type": "action", "action": "create_ticket", "title": "{{longo}}",
          "variable": "protocolo"},
         {"id": "oops", "type": "message", "text": "Não consegui abrir o chamado."},
         edges=[("start", "long"), ("long", "ticket"), ("ticket", "end"), ("ticket", "oops", "error"),
                ("oops", "end")])
    assert texts(await chat.say("teste")) == ["Não consegui abrir o chamado.", "Até mais!"]
    assert db.value("select count(*) from public.tickets") == 0
    assert any(s[0] == "ticket" and s[1].startswith("error:") for s in chat.steps())


async def test_a_retried_turn_opens_its_ticket_once(db: Db, chat: Chat) -> None:
    flow(db, {"id": "q", "type": "question", "text": "Qual o problema?", "variable": "problema"},
         {"id": "ticket", "type": "action", "action": "create_ticket", "title": "{{problema}}",
          "variable": "p"},
         {"id": "say", "type": "message", "text": "Protocolo {{p}}"},
         edges=[("start", "q"), ("q", "ticket"), ("ticket", "say"), ("say", "end")])
    await chat.say("teste")
    execution = chat.execution()
    # a first try of the next turn opened the ticket, then its commit failed (e.g. the worker died)
    record = "select public.flow_record(%s, %s, 'ticket:1', %s)"
    ticket = json.dumps({"action": "create_ticket", "title": "A"})
    first = db.value(record, (execution["id"], execution["revision"], ticket))
    with pytest.raises(psycopg.errors.SerializationFailure):  # a turn on an older state opens nothing
        db.sql(record, (execution["id"], execution["revision"] - 1, ticket))
    # the retried turn finds that ticket instead of opening another
    assert texts(await chat.say("A")) == [f"Protocolo {first['value']}", "Até mais!"]
    assert db.value("select count(*) from public.tickets") == 1


async def test_opt_out_action_stops_every_message(db: Db, chat: Chat) -> None:
    flow(db, {"id": "bye", "type": "message", "text": "Você não receberá mais mensagens."},
         {"id": "out", "type": "action", "action": "opt_out"}, END,
         edges=[("start", "bye"), ("bye", "out"), ("out", "end")])
    # the goodbye was queued in the turn that recorded the opt-out; nothing answers afterwards
    assert texts(await chat.say("teste")) == ["Você não receberá mais mensagens.", "Até mais!"]
    assert db.value("select opt_in from public.contacts where wa_id = %s", (MARIA,)) is False
    assert texts(await chat.say("teste")) == []
    consent = db.sql("select * from public.contact_consents order by recorded_at desc limit 1")[0]
    assert (consent["kind"], consent["source"]) == ("opt_out", "customer_message")


async def test_http_garbage_errors_and_timeouts_take_the_error_path(
    db: Db, chat: Chat, orders: OrdersStandIn
) -> None:
    flow(db, {"id": "call", "type": "http", "url": "http://orders.test/orders?cpf=52998224725",
              "timeout_ms": 200, "save": {"order": "order.id"}},
         {"id": "ok", "type": "message", "text": "Pedido {{order}}"},
         {"id": "oops", "type": "message", "text": "Sistema fora do ar"},
         edges=[("start", "call"), ("call", "ok"), ("call", "oops", "error"), ("ok", "end"), ("oops", "end")])
    assert texts(await chat.say("teste")) == ["Pedido PED-1042", "Até mais!"]
    for fault, error in [("garbage", "error: the response is not JSON"), ("error", "error: HTTP 500"),
                         ("slow", "error: timed out after 0.2 s")]:
        orders.fail_next = fault
        assert texts(await chat.say("teste")) == ["Sistema fora do ar", "Até mais!"]
        assert ("call", error) in chat.steps()


async def test_http_to_a_private_address_is_refused_outside_local_mode(
    db: Db, pool: Pool, graph_api: GraphAPI, media_storage: LocalStorage, offline_responder: AIResponder,
    sim: Simulator, maria: SimulatedUser, orders: OrdersStandIn,
) -> None:  # fmt: skip
    flow(db, {"id": "call", "type": "http", "url": "https://127.0.0.1/orders"},
         {"id": "oops", "type": "message", "text": "Bloqueado"},
         edges=[("start", "call"), ("call", "end"), ("call", "oops", "error"), ("oops", "end")])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=orders.app)) as http:
        engine = FlowEngine(http=http, local_mode=False)
        processor = Processor(pool=pool, api=graph_api, storage=media_storage, responder=offline_responder,
                              flows=engine, metrics=Metrics(), worker_id="p")  # fmt: skip
        sender = Sender(pool=pool, api=graph_api, metrics=Metrics(), worker_id="s")
        chat = Chat(db, sim, maria, processor, sender)
        assert texts(await chat.say("teste")) == ["Bloqueado", "Até mais!"]
    assert orders.requests == []
    assert any("127.0.0.1 resolves to 127.0.0.1" in outcome for _, outcome in chat.steps())


async def test_ai_block_answers_through_the_gateway(db: Db, chat: Chat) -> None:
    flow(db, {"id": "ask", "type": "ai", "prompt": "Resuma: {{contact.name}} quer trocar um produto.",
              "variable": "summary", "send": True},
         {"id": "fail", "type": "message", "text": "IA indisponível"},
         edges=[("start", "ask"), ("ask", "end"), ("ask", "fail", "error"), ("fail", "end")])
    got = await chat.say("teste")
    assert len(got) == 2 and got[-1].text == "Até mais!" and got[0].text != "IA indisponível"
    assert chat.execution()["variables"]["summary"] == got[0].text
    usage = db.sql("select feature from public.ai_usage")
    assert [u["feature"] for u in usage] == ["flow"]


async def test_wait_times_out_through_the_scheduled_job(db: Db, chat: Chat) -> None:
    flow(db, {"id": "hold", "type": "wait", "seconds": 600, "variable": "reply"},
         {"id": "late", "type": "message", "text": "Ainda está aí?"},
         {"id": "got", "type": "message", "text": "Recebi: {{reply}}"},
         edges=[("start", "hold"), ("hold", "got"), ("hold", "late", "timeout"), ("late", "end"),
                ("got", "end")])
    assert texts(await chat.say("teste")) == []
    assert db.value("select private.run_job('flows_wait_timeouts')") == 0  # not yet
    db.sql("update public.flow_executions set wait_until = now() - interval '1 second'")
    assert db.value("select private.run_job('flows_wait_timeouts')") == 1
    assert texts(await chat.settle()) == ["Ainda está aí?", "Até mais!"]
    # a reply in time takes the next port instead
    await chat.say("teste")
    assert texts(await chat.say("voltei")) == ["Recebi: voltei", "Até mais!"]


async def test_whatsapp_flow_response_fills_variables(db: Db, chat: Chat) -> None:
    flow(db, {"id": "form", "type": "whatsapp_flow", "text": "Preencha seu endereço", "flow_id": "1234567890",
              "cta": "Abrir formulário", "variable": "address"},
         {"id": "ok", "type": "message", "text": "Entregaremos em {{address}}"},
         edges=[("start", "form"), ("form", "ok"), ("ok", "end")])
    [form] = await chat.say("teste")
    assert form.content["type"] == "flow"
    await chat.phone.submit_flow(form, {"cep": "01310-100", "numero": "1000"})
    got = await chat.settle()
    assert chat.execution()["variables"]["address"] == {"cep": "01310-100", "numero": "1000"}
    assert got[0].text == 'Entregaremos em {"cep": "01310-100", "numero": "1000"}'


async def test_loop_guard_fails_and_hands_off_never_silence(db: Db, chat: Chat) -> None:
    flow(db, {"id": "again", "type": "message", "text": "De novo"},
         {"id": "back", "type": "jump", "target": "again"},
         edges=[("start", "again"), ("again", "back")], max_block_visits=3)
    got = await chat.say("teste")
    assert texts(got) == ["De novo"] * 3 + [LOOP_NOTICE]
    execution = chat.execution()
    assert execution["status"] == "failed" and "loop guard" in execution["end_reason"]
    assert db.value("select mode from public.conversations") == "human"
    assert chat.steps()[-1] == ("again", "loop guard: block ran 3 times in this execution")


async def test_expired_session_offers_a_restart(db: Db, chat: Chat) -> None:
    flow(db, {"id": "name", "type": "question", "text": "Seu nome?", "variable": "nome"},
         edges=[("start", "name"), ("name", "end")])
    await chat.say("teste")
    first = chat.execution()
    db.sql("update public.flow_executions set expires_at = now() - interval '1 second'")
    [offer] = await chat.say("Ana")  # not taken as the answer: the session is over
    assert offer.text == EXPIRED_NOTICE and [o[0] for o in options(offer)] == ["yes", "no"]
    assert db.value("select status from public.flow_executions where id = %s", (first["id"],)) == "expired"
    assert texts(await chat.tap(offer, "yes")) == ["Seu nome?"]
    assert texts(await chat.say("Ana")) == ["Até mais!"]
    await chat.say("teste")
    db.sql("update public.flow_executions set expires_at = now() - interval '1 second'"
           " where status = 'active'")
    [offer] = await chat.say("oi")
    assert texts(await chat.tap(offer, "no")) == ["Tudo bem! Se precisar, é só mandar uma mensagem."]
    assert db.value("select mode from public.conversations") == "bot"


async def test_a_question_block_with_no_invalid_path_hands_off(db: Db, chat: Chat) -> None:
    flow(db, {"id": "cpf", "type": "question", "kind": "cpf", "text": "CPF?", "variable": "cpf",
              "max_retries": 0}, edges=[("start", "cpf"), ("cpf", "end")])
    await chat.say("teste")
    assert texts(await chat.say("não sei")) == [HANDOFF_NOTICE]
    reason = db.value("select handoff_reason from public.conversations")
    assert reason == "flow: no path for invalid at block cpf"


async def test_a_team_deleted_after_publishing_falls_back_to_the_support_team(db: Db, chat: Chat) -> None:
    other = db.value("insert into public.teams (tenant_id, name) values (%s, 'Vendas') returning id",
                     (TENANT,))
    flow(db, {"id": "h", "type": "handoff", "team_id": str(other)}, edges=[("start", "h")])
    db.sql("delete from public.teams where id = %s", (other,))
    assert texts(await chat.say("teste")) == [HANDOFF_NOTICE]
    conversation = db.sql("select * from public.conversations")[0]
    assert conversation["mode"] == "human" and str(conversation["team_id"]) == TEAM


def address_subflow(db: Db, end_text: str = "Obrigado!") -> str:
    """A published flow that asks a CEP: the sub-flow of the tests below."""
    body = graph(START, {"id": "cep", "type": "question", "text": "Seu CEP?", "variable": "cep"},
                 {"id": "end", "type": "end", "text": end_text},
                 edges=[("start", "cep"), ("cep", "end")])  # fmt: skip
    flow_id, _ = create_flow(db, "Endereço", body)
    return str(flow_id)


async def test_a_subflow_runs_and_returns_to_its_caller(db: Db, chat: Chat) -> None:
    sub = address_subflow(db)
    flow(db, {"id": "hi", "type": "message", "text": "Vamos ao cadastro."},
         {"id": "call", "type": "jump", "flow_id": sub},
         {"id": "done", "type": "message", "text": "CEP {{cep}} anotado."},  # set by the sub-flow
         edges=[("start", "hi"), ("hi", "call"), ("call", "done"), ("done", "end")])  # fmt: skip
    assert texts(await chat.say("teste")) == ["Vamos ao cadastro.", "Seu CEP?"]
    assert chat.execution()["current_block"] == "call/cep"
    assert texts(await chat.say("01310-100")) == ["Obrigado!", "CEP 01310-100 anotado.", "Até mais!"]
    assert chat.execution()["status"] == "completed"
    assert [b for b, _ in chat.steps()] == [
        "start", "hi", "call", "call/cep", "call/cep", "call/end", "done", "end"]
    # the caller's version pinned the sub-flow as it was: a new version of it changes nothing
    with db.as_user(OWNER) as s:
        draft = s.value("insert into public.flow_versions (tenant_id, flow_id, graph)"
                        " select tenant_id, flow_id, graph from public.flow_versions where flow_id = %s"
                        " returning id", (sub,))  # fmt: skip
        s.all("update public.flow_versions set graph = jsonb_set(graph, '{blocks,1,text}', '\"CEP?\"')"
              " where id = %s", (draft,))  # fmt: skip
        s.all("select public.publish_flow(%s)", (draft,))
    assert texts(await chat.say("teste")) == ["Vamos ao cadastro.", "Seu CEP?"]


async def test_a_subflow_called_last_ends_the_run(db: Db, chat: Chat) -> None:
    sub = address_subflow(db, end_text="Cadastro concluído.")
    flow(db, {"id": "call", "type": "jump", "flow_id": sub}, edges=[("start", "call")])
    await chat.say("teste")
    assert texts(await chat.say("01310-100")) == ["Cadastro concluído."]
    assert chat.execution()["status"] == "completed" and chat.execution()["end_reason"] == "end"


def test_a_call_of_an_unpublished_flow_is_refused(db: Db) -> None:
    draft, _ = create_flow(db, "Rascunho", graph(START, END, edges=[("start", "end")]), publish=False)
    body = graph(START, {"id": "call", "type": "jump", "flow_id": str(draft)}, END,
                 edges=[("start", "call"), ("call", "end")])  # fmt: skip
    with pytest.raises(psycopg.errors.CheckViolation,
                       match=f'block "call": flow_id {draft} is not a published flow of this tenant'):
        create_flow(db, "Chamador", body)
