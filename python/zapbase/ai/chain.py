"""The provider chain: cache, budget reservation, fallback and settlement of every call.

`Gateway.chat(request, policy)` walks the policy's links in order::

    cache_get ─hit─► reserve + settle(cached) ─► answer
        │miss
        ▼
    for each link: skip if its provider is missing or cooling down
                   reserve ─refused─► next link
                   call ─ok─► settle(success) ─► cache_put ─► answer
                        └error─► settle(failure) ─► error.decision:
                                   next_provider      cool the provider down, next link
                                   alert_and_next     alert, cool down, next link
                                   next_larger_model  next link with a larger context window
                                   stop_and_alert     alert, stop
                                   fatal              stop

Budgets, usage rows and the response cache live in PostgreSQL behind the injected
`Ledger`; this module holds no state beyond the per-instance cooldown table.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Protocol

import anyio

from zapbase.ai.errors import Decision, ProviderError, ProviderTimeout
from zapbase.ai.providers.local import LOCAL_MODEL, LocalProvider
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
    """What the chain needs from the database (budgets, usage log, response cache).

    `reserve` is called before every provider call and every cache hit; each
    Reservation it returns is settled exactly once, success or failure, so the usage
    log shows the whole fallback path through `fallback_from`.
    """

    async def reserve(self, request: ChatRequest, link: Link) -> Reservation | Refusal: ...

    async def settle(self, reservation: Reservation, outcome: Outcome) -> None: ...

    async def cache_get(self, key: str) -> ChatResult | None: ...

    async def cache_put(self, key: str, result: ChatResult, ttl_seconds: int) -> None: ...


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
        """The links this request walks: from the requested model on, local last."""
        links = policy.links
        if request.model is not None:
            start = next((i for i, link in enumerate(links) if link.model == request.model), None)
            if start is None:
                _logger.warning("model %s is not in the policy; using the whole chain", request.model)
            else:
                links = links[start:]
        if all(link.provider != LOCAL_LINK.provider for link in links):
            links = (*links, LOCAL_LINK)
        return links

    async def chat(self, request: ChatRequest, policy: GatewayPolicy) -> GatewayResponse:
        links = self.plan(request, policy)
        key = cache_key(request, links[0].model)
        if policy.cache_ttl_seconds > 0:
            hit = await self._ledger.cache_get(key)
            if hit is not None:
                # Account the hit to the link that produced it when it is in the plan.
                link = next(
                    (link for link in links if (link.provider, link.model) == (hit.provider, hit.model)),
                    links[0],
                )
                return await self._serve_cached(request, link, hit)
        walk = _Walk(self, self._ledger, self._providers, request, policy, links, key)
        return await walk.run()

    async def _serve_cached(self, request: ChatRequest, link: Link, hit: ChatResult) -> GatewayResponse:
        reservation = await self._ledger.reserve(request, link)
        if isinstance(reservation, Refusal):
            attempt = Attempt(link=link, status=AttemptStatus.REFUSED)
            return GatewayResponse(result=None, attempts=(attempt,), refusal=reservation)
        await self._ledger.settle(reservation, Success(result=hit, cached=True))
        attempt = Attempt(link=link, status=AttemptStatus.CACHED)
        return GatewayResponse(result=hit, attempts=(attempt,), cached=True)

    def cool_down(self, provider: str, seconds: float) -> None:
        """Skip `provider` for `seconds` in this Gateway's walks."""
        self._cooldown_until[provider] = self._clock() + seconds
        _logger.info("provider %s cooling down for %.1f s", provider, seconds)


class _Walk:
    """The state of one request's walk down the chain."""

    def __init__(
        self,
        gateway: Gateway,
        ledger: Ledger,
        providers: Mapping[str, Provider],
        request: ChatRequest,
        policy: GatewayPolicy,
        links: tuple[Link, ...],
        key: str,
    ) -> None:
        self.gw = gateway
        self.ledger = ledger
        self.providers = providers
        self.request = request
        self.policy = policy
        self.links = links
        self.key = key
        self.attempts: list[Attempt] = []
        self.alerts: list[Alert] = []
        self.previous: Link | None = None  # the last link that was called and failed
        self.error: ProviderError | None = None
        self.refusal: Refusal | None = None

    def response(self, result: ChatResult | None = None) -> GatewayResponse:
        # Errors met on the way to an answer stay visible in `attempts` only.
        failed = result is None
        return GatewayResponse(
            result=result,
            attempts=tuple(self.attempts),
            alerts=tuple(self.alerts),
            error=self.error if failed else None,
            refusal=self.refusal if failed else None,
        )

    def skip(self, link: Link, status: AttemptStatus) -> None:
        self.attempts.append(Attempt(link=link, status=status, fallback_from=self.previous))

    async def run(self) -> GatewayResponse:
        ledger = self.ledger
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
            reservation = await ledger.reserve(self.request, link)
            if isinstance(reservation, Refusal):
                self.refusal = reservation
                self.skip(link, AttemptStatus.REFUSED)
                continue
            started = time.perf_counter()
            try:
                result = await self.call(provider, link)
            except ProviderError as exc:
                error = exc
            except Exception as exc:
                # Release the reservation before an unknown error surfaces.
                await ledger.settle(
                    reservation,
                    Failure(
                        error_code="unexpected",
                        message=repr(exc),
                        decision=Decision.FATAL,
                        status_code=None,
                        request_id=None,
                        latency_ms=_ms_since(started),
                        fallback_from=self.previous,
                    ),
                )
                raise
            else:
                await ledger.settle(reservation, Success(result=result, fallback_from=self.previous))
                self.attempts.append(Attempt(link=link, status=AttemptStatus.OK, fallback_from=self.previous))
                await self.maybe_cache(result)
                return self.response(result)
            await ledger.settle(
                reservation,
                Failure.from_error(error, latency_ms=_ms_since(started), fallback_from=self.previous),
            )
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
        return self.response()

    async def call(self, provider: Provider, link: Link) -> ChatResult:
        timeout = self.policy.timeout_seconds
        try:
            with anyio.fail_after(timeout):
                return await provider.chat(self.request, link.model)
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

    async def maybe_cache(self, result: ChatResult) -> None:
        # A local fallback answer must not shadow a real model's answer later on.
        if self.policy.cache_ttl_seconds > 0 and result.provider != LOCAL_LINK.provider:
            await self.ledger.cache_put(self.key, result, self.policy.cache_ttl_seconds)


def _ms_since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
