"""The operation alerts: import_failed when an import finishes failed or rejects too many of
its lines, bot_error per bot and hour when the bot failed to answer a customer (a reply whose
provider chain failed, a flow block that failed, an inbound message given up on),
ai_rate_limit per tenant and hour (providers' 429 and quota, budget refusals); each once per
subject and period, as alerts (so alert.created and the delivery channels follow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from coaching_support import AGENT, OWNER, TENANT, run_job

from support import Db

OTHER_TENANT = Path(__file__).parents[1] / "fixtures" / "other_tenant.sql"
BOT = "select id from public.bots where tenant_id = %s order by created_at limit 1"


def alerts(db: Db, kind: str) -> list[dict[str, Any]]:
    return db.sql(
        "select tenant_id::text, priority, title, message, payload, dedupe_key from public.alerts"
        " where type = %s order by created_at",
        (kind,),
    )


def import_leads(db: Db, rows: list[dict[str, Any]], file_name: str) -> dict[str, Any]:
    with db.as_user(AGENT) as s:
        return s.one("select * from public.import_leads(%s, %s, %s)", (TENANT, file_name, json.dumps(rows)))


def test_a_failed_import_or_one_rejecting_too_many_lines_alerts_once(db: Db) -> None:
    db.sql("update public.tenants set notification_emails = '{gestao@loja.example}' where id = %s", (TENANT,))
    good = [{"name": f"Lead {n}", "phone": f"55119888{n:05d}"} for n in range(9)]
    bad = {"name": "Sem contato", "score": "muito"}  # a score that is not a number
    failed = import_leads(db, [bad, bad], "leads-quebrado.csv")
    assert failed["status"] == "failed"
    [alert] = alerts(db, "import_failed")
    assert alert["priority"] == "high" and "leads-quebrado.csv" in alert["title"]
    assert alert["payload"]["import_id"] == str(failed["id"])
    assert (alert["payload"]["failed_rows"], len(alert["payload"]["errors"])) == (2, 2)
    assert import_leads(db, [*good, bad], "um-erro.csv")["status"] == "partial"  # 10 %: not above
    assert len(alerts(db, "import_failed")) == 1
    partial = import_leads(db, [*good[:8], bad, bad], "dois-erros.csv")  # 20 %
    assert partial["status"] == "partial"
    assert [a["priority"] for a in alerts(db, "import_failed")] == ["high", "medium"]
    with db.as_service() as s:  # the same import finished again: still one alert
        s.all("update public.import_logs set finished_at = now() where id = %s", (failed["id"],))
    assert len(alerts(db, "import_failed")) == 2
    # delivered as any alert: an alert.created event and an e-mail row per notification address
    delivered = db.value(
        "select count(*) from public.alerts a join public.alert_deliveries d on d.alert_id = a.id"
        " join public.events e on e.subject_id = a.id and e.type = 'alert.created'"
        " where a.type = 'import_failed' and d.channel = 'email'"
    )
    assert delivered == 2
    db.sql(
        'update public.tenants set settings = settings || \'{"coaching": {"import_rejected_pct": 5}}\''
        " where id = %s",
        (TENANT,),
    )
    import_leads(db, [*good, bad], "um-erro-de-novo.csv")
    assert len(alerts(db, "import_failed")) == 3


def worker_reply(
    db: Db,
    conversation: str,
    *,
    error: str | None,
    failed: tuple[str, ...] = (),
    feature: str = "reply",
    as_of: str = "now()",
) -> None:
    """A reply through the ledger as the worker makes it: failed attempts, then the answer or,
    with `error`, the chain's last failure."""
    with db.as_service() as s:
        begun = s.value(
            f"select public.ai_begin(tenant_id => %s, feature => %s, model => 'anthropic/claude-haiku-4-5',"
            f" conversation_id => %s, estimated_output_tokens => 100, as_of => {as_of})",
            (TENANT, feature, conversation),
        )
        attempts = [{"model": "anthropic/claude-haiku-4-5", "error_code": code} for code in failed]
        s.all(
            f"select public.ai_finish(reservation_id => %s, outcome => %s, model => 'openai/gpt-4o-mini',"
            f" output_tokens => 50, error_code => %s, failed_attempts => %s, as_of => {as_of})",
            (begun["reservation_id"], "failure" if error else "success", error, json.dumps(attempts)),
        )


def give_up_on_message(db: Db, message: str) -> None:
    """The processor claims the inbound message and fails it for good."""
    with db.as_service() as s:
        s.all("select * from public.whatsapp_claim_inbound('worker-1', 10, 60)")
        s.all("select public.whatsapp_fail_inbound(%s, 'worker-1', 'RuntimeError: boom', 1)", (message,))


def flow_step_failed(db: Db, outcome: str) -> str:
    """A customer starts the demo's order-tracking flow and the worker commits a turn whose
    http block failed with `outcome` (the step log). Returns the conversation."""
    conversation, message = db.create_conversation("5511966665555", "quero rastrear pedido")
    with db.as_service() as s:
        execution = s.value("select public.flow_begin_turn(%s)", (message,))["execution"]
        turn = {"block": "lookup", "steps": [{"block": "lookup", "type": "http", "outcome": outcome}]}
        s.all(
            "select public.flow_commit_turn(%s, %s, %s)",
            (execution["id"], execution["revision"], json.dumps(turn)),
        )
    return conversation


def test_bot_errors_alert_once_per_bot_and_hour(db: Db) -> None:
    db.sql(OTHER_TENANT.read_text())
    bot = str(db.value(BOT, (TENANT,)))
    conversation, message = db.create_conversation()
    other, _ = db.create_conversation("5511977776666")
    db.sql("update public.conversations set bot_id = %s where id in (%s, %s)", (bot, conversation, other))
    worker_reply(db, conversation, error=None, failed=("overloaded",))  # fell back and answered
    assert run_job(db, "operation_alerts") == 0
    worker_reply(db, conversation, error="server_error", failed=("overloaded",))  # every provider failed
    worker_reply(db, other, error="timeout", feature="summary")  # not a reply to the customer
    give_up_on_message(db, message)
    tracking = flow_step_failed(db, "error: HTTP 503 from the order API")
    db.sql("update public.conversations set bot_id = %s where id = %s", (bot, tracking))
    assert run_job(db, "operation_alerts") == 1
    [alert] = alerts(db, "bot_error")
    payload = alert["payload"]
    assert alert["tenant_id"] == TENANT and payload["bot_id"] == bot
    assert (payload["failures"], payload["by_source"], payload["conversations"]) == (
        3, {"reply": 1, "processing": 1, "flow_http": 1}, 2)  # fmt: skip
    assert sorted(payload["conversation_ids"]) == sorted([conversation, tracking])
    assert payload["last_error"] == "error: HTTP 503 from the order API"
    assert "3 falha(s)" in alert["message"] and "em 2 conversa(s)" in alert["message"]
    worker_reply(db, other, error="server_error")  # same bot, same hour
    assert run_job(db, "operation_alerts") == 0
    worker_reply(db, other, error="server_error", as_of="now() + interval '1 hour'")
    assert run_job(db, "operation_alerts", "now() + interval '1 hour 1 minute'") == 1
    raised = alerts(db, "bot_error")  # tenant B (its own bot and conversations) has none
    assert [(a["tenant_id"], a["payload"]["conversation_ids"]) for a in raised][1:] == [(TENANT, [other])]


def test_rate_limits_and_budget_refusals_alert_once_per_tenant_and_hour(db: Db) -> None:
    conversation, _ = db.create_conversation()
    worker_reply(db, conversation, error="rate_limited", failed=("rate_limited",))
    worker_reply(db, conversation, error=None, failed=("spend_limit_exceeded",))
    # the paused budget refuses whatever asks: a reply, a flow's AI block, a chat search, a voice note
    db.sql("update public.budgets set paused_reason = 'manual' where tenant_id = %s", (TENANT,))
    model = db.value("select gateway_id from public.ai_models where tenant_id is null and is_active"
                     " and api_type = 'chat' order by gateway_id limit 1")
    with db.as_service() as s:
        for feature in ("reply", "flow", "chat_search", "tts"):
            answer = s.value("select public.ai_reserve(%s, %s, %s, 100, 50, conversation_id => %s)",
                             (TENANT, feature, model, conversation))
            assert (answer["status"], answer["reason"]) == ("refused", "paused")
    db.sql("update public.budgets set paused_reason = null where tenant_id = %s", (TENANT,))
    refusals = db.sql("select payload from public.events where type = 'ai.call_refused' order by created_at")
    assert [(r["payload"]["feature"], r["payload"]["conversation_id"]) for r in refusals] == [
        (feature, conversation) for feature in ("reply", "flow", "chat_search", "tts")]
    assert run_job(db, "operation_alerts") >= 1
    [alert] = alerts(db, "ai_rate_limit")
    payload = alert["payload"]
    assert (payload["rate_limited"], payload["provider_quota"], payload["budget_refused"]) == (2, 1, 4)
    assert payload["providers"] == ["anthropic", "openai"]
    assert "2 recusa(s) por limite do provedor (429)" in alert["message"]
    worker_reply(db, conversation, error="rate_limited")
    run_job(db, "operation_alerts")
    assert len(alerts(db, "ai_rate_limit")) == 1
    with db.as_user(OWNER) as s:  # managers read it as any alert
        assert s.value("select count(*) from public.alerts where type = 'ai_rate_limit'") == 1
