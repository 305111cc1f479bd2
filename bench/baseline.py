"""Baselines the other benchmarks divide by: a plain 1-row INSERT and a `select 1`
round trip, with 1 and 4 clients on the same server."""

from __future__ import annotations

import psycopg

from harness import Context, Measure, throughput

SECONDS = 3.0


def insert_one(conn: psycopg.Connection[tuple[object, ...]], i: int) -> None:
    conn.execute("insert into bench_plain (n, body) values (%s, %s)", (i, "olá"))


def select_one(conn: psycopg.Connection[tuple[object, ...]], i: int) -> None:
    conn.execute("select 1").fetchone()


def measure(ctx: Context) -> list[Measure]:
    url = ctx.fresh_db()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table bench_plain (id bigint generated always as identity primary key,"
                     " n bigint not null, body text, created_at timestamptz default now())")
    results = []
    for clients in (1, 4):
        results.append(Measure(f"plain 1-row INSERT, {clients} client(s)",
                               throughput(url, insert_one, clients, SECONDS), "rows/s"))
        results.append(Measure(f"select 1 round trip, {clients} client(s)",
                               throughput(url, select_one, clients, SECONDS), "queries/s"))
    return results
