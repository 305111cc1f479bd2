"""Flows as the editor sees them: drafts, publishing validated in SQL (every problem named
by its block), frozen versions, managers only; executions and analytics readable as RLS says."""

from __future__ import annotations

import json

import psycopg
import pytest
from flow_support import AGENT, OWNER, TEAM, TENANT, create_flow, graph

from support import Db

START = {"id": "start", "type": "start"}
HELLO = {"id": "hello", "type": "message", "text": "Olá, {{contact.name}}!"}


def problems(db: Db, body: object) -> list[tuple[str | None, str]]:
    return [(r["block_id"], r["problem"]) for r in db.sql(
        "select * from private.flow_graph_problems(%s, %s)", (TENANT, json.dumps(body)))]


def test_a_valid_graph_publishes_and_freezes(db: Db) -> None:
    flow_id, version_id = create_flow(db, "Boas-vindas", graph(START, HELLO, {"id": "bye", "type": "end"},
                                      edges=[("start", "hello"), ("hello", "bye")]))
    flow = db.sql("select * from public.flows where id = %s", (flow_id,))[0]
    assert flow["published_version_id"] == version_id and flow["status"] == "active"
    version = db.sql("select * from public.flow_versions where id = %s", (version_id,))[0]
    assert version["version"] == 1 and version["published_at"] is not None
    assert str(version["published_by"]) == "00000000-0000-4000-c000-000000000001"
    with db.as_user(OWNER) as s:  # the editor does not even see it as editable
        assert s.rowcount("update public.flow_versions set graph = '{}' where id = %s", (version_id,)) == 0
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="published and frozen"), \
            db.as_service() as s:
        s.all("update public.flow_versions set graph = '{}' where id = %s", (version_id,))
    # the next draft is version 2
    with db.as_user(OWNER) as s:
        assert s.value("insert into public.flow_versions (tenant_id, flow_id) values (%s, %s)"
                       " returning version", (TENANT, flow_id)) == 2


def test_publish_names_every_broken_block(db: Db) -> None:
    body = graph(
        START, {"id": "ask", "type": "question", "text": "Seu CPF?", "kind": "cpf", "variable": "cpf"},
        {"id": "menu", "type": "choice", "text": "Escolha", "variable": "op",
         "options": [{"id": "a", "label": "A"}, {"id": "a", "label": "B"}]},
        {"id": "lost", "type": "message", "text": "ninguém chega aqui"},
        {"id": "say", "type": "message", "text": "Pedido {{pedido}}"},
        {"id": "h", "type": "handoff", "team_id": "00000000-0000-4000-d000-00000000ffff"},
        edges=[("start", "ask"), ("ask", "menu"), ("menu", "say", "a"), ("say", "h"),
               ("say", "ghost", "next"), ("menu", "h", "nope")])
    found = problems(db, body)
    assert ("lost", "no path from the start block leads here") in found
    assert ("menu", 'option id "a" is used 2 times') in found
    assert ("say", "reads {{pedido}}, which no block before it sets") in found
    assert ("say", 'an edge (port next) goes to "ghost", which does not exist') in found
    assert ("say", 'port "next" has 2 edges: one at most') in found
    assert ("menu", 'port "nope" does not exist on this block') in found
    assert ("h", "team 00000000-0000-4000-d000-00000000ffff is not a team of this tenant") in found
    assert ("lost", "port \"next\" must lead somewhere") in found
    with pytest.raises(psycopg.errors.CheckViolation, match='block "lost": no path from the start block'):
        create_flow(db, "Quebrado", body)


@pytest.mark.parametrize(("body", "expected"), [
    ({"blocks": [], "edges": []}, (None, "the graph has 0 start blocks: exactly one is needed")),
    ({"nodes": []}, (None, 'the graph needs "blocks" and "edges" arrays')),
    (graph(START, {"id": "x", "type": "teleport"}, edges=[("start", "x")]),
     ("x", 'unknown block type "teleport"')),
    (graph(START, {"id": "q", "type": "question", "text": "?", "kind": "cep", "variable": "v"},
           edges=[("start", "q"), ("q", "q")]),
     ("q", "kind must be text, number, email, phone, cpf, cnpj, date, time or yes_no")),
    (graph(START, {"id": "m", "type": "message", "text": "x" * 4097}, edges=[("start", "m"), ("m", "m")]),
     ("m", "text is required (at most 4096 characters)")),
    (graph(START, {"id": "c", "type": "condition", "rules": [{"variable": "contact.name", "op": "regex",
                                                              "value": "(("}]},
           edges=[("start", "c"), ("c", "start", "true"), ("c", "start", "false")]),
     ("c", 'regex "((" is not valid')),
    (graph(START, {"id": "w", "type": "wait", "seconds": 5}, edges=[("start", "w"), ("w", "start")]),
     ("w", "seconds must be 60-604800")),
])
def test_graph_problems(db: Db, body: object, expected: tuple[str | None, str]) -> None:
    assert expected in problems(db, body)


def test_ticket_and_lead_blocks_are_checked_on_publish(db: Db) -> None:
    def action(**fields: object) -> object:
        return graph(START, {"id": "a", "type": "action", **fields}, {"id": "e", "type": "end"},
                     edges=[("start", "a"), ("a", "e"), ("a", "e", "error")])

    assert problems(db, action(action="create_ticket", title="Pedido {{contact.name}}", priority="high",
                               category="entrega", variable="protocolo")) == []
    assert problems(db, action(action="create_lead", interest="Curso", score=40, variable="lead")) == []
    bad = [action(action="create_ticket", title=""),
           action(action="create_ticket", title="x", priority="urgent"),
           action(action="create_ticket", title="x", category="a/b"), action(action="create_lead", score=101),
           action(action="create_lead", score=2.5), action(action="create_lead", interest="x" * 301)]
    for body in bad:
        assert [p[0] for p in problems(db, body) if p[1].startswith("action must be")] == ["a"], body
    # the protocol is read only after the block that sets it; other actions have no error port
    body = graph(START, {"id": "m", "type": "message", "text": "Protocolo {{protocolo}}"},
                 {"id": "t", "type": "action", "action": "create_ticket", "title": "x",
                  "variable": "protocolo"},
                 {"id": "g", "type": "action", "action": "add_tag", "tag": "x"}, {"id": "e", "type": "end"},
                 edges=[("start", "m"), ("m", "t"), ("t", "g"), ("g", "e"), ("g", "e", "error")])
    assert set(problems(db, body)) == {("m", "reads {{protocolo}}, which no block before it sets"),
                                       ("g", 'port "error" does not exist on this block')}


def test_a_variable_set_on_another_branch_is_not_set_before(db: Db) -> None:
    body = graph(
        START, {"id": "c", "type": "condition", "rules": [{"variable": "contact.name", "op": "is_set"}]},
        {"id": "s", "type": "set", "variable": "nome", "value": "x"},
        {"id": "m", "type": "message", "text": "Oi {{nome}}"}, {"id": "e", "type": "end"},
        edges=[("start", "c"), ("c", "s", "true"), ("c", "m", "false"), ("s", "e"), ("m", "e")])
    assert problems(db, body) == [("m", "reads {{nome}}, which no block before it sets")]


def test_agents_cannot_edit_flows(db: Db) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="managed by tenant managers"), \
            db.as_user(AGENT) as s:
        s.all("insert into public.flows (tenant_id, name) values (%s, 'x')", (TENANT,))
    _, version_id = create_flow(db, "Rascunho", graph(START, edges=[]), publish=False)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="manager"), db.as_user(AGENT) as s:
        s.all("select public.publish_flow(%s)", (version_id,))


def test_keywords_are_stored_folded_and_codes_are_unique(db: Db) -> None:
    flow_id, _ = create_flow(db, "Pedidos", graph(START, HELLO, {"id": "e", "type": "end"},
                             edges=[("start", "hello"), ("hello", "e")]),
                             triggers=(("keyword", "  Rastrear PEDIDO!"), ("qr_code", "Promo-10")))
    values = db.sql("select value from public.flow_triggers where flow_id = %s", (flow_id,))
    assert sorted(r["value"] for r in values) == ["promo 10", "rastrear pedido"]
    with pytest.raises(psycopg.errors.UniqueViolation):
        create_flow(db, "Outro", graph(START, HELLO, {"id": "e", "type": "end"},
                    edges=[("start", "hello"), ("hello", "e")]), triggers=(("qr_code", "PROMO 10"),))


def test_an_active_flow_needs_a_published_version(db: Db) -> None:
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="publish a version"), \
            db.as_user(OWNER) as s:
        s.all("insert into public.flows (tenant_id, name, status) values (%s, 'x', 'active')", (TENANT,))


def test_handoff_team_must_be_the_tenants(db: Db) -> None:
    body = graph(START, {"id": "h", "type": "handoff", "team_id": TEAM}, edges=[("start", "h")])
    assert problems(db, body) == []
