"""Checks a `POST /{phone_number_id}/messages` body the way the Cloud API does.

Written independently of `zapbase.whatsapp.messages` on purpose: when the client's builders
drift from Meta's rules, the simulator still refuses what Meta would refuse. Missing or
mistyped fields answer code 100 (Meta's "Invalid parameter"), broken length/count limits
131009 ("Parameter value is not valid"), both with details naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Invalid", "SendTarget", "check_send"]

_PHONE = re.compile(r"\+?[1-9]\d{6,14}")
_MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})
_OTHER_TYPES = frozenset({"text", "template", "interactive", "reaction", "location", "contacts"})


class Invalid(Exception):
    def __init__(self, code: int, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


@dataclass(frozen=True, slots=True)
class SendTarget:
    wa_id: str | None
    user_id: str | None


def _obj(parent: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = parent.get(key)
    if not isinstance(value, Mapping):
        raise Invalid(100, f"The parameter {where}{key} is required and must be an object.")
    return value


def _text(parent: Mapping[str, Any], key: str, where: str, limit: int, *, code: int = 100) -> str:
    value = parent.get(key)
    if not isinstance(value, str) or not value:
        raise Invalid(100, f"The parameter {where}{key} is required.")
    if len(value) > limit:
        raise Invalid(code, f"Param {where}{key} must be at most {limit} characters long.")
    return value


def _target(body: Mapping[str, Any]) -> SendTarget:
    to, recipient = body.get("to"), body.get("recipient")
    if to is not None and recipient is not None:
        raise Invalid(100, "Only one of to and recipient may be given.")
    if isinstance(recipient, str) and recipient:
        return SendTarget(wa_id=None, user_id=recipient)
    if not isinstance(to, str) or not to:
        raise Invalid(100, "The parameter to is required.")
    compact = re.sub(r"[\s().\-]", "", to)
    if not _PHONE.fullmatch(compact):
        raise Invalid(100, f"Invalid phone number in parameter to: {to!r}.")
    return SendTarget(wa_id=compact.removeprefix("+"), user_id=None)


def _check_buttons(interactive: Mapping[str, Any]) -> None:
    _text(_obj(interactive, "body", "interactive."), "text", "interactive.body.", 1024, code=131009)
    buttons = _obj(interactive, "action", "interactive.").get("buttons")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        raise Invalid(131009, "interactive.action.buttons must hold 1 to 3 buttons.")
    titles: set[str] = set()
    ids: set[str] = set()
    for button in buttons:
        if not isinstance(button, Mapping) or button.get("type") != "reply":
            raise Invalid(100, "Each button must be {type: reply, reply: {id, title}}.")
        reply = _obj(button, "reply", "button.")
        ids.add(_text(reply, "id", "button.reply.", 256, code=131009))
        titles.add(_text(reply, "title", "button.reply.", 20, code=131009))
    if len(titles) != len(buttons) or len(ids) != len(buttons):
        raise Invalid(131009, "Button titles and ids must be unique.")


def _check_list(interactive: Mapping[str, Any]) -> None:
    _text(_obj(interactive, "body", "interactive."), "text", "interactive.body.", 4096, code=131009)
    action = _obj(interactive, "action", "interactive.")
    _text(action, "button", "interactive.action.", 20, code=131009)
    sections = action.get("sections")
    if not isinstance(sections, list) or not 1 <= len(sections) <= 10:
        raise Invalid(131009, "interactive.action.sections must hold 1 to 10 sections.")
    row_ids: list[str] = []
    for section in sections:
        if not isinstance(section, Mapping):
            raise Invalid(100, "Each section must be an object.")
        if len(sections) > 1 or "title" in section:
            _text(section, "title", "section.", 24, code=131009)
        rows = section.get("rows")
        if not isinstance(rows, list) or not rows:
            raise Invalid(100, "Each section needs rows.")
        for row in rows:
            if not isinstance(row, Mapping):
                raise Invalid(100, "Each row must be an object.")
            row_ids.append(_text(row, "id", "row.", 200, code=131009))
            _text(row, "title", "row.", 24, code=131009)
            description = row.get("description")
            if description is not None and (not isinstance(description, str) or len(description) > 72):
                raise Invalid(131009, "Param row.description must be at most 72 characters long.")
    if len(row_ids) > 10:
        raise Invalid(131009, "A list holds at most 10 rows in total.")
    if len(set(row_ids)) != len(row_ids):
        raise Invalid(131009, "Row ids must be unique.")


def _check_media(kind: str, media: Mapping[str, Any], media_exists: Callable[[str], bool]) -> None:
    media_id, link = media.get("id"), media.get("link")
    if (media_id is None) == (link is None):
        raise Invalid(100, f"{kind} needs exactly one of id and link.")
    if media_id is not None and (not isinstance(media_id, str) or not media_exists(media_id)):
        raise Invalid(100, f"{kind}.id {media_id!r} is not a media id uploaded by this number.")
    if link is not None and not (isinstance(link, str) and link.startswith(("http://", "https://"))):
        raise Invalid(100, f"{kind}.link must be an http(s) URL.")
    if "caption" in media:
        if kind not in ("image", "video", "document"):
            raise Invalid(100, f"{kind} does not take a caption.")
        _text(media, "caption", f"{kind}.", 1024, code=131009)
    if media.get("voice") is not None and kind != "audio":
        raise Invalid(100, "Only audio can be a voice note.")


def check_send(body: object, *, media_exists: Callable[[str], bool]) -> SendTarget:
    """The recipient of a valid send body; raises `Invalid(code, details)` otherwise."""
    if not isinstance(body, Mapping):
        raise Invalid(100, "The request body must be a JSON object.")
    if body.get("messaging_product") != "whatsapp":
        raise Invalid(100, "The parameter messaging_product is required and must be whatsapp.")
    if body.get("recipient_type", "individual") != "individual":
        raise Invalid(100, "recipient_type must be individual.")
    target = _target(body)
    kind = body.get("type", "text")
    if kind not in _MEDIA_TYPES | _OTHER_TYPES:
        raise Invalid(100, f"Param type must be one of {sorted(_MEDIA_TYPES | _OTHER_TYPES)}.")
    content = _obj(body, kind, "")
    if kind == "text":
        _text(content, "body", "text.", 4096)
    elif kind == "template":
        _text(content, "name", "template.", 512)
        _text(_obj(content, "language", "template."), "code", "template.language.", 20)
        if "components" in content and not isinstance(content["components"], list):
            raise Invalid(100, "template.components must be an array.")
    elif kind == "interactive":
        subtype = content.get("type")
        if subtype == "button":
            _check_buttons(content)
        elif subtype == "list":
            _check_list(content)
        elif subtype == "flow":
            _text(_obj(content, "body", "interactive."), "text", "interactive.body.", 1024, code=131009)
            parameters = _obj(_obj(content, "action", "interactive."), "parameters", "interactive.action.")
            _text(parameters, "flow_id", "interactive.action.parameters.", 200)
            _text(parameters, "flow_cta", "interactive.action.parameters.", 20, code=131009)
        else:
            raise Invalid(100, "interactive.type must be button, list or flow in the simulator.")
    elif kind in _MEDIA_TYPES:
        _check_media(kind, content, media_exists)
    elif kind == "reaction":
        _text(content, "message_id", "reaction.", 512)
        if not isinstance(content.get("emoji"), str):
            raise Invalid(100, "The parameter reaction.emoji is required.")
    context = body.get("context")
    if context is not None and not (
        isinstance(context, Mapping) and isinstance(context.get("message_id"), str)
    ):
        raise Invalid(100, "context must be {message_id}.")
    callback = body.get("biz_opaque_callback_data")
    if callback is not None and not (isinstance(callback, str) and len(callback.encode()) <= 512):
        raise Invalid(131009, "biz_opaque_callback_data must be a string of at most 512 bytes.")
    return target
