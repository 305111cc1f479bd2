"""Ingest keeps the plans of its statements for the session: once a worker's connection has
applied a few webhooks, the next one is not planned again, statement by statement (plans
made on every call were a fifth of the cost of a one-message webhook)."""

from __future__ import annotations

import json

import psycopg
from webhooks import INGEST_SQL, PHONE_NUMBER_ID, body, change, profile, text

from support import Db
from zapbase.db.embedded import SUPERUSER

MARIA = "5511988887777"
WARM_UP = 8  # a cached plan is chosen after its first 5 calls


def test_a_webhook_on_a_warm_connection_plans_nothing(db: Db) -> None:
    def webhook(n: int) -> str:
        return json.dumps(body(change(messages=[text(f"Olá, pedido {n}?", MARIA)],
                                      contacts=[profile(MARIA, "Maria")])))

    planned: list[str] = []

    def planner_notice(diag: psycopg.errors.Diagnostic) -> None:
        if "PLANNER STATISTICS" in (diag.message_primary or "") and diag.context:
            planned.append(diag.context.splitlines()[0])  # a statement inside ingest

    # as the superuser: only it may ask the planner to report each plan it makes
    with db.connect(SUPERUSER) as conn:
        conn.autocommit = True
        conn.execute("set role service_role")
        for n in range(WARM_UP):
            conn.execute(INGEST_SQL, (webhook(n), PHONE_NUMBER_ID))
        conn.execute("reset role")
        conn.add_notice_handler(planner_notice)
        conn.execute("set log_planner_stats = on")
        conn.execute("set client_min_messages = log")
        conn.execute("set role service_role")
        row = conn.execute(INGEST_SQL, (webhook(WARM_UP), PHONE_NUMBER_ID)).fetchone()
    assert row is not None and row["whatsapp_ingest"]["messages"] == 1
    assert planned == []
