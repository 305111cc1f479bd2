"""Structured output: JSON answers validated against a JSON schema, for features that store
what a model says (conversation insights, playbook drafts, chat search).

Usage (any layer above `ai`; `policy` from `zapbase.bot.config.load_policy`)::

    result = await gateway.complete_json(
        ChatRequest(messages=(ChatMessage(role="user", content=transcript),), system=PROMPT,
                    feature="insight", tenant_id=str(tenant_id), conversation_id=str(conversation_id),
                    max_tokens=2048),
        policy, schema=INSIGHT_SCHEMA, name="conversation_insight")
    if result.ok:
        store(result.value)                 # parsed JSON, valid against INSIGHT_SCHEMA
    else:
        mark(result.status, result.message) # never a default value in its place

`JsonResult.status` (a `JsonStatus`):
    ok              `value` is valid against the schema (Draft 2020-12).
    invalid_output  the model answered twice and neither answer was valid JSON of the schema;
                    `errors` says what was wrong with the last one, `text` is that answer.
    refused         the budget refused the call (`refusal.reason`: limit, paused, trial_ended...);
                    no provider was called.
    failed          every link failed or none could be called (`error` is the last
                    ProviderError, if any).
`responses` holds the gateway response of each call (one, or two after a retry): the
models, attempts and usage of each. `result` is the last ChatResult.

How each link is asked (`ai_models.capabilities.structured_output`, carried on `Link`):
    json_schema   response_format {"type": "json_schema", "json_schema": {"name", "schema"}}
    json_object   response_format {"type": "json_object"}, the schema in the system prompt
    prompt        the schema in the system prompt only (Anthropic, most self-hosted servers)
The answer is validated here whatever the mode: a provider that promises to follow the
schema is checked like one that does not.

Rules:
* An invalid answer is asked again ONCE, with the answer and what was wrong with it
  appended to the conversation; the second answer is the last.
* Each call is an ordinary gateway call: budget reservation, one `ai_usage` row per
  attempt, fallback down the policy's chain. The local answerer is never used (it only
  quotes knowledge passages) and the response cache is skipped (an invalid answer must not
  be replayed).
* A schema that is not itself a valid JSON schema is a programming error: ValueError
  before any call.
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from zapbase.ai.errors import ProviderError
from zapbase.ai.types import ChatMessage, ChatRequest, ChatResult, GatewayPolicy, GatewayResponse, Refusal

__all__ = ["JsonResult", "JsonStatus", "complete_json", "parse_json"]

# At most this many validation errors go back to the model and into `errors`.
_MAX_ERRORS = 5


class JsonStatus(enum.StrEnum):
    OK = "ok"
    INVALID_OUTPUT = "invalid_output"
    REFUSED = "refused"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class JsonResult:
    """What `Gateway.complete_json` produced (see the module docstring)."""

    status: JsonStatus
    value: Any = None
    text: str | None = None
    errors: tuple[str, ...] = ()
    responses: tuple[GatewayResponse, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status is JsonStatus.OK

    @property
    def result(self) -> ChatResult | None:
        return self.responses[-1].result if self.responses else None

    @property
    def refusal(self) -> Refusal | None:
        return self.responses[-1].refusal if self.responses else None

    @property
    def error(self) -> ProviderError | None:
        return self.responses[-1].error if self.responses else None

    @property
    def message(self) -> str:
        """One line for logs and a stored status."""
        if self.status is JsonStatus.INVALID_OUTPUT:
            return "the model's answer is not valid against the schema: " + "; ".join(self.errors)
        if self.status is JsonStatus.REFUSED and self.refusal is not None:
            return f"refused ({self.refusal.reason}): {self.refusal.message}"
        if self.status is JsonStatus.FAILED:
            return f"no provider answered: {self.error.code if self.error else 'none available'}"
        return "ok"


def parse_json(text: str, validator: Draft202012Validator) -> tuple[Any, tuple[str, ...]]:
    """The answer's JSON value and what makes it invalid (nothing: valid). One surrounding
    Markdown code fence is tolerated, since prompt-only models often add it."""
    body = text.strip()
    if body.startswith("```") and body.endswith("```") and body.count("```") == 2:
        body = body[3:-3].removeprefix("json").strip()
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        return None, (f"not JSON: {exc}",)
    found = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    errors = tuple(f"{e.json_path}: {e.message}" for e in found[:_MAX_ERRORS])
    return value, errors


@functools.lru_cache(maxsize=256)
def _validator(schema: str) -> Draft202012Validator:
    """A checked validator per schema: checking a schema costs far more than a call's own
    work, and callers ask with the same few schemas again and again."""
    parsed = json.loads(schema)
    try:
        Draft202012Validator.check_schema(parsed)
    except SchemaError as exc:
        raise ValueError(f"not a valid JSON schema: {exc.message}") from None
    return Draft202012Validator(parsed)


async def complete_json(
    chat: Callable[[ChatRequest, GatewayPolicy], Awaitable[GatewayResponse]],
    request: ChatRequest,
    policy: GatewayPolicy,
    *,
    schema: Mapping[str, Any],
    name: str = "answer",
) -> JsonResult:
    """`chat` (a Gateway's) asked for JSON valid against `schema`, retried once when invalid."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    asked = replace(request, json_schema=schema, schema_name=name)
    responses: list[GatewayResponse] = []
    for _ in range(2):
        response = await chat(asked, policy)
        responses.append(response)
        if response.refusal is not None:
            return JsonResult(status=JsonStatus.REFUSED, responses=tuple(responses))
        if response.result is None:
            return JsonResult(status=JsonStatus.FAILED, responses=tuple(responses))
        text = response.result.text
        value, errors = parse_json(text, validator)
        if not errors:
            return JsonResult(status=JsonStatus.OK, value=value, text=text, responses=tuple(responses))
        correction = (
            "Your answer is not valid against the JSON schema:\n- " + "\n- ".join(errors)
            + "\nAnswer again with the corrected JSON object only."
        )  # fmt: skip
        asked = replace(
            asked,
            messages=(
                *asked.messages,
                ChatMessage(role="assistant", content=text),
                ChatMessage(role="user", content=correction),
            ),
        )
    return JsonResult(status=JsonStatus.INVALID_OUTPUT, text=text, errors=errors, responses=tuple(responses))
