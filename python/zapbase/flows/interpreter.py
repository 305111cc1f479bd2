"""The flow interpreter: an execution's state and one event in, the turn out. No I/O: an
http or AI block suspends the turn with an `Effect`, which the worker performs and feeds
back as `Done`.

    turn = Turn(graph, state, limits=Limits(), context={"contact.name": "Maria"})
    effect = turn.feed(Answer(Input(text="529.982.247-25")))
    while effect is not None:
        effect = turn.feed(Done(await perform(effect)))
    turn.messages, turn.steps, turn.actions, turn.handoff, turn.state   # committed together

Every path ends somewhere defined: an invalid answer is asked again at most max_retries
times, then takes the block's `invalid` port; an http / AI error its `error` port; a wait
its `timeout` port; an unconnected one of those hands off to humans. At most
`Limits.max_steps` blocks run per turn and each block at most `Limits.max_visits` times per
execution (loop guard): past either, the execution fails with a logged step and a handoff.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from zapbase.flows.answers import YES, parse_answer
from zapbase.flows.blocks import chosen_option, dig, fill_json, flow_message, holds, options
from zapbase.flows.graph import Block, Graph
from zapbase.flows.render import FIRST_ID, MORE_ID, choice_message, fill, text_message, yes_no_message
from zapbase.text import fold

__all__ = [
    "EXPIRED_NOTICE",
    "HANDOFF_NOTICE",
    "LOOP_NOTICE",
    "RESTART_DECLINED",
    "AiCall",
    "Answer",
    "Done",
    "Effect",
    "EffectResult",
    "Event",
    "Expired",
    "Handoff",
    "HttpCall",
    "Input",
    "Limits",
    "RecordCall",
    "Start",
    "State",
    "Step",
    "Timeout",
    "Turn",
]

# Texts the customer reads (pt-BR).
HANDOFF_NOTICE = "Certo! Vou chamar uma pessoa da nossa equipe. Aguarde um instante, por favor."
LOOP_NOTICE = "Desculpe, algo deu errado por aqui. Vou chamar uma pessoa da nossa equipe para continuar."
EXPIRED_NOTICE = "Sua sessão anterior expirou por falta de resposta. Quer recomeçar o atendimento?"
RESTART_DECLINED = "Tudo bem! Se precisar, é só mandar uma mensagem."
RETRY_HINTS = {
    "text": "Não recebi sua resposta por escrito. Pode digitar, por favor?",
    "number": "Por favor, responda com um número (por exemplo: 42).",
    "email": "Esse e-mail não parece válido. Pode conferir e enviar de novo? (ex.: nome@empresa.com.br)",
    "phone": "Esse telefone não parece válido. Envie com DDD, por exemplo: (11) 98888-7777.",
    "cpf": "Esse CPF não é válido. Confira os 11 dígitos e envie de novo, por favor.",
    "cnpj": "Esse CNPJ não é válido. Confira os 14 dígitos e envie de novo, por favor.",
    "date": "Não entendi a data. Envie no formato dia/mês/ano, por exemplo: 25/12/2026.",
    "time": "Não entendi o horário. Envie no formato hora:minuto, por exemplo: 14:30.",
    "yes_no": "Por favor, responda sim ou não.",
}
CHOICE_RETRY = "Não encontrei essa opção. Toque em uma das opções abaixo ou digite o número dela."


@dataclass(frozen=True, slots=True)
class Limits:
    max_steps: int = 50
    max_visits: int = 20


@dataclass(slots=True)
class State:
    """Where an execution stands (the columns of flow_executions)."""

    block: str | None = None
    awaiting: str | None = None  # input, wait, restart
    variables: dict[str, Any] = field(default_factory=dict)
    visits: dict[str, int] = field(default_factory=dict)
    retries: int = 0
    page: int = 0
    status: str = "active"
    end_reason: str | None = None
    wait_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class Input:
    """What the customer sent: its text (None for a sticker, a photo...), the id of a tapped
    button or list row, the response JSON of a WhatsApp Flow (nfm_reply)."""

    text: str | None
    reply_id: str | None = None
    flow_response: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Start:
    pass


@dataclass(frozen=True, slots=True)
class Expired:
    pass


@dataclass(frozen=True, slots=True)
class Timeout:
    pass


@dataclass(frozen=True, slots=True)
class Answer:
    input: Input


@dataclass(frozen=True, slots=True)
class EffectResult:
    """An effect's outcome: ok with a value (the http response JSON, the AI's text) or an error."""

    ok: bool
    value: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Done:
    result: EffectResult


Event = Start | Expired | Timeout | Answer | Done


@dataclass(frozen=True, slots=True)
class HttpCall:
    """Headers are texts, or {"integration": id}: that integration's Vault secret."""

    block: str
    method: str
    url: str
    headers: Mapping[str, Any]
    body: Any
    timeout: float


@dataclass(frozen=True, slots=True)
class AiCall:
    block: str
    prompt: str


@dataclass(frozen=True, slots=True)
class RecordCall:
    """A create_ticket / create_lead action: `key` (block:visit) makes a retried turn's record the same."""

    block: str
    key: str
    action: Mapping[str, Any]


Effect = HttpCall | AiCall | RecordCall
RECORD_ACTIONS = ("create_ticket", "create_lead")


@dataclass(frozen=True, slots=True)
class Step:
    block: str
    type: str
    input: str | None
    outcome: str


@dataclass(frozen=True, slots=True)
class Handoff:
    reason: str
    team_id: str | None = None


class Turn:
    """One turn of one execution. Feed it events; read what it decided."""

    def __init__(self, graph: Graph, state: State, *, limits: Limits, context: Mapping[str, str]) -> None:
        self.graph = graph
        self.state = State(block=state.block, awaiting=state.awaiting, variables=dict(state.variables),
                           visits=dict(state.visits), retries=state.retries, page=state.page)  # fmt: skip
        self.limits = limits
        self.context = context
        self.messages: list[dict[str, Any]] = []
        self.steps: list[Step] = []
        self.actions: list[dict[str, Any]] = []
        self.handoff: Handoff | None = None
        self.pending: Effect | None = None
        self.input: str | None = None
        self._ran = 0

    # -- events --------------------------------------------------------------------------

    def feed(self, event: Event) -> Effect | None:
        """Run the event; returns the effect the turn waits for, or None when it is over."""
        self.pending = None
        state = self.state
        match event:
            case Start():
                self._reset()
                self._go(self.graph.start)
            case Expired():
                state.block, state.awaiting = None, "restart"
                self.messages.append(yes_no_message(EXPIRED_NOTICE, yes="Sim, recomeçar", no="Não, obrigado"))
            case Timeout():
                if state.awaiting == "wait" and state.block is not None:
                    block = self.graph.blocks[state.block]
                    state.awaiting = None
                    self._log(block, None, "timeout")
                    self._take(block, "timeout")
            case Answer(input=given):
                self.input = given.text if given.text is not None else given.reply_id
                self._answer(given)
            case Done(result=result):
                self._done(result)
        return self.pending

    def _answer(self, given: Input) -> None:
        state = self.state
        if state.awaiting == "restart":
            if given.reply_id == "yes" or (given.reply_id is None and given.text and fold(given.text) in YES):
                self._reset()
                self._go(self.graph.start)
            else:
                self.messages.append(text_message(RESTART_DECLINED))
                self._finish("abandoned", "the customer did not restart the expired flow")
            return
        if state.block is None:  # nothing asked: a start that never ran
            self._go(self.graph.start)
            return
        block = self.graph.blocks[state.block]
        if state.awaiting == "wait":
            if var := block.data.get("variable"):
                state.variables[str(var)] = given.text
            state.awaiting = None
            self._log(block, given.text, "next")
            self._take(block, "next")
        elif block.type == "question":
            kind = str(block.data.get("kind") or "text")
            value = given.reply_id if kind == "yes_no" and given.reply_id in ("yes", "no") else None
            value = value or parse_answer(kind, given.text)
            self._accept(block, given, value, "next")
        elif block.type == "choice":
            choices = options(block)
            if given.reply_id in (MORE_ID, FIRST_ID):
                state.page = state.page + 1 if given.reply_id == MORE_ID else 0
                self._log(block, given.reply_id, f"page {state.page + 1}")
                self.messages.append(choice_message(fill(block.text(), self._vars()), choices, state.page))
                return
            option = chosen_option(choices, given.reply_id, given.text)
            if option is not None:
                state.variables[f"{block.data['variable']}_label"] = option.label
            self._accept(block, given, option.id if option else None, option.id if option else "")
        elif block.type == "whatsapp_flow":
            response = dict(given.flow_response) if given.flow_response is not None else None
            self._accept(block, given, response, "next")

    def _accept(self, block: Block, given: Input, value: Any, port: str) -> None:
        state = self.state
        shown = given.text if given.text is not None else given.reply_id
        if value is not None:
            state.variables[str(block.data["variable"])] = value
            state.awaiting, state.retries, state.page = None, 0, 0
            self._log(block, shown, port)
            self._take(block, port)
            return
        state.retries += 1
        if state.retries > int(block.data.get("max_retries", 2)):
            state.awaiting, state.retries = None, 0
            self._log(block, shown, "invalid")
            self._take(block, "invalid")
            return
        self._log(block, shown, f"retry {state.retries}")
        retry = block.text("retry_text")
        if block.type == "choice":
            body = retry or CHOICE_RETRY
            self.messages.append(choice_message(fill(body, self._vars()), options(block), state.page))
        elif block.data.get("kind") == "yes_no":
            self.messages.append(yes_no_message(fill(retry or RETRY_HINTS["yes_no"], self._vars())))
        else:
            hint = RETRY_HINTS.get(str(block.data.get("kind") or "text"), RETRY_HINTS["text"])
            self.messages.append(text_message(fill(retry or hint, self._vars())))

    def _done(self, result: EffectResult) -> None:
        state = self.state
        block = self.graph.blocks[str(state.block)]
        if not result.ok:
            self._log(block, None, f"error: {result.error}"[:500])
            self._take(block, "error")
            return
        if block.type == "http":
            saves = block.data.get("save") or {}
            for variable, path in saves.items():
                state.variables[str(variable)] = dig(result.value, str(path))
        else:
            answer = str(result.value or "")
            if var := block.data.get("variable"):
                state.variables[str(var)] = answer
            if block.data.get("send") is True and answer:
                self.messages.append(text_message(answer))
        self._log(block, None, "next")
        self._take(block, "next")

    # -- running blocks ------------------------------------------------------------------

    def _reset(self) -> None:
        state = self.state
        state.variables, state.visits, state.retries, state.page, state.awaiting = {}, {}, 0, 0, None

    def _go(self, block_id: str | None) -> None:
        while block_id is not None and self.state.status == "active":
            block = self.graph.blocks[block_id]
            visits = self.state.visits.get(block_id, 0)
            if self._ran >= self.limits.max_steps:
                self._fail(block, f"loop guard: more than {self.limits.max_steps} blocks in one turn")
                return
            if visits >= self.limits.max_visits:
                self._fail(block, f"loop guard: block ran {visits} times in this execution")
                return
            self.state.visits[block_id] = visits + 1
            self._ran += 1
            self.state.block = block_id
            block_id = self._enter(block)

    def _enter(self, block: Block) -> str | None:
        """Run a block; the next block to run, or None when the turn stops here."""
        state, data, variables = self.state, block.data, self._vars()
        match block.type:
            case "message":
                self.messages.append(text_message(fill(block.text(), variables), data.get("media")))
            case "question":
                body = fill(block.text(), variables)
                yes_no = data.get("kind") == "yes_no"
                self.messages.append(yes_no_message(body) if yes_no else text_message(body))
                self._ask(block)
                return None
            case "choice":
                state.page = 0
                self.messages.append(choice_message(fill(block.text(), variables), options(block)))
                self._ask(block)
                return None
            case "whatsapp_flow":
                self.messages.append(flow_message(block, variables))
                self._ask(block)
                return None
            case "condition":
                rules = [holds(rule, variables) for rule in data.get("rules", [])]
                result = any(rules) if data.get("match") == "any" else all(rules)
                port = "true" if result else "false"
                self._log(block, None, port)
                return self._next(block, port)
            case "set":
                state.variables[str(data["variable"])] = fill(block.text("value"), variables)
            case "action":
                action = {k: fill(v, variables) if isinstance(v, str) else v for k, v in data.items()
                          if k not in ("id", "type")}  # fmt: skip
                if action.get("action") in RECORD_ACTIONS:  # done now: its protocol / id is for later blocks
                    key = f"{block.id}:{state.visits[block.id]}"
                    self.pending = RecordCall(block=block.id, key=key, action=action)
                    return None
                self.actions.append({**action, "block": block.id})
            case "http":
                self.pending = HttpCall(
                    block=block.id, method=str(data.get("method") or "GET"),
                    url=fill(block.text("url"), variables),
                    headers={str(k): fill(v, variables) if isinstance(v, str) else v
                             for k, v in (data.get("headers") or {}).items()},
                    body=fill_json(data.get("body"), variables),
                    timeout=float(data.get("timeout_ms", 5000)) / 1000,
                )  # fmt: skip
                return None
            case "ai":
                self.pending = AiCall(block=block.id, prompt=fill(block.text("prompt"), variables))
                return None
            case "wait":
                state.awaiting, state.wait_seconds = "wait", int(data.get("seconds", 3600))
                self._log(block, None, "waiting")
                return None
            case "handoff":
                self.messages.append(text_message(fill(block.text() or HANDOFF_NOTICE, variables)))
                team = data.get("team_id")
                self.handoff = Handoff(reason=block.text("reason") or f"flow block {block.id}",
                                       team_id=str(team) if team else None)  # fmt: skip
                self._log(block, None, "handoff")
                self._finish("completed", "handed off")
                return None
            case "end":
                if block.text():
                    self.messages.append(text_message(fill(block.text(), variables)))
                self._log(block, None, "end")
                self._finish("completed", "end")
                return None
        self._log(block, None, "next")
        return self._next(block, "next")

    def _ask(self, block: Block) -> None:
        self.state.awaiting, self.state.retries = "input", 0
        self._log(block, None, "asked")

    def _next(self, block: Block, port: str) -> str | None:
        target = self.graph.follow(block.id, port)
        if target is None:
            self._dead_end(block, port)
        return target

    def _take(self, block: Block, port: str) -> None:
        self._go(self._next(block, port))

    def _dead_end(self, block: Block, port: str) -> None:
        """A port nothing follows (invalid, error, timeout left unconnected): people take over."""
        self.messages.append(text_message(HANDOFF_NOTICE))
        self.handoff = Handoff(reason=f"flow: no path for {port} at block {block.id}")
        self._finish("completed", f"handed off: {port} at block {block.id}")

    def _fail(self, block: Block, reason: str) -> None:
        self._log(block, None, reason)
        self.messages.append(text_message(LOOP_NOTICE))
        self.handoff = Handoff(reason=f"flow failed: {reason} (block {block.id})")
        self._finish("failed", f"{reason} (block {block.id})")

    def _finish(self, status: str, reason: str) -> None:
        self.state.status, self.state.end_reason, self.state.awaiting = status, reason, None

    def _log(self, block: Block, given: str | None, outcome: str) -> None:
        self.steps.append(Step(block=block.id, type=block.type, input=given, outcome=outcome))

    def _vars(self) -> dict[str, Any]:
        return {**self.context, **self.state.variables}

    # -- the commit --------------------------------------------------------------------

    def commit(self) -> dict[str, Any]:
        """The turn as flow_commit_turn takes it (replies and handoff travel apart)."""
        state = self.state
        return {
            "block": state.block, "awaiting": state.awaiting, "variables": state.variables,
            "visits": state.visits, "retries": state.retries, "page": state.page, "status": state.status,
            "end_reason": state.end_reason, "wait_seconds": state.wait_seconds, "input": self.input,
            "steps": [{"block": s.block, "type": s.type, "input": s.input, "outcome": s.outcome}
                      for s in self.steps],
            "actions": self.actions,
            "handoff": None if self.handoff is None
            else {"reason": self.handoff.reason, "team_id": self.handoff.team_id},
        }  # fmt: skip
