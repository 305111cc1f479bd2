"""What single blocks compute, as pure functions of their data and the variables: choice
options and the option an answer names, conditions, http response paths and bodies, the
WhatsApp Flow message."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from zapbase.flows.answers import parse_number
from zapbase.flows.graph import Block
from zapbase.flows.render import Option, fill
from zapbase.text import fold

__all__ = ["chosen_option", "dig", "fill_json", "flow_message", "holds", "options"]


def options(block: Block) -> list[Option]:
    options = block.data.get("options", [])
    return [Option(str(o["id"]), str(o["label"]), o.get("description")) for o in options]


def chosen_option(options: list[Option], reply_id: str | None, text: str | None) -> Option | None:
    """The option a tap or a typed answer names: its id, its number (1 = first), its label."""
    by_id = {o.id: o for o in options}
    if reply_id is not None:
        return by_id.get(reply_id)
    text = (text or "").strip()
    if not text:
        return None
    if text in by_id:
        return by_id[text]
    if text.isdigit() and 1 <= int(text) <= len(options):
        return options[int(text) - 1]
    folded = fold(text)
    for option in options:
        if folded in (fold(option.label), fold(option.id)):
            return option
    return None


def holds(rule: Mapping[str, Any], variables: Mapping[str, Any]) -> bool:
    value = variables.get(str(rule.get("variable")))
    text = "" if value is None else value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    target = fill(str(rule.get("value", "")), variables)
    match rule.get("op"):
        case "equals":
            return fold(text) == fold(target)
        case "not_equals":
            return fold(text) != fold(target)
        case "contains":
            return fold(target) in fold(text)
        case "starts_with":
            return fold(text).startswith(fold(target))
        case "regex":
            try:
                return re.search(target, text) is not None
            except re.error:
                return False
        case "greater" | "less":
            left, right = parse_number(text), parse_number(target)
            if left is None or right is None:
                return False
            return left > right if rule.get("op") == "greater" else left < right
        case "is_set":
            return text != ""
        case "is_empty":
            return text == ""
    return False


def dig(value: Any, path: str) -> Any:
    """`a.b.0.c` of a JSON value; None when the path is not there."""
    for key in path.split(".") if path else []:
        if isinstance(value, Mapping):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def fill_json(value: Any, variables: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return fill(value, variables)
    if isinstance(value, list):
        return [fill_json(v, variables) for v in value]
    if isinstance(value, Mapping):
        return {k: fill_json(v, variables) for k, v in value.items()}
    return value


def flow_message(block: Block, variables: Mapping[str, Any]) -> dict[str, Any]:
    """A WhatsApp Flow (Meta's forms) opened by a button; its answer comes back as nfm_reply."""
    return {"type": "interactive", "interactive": {
        "type": "flow", "body": {"text": fill(block.text(), variables)},
        "action": {"name": "flow", "parameters": {
            "flow_message_version": "3", "flow_id": str(block.data["flow_id"]), "flow_cta": block.text("cta"),
            "flow_token": block.id}}}}  # fmt: skip
