"""Property-based flow publishing: a graph using every block type, mutated at any depth
(missing, extra and wrong-typed fields, hostile strings), with blocks duplicated and edges
added, is saved as a draft by the tenant's owner and published through publish_flow. Every
graph either publishes or is refused with the validation error (23514) naming what is wrong,
never another error; a published graph loads in the interpreter and runs a few turns without
raising.

Small by default; `ZAPBASE_FUZZ_EXAMPLES=10000 make fuzz` for a long run.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from flow_support import OWNER, TEAM, TENANT, graph
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import fuzz_settings, mutated_tree, odd, words
from support import Db
from zapbase.flows.graph import Graph
from zapbase.flows.interpreter import Answer, Done, EffectResult, Input, Limits, Start, State, Timeout, Turn
from zapbase.whatsapp.cleaning import jsonb_safe

Json = dict[str, Any]

EVERY_BLOCK = graph(
    {"id": "start", "type": "start"},
    {"id": "hello", "type": "message", "text": "Olá, {{contact.name}}!"},
    {
        "id": "ask_name",
        "type": "question",
        "text": "Seu nome?",
        "kind": "text",
        "variable": "name",
        "max_retries": 2,
        "retry_text": "De novo?",
    },
    {
        "id": "menu",
        "type": "choice",
        "text": "Escolha",
        "variable": "topic",
        "options": [
            {"id": "buy", "label": "Comprar", "description": "Ver produtos"},
            {"id": "help", "label": "Ajuda"},
        ],
    },
    {
        "id": "check",
        "type": "condition",
        "match": "all",
        "rules": [
            {"variable": "name", "op": "regex", "value": "^[A-Z]"},
            {"variable": "topic", "op": "is_set"},
        ],
    },
    {"id": "remember", "type": "set", "variable": "greeting", "value": "Oi {{name}}"},
    {"id": "tag", "type": "action", "action": "add_tag", "tag": "fuzz"},
    {
        "id": "ticket",
        "type": "action",
        "action": "create_ticket",
        "title": "Pedido de {{name}}",
        "priority": "high",
        "category": "vendas",
        "variable": "protocol",
    },
    {
        "id": "lookup",
        "type": "http",
        "method": "POST",
        "url": "https://example.com/{{name}}",
        "headers": {"X-Name": "{{name}}"},
        "body": {"n": "{{name}}"},
        "timeout_ms": 2000,
        "save": {"city": "a.b"},
    },
    {
        "id": "think",
        "type": "ai",
        "prompt": "Resuma {{greeting}} em {{city}}",
        "variable": "summary",
        "send": True,
    },
    {"id": "pause", "type": "wait", "seconds": 3600, "variable": "later"},
    {"id": "again", "type": "jump", "target": "menu"},
    {"id": "human", "type": "handoff", "text": "Um atendente já vem", "reason": "ajuda", "team_id": TEAM},
    {"id": "bye", "type": "end", "text": "Tchau {{protocol}}"},
    edges=[
        ("start", "hello"),
        ("hello", "ask_name"),
        ("ask_name", "menu"),
        ("ask_name", "human", "invalid"),
        ("menu", "check", "buy"),
        ("menu", "human", "help"),
        ("check", "remember", "true"),
        ("check", "again", "false"),
        ("remember", "tag"),
        ("tag", "ticket"),
        ("ticket", "lookup"),
        ("ticket", "human", "error"),
        ("lookup", "think"),
        ("lookup", "think", "error"),
        ("think", "pause"),
        ("pause", "bye"),
        ("pause", "human", "timeout"),
    ],
)


@st.composite
def graphs(draw: st.DrawFn) -> Any:
    body: Json = jsonb_safe(draw(mutated_tree(EVERY_BLOCK, max_mutations=6)))[0]  # what PostgREST accepts
    blocks, edges = body.get("blocks"), body.get("edges")
    if isinstance(blocks, list) and blocks and draw(st.integers(0, 4)) == 0:
        blocks.append(draw(st.sampled_from(blocks)))  # a duplicated block
    if isinstance(edges, list) and draw(st.integers(0, 3)) == 0:
        ids = [b.get("id") for b in EVERY_BLOCK["blocks"]] + ["nowhere"]
        edges.append(
            {
                "from": draw(st.sampled_from(ids)),
                "to": draw(st.sampled_from(ids)),
                "port": draw(
                    st.one_of(st.sampled_from(["next", "invalid", "true", "buy", "jump"]), words, odd)
                ),
            }
        )
    return body


answers = st.lists(
    st.one_of(
        st.builds(lambda t: Answer(Input(t)), st.one_of(words, st.sampled_from(["Ana", "1"]))),
        st.builds(lambda r: Answer(Input(None, reply_id=r)), st.sampled_from(["buy", "help"])),
        st.just(Timeout()),
    ),
    max_size=4,
)


def run_published(body: Json, events: list[Any]) -> None:
    """A few turns of the interpreter over a published graph; effects succeed with odd values."""
    state = State()
    for event in [Start(), *events]:
        turn = Turn(Graph.from_json(body), state, limits=Limits(), context={"contact.name": "Maria"})
        effect = turn.feed(event)
        for _ in range(20):
            if effect is None:
                break
            effect = turn.feed(Done(EffectResult(ok=True, value={"a": {"b": "Recife"}})))
        state = turn.state
        if state.status != "active":
            break


def test_every_graph_publishes_or_is_refused_naming_the_problem(db: Db) -> None:
    with db.as_user(OWNER) as s:
        flow = s.value(
            "insert into public.flows (tenant_id, name) values (%s, 'fuzz') returning id", (TENANT,)
        )
    outcomes: dict[str, int] = {}

    @fuzz_settings()
    @given(graphs(), answers)
    def publish_one(body: Any, events: list[Any]) -> None:
        shown = json.dumps(body, ensure_ascii=False)[:4000]
        try:
            with db.as_user(OWNER) as s:
                version = s.value(
                    "insert into public.flow_versions (tenant_id, flow_id, graph)"
                    " values (%s, %s, %s) returning id",
                    (TENANT, flow, json.dumps(body)),
                )
                s.all("select public.publish_flow(%s)", (version,))
        except psycopg.Error as exc:
            assert exc.sqlstate == "23514", f"{exc.sqlstate}: {exc}\n{shown}"
            message = str(exc)
            assert message.startswith(("the flow cannot be published: ", "new row for relation")), message
            outcomes["refused"] = outcomes.get("refused", 0) + 1
            return
        outcomes["published"] = outcomes.get("published", 0) + 1
        run_published(body, events)

    publish_one()
    assert outcomes.get("published", 0) > 0 and outcomes.get("refused", 0) > 0, outcomes
