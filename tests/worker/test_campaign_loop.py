"""The campaign loop against the simulator: templates created, listed page by page and
deleted at "Meta"; a campaign released and sent, once per recipient, across a restart."""

from __future__ import annotations

import json

import pytest
from loop_support import drain

from campaigns_db.campaign_support import OWNER, PROMO, WABA_ID, campaign, contacts, template
from support import Db
from zapbase.db.pool import Pool
from zapbase.simulator import DEMO_NUMBER, Simulator
from zapbase.whatsapp import GraphAPI
from zapbase.worker.campaigns import CampaignLoop, push_templates, sync_templates
from zapbase.worker.metrics import Metrics
from zapbase.worker.sender import Sender

pytestmark = pytest.mark.anyio
TOKEN = DEMO_NUMBER.access_token


async def test_templates_are_created_listed_by_page_and_deleted_at_meta(
    db: Db, pool: Pool, graph_api: GraphAPI, sim: Simulator
) -> None:
    with db.as_user(OWNER) as s:
        created = s.one(
            "select * from public.create_message_template(%s, 'frete_gratis', 'MARKETING', %s::jsonb)",
            ("00000000-0000-4000-9000-000000000001", json.dumps(PROMO)),
        )
    assert await push_templates(pool, graph_api) == 1
    at_meta = sim.templates.all(WABA_ID)
    assert [(t["name"], t["components"]) for t in at_meta] == [("frete_gratis", PROMO)]
    row = db.sql(
        "select status, sync_status, meta_template_id from public.message_templates where id = %s",
        (created["id"],),
    )[0]
    assert row == {"status": "APPROVED", "sync_status": "synced", "meta_template_id": at_meta[0]["id"]}

    for n in range(5):  # made at Meta elsewhere (WhatsApp Manager)
        sim.templates.create(
            WABA_ID,
            {
                "name": f"aviso_{n}",
                "language": "pt_BR",
                "category": "UTILITY",
                "components": [{"type": "BODY", "text": f"Aviso {n}"}],
            },
        )
    listed = await graph_api.list_templates(WABA_ID, token=TOKEN, page_size=2)  # three pages
    assert [t["name"] for t in listed] == ["frete_gratis", *(f"aviso_{n}" for n in range(5))]
    with db.as_user(OWNER) as s:
        s.all("select public.request_template_sync(%s)", ("00000000-0000-4000-b000-000000000001",))
    assert await sync_templates(pool, graph_api) == 1
    assert (
        db.value(
            "select count(*) from public.message_templates where sync_status = 'synced'"
            " and status = 'APPROVED'"
        )
        == 6
    )
    assert db.sql("select status, template_count from public.template_syncs") == [
        {"status": "succeeded", "template_count": 6}
    ]

    with db.as_user(OWNER) as s:
        s.all("select public.delete_message_template(%s)", (created["id"],))
    assert await push_templates(pool, graph_api) == 1
    assert "frete_gratis" not in [t["name"] for t in sim.templates.all(WABA_ID)]
    assert (
        db.value("select status from public.message_templates where id = %s", (created["id"],)) == "DELETED"
    )


async def test_a_refused_template_keeps_meta_s_reason(
    db: Db, pool: Pool, graph_api: GraphAPI, sim: Simulator
) -> None:
    sim.templates.create(
        WABA_ID, {"name": "frete_gratis", "language": "pt_BR", "category": "MARKETING", "components": PROMO}
    )
    with db.as_user(OWNER) as s:
        created = s.one(
            "select * from public.create_message_template(%s, 'frete_gratis', 'MARKETING', %s::jsonb)",
            ("00000000-0000-4000-9000-000000000001", json.dumps(PROMO)),
        )
    await push_templates(pool, graph_api)
    row = db.sql(
        "select sync_status, sync_error from public.message_templates where id = %s", (created["id"],)
    )[0]
    assert row["sync_status"] == "create_failed" and "already exists" in row["sync_error"]


async def test_a_campaign_reaches_each_phone_once_across_a_restart(
    db: Db, pool: Pool, graph_api: GraphAPI, sim: Simulator, metrics: Metrics
) -> None:
    ids = contacts(db, 12)
    db.sql('update public.contacts set attributes = \'{"code": "Z9"}\' where id = any(%s::uuid[])', (ids,))
    campaign_id = campaign(db, template(db), rate=60)
    with db.as_user(OWNER) as s:
        s.all("select public.start_campaign(%s)", (campaign_id,))
    db.sql(
        "update public.campaigns set pace_anchor_at = now() - interval '5.5 seconds' where id = %s",
        (campaign_id,),
    )
    sender = Sender(pool=pool, api=graph_api, metrics=metrics, worker_id="a")
    first = CampaignLoop(pool=pool, api=graph_api)
    assert await first.release() == 6
    await drain(sender.run_once)
    # the replica dies and another takes over: nobody gets the message twice
    db.sql(
        "update public.campaigns set pace_anchor_at = now() - interval '1 minute' where id = %s",
        (campaign_id,),
    )
    second = CampaignLoop(pool=pool, api=graph_api)
    await second.run_once()
    await drain(Sender(pool=pool, api=graph_api, metrics=metrics, worker_id="b").run_once)
    got = [m.wa_id for m in sim.inbox]
    assert len(got) == 12 and len(set(got)) == 12
    assert sim.inbox[0].body["template"]["components"][-1] == {
        "type": "button",
        "sub_type": "url",
        "index": "1",
        "parameters": [{"type": "text", "text": "Z9"}],
    }
    assert db.sql("select status, sent_count from public.campaigns where id = %s", (campaign_id,)) == [
        {"status": "completed", "sent_count": 12}
    ]
