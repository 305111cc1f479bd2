"""Outbound payloads are checked against Meta's limits before any HTTP request."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from zapbase.whatsapp import (
    GraphAPI,
    ListRow,
    ListSection,
    MediaSource,
    MediaType,
    MessageValidationError,
    Recipient,
    ReplyButton,
)
from zapbase.whatsapp import messages as m

PNID = "106540352242922"


@pytest.fixture
def calls() -> list[httpx.Request]:
    return []


@pytest.fixture
async def offline_api(calls: list[httpx.Request]) -> AsyncIterator[GraphAPI]:
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        yield GraphAPI(client, token="t")


def buttons(*titles: str) -> list[ReplyButton]:
    return [ReplyButton(id=f"b{i}", title=t) for i, t in enumerate(titles)]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("call", "limit"),
    [
        (lambda api: api.send_text(PNID, "+5511987654321", "x" * 4097), "≤4096 characters"),
        (lambda api: api.send_text(PNID, "+5511987654321", ""), "non-empty"),
        (
            lambda api: api.send_interactive_buttons(
                PNID, "5511987654321", "Escolha", buttons("a", "b", "c", "d")
            ),
            "1-3 buttons",
        ),
        (
            lambda api: api.send_interactive_buttons(PNID, "5511987654321", "Escolha", buttons("x" * 21)),
            "≤20 characters",
        ),
        (
            lambda api: api.send_interactive_buttons(PNID, "5511987654321", "Escolha", buttons("Sim", "Sim")),
            "unique",
        ),
        (
            lambda api: api.send_interactive_buttons(PNID, "5511987654321", "b" * 1025, buttons("Sim")),
            "≤1024 characters",
        ),
        (
            lambda api: api.send_media(
                PNID, "5511987654321", MediaType.AUDIO, MediaSource.by_id("1"), caption="oi"
            ),
            "image/video/document only",
        ),
        (lambda api: api.send_text(PNID, "12-34", "oi"), "E.164, 7-15 digits"),
    ],
)
async def test_invalid_payload_raises_before_any_request(
    offline_api: GraphAPI,
    calls: list[httpx.Request],
    call: Callable[[GraphAPI], Awaitable[object]],
    limit: str,
) -> None:
    with pytest.raises(MessageValidationError) as info:
        await call(offline_api)
    assert info.value.limit == limit
    assert limit in str(info.value)
    assert calls == []


@pytest.mark.anyio
async def test_oversized_upload_is_refused_before_sending_bytes(
    offline_api: GraphAPI, calls: list[httpx.Request]
) -> None:
    with pytest.raises(MessageValidationError, match="5242880 bytes"):
        await offline_api.upload_media(PNID, b"x" * (5 * 1024 * 1024 + 1), mime_type="image/png")
    assert calls == []


def test_button_id_over_256_chars_is_refused() -> None:
    with pytest.raises(MessageValidationError, match="≤256"):
        m.buttons_message("5511987654321", "Oi", [ReplyButton(id="i" * 257, title="Ok")])


def section(count: int, title: str | None = "Planos", prefix: str = "r") -> ListSection:
    return ListSection(
        title=title, rows=tuple(ListRow(id=f"{prefix}{i}", title=f"Row {i}") for i in range(count))
    )


@pytest.mark.parametrize(
    ("sections", "kwargs", "field", "limit"),
    [
        ([section(11)], {}, "interactive.action.sections.rows", "1-10 rows in total"),
        (
            [section(6, prefix="a"), section(5, prefix="b")],
            {},
            "interactive.action.sections.rows",
            "1-10 rows in total",
        ),
        ([section(1, prefix=str(i)) for i in range(11)], {}, "interactive.action.sections", ""),
        ([section(1, title="t" * 25)], {}, "section.title", "≤24 characters"),
        ([section(1, title=None), section(1, title=None, prefix="x")], {}, "section.title", ""),
        ([section(1)], {"button": "b" * 21}, "interactive.action.button", "≤20 characters"),
        ([section(1)], {"header": "h" * 61}, "interactive.header.text", "≤60 characters"),
        (
            [ListSection(rows=(ListRow(id="a", title="t" * 25),))],
            {},
            "row.title",
            "≤24 characters",
        ),
        (
            [ListSection(rows=(ListRow(id="a", title="ok", description="d" * 73),))],
            {},
            "row.description",
            "≤72 characters",
        ),
        (
            [ListSection(rows=(ListRow(id="a" * 201, title="ok"),))],
            {},
            "row.id",
            "≤200 characters",
        ),
        (
            [section(1, prefix="dup"), section(1, title="Outros", prefix="dup")],
            {},
            "row.id",
            "unique",
        ),
    ],
)
def test_list_limits(sections: list[ListSection], kwargs: dict[str, str], field: str, limit: str) -> None:
    button = kwargs.pop("button", "Ver opções")
    with pytest.raises(MessageValidationError) as info:
        m.list_message("5511987654321", "Escolha um plano", button, sections, **kwargs)
    assert info.value.field == field
    assert limit in info.value.limit


def test_valid_list_has_meta_shape() -> None:
    body = m.list_message(
        "+55 (11) 98765-4321",
        "Escolha um plano",
        "Ver planos",
        [
            ListSection(
                title="Planos",
                rows=(
                    ListRow(id="basic", title="Básico", description="R$ 49/mês"),
                    ListRow(id="pro", title="Pro"),
                ),
            )
        ],
        footer="Zapbase",
    )
    assert body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "+5511987654321",
        "type": "interactive",
        "interactive": {
            "type": "list",
            "body": {"text": "Escolha um plano"},
            "action": {
                "button": "Ver planos",
                "sections": [
                    {
                        "title": "Planos",
                        "rows": [
                            {"id": "basic", "title": "Básico", "description": "R$ 49/mês"},
                            {"id": "pro", "title": "Pro"},
                        ],
                    }
                ],
            },
            "footer": {"text": "Zapbase"},
        },
    }


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("5511987654321", "+5511987654321"),
        ("+5511987654321", "+5511987654321"),
        ("+55 (11) 98765-4321", "+5511987654321"),
        ("1.650.555.1234", "+16505551234"),
    ],
)
def test_phone_numbers_always_carry_plus(raw: str, normalized: str) -> None:
    assert m.text_message(raw, "oi")["to"] == normalized


@pytest.mark.parametrize("raw", ["", "abc", "+0123456789", "1234567890123456", "55 11 9876x"])
def test_bad_phone_numbers_are_refused(raw: str) -> None:
    with pytest.raises(MessageValidationError):
        Recipient.phone(raw)


def test_user_id_recipient_replaces_to() -> None:
    body = m.text_message(Recipient.user_id("US.13491208655302741918"), "oi")
    assert body["recipient"] == "US.13491208655302741918"
    assert "to" not in body


def test_voice_note_and_document_options() -> None:
    voice = m.media_message("5511987654321", MediaType.AUDIO, MediaSource.by_id("42"), voice=True)
    assert voice["audio"] == {"id": "42", "voice": True}
    doc = m.media_message(
        "5511987654321",
        MediaType.DOCUMENT,
        MediaSource.by_link("https://example.com/boleto.pdf"),
        caption="Seu boleto",
        filename="boleto.pdf",
    )
    assert doc["document"] == {
        "link": "https://example.com/boleto.pdf",
        "caption": "Seu boleto",
        "filename": "boleto.pdf",
    }
    with pytest.raises(MessageValidationError, match="voice"):
        m.media_message("5511987654321", MediaType.VIDEO, MediaSource.by_id("1"), voice=True)
    with pytest.raises(MessageValidationError, match="filename"):
        m.media_message("5511987654321", MediaType.IMAGE, MediaSource.by_id("1"), filename="a")
    with pytest.raises(MessageValidationError, match="http"):
        MediaSource.by_link("ftp://example.com/a.pdf")


def test_read_receipt_with_typing_indicator() -> None:
    assert m.read_receipt("wamid.X", typing_indicator=True) == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.X",
        "typing_indicator": {"type": "text"},
    }
