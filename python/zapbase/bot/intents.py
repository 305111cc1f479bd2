"""`IntentClassifier`: the intent of a customer message, for flow triggers, the bot and analytics.

    await classifier.classify(message)   # before the flow turn; stored on the message by SQL

SQL decides whether to ask at all (`intent_begin`: the tenant has active intents, the message
has text, no cached answer) and which model (the cheapest of the tenant's chain); the model
answers through the gateway's structured output (budget, usage log with feature 'intent',
fallback; validated against a schema naming the active intents, asked again once when
invalid). An answer still invalid, a refusal or failed providers are logged and give no
intent. `intent_record` caches, applies the tenant's threshold and stores the result.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from zapbase.ai.types import ChatMessage, ChatRequest
from zapbase.bot.config import load_policy
from zapbase.bot.gateways import Gateways
from zapbase.db.pool import Connect
from zapbase.whatsapp.inbound import InboundMessage

__all__ = ["INTENT_FEATURE", "IntentClassifier", "answer_schema", "intent_prompt"]

_logger = logging.getLogger(__name__)

INTENT_FEATURE = "intent"  # ai_usage.feature of classifications
NONE = "none"
_MAX_TOKENS = 60
_INSTRUCTIONS = """Você classifica mensagens de clientes no WhatsApp. Escolha a intenção da mensagem \
entre as listadas abaixo, ou "none" se nenhuma servir, e diga sua confiança (0 a 1).

Intenções:
"""


def intent_prompt(intents: Sequence[Mapping[str, Any]]) -> str:
    """The system prompt: the instructions, then each intent with its description and examples."""
    lines = []
    for intent in intents:
        lines.append(f"- {intent['name']}: {intent['description']}")
        lines.extend(f'  exemplo: "{example}"' for example in intent["examples"])
    return _INSTRUCTIONS + "\n".join(lines)


def answer_schema(names: Sequence[str]) -> dict[str, Any]:
    """What the model must answer: one of the names or "none", and a confidence in [0, 1]."""
    return {
        "type": "object",
        "properties": {"intent": {"enum": [*names, NONE]},
                       "confidence": {"type": "number", "minimum": 0, "maximum": 1}},
        "required": ["intent", "confidence"],
        "additionalProperties": False,
    }  # fmt: skip


class IntentClassifier:
    """Classifies inbound customer messages.

    Parameters:
        connect: lends connections for intent_begin / intent_record and the policy, each given
            back before the model is called.
        gateways: the provider chain over the ledger, on the tenant's own keys when it has them.
    """

    def __init__(self, *, connect: Connect, gateways: Gateways) -> None:
        self._connect = connect
        self._gateways = gateways

    async def classify(self, message: InboundMessage) -> str | None:
        """The intent kept for the message (stored by SQL), or None: none asked, none fits, below
        the threshold, an invalid answer, a budget refusal or failed providers (logged).
        Database errors raise."""
        async with self._connect() as conn, conn.transaction():
            cur = await conn.execute("select public.intent_begin(%s) as job", (message.message_id,))
            job = ((await cur.fetchone()) or {}).get("job")
        if not job:
            return None
        async with self._connect() as conn:
            policy = await load_policy(conn, message.tenant_id, None)
            gateway = await self._gateways.for_tenant(conn, message.tenant_id)
        request = ChatRequest(
            messages=(ChatMessage(role="user", content=message.content or ""),),
            system=intent_prompt(job["intents"]), model=job["model"], max_tokens=_MAX_TOKENS,
            temperature=0.0, feature=INTENT_FEATURE, tenant_id=str(message.tenant_id),
            conversation_id=str(message.conversation_id), message_id=str(message.message_id),
            request_id=message.wamid,
        )  # fmt: skip
        schema = answer_schema([i["name"] for i in job["intents"]])
        answer = await gateway.complete_json(request, policy, schema=schema, name="intent")
        if not answer.ok or answer.result is None:
            _logger.warning("message %s not classified: %s (%.200r)", message.message_id, answer.message,
                            answer.text)  # fmt: skip
            return None
        intent = None if answer.value["intent"] == NONE else str(answer.value["intent"])
        confidence = round(float(answer.value["confidence"]), 3)
        if not math.isfinite(confidence):  # NaN passes the schema's bounds
            _logger.warning("message %s not classified: confidence %s", message.message_id, confidence)
            return None
        async with self._connect() as conn, conn.transaction():
            cur = await conn.execute(
                "select public.intent_record(%s, %s, %s, %s::numeric, %s) as intent",
                (message.message_id, job["key"], intent, confidence,
                 f"{answer.result.provider}/{answer.result.model}"[:120]),
            )  # fmt: skip
            kept: str | None = ((await cur.fetchone()) or {}).get("intent")
        _logger.info("message %s: intent %s (%.3f, kept: %s)", message.message_id, intent, confidence, kept)
        return kept
