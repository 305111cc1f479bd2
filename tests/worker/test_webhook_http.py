"""The worker's HTTP API through HTTP, against the real database: Meta's handshake, signed
webhooks (raw bytes, several secrets, cached), idempotent ingest, quarantine, limits,
health, metrics and OpenAPI; also driven by the simulator's phones."""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from psycopg import pq

from support import Db
from zapbase.db.pool import Pool, open_pool
from zapbase.settings import Settings
from zapbase.simulator import (
    DEMO_APP_SECRET,
    DEMO_NUMBER,
    SimNumber,
    SimulatedUser,
    Simulator,
    SimulatorConfig,
    webhooks,
)
from zapbase.simulator import create_app as create_simulator
from zapbase.whatsapp import GraphAPI
from zapbase.whatsapp.signature import HEADER, sign
from zapbase.worker.backlog import BacklogLoop
from zapbase.worker.http import (
    MAX_BODY_BYTES,
    MISS_REFRESH_S,
    SECRETS_TTL_S,
    WebhookApps,
    create_app,
    webhook_path,
)
from zapbase.worker.metrics import Metrics

pytestmark = pytest.mark.anyio

WORKER_URL = "http://worker"
SIMULATOR_URL = "http://simulator"
PNID = DEMO_NUMBER.phone_number_id
PATH = webhook_path(PNID)  # the demo number's own Meta app (the simulator's)
PLATFORM_PATH = webhook_path()
DEMO_VERIFY_TOKEN = "zapbase-simulator-verify-token"  # seed: the demo number's, in Vault
SECOND_APP_SECRET = "second-app-secret-from-settings"
SETTINGS_VERIFY_TOKEN = "settings-verify-token"
MARIA = "5511988887777"
JOAO = "5521977776666"
NOW = int(time.time())


class Clock:
    """Monotonic seconds under the test's control (the secrets cache's clock)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def worker_settings(db: Db) -> Settings:
    # The platform's Meta app, configured through settings, besides the numbers' own in Vault.
    return Settings(
        database_url=db.url,
        whatsapp_app_secrets=[SECOND_APP_SECRET],
        whatsapp_verify_token=SETTINGS_VERIFY_TOKEN,
    )


@pytest.fixture
async def client(
    worker_settings: Settings, pool: Pool, metrics: Metrics, clock: Clock
) -> AsyncIterator[httpx.AsyncClient]:
    apps = WebhookApps(pool, worker_settings, clock=clock)
    app = create_app(worker_settings, pool, metrics, apps=apps)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=WORKER_URL) as http:
        yield http


@pytest.fixture
def simulator() -> Simulator:
    return Simulator(
        SimulatorConfig(numbers=(DEMO_NUMBER,), app_secret=DEMO_APP_SECRET, webhook_url=WORKER_URL + PATH)
    )


@pytest.fixture
async def graph(simulator: Simulator) -> AsyncIterator[GraphAPI]:
    transport = httpx.ASGITransport(app=create_simulator(simulator=simulator))
    async with httpx.AsyncClient(transport=transport, base_url=SIMULATOR_URL) as http:
        yield GraphAPI(http, base_url=SIMULATOR_URL, token=DEMO_NUMBER.access_token)


# -- helpers -----------------------------------------------------------------------------------

_wamids = iter(range(1, 1_000_000))


def new_wamid() -> str:
    return f"wamid.HBgNNTUxMTk{next(_wamids):012d}AA=="


def message(wa_id: str, text: str, *, wamid: str | None = None, at: int | None = None) -> dict[str, Any]:
    return webhooks.inbound_message(
        wa_id=wa_id, wamid=wamid or new_wamid(), timestamp=at or int(time.time()), kind="text",
        content={"body": text},
    )


def text_payload(wa_id: str, text: str, name: str = "Maria Silva", **kw: Any) -> dict[str, Any]:
    value = webhooks.inbound_value(wa_id=wa_id, name=name, message=message(wa_id, text, **kw))
    return webhooks.notification(DEMO_NUMBER, value)


async def post(
    client: httpx.AsyncClient, body: bytes, secret: str | None = DEMO_APP_SECRET, path: str = PATH,
    **headers: str,
) -> httpx.Response:
    sent = {"Content-Type": "application/json", **headers}
    if secret is not None and HEADER not in headers:
        sent[HEADER] = sign(body, secret)
    return await client.post(path, content=body, headers=sent)


def count(db: Db, table: str) -> int:
    value: int = db.value(f"select count(*) from public.{table}")
    return value


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


# -- handshake ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "token"), [(PATH, DEMO_VERIFY_TOKEN), (PLATFORM_PATH, SETTINGS_VERIFY_TOKEN)]
)
async def test_handshake_echoes_the_challenge_for_the_apps_own_token(
    client: httpx.AsyncClient, path: str, token: str
) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "1158201444"}
    response = await client.get(path, params=params)
    assert response.status_code == 200
    assert response.text == "1158201444"
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "not-the-token", "hub.challenge": "42"},
        {"hub.mode": "subscribe", "hub.verify_token": DEMO_VERIFY_TOKEN[:-1], "hub.challenge": "42"},
        {"hub.mode": "unsubscribe", "hub.verify_token": DEMO_VERIFY_TOKEN, "hub.challenge": "42"},
        {"hub.mode": "subscribe", "hub.challenge": "42"},
        {"hub.mode": "subscribe", "hub.verify_token": SETTINGS_VERIFY_TOKEN, "hub.challenge": "42"},
        {},
    ],
)
async def test_handshake_refuses_a_wrong_token_or_mode(
    client: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get(PATH, params=params)
    assert response.status_code == 403
    assert "42" not in response.text


@pytest.mark.parametrize(
    ("path", "token"),
    [(PLATFORM_PATH, DEMO_VERIFY_TOKEN), (webhook_path("999999"), DEMO_VERIFY_TOKEN),
     (webhook_path("not-a-number"), DEMO_VERIFY_TOKEN)],
)
async def test_a_handshake_proves_the_token_of_the_app_its_url_names_only(
    client: httpx.AsyncClient, path: str, token: str
) -> None:
    params = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "42"}
    response = await client.get(path, params=params)
    assert response.status_code == 403 and "42" not in response.text


# -- signatures ---------------------------------------------------------------------------------


async def test_a_signed_text_is_verified_on_the_escaped_bytes_as_sent(
    client: httpx.AsyncClient, db: Db, metrics: Metrics
) -> None:
    payload = text_payload(MARIA, "Olá, preciso de ajuda/suporte é urgente ✓", name="José Araújo")
    body = webhooks.encode(payload)
    assert b"Ol\\u00e1" in body and b"ajuda\\/suporte" in body and b"\\u2713" in body

    # The same JSON re-serialised (unescaped) has another digest: signing it must not pass.
    reencoded = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
    refused = await post(client, body, **{HEADER: sign(reencoded, DEMO_APP_SECRET)})
    assert refused.status_code == 401

    response = await post(client, body)
    assert response.status_code == 200 and response.text == "EVENT_RECEIVED"
    [row] = db.sql("select m.content, m.status, c.profile_name, c.wa_id from public.messages m"
                   " join public.contacts c on c.id = m.contact_id")
    assert row == {"content": "Olá, preciso de ajuda/suporte é urgente ✓", "status": "received",
                   "profile_name": "José Araújo", "wa_id": MARIA}
    assert db.value("select status from public.inbound_events") == "applied"
    assert sample(metrics, "zapbase_webhooks_total", outcome="ingested") == 1
    assert sample(metrics, "zapbase_ingested_messages_total") == 1


def _flip_one_hex_digit(signature: str) -> str:
    last = signature[-1]
    return signature[:-1] + ("0" if last != "0" else "1")


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda body: _flip_one_hex_digit(sign(body, DEMO_APP_SECRET)), id="one-hex-digit"),
        pytest.param(lambda body: None, id="missing-header"),
        pytest.param(lambda body: sign(body, "not-the-app-secret"), id="wrong-secret"),
        pytest.param(lambda body: sign(body, DEMO_APP_SECRET).upper(), id="uppercase"),
        pytest.param(lambda body: sign(body, DEMO_APP_SECRET).removeprefix("sha256="), id="no-prefix"),
        pytest.param(lambda body: sign(body + b" ", DEMO_APP_SECRET), id="other-bytes"),
    ],
)
async def test_a_bad_signature_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, db: Db, metrics: Metrics, forge: Any
) -> None:
    body = webhooks.encode(text_payload(MARIA, "oi"))
    signature = forge(body)
    headers = {HEADER: signature} if signature is not None else {}
    response = await post(client, body, secret=None, **headers)
    assert response.status_code == 401
    assert count(db, "inbound_events") == 0 and count(db, "messages") == 0
    assert sample(metrics, "zapbase_webhooks_total", outcome="bad_signature") == 1


async def test_invalid_json_without_a_valid_signature_is_refused_not_quarantined(
    client: httpx.AsyncClient, db: Db
) -> None:
    response = await post(client, b"{not json", secret="not-the-app-secret")
    assert response.status_code == 401
    assert count(db, "inbound_events") == 0


def platform_number(db: Db) -> SimNumber:
    """A number of the demo tenant under the platform's Meta app (no app secret of its own)."""
    db.sql("insert into public.whatsapp_numbers (tenant_id, phone_number, phone_number_id, waba_id)"
           " values ('00000000-0000-4000-b000-000000000001', '+5511999990003', '300000000000003',"
           " '102290129340398')")
    return SimNumber(phone_number_id="300000000000003", display_phone_number="5511999990003",
                     access_token="unused-token", waba_id="102290129340398")


async def test_the_platform_apps_secret_from_settings_signs_for_numbers_without_their_own_app(
    client: httpx.AsyncClient, db: Db
) -> None:
    number = platform_number(db)
    value = webhooks.inbound_value(wa_id=MARIA, name="Maria", message=message(MARIA, "oi, plataforma"))
    body = webhooks.encode(webhooks.notification(number, value))
    assert (await post(client, body, secret=SECOND_APP_SECRET, path=PLATFORM_PATH)).status_code == 200
    assert (await post(client, body, secret=SECOND_APP_SECRET, path=PATH)).status_code == 401
    assert db.value("select count(*) from public.messages where content = 'oi, plataforma'") == 1

    # Its signature does not speak for a number under its own app: kept apart, never applied.
    demo = webhooks.encode(text_payload(MARIA, "oi, app errado"))
    assert (await post(client, demo, secret=SECOND_APP_SECRET, path=PLATFORM_PATH)).status_code == 200
    assert db.value("select count(*) from public.messages where content = 'oi, app errado'") == 0
    assert db.value("select status from public.inbound_events where tenant_id is null") == "quarantined"


async def test_another_tenants_app_cannot_speak_for_the_demo_number(
    client: httpx.AsyncClient, db: Db, clock: Clock
) -> None:
    """The attack: sign up, add a number with an app secret of one's own, then post a
    forged inbound image (its url pointing at the attacker, to steal the victim's token) and
    a number change for the victim's customer."""
    owner = db.create_user("golpe@example.com")
    tenant = db.create_tenant(owner, "Golpe")
    with db.as_user(owner) as s:
        attacker = s.value("insert into public.whatsapp_numbers (tenant_id, phone_number, phone_number_id)"
                           " values (%s, '+5511900000000', '555000111222333') returning id", (tenant,))
        s.value("select public.set_whatsapp_number_secret(%s, 'app_secret', %s)",
                (attacker, "attacker-app-secret"))
    image = webhooks.inbound_message(wa_id=MARIA, wamid=new_wamid(), timestamp=NOW, kind="image",
                                     content={"id": "1", "mime_type": "image/jpeg", "url": "https://evil.test/x"})
    forged = webhooks.encode(webhooks.notification(
        DEMO_NUMBER, webhooks.inbound_value(wa_id=MARIA, name="Maria", message=image)))
    # Through the victim's URL the attacker's secret is not the app's: refused outright.
    assert (await post(client, forged, secret="attacker-app-secret")).status_code == 401
    # Through the attacker's own URL it is signed, but speaks for the attacker's numbers only.
    own_path = webhook_path("555000111222333")
    assert (await post(client, forged, secret="attacker-app-secret", path=own_path)).status_code == 200
    assert count(db, "messages") == 0 and count(db, "contacts") == 0
    assert db.value("select reason from public.inbound_events") .endswith("does not cover this number")


async def test_a_new_numbers_secret_is_picked_up_after_a_miss_at_most_every_few_seconds(
    client: httpx.AsyncClient, db: Db, clock: Clock
) -> None:
    second = SimNumber(
        phone_number_id="200000000000002", display_phone_number="5511999990001",
        access_token="unused-token", waba_id="102290129340399",
    )
    value = webhooks.inbound_value(wa_id=JOAO, name="João", message=message(JOAO, "oi, número novo"))
    body = webhooks.encode(webhooks.notification(second, value))
    second_path = webhook_path("200000000000002")
    # Posted before the number exists: its app is read (unknown) and the request refused.
    assert (await post(client, body, secret="third-app-secret", path=second_path)).status_code == 401
    number_id = db.value(
        "insert into public.whatsapp_numbers"
        " (tenant_id, phone_number, phone_number_id, waba_id, display_name)"
        " values ('00000000-0000-4000-b000-000000000001', '+5511999990001', '200000000000002',"
        " '102290129340399', 'Loja Demo 2') returning id"
    )
    db.sql("select public.set_whatsapp_number_secret(%s, 'app_secret', 'third-app-secret')", (number_id,))

    # The app was read a moment ago: the miss does not read it again yet.
    assert (await post(client, body, secret="third-app-secret", path=second_path)).status_code == 401
    clock.now += MISS_REFRESH_S
    assert (await post(client, body, secret="third-app-secret", path=second_path)).status_code == 200
    stored = db.value("select whatsapp_number_id from public.messages where content = 'oi, número novo'")
    assert stored == number_id


async def test_a_disabled_numbers_secret_stops_working_after_the_cache_ttl(
    client: httpx.AsyncClient, db: Db, clock: Clock
) -> None:
    assert (await post(client, webhooks.encode(text_payload(MARIA, "um")))).status_code == 200
    db.sql("update public.whatsapp_numbers set status = 'disabled' where phone_number_id = %s", (PNID,))
    clock.now += SECRETS_TTL_S - 1
    assert (await post(client, webhooks.encode(text_payload(MARIA, "dois")))).status_code == 200
    clock.now += 1
    assert (await post(client, webhooks.encode(text_payload(MARIA, "três")))).status_code == 401
    assert count(db, "messages") == 2


async def test_a_webhook_costs_one_database_round_trip_once_the_secrets_are_cached(
    db: Db, worker_settings: Settings, tmp_path: Path
) -> None:
    async with open_pool(db.url, 1) as pool:  # one connection: its protocol trace sees everything
        app = create_app(worker_settings, pool, Metrics())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=WORKER_URL) as http:
            first = await post(http, webhooks.encode(text_payload(MARIA, "carrega os segredos")))
            assert first.status_code == 200
            with (tmp_path / "trace").open("w+") as trace:
                async with pool.connection() as conn:
                    conn.pgconn.trace(trace.fileno())
                    conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
                for n in range(3):
                    response = await post(http, webhooks.encode(text_payload(JOAO, f"mensagem {n}")))
                    assert response.status_code == 200
                async with pool.connection() as conn:
                    conn.pgconn.untrace()
                trace.seek(0)
                ready = sum(1 for line in trace if line.startswith("B\t") and "\tReadyForQuery\t" in line)
    assert ready == 3
    assert count(db, "messages") == 4


# -- ingest ---------------------------------------------------------------------------------


async def test_the_same_body_twice_stores_one_message(
    client: httpx.AsyncClient, db: Db, metrics: Metrics
) -> None:
    body = webhooks.encode(text_payload(MARIA, "só uma vez"))
    first = await post(client, body)
    again = await post(client, body)
    assert first.status_code == again.status_code == 200
    assert count(db, "messages") == 1 and count(db, "inbound_events") == 1
    assert db.value("select message_count from public.conversations") == 1
    assert sample(metrics, "zapbase_webhooks_total", outcome="duplicate") == 1
    assert sample(metrics, "zapbase_ingest_duplicates_total") == 1


async def test_a_batch_with_two_users_lands_in_two_conversations(client: httpx.AsyncClient, db: Db) -> None:
    value = {
        "contacts": [
            {"profile": {"name": "Maria"}, "wa_id": MARIA},
            {"profile": {"name": "João"}, "wa_id": JOAO},
        ],
        "messages": [message(JOAO, "sou o João", at=NOW + 2), message(MARIA, "sou a Maria", at=NOW + 1)],
    }
    response = await post(client, webhooks.encode(webhooks.notification(DEMO_NUMBER, value)))
    assert response.status_code == 200
    rows = db.sql(
        "select c.wa_id, c.profile_name, m.content, v.message_count from public.messages m"
        " join public.contacts c on c.id = m.contact_id"
        " join public.conversations v on v.id = m.conversation_id"
        " order by c.wa_id"
    )
    assert rows == [
        {"wa_id": MARIA, "profile_name": "Maria", "content": "sou a Maria", "message_count": 1},
        {"wa_id": JOAO, "profile_name": "João", "content": "sou o João", "message_count": 1},
    ]
    assert count(db, "conversations") == 2


async def test_statuses_out_of_order_never_move_a_message_back(
    client: httpx.AsyncClient, db: Db, simulator: Simulator, graph: GraphAPI, metrics: Metrics
) -> None:
    maria = SimulatedUser(simulator, client, wa_id=MARIA, name="Maria Silva")
    assert (await maria.send_text("Oi, quero um orçamento")).accepted
    conversation = db.value("select id from public.conversations")
    with db.as_service() as s:
        reply = s.one("select id from public.whatsapp_queue_reply(%s, %s::jsonb)",
                      (conversation, json.dumps({"type": "text", "text": {"body": "Claro! Qual produto?"}})))
    sent = await graph.send_text(PNID, f"+{MARIA}", "Claro! Qual produto?")
    with db.as_service() as s:
        s.all("select public.whatsapp_mark_sent(%s, %s)", (reply["id"], sent.wamid))

    assert (await maria.report_status(sent.wamid, "read")).accepted
    assert (await maria.report_status(sent.wamid, "sent")).accepted
    assert (await maria.report_status(sent.wamid, "delivered")).accepted
    row = db.sql("select status, read_at, wamid from public.messages where id = %s", (reply["id"],))[0]
    assert row["status"] == "read" and row["read_at"] is not None and row["wamid"] == sent.wamid
    events = db.sql("select status from public.message_status_events where wamid = %s order by status",
                    (sent.wamid,))
    assert [e["status"] for e in events] == ["delivered", "read", "sent"]
    assert sample(metrics, "zapbase_ingested_statuses_total") == 3


async def test_simulated_users_chat_through_the_webhook(
    client: httpx.AsyncClient, db: Db, simulator: Simulator
) -> None:
    maria = SimulatedUser(simulator, client, wa_id=f"+{MARIA}", name="Maria Silva")
    joao = SimulatedUser(simulator, client, wa_id=JOAO, name="João Araújo")
    deliveries = [
        await maria.send_text("Olá! Vocês abrem no sábado?"),
        await joao.send_location(-23.5505, -46.6333, name="Loja Centro", address="Praça da Sé, São Paulo"),
        await maria.send_image(b"\xff\xd8\xff\xe0 fake jpeg", caption="foto do produto"),
        await joao.send_voice_note(b"OggS fake opus"),
    ]
    assert [d.status_code for d in deliveries] == [200, 200, 200, 200]
    rows = db.sql("select c.wa_id, m.type, m.wamid, m.content from public.messages m"
                  " join public.contacts c on c.id = m.contact_id order by m.created_at")
    assert [(r["wa_id"], r["type"], r["wamid"]) for r in rows] == [
        (MARIA, "text", deliveries[0].wamid), (JOAO, "location", deliveries[1].wamid),
        (MARIA, "image", deliveries[2].wamid), (JOAO, "audio", deliveries[3].wamid),
    ]
    assert rows[0]["content"] == "Olá! Vocês abrem no sábado?"
    assert count(db, "conversations") == 2
    assert db.value("select count(*) from public.inbound_events where status = 'applied'") == 4


# -- quarantine, limits, failures --------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b'{"object": "whatsapp_business_account", "entry": [', "not JSON", id="truncated"),
        pytest.param(b"[1, 2, 3]", "JSON is not an object", id="array"),
        pytest.param(b'"just a string"', "JSON is not an object", id="string"),
        pytest.param(b'{"ok": "\xff\xfe"}', "not UTF-8", id="bad-utf8"),
        pytest.param(b'{"n": NaN}', "not JSON", id="nan"),
        pytest.param(b'{"a": "\x00"}', "not JSON", id="raw-nul"),
        pytest.param(b"", "not JSON", id="empty"),
    ],
)
async def test_a_signed_body_that_is_not_a_json_object_is_quarantined_with_200(
    client: httpx.AsyncClient, db: Db, metrics: Metrics, body: bytes, reason: str
) -> None:
    response = await post(client, body)
    assert response.status_code == 200 and response.text == "QUARANTINED"
    [event] = db.sql("select status, reason, raw_body, payload, tenant_id from public.inbound_events")
    assert event["status"] == "quarantined" and event["reason"].startswith(reason)
    assert event["raw_body"] == body.decode("utf-8", errors="replace").replace("\x00", "\ufffd")
    assert event["payload"] is None and event["tenant_id"] is None
    assert count(db, "messages") == 0
    assert sample(metrics, "zapbase_webhooks_total", outcome="quarantined") == 1
    # Meta resending the same bytes keeps one row.
    assert (await post(client, body)).status_code == 200
    assert count(db, "inbound_events") == 1


async def test_strings_jsonb_refuses_are_cleaned_and_the_rest_of_the_body_lands(
    client: httpx.AsyncClient, db: Db
) -> None:
    # One \u0000 or lone surrogate used to send the whole body, valid messages included, to
    # raw quarantine.
    value = webhooks.inbound_value(wa_id=MARIA, name="Maria NUL-NAME", message=message(MARIA, "NUL-TEXT"))
    value["messages"] += [message(MARIA, "SURROGATE-TEXT"), message(MARIA, "tudo certo")]
    raw = webhooks.encode(webhooks.notification(DEMO_NUMBER, value))
    body = raw.replace(b"NUL-TEXT", b"a\\u0000b").replace(b"NUL-NAME", b"\\u0000") \
              .replace(b"SURROGATE-TEXT", b"\\ud83d!")
    assert body != raw
    response = await post(client, body)
    assert response.status_code == 200 and response.text == "EVENT_RECEIVED"
    rows = db.sql("select content from public.messages order by created_at")
    assert sorted(r["content"] for r in rows) == sorted(["a\ufffdb", "\ufffd!", "tudo certo"])
    assert db.value("select profile_name from public.contacts") == "Maria \ufffd"
    [event] = db.sql("select status, cleaned from public.inbound_events")
    assert event["status"] == "applied"
    assert event["cleaned"] == {"strings": 3, "raw_sha256": hashlib.sha256(body).hexdigest()}
    assert (await post(client, body)).status_code == 200  # a redelivery is a duplicate
    assert count(db, "messages") == 3


def padded(limit: int) -> bytes:
    """A valid webhook body of exactly `limit` bytes (JSON allows trailing whitespace)."""
    body = webhooks.encode(text_payload(MARIA, "corpo grande"))
    return body + b" " * (limit - len(body))


async def test_a_body_of_exactly_3_mb_is_accepted(client: httpx.AsyncClient, db: Db) -> None:
    body = padded(MAX_BODY_BYTES)
    assert len(body) == 3 * 1024 * 1024
    assert (await post(client, body)).status_code == 200
    assert count(db, "messages") == 1


async def test_a_body_over_3_mb_is_refused_with_413(
    client: httpx.AsyncClient, db: Db, metrics: Metrics
) -> None:
    body = padded(MAX_BODY_BYTES + 1)
    response = await post(client, body)
    assert response.status_code == 413
    assert count(db, "inbound_events") == 0
    assert sample(metrics, "zapbase_webhooks_total", outcome="too_large") == 1


async def test_a_streamed_body_is_cut_off_as_soon_as_it_passes_3_mb(
    client: httpx.AsyncClient, db: Db
) -> None:
    chunk = b" " * 65536
    total = 100  # 6.25 MB if it were read to the end
    pulled = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal pulled
        yield b'{"object": "whatsapp_business_account", "entry": []}'
        for _ in range(total):
            pulled += 1
            yield chunk

    # No Content-Length: only counting while reading can stop it.
    response = await client.post(PATH, content=stream(), headers={HEADER: "sha256=" + "0" * 64})
    assert response.status_code == 413
    assert pulled <= MAX_BODY_BYTES // len(chunk) + 2
    assert count(db, "inbound_events") == 0


async def test_a_database_failure_answers_500_and_the_retry_lands(client: httpx.AsyncClient, db: Db) -> None:
    body = webhooks.encode(text_payload(MARIA, "chegou na segunda tentativa"))
    db.sql("revoke execute on function public.whatsapp_receive(jsonb, text) from service_role")
    assert (await post(client, body)).status_code == 500
    assert count(db, "inbound_events") == 0
    db.sql("grant execute on function public.whatsapp_receive(jsonb, text) to service_role")
    assert (await post(client, body)).status_code == 200
    assert count(db, "messages") == 1


async def test_a_burst_is_acknowledged_at_once_and_applied_after_in_arrival_order(
    client: httpx.AsyncClient, db: Db, pool: Pool, metrics: Metrics
) -> None:
    """Every ingest slot busy, as under a burst: each body is kept in the backlog and answered
    200 without being applied; the backlog loop applies them in the order they came."""
    texts = ["primeira", "segunda", "terceira"]
    with db.connect() as burst:
        burst.execute("select pg_advisory_lock(205, 1), pg_advisory_lock(205, 2)")  # the ingest slots
        for n, text in enumerate(texts):
            response = await post(client, webhooks.encode(text_payload(MARIA, text)))
            assert (response.status_code, response.text) == (200, "EVENT_RECEIVED"), n
    assert count(db, "messages") == 0 and count(db, "inbound_backlog") == 3
    assert 'zapbase_queue_depth{queue="backlog"} 3.0' in (await client.get("/metrics")).text
    assert sample(metrics, "zapbase_webhooks_total", outcome="backlogged") == 3

    assert await BacklogLoop(pool=pool, metrics=metrics).run_once() == 3
    assert count(db, "inbound_backlog") == 0
    assert [r["content"] for r in db.sql("select content from public.messages order by created_at")] == texts
    assert sample(metrics, "zapbase_ingested_messages_total") == 3


# -- health, metrics, OpenAPI ---------------------------------------------------------------------


async def test_health_readiness_and_metrics_with_queue_depths(
    client: httpx.AsyncClient, db: Db, metrics: Metrics
) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    for n, wa_id in enumerate((MARIA, JOAO, "5531966665555")):
        assert (await post(client, webhooks.encode(text_payload(wa_id, f"mensagem {n}")))).status_code == 200
    await post(client, b"{}", secret="wrong-secret")
    conversation = db.value("select conversation_id from public.messages limit 1")
    with db.as_service() as s:
        s.all("select public.whatsapp_queue_reply(%s, %s::jsonb)",
              (conversation, json.dumps({"type": "text", "text": {"body": "Olá!"}})))
    db.sql("update public.messages set status = 'processed' where content = 'mensagem 0'")

    response = await client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    lines = set(response.text.splitlines())
    assert 'zapbase_queue_depth{queue="inbound"} 2.0' in lines
    assert 'zapbase_queue_depth{queue="outbound"} 1.0' in lines
    assert 'zapbase_webhooks_total{outcome="ingested"} 3.0' in lines
    assert 'zapbase_webhooks_total{outcome="bad_signature"} 1.0' in lines
    assert "zapbase_ingested_messages_total 3.0" in lines
    assert "zapbase_webhook_seconds_count 4.0" in lines


async def test_readiness_and_metrics_when_the_database_is_unreachable(worker_settings: Settings) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"postgresql://postgres:postgres@127.0.0.1:{s.getsockname()[1]}/postgres?connect_timeout=1"
    pool = open_pool(dead, 1)
    await pool.open(wait=False)
    try:
        metrics = Metrics()
        metrics.queue_depth.labels("inbound").set(7)  # a stale value must not survive
        app = create_app(worker_settings, pool, metrics)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=WORKER_URL) as http:
            assert (await http.get("/healthz")).status_code == 200
            ready = await http.get("/readyz")
            assert ready.status_code == 503 and ready.json()["status"] == "unavailable"
            scrape = await http.get("/metrics")
            assert scrape.status_code == 200 and "zapbase_queue_depth{" not in scrape.text
    finally:
        await pool.close()


async def test_openapi_describes_every_route(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    app_path = webhook_path("{phone_number_id}")
    expected = {
        (PLATFORM_PATH, "get"): {"200", "403"},
        (PLATFORM_PATH, "post"): {"200", "401", "413", "500"},
        (app_path, "get"): {"200", "403"},
        (app_path, "post"): {"200", "401", "413", "500"},
        ("/healthz", "get"): {"200"},
        ("/readyz", "get"): {"200", "503"},
        ("/metrics", "get"): {"200"},
        ("/webhooks/hotmart/{integration_id}", "post"): {"200", "401", "413", "500"},
    }
    operations = {(path, method): op for path, item in spec["paths"].items() for method, op in item.items()}
    assert set(operations) == set(expected)
    for key, codes in expected.items():
        op = operations[key]
        assert op["summary"] and op["description"], key
        assert codes <= set(op["responses"]), key
    post_op = operations[(app_path, "post")]
    assert "quarantine" in post_op["description"] and "7 days" in post_op["description"]
    assert post_op["requestBody"]["content"]["application/json"]
    assert {p["name"] for p in operations[(PLATFORM_PATH, "get")]["parameters"]} == {
        "hub.mode", "hub.verify_token", "hub.challenge"}
    assert {p["name"] for p in operations[(app_path, "get")]["parameters"]} == {
        "phone_number_id", "hub.mode", "hub.verify_token", "hub.challenge"}


# -- a real server --------------------------------------------------------------------------------


async def test_served_by_uvicorn_over_a_real_socket(worker_settings: Settings, pool: Pool, db: Db) -> None:
    config = uvicorn.Config(create_app(worker_settings, pool, Metrics()), host="127.0.0.1", port=0,
                            log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            ok = await post(http, webhooks.encode(text_payload(MARIA, "pela rede")))
            assert ok.status_code == 200
            too_big = await http.post(PATH, content=b"{" + b" " * MAX_BODY_BYTES + b"}",
                                      headers={HEADER: "sha256=" + "0" * 64})
            assert too_big.status_code == 413
            again = await post(http, webhooks.encode(text_payload(JOAO, "depois do 413")))
            assert again.status_code == 200
    finally:
        server.should_exit = True
        await task
    assert count(db, "messages") == 2
