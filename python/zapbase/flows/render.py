"""How blocks look on WhatsApp: variables filled into texts, titles cut to Meta's limits, a
choice as reply buttons (1-3 options), a list (4-10) or pages of a list with a "more" row.

Limits (reference/whatsapp-cloud-api.md): 3 reply buttons with titles of 20 characters and
ids of 256; a list of 10 rows in all, row titles of 24, descriptions of 72, ids of 200,
the list button of 20; interactive bodies of 1024 characters.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "MORE_ID",
    "Option",
    "choice_message",
    "cut",
    "fill",
    "page_of",
    "text_message",
    "yes_no_message",
]

MORE_ID = "__more__"
FIRST_ID = "__first__"
BUTTON_TITLE, ROW_TITLE, ROW_DESCRIPTION, BODY, LIST_BUTTON = 20, 24, 72, 1024, 20
PAGE = 9  # options per page of a long list: the tenth row is "more" / "back to the start"
LIST_BUTTON_TEXT = "Ver opções"
MORE_TITLE = "Mais opções ›"
FIRST_TITLE = "‹ Voltar ao início"

_VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")


@dataclass(frozen=True, slots=True)
class Option:
    id: str
    label: str
    description: str | None = None


def fill(template: str, variables: Mapping[str, Any]) -> str:
    """{{name}} replaced by the variable's value; a variable never set reads as empty."""

    def value(found: re.Match[str]) -> str:
        got = variables.get(found.group(1))
        if got is None:
            return ""
        return got if isinstance(got, str) else json.dumps(got, ensure_ascii=False)

    return _VARIABLE.sub(value, template)


def cut(text: str, limit: int) -> str:
    """`text` in at most `limit` characters: cut at a word boundary when one falls in the
    second half, else mid-word, with an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    space = head.rfind(" ")
    if text[limit - 1] != " " and space >= limit // 2:  # the head ends mid-word
        head = head[:space]
    return head.rstrip(" ,;:.-") + "…"


def text_message(body: str, media: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A text, or a media message with the text as its caption (audio takes none)."""
    if media:
        kind = str(media.get("type", "image"))
        obj: dict[str, Any] = {"link": media.get("link")}
        if body and kind in ("image", "video", "document"):
            obj["caption"] = cut(body, 1024)
        return {"type": kind, kind: obj}
    return {"type": "text", "text": {"body": cut(body, 4096)}}


def _unique(titles: list[str], limit: int) -> list[str]:
    """Titles cut alike ("Segunda via do boleto…") are told apart by their position."""
    if len(set(titles)) == len(titles):
        return titles
    return [cut(f"{n}. {title}", limit) for n, title in enumerate(titles, 1)]


def page_of(options: Sequence[Option], page: int) -> tuple[list[Option], str | None]:
    """The options shown on `page` and the navigation row's id (None: no such row)."""
    if len(options) <= 10:
        return list(options), None
    pages = (len(options) + PAGE - 1) // PAGE
    page %= pages
    return list(options[page * PAGE : (page + 1) * PAGE]), MORE_ID if page < pages - 1 else FIRST_ID


def choice_message(body: str, options: Sequence[Option], page: int = 0) -> dict[str, Any]:
    """Reply buttons for up to 3 options, else a list (paginated past 10)."""
    body = cut(body, BODY)
    if len(options) <= 3:
        titles = _unique([cut(o.label, BUTTON_TITLE) for o in options], BUTTON_TITLE)
        buttons = [{"type": "reply", "reply": {"id": o.id, "title": t}}
                   for o, t in zip(options, titles, strict=True)]
        return {"type": "interactive", "interactive": {"type": "button", "body": {"text": body},
                                                       "action": {"buttons": buttons}}}  # fmt: skip
    shown, nav = page_of(options, page)
    titles = _unique([cut(o.label, ROW_TITLE) for o in shown], ROW_TITLE)
    rows: list[dict[str, str]] = []
    for option, title in zip(shown, titles, strict=True):
        row = {"id": option.id, "title": title}
        if option.description:
            row["description"] = cut(option.description, ROW_DESCRIPTION)
        rows.append(row)
    if nav is not None:
        rows.append({"id": nav, "title": MORE_TITLE if nav == MORE_ID else FIRST_TITLE})
    section = {"title": cut(f"Opções {page + 1}", ROW_TITLE), "rows": rows}
    action = {"button": LIST_BUTTON_TEXT, "sections": [section]}
    return {"type": "interactive", "interactive": {"type": "list", "body": {"text": body}, "action": action}}


def yes_no_message(body: str, yes: str = "Sim", no: str = "Não") -> dict[str, Any]:
    return choice_message(body, [Option("yes", yes), Option("no", no)])
