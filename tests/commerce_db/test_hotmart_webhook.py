"""Hotmart's webhook through the worker's HTTP route against the real database: the hottok,
raw events kept and idempotent, every event type of the corpus, out-of-order purchases, buyers
matched to contacts, and the replay of a student's story down to the refund."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hotmart_corpus import CORPUS, HOTTOK, TENANT, create_integration, dated, event, events_of

from support import Db
from zapbase.db.pool import Pool, connect, open_pool
from zapbase.demo import hotmart_chapter
from zapbase.hotmart import HOTTOK_HEADER, Hottoks, hotmart_path
from zapbase.settings import Settings
from zapbase.worker.http import create_app
from zapbase.worker.metrics import Metrics

pytestmark = pytest.mark.anyio


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def pool(db: Db, anyio_backend: str) -> AsyncIterator[Pool]:
    async with open_pool(db.url, 4) as pool:
        yield pool


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def client(db: Db, pool: Pool, clock: Clock, metrics: Metrics) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(database_url=db.url), pool, metrics, hottoks=Hottoks(pool, clock=clock))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://worker") as http:
        yield http


@pytest.fixture
def integration(db: Db) -> str:
    return create_integration(db)


async def send(
    client: httpx.AsyncClient, integration: str, body: dict[str, Any] | bytes, hottok: str | None = HOTTOK
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if hottok is not None:
        headers[HOTTOK_HEADER] = hottok
    return await client.post(hotmart_path(integration), content=content, headers=headers)


def stored(db: Db) -> list[dict[str, Any]]:
    return db.sql(
        "select event, status, reason from public.hotmart_events where tenant_id = %s order by received_at",
        (TENANT,),
    )


def transaction(db: Db, code: str = "HP17647701000001") -> dict[str, Any]:
    rows = db.sql("select * from public.transactions where tenant_id = %s and code = %s", (TENANT, code))
    assert len(rows) == 1
    return rows[0]


def contact_of(db: Db, cpf: str = "39053344705") -> dict[str, Any]:
    rows = db.sql("select * from public.contacts where tenant_id = %s and cpf = %s", (TENANT, cpf))
    assert len(rows) == 1
    return rows[0]


# -- the hottok ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "hottok", [None, "", "hottok-da-loja-demo-7c1", HOTTOK + "x", "hottok-da-outra-loja"]
)
async def test_a_wrong_hottok_is_refused_stores_nothing_and_is_counted(
    db: Db, client: httpx.AsyncClient, integration: str, hottok: str | None
) -> None:
    response = await send(client, integration, event("purchase_approved"), hottok=hottok)
    assert response.status_code == 401
    assert stored(db) == []
    assert db.value("select count(*) from public.transactions") == 0
    assert (
        db.value("select refused from public.hotmart_rejections where integration_id = %s", (integration,))
        == 1
    )


async def test_another_tenants_hottok_does_not_open_this_tenants_url(
    db: Db, client: httpx.AsyncClient, integration: str
) -> None:
    other = create_integration(db, hottok="hottok-de-outra-integracao", name="Hotmart (2ª conta)")
    assert (
        await send(client, integration, event("purchase_approved"), hottok="hottok-de-outra-integracao")
    ).status_code == 401
    assert (await send(client, other, event("purchase_approved"), hottok=HOTTOK)).status_code == 401
    assert stored(db) == []


@pytest.mark.parametrize("path_id", ["not-a-uuid", "00000000-0000-4000-8000-00000000dead"])
async def test_an_unknown_integration_is_refused(db: Db, client: httpx.AsyncClient, path_id: str) -> None:
    response = await send(client, path_id, event("purchase_approved"))
    assert response.status_code == 401
    assert stored(db) == []


async def test_a_rotated_hottok_is_read_again_after_a_miss(
    db: Db, client: httpx.AsyncClient, integration: str, clock: Clock
) -> None:
    assert (await send(client, integration, event("purchase_approved"))).status_code == 200
    with db.as_user("00000000-0000-4000-a000-000000000001") as s:
        s.value("select public.set_integration_secret(%s, 'hottok-novo')", (integration,))
    clock.now += 10  # past the miss refresh, within the TTL
    assert (
        await send(client, integration, event("purchase_complete"), hottok="hottok-novo")
    ).status_code == 200
    assert (await send(client, integration, event("purchase_protest"), hottok=HOTTOK)).status_code == 401


# -- raw events ------------------------------------------------------------------------------


async def test_an_event_is_stored_once_whatever_the_redeliveries(
    db: Db, client: httpx.AsyncClient, integration: str, metrics: Metrics
) -> None:
    body = dated(event("purchase_approved"), -1)
    for _ in range(3):
        response = await send(client, integration, body)
        assert (response.status_code, response.text) == (200, "OK")
    assert [r["status"] for r in stored(db)] == ["applied"]
    assert len(events_of(db, "purchase.approved")) == 1
    assert metrics.hotmart_webhooks.labels("duplicate")._value.get() == 2


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe", b"null", b'{"n": NaN}'])
async def test_a_malformed_body_is_kept_and_answered_200(
    db: Db, client: httpx.AsyncClient, integration: str, body: bytes
) -> None:
    response = await send(client, integration, body)
    assert (response.status_code, response.text) == (200, "QUARANTINED")
    rows = db.sql("select status, raw_body, reason from public.hotmart_events")
    assert len(rows) == 1 and rows[0]["status"] == "quarantined" and rows[0]["reason"]


async def test_strings_postgres_refuses_are_replaced_and_the_event_applied(
    db: Db, client: httpx.AsyncClient, integration: str
) -> None:
    body = json.dumps(event("purchase_approved")).replace("Ana Souza", "Ana\\u0000Souza").encode()
    assert (await send(client, integration, body)).status_code == 200
    assert contact_of(db)["name"] == "Ana\ufffdSouza"


async def test_an_unknown_event_and_unknown_values_are_kept(
    db: Db, client: httpx.AsyncClient, integration: str
) -> None:
    future = {
        "id": "evt-futuro",
        "creation_date": 1764770400000,
        "event": "PURCHASE_GIFTED",
        "version": "3.0.0",
        "data": {"product": {"id": 4774438}},
    }
    assert (await send(client, integration, future)).status_code == 200
    odd = event(
        "purchase_approved",
        data__purchase__status="PRE_APPROVED_BY_ANALYSIS",
        data__purchase__payment={"type": "CRYPTO_WALLET"},
    )
    assert (await send(client, integration, odd)).status_code == 200
    assert [(r["event"], r["status"]) for r in stored(db)] == [
        ("PURCHASE_GIFTED", "stored"),
        ("PURCHASE_APPROVED", "applied"),
    ]
    tx = transaction(db)
    assert (tx["status"], tx["hotmart_status"], tx["payment_type"]) == (
        "approved",
        "PRE_APPROVED_BY_ANALYSIS",
        "CRYPTO_WALLET",
    )


# -- the corpus: every event type ------------------------------------------------------------


def test_the_corpus_covers_every_event_hotmart_documents() -> None:
    events = {json.loads(p.read_text())["event"] for p in CORPUS.glob("*.json")}
    assert events == {
        "PURCHASE_APPROVED",
        "PURCHASE_COMPLETE",
        "PURCHASE_CANCELED",
        "PURCHASE_BILLET_PRINTED",
        "PURCHASE_PROTEST",
        "PURCHASE_REFUNDED",
        "PURCHASE_CHARGEBACK",
        "PURCHASE_EXPIRED",
        "PURCHASE_DELAYED",
        "PURCHASE_OUT_OF_SHOPPING_CART",
        "SUBSCRIPTION_CANCELLATION",
        "SWITCH_PLAN",
        "UPDATE_SUBSCRIPTION_CHARGE_DATE",
        "CLUB_FIRST_ACCESS",
        "CLUB_MODULE_COMPLETED",
    }


# What each event of the corpus, alone, leaves behind: the transaction's status (None: no
# transaction), the enrollment's access (None: none), and the events emitted.
ALONE: dict[str, tuple[str | None, str | None, list[str]]] = {
    "purchase_approved": ("approved", "active", ["purchase.approved"]),
    "purchase_complete": ("complete", "active", ["purchase.approved"]),
    "purchase_canceled": ("canceled", None, []),
    "purchase_billet_printed": ("billet_printed", None, ["purchase.billet_printed"]),
    "purchase_pix_generated": ("billet_printed", None, ["purchase.billet_printed"]),
    "purchase_protest": ("protested", "active", ["purchase.approved", "purchase.refund_requested"]),
    "purchase_refunded": ("refunded", "blocked", ["purchase.refunded"]),
    "purchase_chargeback": ("chargeback", "blocked", ["purchase.chargeback"]),
    "purchase_expired": ("expired", None, []),
    "purchase_delayed": ("delayed", "blocked", []),
    "purchase_out_of_shopping_cart": (None, None, ["purchase.cart_abandoned"]),
    "subscription_cancellation": (None, "expired", []),
    "switch_plan": (None, "active", []),
    "update_subscription_charge_date": (None, "active", []),
    "club_first_access": (None, "active", ["enrollment.first_access"]),
    "club_module_completed": (None, "active", []),
}


@pytest.mark.parametrize("name", sorted(ALONE))
async def test_each_event_of_the_corpus_is_applied(
    db: Db, client: httpx.AsyncClient, integration: str, name: str
) -> None:
    body = event(name)
    response = await send(client, integration, body)
    assert (response.status_code, response.text) == (200, "OK")
    assert [r["status"] for r in stored(db)] == ["applied"], stored(db)
    status, access, emitted = ALONE[name]
    code = body["data"].get("purchase", {}).get("transaction")
    assert db.sql("select status from public.transactions") == ([{"status": status}] if status else [])
    enrollments = db.sql("select access_status from public.enrollments")
    assert enrollments == ([{"access_status": access}] if access else [])
    commerce = db.sql(
        "select type from public.events e join public.event_types t using (type)"
        " where t.module = 'commerce' order by e.created_at"
    )
    assert [r["type"] for r in commerce] == emitted
    # the product is created from the event, whatever the type of product.id
    product_id = str(
        (body["data"].get("product") or body["data"].get("subscription", {}).get("product"))["id"]
    )
    assert db.value("select count(*) from public.products where hotmart_product_id = %s", (product_id,)) == 1
    if code:
        assert transaction(db, code)["contact_id"] is not None


async def test_boleto_and_pix_stay_on_the_transaction_and_in_the_event_for_templates(
    db: Db, client: httpx.AsyncClient, integration: str
) -> None:
    await send(client, integration, event("purchase_billet_printed"))
    await send(client, integration, event("purchase_pix_generated"))
    boleto, pix = transaction(db, "HP17647701000002"), transaction(db, "HP17647701000003")
    assert boleto["billet_url"] == "https://pay.hotmart.com/boleto/HP17647701000002.pdf"
    assert boleto["billet_barcode"].startswith("03399.63290")
    assert pix["pix_code"].startswith("00020126580014br.gov.bcb.pix")
    assert pix["pix_qrcode_url"] == "https://pay.hotmart.com/pix/HP17647701000003.png"
    assert pix["pix_expires_at"] is not None
    printed = events_of(db, "purchase.billet_printed")
    assert [p["billet_url"] for p in printed if "billet_url" in p] == [boleto["billet_url"]]
    assert [p["pix_code"] for p in printed if "pix_code" in p] == [pix["pix_code"]]
    # the boleto expired later: kept forward, the link stays for the record
    await send(client, integration, event("purchase_expired"))
    assert transaction(db, "HP17647701000002")["status"] == "expired"


# -- out of order ----------------------------------------------------------------------------


async def test_complete_before_approved_is_one_approval(
    db: Db, client: httpx.AsyncClient, integration: str
) -> None:
    await send(client, integration, event("purchase_complete"))
    await send(client, integration, event("purchase_approved"))
    assert transaction(db)["status"] == "complete"
    assert len(events_of(db, "purchase.approved")) == 1
    assert contact_of(db)["ltv"] == 497


async def test_refunded_and_chargeback_are_final(db: Db, client: httpx.AsyncClient, integration: str) -> None:
    for name in (
        "purchase_approved",
        "purchase_refunded",
        "purchase_complete",
        "purchase_chargeback",
        "purchase_approved",
    ):
        await send(client, integration, event(name, id=f"{name}-{len(stored(db))}"))
    assert transaction(db)["status"] == "refunded"
    assert events_of(db, "purchase.chargeback") == []
    assert db.value("select access_status from public.enrollments") == "blocked"
    assert contact_of(db)["ltv"] == 0


async def test_a_refund_met_before_its_purchase_is_applied_when_the_purchase_arrives(
    db: Db, client: httpx.AsyncClient, integration: str
) -> None:
    refund = event("purchase_refunded", data__purchase__approved_date=None)
    await send(client, integration, refund)
    assert transaction(db)["status"] == "refunded"
    assert contact_of(db)["ltv"] == 0
    await send(client, integration, event("purchase_approved"))
    tx = transaction(db)
    assert tx["status"] == "refunded" and tx["approved_at"] is not None
    assert contact_of(db)["ltv"] == 0
    assert db.value("select access_status from public.enrollments") == "blocked"
    assert events_of(db, "purchase.approved") == []


async def test_a_canceled_card_then_approved_moves_forward(
    db: Db, client: httpx.AsyncClient, integration: str
) -> None:
    await send(client, integration, event("purchase_canceled"))
    await send(client, integration, event("purchase_approved"))
    assert transaction(db)["status"] == "approved"
    await send(client, integration, event("purchase_canceled", id="late-cancel"))
    assert transaction(db)["status"] == "approved"


async def test_times_in_milliseconds_under_both_names_and_product_ids_of_both_types(
    db: Db, client: httpx.AsyncClient, integration: str
) -> None:
    await send(client, integration, event("purchase_approved"))  # product.id 4774438, creation_date
    await send(client, integration, event("club_first_access"))  # 4774438, creationDate
    await send(client, integration, event("club_module_completed"))  # "4774438"
    assert db.value("select count(*) from public.products") == 1
    times = db.sql("select event, occurred_at::text as at from public.hotmart_events order by occurred_at")
    assert [t["at"] for t in times] == [
        "2025-12-03 14:00:00.5+00",
        "2025-12-04 14:00:00+00",
        "2025-12-06 14:00:00+00",
    ]
    tx = transaction(db)
    assert (str(tx["approved_at"]), str(tx["purchased_at"])) == (
        "2025-12-03 14:00:00+00:00",
        "2025-12-03 13:55:00+00:00",
    )
    assert str(tx["warranty_ends_at"]) == "2026-01-08 00:00:00+00:00"
    assert (tx["source"], tx["value"], tx["installments"]) == ("instagram_bio", 497, 12)
    assert db.value("select count(*) from public.enrollments") == 1


# -- buyers and contacts ---------------------------------------------------------------------


async def test_a_buyer_becomes_one_contact_with_cpf_email_and_a_whatsapp_number(
    db: Db, client: httpx.AsyncClient, integration: str
) -> None:
    await send(client, integration, event("purchase_approved"))
    await send(client, integration, event("club_first_access"))  # data.user: e-mail only
    await send(client, integration, event("subscription_cancellation"))  # subscriber, phone in parts
    contact = contact_of(db)
    assert (contact["name"], contact["email"], contact["wa_id"], contact["is_client"]) == (
        "Ana Souza",
        "ana.souza@example.com.br",
        "5511987654321",
        True,
    )
    assert db.value("select count(*) from public.contacts where tenant_id = %s", (TENANT,)) == 1


@pytest.mark.parametrize("wa_id", ["5511987654321", "551187654321"])
async def test_a_whatsapp_contact_is_found_by_phone_with_or_without_the_ninth_digit(
    db: Db, client: httpx.AsyncClient, integration: str, wa_id: str
) -> None:
    known = db.value(
        "insert into public.contacts (tenant_id, wa_id, profile_name) values (%s, %s, 'Aninha') returning id",
        (TENANT, wa_id),
    )
    await send(client, integration, event("purchase_approved", data__buyer__checkout_phone="(11) 8765-4321"))
    contact = contact_of(db)
    assert contact["id"] == known and contact["wa_id"] == wa_id and contact["ltv"] == 497


async def test_a_landline_and_a_foreign_number_are_kept_as_they_are(
    db: Db, client: httpx.AsyncClient, integration: str
) -> None:
    assert db.value("select private.br_phone('(11) 3456-7890')") == "551134567890"
    assert db.value("select private.br_phone('+351 912 345 678')") == "351912345678"
    assert db.value("select private.br_phone('011 98765-4321')") == "5511987654321"
    assert db.value("select private.br_phone('12345')") is None


async def test_the_cpf_wins_and_a_disagreeing_email_is_recorded_not_merged(
    db: Db, client: httpx.AsyncClient, integration: str
) -> None:
    by_cpf = db.value(
        "insert into public.contacts (tenant_id, wa_id, cpf) values (%s, '5511911112222', %s) returning id",
        (TENANT, "39053344705"),
    )
    by_email = db.value(
        "insert into public.contacts (tenant_id, wa_id, email) values"
        " (%s, '5511933334444', 'ana.souza@example.com.br') returning id",
        (TENANT,),
    )
    await send(client, integration, event("purchase_approved"))
    assert transaction(db)["contact_id"] == by_cpf
    conflicts = db.sql("select contact_id, other_contact_id, reason, status from public.contact_conflicts")
    assert conflicts == [
        {
            "contact_id": by_cpf,
            "other_contact_id": by_email,
            "reason": "the e-mail belongs to another contact",
            "status": "open",
        }
    ]
    assert (
        db.value("select email from public.contacts where id = %s", (by_email,)) == "ana.souza@example.com.br"
    )
    assert (
        db.value("select email from public.contacts where id = %s", (by_cpf,)) == "ana.souza@example.com.br"
    )


async def test_a_contact_with_another_cpf_is_another_person(
    db: Db, client: httpx.AsyncClient, integration: str
) -> None:
    sister = db.value(
        "insert into public.contacts (tenant_id, wa_id, email, cpf) values"
        " (%s, '5511987654321', 'ana.souza@example.com.br', '11144477735') returning id",
        (TENANT,),
    )
    await send(client, integration, event("purchase_approved"))
    buyer = contact_of(db)
    assert buyer["id"] != sister and buyer["wa_id"] is None  # the number stays with whoever holds it
    assert db.value("select ltv from public.contacts where id = %s", (sister,)) == 0
    reasons = {r["reason"] for r in db.sql("select reason from public.contact_conflicts")}
    assert reasons == {"another CPF holds this e-mail"}


# -- LTV and behaviour tags ------------------------------------------------------------------


async def test_ltv_sums_paid_purchases_minus_refunds_and_tags_vip_above_the_tenants_threshold(
    db: Db, client: httpx.AsyncClient, integration: str
) -> None:
    db.sql(
        """update public.tenants set settings = settings || '{"commerce": {"vip_ltv": 900}}' where id = %s""",
        (TENANT,),
    )
    await send(client, integration, event("purchase_approved"))
    assert (contact_of(db)["ltv"], contact_of(db)["tags"]) == (497, [])
    second = event(
        "purchase_approved",
        id="evt-2",
        data__purchase__transaction="HP2",
        data__product__id=5000001,
        data__purchase__price={"value": 997.5, "currency_value": "BRL"},
    )
    await send(client, integration, second)
    assert (contact_of(db)["ltv"], contact_of(db)["tags"]) == (1494.5, ["vip"])
    await send(client, integration, event("purchase_refunded", data__purchase__transaction="HP2"))
    assert (contact_of(db)["ltv"], contact_of(db)["tags"]) == (497, [])
    assert db.value("select count(*) from public.tags where tenant_id = %s and name = 'vip'", (TENANT,)) == 1


# -- the replay: a student's story -----------------------------------------------------------


async def test_replay_approved_first_access_modules_then_refund_inside_the_guarantee(
    db: Db, client: httpx.AsyncClient, integration: str
) -> None:
    product = db.value(
        "insert into public.products (tenant_id, name, hotmart_product_id, monitoring_enabled)"
        " values (%s, 'Método Fluência em 90 Dias', '4774438', true) returning id",
        (TENANT,),
    )
    for position, module in enumerate(("Zq4x8Jb1Ok", "Yt7w2Lm9Pa"), 1):
        module_id = db.value(
            "insert into public.course_modules (tenant_id, product_id, hotmart_module_id, position)"
            " values (%s, %s, %s, %s) returning id",
            (TENANT, product, module, position),
        )
        for lesson in range(2):
            db.sql(
                "insert into public.lessons (tenant_id, module_id, hotmart_page_hash, position, drip_days)"
                " values (%s, %s, %s, %s, %s)",
                (TENANT, module_id, f"{module}-{lesson}", lesson, 7 * position),
            )
    story = [
        dated(event("purchase_approved"), -3),
        dated(event("club_first_access"), -2.9),
        dated(event("club_module_completed"), -2),
        dated(
            event(
                "club_module_completed", id="modulo-2", data__module={"id": "Yt7w2Lm9Pa", "name": "Módulo 2"}
            ),
            -1,
        ),
        dated(event("purchase_protest"), -0.5),
        dated(event("purchase_refunded"), 0),
    ]
    for step, body in enumerate(story):
        response = await send(client, integration, body)
        assert (response.status_code, response.text) == (200, "OK"), step
        if step == 3:
            mid = db.sql(
                "select progress_pct, completed_modules, first_access_origin, access_status"
                " from public.enrollments"
            )
            assert mid == [
                {
                    "progress_pct": 100,
                    "completed_modules": ["Zq4x8Jb1Ok", "Yt7w2Lm9Pa"],
                    "first_access_origin": "hotmart_email",
                    "access_status": "active",
                }
            ]
            assert contact_of(db)["ltv"] == 497
    contact = contact_of(db)
    assert (contact["ltv"], contact["tags"], contact["email"], contact["wa_id"]) == (
        0,
        ["churn_risk"],
        "ana.souza@example.com.br",
        "5511987654321",
    )
    tx = transaction(db)
    assert tx["status"] == "refunded" and tx["refunded_at"] < tx["warranty_ends_at"]
    assert tx["warranty_notice_at"] is None
    enrollment = db.sql("select * from public.enrollments")[0]
    assert (enrollment["access_status"], enrollment["transaction_id"], enrollment["stalls_at"]) == (
        "blocked",
        tx["id"],
        None,
    )
    assert (
        db.value("select count(*) from public.lesson_progress where enrollment_id = %s", (enrollment["id"],))
        == 4
    )
    kinds = [
        r["type"]
        for r in db.sql(
            "select type from public.events where tenant_id = %s"
            " and split_part(type, '.', 1) in ('purchase', 'enrollment', 'progress') order by created_at",
            (TENANT,),
        )
    ]
    assert kinds == [
        "purchase.approved",
        "enrollment.first_access",
        "purchase.refund_requested",
        "purchase.refunded",
    ]
    approved = events_of(db, "purchase.approved")[0]
    assert (approved["code"], approved["value"], approved["contact_id"]) == (
        "HP17647701000001",
        497,
        str(contact["id"]),
    )
    assert [r["status"] for r in stored(db)] == ["applied"] * 6


# -- the demo's chapter ----------------------------------------------------------------------


async def test_the_demo_chapter_tells_a_customers_course_story(db: Db, client: httpx.AsyncClient) -> None:
    wa_id = "5511955554444"
    conversation, _ = db.create_conversation(wa_id=wa_id, text="Oi, quero saber do curso")
    async with await connect(db.url) as conn:
        # no sender runs here: the access link stays queued, never delivered
        conversation_id = uuid.UUID(conversation)
        rows = await hotmart_chapter(client, "http://worker", conn, wa_id, conversation_id, settle_s=0.1)
    assert [(r["step"], r["http"]) for r in rows] == [
        ("PURCHASE_APPROVED (wrong hottok)", 401),
        ("PURCHASE_APPROVED", 200),
        ("CLUB_FIRST_ACCESS", 200),
        ("CLUB_MODULE_COMPLETED", 200),
        ("PURCHASE_PROTEST", 200),
        ("PURCHASE_REFUNDED", 200),
    ]
    assert [(r["transaction"], r["ltv"], r["access"]) for r in rows[1:]] == [
        ("approved", 497, "active"),
        ("approved", 497, "active"),
        ("approved", 497, "active"),
        ("protested", 497, "active"),
        ("refunded", 0, "blocked"),
    ]
    assert rows[2]["origin"] == "hotmart_email"  # a queued message reached nobody
    assert rows[-1]["tags"] == ["churn_risk"]
    assert rows[-1]["events"] == (
        "purchase.approved, enrollment.first_access, purchase.refund_requested, purchase.refunded"
    )
    assert db.value("select count(*) from public.contacts where wa_id = %s", (wa_id,)) == 1
    access = db.value("select status from public.messages where content like 'Parabéns pela compra%%'")
    assert access == "queued"
