"""Strings PostgreSQL's jsonb refuses in JSON that is otherwise valid: the escape `\\u0000`
and lone UTF-16 surrogates (`\\ud800` without its pair). One such string would make
`whatsapp_ingest` refuse the whole body, valid messages included, so the webhook route
replaces each by U+FFFD and tells ingest (`CLEANED_KEY`: how many strings, and the SHA-256 of
the body as received, which stays the signed original).

The twin of `jsonbSafe` in `edge/whatsapp-webhook/handler.ts`; both are tested against the
same cases (`edge/whatsapp-webhook/jsonb_safe_cases.json`).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

__all__ = ["CLEANED_KEY", "REPLACEMENT", "jsonb_safe", "mark_cleaned", "may_need_cleaning"]

CLEANED_KEY = "zapbase_cleaned"
REPLACEMENT = "\ufffd"
# json.loads joins a valid surrogate pair into one code point: any surrogate left is lone.
_REFUSED = re.compile("[\x00\ud800-\udfff]")
# Only escapes can put those into parsed JSON (raw NUL and raw surrogates are invalid input).
_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


def may_need_cleaning(text: str) -> bool:
    """False when the JSON text holds no escape that could decode to a refused character."""
    return _ESCAPE.search(text) is not None


def jsonb_safe(value: Any) -> tuple[Any, int]:
    """`value` (parsed JSON) with every refused character in its strings, keys included,
    replaced by U+FFFD; and how many strings changed."""
    if isinstance(value, str):
        cleaned, changes = _REFUSED.subn(REPLACEMENT, value)
        return cleaned, int(changes > 0)
    if isinstance(value, list):
        items = [jsonb_safe(item) for item in value]
        return [item for item, _ in items], sum(n for _, n in items)
    if isinstance(value, dict):
        changed = 0
        result: dict[str, Any] = {}
        for key, item in value.items():
            clean_key, key_changes = jsonb_safe(key)
            clean_item, item_changes = jsonb_safe(item)
            result[clean_key] = clean_item
            changed += key_changes + item_changes
        return result, changed
    return value, 0


def mark_cleaned(payload: dict[str, Any], strings: int, body: bytes) -> dict[str, Any]:
    """The cleaned payload with the note ingest keeps on its events (inbound_events.cleaned)."""
    return {**payload, CLEANED_KEY: {"strings": strings, "raw_sha256": hashlib.sha256(body).hexdigest()}}
