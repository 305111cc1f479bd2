"""`IntentClassifier`: the intent of a customer message, for flow triggers, the bot and analytics.

    await classifier.classify(message)   # before the flow turn; stored on the message by SQL

SQL decides whether to ask at all (`intent_begin`: the tenant has active intents, the message
has text, no cached answer) and which model (the cheapest of the tenant's chain); the model
answers through the gateway (budget, usage log with feature 'intent', fallback) and its answer
is validated here: anything but a JSON object naming an active intent (or "none") with a
confidence between 0 and 1 is logged and gives no intent. `intent_record` caches, applies the
tenant's threshold and stores the result.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from zapbase.ai.types import ChatMessage, ChatRequest
from zapbase.bot.config import load_policy
from zapbase.bot.gateways import Gateways
from zapbase.db.pool import Connect
from zapbase.whatsapp.inbound import InboundMessage

__all__ = ["INTENT_FEATURE", "IntentClassifier", "intent_prompt", "parse_answer"]

_logger = logging.getLogger(__name__)

INTENT_FEATURE = "intent"  # ai_usage.feature of classifications
_MAX_TOKENS = 60
_INSTRUCTIONS = """Você classifica mensagens de clientes no WhatsApp. Escolha a intenção da mensagem \
entre as listadas abaixo, ou "none" se nenhuma servir.
Responda só com JSON, sem texto em volta: {"intent": "<nome ou none>", "confidence": <0 a 1>}

Intenções:
"""


def intent_prompt(intents: Sequence[Mapping[str, Any]]) -> str:
    """The system prompt: the instructions, then each intent with its description and examples."""
    lines = []
    for intent in intents:
        lines.append(f"- {intent['name']}: {intent['description']}")
        lines.extend(f'  exemplo: "{example}"' for example in intent["examples"])
    return _INSTRUCTIONS + "\n".join(lines)


def parse_answer(text: str, names: Collection[str]) -> tuple[str | None, float]:
    """(intent or None for "none", confidence) from the model's answer; raises ValueError on
    anything else (not JSON, an unknown intent, a confidence outside 0-1)."""
    body = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    answer = json.loads(body)
    if not isinstance(answer, dict):
        raise ValueError("the answer is not a JSON object")
    intent, confidence = answer.get("intent"), answer.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 <= confidence <= 1:
        raise ValueError(f"confidence {confidence!r} is not a number between 0 and 1")
    if intent is None or (isinstance(intent, str) and intent.strip().lower() == "none"):
        return None, float(confidence)
    if not isinstance(intent, str) or intent.strip().lower() not in names:
        raise ValueError(f"{intent!r} is not one of the tenant's intents")
    return intent.strip().lower(), float(confidence)


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
        the threshold, or an invalid answer (logged). Budget refusals and failed providers give
        None too; database errors raise."""
        async with self._connect() as conn, conn.transaction():
            cur = await conn.execute("select public.intent_begin(%s) as job", (message.message_id,))
            job = ((await cur.fetchone()) or {}).get("job")
        if not job:
            return None
        async with self._connect() as conn:
            # intent_cache is the cache: the gateway's would replay an answer refused here
            policy = await load_policy(conn, message.tenant_id, None)
            policy = dataclasses.replace(policy, cache_ttl_seconds=0)
            gateway = await self._gateways.for_tenant(conn, message.tenant_id)
        request = ChatRequest(
            messages=(ChatMessage(role="user", content=message.content or ""),),
            system=intent_prompt(job["intents"]), model=job["model"], max_tokens=_MAX_TOKENS,
            temperature=0.0, feature=INTENT_FEATURE, tenant_id=str(message.tenant_id),
            conversation_id=str(message.conversation_id), message_id=str(message.message_id),
            request_id=message.wamid,
        )  # fmt: skip
        response = await gateway.chat(request, policy)
        if response.result is None:
            reason = response.refusal.reason if response.refusal else response.error and response.error.code
            _logger.warning("message %s not classified: %s", message.message_id, reason)
            return None
        try:
            intent, confidence = parse_answer(response.result.text, {i["name"] for i in job["intents"]})
        except ValueError as exc:  # json.JSONDecodeError is one
            _logger.warning("message %s: the classifier's answer is refused (%s): %.200r",
                            message.message_id, exc, response.result.text)  # fmt: skip
            return None
        async with self._connect() as conn, conn.transaction():
            cur = await conn.execute(
                "select public.intent_record(%s, %s, %s, %s::numeric, %s) as intent",
                (message.message_id, job["key"], intent, round(confidence, 3),
                 f"{response.result.provider}/{response.result.model}"[:120]),
            )  # fmt: skip
            kept: str | None = ((await cur.fetchone()) or {}).get("intent")
        _logger.info("message %s: intent %s (%.2f, kept: %s)", message.message_id, intent, confidence, kept)
        return kept
