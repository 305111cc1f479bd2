"""Builders of outbound Cloud API request bodies, checked against Meta's documented limits.

Every builder returns the complete JSON body for `POST /{phone_number_id}/messages` and
raises `MessageValidationError` (a `ValueError` naming the limit) before anything is sent.
Limits: developers.facebook.com/documentation/business-messaging/whatsapp/messages/
(send-messages, interactive-reply-buttons-messages, interactive-list-messages, media).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from zapbase.whatsapp.errors import MessageValidationError

__all__ = [
    "ListRow",
    "ListSection",
    "MediaSource",
    "MediaType",
    "Recipient",
    "ReplyButton",
    "buttons_message",
    "check_media_upload",
    "list_message",
    "media_message",
    "normalize_phone",
    "reaction_message",
    "read_receipt",
    "template_message",
    "text_message",
]

TEXT_BODY_MAX = 4096
CAPTION_MAX = 1024
BUTTONS_MAX = 3
BUTTON_TITLE_MAX = 20
BUTTON_ID_MAX = 256
BUTTONS_BODY_MAX = 1024
HEADER_TEXT_MAX = 60
FOOTER_TEXT_MAX = 60
LIST_BODY_MAX = 4096
LIST_BUTTON_MAX = 20
LIST_SECTIONS_MAX = 10
LIST_ROWS_MAX = 10
SECTION_TITLE_MAX = 24
ROW_ID_MAX = 200
ROW_TITLE_MAX = 24
ROW_DESCRIPTION_MAX = 72
TEMPLATE_NAME_MAX = 512

_MB = 1024 * 1024
# Upload size limits per MIME type family [M:media]; image/webp is a sticker.
_UPLOAD_LIMITS: tuple[tuple[str, int], ...] = (
    ("image/webp", 500 * 1024),
    ("image/", 5 * _MB),
    ("audio/", 16 * _MB),
    ("video/", 16 * _MB),
    ("", 100 * _MB),
)

_PHONE_PUNCTUATION = re.compile(r"[\s().\-]")
_PHONE_DIGITS = re.compile(r"\+?[1-9]\d{6,14}")


def normalize_phone(number: str) -> str:
    """E.164 with the `+` Meta asks for: without it Meta prepends the sender's country code."""
    compact = _PHONE_PUNCTUATION.sub("", number)
    if not _PHONE_DIGITS.fullmatch(compact):
        raise MessageValidationError("to", "E.164, 7-15 digits", f"not a phone number: {number!r}")
    return compact if compact.startswith("+") else f"+{compact}"


@dataclass(frozen=True, slots=True)
class Recipient:
    """Who receives a message: a phone number (`to`) or a 2026 business-scoped user id
    (`recipient`, e.g. `US.13491208655302741918`) for users known only by username."""

    field: Literal["to", "recipient"]
    value: str

    @classmethod
    def phone(cls, number: str) -> Recipient:
        return cls("to", normalize_phone(number))

    @classmethod
    def user_id(cls, bsuid: str) -> Recipient:
        if not bsuid or any(ch.isspace() for ch in bsuid):
            raise MessageValidationError("recipient", "non-empty id", f"bad user id: {bsuid!r}")
        return cls("recipient", bsuid)

    @classmethod
    def coerce(cls, to: Recipient | str) -> Recipient:
        return to if isinstance(to, Recipient) else cls.phone(to)


@dataclass(frozen=True, slots=True)
class ReplyButton:
    id: str
    title: str


@dataclass(frozen=True, slots=True)
class ListRow:
    id: str
    title: str
    description: str | None = None


@dataclass(frozen=True, slots=True)
class ListSection:
    rows: Sequence[ListRow]
    title: str | None = None


class MediaType(enum.StrEnum):
    IMAGE = "image"
    DOCUMENT = "document"
    AUDIO = "audio"
    VIDEO = "video"
    STICKER = "sticker"


@dataclass(frozen=True, slots=True)
class MediaSource:
    """An uploaded media id or a public http(s) link Meta fetches (cached 10 min by URL)."""

    id: str | None = None
    link: str | None = None

    @classmethod
    def by_id(cls, media_id: str) -> MediaSource:
        _require("media.id", media_id)
        return cls(id=media_id)

    @classmethod
    def by_link(cls, link: str) -> MediaSource:
        parts = urlsplit(link)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise MessageValidationError("media.link", "http(s) URL", f"not a URL: {link!r}")
        return cls(link=link)

    def as_object(self) -> dict[str, Any]:
        if (self.id is None) == (self.link is None):
            raise MessageValidationError("media", "id xor link", "give exactly one of id, link")
        return {"id": self.id} if self.id is not None else {"link": self.link}


def _require(field: str, value: str) -> None:
    if not value:
        raise MessageValidationError(field, "non-empty", "must not be empty")


def _max_len(field: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise MessageValidationError(field, f"≤{limit} characters", f"{len(value)} characters is too long")


def _text(field: str, value: str, limit: int) -> None:
    _require(field, value)
    _max_len(field, value, limit)


def _envelope(to: Recipient | str, kind: str, reply_to: str | None) -> dict[str, Any]:
    target = Recipient.coerce(to)
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        target.field: target.value,
        "type": kind,
    }
    if reply_to is not None:
        _require("context.message_id", reply_to)
        body["context"] = {"message_id": reply_to}
    return body


def text_message(
    to: Recipient | str, body: str, *, preview_url: bool = False, reply_to: str | None = None
) -> dict[str, Any]:
    _text("text.body", body, TEXT_BODY_MAX)
    return {**_envelope(to, "text", reply_to), "text": {"preview_url": preview_url, "body": body}}


def template_message(
    to: Recipient | str,
    name: str,
    language: str,
    components: Sequence[Mapping[str, Any]] = (),
    *,
    reply_to: str | None = None,
) -> dict[str, Any]:
    """`components` follow Meta's template shape (header/body/button parameters) as-is."""
    _text("template.name", name, TEMPLATE_NAME_MAX)
    _require("template.language.code", language)
    template: dict[str, Any] = {"name": name, "language": {"code": language}}
    if components:
        template["components"] = [dict(component) for component in components]
    return {**_envelope(to, "template", reply_to), "template": template}


def _header_footer(interactive: dict[str, Any], header: str | None, footer: str | None) -> dict[str, Any]:
    if header is not None:
        _text("interactive.header.text", header, HEADER_TEXT_MAX)
        interactive["header"] = {"type": "text", "text": header}
    if footer is not None:
        _text("interactive.footer.text", footer, FOOTER_TEXT_MAX)
        interactive["footer"] = {"text": footer}
    return interactive


def buttons_message(
    to: Recipient | str,
    body: str,
    buttons: Sequence[ReplyButton],
    *,
    header: str | None = None,
    footer: str | None = None,
    reply_to: str | None = None,
) -> dict[str, Any]:
    _text("interactive.body.text", body, BUTTONS_BODY_MAX)
    if not 1 <= len(buttons) <= BUTTONS_MAX:
        raise MessageValidationError(
            "interactive.action.buttons", f"1-{BUTTONS_MAX} buttons", f"got {len(buttons)}"
        )
    for button in buttons:
        _text("button.id", button.id, BUTTON_ID_MAX)
        _text("button.title", button.title, BUTTON_TITLE_MAX)
    _unique("button.id", [b.id for b in buttons])
    _unique("button.title", [b.title for b in buttons])
    interactive = {
        "type": "button",
        "body": {"text": body},
        "action": {"buttons": [{"type": "reply", "reply": {"id": b.id, "title": b.title}} for b in buttons]},
    }
    return {
        **_envelope(to, "interactive", reply_to),
        "interactive": _header_footer(interactive, header, footer),
    }


def _unique(field: str, values: Sequence[str]) -> None:
    if len(set(values)) != len(values):
        raise MessageValidationError(field, "unique", f"duplicates in {list(values)!r}")


def list_message(
    to: Recipient | str,
    body: str,
    button: str,
    sections: Sequence[ListSection],
    *,
    header: str | None = None,
    footer: str | None = None,
    reply_to: str | None = None,
) -> dict[str, Any]:
    _text("interactive.body.text", body, LIST_BODY_MAX)
    _text("interactive.action.button", button, LIST_BUTTON_MAX)
    if not 1 <= len(sections) <= LIST_SECTIONS_MAX:
        raise MessageValidationError(
            "interactive.action.sections", f"1-{LIST_SECTIONS_MAX} sections", f"got {len(sections)}"
        )
    rows = [row for section in sections for row in section.rows]
    if not 1 <= len(rows) <= LIST_ROWS_MAX:
        raise MessageValidationError(
            "interactive.action.sections.rows",
            f"1-{LIST_ROWS_MAX} rows in total",
            f"got {len(rows)}",
        )
    for section in sections:
        if section.title is not None:
            _text("section.title", section.title, SECTION_TITLE_MAX)
        elif len(sections) > 1:
            raise MessageValidationError(
                "section.title", "required with >1 section", "a section has no title"
            )
        if not section.rows:
            raise MessageValidationError("section.rows", "≥1 row per section", "empty section")
    for row in rows:
        _text("row.id", row.id, ROW_ID_MAX)
        _text("row.title", row.title, ROW_TITLE_MAX)
        if row.description is not None:
            _max_len("row.description", row.description, ROW_DESCRIPTION_MAX)
    _unique("row.id", [row.id for row in rows])
    interactive = {
        "type": "list",
        "body": {"text": body},
        "action": {"button": button, "sections": [_section(s) for s in sections]},
    }
    return {
        **_envelope(to, "interactive", reply_to),
        "interactive": _header_footer(interactive, header, footer),
    }


def _section(section: ListSection) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for row in section.rows:
        item = {"id": row.id, "title": row.title}
        if row.description:
            item["description"] = row.description
        rows.append(item)
    return {"title": section.title, "rows": rows} if section.title is not None else {"rows": rows}


def media_message(
    to: Recipient | str,
    media_type: MediaType,
    source: MediaSource,
    *,
    caption: str | None = None,
    filename: str | None = None,
    voice: bool = False,
    reply_to: str | None = None,
) -> dict[str, Any]:
    """Image/document/audio/video/sticker; `voice=True` makes audio a voice note (OGG/OPUS)."""
    media = source.as_object()
    if caption is not None:
        if media_type not in (MediaType.IMAGE, MediaType.VIDEO, MediaType.DOCUMENT):
            raise MessageValidationError(
                "caption", "image/video/document only", f"{media_type} takes no caption"
            )
        _text("caption", caption, CAPTION_MAX)
        media["caption"] = caption
    if filename is not None:
        if media_type is not MediaType.DOCUMENT:
            raise MessageValidationError("filename", "document only", f"{media_type} takes no filename")
        _require("filename", filename)
        media["filename"] = filename
    if voice:
        if media_type is not MediaType.AUDIO:
            raise MessageValidationError("voice", "audio only", f"{media_type} cannot be a voice note")
        media["voice"] = True
    return {**_envelope(to, media_type.value, reply_to), media_type.value: media}


def reaction_message(to: Recipient | str, message_id: str, emoji: str) -> dict[str, Any]:
    """React to `message_id`; an empty `emoji` removes our reaction."""
    _require("reaction.message_id", message_id)
    return {
        **_envelope(to, "reaction", None),
        "reaction": {"message_id": message_id, "emoji": emoji},
    }


def read_receipt(message_id: str, *, typing_indicator: bool = False) -> dict[str, Any]:
    """Marks `message_id` (and earlier ones) read; the typing bubble lasts ≤25 s or until
    we reply."""
    _require("message_id", message_id)
    body: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": message_id,
    }
    if typing_indicator:
        body["typing_indicator"] = {"type": "text"}
    return body


def check_media_upload(mime_type: str, size: int) -> None:
    """Refuse an upload Meta would reject for its size, before sending the bytes."""
    _require("mime_type", mime_type)
    if size <= 0:
        raise MessageValidationError("file", "non-empty", "file is empty")
    limit = next(limit for prefix, limit in _UPLOAD_LIMITS if mime_type.startswith(prefix))
    if size > limit:
        raise MessageValidationError("file", f"≤{limit} bytes for {mime_type}", f"{size} bytes is too large")
