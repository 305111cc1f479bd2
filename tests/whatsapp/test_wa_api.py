"""GraphAPI against the simulator mounted in-process: what reaches the phone, media, errors."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from wa_support import SECOND_NUMBER, SIMULATOR_URL, FakeClock

from zapbase.simulator import DEMO_NUMBER, Simulator
from zapbase.whatsapp import (
    GraphAPI,
    ListRow,
    ListSection,
    MediaSource,
    MediaType,
    Recipient,
    ReplyButton,
)
from zapbase.whatsapp import errors as e

pytestmark = pytest.mark.anyio

PNID = DEMO_NUMBER.phone_number_id
USER = "5511987654321"


async def test_send_text_reaches_the_phone_with_plus_prefix(api: GraphAPI, simulator: Simulator) -> None:
    sent = await api.send_text(PNID, USER, "Olá, José! https://zapbase.dev", preview_url=True)
    assert sent.wamid.startswith("wamid.")
    assert (sent.input, sent.wa_id) == ("+5511987654321", USER)
    [message] = simulator.messages_to(USER)
    assert message.wamid == sent.wamid
    assert message.body["to"] == "+5511987654321"
    assert message.body["text"] == {"preview_url": True, "body": "Olá, José! https://zapbase.dev"}
    assert message.text == "Olá, José! https://zapbase.dev"


async def test_reply_quotes_the_original_message(api: GraphAPI, simulator: Simulator) -> None:
    await api.send_text(PNID, USER, "Certo!", reply_to="wamid.ORIGINAL")
    assert simulator.inbox[-1].body["context"] == {"message_id": "wamid.ORIGINAL"}


async def test_send_template_reports_pacing_status(api: GraphAPI, simulator: Simulator) -> None:
    components = [{"type": "body", "parameters": [{"type": "text", "text": "Maria"}]}]
    sent = await api.send_template(PNID, USER, "order_shipped", "pt_BR", components)
    assert sent.message_status == "accepted"
    template = simulator.inbox[-1].body["template"]
    assert template == {
        "name": "order_shipped",
        "language": {"code": "pt_BR"},
        "components": components,
    }


async def test_send_interactive_buttons_and_list(api: GraphAPI, simulator: Simulator) -> None:
    await api.send_interactive_buttons(
        PNID,
        USER,
        "Posso ajudar?",
        [ReplyButton(id="sales", title="Vendas"), ReplyButton(id="support", title="Suporte")],
        header="Zapbase",
        footer="Responda abaixo",
    )
    await api.send_interactive_list(
        PNID,
        USER,
        "Escolha",
        "Ver opções",
        [ListSection(title="Planos", rows=(ListRow(id="pro", title="Pro"),))],
    )
    buttons, listing = simulator.messages_to(USER)
    assert buttons.content["type"] == "button"
    assert buttons.content["header"] == {"type": "text", "text": "Zapbase"}
    assert [b["reply"]["id"] for b in buttons.content["action"]["buttons"]] == ["sales", "support"]
    assert listing.content["action"]["sections"][0]["rows"] == [{"id": "pro", "title": "Pro"}]


async def test_send_reaction_and_mark_read_with_typing(api: GraphAPI, simulator: Simulator) -> None:
    await api.send_reaction(PNID, USER, "wamid.FROM_USER", "👍")
    await api.mark_read(PNID, "wamid.FROM_USER", typing_indicator=True)
    assert simulator.inbox[-1].body["reaction"] == {"message_id": "wamid.FROM_USER", "emoji": "👍"}
    [read] = simulator.reads
    assert (read.message_id, read.typing_indicator) == ("wamid.FROM_USER", True)


async def test_send_to_business_scoped_user_id(api: GraphAPI, simulator: Simulator) -> None:
    sent = await api.send_text(PNID, Recipient.user_id("BR.1234567890123456789"), "Oi")
    assert sent.wa_id is None
    message = simulator.inbox[-1]
    assert message.body["recipient"] == "BR.1234567890123456789"
    assert "to" not in message.body
    assert message.user_id == "BR.1234567890123456789"


async def test_upload_then_send_voice_note_by_id(api: GraphAPI, simulator: Simulator) -> None:
    uploaded = await api.upload_media(PNID, b"OggS-voice", mime_type="audio/ogg", filename="reply.ogg")
    await api.send_media(PNID, USER, MediaType.AUDIO, MediaSource.by_id(uploaded.id), voice=True)
    assert simulator.inbox[-1].body["audio"] == {"id": uploaded.id, "voice": True}
    stored = simulator.media(uploaded.id)
    assert stored is not None
    assert (stored.content, stored.mime_type, stored.filename) == (
        b"OggS-voice",
        "audio/ogg",
        "reply.ogg",
    )


async def test_send_media_by_link_with_caption(api: GraphAPI, simulator: Simulator) -> None:
    link = "https://cdn.example.com/catalogo.jpg"
    await api.send_media(PNID, USER, MediaType.IMAGE, MediaSource.by_link(link), caption="Catálogo")
    assert simulator.inbox[-1].body["image"] == {"link": link, "caption": "Catálogo"}


async def test_unknown_media_id_is_refused_like_meta(api: GraphAPI) -> None:
    with pytest.raises(e.InvalidRequest) as info:
        await api.send_media(PNID, USER, MediaType.IMAGE, MediaSource.by_id("404404"))
    assert info.value.code == 100


async def test_tokens_are_per_number(api: GraphAPI, simulator: Simulator) -> None:
    other = SECOND_NUMBER.phone_number_id
    with pytest.raises(e.TokenExpired) as info:
        await api.send_text(other, USER, "oi")  # the client's default token is the demo number's
    assert info.value.http_status == 401
    await api.send_text(other, USER, "oi", token=SECOND_NUMBER.access_token)
    assert simulator.inbox[-1].phone_number_id == other


async def test_download_media_round_trip(api: GraphAPI) -> None:
    uploaded = await api.upload_media(PNID, b"\x89PNG-bytes", mime_type="image/png")
    info = await api.get_media_url(uploaded.id, phone_number_id=PNID)
    assert info.url.startswith(f"{SIMULATOR_URL}/_simulator/media/")
    assert (info.mime_type, info.file_size) == ("image/png", 10)
    media = await api.download_media(uploaded.id)
    assert (media.content, media.mime_type, media.sha256) == (b"\x89PNG-bytes", "image/png", info.sha256)


async def test_expired_url_is_fetched_again_once(api: GraphAPI, clock: FakeClock) -> None:
    uploaded = await api.upload_media(PNID, b"pdf-bytes", mime_type="application/pdf")
    stale = await api.get_media_url(uploaded.id)
    clock.advance(301)  # Meta's media URLs expire after 5 minutes
    media = await api.download_media(uploaded.id, url=stale.url)
    assert media.content == b"pdf-bytes"
    assert media.mime_type == "application/pdf"


async def test_download_404_refetches_then_gives_up(api: GraphAPI, simulator: Simulator) -> None:
    uploaded = await api.upload_media(PNID, b"data", mime_type="image/jpeg")
    simulator.fail_next_download(uploaded.id)
    assert (await api.download_media(uploaded.id)).content == b"data"
    simulator.fail_next_download(uploaded.id, times=2)
    with pytest.raises(e.MediaError):
        await api.download_media(uploaded.id)


async def test_media_of_another_number_is_not_visible(api: GraphAPI) -> None:
    uploaded = await api.upload_media(PNID, b"data", mime_type="image/jpeg")
    with pytest.raises(e.TokenExpired):
        await api.get_media_url(uploaded.id, token=SECOND_NUMBER.access_token)
    with pytest.raises(e.InvalidRequest):
        await api.get_media_url(uploaded.id, phone_number_id=SECOND_NUMBER.phone_number_id)


async def test_download_limit_is_enforced(graph_http: httpx.AsyncClient) -> None:
    small = GraphAPI(graph_http, base_url=SIMULATOR_URL, token=DEMO_NUMBER.access_token, download_limit=8)
    uploaded = await small.upload_media(PNID, b"0123456789", mime_type="image/jpeg")
    with pytest.raises(e.MediaError, match="exceeds 8 bytes"):
        await small.download_media(uploaded.id)


@pytest.mark.parametrize(
    ("code", "status", "cls", "expected_status"),
    [
        (131047, None, e.WindowClosed, 400),
        (130429, None, e.ThroughputLimit, 400),
        (130429, 429, e.ThroughputLimit, 429),
        (131056, None, e.PairRateLimit, 400),
        (190, None, e.TokenExpired, 401),
        (131026, None, e.Undeliverable, 400),
        (131000, None, e.TransientError, 500),
        (None, 502, e.ServerError, 502),
    ],
)
async def test_injected_meta_errors_map_to_typed_errors(
    api: GraphAPI,
    simulator: Simulator,
    code: int | None,
    status: int | None,
    cls: type[e.WhatsAppError],
    expected_status: int,
) -> None:
    simulator.fail_next_send(code, http_status=status, to=USER)
    with pytest.raises(cls) as info:
        await api.send_text(PNID, USER, "oi")
    assert info.value.code == code
    assert info.value.http_status == expected_status
    assert simulator.inbox == ()
    await api.send_text(PNID, USER, "oi")  # the fault was for the next send only
    assert len(simulator.inbox) == 1


async def test_expired_token_error_carries_meta_subcode(api: GraphAPI, simulator: Simulator) -> None:
    simulator.fail_next_send(190)
    with pytest.raises(e.TokenExpired) as info:
        await api.send_text(PNID, USER, "oi")
    assert (info.value.subcode, info.value.kind) == (463, e.ErrorKind.AUTH)
    assert info.value.title.startswith("Error validating access token")
    assert info.value.fbtrace_id


async def test_fault_for_one_user_leaves_others_alone(api: GraphAPI, simulator: Simulator) -> None:
    simulator.fail_next_send(131047, to="+5511911112222")
    await api.send_text(PNID, USER, "oi")
    with pytest.raises(e.WindowClosed):
        await api.send_text(PNID, "5511911112222", "oi")


@pytest.mark.parametrize(
    ("raised", "cls"),
    [
        (lambda r: httpx.ReadTimeout("slow", request=r), e.GraphTimeout),
        (lambda r: httpx.ConnectTimeout("slow", request=r), e.GraphTimeout),
        (lambda r: httpx.ConnectError("refused", request=r), e.GraphConnectionError),
    ],
)
async def test_timeouts_and_connection_errors_are_retryable(
    raised: Callable[[httpx.Request], Exception], cls: type[e.WhatsAppError]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise raised(request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        api = GraphAPI(client, token="t")
        with pytest.raises(cls) as info:
            await api.send_text(PNID, USER, "oi")
        assert info.value.retryable
        with pytest.raises(cls):
            await api.download_media("123", url="https://lookaside.example/x")


async def test_success_without_wamid_is_unexpected() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"messaging_product": "whatsapp", "messages": []})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(e.UnexpectedResponse):
            await GraphAPI(client, token="t").send_text(PNID, USER, "oi")


async def test_client_with_authorization_header_is_refused() -> None:
    async with httpx.AsyncClient(headers={"Authorization": "Bearer shared"}) as client:
        with pytest.raises(ValueError, match="Authorization"):
            GraphAPI(client)


async def test_missing_token_is_refused(graph_http: httpx.AsyncClient) -> None:
    with pytest.raises(ValueError, match="no access token"):
        await GraphAPI(graph_http, base_url=SIMULATOR_URL).send_text(PNID, USER, "oi")


async def test_ids_that_would_change_the_url_path_are_refused(api: GraphAPI) -> None:
    with pytest.raises(ValueError, match="not a Graph id"):
        await api.send_text("1/../../me", USER, "oi")
    with pytest.raises(ValueError, match="not a Graph id"):
        await api.get_media_url("../debug_token")


async def test_the_token_never_leaves_for_a_media_url_off_metas_hosts() -> None:
    """A webhook's media `url` is data from outside: pointed at an attacker, it must not
    receive the number's bearer token; the media is fetched by id from Meta instead."""
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("authorization")))
        if request.url.host == "graph.facebook.com":
            return httpx.Response(200, json={"url": "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=9",
                                             "mime_type": "image/jpeg", "id": "123", "sha256": "x"})
        if request.url.host == "lookaside.fbsbx.com":
            return httpx.Response(200, content=b"jpeg", headers={"content-type": "image/jpeg"})
        return httpx.Response(200, content=b"stolen")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        api = GraphAPI(client, token="victim-token")
        for evil in ("https://evil.test/x", "http://lookaside.fbsbx.com/x", "https://fbsbx.com.evil.test/x",
                     "https://graph.facebook.com.evil.test/x", "not a url"):
            media = await api.download_media("123", url=evil)
            assert media.content == b"jpeg"
        assert api.may_carry_token("https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1")
    assert {host for host, _ in seen} == {"graph.facebook.com", "lookaside.fbsbx.com"}
    assert all(auth == "Bearer victim-token" for _, auth in seen)


async def test_a_graph_api_elsewhere_keeps_the_token_on_its_own_host(api: GraphAPI) -> None:
    assert api.may_carry_token(f"{SIMULATOR_URL}/_simulator/media/1")
    assert not api.may_carry_token("https://lookaside.fbsbx.com/x")  # not Meta's Graph: not Meta's CDN either
    assert not api.may_carry_token("http://simulator:8080/_simulator/media/1")
