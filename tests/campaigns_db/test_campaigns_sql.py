"""Campaigns in SQL: audiences and skips, materialisation, pacing and limits, per-recipient
truth from status webhooks, Meta's errors, the state machine and exact counters."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from campaigns_db.campaign_support import (
    AGENT,
    NUMBER,
    OWNER,
    TENANT,
    campaign,
    contacts,
    counters,
    recount,
    release,
    template,
)
from support import Db
from whatsapp_db.webhooks import body, change, ingest, status, text


def start(db: Db, campaign_id: str) -> dict[str, Any]:
    with db.as_user(OWNER) as s:
        return s.one("select * from public.start_campaign(%s)", (campaign_id,))


def state(db: Db, campaign_id: str, action: str, user: str = OWNER) -> dict[str, Any]:
    with db.as_user(user) as s:
        return s.one("select * from public.set_campaign_state(%s, %s)", (campaign_id, action))


def recipients(db: Db, campaign_id: str) -> list[dict[str, Any]]:
    return db.sql(
        "select r.*, m.wamid from public.campaign_recipients r"
        " left join public.messages m on m.id = r.message_id"
        " where r.campaign_id = %s order by r.wa_id",
        (campaign_id,),
    )


def sent(db: Db, campaign_id: str) -> list[dict[str, Any]]:
    """What the worker does after sending: Meta accepted each queued message."""
    rows = db.sql(
        "select r.message_id, r.wa_id from public.campaign_recipients r"
        " where r.campaign_id = %s and r.status = 'queued'",
        (campaign_id,),
    )
    with db.as_service() as s:
        for row in rows:
            s.all("select public.whatsapp_mark_sent(%s, %s)", (row["message_id"], f"wamid.C{row['wa_id']}"))
    return rows


def webhook(db: Db, wa_id: str, status_: str, **extra: Any) -> None:
    ingest(db, body(change(statuses=[status(f"wamid.C{wa_id}", status_, recipient_id=wa_id, **extra)])))


def test_audience_filters_skips_with_reasons_and_dry_run_matches_the_start(db: Db) -> None:
    vip = contacts(db, 3, prefix="55111", tags="{vip,sp}", attributes='{"plan": "ouro", "age": 30}')
    contacts(db, 2, prefix="55112", tags="{sp}", attributes='{"plan": "prata", "age": 50}')
    no_consent = contacts(
        db, 1, prefix="55113", tags="{vip}", attributes='{"plan": "ouro", "age": 40}', consent=False
    )
    db.sql("update public.contacts set is_blocked = true where id = %s", (vip[0],))
    db.sql(
        "insert into public.contact_consents (tenant_id, contact_id, kind, source, evidence)"
        " values (%s, %s, 'opt_out', 'documented_request', 'Pediu por e-mail')",
        (TENANT, vip[1]),
    )
    campaign_id = campaign(
        db,
        template(db),
        audience={
            "tags_any": ["vip"],
            "attributes": [
                {"key": "plan", "op": "in", "values": ["ouro"]},
                {"key": "age", "op": "range", "min": 18, "max": 45},
            ],
        },
    )
    with db.as_user(OWNER) as s:
        dry = s.value("select public.campaign_dry_run(%s)", (campaign_id,))
    assert dry == {"audience": 4, "would_send": 1, "skipped": {"blocked": 1, "opted_out": 1, "no_consent": 1}}
    started = start(db, campaign_id)
    assert started["status"] == "running"
    rows = recipients(db, campaign_id)
    assert sorted((r["status"], r["skip_reason"]) for r in rows) == [
        ("pending", None),
        ("skipped", "blocked"),
        ("skipped", "no_consent"),
        ("skipped", "opted_out"),
    ]
    assert {str(r["contact_id"]) for r in rows if r["skip_reason"] == "no_consent"} == {no_consent[0]}
    assert counters(db, campaign_id) == recount(db, campaign_id)
    assert db.sql("select type from public.events where subject_id = %s", (campaign_id,)) == [
        {"type": "campaign.started"}
    ]


@pytest.mark.parametrize(
    ("audience", "problem"),
    [
        ({"tags": ["vip"]}, "audience keys"),
        ({"attributes": [{"key": "plan", "op": "like"}]}, "attributes are"),
        ({"last_interaction_days": "uma semana"}, "whole number of days"),
    ],
)
def test_a_bad_audience_is_refused(db: Db, audience: dict[str, Any], problem: str) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match=problem):
        campaign(db, template(db), audience=audience)


def test_csv_import_reports_every_bad_line_and_fills_the_list(db: Db) -> None:
    ids = contacts(db, 3, prefix="55117")
    wa = [db.value("select wa_id from public.contacts where id = %s", (i,)) for i in ids]
    campaign_id = campaign(db, template(db))
    csv = (
        f"telefone,nome\n+{wa[0]},Ana\n{wa[1][:4]} {wa[1][4:]};Bia\nabc\n{wa[0]}\n5511000000000\n\n{wa[2]}\n"
    )
    with db.as_user(OWNER) as s:
        log = s.one("select * from public.import_campaign_csv(%s, %s, 'lista.csv')", (campaign_id, csv))
    assert (log["status"], log["total_rows"], log["imported_rows"], log["failed_rows"]) == (
        "partial",
        6,
        3,
        3,
    )
    assert [(e["row"], e["error"]) for e in log["errors"]] == [
        (4, "not a phone number with country code"),
        (5, "duplicate number"),
        (6, "no contact with this number"),
    ]
    start(db, campaign_id)
    assert sorted(str(r["contact_id"]) for r in recipients(db, campaign_id)) == sorted(ids)
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState), db.as_user(OWNER) as s:
        s.all("select public.set_campaign_list(%s, %s::uuid[])", (campaign_id, ids[:1]))


def test_explicit_list_and_last_interaction_window(db: Db) -> None:
    ids = contacts(db, 4, prefix="55118")
    db.sql(
        "update public.contacts set last_inbound_at = now() - interval '2 days' where id = any(%s::uuid[])",
        (ids[:3],),
    )
    db.sql("update public.contacts set last_inbound_at = now() - interval '20 days' where id = %s", (ids[3],))
    campaign_id = campaign(db, template(db), audience={"last_interaction_days": 7})
    with db.as_user(OWNER) as s:
        assert (
            s.value("select public.set_campaign_list(%s, %s::uuid[])", (campaign_id, [ids[0], ids[3]])) == 2
        )
        assert s.value("select public.campaign_dry_run(%s)", (campaign_id,))["would_send"] == 1


def test_release_paces_per_minute_and_counters_stay_exact(db: Db) -> None:
    contacts(db, 30)
    db.sql('update public.contacts set attributes = \'{"code": "X"}\' where tenant_id = %s', (TENANT,))
    campaign_id = campaign(db, template(db), rate=10)
    start(db, campaign_id)
    assert release(db) == 1  # the first message goes at once
    assert release(db) == 0  # the next one after 6 s
    db.sql(
        "update public.campaigns set pace_anchor_at = pace_anchor_at - interval '60 seconds' where id = %s",
        (campaign_id,),
    )
    assert release(db) == 10
    rows = recipients(db, campaign_id)
    queued = [r for r in rows if r["status"] == "queued"]
    assert len(queued) == 11 and len({r["message_id"] for r in queued}) == 11
    payload = db.value("select payload from public.messages where id = %s", (queued[0]["message_id"],))
    assert payload["template"]["name"] == "promo_frete"
    assert payload["template"]["components"][1]["parameters"][0] == {"type": "text", "text": "Cliente"}
    assert counters(db, campaign_id) == recount(db, campaign_id)
    assert (
        db.value("select sender_type from public.messages where id = %s", (queued[0]["message_id"],))
        == "campaign"
    )


def test_tier_window_and_pair_limits_hold_messages_back(db: Db) -> None:
    ids = contacts(db, 60)
    db.sql('update public.contacts set attributes = \'{"code": "X"}\' where tenant_id = %s', (TENANT,))
    db.sql("update public.whatsapp_numbers set messaging_limit_tier = 'TIER_50' where id = %s", (NUMBER,))
    campaign_id = campaign(db, template(db), rate=6000)
    start(db, campaign_id)
    db.sql(
        "update public.campaigns set pace_anchor_at = now() - interval '1 minute' where id = %s",
        (campaign_id,),
    )
    assert release(db) == 50  # the tier: 50 unique recipients in 24 h
    assert release(db) == 0
    db.sql("update public.whatsapp_numbers set messaging_limit_tier = 'TIER_1K' where id = %s", (NUMBER,))
    # outside the sending window (tenant time): nothing
    db.sql(
        "update public.campaigns set send_window_start = ((now() at time zone 'America/Sao_Paulo')::time"
        " + interval '1 hour'), send_window_end = ((now() at time zone 'America/Sao_Paulo')::time"
        " + interval '2 hours') where id = %s",
        (campaign_id,),
    )
    assert release(db) == 0
    db.sql(
        "update public.campaigns set send_window_start = null, send_window_end = null where id = %s",
        (campaign_id,),
    )
    # a contact who got a message 2 s ago waits for the pair limit
    pending = db.value(
        "select contact_id from public.campaign_recipients where campaign_id = %s"
        " and status = 'pending' order by wa_id limit 1",
        (campaign_id,),
    )
    conversation = db.value(
        "insert into public.conversations (tenant_id, contact_id, whatsapp_number_id)"
        " values (%s, %s, %s) returning id",
        (TENANT, pending, NUMBER),
    )
    with db.as_service() as s:
        s.all(
            "select public.whatsapp_queue_reply(%s, %s::jsonb, 'system')",
            (
                conversation,
                json.dumps(
                    {
                        "type": "template",
                        "template": {
                            "name": "retomar_atendimento",
                            "language": {"code": "pt_BR"},
                            "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]}],
                        },
                    }
                ),
            ),
        )
    assert release(db) == 9
    waiting = db.sql(
        "select status, next_attempt_at > now() as later from public.campaign_recipients"
        " where campaign_id = %s and contact_id = %s",
        (campaign_id, pending),
    )
    assert waiting == [{"status": "pending", "later": True}]
    assert len(ids) == 60 and counters(db, campaign_id) == recount(db, campaign_id)


def test_status_webhooks_move_recipients_forward_only_and_replies_count(db: Db) -> None:
    contacts(db, 3)
    db.sql('update public.contacts set attributes = \'{"code": "X"}\' where tenant_id = %s', (TENANT,))
    campaign_id = campaign(db, template(db), rate=6000)
    start(db, campaign_id)
    db.sql(
        "update public.campaigns set pace_anchor_at = now() - interval '1 minute' where id = %s",
        (campaign_id,),
    )
    assert release(db) == 3
    a, b, c = (r["wa_id"] for r in sent(db, campaign_id))
    webhook(db, a, "read")
    webhook(db, a, "delivered")  # late: never moves a read recipient back
    webhook(db, b, "delivered")
    ingest(db, body(change(messages=[text("Quero a oferta!", c)])))
    by_wa = {r["wa_id"]: r for r in recipients(db, campaign_id)}
    assert [by_wa[w]["status"] for w in (a, b, c)] == ["read", "delivered", "sent"]
    assert by_wa[c]["replied_at"] is not None and by_wa[a]["replied_at"] is None
    assert (
        counters(db, campaign_id)
        == recount(db, campaign_id)
        == {
            "total_count": 3,
            "pending_count": 0,
            "queued_count": 0,
            "sent_count": 1,
            "delivered_count": 1,
            "read_count": 1,
            "failed_count": 0,
            "skipped_count": 0,
            "replied_count": 1,
        }
    )
    assert db.value("select status from public.campaigns where id = %s", (campaign_id,)) == "completed"
    kinds = [
        e["type"]
        for e in db.sql(
            "select type from public.events where payload ->> 'campaign_id' = %s"
            " or subject_id = %s order by created_at",
            (campaign_id, campaign_id),
        )
    ]
    assert kinds[0] == "campaign.started" and "campaign.completed" in kinds
    assert kinds.count("campaign.recipient_updated") >= 6


def test_meta_errors_per_recipient_and_a_paused_template_pauses_the_campaign(db: Db) -> None:
    contacts(db, 5)
    db.sql('update public.contacts set attributes = \'{"code": "X"}\' where tenant_id = %s', (TENANT,))
    template_id = template(db)
    campaign_id = campaign(db, template_id, rate=60)
    start(db, campaign_id)
    db.sql(
        "update public.campaigns set pace_anchor_at = now() - interval '2.5 seconds' where id = %s",
        (campaign_id,),
    )
    assert release(db) == 3  # one more is left pending: the campaign keeps running
    a, b, c = (r["wa_id"] for r in sent(db, campaign_id))
    for wa, code in ((a, 131026), (b, 131049), (c, 131047)):
        webhook(db, wa, "failed", errors=[{"code": code, "title": f"erro {code}"}])
    by_wa = {r["wa_id"]: r for r in recipients(db, campaign_id)}
    assert (by_wa[a]["status"], by_wa[a]["error_code"]) == ("failed", 131026)  # undeliverable: no retry
    assert (by_wa[b]["status"], by_wa[b]["error_code"], by_wa[b]["message_id"]) == ("pending", 131049, None)
    assert by_wa[b]["next_attempt_at"] is not None  # ecosystem limit: a later attempt
    assert (by_wa[c]["status"], by_wa[c]["error_code"]) == ("failed", 131047)  # counted, not retried
    assert counters(db, campaign_id) == recount(db, campaign_id)
    # Meta pauses the template (status webhook): the campaign pauses with an alert
    ingest(
        db,
        body(
            change(field="message_template_status_update", messages=None)
            | {
                "value": {
                    "event": "PAUSED",
                    "message_template_id": "x",
                    "message_template_name": "promo_frete",
                    "message_template_language": "pt_BR",
                    "reason": "LOW_QUALITY",
                }
            }
        ),
    )
    paused = db.sql("select status, status_reason from public.campaigns where id = %s", (campaign_id,))[0]
    assert paused["status"] == "paused" and "PAUSED" in paused["status_reason"]
    assert db.value("select count(*) from public.alerts where type = 'campaign.paused'") == 1
    assert release(db) == 0


def test_state_machine_pause_resume_cancel(db: Db) -> None:
    contacts(db, 5)
    db.sql('update public.contacts set attributes = \'{"code": "X"}\' where tenant_id = %s', (TENANT,))
    campaign_id = campaign(db, template(db), rate=60)
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="draft campaign cannot be paused"):
        state(db, campaign_id, "pause")
    with pytest.raises(psycopg.errors.InsufficientPrivilege), db.as_user(AGENT) as s:
        s.all("select public.start_campaign(%s)", (campaign_id,))
    with db.as_user(OWNER) as s:
        assert (
            s.one("select * from public.schedule_campaign(%s, now() + interval '1 hour')", (campaign_id,))[
                "status"
            ]
            == "scheduled"
        )
    db.sql(
        "update public.campaigns set scheduled_at = now() - interval '1 second' where id = %s", (campaign_id,)
    )
    assert db.value("select private.run_job('campaigns_start_due')") == 1
    assert state(db, campaign_id, "pause")["status"] == "paused"
    assert release(db) == 0
    assert state(db, campaign_id, "resume")["status"] == "running"
    assert release(db) == 1  # pacing restarted at the resume: no burst
    cancelled = state(db, campaign_id, "cancel")  # the one queued had not been claimed: withdrawn too
    assert (cancelled["status"], cancelled["pending_count"], cancelled["skipped_count"]) == (
        "cancelled",
        0,
        5,
    )
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        state(db, campaign_id, "resume")
    with db.as_user(OWNER) as s:  # only drafts are edited directly
        assert (
            s.rowcount("update public.campaigns set rate_per_minute = 1 where id = %s", (campaign_id,)) == 0
        )
    assert counters(db, campaign_id) == recount(db, campaign_id)
    types = [
        e["type"]
        for e in db.sql(
            "select type from public.events where subject_id = %s order by created_at", (campaign_id,)
        )
    ]
    assert types == ["campaign.started", "campaign.paused", "campaign.resumed", "campaign.cancelled"]


def test_a_message_in_flight_at_the_cancel_is_never_sent_again(db: Db) -> None:
    contacts(db, 2)
    db.sql('update public.contacts set attributes = \'{"code": "X"}\' where tenant_id = %s', (TENANT,))
    campaign_id = campaign(db, template(db), rate=6000)
    start(db, campaign_id)
    db.sql(
        "update public.campaigns set pace_anchor_at = now() - interval '1 minute' where id = %s",
        (campaign_id,),
    )
    assert release(db) == 2
    with db.as_service() as s:  # the sender claimed both and is talking to Meta
        claimed = s.all("select * from public.whatsapp_claim_outbound('w1', 10, 60)")
    assert len(claimed) == 2
    assert state(db, campaign_id, "cancel")["queued_count"] == 2  # in flight: they follow their outcome
    throttled, accepted = (row["message_id"] for row in claimed)
    with db.as_service() as s:  # Meta throttled one (retryable) and accepted the other
        s.all(
            "select public.whatsapp_mark_send_failed(%s, 130429, 'Rate limit hit', null, true, 0)",
            (throttled,),
        )
        s.all("select public.whatsapp_mark_sent(%s, 'wamid.ACCEPTED')", (accepted,))
    rows = {r["message_id"]: r for r in recipients(db, campaign_id)}
    assert (rows[throttled]["status"], rows[throttled]["skip_reason"]) == ("skipped", "cancelled")
    assert rows[accepted]["status"] == "sent"
    assert db.value("select status from public.messages where id = %s", (throttled,)) == "cancelled"
    with db.as_service() as s:
        assert s.all("select * from public.whatsapp_claim_outbound('w1', 10, 60)") == []
    assert counters(db, campaign_id) == recount(db, campaign_id)


def test_releasing_again_never_queues_anyone_twice(db: Db) -> None:
    contacts(db, 20)
    db.sql('update public.contacts set attributes = \'{"code": "X"}\' where tenant_id = %s', (TENANT,))
    campaign_id = campaign(db, template(db), rate=6000)
    start(db, campaign_id)
    db.sql(
        "update public.campaigns set pace_anchor_at = now() - interval '1 minute' where id = %s",
        (campaign_id,),
    )
    for _ in range(5):
        release(db)
    assert db.value("select count(*) from public.messages where sender_type = 'campaign'") == 20
    assert (
        db.value("select count(distinct contact_id) from public.messages where sender_type = 'campaign'")
        == 20
    )
    assert db.value("select released_count from public.campaigns where id = %s", (campaign_id,)) == 20


def test_an_unapproved_template_cannot_start(db: Db) -> None:
    campaign_id = campaign(db, template(db, status="PENDING"))
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState, match="only an approved template"):
        start(db, campaign_id)
