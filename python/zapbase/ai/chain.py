"""The provider chain: cache, budget reservation, fallback and settlement of every reply.

`Gateway.chat(request, policy)` costs the ledger two calls in the common case::

    ledger.begin ─hit─► answer (the ledger logged the hit)
        │ ├refused─► no provider is called
        │reserved (one reservation for the whole reply)
        ▼
    for each link: skip if its provider is missing or cooling down
                   call ─ok─► ledger.finish(failures so far + success, cache it) ─► answer
                        └error─► error.decision:
                                   next_provider      cool the provider down, next link
                                   alert_and_next     alert, cool down, next link
                                   next_larger_model  next link with a larger context window
                                   stop_and_alert     alert, stop
                                   fatal              stop
    chain exhausted or stopped ─► ledger.finish(the failures)

Every attempt reaches the usage log through `finish`, in order, so the log shows the
whole fallback path. The reservation is an estimate for the first link: a fallback to a
dearer model is charged its actual cost at settlement.

Budgets, usage rows and the response cache live in PostgreSQL behind the injected
`Ledger`; this module holds no state beyond the per-instance cooldown table.

`Gateway.complete_json(request, policy, schema=...)` asks for a JSON answer and validates
it (zapbase.ai.structured): each link is asked the way its model takes a schema, the local
answerer and the response cache are left out, and an invalid answer is asked again once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

import anyio

from zapbase.ai.errors import Decision, ProviderError, ProviderTimeout
from zapbase.ai.providers.local import LOCAL_MODEL, LocalProvider
from zapbase.ai.structured import JsonResult, complete_json
from zapbase.ai.types import (
    Alert,
    Attempt,
    AttemptStatus,
    ChatRequest,
    ChatResult,
    Failure,
    GatewayPolicy,
    GatewayResponse,
    Link,
    Outcome,
    Provider,
    Refusal,
    Reservation,
    Success,
)

__all__ = ["LOCAL_LINK", "Gateway", "Ledger", "cache_key"]

_logger = logging.getLogger(__name__)


# The local answerer reads only the last message, so no prompt is too long for it.
LOCAL_LINK = Link(provider="local", model=LOCAL_MODEL, context_window=2**31 - 1)


class Ledger(Protocol):
    """What the chain needs from the database (budgets, usage log, response cache): one
    call before the providers and one after.

    `begin` looks `key` up in the response cache when it is given; a hit is logged by
    the ledger and returned as the cached ChatResult. Otherwise it reserves budget for
    the reply, estimated on `link` (the first link the chain will call), or refuses.
    `policy.id` names the policy row the database applies (cache ttl, hold time).

    `finish` settles a Reservation exactly once, with every attempt made under it in
    the order made: failures, then the final outcome (a success, or the last failure).
    No attempts: nothing was called and the reservation is released. With `cache`, a
    successful final answer is stored under the key given to `begin`.
    """

    async def begin(
        self, request: ChatRequest, link: Link, policy: GatewayPolicy, key: str | None
    ) -> ChatResult | Reservation | Refusal: ...

    async def finish(self, reservation: Reservation, attempts: Sequence[Outcome], *, cache: bool) -> None: ...


def cache_key(request: ChatRequest, model: str) -> str:
    """sha256 of a canonical JSON of everything that shapes the answer (no tenant ids)."""
    canonical = {
        "v": 1,
        "model": model,
        "system": request.system,
        "messages": [[m.role, m.content] for m in request.messages],
        "knowledge": list(request.knowledge),
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }
    blob = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class Gateway:
    """Walks a policy's chain for each request.

    Parameters:
        providers: provider instances by name; a `LocalProvider` is added as "local"
            when absent, and every plan ends with `LOCAL_LINK` unless the policy
            already routes to "local".
        ledger: the database side (see `Ledger`).
        clock: monotonic seconds, injectable for tests of cooldowns.
    """

    def __init__(
        self,
        providers: Mapping[str, Provider],
        ledger: Ledger,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._providers: dict[str, Provider] = dict(providers)
        self._providers.setdefault(LOCAL_LINK.provider, LocalProvider())
        self._ledger = ledger
        self._clock = clock
        self._cooldown_until: dict[str, float] = {}

    def cooling_down(self, provider: str) -> bool:
        until = self._cooldown_until.get(provider)
        if until is None:
            return False
        if until > self._clock():
            return True
        del self._cooldown_until[provider]
        return False

    def plan(self, request: ChatRequest, policy: GatewayPolicy) -> tuple[Link, ...]:
        """The links this request walks: from the requested model on, local last (none for a
        JSON request: the local answerer only quotes passages)."""
        links = policy.links
        if request.model is not None:
            start = next((i for i, link in enumerate(links) if link.model == request.model), None)
            if start is None:
                _logger.warning("model %s is not in the policy; using the whole chain", request.model)
            else:
                links = links[start:]
        if request.json_schema is not None:
            return tuple(link for link in links if link.provider != LOCAL_LINK.provider)
        if all(link.provider != LOCAL_LINK.provider for link in links):
            links = (*links, LOCAL_LINK)
        return links

    async def chat(self, request: ChatRequest, policy: GatewayPolicy) -> GatewayResponse:
        links = self.plan(request, policy)
        if not links:
            nothing = Attempt(link=LOCAL_LINK, status=AttemptStatus.UNAVAILABLE)
            return GatewayResponse(result=None, attempts=(nothing,))
        # A JSON answer is validated after the walk: an invalid one must never be replayed.
        cached = policy.cache_ttl_seconds > 0 and request.json_schema is None
        key = cache_key(request, links[0].model) if cached else None
        # Reserve for the link that will really be called first, so the estimate is its price.
        first = next((link for link in links if self.can_call(link.provider)), links[0])
        begun = await self._ledger.begin(request, first, policy, key)
        if isinstance(begun, Refusal):
            attempt = Attempt(link=first, status=AttemptStatus.REFUSED)
            return GatewayResponse(result=None, attempts=(attempt,), refusal=begun)
        if isinstance(begun, ChatResult):
            # Account the hit to the link that produced it when it is in the plan.
            link = next(
                (link for link in links if (link.provider, link.model) == (begun.provider, begun.model)),
                links[0],
            )
            attempt = Attempt(link=link, status=AttemptStatus.CACHED)
            return GatewayResponse(result=begun, attempts=(attempt,), cached=True)
        walk = _Walk(self, self._ledger, self._providers, request, policy, links, begun)
        return await walk.run()

    async def complete_json(
        self, request: ChatRequest, policy: GatewayPolicy, *, schema: Mapping[str, Any], name: str = "answer"
    ) -> JsonResult:
        """A JSON answer valid against `schema`, or a status saying why not (zapbase.ai.structured)."""
        return await complete_json(self.chat, request, policy, schema=schema, name=name)

    def can_call(self, provider: str) -> bool:
        return provider in self._providers and not self.cooling_down(provider)

    def cool_down(self, provider: str, seconds: float) -> None:
        """Skip `provider` for `seconds` in this Gateway's walks."""
        self._cooldown_until[provider] = self._clock() + seconds
        _logger.info("provider %s cooling down for %.1f s", provider, seconds)


class _Walk:
    """The state of one request's walk down the chain, under one reservation."""

    def __init__(
        self,
        gateway: Gateway,
        ledger: Ledger,
        providers: Mapping[str, Provider],
        request: ChatRequest,
        policy: GatewayPolicy,
        links: tuple[Link, ...],
        reservation: Reservation,
    ) -> None:
        self.gw = gateway
        self.ledger = ledger
        self.providers = providers
        self.request = request
        self.policy = policy
        self.links = links
        self.reservation = reservation
        self.attempts: list[Attempt] = []
        self.outcomes: list[Outcome] = []  # what the ledger settles: calls made, in order
        self.alerts: list[Alert] = []
        self.previous: Link | None = None  # the last link that was called and failed
        self.error: ProviderError | None = None

    def response(self, result: ChatResult | None = None) -> GatewayResponse:
        # Errors met on the way to an answer stay visible in `attempts` only.
        return GatewayResponse(
            result=result,
            attempts=tuple(self.attempts),
            alerts=tuple(self.alerts),
            error=self.error if result is None else None,
        )

    def skip(self, link: Link, status: AttemptStatus) -> None:
        self.attempts.append(Attempt(link=link, status=status, fallback_from=self.previous))

    async def finish(self, result: ChatResult | None) -> None:
        # A local fallback answer must not shadow a real model's answer later on.
        cache = (
            result is not None
            and self.policy.cache_ttl_seconds > 0
            and result.provider != LOCAL_LINK.provider
        )
        await self.ledger.finish(self.reservation, tuple(self.outcomes), cache=cache)

    async def run(self) -> GatewayResponse:
        index = 0
        while index < len(self.links):
            link = self.links[index]
            index += 1
            provider = self.providers.get(link.provider)
            if provider is None:
                self.skip(link, AttemptStatus.UNAVAILABLE)
                continue
            if self.gw.cooling_down(link.provider):
                self.skip(link, AttemptStatus.COOLING_DOWN)
                continue
            started = time.perf_counter()
            try:
                result = await self.call(provider, link)
            except ProviderError as exc:
                error = exc
            except Exception as exc:
                # Settle what happened (and release the budget) before an unknown error surfaces.
                self.outcomes.append(
                    Failure(
                        link=link,
                        error_code="unexpected",
                        message=repr(exc),
                        decision=Decision.FATAL,
                        status_code=None,
                        request_id=None,
                        latency_ms=_ms_since(started),
                    )
                )
                await self.finish(None)
                raise
            else:
                self.outcomes.append(Success(link=link, result=result))
                self.attempts.append(Attempt(link=link, status=AttemptStatus.OK, fallback_from=self.previous))
                await self.finish(result)
                return self.response(result)
            self.outcomes.append(Failure.from_error(error, link=link, latency_ms=_ms_since(started)))
            self.attempts.append(
                Attempt(
                    link=link, status=AttemptStatus.FAILED, fallback_from=self.previous, error_code=error.code
                )
            )
            self.previous = link
            self.error = error
            stop, index = self.decide(error, link, index)
            if stop:
                break
        await self.finish(None)
        return self.response()

    async def call(self, provider: Provider, link: Link) -> ChatResult:
        timeout = self.policy.timeout_seconds
        request = self.request
        if request.json_schema is not None:
            request = replace(request, json_mode=link.structured_output)
        try:
            with anyio.fail_after(timeout):
                return await provider.chat(request, link.model)
        except TimeoutError as exc:
            raise ProviderTimeout(
                f"no answer within {timeout:g} s", provider=link.provider, model=link.model
            ) from exc

    def decide(self, error: ProviderError, link: Link, index: int) -> tuple[bool, int]:
        """Apply the error's decision; returns (stop, index of the next link to try)."""
        decision = error.decision
        _logger.warning("%s/%s failed: %s -> %s", link.provider, link.model, error.code, decision)
        if decision in (Decision.STOP_AND_ALERT, Decision.ALERT_AND_NEXT):
            self.alerts.append(
                Alert(
                    kind=error.code,
                    provider=link.provider,
                    model=link.model,
                    message=error.message,
                    tenant_id=self.request.tenant_id,
                    conversation_id=self.request.conversation_id,
                )
            )
        if decision in (Decision.STOP_AND_ALERT, Decision.FATAL):
            return True, index
        if decision is Decision.NEXT_LARGER_MODEL:
            while index < len(self.links) and (self.links[index].context_window <= link.context_window):
                self.skip(self.links[index], AttemptStatus.WINDOW_TOO_SMALL)
                index += 1
            return False, index
        # A rejected key will not heal within seconds either: cool it down like a 429.
        seconds = max(self.policy.cooldown_seconds, error.retry_after or 0.0)
        self.gw.cool_down(link.provider, seconds)
        return False, index


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
