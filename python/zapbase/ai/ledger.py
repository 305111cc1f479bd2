"""The gateway's Ledger on PostgreSQL: budgets, usage log and response cache in two round trips.

`PostgresLedger` maps the two calls of `zapbase.ai.chain.Ledger` onto the SQL pair of the
ai module (supabase/migrations/20260101000300_ai.sql)::

    begin   select public.ai_begin(...)    cache lookup (a hit is logged as cache_hit),
                                           else a budget reservation, or a refusal
    finish  select public.ai_finish(...)   one ai_usage row per attempt (failed ones through
                                           failed_attempts), budget charge, cache store

Each is one statement on an autocommit connection, sent without a server-side prepared
statement (Supavisor's transaction mode cannot keep them across transactions), so each
costs one round trip. The worker's database role must be able to execute the ai_*
functions: service_role, or a role that inherits it (Supabase's postgres).

Usage::

    async with open_pool(worker_url(settings), size=10) as pool:   # zapbase.db.pool
        gateway = Gateway(providers, PostgresLedger(pool))
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from psycopg.types.json import Jsonb

from zapbase.ai.types import (
    ChatRequest,
    ChatResult,
    Failure,
    GatewayPolicy,
    Link,
    Outcome,
    Refusal,
    Reservation,
    Success,
    Usage,
)
from zapbase.db.pool import Pool

__all__ = ["PostgresLedger", "estimate_input_tokens"]

_logger = logging.getLogger(__name__)


# Characters per token when estimating a prompt before the call (Portuguese and English
# text run close to 4 with the BPE tokenizers of Anthropic and OpenAI).
_CHARS_PER_TOKEN = 4

_BEGIN = """
select public.ai_begin(
  tenant_id => %(tenant_id)s::uuid, feature => %(feature)s, model => %(model)s,
  cache_key => %(cache_key)s, estimated_input_tokens => %(input_tokens)s,
  estimated_output_tokens => %(output_tokens)s, policy_id => %(policy_id)s::uuid,
  conversation_id => %(conversation_id)s::uuid, message_id => %(message_id)s::uuid,
  bot_id => %(bot_id)s::uuid, request_id => %(request_id)s, phone => %(phone)s)
"""

_FINISH = """
select public.ai_finish(
  reservation_id => %(reservation_id)s::uuid, outcome => %(outcome)s, model => %(model)s,
  input_tokens => %(input_tokens)s, output_tokens => %(output_tokens)s,
  cache_read_tokens => %(cache_read_tokens)s, cache_write_tokens => %(cache_write_tokens)s,
  latency_ms => %(latency_ms)s, response => %(response)s, error_code => %(error_code)s,
  error_message => %(error_message)s, failed_attempts => %(failed_attempts)s,
  metadata => %(metadata)s)
"""


def estimate_input_tokens(request: ChatRequest) -> int:
    """Input tokens of the prompt a provider will see, rounded up: what a reservation holds."""
    chars = (
        len(request.system)
        + sum(len(m.content) for m in request.messages)
        + sum(len(passage) for passage in request.knowledge)
    )
    return -(-chars // _CHARS_PER_TOKEN)


class PostgresLedger:
    """`Ledger` over the ai_begin / ai_finish SQL functions (see the module docstring).

    Parameters:
        pool: the worker's opened pool (`zapbase.db.pool.open_pool`); each call
            borrows one connection for one statement.
    """

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def _call(self, query: str, params: dict[str, Any]) -> Any:
        async with self._pool.connection() as conn:
            # Whatever the pool's settings: a named prepared statement would not survive
            # Supavisor's transaction mode.
            conn.prepare_threshold = None
            cur = await conn.execute(query, params)
            row = await cur.fetchone()
        assert row is not None  # a scalar select always returns its row
        return next(iter(row.values()))

    async def begin(
        self, request: ChatRequest, link: Link, policy: GatewayPolicy, key: str | None
    ) -> ChatResult | Reservation | Refusal:
        if request.tenant_id is None:
            raise ValueError("the ledger needs the request's tenant_id to account for it")
        begun: dict[str, Any] = await self._call(
            _BEGIN,
            {
                "tenant_id": request.tenant_id,
                "feature": request.feature,
                "model": link.gateway_id,
                "cache_key": key,
                "input_tokens": estimate_input_tokens(request),
                "output_tokens": request.max_tokens,
                "policy_id": policy.id,
                "conversation_id": request.conversation_id,
                "message_id": request.message_id,
                "bot_id": request.bot_id,
                "request_id": request.request_id,
                "phone": request.phone,
            },
        )
        status = begun["status"]
        if status == "reserved":
            return Reservation(id=begun["reservation_id"], link=link)
        if status == "hit":
            return _cached_result(begun)
        if status == "refused":
            _logger.info("reply refused for tenant %s: %s", request.tenant_id, begun["message"])
            return Refusal(reason=begun["reason"], message=begun["message"] or "")
        raise ValueError(f"ai_begin answered an unknown status {status!r}")

    async def finish(self, reservation: Reservation, attempts: Sequence[Outcome], *, cache: bool) -> None:
        failed, final = attempts[:-1], (attempts[-1] if attempts else None)
        params: dict[str, Any] = {
            "reservation_id": reservation.id,
            "outcome": "cancelled",
            "model": None,
            "input_tokens": 0,
            "output_tokens": 0,
            "cache_read_tokens": 0,
            "cache_write_tokens": 0,
            "latency_ms": None,
            "response": None,
            "error_code": None,
            "error_message": None,
            "failed_attempts": Jsonb([_failed_attempt(_only_failure(f)) for f in failed]),
            "metadata": Jsonb({}),
        }
        if isinstance(final, Success):
            result = final.result
            usage = result.usage
            params |= {
                "outcome": "success",
                "model": final.link.gateway_id,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cache_read_tokens": usage.cache_read_tokens,
                "cache_write_tokens": usage.cache_write_tokens,
                "latency_ms": result.latency_ms,
                # ai_finish stores the answer when it gets one and the reservation has a key.
                "response": Jsonb(result.to_dict()) if cache else None,
                "metadata": Jsonb(
                    _drop_none(provider_request_id=result.request_id, stop_reason=result.stop_reason)
                ),
            }
        elif isinstance(final, Failure):
            params |= {
                "outcome": "failure",
                "model": final.link.gateway_id,
                "latency_ms": final.latency_ms,
                "error_code": final.error_code,
                "error_message": final.message,
                "metadata": Jsonb(_failure_metadata(final)),
            }
        finished: dict[str, Any] = await self._call(_FINISH, params)
        if finished["status"] == "already_settled":
            _logger.warning("reservation %s was already settled", reservation.id)
        for alert in finished.get("alerts") or ():
            _logger.info("budget %s crossed %s%%", alert["budget_id"], alert["threshold"])


def _only_failure(outcome: Outcome) -> Failure:
    if not isinstance(outcome, Failure):
        raise ValueError("only the last attempt of a reply can be a success")
    return outcome


def _failed_attempt(failure: Failure) -> dict[str, Any]:
    """An element of ai_finish's failed_attempts: becomes one ai_usage row (outcome failure)."""
    return {
        "model": failure.link.gateway_id,
        "error_code": failure.error_code,
        "error_message": failure.message,
        "latency_ms": failure.latency_ms,
        "metadata": _failure_metadata(failure),
    }


def _failure_metadata(failure: Failure) -> dict[str, Any]:
    return _drop_none(
        status_code=failure.status_code,
        provider_request_id=failure.request_id,
        decision=failure.decision.value,
    )


def _drop_none(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def _cached_result(hit: dict[str, Any]) -> ChatResult:
    """The answer of a cache hit: the ChatResult stored by `finish`, or, for an entry
    stored as bare text by someone else, that text under the registry's model name."""
    response = hit.get("response")
    if isinstance(response, dict) and "text" in response:
        return ChatResult.from_dict(response)
    provider, _, model = str(hit["model"]).partition("/")
    return ChatResult(
        text=hit["response_text"] or "", provider=provider, model=model, usage=Usage(), latency_ms=0
    )
