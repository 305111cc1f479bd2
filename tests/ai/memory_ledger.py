"""In-memory Ledger for tests: records every begin and finish, keeps a response cache."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from zapbase.ai import (
    ChatRequest,
    ChatResult,
    GatewayPolicy,
    Link,
    Outcome,
    Refusal,
    Reservation,
    Success,
)


@dataclass
class MemoryLedger:
    refusal: Refusal | None = None  # set: every reply is refused
    begun: list[tuple[ChatRequest, Reservation]] = field(default_factory=list)
    finished: list[tuple[Reservation, tuple[Outcome, ...]]] = field(default_factory=list)
    cache: dict[str, tuple[ChatResult, int]] = field(default_factory=dict)
    cache_reads: int = 0
    hits: list[ChatRequest] = field(default_factory=list)
    calls: int = 0  # begin + finish: the round trips a database ledger would make
    _open: dict[str, tuple[Reservation, str | None, int]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def begin(
        self, request: ChatRequest, link: Link, policy: GatewayPolicy, key: str | None
    ) -> ChatResult | Reservation | Refusal:
        self.calls += 1
        if key is not None:
            self.cache_reads += 1
            if key in self.cache:
                self.hits.append(request)
                return self.cache[key][0]
        if self.refusal is not None:
            return self.refusal
        reservation = Reservation(id=f"res-{next(self._ids)}", link=link)
        self._open[reservation.id] = (reservation, key, policy.cache_ttl_seconds)
        self.begun.append((request, reservation))
        return reservation

    async def finish(self, reservation: Reservation, attempts: Sequence[Outcome], *, cache: bool) -> None:
        self.calls += 1
        # Settling twice, or something never reserved, is a chain bug.
        opened, key, ttl = self._open.pop(reservation.id)
        assert opened == reservation
        assert all(not isinstance(a, Success) for a in attempts[:-1]), "a success must end the reply"
        self.finished.append((reservation, tuple(attempts)))
        final = attempts[-1] if attempts else None
        if cache and key is not None and isinstance(final, Success):
            self.cache[key] = (final.result, ttl)

    @property
    def open_reservations(self) -> list[Reservation]:
        return [reservation for reservation, _, _ in self._open.values()]

    @property
    def outcomes(self) -> list[Outcome]:
        """Every attempt settled, in order, across replies."""
        return [outcome for _, attempts in self.finished for outcome in attempts]
