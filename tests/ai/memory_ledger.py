"""In-memory Ledger for tests: records every reservation and settlement."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from zapbase.ai import ChatRequest, ChatResult, Link, Outcome, Refusal, Reservation


@dataclass
class MemoryLedger:
    refuse_providers: set[str] = field(default_factory=set)
    reserved: list[tuple[ChatRequest, Reservation]] = field(default_factory=list)
    settled: list[tuple[Reservation, Outcome]] = field(default_factory=list)
    cache: dict[str, tuple[ChatResult, int]] = field(default_factory=dict)
    cache_reads: int = 0
    _open: dict[str, Reservation] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def reserve(self, request: ChatRequest, link: Link) -> Reservation | Refusal:
        if link.provider in self.refuse_providers:
            return Refusal(reason=f"budget exhausted for {link.provider}")
        reservation = Reservation(id=f"res-{next(self._ids)}", link=link)
        self._open[reservation.id] = reservation
        self.reserved.append((request, reservation))
        return reservation

    async def settle(self, reservation: Reservation, outcome: Outcome) -> None:
        # Settling twice, or something never reserved, is a chain bug.
        assert self._open.pop(reservation.id) == reservation
        self.settled.append((reservation, outcome))

    async def cache_get(self, key: str) -> ChatResult | None:
        self.cache_reads += 1
        hit = self.cache.get(key)
        return hit[0] if hit else None

    async def cache_put(self, key: str, result: ChatResult, ttl_seconds: int) -> None:
        self.cache[key] = (result, ttl_seconds)

    @property
    def open_reservations(self) -> list[Reservation]:
        return list(self._open.values())

    @property
    def outcomes(self) -> list[Outcome]:
        return [outcome for _, outcome in self.settled]
