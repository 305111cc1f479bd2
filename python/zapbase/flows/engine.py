"""`FlowEngine`: the flow route of the inbound processor, around the pure interpreter.

    begun = await engine.begin(conn, message)    # flow_begin_turn: which execution, which event
    turn = await engine.run(begun, message, pool)  # the interpreter; http / AI / record effects
    ... in the processor's transaction: replies queued, engine.commit(conn, begun, turn), message finished

An http block goes only to public https addresses (the webhooks' address guard; local mode
allows http and private ones), never follows redirects, reads at most 256 KB and needs a
JSON answer; a refused address, a timeout, an HTTP error status or garbage takes the
block's error path. An AI block asks the `Asker` (the AI bot's gateway: budget, usage log
and fallback apply); without one, or when it fails, the error path too. A create_ticket /
create_lead block is opened by flow_record in a short transaction of its own before the turn
commits (so a later message can quote the protocol), once per block visit even when the turn
is retried; the ticket's or lead's refusal takes the block's error path.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import httpx
from psycopg.types.json import Jsonb

from zapbase.db.pool import Connection, Pool
from zapbase.flows.graph import Graph
from zapbase.flows.interpreter import (
    Answer,
    Done,
    Effect,
    EffectResult,
    Event,
    Expired,
    HttpCall,
    Input,
    Limits,
    RecordCall,
    Start,
    State,
    Timeout,
    Turn,
)
from zapbase.webhooks.guard import RefusedTarget, resolve_target
from zapbase.whatsapp.inbound import InboundMessage

__all__ = ["Asker", "Begun", "Classifier", "FlowEngine"]

_logger = logging.getLogger(__name__)

BODY_CAP = 256 * 1024
USER_AGENT = "Zapbase-Flows/1"
_EVENTS: dict[str, Event] = {"start": Start(), "expired": Expired(), "timeout": Timeout()}


class Asker(Protocol):
    """Answers an AI block's prompt for the conversation of `message`; raises when it cannot."""

    async def ask(self, message: InboundMessage, prompt: str) -> str: ...


class Classifier(Protocol):
    """Classifies a customer message's intent and stores it on the message (for intent triggers)."""

    async def classify(self, message: InboundMessage) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Begun:
    """What flow_begin_turn decided for a message."""

    execution_id: str
    revision: int
    event: Event
    graph: Graph
    state: State
    limits: Limits
    context: Mapping[str, str]
    secrets: Mapping[str, str]

    @classmethod
    def from_row(cls, row: Mapping[str, Any], message: InboundMessage) -> Begun:
        execution, flow, contact = row["execution"], row["flow"], row["contact"]
        event = _EVENTS.get(row["event"]) or Answer(_input(message))
        state = State(block=execution["current_block"], awaiting=execution["awaiting"],
                      variables=dict(execution["variables"]), visits=dict(execution["visits"]),
                      retries=execution["retries"], page=execution["page"])  # fmt: skip
        return cls(
            execution_id=str(execution["id"]), revision=int(execution["revision"]), event=event,
            graph=Graph.from_json(row["graph"]), state=state,
            limits=Limits(max_steps=flow["max_steps_per_turn"], max_visits=flow["max_block_visits"]),
            context={"contact.name": contact["name"], "contact.wa_id": contact["wa_id"],
                     "flow.name": flow["name"]},
            secrets=row["secrets"] or {},
        )  # fmt: skip


def _input(message: InboundMessage) -> Input:
    """The customer's message as a flow answer: text (none for stickers and media), the tapped
    id, a WhatsApp Flow's response JSON."""
    response: Mapping[str, Any] | None = None
    interactive = message.payload.get("interactive", message.payload)
    nfm = interactive.get("nfm_reply") if isinstance(interactive, Mapping) else None
    if isinstance(nfm, Mapping):
        try:
            parsed = json.loads(str(nfm.get("response_json") or "{}"))
        except ValueError:
            parsed = None
        response = parsed if isinstance(parsed, Mapping) else None
    text = message.content if message.type in ("text", "interactive", "button") else None
    reply_id = None if response is not None else message.interactive_reply_id
    return Input(text=None if reply_id is not None else text, reply_id=reply_id, flow_response=response)


class FlowEngine:
    """Runs flow turns for the processor.

    **Parameters**

    * **http** - client of http blocks (no redirects followed).
    * **local_mode** - let http blocks call http:// and private addresses (development, tests).
    * **asker** - answers AI blocks; None: they take their error path.
    * **classifier** - the intents of customer messages (intent triggers); None: no message
      gets one.
    """

    def __init__(
        self, *, http: httpx.AsyncClient, local_mode: bool = False, asker: Asker | None = None,
        classifier: Classifier | None = None,
    ) -> None:  # fmt: skip
        self._http = http
        self._local_mode = local_mode
        self._asker = asker
        self._classifier = classifier

    async def classify(self, message: InboundMessage) -> None:
        """The message's intent, stored before `begin` reads it. Best effort: a failure is logged
        and the turn goes on without an intent."""
        if self._classifier is None or message.type == "system":
            return
        try:
            await self._classifier.classify(message)
        except Exception:  # a classification never costs the customer their answer
            _logger.exception("classifying message %s failed", message.message_id)

    async def begin(self, conn: Connection, message: InboundMessage) -> Begun | None:
        """The message's flow turn (committed by flow_begin_turn), or None: no flow takes it."""
        async with conn.transaction():
            cur = await conn.execute("select public.flow_begin_turn(%s) as turn", (message.message_id,))
            row = await cur.fetchone()
        turn = row["turn"] if row else None
        return Begun.from_row(turn, message) if turn else None

    async def run(self, begun: Begun, message: InboundMessage, pool: Pool) -> Turn:
        turn = Turn(begun.graph, begun.state, limits=begun.limits, context=begun.context)
        effect = turn.feed(begun.event)
        while effect is not None:
            effect = turn.feed(Done(await self._perform(effect, begun, message, pool)))
        return turn

    @staticmethod
    async def commit(conn: Connection, begun: Begun, turn: Turn) -> None:
        await conn.execute("select public.flow_commit_turn(%s, %s, %s)",
                           (begun.execution_id, begun.revision, Jsonb(turn.commit())))  # fmt: skip

    async def _perform(
        self, effect: Effect, begun: Begun, message: InboundMessage, pool: Pool
    ) -> EffectResult:
        if isinstance(effect, HttpCall):
            return await self._call(effect, begun.secrets)
        if isinstance(effect, RecordCall):
            return await self._record(effect, begun, pool)
        if self._asker is None:
            return EffectResult(ok=False, error="no AI gateway in this worker")
        try:
            return EffectResult(ok=True, value=await self._asker.ask(message, effect.prompt))
        except Exception as exc:  # the gateway's refusals and failures all take the error path
            _logger.warning("AI block %s failed: %s", effect.block, exc)
            return EffectResult(ok=False, error=f"AI: {exc}")

    @staticmethod
    async def _record(call: RecordCall, begun: Begun, pool: Pool) -> EffectResult:
        """Raises 40001 when the execution moved on: the processor retries the whole turn."""
        async with pool.connection() as conn, conn.transaction():
            cur = await conn.execute(
                "select public.flow_record(%s, %s, %s, %s) as record",
                (begun.execution_id, begun.revision, call.key, Jsonb(call.action)),
            )
            row = await cur.fetchone()
        record = row["record"] if row else None
        if not record or "error" in record:
            _logger.warning("flow block %s: %s", call.block, record and record["error"])
            return EffectResult(ok=False, error=str(record and record["error"])[:400])
        return EffectResult(ok=True, value=record["value"])

    async def _call(self, call: HttpCall, secrets: Mapping[str, str]) -> EffectResult:
        try:
            target = await resolve_target(call.url, local_mode=self._local_mode)
        except RefusedTarget as exc:
            return EffectResult(ok=False, error=str(exc))
        headers = {"user-agent": USER_AGENT, "accept": "application/json", "host": target.host}
        for name, value in call.headers.items():
            if isinstance(value, Mapping):
                secret = secrets.get(str(value.get("integration")))
                if secret is None:
                    return EffectResult(ok=False, error=f"header {name}: the integration has no secret")
                headers[name] = secret
            else:
                headers[name] = str(value)
        extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else {}
        body = None if call.body is None or call.method == "GET" else json.dumps(call.body).encode()
        if body is not None:
            headers["content-type"] = "application/json"
        kept = bytearray()
        try:
            with anyio.fail_after(call.timeout):
                request = self._http.stream(call.method, target.url, content=body, headers=headers,
                                            extensions=extensions, follow_redirects=False)  # fmt: skip
                async with request as response:
                    async for chunk in response.aiter_raw():
                        kept += chunk
                        if len(kept) > BODY_CAP:
                            return EffectResult(ok=False, error=f"the response exceeds {BODY_CAP} bytes")
        except TimeoutError:
            return EffectResult(ok=False, error=f"timed out after {call.timeout:g} s")
        except httpx.HTTPError as exc:
            return EffectResult(ok=False, error=f"{type(exc).__name__}: {exc}".rstrip(": "))
        if not 200 <= response.status_code < 300:
            return EffectResult(ok=False, error=f"HTTP {response.status_code}")
        try:
            value = json.loads(bytes(kept)) if kept else None
        except ValueError:
            return EffectResult(ok=False, error="the response is not JSON")
        return EffectResult(ok=True, value=value)
