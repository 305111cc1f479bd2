"""Shared pieces of the benchmarks: one scratch server for the whole run, fresh
databases cloned from the migrated template, a multi-client throughput meter.

Every figure that matters is printed as a ratio to a baseline measured in the same run
on the same server, because these machines are shared and noisy.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from zapbase.db.embedded import EmbeddedPostgres
from zapbase.db.scratch import clone_database

Operation = Callable[[psycopg.Connection[tuple[object, ...]], int], None]


@dataclass(frozen=True)
class Measure:
    """One figure. `baseline` names another measure of the run to divide by."""

    name: str
    value: float
    unit: str
    baseline: str | None = None
    goal: str = ""


@dataclass
class Context:
    server: EmbeddedPostgres
    template: str
    _numbers: itertools.count[int] = field(default_factory=itertools.count)

    def fresh_db(self) -> str:
        return clone_database(self.server, self.template, f"bench_{next(self._numbers)}")


def throughput(url: str, operation: Operation, clients: int, seconds: float,
               setup: Callable[[psycopg.Connection[tuple[object, ...]]], None] | None = None) -> float:
    """Operations per second of `clients` threads, each on its own autocommit connection,
    calling operation(conn, i) in a loop for `seconds`."""
    counts = [0] * clients
    start = threading.Barrier(clients + 1)
    stop = threading.Event()

    def client(index: int) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            if setup:
                setup(conn)
            start.wait()
            i = 0
            while not stop.is_set():
                operation(conn, index * 10_000_000 + i)
                i += 1
            counts[index] = i

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - began)


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def median(samples: list[float]) -> float:
    return statistics.median(samples)
