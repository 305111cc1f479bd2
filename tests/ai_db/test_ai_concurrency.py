"""50 workers reserving and settling at the edge of a budget at the same time.

The claim: settled spend never passes the limit by more than the estimate error of the
calls in flight when the last reservation was granted:

    used_final <= limit + sum(actual - estimate) over those in-flight calls

Proof sketch: when the last reservation G was granted, under the tenant's budget locks,
used + reserved + estimate(G) <= limit, and `reserved` was exactly the estimates of the
calls then in flight. No reservation came after G, so the spend added afterwards is the
actual cost of those calls and G.

To find "in flight at G" exactly, this test (and only this test's database) stamps a
sequence number on every grant and every settlement. Both happen while the budget rows
are locked, so the numbers follow the order in which the database serialised them.
"""

from __future__ import annotations

import json
import random
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal

import psycopg
from ai_support import TENANT, plan_window, set_round_prices

from support import Db

WORKERS = 50
CALLS_PER_WORKER = 4
ESTIMATE = 400  # output tokens: R$ 0.04 each at R$ 0.0001 a token
LIMIT = Decimal("1.00")  # room for 25 estimates: half the workers must be refused at once
TOKEN_PRICE_BRL = Decimal("0.0001")


@dataclass
class Outcomes:
    granted: dict[str, int] = field(default_factory=dict)  # reservation id -> actual tokens
    refusals: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def stamp_serialisation_order(db: Db) -> None:
    db.sql("""
        create sequence public.test_order_seq;
        create table public.test_order (reservation_id uuid, event text,
                                        seq bigint default nextval('public.test_order_seq'));
        create function public.test_stamp() returns trigger language plpgsql set search_path = '' as $$
        begin
          if tg_op = 'INSERT' or new.status is distinct from old.status then
            insert into public.test_order (reservation_id, event) values (new.id, new.status);
          end if;
          return new;
        end $$;
        create trigger zz_test_stamp after insert or update of status on public.budget_reservations
          for each row execute function public.test_stamp();
    """)


def worker(db: Db, index: int, start: threading.Barrier, out: Outcomes) -> None:
    rng = random.Random(index)
    try:
        with psycopg.connect(
            db.url.replace("postgres:postgres@", "authenticator:authenticator@", 1), autocommit=True
        ) as conn:
            conn.execute(
                "select set_config('role', 'service_role', false),"
                " set_config('request.jwt.claims', '{\"role\": \"service_role\"}', false)"
            )
            start.wait()
            for _ in range(CALLS_PER_WORKER):
                reply = conn.execute(
                    "select public.ai_reserve(tenant_id => %s, feature => 'reply',"
                    " model => 'openai/gpt-4o-mini', estimated_output_tokens => %s)",
                    (TENANT, ESTIMATE),
                ).fetchone()
                assert reply is not None
                result = reply[0]
                if result["status"] != "reserved":
                    with out.lock:
                        out.refusals.append(result["reason"])
                    continue
                time.sleep(rng.uniform(0, 0.01))  # the provider call
                actual = rng.randint(150, 700)  # estimates are wrong both ways
                conn.execute(
                    "select public.ai_settle(reservation_id => %s, output_tokens => %s, latency_ms => 5)",
                    (result["reservation_id"], actual),
                )
                with out.lock:
                    out.granted[result["reservation_id"]] = actual
    except BaseException as exc:  # surfaced by the test below
        with out.lock:
            out.errors.append(exc)


def test_concurrent_reservations_never_pass_the_limit_by_more_than_in_flight_error(db: Db) -> None:
    set_round_prices(db)
    db.sql("update public.budgets set brl_limit = %s where tenant_id = %s and kind = 'plan'", (LIMIT, TENANT))
    stamp_serialisation_order(db)

    out = Outcomes()
    start = threading.Barrier(WORKERS)
    threads = [threading.Thread(target=worker, args=(db, i, start, out)) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert out.errors == []  # no deadlock, no serialisation failure
    assert out.refusals, "the test must reach the edge of the budget"
    assert set(out.refusals) <= {"limit", "paused"}

    window = plan_window(db)
    used = window["used_brl"]
    assert (window["reserved_brl"], window["reserved_tokens"]) == (0, 0)
    # exact accounting: the window is the sum of its usage rows, to the last decimal
    assert used == db.value("select sum(cost_brl) from public.ai_usage")
    assert used == sum(out.granted.values()) * TOKEN_PRICE_BRL

    events = db.sql("select reservation_id::text as id, event, seq from public.test_order")
    granted_at = {e["id"]: e["seq"] for e in events if e["event"] == "open"}
    settled_at = {e["id"]: e["seq"] for e in events if e["event"] == "settled"}
    assert granted_at.keys() == settled_at.keys() == out.granted.keys()
    last_grant = max(granted_at.values())
    in_flight = [r for r in granted_at if granted_at[r] <= last_grant < settled_at[r]]
    error_in_flight = sum((out.granted[r] - ESTIMATE) * TOKEN_PRICE_BRL for r in in_flight)

    summary = json.dumps(
        {
            "granted": len(out.granted),
            "refused": len(out.refusals),
            "used_brl": str(used),
            "in_flight_at_last_grant": len(in_flight),
            "their_error_brl": str(error_in_flight),
        }
    )
    assert used <= LIMIT + error_in_flight, summary
    assert len(in_flight) > 1, f"reservations should overlap at the edge: {summary}"
