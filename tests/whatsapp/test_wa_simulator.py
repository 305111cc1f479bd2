"""The simulator plays Meta's side faithfully enough: signed webhooks in Meta's structure,
request checks and error bodies like the Cloud API, controls for demos."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import pytest
from wa_support import APP_SECRET, SIMULATOR_URL, FakeClock, WebhookReceiver

from zapbase.simulator import (
    DEMO_NUMBER,
    SimulatedUser,
    Simulator,
    create_app,
    state,
)
from zapbase.whatsapp import GraphAPI, ListRow, ListSection, ReplyButton
from zapbase.whatsapp import errors as e
from zapbase.whatsapp.signature import verify

pytestmark = pytest.mark.anyio

PNID = DEMO_NUMBER.phone_number_id
USER = "5511987654321"


@pytest.fixture
def user(simulator: Simulator, webhook_http: httpx.AsyncClient) -> SimulatedUser:
    return SimulatedUser(simulator, webhook_http, wa_id=f"+{USER}", name="José Araújo")


def value_of(body: bytes) -> dict[str, Any]:
    payload = json.loads(body)
    assert payload["object"] == "whatsapp_business_account"
    [entry] = payload["entry"]
    assert entry["id"] == DEMO_NUMBER.waba_id
    [change] = entry["changes"]
    assert change["field"] == "messages"
    value: dict[str, Any] = change["value"]
    assert value["messaging_product"] == "whatsapp"
    assert value["metadata"] == {
        "display_phone_number": DEMO_NUMBER.display_phone_number,
        "phone_number_id": PNID,
    }
    return value


async def test_user_text_is_signed_escaped_and_shaped_like_meta(
    user: SimulatedUser, receiver: WebhookReceiver
) -> None:
    delivery = await user.send_text("Olá, preciso de ajuda/suporte")
    assert delivery.accepted
    [body] = receiver.bodies
    assert body == delivery.body
    assert verify(body, delivery.signature, [APP_SECRET])
    assert b"Ol\\u00e1" in body
    assert b"ajuda\\/suporte" in body
    assert body.isascii()
    value = value_of(body)
    assert value["contacts"] == [{"profile": {"name": "José Araújo"}, "wa_id": USER}]
    [message] = value["messages"]
    assert message["from"] == USER
    assert message["id"] == delivery.wamid
    assert message["id"].startswith("wamid.")
    assert message["timestamp"] == "1767225600"
    assert message["type"] == "text"
    assert message["text"] == {"body": "Olá, preciso de ajuda/suporte"}


async def test_wrong_app_secret_is_rejected_by_the_receiver(
    simulator: Simulator, webhook_http: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    other = Simulator(replace(simulator.config, app_secret="not-the-secret"))
    delivery = await SimulatedUser(other, webhook_http, wa_id=USER).send_text("oi")
    assert delivery.status_code == 401
    assert not delivery.accepted
    assert receiver.bodies == []


async def test_voice_note_media_can_be_downloaded_by_the_worker(
    user: SimulatedUser, receiver: WebhookReceiver, api: GraphAPI
) -> None:
    await user.send_voice_note(b"OggS\x00opus-frames")
    [message] = value_of(receiver.bodies[0])["messages"]
    assert message["type"] == "audio"
    audio = message["audio"]
    assert audio["voice"] is True
    assert audio["mime_type"] == "audio/ogg; codecs=opus"
    assert set(audio) == {"mime_type", "sha256", "id", "voice"}
    media = await api.download_media(audio["id"], phone_number_id=PNID)
    assert media.content == b"OggS\x00opus-frames"
    assert media.sha256 == audio["sha256"]


async def test_image_and_document_carry_caption_and_filename(
    user: SimulatedUser, receiver: WebhookReceiver
) -> None:
    await user.send_image(b"jpeg", caption="Meu comprovante")
    await user.send_document(b"%PDF", filename="boleto.pdf")
    image = value_of(receiver.bodies[0])["messages"][0]["image"]
    document = value_of(receiver.bodies[1])["messages"][0]["document"]
    assert (image["mime_type"], image["caption"]) == ("image/jpeg", "Meu comprovante")
    assert (document["mime_type"], document["filename"]) == ("application/pdf", "boleto.pdf")


async def test_button_and_list_replies_quote_the_business_message(
    user: SimulatedUser, receiver: WebhookReceiver, api: GraphAPI
) -> None:
    await api.send_interactive_buttons(
        PNID, USER, "Posso ajudar?", [ReplyButton("sales", "Vendas"), ReplyButton("help", "Ajuda")]
    )
    await api.send_interactive_list(
        PNID,
        USER,
        "Escolha",
        "Planos",
        [ListSection(rows=(ListRow("pro", "Pro", "R$ 99/mês"),))],
    )
    buttons, listing = user.inbox
    await user.press_button(buttons, "help")
    await user.choose_row(listing, "pro")
    pressed = value_of(receiver.bodies[0])["messages"][0]
    assert pressed["type"] == "interactive"
    assert pressed["interactive"] == {
        "type": "button_reply",
        "button_reply": {"id": "help", "title": "Ajuda"},
    }
    assert pressed["context"] == {"from": DEMO_NUMBER.display_phone_number, "id": buttons.wamid}
    chosen = value_of(receiver.bodies[1])["messages"][0]
    assert chosen["interactive"] == {
        "type": "list_reply",
        "list_reply": {"id": "pro", "title": "Pro", "description": "R$ 99/mês"},
    }
    with pytest.raises(ValueError, match="no button"):
        await user.press_button(buttons, "nonexistent")


async def test_statuses_for_what_the_worker_sent(
    user: SimulatedUser, receiver: WebhookReceiver, api: GraphAPI, clock: FakeClock
) -> None:
    sent = await api.send_text(PNID, USER, "Seu pedido saiu")
    clock.advance(5)
    deliveries = await user.acknowledge(read=True)
    assert [d.wamid for d in deliveries] == [sent.wamid] * 3
    statuses = [value_of(body)["statuses"][0] for body in receiver.bodies]
    assert [s["status"] for s in statuses] == ["sent", "delivered", "read"]
    for status in statuses:
        assert status["id"] == sent.wamid
        assert status["recipient_id"] == USER
        assert status["timestamp"] == "1767225605"
        assert "conversation" not in status  # omitted on v24.0+ webhooks
    assert statuses[0]["pricing"]["category"] == "service"
    assert "pricing" not in statuses[2]
    assert await user.acknowledge(read=True) == []  # nothing new to report


async def test_failed_status_carries_a_classifiable_error(
    user: SimulatedUser, receiver: WebhookReceiver, api: GraphAPI
) -> None:
    sent = await api.send_text(PNID, USER, "Oi")
    await user.report_failure(sent.wamid, 131047)
    [status] = value_of(receiver.bodies[0])["statuses"]
    assert status["status"] == "failed"
    [error] = status["errors"]
    assert isinstance(e.error_from_webhook(error), e.WindowClosed)
    with pytest.raises(ValueError, match="was not sent"):
        await user.report_status("wamid.someone-else", "read")


async def test_business_scoped_user_id_appears_in_contacts_and_message(
    simulator: Simulator, webhook_http: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    user = SimulatedUser(simulator, webhook_http, wa_id=USER, user_id="BR.1234567890123456789")
    await user.send_text("oi")
    value = value_of(receiver.bodies[0])
    assert value["contacts"][0]["user_id"] == "BR.1234567890123456789"
    assert value["messages"][0]["from_user_id"] == "BR.1234567890123456789"


async def raw_send(http: httpx.AsyncClient, body: object, token: str | None = None) -> httpx.Response:
    return await http.post(
        f"/v25.0/{PNID}/messages",
        json=body,
        headers={"Authorization": f"Bearer {token or DEMO_NUMBER.access_token}"},
    )


@pytest.mark.parametrize(
    ("body", "code", "detail"),
    [
        ({"to": USER, "type": "text", "text": {"body": "x"}}, 100, "messaging_product"),
        ({"messaging_product": "whatsapp", "type": "text", "text": {"body": "x"}}, 100, "to"),
        ({"messaging_product": "whatsapp", "to": USER, "type": "poll"}, 100, "type"),
        ({"messaging_product": "whatsapp", "to": USER, "type": "text"}, 100, "text"),
        (
            {"messaging_product": "whatsapp", "to": USER, "text": {"body": "x" * 4097}},
            100,
            "4096",
        ),
        (
            {
                "messaging_product": "whatsapp",
                "to": USER,
                "type": "interactive",
                "interactive": {
                    "type": "button",
                    "body": {"text": "Oi"},
                    "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "x" * 21}}]},
                },
            },
            131009,
            "20",
        ),
        (
            {
                "messaging_product": "whatsapp",
                "to": USER,
                "text": {"body": "x"},
                "biz_opaque_callback_data": "é" * 257,
            },
            131009,
            "512 bytes",
        ),
    ],
)
async def test_simulator_refuses_what_meta_refuses(
    graph_http: httpx.AsyncClient, body: dict[str, Any], code: int, detail: str
) -> None:
    response = await raw_send(graph_http, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == "OAuthException"
    assert detail in error["error_data"]["details"]
    assert error["fbtrace_id"]
    assert "not Meta" in response.headers["x-zapbase-simulator"]


async def test_simulator_checks_bearer_and_number(graph_http: httpx.AsyncClient) -> None:
    ok = {"messaging_product": "whatsapp", "to": USER, "type": "text", "text": {"body": "oi"}}
    response = await raw_send(graph_http, ok, token="stolen")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == 190
    assert "error_subcode" not in response.json()["error"]  # invalid, not expired
    unknown = await graph_http.post("/v25.0/999/messages", json=ok, headers={"Authorization": "Bearer x"})
    assert unknown.status_code == 400
    assert unknown.json()["error"]["error_subcode"] == 33
    answer = (await raw_send(graph_http, ok)).json()
    assert answer["contacts"] == [{"input": USER, "wa_id": USER}]
    assert answer["messages"][0]["id"].startswith("wamid.")


async def test_window_enforcement_allows_only_templates_when_closed(
    simulator: Simulator, webhook_http: httpx.AsyncClient, clock: FakeClock
) -> None:
    strict = Simulator(replace(simulator.config, enforce_window=True), clock=clock)
    transport = httpx.ASGITransport(app=create_app(simulator=strict))
    async with httpx.AsyncClient(transport=transport, base_url=SIMULATOR_URL) as http:
        api = GraphAPI(http, base_url=SIMULATOR_URL, token=DEMO_NUMBER.access_token)
        with pytest.raises(e.WindowClosed):
            await api.send_text(PNID, USER, "Oi")
        await api.send_template(PNID, USER, "hello_world", "en_US")
        await SimulatedUser(strict, webhook_http, wa_id=USER).send_text("Oi!")
        await api.send_text(PNID, USER, "Agora pode")
        clock.advance(24 * 3600)
        with pytest.raises(e.WindowClosed):
            await api.send_text(PNID, USER, "Tarde demais")


@pytest.fixture
async def control(simulator: Simulator, webhook_http: httpx.AsyncClient) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(simulator=simulator, client=webhook_http)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SIMULATOR_URL) as client:
        yield client


async def test_controls_drive_a_demo_over_http(control: httpx.AsyncClient, receiver: WebhookReceiver) -> None:
    written = await control.post(f"/_simulator/users/{USER}/messages", json={"text": "Oi"})
    assert written.json()["webhook_status"] == 200
    assert value_of(receiver.bodies[0])["messages"][0]["text"] == {"body": "Oi"}

    queued = await control.post("/_simulator/faults", json={"code": 130429, "to": USER})
    assert queued.status_code == 201
    ok = {"messaging_product": "whatsapp", "to": USER, "type": "text", "text": {"body": "Olá"}}
    assert (await raw_send(control, ok)).json()["error"]["code"] == 130429
    wamid = (await raw_send(control, ok)).json()["messages"][0]["id"]

    inbox = (await control.get("/_simulator/inbox", params={"wa_id": USER})).json()["data"]
    assert [(m["wamid"], m["text"]) for m in inbox] == [(wamid, "Olá")]

    read = await control.post(f"/_simulator/messages/{wamid}/status", json={"status": "read"})
    assert read.json() == {"webhook_status": 200}
    assert value_of(receiver.bodies[-1])["statuses"][0]["status"] == "read"


async def test_auto_statuses_report_sent_and_delivered(
    simulator: Simulator, webhook_http: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    auto = Simulator(replace(simulator.config, auto_statuses=True))
    app = create_app(simulator=auto, client=webhook_http)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SIMULATOR_URL) as http:
        sent = await GraphAPI(http, base_url=SIMULATOR_URL, token=DEMO_NUMBER.access_token).send_text(
            PNID, USER, "Oi"
        )
    statuses = [value_of(body)["statuses"][0] for body in receiver.bodies]
    assert [(s["id"], s["status"]) for s in statuses] == [
        (sent.wamid, "sent"),
        (sent.wamid, "delivered"),
    ]


class FlakyTransport(httpx.AsyncBaseTransport):
    """The receiver is down for its first `failures` requests (a worker restarting)."""

    def __init__(self, inner: httpx.AsyncBaseTransport, failures: int) -> None:
        self.inner, self.failures = inner, failures

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.failures:
            self.failures -= 1
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


async def test_auto_statuses_echo_the_callback_data_and_are_redelivered_until_accepted(
    simulator: Simulator, receiver: WebhookReceiver
) -> None:
    auto = Simulator(replace(simulator.config, auto_statuses=True))
    flaky = FlakyTransport(httpx.ASGITransport(app=receiver.app), failures=2)
    async with (
        httpx.AsyncClient(transport=flaky) as webhooks,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=create_app(simulator=auto, client=webhooks)),
            base_url=SIMULATOR_URL,
        ) as http,
    ):
        body = {"messaging_product": "whatsapp", "to": USER, "type": "text", "text": {"body": "Oi"},
                "biz_opaque_callback_data": "row-42"}  # fmt: skip
        wamid = (await raw_send(http, body)).json()["messages"][0]["id"]
        plain = {"messaging_product": "whatsapp", "to": USER, "type": "text", "text": {"body": "Oi de novo"}}
        other = (await raw_send(http, plain)).json()["messages"][0]["id"]
    assert flaky.failures == 0
    statuses = [value_of(body)["statuses"][0] for body in receiver.bodies]
    assert [(s["id"], s["status"], s.get("biz_opaque_callback_data")) for s in statuses] == [
        (wamid, "sent", "row-42"),
        (wamid, "delivered", "row-42"),
        (other, "sent", None),
        (other, "delivered", None),
    ]


async def test_a_failed_status_echoes_the_callback_data_too(
    control: httpx.AsyncClient, receiver: WebhookReceiver
) -> None:
    body = {"messaging_product": "whatsapp", "to": USER, "type": "text", "text": {"body": "Oi"},
            "biz_opaque_callback_data": "row-43"}  # fmt: skip
    wamid = (await raw_send(control, body)).json()["messages"][0]["id"]
    await control.post(f"/_simulator/messages/{wamid}/status", json={"status": "failed"})
    [status] = value_of(receiver.bodies[-1])["statuses"]
    assert (status["status"], status["biz_opaque_callback_data"]) == ("failed", "row-43")


async def test_simulated_user_needs_a_webhook_url(
    simulator: Simulator, webhook_http: httpx.AsyncClient
) -> None:
    bare = Simulator(replace(simulator.config, webhook_url=None))
    with pytest.raises(ValueError, match="webhook"):
        SimulatedUser(bare, webhook_http, wa_id=USER)
    with pytest.raises(ValueError, match="digits"):
        SimulatedUser(simulator, webhook_http, wa_id="maria")


async def test_status_control_accepts_wamids_with_slashes(
    control: httpx.AsyncClient, receiver: WebhookReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(state, "new_wamid", lambda: "wamid.HBgM/NTU+xMT==")
    ok = {"messaging_product": "whatsapp", "to": USER, "type": "text", "text": {"body": "Olá"}}
    wamid = (await raw_send(control, ok)).json()["messages"][0]["id"]
    assert wamid == "wamid.HBgM/NTU+xMT=="
    answer = await control.post(f"/_simulator/messages/{wamid}/status", json={"status": "failed"})
    assert answer.json() == {"webhook_status": 200}
    [status] = value_of(receiver.bodies[-1])["statuses"]
    assert (status["id"], status["status"]) == (wamid, "failed")
    assert status["errors"][0]["code"] == 131026
